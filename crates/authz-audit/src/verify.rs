//! Verification of the hash chains and checkpoints: walks each chain in seq order, recomputes
//! every hash and reports the first record that shows tampering, and what kind.
//!
//! # What is detected, and how it is named
//!
//! For each chain, starting after its latest anchor (pruned prefix) or at seq 1, every record
//! must have the next seq, link to the previous record's hash and carry the hash of its own
//! content. At the first record that does not, the verifier names what happened:
//!
//! - [`Tamper::Deleted`]: a gap in seq numbers, a record that links to a predecessor no longer
//!   stored (deleted and the rest renumbered), or a checkpoint beyond the chain's end (the tail
//!   was cut off).
//! - [`Tamper::Inserted`]: a record not part of the chain: the next genuine record links past
//!   it to its predecessor, or it sits at or before the anchor of a pruned prefix.
//! - [`Tamper::Reordered`]: a record that links to a record stored after it (seq values
//!   swapped).
//! - [`Tamper::Edited`]: a record whose content does not match its hash, when none of the
//!   above explains it. Each row is recomputed in its own encoding version (`hash_version`),
//!   so a changed version number shows as an edit too, as does a version-1 row (written
//!   before migration 0006) whose newer columns were filled in afterwards.
//! - [`Tamper::BadCheckpoint`]: a checkpoint or anchor whose signature does not verify (or is
//!   missing when a public key is given), or whose hash differs from the record at its seq.
//!
//! # What it cannot detect
//!
//! Hashes alone are no secret: someone who can write to the database and knows the encoding can
//! rewrite or extend the part of a chain after its last checkpoint consistently. Signed
//! checkpoints close that gap up to their seq ([`ChainReport::signed_through`]); a chain (or all
//! of its rows and checkpoints) deleted entirely leaves nothing to check here, so copy
//! checkpoints somewhere else (a log shipper) if that matters. Records written without a chain
//! ([`AuditStore::append`]) are only counted ([`VerifyReport::unchained_records`]).

use authz_types::AuditRecord;
use sqlx::QueryBuilder;

use crate::chained::hash32;
use crate::hash::{
    CheckpointKind, GENESIS_HASH, HashVersion, checkpoint_message, record_hash_with, to_hex,
};
use crate::keys::PublicKey;
use crate::row::{RawRow, SELECT_COLUMNS};
use crate::{AuditStore, Error, read_failed};
use authz_db::on_pool;

/// Rows read per query while walking a chain.
const PAGE: i64 = 2_000;

/// How far a renumbered record's original seq is searched for when classifying.
const RENUMBER_PROBE: i64 = 16;

/// What kind of tampering a finding shows. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tamper {
    Edited,
    Deleted,
    Inserted,
    Reordered,
    BadCheckpoint,
}

/// The first problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub chain_id: String,
    /// The seq where the chain breaks (for a deletion: the first missing seq).
    pub seq: i64,
    /// The id of the offending record, if it exists (`None` for missing records and
    /// checkpoint problems).
    pub record_id: Option<i64>,
    pub kind: Tamper,
    /// A sentence for people.
    pub detail: String,
}

/// The result for one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub chain_id: String,
    /// Records checked and found intact (up to the problem, if any).
    pub records: u64,
    /// The seq of the last pruned record, when the chain starts from an anchor.
    pub anchor_seq: Option<i64>,
    /// The last intact seq (the anchor's, or 0, when there are none).
    pub last_seq: i64,
    /// Checkpoints that matched the chain (and whose signature verified, given a key).
    pub checkpoints: u64,
    /// With a public key: the highest seq covered by a checkpoint with a valid signature.
    /// Records after it are protected by the hash chain only.
    pub signed_through: Option<i64>,
    pub problem: Option<Finding>,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: Vec<ChainReport>,
    /// Records without a chain (written before migration 0003 or by [`AuditStore::append`]);
    /// counted only when no chain filter is given.
    pub unchained_records: u64,
}

