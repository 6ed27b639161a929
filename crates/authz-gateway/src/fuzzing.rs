//! Entry points for the fuzz targets (`authz-fuzz`) into code that is otherwise private to the
//! gateway. Not a stable API: hidden from the documentation, used by nothing else.

use std::sync::Arc;
use std::task::{Context, Poll};

use authz_types::{Operation, Target};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use crate::filter::{ListKind, list_filter_recording, rewrite_sse_stream};

/// Runs `chunks` (one SSE response body, cut where the network might cut it) through the
/// gateway's SSE rewriting for the response to request `id`, filtering a `tools/list` result
/// to the tools `allowed` admits. The bytes the client would receive, or the error that ended
/// the stream (after the bytes before it).
pub fn sse_tools_filter(
    id: Value,
    chunks: &[&[u8]],
    allowed: fn(&str) -> bool,
) -> (Vec<u8>, Option<String>) {
    let allowed =
        Arc::new(move |op: &Operation| matches!(&op.target, Target::Tool(n) if allowed(n)));
    let rewrite = list_filter_recording(ListKind::Tools, allowed, None);
    let upstream = futures_util::stream::iter(
        chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let mut stream = std::pin::pin!(rewrite_sse_stream(id, rewrite, upstream));
    let mut out = Vec::new();
    loop {
        match poll_ready(stream.as_mut()) {
            None => return (out, None),
            Some(Ok(bytes)) => out.extend_from_slice(&bytes),
            Some(Err(e)) => return (out, Some(e.to_string())),
        }
    }
}

/// The next item of a stream whose upstream is always ready (an in-memory body), so it never
/// has to wait.
fn poll_ready<S: Stream + ?Sized>(stream: std::pin::Pin<&mut S>) -> Option<S::Item> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_next(&mut cx) {
        Poll::Ready(item) => item,
        Poll::Pending => panic!("an in-memory SSE body never waits"),
    }
}
