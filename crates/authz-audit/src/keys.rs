//! Ed25519 keys that sign audit checkpoints (writer side) and check them (verifier side).
//!
//! # Key handling
//!
//! The signing key is a 32-byte Ed25519 seed kept in a file readable only by the gateway: either
//! the 32 raw bytes, or 64 hex digits (a trailing newline is allowed). Generate one with
//! [`SigningKey::generate_seed`] and [`write_seed_file`] (mode 0600 on Unix). Whoever holds the
//! seed can sign checkpoints, so it must not live in the audit database or next to it.
//!
//! The public key (32 bytes, printed as 64 hex digits by [`PublicKey::to_hex`]) is what
//! [`verify`](crate::verify) takes. Keep it somewhere an attacker with write access to the
//! database cannot change (the verifier's configuration, a ticket, a printout).

use std::path::Path;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::Error;
use crate::hash::{from_hex, to_hex};

/// An Ed25519 key that signs checkpoints. `Debug` does not show it.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("seed", &"[redacted]")
            .field("public", &self.public)
            .finish()
    }
}

impl SigningKey {
    /// The key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, Error> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::Key {
            reason: "the Ed25519 seed was rejected",
        })?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self { pair, public })
    }

    /// Reads a seed file: 32 raw bytes, or 64 hex digits optionally followed by a newline.
    ///
    /// On Unix, a file that group or others may read is still accepted (refusing would take
    /// the audit trail down over a permission bit), but a warning is logged.
    pub fn from_seed_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        warn_if_readable_by_others(path);
        Self::from_seed(&parse_key_bytes(&bytes).ok_or(Error::Key {
            reason: "a seed file holds 32 raw bytes or 64 hex digits",
        })?)
    }

    /// 32 random bytes from the operating system's generator, for a new seed file.
    pub fn generate_seed() -> Result<[u8; 32], Error> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| Error::Key {
            reason: "the random number generator failed",
        })?;
        Ok(seed)
    }

    /// The public half, for [`verify`](crate::verify).
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Writes `seed` as 64 hex digits and a newline to a new file (mode 0600 on Unix). Refuses to
/// overwrite an existing file, so a key in use is never replaced by accident.
pub fn write_seed_file(path: &Path, seed: &[u8; 32]) -> Result<(), Error> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let key_file = |source| Error::KeyFile {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(key_file)?;
    file.write_all(format!("{}\n", to_hex(seed)).as_bytes())
        .map_err(key_file)?;
    file.sync_all().map_err(key_file)
}

/// An Ed25519 public key that checks checkpoint signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", to_hex(&self.0))
    }
}

impl PublicKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::Key {
            reason: "an Ed25519 public key is 32 bytes",
        })?;
        Ok(Self(bytes))
    }

    /// The key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        from_hex::<32>(text.trim()).map(Self).ok_or(Error::Key {
            reason: "an Ed25519 public key is 64 hex digits",
        })
    }

    /// Reads a public key file: 32 raw bytes, or 64 hex digits optionally followed by a newline.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        parse_key_bytes(&bytes).map(Self).ok_or(Error::Key {
            reason: "a public key file holds 32 raw bytes or 64 hex digits",
        })
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// 32 raw bytes, or 64 hex digits with optional surrounding whitespace.
fn parse_key_bytes(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        // 32 bytes that happen to be hex digits cannot be a hex key (that needs 64 digits),
        // so raw is the only reading.
        return Some(raw);
    }
    from_hex::<32>(std::str::from_utf8(bytes).ok()?.trim())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the audit signing key file is accessible to group or others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = SigningKey::generate_seed().expect("seed");
        let path = dir.path().join("audit.key");
        write_seed_file(&path, &seed).expect("write");
        assert!(write_seed_file(&path, &seed).is_err(), "no overwrite");
        let key = SigningKey::from_seed_file(&path).expect("read hex");
        assert_eq!(
            key.public_key(),
            SigningKey::from_seed(&seed).expect("seed").public_key()
        );
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, seed).expect("write raw");
        assert_eq!(
            SigningKey::from_seed_file(&raw).expect("raw").public_key(),
            key.public_key()
        );

        let sig = key.sign(b"message");
        let public = key.public_key();
        assert!(public.verifies(b"message", &sig));
        assert!(!public.verifies(b"messagf", &sig));
        let other = SigningKey::from_seed(&[7; 32]).expect("other").public_key();
        assert!(!other.verifies(b"message", &sig));

        assert_eq!(PublicKey::from_hex(&public.to_hex()).expect("hex"), public);
        let pub_path = dir.path().join("audit.pub");
        std::fs::write(&pub_path, format!("{}\n", public.to_hex())).expect("write pub");
        assert_eq!(PublicKey::from_file(&pub_path).expect("pub file"), public);
        assert!(!format!("{key:?}").contains(&crate::hash::to_hex(&seed)));
        assert!(PublicKey::from_hex("abcd").is_err());
        std::fs::write(&raw, b"short").expect("write");
        assert!(matches!(
            SigningKey::from_seed_file(&raw),
            Err(Error::Key { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn seed_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        write_seed_file(&path, &[1; 32]).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
