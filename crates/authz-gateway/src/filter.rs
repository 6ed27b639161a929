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

/// The UTF-8 byte-order mark a stream may start with.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// The next SSE line of `buf` from `from`: (line length, terminator length). Lines end, as the
/// SSE grammar says, with CRLF, LF or a lone CR. `None` without a complete terminator; a CR at
/// the very end counts as one only once the stream is `done` (an LF may follow in the next
/// chunk).
fn line_end(buf: &[u8], from: usize, done: bool) -> Option<(usize, usize)> {
    let rest = &buf[from..];
    let i = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
    if rest[i] == b'\n' {
        return Some((i, 1));
    }
    match rest.get(i + 1) {
        Some(b'\n') => Some((i, 2)),
        Some(_) => Some((i, 1)),
        None => done.then_some((i, 1)),
    }
}

/// Where the first SSE event in `buf` ends: (length of its lines, with their terminators;
/// length including the blank line that ends it). `None` until a blank line has arrived.
fn find_event_end(buf: &[u8], done: bool) -> Option<(usize, usize)> {
    let mut pos = 0;
    loop {
        let (len, term) = line_end(buf, pos, done)?;
        if len == 0 {
            return Some((pos, pos + term));
        }
        pos += len + term;
    }
}

/// One SSE event's data as a client's parser assembles it (every `data` field, joined by LF),
/// and its other lines: `Ok(None)` for an event without data, `Err` for data that is not UTF-8
/// (refused rather than judged differently from what a client would read).
fn event_data(event: &[u8]) -> Result<Option<EventData<'_>>, ()> {
    let mut data = Vec::new();
    let mut other_lines: Vec<&[u8]> = Vec::new();
    let mut has_data = false;
    let mut pos = 0;
    while let Some((len, term)) = line_end(event, pos, true) {
        let line = &event[pos..pos + len];
        pos += len + term;
        let value = match line.strip_prefix(b"data") {
            Some([]) => Some(&[][..]),
            Some([b':', rest @ ..]) => Some(rest.strip_prefix(b" ").unwrap_or(rest)),
            _ => None,
        };
        match value {
            Some(v) => {
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(v);
                has_data = true;
            }
            None => other_lines.push(line),
        }
    }
    if !has_data {
        return Ok(None);
    }
    let text = String::from_utf8(data).map_err(|_| ())?;
    Ok(Some(EventData { other_lines, text }))
}

/// An SSE event read by [`event_data`].
struct EventData<'a> {
    /// Its lines that are not `data` fields (`event`, `id`, comments), as they were.
    other_lines: Vec<&'a [u8]>,
    /// Its data.
    text: String,
}

/// An event's lines again: the other lines as they were, then `v` as its one data line.
fn event_with(other_lines: &[&[u8]], v: &Value) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    for l in other_lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(v).map_err(|_| ())?);
    out.push(b'\n');
    Ok(out)
}

/// Rewrites one SSE event (its lines with their terminators, without the blank line that ends
/// it) if its data is the response to `id`: `Some(new lines)`, or `None` to pass it unchanged.
/// The data is assembled as a client's SSE parser does, so what is judged is what the client
/// will see.
fn rewrite_sse_event(id: &Value, event: &[u8], rw: &Rewrite) -> Result<Option<Vec<u8>>, ()> {
    let Some(EventData { other_lines, text }) = event_data(event)? else {
        return Ok(None);
    };
    let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    if !is_response_to(&v, id) || !rw(&mut v) {
        return Ok(None);
    }
    event_with(&other_lines, &v).map(Some)
}

/// What to do with one SSE event.
enum EventOut {
    Keep,
    Replace(Vec<u8>),
    /// Replace it and end the stream after it.
    ReplaceAndEnd(Vec<u8>),
    /// Leave it out.
    Drop,
}

/// What becomes of a server-to-client request on a session's stream.
#[derive(Debug)]
pub(crate) enum Guarded {
    Pass,
    /// Send the client this instead (its call's own failure) and end the stream.
    FailCall(Value),
    /// Keep it from the client; the stream goes on (a session's own stream, tied to no call).
    Withhold,
}

/// Judges a server-to-client request on a session's stream.
pub(crate) type RequestGuard = Arc<dyn Fn(&Value) -> Guarded + Send + Sync>;

/// An SSE body whose server-to-client requests pass `guard` (see [`Guarded`]). Everything else
/// streams through event by event.
pub(crate) fn guard_sse_requests<S, E>(
    guard: RequestGuard,
    upstream: S,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    map_sse_events(
        upstream,
        Arc::new(move |event: &[u8]| {
            let Some(EventData { other_lines, text }) = event_data(event)? else {
                return Ok(EventOut::Keep);
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                return Ok(EventOut::Keep);
            };
            if v.get("method").is_none() || v.get("id").is_none() {
                return Ok(EventOut::Keep);
            }
            match guard(&v) {
                Guarded::FailCall(instead) => {
                    Ok(EventOut::ReplaceAndEnd(event_with(&other_lines, &instead)?))
                }
                Guarded::Withhold => Ok(EventOut::Drop),
                Guarded::Pass => Ok(EventOut::Keep),
            }
        }),
    )
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
    map_sse_events(
        upstream,
        Arc::new(move |event: &[u8]| {
            Ok(match rewrite_sse_event(&id, event, &rw)? {
                Some(out) => EventOut::Replace(out),
                None => EventOut::Keep,
            })
        }),
    )
}

