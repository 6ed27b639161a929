//! A writer batch encoded for its backend, row by row, before its transaction starts.
//!
//! The writer encodes the records of its next batch while the current one commits (see
//! `writer.rs`), so the transaction itself only ships bytes that are ready:
//!
//! - **SQLite**: the bound values of multi-row `INSERT`s of at most [`sql::ROWS_PER_INSERT`]
//!   rows. sqlx copies every borrowed `&str` it binds into a new `Arc` (and SQLite copies it once
//!   more), so text that tends to repeat within a chunk (tenant, issuer, method, chain id,
//!   lists, ...) is bound as one shared `Arc<str>` per distinct value.
//! - **Postgres**: one array per column in Postgres's binary array format, for one `INSERT ...
//!   SELECT unnest($1), unnest($2), ...` per batch whatever its size: no per-value
//!   allocation, and text goes in as length-prefixed bytes (nothing to escape).
//!
//! Why not `COPY` on Postgres: measured here, binary `COPY` costs the server about as much per
//! row as `UNNEST` once the gateway competes for the CPU, and sqlx 0.9.0 does not set
//! `TCP_NODELAY`, so the small `CopyDone` message after the data waits for the server's
//! delayed ACK (about 40 ms) in a quarter of the batches. An `UNNEST` insert goes out in one
//! write and never meets that.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgTypeInfo};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Postgres};

use crate::Error;
use crate::row::{CHAIN_COLUMNS, ChainedRow, HASH_VERSION_LITERAL, INSERT_COLUMNS};
use crate::sql::ROWS_PER_INSERT;

/// The rows of one batch, encoded for one backend.
#[derive(Debug)]
pub(crate) enum EncodedRows {
    Sqlite(SqliteRows),
    /// One `unnest` insert per chunk; a new chunk starts before any array would pass
    /// [`MAX_ARRAY_BYTES`].
    Postgres(Vec<PgRows>),
}

impl EncodedRows {
    pub(crate) fn new(backend: crate::Backend) -> Self {
        match backend {
            crate::Backend::Sqlite => Self::Sqlite(SqliteRows::default()),
            crate::Backend::Postgres => Self::Postgres(Vec::new()),
        }
    }

    /// Appends `row`; rows must be pushed in chain order. After an error the encoding may hold
    /// part of the row and must be dropped (the writer does: the batch fails, or the rows
    /// encoded ahead are made again).
    pub(crate) fn push(&mut self, row: &ChainedRow<'_>) -> Result<(), Error> {
        match self {
            Self::Sqlite(rows) => rows.push(row),
            Self::Postgres(chunks) => push_chunked(chunks, row, MAX_ARRAY_BYTES),
        }
    }

    /// How many rows were pushed.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Sqlite(rows) => rows.chunks.iter().map(|c| c.rows).sum(),
            Self::Postgres(chunks) => chunks.iter().map(|c| c.rows).sum(),
        }
    }
}

/// One multi-row `INSERT` of at most [`ROWS_PER_INSERT`] rows: its row count and bound values.
#[derive(Debug)]
pub(crate) struct SqliteChunk {
    pub rows: usize,
    pub args: SqliteArguments,
}

/// The SQLite encoding: a batch split into `INSERT` chunks.
#[derive(Debug, Default)]
pub(crate) struct SqliteRows {
    pub chunks: Vec<SqliteChunk>,
    /// The shared text values of the current chunk.
    shared: HashSet<Arc<str>>,
}

