//! The response body machinery: the upstream answer streamed back unbuffered (or rewritten by
//! [`crate::filter`]) while a [`StreamGuard`] holds the caller's in-flight permit and the outcome
//! record for exactly as long as the body lives. SSE events are held to a size limit and a
//! route's stream to its `max_stream_secs`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::error::{ApiError, Refusal};
use crate::filter::{self, Rewrite};
use crate::limits::Permit;
use crate::recording::OutcomeRecorder;

/// Response headers passed back to the client.
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "mcp-session-id",
    "cache-control",
    "retry-after",
];

fn response_head(resp: &reqwest::Response) -> axum::http::response::Builder {
    let mut b = Response::builder().status(resp.status().as_u16());
    for name in FORWARDED_RESPONSE_HEADERS {
        for v in resp.headers().get_all(*name) {
            b = b.header(*name, v.as_bytes());
        }
    }
    b
}

/// What lives exactly as long as a response body: the caller's in-flight permit and the
/// outcome record, which is written when the body ends (or the client goes away).
#[derive(Debug)]
pub(crate) struct StreamGuard {
    _permit: Permit,
    outcome: OutcomeRecorder,
    /// When the response must have ended (the route's `max_stream_secs`), if limited.
    deadline: Option<tokio::time::Instant>,
}

impl StreamGuard {
    /// Guards a response that must end within `max_stream` from now, if limited.
    pub(crate) fn new(
        permit: Permit,
        outcome: OutcomeRecorder,
        max_stream: Option<Duration>,
    ) -> Self {
        Self {
            _permit: permit,
            outcome,
            deadline: max_stream.map(|d| tokio::time::Instant::now() + d),
        }
    }

    /// The outcome record the response will end with.
    pub(crate) fn outcome(&mut self) -> &mut OutcomeRecorder {
        &mut self.outcome
    }
}

/// Tracks the size of the SSE event being streamed, to cut an upstream that never ends one.
#[derive(Debug, Default)]
struct EventSize {
    run: usize,
    after_newline: bool,
}

impl EventSize {
    /// Advances over `chunk`; false once an event grows past `limit` bytes.
    fn advance(&mut self, chunk: &[u8], limit: usize) -> bool {
        for &b in chunk {
            match b {
                b'\n' if self.after_newline => self.run = 0,
                b'\n' => self.after_newline = true,
                b'\r' => {}
                _ => self.after_newline = false,
            }
            self.run += 1;
            if self.run > limit {
                return false;
            }
        }
        true
    }
}

/// The upstream body as a stream that holds its [`StreamGuard`] until it ends. SSE bodies are
/// also held to [`filter::MAX_FILTERED_BYTES`] per event, rewritten or not.
fn body_stream(
    resp: reqwest::Response,
    guard: StreamGuard,
    end_at_length: bool,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    let size = sse.then(EventSize::default);
    // A length-framed answer is over with its last byte: its outcome is written then, since
    // the server need not ask this stream for its end once that many bytes went out. Not when a
    // rewrite reads the stream after us (`end_at_length` false): what it finds in the last
    // event belongs in the outcome record, and it polls us to the end anyway.
    let remaining = resp.content_length().filter(|_| end_at_length);
    futures_util::stream::unfold(
        (Box::pin(resp.bytes_stream()), Some(guard), size, remaining),
        |(mut body, mut guard, mut size, mut remaining)| async move {
            let deadline = guard.as_ref()?.deadline;
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, body.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        if let Some(g) = guard.as_mut() {
                            g.outcome.failed("stream_too_long", 504);
                        }
                        tracing::warn!(
                            "a response outlived the route's max_stream_secs; stream cut"
                        );
                        return Some((
                            Err(std::io::Error::other("stream too long")),
                            (body, None, size, remaining),
                        ));
                    }
                },
                None => body.next().await,
            };
            match next {
                Some(Ok(chunk)) => {
                    if let Some(sz) = size.as_mut()
                        && !sz.advance(&chunk, filter::MAX_FILTERED_BYTES)
                    {
                        if let Some(g) = guard.as_mut() {
                            g.outcome.failed("event_too_large", 502);
                        }
                        tracing::warn!("an upstream SSE event exceeded the size limit; stream cut");
                        return Some((
                            Err(std::io::Error::other("SSE event too large")),
                            (body, None, size, remaining),
                        ));
                    }
                    if let Some(left) = remaining.as_mut() {
                        *left = left.saturating_sub(chunk.len() as u64);
                        if *left == 0
                            && let Some(mut g) = guard.take()
                        {
                            g.outcome.finished();
                        }
                    }
                    Some((Ok(chunk), (body, guard, size, remaining)))
                }
                Some(Err(e)) => {
                    if let Some(g) = guard.as_mut() {
                        g.outcome.failed("stream_error", 502);
                    }
                    // Dropping the guard now writes the outcome and frees the permit.
                    Some((Err(std::io::Error::other(e)), (body, None, size, remaining)))
                }
                None => {
                    if let Some(mut g) = guard.take() {
                        g.outcome.finished();
                    }
                    None
                }
            }
        },
    )
}

