//! Replicas that share everything through Postgres: an MCP session opened through one gateway
//! continues through another (no sticky routing), is refused to another principal on every
//! replica, and once ended through one is unknown to a replica that never saw it.

use authz_test_support::TestDatabase;
use authz_types::ReasonCode;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Options};

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn a_session_opened_through_one_replica_continues_through_another() {
    let db = TestDatabase::postgres().await;
    let a = harness::start(AuditBackend::Postgres(db.url().to_owned())).await;
    // The other replicas serve the same resource, trust the same key and front the same
    // upstream (which holds the session's state).
    let replica = || Options {
        upstream_url: Some(a.upstream.url()),
        public_url: Some(a.base.clone()),
        keys: Some((a.private_jwk.clone(), a.jwks_path.clone())),
        ..Options::default()
    };
    let b = harness::start_with(AuditBackend::Postgres(db.url().to_owned()), replica()).await;

    let alice = a.token("alice", &["ticket-agent"], &["tickets:read"]);
    let mallory = a.token("mallory", &["ticket-agent"], &["tickets:read"]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let resp = a.post(Some(&alice), &[], &init.to_string()).await;
    assert_eq!(resp.status(), 200);
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session")
        .to_owned();
    let _ = resp.text().await;
    let on_session = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let resp = b
        .post(Some(&alice), &on_session, &initialized.to_string())
        .await;
    assert_eq!(
        resp.status(),
        202,
        "the session continues through the other replica"
    );

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let resp = b.post(Some(&alice), &on_session, &list).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    assert!(body.contains("\"tools\""), "{body}");

    // Another principal with the session id is refused on both replicas, and recorded.
    for gw in [&a, &b] {
        let resp = gw.post(Some(&mallory), &on_session, &list).await;
        assert_eq!(resp.status(), 404);
        let record = gw.the_record_for(&resp).await;
        assert_eq!(record.reason, ReasonCode::SessionMismatch);
    }

    // Ended through the replica that did not open it; a third replica that never saw the
    // session does not know it any more.
    let resp = b
        .http
        .delete(&b.route)
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE");
    assert!(resp.status().is_success(), "{}", resp.status());
    let c = harness::start_with(AuditBackend::Postgres(db.url().to_owned()), replica()).await;
    let resp = c.post(Some(&alice), &on_session, &list).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["data"]["reason"], "session_not_found", "{v}");
}
