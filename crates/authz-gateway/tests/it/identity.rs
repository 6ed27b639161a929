//! Identity assertions: a route with `identity_assertion` tells its upstream who is calling in
//! a short-lived JWT the gateway signs; an upstream that verifies it against the gateway's JWKS
//! (fetched over HTTP from `/.well-known/jwks.json`) learns the subject, tenant, roles, client
//! and `act` chain, and never sees the agent's token.

use std::sync::{Arc, Mutex, OnceLock};

use authz_token::{IssuerConfig, KeyAlgorithm, Verifier, VerifierConfig};
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Options};

/// An upstream that does per-user work: it verifies the gateway's assertion on every call and
/// answers with the identity it verified (or a tool error saying why not).
#[derive(Default)]
struct PerUserUpstream {
    /// Where the gateway publishes its keys, once it runs.
    jwks_url: OnceLock<String>,
    verifier: tokio::sync::OnceCell<Verifier>,
    /// What reached it: the Authorization header and the assertion of every request.
    seen: Mutex<Vec<(Option<String>, Option<String>)>>,
}

const AUDIENCE: &str = "urn:tickets-backend";

async fn serve(
    State(up): State<Arc<PerUserUpstream>>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let assertion = header("x-identity-assertion");
    up.seen
        .lock()
        .expect("lock")
        .push((header("authorization"), assertion.clone()));
    let msg: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let verifier = up
        .verifier
        .get_or_init(|| async {
            let mut issuer = IssuerConfig::with_jwks_url(
                format!(
                    "{}/",
                    up.jwks_url
                        .get()
                        .expect("gateway running")
                        .trim_end_matches("/.well-known/jwks.json")
                ),
                up.jwks_url.get().expect("gateway running").clone(),
            );
            issuer.jwks_fetch.allow_http = true;
            Verifier::load(&VerifierConfig::new(vec![issuer]))
                .await
                .expect("the gateway's JWKS loads")
        })
        .await;
    let text = match assertion {
        None => "no assertion".to_owned(),
        Some(a) => match verifier.verify(&a, AUDIENCE) {
            Ok(p) => json!({"sub": p.subject, "tenant": p.tenant, "roles": p.roles,
                            "client": p.client_id, "actors": p.actors})
            .to_string(),
            Err(e) => format!("refused: {}", e.description()),
        },
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
        "resultType": "complete", "content": [{"type": "text", "text": text}]}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_verifies_who_calls_and_never_sees_the_agents_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = authz_token::generate_key_pair(KeyAlgorithm::Es256, "gw-identity").expect("keys");
    let private = dir.path().join("identity.jwk");
    let public = dir.path().join("identity-jwks.json");
    std::fs::write(&private, &keys.private_jwk).expect("write");
    std::fs::write(&public, &keys.public_jwks).expect("write");

    let upstream = Arc::new(PerUserUpstream::default());
    let at = harness::serve_stand_in(
        axum::Router::new()
            .route("/mcp", axum::routing::post(serve))
            .with_state(Arc::clone(&upstream)),
    )
    .await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            upstream_url: Some(format!("http://{at}/mcp")),
            upstream_extra: Some(format!(
                "identity_assertion = {{ audience = \"{AUDIENCE}\", lifetime_secs = 30 }}"
            )),
            sections_extra: Some(format!(
                "[identity]\nsigning_key_file = \"{}\"\njwks_file = \"{}\"\n",
                private.display(),
                public.display()
            )),
            ..Options::default()
        },
    )
    .await;
    let jwks_url = format!("{}/.well-known/jwks.json", env.base);
    upstream.jwks_url.set(jwks_url.clone()).expect("once");

    // The published keys are the public ones.
    let jwks: Value = reqwest::get(&jwks_url)
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"][0]["kid"], "gw-identity");
    assert!(jwks["keys"][0].get("d").is_none(), "{jwks}");

    let mut req = env.token_request("sue", &["ticket-reader"], &["tickets:read"]);
    req.tenant = Some("default".into());
    req.actor = Some("agent-7".into());
    let token = env.mint(&req);
    let text = |v: &Value| {
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let call = async |token: &str| {
        let resp = env.post_stateless_call(token, 3, "get_ticket").await;
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.expect("body");
        let data = body
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .unwrap_or(&body)
            .to_owned();
        serde_json::from_str::<Value>(data.trim()).expect("json")
    };
    let v = call(&token).await;
    let verified: Value = serde_json::from_str(&text(&v)).unwrap_or_else(|_| panic!("{v}"));
    assert_eq!(
        verified,
        json!({"sub": "sue", "tenant": "default", "roles": ["ticket-reader"],
               "client": "test-agent", "actors": ["agent-7"]})
    );

    // Reused for the same caller while fresh; another caller gets their own.
    call(&token).await;
    let bob = env.token("bob", &["ticket-reader"], &["tickets:read"]);
    let v = call(&bob).await;
    assert!(text(&v).contains("\"sub\":\"bob\""), "{v}");
    let seen = upstream.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].1, seen[1].1, "reused while fresh");
    assert_ne!(seen[0].1, seen[2].1);
    for (authorization, assertion) in &seen {
        // The gateway's own credential, never an agent's token.
        assert_eq!(
            authorization.as_deref(),
            Some(format!("Bearer {}", harness::UPSTREAM_SECRET).as_str())
        );
        assert!(
            ![&token, &bob]
                .iter()
                .any(|t| assertion.as_deref() == Some(t.as_str()))
        );
        // Explicitly typed, so it is never taken for an access token.
        let header = assertion
            .as_deref()
            .and_then(|a| a.split('.').next())
            .expect("a JWT");
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .expect("base64url"),
        )
        .expect("header");
        assert_eq!(header["typ"], authz_token::ASSERTION_TYPE);
    }
    // The assertion is for this upstream only, and short-lived.
    let verifier = upstream.verifier.get().expect("loaded");
    let a = seen[2].1.clone().expect("assertion");
    assert!(verifier.verify(&a, "urn:another-backend").is_err());
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(a.split('.').nth(1).expect("payload"))
            .expect("base64url"),
    )
    .expect("claims");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 30);
    assert_eq!(claims["subject_issuer"], harness::ISSUER);
}

#[tokio::test]
async fn without_identity_the_jwks_is_not_served() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let resp = reqwest::get(format!("{}/.well-known/jwks.json", env.base))
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
}
