//! The accept loop: connection hygiene before any request is read.
//!
//! Nothing here needs a token, so it is what stands between anyone who can reach the port and
//! everyone else:
//!
//! - **A deadline for the request head** (`server.header_read_timeout_ms`, default 10 s, like
//!   nginx's `client_header_timeout`): a client that trickles a head (slowloris), holds an
//!   HTTP/1.1 keep-alive connection idle, or connects and never sends a first request (either
//!   protocol), is disconnected when it passes.
//! - **An idle deadline** (`server.idle_timeout_ms`, default 60 s): a connection with no request
//!   in flight for that long is closed (HTTP/2 with a `GOAWAY`), so an HTTP/2 connection cannot be
//!   held open without sending anything either.
//! - **Caps on open connections**, in total (`server.max_connections`) and per client address
//!   (`server.max_connections_per_client`). A connection over the per-client cap is closed at
//!   once, before anything is read from it, so one address cannot take every slot. At the total
//!   cap the connection idle the longest (no request in flight: a slowloris head counts as idle)
//!   is shed to make room; only when every connection is busy is the new one refused. The total
//!   stays below the open-file limit so `accept` keeps working for everyone else.
//! - **HTTP/2 limits**: concurrent streams per connection, the size of a request's header list,
//!   and the resets a client may provoke (the rapid-reset and "made you reset" attack classes);
//!   a connection over a reset limit is closed with `GOAWAY ENHANCE_YOUR_CALM` and counted.
//! - **Accept errors never stop the loop**: a failed `accept` (out of descriptors, a connection
//!   reset before it was taken) is counted and logged, and the loop goes on after a short pause.
//!
//! Every refusal is counted in `/metrics` (see [`ConnectionStats`]). Each request carries its
//! connection's [`ClientAddr`] as an extension.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

/// The limits the accept loop enforces (the `[server]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// At shutdown, how long open connections may take to finish their requests and streams
    /// before they are closed.
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub http2: Http2Limits,
}

/// HTTP/2 limits (the `[server]` keys `http2_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// The largest request header list accepted (`SETTINGS_MAX_HEADER_LIST_SIZE`, in the RFC's
    /// measure: names, values and 32 bytes per field); larger ones are answered 431.
    pub max_header_list_bytes: u32,
    /// Streams a client may open and reset before the gateway has taken them (rapid reset).
    pub max_pending_reset_streams: usize,
    /// Streams the gateway may have to reset because of a client's protocol errors
    /// ("made you reset").
    pub max_local_reset_streams: usize,
}

/// The address of the client a request came from (the TCP peer, not a forwarded header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// Counters of the accept loop, rendered by `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_total_cap: AtomicU64,
    pub(crate) refused_client_cap: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    /// Connections closed because their request head did not arrive in time.
    pub(crate) header_timeouts: AtomicU64,
    /// POST bodies that did not arrive in full in time (answered 408, connection closed).
    pub(crate) body_timeouts: AtomicU64,
    /// Connections closed after `idle_timeout` without a request in flight.
    pub(crate) idle_closed: AtomicU64,
    /// Idle connections closed at the total cap to make room for a new one.
    pub(crate) shed: AtomicU64,
    /// HTTP/2 connections closed with `ENHANCE_YOUR_CALM` (a reset flood).
    pub(crate) http2_reset_floods: AtomicU64,
    /// For idle deadlines: milliseconds are counted from here.
    epoch: Epoch,
    open: Mutex<Open>,
    /// Limits set by a `SIGHUP` reload, for the accept loop to take up at its next connection.
    reloaded: Mutex<Option<ConnectionLimits>>,
    reload_generation: AtomicU64,
}

/// The instant activity times are measured from.
#[derive(Debug)]
struct Epoch(Instant);

impl Default for Epoch {
    fn default() -> Self {
        Self(Instant::now())
    }
}

/// Open connections: in total, per client address (addresses with none are removed), and each
/// one's activity, to find the one idle the longest.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Connections told to close to make room, not yet gone.
    shedding: usize,
    per_client: HashMap<IpAddr, usize>,
    connections: HashMap<u64, Arc<Activity>>,
    next_id: u64,
}

/// What one connection is doing: requests in flight, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests the connection has started; until its first, it gets only the request-head
    /// deadline to send one (a connection that never speaks holds a slot no longer than that).
    requests: AtomicU64,
    /// Milliseconds since the [`Epoch`] at which the last request finished (or the connection
    /// was accepted).
    idle_since_ms: AtomicU64,
    /// Set once the connection has been chosen to be shed.
    shedding: AtomicBool,
    shed: tokio::sync::Notify,
}

