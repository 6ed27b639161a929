//! `loadgen upstream`: a trivial fast JSON-RPC upstream for the end-to-end benchmark.
//!
//! Every request (any path, any method) is read to its end and answered at once with a fixed
//! small `tools/call` result that echoes the request's `id`, as `application/json` (as an SSE
//! stream with a progress notification first for the tool `get_ticket_stream`), on a
//! keep-alive HTTP/1.1 connection. It does no MCP and checks no credential: whatever is measured
//! through it is the cost of the path in front of it.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

/// The only fields of a request the upstream looks at.
#[derive(Deserialize)]
struct Incoming_ {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    name: Option<String>,
}

/// The tool whose call is answered as an SSE stream (a progress notification, then the result).
const STREAMED_TOOL: &str = "get_ticket_stream";

/// Serves until the process is killed.
pub(crate) async fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("loadgen upstream listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await.context("accepting")?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

/// The answer to one request.
async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let Ok(parsed) = serde_json::from_slice::<Incoming_>(&body) else {
        let mut bad = Response::new(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#,
        )));
        *bad.status_mut() = StatusCode::BAD_REQUEST;
        bad.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(bad);
    };
    let streamed = parsed
        .params
        .as_ref()
        .and_then(|p| p.name.as_deref())
        .is_some_and(|n| n == STREAMED_TOOL);
    Ok(if streamed {
        streamed_result(&parsed.id)
    } else {
        result(&parsed.id)
    })
}

/// The result for request `id` as an SSE stream: a progress notification, then the result.
fn streamed_result(id: &serde_json::Value) -> Response<Full<Bytes>> {
    let text = format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\
         \"params\":{{\"progressToken\":1,\"progress\":1}}}}\n\n\
         event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":\
         [{{\"type\":\"text\",\"text\":\"ok\"}}],\"isError\":false}}}}\n\n"
    );
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

/// The fixed `tools/call` result for request `id`.
fn result(id: &serde_json::Value) -> Response<Full<Bytes>> {
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"ok"}}],"isError":false}}}}"#
    );
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_echoes_the_id_as_json() {
        for id in [serde_json::json!(7), serde_json::json!("abc")] {
            let response = result(&id);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let body = futures_body(response);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["id"], id);
            assert_eq!(v["result"]["isError"], false);
        }
    }

    fn futures_body(response: Response<Full<Bytes>>) -> Bytes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
        })
    }
}