/// Streams the upstream response back unbuffered. A body the upstream framed with a
/// `Content-Length` keeps it (passed on unchanged, it has exactly that length; hyper then frames
/// it the same way instead of chunking it, which saves a write per answer).
pub(crate) fn stream_back(resp: reqwest::Response, guard: StreamGuard) -> Response {
    let mut head = response_head(&resp);
    if let Some(len) = resp.content_length() {
        head = head.header(header::CONTENT_LENGTH, len);
    }
    let body = Body::from_stream(body_stream(resp, guard, true));
    head.body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// How a rewrite treats an answer it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Refuse it (502): a list that cannot be filtered is never passed on unfiltered.
    Refuse,
    /// Pass it on as it came (a tool result too large or not JSON was always passed through;
    /// what the rewrite looks for, a multi round-trip state, is small JSON).
    PassOn,
}

/// Streams an SSE answer back with its server-to-client requests judged by `requests` (see
/// [`filter::guard_sse_requests`]).
pub(crate) fn guarded_sse_response(
    resp: reqwest::Response,
    guard: StreamGuard,
    requests: filter::RequestGuard,
) -> Response {
    let head = response_head(&resp);
    let body = Body::from_stream(filter::guard_sse_requests(
        requests,
        Box::pin(body_stream(resp, guard, false)),
    ));
    head.body(body)
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// Passes the response on with the response to request `id` rewritten by `rw` (JSON or SSE).
/// `private` marks the result as per-principal (filtered lists): never cacheable by others.
pub(crate) async fn rewritten_response(
    id: Value,
    rw: Rewrite,
    private: bool,
    unreadable_answer: Unreadable,
    resp: reqwest::Response,
    mut guard: StreamGuard,
) -> Result<Response, ApiError> {
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut head = response_head(&resp);
    let unreadable = || ApiError::from(Refusal::UpstreamInvalid);
    let unreadable_with = |guard: &mut StreamGuard| {
        guard.outcome.failed("upstream_invalid", 502);
        unreadable()
    };
    let pass_on = unreadable_answer == Unreadable::PassOn;
    let too_large = resp
        .content_length()
        .is_none_or(|l| l as usize > filter::MAX_FILTERED_BYTES);
    let body = if pass_on
        && (!ctype.starts_with("application/json") || too_large)
        && !ctype.starts_with("text/event-stream")
    {
        // Not JSON, or JSON of unknown or large size: streamed on as it came.
        return Ok(stream_back(resp, guard));
    } else if ctype.starts_with("text/event-stream") {
        Body::from_stream(filter::rewrite_sse_stream(
            id,
            rw,
            Box::pin(body_stream(resp, guard, false)),
        ))
    } else if ctype.starts_with("application/json") {
        if resp
            .content_length()
            .is_some_and(|l| l as usize > filter::MAX_FILTERED_BYTES)
        {
            return Err(unreadable_with(&mut guard));
        }
        let Ok(bytes) = resp.bytes().await else {
            return Err(unreadable_with(&mut guard));
        };
        if bytes.len() > filter::MAX_FILTERED_BYTES {
            return Err(unreadable_with(&mut guard));
        }
        let rewritten = match filter::rewrite_json_body(&id, &bytes, &rw) {
            Some(rewritten) => rewritten,
            None if pass_on => bytes.to_vec(),
            None => return Err(unreadable_with(&mut guard)),
        };
        // The whole answer is in hand: the exchange is over (the guard drops at return).
        guard.outcome.finished();
        Body::from(rewritten)
    } else if resp.status().is_success() && resp.status() != StatusCode::ACCEPTED {
        // A result in a format we cannot read is never passed on unchecked.
        return Err(unreadable_with(&mut guard));
    } else {
        Body::from_stream(body_stream(resp, guard, true))
    };
    if let Some(h) = head.headers_mut() {
        h.remove(header::CONTENT_LENGTH);
        if private {
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
        }
    }
    head.body(body).map_err(|_| unreadable())
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_size_resets_at_each_blank_line() {
        let mut sz = super::EventSize::default();
        assert!(sz.advance(b"data: 12345\n\n", 16));
        assert!(
            sz.advance(b"data: 12345\r\n\r\ndata: 1", 16),
            "CRLF boundaries count too"
        );
        let mut sz = super::EventSize::default();
        assert!(!sz.advance(b"data: 0123456789abcdef", 16));
    }
}
