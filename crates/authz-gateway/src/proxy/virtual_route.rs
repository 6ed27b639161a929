//! Virtual servers: one route (`/mcp/<name>`) over several upstreams (`[[virtual_servers]]`).
//!
//! The caller authenticates against the virtual route (its own resource URI and audience); every
//! message is then handed to the member pipeline ([`super::post`]) of the member it concerns, so
//! each member's policy, scopes, quotas, approvals, pins and audit apply exactly as on the
//! member's own route (`tool:files/read_file` means the same through either). Nothing reaches a
//! member without the member's own decision and record.
//!
//! - `initialize` (and 2026-07-28 `server/discover`) goes to every member; the answers merge
//!   (capabilities every member could serve through a single request/response route, one
//!   protocol version all agree on). The virtual session id carries the members' session ids
//!   (`v1.` + base64url JSON); each is still checked against its owner on every request, so a
//!   forged one is as useless as someone else's.
//! - Lists merge: names get the member's prefix, resource URIs and templates its URI prefix.
//!   A page holds the members in order until one paginates; the cursor (opaque, base64url of
//!   `[member, member's cursor]`) resumes there. A member refusing the list (403) or without
//!   the method (-32601: it offers no prompts, say) is left out.
//! - Calls (`tools/call`, `prompts/get`, `resources/read`, `completion/complete`, subscribe)
//!   go to the member whose prefix their name or URI starts with, with the prefix removed;
//!   `ping` to the first member; notifications to every member.
//! - Not carried: server-to-client streams (`GET` is 405; list-changed and subscription
//!   notifications are not offered), tasks and `subscriptions/listen` (unknown methods here),
//!   and in session-based versions server-to-client requests during a tool call: an answer
//!   could not be routed back to the member that asked, so they are refused as an
//!   `input_requests` rule refuses them. 2026-07-28 `input_required` rounds work: the retry is
//!   routed by name like the first round.

use std::collections::BTreeMap;
use std::sync::Arc;

use authz_types::{Message, MessageKind, Method, Operation, Principal, ReasonCode, Target};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::record::deny;
use super::{Ctx, gates, intake};
use crate::App;
use crate::config::{InputRule, Upstream, VirtualServer};
use crate::error::{ApiError, Refusal};
use crate::metrics::RouteMetrics;

/// Largest member answer read back to merge (a list page, an `initialize` result).
const MAX_MEMBER_ANSWER: usize = 16 * 1024 * 1024;
const SESSION_PREFIX: &str = "v1.";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A virtual server as the pipeline serves it.
#[derive(Debug)]
pub(crate) struct VirtualRoute {
    /// What the pipeline sees before a message is routed: the virtual route's name, resource
    /// URI and audit mode (refusals at this level are recorded under the virtual route).
    pub(crate) front: Arc<Upstream>,
    pub(crate) members: Vec<RouteMember>,
}

/// One member: its prefixes and its route.
#[derive(Debug)]
pub(crate) struct RouteMember {
    pub(crate) prefix: String,
    pub(crate) uri_prefix: String,
    /// The member's route, for 2026-07-28 calls.
    upstream: Arc<Upstream>,
    /// The same route with every server-to-client request forbidden (first `input_requests`
    /// rule), for session-based calls: an answer could not be routed back to it.
    session: Arc<Upstream>,
    metrics: Arc<RouteMetrics>,
}

