//! HTTP/2 limits over real loopback connections (prior knowledge, as gRPC-style clients and
//! proxies speak it): the advertised stream cap, the header-list cap (431), a rapid-reset flood
//! closed with `GOAWAY ENHANCE_YOUR_CALM`, and an idle connection closed at the idle deadline.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::connections::{addr, metric};
use crate::harness::{self, AuditBackend, Options};

async fn gateway() -> harness::Env {
    harness::start_with(
        AuditBackend::Sqlite,
        Options {
            server_extra: Some(
                "idle_timeout_ms = 400\nhttp2_max_concurrent_streams = 7\n\
                 http2_max_header_list_bytes = 4096\nhttp2_max_pending_reset_streams = 5"
                    .into(),
            ),
            ..Options::default()
        },
    )
    .await
}

/// An HTTP/2 connection to the gateway, and the task driving it (it ends when the connection
/// does, with the error that ended it).
async fn connect(
    env: &harness::Env,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr(env)).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    (client, tokio::spawn(connection))
}

fn get(env: &harness::Env, path: &str) -> axum::http::Request<()> {
    axum::http::Request::get(format!("{}{path}", env.base))
        .body(())
        .expect("request")
}

async fn status(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    request: axum::http::Request<()>,
) -> u16 {
    let ready = client.clone().ready().await.expect("ready");
    *client = ready;
    let (response, _) = client.send_request(request, true).expect("send");
    response.await.expect("response").status().as_u16()
}

#[tokio::test]
async fn the_stream_cap_is_advertised_and_large_header_lists_are_refused_431() {
    let env = gateway().await;
    let (mut client, _task) = connect(&env).await;
    assert_eq!(status(&mut client, get(&env, "/healthz")).await, 200);
    // The server's SETTINGS have arrived with the first response.
    assert_eq!(client.current_max_send_streams(), 7);
    let mut big = get(&env, "/healthz");
    big.headers_mut()
        .insert("x-padding", "a".repeat(6000).parse().expect("header value"));
    assert_eq!(status(&mut client, big).await, 431);
    // The connection survives a refused header list.
    assert_eq!(status(&mut client, get(&env, "/healthz")).await, 200);
}

#[tokio::test]
async fn a_rapid_reset_flood_is_closed_with_enhance_your_calm_and_counted() {
    let env = gateway().await;
    let (mut client, task) = connect(&env).await;
    assert_eq!(status(&mut client, get(&env, "/healthz")).await, 200);
    // Open streams and reset each at once, faster than they can be taken.
    for _ in 0..200 {
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let Ok((_response, mut body)) = client.send_request(get(&env, "/healthz"), false) else {
            break;
        };
        body.send_reset(h2::Reason::CANCEL);
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the gateway closed the flooding connection")
        .expect("the connection task");
    let error = ended.expect_err("closed with an error");
    assert!(error.is_go_away(), "{error:?}");
    assert_eq!(
        error.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error:?}"
    );
    assert_eq!(metric(&env, "authz_http2_reset_floods_total").await, 1);
    assert_eq!(
        metric(
            &env,
            "authz_connection_limit{key=\"http2_max_pending_reset_streams\"}"
        )
        .await,
        5
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_idle_deadline() {
    let env = gateway().await;
    let (mut client, task) = connect(&env).await;
    assert_eq!(status(&mut client, get(&env, "/healthz")).await, 200);
    // Nothing more is sent; the 400 ms idle deadline closes it (GOAWAY, then the end).
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("an idle HTTP/2 connection was held past the idle deadline")
        .expect("the connection task");
    assert!(
        ended.is_ok(),
        "a graceful GOAWAY ends the connection cleanly: {ended:?}"
    );
    assert!(metric(&env, "authz_connections_idle_closed_total").await >= 1);
}

#[tokio::test]
async fn a_rebinding_authority_is_refused_over_http2_too() {
    let env = gateway().await;
    let (mut client, _task) = connect(&env).await;
    let port = addr(&env).port();
    let own = axum::http::Request::post(format!("http://127.0.0.1:{port}/mcp/tickets"))
        .body(())
        .expect("request");
    // Past the Host check: refused for want of a token.
    assert_eq!(status(&mut client, own).await, 401);
    let rebound = axum::http::Request::post(format!("http://evil.example:{port}/mcp/tickets"))
        .body(())
        .expect("request");
    assert_eq!(status(&mut client, rebound).await, 403);
}
