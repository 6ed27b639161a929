//! SQL text of the store's statements, built once for both backends.
//!
//! The statements are the same on SQLite and Postgres except for placeholders (`?` against
//! `$1..$N`), which `QueryBuilder` writes for each backend; that is why these builders are
//! generic over the database instead of being written out twice.

use authz_types::{AuditFilter, Effect};

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::AuditQuery;
use crate::row::{CHAINED_COLUMN_COUNT, COLUMN_COUNT, SELECT_COLUMNS};

/// Rows per multi-row `INSERT`: 885 rows × 33 values (37 for a chained row) = at most 32,745
/// bound values, under SQLite's 32,766 and Postgres's 65,535 per statement (about the 1000
/// rows measured fastest on both, before the record had 31 columns). At 38 values per chained
/// row it must drop to 862.
pub(crate) const ROWS_PER_INSERT: usize = 885;

const _: () = assert!(ROWS_PER_INSERT * COLUMN_COUNT <= 32_766);
const _: () = assert!(ROWS_PER_INSERT * CHAINED_COLUMN_COUNT <= 32_766);

/// Records returned when a filter sets no limit.
pub(crate) const DEFAULT_LIMIT: u32 = 100;

/// The most records one query returns, whatever the filter asks for.
pub(crate) const MAX_LIMIT: u32 = 10_000;

/// `SELECT <columns> FROM audit_records WHERE ...`: newest first (`ORDER BY time_ms DESC, id
/// DESC`), or with `after_id` oldest first by id; at most the filter's limit.
pub(crate) fn select_query<'a, DB>(q: &'a AuditQuery) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!("SELECT {SELECT_COLUMNS} FROM audit_records"));
    push_where(&mut qb, q);
    if q.after_id.is_some() {
        // Following the log (`tail -f`): the next records in insert order.
        qb.push(" ORDER BY id ASC LIMIT ");
    } else {
        qb.push(" ORDER BY time_ms DESC, id DESC LIMIT ");
    }
    qb.push_bind(i64::from(effective_limit(&q.filter)));
    qb
}

/// `SELECT COUNT(*) FROM audit_records WHERE ...` (the filter's limit does not apply).
pub(crate) fn count_query<'a, DB>(q: &'a AuditQuery) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM audit_records");
    push_where(&mut qb, q);
    qb
}

pub(crate) fn effective_limit(filter: &AuditFilter) -> u32 {
    filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
}

fn push_where<'a, DB>(qb: &mut QueryBuilder<DB>, q: &'a AuditQuery)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let f = &q.filter;
    let mut first = true;
    let mut clause = |qb: &mut QueryBuilder<DB>, sql: &str| {
        qb.push(if first { " WHERE " } else { " AND " });
        qb.push(sql);
        first = false;
    };
    if let Some(subject) = &f.subject {
        clause(qb, "subject = ");
        qb.push_bind(subject.as_str());
    }
    if let Some(decision) = f.decision {
        // A literal, not a bind: one of two fixed strings, and written out so that the
        // partial index on denials (migration 0007) matches the condition on both backends.
        clause(qb, "decision = ");
        qb.push(match decision {
            Effect::Allow => "'allow'",
            Effect::Deny => "'deny'",
        });
    }
    if let Some(upstream) = &f.upstream {
        clause(qb, "upstream = ");
        qb.push_bind(upstream.as_str());
    }
    if let Some(request_id) = &f.request_id {
        clause(qb, "request_id = ");
        qb.push_bind(request_id.as_str());
    }
    if let Some(since) = f.since_ms {
        clause(qb, "time_ms >= ");
        qb.push_bind(since);
    }
    if let Some(until) = f.until_ms {
        clause(qb, "time_ms < ");
        qb.push_bind(until);
    }
    if let Some(tenant) = &q.tenant {
        clause(qb, "tenant = ");
        qb.push_bind(tenant.as_str());
    }
    if let Some(method) = &q.method {
        clause(qb, "method = ");
        qb.push_bind(method.as_str());
    }
    if let Some(target) = &q.target {
        clause(qb, "target = ");
        qb.push_bind(target.as_str());
    }
    if let Some(reason) = q.reason {
        clause(qb, "reason = ");
        qb.push_bind(reason.as_str());
    }
    if let Some(kind) = q.kind {
        clause(qb, "kind = ");
        qb.push_bind(kind.as_str());
    }
    if let Some(chain_id) = &q.chain_id {
        clause(qb, "chain_id = ");
        qb.push_bind(chain_id.as_str());
    }
    if let Some(after) = q.after_id {
        clause(qb, "id > ");
        qb.push_bind(after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Postgres, Sqlite};

    #[test]
    fn select_binds_every_filter_in_order() {
        let f = AuditFilter {
            subject: Some("alice".into()),
            decision: Some(Effect::Deny),
            upstream: Some("tickets".into()),
            request_id: Some("r1".into()),
            since_ms: Some(1),
            until_ms: Some(2),
            limit: Some(50_000),
        };
        let pg = select_query::<Postgres>(&AuditQuery {
            filter: f.clone(),
            ..Default::default()
        })
        .into_string();
        assert!(pg.ends_with(
            "FROM audit_records WHERE subject = $1 AND decision = 'deny' AND upstream = $2 \
             AND request_id = $3 AND time_ms >= $4 AND time_ms < $5 \
             ORDER BY time_ms DESC, id DESC LIMIT $6"
        ));
        let q = AuditQuery {
            filter: AuditFilter {
                subject: Some("alice".into()),
                ..Default::default()
            },
            tenant: Some("acme".into()),
            method: Some("tools/call".into()),
            target: Some("get".into()),
            reason: Some(authz_types::ReasonCode::PolicyAllow),
            kind: Some(authz_types::RecordKind::Outcome),
            chain_id: Some("gw".into()),
            after_id: Some(9),
        };
        assert!(select_query::<Postgres>(&q).into_string().ends_with(
            "WHERE subject = $1 AND tenant = $2 AND method = $3 AND target = $4 AND reason = $5 \
             AND kind = $6 AND chain_id = $7 AND id > $8 ORDER BY id ASC LIMIT $9"
        ));
        let lite = count_query::<Sqlite>(&AuditQuery::default()).into_string();
        assert_eq!(lite, "SELECT COUNT(*) FROM audit_records");
        assert_eq!(effective_limit(&f), MAX_LIMIT);
        assert_eq!(effective_limit(&AuditFilter::default()), DEFAULT_LIMIT);
    }
}