impl VirtualRoute {
    /// The virtual server `v` over the gateway's routes; `None` if a member has no route.
    pub(crate) fn new(
        v: &VirtualServer,
        upstreams: &std::collections::HashMap<String, Arc<Upstream>>,
        metrics: &crate::metrics::Metrics,
    ) -> Option<VirtualRoute> {
        let mut members = Vec::with_capacity(v.members.len());
        for m in &v.members {
            let upstream = upstreams.get(&m.upstream)?.clone();
            let mut session = (*upstream).clone();
            session.input_requests.insert(
                0,
                InputRule {
                    method: "*".to_owned(),
                    target: crate::scopes::Glob::new("*").ok()?,
                    sampling: false,
                    elicitation: false,
                    url_origins: None,
                    roots: false,
                },
            );
            members.push(RouteMember {
                prefix: m.prefix.clone(),
                uri_prefix: m.uri_prefix.clone(),
                metrics: metrics.route(&m.upstream)?.clone(),
                session: Arc::new(session),
                upstream,
            });
        }
        let first = &members.first()?.upstream;
        // Refusals at the virtual level are recorded durably if any member's are.
        let audit_mode = if members
            .iter()
            .any(|m| m.upstream.audit_mode == crate::config::AuditMode::Durable)
        {
            crate::config::AuditMode::Durable
        } else {
            crate::config::AuditMode::Buffered
        };
        let front = Upstream {
            name: v.name.clone(),
            url: first.url.clone(),
            credential: crate::config::Credential::None,
            timeout: first.timeout,
            idle_timeout: first.idle_timeout,
            max_stream: None,
            ca_file: None,
            audit_mode,
            record_arguments: Vec::new(),
            redact_arguments: Vec::new(),
            scopes: Vec::new(),
            resource: v.resource.clone(),
            structured_denials: false,
            input_requests: Vec::new(),
            pin_definitions: crate::pins::PinMode::Off,
            identity_assertion: None,
            stdio: None,
        };
        Some(VirtualRoute {
            front: Arc::new(front),
            members,
        })
    }
}

/// The pipeline of a virtual route: the same transport checks and authentication as any route,
/// then each message handed to the members it concerns.
pub(super) async fn pipeline(
    app: &App,
    ctx: &Ctx,
    v: &VirtualRoute,
    method: HttpMethod,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (principal, stateless, body) = super::entry(app, ctx, &method, &headers, body).await?;
    let http_op = || Operation::new(Method::Unknown(method.as_str().to_owned()), Target::None);
    let sessions = match session_ids(v, ctx.session_id.as_deref()) {
        Some(s) => s,
        None => {
            let err = ApiError::from(Refusal::SessionNotFound);
            let op = http_op();
            return Err(deny(app, ctx, &principal, &op, ReasonCode::SessionMismatch, err).await);
        }
    };
    let call = Call {
        app,
        ctx,
        v,
        principal: &principal,
        headers: &headers,
        stateless,
        sessions: &sessions,
    };
    match method {
        HttpMethod::POST => call.post(body).await,
        HttpMethod::GET | HttpMethod::DELETE if stateless => {
            Err(Refusal::StatelessNeedsPost.into())
        }
        HttpMethod::DELETE => call.end().await,
        HttpMethod::GET => {
            // No server-to-client stream: the members' streams could not be told apart.
            let err = ApiError::from(Refusal::MethodNotAllowed);
            Err(deny(
                app,
                ctx,
                &principal,
                &http_op(),
                ReasonCode::UnknownMethod,
                err,
            )
            .await)
        }
        _ => Err(Refusal::MethodNotAllowed.into()),
    }
}

/// The members' session ids a virtual session id carries (none without one); `None` if it is
/// not one of ours or names a route that is not a member.
fn session_ids(v: &VirtualRoute, sid: Option<&str>) -> Option<BTreeMap<String, String>> {
    let Some(sid) = sid else {
        return Some(BTreeMap::new());
    };
    let raw = B64.decode(sid.strip_prefix(SESSION_PREFIX)?).ok()?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&raw).ok()?;
    let known = map.iter().all(|(name, id)| {
        v.members.iter().any(|m| m.upstream.name == *name) && HeaderValue::from_str(id).is_ok()
    });
    known.then_some(map)
}

/// One request to a virtual route, with what routing it needs.
struct Call<'a> {
    app: &'a App,
    ctx: &'a Ctx,
    v: &'a VirtualRoute,
    principal: &'a Principal,
    headers: &'a HeaderMap,
    stateless: bool,
    sessions: &'a BTreeMap<String, String>,
}

