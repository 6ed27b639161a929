//! Audit shipping: a continuous, at-least-once export of the trail to a sink outside the store
//! (a SIEM's HTTP collector, an OTLP logs endpoint). The SQL store stays the record of truth;
//! shipping only reads it, so a sink that is slow or down never holds up a request.
//!
//! # What is shipped, in what order
//!
//! Every chained record (see the crate docs) of every chain in the store, chain by chain in
//! `seq` order, in batches of at most [`ShipperConfig::batch_records`]. Records written
//! without a chain (before migration 0003) are not shipped. Each shipped record carries its
//! id, chain, seq and hash, so a receiver can tell a repeat from a new record and check a
//! record against the chain.
//!
//! # The cursor and the at-least-once window
//!
//! Per sink and chain, the store keeps the last seq the sink acknowledged
//! (`audit_ship_cursors`). A batch is sent, and only when the sink acknowledges it does the
//! cursor move past it; a batch the sink refuses is sent again, unchanged, with backoff, until
//! it is acknowledged. So nothing is skipped, and a record is sent twice only when its batch
//! was sent but the cursor did not move: the sink acknowledged after its timeout, the process
//! stopped between the acknowledgement and the cursor's update, or a lease was taken over in
//! that moment. That window is at most one batch per chain per such event.
//!
//! # Replicas
//!
//! Any replica may ship any chain, so a chain whose replica went away is still shipped: the
//! shipper that holds a chain's lease for a sink (`holder`, renewed on every step, valid for
//! [`ShipperConfig::lease_ms`]) ships it; a lease that runs out is taken over. Give each
//! replica a distinct, stable holder name (the gateway uses its chain id) so a restarted
//! replica takes its leases back at once.
//!
//! # Gaps
//!
//! Records pruned ([`AuditStore::prune_before`]) before a sink received them are gone: the
//! shipper counts them in [`ShipStatus::gaps`], logs the range, and goes on after it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authz_types::AuditRecord;
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Row};

use crate::hash::to_hex;
use crate::row::{RawRow, SELECT_COLUMNS};
use crate::{AuditStore, Error, read_failed, write_failed};
use authz_db::on_pool;

/// One record as a sink receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedRecord {
    /// The store's id of the record.
    pub id: i64,
    /// The chain it belongs to and its position there.
    pub chain_id: String,
    pub seq: i64,
    /// Its hash in the chain, as 64 hex digits.
    pub hash: String,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Where shipping starts for a chain the sink has no cursor for yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipStart {
    /// From the chain's first record still in the store (the default).
    #[default]
    Beginning,
    /// From the records written after the cursor is created.
    Now,
}

/// A shipper's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipperConfig {
    /// The sink's name: the cursor's key in the store, so renaming a sink starts it afresh.
    pub sink: String,
    /// Who holds leases: one stable name per replica.
    pub holder: String,
    /// Records per batch (1 to 10,000). Default 500.
    pub batch_records: u32,
    /// How long to wait before looking again once every chain is shipped. Default 1 s.
    pub poll_interval: Duration,
    /// How long a lease lasts without renewal. Default 30 s; it is renewed on every step, and
    /// must exceed the sink's timeout.
    pub lease_ms: i64,
    /// The first and the longest wait before a refused batch is sent again (doubling in
    /// between). Default 500 ms and 30 s.
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub start: ShipStart,
}

impl ShipperConfig {
    /// Defaults for `sink`, shipped by `holder`.
    pub fn new(sink: impl Into<String>, holder: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            holder: holder.into(),
            batch_records: 500,
            poll_interval: Duration::from_secs(1),
            lease_ms: 30_000,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            start: ShipStart::Beginning,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let reason = if self.sink.is_empty() || self.sink.len() > 64 {
            "the sink name must be 1 to 64 bytes"
        } else if self.holder.is_empty() || self.holder.len() > 200 {
            "the holder name must be 1 to 200 bytes"
        } else if !(1..=10_000).contains(&self.batch_records) {
            "batch_records must be 1 to 10000"
        } else if self.lease_ms < 1_000 {
            "the lease must last at least 1 s"
        } else if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            "the retry waits must be positive, the longest no shorter than the first"
        } else {
            return Ok(());
        };
        Err(Error::Config { reason })
    }
}

