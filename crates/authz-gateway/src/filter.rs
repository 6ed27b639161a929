//! Rewriting of upstream responses as they pass: list results (`tools/list`, `prompts/list`,
//! `resources/list`, `resources/templates/list`, `tasks/list`) filtered to what the caller may
//! use, and task creation observed so tasks can be bound to their owner — over JSON and SSE
//! responses alike.
//!
//! An item is shown only if the corresponding call (`tools/call` of that tool, `prompts/get` of
//! that prompt, `resources/read` of that URI) would be allowed right now, so a list never
//! advertises what a call would refuse. Items that cannot be judged (no name) are dropped.

use std::sync::Arc;

use authz_types::{Method, Operation, Target};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// Decides whether one item's operation is allowed for the caller.
pub(crate) type ItemAllowed = Arc<dyn Fn(&Operation) -> bool + Send + Sync>;

/// Rewrites (or just inspects) the JSON-RPC response to the forwarded request; returns whether
/// it changed the value. Only the response whose `id` is the request's is ever handed to it.
pub(crate) type Rewrite = Arc<dyn Fn(&mut Value) -> bool + Send + Sync>;

/// The largest single SSE event or JSON list response the gateway will buffer to filter.
pub(crate) const MAX_FILTERED_BYTES: usize = 16 * 1024 * 1024;

/// Which list a method returns, and how each item maps to an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub(crate) fn of(method: &Method) -> Option<ListKind> {
        match method {
            Method::ToolsList => Some(ListKind::Tools),
            Method::PromptsList => Some(ListKind::Prompts),
            Method::ResourcesList => Some(ListKind::Resources),
            Method::ResourcesTemplatesList => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    fn operation(self, item: &Value) -> Option<Operation> {
        let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(match self {
            ListKind::Tools => Operation::new(Method::ToolsCall, Target::Tool(s("name")?)),
            ListKind::Prompts => Operation::new(Method::PromptsGet, Target::Prompt(s("name")?)),
            ListKind::Resources => {
                Operation::new(Method::ResourcesRead, Target::Resource(s("uri")?))
            }
            ListKind::ResourceTemplates => {
                Operation::new(Method::ResourcesRead, Target::Resource(s("uriTemplate")?))
            }
        })
    }
}

/// Filters a JSON-RPC response in place (its `id` already matched). Returns how many items were
/// removed.
pub(crate) fn filter_response(
    kind: ListKind,
    response: &mut Value,
    allowed: &ItemAllowed,
) -> usize {
    let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) else {
        return 0;
    };
    // 2026-07-28 list results say how they may be cached; a filtered list is per principal.
    if result.contains_key("cacheScope") {
        result.insert("cacheScope".to_owned(), Value::String("private".to_owned()));
    }
    let Some(items) = result.get_mut(kind.key()).and_then(Value::as_array_mut) else {
        return 0;
    };
    let before = items.len();
    items.retain(|item| kind.operation(item).is_some_and(|op| allowed(&op)));
    before - items.len()
}

/// What the caller was shown by a filtered list (names or URIs), for the audit trail.
pub(crate) type Shown = Arc<std::sync::Mutex<Vec<String>>>;

/// A [`Rewrite`] that filters a list result and, given `shown`, writes the names (or URIs) of
/// the items it kept there.
pub(crate) fn list_filter_recording(
    kind: ListKind,
    allowed: ItemAllowed,
    shown: Option<Shown>,
) -> Rewrite {
    Arc::new(move |v: &mut Value| {
        filter_response(kind, v, &allowed);
        if let Some(sink) = &shown {
            let kept = v
                .get("result")
                .and_then(|r| r.get(kind.key()))
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| kind.operation(i)?.target.display())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(kept);
        }
        true
    })
}

/// Whether `v` is a JSON-RPC response that must be treated as the answer to our request.
///
/// A response stream to a POST carries only answers to that request (besides server requests
/// and notifications), so any response in it is rewritten — also one whose `id` is spelled
/// differently (`"5"` for `5`): an unfiltered list must never slip through on a technicality.
fn is_response_to(v: &Value, id: &Value) -> bool {
    let is_response =
        v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some());
    is_response || v.get("id") == Some(id)
}

/// Rewrites a complete JSON body. `None` when it cannot be parsed: the gateway does not pass on
/// a response it was asked to rewrite but could not read. Unchanged bodies keep their bytes.
pub(crate) fn rewrite_json_body(id: &Value, body: &[u8], rw: &Rewrite) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if !is_response_to(&v, id) || !rw(&mut v) {
        return Some(body.to_vec());
    }
    serde_json::to_vec(&v).ok()
}

