//! The `/metrics` page through `prometheus-client`: the request path's counters and latency
//! histograms, kept in one registry for the gateway's life, and the values other parts already
//! keep (sessions, policy, audit writer, connections, quotas, limits), read into a second
//! registry at each scrape.
//!
//! Both are encoded in the Prometheus text format (0.0.4). The library adds `_total` to every
//! counter's name, so counters are registered without it.
//!
//! Every label value comes from a closed set: the configured route names, a fixed list of MCP
//! method names, `allow`/`deny` and the `ReasonCode` strings. Never a subject, a token id, a tool
//! or resource name: a caller must not be able to grow the page. The request path finds its
//! route's histograms once per request ([`Metrics::route`]) and labels are `&'static str` or a
//! shared `Arc<str>`, so counting allocates nothing once a series exists.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use authz_types::{Decision, Method};

use crate::App;

/// Latency bucket bounds in seconds: 50 µs to 10 s in 1–2.5–5 steps, fine enough at the low end
/// for the gateway's own work (a cached decision takes microseconds) and wide enough for a slow
/// upstream.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Seconds since `started`, as histograms take them.
pub(crate) fn seconds_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// `route="<configured upstream name>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

/// The labels of `authz_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    decision: &'static str,
    reason: &'static str,
}

type RouteHistograms = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// One route's histograms, created at start-up so the request path never looks up a label set.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    route: Arc<str>,
    /// The whole request in the proxy handler, until the answer's head is ready.
    pub(crate) request_duration: Histogram,
    /// From sending upstream until the upstream's response head.
    pub(crate) upstream_first_byte: Histogram,
    /// From forwarding until the upstream's answer ended (the outcome record's exchange).
    pub(crate) upstream_duration: Histogram,
}

/// `decision="allow|deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

/// The request path's metrics, exposed at `/metrics`.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// `authz_decisions_total{decision="allow"}`: POSTs allowed and forwarded.
    pub(crate) allowed: Counter,
    /// `authz_decisions_total{decision="deny"}`: refusals of an authenticated request.
    pub(crate) denied: Counter,
    pub(crate) unauthenticated: Counter,
    pub(crate) other_refusals: Counter,
    pub(crate) audit_failures: Counter,
    pub(crate) upstream_errors: Counter,
    /// Unauthenticated refusals counted into an aggregate record instead of one of their own.
    pub(crate) refusals_aggregated: Counter,
    /// Requests answered 429 `client_rate_limited`.
    pub(crate) client_rate_limited: Counter,
    /// Outcome records the audit writer refused (the answer had already gone out). Shared with
    /// every `OutcomeRecorder`, which counts from a task of its own.
    pub(crate) outcome_records_lost: Counter,
    /// Every decided MCP request with an identity, by route, method, decision and reason.
    requests: Family<RequestLabels, Counter>,
    /// The authorization decision proper: scopes, then RBAC.
    pub(crate) decision_duration: Histogram,
    /// A durable-mode audit append, until the record is committed.
    pub(crate) audit_commit_duration: Histogram,
    routes: HashMap<String, Arc<RouteMetrics>>,
}

