//! Issuer key sets: fixed ones (a JWKS file or inline JWKS) and remote ones (a JWKS URL that is
//! fetched with limits, cached by `Cache-Control`, refreshed in the background, re-fetched on an
//! unknown `kid` at a bounded rate, and failed closed once too stale).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::Error;
use crate::cache::TokenCache;
use crate::config::JwksFetchConfig;
use crate::error::{TokenError, error_chain};
use crate::keys::{KeyAlgorithm, VerifyKey, parse_jwks};

/// One generation of an issuer's keys.
pub(crate) struct KeySet {
    pub(crate) keys: HashMap<String, VerifyKey>,
    /// When these keys were fetched (remote keys) or loaded.
    pub(crate) loaded_at: Instant,
    /// When the background refresher should fetch again.
    refresh_after: Duration,
}

/// Keys from a file or inline JWKS: loaded at start, replaced as a whole by
/// [`crate::Verifier::reload_key_files`].
pub(crate) type FixedKeys = std::sync::RwLock<Arc<HashMap<String, VerifyKey>>>;

/// Where an issuer's verification keys live.
pub(crate) enum IssuerKeys {
    /// From a file or inline JWKS.
    Fixed(FixedKeys),
    /// Fetched from a JWKS URL and swapped as a whole on every refresh.
    Remote(Arc<RemoteKeys>),
}

impl IssuerKeys {
    /// Checks `signature` over `signing_input` with the issuer's key `kid` for `alg`.
    pub(crate) fn verify(
        &self,
        kid: &str,
        alg: KeyAlgorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        match self {
            IssuerKeys::Fixed(keys) => {
                let keys = Arc::clone(
                    &keys
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                check_signature(&keys, kid, alg, signing_input, signature)
            }
            IssuerKeys::Remote(remote) => {
                let set = remote.current();
                if remote.is_stale(&set) {
                    tracing::debug!(issuer = %remote.issuer, "issuer keys are stale; refusing the token");
                    return Err(TokenError::UnknownKey);
                }
                check_signature(&set.keys, kid, alg, signing_input, signature)
            }
        }
    }

    /// Key ids currently trusted, sorted (for `Debug` and status).
    pub(crate) fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = match self {
            IssuerKeys::Fixed(keys) => keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .keys()
                .cloned()
                .collect(),
            IssuerKeys::Remote(remote) => remote.current().keys.keys().cloned().collect(),
        };
        kids.sort();
        kids
    }
}

fn check_signature(
    keys: &HashMap<String, VerifyKey>,
    kid: &str,
    alg: KeyAlgorithm,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), TokenError> {
    let key = keys.get(kid).ok_or(TokenError::UnknownKey)?;
    // A key is bound to one algorithm; a token naming our key with another `alg` is refused
    // before any cryptography runs.
    if key.algorithm != alg {
        return Err(TokenError::UnknownKey);
    }
    key.verifier
        .verify(signing_input, signature)
        .map_err(|_| TokenError::BadSignature)
}

/// Status of one issuer's keys, for health endpoints and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKeyStatus {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The JWKS URL, for remote key sets.
    pub jwks_url: Option<String>,
    /// Key ids currently trusted, sorted.
    pub kids: Vec<String>,
    /// Seconds since the keys were last loaded or fetched successfully.
    pub age_secs: u64,
    /// Whether the keys are past `max_staleness_secs` (every token of the issuer is refused).
    pub stale: bool,
    /// Fetch attempts so far (remote key sets; 0 otherwise).
    pub fetches: u64,
    /// Failed fetch attempts so far.
    pub fetch_failures: u64,
}

/// A JWKS URL's keys and the machinery to keep them fresh.
pub(crate) struct RemoteKeys {
    pub(crate) issuer: String,
    url: reqwest::Url,
    allowed: Vec<KeyAlgorithm>,
    client: reqwest::Client,
    max_bytes: usize,
    min_refresh: Duration,
    max_refresh: Duration,
    max_staleness: Duration,
    unknown_kid_interval: Duration,
    current: RwLock<Arc<KeySet>>,
    /// When the last fetch caused by an unknown `kid` started. Held across that fetch, so
    /// concurrent requests with unknown kids wait for one fetch instead of starting their own.
    forced: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Cleared when keys leave the set or go stale, so no cached verdict outlives its key.
    cache: Option<Arc<TokenCache>>,
}

