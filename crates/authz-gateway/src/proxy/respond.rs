//! What follows a forwarded request: a successful `initialize` binds the new session to its
//! principal, and the answer streams back — rewritten when the request was a list (filtered per
//! caller) or concerns tasks (bound to, or shown only to, their creator).

use std::sync::Arc;

use authz_types::{Message, MessageKind, Method, Principal};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::authorize::item_filter;
use crate::App;
use crate::config::Upstream;
use crate::error::ApiError;
use crate::filter::{self, ListKind, Rewrite};
use crate::input_requests;
use crate::recording::OutcomeRecorder;
use crate::sessions::Owner;
use crate::stream::{StreamGuard, Unreadable, rewritten_response, stream_back};

/// A successful `initialize` binds the session the upstream opened to the caller (in the shared
/// store too, before the answer leaves: the next request may reach another replica).
pub(super) async fn bind_session(
    app: &App,
    up: &Upstream,
    principal: &Principal,
    msg: &Message,
    resp: &reqwest::Response,
) {
    if matches!(msg.operation.method, Method::Initialize)
        && resp.status().is_success()
        && let Some(sid) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        app.sessions.bind(&up.name, sid, Owner::of(principal)).await;
    }
}

/// The upstream's answer to `msg`, streamed back under `guard`: unchanged, unless the response to
/// a request must be rewritten (see [`response_rewrite`]). `first_round` is the request id a
/// multi round-trip state is sealed with (this request's, or the first round's for a retry).
#[allow(clippy::too_many_arguments)]
pub(super) async fn answer(
    app: &App,
    up: &Arc<Upstream>,
    principal: &Principal,
    msg: &Message,
    resp: reqwest::Response,
    mut guard: StreamGuard,
    stateless: bool,
    first_round: &str,
) -> Result<Response, ApiError> {
    let Some(id) = msg.id.clone().filter(|_| msg.kind == MessageKind::Request) else {
        return Ok(stream_back(resp, guard));
    };
    match response_rewrite(
        app,
        up,
        principal,
        msg,
        guard.outcome(),
        stateless,
        first_round,
    ) {
        Some((rw, private)) => {
            // Lists (and tasks) must be readable to pass: they are filtered per caller. A call's
            // result is only looked at for a multi round-trip state or a cache scope, and one
            // that cannot be read passes as it always did.
            let passes = matches!(
                msg.operation.method,
                Method::ToolsCall
                    | Method::ResourcesRead
                    | Method::PromptsGet
                    | Method::ServerDiscover
            ) && msg.value.pointer("/params/task").is_none()
                // Input requests under a rule must be read to be judged.
                && !(stateless
                    && input_requests::rule_for(&up.input_requests, &msg.operation).is_some());
            let unreadable = if passes {
                Unreadable::PassOn
            } else {
                Unreadable::Refuse
            };
            rewritten_response(id, rw, private, unreadable, resp, guard).await
        }
        None => Ok(stream_back(resp, guard)),
    }
}

/// For a session-based `tools/call` under an `input_requests` rule answered with SSE: the guard
/// that fails the call on the first server-to-client request the rule forbids (the client gets
/// `input_request_forbidden` for its call, the upstream a refusal of its request, the audit
/// trail a deny record) and ends the stream.
pub(super) fn session_input_guard(
    app: &App,
    up: &Arc<Upstream>,
    msg: &Message,
    resp: &reqwest::Response,
    guard: &mut StreamGuard,
    headers: &HeaderMap,
) -> Option<filter::RequestGuard> {
    if msg.operation.method != Method::ToolsCall
        || msg.kind != MessageKind::Request
        || msg.value.pointer("/params/task").is_some()
    {
        return None;
    }
    let request_id = guard.outcome().request_id().to_owned();
    let call_id = msg.id.clone().unwrap_or(Value::Null);
    request_guard(
        app,
        up,
        &msg.operation,
        resp,
        guard,
        headers,
        move |asked| {
            filter::Guarded::FailCall(input_requests::refusal(&call_id, &[asked], &request_id))
        },
    )
}

/// For a session's own stream (`GET`) under an `input_requests` rule for every method and
/// target (`method = "*"`, `target = "*"`: the stream serves no particular call): a forbidden
/// server-to-client request is kept from the client, refused to the upstream on the session and
/// recorded; the stream goes on.
pub(super) fn session_stream_guard(
    app: &App,
    up: &Arc<Upstream>,
    op: &authz_types::Operation,
    resp: &reqwest::Response,
    guard: &mut StreamGuard,
    headers: &HeaderMap,
) -> Option<filter::RequestGuard> {
    let name = up.name.clone();
    request_guard(app, up, op, resp, guard, headers, move |asked| {
        tracing::info!(method = %asked.method, upstream = %name, "a server-to-client request on a session stream was withheld by input_requests");
        filter::Guarded::Withhold
    })
}

/// The guard over an SSE answer's server-to-client requests under the rule for `op`, if the
/// answer is SSE and a rule applies: a request the rule forbids is recorded (through the
/// outcome recorder), refused to the upstream on the caller's session, and becomes what
/// `instead` says.
fn request_guard(
    app: &App,
    up: &Arc<Upstream>,
    op: &authz_types::Operation,
    resp: &reqwest::Response,
    guard: &mut StreamGuard,
    headers: &HeaderMap,
    instead: impl Fn(input_requests::Asked) -> filter::Guarded + Send + Sync + 'static,
) -> Option<filter::RequestGuard> {
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    if !sse {
        return None;
    }
    let rule = input_requests::rule_for(&up.input_requests, op)?.clone();
    let client = Arc::clone(app.client(&up.name)?);
    let sink = guard.outcome().asked_sink();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (session, version) = (header("mcp-session-id"), header("mcp-protocol-version"));
    let up = Arc::clone(up);
    Some(Arc::new(move |request: &Value| {
        let Some(asked) = input_requests::forbidden_request(&rule, request) else {
            return filter::Guarded::Pass;
        };
        sink.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(asked.clone());
        tokio::spawn(crate::upstream::refuse_server_request(
            Arc::clone(&client),
            Arc::clone(&up),
            session.clone(),
            version.clone(),
            request.get("id").cloned().unwrap_or(Value::Null),
        ));
        instead(asked)
    }))
}