/// A list method's array and the field of each item that carries its name or URI.
fn list_shape(method: &Method) -> Option<(&'static str, &'static str, bool)> {
    Some(match method {
        Method::ToolsList => ("tools", "name", false),
        Method::PromptsList => ("prompts", "name", false),
        Method::ResourcesList => ("resources", "uri", true),
        Method::ResourcesTemplatesList => ("resourceTemplates", "uriTemplate", true),
        _ => return None,
    })
}

impl Call<'_> {
    async fn post(&self, body: Body) -> Result<Response, ApiError> {
        let (app, ctx, principal) = (self.app, self.ctx, self.principal);
        let (msg, _) =
            intake::message(app, ctx, principal, self.headers, body, self.stateless).await?;
        gates::routing_headers(app, ctx, principal, self.headers, &msg, self.stateless).await?;
        if msg.kind == MessageKind::Response {
            // Which member asked cannot be told: such requests are refused while a call runs.
            let err = ApiError::from(Refusal::Malformed {
                message: "a virtual server carries no server-to-client requests to answer".into(),
                jsonrpc_code: -32600,
            });
            return Err(deny(
                app,
                ctx,
                principal,
                &msg.operation,
                ReasonCode::MalformedRequest,
                err,
            )
            .await);
        }
        match &msg.operation.method {
            Method::Initialize | Method::ServerDiscover => self.initialize(&msg).await,
            Method::Notification(_) => self.notify(&msg).await,
            m if list_shape(m).is_some() => self.list(&msg).await,
            Method::Ping => self.forward(0, msg.value.clone(), None).await,
            Method::ToolsCall
            | Method::PromptsGet
            | Method::ResourcesRead
            | Method::ResourcesSubscribe
            | Method::ResourcesUnsubscribe
            | Method::CompletionComplete => self.routed(&msg).await,
            _ => {
                let err = ApiError::from(Refusal::UnknownMethod).with_id(msg.id.clone());
                Err(deny(
                    app,
                    ctx,
                    principal,
                    &msg.operation,
                    ReasonCode::UnknownMethod,
                    err,
                )
                .await)
            }
        }
    }

    /// The context of a message handed to member `i` (`request_id`: the virtual request's own
    /// when one member serves it, a fresh one per member when all do).
    fn member_ctx(&self, i: usize, request_id: String) -> Ctx {
        let m = &self.v.members[i];
        let upstream = if self.stateless {
            m.upstream.clone()
        } else {
            m.session.clone()
        };
        self.ctx.member(
            request_id,
            upstream,
            m.metrics.clone(),
            self.sessions.get(&m.upstream.name).cloned(),
        )
    }

    /// The member pipeline for member `i` with the message `value`, its `Mcp-Name` header (if the
    /// client sent one) replaced by `name`.
    async fn forward(
        &self,
        i: usize,
        value: Value,
        name: Option<&str>,
    ) -> Result<Response, ApiError> {
        self.forward_as(i, value, name, self.ctx.request_id.clone())
            .await
    }

    async fn forward_as(
        &self,
        i: usize,
        value: Value,
        name: Option<&str>,
        request_id: String,
    ) -> Result<Response, ApiError> {
        let ctx = self.member_ctx(i, request_id);
        let mut headers = self.headers.clone();
        headers.remove("mcp-session-id");
        if let Some(sid) = &ctx.session_id
            && let Ok(v) = HeaderValue::from_str(sid)
        {
            headers.insert("mcp-session-id", v);
        }
        if let Some(name) = name
            && headers.contains_key("mcp-name")
            && let Some(v) = header_value(name)
        {
            headers.insert("mcp-name", v);
        }
        let bytes = serde_json::to_vec(&value).map_err(|_| Refusal::UpstreamInvalid)?;
        super::post(
            self.app,
            &ctx,
            self.principal,
            &headers,
            Body::from(bytes),
            self.stateless,
        )
        .await
    }

    /// A call concerning one named tool, prompt or URI: to the member whose prefix it starts
    /// with, the prefix removed.
    async fn routed(&self, msg: &Message) -> Result<Response, ApiError> {
        let pointer = match &msg.operation.target {
            Target::Tool(_) | Target::Prompt(_) => "/params/name",
            Target::Completion(authz_types::CompletionRef::Prompt(_)) => "/params/ref/name",
            Target::Completion(authz_types::CompletionRef::Resource(_)) => "/params/ref/uri",
            _ => "/params/uri",
        };
        let uri = !pointer.ends_with("name");
        let full = msg
            .value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default();
        let found = self.v.members.iter().enumerate().find_map(|(i, m)| {
            let prefix = if uri { &m.uri_prefix } else { &m.prefix };
            full.strip_prefix(prefix.as_str())
                .filter(|rest| !rest.is_empty())
                .map(|rest| (i, rest.to_owned()))
        });
        let Some((i, inner)) = found else {
            let err = ApiError::from(Refusal::Malformed {
                message: format!("no member of this virtual server serves `{full}`"),
                jsonrpc_code: -32602,
            })
            .with_id(msg.id.clone());
            return Err(deny(
                self.app,
                self.ctx,
                self.principal,
                &msg.operation,
                ReasonCode::MalformedRequest,
                err,
            )
            .await);
        };
        let mut value = msg.value.clone();
        if let Some(slot) = value.pointer_mut(pointer) {
            *slot = Value::String(inner.clone());
        }
        self.forward(i, value, Some(&inner)).await
    }

    /// Notifications go to every member (a cancellation names an id only one of them saw).
    async fn notify(&self, msg: &Message) -> Result<Response, ApiError> {
        for i in 0..self.v.members.len() {
            let resp = self
                .forward_as(i, msg.value.clone(), None, fresh_id())
                .await?;
            drop(axum::body::to_bytes(resp.into_body(), MAX_MEMBER_ANSWER).await);
        }
        Ok(StatusCode::ACCEPTED.into_response())
    }

    /// `DELETE`: ends every member session the virtual one holds.
    async fn end(&self) -> Result<Response, ApiError> {
        let mut first_error = None;
        for i in 0..self.v.members.len() {
            let ctx = self.member_ctx(i, fresh_id());
            let Some(sid) = ctx.session_id.clone() else {
                continue;
            };
            let mut headers = self.headers.clone();
            if let Ok(v) = HeaderValue::from_str(&sid) {
                headers.insert("mcp-session-id", v);
            }
            let ended =
                super::stream_or_end(self.app, &ctx, self.principal, &headers, HttpMethod::DELETE)
                    .await;
            match ended {
                Ok(resp) => drop(axum::body::to_bytes(resp.into_body(), 64 * 1024).await),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }

    /// `initialize` or `server/discover`: every member is asked; the answers merge.
    async fn initialize(&self, msg: &Message) -> Result<Response, ApiError> {
        let id = msg.id.clone();
        let mut results = Vec::with_capacity(self.v.members.len());
        let mut sessions = BTreeMap::new();
        for i in 0..self.v.members.len() {
            let asked = self
                .forward_as(i, msg.value.clone(), None, fresh_id())
                .await;
            let answer = match asked {
                Ok(resp) => MemberAnswer::read(resp, id.as_ref()).await,
                Err(e) => Err(e),
            };
            let mut answer = match answer {
                Ok(a) if a.message.get("result").is_some() => a,
                // A member that cannot start refuses the virtual server's start: the sessions
                // the others opened are ended.
                other => {
                    self.end_opened(&sessions).await;
                    return match other {
                        Ok(a) => Ok(json_answer(&a.message, None)),
                        Err(e) => Err(e.with_id(id)),
                    };
                }
            };
            let name = self.v.members[i].upstream.name.clone();
            if let Some(sid) = answer.session {
                sessions.insert(name.clone(), sid);
            }
            results.push((name, answer.message["result"].take()));
        }
        let merged = if msg.operation.method == Method::Initialize {
            merge_initialize(&self.v.front.name, &results)
        } else {
            merge_discover(&self.v.front.name, &results)
        };
        let merged = match merged {
            Ok(m) => m,
            Err(problem) => {
                self.end_opened(&sessions).await;
                tracing::warn!(route = %self.v.front.name, %problem, "virtual server members disagree");
                return Err(ApiError::from(Refusal::UpstreamInvalid).with_id(id));
            }
        };
        let sid = (!sessions.is_empty())
            .then(|| serde_json::to_vec(&sessions).ok())
            .flatten()
            .map(|raw| format!("{SESSION_PREFIX}{}", B64.encode(raw)));
        let message = json!({"jsonrpc": "2.0", "id": id, "result": merged});
        Ok(json_answer(&message, sid.as_deref()))
    }

    /// Ends the member sessions opened by a virtual `initialize` that failed.
    async fn end_opened(&self, sessions: &BTreeMap<String, String>) {
        for (i, m) in self.v.members.iter().enumerate() {
            let Some(sid) = sessions.get(&m.upstream.name) else {
                continue;
            };
            let mut ctx = self.member_ctx(i, fresh_id());
            ctx.session_id = Some(sid.clone());
            let mut headers = self.headers.clone();
            if let Ok(v) = HeaderValue::from_str(sid) {
                headers.insert("mcp-session-id", v);
            }
            let _ =
                super::stream_or_end(self.app, &ctx, self.principal, &headers, HttpMethod::DELETE)
                    .await;
        }
    }

    /// A list: the members' pages in order, each filtered by the member pipeline and prefixed,
    /// until a member has more (the cursor resumes there).
    async fn list(&self, msg: &Message) -> Result<Response, ApiError> {
        let Some((field, key, uri)) = list_shape(&msg.operation.method) else {
            return Err(Refusal::UnknownMethod.into());
        };
        let id = msg.id.clone();
        let cursor = msg.value.pointer("/params/cursor");
        let Some((start, mut member_cursor)) = cursor.map_or(Some((0, None)), |c| {
            decode_cursor(c).filter(|(i, _)| *i < self.v.members.len())
        }) else {
            let err = ApiError::from(Refusal::Malformed {
                message: "invalid cursor".into(),
                jsonrpc_code: -32602,
            })
            .with_id(id);
            return Err(deny(
                self.app,
                self.ctx,
                self.principal,
                &msg.operation,
                ReasonCode::MalformedRequest,
                err,
            )
            .await);
        };
        let mut items = Vec::new();
        let mut base: Option<Map<String, Value>> = None;
        let mut ttl: Option<u64> = None;
        let mut next = None;
        for i in start..self.v.members.len() {
            let m = &self.v.members[i];
            let mut value = msg.value.clone();
            set_cursor(&mut value, member_cursor.take());
            let answer = match self.forward_as(i, value, None, fresh_id()).await {
                Ok(resp) => MemberAnswer::read(resp, id.as_ref()).await?,
                // What the caller may not list on a member is left out of the merged list.
                Err(e) if e.status == StatusCode::FORBIDDEN => continue,
                Err(e) => return Err(e.with_id(id)),
            };
            let Some(Value::Object(mut result)) = answer.message.get("result").cloned() else {
                // A member without this kind of item (it offers no prompts, say) adds none.
                if answer.message.pointer("/error/code") == Some(&json!(-32601)) {
                    continue;
                }
                // Any other error of a member answers the list.
                return Ok(json_answer(&answer.message, None));
            };
            let prefix = if uri { &m.uri_prefix } else { &m.prefix };
            if let Some(Value::Array(page)) = result.remove(field) {
                items.extend(page.into_iter().filter_map(|mut item| {
                    let inner = item.get(key)?.as_str()?;
                    let named = format!("{prefix}{inner}");
                    item[key] = Value::String(named);
                    Some(item)
                }));
            }
            if let Some(t) = result.get("ttlMs").and_then(Value::as_u64) {
                ttl = Some(ttl.map_or(t, |x| x.min(t)));
            }
            let more = result.remove("nextCursor");
            base.get_or_insert(result);
            if let Some(c) = more.filter(|c| !c.is_null()) {
                next = Some(encode_cursor(i, Some(c)));
                break;
            }
        }
        let mut result = base.unwrap_or_default();
        result.remove("_meta");
        result.insert(field.to_owned(), Value::Array(items));
        if let Some(t) = ttl {
            result.insert("ttlMs".to_owned(), json!(t));
        }
        if result.contains_key("cacheScope") {
            result.insert("cacheScope".to_owned(), json!("private"));
        }
        if let Some(c) = next {
            result.insert("nextCursor".to_owned(), Value::String(c));
        }
        if self.stateless {
            result
                .entry("resultType")
                .or_insert_with(|| json!("complete"));
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "result": result});
        Ok(json_answer(&message, None))
    }
}

