//! Rate limits and quotas: token buckets per principal, per tenant or shared by everyone, for
//! the calls a rule selects (routes, methods, target globs), defined in a TOML file next to the
//! policy (`policy.quotas_file`) and reloaded when it changes, without a restart.
//!
//! ```toml
//! [[quota]]
//! name = "deletes"             # names the rule in records and metrics
//! key = "principal"            # principal (issuer + subject, the default) | tenant | all
//! upstreams = ["tickets"]      # default: every route
//! methods = ["tools/call"]     # globs; default: every method
//! targets = ["delete_*"]       # globs over the target (tool name, URI...); default: any
//! rate = 10                    # tokens gained per `per`
//! per = "minute"               # second | minute | hour | day
//! burst = 20                   # most at once; default `rate`
//! ```
//!
//! A call is checked after the policy allowed it (a refused call spends nothing) against every
//! rule that selects it; it passes only if each rule's bucket holds a token, and then takes one
//! from each. Over a quota it is answered 429 `quota_exceeded` with `Retry-After`, and its
//! decision record (reason `quota_exceeded`, `matched_rule` naming the quota) is written like
//! any refusal. Buckets live in this gateway's memory: with several replicas each enforces the
//! quota on its own, so the total admitted is at most the number of replicas times the quota.
//!
//! A file that does not parse or validate is refused: at start-up the gateway does not start;
//! on reload the rules in force stay, the failure is logged and counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_types::{Operation, Principal};
use serde::Deserialize;
use tokio::time::Instant;

use crate::buckets::{Bucket, Rate};
use crate::scopes::Glob;

/// Buckets kept at most; past it, full buckets (which a fresh one would equal) are forgotten.
const MAX_BUCKETS: usize = 1_000_000;

/// Whose calls share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyBy {
    Principal,
    Tenant,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
            Per::Day => 86_400,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    quota: Vec<RawQuota>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    name: String,
    #[serde(default = "default_key")]
    key: KeyBy,
    #[serde(default)]
    upstreams: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
    rate: u64,
    per: Per,
    burst: Option<u64>,
}

fn default_key() -> KeyBy {
    KeyBy::Principal
}

/// One validated quota rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    key: KeyBy,
    upstreams: Vec<String>,
    methods: Vec<Glob>,
    targets: Vec<Glob>,
    rate: Rate,
}

impl Rule {
    fn selects(&self, upstream: &str, op: &Operation) -> bool {
        (self.upstreams.is_empty() || self.upstreams.iter().any(|u| u == upstream))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.is_match(op.method.as_str())))
            && (self.targets.is_empty()
                || op
                    .target
                    .display()
                    .is_some_and(|t| self.targets.iter().any(|g| g.is_match(&t))))
    }

    fn key_of(&self, principal: &Principal) -> String {
        match self.key {
            KeyBy::Principal => format!("{}\n{}", principal.issuer, principal.subject),
            KeyBy::Tenant => principal.tenant_or_default().to_owned(),
            KeyBy::All => String::new(),
        }
    }
}

/// A quota file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {key}: {problem}")]
pub(crate) struct QuotaFileError {
    pub(crate) path: String,
    /// The offending key, e.g. `quota[1].per` (or `<file>`).
    pub(crate) key: String,
    pub(crate) problem: String,
}

/// Parses and validates a quota file's text.
fn parse(path: &Path, text: &str) -> Result<Vec<Rule>, QuotaFileError> {
    let error = |key: String, problem: String| QuotaFileError {
        path: path.display().to_string(),
        key,
        problem,
    };
    let de = toml::Deserializer::parse(text).map_err(|e| error("<file>".into(), e.to_string()))?;
    let raw: RawFile = serde_path_to_error::deserialize(de)
        .map_err(|e| error(e.path().to_string(), e.inner().to_string()))?;
    let mut rules = Vec::with_capacity(raw.quota.len());
    for (i, q) in raw.quota.into_iter().enumerate() {
        let at = |field: &str| format!("quota[{i}].{field}");
        if q.name.is_empty() || q.name.chars().any(char::is_control) {
            return Err(error(
                at("name"),
                "must be a non-empty printable name".into(),
            ));
        }
        if rules.iter().any(|r: &Rule| r.name == q.name) {
            return Err(error(at("name"), format!("`{}` is used twice", q.name)));
        }
        if !(1..=1_000_000_000).contains(&q.rate) {
            return Err(error(
                at("rate"),
                format!("{} is out of range (1 to 10^9)", q.rate),
            ));
        }
        let burst = q.burst.unwrap_or(q.rate);
        if !(1..=1_000_000_000).contains(&burst) {
            return Err(error(
                at("burst"),
                format!("{burst} is out of range (1 to 10^9)"),
            ));
        }
        let globs = |field: &str, patterns: &[String]| -> Result<Vec<Glob>, QuotaFileError> {
            patterns
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    Glob::new(p).map_err(|e| error(format!("{}[{j}]", at(field)), e.to_string()))
                })
                .collect()
        };
        rules.push(Rule {
            methods: globs("methods", &q.methods)?,
            targets: globs("targets", &q.targets)?,
            name: q.name,
            key: q.key,
            upstreams: q.upstreams,
            rate: Rate {
                amount: q.rate,
                period: q.per.duration(),
                burst,
            },
        });
    }
    Ok(rules)
}