impl SqliteRows {
    fn push(&mut self, r: &ChainedRow<'_>) -> Result<(), Error> {
        if self.chunks.last().is_none_or(|c| c.rows == ROWS_PER_INSERT) {
            self.chunks.push(SqliteChunk {
                rows: 0,
                args: SqliteArguments::default(),
            });
            // Keeping values shared across chunks would only keep them alive longer.
            self.shared.clear();
        }
        let shared = &mut self.shared;
        let Some(chunk) = self.chunks.last_mut() else {
            unreachable!("a chunk was pushed above")
        };
        let args = &mut chunk.args;
        let c = &r.columns;
        let mut s = |v: &str| -> Arc<str> {
            match shared.get(v) {
                Some(a) => Arc::clone(a),
                None => {
                    let a: Arc<str> = Arc::from(v);
                    shared.insert(Arc::clone(&a));
                    a
                }
            }
        };
        let own = |v: &str| -> Arc<str> { Arc::from(v) };
        let bound = (|| {
            args.add(c.time_ms)?;
            args.add(own(c.request_id))?;
            args.add(c.session_id.map(&mut s))?;
            args.add(c.tenant.map(&mut s))?;
            args.add(c.subject.map(&mut s))?;
            args.add(c.issuer.map(&mut s))?;
            args.add(c.client_id.map(&mut s))?;
            args.add(s(&c.actors))?;
            args.add(c.token_id.map(&mut s))?;
            args.add(s(&c.scopes))?;
            args.add(s(&c.roles))?;
            args.add(s(c.upstream))?;
            args.add(s(c.method))?;
            args.add(c.target.map(&mut s))?;
            args.add(s(c.decision))?;
            args.add(s(c.reason))?;
            args.add(c.matched_rule.map(&mut s))?;
            args.add(c.policy_revision)?;
            args.add(c.http_status)?;
            args.add(c.jsonrpc_error)?;
            args.add(s(c.kind))?;
            args.add(c.trace_id.map(own))?;
            args.add(c.upstream_status)?;
            args.add(c.upstream_latency_ms)?;
            args.add(c.outcome.map(&mut s))?;
            args.add(c.args_digest.map(&mut s))?;
            args.add(c.arguments.map(own))?;
            args.add(s(&c.shown))?;
            args.add(c.client_addr.map(&mut s))?;
            args.add(c.repeat_count)?;
            args.add(c.first_time_ms)?;
            args.add(c.first_round_request_id.map(own))?;
            args.add(c.shadow.map(own))?;
            args.add(s(r.chain_id))?;
            args.add(r.seq)?;
            args.add(r.prev_hash.to_vec())?;
            args.add(r.hash.to_vec())
        })();
        bound.map_err(|e| crate::write_failed(sqlx::Error::Encode(e)))?;
        chunk.rows += 1;
        Ok(())
    }
}

/// `INSERT INTO audit_records (<columns>, <chain columns>) VALUES (...), ...` for `rows` rows,
/// in the order [`SqliteRows`] binds: every column but `hash_version`, which is the current
/// encoding version as a literal.
pub(crate) fn sqlite_insert_sql(rows: usize) -> String {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
        ?, ?, ?, ?, ?, ?, ?, ?, ?, ";
    let mut sql = format!("INSERT INTO audit_records ({INSERT_COLUMNS}, {CHAIN_COLUMNS}) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(ROW);
        sql.push_str(HASH_VERSION_LITERAL);
        sql.push_str(", ?, ?, ?, ?)");
    }
    sql
}

/// [`sqlite_insert_sql`] of a full chunk, built once.
pub(crate) static SQLITE_FULL_CHUNK_SQL: LazyLock<String> =
    LazyLock::new(|| sqlite_insert_sql(ROWS_PER_INSERT));

