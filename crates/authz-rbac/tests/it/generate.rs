//! Seeded generators of policies and requests, shared by the equivalence tests and the decision
//! benchmark (`benches/decide.rs` includes this file).
//!
//! A generated policy looks like a multi-tenant deployment: per tenant a few dozen roles with
//! tool, resource and prompt rules on a handful of upstreams (literal names, `prefix*`,
//! alternations, `**`), some deny rules, some `*`-tenant rules, role inheritance, and users
//! holding one to three roles.

#![allow(dead_code)]

use authz_types::{Method, Operation, Principal, Target};

/// A small, fast, seeded random source (SplitMix64); no dependency needed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The shape of a generated policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Total policy lines (`p` and `g`).
    pub lines: usize,
    pub tenants: usize,
    pub users: usize,
    pub roles_per_tenant: usize,
    pub upstreams: usize,
}

impl Shape {
    /// The benchmark's shape: 50 tenants, 1k users.
    pub(crate) fn bench(lines: usize) -> Self {
        Self {
            lines,
            tenants: 50,
            users: 1000,
            roles_per_tenant: 20,
            upstreams: 5,
        }
    }
}

pub(crate) const TOOLS: &[&str] = &[
    "get_ticket",
    "list_tickets",
    "create_ticket",
    "delete_ticket",
    "get_user",
    "list_users",
    "search",
    "export",
    "a",
    "b_c",
];
pub(crate) const URIS: &[&str] = &["tickets://open", "tickets://closed/1", "files/a/b.txt", "x"];
const ACTIONS: &[&str] = &["call", "read", "subscribe", "get", "complete", "task", "*"];

pub(crate) fn tenant_name(t: usize) -> String {
    format!("tenant{t}")
}

pub(crate) fn role_name(t: usize, r: usize) -> String {
    // Roles are shared by name across tenants, as real deployments do.
    let _ = t;
    format!("role{r}")
}

pub(crate) fn upstream_name(u: usize) -> String {
    format!("up{u}")
}

fn object_pattern(rng: &mut Rng, shape: &Shape) -> String {
    let upstream = if rng.chance(3) {
        "*".to_owned()
    } else {
        upstream_name(rng.below(shape.upstreams))
    };
    match rng.below(10) {
        0..=3 => format!("tool:{upstream}/{}", rng.pick(TOOLS)),
        4..=5 => {
            let tool = rng.pick(TOOLS);
            let cut = 1 + rng.below(tool.len().max(2) - 1);
            format!("tool:{upstream}/{}*", &tool[..cut.min(tool.len())])
        }
        6 => format!("tool:{upstream}/{{get,list}}_*"),
        7 => format!("resource:{upstream}/**"),
        8 => format!("resource:{upstream}/tickets://*"),
        _ => match rng.below(3) {
            0 => format!("prompt:{upstream}/*"),
            1 => format!("task:{upstream}/[a-c]*"),
            _ => format!("tool:{upstream}/*"),
        },
    }
}

/// A policy CSV of about `shape.lines` lines.
pub(crate) fn policy_csv(shape: &Shape, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    let g_lines = (shape.lines / 5).max(1);
    let p_lines = shape.lines.saturating_sub(g_lines).max(1);
    for i in 0..p_lines {
        let t = i % shape.tenants;
        let tenant = if rng.chance(2) {
            "*".to_owned()
        } else {
            tenant_name(t)
        };
        let role = if rng.chance(3) {
            format!("user:u{}", rng.below(shape.users))
        } else {
            role_name(t, (i / shape.tenants) % shape.roles_per_tenant)
        };
        let action = if rng.chance(70) {
            "call"
        } else {
            rng.pick(ACTIONS)
        };
        let effect = if rng.chance(6) { "deny" } else { "allow" };
        let object = object_pattern(&mut rng, shape);
        let object = if object.contains(',') {
            format!("\"{object}\"")
        } else {
            object
        };
        out.push_str(&format!(
            "p, {role}, {tenant}, {object}, {action}, {effect}\n"
        ));
    }
    for i in 0..g_lines {
        // User `u` holds roles in tenant `u % tenants` first, then in other tenants.
        let user = i % shape.users;
        let t = (user + (i / shape.users) * 7) % shape.tenants;
        if i % 10 == 9 {
            // Role inheritance, cycles included now and then.
            let a = rng.below(shape.roles_per_tenant);
            let b = rng.below(shape.roles_per_tenant);
            if a != b {
                out.push_str(&format!(
                    "g, {}, {}, {}\n",
                    role_name(t, a),
                    role_name(t, b),
                    tenant_name(t)
                ));
            }
        } else {
            out.push_str(&format!(
                "g, user:u{user}, {}, {}\n",
                role_name(t, rng.below(shape.roles_per_tenant)),
                tenant_name(t)
            ));
        }
    }
    out
}

/// One request: who, on which upstream, doing what.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub principal: Principal,
    pub upstream: String,
    pub op: Operation,
}

/// `count` requests against a policy of `shape`: mostly users in tenants where they may hold
/// roles, sometimes token roles, odd tenants and unknown upstreams.
pub(crate) fn requests(shape: &Shape, seed: u64, count: usize) -> Vec<Request> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    (0..count)
        .map(|_| {
            let mut roles = Vec::new();
            if rng.chance(20) {
                roles.push(role_name(0, rng.below(shape.roles_per_tenant)));
            }
            if rng.chance(3) {
                roles.push("user:u1".to_owned());
            }
            let user = rng.below(shape.users);
            let tenant = match rng.below(20) {
                0 => None,
                1 => Some("*".to_owned()),
                2..=5 => Some(tenant_name(rng.below(shape.tenants))),
                // Mostly the tenant where the user holds roles.
                _ => Some(tenant_name(user % shape.tenants)),
            };
            let principal = Principal {
                subject: format!("u{user}"),
                issuer: "https://idp.example".to_owned(),
                tenant,
                client_id: None,
                actors: vec![],
                scopes: vec![],
                roles,
                token_id: None,
                expires_at: 0,
                issued_at: None,
                claims: Default::default(),
            }
            .normalize();
            let upstream = if rng.chance(5) {
                "unknown".to_owned()
            } else {
                upstream_name(rng.below(shape.upstreams))
            };
            let op = match rng.below(12) {
                0 => Operation::new(
                    Method::ResourcesRead,
                    Target::Resource((*rng.pick(URIS)).to_owned()),
                ),
                1 => Operation::new(
                    Method::ResourcesSubscribe,
                    Target::Resource((*rng.pick(URIS)).to_owned()),
                ),
                2 => Operation::new(
                    Method::SubscriptionsListen,
                    Target::Resources(vec![
                        (*rng.pick(URIS)).to_owned(),
                        (*rng.pick(URIS)).to_owned(),
                    ]),
                ),
                3 => Operation::new(Method::PromptsGet, Target::Prompt("triage".to_owned())),
                4 => Operation::new(Method::TasksGet, Target::Task("abc".to_owned())),
                _ => Operation::new(
                    Method::ToolsCall,
                    Target::Tool((*rng.pick(TOOLS)).to_owned()),
                ),
            };
            Request {
                principal,
                upstream,
                op,
            }
        })
        .collect()
}
