//! The 2026-07-28 wire: a plain call, a three-round `input_required` exchange, and the
//! integrity checks on the echoed `requestState`.

use serde_json::{Value, json};

use crate::support::{call, start};

fn first_text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().expect("a text block")
}

fn accept(content: Value) -> Value {
    json!({ "action": "accept", "content": content })
}

#[tokio::test]
async fn simple_text_is_served_statelessly() {
    let upstream = start().await;
    let reply = call(
        &upstream.url(),
        None,
        "tools/call",
        json!({ "name": "test_simple_text" }),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.session, None, "a 2026-07-28 request opens no session");
    let result = reply.result();
    assert_eq!(
        first_text(result),
        "This is a simple text response for testing."
    );
    assert_eq!(result["resultType"], "complete");
    upstream.shutdown().await;
}

#[tokio::test]
async fn multi_round_carries_sealed_state_to_completion() {
    let upstream = start().await;
    let url = upstream.url();
    let tool = "test_input_required_result_multi_round";

    let round1 = call(&url, None, "tools/call", json!({ "name": tool })).await;
    let r1 = round1.result();
    assert_eq!(r1["resultType"], "input_required", "{round1:?}");
    assert_eq!(r1["inputRequests"]["step1"]["method"], "elicitation/create");
    let state1 = r1["requestState"]
        .as_str()
        .expect("a requestState")
        .to_owned();

    let round2 = call(
        &url,
        None,
        "tools/call",
        json!({
            "name": tool,
            "inputResponses": { "step1": accept(json!({ "name": "Alice" })) },
            "requestState": state1,
        }),
    )
    .await;
    let r2 = round2.result();
    assert_eq!(r2["resultType"], "input_required", "{round2:?}");
    assert!(r2["inputRequests"].get("step2").is_some(), "{round2:?}");
    let state2 = r2["requestState"]
        .as_str()
        .expect("a requestState")
        .to_owned();
    assert_ne!(state1, state2, "each round seals its own state");

    let round3 = call(
        &url,
        None,
        "tools/call",
        json!({
            "name": tool,
            "inputResponses": { "step2": accept(json!({ "color": "blue" })) },
            "requestState": state2,
        }),
    )
    .await;
    let r3 = round3.result();
    assert_eq!(r3["resultType"], "complete", "{round3:?}");
    assert_eq!(
        first_text(r3),
        "Multi-round complete for Alice who likes blue"
    );
    upstream.shutdown().await;
}

#[tokio::test]
async fn tampered_or_transplanted_state_is_refused() {
    let upstream = start().await;
    let url = upstream.url();
    let tool = "test_input_required_result_tampered_state";
    let first = call(&url, None, "tools/call", json!({ "name": tool })).await;
    let state = first.result()["requestState"]
        .as_str()
        .expect("a requestState")
        .to_owned();
    let confirm = json!({ "confirm": accept(json!({ "ok": true })) });

    let genuine = call(
        &url,
        None,
        "tools/call",
        json!({ "name": tool, "inputResponses": confirm, "requestState": state }),
    )
    .await;
    assert_eq!(first_text(genuine.result()), "integrity-ok: state verified");

    let tampered = call(
        &url,
        None,
        "tools/call",
        json!({ "name": tool, "inputResponses": confirm, "requestState": format!("{state}-TAMPERED") }),
    )
    .await;
    assert_eq!(tampered.message["error"]["code"], -32602, "{tampered:?}");

    // A genuine state issued by one tool is no good for another.
    let transplanted = call(
        &url,
        None,
        "tools/call",
        json!({
            "name": "test_input_required_result_request_state",
            "inputResponses": confirm,
            "requestState": state,
        }),
    )
    .await;
    assert_eq!(
        transplanted.message["error"]["code"], -32602,
        "{transplanted:?}"
    );
    upstream.shutdown().await;
}

#[tokio::test]
async fn loopback_host_is_accepted_and_a_foreign_one_refused() {
    let upstream = start().await;
    let url = upstream.url();
    let loopback = format!("127.0.0.1:{}", upstream.addr.port());
    let ok = call(&url, Some(&loopback), "tools/list", json!({})).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(
        ok.result()["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );

    let rebinding = call(&url, Some("evil.example.com"), "tools/list", json!({})).await;
    assert_eq!(rebinding.status, 403, "{rebinding:?}");
    upstream.shutdown().await;
}
