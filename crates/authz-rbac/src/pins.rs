//! Pinned definitions: what each upstream's tools, prompts and resource templates said when an
//! operator (or trust on first use) accepted them, shared by every gateway replica through one
//! SQL store (the audit database by default; Postgres across hosts).
//!
//! A gateway reports each definition it sees in a list with [`PinStore::observe`]: the first
//! sight creates the pin (approved at once under trust on first use, pending otherwise); a
//! definition that differs from the approved one becomes the pin's pending definition, and the
//! item stays hidden and its calls refused until [`PinStore::approve`] (or stays blocked after
//! [`PinStore::reject`]). An upstream that goes back to the approved definition clears what was
//! pending. Every step is appended to `definition_pin_history` with who took it.
//!
//! The store keeps digests and definitions as the gateway computed them (a SHA-256 over a
//! canonical JSON text); it compares digests only.

use authz_db::{Pool, on_pool};
use sqlx::Row;

use crate::Error;

/// The store's tables: `definition_pin`, `definition_pin_history`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "pins",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/pins"),
    postgres: || sqlx::migrate!("../../migrations/postgres/pins"),
};

/// The actor recorded for what a gateway saw.
pub const GATEWAY_ACTOR: &str = "gateway";

/// What kind of definition a pin holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefinitionKind {
    Tool,
    Prompt,
    ResourceTemplate,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Tool => "tool",
            DefinitionKind::Prompt => "prompt",
            DefinitionKind::ResourceTemplate => "resource_template",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tool" => DefinitionKind::Tool,
            "prompt" => DefinitionKind::Prompt,
            "resource_template" => DefinitionKind::ResourceTemplate,
            _ => return None,
        })
    }
}

/// Where a pin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// Nothing waits: what is served is the approved definition.
    Approved,
    /// A definition other than the approved one (or, in strict mode, the first one) awaits a
    /// decision.
    Pending,
    /// The pending definition was refused; it stays blocked until the upstream serves the
    /// approved one again or a new definition is approved.
    Rejected,
}

impl PinState {
    pub fn as_str(self) -> &'static str {
        match self {
            PinState::Approved => "approved",
            PinState::Pending => "pending",
            PinState::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approved" => PinState::Approved,
            "pending" => PinState::Pending,
            "rejected" => PinState::Rejected,
            _ => return None,
        })
    }
}

/// One pin as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub upstream: String,
    pub kind: DefinitionKind,
    pub name: String,
    pub approved_digest: Option<String>,
    pub approved_definition: Option<String>,
    pub pending_digest: Option<String>,
    pub pending_definition: Option<String>,
    pub state: PinState,
    pub first_seen_ms: i64,
    pub changed_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
}

impl Pin {
    /// Whether a definition with `digest` may be shown and used now.
    pub fn admits(&self, digest: &str) -> bool {
        self.approved_digest.as_deref() == Some(digest)
    }
}

/// One step in a pin's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinEvent {
    /// Its place in the history (ascending).
    pub id: i64,
    pub upstream: String,
    pub kind: DefinitionKind,
    pub name: String,
    /// `first_seen`, `first_seen_pending`, `changed`, `reverted`, `approved`, `rejected`.
    pub event: String,
    pub digest: Option<String>,
    pub actor: String,
    pub time_ms: i64,
}

/// What [`PinStore::observe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The first sight of this item: pinned (approved, or pending in strict mode).
    New,
    /// The approved definition: nothing to do.
    Approved,
    /// The approved definition again, after a pending one: the pending one was dropped.
    Reverted,
    /// A definition other than the approved one, now pending.
    Changed,
    /// The definition already pending (or rejected): nothing new.
    StillPending,
}

/// Item key and definition of an observation or a decision.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub upstream: &'a str,
    pub kind: DefinitionKind,
    pub name: &'a str,
}

const SELECT_ALL: &str = "SELECT upstream, kind, name, approved_digest, approved_definition, \
     pending_digest, pending_definition, state, first_seen_ms, changed_ms, decided_by, decided_ms \
     FROM definition_pin ORDER BY upstream, kind, name";
const SELECT_ONE: &str = "SELECT upstream, kind, name, approved_digest, approved_definition, \
     pending_digest, pending_definition, state, first_seen_ms, changed_ms, decided_by, decided_ms \
     FROM definition_pin WHERE upstream = $1 AND kind = $2 AND name = $3";

/// The shared pins. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct PinStore {
    pool: Pool,
}

fn db(source: sqlx::Error) -> Error {
    Error::Database { source }
}