impl ConnectionStats {
    /// Replaces the limits: caps and the shutdown grace apply from the next accepted connection
    /// on, as do the request-head, idle and HTTP/2 limits (connections already open keep
    /// theirs).
    pub(crate) fn set_limits(&self, limits: ConnectionLimits) {
        *self
            .reloaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(limits);
        self.reload_generation.fetch_add(1, Ordering::Release);
    }

    /// The limits in force: the last reloaded ones, else `configured`.
    pub(crate) fn limits_in_force(&self, configured: &ConnectionLimits) -> ConnectionLimits {
        self.reloaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(*configured)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot for a connection from `client`, or says which cap refuses it. At the total
    /// cap, the connection idle the longest is told to close and the new one takes its place;
    /// the connections not being shed never exceed the cap.
    fn admit(self: &Arc<Self>, client: IpAddr, limits: &ConnectionLimits) -> Result<Slot, Refused> {
        let mut open = self.lock();
        if open.per_client.get(&client).copied().unwrap_or(0) >= limits.max_connections_per_client {
            return Err(Refused::Client);
        }
        if open.total - open.shedding >= limits.max_connections {
            let victim = open
                .connections
                .values()
                .filter(|a| {
                    a.in_flight.load(Ordering::Acquire) == 0 && !a.shedding.load(Ordering::Relaxed)
                })
                .min_by_key(|a| a.idle_since_ms.load(Ordering::Relaxed))
                .cloned();
            let Some(victim) = victim else {
                return Err(Refused::Total);
            };
            victim.shedding.store(true, Ordering::Relaxed);
            victim.shed.notify_one();
            open.shedding += 1;
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        *open.per_client.entry(client).or_insert(0) += 1;
        open.total += 1;
        let id = open.next_id;
        open.next_id += 1;
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            shedding: AtomicBool::new(false),
            shed: tokio::sync::Notify::new(),
        });
        open.connections.insert(id, Arc::clone(&activity));
        Ok(Slot {
            stats: Arc::clone(self),
            client,
            id,
            activity,
        })
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Total,
    Client,
}

/// An admitted connection's place in the counts; given back when the connection ends.
struct Slot {
    stats: Arc<ConnectionStats>,
    client: IpAddr,
    id: u64,
    activity: Arc<Activity>,
}

impl Slot {
    /// When the connection will have been idle for `timeout`, if nothing is in flight now.
    /// When the connection is idle too long: `timeout` after its last request ended, or
    /// `first` after it was accepted while it has sent no request at all.
    fn idle_deadline(&self, timeout: Duration, first: Duration) -> Option<tokio::time::Instant> {
        if self.activity.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let timeout = if self.activity.requests.load(Ordering::Relaxed) == 0 {
            timeout.min(first)
        } else {
            timeout
        };
        let since = self.activity.idle_since_ms.load(Ordering::Acquire);
        let at = self.stats.epoch.0 + Duration::from_millis(since) + timeout;
        Some(tokio::time::Instant::from_std(at))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.stats.lock();
        if open.connections.remove(&self.id).is_none() {
            return;
        }
        if self.activity.shedding.load(Ordering::Relaxed) {
            open.shedding -= 1;
        }
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
        open.total -= 1;
    }
}

/// A request in flight on a connection; the connection is idle again when the last one's
/// response body has been sent (or dropped).
struct Busy {
    stats: Arc<ConnectionStats>,
    activity: Arc<Activity>,
}

impl Busy {
    fn new(stats: &Arc<ConnectionStats>, activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        Self {
            stats: Arc::clone(stats),
            activity: Arc::clone(activity),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity
            .idle_since_ms
            .store(self.stats.now_ms(), Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
pub(crate) struct TrackedBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as one connection's hyper service: each request is counted in flight on the
/// connection and carries the client's address.
#[derive(Clone)]
struct Tracked {
    router: axum::Router,
    stats: Arc<ConnectionStats>,
    activity: Arc<Activity>,
    client: ClientAddr,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for Tracked {
    type Response = axum::http::Response<TrackedBody>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn call(&self, mut request: axum::http::Request<Incoming>) -> Self::Future {
        use tower::ServiceExt as _;
        let busy = Busy::new(&self.stats, &self.activity);
        request.extensions_mut().insert(self.client);
        let response = self.router.clone().oneshot(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody { inner, _busy: busy }))
        })
    }
}

/// How long the loop pauses after a failed `accept`, so running out of descriptors does not
/// become a busy loop; connections that end meanwhile give theirs back.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// How long a connection told to close (shed, or idle past its deadline) may take to finish
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the accept loop tells its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish the requests in flight, take no new ones, then close.
    Graceful,
    /// The shutdown deadline passed: close now.
    Now,
}

/// The HTTP/1 and HTTP/2 connection settings of `limits`.
fn connection_builder(limits: &ConnectionLimits) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2.max_concurrent_streams)
        .max_header_list_size(limits.http2.max_header_list_bytes)
        .max_pending_accept_reset_streams(limits.http2.max_pending_reset_streams)
        .max_local_error_reset_streams(limits.http2.max_local_reset_streams);
    Arc::new(builder)
}