/// A call over a quota: which one, and how long until it would pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub(crate) quota: String,
    pub(crate) retry_after: Duration,
}

#[derive(Debug, Default)]
struct State {
    rules: Arc<Vec<Rule>>,
    /// Buckets by rule name and key.
    buckets: HashMap<(String, String), Bucket>,
    /// The file's text as last loaded.
    text: Option<String>,
    /// With a shared ledger: tokens taken per bucket since the last exchange.
    spent: HashMap<(String, String), u64>,
}

/// The quota rules in force and their buckets.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    file: Option<PathBuf>,
    /// Whether spending is exchanged with a shared ledger (see [`share`]).
    shared: bool,
    state: Mutex<State>,
    pub(crate) exchanges: std::sync::atomic::AtomicU64,
    pub(crate) failed_exchanges: std::sync::atomic::AtomicU64,
    pub(crate) reloads: std::sync::atomic::AtomicU64,
    pub(crate) failed_reloads: std::sync::atomic::AtomicU64,
    pub(crate) exceeded: std::sync::atomic::AtomicU64,
}

impl Quotas {
    /// The quotas of `file` (none without one); a file that cannot be used is an error. With
    /// `shared`, what is taken is recorded for [`share`] to exchange.
    pub(crate) fn load(file: Option<&Path>, shared: bool) -> Result<Self, QuotaFileError> {
        let quotas = Self {
            file: file.map(Path::to_owned),
            shared,
            ..Self::default()
        };
        if let Some(path) = file {
            let text = read(path)?;
            let rules = parse(path, &text)?;
            let mut state = quotas.lock();
            state.rules = Arc::new(rules);
            state.text = Some(text);
        }
        Ok(quotas)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many rules are in force.
    pub(crate) fn rule_count(&self) -> usize {
        self.lock().rules.len()
    }

    /// Checks a call of `principal` to `upstream` at `now`: passes and takes a token from every
    /// rule that selects it, or takes nothing and says which quota it exceeds (the one that
    /// frees up last).
    pub(crate) fn check(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let mut state = self.lock();
        if state.rules.is_empty() {
            return Ok(());
        }
        let rules = Arc::clone(&state.rules);
        let selected: Vec<(&Rule, (String, String))> = rules
            .iter()
            .filter(|r| r.selects(upstream, op))
            .map(|r| (r, (r.name.clone(), r.key_of(principal))))
            .collect();
        let mut worst: Option<Exceeded> = None;
        for (rule, key) in &selected {
            let bucket = state.buckets.get(key).map_or_else(
                || Bucket::full(now, &rule.rate),
                |b| b.refilled(now, &rule.rate),
            );
            if !bucket.has_one(&rule.rate) {
                let retry_after = bucket.wait(&rule.rate).unwrap_or(Duration::MAX);
                if worst.as_ref().is_none_or(|w| retry_after > w.retry_after) {
                    worst = Some(Exceeded {
                        quota: rule.name.clone(),
                        retry_after,
                    });
                }
            }
        }
        if let Some(exceeded) = worst {
            self.exceeded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(exceeded);
        }
        if state.buckets.len() >= MAX_BUCKETS {
            forget_full(&mut state.buckets, &rules, now);
        }
        for (rule, key) in selected {
            if self.shared {
                *state.spent.entry(key.clone()).or_default() += 1;
            }
            let entry = state
                .buckets
                .entry(key)
                .or_insert_with(|| Bucket::full(now, &rule.rate));
            let mut bucket = entry.refilled(now, &rule.rate);
            bucket.take_one(&rule.rate);
            *entry = bucket;
        }
        Ok(())
    }

    /// One exchange with the shared ledger: hands over what was taken since the last one and
    /// takes in every bucket changed since `since_ms` (minus what was taken here meanwhile).
    /// Returns the time of this exchange. On failure what was taken is kept for the next one.
    pub(crate) async fn exchange(
        &self,
        ledger: &authz_rbac::QuotaLedger,
        since_ms: i64,
    ) -> Result<i64, authz_rbac::Error> {
        let now_ms = authz_types::now_unix_ms();
        let spent = std::mem::take(&mut self.lock().spent);
        let spends: Vec<authz_rbac::Spend> = {
            let state = self.lock();
            spent
                .iter()
                .filter_map(|((quota, key), &taken)| {
                    let rule = state.rules.iter().find(|r| &r.name == quota)?;
                    Some(authz_rbac::Spend {
                        quota: quota.clone(),
                        key: key.clone(),
                        taken,
                        amount: rule.rate.amount,
                        period_ms: u64::try_from(rule.rate.period.as_millis()).unwrap_or(u64::MAX),
                        burst: rule.rate.burst,
                    })
                })
                .collect()
        };
        let levels = match ledger.exchange(&spends, now_ms, since_ms).await {
            Ok(levels) => levels,
            Err(e) => {
                let mut state = self.lock();
                for (key, taken) in spent {
                    *state.spent.entry(key).or_default() += taken;
                }
                self.failed_exchanges
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        let now = Instant::now();
        let mut state = self.lock();
        let rules = Arc::clone(&state.rules);
        for level in levels {
            let Some(rule) = rules.iter().find(|r| r.name == level.quota) else {
                continue;
            };
            let age = Duration::from_millis(u64::try_from(now_ms - level.updated_ms).unwrap_or(0));
            let at = now.checked_sub(age).unwrap_or(now);
            let mut bucket =
                Bucket::with_micro(level.micro, at, &rule.rate).refilled(now, &rule.rate);
            let key = (level.quota, level.key);
            // Taken here during the exchange: not in the ledger yet.
            for _ in 0..state.spent.get(&key).copied().unwrap_or(0) {
                bucket.take_one(&rule.rate);
            }
            state.buckets.insert(key, bucket);
        }
        self.exchanges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(now_ms)
    }

    /// Reloads the file if it changed since it was last read. Buckets of rules that kept their
    /// name and rate carry over; the others start full. On a file that cannot be used, the
    /// rules in force stay and the error is returned.
    pub(crate) fn reload_if_changed(&self, now: Instant) -> Result<bool, QuotaFileError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let fail = |e: QuotaFileError| {
            self.failed_reloads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            e
        };
        let text = read(path).map_err(fail)?;
        if self.lock().text.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let rules = parse(path, &text).map_err(fail)?;
        let mut state = self.lock();
        let kept: HashMap<&str, Rate> = rules.iter().map(|r| (r.name.as_str(), r.rate)).collect();
        let old = Arc::clone(&state.rules);
        state.buckets.retain(|(name, _), _| {
            old.iter()
                .find(|r| &r.name == name)
                .is_some_and(|r| kept.get(name.as_str()) == Some(&r.rate))
        });
        state.rules = Arc::new(rules);
        state.text = Some(text);
        let rules = Arc::clone(&state.rules);
        forget_full(&mut state.buckets, &rules, now);
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }
}

fn forget_full(buckets: &mut HashMap<(String, String), Bucket>, rules: &[Rule], now: Instant) {
    buckets.retain(|(name, _), b| {
        rules
            .iter()
            .find(|r| &r.name == name)
            .is_some_and(|r| !b.refilled(now, &r.rate).is_full(&r.rate))
    });
}

/// The file's text (it is small, and comparing it is simpler and surer than timestamps).
fn read(path: &Path) -> Result<String, QuotaFileError> {
    std::fs::read_to_string(path).map_err(|e| QuotaFileError {
        path: path.display().to_string(),
        key: "<file>".into(),
        problem: e.to_string(),
    })
}

/// Reads the quota file every `interval` and applies it when it changed, for the life of the gateway.
pub(crate) async fn watch(quotas: Arc<Quotas>, interval: Duration) {
    if quotas.file.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match quotas.reload_if_changed(Instant::now()) {
            Ok(true) => tracing::info!(rules = quotas.rule_count(), "quota file reloaded"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "quota file refused; the quotas in force stay"),
        }
    }
}

/// How far back each exchange reads beyond the previous one, for clock differences between
/// replicas (rows carry the writer's clock).
const CLOCK_MARGIN_MS: i64 = 2_000;

/// Buckets of the ledger not written for this long are deleted (they have long refilled).
const LEDGER_RETENTION_MS: i64 = 32 * 86_400_000;

/// Exchanges spending with the shared `ledger` every `interval`, for the life of the gateway.
/// A failed exchange is logged and counted; each replica keeps enforcing from its own buckets
/// meanwhile.
pub(crate) async fn share(
    quotas: Arc<Quotas>,
    ledger: authz_rbac::QuotaLedger,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_ms = 0;
    let mut exchanges = 0u64;
    loop {
        tick.tick().await;
        match quotas.exchange(&ledger, since_ms).await {
            Ok(at) => since_ms = at - CLOCK_MARGIN_MS,
            Err(error) => {
                let error = format!("{:#}", anyhow::Error::new(error));
                tracing::warn!(%error, "quota ledger exchange failed; enforcing locally");
            }
        }
        exchanges += 1;
        if exchanges % 4096 == 1 {
            let before = authz_types::now_unix_ms() - LEDGER_RETENTION_MS;
            if let Err(error) = ledger.prune(before).await {
                let error = format!("{:#}", anyhow::Error::new(error));
                tracing::warn!(%error, "quota ledger prune failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::{Method, Target};

    fn principal(subject: &str, tenant: &str) -> Principal {
        Principal {
            subject: subject.to_owned(),
            issuer: "https://idp.example".to_owned(),
            tenant: Some(tenant.to_owned()),
            client_id: None,
            actors: Vec::new(),
            scopes: Vec::new(),
            roles: Vec::new(),
            token_id: None,
            expires_at: i64::MAX,
            issued_at: None,
            claims: Default::default(),
        }
    }

    fn call(tool: &str) -> Operation {
        Operation::new(
            Method::from_name("tools/call"),
            Target::Tool(tool.to_owned()),
        )
    }

    fn quotas(text: &str) -> Quotas {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("quotas.toml");
        std::fs::write(&path, text).expect("write");
        Quotas::load(Some(&path), false).expect("valid")
    }

    const DELETES: &str = "[[quota]]\nname = \"deletes\"\nmethods = [\"tools/call\"]\n\
        targets = [\"delete_*\"]\nrate = 2\nper = \"second\"\nburst = 3\n";

    #[test]
    fn a_bucket_per_principal_with_exact_refill() {
        let q = quotas(DELETES);
        let (alice, bob) = (principal("alice", "acme"), principal("bob", "acme"));
        let t0 = Instant::now();
        for _ in 0..3 {
            q.check(&alice, "tickets", &call("delete_ticket"), t0)
                .expect("within the burst");
        }
        let over = q
            .check(&alice, "tickets", &call("delete_ticket"), t0)
            .expect_err("the burst is spent");
        assert_eq!(over.quota, "deletes");
        assert_eq!(over.retry_after, Duration::from_millis(500));
        // Another principal, or a call the rule does not select, is unaffected.
        q.check(&bob, "tickets", &call("delete_ticket"), t0)
            .expect("bob's own bucket");
        q.check(&alice, "tickets", &call("get_ticket"), t0)
            .expect("not selected");
        // A refused call takes nothing: after 499 ms still 1 ms to wait, after 500 ms one passes.
        let t1 = t0 + Duration::from_millis(499);
        let over = q
            .check(&alice, "tickets", &call("delete_ticket"), t1)
            .expect_err("early");
        assert_eq!(over.retry_after, Duration::from_millis(1));
        let t2 = t0 + Duration::from_millis(500);
        q.check(&alice, "tickets", &call("delete_ticket"), t2)
            .expect("refilled");
        assert!(
            q.check(&alice, "tickets", &call("delete_ticket"), t2)
                .is_err()
        );
        assert_eq!(q.exceeded.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_paused_clock_the_bucket_refills_exactly_at_its_rate() {
        // 5 per minute, burst 2: a token every 12 s.
        let q = quotas("[[quota]]\nname = \"calls\"\nrate = 5\nper = \"minute\"\nburst = 2\n");
        let alice = principal("alice", "acme");
        let op = call("get_ticket");
        for _ in 0..2 {
            q.check(&alice, "tickets", &op, Instant::now())
                .expect("the burst");
        }
        let over = q
            .check(&alice, "tickets", &op, Instant::now())
            .expect_err("spent");
        assert_eq!(over.retry_after, Duration::from_secs(12));
        tokio::time::advance(Duration::from_millis(11_999)).await;
        let over = q
            .check(&alice, "tickets", &op, Instant::now())
            .expect_err("1 ms early");
        assert_eq!(over.retry_after, Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.check(&alice, "tickets", &op, Instant::now())
            .expect("exactly on time");
        // A long pause refills to the burst and no further.
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..2 {
            q.check(&alice, "tickets", &op, Instant::now())
                .expect("the burst again");
        }
        assert!(q.check(&alice, "tickets", &op, Instant::now()).is_err());
    }

    #[test]
    fn tenant_and_shared_keys_and_every_selecting_rule_must_pass() {
        let q = quotas(
            "[[quota]]\nname = \"tenant\"\nkey = \"tenant\"\nrate = 3\nper = \"minute\"\n\
             [[quota]]\nname = \"everyone\"\nkey = \"all\"\nupstreams = [\"billing\"]\n\
             rate = 1\nper = \"hour\"\n",
        );
        let t0 = Instant::now();
        let (a, b, c) = (
            principal("a", "acme"),
            principal("b", "acme"),
            principal("c", "other"),
        );
        q.check(&a, "tickets", &call("x"), t0).expect("1");
        q.check(&b, "tickets", &call("x"), t0).expect("2");
        q.check(&a, "tickets", &call("x"), t0).expect("3");
        let over = q
            .check(&b, "tickets", &call("x"), t0)
            .expect_err("acme spent 3");
        assert_eq!(
            (over.quota.as_str(), over.retry_after),
            ("tenant", Duration::from_secs(20))
        );
        q.check(&c, "tickets", &call("x"), t0)
            .expect("another tenant");
        // billing: both rules select; one per hour for everyone.
        q.check(&c, "billing", &call("x"), t0)
            .expect("first billing call");
        let over = q
            .check(&c, "billing", &call("x"), t0)
            .expect_err("shared bucket");
        assert_eq!(
            (over.quota.as_str(), over.retry_after),
            ("everyone", Duration::from_secs(3600))
        );
        // The refused call took nothing from c's tenant bucket: one more tickets call passes.
        q.check(&c, "tickets", &call("x"), t0)
            .expect("c's tenant has 1 left");
    }

    #[test]
    fn mistakes_name_their_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.toml");
        let cases = [
            (
                "[[quota]]\nname = \"a\"\nrate = 1\nper = \"week\"\n",
                "quota[0].per",
            ),
            (
                "[[quota]]\nname = \"a\"\nrate = 0\nper = \"day\"\n",
                "quota[0].rate",
            ),
            (
                "[[quota]]\nname = \"a\"\nrate = 1\nper = \"day\"\nburst = 0\n",
                "quota[0].burst",
            ),
            (
                "[[quota]]\nname = \"a\"\nrate = 1\nper = \"day\"\nlimit = 3\n",
                "quota[0]",
            ),
            (
                "[[quota]]\nname = \"a\"\nrate = 1\nper = \"day\"\ntargets = [\"[x\"]\n",
                "quota[0].targets[0]",
            ),
            (
                "[[quota]]\nname = \"a\"\nrate = 1\nper = \"day\"\n\
                 [[quota]]\nname = \"a\"\nrate = 1\nper = \"day\"\n",
                "quota[1].name",
            ),
            ("[[quota]\n", "<file>"),
        ];
        for (text, key) in cases {
            std::fs::write(&path, text).expect("write");
            let err = Quotas::load(Some(&path), false).expect_err(key);
            assert!(err.key.starts_with(key), "{key}: {err}");
        }
        assert!(Quotas::load(Some(&dir.path().join("missing.toml")), false).is_err());
        assert_eq!(
            Quotas::load(None, false)
                .expect("no file, no quotas")
                .rule_count(),
            0
        );
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.toml");
        std::fs::write(&path, DELETES).expect("write");
        let q = Quotas::load(Some(&path), false).expect("valid");
        let alice = principal("alice", "acme");
        let t0 = Instant::now();
        for _ in 0..3 {
            q.check(&alice, "tickets", &call("delete_ticket"), t0)
                .expect("burst");
        }
        assert!(!q.reload_if_changed(t0).expect("unchanged"));
        // A broken edit: refused, the old rules (and their spent bucket) stay.
        std::fs::write(&path, "[[quota]]\nname = 1\n").expect("write");
        assert!(q.reload_if_changed(t0).is_err());
        assert!(
            q.check(&alice, "tickets", &call("delete_ticket"), t0)
                .is_err()
        );
        assert_eq!(
            q.failed_reloads.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // A new rate: reloaded, the rule's buckets start full.
        std::fs::write(&path, DELETES.replace("burst = 3", "burst = 10")).expect("write");
        assert!(q.reload_if_changed(t0).expect("reloaded"));
        for _ in 0..10 {
            q.check(&alice, "tickets", &call("delete_ticket"), t0)
                .expect("new burst");
        }
        assert!(
            q.check(&alice, "tickets", &call("delete_ticket"), t0)
                .is_err()
        );
        // Removing every rule lifts the quota.
        std::fs::write(&path, "# no quotas\n").expect("write");
        assert!(q.reload_if_changed(t0).expect("reloaded"));
        q.check(&alice, "tickets", &call("delete_ticket"), t0)
            .expect("no rules");
        assert_eq!(q.reloads.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    /// Two replicas with the same quota file and one ledger: what one spends, the other sees
    /// after an exchange, and the total admitted stays within the stated bound.
    async fn replicas_share_spending(url: &str) {
        let ledger = authz_rbac::QuotaLedger::connect(url).await.expect("ledger");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.toml");
        std::fs::write(
            &path,
            DELETES
                .replace("rate = 2", "rate = 1")
                .replace("\"second\"", "\"hour\""),
        )
        .expect("write");
        let a = Quotas::load(Some(&path), true).expect("a");
        let b = Quotas::load(Some(&path), true).expect("b");
        let alice = principal("alice", "acme");
        let delete = call("delete_ticket");
        let now = Instant::now();
        // Replica a spends the whole burst (3) and tells the ledger.
        for _ in 0..3 {
            a.check(&alice, "tickets", &delete, now)
                .expect("a within the burst");
        }
        let since = a.exchange(&ledger, 0).await.expect("a exchanges");
        // Replica b has not spent anything, but learns of a's spending: its bucket is empty.
        b.exchange(&ledger, 0).await.expect("b exchanges");
        let over = b
            .check(&alice, "tickets", &delete, Instant::now())
            .expect_err("b knows the quota is spent");
        assert_eq!(over.quota, "deletes");
        assert!(over.retry_after > Duration::from_secs(3500), "{over:?}");
        // Another principal is unaffected on either replica.
        b.check(
            &principal("bob", "acme"),
            "tickets",
            &delete,
            Instant::now(),
        )
        .expect("bob's own bucket");
        // Before an exchange a replica enforces alone: a fresh replica c admits up to one burst
        // (the stated bound), and after its exchange the ledger is at zero for everyone.
        let c = Quotas::load(Some(&path), true).expect("c");
        let mut admitted = 0;
        while c.check(&alice, "tickets", &delete, Instant::now()).is_ok() {
            admitted += 1;
        }
        assert_eq!(
            admitted, 3,
            "at most one burst beyond the quota before an exchange"
        );
        c.exchange(&ledger, since).await.expect("c exchanges");
        a.exchange(&ledger, since).await.expect("a exchanges again");
        assert!(a.check(&alice, "tickets", &delete, Instant::now()).is_err());
        assert_eq!(a.exchanges.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn replicas_share_spending_through_a_sqlite_ledger() {
        let db = authz_test_support::TestDatabase::sqlite("quota.db");
        replicas_share_spending(db.url()).await;
    }

    #[tokio::test]
    #[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
    async fn replicas_share_spending_through_a_postgres_ledger() {
        let db = authz_test_support::TestDatabase::postgres().await;
        replicas_share_spending(db.url()).await;
    }
}
