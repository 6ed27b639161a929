//! 2026-07-28 custom headers (SEP-2243): `Mcp-Param-*` headers reach the upstream only when they
//! agree with the `tools/call` arguments they mirror, per the tool's `x-mcp-header` annotations;
//! any disagreement is a recorded 400 / -32020 with the request's id, and nothing is forwarded.

use std::sync::{Arc, Mutex};

use authz_types::ReasonCode;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend};

/// What the stand-in upstream saw: how many `tools/list` it answered and, per `tools/call`, the
/// `mcp-param-*` headers it received.
#[derive(Default)]
struct Seen {
    lists: usize,
    calls: Vec<Vec<(String, String)>>,
}

/// An upstream with one tool, `create_ticket`, whose `region` (string) and `priority` (integer)
/// are annotated for headers; `title` is not.
async fn upstream(seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = Arc::clone(&seen);
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let result = match v["method"].as_str() {
                    Some("tools/list") => {
                        seen.lock().expect("lock").lists += 1;
                        json!({"tools": [{"name": "create_ticket", "inputSchema": {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string"},
                            "region": {"type": "string", "x-mcp-header": "Region"},
                            "priority": {"type": "integer", "x-mcp-header": "Priority"}
                        }}}]})
                    }
                    _ => {
                        let params = headers
                            .iter()
                            .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
                            .map(|(k, v)| {
                                (k.to_string(), v.to_str().unwrap_or_default().to_owned())
                            })
                            .collect();
                        seen.lock().expect("lock").calls.push(params);
                        json!({"content": [{"type": "text", "text": "ok"}]})
                    }
                };
                (
                    [("content-type", "application/json")],
                    json!({"jsonrpc": "2.0", "id": v["id"], "result": result}).to_string(),
                )
            }
        }),
    );
    harness::serve_stand_in(app).await
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
           "io.modelcontextprotocol/clientCapabilities": {}})
}

/// A 2026-07-28 `tools/call` of `create_ticket` with `arguments` and extra headers.
async fn call(
    env: &harness::Env,
    token: &str,
    id: u64,
    arguments: Value,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "create_ticket", "arguments": arguments, "_meta": meta()}});
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "create_ticket"),
    ];
    headers.extend_from_slice(extra);
    env.post(Some(token), &headers, &body.to_string()).await
}

#[tokio::test]
async fn custom_headers_pass_only_when_they_agree_with_the_body() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = upstream(Arc::clone(&seen)).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{addr}/mcp")),
            ..Default::default()
        },
    )
    .await;
    let token = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let args = json!({"title": "t", "region": "eu-west", "priority": 2});

    // A list passing through the gateway teaches it the tool's headers: the call that follows
    // is checked without another look upstream, and both headers reach the upstream.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": meta()}});
    let listed = env
        .post(
            Some(&token),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ],
            &body.to_string(),
        )
        .await;
    assert_eq!(listed.status(), 200);
    let ok = call(
        &env,
        &token,
        2,
        args.clone(),
        &[("mcp-param-region", "eu-west"), ("Mcp-Param-Priority", "2")],
    )
    .await;
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap_or_default());
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.lists, 1, "the schema came from the client's own list");
        assert_eq!(
            seen.calls,
            [vec![
                ("mcp-param-region".to_owned(), "eu-west".to_owned()),
                ("mcp-param-priority".to_owned(), "2".to_owned()),
            ]],
            "the checked headers reach the upstream"
        );
    }

    // A replica that has seen no list looks the tool up upstream itself, then passes the call.
    let other = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{addr}/mcp")),
            public_url: Some(env.base.clone()),
            keys: Some((env.private_jwk.clone(), env.jwks_path.clone())),
            ..Default::default()
        },
    )
    .await;
    let ok = call(
        &other,
        &token,
        3,
        args.clone(),
        &[("mcp-param-region", "eu-west"), ("mcp-param-priority", "2")],
    )
    .await;
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap_or_default());
    assert_eq!(seen.lock().expect("lock").lists, 2, "one lookup upstream");

    // A value outside printable ASCII travels Base64-wrapped and is compared decoded.
    let region = "zürich";
    let b64 = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(region)
    );
    let ok = call(
        &env,
        &token,
        4,
        json!({"title": "t", "region": region}),
        &[("mcp-param-region", &b64)],
    )
    .await;
    assert_eq!(ok.status(), 200);

    type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);
    let refusals: Vec<Case> = vec![
        (
            "a header that differs from the body",
            args.clone(),
            vec![("mcp-param-region", "us-east"), ("mcp-param-priority", "2")],
        ),
        (
            "an annotated argument without its header",
            args.clone(),
            vec![("mcp-param-region", "eu-west")],
        ),
        (
            "a header for an argument the body lacks",
            json!({"title": "t", "region": "eu-west"}),
            vec![("mcp-param-region", "eu-west"), ("mcp-param-priority", "2")],
        ),
        (
            "a header naming no annotated parameter",
            json!({"title": "t"}),
            vec![("mcp-param-title", "t")],
        ),
        (
            "a header sent twice",
            json!({"title": "t", "region": "eu-west"}),
            vec![
                ("mcp-param-region", "eu-west"),
                ("mcp-param-region", "eu-west"),
            ],
        ),
    ];
    let calls_before = seen.lock().expect("lock").calls.len();
    for (n, (what, arguments, extra)) in refusals.into_iter().enumerate() {
        let id = 10 + n as u64;
        let resp = call(&env, &token, id, arguments, &extra).await;
        assert_eq!(resp.status(), 400, "{what}");
        let record = env.the_record_for(&resp).await;
        assert_eq!(record.reason, ReasonCode::MalformedRequest, "{what}");
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], -32020, "{what}: {v}");
        assert_eq!(
            v["id"],
            json!(id),
            "{what}: the error answers the request: {v}"
        );
    }
    assert_eq!(
        seen.lock().expect("lock").calls.len(),
        calls_before,
        "no refused call reached the upstream"
    );

    // A custom header on any other message is refused too.
    let body = json!({"jsonrpc": "2.0", "id": 20, "method": "tools/list",
        "params": {"_meta": meta()}});
    let resp = env
        .post(
            Some(&token),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-param-region", "eu-west"),
            ],
            &body.to_string(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], -32020, "{v}");
}