/// The Postgres insert of chained rows: one array per column, expanded by `unnest` on the
/// server, so the statement text is the same for every batch size (prepared once) and nothing
/// approaches the 65,535-bind limit. `$34` is the chain id, the same for every row.
///
/// The `unnest` calls are in the select list, where Postgres expands them in lockstep (the
/// arrays have one length), and not in `FROM UNNEST($1, $2, ...)`, which stores every
/// array's rows in a tuple store first: measured here, the select-list form costs the server
/// about 25% less per row (as little as a binary `COPY`).
fn unnest_sql(returning: &str) -> String {
    // Parameters: $1 time_ms, then the text columns in `TEXT_FIELDS` order, the integer columns
    // in `INT_FIELDS` order, the chain id, seq, prev_hash and hash; each named where its column
    // comes in the insert's column list.
    let text_at = |c: &str| TEXT_FIELDS.iter().position(|f| *f == c).map(|i| i + 2);
    let int_at = |c: &str| {
        INT_FIELDS
            .iter()
            .position(|f| *f == c)
            .map(|i| i + 2 + TEXT_FIELDS.len())
    };
    let chain = 2 + TEXT_FIELDS.len() + INT_FIELDS.len();
    let values: Vec<String> = INSERT_COLUMNS
        .split(", ")
        .chain(CHAIN_COLUMNS.split(", "))
        .map(|column| match column {
            "time_ms" => "unnest($1::bigint[])".to_owned(),
            "hash_version" => HASH_VERSION_LITERAL.to_owned(),
            "chain_id" => format!("${chain}"),
            "seq" => format!("unnest(${}::bigint[])", chain + 1),
            "prev_hash" => format!("unnest(${}::bytea[])", chain + 2),
            "hash" => format!("unnest(${}::bytea[])", chain + 3),
            c => match (text_at(c), int_at(c)) {
                (Some(i), _) => format!("unnest(${i}::text[])"),
                (None, Some(i)) => format!("unnest(${i}::bigint[])"),
                (None, None) => unreachable!("every insert column has a parameter: {c}"),
            },
        })
        .collect();
    format!(
        "INSERT INTO audit_records ({INSERT_COLUMNS}, {CHAIN_COLUMNS}) SELECT {}{returning}",
        values.join(", ")
    )
}

/// [`unnest_sql`] returning each row's id and seq (when a durable caller waits for an id).
pub(crate) static UNNEST_RETURNING_SQL: LazyLock<String> =
    LazyLock::new(|| unnest_sql(" RETURNING id, seq"));

/// [`unnest_sql`] returning nothing.
pub(crate) static UNNEST_SQL: LazyLock<String> = LazyLock::new(|| unnest_sql(""));

/// The most bytes one array parameter of a Postgres chunk holds before the next row starts a
/// new chunk. A Postgres value cannot exceed 1 GB; without a cap, a batch of records with large
/// recorded arguments would fail whole.
const MAX_ARRAY_BYTES: usize = 256 << 20;

/// Appends `row` to the last chunk, or to a new one when the last would pass `limit` bytes in
/// some array (a row always fits an empty chunk: each value is under 1 GB).
pub(crate) fn push_chunked(
    chunks: &mut Vec<PgRows>,
    row: &ChainedRow<'_>,
    limit: usize,
) -> Result<(), Error> {
    if !chunks.last().is_some_and(|c| c.fits(row, limit)) {
        chunks.push(PgRows::new());
    }
    let Some(chunk) = chunks.last_mut() else {
        unreachable!("a chunk was pushed above")
    };
    chunk.push(row)
}

/// The Postgres encoding: the 36 array parameters of [`UNNEST_SQL`] in the binary array format,
/// appended to element by element, and the chain id.
///
/// sqlx would encode a `Vec<&str>` per column the same way, but only from a complete column;
/// building the arrays here lets the rows be added one at a time, ahead of the transaction.
#[derive(Debug)]
pub(crate) struct PgRows {
    pub rows: usize,
    pub chain_id: String,
    time_ms: Int8Array,
    text: [TextArray; 25],
    ints: [Int8Array; 7],
    seq: Int8Array,
    prev_hash: ByteaArray,
    hash: ByteaArray,
}

impl PgRows {
    fn new() -> Self {
        Self {
            rows: 0,
            chain_id: String::new(),
            time_ms: Array::default(),
            text: std::array::from_fn(|_| Array::default()),
            ints: std::array::from_fn(|_| Array::default()),
            seq: Array::default(),
            prev_hash: Array::default(),
            hash: Array::default(),
        }
    }

    /// Whether `r` can join this chunk without an array passing `limit` bytes.
    fn fits(&self, r: &ChainedRow<'_>, limit: usize) -> bool {
        self.rows == 0
            || self
                .text
                .iter()
                .zip(text_values(r))
                .all(|(array, v)| array.body.len() + 4 + v.map_or(0, str::len) <= limit)
    }

