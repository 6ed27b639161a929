//! A small HTTP reverse proxy for tests: the bearer-adding hop in front of the gateway for the
//! conformance suite (which cannot send a token), and a round-robin load balancer over gateway
//! replicas. Every request is forwarded with its headers as they came (`Host` and `Origin`
//! included) to the next target in turn, request and response bodies streamed (SSE stays a
//! stream); it serves until the test's runtime ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;

/// How many requests each target was sent, in target order.
#[derive(Debug)]
pub(crate) struct Served(Vec<AtomicUsize>);

impl Served {
    pub(crate) fn counts(&self) -> Vec<usize> {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

#[derive(Clone)]
struct Proxy {
    http: reqwest::Client,
    targets: Arc<Vec<SocketAddr>>,
    next: Arc<AtomicUsize>,
    served: Arc<Served>,
    /// `Bearer <token>`, added to requests that carry no `Authorization`.
    bearer: Option<String>,
}

/// Serves the proxy on `listener` over `targets` (round robin, one request at a time), adding
/// `Authorization: Bearer <bearer>` where a request has none.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    targets: Vec<SocketAddr>,
    bearer: Option<String>,
) -> Arc<Served> {
    let served = Arc::new(Served(
        targets.iter().map(|_| AtomicUsize::new(0)).collect(),
    ));
    let state = Proxy {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy client"),
        targets: Arc::new(targets),
        next: Arc::default(),
        served: Arc::clone(&served),
        bearer: bearer.map(|t| format!("Bearer {t}")),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    listener.set_nonblocking(true).expect("nonblocking proxy");
    let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
    tokio::spawn(async move { axum::serve(listener, app).await });
    served
}

/// Headers that belong to one connection and are not forwarded (RFC 9110, 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::CONTENT_LENGTH,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward(State(proxy): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let i = proxy.next.fetch_add(1, Ordering::Relaxed) % proxy.targets.len();
    proxy.served.0[i].fetch_add(1, Ordering::Relaxed);
    let mut out = proxy
        .http
        .request(parts.method, format!("http://{}{path}", proxy.targets[i]));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    if let Some(bearer) = &proxy.bearer
        && !parts.headers.contains_key(header::AUTHORIZATION)
    {
        out = out.header(header::AUTHORIZATION, bearer);
    }
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let resp = match out.body(body).send().await {
        Ok(resp) => resp,
        Err(error) => return (StatusCode::BAD_GATEWAY, format!("proxy: {error}")).into_response(),
    };
    let mut back = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !hop_by_hop(name) {
            back = back.header(name, value);
        }
    }
    back.body(Body::from_stream(
        resp.bytes_stream().map_err(std::io::Error::other),
    ))
    .expect("proxy response")
}
