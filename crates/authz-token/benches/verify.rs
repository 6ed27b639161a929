//! Verification cost per algorithm, measured in one run: the raw signature check (the josekit
//! verifier on the same bytes), josekit's own JWT decode, our full uncached verification, a
//! verified-token cache hit (shared and owned principal), the SHA-256 that the cache key costs,
//! and the refusal of a token with an unknown `kid` (parsing only, no crypto).
//!
//! On a shared machine the separately measured times drift with the load, so the run ends with a
//! paired measurement: raw and uncached alternate in short rounds and the median of the per-round
//! ratios is printed, which stays stable while the absolute numbers move.
//!
//! Run with `cargo bench -p authz-token --bench verify`. Targets: uncached within 1.2× the raw
//! signature check; a cache hit under a microsecond.

use std::hint::black_box;
use std::time::Duration;

use authz_token::{
    IssuerConfig, KeyAlgorithm, MintRequest, Signer, Verifier, VerifierConfig, generate_key_pair,
};
use criterion::{Criterion, criterion_group};
use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsVerifier, RS256};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "https://gw.example/mcp/tickets";

/// Unpadded base64url decoding for the signature segment (the `base64` crate; the crate's own
/// decoder is private).
fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

fn raw_verifier(alg: KeyAlgorithm, public_jwks: &str) -> Box<dyn JwsVerifier> {
    let doc: serde_json::Value = serde_json::from_str(public_jwks).expect("jwks");
    let jwk = Jwk::from_bytes(doc["keys"][0].to_string().as_bytes()).expect("jwk");
    match alg {
        KeyAlgorithm::Es256 => Box::new(ES256.verifier_from_jwk(&jwk).expect("verifier")),
        KeyAlgorithm::Rs256 => Box::new(RS256.verifier_from_jwk(&jwk).expect("verifier")),
        KeyAlgorithm::EdDsa => Box::new(EdDSA.verifier_from_jwk(&jwk).expect("verifier")),
    }
}

fn verifier(public_jwks: &str, cache_capacity: usize) -> Verifier {
    let jwks: serde_json::Value = serde_json::from_str(public_jwks).expect("jwks");
    let mut cfg = VerifierConfig::new(vec![IssuerConfig::with_inline_jwks(ISSUER, jwks)]);
    cfg.cache_capacity = cache_capacity;
    Verifier::from_config(&cfg).expect("verifier")
}

/// A realistic access token: scopes, roles, tenant, client, actor, jti; valid for an hour.
fn mint_token(signer: &Signer) -> String {
    let mut req = MintRequest::new(ISSUER, "alice@example.com", AUDIENCE);
    req.scopes = vec![
        "tickets:read".into(),
        "tickets:write".into(),
        "billing:read".into(),
    ];
    req.roles = vec!["support".into(), "reader".into()];
    req.tenant = Some("acme".into());
    req.client_id = Some("agent-app".into());
    req.actor = Some("agent-7".into());
    req.ttl_secs = 3600;
    signer.mint(&req).expect("mint")
}

/// One algorithm's key, a token signed with it, and the three ways of checking it.
struct Subjects {
    token: String,
    /// The index of the `.` before the signature segment of `token`.
    dot: usize,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    raw: Box<dyn JwsVerifier>,
    uncached: Verifier,
    cached: Verifier,
}

impl Subjects {
    fn new(alg: KeyAlgorithm) -> Self {
        let keys = generate_key_pair(alg, "k1").expect("keys");
        let signer = Signer::from_private_jwk(&keys.private_jwk).expect("signer");
        let token = mint_token(&signer);
        let dot = token.rfind('.').expect("three segments");
        Self {
            signing_input: token.as_bytes()[..dot].to_vec(),
            signature: b64_decode(&token[dot + 1..]),
            raw: raw_verifier(alg, &keys.public_jwks),
            uncached: verifier(&keys.public_jwks, 0),
            cached: verifier(&keys.public_jwks, 10_000),
            token,
            dot,
        }
    }
}

fn bench(c: &mut Criterion) {
    for alg in KeyAlgorithm::ALL {
        let Subjects {
            token,
            dot,
            signing_input,
            signature,
            raw,
            uncached,
            cached,
        } = Subjects::new(alg);
        assert!(raw.verify(&signing_input, &signature).is_ok());
        assert!(uncached.verify(&token, AUDIENCE).is_ok());
        assert!(cached.verify(&token, AUDIENCE).is_ok());

        let mut group = c.benchmark_group(alg.as_str());
        group.bench_function("raw_signature", |b| {
            b.iter(|| raw.verify(black_box(&signing_input), black_box(&signature)))
        });
        group.bench_function("josekit_decode", |b| {
            b.iter(|| {
                josekit::jwt::decode_with_verifier_selector(black_box(&token), |_| {
                    Ok(Some(raw.as_ref()))
                })
            })
        });
        group.bench_function("uncached_verify", |b| {
            b.iter(|| uncached.verify_shared(black_box(&token), black_box(AUDIENCE)))
        });
        group.bench_function("cache_key_sha256", |b| {
            use sha2::Digest;
            let signature = &token[dot + 1..];
            b.iter(|| {
                let mut h = sha2::Sha256::new();
                h.update(black_box(AUDIENCE).as_bytes());
                h.update(black_box(signature).as_bytes());
                h.finalize()
            })
        });
        let unknown = {
            let other = generate_key_pair(alg, "k2").expect("keys");
            mint_token(&Signer::from_private_jwk(&other.private_jwk).expect("signer"))
        };
        group.bench_function("refused_unknown_kid", |b| {
            b.iter(|| uncached.verify_shared(black_box(&unknown), black_box(AUDIENCE)))
        });
        group.bench_function("cached_verify_shared", |b| {
            b.iter(|| cached.verify_shared(black_box(&token), black_box(AUDIENCE)))
        });
        group.bench_function("cached_verify_owned", |b| {
            b.iter(|| cached.verify(black_box(&token), black_box(AUDIENCE)))
        });
        group.finish();
        println!("{alg}: token is {} bytes", token.len());
    }
}

/// Median and 10th percentile over rounds of (time of `n` uncached verifies) / (time of `n` raw
/// signature checks), alternating the two so both see the same load; and the median cache hit.
fn paired_ratio(alg: KeyAlgorithm) -> (f64, f64, f64) {
    let s = Subjects::new(alg);
    let n = 50;
    let mut ratios = Vec::new();
    let mut hits = Vec::new();
    for _ in 0..60 {
        let start = std::time::Instant::now();
        for _ in 0..n {
            let _ = black_box(
                s.raw
                    .verify(black_box(&s.signing_input), black_box(&s.signature)),
            );
        }
        let raw_time = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        for _ in 0..n {
            let _ = black_box(s.uncached.verify_shared(black_box(&s.token), AUDIENCE));
        }
        ratios.push(start.elapsed().as_secs_f64() / raw_time);
        let start = std::time::Instant::now();
        for _ in 0..10_000 {
            let _ = black_box(s.cached.verify_shared(black_box(&s.token), AUDIENCE));
        }
        hits.push(start.elapsed().as_secs_f64() / 10_000.0 * 1e9);
    }
    ratios.sort_by(f64::total_cmp);
    hits.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 10],
        ratios[ratios.len() / 2],
        hits[hits.len() / 2],
    )
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only for real runs, not when cargo test or --list merely checks the bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for alg in KeyAlgorithm::ALL {
        let (p10, median, hit_ns) = paired_ratio(alg);
        println!(
            "{alg}: uncached/raw paired ratio median {median:.3} (p10 {p10:.3}); cached hit median {hit_ns:.0} ns"
        );
    }
}
