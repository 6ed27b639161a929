//! Token revocation: the SQL store (SQLite or Postgres) where revocations are written, and the
//! in-memory list every verification checks, kept within a second of the store.
//!
//! Two kinds of revocation:
//!
//! - by `jti`: that one token is refused. The row carries the token's expiry, after which it can
//!   be pruned (the token is refused as expired anyway).
//! - by subject before a time: every token of (`iss`, `sub`) issued before the cut-off is
//!   refused; tokens issued at or after it are not. A token without `iat` cannot show when it was
//!   issued, so any cut-off for its subject refuses it. The row carries the time after which no
//!   token issued before the cut-off can still be valid (cut-off plus the longest accepted token
//!   lifetime), after which it can be pruned.
//!
//! Every write bumps a revision in the same transaction; on Postgres the transaction also sends
//! `NOTIFY authz_revocation_changed`. [`RevocationList::follow`] polls the revision (and listens
//! on Postgres) and reloads the whole snapshot when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authz_db::{Pool, error_chain, on_pool};
use authz_types::Principal;
use sqlx::Row;

use crate::Error;

/// The Postgres channel every revocation change is announced on; the payload is the new revision.
pub const REVOCATION_NOTIFY_CHANNEL: &str = "authz_revocation_changed";

/// Longest `jti`, issuer or subject the store accepts, so one row cannot be used to bloat every
/// replica's memory.
const MAX_FIELD_BYTES: usize = 4096;

/// The revocation store's tables: `revoked_token`, `revoked_subject`, `revocation_revision`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "revocation",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/revocation"),
    postgres: || sqlx::migrate!("../../migrations/postgres/revocation"),
};

// `$N` placeholders are understood by both SQLite and Postgres, so the statements are shared.
const UPSERT_TOKEN: &str = "INSERT INTO revoked_token (jti, expires_at, revoked_at_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (jti) DO UPDATE SET \
     expires_at = CASE WHEN excluded.expires_at > revoked_token.expires_at \
     THEN excluded.expires_at ELSE revoked_token.expires_at END";
const UPSERT_SUBJECT: &str = "INSERT INTO revoked_subject \
     (issuer, subject, issued_before, expires_at, revoked_at_ms) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (issuer, subject) DO UPDATE SET \
     issued_before = CASE WHEN excluded.issued_before > revoked_subject.issued_before \
     THEN excluded.issued_before ELSE revoked_subject.issued_before END, \
     expires_at = CASE WHEN excluded.expires_at > revoked_subject.expires_at \
     THEN excluded.expires_at ELSE revoked_subject.expires_at END";
const BUMP_REVISION: &str = "UPDATE revocation_revision SET revision = revision + 1, \
     updated_at_ms = $1 WHERE id = 1 RETURNING revision";
const READ_REVISION: &str = "SELECT revision FROM revocation_revision WHERE id = 1";
const READ_TOKENS: &str = "SELECT jti, expires_at FROM revoked_token WHERE expires_at > $1";
const READ_SUBJECTS: &str = "SELECT issuer, subject, issued_before, expires_at \
     FROM revoked_subject WHERE expires_at > $1";
const PRUNE_TOKENS: &str = "DELETE FROM revoked_token WHERE expires_at <= $1";
const PRUNE_SUBJECTS: &str = "DELETE FROM revoked_subject WHERE expires_at <= $1";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// One stored revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token with this `jti` is refused until `expires_at` (Unix seconds).
    Token { jti: String, expires_at: i64 },
    /// Tokens of (`issuer`, `subject`) with `iat < issued_before` (or no `iat`) are refused; the
    /// row can be pruned after `expires_at`.
    Subject {
        issuer: String,
        subject: String,
        issued_before: i64,
        expires_at: i64,
    },
}

/// The revocation store in SQLite or Postgres. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct RevocationStore {
    pool: Pool,
}

fn db(source: sqlx::Error) -> Error {
    Error::Database { source }
}

fn check_field(value: &str, what: &'static str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidRevocation { problem: what });
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(Error::InvalidRevocation {
            problem: "a value is longer than 4096 bytes",
        });
    }
    Ok(())
}

