//! `keys generate` and `token mint`: files, permissions, overwrite protection, and tokens that
//! the gateway's verifier accepts with exactly the claims asked for.

use std::path::Path;

use authz_admin::{Cli, EXIT_ERROR, EXIT_USAGE, exit_code_of};
use authz_token::{IssuerConfig, Verifier, VerifierConfig};
use clap::Parser as _;

use crate::common::{fails, json, ok, text};

const AUDIENCE: &str = "http://127.0.0.1:8080/mcp/tickets";

fn verifier(jwks: &Path, issuer: &str) -> Verifier {
    Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new(issuer, jwks)]))
        .expect("the generated JWKS loads")
}

/// `keys generate --out-dir <dir> --alg <alg> <extra>`.
fn generate<'a>(dir: &'a str, alg: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [
        &["keys", "generate", "--out-dir", dir, "--alg", alg][..],
        extra,
    ]
    .concat()
}

/// `token mint` for `sub` with the default audience, signed with the key file `key`.
fn mint<'a>(sub: &'a str, key: &'a str) -> [&'a str; 8] {
    [
        "token",
        "mint",
        "--sub",
        sub,
        "--audience",
        AUDIENCE,
        "--key",
        key,
    ]
}

/// `authzctl token mint` of a token for `a` with lifetime `ttl`.
fn mint_for(ttl: &str) -> [&str; 9] {
    [
        "authzctl",
        "token",
        "mint",
        "--sub",
        "a",
        "--audience",
        "x",
        "--ttl",
        ttl,
    ]
}

/// Asserts that the key file at `path` is readable by its owner only.
#[track_caller]
fn assert_private(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{what}: private key mode {mode:o}");
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

#[tokio::test]
async fn every_algorithm_generates_keys_whose_tokens_verify() {
    for alg in ["ES256", "RS256", "EdDSA"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let keys_arg = keys.display().to_string();
        let out = ok(&generate(&keys_arg, alg, &[])).await;
        assert!(out.contains(&format!("alg: {alg}")), "{out}");

        let private = keys.join("signing-key.jwk");
        let public = keys.join("jwks.json");
        assert_private(&private, alg);
        let jwks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&public).expect("jwks")).expect("JSON");
        assert_eq!(jwks["keys"][0]["kid"], "dev-1", "{alg}");
        assert_eq!(jwks["keys"][0]["alg"], alg);
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "{alg}: the JWKS is public"
        );

        let key = private.display().to_string();
        let token = ok(&mint("alice", &key)).await;
        let principal = verifier(&public, "authzctl")
            .verify(token.trim(), AUDIENCE)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(principal.subject, "alice");
        // The default lifetime is 15 minutes.
        assert_eq!(
            principal.issued_at.map(|iat| principal.expires_at - iat),
            Some(900)
        );
    }
}

#[tokio::test]
async fn minted_tokens_carry_every_requested_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().display().to_string();
    ok(&generate(&dir_arg, "EdDSA", &["--kid", "k-7"])).await;
    let key = dir.path().join("signing-key.jwk").display().to_string();
    let token = ok(&[
        "token",
        "mint",
        "--sub",
        "bob",
        "--scope",
        "tickets:read tickets:write",
        "--scope",
        "admin",
        "--role",
        "ticket-reader",
        "--role",
        "ticket-agent",
        "--tenant",
        "acme",
        "--actor",
        "agent-7",
        "--client-id",
        "copilot",
        "--issuer",
        "https://idp.example",
        "--audience",
        AUDIENCE,
        "--audience",
        "http://other/mcp",
        "--ttl",
        "2h",
        "--key",
        &key,
    ])
    .await;
    let v = verifier(&dir.path().join("jwks.json"), "https://idp.example");
    let p = v.verify(token.trim(), AUDIENCE).expect("verifies");
    assert_eq!(p.subject, "bob");
    assert_eq!(p.issuer, "https://idp.example");
    assert_eq!(p.scopes, ["admin", "tickets:read", "tickets:write"]);
    assert_eq!(p.roles, ["ticket-agent", "ticket-reader"]);
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(p.actors, ["agent-7"]);
    assert_eq!(p.client_id.as_deref(), Some("copilot"));
    assert_eq!(p.issued_at.map(|iat| p.expires_at - iat), Some(7200));
    // Both audiences are in the token; a third is not.
    assert!(v.verify(token.trim(), "http://other/mcp").is_ok());
    assert!(v.verify(token.trim(), "http://elsewhere/mcp").is_err());
    // Another issuer's verifier refuses it.
    assert!(
        verifier(&dir.path().join("jwks.json"), "authzctl")
            .verify(token.trim(), AUDIENCE)
            .is_err()
    );
}

#[tokio::test]
async fn existing_keys_are_kept_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().display().to_string();
    let first = json(&["keys", "generate", "--out-dir", &dir_arg]).await;
    assert_eq!(first["alg"], "ES256");
    assert_eq!(first["kid"], "dev-1");
    let private = dir.path().join("signing-key.jwk");
    let before = std::fs::read_to_string(&private).expect("key");

    let e = fails(&["keys", "generate", "--out-dir", &dir_arg]).await;
    assert!(text(&e).contains("already exists"), "{e:#}");
    assert!(text(&e).contains("--force"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    assert_eq!(std::fs::read_to_string(&private).expect("key"), before);

    // Only the public half left over still blocks a new pair.
    std::fs::remove_file(&private).expect("remove");
    let e = fails(&["keys", "generate", "--out-dir", &dir_arg]).await;
    assert!(text(&e).contains("jwks.json"), "{e:#}");

    #[cfg(unix)]
    {
        // A forced overwrite also tightens a key file someone made world-readable.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(&private, "{}").expect("write");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    ok(&generate(&dir_arg, "RS256", &["--force"])).await;
    let after = std::fs::read_to_string(&private).expect("key");
    assert_ne!(after, before);
    assert!(after.contains("RS256"));
    assert_private(&private, "after a forced overwrite");
}

#[test]
fn bad_algorithms_and_lifetimes_are_usage_errors() {
    for args in [
        &["authzctl", "keys", "generate", "--alg", "HS256"][..],
        &["authzctl", "keys", "generate", "--alg", "none"],
        &mint_for("0s"),
        &mint_for("5w"),
        &mint_for("soon"),
        &["authzctl", "token", "mint", "--sub", "a"],
    ] {
        let e = Cli::try_parse_from(args).expect_err("a usage error");
        assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{args:?}: {e}");
    }
    let e = Cli::try_parse_from(mint_for("5w")).expect_err("bad ttl");
    assert!(e.to_string().contains("--ttl"), "{e}");
    assert!(e.to_string().contains("unknown unit"), "{e}");
}

#[tokio::test]
async fn minting_without_a_key_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("missing.jwk").display().to_string();
    let e = fails(&mint("a", &key)).await;
    assert!(text(&e).contains(&key), "{e:#}");
    assert!(text(&e).contains("authzctl keys generate"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
}
