//! Shared fixtures: generated key files, a configured verifier and a raw token builder.

use std::path::PathBuf;

use authz_token::{
    GeneratedKeys, IssuerConfig, KeyAlgorithm, MintRequest, Signer, Verifier, VerifierConfig,
    generate_key_pair,
};
use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsSigner, RS256};
use serde_json::Value;
use tempfile::TempDir;

/// The trusted issuer with all three algorithms.
pub(crate) const ISSUER: &str = "https://idp.example";
/// A second trusted issuer that only allows RS256 and has its own keys.
pub(crate) const OTHER_ISSUER: &str = "https://other-idp.example";
/// The protected resource the tokens are minted for.
pub(crate) const AUDIENCE: &str = "https://gw.example/mcp/tickets";
/// A fixed "now" so time-dependent tests are deterministic.
pub(crate) const NOW: i64 = 1_900_000_000;

/// The JWS header of a hand-built token signed with the trusted issuer's ES256 key.
pub(crate) const ES_HEADER: &str = r#"{"alg":"ES256","kid":"es-1"}"#;
/// The JWS header of a hand-built token signed with [`OTHER_ISSUER`]'s RS256 key.
pub(crate) const OTHER_HEADER: &str = r#"{"alg":"RS256","kid":"other-rs"}"#;

/// Key ids of the trusted issuer, one per algorithm.
pub(crate) fn kid(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::Es256 => "es-1",
        KeyAlgorithm::Rs256 => "rs-1",
        KeyAlgorithm::EdDsa => "ed-1",
    }
}

pub(crate) struct Fixture {
    pub dir: TempDir,
    pub keys: Vec<(KeyAlgorithm, GeneratedKeys)>,
    pub other_keys: GeneratedKeys,
    pub verifier: Verifier,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self::with(|_| {})
    }

    /// Builds the fixture, letting the caller adjust the verifier configuration.
    pub(crate) fn with(adjust: impl FnOnce(&mut VerifierConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys: Vec<_> = KeyAlgorithm::ALL
            .into_iter()
            .map(|alg| (alg, generate_key_pair(alg, kid(alg)).expect("generate")))
            .collect();
        let jwks = merge_jwks(keys.iter().map(|(_, k)| k.public_jwks.as_str()));
        let jwks_file = write(&dir, "idp-jwks.json", &jwks);

        let other_keys = generate_key_pair(KeyAlgorithm::Rs256, "other-rs").expect("generate");
        let other_file = write(&dir, "other-jwks.json", &other_keys.public_jwks);
        let mut other = IssuerConfig::new(OTHER_ISSUER, other_file);
        other.algorithms = vec!["RS256".into()];

        let mut cfg = VerifierConfig::new(vec![IssuerConfig::new(ISSUER, jwks_file), other]);
        adjust(&mut cfg);
        let verifier = Verifier::from_config(&cfg).expect("verifier");
        Self {
            dir,
            keys,
            other_keys,
            verifier,
        }
    }

    pub(crate) fn private_jwk(&self, alg: KeyAlgorithm) -> &str {
        &self
            .keys
            .iter()
            .find(|(a, _)| *a == alg)
            .expect("key for alg")
            .1
            .private_jwk
    }

    pub(crate) fn signer(&self, alg: KeyAlgorithm) -> Signer {
        Signer::from_private_jwk(self.private_jwk(alg)).expect("signer")
    }

    /// A token minted by [`Signer`] with the trusted issuer's ES256 key.
    pub(crate) fn mint(&self, req: &MintRequest) -> String {
        self.signer(KeyAlgorithm::Es256).mint(req).expect("mint")
    }

    /// A hand-built token with `payload` (JSON text), under [`ES_HEADER`] and signed with the
    /// trusted issuer's ES256 key.
    pub(crate) fn es_token(&self, payload: &str) -> String {
        let es = self.jose_signer(KeyAlgorithm::Es256);
        raw_token(ES_HEADER, payload, Some(es.as_ref()))
    }

    /// A hand-built token with `payload` (JSON text), under [`OTHER_HEADER`] and signed with
    /// [`OTHER_ISSUER`]'s RS256 key.
    pub(crate) fn other_token(&self, payload: &str) -> String {
        let other = jose_signer(KeyAlgorithm::Rs256, &self.other_keys.private_jwk);
        raw_token(OTHER_HEADER, payload, Some(other.as_ref()))
    }

    /// A josekit signer for hand-built tokens with this issuer's key for `alg`.
    pub(crate) fn jose_signer(&self, alg: KeyAlgorithm) -> Box<dyn JwsSigner> {
        jose_signer(alg, self.private_jwk(alg))
    }

    pub(crate) fn verify(
        &self,
        token: &str,
    ) -> Result<authz_types::Principal, authz_token::TokenError> {
        self.verifier.verify_at(token, AUDIENCE, NOW)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A mint request from the trusted issuer to [`AUDIENCE`], issued at [`NOW`].
pub(crate) fn request(subject: &str) -> MintRequest {
    let mut req = MintRequest::new(ISSUER, subject, AUDIENCE);
    req.issued_at = Some(NOW);
    req
}

pub(crate) fn write(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

/// Merges several `{"keys":[...]}` documents into one.
pub(crate) fn merge_jwks<'a>(docs: impl Iterator<Item = &'a str>) -> String {
    let mut all = Vec::new();
    for doc in docs {
        let v: Value = serde_json::from_str(doc).expect("jwks json");
        all.extend(v["keys"].as_array().expect("keys").iter().cloned());
    }
    serde_json::json!({ "keys": all }).to_string()
}

pub(crate) fn jose_signer(alg: KeyAlgorithm, private_jwk: &str) -> Box<dyn JwsSigner> {
    let jwk = Jwk::from_bytes(private_jwk.as_bytes()).expect("jwk");
    match alg {
        KeyAlgorithm::Es256 => Box::new(ES256.signer_from_jwk(&jwk).expect("signer")),
        KeyAlgorithm::Rs256 => Box::new(RS256.signer_from_jwk(&jwk).expect("signer")),
        KeyAlgorithm::EdDsa => Box::new(EdDSA.signer_from_jwk(&jwk).expect("signer")),
    }
}

/// Builds a compact JWS from exact header and payload bytes, signed by `signer` (or with an
/// empty signature). Lets tests express tokens no well-behaved library would produce.
pub(crate) fn raw_token(header: &str, payload: &str, signer: Option<&dyn JwsSigner>) -> String {
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = match signer {
        Some(s) => s.sign(signing_input.as_bytes()).expect("sign"),
        None => Vec::new(),
    };
    format!("{signing_input}.{}", b64(&signature))
}

/// Valid claims for a hand-built token (JSON object text), with `extra` merged over them and
/// `null` values in `extra` removing the claim.
pub(crate) fn claims(extra: Value) -> String {
    let mut base = serde_json::json!({
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": NOW, "exp": NOW + 300,
    });
    let map = base.as_object_mut().expect("object");
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    base.to_string()
}

/// Unpadded base64url (the `base64` crate, not the crate-private decoder under test).
pub(crate) fn b64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input)
}

