//! Tasks belong to the principal whose request created them.

use authz_types::ReasonCode;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend};

/// A minimal stateless upstream that creates a task for task-augmented calls and lists every
/// task it knows, whoever asks.
async fn task_upstream() -> String {
    let created = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: String| {
            let created = created.clone();
            async move {
                let req: Value = serde_json::from_str(&body).expect("JSON-RPC");
                let id = req["id"].clone();
                let result = match req["method"].as_str() {
                    Some("tools/call") => {
                        let mut c = created.lock().expect("lock");
                        let task_id = format!("task-{}", c.len() + 1);
                        c.push(task_id.clone());
                        json!({"task": {"taskId": task_id, "status": "working"}})
                    }
                    Some("tasks/list") => {
                        let c = created.lock().expect("lock");
                        json!({"tasks": c.iter().map(|t| json!({"taskId": t, "status": "working"})).collect::<Vec<_>>()})
                    }
                    Some("tasks/get") => json!({"taskId": req["params"]["taskId"], "status": "working"}),
                    _ => json!({}),
                };
                ([("content-type", "application/json")], json!({"jsonrpc":"2.0","id":id,"result":result}).to_string())
            }
        }),
    );
    let addr = harness::serve_stand_in(app).await;
    format!("http://{addr}/mcp")
}

fn msg(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()
}

#[tokio::test]
async fn a_task_is_visible_and_usable_only_by_its_creator() {
    let url = task_upstream().await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(url),
            ..Default::default()
        },
    )
    .await;
    // Both are admins (tool and task rights); only ownership tells them apart.
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let ada = env.token("ada", &["ticket-admin"], &["tickets:write"]);

    let call = msg(
        1,
        "tools/call",
        json!({"name":"list_tickets","arguments":{},"task":{"ttl":60000}}),
    );
    let created: Value = env
        .post(Some(&adam), &[], &call)
        .await
        .json()
        .await
        .expect("json");
    let task_id = created["result"]["task"]["taskId"]
        .as_str()
        .expect("task id")
        .to_owned();
    let other: Value = env
        .post(Some(&ada), &[], &call)
        .await
        .json()
        .await
        .expect("json");
    let other_id = other["result"]["task"]["taskId"]
        .as_str()
        .expect("task id")
        .to_owned();

    let get = msg(2, "tasks/get", json!({"taskId": task_id}));
    let resp = env.post(Some(&adam), &[], &get).await;
    assert_eq!(resp.status(), 200, "the creator may poll its task");

    let resp = env.post(Some(&ada), &[], &get).await;
    assert_eq!(
        resp.status(),
        404,
        "another principal is told the task does not exist"
    );
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::TaskNotOwned);

    let resp = env
        .post(
            Some(&adam),
            &[],
            &msg(3, "tasks/get", json!({"taskId": "task-999"})),
        )
        .await;
    assert_eq!(
        resp.status(),
        404,
        "unknown tasks are refused, not forwarded"
    );

    let listed: Value = env
        .post(Some(&adam), &[], &msg(4, "tasks/list", json!({})))
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = listed["result"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["taskId"].as_str())
        .collect();
    assert_eq!(
        ids,
        [task_id.as_str()],
        "tasks/list shows only the caller's tasks, not {other_id}"
    );
}
