//! `POST /token` (RFC 8693) and revocation, end to end through the gateway.

use std::time::{Duration, Instant};

use authz_types::{Effect, ReasonCode};
use serde_json::Value;

use crate::harness::{self, AuditBackend, Options};

async fn exchange(env: &harness::Env, token: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut fields = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", token),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
    ];
    fields.extend_from_slice(form);
    let resp = env
        .http
        .post(format!("{}/token", env.base))
        .form(&fields)
        .send()
        .await
        .expect("POST /token");
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    (status, resp.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_task_token_is_narrower_shorter_and_records_the_agent() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            token_exchange: true,
            ..Default::default()
        },
    )
    .await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let route = env.route.clone();

    // Narrowing: tickets:write implies tickets:read, so it may be asked for alone.
    let (status, body) = exchange(
        &env,
        &admin,
        &[
            ("resource", &route),
            ("scope", "tickets:read"),
            ("expires_in", "100000"),
            ("task_id", "t-42"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(
        body["expires_in"]
            .as_i64()
            .is_some_and(|e| (1..=300).contains(&e)),
        "lifetime capped: {body}"
    );
    let task_token = body["access_token"].as_str().expect("token").to_owned();

    // The new token works for what it allows...
    let resp = env.post_stateless_call(&task_token, 1, "get_ticket").await;
    assert_eq!(resp.status(), 200);
    let records = env.records_for(&resp).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].subject.as_deref(),
        Some("adam"),
        "the subject is kept"
    );
    assert_eq!(
        records[0].actors,
        ["test-agent"],
        "the requesting agent is recorded in act"
    );
    assert_ne!(
        records[0].issuer.as_deref(),
        Some(harness::ISSUER),
        "signed by the gateway"
    );
    // ...and nothing more: the write scope is gone.
    let resp = env
        .post_stateless_call(&task_token, 2, "delete_ticket")
        .await;
    assert_eq!(resp.status(), 403);

    // Widening is refused, and so is a resource that is not ours, and a bad subject token.
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let (status, body) = exchange(
        &env,
        &reader,
        &[("resource", &route), ("scope", "tickets:write")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let (status, body) = exchange(
        &env,
        &reader,
        &[
            ("resource", "https://elsewhere.test/mcp/x"),
            ("scope", "tickets:read"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, body) = exchange(
        &env,
        "not-a-token",
        &[("resource", &route), ("scope", "tickets:read")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // Every exchange is in the audit trail, granted and refused alike.
    let records = env.all_records().await;
    let exchanges: Vec<_> = records
        .iter()
        .filter(|r| r.method == "token/exchange")
        .collect();
    assert_eq!(exchanges.len(), 3, "{exchanges:?}");
    assert_eq!(
        exchanges
            .iter()
            .filter(|r| r.decision == Effect::Allow)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_a_second() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let mut req = env.token_request("adam", &["ticket-admin"], &["tickets:write"]);
    req.token_id = Some("jti-to-revoke".into());
    let token = env.mint(&req);
    assert_eq!(
        env.post_stateless_call(&token, 1, "get_ticket")
            .await
            .status(),
        200,
        "valid (and now cached)"
    );

    // What `authzctl token revoke` does, against the shared store (the audit database here).
    let store = authz_token::RevocationStore::connect(&env.audit_url)
        .await
        .expect("revocation store");
    store
        .revoke_token("jti-to-revoke", authz_types::now_unix_ms() / 1000 + 600)
        .await
        .expect("revoke");
    let revoked = Instant::now();
    loop {
        let resp = env.post_stateless_call(&token, 1, "get_ticket").await;
        if resp.status() == 401 {
            let records = env.records_for(&resp).await;
            assert_eq!(records[0].reason, ReasonCode::TokenRevoked);
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted a second after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_flood_of_bad_subject_tokens_is_aggregated_like_other_refusals() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            token_exchange: true,
            server_extra: Some("refusal_aggregate_window_ms = 300".into()),
            ..Default::default()
        },
    )
    .await;
    let route = env.route.clone();
    for _ in 0..30 {
        let (status, body) = exchange(&env, "not-a-token", &[("resource", &route)]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
    // One record for the first, the rest in aggregate records once their window closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records: Vec<_> = env
            .all_records()
            .await
            .into_iter()
            .filter(|r| r.method == "token/exchange" && r.decision == Effect::Deny)
            .collect();
        let represented: i64 = records.iter().map(|r| r.repeat_count.unwrap_or(1)).sum();
        if represented == 30 {
            assert!(records.len() <= 4, "{records:?}");
            assert!(
                records
                    .iter()
                    .all(|r| r.client_addr.as_deref() == Some("127.0.0.1"))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{represented} of 30 refusals recorded: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_address_flooding_bad_subject_tokens_is_told_to_back_off() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            token_exchange: true,
            server_extra: Some(
                "unauthenticated_per_client_per_sec = 1\nunauthenticated_burst_per_client = 3"
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    let route = env.route.clone();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, body) = exchange(&env, "not-a-token", &[("resource", &route)]).await;
        if status == 429 {
            assert_eq!(body["error"], "invalid_request", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[400, 400, 400], "the burst: {statuses:?}");
    assert!(statuses[3..].contains(&429), "then 429: {statuses:?}");
    // A valid subject token from the same address is still exchanged.
    let token = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let (status, body) = exchange(
        &env,
        &token,
        &[("resource", &route), ("scope", "tickets:read")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
