//! Audit ingestion benchmarks: durable and buffered records/s through `AuditWriter` into SQLite
//! (WAL, `synchronous=FULL`, a file in a temporary directory) and into Postgres when
//! `DATABASE_URL` is set (a fresh database, dropped afterwards), the raw batch insert as a
//! baseline, and the latency of one durable append while the writer is under load.
//!
//! Run with `cargo xtask bench` (which provides a Postgres with fsync on) or `cargo bench -p
//! authz-audit --bench ingest`. The target (docs/performance) is ≥ 100k durable records/s on
//! both backends; the latency of a durable append is reported as criterion's mean and as p50
//! and p99 over single appends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use authz_audit::{AuditStore, AuditWriter, SigningKey, WriterConfig};
use authz_test_support::TestDatabase;
use authz_types::{AuditRecord, Decision, Method, Operation, Principal, ReasonCode, Target};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use sqlx::Connection;
use tokio::runtime::Runtime;

/// Records per measured iteration of the throughput benchmarks.
const RECORDS: usize = 20_000;

/// Concurrent durable callers: a batch can only be as large as the number of callers waiting.
const CALLERS: usize = 2_000;

/// Durable appends timed one by one for the latency percentiles.
const LATENCY_SAMPLES: usize = 2_000;

/// Numbers records across the whole run, so request ids and times are unique and increasing
/// like the gateway's (repeating them would insert into the middle of the indexes, which real
/// traffic does not).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Who the records are about: an authenticated principal acting through an agent.
static PRINCIPAL: LazyLock<Principal> = LazyLock::new(|| Principal {
    subject: "alice@example.com".into(),
    issuer: "https://idp.example.com/realms/acme".into(),
    tenant: Some("acme".into()),
    client_id: Some("agent-app".into()),
    actors: vec!["agent-7".into()],
    scopes: vec!["tickets:read".into(), "tickets:write".into()],
    roles: vec!["reader".into()],
    token_id: Some("jti-8c1f0e".into()),
    expires_at: 1_767_229_200,
    issued_at: Some(1_767_225_600),
    claims: Default::default(),
});

/// A realistic record: the decision record of an allowed tool call by an authenticated
/// principal, built as the gateway builds it, with a session, a trace id and an argument digest
/// (raw arguments are off by default).
fn record(_i: usize) -> AuditRecord {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let operation = Operation::new(
        Method::from_name("tools/call"),
        Target::Tool("get_ticket".into()),
    );
    let decision = Decision::allow(
        ReasonCode::PolicyAllow,
        Some("p, reader, acme, tool:tickets/get_*, call, allow".into()),
        42,
    );
    let request_id = format!("0193c5d2-7a1b-7c3e-9f00-{n:012}");
    let mut r = AuditRecord::for_decision(request_id, "tickets", &PRINCIPAL, &operation, &decision);
    // About 100 records per millisecond.
    r.time_ms = 1_767_225_600_000 + i64::try_from(n / 100).unwrap_or(0);
    r.session_id = Some("sess-4f1c2a".into());
    r.trace_id = Some(format!("4bf92f3577b34da6a3ce{n:012x}"));
    r.args_digest = Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into());
    r
}

/// A database to benchmark against, removed when dropped.
struct BenchDb {
    name: &'static str,
    store: AuditStore,
    _database: TestDatabase,
}

fn targets(rt: &Runtime) -> Vec<BenchDb> {
    let mut out = Vec::new();
    let sqlite = TestDatabase::sqlite("bench.db");
    out.push(BenchDb {
        name: "sqlite",
        store: rt
            .block_on(AuditStore::connect(sqlite.url()))
            .expect("sqlite"),
        _database: sqlite,
    });
    if std::env::var("DATABASE_URL").is_err() {
        println!("skipped Postgres: DATABASE_URL not set (run cargo xtask bench)");
        return out;
    }
    let postgres = rt.block_on(TestDatabase::postgres());
    rt.block_on(warm_wal(postgres.url()));
    out.push(BenchDb {
        name: "postgres",
        store: rt
            .block_on(AuditStore::connect(postgres.url()))
            .expect("postgres"),
        _database: postgres,
    });
    out
}

/// Brings a Postgres that has just been created to the state of one that has been running:
/// Postgres recycles the WAL segment files that checkpoints free, but a new cluster first has to
/// create (and zero-fill) every 16 MB segment, which made the first gigabyte of WAL run about a
/// quarter slower here. About 1 GB of WAL is written and checkpointed before measuring; on a
/// server that has been running this only costs the time.
async fn warm_wal(url: &str) {
    let start = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the bench database");
    sqlx::raw_sql(
        "CREATE TABLE bench_wal_warmup AS \
         SELECT g, repeat('x', 300) AS pad FROM generate_series(1, 2500000) AS g; \
         DROP TABLE bench_wal_warmup;",
    )
    .execute(&mut conn)
    .await
    .expect("write WAL");
    // CHECKPOINT needs a superuser or pg_checkpoint; without it the segments are recycled at
    // the server's next checkpoint instead.
    let checkpointed = sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await.is_ok();
    println!(
        "postgres: wrote ~1 GB of WAL{} in {:.1} s so its segment files are recycled, as on a running server",
        if checkpointed {
            " and checkpointed"
        } else {
            ""
        },
        start.elapsed().as_secs_f64()
    );
}