/// Accepts connections on `listener` and serves `router` on each until `shutdown` resolves,
/// then lets open connections finish (graceful shutdown) for up to `limits.shutdown_grace`,
/// and closes the ones still open when it passes (their streams end, and their outcome records
/// are written, as for any client that goes away).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut limits = limits;
    let mut builder = connection_builder(&limits);
    let mut seen_generation = 0;
    // Every connection task holds a sender; when all are gone, every connection has finished.
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Stop::Running);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "accept failed; the gateway keeps serving");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let generation = stats.reload_generation.load(Ordering::Acquire);
        if generation != seen_generation {
            seen_generation = generation;
            let reloaded = stats.limits_in_force(&limits);
            if reloaded != limits {
                limits = reloaded;
                builder = connection_builder(&limits);
                tracing::info!(?limits, "connection limits reloaded");
            }
        }
        let slot = match stats.admit(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(refused) => {
                let (counter, which) = match refused {
                    Refused::Total => (&stats.refused_total_cap, "server.max_connections"),
                    Refused::Client => (
                        &stats.refused_client_cap,
                        "server.max_connections_per_client",
                    ),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %peer.ip(), cap = which, "connection refused over its cap");
                drop(stream);
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY");
        }
        let service = Tracked {
            router: router.clone(),
            stats: Arc::clone(&stats),
            activity: Arc::clone(&slot.activity),
            client: ClientAddr(peer.ip()),
        };
        let builder = Arc::clone(&builder);
        let stats = Arc::clone(&stats);
        let finished = finished_tx.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let result = drive(connection, &slot, &limits, &stats, stop).await;
            match result {
                Some(Err(error)) if is_timeout(&*error) => {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                Some(Err(error)) if is_reset_flood(&*error) => {
                    stats.http2_reset_floods.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(client = %slot.client, "HTTP/2 reset flood: connection closed");
                }
                _ => {}
            }
            drop(slot);
            drop(finished);
        });
    }
    drop(listener);
    drop(finished_tx);
    let _ = stop_tx.send(Stop::Graceful);
    let limits = stats.limits_in_force(&limits);
    // `None` once every connection task has dropped its sender.
    let drained = tokio::time::timeout(limits.shutdown_grace, finished_rx.recv()).await;
    if drained.is_err() {
        tracing::warn!(
            open = stats.open(),
            grace_ms = limits.shutdown_grace.as_millis(),
            "shutdown deadline passed: closing the connections still open"
        );
        let _ = stop_tx.send(Stop::Now);
        let _ = finished_rx.recv().await;
    }
}

type ConnectionResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Serves one connection to its end: closes it gracefully when it is shed, idle past
/// `idle_timeout`, or the gateway shuts down, and drops it if a shed or idle connection does
/// not finish within [`CLOSE_GRACE`], or when the shutdown deadline passes. `None` if it was
/// dropped.
async fn drive(
    connection: auto::UpgradeableConnection<
        '_,
        TokioIo<tokio::net::TcpStream>,
        Tracked,
        TokioExecutor,
    >,
    slot: &Slot,
    limits: &ConnectionLimits,
    stats: &ConnectionStats,
    mut stop: tokio::sync::watch::Receiver<Stop>,
) -> Option<ConnectionResult> {
    let (idle_timeout, first) = (limits.idle_timeout, limits.header_read_timeout);
    let mut connection = std::pin::pin!(connection);
    let far = || tokio::time::Instant::now() + idle_timeout;
    let check =
        tokio::time::sleep_until(slot.idle_deadline(idle_timeout, first).unwrap_or_else(far));
    let mut check = std::pin::pin!(check);
    let mut closing = false;
    let mut hard_deadline: Option<tokio::time::Instant> = None;
    loop {
        let hard = async {
            match hard_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => return Some(result),
            () = slot.activity.shed.notified(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
                hard_deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            () = &mut check, if !closing => match slot.idle_deadline(idle_timeout, first) {
                Some(at) if at <= tokio::time::Instant::now() => {
                    closing = true;
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    connection.as_mut().graceful_shutdown();
                    hard_deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                at => check.as_mut().reset(at.unwrap_or_else(far)),
            },
            changed = stop.changed() => {
                let now = *stop.borrow_and_update();
                match (changed, now) {
                    (Err(_), _) | (Ok(()), Stop::Now) => return None,
                    (Ok(()), Stop::Graceful) if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ => {}
                }
            }
            () = hard => return None,
        }
    }
}

/// Whether a connection ended because hyper's header-read timer fired.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && hyper.is_timeout()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether an HTTP/2 connection was closed for too many resets (`GOAWAY ENHANCE_YOUR_CALM`).
fn is_reset_flood(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            max_connections: total,
            max_connections_per_client: per_client,
            http2: Http2Limits {
                max_concurrent_streams: 100,
                max_header_list_bytes: 32 * 1024,
                max_pending_reset_streams: 20,
                max_local_reset_streams: 1024,
            },
        }
    }

    /// A request over a fresh connection: `Some(status line)`, or `None` when the gateway closed
    /// the connection without answering (a cap refused it).
    async fn get(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, Option<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer or a close")
            .unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        (conn, head.lines().next().map(str::to_owned))
    }

    #[tokio::test]
    async fn reloaded_caps_apply_from_the_next_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(ConnectionStats::default());
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router,
            limits(10, 1),
            stats.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let (_held, first) = get(addr).await;
        assert_eq!(first.as_deref(), Some("HTTP/1.1 200 OK"));
        let (_, second) = get(addr).await;
        assert_eq!(second, None, "one connection per client");
        stats.set_limits(limits(10, 3));
        let (_also_held, third) = get(addr).await;
        assert_eq!(
            third.as_deref(),
            Some("HTTP/1.1 200 OK"),
            "the new cap is in force"
        );
        assert_eq!(
            stats
                .limits_in_force(&limits(1, 1))
                .max_connections_per_client,
            3
        );
        assert_eq!(stats.refused_client_cap.load(Ordering::Relaxed), 1);
        let _ = stop.send(());
        drop((_held, _also_held));
        server.await.expect("the accept loop ends");
    }

    #[test]
    fn caps_are_per_client_and_in_total_and_slots_come_back() {
        let stats = Arc::new(ConnectionStats::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let c: IpAddr = [10, 0, 0, 3].into();
        let l = limits(3, 2);
        let a1 = stats.admit(a, &l).expect("a1");
        let a2 = stats.admit(a, &l).expect("a2");
        assert_eq!(stats.admit(a, &l).err(), Some(Refused::Client));
        let b1 = stats.admit(b, &l).expect("b1");
        // Every connection busy: nothing to shed, so the total cap refuses.
        let busy: Vec<Busy> = [&a1, &a2, &b1]
            .iter()
            .map(|slot| Busy::new(&stats, &slot.activity))
            .collect();
        assert_eq!(stats.admit(c, &l).err(), Some(Refused::Total));
        assert_eq!(stats.open(), 3);
        drop(a1);
        assert_eq!(stats.open(), 2);
        let _c1 = stats.admit(c, &l).expect("a slot given back is free again");
        assert_eq!(stats.shed.load(Ordering::Relaxed), 0);
        drop(busy);
    }

    #[test]
    fn at_the_total_cap_the_connection_idle_the_longest_is_shed() {
        let stats = Arc::new(ConnectionStats::default());
        let l = limits(3, 3);
        let ip = |n: u8| -> IpAddr { [10, 0, 0, n].into() };
        let oldest = stats.admit(ip(1), &l).expect("1");
        let newer = stats.admit(ip(2), &l).expect("2");
        let busy_one = stats.admit(ip(3), &l).expect("3");
        // The oldest is busy: it is not a candidate whatever its age.
        let busy = Busy::new(&stats, &oldest.activity);
        newer.activity.idle_since_ms.store(10, Ordering::Relaxed);
        busy_one.activity.idle_since_ms.store(5, Ordering::Relaxed);
        let _b = Busy::new(&stats, &busy_one.activity);
        let fourth = stats.admit(ip(4), &l).expect("room is made by shedding");
        assert!(newer.activity.shedding.load(Ordering::Relaxed));
        assert!(!oldest.activity.shedding.load(Ordering::Relaxed));
        assert_eq!(stats.shed.load(Ordering::Relaxed), 1);
        // Until the shed connection is gone, the others are at the cap and all busy or new.
        let _f = Busy::new(&stats, &fourth.activity);
        assert_eq!(stats.admit(ip(5), &l).err(), Some(Refused::Total));
        assert_eq!(
            stats.open(),
            4,
            "the shed connection still counts until it closes"
        );
        drop(newer);
        assert_eq!(stats.open(), 3);
        assert_eq!(stats.lock().shedding, 0);
        drop(busy);
        // The oldest is idle again now, so it is the next to go.
        let _fifth = stats.admit(ip(5), &l).expect("the oldest is idle again");
        assert!(oldest.activity.shedding.load(Ordering::Relaxed));
    }
}
