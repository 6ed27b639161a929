//! The task behind one writer lane: it drains the lane's queue, hashes and encodes the next
//! records while a batch commits, writes each batch with its checkpoint, retries buffered
//! records after a failure and reads the chain head again when a commit's fate is unknown (the
//! policy is described in the parent module).

use super::*;

/// A record in the writer, with whoever waits for it.
pub(super) struct Entry {
    record: AuditRecord,
    ack: Option<Ack>,
    /// Failed attempts so far (buffered records only; durable ones are answered at once).
    attempts: u32,
}

/// What a successful write returns: the ids, the new head and the seq of a checkpoint written
/// with the batch.
type Written = (Vec<i64>, ChainHead, Option<i64>);

/// The `Append` records at the front of the run loop's inbox, in order, hashed and chained
/// from `base` and encoded as rows: made while the batch before them committed, on the guess
/// that it succeeds.
pub(super) struct Ahead {
    base: ChainHead,
    hashes: Vec<[u8; 32]>,
    /// The rows of the first `hashes.len()` records; `None` if one could not be encoded (the
    /// batch then encodes them again and fails on it).
    rows: Option<EncodedRows>,
}

/// A batch ready to be written: its rows (chained from `base` up to `head`), its checkpoint,
/// and the connection to write it on.
struct Prepared {
    base: ChainHead,
    rows: EncodedRows,
    head: ChainHead,
    checkpoint: Option<NewCheckpoint>,
    conn: WriterConn,
}

/// Appends the row of `record` (at `seq`, after `prev_hash`) to `rows`.
fn encode_row(
    rows: &mut EncodedRows,
    record: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: [u8; 32],
    hash: [u8; 32],
) -> Result<(), Error> {
    rows.push(&ChainedRow {
        columns: Columns::new(record)?,
        chain_id,
        seq,
        prev_hash,
        hash,
    })
}

/// How often, at most, the SQLite WAL is checkpointed in the background while records are
/// committed.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Copies the SQLite WAL back into the database file on a connection of its own, after commits
/// and at most every [`WAL_CHECKPOINT_EVERY`], until the writer task ends (it drops the sender).
///
/// Left to SQLite's automatic checkpoint, that copy (and an fsync of the database file) runs
/// inside whichever commit pushes the WAL past 1000 pages: every few batches one commit took
/// several times as long, with the writer waiting. A passive checkpoint here runs on another
/// connection's thread while the writer goes on appending to the WAL; the writer's connection
/// keeps an automatic checkpoint at a much larger size as a safety net (see
/// `AuditStore::writer_conn`). A failed checkpoint is logged and tried again after the next
/// commit.
pub(super) async fn wal_checkpointer(store: AuditStore, mut wake: mpsc::Receiver<()>) {
    while wake.recv().await.is_some() {
        if let Err(error) = store.checkpoint_wal().await {
            tracing::warn!(%error, "background WAL checkpoint of the audit store failed");
        }
        tokio::time::sleep(WAL_CHECKPOINT_EVERY).await;
    }
}

/// Whether someone waits on one of `commands`: a durable append's caller, or a shutdown.
fn someone_waits(commands: &[Command]) -> bool {
    commands.iter().any(|c| {
        matches!(
            c,
            Command::Append { ack: Some(_), .. } | Command::Shutdown(_)
        )
    })
}

