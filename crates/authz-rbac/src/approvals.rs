//! Approvals of held calls, shared by every gateway replica through one SQL store (the audit
//! database by default; Postgres across hosts).
//!
//! A tool call that an `approve` rule holds ([`RuleEffect::Approve`](authz_types::RuleEffect))
//! is reported with [`ApprovalStore::hold_or_use`]: an approved, unexpired, unused approval for
//! exactly that call (principal, who acted for it, route, tool, argument digest) is used —
//! once, whatever the number of replicas racing for it — and the call goes on; a pending one
//! is reported again (one approval per call, however often the agent retries); a recent
//! rejection refuses the call; otherwise a new pending approval is created, unless the
//! principal already has as many pending as allowed. Approvers decide with
//! [`ApprovalStore::approve`] and [`ApprovalStore::reject`]; each decision is appended to
//! `approval_history`, which gateways write once into an audit chain (claimed as pin steps
//! are).
//!
//! Times are Unix milliseconds passed in by the caller, so tests control the clock.

use authz_db::{Pool, on_pool};
use sqlx::Row;

use crate::Error;

/// The store's tables: `approval`, `approval_history`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "approvals",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/approvals"),
    postgres: || sqlx::migrate!("../../migrations/postgres/approvals"),
};

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    /// Waiting for an approver (until it expires).
    Pending,
    /// Approved: the identical call may go through once, until it expires.
    Approved,
    /// Rejected: identical calls are refused until it expires.
    Rejected,
    /// The approved call went through.
    Used,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "rejected" => ApprovalState::Rejected,
            "used" => ApprovalState::Used,
            _ => return None,
        })
    }
}

/// The exact call an approval is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCall {
    pub upstream: String,
    pub tool: String,
    pub issuer: String,
    pub subject: String,
    pub tenant: String,
    /// Who acted for the principal: the client id and the token's `act` chain, as the gateway
    /// writes them (an approval for one agent is not one for another).
    pub acting: String,
    /// SHA-256 of the call's arguments, as in its audit records.
    pub args_digest: String,
}

/// What the approver is shown about a call, beside the call itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The arguments as the route redacts them for audit records (`None`: digest only).
    pub arguments: Option<String>,
    pub roles: Vec<String>,
    /// The approve rule that held the call.
    pub rule: String,
    /// The gateway request id of the held call.
    pub request_id: String,
}

/// One approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub call: HeldCall,
    pub context: CallContext,
    pub state: ApprovalState,
    pub created_ms: i64,
    /// A pending approval lapses, an approved one may no longer be used, a rejection stops
    /// refusing identical calls, at this time.
    pub expires_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    /// The approver's reason, for a rejection.
    pub reason: Option<String>,
    pub used_ms: Option<i64>,
    pub used_request_id: Option<String>,
}

impl Approval {
    /// Whether it still counts at `now_ms` (a used approval never does).
    pub fn is_open(&self, now_ms: i64) -> bool {
        self.state != ApprovalState::Used && self.expires_ms > now_ms
    }

    /// The state a person should see at `now_ms`: `expired` for one that lapsed.
    pub fn shown_state(&self, now_ms: i64) -> &'static str {
        if self.state != ApprovalState::Used && self.expires_ms <= now_ms {
            "expired"
        } else {
            self.state.as_str()
        }
    }
}

/// What [`ApprovalStore::hold_or_use`] found for a held call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// An approval for this exact call was used now: the call goes on.
    Used(Approval),
    /// A pending approval for this call already exists.
    Pending(Approval),
    /// A new pending approval was created.
    Created(Approval),
    /// An approver rejected this call recently; identical calls are refused until it expires.
    Rejected(Approval),
    /// The principal already has `pending` pending approvals (the limit); nothing was created.
    TooManyPending { pending: i64 },
}

/// Limits of [`ApprovalStore::hold_or_use`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// How long a new pending approval waits for an approver.
    pub pending_ttl_ms: i64,
    /// Pending approvals one principal may have at once.
    pub max_pending_per_principal: i64,
}

/// One approver's decision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEvent {
    /// Its place in the history (ascending).
    pub id: i64,
    pub approval_id: String,
    /// `approved` or `rejected`.
    pub event: String,
    pub actor: String,
    pub time_ms: i64,
}

/// Which approvals [`ApprovalStore::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only those in this state (as shown: `expired` selects lapsed ones).
    pub state: Option<String>,
    pub upstream: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// The shared approvals. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct ApprovalStore {
    pool: Pool,
}