impl Metrics {
    /// The metrics of a gateway serving the routes named `routes`.
    pub(crate) fn new<'a>(routes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabel, Counter>::default();
        // Both series exist from the start (a dashboard sees 0, not nothing), and the request
        // path increments its own handle without a label lookup.
        let allowed = decisions.get_or_create_owned(&DecisionLabel { decision: "allow" });
        let denied = decisions.get_or_create_owned(&DecisionLabel { decision: "deny" });
        registry.register(
            "authz_decisions",
            "Authorization decisions by outcome",
            decisions,
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let unauthenticated = counter("authz_unauthenticated", "Requests refused with 401");
        let other_refusals = counter(
            "authz_refusals_other",
            "Requests refused for other reasons (400, 404, 413, 503...)",
        );
        let audit_failures = counter(
            "authz_audit_failures",
            "Audit records the store refused (each failed its request closed)",
        );
        let outcome_records_lost = counter(
            "authz_audit_outcome_lost",
            "Outcome records the audit writer refused after the answer went out (logged with \
             their request id)",
        );
        let upstream_errors = counter(
            "authz_upstream_errors",
            "Upstream requests that failed or timed out",
        );
        let refusals_aggregated = counter(
            "authz_refusals_aggregated",
            "Unauthenticated refusals counted into an aggregate record (repeat_count) instead \
             of one each",
        );
        let client_rate_limited = counter(
            "authz_client_rate_limited",
            "Requests answered 429 because their client address caused too many \
             unauthenticated refusals",
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "authz_requests",
            "Decided MCP requests with an identity, by route, MCP method (known names only; \
             other, notification, response, GET, DELETE), decision and reason code",
            requests.clone(),
        );
        let histograms = || RouteHistograms::new_with_constructor(latency_histogram);
        let (request_duration, first_byte, upstream) = (histograms(), histograms(), histograms());
        let routes = routes
            .into_iter()
            .map(|name| {
                let label = RouteLabel {
                    route: Arc::from(name),
                };
                let route = RouteMetrics {
                    route: Arc::clone(&label.route),
                    request_duration: request_duration.get_or_create_owned(&label),
                    upstream_first_byte: first_byte.get_or_create_owned(&label),
                    upstream_duration: upstream.get_or_create_owned(&label),
                };
                (name.to_owned(), Arc::new(route))
            })
            .collect();
        registry.register_with_unit(
            "authz_request_duration",
            "Requests to a route in the proxy handler, until the answer's head is ready",
            Unit::Seconds,
            request_duration,
        );
        let decision_duration = latency_histogram();
        registry.register_with_unit(
            "authz_decision_duration",
            "Authorization decisions (scopes, then RBAC)",
            Unit::Seconds,
            decision_duration.clone(),
        );
        let audit_commit_duration = latency_histogram();
        registry.register_with_unit(
            "authz_audit_commit_duration",
            "Durable-mode audit appends, until the record was committed",
            Unit::Seconds,
            audit_commit_duration.clone(),
        );
        registry.register_with_unit(
            "authz_upstream_first_byte",
            "Forwarded requests, from sending upstream until the upstream's response head",
            Unit::Seconds,
            first_byte,
        );
        registry.register_with_unit(
            "authz_upstream_duration",
            "Forwarded requests, from forwarding until the upstream's answer ended",
            Unit::Seconds,
            upstream,
        );
        Metrics {
            registry,
            requests,
            decision_duration,
            audit_commit_duration,
            routes,
            allowed,
            denied,
            unauthenticated,
            other_refusals,
            audit_failures,
            upstream_errors,
            refusals_aggregated,
            client_rate_limited,
            outcome_records_lost,
        }
    }
}

impl Metrics {
    /// The histograms of a configured route.
    pub(crate) fn route(&self, name: &str) -> Option<&Arc<RouteMetrics>> {
        self.routes.get(name)
    }