/// Judges one event (its lines, without the blank line that ends it); `Err` for an event that
/// cannot be read.
type EventFn = Arc<dyn Fn(&[u8]) -> Result<EventOut, ()> + Send + Sync>;

/// An SSE body passed on event by event, each as `on_event` says.
fn map_sse_events<S, E>(
    upstream: S,
    on_event: EventFn,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    futures_util::stream::unfold(
        (upstream, BytesMut::new(), false, false),
        move |(mut upstream, mut buf, mut done, mut started)| {
            let on_event = on_event.clone();
            async move {
                loop {
                    // A client drops one byte-order mark at the start of the stream, so the
                    // first line is read without it too; the mark itself is passed on (had it
                    // been dropped here, a second one would be dropped by the client instead).
                    if !started {
                        let n = buf.len().min(UTF8_BOM.len());
                        if buf.starts_with(UTF8_BOM) {
                            let bom = buf.split_to(UTF8_BOM.len()).freeze();
                            return Some((Ok(bom), (upstream, buf, done, true)));
                        } else if done || n == UTF8_BOM.len() || buf[..n] != UTF8_BOM[..n] {
                            started = true;
                        }
                    }
                    if started && let Some((end, consumed)) = find_event_end(&buf, done) {
                        let event = buf.split_to(consumed);
                        let out = match on_event(&event[..end]) {
                            Ok(EventOut::Replace(mut o)) => {
                                o.extend_from_slice(&event[end..]);
                                Bytes::from(o)
                            }
                            Ok(EventOut::ReplaceAndEnd(mut o)) => {
                                o.extend_from_slice(&event[end..]);
                                // Nothing after it is read: the upstream stream is dropped.
                                return Some((
                                    Ok(Bytes::from(o)),
                                    (upstream, BytesMut::new(), true, started),
                                ));
                            }
                            Ok(EventOut::Keep) => event.freeze(),
                            Ok(EventOut::Drop) => Bytes::new(),
                            Err(()) => {
                                return Some((
                                    Err(std::io::Error::other("unreadable SSE event")),
                                    (upstream, buf, true, started),
                                ));
                            }
                        };
                        return Some((Ok(out), (upstream, buf, done, started)));
                    }
                    if done {
                        // Trailing bytes without a terminating blank line are not an event per
                        // the SSE grammar; they are dropped rather than passed unread.
                        return None;
                    }
                    if buf.len() > MAX_FILTERED_BYTES {
                        return Some((
                            Err(std::io::Error::other("SSE event too large")),
                            (upstream, buf, true, started),
                        ));
                    }
                    match upstream.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((
                                Err(std::io::Error::other(e)),
                                (upstream, buf, true, started),
                            ));
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

    /// The SSE body `body` through the tools filter, cut into chunks of `size` bytes.
    async fn filtered_sse(body: &str, size: usize) -> String {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .as_bytes()
            .chunks(size)
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
        String::from_utf8(out.concat()).expect("utf8")
    }

    #[tokio::test]
    async fn sse_events_are_split_on_every_line_ending_the_grammar_allows() {
        let list = serde_json::to_string(&list()).expect("json");
        // CR-only and CRLF line endings end lines and events for a client as LF does, so the
        // response event must be found (and filtered) in each, wherever the chunks are cut.
        for (sep, end) in [("\r", "\r\r"), ("\r\n", "\r\n\r\n"), ("\n", "\n\r\n")] {
            let body = format!("event: message{sep}data: {list}{end}data: {{}}{end}");
            for size in [1, 2, 3, 7, body.len()] {
                let text = filtered_sse(&body, size).await;
                assert!(
                    text.contains("get_ticket") && !text.contains("delete_ticket"),
                    "{sep:?} chunks of {size}: {text:?}"
                );
                assert!(text.ends_with(&format!("data: {{}}{end}")), "{text:?}");
            }
        }
        // A client drops a byte-order mark at the start, however the chunks cut it.
        let bom = format!("\u{feff}data: {list}\n\n");
        for size in [1, 2, 3, 4] {
            let text = filtered_sse(&bom, size).await;
            assert!(!text.contains("delete_ticket"), "{size}: {text:?}");
        }
        // A `data` field without a colon is an empty data line to a client.
        let split = "data: {\"jsonrpc\":\"2.0\",\"id\":5,\ndata\ndata: \"result\":{\"tools\":            [{\"name\":\"delete_ticket\"}]}}\n\n";
        let text = filtered_sse(split, 4).await;
        assert!(!text.contains("delete_ticket"), "{text:?}");
    }

    #[tokio::test]
    async fn sse_list_is_filtered_across_chunk_boundaries() {
        let body = format!(
            "event: message\nid: 1\ndata: {}\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n",
            serde_json::to_string(&list()).expect("json")
        );
        let text = filtered_sse(&body, 7).await;
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