impl RevocationStore {
    /// Connects to `sqlite:PATH` / `sqlite://PATH[?mode=…]` or `postgres://...` through
    /// [`authz_db::connect`] (durable SQLite, fail-fast first connection) and applies this
    /// store's migrations, which create only the revocation tables.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self { pool })
    }

    /// Closes the connection pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        on_pool!(self.pool, pool => pool.close().await)
    }

    /// Revokes the token with this `jti` until `expires_at` (its `exp`, Unix seconds). Revoking
    /// it again keeps the later expiry. Returns the new revision.
    pub async fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<i64, Error> {
        check_field(jti, "jti is empty")?;
        self.write(Revocation::Token {
            jti: jti.to_owned(),
            expires_at,
        })
        .await
    }

    /// Revokes every token of (`issuer`, `subject`) issued before `issued_before` (Unix seconds);
    /// the row is kept until `expires_at`, which should be `issued_before` plus the longest token
    /// lifetime any verifier accepts. Revoking again keeps the later cut-off and expiry. Returns
    /// the new revision.
    pub async fn revoke_subject(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: i64,
        expires_at: i64,
    ) -> Result<i64, Error> {
        check_field(issuer, "issuer is empty")?;
        check_field(subject, "subject is empty")?;
        if expires_at < issued_before {
            return Err(Error::InvalidRevocation {
                problem: "expires_at is before issued_before",
            });
        }
        self.write(Revocation::Subject {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            issued_before,
            expires_at,
        })
        .await
    }

    async fn write(&self, revocation: Revocation) -> Result<i64, Error> {
        let now_ms = authz_types::now_unix_ms();
        let revision = on_pool!(self.pool, pool => {
            // On SQLite `BEGIN IMMEDIATE` takes the write lock up front, so a concurrent writer
            // waits (busy timeout) instead of failing when a deferred transaction upgrades.
            let mut tx = pool.begin_with(BEGIN).await.map_err(db)?;
            bind_write::<DB>(&revocation, now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let revision: i64 = sqlx::query_scalar(BUMP_REVISION)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            if matches!(self.pool, Pool::Postgres(_)) {
                // Delivered on commit only, so a listener never reloads before the row is visible.
                sqlx::query(NOTIFY)
                    .bind(REVOCATION_NOTIFY_CHANNEL)
                    .bind(revision.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            revision
        });
        tracing::info!(
            revision,
            kind = match revocation {
                Revocation::Token { .. } => "jti",
                Revocation::Subject { .. } => "subject",
            },
            "token revocation stored"
        );
        Ok(revision)
    }

    /// The current revision (0 for a store that was never written).
    pub async fn revision(&self) -> Result<i64, Error> {
        on_pool!(self.pool, pool => sqlx::query_scalar(READ_REVISION).fetch_one(pool).await)
            .map_err(db)
    }

    /// Every revocation still in force at `now` (Unix seconds), with the revision it was read
    /// at (read first, so a concurrent write is at worst seen twice, never missed).
    pub async fn list(&self, now: i64) -> Result<(i64, Vec<Revocation>), Error> {
        let revision = self.revision().await?;
        let (tokens, subjects) = on_pool!(self.pool, pool => (
            sqlx::query(READ_TOKENS)
                .bind(now)
                .fetch_all(pool)
                .await
                .map_err(db)?
                .iter()
                .map(token_row)
                .collect::<Result<Vec<_>, _>>(),
            sqlx::query(READ_SUBJECTS)
                .bind(now)
                .fetch_all(pool)
                .await
                .map_err(db)?
                .iter()
                .map(subject_row)
                .collect::<Result<Vec<_>, _>>(),
        ));
        let mut out = tokens.map_err(db)?;
        out.extend(subjects.map_err(db)?);
        Ok((revision, out))
    }

    /// Deletes revocations whose `expires_at` is at or before `now`; returns how many. The
    /// revision is not bumped: a pruned row only ever matched tokens that are expired anyway.
    pub async fn prune(&self, now: i64) -> Result<u64, Error> {
        let mut n = 0;
        for sql in [PRUNE_TOKENS, PRUNE_SUBJECTS] {
            n += on_pool!(self.pool, pool => sqlx::query(sql)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))
            .map_err(db)?;
        }
        Ok(n)
    }
}

/// The upsert for one revocation, with its values bound, for either backend.
fn bind_write<DB>(r: &Revocation, now_ms: i64) -> sqlx::query::Query<'_, DB, DB::Arguments>
where
    DB: sqlx::Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match r {
        Revocation::Token { jti, expires_at } => sqlx::query(UPSERT_TOKEN)
            .bind(jti.as_str())
            .bind(*expires_at)
            .bind(now_ms),
        Revocation::Subject {
            issuer,
            subject,
            issued_before,
            expires_at,
        } => sqlx::query(UPSERT_SUBJECT)
            .bind(issuer.as_str())
            .bind(subject.as_str())
            .bind(*issued_before)
            .bind(*expires_at)
            .bind(now_ms),
    }
}

