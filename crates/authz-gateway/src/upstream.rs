//! Per-upstream HTTP clients, the gateway's own upstream credentials (static bearer or OAuth 2.0
//! client credentials with a cached token), and [`forward`], which sends an authorized request
//! upstream and maps every upstream failure to a refusal. The agent's token is never used here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authz_types::Principal;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{Instrument as _, warn};

use crate::App;
use crate::config::{Credential, OAuthClient, Secret, Upstream};
use crate::error::{ApiError, Refusal};

/// Refresh a cached OAuth token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// The largest token endpoint response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Request headers passed upstream. Everything else — above all `Authorization` — is dropped.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// Why the gateway could not obtain its upstream credential.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    #[error("the token endpoint could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("the token endpoint answered HTTP {0}")]
    Refused(u16),
    #[error("the token endpoint's answer is not a usable token response")]
    Invalid,
}

/// The HTTP client and credential of one upstream.
#[derive(Debug)]
pub(crate) struct UpstreamClient {
    pub http: reqwest::Client,
    credential: CredentialState,
}

#[derive(Debug)]
enum CredentialState {
    None,
    /// Replaced on a configuration reload (`SIGHUP`).
    Bearer(std::sync::RwLock<Secret>),
    OAuth {
        /// Replaced on a configuration reload (`SIGHUP`).
        client: std::sync::RwLock<Box<OAuthClient>>,
        cached: Mutex<Option<(Secret, Instant)>>,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Adds the certificates of a PEM bundle to the roots a client trusts (the system's stay).
pub(crate) fn trust_ca_file(
    mut builder: reqwest::ClientBuilder,
    path: &std::path::Path,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    for cert in reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{} holds no valid PEM certificate", path.display()))?
    {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}

impl UpstreamClient {
    pub(crate) fn new(up: &Upstream) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            // An idle limit between body chunks, not a total one: SSE streams may last long.
            .read_timeout(up.idle_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &up.ca_file {
            builder = trust_ca_file(builder, path)?;
        }
        let http = builder
            .build()
            .context("building the upstream HTTP client")?;
        let credential = match &up.credential {
            Credential::None => CredentialState::None,
            Credential::Bearer(s) => CredentialState::Bearer(s.clone().into()),
            Credential::OAuth(c) => CredentialState::OAuth {
                client: Box::new(c.clone()).into(),
                cached: Mutex::new(None),
            },
        };
        Ok(Self { http, credential })
    }

    /// The bearer token to present upstream, if any; fetches or refreshes an OAuth token.
    pub(crate) async fn bearer(&self) -> Result<Option<Secret>, CredentialError> {
        match &self.credential {
            CredentialState::None => Ok(None),
            CredentialState::Bearer(s) => Ok(Some(
                s.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            )),
            CredentialState::OAuth { client, cached } => {
                // Holding the lock across the fetch makes concurrent requests share one fetch.
                let mut slot = cached.lock().await;
                if let Some((token, until)) = slot.as_ref()
                    && Instant::now() < *until
                {
                    return Ok(Some(token.clone()));
                }
                let client = OAuthClient::clone(
                    &client
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                let (token, lifetime) = self.fetch(&client).await?;
                let until = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN);
                *slot = Some((token.clone(), until));
                Ok(Some(token))
            }
        }
    }

    /// Takes the credential of a reloaded configuration, when it is of the same kind (a static
    /// bearer for a static bearer, OAuth client credentials for OAuth: a cached OAuth token is
    /// dropped, so the next request fetches one with the new client). `false` when the kind
    /// changed: that needs a restart.
    pub(crate) async fn replace_credential(&self, new: &Credential) -> bool {
        match (&self.credential, new) {
            (CredentialState::None, Credential::None) => true,
            (CredentialState::Bearer(slot), Credential::Bearer(s)) => {
                *slot
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = s.clone();
                true
            }
            (CredentialState::OAuth { client, cached }, Credential::OAuth(c)) => {
                {
                    // Not held across the await below.
                    let mut slot = client
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    **slot = c.clone();
                }
                *cached.lock().await = None;
                true
            }
            _ => false,
        }
    }

    /// Forgets a cached OAuth token (after the upstream refused it).
    pub(crate) async fn invalidate(&self) {
        if let CredentialState::OAuth { cached, .. } = &self.credential {
            *cached.lock().await = None;
        }
    }

    async fn fetch(&self, c: &OAuthClient) -> Result<(Secret, Duration), CredentialError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = &c.scope {
            form.push(("scope", s));
        }
        if let Some(r) = &c.resource {
            form.push(("resource", r));
        }
        let resp = self
            .http
            .post(c.token_url.clone())
            .basic_auth(&c.client_id, Some(c.client_secret.expose()))
            .form(&form)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(CredentialError::Unreachable)?;
        if !resp.status().is_success() {
            return Err(CredentialError::Refused(resp.status().as_u16()));
        }
        let body = resp.bytes().await.map_err(CredentialError::Unreachable)?;
        if body.len() > MAX_TOKEN_RESPONSE {
            return Err(CredentialError::Invalid);
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| CredentialError::Invalid)?;
        if t.access_token.is_empty()
            || t.token_type
                .as_deref()
                .is_some_and(|tt| !tt.eq_ignore_ascii_case("bearer"))
        {
            return Err(CredentialError::Invalid);
        }
        // Without expires_in, reuse the token for a minute: long enough to matter, short enough
        // that a rotated credential is picked up.
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(60).min(86_400));
        Ok((Secret::new(t.access_token), lifetime))
    }
}

/// Sends the request upstream with the gateway's own credential; the agent's token never leaves.
/// `custom_headers`: also pass the `Mcp-Param-*` headers (only once they were checked against
/// the body, see [`crate::param_headers`]).
pub(crate) async fn forward(
    app: &App,
    up: &Upstream,
    method: reqwest::Method,
    headers: &HeaderMap,
    body: Option<bytes::Bytes>,
    custom_headers: bool,
    identity: Option<(&Principal, &str)>,
) -> Result<reqwest::Response, ApiError> {
    let upstream_error = |refusal: Refusal| {
        app.metrics.upstream_errors.inc();
        ApiError::from(refusal)
    };
    let client = app
        .client(&up.name)
        .ok_or_else(|| upstream_error(Refusal::UpstreamUnavailable))?;
    let mut req = client.http.request(method, up.url.clone());
    for name in FORWARDED_REQUEST_HEADERS {
        for v in headers.get_all(*name) {
            req = req.header(*name, v.as_bytes());
        }
    }
    if custom_headers {
        for (name, v) in headers {
            if name.as_str().starts_with(crate::param_headers::PREFIX) {
                req = req.header(name, v.as_bytes());
            }
        }
    }
    // The upstream call is a child span of the request's; the upstream learns it as its parent.
    let span = tracing::info_span!("upstream", upstream = %up.name);
    for (name, value) in crate::telemetry::outgoing_headers(&span, headers) {
        req = req.header(name, value);
    }
    match client.bearer().await {
        Ok(Some(token)) => req = req.bearer_auth(token.expose()),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, upstream = %up.name, "cannot obtain the gateway's upstream credential");
            return Err(upstream_error(Refusal::UpstreamCredentialsUnavailable));
        }
    }
    // A stdio route's bridge keeps each principal's processes apart.
    if up.stdio.is_some()
        && let Some((principal, _)) = identity
    {
        req = req.header(
            crate::stdio::OWNER_HEADER,
            crate::stdio::owner_key(principal),
        );
        if let Ok(subject) = axum::http::HeaderValue::from_str(&principal.subject) {
            req = req.header(crate::stdio::SUBJECT_HEADER, subject);
        }
    }
    // Who is calling, for an upstream that does per-user work: the gateway's signed assertion,
    // never the agent's token. Without it the request does not leave.
    if let (Some(route), Some((principal, request_id))) = (&up.identity_assertion, identity) {
        let signed = app
            .identity
            .as_ref()
            .ok_or(authz_token::Error::InvalidMintRequest {
                problem: "no identity key is loaded",
            })
            .and_then(|issuer| issuer.assertion(route, principal, request_id));
        match signed {
            Ok(value) => req = req.header(route.header.clone(), value),
            Err(e) => {
                tracing::error!(error = %e, upstream = %up.name, "cannot sign the identity assertion");
                return Err(upstream_error(Refusal::UpstreamCredentialsUnavailable));
            }
        }
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let started = Instant::now();
    let resp = match tokio::time::timeout(up.timeout, req.send())
        .instrument(span)
        .await
    {
        Err(_) => {
            warn!(upstream = %up.name, "upstream response head timed out");
            return Err(upstream_error(Refusal::UpstreamTimeout));
        }
        Ok(Err(e)) => {
            warn!(error = %e, upstream = %up.name, elapsed_ms = started.elapsed().as_millis() as u64, "upstream request failed");
            return Err(if e.is_timeout() {
                upstream_error(Refusal::UpstreamTimeout)
            } else {
                upstream_error(Refusal::UpstreamUnavailable)
            });
        }
        Ok(Ok(resp)) => resp,
    };
    if let Some(route) = app.metrics.route(&up.name) {
        route
            .upstream_first_byte
            .observe(crate::metrics::seconds_since(started));
    }
    // The upstream authenticates the *gateway*, not the agent: its 401/403 means our own
    // credential is wrong, missing or expired. Passing it on would tell the agent to fix a token
    // that is fine (and leak the upstream's challenge), so it becomes a 502 and an operator log;
    // a cached OAuth token is dropped so the next request fetches a fresh one.
    if matches!(resp.status().as_u16(), 401 | 403) {
        client.invalidate().await;
        tracing::error!(upstream = %up.name, status = resp.status().as_u16(), "the upstream refused the gateway's credential");
        return Err(upstream_error(Refusal::UpstreamRejectedGateway));
    }
    Ok(resp)
}

/// Answers a server-to-client request of a session's call stream on the client's behalf with a
/// JSON-RPC error (the gateway refused to pass it on), so the upstream does not wait for an
/// answer that will not come. Best effort: a failure is logged.
pub(crate) async fn refuse_server_request(
    client: Arc<UpstreamClient>,
    up: Arc<Upstream>,
    session_id: Option<String>,
    version: Option<String>,
    request_id: Value,
) {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": crate::error::FORBIDDEN_CODE, "message": "refused by the gateway's policy"},
    });
    let mut req = client
        .http
        .post(up.url.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = session_id {
        req = req.header("mcp-session-id", s);
    }
    if let Some(v) = version {
        req = req.header("mcp-protocol-version", v);
    }
    match client.bearer().await {
        Ok(Some(token)) => req = req.bearer_auth(token.expose()),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, upstream = %up.name, "no credential to refuse a server request");
            return;
        }
    }
    match tokio::time::timeout(up.timeout, req.send()).await {
        Ok(Ok(resp)) if resp.status().is_success() => {}
        Ok(Ok(resp)) => {
            tracing::warn!(upstream = %up.name, status = resp.status().as_u16(), "the upstream did not take the refusal of its request");
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, upstream = %up.name, "could not refuse a server request")
        }
        Err(_) => tracing::warn!(upstream = %up.name, "refusing a server request timed out"),
    }
}