    /// Counts one decided request (`authz_requests_total`).
    pub(crate) fn count_request(&self, route: &RouteMetrics, method: &Method, decision: &Decision) {
        let labels = RequestLabels {
            route: Arc::clone(&route.route),
            method: method_label(method),
            decision: decision.effect.as_str(),
            reason: decision.reason.as_str(),
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts and logs an audit record the writer did not take; the caller fails closed.
    pub(crate) fn audit_refused(&self, request_id: &str, error: &authz_audit::Error) {
        self.audit_failures.inc();
        tracing::error!(%error, %request_id, "the audit writer did not take a record; failing closed");
    }

    pub(crate) fn count_refusal(&self, status: StatusCode) {
        if status == StatusCode::UNAUTHORIZED {
            self.unauthenticated.inc();
        } else {
            self.other_refusals.inc();
        }
    }
}

/// The `method` label: a known MCP method's name, never a name the caller made up. A GET or
/// DELETE on a session (recorded as the unknown method `GET`/`DELETE`) keeps its HTTP method.
fn method_label(method: &Method) -> &'static str {
    match method {
        Method::Notification(_) => "notification",
        Method::Unknown(m) if m == "GET" => "GET",
        Method::Unknown(m) if m == "DELETE" => "DELETE",
        known => known.known_name().unwrap_or("other"),
    }
}

/// `GET /metrics`.
pub(crate) async fn handler(State(app): State<std::sync::Arc<App>>) -> Response {
    let mut page = String::with_capacity(16 * 1024);
    let at_scrape = scrape_time(&app);
    // Writing into a `String` cannot fail.
    let encoded = prometheus_text::encode(&mut page, &app.metrics.registry)
        .and_then(|()| prometheus_text::encode(&mut page, &at_scrape));
    if encoded.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        page,
    )
        .into_response()
}

