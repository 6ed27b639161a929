//! The canonical, versioned encoding of chained audit records and checkpoints, and their hashes.
//!
//! # Encoding, version 1
//!
//! A record's `hash` is SHA-256 over the concatenation of the following items, in this order.
//! Every item is self-delimiting, so no two different records encode to the same bytes:
//!
//! | item | encoding |
//! |---|---|
//! | domain tag | string `"authz-audit/record/v1"` |
//! | `chain_id` | string |
//! | `seq` | integer |
//! | `prev_hash` | bytes (32; all zero for the first record of a chain) |
//! | `time_ms` | integer |
//! | `request_id` | string |
//! | `session_id`, `tenant`, `subject`, `issuer`, `client_id` | optional string each |
//! | `actors` | list |
//! | `token_id` | optional string |
//! | `scopes`, `roles` | list each |
//! | `upstream`, `method` | string each |
//! | `target` | optional string |
//! | `decision` | string ([`Effect::as_str`](authz_types::Effect::as_str)) |
//! | `reason` | string ([`ReasonCode::as_str`](authz_types::ReasonCode::as_str)) |
//! | `matched_rule` | optional string |
//! | `policy_revision` | optional integer |
//! | `http_status` | optional integer (the `u16` widened) |
//! | `jsonrpc_error` | optional integer |
//!
//! where
//! - *integer*: 8 bytes, two's complement, big-endian;
//! - *string* / *bytes*: length as 8 bytes big-endian unsigned, then the UTF-8 / raw bytes;
//! - *optional X*: one byte `0x00` when absent, or `0x01` followed by X;
//! - *list*: element count as 8 bytes big-endian unsigned, then each element as a string.
//!
//! A checkpoint's signature is Ed25519 over the same kind of encoding of: the domain tag
//! `"authz-audit/checkpoint/v1"`, the kind (`"checkpoint"` or `"anchor"`), `chain_id`, `seq`,
//! `hash` (bytes) and `time_ms`. The kind is included so an anchor cannot be passed off as a
//! checkpoint or the other way round.
//!
//! A later change of the encoding gets a new domain tag (`.../v2`); rows then need a version
//! column, which this version does not have yet.

use authz_types::AuditRecord;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record of a chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

const RECORD_TAG: &str = "authz-audit/record/v1";
const CHECKPOINT_TAG: &str = "authz-audit/checkpoint/v1";

/// Appends items of the encoding to any sink: a hasher or a byte buffer.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn int(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        // A usize always fits in a u64 on the platforms Rust supports.
        self.put(&(b.len() as u64).to_be_bytes());
        self.put(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.put(&[0]),
            Some(s) => {
                self.put(&[1]);
                self.str(s);
            }
        }
    }

    fn opt_int(&mut self, v: Option<i64>) {
        match v {
            None => self.put(&[0]),
            Some(v) => {
                self.put(&[1]);
                self.int(v);
            }
        }
    }

    fn list(&mut self, items: &[String]) {
        self.put(&(items.len() as u64).to_be_bytes());
        for item in items {
            self.str(item);
        }
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The hash of `record` at position `seq` of chain `chain_id`, following the record whose hash
/// is `prev_hash` ([`GENESIS_HASH`] for the first). See the module documentation of the
/// encoding; an external verifier can reimplement it from that table alone.
pub fn record_hash(
    record: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.str(RECORD_TAG);
    h.str(chain_id);
    h.int(seq);
    h.bytes(prev_hash);
    let r = record;
    h.int(r.time_ms);
    h.str(&r.request_id);
    h.opt_str(r.session_id.as_deref());
    h.opt_str(r.tenant.as_deref());
    h.opt_str(r.subject.as_deref());
    h.opt_str(r.issuer.as_deref());
    h.opt_str(r.client_id.as_deref());
    h.list(&r.actors);
    h.opt_str(r.token_id.as_deref());
    h.list(&r.scopes);
    h.list(&r.roles);
    h.str(&r.upstream);
    h.str(&r.method);
    h.opt_str(r.target.as_deref());
    h.str(r.decision.as_str());
    h.str(r.reason.as_str());
    h.opt_str(r.matched_rule.as_deref());
    h.opt_int(r.policy_revision);
    h.opt_int(r.http_status.map(i64::from));
    h.opt_int(r.jsonrpc_error);
    h.finalize().into()
}

/// What a checkpoint row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointKind {
    /// Written by the writer every K records or T seconds.
    Checkpoint,
    /// Written by pruning: the last deleted record of a chain.
    Anchor,
}

