//! The decision index against plain Casbin enforcement on generated policies and requests: every
//! decision (effect, reason, deciding rule, revision) must be the same on both paths.

use std::path::Path;

use authz_rbac::Rbac;
use authz_types::{Method, Operation, Target};

use crate::common::{model_path, principal, tool};
use crate::generate::{self, Request, Shape};

async fn load(dir: &Path, csv: &str) -> Rbac {
    let path = dir.join("policy.csv");
    std::fs::write(&path, csv).expect("write policy");
    Rbac::from_files(&model_path(), &[path])
        .await
        .unwrap_or_else(|e| panic!("generated policy does not load: {e:?}\n{csv}"))
}

/// Runs every request through both paths and reports all disagreements at once.
fn compare(rbac: &Rbac, requests: &[Request], label: &str) -> usize {
    let mut failures = Vec::new();
    let mut allowed = 0;
    for (i, r) in requests.iter().enumerate() {
        let fast = rbac.decide(&r.principal, &r.upstream, &r.op);
        let reference = rbac.decide_with_casbin(&r.principal, &r.upstream, &r.op);
        match (&fast, &reference) {
            (Ok(a), Ok(b)) if a == b => allowed += usize::from(a.is_allowed()),
            _ => failures.push(format!(
                "request {i} {r:?}\n  index:  {fast:?}\n  casbin: {reference:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} of {} decisions differ:\n{}",
        failures.len(),
        requests.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    allowed
}

#[tokio::test]
async fn index_and_casbin_agree_on_generated_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shapes = [
        // Small and dense: many subjects share rules, tenants and roles collide often.
        Shape {
            lines: 60,
            tenants: 3,
            users: 10,
            roles_per_tenant: 4,
            upstreams: 2,
        },
        Shape {
            lines: 400,
            tenants: 5,
            users: 40,
            roles_per_tenant: 6,
            upstreams: 3,
        },
        Shape {
            lines: 2_000,
            tenants: 10,
            users: 100,
            roles_per_tenant: 10,
            upstreams: 4,
        },
    ];
    let mut allowed = 0;
    let mut total = 0;
    for (n, shape) in shapes.iter().enumerate() {
        // Casbin is slow on large policies in a debug build, so the largest shape gets fewer
        // seeds and requests.
        let (seeds, count) = if shape.lines > 1_000 {
            (&[1_u64][..], 400)
        } else {
            (&[1_u64, 2, 3][..], 1_000)
        };
        for &seed in seeds {
            let csv = generate::policy_csv(shape, seed * 1000 + n as u64);
            let rbac = load(dir.path(), &csv).await;
            let requests = generate::requests(shape, seed, count);
            allowed += compare(&rbac, &requests, &format!("shape {n} seed {seed}"));
            total += requests.len();
        }
    }
    // The comparison means something only if both outcomes occur often.
    assert!(
        allowed > total / 20 && allowed < total - total / 20,
        "{allowed} of {total} allowed"
    );
}

#[tokio::test]
async fn index_and_casbin_agree_on_deep_and_cyclic_inheritance() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A chain of 15 roles (deeper than Casbin's default hierarchy limit of 10), a cycle, and a
    // tenant where the chain is broken.
    let mut csv = String::from(
        "p, r0, t, tool:u/deep, call, allow\np, r14, t, tool:u/top, call, allow\n\
         p, loop-b, *, tool:u/loop, call, allow\np, r7, *, tool:u/deep, call, deny\n",
    );
    for i in 0..14 {
        csv.push_str(&format!("g, r{}, r{i}, t\n", i + 1));
    }
    csv.push_str("g, user:deep, r14, t\ng, user:mid, r3, t\ng, user:deep, r14, other\n");
    csv.push_str("g, loop-a, loop-b, t\ng, loop-b, loop-a, t\ng, user:looper, loop-a, t\n");
    let rbac = load(dir.path(), &csv).await;
    let mut requests = Vec::new();
    for subject in ["deep", "mid", "looper", "nobody"] {
        for tenant in ["t", "other", "*"] {
            for roles in [&[][..], &["r14"], &["r3", "loop-a"], &["user:deep"]] {
                for name in ["deep", "top", "loop", "none"] {
                    requests.push(Request {
                        principal: principal(subject, roles, Some(tenant)),
                        upstream: "u".to_owned(),
                        op: tool(name),
                    });
                }
            }
        }
    }
    let allowed = compare(&rbac, &requests, "inheritance");
    assert!(allowed > 0);
    let d = rbac
        .decide(&principal("looper", &[], Some("t")), "u", &tool("loop"))
        .expect("decide");
    assert!(d.is_allowed(), "{d:?}");
}

#[tokio::test]
async fn index_and_casbin_agree_on_odd_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = "\
p, r, *, tool:*/*, call, allow
p, r, default, resource:u/**, read, allow
p, r, default, \"tool:u/{a,b}*\", *, deny
p, user:x, *, prompt:u/[!a]*, get, allow
g, user:x, r, default
g, user:x, r, *weird
";
    let rbac = load(dir.path(), csv).await;
    let odd = [
        "",
        "*",
        "**",
        "/",
        "//",
        "a/b",
        "{a,b}",
        "[",
        "\\",
        "é€😀",
        "\0",
        "user:x",
        "a",
        "b1",
    ];
    let mut requests = Vec::new();
    for s in odd {
        for (subject, tenant) in [("x", Some(s)), (s, None), ("x", Some("*")), ("x", None)] {
            let ops = [
                tool(s),
                Operation::new(Method::ResourcesRead, Target::Resource(s.to_owned())),
                Operation::new(Method::PromptsGet, Target::Prompt(s.to_owned())),
                Operation::new(
                    Method::SubscriptionsListen,
                    Target::Resources(vec![s.to_owned(), "ok".to_owned()]),
                ),
            ];
            for op in ops {
                for upstream in [s, "u"] {
                    requests.push(Request {
                        principal: principal(subject, &[s, "r"], tenant),
                        upstream: upstream.to_owned(),
                        op: op.clone(),
                    });
                }
            }
        }
    }
    compare(&rbac, &requests, "odd input");
}