macro_rules! read_pin {
    ($row:expr) => {{
        let row = $row;
        let kind: String = row.try_get("kind").map_err(db)?;
        let state: String = row.try_get("state").map_err(db)?;
        let corrupt = |what: &str, value: &str| Error::InvalidRule {
            reason: format!("stored pin has an unknown {what} {value:?}"),
        };
        Pin {
            upstream: row.try_get("upstream").map_err(db)?,
            kind: DefinitionKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
            name: row.try_get("name").map_err(db)?,
            approved_digest: row.try_get("approved_digest").map_err(db)?,
            approved_definition: row.try_get("approved_definition").map_err(db)?,
            pending_digest: row.try_get("pending_digest").map_err(db)?,
            pending_definition: row.try_get("pending_definition").map_err(db)?,
            state: PinState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
            first_seen_ms: row.try_get("first_seen_ms").map_err(db)?,
            changed_ms: row.try_get("changed_ms").map_err(db)?,
            decided_by: row.try_get("decided_by").map_err(db)?,
            decided_ms: row.try_get("decided_ms").map_err(db)?,
        }
    }};
}

impl PinStore {
    /// Connects to the store at `url` (`sqlite:` or `postgres:`) and creates its tables.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self { pool })
    }

    /// Every pin, by upstream, kind and name.
    pub async fn all(&self) -> Result<Vec<Pin>, Error> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(SELECT_ALL).fetch_all(pool).await.map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(read_pin!(row));
            }
            Ok(out)
        })
    }

    /// One pin, if the item has been seen.
    pub async fn get(&self, item: Item<'_>) -> Result<Option<Pin>, Error> {
        on_pool!(&self.pool, pool => {
            let row = sqlx::query(SELECT_ONE)
                .bind(item.upstream)
                .bind(item.kind.as_str())
                .bind(item.name)
                .fetch_optional(pool)
                .await
                .map_err(db)?;
            Ok(match row {
                Some(row) => Some(read_pin!(&row)),
                None => None,
            })
        })
    }

    /// Records that a gateway saw `item` served with `digest` (over `definition`). With
    /// `trust_first`, a first sight is approved at once; otherwise it is pending.
    pub async fn observe(
        &self,
        item: Item<'_>,
        digest: &str,
        definition: &str,
        trust_first: bool,
        now_ms: i64,
    ) -> Result<Observed, Error> {
        let (approved, pending, state) = if trust_first {
            (Some(digest), None, PinState::Approved)
        } else {
            (None, Some(digest), PinState::Pending)
        };
        let inserted = on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO definition_pin (upstream, kind, name, approved_digest, \
                 approved_definition, pending_digest, pending_definition, state, first_seen_ms, \
                 changed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                 ON CONFLICT (upstream, kind, name) DO NOTHING",
            )
            .bind(item.upstream)
            .bind(item.kind.as_str())
            .bind(item.name)
            .bind(approved)
            .bind(approved.map(|_| definition))
            .bind(pending)
            .bind(pending.map(|_| definition))
            .bind(state.as_str())
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        if inserted == 1 {
            let event = if trust_first {
                "first_seen"
            } else {
                "first_seen_pending"
            };
            self.history(item, event, Some(digest), GATEWAY_ACTOR, now_ms)
                .await?;
            return Ok(Observed::New);
        }
        let Some(pin) = self.get(item).await? else {
            return Err(Error::NotFound);
        };
        if pin.admits(digest) {
            if pin.pending_digest.is_none() {
                return Ok(Observed::Approved);
            }
            // Back to the approved definition: what was pending is moot.
            let done = self
                .update(
                    "UPDATE definition_pin SET pending_digest = NULL, pending_definition = NULL, \
                     state = 'approved', changed_ms = $4 WHERE upstream = $1 AND kind = $2 \
                     AND name = $3 AND approved_digest = $5 AND pending_digest IS NOT NULL",
                    item,
                    now_ms,
                    digest,
                )
                .await?;
            if done {
                self.history(item, "reverted", Some(digest), GATEWAY_ACTOR, now_ms)
                    .await?;
                return Ok(Observed::Reverted);
            }
            return Ok(Observed::Approved);
        }
        if pin.pending_digest.as_deref() == Some(digest) {
            return Ok(Observed::StillPending);
        }
        let done = on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE definition_pin SET pending_digest = $4, pending_definition = $5, \
                 state = 'pending', changed_ms = $6 WHERE upstream = $1 AND kind = $2 \
                 AND name = $3 AND COALESCE(pending_digest, '') <> $4 \
                 AND COALESCE(approved_digest, '') <> $4",
            )
            .bind(item.upstream)
            .bind(item.kind.as_str())
            .bind(item.name)
            .bind(digest)
            .bind(definition)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        if done == 1 {
            self.history(item, "changed", Some(digest), GATEWAY_ACTOR, now_ms)
                .await?;
            return Ok(Observed::Changed);
        }
        // Another replica recorded the same change a moment ago.
        Ok(Observed::StillPending)
    }

    /// Approves the pending definition of `item` (only the one with `digest`, when given, so an
    /// operator approves what they reviewed). [`Error::NotFound`] when nothing is pending, or
    /// the pending definition is not the one named.
    pub async fn approve(
        &self,
        item: Item<'_>,
        digest: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Pin, Error> {
        const APPROVE: &str = "UPDATE definition_pin SET approved_digest = pending_digest, \
             approved_definition = pending_definition, pending_digest = NULL, \
             pending_definition = NULL, state = 'approved', decided_by = $5, decided_ms = $6, \
             changed_ms = $6 WHERE upstream = $1 AND kind = $2 AND name = $3 \
             AND pending_digest = $4";
        self.decide(APPROVE, "approved", item, digest, actor, now_ms)
            .await
    }

    /// Rejects the pending definition of `item` (as [`Self::approve`] names it): it stays
    /// blocked.
    pub async fn reject(
        &self,
        item: Item<'_>,
        digest: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Pin, Error> {
        const REJECT: &str = "UPDATE definition_pin SET state = 'rejected', decided_by = $5, \
             decided_ms = $6 WHERE upstream = $1 AND kind = $2 AND name = $3 \
             AND pending_digest = $4";
        self.decide(REJECT, "rejected", item, digest, actor, now_ms)
            .await
    }

    /// Applies a decision (`sql`, binding item, pending digest, actor, time) to the pending
    /// definition named by `digest`, and records it as `event`.
    async fn decide(
        &self,
        sql: &'static str,
        event: &str,
        item: Item<'_>,
        digest: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Pin, Error> {
        let pending = self.pending_named(item, digest).await?;
        let done = on_pool!(&self.pool, pool => {
            sqlx::query(sql)
                .bind(item.upstream)
                .bind(item.kind.as_str())
                .bind(item.name)
                .bind(&pending)
                .bind(actor)
                .bind(now_ms)
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected()
        });
        if done != 1 {
            return Err(Error::NotFound);
        }
        self.history(item, event, Some(&pending), actor, now_ms)
            .await?;
        self.get(item).await?.ok_or(Error::NotFound)
    }

    /// Every step of every pin (or of one upstream's), oldest first.
    pub async fn events(&self, upstream: Option<&str>) -> Result<Vec<PinEvent>, Error> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, upstream, kind, name, event, digest, actor, time_ms \
                 FROM definition_pin_history WHERE ($1 IS NULL OR upstream = $1) ORDER BY id",
            )
            .bind(upstream)
            .fetch_all(pool)
            .await
            .map_err(db)?;
            rows.iter().map(read_event).collect()
        })
    }

    /// Up to `limit` steps no replica has written into its audit chain yet, oldest first.
    pub async fn unaudited(&self, limit: i64) -> Result<Vec<PinEvent>, Error> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, upstream, kind, name, event, digest, actor, time_ms \
                 FROM definition_pin_history WHERE audited_by IS NULL ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(db)?;
            rows.iter().map(read_event).collect()
        })
    }

    /// Claims step `id` for `holder`'s audit chain: `true` for exactly one claimant.
    pub async fn claim_audit(&self, id: i64, holder: &str) -> Result<bool, Error> {
        let n = on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE definition_pin_history SET audited_by = $2 \
                 WHERE id = $1 AND audited_by IS NULL",
            )
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Gives a claimed step back (its audit record could not be written).
    pub async fn release_audit(&self, id: i64, holder: &str) -> Result<(), Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE definition_pin_history SET audited_by = NULL \
                 WHERE id = $1 AND audited_by = $2",
            )
            .bind(id)
            .bind(holder)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db)
        })
    }
}

