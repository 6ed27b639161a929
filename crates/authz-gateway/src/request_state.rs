//! Multi round-trip requests (MCP 2026-07-28, SEP-2322) bound to their caller.
//!
//! A `tools/call`, `prompts/get` or `resources/read` may be answered `resultType:
//! "input_required"` with an opaque `requestState` the client sends back with its
//! `inputResponses`. Behind the gateway every request carries the gateway's credential, so the
//! upstream cannot tell whose state it is. The gateway therefore never hands the upstream's state
//! to the client: it seals it in an envelope naming the principal, the route, the method, the
//! target and an expiry, MACed with HMAC-SHA256 under a key every replica shares
//! (`server.request_state_key_file`, else a random key per process). A retry must bring an
//! envelope that opens for the same principal, route, method and target before its expiry; the
//! upstream then gets its original state back. Anything else is refused and recorded
//! (`request_state_invalid`).
//!
//! Each retry is authorized from scratch like any call, and its records link to the first
//! round: the envelope also carries the gateway request id of the call's first round (the
//! request whose answer first asked for input), and a retry's records name it
//! (`first_round_request_id`). A retry answered `input_required` again is sealed with the same
//! first-round id, so every later round links to the first, not to the one before.
//!
//! Envelope: `mrtr2.<base64url(payload JSON)>.<base64url(HMAC-SHA256(key, "mrtr2." + payload))>`,
//! payload `{"s": state, "o": issuer "\n" subject "\n" tenant, "r": route, "m": method,
//! "t": target, "e": expiry Unix ms, "f": first-round request id}`. The state is not secret
//! from the client (it would have held it anyway), only bound. Version 1 (`mrtr1.`, without
//! `"f"`) is refused as malformed rather than read: a state lives at most
//! `server.request_state_ttl_secs` (600 s by default), so after an upgrade only the calls in
//! the middle of a round trip must start over.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The envelope's version prefix.
const PREFIX: &str = "mrtr2.";

/// Who and what a state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    #[serde(rename = "o")]
    pub(crate) owner: String,
    #[serde(rename = "r")]
    pub(crate) route: String,
    #[serde(rename = "m")]
    pub(crate) method: String,
    #[serde(rename = "t")]
    pub(crate) target: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "s")]
    state: String,
    #[serde(flatten)]
    binding: Binding,
    #[serde(rename = "e")]
    expires_ms: i64,
    #[serde(rename = "f")]
    first_round: String,
}

/// What an envelope that opened holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The upstream's own state, to hand back to it.
    pub(crate) state: String,
    /// The gateway request id of the call's first round.
    pub(crate) first_round: String,
}

/// Why a presented state is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not an envelope of this gateway (for example the upstream's raw state).
    Malformed,
    /// Its MAC does not match: changed, or sealed under another key.
    Tampered,
    Expired,
    /// Sealed for another principal, route, method or target.
    NotYours,
}

impl Invalid {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::Tampered => "tampered",
            Invalid::Expired => "expired",
            Invalid::NotYours => "not_yours",
        }
    }
}

/// Seals and opens request states.
pub(crate) struct Sealer {
    key: [u8; 32],
    ttl_ms: i64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &"[redacted]")
            .field("ttl_ms", &self.ttl_ms)
            .finish()
    }
}