/// The writer task's state.
pub(super) struct Task {
    /// SQLite: wakes the WAL checkpointer after a commit (see [`wal_checkpointer`]).
    pub(super) checkpointer: Option<mpsc::Sender<()>>,
    pub(super) store: AuditStore,
    pub(super) config: WriterConfig,
    pub(super) key: Option<Arc<SigningKey>>,
    pub(super) chain_id: String,
    /// The last committed record of the chain.
    pub(super) head: ChainHead,
    pub(super) last_cp_seq: i64,
    pub(super) last_cp_at: Instant,
    /// After a failed attempt: the head it would have produced, in case it committed anyway.
    pub(super) unsure: Option<ChainHead>,
    /// Records taken off the queue while the last batch committed, hashed ahead.
    pub(super) ahead: Option<Ahead>,
    /// Buffered records waiting for a retry, oldest first.
    pub(super) pending: Vec<Entry>,
    pub(super) retry_at: Option<Instant>,
    pub(super) failures_in_a_row: u32,
    /// The connection batches are written on, kept between batches; dropped after a failure.
    pub(super) conn: Option<WriterConn>,
    /// When `conn` was last used.
    pub(super) conn_used: Instant,
    /// Failed batches of every lane of this writer, counted; see [`Task::connection`].
    pub(super) broken_connections: Arc<AtomicU64>,
    /// `broken_connections` when `conn` was last known good.
    pub(super) conn_alarms_seen: u64,
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) closing: bool,
    pub(super) shutdown_replies: Vec<oneshot::Sender<()>>,
    pub(super) shared: Arc<Shared>,
}