impl VerifyReport {
    /// True when no chain shows a problem.
    pub fn is_intact(&self) -> bool {
        self.chains.iter().all(|c| c.problem.is_none())
    }

    /// The first problem, in chain id order.
    pub fn first_problem(&self) -> Option<&Finding> {
        self.chains.iter().find_map(|c| c.problem.as_ref())
    }
}

/// Verifies every chain in `store`, or only `chain_id`. With `key`, every checkpoint and
/// anchor must carry a valid Ed25519 signature by it. `Err` only when the store cannot be read;
/// tampering is reported in the [`VerifyReport`].
pub async fn verify(
    store: &AuditStore,
    chain_id: Option<&str>,
    key: Option<&PublicKey>,
) -> Result<VerifyReport, Error> {
    let chains = match chain_id {
        Some(c) => vec![c.to_owned()],
        None => store.chain_ids().await?,
    };
    let unchained_records = match chain_id {
        Some(_) => 0,
        None => store.unchained_count().await?,
    };
    let mut reports = Vec::with_capacity(chains.len());
    for chain in chains {
        reports.push(verify_chain(store, &chain, key).await?);
    }
    Ok(VerifyReport {
        chains: reports,
        unchained_records,
    })
}

/// A chained row as read back.
#[derive(Debug, sqlx::FromRow)]
struct ChainRow {
    #[sqlx(flatten)]
    raw: RawRow,
    seq: i64,
    prev_hash: Option<Vec<u8>>,
    hash: Option<Vec<u8>>,
    hash_version: i64,
}

/// A checkpoint or anchor row.
#[derive(Debug, sqlx::FromRow)]
struct CheckpointRow {
    id: i64,
    seq: i64,
    hash: Vec<u8>,
    time_ms: i64,
    signature: Option<Vec<u8>>,
}

/// A row decoded for checking; `None` fields mean the stored value is unusable.
struct Checked {
    id: i64,
    seq: i64,
    record: Option<AuditRecord>,
    /// The encoding the row says its hash uses; `None` for a number this build does not know.
    version: Option<HashVersion>,
    prev: Option<[u8; 32]>,
    hash: Option<[u8; 32]>,
}

impl Checked {
    fn from_row(row: ChainRow) -> Self {
        let id = row.raw.id;
        Self {
            id,
            seq: row.seq,
            record: row.raw.into_stored().ok().map(|s| s.record),
            version: HashVersion::from_number(row.hash_version),
            prev: row.prev_hash.and_then(|h| hash32(&h, id, "prev_hash").ok()),
            hash: row.hash.and_then(|h| hash32(&h, id, "hash").ok()),
        }
    }

    /// Whether the content, hashed at `seq` after its stored `prev` in the row's own encoding
    /// version, gives the stored hash. A version-1 row whose newer columns are filled does
    /// not match: version 1 cannot vouch for them.
    fn content_matches_at(&self, chain_id: &str, seq: i64) -> bool {
        match (&self.record, self.version, &self.prev, &self.hash) {
            (Some(r), Some(version), Some(prev), Some(hash)) => {
                record_hash_with(version, r, chain_id, seq, prev) == Some(*hash)
            }
            _ => false,
        }
    }
}

