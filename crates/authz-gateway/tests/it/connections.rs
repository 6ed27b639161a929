//! Connection hygiene over real sockets: a slowloris client is disconnected at the request-head
//! deadline, a POST body that stalls is answered 408 (recorded) at the body deadline, one client address cannot hold more than its share of connections while another
//! is still served, and every refusal is counted in `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{self, AuditBackend, Options};

/// A gateway with a short head deadline and a small per-client cap.
async fn gateway() -> harness::Env {
    harness::start_with(
        AuditBackend::Sqlite,
        Options {
            server_extra: Some(
                "header_read_timeout_ms = 500\nbody_read_timeout_ms = 300\nmax_connections = 64\n\
                 max_connections_per_client = 4"
                    .into(),
            ),
            ..Options::default()
        },
    )
    .await
}

pub(crate) fn addr(env: &harness::Env) -> SocketAddr {
    env.base
        .trim_start_matches("http://")
        .parse()
        .expect("the gateway listens on an IP address")
}

/// A connection to the gateway from `source` (another loopback address stands for another
/// client).
pub(crate) async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Reads until the peer closes the connection; `false` if it is still open after `wait`.
pub(crate) async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// A plain request on a fresh connection from `source`; the status code.
pub(crate) async fn status_from(source: [u8; 4], to: SocketAddr, path: &str) -> u16 {
    let mut stream = connect_from(source, to).await;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn metric(env: &harness::Env, name: &str) -> u64 {
    let text = env
        .http
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_at_the_head_deadline() {
    let env = gateway().await;
    let to = addr(&env);
    let mut slow = connect_from([127, 0, 0, 2], to).await;
    slow.write_all(b"POST /mcp/tickets HTTP/1.1\r\nHost: gw\r\n")
        .await
        .expect("partial head");
    // It keeps trickling header lines, never finishing the head.
    let trickle = async {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    trickle.await;
    // The 500 ms deadline has long passed; the generous wait only stops a hang.
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)).await,
        "the slow client's connection was not closed"
    );
    assert_eq!(status_from([127, 0, 0, 1], to, "/healthz").await, 200);
    assert!(metric(&env, "authz_connections_header_timeouts_total").await >= 1);
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_at_the_body_deadline_and_recorded() {
    let env = gateway().await;
    let to = addr(&env);
    let token = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let mut slow = connect_from([127, 0, 0, 2], to).await;
    // A complete head announcing 200 bytes, then 10 of them, then nothing.
    slow.write_all(
        format!(
            "POST /mcp/tickets HTTP/1.1\r\nHost: {to}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: 200\r\n\r\n{{\"jsonrpc\""
        )
        .as_bytes(),
    )
    .await
    .expect("head and the start of the body");
    let mut reply = Vec::new();
    // The 300 ms deadline passes; the generous bound only stops a hang.
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut reply))
        .await
        .expect("the gateway answered and closed the connection")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(reply.contains("body_timeout"), "{reply}");
    let request_id = reply
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_owned)
        })
        .expect("x-request-id");
    let recorded = env
        .all_records()
        .await
        .into_iter()
        .find(|r| r.request_id == request_id.trim())
        .expect("the refusal is recorded");
    assert_eq!(recorded.subject.as_deref(), Some("alice"));
    assert_eq!(recorded.method, "(body timeout)");
    assert_eq!(recorded.reason, authz_types::ReasonCode::LimitExceeded);
    assert_eq!(recorded.http_status, Some(408));
    assert_eq!(metric(&env, "authz_body_read_timeouts_total").await, 1);
    // Everyone else is still served.
    assert_eq!(status_from([127, 0, 0, 1], to, "/healthz").await, 200);
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let env = gateway().await;
    let to = addr(&env);
    // The flooding client holds its four allowed connections open, idle.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 2], to).await);
    }
    // Its fifth is closed at once, before anything is read.
    let mut fifth = connect_from([127, 0, 0, 2], to).await;
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    assert!(
        closed_within(&mut fifth, Duration::from_secs(10)).await,
        "a connection over the per-client cap was served"
    );
    // Another client is served every time meanwhile.
    for _ in 0..5 {
        assert_eq!(status_from([127, 0, 0, 1], to, "/healthz").await, 200);
    }
    assert!(
        metric(
            &env,
            "authz_connections_refused_total{cap=\"max_connections_per_client\"}"
        )
        .await
            >= 1
    );
    drop(held);
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_at_the_head_deadline() {
    // Not at the idle deadline (60 s): holding a slot costs a silent client as much as a slow
    // one.
    let env = gateway().await;
    let to = addr(&env);
    let mut silent = connect_from([127, 0, 0, 2], to).await;
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a connection that never spoke was held past the head deadline"
    );
    // One that spoke keeps its connection for the idle deadline between requests as before.
    let mut spoke = connect_from([127, 0, 0, 3], to).await;
    spoke
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .expect("a request");
    let mut buf = [0u8; 512];
    let n = spoke.read(&mut buf).await.expect("the answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_head_deadline() {
    let env = gateway().await;
    let to = addr(&env);
    let mut idle = connect_from([127, 0, 0, 2], to).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .expect("a complete request");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.expect("the answer");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Kept alive, then idle: the next head never comes.
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)).await,
        "an idle keep-alive connection was held past the head deadline"
    );
}

