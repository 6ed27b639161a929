//! `token revoke|revocations|prune-revocations` against real stores: a verifier loading the
//! revocation list refuses exactly the revoked tokens; listing, pruning and dry runs.

use std::path::Path;

use authz_admin::{EXIT_USAGE, exit_code_of, format_time};
use authz_test_support::TestDatabase;
use authz_token::{
    IssuerConfig, KeyAlgorithm, MintRequest, RevocationList, RevocationStore, Signer, TokenError,
    Verifier, VerifierConfig, generate_key_pair,
};
use authz_types::now_unix_ms;

use crate::common::{fails, json, ok, sqlite_url, with_db};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "http://127.0.0.1:8080/mcp/tickets";

/// A signer and the JWKS file its tokens verify with.
struct Keys {
    signer: Signer,
    jwks: std::path::PathBuf,
}

fn keys(dir: &Path) -> Keys {
    let generated = generate_key_pair(KeyAlgorithm::Es256, "k1").expect("keys");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, &generated.public_jwks).expect("write jwks");
    Keys {
        signer: Signer::from_private_jwk(&generated.private_jwk).expect("signer"),
        jwks,
    }
}

impl Keys {
    /// A token of `sub` with `jti`, issued `age_secs` ago.
    fn mint(&self, sub: &str, jti: &str, age_secs: i64) -> String {
        let mut request = MintRequest::new(ISSUER, sub, AUDIENCE);
        request.token_id = Some(jti.to_owned());
        request.issued_at = Some(now_unix_ms() / 1000 - age_secs);
        self.signer.mint(&request).expect("mint")
    }

    /// A verifier checking the revocations in `url` as they are now.
    async fn verifier(&self, url: &str) -> Verifier {
        let store = RevocationStore::connect(url)
            .await
            .expect("revocation store");
        let list = RevocationList::load(&store)
            .await
            .expect("load revocations");
        store.close().await;
        Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new(
            ISSUER, &self.jwks,
        )]))
        .expect("verifier")
        .with_revocations(list)
    }
}

/// `token revoke --subject alice --issuer <ISSUER>` followed by `extra`.
fn revoke_alice<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [
        &["token", "revoke", "--subject", "alice", "--issuer", ISSUER][..],
        extra,
    ]
    .concat()
}

/// Revokes by jti and by subject through the CLI; a verifier that loads the list refuses the
/// revoked tokens and accepts the others.
async fn revoke_round_trip(url: &str, keys: &Keys) {
    let t1 = keys.mint("alice", "t-1", 60);
    let t2 = keys.mint("alice", "t-2", 60);
    let verifier = keys.verifier(url).await;
    assert!(verifier.verify(&t1, AUDIENCE).is_ok());

    let out = ok(&with_db(&["token", "revoke", "--jti", "t-1"], url)).await;
    assert!(out.starts_with("revoked token t-1 until "), "{out}");
    assert!(out.trim_end().ends_with("(revocation revision 1)"), "{out}");

    let verifier = keys.verifier(url).await;
    assert_eq!(verifier.verify(&t1, AUDIENCE), Err(TokenError::Revoked));
    assert!(
        verifier.verify(&t2, AUDIENCE).is_ok(),
        "only t-1 is revoked"
    );
    let listed = json(&with_db(&["token", "revocations"], url)).await;
    assert_eq!(listed["revision"], 1);
    assert_eq!(listed["revocations"][0]["kind"], "jti");
    assert_eq!(listed["revocations"][0]["jti"], "t-1");
}

#[tokio::test]
async fn a_revoked_jti_is_refused_by_a_verifier_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "revocations.db");
    revoke_round_trip(&url, &keys(dir.path())).await;
}

#[tokio::test]
async fn a_subject_is_revoked_for_tokens_issued_before_the_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let url = sqlite_url(dir.path(), "audit.db");
    let old = keys.mint("alice", "old", 120);
    let fresh = keys.mint("alice", "fresh", 0);
    let other = keys.mint("bob", "bob", 120);

    let cut_off_ms = now_unix_ms() - 60_000;
    let before = format_time(cut_off_ms / 1000 * 1000);
    let revoked = json(&with_db(
        &revoke_alice(&["--before", &before, "--keep-for", "2h"]),
        &url,
    ))
    .await;
    assert_eq!(revoked["kind"], "subject");
    assert_eq!(revoked["revision"], 1);
    assert_eq!(revoked["dry_run"], false);
    let issued_before = revoked["issued_before"].as_i64().expect("issued_before");
    assert_eq!(issued_before, cut_off_ms / 1000);
    assert_eq!(revoked["expires_at"].as_i64(), Some(issued_before + 7200));

    let verifier = keys.verifier(&url).await;
    assert_eq!(verifier.verify(&old, AUDIENCE), Err(TokenError::Revoked));
    assert!(
        verifier.verify(&fresh, AUDIENCE).is_ok(),
        "issued after the cut-off"
    );
    assert!(verifier.verify(&other, AUDIENCE).is_ok(), "another subject");

    let table = ok(&with_db(&["token", "revocations"], &url)).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "revocation revision 1", "{table}");
    assert!(lines[2].starts_with("KIND"), "{table}");
    assert!(
        lines[3].starts_with("subject") && lines[3].contains("alice") && lines[3].contains(ISSUER),
        "{table}"
    );
    assert!(lines[3].contains(&before), "{table}");
}

