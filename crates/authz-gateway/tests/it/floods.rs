//! An unauthenticated flood over real loopback connections: the first refusal of each kind is
//! recorded as usual, the identical ones after it are aggregated into one record per window
//! (count and time window), the flooding address is rate limited (429 with `Retry-After`),
//! and authenticated calls, from another address or from the flooding one, are unaffected.
//! Refusals of an authenticated principal stay one record each.

use std::net::IpAddr;
use std::time::Duration;

use authz_types::{AuditRecord, Effect, ReasonCode};
use serde_json::json;

use crate::connections::metric;
use crate::harness::{self, AuditBackend, Options, stateless_call};

const FLOODER: [u8; 4] = [127, 0, 0, 2];

fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .build()
        .expect("client")
}

async fn post(
    client: &reqwest::Client,
    env: &harness::Env,
    token: Option<&str>,
    body: &str,
) -> reqwest::Response {
    send(client, env, token, &[], body).await
}

/// A 2026-07-28 stateless `tools/call` of `name`.
async fn call(
    client: &reqwest::Client,
    env: &harness::Env,
    token: &str,
    id: u64,
    name: &'static str,
) -> reqwest::Response {
    let (headers, body) = stateless_call(id, name);
    send(client, env, Some(token), &headers, &body).await
}

async fn send(
    client: &reqwest::Client,
    env: &harness::Env,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut req = client
        .post(&env.route)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("HTTP exchange with the gateway")
}

fn of_kind<'a>(
    records: &'a [AuditRecord],
    client: &'a str,
    reason: ReasonCode,
) -> impl Iterator<Item = &'a AuditRecord> + 'a {
    records
        .iter()
        .filter(move |r| r.client_addr.as_deref() == Some(client) && r.reason == reason)
}

/// How many refusals the records of one kind stand for.
fn represented(records: &[AuditRecord], client: &str, reason: ReasonCode) -> i64 {
    of_kind(records, client, reason)
        .map(|r| r.repeat_count.unwrap_or(1))
        .sum()
}

#[tokio::test]
async fn an_unauthenticated_flood_is_aggregated_and_rate_limited_while_tokens_are_served() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            server_extra: Some(
                "refusal_aggregate_window_ms = 1000\nunauthenticated_per_client_per_sec = 20\n\
                 unauthenticated_burst_per_client = 100"
                    .into(),
            ),
            ..Options::default()
        },
    )
    .await;
    let flooder = client_from(FLOODER);
    let other = client_from([127, 0, 0, 1]);
    let reader = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string();

    let (mut unauthorized, mut limited) = (0i64, 0i64);
    let mut first = None;
    for i in 0..400 {
        let resp = post(&flooder, &env, None, &ping).await;
        match resp.status().as_u16() {
            401 => {
                unauthorized += 1;
                first.get_or_insert(resp);
            }
            429 => {
                limited += 1;
                let retry: u64 = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .expect("a 429 says when to retry");
                assert!(
                    (1..=1).contains(&retry),
                    "one refusal comes back within a second"
                );
            }
            other => panic!("unexpected {other}"),
        }
        if i % 50 == 0 {
            // Valid tokens are served throughout: from another address, and from the
            // flooding one while it is over its budget.
            for client in [&other, &flooder] {
                let resp = call(client, &env, &reader, i, "get_ticket").await;
                assert_eq!(resp.status(), 200, "an authenticated call during the flood");
            }
        }
    }
    assert!(
        unauthorized >= 100,
        "the burst is answered 401: {unauthorized}"
    );
    assert!(limited >= 100, "past the burst, 429: {limited}");

    // Refusals of an authenticated principal are one record each, never aggregated.
    let denied: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..5 {
            let resp = call(&flooder, &env, &reader, i, "delete_ticket").await;
            assert_eq!(resp.status(), 403);
            ids.push(harness::request_id(&resp));
        }
        ids
    };
    env.assert_one_decision_each(&denied).await;

    // The first refusal has its own record, found by the request id its client was given.
    let first = env.the_record_for(&first.expect("a 401")).await;
    assert_eq!(first.reason, ReasonCode::TokenMissing);
    assert_eq!(first.repeat_count, None);
    assert_eq!(first.client_addr.as_deref(), Some("127.0.0.2"));

    // Once the window has closed, the records account for every refusal, in few rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let records = loop {
        let records = env.all_records().await;
        if represented(&records, "127.0.0.2", ReasonCode::TokenMissing) == unauthorized
            && represented(&records, "127.0.0.2", ReasonCode::ClientRateLimited) == limited
        {
            break records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the aggregate records never accounted for {unauthorized} 401s and {limited} 429s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let flood_rows: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.client_addr.as_deref() == Some("127.0.0.2") && r.subject.is_none())
        .collect();
    assert!(
        flood_rows.len() <= 12,
        "{} refusals left {} rows",
        unauthorized + limited,
        flood_rows.len()
    );
    let individual = i64::try_from(
        flood_rows
            .iter()
            .filter(|r| r.repeat_count.is_none())
            .count(),
    )
    .expect("fits");
    for r in &flood_rows {
        assert_eq!(r.decision, Effect::Deny);
        if let Some(count) = r.repeat_count {
            assert!(count >= 1);
            let first_ms = r.first_time_ms.expect("an aggregate has its window");
            assert!(first_ms <= r.time_ms, "{r:?}");
            assert_eq!(r.upstream, "tickets");
            assert_eq!(r.method, "POST");
        }
    }
    assert!(
        flood_rows
            .iter()
            .any(|r| r.reason == ReasonCode::ClientRateLimited && r.http_status == Some(429))
    );
    // Every authenticated call during the flood has its own record with its address.
    let served = records
        .iter()
        .filter(|r| r.subject.as_deref() == Some("alice") && r.decision == Effect::Allow)
        .count();
    assert_eq!(served, 16);
    assert_eq!(
        i64::try_from(metric(&env, "authz_client_rate_limited_total").await).expect("fits"),
        limited
    );
    assert_eq!(
        i64::try_from(metric(&env, "authz_refusals_aggregated_total").await).expect("fits"),
        unauthorized + limited - individual,
        "all but the first of each kind in each window"
    );
}