impl CheckpointKind {
    /// The stored string (`kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkpoint => "checkpoint",
            Self::Anchor => "anchor",
        }
    }
}

/// The bytes a checkpoint signature covers.
pub(crate) fn checkpoint_message(
    kind: CheckpointKind,
    chain_id: &str,
    seq: i64,
    hash: &[u8; 32],
    time_ms: i64,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.str(CHECKPOINT_TAG);
    m.str(kind.as_str());
    m.str(chain_id);
    m.int(seq);
    m.bytes(hash);
    m.int(time_ms);
    m
}

/// Lowercase hex of `bytes`, for messages and key files.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses hex (either case) into exactly `N` bytes.
pub(crate) fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::ReasonCode;

    fn sample() -> AuditRecord {
        let mut r = AuditRecord::unauthenticated(
            "req-1",
            "tickets",
            "tools/call",
            ReasonCode::TokenMissing,
            401,
        );
        r.time_ms = 1_767_225_600_123;
        r
    }

    #[test]
    fn encoding_is_pinned() {
        // A fixed vector, also computed by an independent implementation of the table in the
        // module documentation. If this changes, stored chains no longer verify, so the
        // encoding version (domain tag) must change with it.
        let h = record_hash(&sample(), "gw-1", 1, &GENESIS_HASH);
        assert_eq!(
            to_hex(&h),
            "ed3e7545c40b6ded0bbb9ba3a69ea258246801b3285dd3dca43e0a4b6fa27f6e"
        );
        let mut buf = Vec::new();
        buf.opt_str(Some("ab"));
        buf.opt_str(None);
        buf.list(&["x".into()]);
        assert_eq!(
            buf,
            [
                1, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                0, 1, b'x'
            ]
        );
    }

    #[test]
    fn every_field_and_position_changes_the_hash() {
        let base = record_hash(&sample(), "gw-1", 1, &GENESIS_HASH);
        assert_ne!(base, record_hash(&sample(), "gw-2", 1, &GENESIS_HASH));
        assert_ne!(base, record_hash(&sample(), "gw-1", 2, &GENESIS_HASH));
        assert_ne!(base, record_hash(&sample(), "gw-1", 1, &[1; 32]));
        type Change = fn(&mut AuditRecord);
        let changes: [Change; 8] = [
            |r| r.time_ms += 1,
            |r| r.session_id = Some(String::new()),
            |r| r.actors.push(String::new()),
            |r| r.http_status = None,
            |r| r.http_status = Some(402),
            |r| r.subject = Some("alice".into()),
            |r| r.jsonrpc_error = Some(0),
            |r| r.reason = ReasonCode::PolicyAllow,
        ];
        for change in changes {
            let mut r = sample();
            change(&mut r);
            assert_ne!(base, record_hash(&r, "gw-1", 1, &GENESIS_HASH), "{r:?}");
        }
        // Moving a value between adjacent fields is a different record.
        let mut a = sample();
        a.scopes = vec!["x".into()];
        let mut b = sample();
        b.roles = vec!["x".into()];
        assert_ne!(
            record_hash(&a, "c", 1, &GENESIS_HASH),
            record_hash(&b, "c", 1, &GENESIS_HASH)
        );
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0x7f, 0xff, 0xa5];
        assert_eq!(to_hex(&bytes), "007fffa5");
        assert_eq!(from_hex::<4>("007FFFa5"), Some(bytes));
        assert_eq!(from_hex::<4>("007fffa"), None);
        assert_eq!(from_hex::<4>("007fffag"), None);
    }
}
