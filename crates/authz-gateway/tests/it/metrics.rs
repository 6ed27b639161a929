//! `/metrics` after a known sequence of requests: exact counts per label set, histograms that
//! are well formed, and no label value a caller chose (subject, tool name).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{self, AuditBackend};

/// One sample of the exposition: `name{labels} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format as the gateway writes it (one sample a line, comments
/// starting with `#`, label values without escaped quotes).
fn parse(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            Sample {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

pub(crate) struct Page {
    text: String,
    samples: Vec<Sample>,
}

impl Page {
    pub(crate) async fn scrape(env: &harness::Env) -> Page {
        let resp = env.get("/metrics").await;
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = resp.text().await.expect("text");
        let samples = parse(&text);
        Page { text, samples }
    }

    /// Every sample of `name` whose labels include all of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The one sample of `name` with exactly `labels`.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self
            .matching(name, labels)
            .filter(|s| s.labels.len() == labels.len())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one sample {name}{labels:?} in:\n{}",
            self.text
        );
        found[0].value
    }

    /// Checks every series of histogram `name`: buckets cumulative in `le` order, the `+Inf`
    /// bucket equal to `_count`, a `_sum` beside it. Returns the number of series.
    fn check_histogram(&self, name: &str) -> usize {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in self.matching(&format!("{name}_bucket"), &[]) {
            let mut rest = s.labels.clone();
            let le = rest.remove("le").expect("le label");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            series
                .entry(format!("{rest:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (labels, buckets) in &mut series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}{labels}: buckets not cumulative: {buckets:?}"
            );
            let (last_le, last) = *buckets.last().expect("a bucket");
            assert_eq!(last_le, f64::INFINITY, "{name}{labels} ends with +Inf");
            let count = self
                .samples
                .iter()
                .find(|s| s.name == format!("{name}_count") && format!("{:?}", s.labels) == *labels)
                .unwrap_or_else(|| panic!("{name}_count{labels}"));
            assert_eq!(last, count.value, "{name}{labels}: +Inf bucket = _count");
            assert!(
                self.samples.iter().any(
                    |s| s.name == format!("{name}_sum") && format!("{:?}", s.labels) == *labels
                ),
                "{name}_sum{labels}"
            );
        }
        series.len()
    }
}

#[tokio::test]
async fn requests_are_counted_by_route_method_decision_and_reason_and_timed() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let reader = env.token(
        "metrics-reader-subject",
        &["ticket-reader"],
        &["tickets:read"],
    );
    let writer = env.token(
        "metrics-writer-subject",
        &["ticket-reader"],
        &["tickets:write"],
    );
    for id in 1..=3 {
        let resp = env.post_stateless_call(&reader, id, "get_ticket").await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("the answer ends");
    }
    for id in 4..=5 {
        let resp = env
            .post_tools_call(Some(&writer), id, "delete_ticket")
            .await;
        assert_eq!(resp.status(), 403, "the policy refuses readers deletes");
    }
    let resp = env.post_tools_call(None, 6, "get_ticket").await;
    assert_eq!(resp.status(), 401);

    // The upstream duration is observed when each answer's outcome record is written, which
    // can trail the client's last byte a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = Page::scrape(&env).await;
        let done = page
            .matching(
                "authz_upstream_duration_seconds_count",
                &[("route", "tickets")],
            )
            .any(|s| s.value == 3.0);
        if done || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Every decided request with an identity, and nothing else.
    let requests: Vec<_> = page.matching("authz_requests_total", &[]).collect();
    assert_eq!(requests.len(), 2, "two label sets: {requests:?}");
    let tickets_call = [("route", "tickets"), ("method", "tools/call")];
    let labels = |decision, reason| {
        let mut l = tickets_call.to_vec();
        l.extend([("decision", decision), ("reason", reason)]);
        l
    };
    assert_eq!(
        page.value("authz_requests_total", &labels("allow", "policy_allow")),
        3.0
    );
    assert_eq!(
        page.value("authz_requests_total", &labels("deny", "no_matching_rule")),
        2.0
    );

    // The metrics from before keep their names and meaning.
    assert_eq!(
        page.value("authz_decisions_total", &[("decision", "allow")]),
        3.0
    );
    assert_eq!(
        page.value("authz_decisions_total", &[("decision", "deny")]),
        2.0
    );
    assert_eq!(page.value("authz_unauthenticated_total", &[]), 1.0);
    assert_eq!(page.value("authz_refusals_other_total", &[]), 2.0);

    // Nothing in flight once every answer ended; the audit queue drained; no revocations;
    // batches counted (at most one per record).
    assert_eq!(page.value("authz_in_flight", &[]), 0.0);
    assert_eq!(page.value("authz_audit_queue_depth", &[]), 0.0);
    assert_eq!(page.value("authz_audit_pending_retry", &[]), 0.0);
    let (batches, committed) = (
        page.value("authz_audit_batches_total", &[]),
        page.value("authz_audit_committed_total", &[]),
    );
    assert!(
        batches >= 1.0 && batches <= committed,
        "{batches} batches for {committed} records"
    );
    assert_eq!(
        page.value("authz_revocation_entries", &[("kind", "tokens")]),
        0.0
    );
    assert_eq!(
        page.value("authz_revocation_entries", &[("kind", "subjects")]),
        0.0
    );
    assert!(page.value("authz_revocation_age_seconds", &[]) < 3600.0);

    // Two tokens, five verifications: each verified in full once, then answered from the cache.
    assert_eq!(page.value("authz_token_cache_misses_total", &[]), 2.0);
    assert_eq!(page.value("authz_token_cache_hits_total", &[]), 3.0);
    assert_eq!(
        page.value("authz_issuer_keys", &[("issuer", harness::ISSUER)]),
        1.0
    );
    assert_eq!(
        page.value("authz_issuer_keys_stale", &[("issuer", harness::ISSUER)]),
        0.0
    );

    // Latency: every request to the route, every decision, every durable commit (five decision
    // records and the 401's), every forwarded call.
    let route = [("route", "tickets")];
    assert_eq!(
        page.value("authz_request_duration_seconds_count", &route),
        6.0
    );
    assert_eq!(
        page.value("authz_decision_duration_seconds_count", &[]),
        5.0
    );
    assert_eq!(
        page.value("authz_audit_commit_duration_seconds_count", &[]),
        6.0
    );
    assert_eq!(
        page.value("authz_upstream_first_byte_seconds_count", &route),
        3.0
    );
    assert_eq!(
        page.value("authz_upstream_duration_seconds_count", &route),
        3.0
    );
    for (name, series) in [
        ("authz_request_duration_seconds", 1),
        ("authz_decision_duration_seconds", 1),
        ("authz_audit_commit_duration_seconds", 1),
        ("authz_upstream_first_byte_seconds", 1),
        ("authz_upstream_duration_seconds", 1),
    ] {
        assert_eq!(page.check_histogram(name), series, "{name}");
    }
    assert!(page.value("authz_request_duration_seconds_sum", &route) > 0.0);

    // No label value is anything a caller chose.
    for caller_chosen in [
        "metrics-reader-subject",
        "metrics-writer-subject",
        "get_ticket",
        "delete_ticket",
    ] {
        assert!(
            !page.text.contains(caller_chosen),
            "{caller_chosen} on the page:\n{}",
            page.text
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_not_a_label() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let token = env.token("someone", &["ticket-reader"], &["tickets:read"]);
    let resp = env
        .json_post(format!("{}/mcp/no-such-route", env.base))
        .bearer_auth(&token)
        .body(harness::tools_call(1, "get_ticket"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let page = Page::scrape(&env).await;
    assert!(!page.text.contains("no-such-route"), "{}", page.text);
    assert_eq!(
        page.value(
            "authz_request_duration_seconds_count",
            &[("route", "tickets")]
        ),
        0.0
    );
    assert_eq!(page.matching("authz_requests_total", &[]).count(), 0);
}