fn token_row<R: Row>(row: &R) -> Result<Revocation, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Revocation::Token {
        jti: row.try_get("jti")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn subject_row<R: Row>(row: &R) -> Result<Revocation, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Revocation::Subject {
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        issued_before: row.try_get("issued_before")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// One immutable generation of the revocation list.
#[derive(Debug, Default)]
struct Snapshot {
    revision: i64,
    jtis: HashSet<String>,
    /// issuer → subject → cut-off: nested so a lookup needs no allocated key.
    subjects: HashMap<String, HashMap<String, i64>>,
}

impl Snapshot {
    fn from_rows(revision: i64, rows: Vec<Revocation>) -> Self {
        let mut s = Snapshot {
            revision,
            ..Snapshot::default()
        };
        for row in rows {
            match row {
                Revocation::Token { jti, .. } => {
                    s.jtis.insert(jti);
                }
                Revocation::Subject {
                    issuer,
                    subject,
                    issued_before,
                    ..
                } => {
                    let cut = s
                        .subjects
                        .entry(issuer)
                        .or_default()
                        .entry(subject)
                        .or_insert(i64::MIN);
                    *cut = (*cut).max(issued_before);
                }
            }
        }
        s
    }
}

/// Counts of a revocation list, for status pages and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationCounts {
    /// The store revision the list was loaded at (0 when never loaded).
    pub revision: i64,
    /// Revoked `jti`s.
    pub tokens: usize,
    /// Revoked (issuer, subject) cut-offs.
    pub subjects: usize,
}

/// The in-memory revocation list checked on every verification: a snapshot swapped as a whole,
/// so a check is two hash lookups under a read lock. Cheap to clone (clones share the snapshot).
#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    inner: Arc<ListInner>,
}

#[derive(Debug, Default)]
struct ListInner {
    snapshot: RwLock<Arc<Snapshot>>,
    /// When the list was last confirmed current against the store (Unix ms; 0 = never).
    checked_at_ms: AtomicI64,
}

/// How a [`RevocationList`] follows its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOptions {
    /// How often the store's revision is polled. Default 500 ms, so a revocation reaches every
    /// replica within a second even without `LISTEN/NOTIFY`.
    pub poll_interval: Duration,
    /// Whether to also `LISTEN` on [`REVOCATION_NOTIFY_CHANNEL`] (Postgres only) for immediate
    /// reloads. Default true.
    pub listen: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            listen: true,
        }
    }
}

/// The task keeping a [`RevocationList`] current. Dropping it stops the task, so keep it for as
/// long as the list is in use.
#[derive(Debug)]
#[must_use = "dropping the follower stops keeping the revocation list current"]
pub struct RevocationFollower {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RevocationFollower {
    /// Stops following the store; the list keeps its last snapshot.
    pub fn stop(self) {
        // Drop does the work.
    }
}

impl Drop for RevocationFollower {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RevocationList {
    /// An empty list (nothing is revoked).
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the current revocations of `store` into a new list.
    pub async fn load(store: &RevocationStore) -> Result<Self, Error> {
        let list = Self::new();
        list.reload(store).await?;
        Ok(list)
    }

    /// Loads `store` and starts a tokio task that keeps the list current: it polls the revision
    /// every `options.poll_interval`, and on Postgres also reloads as soon as a
    /// `NOTIFY authz_revocation_changed` arrives. While the store is unreachable the last
    /// snapshot stays in force (a warning is logged per failed poll).
    pub async fn follow(
        store: RevocationStore,
        options: FollowOptions,
    ) -> Result<(Self, RevocationFollower), Error> {
        let list = Self::load(&store).await?;
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        if let (Some(pool), true) = (store.pool.postgres(), options.listen) {
            // Re-created at most every ten seconds while Postgres is away; polling covers the gap.
            tasks.push(tokio::spawn(authz_db::follow_channel(
                pool.clone(),
                REVOCATION_NOTIFY_CHANNEL,
                Arc::clone(&changed),
                Duration::from_secs(10),
                |_| {},
            )));
        }
        tasks.push(tokio::spawn(follow_loop(
            list.clone(),
            store,
            options,
            changed,
        )));
        Ok((list, RevocationFollower { tasks }))
    }

    /// Reloads from `store` if its revision differs from the list's; returns whether it did.
    pub async fn refresh(&self, store: &RevocationStore) -> Result<bool, Error> {
        let revision = store.revision().await?;
        if revision == self.snapshot().revision && self.checked_at_ms() > 0 {
            self.inner
                .checked_at_ms
                .store(authz_types::now_unix_ms(), Ordering::Relaxed);
            return Ok(false);
        }
        self.reload(store).await?;
        Ok(true)
    }

