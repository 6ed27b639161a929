//! The canonical, versioned encodings of chained audit records and checkpoints, and their
//! hashes.
//!
//! Each chained row stores the version of the encoding its hash was computed with
//! (`hash_version`, see [`HashVersion`]). Rows written before migration 0006 are version 1;
//! rows written before migration 0008 are version 1 or 2; rows written before migration 0010
//! are version 1, 2 or 3; rows written before migration 0015 are version 1 to 4; this build
//! writes version 5. Verification recomputes every row with its own version, so a
//! chain may mix versions (an upgraded writer continues its chain in the new one).
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
//! Version 1 does not cover the fields added in version 2, so it can only stand for a record
//! whose version-2 fields are all at their defaults (`kind` = decision, the options absent,
//! `shown` empty): a version-1 row whose new columns were filled in afterwards does not verify.
//!
//! # Encoding, version 2
//!
//! The items of version 1, in the same order and with the same encodings, except that the
//! domain tag is the string `"authz-audit/record/v2"`; then, appended after `jsonrpc_error`:
//!
//! | item | encoding |
//! |---|---|
//! | `kind` | string ([`RecordKind::as_str`](authz_types::RecordKind::as_str): `decision` or `outcome`) |
//! | `trace_id` | optional string |
//! | `upstream_status` | optional integer (the `u16` widened) |
//! | `upstream_latency_ms` | optional integer |
//! | `outcome` | optional string |
//! | `args_digest` | optional string |
//! | `arguments` | optional string |
//! | `shown` | list |
//!
//! # Encoding, version 3
//!
//! The items of version 2, in the same order and with the same encodings, except that the
//! domain tag is the string `"authz-audit/record/v3"`; then, appended after `shown`:
//!
//! | item | encoding |
//! |---|---|
//! | `client_addr` | optional string |
//! | `repeat_count` | optional integer |
//! | `first_time_ms` | optional integer |
//!
//! Version 2 can only stand for a record whose version-3 fields are absent.
//!
//! # Encoding, version 4
//!
//! The items of version 3, in the same order and with the same encodings, except that the
//! domain tag is the string `"authz-audit/record/v4"`; then, appended after `first_time_ms`:
//!
//! | item | encoding |
//! |---|---|
//! | `first_round_request_id` | optional string |
//!
//! Version 3 (and so 2 and 1) can only stand for a record whose version-4 field is absent.
//!
//! # Encoding, version 5
//!
//! The items of version 4, in the same order and with the same encodings, except that the
//! domain tag is the string `"authz-audit/record/v5"`; then, appended after
//! `first_round_request_id`:
//!
//! | item | encoding |
//! |---|---|
//! | `shadow` | optional string |
//!
//! Version 4 (and so 3, 2 and 1) can only stand for a record whose version-5 field is absent.
//!
//! The version number itself is not an item: the domain tag differs per version, so a row
//! whose `hash_version` was changed no longer matches its hash.
//!
//! # Checkpoints
//!
//! A checkpoint's signature is Ed25519 over the same kind of encoding of: the domain tag
//! `"authz-audit/checkpoint/v1"`, the kind (`"checkpoint"` or `"anchor"`), `chain_id`, `seq`,
//! `hash` (bytes) and `time_ms`. The kind is included so an anchor cannot be passed off as a
//! checkpoint or the other way round. It does not depend on the record encoding version.
//!
//! A later change of the record encoding gets a new domain tag (`.../v6`) and a new
//! [`HashVersion`].

use authz_types::{AuditRecord, RecordKind};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record of a chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

const RECORD_TAG_V1: &str = "authz-audit/record/v1";
const RECORD_TAG_V2: &str = "authz-audit/record/v2";
const RECORD_TAG_V3: &str = "authz-audit/record/v3";
const RECORD_TAG_V4: &str = "authz-audit/record/v4";
const RECORD_TAG_V5: &str = "authz-audit/record/v5";
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

/// The version of the record encoding a chained row's hash was computed with (the
/// `hash_version` column). See the module documentation for each version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HashVersion {
    /// The fields of the first record format; rows written before migration 0006.
    V1,
    /// Version 1 plus the kind, trace id, upstream outcome, argument digest, arguments and
    /// shown items; rows written before migration 0008.
    V2,
    /// Version 2 plus the client address and the count and window of aggregated refusals;
    /// rows written before migration 0010.
    V3,
    /// Version 3 plus the first round a multi round-trip retry links to; rows written before
    /// migration 0015.
    V4,
    /// Version 4 plus the shadow policy's differing decision.
    V5,
}