/// Checks a `jwks_url` and returns it parsed: absolute, HTTPS (or HTTP when allowed), with a
/// host and without credentials or a fragment.
pub(crate) fn parse_jwks_url(
    issuer: &str,
    url: &str,
    allow_http: bool,
) -> Result<reqwest::Url, Error> {
    let bad = |problem| Error::JwksUrl {
        issuer: issuer.to_owned(),
        problem,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("not an absolute URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(bad("must use https (allow_http is only for tests)")),
        _ => return Err(bad("must use https")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if parsed.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(parsed)
}

/// Whether two URLs have the same scheme, host and port (redirects may not leave the origin).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `max-age` of a response in seconds: the smallest one given, or 0 for `no-store` and
/// `no-cache` (which the caller raises to the minimum refresh interval).
fn cache_max_age(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let mut result: Option<u64> = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let secs = if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                Some(0)
            } else {
                match directive.split_once('=') {
                    Some((name, v)) if name.trim().eq_ignore_ascii_case("max-age") => {
                        v.trim().trim_matches('"').parse::<u64>().ok()
                    }
                    _ => None,
                }
            };
            if let Some(secs) = secs {
                result = Some(result.map_or(secs, |r| r.min(secs)));
            }
        }
    }
    result
}

impl RemoteKeys {
    /// Fetches the keys once (start-up fails if that fails) and returns the key source; the
    /// caller starts the background refresher with [`spawn_refresher`].
    pub(crate) async fn load(
        issuer: &str,
        url: &str,
        cfg: &JwksFetchConfig,
        allowed: &[KeyAlgorithm],
        cache: Option<Arc<TokenCache>>,
    ) -> Result<Arc<Self>, Error> {
        cfg.validate()?;
        let url = parse_jwks_url(issuer, url, cfg.allow_http)?;
        let origin = url.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            // Follow a few redirects within the same origin (a path move); never to another host,
            // which would let whoever controls a redirect choose our keys.
            if attempt.previous().len() >= 3 || !same_origin(attempt.url(), &origin) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs))
            .redirect(redirects)
            .https_only(!cfg.allow_http)
            .user_agent(concat!("authz-token/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::HttpClient { source })?;
        let mut remote = Self {
            issuer: issuer.to_owned(),
            url,
            allowed: allowed.to_vec(),
            client,
            max_bytes: cfg.max_bytes,
            min_refresh: Duration::from_secs(cfg.min_refresh_secs),
            max_refresh: Duration::from_secs(cfg.max_refresh_secs),
            max_staleness: Duration::from_secs(cfg.max_staleness_secs),
            unknown_kid_interval: Duration::from_secs(cfg.unknown_kid_min_interval_secs),
            current: RwLock::new(Arc::new(KeySet {
                keys: HashMap::new(),
                loaded_at: Instant::now(),
                refresh_after: Duration::ZERO,
            })),
            forced: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cache,
        };
        let (keys, refresh_after) = remote.fetch().await?;
        tracing::info!(issuer, url = %remote.url, keys = keys.len(), "fetched token issuer keys");
        remote.current = RwLock::new(Arc::new(KeySet {
            keys,
            loaded_at: Instant::now(),
            refresh_after,
        }));
        Ok(Arc::new(remote))
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn is_stale(&self, set: &KeySet) -> bool {
        set.loaded_at.elapsed() > self.max_staleness
    }

    /// One GET of the JWKS, with the size limit applied while reading.
    async fn fetch(&self) -> Result<(HashMap<String, VerifyKey>, Duration), Error> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let url = self.url.as_str();
        let fetch_err = |source| Error::JwksFetch {
            url: url.to_owned(),
            source,
        };
        let too_large = || Error::JwksTooLarge {
            url: url.to_owned(),
            limit: self.max_bytes,
        };
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(fetch_err)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(Error::JwksStatus {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let max_age = cache_max_age(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body, url, &self.allowed)?;
        if keys.is_empty() {
            return Err(Error::NoUsableKeys {
                origin: url.to_owned(),
            });
        }
        let refresh_after = max_age
            .map_or(self.max_refresh, Duration::from_secs)
            .clamp(self.min_refresh, self.max_refresh);
        Ok((keys, refresh_after))
    }

    /// Fetches and, on success, swaps in the new key set. Returns when to refresh next. On
    /// failure the previous keys stay (until they are too stale).
    pub(crate) async fn refresh(&self) -> Result<Duration, Error> {
        match self.fetch().await {
            Ok((keys, refresh_after)) => {
                let next = Arc::new(KeySet {
                    keys,
                    loaded_at: Instant::now(),
                    refresh_after,
                });
                let previous = std::mem::replace(
                    &mut *self
                        .current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    Arc::clone(&next),
                );
                let removed = previous
                    .keys
                    .keys()
                    .filter(|k| !next.keys.contains_key(*k))
                    .count();
                let added = next
                    .keys
                    .keys()
                    .filter(|k| !previous.keys.contains_key(*k))
                    .count();
                if removed > 0 || self.is_stale(&previous) {
                    // A token verified with a key that has left the set must not keep being
                    // accepted from the cache.
                    if let Some(cache) = &self.cache {
                        cache.clear();
                    }
                }
                if removed > 0 || added > 0 {
                    tracing::info!(issuer = %self.issuer, added, removed, keys = next.keys.len(), "token issuer keys rotated");
                } else {
                    tracing::debug!(issuer = %self.issuer, keys = next.keys.len(), "token issuer keys refreshed");
                }
                Ok(refresh_after)
            }
            Err(err) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let set = self.current();
                if self.is_stale(&set) {
                    if let Some(cache) = &self.cache {
                        cache.clear();
                    }
                    tracing::error!(issuer = %self.issuer, error = %error_chain(&err), "JWKS fetch failed and the last good keys are too old; refusing this issuer's tokens (token_unknown_key)");
                } else {
                    tracing::warn!(issuer = %self.issuer, error = %error_chain(&err), age_secs = set.loaded_at.elapsed().as_secs(), "JWKS fetch failed; keeping the last good keys");
                }
                Err(err)
            }
        }
    }

    /// Called for a token whose `kid` is unknown (or whose keys are stale): re-fetches at most
    /// once per `unknown_kid_min_interval_secs` and reports whether `kid` is now known.
    pub(crate) async fn refresh_for_unknown_kid(&self, kid: &str) -> bool {
        let mut last = self.forced.lock().await;
        let set = self.current();
        if set.keys.contains_key(kid) && !self.is_stale(&set) {
            // Another request fetched the key while this one waited for the lock.
            return true;
        }
        if let Some(at) = *last
            && at.elapsed() < self.unknown_kid_interval
        {
            tracing::debug!(issuer = %self.issuer, "unknown kid; JWKS re-fetch is rate-limited");
            return false;
        }
        *last = Some(Instant::now());
        tracing::debug!(issuer = %self.issuer, "unknown kid; re-fetching the JWKS");
        self.refresh().await.is_ok() && self.current().keys.contains_key(kid)
    }

    pub(crate) fn status(&self) -> IssuerKeyStatus {
        let set = self.current();
        let mut kids: Vec<String> = set.keys.keys().cloned().collect();
        kids.sort();
        IssuerKeyStatus {
            issuer: self.issuer.clone(),
            jwks_url: Some(self.url.to_string()),
            kids,
            age_secs: set.loaded_at.elapsed().as_secs(),
            stale: self.is_stale(&set),
            fetches: self.fetches.load(Ordering::Relaxed),
            fetch_failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// Starts the background refresher of `remote` on the current tokio runtime. It holds only a
/// weak reference, so it ends by itself once the verifier is dropped.
pub(crate) fn spawn_refresher(remote: &Arc<RemoteKeys>) {
    let weak = Arc::downgrade(remote);
    let mut delay = remote.current().refresh_after;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(delay).await;
            let Some(remote) = weak.upgrade() else { break };
            delay = match remote.refresh().await {
                Ok(next) => next,
                Err(_) => remote.min_refresh,
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(cache_max_age(&headers(&[])), None);
        assert_eq!(cache_max_age(&headers(&["public, max-age=300"])), Some(300));
        assert_eq!(cache_max_age(&headers(&["Max-Age=\"60\""])), Some(60));
        assert_eq!(
            cache_max_age(&headers(&["max-age=300", "no-cache"])),
            Some(0)
        );
        assert_eq!(
            cache_max_age(&headers(&["max-age=300, max-age=10"])),
            Some(10)
        );
        assert_eq!(cache_max_age(&headers(&["max-age=-1", "private"])), None);
    }

    #[test]
    fn jwks_urls_must_be_https_unless_allowed() {
        assert!(parse_jwks_url("i", "https://idp.example/jwks", false).is_ok());
        assert!(parse_jwks_url("i", "http://127.0.0.1:1/jwks", true).is_ok());
        for (url, allow_http) in [
            ("http://idp.example/jwks", false),
            ("ftp://idp.example/jwks", true),
            ("file:///etc/jwks.json", true),
            ("/jwks", true),
            ("https://user:pw@idp.example/jwks", false),
            ("https://idp.example/jwks#x", false),
        ] {
            assert!(parse_jwks_url("i", url, allow_http).is_err(), "{url}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(same_origin(
            &u("https://a.example/x"),
            &u("https://a.example:443/y")
        ));
        assert!(!same_origin(
            &u("https://a.example/x"),
            &u("https://b.example/x")
        ));
        assert!(!same_origin(
            &u("https://a.example/x"),
            &u("http://a.example/x")
        ));
        assert!(!same_origin(
            &u("https://a.example/x"),
            &u("https://a.example:8443/x")
        ));
    }
}
