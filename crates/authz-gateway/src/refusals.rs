//! Refusals of requests without an identity, kept from flooding the audit store or the gateway.
//!
//! A request without a valid token is cheap to send, and each one used to write a row. Two
//! measures, both keyed by the client's address (an IPv6 client by its /64, the smallest block
//! one subscriber usually holds, so rotating addresses within it gains nothing):
//!
//! - **Aggregation.** The first refusal of a kind — same client, route, HTTP method, reason and
//!   status — in a window (`server.refusal_aggregate_window_ms`) is recorded as usual. Identical
//!   ones after it in that window are only counted; when the window closes, one record stands
//!   for them, with `repeat_count`, `first_time_ms` and `time_ms` (the last). So a flood leaves
//!   at most two rows per kind and window, and the trail still shows who, what and how many.
//!   Refusals of an authenticated principal are never aggregated: each is its own record.
//! - **A rate limit** per client (`server.unauthenticated_per_client_per_sec`, burst
//!   `server.unauthenticated_burst_per_client`; a token bucket drained by each unauthenticated
//!   refusal). A client over it is answered 429 `client_rate_limited` with `Retry-After`
//!   instead of 401, aggregated the same way. A request from that address with a valid token is
//!   still served: a neighbour behind the same NAT cannot lock a legitimate client out.
//!
//! Aggregated counts live in memory until their window closes; a crash loses at most one window
//! of counts, never a first record. A record the writer cannot take is kept and retried at the
//! next window, not dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use authz_types::{AuditRecord, ReasonCode};
use tokio::time::Instant;

use crate::buckets::{Bucket, Rate};

/// The limits of [`UnauthenticatedRefusals`] (the `[server]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefusalLimits {
    /// Unauthenticated refusals a client may cause per second, on average; 0 turns the rate
    /// limit off (aggregation stays).
    pub per_client_per_sec: u32,
    /// How many it may cause at once after a quiet spell.
    pub burst_per_client: u32,
    /// How long identical refusals are counted before their aggregate record is written; zero
    /// turns aggregation off (every refusal is its own record).
    pub aggregate_window: Duration,
}

/// Client keys tracked at most (buckets and open windows each); past it, windows are closed
/// early and full buckets forgotten, so a spread-out flood costs memory within a bound.
const MAX_TRACKED: usize = 65_536;

/// Who a refusal is attributed to: an IPv4 address, or the /64 of an IPv6 one (IPv4-mapped IPv6
/// addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

impl ClientKey {
    pub(crate) fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }

    /// As recorded: the address, or `<prefix>/64`.
    fn label(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("{v6}/64"),
        }
    }
}

/// What makes two refusals identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    client: ClientKey,
    upstream: String,
    method: &'static str,
    reason: ReasonCode,
    status: u16,
}

/// HTTP methods as recorded in a kind: the ones MCP uses by name, anything else as `OTHER`, so
/// invented method names do not make every request a kind of its own.
fn method_label(method: &str) -> &'static str {
    match method {
        "POST" => "POST",
        "GET" => "GET",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        // `POST /token` records its refusals under this name.
        "token/exchange" => "token/exchange",
        _ => "OTHER",
    }
}

/// Identical refusals counted in the current window, after its first (recorded) one.
#[derive(Debug, Clone, Copy)]
struct Counted {
    count: i64,
    first_ms: i64,
    last_ms: i64,
}

