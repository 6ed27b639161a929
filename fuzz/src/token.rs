//! Token verification on hostile input: nothing panics, and no altered token verifies with
//! claims other than those of a token the issuer really signed.

use std::sync::OnceLock;

use authz_token::{IssuerConfig, KeyAlgorithm, MintRequest, Signer, Verifier, VerifierConfig};

pub const DICTIONARY: &[&[u8]] = &[
    b"eyJhbGciOiJub25lIn0",
    b"eyJhbGciOiJIUzI1NiJ9",
    b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImZ1enoifQ",
    b".",
    b"..",
    b"=",
    b"+",
    b"/",
    b"-",
    b"_",
    b"AAAA",
    b"\x00",
    b" ",
];

const ISSUER: &str = "https://idp.fuzz.example";
const AUDIENCE: &str = "https://gateway.fuzz.example/mcp/tickets";

/// The verifier, the signer's real tokens, and who they were issued to.
struct Setup {
    verifier: Verifier,
    tokens: Vec<String>,
    subjects: Vec<(String, Vec<String>, Vec<String>)>,
    _dir: tempfile::TempDir,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let keys = authz_token::generate_key_pair(KeyAlgorithm::Es256, "fuzz")
            .unwrap_or_else(|e| panic!("key generation: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, &keys.public_jwks).unwrap_or_else(|e| panic!("write: {e}"));
        let verifier =
            Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new(ISSUER, jwks)]))
                .unwrap_or_else(|e| panic!("verifier: {e}"));
        let signer =
            Signer::from_private_jwk(&keys.private_jwk).unwrap_or_else(|e| panic!("signer: {e}"));
        let people = [
            ("fuzz-alice", vec!["tickets:read"], vec!["ticket-reader"]),
            (
                "fuzz-adam",
                vec!["tickets:write", "tickets:read"],
                vec!["ticket-admin"],
            ),
        ];
        let mut tokens = Vec::new();
        let mut subjects = Vec::new();
        for (subject, scopes, roles) in people {
            let mut req = MintRequest::new(ISSUER, subject, AUDIENCE);
            req.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            req.roles = roles.iter().map(|s| (*s).to_owned()).collect();
            tokens.push(signer.mint(&req).unwrap_or_else(|e| panic!("mint: {e}")));
            subjects.push((subject.to_owned(), sorted(&req.scopes), sorted(&req.roles)));
        }
        Setup {
            verifier,
            tokens,
            subjects,
            _dir: dir,
        }
    })
}

/// Fresh tokens of the fuzz issuer, to mutate (they expire, so they are minted per run).
pub fn seeds() -> Vec<Vec<u8>> {
    setup()
        .tokens
        .iter()
        .map(|t| t.clone().into_bytes())
        .collect()
}

pub fn run(data: &[u8]) {
    let setup = setup();
    let text = String::from_utf8_lossy(data);
    if let Ok(principal) = setup.verifier.verify(&text, AUDIENCE) {
        let who = (
            principal.subject.clone(),
            sorted(&principal.scopes),
            sorted(&principal.roles),
        );
        assert!(
            setup.subjects.contains(&who),
            "a token verified with claims nobody signed: {who:?}"
        );
    }
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}