fn db(source: sqlx::Error) -> Error {
    Error::Database { source }
}

fn read_approval<R>(row: &R) -> Result<Approval, Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let corrupt = |what: &str| Error::InvalidRule {
        reason: format!("stored approval has an unreadable {what}"),
    };
    let state: String = row.try_get("state").map_err(db)?;
    let roles: String = row.try_get("roles").map_err(db)?;
    Ok(Approval {
        id: row.try_get("id").map_err(db)?,
        call: HeldCall {
            upstream: row.try_get("upstream").map_err(db)?,
            tool: row.try_get("tool").map_err(db)?,
            issuer: row.try_get("issuer").map_err(db)?,
            subject: row.try_get("subject").map_err(db)?,
            tenant: row.try_get("tenant").map_err(db)?,
            acting: row.try_get("acting").map_err(db)?,
            args_digest: row.try_get("args_digest").map_err(db)?,
        },
        context: CallContext {
            arguments: row.try_get("arguments").map_err(db)?,
            roles: serde_json::from_str(&roles).map_err(|_| corrupt("roles"))?,
            rule: row.try_get("rule").map_err(db)?,
            request_id: row.try_get("request_id").map_err(db)?,
        },
        state: ApprovalState::parse(&state).ok_or_else(|| corrupt("state"))?,
        created_ms: row.try_get("created_ms").map_err(db)?,
        expires_ms: row.try_get("expires_ms").map_err(db)?,
        decided_by: row.try_get("decided_by").map_err(db)?,
        decided_ms: row.try_get("decided_ms").map_err(db)?,
        reason: row.try_get("reason").map_err(db)?,
        used_ms: row.try_get("used_ms").map_err(db)?,
        used_request_id: row.try_get("used_request_id").map_err(db)?,
    })
}

fn read_event<R>(row: &R) -> Result<ApprovalEvent, Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ApprovalEvent {
        id: row.try_get("id").map_err(db)?,
        approval_id: row.try_get("approval_id").map_err(db)?,
        event: row.try_get("event").map_err(db)?,
        actor: row.try_get("actor").map_err(db)?,
        time_ms: row.try_get("time_ms").map_err(db)?,
    })
}