#[tokio::test]
async fn under_a_connection_flood_a_new_client_is_served_every_time() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            server_extra: Some(
                "header_read_timeout_ms = 1500\nmax_connections = 12\n\
                 max_connections_per_client = 4"
                    .into(),
            ),
            ..Options::default()
        },
    )
    .await;
    let to = addr(&env);
    // The flood: slowloris heads from eight addresses, refilled as they are closed, more than
    // the twelve slots can hold.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = tokio::spawn({
        let stop = std::sync::Arc::clone(&stop);
        async move {
            let mut held = Vec::new();
            let mut source = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                source = source % 8 + 1;
                let mut stream = connect_from([127, 0, 0, 10 + source], to).await;
                let _ = stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
                    .await;
                held.push(stream);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            held
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A legitimate client opening a new connection every 200 ms is served every time.
    for i in 0..10 {
        assert_eq!(
            status_from([127, 0, 0, 1], to, "/healthz").await,
            200,
            "legitimate request {i} during the flood"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let held = flood.await.expect("the flood task");
    // Every flood connection is closed by the head deadline (1.5 s) if it was not shed sooner;
    // the generous bound only stops a hang.
    let deadline = Instant::now() + Duration::from_secs(10);
    for mut stream in held {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            closed_within(&mut stream, left).await,
            "a flood connection outlived the head deadline"
        );
    }
    assert!(metric(&env, "authz_connections_shed_total").await >= 10);
    assert!(
        metric(
            &env,
            "authz_connections_refused_total{cap=\"max_connections\"}"
        )
        .await
            == 0
    );
}

#[tokio::test]
async fn shutdown_closes_what_is_still_open_at_its_deadline() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            server_extra: Some("shutdown_grace_ms = 300".into()),
            ..Options::default()
        },
    )
    .await;
    let to = addr(&env);
    let token = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    // A request in flight for as long as its body takes (30 s by default): it holds its
    // connection open through a graceful shutdown.
    let mut stalled = connect_from([127, 0, 0, 2], to).await;
    stalled
        .write_all(
            format!(
                "POST /mcp/tickets HTTP/1.1\r\nHost: {to}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
                 Content-Length: 200\r\n\r\n{{\"jsonrpc\""
            )
            .as_bytes(),
        )
        .await
        .expect("head and the start of the body");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The 300 ms deadline passes long before the body would time out; the bound only stops a
    // hang.
    let env = tokio::time::timeout(Duration::from_secs(10), env.stop())
        .await
        .expect("shutdown finished within its deadline instead of waiting for the request");
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)).await,
        "the stalled connection was left open"
    );
    drop(env);
}