/// The values other parts of the gateway keep, read now.
fn scrape_time(app: &App) -> Registry {
    let mut r = Scrape(Registry::default());
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);

    r.gauge(
        "authz_sessions",
        "Sessions currently bound to a principal",
        app.sessions.len(),
    );
    r.gauge(
        "authz_in_flight",
        "Requests and open response streams in flight now (all principals)",
        app.in_flight.total(),
    );
    r.gauge(
        "authz_task_bindings",
        "Task ids currently bound to a principal (this replica's view)",
        app.tasks.len(),
    );
    revocations(&mut r, app);
    let policy = app.rbac.status();
    r.0.register(
        "authz_policy_revision",
        "The policy revision in force",
        ConstGauge::new(policy.revision),
    );
    r.counter(
        "authz_policy_reloads",
        "Policy reloads applied",
        policy.reloads,
    );
    r.counter(
        "authz_policy_failed_reloads",
        "Policy changes refused (the last good policy kept serving)",
        policy.failed_reloads,
    );
    let writer = app.audit_writer.stats();
    r.counter(
        "authz_audit_committed",
        "Audit records committed",
        writer.committed,
    );
    r.counter(
        "authz_audit_batches",
        "Audit batches committed (authz_audit_committed / authz_audit_batches is the mean batch size)",
        writer.batches,
    );
    r.gauge(
        "authz_audit_queue_depth",
        "Audit records waiting in the writer's queues now",
        usize::try_from(writer.queue_depth).unwrap_or(usize::MAX),
    );
    r.gauge(
        "authz_audit_pending_retry",
        "Buffered audit records waiting for a retry after a failed batch",
        usize::try_from(writer.pending_retry).unwrap_or(usize::MAX),
    );
    r.counter(
        "authz_audit_queue_full",
        "Appends refused because the audit queue stayed full (each a 503)",
        writer.queue_full_rejections,
    );
    r.counter(
        "authz_audit_failed_batches",
        "Audit batches the store refused",
        writer.failed_batches,
    );
    r.counter(
        "authz_audit_buffered_lost",
        "Buffered records given up after every retry (logged with their request id)",
        writer.buffered_records_lost_on_error,
    );

    // The accept loop.
    let c = &app.connections;
    r.gauge(
        "authz_connections_open",
        "Client connections open now",
        c.open(),
    );
    r.counter(
        "authz_connections_accepted",
        "Client connections accepted",
        g(&c.accepted),
    );
    let refused = Family::<[(&'static str, &'static str); 1], Counter>::default();
    for (cap, n) in [
        ("max_connections", &c.refused_total_cap),
        ("max_connections_per_client", &c.refused_client_cap),
    ] {
        refused.get_or_create(&[("cap", cap)]).inc_by(g(n));
    }
    r.0.register(
        "authz_connections_refused",
        "Connections closed at once because a cap was reached",
        refused,
    );
    r.counter(
        "authz_connections_header_timeouts",
        "Connections closed because no complete request head arrived in time",
        g(&c.header_timeouts),
    );
    r.counter(
        "authz_body_read_timeouts",
        "POST bodies that did not arrive in full in time (408, connection closed)",
        g(&c.body_timeouts),
    );
    r.counter(
        "authz_accept_errors",
        "Failed accepts (for example out of file descriptors); serving went on",
        g(&c.accept_errors),
    );
    r.counter(
        "authz_connections_idle_closed",
        "Connections closed after server.idle_timeout_ms with no request in flight",
        g(&c.idle_closed),
    );
    r.counter(
        "authz_connections_shed",
        "Idle connections closed at server.max_connections to make room for a new one",
        g(&c.shed),
    );
    r.counter(
        "authz_http2_reset_floods",
        "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for too many resets",
        g(&c.http2_reset_floods),
    );
    r.0.register(
        "authz_connection_limit",
        "A connection limit in force (the [server] key)",
        limits(&app.connections.limits_in_force(&app.config.connections)),
    );

    // Quotas and the shared binding store.
    let q = &app.quotas;
    r.gauge(
        "authz_quota_rules",
        "Quota rules in force (policy.quotas_file)",
        q.rule_count(),
    );
    r.counter(
        "authz_quota_exceeded",
        "Calls answered 429 quota_exceeded",
        g(&q.exceeded),
    );
    r.counter(
        "authz_quota_reloads",
        "Changes of the quota file applied",
        g(&q.reloads),
    );
    r.counter(
        "authz_quota_failed_reloads",
        "Changes of the quota file refused (the quotas in force stayed)",
        g(&q.failed_reloads),
    );
    r.counter(
        "authz_quota_exchanges",
        "Exchanges of quota spending with the other replicas (shared Postgres)",
        g(&q.exchanges),
    );
    r.counter(
        "authz_quota_failed_exchanges",
        "Failed exchanges (each replica kept enforcing on its own)",
        g(&q.failed_exchanges),
    );
    r.counter(
        "authz_binding_store_errors",
        "Failed operations on the shared session and task binding store (the binding then \
         held on this replica only, or the id was refused)",
        app.sessions.store_errors() + app.tasks.store_errors(),
    );
    shipping(&mut r, &app.shippers);
    r.counter(
        "authz_definition_changes",
        "Tool, prompt and resource template definitions found changed upstream (or new under \
         strict pinning), hidden and refused until approved",
        g(&app.pins.changes),
    );
    r.counter(
        "authz_pin_store_errors",
        "Failed operations on the pin store (the pins in force stayed)",
        g(&app.pins.store_errors),
    );
    r.counter(
        "authz_pins_over_cap",
        "Listed definitions hidden because their upstream reached the pin cap (10 000 per kind)",
        g(&app.pins.over_cap),
    );
    if let Some(bridge) = &app.stdio {
        stdio(&mut r, bridge);
    }
    let sh = &app.shadow;
    r.gauge(
        "authz_shadow_running",
        "Whether a candidate policy runs in shadow mode on this replica (1) or not (0)",
        usize::from(sh.running_id().is_some()),
    );
    r.counter(
        "authz_shadow_evaluated",
        "Requests decided a second time under the shadow candidate",
        g(&sh.evaluated),
    );
    r.counter(
        "authz_shadow_differences",
        "Requests the shadow candidate decided otherwise than the live policy (recorded in the \
         decision record's shadow field)",
        g(&sh.differences),
    );
    r.counter(
        "authz_shadow_load_failures",
        "Shadow candidates that did not load (shadow mode then off)",
        g(&sh.load_failures),
    );
    let a = &app.approvals;
    r.counter(
        "authz_approvals_held",
        "Tool calls held for an approver (answered with a new or still pending approval)",
        g(&a.held),
    );
    r.counter(
        "authz_approvals_granted",
        "Tool calls let through on an approval (each approval once)",
        g(&a.granted),
    );
    r.counter(
        "authz_approval_decisions_audited",
        "Approvers' decisions this replica wrote into its audit chain",
        g(&a.decisions_audited),
    );
    r.counter(
        "authz_approval_store_errors",
        "Failed operations on the approval store (the held call failed closed, or a decision \
         waits to be audited)",
        g(&a.store_errors),
    );
    tokens(
        &mut r,
        app.verifier.cache_stats(),
        &app.verifier.key_status(),
    );
    r.0
}