/// Rewrites one SSE event block (without its terminating blank line) if its data is the response
/// to `id`; other events are returned unchanged.
fn rewrite_sse_event(id: &Value, event: &[u8], rw: &Rewrite) -> Result<Vec<u8>, ()> {
    let text = std::str::from_utf8(event).map_err(|_| ())?;
    let mut data = String::new();
    let mut other_lines = Vec::new();
    let mut has_data = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix("data:") {
            if has_data {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            has_data = true;
        } else {
            other_lines.push(line);
        }
    }
    if !has_data {
        return Ok(event.to_vec());
    }
    let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
        return Ok(event.to_vec());
    };
    if !is_response_to(&v, id) || !rw(&mut v) {
        return Ok(event.to_vec());
    }
    let mut out = Vec::with_capacity(event.len());
    for l in other_lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(&v).map_err(|_| ())?);
    Ok(out)
}

/// Finds the end of the first SSE event in `buf`: returns (event length, separator length).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\n' && buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
            return Some((i, 3));
        }
        i += 1;
    }
    None
}

/// An SSE body whose response event is rewritten as it passes; everything else streams through
/// event by event without waiting for the end of the stream.
pub(crate) fn rewrite_sse_stream<S, E>(
    id: Value,
    rw: Rewrite,
    upstream: S,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    futures_util::stream::unfold(
        (upstream, BytesMut::new(), false),
        move |(mut upstream, mut buf, mut done)| {
            let id = id.clone();
            let rw = rw.clone();
            async move {
                loop {
                    if let Some((end, sep)) = find_event_end(&buf) {
                        let event = buf.split_to(end + sep);
                        let out = match rewrite_sse_event(&id, &event[..end], &rw) {
                            Ok(mut o) => {
                                o.extend_from_slice(&event[end..]);
                                Bytes::from(o)
                            }
                            Err(()) => {
                                return Some((
                                    Err(std::io::Error::other("unreadable SSE event")),
                                    (upstream, buf, true),
                                ));
                            }
                        };
                        return Some((Ok(out), (upstream, buf, done)));
                    }
                    if done {
                        // Trailing bytes without a terminating blank line are not an event per
                        // the SSE grammar; they are dropped rather than passed unread.
                        return None;
                    }
                    if buf.len() > MAX_FILTERED_BYTES {
                        return Some((
                            Err(std::io::Error::other("SSE event too large")),
                            (upstream, buf, true),
                        ));
                    }
                    match upstream.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((Err(std::io::Error::other(e)), (upstream, buf, true)));
                        }
                        None => done = true,
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A [`Rewrite`] that filters a list result (the gateway always records what was shown).
    fn list_filter(kind: ListKind, allowed: ItemAllowed) -> Rewrite {
        list_filter_recording(kind, allowed, None)
    }

    fn only_get() -> ItemAllowed {
        Arc::new(|op: &Operation| matches!(&op.target, Target::Tool(n) if n.starts_with("get_")))
    }

    fn list() -> Value {
        json!({"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"get_ticket"},{"name":"delete_ticket"},{"noname":1}]}})
    }

    #[test]
    fn json_list_responses_are_filtered_whatever_their_id() {
        let rw = list_filter(ListKind::Tools, only_get());
        let body = serde_json::to_vec(&list()).expect("json");
        let out: Value =
            serde_json::from_slice(&rewrite_json_body(&json!(5), &body, &rw).expect("ok"))
                .expect("json");
        assert_eq!(out["result"]["tools"], json!([{"name":"get_ticket"}]));
        let other: Value =
            serde_json::from_slice(&rewrite_json_body(&json!("5"), &body, &rw).expect("ok"))
                .expect("json");
        assert_eq!(
            other["result"]["tools"],
            json!([{"name":"get_ticket"}]),
            "an id spelled differently is no escape"
        );
        let note = serde_json::to_vec(&json!({"jsonrpc":"2.0","method":"notifications/progress"}))
            .expect("json");
        assert_eq!(
            rewrite_json_body(&json!(5), &note, &rw).expect("ok"),
            note,
            "notifications pass byte for byte"
        );
        assert!(rewrite_json_body(&json!(5), b"{not json", &rw).is_none());
    }

    #[tokio::test]
    async fn sse_list_is_filtered_across_chunk_boundaries() {
        let body = format!(
            "event: message\nid: 1\ndata: {}\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n",
            serde_json::to_string(&list()).expect("json")
        );
        let bytes = body.into_bytes();
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let out: Vec<Bytes> = rewrite_sse_stream(
            json!(5),
            list_filter(ListKind::Tools, only_get()),
            futures_util::stream::iter(chunks),
        )
        .map(|r| r.expect("ok"))
        .collect()
        .await;
        let text = String::from_utf8(out.concat()).expect("utf8");
        assert!(text.starts_with("event: message\nid: 1\ndata: "), "{text}");
        assert!(
            text.contains("get_ticket") && !text.contains("delete_ticket"),
            "{text}"
        );
        assert!(
            text.ends_with("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"),
            "{text}"
        );
    }
}