    async fn reload(&self, store: &RevocationStore) -> Result<(), Error> {
        let now = authz_types::now_unix_ms().div_euclid(1000);
        let (revision, rows) = store.list(now).await?;
        let next = Arc::new(Snapshot::from_rows(revision, rows));
        tracing::debug!(
            revision,
            tokens = next.jtis.len(),
            subjects = next.subjects.len(),
            "revocation list loaded"
        );
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        self.inner
            .checked_at_ms
            .store(authz_types::now_unix_ms(), Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .inner
                .snapshot
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether the token behind `principal` is revoked: its `jti` is listed, or its subject has a
    /// cut-off after its `iat` (or it has no `iat`).
    pub fn is_revoked(&self, principal: &Principal) -> bool {
        let snapshot = self
            .inner
            .snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !snapshot.jtis.is_empty()
            && let Some(jti) = &principal.token_id
            && snapshot.jtis.contains(jti.as_str())
        {
            return true;
        }
        if snapshot.subjects.is_empty() {
            return false;
        }
        match snapshot
            .subjects
            .get(principal.issuer.as_str())
            .and_then(|subjects| subjects.get(principal.subject.as_str()))
        {
            Some(&cut) => principal.issued_at.is_none_or(|iat| iat < cut),
            None => false,
        }
    }

    /// Sizes and revision of the current snapshot.
    pub fn counts(&self) -> RevocationCounts {
        let s = self.snapshot();
        RevocationCounts {
            revision: s.revision,
            tokens: s.jtis.len(),
            subjects: s.subjects.values().map(HashMap::len).sum(),
        }
    }

    /// When the list was last confirmed current against its store (Unix ms; 0 = never). A
    /// readiness check can report a list that has not been confirmed for a while.
    pub fn checked_at_ms(&self) -> i64 {
        self.inner.checked_at_ms.load(Ordering::Relaxed)
    }
}

async fn follow_loop(
    list: RevocationList,
    store: RevocationStore,
    options: FollowOptions,
    changed: Arc<tokio::sync::Notify>,
) {
    let mut ticker = tokio::time::interval(options.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Both branches are cancel-safe; the listener itself runs in its own task.
        tokio::select! {
            _ = ticker.tick() => {}
            () = changed.notified() => {}
        }
        if let Err(err) = list.refresh(&store).await {
            tracing::warn!(error = %error_chain(&err), "revocation store unreachable; keeping the last revocation list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(jti: Option<&str>, iat: Option<i64>) -> Principal {
        Principal {
            subject: "alice".into(),
            issuer: "https://idp".into(),
            tenant: None,
            client_id: None,
            actors: Vec::new(),
            scopes: Vec::new(),
            roles: Vec::new(),
            token_id: jti.map(str::to_owned),
            expires_at: 1000,
            issued_at: iat,
            claims: Default::default(),
        }
    }

    fn list(rows: Vec<Revocation>) -> RevocationList {
        let l = RevocationList::new();
        *l.inner.snapshot.write().expect("lock") = Arc::new(Snapshot::from_rows(1, rows));
        l
    }

    #[test]
    fn jti_and_subject_cutoffs() {
        let l = list(vec![
            Revocation::Token {
                jti: "t1".into(),
                expires_at: 1000,
            },
            Revocation::Subject {
                issuer: "https://idp".into(),
                subject: "alice".into(),
                issued_before: 500,
                expires_at: 2000,
            },
            Revocation::Subject {
                issuer: "https://idp".into(),
                subject: "alice".into(),
                issued_before: 400,
                expires_at: 2000,
            },
        ]);
        assert!(l.is_revoked(&principal(Some("t1"), Some(600))));
        assert!(l.is_revoked(&principal(Some("t2"), Some(499))));
        assert!(!l.is_revoked(&principal(Some("t2"), Some(500))));
        assert!(
            l.is_revoked(&principal(None, None)),
            "no iat: cannot prove it is newer"
        );
        let mut other = principal(Some("t2"), Some(1));
        other.issuer = "https://other".into();
        assert!(!l.is_revoked(&other));
        assert_eq!(
            l.counts(),
            RevocationCounts {
                revision: 1,
                tokens: 1,
                subjects: 1
            }
        );
        assert!(!RevocationList::new().is_revoked(&principal(Some("t1"), None)));
    }
}