/// A destination for shipped records. `send` resolves `Ok` only once the sink has accepted
/// the whole batch; an `Err` (with a reason for the log) has the batch sent again.
pub trait Sink: Send + Sync + 'static {
    fn send(&self, batch: &[ShippedRecord]) -> impl Future<Output = Result<(), String>> + Send;
}

/// What a shipper has done, read by metrics. Counters only grow; the lag gauges are those of
/// the last pass over the chains this shipper holds.
#[derive(Debug, Default)]
pub struct ShipStatus {
    /// Records the sink acknowledged.
    pub shipped: AtomicU64,
    /// Batches the sink acknowledged.
    pub batches: AtomicU64,
    /// Sends that failed (each is retried).
    pub failures: AtomicU64,
    /// Records pruned before the sink received them.
    pub gaps: AtomicU64,
    /// Records committed but not yet acknowledged, over the chains this shipper holds.
    pub lag_records: AtomicU64,
    /// Age in milliseconds of the oldest of them (0 when there are none).
    pub lag_ms: AtomicU64,
    /// Chains this shipper holds the lease of.
    pub chains_held: AtomicU64,
}

/// A running shipper task; dropping it stops the task.
#[derive(Debug)]
pub struct Shipper {
    status: Arc<ShipStatus>,
    stop: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Shipper {
    /// Starts shipping `store`'s chains to `sink`. Fails only on a setting out of range; store
    /// and sink errors are retried for as long as the shipper runs.
    pub fn spawn<S: Sink>(
        store: AuditStore,
        config: ShipperConfig,
        sink: S,
    ) -> Result<Self, Error> {
        config.validate()?;
        let status = Arc::new(ShipStatus::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let run = Run {
            store,
            config,
            sink,
            status: status.clone(),
            stop: stop.clone(),
        };
        let task = tokio::spawn(run.run());
        Ok(Self {
            status,
            stop,
            task: Some(task),
        })
    }

    /// The shipper's counters and gauges.
    pub fn status(&self) -> &Arc<ShipStatus> {
        &self.status
    }

    /// Stops after the current step (a send in progress is left to finish or time out; its
    /// batch is sent again by whoever ships the chain next if its cursor did not move).
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Run<S> {
    store: AuditStore,
    config: ShipperConfig,
    sink: S,
    status: Arc<ShipStatus>,
    stop: Arc<tokio::sync::Notify>,
}

/// Passes over a chain's pages before the next chain gets its turn.
const PAGES_PER_TURN: usize = 8;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl<S: Sink> Run<S> {
    async fn run(self) {
        loop {
            let wait = match self.pass().await {
                Ok(true) => Duration::ZERO,
                Ok(false) => self.config.poll_interval,
                Err(Stopped) => return,
            };
            if self.sleep(wait).await.is_err() {
                return;
            }
        }
    }

    /// Waits `wait` (only yields when it is zero), or returns `Err` at once when told to stop.
    async fn sleep(&self, wait: Duration) -> Result<(), Stopped> {
        tokio::select! {
            biased;
            () = self.stop.notified() => Err(Stopped),
            () = tokio::time::sleep(wait), if !wait.is_zero() => Ok(()),
            () = tokio::task::yield_now(), if wait.is_zero() => Ok(()),
        }
    }

    /// One turn over every chain. `Ok(true)` when a chain has more to ship right away.
    async fn pass(&self) -> Result<bool, Stopped> {
        let chains = match self.store.shipped_chain_ids().await {
            Ok(chains) => chains,
            Err(e) => {
                tracing::warn!(sink = %self.config.sink, error = %e, "audit shipping cannot list the chains; trying again");
                return Ok(false);
            }
        };
        let (mut more, mut held, mut lag, mut oldest) = (false, 0u64, 0u64, None::<i64>);
        for chain in &chains {
            match self.turn(chain).await? {
                Turn::NotHeld => {}
                Turn::Held {
                    more: m,
                    lag: l,
                    oldest_ms,
                } => {
                    held += 1;
                    more |= m;
                    lag += l;
                    oldest = match (oldest, oldest_ms) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        self.status.chains_held.store(held, Ordering::Relaxed);
        self.status.lag_records.store(lag, Ordering::Relaxed);
        let age = oldest.map_or(0, |t| now_ms().saturating_sub(t).max(0));
        self.status
            .lag_ms
            .store(u64::try_from(age).unwrap_or_default(), Ordering::Relaxed);
        Ok(more)
    }

    /// Ships up to [`PAGES_PER_TURN`] pages of one chain, if this shipper holds its lease.
    async fn turn(&self, chain: &str) -> Result<Turn, Stopped> {
        let c = &self.config;
        let claimed = self
            .store
            .claim_ship_cursor(&c.sink, chain, &c.holder, c.lease_ms, c.start)
            .await;
        let mut seq = match claimed {
            Ok(Some(seq)) => seq,
            Ok(None) => return Ok(Turn::NotHeld),
            Err(e) => {
                tracing::warn!(sink = %c.sink, chain_id = %chain, error = %e, "audit shipping cannot read its cursor; trying again");
                return Ok(Turn::NotHeld);
            }
        };
        let limit = i64::from(c.batch_records);
        for _ in 0..PAGES_PER_TURN {
            let page = match self.store.ship_page(chain, seq, limit).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(sink = %c.sink, chain_id = %chain, error = %e, "audit shipping cannot read the chain; trying again");
                    return Ok(self.lag(chain, seq, false).await);
                }
            };
            let Some(first) = page.first() else {
                return Ok(Turn::Held {
                    more: false,
                    lag: 0,
                    oldest_ms: None,
                });
            };
            if first.seq > seq + 1 {
                let missing = first.seq - seq - 1;
                self.status.gaps.fetch_add(
                    u64::try_from(missing).unwrap_or_default(),
                    Ordering::Relaxed,
                );
                tracing::error!(sink = %c.sink, chain_id = %chain, from_seq = seq + 1, to_seq = first.seq - 1,
                    "audit records were pruned before this sink received them");
            }
            if !self.send(chain, &page).await? {
                return Ok(Turn::NotHeld); // the lease went to another shipper
            }
            let last = page.last().map_or(seq, |r| r.seq);
            match self
                .store
                .advance_ship_cursor(&c.sink, chain, &c.holder, last, c.lease_ms)
                .await
            {
                Ok(true) => {
                    seq = last;
                    let n = u64::try_from(page.len()).unwrap_or_default();
                    self.status.shipped.fetch_add(n, Ordering::Relaxed);
                    self.status.batches.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {
                    tracing::warn!(sink = %c.sink, chain_id = %chain, "audit shipping lost its lease; the batch it sent may arrive twice");
                    return Ok(Turn::NotHeld);
                }
                Err(e) => {
                    tracing::warn!(sink = %c.sink, chain_id = %chain, error = %e, "audit shipping cannot move its cursor; the batch will be sent again");
                    return Ok(self.lag(chain, seq, false).await);
                }
            }
            if page.len() < c.batch_records as usize {
                return Ok(self.lag(chain, seq, false).await);
            }
        }
        Ok(self.lag(chain, seq, true).await)
    }

    /// Sends one batch until the sink takes it, renewing the lease between attempts.
    /// `Ok(false)` when the lease was lost meanwhile.
    async fn send(&self, chain: &str, page: &[ShippedRecord]) -> Result<bool, Stopped> {
        let c = &self.config;
        let mut backoff = c.retry_min;
        loop {
            match self.sink.send(page).await {
                Ok(()) => return Ok(true),
                Err(reason) => {
                    self.status.failures.fetch_add(1, Ordering::Relaxed);
                    self.lag_while_refused(chain, page).await;
                    tracing::warn!(sink = %c.sink, chain_id = %chain, records = page.len(), error = %reason,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        "the audit sink refused a batch; it will be sent again");
                }
            }
            self.sleep(backoff).await?;
            backoff = (backoff * 2).min(c.retry_max);
            match self
                .store
                .renew_ship_lease(&c.sink, chain, &c.holder, c.lease_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    tracing::warn!(sink = %c.sink, chain_id = %chain, error = %e, "audit shipping cannot renew its lease");
                }
            }
        }
    }

    /// While a sink refuses a batch the pass does not end, so the lag gauges would stand still:
    /// they grow here instead, to at least this chain's lag behind the refused batch.
    async fn lag_while_refused(&self, chain: &str, page: &[ShippedRecord]) {
        let Some(first) = page.first() else { return };
        let (records, _) = self
            .store
            .ship_lag(chain, first.seq - 1)
            .await
            .unwrap_or((u64::try_from(page.len()).unwrap_or(u64::MAX), None));
        self.status
            .lag_records
            .fetch_max(records, Ordering::Relaxed);
        let age = now_ms().saturating_sub(first.record.time_ms).max(0);
        self.status
            .lag_ms
            .fetch_max(u64::try_from(age).unwrap_or_default(), Ordering::Relaxed);
    }

    /// The chain's lag behind `seq`, for a chain this shipper holds.
    async fn lag(&self, chain: &str, seq: i64, more: bool) -> Turn {
        let (lag, oldest_ms) = self.store.ship_lag(chain, seq).await.unwrap_or_default();
        Turn::Held {
            more: more && lag > 0,
            lag,
            oldest_ms,
        }
    }
}

#[derive(Debug)]
struct Stopped;

enum Turn {
    NotHeld,
    Held {
        more: bool,
        lag: u64,
        oldest_ms: Option<i64>,
    },
}

/// A chained row as shipping reads it.
#[derive(Debug, sqlx::FromRow)]
struct ShipRow {
    #[sqlx(flatten)]
    raw: RawRow,
    chain_id: String,
    seq: i64,
    hash: Vec<u8>,
}

/// One sink's position in one chain, as [`AuditStore::ship_cursors`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipCursor {
    pub sink: String,
    pub chain_id: String,
    /// The last seq the sink acknowledged.
    pub seq: i64,
    pub holder: Option<String>,
    pub lease_until_ms: i64,
    pub updated_ms: i64,
}

impl AuditStore {
    /// Every chain with records, sorted.
    async fn shipped_chain_ids(&self) -> Result<Vec<String>, Error> {
        const SQL: &str =
            "SELECT DISTINCT chain_id FROM audit_records WHERE chain_id IS NOT NULL ORDER BY 1";
        on_pool!(self.pool, pool => {
            sqlx::query_scalar::<DB, String>(SQL).fetch_all(pool).await.map_err(read_failed)
        })
    }

    /// Creates the sink's cursor for `chain` when missing, then takes or renews the lease:
    /// the cursor's seq when `holder` holds it now, `None` when another shipper does.
    async fn claim_ship_cursor(
        &self,
        sink: &str,
        chain: &str,
        holder: &str,
        lease_ms: i64,
        start: ShipStart,
    ) -> Result<Option<i64>, Error> {
        let now = now_ms();
        let start_seq = match start {
            ShipStart::Beginning => 0,
            ShipStart::Now => self.chain_last_seq(chain).await?,
        };
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO audit_ship_cursors (sink, chain_id, seq, holder, lease_until_ms, updated_ms) VALUES (",
            );
            qb.push_bind(sink).push(", ").push_bind(chain).push(", ").push_bind(start_seq);
            qb.push(", NULL, 0, ").push_bind(now);
            qb.push(") ON CONFLICT (sink, chain_id) DO NOTHING");
            qb.build().execute(pool).await.map_err(write_failed)?;
            let mut qb = QueryBuilder::<DB>::new("UPDATE audit_ship_cursors SET holder = ");
            qb.push_bind(holder).push(", lease_until_ms = ").push_bind(now.saturating_add(lease_ms));
            qb.push(" WHERE sink = ").push_bind(sink).push(" AND chain_id = ").push_bind(chain);
            qb.push(" AND (holder IS NULL OR holder = ").push_bind(holder);
            qb.push(" OR lease_until_ms < ").push_bind(now).push(") RETURNING seq");
            let row = qb.build().fetch_optional(pool).await.map_err(write_failed)?;
            row.map(|r| r.try_get::<i64, _>(0)).transpose().map_err(read_failed)
        })
    }

    /// Extends `holder`'s lease; `false` when it no longer holds it.
    async fn renew_ship_lease(
        &self,
        sink: &str,
        chain: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<bool, Error> {
        let until = now_ms().saturating_add(lease_ms);
        let done = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("UPDATE audit_ship_cursors SET lease_until_ms = ");
            qb.push_bind(until).push(" WHERE sink = ").push_bind(sink);
            qb.push(" AND chain_id = ").push_bind(chain).push(" AND holder = ").push_bind(holder);
            qb.build().execute(pool).await.map_err(write_failed)?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Moves the cursor to `seq` (never back) and renews the lease; `false` when `holder` no
    /// longer holds it.
    async fn advance_ship_cursor(
        &self,
        sink: &str,
        chain: &str,
        holder: &str,
        seq: i64,
        lease_ms: i64,
    ) -> Result<bool, Error> {
        let now = now_ms();
        let done = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("UPDATE audit_ship_cursors SET seq = ");
            qb.push_bind(seq).push(", updated_ms = ").push_bind(now);
            qb.push(", lease_until_ms = ").push_bind(now.saturating_add(lease_ms));
            qb.push(" WHERE sink = ").push_bind(sink).push(" AND chain_id = ").push_bind(chain);
            qb.push(" AND holder = ").push_bind(holder).push(" AND seq <= ").push_bind(seq);
            qb.build().execute(pool).await.map_err(write_failed)?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Up to `limit` records of `chain` after `after_seq`, in seq order.
    async fn ship_page(
        &self,
        chain: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ShippedRecord>, Error> {
        let rows: Vec<ShipRow> = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(format!(
                "SELECT {SELECT_COLUMNS}, chain_id, seq, hash FROM audit_records WHERE chain_id = "
            ));
            qb.push_bind(chain).push(" AND seq > ").push_bind(after_seq);
            qb.push(" ORDER BY seq LIMIT ").push_bind(limit);
            qb.build_query_as().fetch_all(pool).await.map_err(read_failed)?
        });
        rows.into_iter()
            .map(|row| {
                let stored = row.raw.into_stored()?;
                Ok(ShippedRecord {
                    id: stored.id,
                    chain_id: row.chain_id,
                    seq: row.seq,
                    hash: to_hex(&row.hash),
                    record: stored.record,
                })
            })
            .collect()
    }

    /// The last seq of `chain` (0 when it has no records).
    async fn chain_last_seq(&self, chain: &str) -> Result<i64, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT MAX(seq) FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain);
            let max: Option<i64> = qb.build_query_scalar().fetch_one(pool).await.map_err(read_failed)?;
            Ok(max.unwrap_or(0))
        })
    }

    /// How many records of `chain` follow `seq`, and the time of the first of them.
    async fn ship_lag(&self, chain: &str, seq: i64) -> Result<(u64, Option<i64>), Error> {
        let last = self.chain_last_seq(chain).await?;
        if last <= seq {
            return Ok((0, None));
        }
        let first: Option<i64> = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT time_ms FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain).push(" AND seq > ").push_bind(seq);
            qb.push(" ORDER BY seq LIMIT 1");
            qb.build_query_scalar().fetch_optional(pool).await.map_err(read_failed)?
        });
        Ok((u64::try_from(last - seq).unwrap_or_default(), first))
    }

    /// Every sink's cursor in every chain, by sink then chain.
    pub async fn ship_cursors(&self) -> Result<Vec<ShipCursor>, Error> {
        const SQL: &str = "SELECT sink, chain_id, seq, holder, lease_until_ms, updated_ms \
             FROM audit_ship_cursors ORDER BY sink, chain_id";
        let rows = on_pool!(self.pool, pool => {
            sqlx::query(SQL).fetch_all(pool).await.map_err(read_failed)?
                .into_iter()
                .map(|r| -> Result<ShipCursor, sqlx::Error> {
                    Ok(ShipCursor {
                        sink: r.try_get(0)?,
                        chain_id: r.try_get(1)?,
                        seq: r.try_get(2)?,
                        holder: r.try_get(3)?,
                        lease_until_ms: r.try_get(4)?,
                        updated_ms: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_failed)?
        });
        Ok(rows)
    }
}