/// Decodes unpadded base64url with a tiny decoder of the test's own (not the `base64` crate
/// [`b64`] encodes with, so the two check each other), to read a token's segments.
pub(crate) fn b64_decode(segment: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in segment.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}

/// What the loopback JWKS server answers; tests change it while the server runs.
#[derive(Debug, Clone)]
pub(crate) struct JwksReply {
    pub status: u16,
    pub body: String,
    pub cache_control: Option<String>,
    /// A `Location` to redirect to (with status 302) instead of answering.
    pub redirect_to: Option<String>,
}

/// A JWKS endpoint served over loopback by the test itself, counting the requests it gets.
pub(crate) struct JwksServer {
    pub base: String,
    reply: std::sync::Arc<std::sync::Mutex<JwksReply>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub(crate) async fn start(body: &str, cache_control: Option<&str>) -> Self {
        use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
        use std::sync::atomic::Ordering;

        let reply = std::sync::Arc::new(std::sync::Mutex::new(JwksReply {
            status: 200,
            body: body.to_owned(),
            cache_control: cache_control.map(str::to_owned),
            redirect_to: None,
        }));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // `/jwks` answers as `reply` says (possibly redirecting); `/moved/jwks` never redirects.
        let handler = |may_redirect: bool| {
            let (r, h) = (reply.clone(), hits.clone());
            move || {
                let (r, h) = (r.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let reply = r.lock().expect("lock").clone();
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    if let Some(cc) = &reply.cache_control {
                        headers.insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_str(cc).expect("cc"),
                        );
                    }
                    if let Some(to) = reply.redirect_to.as_deref().filter(|_| may_redirect) {
                        headers.insert(
                            header::LOCATION,
                            HeaderValue::from_str(to).expect("location"),
                        );
                        return (StatusCode::FOUND, headers, String::new());
                    }
                    (
                        StatusCode::from_u16(reply.status).expect("status"),
                        headers,
                        reply.body,
                    )
                }
            }
        };
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(handler(true)))
            .route("/moved/jwks", axum::routing::get(handler(false)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            base,
            reply,
            hits,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set(&self, change: impl FnOnce(&mut JwksReply)) {
        change(&mut self.reply.lock().expect("lock"));
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
