//! The group-commit writer: per gateway replica one task per lane (see [`WriterConfig::lanes`]),
//! each owning a hash chain, draining a bounded queue of records and committing them in
//! batches, one atomic write per batch (a transaction; on Postgres a single statement unless a
//! checkpoint goes with it).
//!
//! # Modes
//!
//! - [`AuditWriter::append_durable`] resolves once the record is committed (`Ok(id)`), or with
//!   an `Err` when the batch failed, the commit timed out or no answer came within
//!   `durable_timeout_ms`. The caller fails closed. An `Err` means "not confirmed": after a
//!   commit timeout the record may still have been committed.
//! - [`AuditWriter::append_buffered`] resolves once the record is queued. When the queue stays
//!   full for `enqueue_timeout_ms` it returns [`Error::QueueFull`] (the gateway answers 503);
//!   it never drops a record silently.
//!
//! # Failure policy
//!
//! When a batch fails (store down, commit timeout, constraint violation), durable callers in it
//! get `Err` at once. Its buffered records are kept in the writer and retried, together with new
//! records, after a backoff of `retry_backoff_ms` doubling per failed attempt up to
//! `max_retry_backoff_ms`. A buffered record that has failed `retry_attempts` attempts is given
//! up: it is counted in [`WriterStats::buffered_records_lost_on_error`] and logged at `error`
//! level with the request id. While records wait for a retry the writer takes at most
//! `max_batch` new records per attempt, so a long outage fills the queue and pushes back on
//! callers ([`Error::QueueFull`]) instead of growing memory.
//!
//! After any failed attempt, the writer reads its chain's head again before writing: a commit
//! that timed out may have succeeded, and then its records are counted as committed and not
//! written twice. (A buffered record given up while that was unknown is counted as lost even if
//! it turns out to be stored; the count errs on the side of loss.) The chain stays gap-free:
//! `seq` and hashes are assigned per attempt from the last committed head.
//!
//! # Checkpoints
//!
//! A checkpoint (chain, seq, hash, time, Ed25519 signature when a key is given) is written in
//! the same transaction as a batch once `checkpoint_every` records or `checkpoint_interval_ms`
//! have passed since the last one, on its own when the writer is idle and records are not yet
//! covered, and at shutdown.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_types::AuditRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batch::EncodedRows;
use crate::chained::{
    ChainHead, NewCheckpoint, SERVER_TIMEOUT_GRACE, WriterConn, is_query_canceled,
};
use crate::hash::{CheckpointKind, record_hash};
use crate::keys::SigningKey;
use crate::row::{ChainedRow, Columns};
use crate::{AuditStore, Backend, Error};

mod task;

use task::{Task, wal_checkpointer};

/// Settings of an [`AuditWriter`]. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// Records the queue holds before callers wait. Default 10,000.
    pub queue_capacity: usize,
    /// Most records per transaction. Default 1000.
    pub max_batch: usize,
    /// After the first buffered record of a batch arrives, how long to wait for more before
    /// committing, in milliseconds (0: commit whatever is queued at once). A batch with a
    /// durable record, whose caller waits, is committed at once; records arriving during a
    /// commit form the next batch. Default 2.
    pub flush_interval_ms: u64,
    /// How long a full queue may block a caller before [`Error::QueueFull`], in milliseconds.
    /// Default 100.
    pub enqueue_timeout_ms: u64,
    /// The longest [`AuditWriter::append_durable`] waits, queueing included, in milliseconds.
    /// Default 5000.
    pub durable_timeout_ms: u64,
    /// The longest one batch's transaction may take before it counts as failed, in
    /// milliseconds. Default 2000.
    pub commit_timeout_ms: u64,
    /// Failed attempts after which a buffered record is given up. Default 10.
    pub retry_attempts: u32,
    /// Backoff before the first retry, in milliseconds; doubles per failed attempt. Default 100.
    pub retry_backoff_ms: u64,
    /// Longest backoff between retries, in milliseconds. Default 2000.
    pub max_retry_backoff_ms: u64,
    /// A checkpoint after this many records. Default 10,000.
    pub checkpoint_every: u64,
    /// A checkpoint after this long, in milliseconds, if records were written. Default 60,000.
    pub checkpoint_interval_ms: u64,
    /// This writer's chain. Give each gateway replica a stable one (e.g. its host name) so a
    /// restart resumes its chain; default: a new random chain per start.
    pub chain_id: Option<String>,
    /// Independent lanes, each its own task, connection and hash chain, that commit batches at
    /// the same time; records are spread over them by request id, so a request's decision and
    /// outcome share a lane. Lane 0's chain is `chain_id`, lane `i`'s is `chain_id` + `~i`.
    /// 1 to 8; more than 1 needs Postgres (SQLite takes one writer at a time). Default: 2 on
    /// Postgres (measured here: about 10-15% more durable records/s than one, the server
    /// inserting two batches at once), 1 on SQLite.
    pub lanes: Option<usize>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            max_batch: 1000,
            flush_interval_ms: 2,
            enqueue_timeout_ms: 100,
            durable_timeout_ms: 5_000,
            commit_timeout_ms: 2_000,
            retry_attempts: 10,
            retry_backoff_ms: 100,
            max_retry_backoff_ms: 2_000,
            checkpoint_every: 10_000,
            checkpoint_interval_ms: 60_000,
            chain_id: None,
            lanes: None,
        }
    }
}