async fn verify_chain(
    store: &AuditStore,
    chain_id: &str,
    key: Option<&PublicKey>,
) -> Result<ChainReport, Error> {
    let mut report = ChainReport {
        chain_id: chain_id.to_owned(),
        records: 0,
        anchor_seq: None,
        last_seq: 0,
        checkpoints: 0,
        signed_through: None,
        problem: None,
    };
    let finding = |seq: i64, record_id: Option<i64>, kind: Tamper, detail: String| Finding {
        chain_id: chain_id.to_owned(),
        seq,
        record_id,
        kind,
        detail,
    };

    let mut expected_seq = 1;
    let mut expected_prev = GENESIS_HASH;
    if let Some(anchor) = store
        .checkpoints(chain_id, CheckpointKind::Anchor, 0)
        .await?
        .pop()
    {
        if let Some(problem) = check_signature(chain_id, CheckpointKind::Anchor, &anchor, key) {
            report.problem = Some(finding(anchor.seq, None, Tamper::BadCheckpoint, problem));
            return Ok(report);
        }
        let Ok(hash) = hash32(&anchor.hash, anchor.id, "hash") else {
            let detail = format!("anchor {} has a hash that is not 32 bytes", anchor.id);
            report.problem = Some(finding(anchor.seq, None, Tamper::BadCheckpoint, detail));
            return Ok(report);
        };
        report.anchor_seq = Some(anchor.seq);
        report.last_seq = anchor.seq;
        expected_seq = anchor.seq + 1;
        expected_prev = hash;
        if let Some((id, seq)) = store.first_row_up_to(chain_id, anchor.seq).await? {
            let detail = format!(
                "record {id} has seq {seq}, but records up to seq {} were pruned",
                anchor.seq
            );
            report.problem = Some(finding(seq, Some(id), Tamper::Inserted, detail));
            return Ok(report);
        }
    }
    let mut checkpoints = store
        .checkpoints(chain_id, CheckpointKind::Checkpoint, expected_seq)
        .await?
        .into_iter()
        .peekable();

    let mut after = expected_seq - 1;
    let mut prev_id: Option<i64> = None;
    loop {
        let rows = store.chain_page(chain_id, after).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in rows {
            let row = Checked::from_row(row);
            let links = row.prev == Some(expected_prev);
            if row.seq == expected_seq && links && row.content_matches_at(chain_id, row.seq) {
                // Intact; check the checkpoints that vouch for this record.
                while let Some(cp) = checkpoints.next_if(|cp| cp.seq <= row.seq) {
                    let problem = if cp.seq < row.seq {
                        Some(format!(
                            "checkpoint {} names seq {}, which is not in the chain",
                            cp.id, cp.seq
                        ))
                    } else if Some(cp.hash.as_slice()) != row.hash.as_ref().map(|h| &h[..]) {
                        Some(format!(
                            "checkpoint {} says seq {} has hash {}, the record has {}",
                            cp.id,
                            cp.seq,
                            to_hex(&cp.hash),
                            row.hash.map(|h| to_hex(&h)).unwrap_or_default()
                        ))
                    } else {
                        check_signature(chain_id, CheckpointKind::Checkpoint, &cp, key)
                    };
                    if let Some(detail) = problem {
                        report.problem = Some(finding(cp.seq, None, Tamper::BadCheckpoint, detail));
                        return Ok(report);
                    }
                    report.checkpoints += 1;
                    if key.is_some() {
                        report.signed_through = Some(cp.seq);
                    }
                }
                report.records += 1;
                report.last_seq = row.seq;
                expected_seq += 1;
                // An intact row always has a hash; the fallback is unreachable.
                expected_prev = row.hash.unwrap_or(GENESIS_HASH);
                prev_id = Some(row.id);
                continue;
            }
            report.problem =
                Some(classify(store, chain_id, &row, expected_seq, &expected_prev, prev_id).await?);
            return Ok(report);
        }
    }
    if let Some(cp) = checkpoints.next() {
        let detail = format!(
            "checkpoint {} vouches for records up to seq {}, but the chain ends at seq {}",
            cp.id, cp.seq, report.last_seq
        );
        report.problem = Some(finding(report.last_seq + 1, None, Tamper::Deleted, detail));
    }
    Ok(report)
}