impl Task {
    pub(super) async fn run(mut self) {
        let max_batch = self.config.max_batch;
        let mut inbox: Vec<Command> = Vec::with_capacity(max_batch);
        loop {
            if self.closing {
                if let Some(at) = self.retry_at {
                    tokio::time::sleep_until(at).await;
                }
                while inbox.len() < max_batch {
                    match self.rx.try_recv() {
                        Ok(command) => inbox.push(command),
                        Err(_) => break,
                    }
                }
            } else if self.pending.is_empty() {
                if !self.wait_for_work(&mut inbox).await {
                    continue;
                }
            } else {
                // Records wait for a retry: take new ones until the retry is due, but no more
                // than one batch, so a long outage backs up into the queue.
                let until = self.retry_at.unwrap_or_else(Instant::now);
                while inbox.len() < max_batch {
                    let room = max_batch - inbox.len();
                    match tokio::time::timeout_at(until, self.rx.recv_many(&mut inbox, room)).await
                    {
                        Ok(0) => {
                            self.closing = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                tokio::time::sleep_until(until).await;
            }

            let mut entries = std::mem::take(&mut self.pending);
            for command in inbox.drain(..) {
                match command {
                    Command::Append { record, ack } => entries.push(Entry {
                        record,
                        ack,
                        attempts: 0,
                    }),
                    Command::Shutdown(reply) => {
                        self.closing = true;
                        self.rx.close();
                        self.shutdown_replies.push(reply);
                    }
                }
            }
            if entries.is_empty() {
                if self.closing && self.rx.is_empty() {
                    break;
                }
                continue;
            }
            self.commit(entries, &mut inbox).await;
            self.shared
                .counters
                .pending_retry
                .store(self.pending.len() as u64, Ordering::Relaxed);
        }
        if self.head.seq > self.last_cp_seq {
            self.standalone_checkpoint().await;
        }
        tracing::info!(chain_id = %self.chain_id, seq = self.head.seq, "audit writer stopped");
        for reply in self.shutdown_replies.drain(..) {
            let _ = reply.send(());
        }
    }

    /// Waits for the first records of a batch (then lingers up to `flush_interval_ms` for
    /// more), or for a time-based checkpoint. Returns false when there is nothing to commit.
    async fn wait_for_work(&mut self, inbox: &mut Vec<Command>) -> bool {
        let max_batch = self.config.max_batch;
        if !inbox.is_empty() {
            // Records came in while the last batch committed: that wait stands in for the
            // flush interval.
            while inbox.len() < max_batch {
                match self.rx.try_recv() {
                    Ok(command) => inbox.push(command),
                    Err(_) => break,
                }
            }
            return true;
        }
        let checkpoint_at = (self.head.seq > self.last_cp_seq)
            .then(|| self.last_cp_at + Duration::from_millis(self.config.checkpoint_interval_ms));
        let received = match checkpoint_at {
            Some(at) => tokio::time::timeout_at(at, self.rx.recv_many(inbox, max_batch))
                .await
                .ok(),
            None => Some(self.rx.recv_many(inbox, max_batch).await),
        };
        match received {
            None => {
                self.standalone_checkpoint().await;
                return false;
            }
            Some(0) => {
                self.closing = true;
                return true;
            }
            Some(_) => {}
        }
        // Linger for more records only while nobody waits: a durable caller's record (or a
        // shutdown) is committed at once, and whatever arrives while that commit runs forms
        // the next batch (group commit). Buffered records, which nobody waits for, wait up to
        // the flush interval to share a transaction.
        if self.config.flush_interval_ms > 0 && !someone_waits(inbox) {
            let until = Instant::now() + Duration::from_millis(self.config.flush_interval_ms);
            while inbox.len() < max_batch {
                let room = max_batch - inbox.len();
                let before = inbox.len();
                match tokio::time::timeout_at(until, self.rx.recv_many(inbox, room)).await {
                    Ok(0) => {
                        self.closing = true;
                        break;
                    }
                    Ok(_) if someone_waits(&inbox[before..]) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        true
    }

    /// Writes `entries` as one transaction and answers their callers. The transaction runs on
    /// a task of its own; meanwhile the next records are taken off the queue into `inbox` and
    /// hashed ahead (see [`Ahead`]), so that work overlaps the commit.
    async fn commit(&mut self, entries: Vec<Entry>, inbox: &mut Vec<Command>) {
        let deadline = Instant::now() + Duration::from_millis(self.config.commit_timeout_ms);
        let (entries, result) = self.attempt(entries, inbox, deadline).await;
        match result {
            Ok(Some((ids, head, checkpoint))) => {
                let n = entries.len();
                self.head = head;
                if let Some(cp) = checkpoint {
                    self.last_cp_seq = cp;
                    self.last_cp_at = Instant::now();
                    bump(&self.shared.counters.checkpoints, 1);
                }
                self.failures_in_a_row = 0;
                self.retry_at = None;
                bump(&self.shared.counters.committed, n);
                bump(&self.shared.counters.batches, 1);
                if let Some(wake) = &self.checkpointer {
                    // Full means a wake-up is pending already.
                    let _ = wake.try_send(());
                }
                self.shared
                    .counters
                    .last_seq
                    .store(head.seq, Ordering::Relaxed);
                // Answering up to a batch of callers (each wakes a task) and dropping their
                // records is left to a task of its own, so the writer goes on with the next
                // batch at once.
                tokio::spawn(async move {
                    for (entry, id) in entries.into_iter().zip(ids) {
                        if let Some(ack) = entry.ack {
                            let _ = ack.send(Ok(id));
                        }
                    }
                });
            }
            // Everything left was confirmed committed by an earlier attempt.
            Ok(None) => {}
            Err(error) => {
                if let Some(conn) = self.conn.take() {
                    conn.discard();
                }
                self.broken_connections.fetch_add(1, Ordering::Relaxed);
                self.fail(entries, error)
            }
        }
    }

    fn commit_timeout(&self) -> Error {
        Error::CommitTimeout {
            timeout_ms: u128::from(self.config.commit_timeout_ms),
        }
    }

    /// One attempt: settle an earlier unsure attempt, assign seqs and hashes, write (by
    /// `deadline`). Returns the entries with the ids, the new head and the seq of a checkpoint
    /// written with the batch; `None` when the resync found every entry already committed.
    async fn attempt(
        &mut self,
        mut entries: Vec<Entry>,
        inbox: &mut Vec<Command>,
        deadline: Instant,
    ) -> (Vec<Entry>, Result<Option<Written>, Error>) {
        let prepared = match tokio::time::timeout_at(deadline, self.prepare(&mut entries)).await {
            Ok(Ok(Some(prepared))) => prepared,
            Ok(Ok(None)) => return (entries, Ok(None)),
            Ok(Err(error)) => return (entries, Err(error)),
            Err(_) => return (entries, Err(self.commit_timeout())),
        };
        let Prepared {
            base,
            rows,
            head,
            checkpoint,
            mut conn,
        } = prepared;
        // Set before writing: if the write fails or times out, the outcome is unknown and the
        // next attempt must look first.
        self.unsure = Some(head);
        // Counted now: if the write task panics, its records go with it and must not vanish
        // silently (durable callers see their answer channel close and fail closed).
        let buffered_in_batch = entries.iter().filter(|e| e.ack.is_none()).count();
        // Ids are only returned for durable callers (on Postgres, `RETURNING` costs per row).
        let want_ids = buffered_in_batch < entries.len();
        // On Postgres the server enforces the commit timeout; waiting a little longer lets its
        // answer arrive first (see `AuditStore::writer_conn`).
        let write_deadline = match self.shared.backend {
            Backend::Postgres => deadline + SERVER_TIMEOUT_GRACE,
            Backend::Sqlite => deadline,
        };
        let mut write = tokio::spawn(async move {
            let written = tokio::time::timeout_at(
                write_deadline,
                AuditStore::write_chained(
                    &mut conn,
                    rows,
                    base.seq + 1,
                    want_ids,
                    checkpoint.as_ref(),
                ),
            )
            .await;
            (conn, entries, written, checkpoint.map(|c| c.seq))
        });

        // While the batch commits, take the next records off the queue and hash them as if
        // it succeeds. `inbox` is empty here: the run loop drained it into this batch.
        let max_batch = self.config.max_batch;
        let mut ahead = Ahead {
            base: head,
            hashes: Vec::new(),
            rows: Some(EncodedRows::new(self.shared.backend)),
        };
        let mut prev = head.hash;
        let mut seq = head.seq;
        let mut hashed = 0;
        let mut open = !self.closing;
        let joined = loop {
            let room = max_batch.saturating_sub(inbox.len());
            tokio::select! {
                biased;
                joined = &mut write => break joined,
                n = self.rx.recv_many(inbox, room), if open && room > 0 => {
                    if n == 0 {
                        // Every handle is gone; the run loop notices on its next receive.
                        open = false;
                    }
                    for command in &inbox[hashed..] {
                        if let Command::Append { record, .. } = command {
                            seq += 1;
                            let hash = record_hash(record, &self.chain_id, seq, &prev);
                            if let Some(rows) = &mut ahead.rows
                                && encode_row(rows, record, &self.chain_id, seq, prev, hash)
                                    .is_err()
                            {
                                ahead.rows = None;
                            }
                            prev = hash;
                            ahead.hashes.push(hash);
                        }
                    }
                    hashed = inbox.len();
                }
            }
        };
        let (conn, entries, written, checkpoint) = match joined {
            Ok(parts) => parts,
            Err(source) => {
                // The write task panicked: its records and connection are gone with it.
                bump(&self.shared.counters.lost, buffered_in_batch);
                tracing::error!(
                    chain_id = %self.chain_id,
                    lost = buffered_in_batch,
                    "audit write task panicked; its buffered records are lost"
                );
                return (Vec::new(), Err(Error::WriterFailed { source }));
            }
        };
        match written {
            Ok(Ok(ids)) => {
                self.conn = Some(conn);
                self.conn_used = Instant::now();
                self.unsure = None;
                self.ahead = Some(ahead);
                (entries, Ok(Some((ids, head, checkpoint))))
            }
            Ok(Err(error)) => {
                conn.discard();
                if is_query_canceled(&error) {
                    // Postgres enforcing the commit timeout (see `AuditStore::writer_conn`).
                    (entries, Err(self.commit_timeout()))
                } else {
                    (entries, Err(error))
                }
            }
            Err(_) => {
                conn.discard();
                (entries, Err(self.commit_timeout()))
            }
        }
    }

    /// Settles an earlier unsure attempt, assigns seqs and hashes (reusing those hashed ahead
    /// when they still apply), decides on a checkpoint and gets the connection. `None` when the
    /// resync found every entry already committed.
    async fn prepare(&mut self, entries: &mut Vec<Entry>) -> Result<Option<Prepared>, Error> {
        // Hashes made ahead hold only if they were chained from the current head and the
        // entries are exactly the records they were made for: no retried records in front
        // (those only exist after a failure, which also drops `ahead`).
        let ahead = self.ahead.take().filter(|a| {
            a.base == self.head
                && a.hashes.len() <= entries.len()
                && entries.iter().all(|e| e.attempts == 0)
        });
        if let Some(expected) = self.unsure {
            let stored = self.store.chain_head(&self.chain_id).await?;
            self.unsure = None;
            if stored == expected {
                // The failed attempt committed after all; the records still pending were part
                // of it, so they are stored. (Durable callers of it were already told Err.)
                let done = entries.iter().take_while(|e| e.attempts > 0).count();
                tracing::warn!(
                    chain_id = %self.chain_id,
                    seq = stored.seq,
                    records = done,
                    "an audit batch reported as failed was committed after all"
                );
                bump(&self.shared.counters.committed, done);
                entries.drain(..done);
                self.head = stored;
                self.shared
                    .counters
                    .last_seq
                    .store(stored.seq, Ordering::Relaxed);
                if let Some((seq, _)) = self.store.last_checkpoint(&self.chain_id).await? {
                    self.last_cp_seq = seq;
                }
            } else if stored != self.head {
                tracing::error!(
                    chain_id = %self.chain_id,
                    expected_seq = self.head.seq,
                    stored_seq = stored.seq,
                    "the audit chain was extended by someone else (two writers with one chain id?); continuing from the stored head"
                );
                self.head = stored;
            }
            if entries.is_empty() {
                return Ok(None);
            }
        }

        // Records hashed ahead keep their hashes; their rows too unless one failed to encode.
        let (mut hashes, ahead_rows) = ahead.map_or((Vec::new(), None), |a| (a.hashes, a.rows));
        let mut rows = ahead_rows
            .filter(|r| r.len() == hashes.len())
            .unwrap_or_else(|| EncodedRows::new(self.shared.backend));
        hashes.reserve(entries.len() - hashes.len());
        let mut prev = self.head.hash;
        for ((entry, seq), i) in entries.iter().zip(self.head.seq + 1..).zip(0..) {
            let hash = match hashes.get(i) {
                Some(hash) => *hash,
                None => {
                    let hash = record_hash(&entry.record, &self.chain_id, seq, &prev);
                    hashes.push(hash);
                    hash
                }
            };
            if i >= rows.len() {
                encode_row(&mut rows, &entry.record, &self.chain_id, seq, prev, hash)?;
            }
            prev = hash;
        }
        let seq = self.head.seq + i64::try_from(entries.len()).unwrap_or(i64::MAX);
        let head = ChainHead { seq, hash: prev };
        let interval = Duration::from_millis(self.config.checkpoint_interval_ms);
        let checkpoint = (head.seq - self.last_cp_seq
            >= i64::try_from(self.config.checkpoint_every).unwrap_or(i64::MAX)
            || self.last_cp_at.elapsed() >= interval)
            .then(|| {
                NewCheckpoint::new(
                    CheckpointKind::Checkpoint,
                    &self.chain_id,
                    head,
                    authz_types::now_unix_ms(),
                    self.key.as_deref(),
                )
            });
        let conn = self.connection().await?;
        Ok(Some(Prepared {
            base: self.head,
            rows,
            head,
            checkpoint,
            conn,
        }))
    }

    /// The connection for the next batch: the kept one if it is still good, else a new one.
    ///
    /// A kept connection is checked (a ping) before use when it sat idle for
    /// [`CONN_IDLE_CHECK`], since the server may have closed it meanwhile, and when any lane of
    /// this writer failed a batch since it was last known good: an outage that broke one lane's
    /// connection broke the others' too, and a lane that saw no traffic during it would
    /// otherwise fail its first caller afterwards.
    async fn connection(&mut self) -> Result<WriterConn, Error> {
        let alarms = self.broken_connections.load(Ordering::Relaxed);
        if (self.conn_used.elapsed() > CONN_IDLE_CHECK || alarms != self.conn_alarms_seen)
            && let Some(mut conn) = self.conn.take()
        {
            if conn.ping().await {
                self.conn = Some(conn);
            } else {
                conn.discard();
            }
        }
        self.conn_alarms_seen = alarms;
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => {
                self.store
                    .writer_conn(Duration::from_millis(self.config.commit_timeout_ms))
                    .await
            }
        }
    }

    /// Answers durable callers with `error`, keeps buffered records for a retry or gives them up.
    fn fail(&mut self, entries: Vec<Entry>, error: Error) {
        let shared = Arc::clone(&self.shared);
        // Records hashed ahead were chained onto this batch; they are hashed again.
        self.ahead = None;
        bump(&shared.counters.failed_batches, 1);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        tracing::warn!(
            chain_id = %self.chain_id,
            records = entries.len(),
            failures_in_a_row = self.failures_in_a_row,
            error = %error,
            "audit batch failed"
        );
        let error = Arc::new(error);
        let mut lost = 0usize;
        for mut entry in entries {
            match entry.ack.take() {
                Some(ack) => {
                    bump(&shared.counters.durable_failures, 1);
                    let _ = ack.send(Err(Error::BatchFailed {
                        source: Arc::clone(&error),
                    }));
                }
                None => {
                    entry.attempts += 1;
                    if entry.attempts >= self.config.retry_attempts {
                        lost += 1;
                        tracing::error!(
                            chain_id = %self.chain_id,
                            request_id = %entry.record.request_id,
                            attempts = entry.attempts,
                            error = %error,
                            "buffered audit record lost: gave up after the last retry"
                        );
                    } else {
                        self.pending.push(entry);
                    }
                }
            }
        }
        bump(&shared.counters.lost, lost);
        let exponent = self.failures_in_a_row.saturating_sub(1).min(20);
        let backoff = self
            .config
            .retry_backoff_ms
            .saturating_mul(1u64 << exponent)
            .min(self.config.max_retry_backoff_ms);
        self.retry_at = Some(Instant::now() + Duration::from_millis(backoff));
    }

    /// A checkpoint of the current head on its own (idle writer or shutdown). A failure is only
    /// logged: the next batch or tick tries again.
    async fn standalone_checkpoint(&mut self) {
        if self.head.seq <= self.last_cp_seq || self.unsure.is_some() {
            self.last_cp_at = Instant::now();
            return;
        }
        let cp = NewCheckpoint::new(
            CheckpointKind::Checkpoint,
            &self.chain_id,
            self.head,
            authz_types::now_unix_ms(),
            self.key.as_deref(),
        );
        let timeout = Duration::from_millis(self.config.commit_timeout_ms);
        match tokio::time::timeout(timeout, self.store.write_checkpoint(&cp)).await {
            Ok(Ok(())) => {
                self.last_cp_seq = cp.seq;
                bump(&self.shared.counters.checkpoints, 1);
            }
            Ok(Err(error)) => {
                tracing::warn!(chain_id = %self.chain_id, error = %error, "audit checkpoint failed");
            }
            Err(_) => {
                tracing::warn!(chain_id = %self.chain_id, "audit checkpoint timed out");
            }
        }
        self.last_cp_at = Instant::now();
    }
}