/// Counters of an [`AuditWriter`], since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records accepted into the queue.
    pub queued: u64,
    /// Records committed.
    pub committed: u64,
    /// Transactions committed (`committed / batches` is the mean batch size).
    pub batches: u64,
    /// Batches (transactions) that failed.
    pub failed_batches: u64,
    /// Durable appends answered with an error (failed batch or timeout).
    pub durable_failures: u64,
    /// Appends refused because the queue stayed full ([`Error::QueueFull`]).
    pub queue_full_rejections: u64,
    /// Buffered records given up after `retry_attempts` failed attempts.
    pub buffered_records_lost_on_error: u64,
    /// Buffered records currently waiting for a retry.
    pub pending_retry: u64,
    /// Messages waiting in the lanes' queues now (records not yet taken into a batch).
    pub queue_depth: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// The seq of the chain's last committed record (0 for an empty chain); with several lanes,
    /// the sum over their chains.
    pub last_seq: i64,
}

/// What [`AuditWriter::try_append_buffered`] did with a record.
#[derive(Debug)]
pub enum TryAppend {
    /// In the queue.
    Queued,
    /// The queue is full: the record, handed back.
    Full(Box<AuditRecord>),
    /// It can never be queued here: why, and the record.
    Refused(Error, Box<AuditRecord>),
}

type Ack = oneshot::Sender<Result<i64, Error>>;

/// A kept connection idle for longer than this is pinged before the next batch.
const CONN_IDLE_CHECK: Duration = Duration::from_secs(10);

// Almost every message is an `Append`, so boxing the record to shrink the rare `Shutdown`
// would only add an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Command {
    Append {
        record: AuditRecord,
        ack: Option<Ack>,
    },
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    committed: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
    durable_failures: AtomicU64,
    queue_full_rejections: AtomicU64,
    lost: AtomicU64,
    pending_retry: AtomicU64,
    checkpoints: AtomicU64,
    last_seq: AtomicI64,
}