impl HashVersion {
    /// The version this build writes.
    pub const CURRENT: HashVersion = HashVersion::V5;

    /// Every version, oldest first.
    pub const ALL: &'static [HashVersion] = &[
        HashVersion::V1,
        HashVersion::V2,
        HashVersion::V3,
        HashVersion::V4,
        HashVersion::V5,
    ];

    /// The stored number (`hash_version` column).
    pub fn number(self) -> i64 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V4 => 4,
            Self::V5 => 5,
        }
    }

    /// The version stored as `n`, if this build knows it.
    pub fn from_number(n: i64) -> Option<HashVersion> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            4 => Some(Self::V4),
            5 => Some(Self::V5),
            _ => None,
        }
    }

    /// The stored number as SQL text, for inserts that write it as a literal.
    pub(crate) const fn sql_literal(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2 => "2",
            Self::V3 => "3",
            Self::V4 => "4",
            Self::V5 => "5",
        }
    }
}

/// The hash of `record` at position `seq` of chain `chain_id`, following the record whose hash
/// is `prev_hash` ([`GENESIS_HASH`] for the first), in the current encoding
/// ([`HashVersion::CURRENT`]). See the module documentation of the encoding; an external
/// verifier can reimplement it from the tables alone.
pub fn record_hash(
    record: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    encode_v5(&mut h, record, chain_id, seq, prev_hash);
    h.finalize().into()
}

/// The hash of `record` in the given encoding `version`, as [`record_hash`] otherwise.
///
/// `None` when the version cannot represent the record: each version only encodes records whose
/// fields added by later versions are all at their defaults (version 1 those without the
/// version-2, -3 and -4 fields, version 2 those without the version-3 and -4 fields, version 3
/// those without the version-4 field).
pub fn record_hash_with(
    version: HashVersion,
    record: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    match version {
        HashVersion::V1 => {
            if !fits_v1(record) {
                return None;
            }
            encode_v1_items(&mut h, RECORD_TAG_V1, record, chain_id, seq, prev_hash);
        }
        HashVersion::V2 => {
            if !fits_v2(record) {
                return None;
            }
            encode_v2_items(&mut h, RECORD_TAG_V2, record, chain_id, seq, prev_hash);
        }
        HashVersion::V3 => {
            if !fits_v3(record) {
                return None;
            }
            encode_v3_items(&mut h, RECORD_TAG_V3, record, chain_id, seq, prev_hash);
        }
        HashVersion::V4 => {
            if !fits_v4(record) {
                return None;
            }
            encode_v4_items(&mut h, RECORD_TAG_V4, record, chain_id, seq, prev_hash);
        }
        HashVersion::V5 => encode_v5(&mut h, record, chain_id, seq, prev_hash),
    }
    Some(h.finalize().into())
}

/// Whether every field version 1 does not encode is at its default.
fn fits_v1(r: &AuditRecord) -> bool {
    fits_v2(r)
        && r.kind == RecordKind::Decision
        && r.trace_id.is_none()
        && r.upstream_status.is_none()
        && r.upstream_latency_ms.is_none()
        && r.outcome.is_none()
        && r.args_digest.is_none()
        && r.arguments.is_none()
        && r.shown.is_empty()
}

/// Whether every field version 2 does not encode is at its default.
fn fits_v2(r: &AuditRecord) -> bool {
    fits_v3(r) && r.client_addr.is_none() && r.repeat_count.is_none() && r.first_time_ms.is_none()
}

/// Whether every field version 3 does not encode is at its default.
fn fits_v3(r: &AuditRecord) -> bool {
    fits_v4(r) && r.first_round_request_id.is_none()
}

/// Whether every field version 4 does not encode is at its default.
fn fits_v4(r: &AuditRecord) -> bool {
    r.shadow.is_none()
}

/// The items of version 1 after `tag`; later versions start the same way with their own tag.
fn encode_v1_items(
    h: &mut impl Sink,
    tag: &str,
    r: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) {
    h.str(tag);
    h.str(chain_id);
    h.int(seq);
    h.bytes(prev_hash);
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
}

