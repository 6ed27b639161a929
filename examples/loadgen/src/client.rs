//! The load itself: keep-alive HTTP/1.1 connections sending one prepared POST, closed or open loop.
//!
//! Closed loop (`closed`): each of N connections sends its next request as soon as the previous
//! answer has been read; the figure is throughput. Open loop (`open`): requests are scheduled at
//! a fixed rate, spread round-robin over N connections (each connection's own schedule is every
//! N/R seconds). A request that is due while its connection still waits for an earlier answer is
//! timed from its *intended* send time, so a stall shows up in the latency of every request it
//! delayed (no coordinated omission). A request whose connection was idle is timed from the
//! moment it is actually written: the runtime's timer wakes up to a millisecond late, and that
//! is the load generator's delay, not the server's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::histogram::Histogram;

/// What every connection sends.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) path: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Target {
    /// A target from a `http://host:port/path` URL, `K:V` headers and a body.
    pub(crate) fn new(url: &str, headers: &[String], body: Bytes) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("parsing URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs are supported, got {url}");
        }
        let authority = uri.authority().context("the URL has no host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .context("parsing the URL path")?;
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        map.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for header in headers {
            let (name, value) = parse_header(header)?;
            map.insert(name, value);
        }
        Ok(Self {
            addr,
            path,
            headers: map,
            body,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// `Name: value` (the value trimmed) as a header.
pub(crate) fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue)> {
    let (name, value) = text
        .split_once(':')
        .with_context(|| format!("header `{text}` is not NAME:VALUE"))?;
    Ok((
        HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("bad header name in `{text}`"))?,
        HeaderValue::from_str(value.trim())
            .with_context(|| format!("bad header value in `{text}`"))?,
    ))
}

/// What one connection (or, merged, all of them) saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) latency: Histogram,
    pub(crate) status: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection refused, reset, closed early).
    pub(crate) errors: u64,
    /// Connections opened, the first ones included.
    pub(crate) connects: u64,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.latency.merge(&other.latency);
        for (status, n) in &other.status {
            *self.status.entry(*status).or_default() += n;
        }
        self.errors += other.errors;
        self.connects += other.connects;
    }
}

/// One keep-alive connection, reopened after an error.
struct Connection {
    target: std::sync::Arc<Target>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// Sends one request and reads its whole answer: the status, or `None` on a transport error.
    async fn call(&mut self, tally: &mut Tally) -> Option<u16> {
        match self.try_call(tally).await {
            Ok(status) => Some(status),
            Err(_) => {
                self.sender = None;
                None
            }
        }
    }

    async fn try_call(&mut self, tally: &mut Tally) -> Result<u16> {
        if self.sender.is_none() {
            tally.connects += 1;
            let stream = TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        let response = sender.send_request(self.target.request()).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// How long to load and how much of the start to leave out of the figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

fn count(tally: &mut Tally, status: Option<u16>, from: Instant, measured: bool) {
    if !measured {
        return;
    }
    let elapsed = from.elapsed();
    match status {
        Some(status) => *tally.status.entry(status).or_default() += 1,
        None => tally.errors += 1,
    }
    tally
        .latency
        .record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
}

/// N connections, each sending back-to-back for `timing`.
pub(crate) async fn closed(target: Target, connections: usize, timing: Timing) -> Result<Tally> {
    let target = std::sync::Arc::new(target);
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut conn = Connection {
            target: target.clone(),
            sender: None,
        };
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let status = conn.call(&mut tally).await;
                if status.is_none() {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                count(&mut tally, status, sent, sent >= measure_from);
            }
            tally
        }));
    }
    gather(tasks).await
}

/// `rate` requests per second spread over N connections for `timing`.
pub(crate) async fn open(
    target: Target,
    connections: usize,
    rate: f64,
    timing: Timing,
) -> Result<Tally> {
    if rate.is_nan() || rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let target = std::sync::Arc::new(target);
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.duration;
    let mut tasks = Vec::new();
    for k in 0..connections {
        let mut conn = Connection {
            target: target.clone(),
            sender: None,
        };
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for j in 0u64.. {
                let slot = k as u64 + j * connections as u64;
                let intended = start + Duration::from_secs_f64(slot as f64 / rate);
                if intended >= end {
                    break;
                }
                let idle = Instant::now() < intended;
                if idle {
                    tokio::time::sleep_until(intended).await;
                }
                let from = if idle { Instant::now() } else { intended };
                let status = conn.call(&mut tally).await;
                count(&mut tally, status, from, intended >= measure_from);
            }
            tally
        }));
    }
    gather(tasks).await
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally> {
    let mut all = Tally::default();
    for task in tasks {
        all.merge(&task.await.context("a connection task panicked")?);
    }
    Ok(all)
}

/// One request: its status and body, for checking a target before loading it.
pub(crate) async fn probe(target: Target) -> Result<(u16, Bytes)> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(target.request()).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_split_at_the_first_colon_and_trimmed() {
        let (name, value) = parse_header("Authorization: Bearer a:b").expect("header");
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer a:b");
        assert!(parse_header("no colon").is_err());
    }

    #[test]
    fn a_target_keeps_path_and_query_and_sets_host() {
        let target = Target::new(
            "http://127.0.0.1:9/mcp/tickets?x=1",
            &["Mcp-Method: tools/call".to_owned()],
            Bytes::new(),
        )
        .expect("target");
        assert_eq!(target.path, "/mcp/tickets?x=1");
        assert_eq!(target.headers[HOST], "127.0.0.1:9");
        assert_eq!(target.headers["mcp-method"], "tools/call");
        assert!(Target::new("https://127.0.0.1:9/", &[], Bytes::new()).is_err());
    }
}