/// What a member answered to one request: the JSON-RPC message (from a JSON body or the SSE
/// event answering `id`) and the session it opened, if any.
struct MemberAnswer {
    message: Value,
    session: Option<String>,
}

impl MemberAnswer {
    async fn read(resp: Response, id: Option<&Value>) -> Result<MemberAnswer, ApiError> {
        let invalid = || ApiError::from(Refusal::UpstreamInvalid).with_id(id.cloned());
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let ok = resp.status().is_success();
        let body = axum::body::to_bytes(resp.into_body(), MAX_MEMBER_ANSWER)
            .await
            .map_err(|_| invalid())?;
        let message = if sse {
            sse_answer(&body, id)
        } else {
            serde_json::from_slice::<Value>(&body).ok()
        };
        match message {
            Some(message)
                if ok && (message.get("result").is_some() || message.get("error").is_some()) =>
            {
                Ok(MemberAnswer { message, session })
            }
            _ => Err(invalid()),
        }
    }
}

/// The JSON-RPC response to `id` among an SSE body's events.
fn sse_answer(body: &[u8], id: Option<&Value>) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?.replace("\r\n", "\n");
    text.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let v: Value = serde_json::from_str(&data.join("\n")).ok()?;
        let answers = v.get("method").is_none()
            && (v.get("result").is_some() || v.get("error").is_some())
            && v.get("id") == id;
        answers.then_some(v)
    })
}