    fn push(&mut self, r: &ChainedRow<'_>) -> Result<(), Error> {
        let c = &r.columns;
        let text = text_values(r);
        // Check every value before appending any, so a refused row leaves nothing behind.
        for (v, field) in text.iter().zip(TEXT_FIELDS) {
            if let Some(v) = v {
                if v.contains('\0') {
                    return Err(Error::Unstorable { field });
                }
                if v.len() >= 1 << 30 {
                    return Err(crate::write_failed(sqlx::Error::Encode(
                        format!("the {field} field is larger than Postgres text holds (1 GB)")
                            .into(),
                    )));
                }
            }
        }
        if self.rows == 0 {
            r.chain_id.clone_into(&mut self.chain_id);
        } else if self.chain_id != r.chain_id {
            // The chain id is bound once per batch. A writer has one chain, so this is a bug;
            // failing the batch is safer than a panic in the writer task.
            return Err(crate::write_failed(sqlx::Error::Protocol(
                "audit rows of two chains in one batch".into(),
            )));
        }
        self.time_ms.push(Some(&c.time_ms.to_be_bytes()));
        for (array, v) in self.text.iter_mut().zip(text) {
            array.push(v.map(str::as_bytes));
        }
        let ints = [
            c.policy_revision,
            c.http_status,
            c.jsonrpc_error,
            c.upstream_status,
            c.upstream_latency_ms,
            c.repeat_count,
            c.first_time_ms,
        ];
        for (array, v) in self.ints.iter_mut().zip(ints) {
            array.push(v.map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
        }
        self.seq.push(Some(&r.seq.to_be_bytes()));
        self.prev_hash.push(Some(&r.prev_hash));
        self.hash.push(Some(&r.hash));
        self.rows += 1;
        Ok(())
    }

    /// The bound parameters of [`UNNEST_SQL`].
    pub(crate) fn into_arguments(self) -> Result<PgArguments, Error> {
        let mut args = PgArguments::default();
        let added = (|| {
            args.add(self.time_ms)?;
            for text in self.text {
                args.add(text)?;
            }
            for int in self.ints {
                args.add(int)?;
            }
            args.add(self.chain_id)?;
            args.add(self.seq)?;
            args.add(self.prev_hash)?;
            args.add(self.hash)
        })();
        added.map_err(|e| crate::write_failed(sqlx::Error::Encode(e)))?;
        Ok(args)
    }
}

/// The text columns of `r` in the parameter order of `UNNEST_SQL` ([`TEXT_FIELDS`]).
fn text_values<'a>(r: &'a ChainedRow<'a>) -> [Option<&'a str>; 25] {
    let c = &r.columns;
    [
        Some(c.request_id),
        c.session_id,
        c.tenant,
        c.subject,
        c.issuer,
        c.client_id,
        Some(&c.actors),
        c.token_id,
        Some(&c.scopes),
        Some(&c.roles),
        Some(c.upstream),
        Some(c.method),
        c.target,
        Some(c.decision),
        Some(c.reason),
        c.matched_rule,
        Some(c.kind),
        c.trace_id,
        c.outcome,
        c.args_digest,
        c.arguments,
        Some(&c.shown),
        c.client_addr,
        c.first_round_request_id,
        c.shadow,
    ]
}

/// The integer columns of [`PgRows`] (besides `time_ms` and `seq`), in parameter order.
const INT_FIELDS: [&str; 7] = [
    "policy_revision",
    "http_status",
    "jsonrpc_error",
    "upstream_status",
    "upstream_latency_ms",
    "repeat_count",
    "first_time_ms",
];

/// The text columns of [`PgRows`], in parameter order (and the names of their fields, for
/// error messages).
const TEXT_FIELDS: [&str; 25] = [
    "request_id",
    "session_id",
    "tenant",
    "subject",
    "issuer",
    "client_id",
    "actors",
    "token_id",
    "scopes",
    "roles",
    "upstream",
    "method",
    "target",
    "decision",
    "reason",
    "matched_rule",
    "kind",
    "trace_id",
    "outcome",
    "args_digest",
    "arguments",
    "shown",
    "client_addr",
    "first_round_request_id",
    "shadow",
];