/// Names what happened at `row`, the first record that does not continue the chain.
async fn classify(
    store: &AuditStore,
    chain_id: &str,
    row: &Checked,
    expected_seq: i64,
    expected_prev: &[u8; 32],
    prev_id: Option<i64>,
) -> Result<Finding, Error> {
    let found = |seq: i64, record_id: Option<i64>, kind: Tamper, detail: String| Finding {
        chain_id: chain_id.to_owned(),
        seq,
        record_id,
        kind,
        detail,
    };
    if row.seq > expected_seq {
        let detail = format!(
            "records with seq {expected_seq}..={} are missing; the next stored record is {} (seq {})",
            row.seq - 1,
            row.id,
            row.seq
        );
        return Ok(found(expected_seq, None, Tamper::Deleted, detail));
    }
    if row.prev == Some(*expected_prev) {
        let detail = format!(
            "record {} (seq {}) does not match its hash: its content was changed",
            row.id, row.seq
        );
        return Ok(found(row.seq, Some(row.id), Tamper::Edited, detail));
    }
    // The record does not link to its predecessor. Where does it link to?
    if let Some(prev) = &row.prev
        && let Some((linked_id, linked_seq)) = store.row_with_hash(chain_id, prev).await?
    {
        if linked_seq > row.seq {
            let detail = format!(
                "record {} (seq {}) follows record {linked_id}, which is stored later at seq \
                 {linked_seq}: the order was changed",
                row.id, row.seq
            );
            return Ok(found(row.seq, Some(row.id), Tamper::Reordered, detail));
        }
        if linked_seq < expected_seq - 1 {
            let first = linked_seq + 1;
            let first_id = store.id_at(chain_id, first).await?;
            let detail = format!(
                "record {} (seq {}) follows record {linked_id} (seq {linked_seq}); the records \
                 between, from seq {first}, were inserted",
                row.id, row.seq
            );
            return Ok(found(first, first_id, Tamper::Inserted, detail));
        }
    }
    if let Some((next_id, next_seq)) = store
        .row_linking_to(chain_id, expected_prev, row.seq)
        .await?
    {
        let detail = format!(
            "record {next_id} (seq {next_seq}) follows record {} directly, so record {} (seq \
             {}) was inserted",
            prev_id.map_or_else(|| "the chain start".to_owned(), |id| id.to_string()),
            row.id,
            row.seq
        );
        return Ok(found(row.seq, Some(row.id), Tamper::Inserted, detail));
    }
    if let Some(original) =
        (row.seq + 1..=row.seq + RENUMBER_PROBE).find(|s| row.content_matches_at(chain_id, *s))
    {
        let detail = format!(
            "record {} was seq {original} and is now seq {}: the records before it were deleted \
             and the rest renumbered",
            row.id, row.seq
        );
        return Ok(found(expected_seq, None, Tamper::Deleted, detail));
    }
    let detail = format!(
        "record {} (seq {}) does not match its hash or link to its predecessor",
        row.id, row.seq
    );
    Ok(found(row.seq, Some(row.id), Tamper::Edited, detail))
}

/// `Some(problem)` when `key` is given and the checkpoint's signature is missing or wrong.
fn check_signature(
    chain_id: &str,
    kind: CheckpointKind,
    cp: &CheckpointRow,
    key: Option<&PublicKey>,
) -> Option<String> {
    let key = key?;
    let what = kind.as_str();
    let Some(signature) = &cp.signature else {
        return Some(format!("{what} {} (seq {}) is not signed", cp.id, cp.seq));
    };
    let Ok(hash) = <[u8; 32]>::try_from(cp.hash.as_slice()) else {
        return Some(format!("{what} {} has a hash that is not 32 bytes", cp.id));
    };
    let message = checkpoint_message(kind, chain_id, cp.seq, &hash, cp.time_ms);
    (!key.verifies(&message, signature)).then(|| {
        format!(
            "{what} {} (seq {}) has a signature that does not verify with the given key",
            cp.id, cp.seq
        )
    })
}