/// A JSON answer, with the virtual session id when one was opened.
fn json_answer(message: &Value, session: Option<&str>) -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        message.to_string(),
    )
        .into_response();
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

/// An `Mcp-Name` value: as is when it is plain visible ASCII, else the `=?base64?…?=` form.
fn header_value(name: &str) -> Option<HeaderValue> {
    let plain = !name.is_empty()
        && name.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && !name.starts_with("=?");
    if plain {
        HeaderValue::from_str(name).ok()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(name);
        HeaderValue::from_str(&format!("=?base64?{b64}?=")).ok()
    }
}

fn fresh_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn encode_cursor(member: usize, cursor: Option<Value>) -> String {
    B64.encode(json!([member, cursor]).to_string())
}

/// A virtual cursor: the member to resume with and that member's own cursor.
fn decode_cursor(c: &Value) -> Option<(usize, Option<Value>)> {
    let raw = B64.decode(c.as_str()?).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let [m, c] = v.as_array()?.as_slice() else {
        return None;
    };
    let m = usize::try_from(m.as_u64()?).ok()?;
    match c {
        Value::Null => Some((m, None)),
        Value::String(_) => Some((m, Some(c.clone()))),
        _ => None,
    }
}

/// Sets (or, for `None`, removes) a list request's cursor.
fn set_cursor(value: &mut Value, cursor: Option<Value>) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    match cursor {
        Some(c) => {
            let params = obj.entry("params").or_insert_with(|| json!({}));
            if let Some(p) = params.as_object_mut() {
                p.insert("cursor".to_owned(), c);
            }
        }
        None => {
            if let Some(p) = obj.get_mut("params").and_then(Value::as_object_mut) {
                p.remove("cursor");
            }
        }
    }
}