/// The items of version 2 after `tag`; version 3 starts the same way with its own tag.
fn encode_v2_items(
    h: &mut impl Sink,
    tag: &str,
    r: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) {
    encode_v1_items(h, tag, r, chain_id, seq, prev_hash);
    h.str(r.kind.as_str());
    h.opt_str(r.trace_id.as_deref());
    h.opt_int(r.upstream_status.map(i64::from));
    h.opt_int(r.upstream_latency_ms);
    h.opt_str(r.outcome.as_deref());
    h.opt_str(r.args_digest.as_deref());
    h.opt_str(r.arguments.as_deref());
    h.list(&r.shown);
}

/// The items of version 3 after `tag`; version 4 starts the same way with its own tag.
fn encode_v3_items(
    h: &mut impl Sink,
    tag: &str,
    r: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) {
    encode_v2_items(h, tag, r, chain_id, seq, prev_hash);
    h.opt_str(r.client_addr.as_deref());
    h.opt_int(r.repeat_count);
    h.opt_int(r.first_time_ms);
}

/// The items of version 4 after `tag`; version 5 starts the same way with its own tag.
fn encode_v4_items(
    h: &mut impl Sink,
    tag: &str,
    r: &AuditRecord,
    chain_id: &str,
    seq: i64,
    prev_hash: &[u8; 32],
) {
    encode_v3_items(h, tag, r, chain_id, seq, prev_hash);
    h.opt_str(r.first_round_request_id.as_deref());
}

fn encode_v5(h: &mut impl Sink, r: &AuditRecord, chain_id: &str, seq: i64, prev_hash: &[u8; 32]) {
    encode_v4_items(h, RECORD_TAG_V5, r, chain_id, seq, prev_hash);
    h.opt_str(r.shadow.as_deref());
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
    hex::encode(bytes)
}

