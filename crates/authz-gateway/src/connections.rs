//! The accept loop: connection hygiene before any request is read.
//!
//! Nothing here needs a token, so it is what stands between anyone who can reach the port and
//! everyone else:
//!
//! - **A deadline for the request head** (`server.header_read_timeout_ms`, default 10 s, like
//!   nginx's `client_header_timeout`): a client that trickles a head (slowloris), or holds a
//!   keep-alive connection idle, is disconnected when it passes.
//! - **Caps on open connections**, in total (`server.max_connections`) and per client address
//!   (`server.max_connections_per_client`). A connection over a cap is closed at once, before
//!   anything is read from it, so one address cannot take every slot; the total stays below the
//!   open-file limit so `accept` keeps working for everyone else.
//! - **Accept errors never stop the loop**: a failed `accept` (out of descriptors, a connection
//!   reset before it was taken) is counted and logged, and the loop goes on after a short pause.
//!
//! Every refusal is counted in `/metrics` (see [`ConnectionStats`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

/// The limits the accept loop enforces (the `[server]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

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
    open: Mutex<Open>,
}

/// Open connections: in total, and per client address (addresses with none are removed).
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl ConnectionStats {
    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot for a connection from `client`, or says which cap refuses it.
    fn admit(self: &Arc<Self>, client: IpAddr, limits: &ConnectionLimits) -> Result<Slot, Refused> {
        let mut open = self.lock();
        if open.total >= limits.max_connections {
            return Err(Refused::Total);
        }
        let mine = open.per_client.entry(client).or_insert(0);
        if *mine >= limits.max_connections_per_client {
            return Err(Refused::Client);
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            stats: Arc::clone(self),
            client,
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
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.stats.lock();
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
            open.total -= 1;
        }
    }
}

/// How long the loop pauses after a failed `accept`, so running out of descriptors does not
/// become a busy loop; connections that end meanwhile give theirs back.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Accepts connections on `listener` and serves `router` on each until `shutdown` resolves,
/// then lets open connections finish (graceful shutdown).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if let Err(error) = connection.await
                && is_timeout(&*error)
            {
                stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: total,
            max_connections_per_client: per_client,
        }
    }

    #[test]
    fn caps_are_per_client_and_in_total_and_slots_come_back() {
        let stats = Arc::new(ConnectionStats::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let c: IpAddr = [10, 0, 0, 3].into();
        let l = limits(3, 2);
        let a1 = stats.admit(a, &l).expect("a1");
        let _a2 = stats.admit(a, &l).expect("a2");
        assert_eq!(stats.admit(a, &l).err(), Some(Refused::Client));
        let _b1 = stats.admit(b, &l).expect("b1");
        assert_eq!(stats.admit(c, &l).err(), Some(Refused::Total));
        assert_eq!(stats.open(), 3);
        drop(a1);
        assert_eq!(stats.open(), 2);
        let _c1 = stats.admit(c, &l).expect("a slot given back is free again");
    }
}