/// The capabilities a virtual server offers: those of any member it can carry — tools,
/// prompts, resources (without subscriptions or list-changed notifications: there is no stream
/// to deliver them) and completions.
fn merged_capabilities(results: &[(String, Value)]) -> Value {
    let mut caps = Map::new();
    for (_, r) in results {
        let Some(c) = r.get("capabilities").and_then(Value::as_object) else {
            continue;
        };
        for key in ["tools", "prompts", "resources", "completions"] {
            if c.contains_key(key) {
                caps.insert(key.to_owned(), json!({}));
            }
        }
    }
    Value::Object(caps)
}

/// The members' instructions, each under its member's name.
fn merged_instructions(results: &[(String, Value)]) -> Option<String> {
    let parts: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| {
            let text = r.get("instructions")?.as_str()?;
            Some(format!("[{name}]\n{text}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// One `initialize` result for the members' results: they must agree on the protocol version.
fn merge_initialize(name: &str, results: &[(String, Value)]) -> Result<Value, String> {
    let mut version = None;
    for (member, r) in results {
        let v = r.get("protocolVersion").and_then(Value::as_str);
        match (version, v) {
            (_, None) => return Err(format!("`{member}` named no protocol version")),
            (None, Some(v)) => version = Some(v),
            (Some(a), Some(b)) if a != b => {
                return Err(format!("`{member}` speaks {b}, another member {a}"));
            }
            _ => {}
        }
    }
    let mut merged = json!({
        "protocolVersion": version,
        "capabilities": merged_capabilities(results),
        "serverInfo": {"name": name, "version": env!("CARGO_PKG_VERSION")},
    });
    if let Some(text) = merged_instructions(results) {
        merged["instructions"] = Value::String(text);
    }
    Ok(merged)
}

/// One `server/discover` result: the versions every member supports.
fn merge_discover(name: &str, results: &[(String, Value)]) -> Result<Value, String> {
    let mut versions: Option<Vec<Value>> = None;
    for (member, r) in results {
        let Some(v) = r.get("supportedVersions").and_then(Value::as_array) else {
            return Err(format!("`{member}` named no supported versions"));
        };
        versions = Some(match versions {
            None => v.clone(),
            Some(acc) => acc.into_iter().filter(|x| v.contains(x)).collect(),
        });
    }
    let versions = versions.unwrap_or_default();
    if versions.is_empty() {
        return Err("the members share no protocol version".into());
    }
    let mut merged = json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": merged_capabilities(results),
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {"io.modelcontextprotocol/serverInfo":
            {"name": name, "version": env!("CARGO_PKG_VERSION")}},
    });
    if let Some(text) = merged_instructions(results) {
        merged["instructions"] = Value::String(text);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let c = Value::String(encode_cursor(2, Some(json!("abc"))));
        assert_eq!(decode_cursor(&c), Some((2, Some(json!("abc")))));
        let c = Value::String(encode_cursor(1, None));
        assert_eq!(decode_cursor(&c), Some((1, None)));
        for bad in [
            json!("not base64!"),
            json!(B64.encode("[1]")),
            json!(B64.encode("[-1, null]")),
            json!(B64.encode("[0, {\"a\":1}]")),
            json!(B64.encode("{}")),
            json!(7),
        ] {
            assert_eq!(decode_cursor(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_answer_is_found_among_sse_events() {
        let body = b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\r\n\r\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\n\n";
        let v = sse_answer(body, Some(&json!(7))).expect("found");
        assert_eq!(v["result"]["ok"], true);
        assert!(sse_answer(body, Some(&json!(8))).is_none());
    }

    #[test]
    fn members_must_agree_on_the_protocol_version() {
        let a = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": true}, "logging": {}},
            "instructions": "tickets here"});
        let b = json!({"protocolVersion": "2025-11-25", "capabilities": {"resources": {"subscribe": true}}});
        let merged =
            merge_initialize("all", &[("t".into(), a.clone()), ("f".into(), b)]).expect("agree");
        assert_eq!(
            merged["capabilities"],
            json!({"tools": {}, "resources": {}})
        );
        assert_eq!(merged["instructions"], "[t]\ntickets here");
        let c = json!({"protocolVersion": "2025-06-18", "capabilities": {}});
        assert!(merge_initialize("all", &[("t".into(), a), ("f".into(), c)]).is_err());
    }

    #[test]
    fn mcp_name_values_are_encoded_when_not_plain() {
        assert_eq!(header_value("read_file").expect("plain"), "read_file");
        assert_eq!(
            header_value("file:///a b").expect("encoded"),
            "=?base64?ZmlsZTovLy9hIGI=?="
        );
    }
}