/// A one-dimensional Postgres array in the binary format, built element by element: `ELEM` is
/// the element type's OID, `ARRAY` the array type's.
#[derive(Debug, Default)]
pub(crate) struct Array<const ELEM: u32, const ARRAY: u32> {
    len: i32,
    has_null: bool,
    /// The elements: each a big-endian i32 length (-1 for NULL) and its bytes.
    body: Vec<u8>,
}

type TextArray = Array<25, 1009>;
type Int8Array = Array<20, 1016>;
type ByteaArray = Array<17, 1001>;

impl<const ELEM: u32, const ARRAY: u32> Array<ELEM, ARRAY> {
    /// Appends an element; its length was checked (under 1 GB) by the caller.
    fn push(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => {
                let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
                self.body.extend_from_slice(&len.to_be_bytes());
                self.body.extend_from_slice(v);
            }
            None => {
                self.has_null = true;
                self.body.extend_from_slice(&(-1i32).to_be_bytes());
            }
        }
        self.len += 1;
    }
}

impl<const ELEM: u32, const ARRAY: u32> sqlx::Type<Postgres> for Array<ELEM, ARRAY> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(ARRAY))
    }
}

impl<const ELEM: u32, const ARRAY: u32> sqlx::Encode<'_, Postgres> for Array<ELEM, ARRAY> {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        // Dimensions, null flag, element type, then per dimension its length and lower bound.
        buf.extend_from_slice(&1i32.to_be_bytes());
        buf.extend_from_slice(&i32::from(self.has_null).to_be_bytes());
        buf.extend_from_slice(&ELEM.to_be_bytes());
        buf.extend_from_slice(&self.len.to_be_bytes());
        buf.extend_from_slice(&1i32.to_be_bytes());
        buf.extend_from_slice(&self.body);
        Ok(sqlx::encode::IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::{CHAINED_COLUMN_COUNT, Columns};
    use authz_types::{AuditRecord, ReasonCode};

    fn row<'a>(record: &'a AuditRecord, seq: i64) -> ChainedRow<'a> {
        ChainedRow {
            columns: Columns::new(record).expect("columns"),
            chain_id: "gw",
            seq,
            prev_hash: [0; 32],
            hash: [1; 32],
        }
    }

    #[test]
    fn sqlite_rows_split_into_chunks_and_match_their_statement() {
        let record = AuditRecord::unauthenticated("r", "u", "m", ReasonCode::TokenMissing, 401);
        let mut rows = EncodedRows::new(crate::Backend::Sqlite);
        for seq in 1..=ROWS_PER_INSERT + 3 {
            rows.push(&row(&record, i64::try_from(seq).expect("seq")))
                .expect("push");
        }
        assert_eq!(rows.len(), ROWS_PER_INSERT + 3);
        let EncodedRows::Sqlite(rows) = rows else {
            panic!("sqlite")
        };
        let counts: Vec<usize> = rows.chunks.iter().map(|c| c.rows).collect();
        assert_eq!(counts, [ROWS_PER_INSERT, 3]);
        for chunk in &rows.chunks {
            assert_eq!(chunk.args.len(), chunk.rows * CHAINED_COLUMN_COUNT);
        }
        let sql = sqlite_insert_sql(2);
        assert_eq!(sql.matches('?').count(), 2 * CHAINED_COLUMN_COUNT);
        assert!(sql.ends_with(", 5, ?, ?, ?, ?)"), "{sql}");
        assert_eq!(*SQLITE_FULL_CHUNK_SQL, sqlite_insert_sql(ROWS_PER_INSERT));
    }

    #[test]
    fn pg_rows_start_a_new_chunk_before_an_array_passes_the_cap() {
        let mut small = AuditRecord::unauthenticated("r", "u", "m", ReasonCode::TokenMissing, 401);
        small.arguments = Some("x".repeat(100));
        let mut big = small.clone();
        big.arguments = Some("y".repeat(700));
        let mut chunks = Vec::new();
        for (record, seq) in [&small, &small, &big, &small, &big, &big]
            .into_iter()
            .zip(1..)
        {
            push_chunked(&mut chunks, &row(record, seq), 1000).expect("push");
        }
        // Each element takes its length plus 4 bytes: 104 + 104 + 704 fit in 1000, another 104
        // does not; 104 + 704 fit, another 704 does not.
        let counts: Vec<usize> = chunks.iter().map(|c| c.rows).collect();
        assert_eq!(counts, [3, 2, 1]);
        // A row larger than the cap still goes in, alone in its chunk.
        let mut huge = small.clone();
        huge.arguments = Some("z".repeat(5000));
        push_chunked(&mut chunks, &row(&huge, 7), 1000).expect("push");
        assert_eq!(chunks.last().map(|c| c.rows), Some(1));
        let mut rows = EncodedRows::Postgres(chunks);
        assert_eq!(rows.len(), 7);
        rows.push(&row(&small, 8)).expect("push");
        assert_eq!(rows.len(), 8);
    }

    #[test]
    fn pg_rows_build_binary_arrays_and_refuse_nul_whole() {
        let record = AuditRecord::unauthenticated("r-1", "u", "m", ReasonCode::TokenMissing, 401);
        let mut rows = PgRows::new();
        rows.push(&row(&record, 1)).expect("push");
        let before = rows.text.iter().map(|a| a.body.len()).sum::<usize>();
        let mut bad = record.clone();
        bad.subject = Some("a\0b".into());
        assert!(matches!(
            rows.push(&row(&bad, 2)),
            Err(Error::Unstorable { field: "subject" })
        ));
        let after = rows.text.iter().map(|a| a.body.len()).sum::<usize>();
        assert_eq!(before, after, "a refused row leaves nothing behind");
        assert_eq!(rows.rows, 1);
        assert_eq!(rows.chain_id, "gw");
        // request_id: one element of 3 bytes; session_id: one NULL.
        assert_eq!(
            rows.text[0].body,
            [&3i32.to_be_bytes()[..], b"r-1"].concat()
        );
        assert_eq!(rows.text[1].body, (-1i32).to_be_bytes());
        assert!(rows.text[1].has_null && !rows.text[0].has_null);
        let mut buf = PgArgumentBuffer::default();
        let encoded = sqlx::Encode::<Postgres>::encode_by_ref(&rows.text[0], &mut buf);
        assert!(matches!(encoded, Ok(sqlx::encode::IsNull::No)));
        let header = [1i32, 0, 25, 1, 1].map(i32::to_be_bytes).concat();
        assert_eq!(buf[..20], header[..]);
        assert_eq!(rows.into_arguments().expect("args").len(), 37);
        assert_eq!(
            *UNNEST_SQL,
            format!(
                "INSERT INTO audit_records ({INSERT_COLUMNS}, {CHAIN_COLUMNS}) SELECT \
                 unnest($1::bigint[]), unnest($2::text[]), unnest($3::text[]), \
                 unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), unnest($7::text[]), \
                 unnest($8::text[]), unnest($9::text[]), unnest($10::text[]), \
                 unnest($11::text[]), unnest($12::text[]), unnest($13::text[]), \
                 unnest($14::text[]), unnest($15::text[]), unnest($16::text[]), \
                 unnest($17::text[]), unnest($27::bigint[]), unnest($28::bigint[]), \
                 unnest($29::bigint[]), unnest($18::text[]), unnest($19::text[]), \
                 unnest($30::bigint[]), unnest($31::bigint[]), unnest($20::text[]), \
                 unnest($21::text[]), unnest($22::text[]), unnest($23::text[]), \
                 unnest($24::text[]), unnest($32::bigint[]), unnest($33::bigint[]), \
                 unnest($25::text[]), unnest($26::text[]), 5, $34, unnest($35::bigint[]), \
                 unnest($36::bytea[]), unnest($37::bytea[])"
            )
        );
    }
}