/// The status of a tokenless `POST /mcp/tickets` with these `Host` and `Origin` headers.
async fn status_with(to: SocketAddr, host: &str, origin: Option<&str>) -> (u16, String) {
    let mut stream = connect_from([127, 0, 0, 1], to).await;
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!(
                "POST /mcp/tickets HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\n\
                 Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

#[tokio::test]
async fn same_origin_passes_and_rebinding_hosts_and_other_origins_are_refused() {
    let env = gateway().await;
    let to = addr(&env);
    let port = to.port();
    let own = format!("http://127.0.0.1:{port}");
    // Same origin (under any loopback name of this gateway) gets as far as authentication.
    for (host, origin) in [
        (to.to_string(), Some(own.clone())),
        (
            format!("localhost:{port}"),
            Some(format!("http://localhost:{port}")),
        ),
        (to.to_string(), None),
    ] {
        let (status, reply) = status_with(to, &host, origin.as_deref()).await;
        assert_eq!(status, 401, "{host} {origin:?}: {reply}");
    }
    // Another origin is refused before anything else.
    let (status, reply) = status_with(to, &to.to_string(), Some("http://evil.example")).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("origin_not_allowed"), "{reply}");
    // A page that rebound evil.example to 127.0.0.1 sends its own name as Host.
    let (status, reply) = status_with(to, &format!("evil.example:{port}"), None).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("host_not_allowed"), "{reply}");
}

/// An upstream for the shutdown test: `get_slow` answers after 400 ms, `list_forever` opens an
/// event stream that sends one notification and never ends.
async fn slow_upstream(body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt as _;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let id = v["id"].clone();
    match v["params"]["name"].as_str() {
        Some("get_slow") => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "done"}]}}))
            .into_response()
        }
        Some("list_forever") => {
            let first = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\
                         \"params\":{\"level\":\"info\",\"data\":\"working\"}}\n\n";
            let events = futures_util::stream::once(async move {
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(first.as_bytes()))
            })
            .chain(futures_util::stream::pending());
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(events),
            )
                .into_response()
        }
        _ => axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"tools": []}}))
            .into_response(),
    }
}

/// Graceful shutdown with calls in flight: calls that finish within `shutdown_grace_ms` are
/// answered in full, a stream still open at the deadline is ended, and each has its decision and
/// outcome record, committed before the gateway exits; the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_calls_in_flight_and_records_the_streams_it_ends() {
    use futures_util::StreamExt as _;
    let upstream = harness::serve_stand_in(
        axum::Router::new().route("/mcp", axum::routing::post(slow_upstream)),
    )
    .await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            upstream_url: Some(format!("http://{upstream}/mcp")),
            server_extra: Some("shutdown_grace_ms = 1500".into()),
            ..Options::default()
        },
    )
    .await;
    let token = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let stream = env.post_stateless_call(&token, 100, "list_forever").await;
    assert_eq!(stream.status(), 200);
    let stream_id = harness::request_id(&stream);
    let mut events = stream.bytes_stream();
    let first = events.next().await.expect("an event").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("working"));

    let calls: Vec<_> = (1..=3)
        .map(|id| {
            let (headers, body) = harness::stateless_call(id, "get_slow");
            let mut req = env.json_post(&env.route).bearer_auth(&token).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            tokio::spawn(async move {
                let resp = req.send().await.expect("answered");
                let id = harness::request_id(&resp);
                (
                    resp.status().as_u16(),
                    id,
                    resp.text().await.expect("the whole body"),
                )
            })
        })
        .collect();
    // The calls reach the upstream before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let env = tokio::time::timeout(Duration::from_secs(20), env.stop())
        .await
        .expect("the shutdown ends at its deadline");
    let mut ids = vec![stream_id.clone()];
    for call in calls {
        let (status, id, body) = call.await.expect("the call task");
        assert_eq!(status, 200, "a call in flight is answered in full: {body}");
        assert!(body.contains("done"), "{body}");
        ids.push(id);
    }
    // The stream was ended by the deadline, not left open.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = events.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream outlived the shutdown");

    for id in &ids {
        let decisions = env
            .records_for_request(id, authz_types::RecordKind::Decision)
            .await;
        let outcomes = env
            .records_for_request(id, authz_types::RecordKind::Outcome)
            .await;
        assert_eq!((decisions.len(), outcomes.len()), (1, 1), "request {id}");
        if *id == stream_id {
            assert_ne!(
                outcomes[0].outcome.as_deref(),
                Some("finished"),
                "{:?}",
                outcomes[0]
            );
        } else {
            assert_eq!(outcomes[0].upstream_status, Some(200), "{:?}", outcomes[0]);
        }
    }
    env.assert_chain_intact().await;
}