/// Parses hex (either case) into exactly `N` bytes.
pub(crate) fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok().map(|()| out)
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

    /// `sample()` with every version-2 field set.
    fn sample_v2() -> AuditRecord {
        let mut r = sample();
        r.kind = RecordKind::Outcome;
        r.trace_id = Some("t".into());
        r.upstream_status = Some(502);
        r.upstream_latency_ms = Some(1234);
        r.outcome = Some("upstream_error".into());
        r.args_digest = Some("ab".into());
        r.arguments = Some("{}".into());
        r.shown = vec!["a".into(), "b".into()];
        r
    }

    /// `sample_v2()` with every version-3 field set.
    fn sample_v3() -> AuditRecord {
        let mut r = sample_v2();
        r.client_addr = Some("203.0.113.9".into());
        r.repeat_count = Some(1500);
        r.first_time_ms = Some(1_767_225_590_000);
        r
    }

    /// `sample_v3()` with the version-4 field set.
    fn sample_v4() -> AuditRecord {
        let mut r = sample_v3();
        r.first_round_request_id = Some("0198c3a1b2c34d5e8f90a1b2c3d4e5f6".into());
        r
    }

    /// `sample_v4()` with the version-5 field set.
    fn sample_v5() -> AuditRecord {
        let mut r = sample_v4();
        r.shadow = Some("allow policy_allow: p, r, default, tool:t/*, call, allow".into());
        r
    }

    #[test]
    fn encoding_is_pinned() {
        // Fixed vectors, also computed by an independent implementation of the tables in the
        // module documentation (a short Python script). If one changes, stored chains no
        // longer verify, so the encoding version (domain tag) must change with it.
        let v1 = record_hash_with(HashVersion::V1, &sample(), "gw-1", 1, &GENESIS_HASH);
        assert_eq!(
            v1.map(|h| to_hex(&h)).as_deref(),
            Some("ed3e7545c40b6ded0bbb9ba3a69ea258246801b3285dd3dca43e0a4b6fa27f6e")
        );
        let v2 = record_hash_with(HashVersion::V2, &sample(), "gw-1", 1, &GENESIS_HASH);
        assert_eq!(
            v2.map(|h| to_hex(&h)).as_deref(),
            Some("0746b8dbf08cd4ed31bb30285deff5a586e92f44b1888bcba183de61d1865527")
        );
        assert_eq!(
            record_hash_with(HashVersion::V2, &sample_v2(), "gw-1", 1, &GENESIS_HASH)
                .map(|h| to_hex(&h))
                .as_deref(),
            Some("cd2919ec7ea123b6d28cda67aaf13d7d5ba122b532848b0bf9677d42f5d04a81")
        );
        let v3 = record_hash_with(HashVersion::V3, &sample(), "gw-1", 1, &GENESIS_HASH);
        assert_eq!(
            v3.map(|h| to_hex(&h)).as_deref(),
            Some("73b416c7a14214c1f181ec3c211349e4d2cb2e2ad448f04ab43ba51c0fe2ba32")
        );
        assert_eq!(
            record_hash_with(HashVersion::V3, &sample_v3(), "gw-1", 1, &GENESIS_HASH)
                .map(|h| to_hex(&h))
                .as_deref(),
            Some("685e04d81a97fde4b1ceb3128a7b8c02ae6a368451db415da2732763e0e2bf18")
        );
        let v4 = |r: &AuditRecord| {
            record_hash_with(HashVersion::V4, r, "gw-1", 1, &GENESIS_HASH).map(|h| to_hex(&h))
        };
        assert_eq!(
            v4(&sample()).as_deref(),
            Some("bc5e681572abd7ebd7289103f5c2b6b7c75341940871ec18b9a1b584c14d819b")
        );
        assert_eq!(
            v4(&sample_v3()).as_deref(),
            Some("beed2114f8a69fe84035698b3c4581fbfa308e3cab5ae7e110f1d67c6fb7e2f1")
        );
        assert_eq!(
            v4(&sample_v4()).as_deref(),
            Some("bb62cd1fac8c5c05bc7895cce657003c2a3386057209925cbcb7307e1ac81b2d")
        );
        let v5 = record_hash(&sample(), "gw-1", 1, &GENESIS_HASH);
        assert_eq!(
            to_hex(&v5),
            "eb009622c157e1633843637116cd7d9ac847e1b724ca4201f87707a7c2566098"
        );
        assert_eq!(
            record_hash_with(HashVersion::V5, &sample(), "gw-1", 1, &GENESIS_HASH),
            Some(v5)
        );
        assert_eq!(
            to_hex(&record_hash(&sample_v3(), "gw-1", 1, &GENESIS_HASH)),
            "297358aab36d1189577b19942c5e2dbb333ff6d8a3cfa4614b0129764aed7e4a"
        );
        assert_eq!(
            to_hex(&record_hash(&sample_v4(), "gw-1", 1, &GENESIS_HASH)),
            "665315f29f4f3da6c991662f0a3160a66fe40e899a9ce6ec50cbb67fbeb0ea50"
        );
        assert_eq!(
            to_hex(&record_hash(&sample_v5(), "gw-1", 1, &GENESIS_HASH)),
            "cd8b71f0fa940eec40df0bc641ac8e9b159212f7c54b7e68f8649e0e7b05a0ef"
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
    fn version_2_only_encodes_records_without_the_version_3_fields() {
        type Change = fn(&mut AuditRecord);
        let changes: [Change; 3] = [
            |r| r.client_addr = Some(String::new()),
            |r| r.repeat_count = Some(1),
            |r| r.first_time_ms = Some(0),
        ];
        for change in changes {
            let mut r = sample_v2();
            change(&mut r);
            for old in [HashVersion::V1, HashVersion::V2] {
                assert_eq!(
                    record_hash_with(old, &r, "gw-1", 1, &GENESIS_HASH),
                    None,
                    "{old:?} {r:?}"
                );
            }
            assert!(record_hash_with(HashVersion::V3, &r, "gw-1", 1, &GENESIS_HASH).is_some());
        }
    }

    #[test]
    fn version_3_only_encodes_records_without_the_version_4_field() {
        let mut r = sample_v3();
        r.first_round_request_id = Some(String::new());
        for old in [HashVersion::V1, HashVersion::V2, HashVersion::V3] {
            assert_eq!(
                record_hash_with(old, &r, "gw-1", 1, &GENESIS_HASH),
                None,
                "{old:?}"
            );
        }
        assert!(record_hash_with(HashVersion::V4, &r, "gw-1", 1, &GENESIS_HASH).is_some());
    }

    #[test]
    fn version_4_only_encodes_records_without_the_version_5_field() {
        let mut r = sample_v4();
        r.shadow = Some(String::new());
        for old in [
            HashVersion::V1,
            HashVersion::V2,
            HashVersion::V3,
            HashVersion::V4,
        ] {
            assert_eq!(
                record_hash_with(old, &r, "gw-1", 1, &GENESIS_HASH),
                None,
                "{old:?}"
            );
        }
        assert!(record_hash_with(HashVersion::V5, &r, "gw-1", 1, &GENESIS_HASH).is_some());
    }

    #[test]
    fn version_1_only_encodes_records_without_the_new_fields() {
        type Change = fn(&mut AuditRecord);
        let changes: [Change; 8] = [
            |r| r.kind = RecordKind::Outcome,
            |r| r.trace_id = Some(String::new()),
            |r| r.upstream_status = Some(200),
            |r| r.upstream_latency_ms = Some(0),
            |r| r.outcome = Some("ok".into()),
            |r| r.args_digest = Some(String::new()),
            |r| r.arguments = Some("{}".into()),
            |r| r.shown.push(String::new()),
        ];
        for change in changes {
            let mut r = sample();
            change(&mut r);
            assert_eq!(
                record_hash_with(HashVersion::V1, &r, "gw-1", 1, &GENESIS_HASH),
                None,
                "{r:?}"
            );
            assert!(record_hash_with(HashVersion::V2, &r, "gw-1", 1, &GENESIS_HASH).is_some());
        }
    }

    #[test]
    fn versions_have_stable_numbers() {
        for v in HashVersion::ALL {
            assert_eq!(HashVersion::from_number(v.number()), Some(*v));
            assert_eq!(v.sql_literal(), v.number().to_string());
        }
        assert_eq!(HashVersion::from_number(0), None);
        assert_eq!(HashVersion::from_number(6), None);
        assert_eq!(HashVersion::CURRENT, HashVersion::V5);
    }

    #[test]
    fn every_field_and_position_changes_the_hash() {
        let base = record_hash(&sample(), "gw-1", 1, &GENESIS_HASH);
        assert_ne!(base, record_hash(&sample(), "gw-2", 1, &GENESIS_HASH));
        assert_ne!(base, record_hash(&sample(), "gw-1", 2, &GENESIS_HASH));
        assert_ne!(base, record_hash(&sample(), "gw-1", 1, &[1; 32]));
        type Change = fn(&mut AuditRecord);
        let changes: [Change; 24] = [
            |r| r.time_ms += 1,
            |r| r.session_id = Some(String::new()),
            |r| r.actors.push(String::new()),
            |r| r.http_status = None,
            |r| r.http_status = Some(402),
            |r| r.subject = Some("alice".into()),
            |r| r.jsonrpc_error = Some(0),
            |r| r.reason = ReasonCode::PolicyAllow,
            |r| r.kind = RecordKind::Outcome,
            |r| r.trace_id = Some(String::new()),
            |r| r.upstream_status = Some(0),
            |r| r.upstream_latency_ms = Some(0),
            |r| r.outcome = Some(String::new()),
            |r| r.args_digest = Some(String::new()),
            |r| r.arguments = Some(String::new()),
            |r| r.shown.push(String::new()),
            |r| r.shown = vec!["a".into(), String::new()],
            |r| r.client_addr = Some(String::new()),
            |r| r.repeat_count = Some(1),
            |r| r.first_time_ms = Some(0),
            |r| r.first_round_request_id = Some(String::new()),
            |r| r.first_round_request_id = Some("req-1".into()),
            |r| r.shadow = Some(String::new()),
            |r| r.shadow = Some("deny".into()),
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
        let mut a = sample();
        a.args_digest = Some("x".into());
        let mut b = sample();
        b.arguments = Some("x".into());
        assert_ne!(
            record_hash(&a, "c", 1, &GENESIS_HASH),
            record_hash(&b, "c", 1, &GENESIS_HASH)
        );
        let mut a = sample();
        a.repeat_count = Some(5);
        let mut b = sample();
        b.first_time_ms = Some(5);
        assert_ne!(
            record_hash(&a, "c", 1, &GENESIS_HASH),
            record_hash(&b, "c", 1, &GENESIS_HASH)
        );
        // A value moved between the client address and the first round is a different record.
        let mut a = sample();
        a.client_addr = Some("x".into());
        let mut b = sample();
        b.first_round_request_id = Some("x".into());
        assert_ne!(
            record_hash(&a, "c", 1, &GENESIS_HASH),
            record_hash(&b, "c", 1, &GENESIS_HASH)
        );
        // The same record hashes differently in each version.
        for old in [HashVersion::V1, HashVersion::V2, HashVersion::V3] {
            assert_ne!(
                record_hash_with(old, &sample(), "gw-1", 1, &GENESIS_HASH),
                Some(base)
            );
        }
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