fn read_event<R>(row: &R) -> Result<PinEvent, Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind").map_err(db)?;
    Ok(PinEvent {
        id: row.try_get("id").map_err(db)?,
        upstream: row.try_get("upstream").map_err(db)?,
        kind: DefinitionKind::parse(&kind).ok_or_else(|| Error::InvalidRule {
            reason: format!("stored pin event has an unknown kind {kind:?}"),
        })?,
        name: row.try_get("name").map_err(db)?,
        event: row.try_get("event").map_err(db)?,
        digest: row.try_get("digest").map_err(db)?,
        actor: row.try_get("actor").map_err(db)?,
        time_ms: row.try_get("time_ms").map_err(db)?,
    })
}

impl PinStore {
    /// The pending digest of `item`, checked against `digest` (a prefix of at least 8 hex
    /// digits) when given.
    async fn pending_named(&self, item: Item<'_>, digest: Option<&str>) -> Result<String, Error> {
        let pin = self.get(item).await?.ok_or(Error::NotFound)?;
        let pending = pin.pending_digest.ok_or(Error::NotFound)?;
        match digest {
            Some(d) if d.len() < 8 || !pending.starts_with(d) => Err(Error::NotFound),
            _ => Ok(pending),
        }
    }

    async fn update(
        &self,
        sql: &'static str,
        item: Item<'_>,
        now_ms: i64,
        digest: &str,
    ) -> Result<bool, Error> {
        let n = on_pool!(&self.pool, pool => {
            sqlx::query(sql)
                .bind(item.upstream)
                .bind(item.kind.as_str())
                .bind(item.name)
                .bind(now_ms)
                .bind(digest)
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected()
        });
        Ok(n == 1)
    }

    async fn history(
        &self,
        item: Item<'_>,
        event: &str,
        digest: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO definition_pin_history (upstream, kind, name, event, digest, actor, \
                 time_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(item.upstream)
            .bind(item.kind.as_str())
            .bind(item.name)
            .bind(event)
            .bind(digest)
            .bind(actor)
            .bind(now_ms)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db)
        })
    }
}