/// What, if anything, must be done to the response of an allowed request: list results are
/// filtered per principal; a task-augmented request's answer binds the new task to its creator;
/// `tasks/list` shows only the caller's tasks; a `resources/read`, `prompts/get` or
/// `server/discover` result never leaves as `cacheScope: "public"` (its `ttlMs` is kept).
fn response_rewrite(
    app: &App,
    up: &Arc<Upstream>,
    principal: &Principal,
    msg: &Message,
    outcome: &mut OutcomeRecorder,
    stateless: bool,
    first_round: &str,
) -> Option<(Rewrite, bool)> {
    if let Some(kind) = ListKind::of(&msg.operation.method) {
        let filter = filter::list_filter_recording(
            kind,
            item_filter(app, up.clone(), principal.clone()),
            Some(outcome.shown_sink()),
        );
        // Definitions that are not the approved ones go first (see `crate::pins`); then the
        // upstream's tools teach the gateway their custom headers; then the policy filters.
        let (pins, mode) = (Arc::clone(&app.pins), up.pin_definitions);
        let (schemas, upstream) = (Arc::clone(&app.tool_schemas), up.name.clone());
        let screen_learn_filter: Rewrite = Arc::new(move |v: &mut Value| {
            pins.screen(mode, &upstream, kind, v);
            if kind == ListKind::Tools
                && let Some(tools) = v.pointer("/result/tools").and_then(Value::as_array)
            {
                schemas.learn(&upstream, tools);
            }
            filter(v)
        });
        return Some((screen_learn_filter, true));
    }
    match msg.operation.method {
        Method::TasksList => {
            let tasks = app.tasks.clone();
            let (upstream, owner) = (up.name.clone(), Owner::of(principal));
            let rw: Rewrite = Arc::new(move |v: &mut Value| {
                if let Some(items) = v.pointer_mut("/result/tasks").and_then(Value::as_array_mut) {
                    items.retain(|t| {
                        t.get("taskId")
                            .and_then(Value::as_str)
                            .is_some_and(|id| tasks.owner_is(&upstream, id, &owner))
                    });
                }
                true
            });
            Some((rw, true))
        }
        // Results that may ask for input (2026-07-28 multi round-trip: the upstream's
        // `requestState` leaves sealed to this caller) or say how they can be cached (what the
        // gateway hands out depends on who asked, so never cached for everyone).
        Method::ToolsCall | Method::ResourcesRead | Method::PromptsGet | Method::ServerDiscover
            if (stateless || msg.operation.method != Method::ToolsCall)
                && msg.value.pointer("/params/task").is_none() =>
        {
            let cacheable = msg.operation.method != Method::ToolsCall;
            // What the upstream asks the client for is judged before anything else is done to
            // the result: a forbidden request fails the call (nothing to seal then).
            let inputs = input_requests::rule_for(&up.input_requests, &msg.operation)
                .filter(|_| stateless)
                .map(|rule| {
                    (
                        rule.clone(),
                        outcome.asked_sink(),
                        outcome.request_id().to_owned(),
                    )
                });
            let seal = stateless.then(|| {
                (
                    Arc::clone(&app.sealer),
                    super::authorize::state_binding(up, principal, msg),
                    first_round.to_owned(),
                )
            });
            let rw: Rewrite = Arc::new(move |v: &mut Value| {
                if let Some((rule, sink, request_id)) = &inputs
                    && v.pointer("/result/resultType").and_then(Value::as_str)
                        == Some("input_required")
                {
                    let asked = input_requests::forbidden_in_result(rule, v);
                    if !asked.is_empty() {
                        *v = input_requests::refusal(&v["id"], &asked, request_id);
                        sink.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .extend(asked);
                        return true;
                    }
                }
                let mut changed = false;
                if let Some((sealer, binding, first_round)) = &seal
                    && v.pointer("/result/resultType").and_then(Value::as_str)
                        == Some("input_required")
                    && let Some(state) = v.pointer_mut("/result/requestState")
                    && let Some(raw) = state.as_str()
                {
                    let now = authz_types::now_unix_ms();
                    *state = Value::String(sealer.seal(raw, binding, first_round, now));
                    changed = true;
                }
                if cacheable
                    && let Some(scope) = v.pointer_mut("/result/cacheScope")
                    && scope != "private"
                {
                    *scope = Value::String("private".to_owned());
                    changed = true;
                }
                changed
            });
            Some((rw, cacheable))
        }
        _ if msg.value.pointer("/params/task").is_some() => {
            let tasks = app.tasks.clone();
            let (upstream, owner) = (up.name.clone(), Owner::of(principal));
            let rw: Rewrite = Arc::new(move |v: &mut Value| {
                if let Some(id) = v.pointer("/result/task/taskId").and_then(Value::as_str) {
                    tasks.bind_soon(&upstream, id, owner.clone());
                }
                false
            });
            Some((rw, false))
        }
        _ => None,
    }
}
