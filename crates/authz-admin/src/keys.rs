//! `authzctl keys generate|generate-audit`: development signing keys and the audit checkpoint
//! signing key.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use authz_audit::SigningKey;
use authz_token::KeyAlgorithm;
use serde_json::json;

pub(crate) fn generate(
    dir: &Path,
    alg: KeyAlgorithm,
    kid: &str,
    force: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let private = dir.join("signing-key.jwk");
    let public = dir.join("jwks.json");
    if !force {
        for path in [&private, &public] {
            if path.exists() {
                bail!(
                    "{} already exists; pass --force to replace the key pair",
                    path.display()
                );
            }
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let keys = authz_token::generate_key_pair(alg, kid)
        .with_context(|| format!("cannot generate an {alg} key pair"))?;
    write_private(&private, keys.private_jwk.as_bytes(), force)?;
    std::fs::write(&public, keys.public_jwks.as_bytes())
        .with_context(|| format!("cannot write {}", public.display()))?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"private_key": private, "jwks": public, "kid": kid, "alg": alg.as_str()})
        )?;
    } else {
        writeln!(
            out,
            "private key: {} (keep secret)\npublic JWKS: {}\nkid: {kid}, alg: {alg}",
            private.display(),
            public.display()
        )?;
    }
    Ok(())
}

/// Writes the private key readable by its owner only. Without `force` the file must not exist
/// (checked again at creation, so a file that appeared meanwhile is not clobbered); with `force`
/// an existing file is truncated and its mode tightened before the key is written into it.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict the permissions of {}", path.display()))?;
    }
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `keys generate-audit`: a new checkpoint signing seed (mode 0600) and its public key.
pub(crate) fn generate_audit(path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if path.exists() {
        bail!(
            "{} already exists; an audit signing key is never replaced (move it away first)",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let seed = SigningKey::generate_seed().context("cannot generate an audit signing key")?;
    let public = SigningKey::from_seed(&seed)
        .context("cannot generate an audit signing key")?
        .public_key();
    authz_audit::write_seed_file(path, &seed)
        .with_context(|| format!("cannot write the audit signing key {}", path.display()))?;
    if json {
        writeln!(
            out,
            "{}",
            json!({"signing_key": path, "public_key": public.to_hex()})
        )?;
    } else {
        writeln!(
            out,
            "audit signing key: {} (keep secret; for the gateway only)\npublic key: {}\n\
             check with: authzctl audit verify --public-key {}",
            path.display(),
            public.to_hex(),
            public.to_hex()
        )?;
    }
    Ok(())
}