fn bump(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

#[derive(Debug)]
struct Shared {
    counters: Counters,
    accepting: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
    chain_id: String,
    backend: Backend,
    enqueue_timeout: Duration,
    durable_timeout: Duration,
}

/// A handle to the group-commit writer. Cheap to clone; its tasks end after
/// [`AuditWriter::shutdown`] or when every handle is dropped (after committing what is queued).
#[derive(Debug, Clone)]
pub struct AuditWriter {
    lanes: Arc<[Lane]>,
}

/// One lane: a writer task with its queue and chain.
#[derive(Debug)]
struct Lane {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl AuditWriter {
    /// Resumes (or starts) the configured chain and spawns the writer task on the current tokio
    /// runtime. `key` signs checkpoints; without one they are written unsigned.
    ///
    /// The task keeps one connection of the store's pool for its batches (size the pool with
    /// that in mind). Run one writer per chain id: a second writer on the same chain is
    /// detected (its batch fails on the unique `(chain_id, seq)` index, it logs an error and
    /// continues from the stored head), but the two then take turns extending one chain.
    pub async fn spawn(
        store: AuditStore,
        config: WriterConfig,
        key: Option<SigningKey>,
    ) -> Result<Self, Error> {
        validate(&config)?;
        let lanes = config.lanes.unwrap_or(match store.backend() {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        });
        if lanes > 1 && store.backend() == Backend::Sqlite {
            return Err(Error::Config {
                reason: "lanes > 1 needs Postgres: SQLite takes one writer at a time",
            });
        }
        let base = config
            .chain_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let key = key.map(Arc::new);
        let mut spawned = Vec::with_capacity(lanes);
        // Counts failed batches across lanes: after one lane lost its connection, the others
        // check theirs before the next batch instead of failing a caller on a connection the
        // same outage closed (see `Task::connection`).
        let broken_connections = Arc::new(AtomicU64::new(0));
        for i in 0..lanes {
            let chain_id = if i == 0 {
                base.clone()
            } else {
                format!("{base}~{i}")
            };
            validate_chain_id(&chain_id)?;
            spawned.push(
                Lane::spawn(
                    store.clone(),
                    config.clone(),
                    key.clone(),
                    chain_id,
                    Arc::clone(&broken_connections),
                )
                .await?,
            );
        }
        Ok(Self {
            lanes: spawned.into(),
        })
    }

    /// The chain of the first lane (the configured `chain_id`).
    pub fn chain_id(&self) -> &str {
        &self.lanes[0].shared.chain_id
    }

    /// The chains of every lane, lane 0 first.
    pub fn chain_ids(&self) -> Vec<&str> {
        self.lanes
            .iter()
            .map(|l| l.shared.chain_id.as_str())
            .collect()
    }

    /// The lane of a request: FNV-1a over its id, so a request's records share one chain.
    fn lane(&self, request_id: &str) -> &Lane {
        let hash = request_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let n = self.lanes.len() as u64;
        &self.lanes[usize::try_from(hash % n).unwrap_or(0)]
    }

    /// Queues `record` and resolves once it is committed, with its id; `Err` when it could not
    /// be confirmed (see the module documentation) — the caller fails closed.
    pub async fn append_durable(&self, record: AuditRecord) -> Result<i64, Error> {
        self.lane(&record.request_id).append_durable(record).await
    }

    /// Queues `record` and resolves once it is in the queue. [`Error::QueueFull`] when the queue
    /// stayed full for `enqueue_timeout_ms`; [`Error::WriterClosed`] after shutdown.
    pub async fn append_buffered(&self, record: AuditRecord) -> Result<(), Error> {
        self.lane(&record.request_id).enqueue(record, None).await
    }

    /// Queues `record` if its lane's queue has room now, without waiting, for callers that
    /// cannot await (a `Drop`). A record not queued is handed back: for
    /// [`Self::append_buffered`] when the queue is full, or with the error that refuses it
    /// ([`Error::WriterClosed`] after shutdown, [`Error::Unstorable`] as for the others).
    pub fn try_append_buffered(&self, record: AuditRecord) -> TryAppend {
        self.lane(&record.request_id).try_enqueue(record)
    }

    /// The counters so far, summed over the lanes.
    pub fn stats(&self) -> WriterStats {
        let mut total = WriterStats::default();
        for lane in self.lanes.iter() {
            let s = lane.stats();
            total.queued += s.queued;
            total.committed += s.committed;
            total.batches += s.batches;
            total.failed_batches += s.failed_batches;
            total.durable_failures += s.durable_failures;
            total.queue_full_rejections += s.queue_full_rejections;
            total.buffered_records_lost_on_error += s.buffered_records_lost_on_error;
            total.pending_retry += s.pending_retry;
            total.queue_depth += s.queue_depth;
            total.checkpoints += s.checkpoints;
            total.last_seq += s.last_seq;
        }
        total
    }

    /// Stops accepting records (on every clone), commits everything queued (buffered records
    /// waiting for a retry keep their retry policy, so this can take as long as that), writes a
    /// final checkpoint per chain and returns the final counters.
    pub async fn shutdown(self) -> Result<WriterStats, Error> {
        for lane in self.lanes.iter() {
            lane.shared.accepting.store(false, Ordering::Release);
        }
        // Every lane drains even if one of them failed; the first failure is reported.
        let mut failed = None;
        for lane in self.lanes.iter() {
            if let Err(error) = lane.shutdown().await {
                failed.get_or_insert(error);
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(self.stats()),
        }
    }
}

impl Lane {
    async fn spawn(
        store: AuditStore,
        config: WriterConfig,
        key: Option<Arc<SigningKey>>,
        chain_id: String,
        broken_connections: Arc<AtomicU64>,
    ) -> Result<Self, Error> {
        let head = store.chain_head(&chain_id).await?;
        let last_cp_seq = store
            .last_checkpoint(&chain_id)
            .await?
            .map_or(0, |(seq, _)| seq);
        tracing::info!(chain_id = %chain_id, seq = head.seq, "audit writer resumes its chain");
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            accepting: AtomicBool::new(true),
            task: Mutex::new(None),
            chain_id: chain_id.clone(),
            backend: store.backend(),
            enqueue_timeout: Duration::from_millis(config.enqueue_timeout_ms),
            durable_timeout: Duration::from_millis(config.durable_timeout_ms),
        });
        shared.counters.last_seq.store(head.seq, Ordering::Relaxed);
        let mut task = Task {
            store,
            key,
            chain_id,
            head,
            last_cp_seq,
            last_cp_at: Instant::now(),
            unsure: None,
            ahead: None,
            pending: Vec::new(),
            retry_at: None,
            failures_in_a_row: 0,
            conn: None,
            conn_used: Instant::now(),
            conn_alarms_seen: broken_connections.load(Ordering::Relaxed),
            broken_connections,
            rx,
            closing: false,
            shutdown_replies: Vec::new(),
            shared: Arc::clone(&shared),
            config,
            checkpointer: None,
        };
        if task.store.backend() == Backend::Sqlite {
            let (wake, rx) = mpsc::channel(1);
            tokio::spawn(wal_checkpointer(task.store.clone(), rx));
            task.checkpointer = Some(wake);
        }
        let handle = tokio::spawn(task.run());
        if let Ok(mut slot) = shared.task.lock() {
            *slot = Some(handle);
        }
        Ok(Self { tx, shared })
    }

    async fn append_durable(&self, record: AuditRecord) -> Result<i64, Error> {
        let deadline = Instant::now() + self.shared.durable_timeout;
        let (ack, answer) = oneshot::channel();
        let queued = tokio::time::timeout_at(deadline, self.enqueue(record, Some(ack))).await;
        let outcome = match queued {
            Ok(Ok(())) => match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(result)) => return result,
                // The task ended without answering: it panicked or was aborted.
                Ok(Err(_)) => Err(Error::WriterClosed),
                Err(_) => Err(Error::DurableTimeout {
                    timeout_ms: self.shared.durable_timeout.as_millis(),
                }),
            },
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::DurableTimeout {
                timeout_ms: self.shared.durable_timeout.as_millis(),
            }),
        };
        bump(&self.shared.counters.durable_failures, 1);
        outcome
    }

    /// Why this lane cannot take `record` at all, before any queueing.
    fn refusal(&self, record: &AuditRecord) -> Option<Error> {
        if !self.shared.accepting.load(Ordering::Acquire) {
            return Some(Error::WriterClosed);
        }
        // Postgres text cannot hold NUL. Refusing here keeps one such record from failing a
        // whole batch of other callers' records.
        if self.shared.backend == Backend::Postgres
            && let Some(field) = nul_field(record)
        {
            return Some(Error::Unstorable { field });
        }
        None
    }

    fn try_enqueue(&self, record: AuditRecord) -> TryAppend {
        if let Some(error) = self.refusal(&record) {
            return TryAppend::Refused(error, Box::new(record));
        }
        match self.tx.try_send(Command::Append { record, ack: None }) {
            Ok(()) => {
                bump(&self.shared.counters.queued, 1);
                TryAppend::Queued
            }
            Err(mpsc::error::TrySendError::Full(Command::Append { record, .. })) => {
                TryAppend::Full(Box::new(record))
            }
            Err(mpsc::error::TrySendError::Closed(Command::Append { record, .. })) => {
                TryAppend::Refused(Error::WriterClosed, Box::new(record))
            }
            // Only an `Append` was sent.
            Err(_) => unreachable!("try_send hands back the command it was given"),
        }
    }

    async fn enqueue(&self, record: AuditRecord, ack: Option<Ack>) -> Result<(), Error> {
        if let Some(error) = self.refusal(&record) {
            return Err(error);
        }
        let command = Command::Append { record, ack };
        let sent = match self.tx.try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::WriterClosed),
            Err(mpsc::error::TrySendError::Full(command)) => {
                match self
                    .tx
                    .send_timeout(command, self.shared.enqueue_timeout)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Error::WriterClosed),
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        bump(&self.shared.counters.queue_full_rejections, 1);
                        tracing::warn!(
                            chain_id = %self.shared.chain_id,
                            "audit queue full; record refused"
                        );
                        Err(Error::QueueFull)
                    }
                }
            }
        };
        if sent.is_ok() {
            bump(&self.shared.counters.queued, 1);
        }
        sent
    }

    fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            queued: get(&c.queued),
            committed: get(&c.committed),
            batches: get(&c.batches),
            failed_batches: get(&c.failed_batches),
            durable_failures: get(&c.durable_failures),
            queue_full_rejections: get(&c.queue_full_rejections),
            buffered_records_lost_on_error: get(&c.lost),
            pending_retry: get(&c.pending_retry),
            checkpoints: get(&c.checkpoints),
            last_seq: c.last_seq.load(Ordering::Relaxed),
            queue_depth: u64::try_from(self.tx.max_capacity() - self.tx.capacity())
                .unwrap_or(u64::MAX),
        }
    }

    /// Commits what is queued, writes a final checkpoint and waits for the task to end (the
    /// caller has stopped the lane accepting records).
    async fn shutdown(&self) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Command::Shutdown(reply)).await.is_ok() {
            // An error only means the task is gone already; the join below reports why.
            let _ = done.await;
        }
        let handle = self
            .shared
            .task
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            handle
                .await
                .map_err(|source| Error::WriterFailed { source })?;
        }
        Ok(())
    }
}