impl RefusalLimits {
    /// The bucket rate of the per-client limit.
    fn rate(&self) -> Rate {
        Rate {
            amount: self.per_client_per_sec.into(),
            period: Duration::from_secs(1),
            burst: self.burst_per_client.into(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<ClientKey, Bucket>,
    /// Kinds seen in the current window: `None` until a second one arrives.
    windows: HashMap<Kind, Option<Counted>>,
    /// Aggregate records the writer did not take, retried at the next flush.
    unwritten: Vec<AuditRecord>,
}

/// What was refused, as far as aggregation tells refusals apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused<'a> {
    pub(crate) upstream: &'a str,
    pub(crate) method: &'a str,
    pub(crate) reason: ReasonCode,
    pub(crate) status: u16,
}

/// Whether a refusal is recorded now or counted into its window's aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The first of its kind in this window: record it as usual.
    Record,
    /// Counted; its aggregate record is written when the window closes.
    Counted,
}

/// Unauthenticated refusals: the per-client rate limit and the aggregation windows.
#[derive(Debug)]
pub(crate) struct UnauthenticatedRefusals {
    /// The rate and burst may change on a `SIGHUP` reload; the window stays as started.
    limits: std::sync::RwLock<RefusalLimits>,
    state: Mutex<State>,
}

impl UnauthenticatedRefusals {
    pub(crate) fn new(limits: RefusalLimits) -> Self {
        Self {
            limits: std::sync::RwLock::new(limits),
            state: Mutex::default(),
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> RefusalLimits {
        *self
            .limits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the per-client rate and burst (the aggregation window is kept); buckets keep what
    /// they hold and refill at the new rate.
    pub(crate) fn set_rate(&self, per_client_per_sec: u32, burst_per_client: u32) {
        let mut limits = self
            .limits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        limits.per_client_per_sec = per_client_per_sec;
        limits.burst_per_client = burst_per_client;
    }

    pub(crate) fn window(&self) -> Duration {
        self.limits().aggregate_window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(wait)` when `client` has used up its unauthenticated refusals: how long until it
    /// has one again (for `Retry-After`). Takes nothing from the bucket.
    pub(crate) fn over_budget(&self, client: ClientKey, now: Instant) -> Option<Duration> {
        let limits = self.limits();
        if limits.per_client_per_sec == 0 {
            return None;
        }
        let rate = limits.rate();
        let state = self.lock();
        let bucket = state.buckets.get(&client)?.refilled(now, &rate);
        if bucket.has_one(&rate) {
            return None;
        }
        bucket.wait(&rate)
    }

    /// Notes a refusal of a request without an identity, at `now` (`now_ms` in Unix ms): takes
    /// one from the client's bucket, unless the refusal is the rate limit's own 429, and says
    /// whether to record it or count it.
    pub(crate) fn note(
        &self,
        client: ClientKey,
        refused: Refused<'_>,
        now: Instant,
        now_ms: i64,
    ) -> Verdict {
        let limits = self.limits();
        let mut state = self.lock();
        if limits.per_client_per_sec > 0 && refused.reason != ReasonCode::ClientRateLimited {
            if state.buckets.len() >= MAX_TRACKED && !state.buckets.contains_key(&client) {
                forget_full_buckets(&mut state.buckets, now, &limits);
            }
            let rate = limits.rate();
            let bucket = state
                .buckets
                .entry(client)
                .or_insert_with(|| Bucket::full(now, &rate));
            let mut refilled = bucket.refilled(now, &rate);
            refilled.take_one(&rate);
            *bucket = refilled;
        }
        if limits.aggregate_window.is_zero() {
            return Verdict::Record;
        }
        let kind = Kind {
            client,
            upstream: refused.upstream.to_owned(),
            method: method_label(refused.method),
            reason: refused.reason,
            status: refused.status,
        };
        if state.windows.len() >= MAX_TRACKED && !state.windows.contains_key(&kind) {
            // Too many kinds at once: close the window early rather than grow without bound.
            let closed = close_window(&mut state.windows);
            state.unwritten.extend(closed);
        }
        match state.windows.get_mut(&kind) {
            None => {
                state.windows.insert(kind, None);
                Verdict::Record
            }
            Some(slot) => {
                let counted = slot.get_or_insert(Counted {
                    count: 0,
                    first_ms: now_ms,
                    last_ms: now_ms,
                });
                counted.count += 1;
                counted.last_ms = counted.last_ms.max(now_ms);
                Verdict::Counted
            }
        }
    }

    /// Closes the current window: the aggregate records of every kind counted in it (and any
    /// left unwritten before), for the caller to write. Buckets that have refilled are
    /// forgotten.
    pub(crate) fn close_window(&self, now: Instant) -> Vec<AuditRecord> {
        let limits = self.limits();
        let mut state = self.lock();
        let mut records = std::mem::take(&mut state.unwritten);
        records.extend(close_window(&mut state.windows));
        forget_full_buckets(&mut state.buckets, now, &limits);
        records
    }

    /// Puts back aggregate records the writer did not take, for the next window.
    pub(crate) fn put_back(&self, records: Vec<AuditRecord>) {
        self.lock().unwritten.extend(records);
    }

    /// Aggregate records waiting for the next window (counted, or not yet written).
    #[cfg(test)]
    fn pending(&self) -> usize {
        let state = self.lock();
        state.unwritten.len() + state.windows.values().filter(|c| c.is_some()).count()
    }
}

fn forget_full_buckets(
    buckets: &mut HashMap<ClientKey, Bucket>,
    now: Instant,
    limits: &RefusalLimits,
) {
    let rate = limits.rate();
    buckets.retain(|_, b| !b.refilled(now, &rate).is_full(&rate));
}

/// Empties `windows`, returning one aggregate record per kind that counted any refusals.
fn close_window(windows: &mut HashMap<Kind, Option<Counted>>) -> Vec<AuditRecord> {
    windows
        .drain()
        .filter_map(|(kind, counted)| Some(aggregate(&kind, counted?)))
        .collect()
}

/// The record standing for `counted` refusals of `kind`.
fn aggregate(kind: &Kind, counted: Counted) -> AuditRecord {
    let mut rec = AuditRecord::unauthenticated(
        uuid::Uuid::now_v7().simple().to_string(),
        kind.upstream.clone(),
        kind.method,
        kind.reason,
        kind.status,
    );
    rec.time_ms = counted.last_ms;
    rec.first_time_ms = Some(counted.first_ms);
    rec.repeat_count = Some(counted.count);
    rec.client_addr = Some(kind.client.label());
    rec
}

/// Closes a window every `window` and hands its aggregate records to the writer (buffered: no
/// request waits for them), for the life of the gateway.
pub(crate) async fn run(
    refusals: std::sync::Arc<UnauthenticatedRefusals>,
    writer: authz_audit::AuditWriter,
) {
    if refusals.window().is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(refusals.window());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        flush(&refusals, &writer).await;
    }
}

/// Writes the aggregate records of the current window now (also at shutdown). What the writer
/// does not take is kept for the next attempt.
pub(crate) async fn flush(refusals: &UnauthenticatedRefusals, writer: &authz_audit::AuditWriter) {
    // Records not yet handed over go back if this is cancelled (the task stopped at shutdown
    // mid-flush) or the writer refuses one, so the final flush still writes them.
    struct Pending<'a> {
        refusals: &'a UnauthenticatedRefusals,
        records: Vec<AuditRecord>,
    }
    impl Drop for Pending<'_> {
        fn drop(&mut self) {
            if !self.records.is_empty() {
                self.refusals.put_back(std::mem::take(&mut self.records));
            }
        }
    }
    let mut pending = Pending {
        refusals,
        records: refusals.close_window(Instant::now()),
    };
    pending.records.reverse();
    while let Some(rec) = pending.records.last() {
        if let Err(error) = writer.append_buffered(rec.clone()).await {
            tracing::warn!(%error, "aggregate refusal records not written; retried next window");
            return;
        }
        pending.records.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_sec: u32, burst: u32) -> RefusalLimits {
        RefusalLimits {
            per_client_per_sec: per_sec,
            burst_per_client: burst,
            aggregate_window: Duration::from_secs(10),
        }
    }

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(s.parse().expect("address"))
    }

    fn refused(
        upstream: &'static str,
        method: &'static str,
        reason: ReasonCode,
    ) -> Refused<'static> {
        let status = if reason == ReasonCode::ClientRateLimited {
            429
        } else {
            401
        };
        Refused {
            upstream,
            method,
            reason,
            status,
        }
    }

    fn note(r: &UnauthenticatedRefusals, client: ClientKey, now: Instant, ms: i64) -> Verdict {
        r.note(
            client,
            refused("tickets", "POST", ReasonCode::TokenMissing),
            now,
            ms,
        )
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:203.0.113.9"), ip("203.0.113.9"));
        assert_eq!(ip("2001:db8:1:2:aaaa::1").label(), "2001:db8:1:2::/64");
        assert_eq!(ip("203.0.113.9").label(), "203.0.113.9");
    }

    #[test]
    fn the_bucket_drains_by_one_per_refusal_and_refills_at_the_rate() {
        let r = UnauthenticatedRefusals::new(limits(2, 3));
        let a = ip("10.0.0.1");
        let t0 = Instant::now();
        assert_eq!(
            r.over_budget(a, t0),
            None,
            "an unknown client has its full burst"
        );
        for i in 0..3 {
            note(&r, a, t0, i);
        }
        // Three of three used: the next token comes at 2 per second, in 500 ms.
        assert_eq!(r.over_budget(a, t0), Some(Duration::from_millis(500)));
        assert_eq!(
            r.over_budget(a, t0 + Duration::from_millis(200)),
            Some(Duration::from_millis(300))
        );
        assert_eq!(r.over_budget(a, t0 + Duration::from_millis(500)), None);
        // Another client is unaffected.
        assert_eq!(r.over_budget(ip("10.0.0.2"), t0), None);
        // 1.25 s later 2.5 tokens are back; two refusals leave half a token: 250 ms to wait.
        let t1 = t0 + Duration::from_millis(1250);
        note(&r, a, t1, 0);
        note(&r, a, t1, 0);
        assert_eq!(r.over_budget(a, t1), Some(Duration::from_millis(250)));
        // The rate limit's own 429s take nothing.
        for _ in 0..10 {
            r.note(
                a,
                refused("tickets", "POST", ReasonCode::ClientRateLimited),
                t1,
                0,
            );
        }
        assert_eq!(r.over_budget(a, t1), Some(Duration::from_millis(250)));
        // The bucket never holds more than the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            note(&r, a, t2, 0);
        }
        assert_eq!(r.over_budget(a, t2), Some(Duration::from_millis(500)));
    }

    #[test]
    fn a_window_of_zero_records_every_refusal() {
        let r = UnauthenticatedRefusals::new(RefusalLimits {
            aggregate_window: Duration::ZERO,
            ..limits(0, 0)
        });
        let a = ip("10.0.0.1");
        let now = Instant::now();
        for ms in 0..10 {
            assert_eq!(note(&r, a, now, ms), Verdict::Record);
        }
        assert!(r.close_window(now).is_empty());
    }

    #[test]
    fn a_rate_of_zero_never_limits() {
        let r = UnauthenticatedRefusals::new(limits(0, 0));
        let a = ip("10.0.0.1");
        let now = Instant::now();
        for _ in 0..1000 {
            note(&r, a, now, 0);
        }
        assert_eq!(r.over_budget(a, now), None);
        // A reload turns the limit on: the same client is now held to a burst of 2.
        r.set_rate(1, 2);
        for _ in 0..2 {
            note(&r, a, now, 0);
        }
        assert!(r.over_budget(a, now).is_some());
        assert_eq!(r.limits().aggregate_window, limits(0, 0).aggregate_window);
    }

    #[test]
    fn the_first_of_a_kind_is_recorded_and_the_rest_aggregated_per_window() {
        let r = UnauthenticatedRefusals::new(limits(0, 0));
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let now = Instant::now();
        assert_eq!(note(&r, a, now, 100), Verdict::Record);
        for ms in 101..=150 {
            assert_eq!(note(&r, a, now, ms), Verdict::Counted);
        }
        // Another client, reason, route or method is another kind: its first is recorded.
        assert_eq!(note(&r, b, now, 120), Verdict::Record);
        let other_reason = r.note(
            a,
            refused("tickets", "POST", ReasonCode::TokenExpired),
            now,
            1,
        );
        assert_eq!(other_reason, Verdict::Record);
        assert_eq!(
            r.note(
                a,
                refused("billing", "POST", ReasonCode::TokenMissing),
                now,
                1
            ),
            Verdict::Record
        );
        assert_eq!(
            r.note(
                a,
                refused("tickets", "GET", ReasonCode::TokenMissing),
                now,
                1
            ),
            Verdict::Record
        );
        // Invented HTTP methods are one kind.
        assert_eq!(
            r.note(
                a,
                refused("tickets", "BREW", ReasonCode::TokenMissing),
                now,
                1
            ),
            Verdict::Record
        );
        assert_eq!(
            r.note(
                a,
                refused("tickets", "LOCK", ReasonCode::TokenMissing),
                now,
                2
            ),
            Verdict::Counted
        );
        let mut closed = r.close_window(now);
        closed.sort_by_key(|rec| rec.method.clone());
        assert_eq!(closed.len(), 2, "{closed:?}");
        let other = &closed[0];
        assert_eq!(other.method, "OTHER");
        assert_eq!(other.repeat_count, Some(1));
        let post = &closed[1];
        assert_eq!(post.method, "POST");
        assert_eq!(post.repeat_count, Some(50));
        assert_eq!(post.first_time_ms, Some(101));
        assert_eq!(post.time_ms, 150);
        assert_eq!(post.client_addr.as_deref(), Some("10.0.0.1"));
        assert_eq!(post.reason, ReasonCode::TokenMissing);
        assert_eq!(post.http_status, Some(401));
        assert_eq!(post.subject, None);
        // A new window starts afresh: the first is recorded again.
        assert_eq!(note(&r, a, now, 200), Verdict::Record);
        assert!(r.close_window(now).is_empty(), "nothing was counted");
    }

    #[test]
    fn records_the_writer_did_not_take_are_kept_for_the_next_window() {
        let r = UnauthenticatedRefusals::new(limits(0, 0));
        let a = ip("10.0.0.1");
        let now = Instant::now();
        note(&r, a, now, 1);
        note(&r, a, now, 2);
        let closed = r.close_window(now);
        assert_eq!(closed.len(), 1);
        r.put_back(closed);
        assert_eq!(r.pending(), 1);
        note(&r, a, now, 3);
        note(&r, a, now, 4);
        assert_eq!(
            r.close_window(now).len(),
            2,
            "the old record and the new window's"
        );
        assert_eq!(r.pending(), 0);
    }
}