impl Sealer {
    pub(crate) fn new(key: [u8; 32], ttl: std::time::Duration) -> Self {
        Self {
            key,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// A key for this process alone (a single replica).
    pub(crate) fn random_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key
    }

    /// The envelope for `state`, bound to `binding`, valid until `now_ms` + the TTL, naming
    /// `first_round`: the gateway request id of the call's first round.
    pub(crate) fn seal(
        &self,
        state: &str,
        binding: &Binding,
        first_round: &str,
        now_ms: i64,
    ) -> String {
        let payload = Payload {
            state: state.to_owned(),
            binding: binding.clone(),
            expires_ms: now_ms.saturating_add(self.ttl_ms),
            first_round: first_round.to_owned(),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let body = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let mac = hmac_sha256(&self.key, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The original state inside `sealed` and the first round it names, if it opens for
    /// `binding` at `now_ms`.
    pub(crate) fn open(
        &self,
        sealed: &str,
        binding: &Binding,
        now_ms: i64,
    ) -> Result<Opened, Invalid> {
        if !sealed.starts_with(PREFIX) {
            return Err(Invalid::Malformed);
        }
        let (body, mac) = sealed.rsplit_once('.').ok_or(Invalid::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| Invalid::Malformed)?;
        let expected = hmac_sha256(&self.key, body.as_bytes());
        if mac.len() != expected.len() {
            return Err(Invalid::Malformed);
        }
        // Compared in constant time: where a guess first differs must not show in the timing.
        if mac
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(Invalid::Tampered);
        }
        let json = URL_SAFE_NO_PAD
            .decode(&body[PREFIX.len()..])
            .map_err(|_| Invalid::Malformed)?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| Invalid::Malformed)?;
        if payload.expires_ms < now_ms {
            return Err(Invalid::Expired);
        }
        if payload.binding != *binding {
            return Err(Invalid::NotYours);
        }
        Ok(Opened {
            state: payload.state,
            first_round: payload.first_round,
        })
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under a 32-byte `key`.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(owner: &str) -> Binding {
        Binding {
            owner: owner.to_owned(),
            route: "tickets".into(),
            method: "tools/call".into(),
            target: Some("create_ticket".into()),
        }
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2 uses a 4-byte key ("Jefe"), zero-padded here to 32 bytes, which
        // HMAC pads to the block size the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_state_opens_only_for_its_binding_before_its_expiry() {
        let sealer = Sealer::new([7; 32], std::time::Duration::from_secs(60));
        let alice = binding("iss\nalice\ndefault");
        let sealed = sealer.seal("upstream-state-1", &alice, "req-1", 1_000);
        assert!(sealed.starts_with(PREFIX));
        assert_eq!(
            sealer.open(&sealed, &alice, 2_000),
            Ok(Opened {
                state: "upstream-state-1".into(),
                first_round: "req-1".into(),
            })
        );
        assert_eq!(
            sealer.open(&sealed, &binding("iss\nbob\ndefault"), 2_000),
            Err(Invalid::NotYours)
        );
        let mut other_tool = alice.clone();
        other_tool.target = Some("delete_ticket".into());
        assert_eq!(
            sealer.open(&sealed, &other_tool, 2_000),
            Err(Invalid::NotYours)
        );
        assert_eq!(sealer.open(&sealed, &alice, 61_001), Err(Invalid::Expired));
        // Another key, a changed byte, a raw upstream state: refused.
        let other = Sealer::new([8; 32], std::time::Duration::from_secs(60));
        assert_eq!(other.open(&sealed, &alice, 2_000), Err(Invalid::Tampered));
        let mut bytes = sealed.clone().into_bytes();
        let i = PREFIX.len() + 3;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).expect("ascii");
        assert_eq!(sealer.open(&changed, &alice, 2_000), Err(Invalid::Tampered));
        assert_eq!(
            sealer.open("upstream-state-1", &alice, 2_000),
            Err(Invalid::Malformed)
        );
        assert_eq!(
            sealer.open("mrtr2.", &alice, 2_000),
            Err(Invalid::Malformed)
        );
    }

    #[test]
    fn a_version_1_envelope_is_refused_as_malformed() {
        // What a gateway before the first-round link sealed: the same MAC, no "f", prefix 1.
        let sealer = Sealer::new([7; 32], std::time::Duration::from_secs(60));
        let alice = binding("iss\nalice\ndefault");
        let payload = serde_json::json!({"s": "upstream-state-1", "o": alice.owner,
            "r": alice.route, "m": alice.method, "t": alice.target, "e": 61_000});
        let body = format!("mrtr1.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
        let mac = hmac_sha256(&[7; 32], body.as_bytes());
        let v1 = format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac));
        assert_eq!(sealer.open(&v1, &alice, 2_000), Err(Invalid::Malformed));
        // Nor does relabelling it as version 2 help: the MAC covers the prefix.
        let relabelled = v1.replacen("mrtr1.", PREFIX, 1);
        assert_eq!(
            sealer.open(&relabelled, &alice, 2_000),
            Err(Invalid::Tampered)
        );
    }
}