impl ApprovalStore {
    /// Connects to the store at `url` (`sqlite:` or `postgres:`) and creates its tables.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self { pool })
    }

    /// One approval by id.
    pub async fn get(&self, id: &str) -> Result<Option<Approval>, Error> {
        const SQL: &str = "SELECT id, upstream, tool, issuer, subject, tenant, acting, \
             args_digest, arguments, roles, rule, request_id, state, created_ms, expires_ms, \
             decided_by, decided_ms, reason, used_ms, used_request_id FROM approval WHERE id = $1";
        on_pool!(&self.pool, pool => {
            let row = sqlx::query(SQL).bind(id).fetch_optional(pool).await.map_err(db)?;
            row.as_ref().map(read_approval).transpose()
        })
    }

    /// Approvals matching `filter`, newest first. `now_ms` decides which count as expired.
    pub async fn list(&self, filter: &ApprovalFilter, now_ms: i64) -> Result<Vec<Approval>, Error> {
        const SQL: &str = "SELECT id, upstream, tool, issuer, subject, tenant, acting, \
             args_digest, arguments, roles, rule, request_id, state, created_ms, expires_ms, \
             decided_by, decided_ms, reason, used_ms, used_request_id FROM approval \
             WHERE ($1 IS NULL OR upstream = $1) AND ($2 IS NULL OR subject = $2) \
             AND ($6 IS NULL OR tenant = $6) AND ($3 IS NULL \
                  OR ($3 = 'expired' AND state <> 'used' AND expires_ms <= $4) \
                  OR ($3 <> 'expired' AND state = $3 AND (state = 'used' OR expires_ms > $4))) \
             ORDER BY created_ms DESC, id LIMIT $5";
        let limit = i64::from(filter.limit.unwrap_or(100));
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(SQL)
                .bind(filter.upstream.as_deref())
                .bind(filter.subject.as_deref())
                .bind(filter.state.as_deref())
                .bind(now_ms)
                .bind(limit)
                .bind(filter.tenant.as_deref())
                .fetch_all(pool)
                .await
                .map_err(db)?;
            rows.iter().map(read_approval).collect()
        })
    }

    /// The open approvals for exactly `call`, newest first.
    async fn open_for(&self, call: &HeldCall, now_ms: i64) -> Result<Vec<Approval>, Error> {
        const SQL: &str = "SELECT id, upstream, tool, issuer, subject, tenant, acting, \
             args_digest, arguments, roles, rule, request_id, state, created_ms, expires_ms, \
             decided_by, decided_ms, reason, used_ms, used_request_id FROM approval \
             WHERE issuer = $1 AND subject = $2 AND tenant = $3 AND upstream = $4 AND tool = $5 \
             AND args_digest = $6 AND acting = $7 AND state <> 'used' AND expires_ms > $8 \
             ORDER BY created_ms DESC, id";
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(SQL)
                .bind(&call.issuer)
                .bind(&call.subject)
                .bind(&call.tenant)
                .bind(&call.upstream)
                .bind(&call.tool)
                .bind(&call.args_digest)
                .bind(&call.acting)
                .bind(now_ms)
                .fetch_all(pool)
                .await
                .map_err(db)?;
            rows.iter().map(read_approval).collect()
        })
    }

    /// What stands for a held `call` at `now_ms` (see [`Standing`]); creates a pending approval
    /// named `new_id` when nothing does. An approved approval is used here, atomically: of two
    /// replicas racing for it, one gets [`Standing::Used`].
    pub async fn hold_or_use(
        &self,
        new_id: &str,
        call: &HeldCall,
        context: &CallContext,
        limits: HoldLimits,
        now_ms: i64,
    ) -> Result<Standing, Error> {
        // Twice at most: a lost race for an approved approval looks again once.
        for _ in 0..2 {
            let open = self.open_for(call, now_ms).await?;
            if let Some(approved) = open.iter().find(|a| a.state == ApprovalState::Approved) {
                if self
                    .use_approved(&approved.id, &context.request_id, now_ms)
                    .await?
                {
                    let used = self.get(&approved.id).await?.ok_or(Error::NotFound)?;
                    return Ok(Standing::Used(used));
                }
                continue;
            }
            if let Some(pending) = open.iter().find(|a| a.state == ApprovalState::Pending) {
                return Ok(Standing::Pending(pending.clone()));
            }
            if let Some(rejected) = open
                .into_iter()
                .find(|a| a.state == ApprovalState::Rejected)
            {
                return Ok(Standing::Rejected(rejected));
            }
            break;
        }
        let pending = self.pending_count(call, now_ms).await?;
        if pending >= limits.max_pending_per_principal {
            return Ok(Standing::TooManyPending { pending });
        }
        self.create(
            new_id,
            call,
            context,
            now_ms,
            now_ms + limits.pending_ttl_ms,
        )
        .await?;
        let created = self.get(new_id).await?.ok_or(Error::NotFound)?;
        Ok(Standing::Created(created))
    }

    async fn pending_count(&self, call: &HeldCall, now_ms: i64) -> Result<i64, Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM approval WHERE issuer = $1 AND subject = $2 \
                 AND tenant = $3 AND state = 'pending' AND expires_ms > $4",
            )
            .bind(&call.issuer)
            .bind(&call.subject)
            .bind(&call.tenant)
            .bind(now_ms)
            .fetch_one(pool)
            .await
            .and_then(|row| row.try_get::<i64, _>("n"))
            .map_err(db)
        })
    }

    async fn create(
        &self,
        id: &str,
        call: &HeldCall,
        context: &CallContext,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), Error> {
        let roles = serde_json::to_string(&context.roles).map_err(|e| Error::InvalidRule {
            reason: format!("roles do not serialize: {e}"),
        })?;
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO approval (id, upstream, tool, issuer, subject, tenant, acting, \
                 args_digest, arguments, roles, rule, request_id, state, created_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14)",
            )
            .bind(id)
            .bind(&call.upstream)
            .bind(&call.tool)
            .bind(&call.issuer)
            .bind(&call.subject)
            .bind(&call.tenant)
            .bind(&call.acting)
            .bind(&call.args_digest)
            .bind(context.arguments.as_deref())
            .bind(&roles)
            .bind(&context.rule)
            .bind(&context.request_id)
            .bind(now_ms)
            .bind(expires_ms)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db)
        })
    }

    /// Marks approval `id` used by request `request_id`: `true` for exactly one caller, and
    /// only while it is approved and unexpired.
    async fn use_approved(&self, id: &str, request_id: &str, now_ms: i64) -> Result<bool, Error> {
        let n = on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE approval SET state = 'used', used_ms = $2, used_request_id = $3 \
                 WHERE id = $1 AND state = 'approved' AND expires_ms > $2",
            )
            .bind(id)
            .bind(now_ms)
            .bind(request_id)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Approves pending approval `id` as `actor`: the identical call may then go through once
    /// within `use_within_ms`. [`Error::NotFound`] unless it is pending and unexpired.
    pub async fn approve(
        &self,
        id: &str,
        actor: &str,
        use_within_ms: i64,
        now_ms: i64,
    ) -> Result<Approval, Error> {
        const APPROVE: &str = "UPDATE approval SET state = 'approved', decided_by = $2, \
             decided_ms = $3, expires_ms = $4, reason = $5 \
             WHERE id = $1 AND state = 'pending' AND expires_ms > $3";
        self.decide(
            APPROVE,
            "approved",
            id,
            actor,
            None,
            now_ms + use_within_ms,
            now_ms,
        )
        .await
    }

    /// Rejects pending approval `id` as `actor` (with an optional reason): identical calls are
    /// refused for `block_ms`. [`Error::NotFound`] unless it is pending and unexpired.
    pub async fn reject(
        &self,
        id: &str,
        actor: &str,
        reason: Option<&str>,
        block_ms: i64,
        now_ms: i64,
    ) -> Result<Approval, Error> {
        const REJECT: &str = "UPDATE approval SET state = 'rejected', decided_by = $2, \
             decided_ms = $3, expires_ms = $4, reason = $5 \
             WHERE id = $1 AND state = 'pending' AND expires_ms > $3";
        self.decide(
            REJECT,
            "rejected",
            id,
            actor,
            reason,
            now_ms + block_ms,
            now_ms,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        sql: &'static str,
        event: &'static str,
        id: &str,
        actor: &str,
        reason: Option<&str>,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<Approval, Error> {
        let done = on_pool!(&self.pool, pool => {
            sqlx::query(sql)
                .bind(id)
                .bind(actor)
                .bind(now_ms)
                .bind(expires_ms)
                .bind(reason)
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected()
        });
        if done != 1 {
            return Err(Error::NotFound);
        }
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO approval_history (approval_id, event, actor, time_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(event)
            .bind(actor)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(db)?;
        });
        self.get(id).await?.ok_or(Error::NotFound)
    }

    /// Every approver's decision (or those about one approval), oldest first.
    pub async fn events(&self, approval_id: Option<&str>) -> Result<Vec<ApprovalEvent>, Error> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, approval_id, event, actor, time_ms FROM approval_history \
                 WHERE ($1 IS NULL OR approval_id = $1) ORDER BY id",
            )
            .bind(approval_id)
            .fetch_all(pool)
            .await
            .map_err(db)?;
            rows.iter().map(read_event).collect()
        })
    }

    /// Up to `limit` decisions no replica has written into its audit chain yet, oldest first.
    pub async fn unaudited(&self, limit: i64) -> Result<Vec<ApprovalEvent>, Error> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, approval_id, event, actor, time_ms FROM approval_history \
                 WHERE audited_by IS NULL ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(db)?;
            rows.iter().map(read_event).collect()
        })
    }

    /// Claims decision `id` for `holder`'s audit chain: `true` for exactly one claimant.
    pub async fn claim_audit(&self, id: i64, holder: &str) -> Result<bool, Error> {
        let n = on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE approval_history SET audited_by = $2 WHERE id = $1 AND audited_by IS NULL",
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

    /// Deletes the approvals that lapsed before `before_ms` — pending ones nobody decided,
    /// approvals used or left unused, rejections whose block ended: none can affect a call any
    /// more — and the approvers' decisions about them that are already in an audit chain (one
    /// not yet written there is kept). Returns how many approvals and decisions went.
    pub async fn prune(&self, before_ms: i64) -> Result<(u64, u64), Error> {
        const APPROVALS: &str = "DELETE FROM approval WHERE expires_ms < $1";
        const HISTORY: &str = "DELETE FROM approval_history WHERE audited_by IS NOT NULL \
             AND approval_id NOT IN (SELECT id FROM approval)";
        Ok(on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await.map_err(db)?;
            let approvals = sqlx::query(APPROVALS)
                .bind(before_ms)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            let history = sqlx::query(HISTORY)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            tx.commit().await.map_err(db)?;
            (approvals, history)
        }))
    }

    /// Gives a claimed decision back (its audit record could not be written).
    pub async fn release_audit(&self, id: i64, holder: &str) -> Result<(), Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE approval_history SET audited_by = NULL WHERE id = $1 AND audited_by = $2",
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