/// The verified-token cache and each configured issuer's keys. The cache is one for every
/// issuer (a miss happens before the token is even parsed), so its counters have no label; the
/// key metrics are per issuer, whose URLs come from the configuration.
fn tokens(
    r: &mut Scrape,
    cache: Option<authz_token::CacheStats>,
    issuers: &[authz_token::IssuerKeyStatus],
) {
    if let Some(cache) = cache {
        r.counter(
            "authz_token_cache_hits",
            "Token verifications answered from the verified-token cache",
            cache.hits,
        );
        r.counter(
            "authz_token_cache_misses",
            "Token verifications that checked the token in full",
            cache.misses,
        );
        r.gauge(
            "authz_token_cache_entries",
            "Verified tokens in the cache now",
            cache.entries,
        );
    }
    type ByIssuer<M> = Family<[(&'static str, String); 1], M>;
    let (keys, stale) = (ByIssuer::<Gauge>::default(), ByIssuer::<Gauge>::default());
    let (fetches, failures) = (
        ByIssuer::<Counter>::default(),
        ByIssuer::<Counter>::default(),
    );
    for i in issuers {
        let label = [("issuer", i.issuer.clone())];
        keys.get_or_create(&label)
            .set(i64::try_from(i.kids.len()).unwrap_or(i64::MAX));
        stale.get_or_create(&label).set(i64::from(i.stale));
        // Only issuers whose keys come from a `jwks_url` fetch anything.
        if i.jwks_url.is_some() {
            fetches.get_or_create(&label).inc_by(i.fetches);
            failures.get_or_create(&label).inc_by(i.fetch_failures);
        }
    }
    r.0.register(
        "authz_issuer_keys",
        "Signing keys trusted now, per issuer",
        keys,
    );
    r.0.register(
        "authz_issuer_keys_stale",
        "1 while an issuer's fetched keys are past max_staleness_secs (its tokens are refused)",
        stale,
    );
    r.0.register(
        "authz_jwks_fetches",
        "Fetches of an issuer's jwks_url (start-up, refreshes, unknown kids)",
        fetches,
    );
    r.0.register(
        "authz_jwks_fetch_failures",
        "Failed fetches of an issuer's jwks_url (the keys in hand kept serving)",
        failures,
    );
}

/// The revocation list: its entries by kind, the store revision it was loaded at, and how
/// long ago it was last confirmed current (absent when revocation is off).
fn revocations(r: &mut Scrape, app: &App) {
    let Some(list) = app.verifier.revocations() else {
        return;
    };
    let counts = list.counts();
    let entries = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    for (kind, n) in [("tokens", counts.tokens), ("subjects", counts.subjects)] {
        entries
            .get_or_create(&[("kind", kind)])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.0.register(
        "authz_revocation_entries",
        "Revoked token ids and subjects in force",
        entries,
    );
    r.0.register(
        "authz_revocation_revision",
        "The revocation store revision the list was loaded at",
        ConstGauge::new(counts.revision),
    );
    let checked = list.checked_at_ms();
    if checked > 0 {
        let age = authz_types::now_unix_ms().saturating_sub(checked).max(0);
        r.0.register(
            "authz_revocation_age_seconds",
            "Seconds since the revocation list was last confirmed current against its store",
            ConstGauge::new(age as f64 / 1000.0),
        );
    }
}

/// Each audit sink's shipping, labelled by the sink's configured name.
fn shipping(r: &mut Scrape, sinks: &[crate::shipping::RunningSink]) {
    if sinks.is_empty() {
        return;
    }
    type BySink<M> = Family<[(&'static str, String); 1], M>;
    let counters: [(&str, &str, BySink<Counter>); 5] = [
        (
            "authz_audit_shipped_records",
            "Audit records the sink acknowledged",
            Default::default(),
        ),
        (
            "authz_audit_ship_batches",
            "Batches the sink acknowledged",
            Default::default(),
        ),
        (
            "authz_audit_ship_failures",
            "Batches the sink refused or did not answer in time (each sent again)",
            Default::default(),
        ),
        (
            "authz_audit_ship_gaps",
            "Records pruned from the store before the sink received them",
            Default::default(),
        ),
        (
            "authz_audit_ship_rejected",
            "Log records an OTLP receiver rejected in a partial success (not sent again)",
            Default::default(),
        ),
    ];
    let lag_records = BySink::<Gauge>::default();
    let lag_seconds = BySink::<Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let chains = BySink::<Gauge>::default();
    for sink in sinks {
        let label = [("sink", sink.name.clone())];
        let st = sink.shipper.status();
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let values = [
            read(&st.shipped),
            read(&st.batches),
            read(&st.failures),
            read(&st.gaps),
            read(&sink.rejected),
        ];
        for ((_, _, family), value) in counters.iter().zip(values) {
            family.get_or_create(&label).inc_by(value);
        }
        lag_records
            .get_or_create(&label)
            .set(i64::try_from(read(&st.lag_records)).unwrap_or(i64::MAX));
        lag_seconds
            .get_or_create(&label)
            .set(read(&st.lag_ms) as f64 / 1000.0);
        chains
            .get_or_create(&label)
            .set(i64::try_from(read(&st.chains_held)).unwrap_or(i64::MAX));
    }
    for (name, help, family) in counters {
        r.0.register(name, help, family);
    }
    r.0.register(
        "authz_audit_ship_lag_records",
        "Committed records the sink has not acknowledged yet, over the chains this replica ships",
        lag_records,
    );
    r.0.register(
        "authz_audit_ship_lag_seconds",
        "Age of the oldest record the sink has not acknowledged (0 when caught up)",
        lag_seconds,
    );
    r.0.register(
        "authz_audit_ship_chains",
        "Chains this replica ships to the sink (holds the lease of)",
        chains,
    );
}

/// The stdio routes' processes: running now, started and ended, per route (names from the
/// configuration).
fn stdio(r: &mut Scrape, bridge: &crate::stdio::Bridge) {
    let running = Family::<[(&'static str, String); 1], Gauge>::default();
    let started = Family::<[(&'static str, String); 1], Counter>::default();
    let exited = Family::<[(&'static str, String); 1], Counter>::default();
    for (route, now, s, e) in bridge.processes() {
        let label = [("route", route)];
        running
            .get_or_create(&label)
            .set(i64::try_from(now).unwrap_or(i64::MAX));
        started.get_or_create(&label).inc_by(s as u64);
        exited.get_or_create(&label).inc_by(e as u64);
    }
    r.0.register(
        "authz_stdio_processes",
        "stdio server processes running now (one per MCP session)",
        running,
    );
    r.0.register(
        "authz_stdio_processes_started",
        "stdio server processes started",
        started,
    );
    r.0.register(
        "authz_stdio_processes_exited",
        "stdio server processes ended (exited, crashed, idle or ended with their session)",
        exited,
    );
}

/// A registry filled with values read at scrape time.
struct Scrape(Registry);

impl Scrape {
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.0.register(name, help, ConstCounter::new(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: usize) {
        self.0.register(name, help, ConstGauge::new(value));
    }
}

/// The connection limits in force, as gauges (`server.<key>`), so a dashboard can set a count
/// against its cap.
fn limits(
    l: &crate::connections::ConnectionLimits,
) -> Family<[(&'static str, &'static str); 1], Gauge> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let rows: [(&str, i64); 9] = [
        ("header_read_timeout_ms", ms(l.header_read_timeout)),
        ("idle_timeout_ms", ms(l.idle_timeout)),
        ("shutdown_grace_ms", ms(l.shutdown_grace)),
        ("max_connections", n(l.max_connections)),
        (
            "max_connections_per_client",
            n(l.max_connections_per_client),
        ),
        (
            "http2_max_concurrent_streams",
            l.http2.max_concurrent_streams.into(),
        ),
        (
            "http2_max_header_list_bytes",
            l.http2.max_header_list_bytes.into(),
        ),
        (
            "http2_max_pending_reset_streams",
            n(l.http2.max_pending_reset_streams),
        ),
        (
            "http2_max_local_reset_streams",
            n(l.http2.max_local_reset_streams),
        ),
    ];
    let family = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    for (key, value) in rows {
        family.get_or_create(&[("key", key)]).set(value);
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_metrics_are_per_issuer_and_fetch_counters_only_for_remote_key_sets() {
        let issuer = |name: &str, url: Option<&str>, fetches, failures, stale| {
            authz_token::IssuerKeyStatus {
                issuer: name.to_owned(),
                jwks_url: url.map(str::to_owned),
                kids: vec!["k1".to_owned(), "k2".to_owned()],
                age_secs: 3,
                stale,
                fetches,
                fetch_failures: failures,
            }
        };
        let cache = authz_token::CacheStats {
            entries: 4,
            capacity: 16,
            hits: 10,
            misses: 5,
        };
        let mut r = Scrape(Registry::default());
        tokens(
            &mut r,
            Some(cache),
            &[
                issuer("https://fixed.test", None, 0, 0, false),
                issuer(
                    "https://remote.test",
                    Some("https://remote.test/jwks"),
                    7,
                    2,
                    true,
                ),
            ],
        );
        let mut page = String::new();
        prometheus_text::encode(&mut page, &r.0).expect("encode");
        for line in [
            "authz_token_cache_hits_total 10",
            "authz_token_cache_misses_total 5",
            "authz_token_cache_entries 4",
            "authz_issuer_keys{issuer=\"https://fixed.test\"} 2",
            "authz_issuer_keys_stale{issuer=\"https://fixed.test\"} 0",
            "authz_issuer_keys_stale{issuer=\"https://remote.test\"} 1",
            "authz_jwks_fetches_total{issuer=\"https://remote.test\"} 7",
            "authz_jwks_fetch_failures_total{issuer=\"https://remote.test\"} 2",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} in:\n{page}");
        }
        assert!(
            !page.contains("authz_jwks_fetches_total{issuer=\"https://fixed.test\"}"),
            "{page}"
        );
        // Without a cache there are no cache metrics at all (rather than zeros that look fine).
        let mut r = Scrape(Registry::default());
        tokens(&mut r, None, &[]);
        let mut page = String::new();
        prometheus_text::encode(&mut page, &r.0).expect("encode");
        assert!(!page.contains("authz_token_cache"), "{page}");
    }

    #[test]
    fn the_method_label_is_a_known_name_or_a_fixed_word() {
        for known in [
            "initialize",
            "ping",
            "tools/list",
            "tools/call",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "prompts/list",
            "prompts/get",
            "completion/complete",
            "logging/setLevel",
            "tasks/get",
            "tasks/list",
            "tasks/result",
            "tasks/cancel",
            "tasks/update",
            "server/discover",
            "subscriptions/listen",
        ] {
            let method = Method::from_name(known);
            assert_eq!(method_label(&method), method.as_str(), "{known}");
        }
        for (name, label) in [
            ("notifications/initialized", "notification"),
            ("notifications/anything-a-caller-likes", "notification"),
            ("tools/made_up", "other"),
            ("GET", "GET"),
            ("DELETE", "DELETE"),
        ] {
            assert_eq!(method_label(&Method::from_name(name)), label, "{name}");
        }
        assert_eq!(method_label(&Method::Response), "response");
    }
}