fn validate(config: &WriterConfig) -> Result<(), Error> {
    let bad = |reason: &'static str| Err(Error::Config { reason });
    if config.queue_capacity == 0 {
        return bad("queue_capacity must be at least 1");
    }
    if config.max_batch == 0 {
        return bad("max_batch must be at least 1");
    }
    if config.checkpoint_every == 0 {
        return bad("checkpoint_every must be at least 1");
    }
    if config.lanes.is_some_and(|n| !(1..=8).contains(&n)) {
        return bad("lanes must be 1 to 8");
    }
    if let Some(chain_id) = &config.chain_id {
        validate_chain_id(chain_id)?;
    }
    Ok(())
}

fn validate_chain_id(chain_id: &str) -> Result<(), Error> {
    if chain_id.is_empty() || chain_id.len() > 200 || chain_id.contains('\0') {
        return Err(Error::Config {
            reason: "chain_id must be 1 to 200 bytes without NUL (lane suffixes included)",
        });
    }
    Ok(())
}

/// The first text field of `r` that contains a NUL character.
fn nul_field(r: &AuditRecord) -> Option<&'static str> {
    let has = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(has);
    let list = |l: &[String]| l.iter().any(|s| has(s));
    [
        ("request_id", has(&r.request_id)),
        ("trace_id", opt(&r.trace_id)),
        ("session_id", opt(&r.session_id)),
        ("tenant", opt(&r.tenant)),
        ("subject", opt(&r.subject)),
        ("issuer", opt(&r.issuer)),
        ("client_id", opt(&r.client_id)),
        ("actors", list(&r.actors)),
        ("token_id", opt(&r.token_id)),
        ("scopes", list(&r.scopes)),
        ("roles", list(&r.roles)),
        ("upstream", has(&r.upstream)),
        ("method", has(&r.method)),
        ("target", opt(&r.target)),
        ("matched_rule", opt(&r.matched_rule)),
        ("outcome", opt(&r.outcome)),
        ("args_digest", opt(&r.args_digest)),
        ("arguments", opt(&r.arguments)),
        ("shown", list(&r.shown)),
        ("client_addr", opt(&r.client_addr)),
        ("first_round_request_id", opt(&r.first_round_request_id)),
        ("shadow", opt(&r.shadow)),
    ]
    .into_iter()
    .find_map(|(field, bad)| bad.then_some(field))
}