impl AuditStore {
    /// Every chain id with records or checkpoints, sorted.
    async fn chain_ids(&self) -> Result<Vec<String>, Error> {
        const SQL: &str = "SELECT chain_id FROM audit_records WHERE chain_id IS NOT NULL \
             UNION SELECT chain_id FROM audit_checkpoints ORDER BY 1";
        on_pool!(self.pool, pool => {
            sqlx::query_scalar::<DB, String>(SQL).fetch_all(pool).await.map_err(read_failed)
        })
    }

    async fn unchained_count(&self) -> Result<u64, Error> {
        const SQL: &str = "SELECT COUNT(*) FROM audit_records WHERE chain_id IS NULL";
        let n: i64 = on_pool!(self.pool, pool => {
            sqlx::query_scalar::<DB, i64>(SQL).fetch_one(pool).await.map_err(read_failed)?
        });
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Checkpoints of one kind with `seq >= from_seq`, ascending.
    async fn checkpoints(
        &self,
        chain_id: &str,
        kind: CheckpointKind,
        from_seq: i64,
    ) -> Result<Vec<CheckpointRow>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT id, seq, hash, time_ms, signature FROM audit_checkpoints WHERE chain_id = ",
            );
            qb.push_bind(chain_id);
            qb.push(" AND kind = ");
            qb.push_bind(kind.as_str());
            qb.push(" AND seq >= ");
            qb.push_bind(from_seq);
            qb.push(" ORDER BY seq, id");
            qb.build_query_as().fetch_all(pool).await.map_err(read_failed)
        })
    }

    /// The next page of a chain after `after_seq`, in seq order.
    async fn chain_page(&self, chain_id: &str, after_seq: i64) -> Result<Vec<ChainRow>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(format!(
                "SELECT {SELECT_COLUMNS}, seq, prev_hash, hash, \
                 CAST(hash_version AS BIGINT) AS hash_version FROM audit_records WHERE chain_id = "
            ));
            qb.push_bind(chain_id);
            qb.push(" AND seq > ");
            qb.push_bind(after_seq);
            qb.push(" ORDER BY seq LIMIT ");
            qb.push_bind(PAGE);
            qb.build_query_as().fetch_all(pool).await.map_err(read_failed)
        })
    }

    /// The first record of a chain with `seq <= up_to`: (id, seq).
    async fn first_row_up_to(
        &self,
        chain_id: &str,
        up_to: i64,
    ) -> Result<Option<(i64, i64)>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT id, seq FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain_id);
            qb.push(" AND seq <= ");
            qb.push_bind(up_to);
            qb.push(" ORDER BY seq LIMIT 1");
            qb.build_query_as().fetch_optional(pool).await.map_err(read_failed)
        })
    }

    /// The record of a chain whose stored hash is `hash`: (id, seq).
    async fn row_with_hash(
        &self,
        chain_id: &str,
        hash: &[u8; 32],
    ) -> Result<Option<(i64, i64)>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT id, seq FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain_id);
            qb.push(" AND hash = ");
            qb.push_bind(&hash[..]);
            qb.push(" ORDER BY seq LIMIT 1");
            qb.build_query_as().fetch_optional(pool).await.map_err(read_failed)
        })
    }

    /// The first record after `after_seq` whose `prev_hash` is `prev`: (id, seq).
    async fn row_linking_to(
        &self,
        chain_id: &str,
        prev: &[u8; 32],
        after_seq: i64,
    ) -> Result<Option<(i64, i64)>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT id, seq FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain_id);
            qb.push(" AND prev_hash = ");
            qb.push_bind(&prev[..]);
            qb.push(" AND seq > ");
            qb.push_bind(after_seq);
            qb.push(" ORDER BY seq LIMIT 1");
            qb.build_query_as().fetch_optional(pool).await.map_err(read_failed)
        })
    }

    /// The id of the record at `seq`.
    async fn id_at(&self, chain_id: &str, seq: i64) -> Result<Option<i64>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT id FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain_id);
            qb.push(" AND seq = ");
            qb.push_bind(seq);
            qb.build_query_scalar().fetch_optional(pool).await.map_err(read_failed)
        })
    }
}