#[tokio::test]
async fn dry_runs_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "revocations.db");
    let out = ok(&with_db(
        &["token", "revoke", "--jti", "t-9", "--dry-run"],
        &url,
    ))
    .await;
    assert!(
        out.starts_with("dry run: would revoke token t-9 until "),
        "{out}"
    );
    assert!(
        out.contains("(revocation revision 0; nothing was written)"),
        "{out}"
    );
    let planned = json(&with_db(&revoke_alice(&["--dry-run"]), &url)).await;
    assert_eq!(planned["dry_run"], true);
    assert_eq!(planned["revision"], 0);
    assert_eq!(planned["subject"], "alice");

    let listed = json(&with_db(&["token", "revocations"], &url)).await;
    assert_eq!(
        listed,
        serde_json::json!({"revision": 0, "revocations": []}),
        "nothing was written"
    );
    let table = ok(&with_db(&["token", "revocations"], &url)).await;
    assert_eq!(table, "revocation revision 0\n\nno revocations in force\n");
}

#[tokio::test]
async fn revocations_are_listed_and_expired_ones_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "revocations.db");
    // The CLI refuses revocations that have lapsed already, so the expired rows are written
    // through the library.
    let store = RevocationStore::connect(&url).await.expect("store");
    let now = now_unix_ms() / 1000;
    store
        .revoke_token("expired", now - 10)
        .await
        .expect("revoke");
    store
        .revoke_subject(ISSUER, "carol", now - 100, now - 5)
        .await
        .expect("revoke");
    store.close().await;
    ok(&with_db(
        &["token", "revoke", "--jti", "b", "--expires-at", "1h"],
        &url,
    ))
    .await;
    ok(&with_db(&["token", "revoke", "--jti", "a"], &url)).await;

    let lines = ok(&with_db(&["token", "revocations", "-o", "jsonl"], &url)).await;
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let jtis: Vec<&str> = rows.iter().filter_map(|r| r["jti"].as_str()).collect();
    assert_eq!(jtis, ["a", "b"], "in force only, sorted: {lines}");
    let b_expiry = rows[1]["expires_at"].as_i64().expect("expires_at");
    assert!((now + 3600..=now + 4200).contains(&b_expiry), "{b_expiry}");

    let dry = json(&with_db(&["token", "prune-revocations", "--dry-run"], &url)).await;
    assert_eq!(dry["expired"], 2);
    assert_eq!(dry["in_force"], 2);
    assert_eq!(dry["revision"], 4);
    let out = ok(&with_db(&["token", "prune-revocations", "--dry-run"], &url)).await;
    assert!(out.starts_with("dry run: would delete 2 expired"), "{out}");

    let out = ok(&with_db(&["token", "prune-revocations"], &url)).await;
    assert_eq!(
        out,
        "deleted 2 expired revocation(s); 2 in force (revocation revision 4)\n"
    );
    let again = json(&with_db(&["token", "prune-revocations"], &url)).await;
    assert_eq!(again["expired"], 0);
    assert_eq!(again["in_force"], 2);
}

#[tokio::test]
async fn lapsed_revocations_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "revocations.db");
    let e = fails(&with_db(
        &[
            "token",
            "revoke",
            "--jti",
            "t",
            "--expires-at",
            "2000-01-01T00:00:00Z",
        ],
        &url,
    ))
    .await;
    assert_eq!(exit_code_of(&e), EXIT_USAGE);
    assert!(e.to_string().contains("not in the future"), "{e}");
    let e = fails(&with_db(
        &revoke_alice(&["--before", "2000-01-01T00:00:00Z"]),
        &url,
    ))
    .await;
    assert_eq!(exit_code_of(&e), EXIT_USAGE);
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn revoke_and_verify_round_trip_on_postgres() {
    let db = TestDatabase::postgres().await;
    let dir = tempfile::tempdir().expect("tempdir");
    revoke_round_trip(db.url(), &keys(dir.path())).await;
    crate::trail::verify_round_trip(db.url()).await;
}
