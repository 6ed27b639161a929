//! The server driven by rmcp's own clients, in both protocol generations.

use demo_upstream::{DemoConfig, DemoUpstream};
use rmcp::model::{
    GetPromptRequestParams, ProtocolVersion, ReadResourceRequestParams, ResourceContents,
};
use serde_json::{Value, json};

use crate::support::{Client, legacy_client, modern_client, result_json, start, tool_call};

/// Runs the whole feature tour against a fresh server and checks every answer.
async fn tour(client: &Client, upstream: &DemoUpstream) {
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| {
            assert!(
                t.input_schema.get("type") == Some(&json!("object")),
                "{} has an object input schema",
                t.name
            );
            t.name.to_string()
        })
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "create_ticket",
            "delete_ticket",
            "get_ticket",
            "list_tickets"
        ]
    );

    let got = client
        .call_tool(tool_call("get_ticket", json!({"id": 1})))
        .await
        .expect("get_ticket");
    assert_eq!(got.is_error, Some(false));
    assert_eq!(result_json(&got)["title"], "Login page returns 500");

    let closed = client
        .call_tool(tool_call("list_tickets", json!({"status": "closed"})))
        .await
        .expect("list_tickets");
    assert_eq!(result_json(&closed).as_array().map(Vec::len), Some(1));

    let created = client
        .call_tool(tool_call(
            "create_ticket",
            json!({"title": "Printer on fire", "body": "Third floor."}),
        ))
        .await
        .expect("create_ticket");
    let ticket = result_json(&created);
    assert_eq!(ticket["status"], "open");
    let id = ticket["id"].as_u64().expect("numeric id");
    assert_eq!(id, 4);

    let deleted = client
        .call_tool(tool_call("delete_ticket", json!({"id": id})))
        .await
        .expect("delete_ticket");
    assert_eq!(result_json(&deleted)["title"], "Printer on fire");

    // Unknown ids are tool errors the caller can read, not protocol errors.
    let gone = client
        .call_tool(tool_call("get_ticket", json!({"id": id})))
        .await
        .expect("get_ticket on a deleted id still answers");
    assert_eq!(gone.is_error, Some(true));
    assert_eq!(
        result_json(&gone),
        Value::String(format!("no ticket with id {id}"))
    );

    let resources = client.list_resources(None).await.expect("resources/list");
    assert_eq!(resources.resources.len(), 1);
    assert_eq!(resources.resources[0].uri, "tickets://open");

    let read = client
        .read_resource(ReadResourceRequestParams::new("tickets://open"))
        .await
        .expect("resources/read");
    let [ResourceContents::TextResourceContents { uri, text, .. }] = read.contents.as_slice()
    else {
        panic!("expected one text content, got {:?}", read.contents);
    };
    assert_eq!(uri, "tickets://open");
    let open: Vec<Value> = serde_json::from_str(text).expect("JSON list");
    assert_eq!(open.len(), 2);
    assert!(open.iter().all(|t| t["status"] == "open"));

    let unknown = client
        .read_resource(ReadResourceRequestParams::new("tickets://closed"))
        .await;
    assert!(unknown.is_err(), "unknown resource must be an error");

    let prompts = client.list_prompts(None).await.expect("prompts/list");
    assert_eq!(prompts.prompts.len(), 1);
    assert_eq!(prompts.prompts[0].name, "triage_ticket");
    let args = prompts.prompts[0].arguments.as_deref().unwrap_or_default();
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].name, "id");

    let Value::Object(prompt_args) = json!({"id": "2"}) else {
        unreachable!()
    };
    let prompt = client
        .get_prompt(GetPromptRequestParams::new("triage_ticket").with_arguments(prompt_args))
        .await
        .expect("prompts/get");
    let text = serde_json::to_string(&prompt.messages).expect("serializable messages");
    assert!(text.contains("Add dark mode"), "{text}");

    let Value::Object(bad_args) = json!({"id": "999"}) else {
        unreachable!()
    };
    let bad = client
        .get_prompt(GetPromptRequestParams::new("triage_ticket").with_arguments(bad_args))
        .await;
    assert!(
        bad.is_err(),
        "a prompt for an unknown ticket must be an error"
    );

    assert_eq!(
        upstream.log.tool_calls(),
        [
            "get_ticket",
            "list_tickets",
            "create_ticket",
            "delete_ticket",
            "get_ticket"
        ]
    );
}

/// rmcp's plain `serve` runs the `initialize` handshake; the server answers with the newest
/// version that still has one (2025-11-25) and a session.
#[tokio::test]
async fn session_based_client_gets_everything() {
    let upstream = start(DemoConfig::default()).await;
    let client = legacy_client(&upstream.url(), None).await;
    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);

    tour(&client, &upstream).await;

    let requests = upstream.log.requests();
    assert_eq!(requests[0].mcp_method.as_deref(), Some("initialize"));
    assert!(requests[0].session_id.is_none());
    // Everything after the handshake rides on the session.
    assert!(
        requests[1..].iter().all(|r| r.session_id.is_some()),
        "{requests:#?}"
    );
    assert!(
        upstream
            .log
            .authorization_headers()
            .iter()
            .all(Option::is_none)
    );
    client.cancel().await.expect("close the client");
    upstream.shutdown().await;
}

/// rmcp's 2026-07-28 lifecycle: `server/discover`, then stateless requests without a session.
#[tokio::test]
async fn stateless_2026_client_gets_everything() {
    for json_response in [false, true] {
        let upstream = start(DemoConfig {
            json_response,
            ..DemoConfig::default()
        })
        .await;
        let client = modern_client(&upstream.url(), None).await;

        tour(&client, &upstream).await;

        let requests = upstream.log.requests();
        assert_eq!(requests[0].mcp_method.as_deref(), Some("server/discover"));
        assert!(
            requests.iter().all(|r| r.session_id.is_none()),
            "{requests:#?}"
        );
        assert!(
            requests
                .iter()
                .all(|r| r.protocol_version.as_deref() == Some("2026-07-28")),
            "{requests:#?}"
        );
        client.cancel().await.expect("close the client");
        upstream.shutdown().await;
    }
}

/// Both generations at once share one ticket store.
#[tokio::test]
async fn both_generations_share_one_store() {
    let upstream = start(DemoConfig::default()).await;
    let legacy = legacy_client(&upstream.url(), None).await;
    let modern = modern_client(&upstream.url(), None).await;

    let created = legacy
        .call_tool(tool_call(
            "create_ticket",
            json!({"title": "Shared", "body": "Seen by both."}),
        ))
        .await
        .expect("create over the session");
    let id = result_json(&created)["id"].clone();
    let seen = modern
        .call_tool(tool_call("get_ticket", json!({"id": id})))
        .await
        .expect("get over the stateless path");
    assert_eq!(result_json(&seen)["title"], "Shared");

    legacy.cancel().await.expect("close legacy client");
    modern.cancel().await.expect("close modern client");
    upstream.shutdown().await;
}
