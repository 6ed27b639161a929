//! Decision cost at 10 / 1k / 10k policy lines (50 tenants, 1k users): the indexed hot path
//! (`Rbac::decide`) against plain Casbin enforcement (`Rbac::decide_with_casbin`) in the same run.
//!
//! Besides criterion's estimates, it prints per-decision percentiles of the indexed path (each
//! decision timed on its own over many generated requests) and the time to load each policy,
//! because the target is stated as a p50 per decision.
//!
//! Run with `cargo bench -p authz-rbac --bench decide`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use authz_rbac::{ConditionArgs, Rbac};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/it/generate.rs"]
mod generate;

use generate::{Request, Shape};

const SIZES: &[usize] = &[10, 1_000, 10_000];

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/model.conf")
}

/// Loads a generated policy of `lines` lines and returns it with its requests and load time.
fn setup(lines: usize, dir: &tempfile::TempDir) -> (Rbac, Vec<Request>, Duration) {
    let shape = Shape::bench(lines);
    let path = dir.path().join(format!("policy-{lines}.csv"));
    std::fs::write(&path, generate::policy_csv(&shape, 7)).expect("write policy");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let rbac = runtime
        .block_on(Rbac::from_files(&model(), &[path]))
        .expect("load generated policy");
    let load = started.elapsed();
    (rbac, generate::requests(&shape, 11, 4096), load)
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

fn decide(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut report = Vec::new();
    for &lines in SIZES {
        let (rbac, requests, load) = setup(lines, &dir);
        let mut group = c.benchmark_group(format!("decide/{lines}_lines"));
        let mut next = 0usize;
        group.bench_function("indexed", |b| {
            b.iter(|| {
                let r = &requests[next % requests.len()];
                next += 1;
                black_box(rbac.decide(&r.principal, &r.upstream, &r.op))
            })
        });
        if lines >= 10_000 {
            // Casbin visits every line: at 10k lines a decision takes milliseconds.
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(5));
        }
        let mut next = 0usize;
        group.bench_function("casbin", |b| {
            b.iter(|| {
                let r = &requests[next % requests.len()];
                next += 1;
                black_box(rbac.decide_with_casbin(&r.principal, &r.upstream, &r.op))
            })
        });
        group.finish();

        // Per-decision percentiles, each decision timed on its own.
        let timed = |casbin: bool, rounds: usize| {
            let mut samples = Vec::with_capacity(rounds);
            for i in 0..rounds {
                let r = &requests[i % requests.len()];
                let started = Instant::now();
                let decision = if casbin {
                    rbac.decide_with_casbin(&r.principal, &r.upstream, &r.op)
                } else {
                    rbac.decide(&r.principal, &r.upstream, &r.op)
                };
                samples.push(started.elapsed());
                black_box(decision).ok();
            }
            percentiles(samples)
        };
        let indexed = timed(false, 200_000);
        let casbin = timed(true, if lines >= 10_000 { 200 } else { 4_000 });
        let allowed = requests
            .iter()
            .filter(|r| {
                rbac.decide(&r.principal, &r.upstream, &r.op)
                    .is_ok_and(|d| d.is_allowed())
            })
            .count();
        report.push((lines, load, indexed, casbin, allowed, requests.len()));
    }
    println!();
    println!(
        "{:>7} {:>10} {:>13} {:>13} {:>13} {:>13} {:>9} {:>8}",
        "lines",
        "load",
        "indexed p50",
        "indexed p99",
        "casbin p50",
        "casbin p99",
        "speed-up",
        "allowed"
    );
    for (lines, load, indexed, casbin, allowed, total) in report {
        println!(
            "{lines:>7} {:>10.1?} {:>13.2?} {:>13.2?} {:>13.2?} {:>13.2?} {:>8.0}x {:>4}/{total}",
            load,
            indexed.0,
            indexed.1,
            casbin.0,
            casbin.1,
            casbin.0.as_secs_f64() / indexed.0.as_secs_f64().max(1e-9),
            allowed,
        );
    }
}

/// A call decided by a rule with a condition, at 10k generated lines plus a few conditional
/// rules: the cost of evaluating a condition over a call's arguments (target ≤ 5 µs p50).
fn conditional(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = Shape::bench(10_000);
    let mut csv = generate::policy_csv(&shape, 7);
    csv.push_str(
        "p, refunder, *, tool:billing/refund, call, allow, \"args.amount <= 500 && args.currency == 'EUR'\"\n\
         p, refunder, *, tool:billing/refund, call, deny, \"size(principal.actors) > 2\"\n\
         p, refunder, *, tool:billing/export, call, allow, \"args.project in principal.claims.projects\"\n",
    );
    let path = dir.path().join("policy-conditions.csv");
    std::fs::write(&path, csv).expect("write policy");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let rbac = runtime
        .block_on(Rbac::from_files(&model(), &[path]))
        .expect("load");
    let mut principal = generate::requests(&shape, 11, 1)[0].principal.clone();
    principal.roles = vec!["refunder".into()];
    std::sync::Arc::make_mut(&mut principal.claims)
        .insert("projects".into(), serde_json::json!(["alpha", "beta"]));
    let op = authz_types::Operation::new(
        authz_types::Method::ToolsCall,
        authz_types::Target::Tool("refund".into()),
    );
    let args = serde_json::json!({"amount": 250, "currency": "EUR", "note": "x".repeat(2000)});
    let given = ConditionArgs::Known(&args);
    let decision = rbac
        .decide_with(&principal, "billing", &op, given)
        .expect("decide");
    assert!(decision.is_allowed(), "{decision:?}");
    c.bench_function("decide/10000_lines/conditional", |b| {
        b.iter(|| black_box(rbac.decide_with(&principal, "billing", &op, given)))
    });
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let started = Instant::now();
        black_box(rbac.decide_with(&principal, "billing", &op, given)).ok();
        samples.push(started.elapsed());
    }
    let (p50, p99) = percentiles(samples);
    println!(
        "\n10k lines, a call decided by a rule with a condition: p50 {p50:.2?}, p99 {p99:.2?}"
    );
}

criterion_group!(benches, decide, conditional);
criterion_main!(benches);