/// Closes each target's store, then removes its database.
fn drop_targets(rt: &Runtime, targets: Vec<BenchDb>) {
    for t in targets {
        rt.block_on(t.store.close());
    }
}

fn writer_config() -> WriterConfig {
    WriterConfig {
        queue_capacity: 20_000,
        ..Default::default()
    }
}

/// `RECORDS` durable appends from `CALLERS` concurrent callers; returns the elapsed time.
async fn durable_run(writer: &AuditWriter) -> Duration {
    let per_caller = RECORDS / CALLERS;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CALLERS);
    for c in 0..CALLERS {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_caller {
                w.append_durable(record(c * per_caller + i))
                    .await
                    .expect("durable append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    start.elapsed()
}

/// A writer on `store` with `config`, signing checkpoints as the gateway does.
fn spawn_writer(rt: &Runtime, store: &AuditStore, config: WriterConfig) -> AuditWriter {
    rt.block_on(AuditWriter::spawn(
        store.clone(),
        config,
        Some(SigningKey::from_seed(&[7; 32]).expect("key")),
    ))
    .expect("spawn")
}

/// Measures [`durable_run`] on `writer` as benchmark `name` of `target`.
fn bench_durable(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    (name, target): (&str, &str),
    writer: &AuditWriter,
) {
    group.bench_function(BenchmarkId::new(name, target), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(durable_run(writer))).sum())
    });
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let targets = targets(&rt);
    let key = SigningKey::from_seed(&[7; 32]).expect("key");

    let mut group = c.benchmark_group("audit_ingest");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(RECORDS as u64));
    for t in &targets {
        let writer = spawn_writer(&rt, &t.store, writer_config());
        bench_durable(&mut group, &rt, ("durable_writer", t.name), &writer);
        group.bench_function(BenchmarkId::new("buffered_writer", t.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..RECORDS {
                            writer.append_buffered(record(i)).await.expect("buffered");
                        }
                        // Measured until the last one is committed: a durable append queued
                        // behind them resolves only then.
                        writer.append_durable(record(0)).await.expect("marker");
                        start.elapsed()
                    });
                }
                total
            })
        });
        let stats = rt.block_on(writer.shutdown()).expect("shutdown");
        println!("{}: writer stats {stats:?}", t.name);
        if t.name == "postgres" {
            // The default on Postgres is two lanes; one lane for comparison in the same run.
            let one_lane = WriterConfig {
                lanes: Some(1),
                ..writer_config()
            };
            let one = spawn_writer(&rt, &t.store, one_lane);
            bench_durable(&mut group, &rt, ("durable_writer_one_lane", t.name), &one);
            rt.block_on(one.shutdown()).expect("shutdown");
        }
        group.bench_function(BenchmarkId::new("append_batch_baseline", t.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch: Vec<AuditRecord> = (0..RECORDS).map(record).collect();
                    let start = Instant::now();
                    rt.block_on(t.store.append_unchained_batch(&batch))
                        .expect("batch");
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();

    // The latency of one durable append while background callers keep the writer busy at
    // roughly half of its capacity (one buffered record every 20 µs).
    let mut group = c.benchmark_group("audit_durable_latency_under_load");
    group.sample_size(50);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for t in &targets {
        let writer = spawn_writer(&rt, &t.store, writer_config());
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let writer = writer.clone();
            let stop = Arc::clone(&stop);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    for _ in 0..50 {
                        i += 1;
                        // A full queue only means the load outruns the store; keep going.
                        let _ = writer.append_buffered(record(i)).await;
                    }
                }
            })
        };
        group.bench_function(BenchmarkId::new("one_durable_append", t.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        writer
                            .append_durable(record(usize::try_from(i).unwrap_or(0)))
                            .await
                            .expect("durable");
                    }
                    start.elapsed()
                })
            })
        });
        // Criterion reports the mean; the percentiles come from timing appends one by one.
        let mut samples: Vec<Duration> = rt.block_on(async {
            let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
            for i in 0..LATENCY_SAMPLES {
                let start = Instant::now();
                writer.append_durable(record(i)).await.expect("durable");
                samples.push(start.elapsed());
            }
            samples
        });
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "{}: durable append latency under load over {LATENCY_SAMPLES} appends: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            t.name,
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
        );
        stop.store(true, Ordering::Relaxed);
        rt.block_on(load).expect("load task");
        let stats = rt.block_on(writer.shutdown()).expect("shutdown");
        println!("{}: writer stats under load {stats:?}", t.name);
    }
    group.finish();
    drop(key);
    drop_targets(&rt, targets);
}

criterion_group!(benches, ingest);
criterion_main!(benches);
