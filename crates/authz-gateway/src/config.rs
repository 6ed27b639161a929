//! Gateway configuration: the raw TOML/env/flag input and its validation into typed config.
//!
//! Two phases (ripgrep style): [`RawConfig`] mirrors the file and refuses unknown keys;
//! [`Config::from_raw`] checks every value and produces what the rest of the program sees.
//! Precedence: defaults < TOML file < `AUTHZ_*` environment < flags (clap handles the last two).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration mistake: which key, what is wrong, and a hint.
#[derive(Debug, thiserror::Error)]
#[error("configuration error at `{key}`: {problem}\n  hint: {hint}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub hint: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }
}

/// A secret value (an upstream credential). `Debug` never prints it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    /// Token verification (trusted issuers, leeway, maximum lifetime): `authz_token`'s config.
    pub auth: Option<authz_token::VerifierConfig>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub audit: RawAudit,
    /// Scope hierarchy: a scope maps to the narrower scopes it implies.
    #[serde(default)]
    pub scope_hierarchy: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub revocation: RawRevocation,
    pub token_exchange: Option<RawTokenExchange>,
}

/// Where token revocations live (shared by every replica).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// Default: the audit database.
    pub database_url: Option<String>,
    /// How often the revision is polled besides Postgres notifications; default 500 ms.
    pub poll_interval_ms: Option<u64>,
}

/// RFC 8693 token exchange at `POST /token`: short-lived, narrower tokens signed by the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenExchange {
    /// `iss` of exchanged tokens; default `<public_url>/`.
    pub issuer: Option<String>,
    /// The gateway's private signing key (JWK), e.g. from `authzctl keys generate`.
    pub signing_key_file: PathBuf,
    /// The matching public JWKS; the gateway trusts its own tokens through it.
    pub jwks_file: PathBuf,
    /// Longest lifetime of an exchanged token; default 300 s.
    pub max_ttl_secs: Option<i64>,
}

/// Validated token exchange settings.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    pub issuer: String,
    pub signing_key_file: PathBuf,
    pub max_ttl_secs: i64,
}

/// Opt-in OpenTelemetry export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. Unset: no export.
    pub otlp_endpoint: Option<String>,
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

fn default_service_name() -> String {
    "authz-gateway".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    /// The externally visible base URL; canonical resource URIs are `<public_url>/mcp/<name>`.
    pub public_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Origins allowed to call (DNS-rebinding protection). Requests without `Origin` pass.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Requests (including open SSE streams) one principal may have in flight; default 64.
    pub max_in_flight_per_principal: Option<usize>,
    /// Authorization servers advertised in protected resource metadata (default: the issuers).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub files: Vec<PathBuf>,
    pub database_url: Option<String>,
    /// How often the policy source is checked for changes (Postgres also notifies at once).
    pub poll_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub database_url: Option<String>,
    /// Default audit mode of every route (`durable` unless set).
    pub mode: Option<AuditMode>,
    /// Ed25519 seed (32 raw bytes or 64 hex digits) that signs the chain's checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// The group-commit writer: queue, batch, flush interval, retries, checkpoints, chain id.
    #[serde(default)]
    pub writer: authz_audit::WriterConfig,
}

/// How a route's requests wait for their audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditMode {
    /// The request is forwarded only after its record is committed; a store that cannot take
    /// it fails the request with 503.
    Durable,
    /// The request does not wait for the commit; a full queue makes it wait (bounded), then 503.
    /// Records are never dropped silently.
    Buffered,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub url: String,
    /// Name of an environment variable holding the gateway's own bearer credential upstream.
    pub credential_env: Option<String>,
    /// Path of a file holding that credential.
    pub credential_file: Option<PathBuf>,
    /// OAuth 2.0 client credentials: the gateway fetches (and caches) its own upstream token.
    pub oauth: Option<RawOAuth>,
    /// Seconds to wait for the upstream's response head.
    pub timeout_secs: Option<u64>,
    /// Seconds a response body (an SSE stream) may stay silent before it is cut.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a response (including an SSE stream) may last in total; unset: no limit.
    pub max_stream_secs: Option<u64>,
    /// Extra CA certificates (PEM) to trust for this upstream's TLS, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// This route's audit mode (default: `audit.mode`).
    pub audit_mode: Option<AuditMode>,
    /// Tools/prompts (globs) whose raw arguments are kept in the audit record; every call's
    /// arguments get a SHA-256 digest regardless.
    #[serde(default)]
    pub record_arguments: Vec<String>,
    /// Per tool/prompt glob, argument field names replaced by `[redacted]` (at any depth) in
    /// recorded arguments.
    #[serde(default)]
    pub redact_arguments: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<RawScopeRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub token_url: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes to request.
    pub scope: Option<String>,
    /// RFC 8707 resource indicator to request the token for.
    pub resource: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScopeRule {
    /// A JSON-RPC method name, or `*`.
    pub method: String,
    /// A glob over the operation's target (`*` matches any text); default `*`.
    #[serde(default = "star")]
    pub target: String,
    pub require: Vec<String>,
}

fn star() -> String {
    "*".to_owned()
}

/// Flags and `AUTHZ_*` environment variables that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub audit_database_url: Option<String>,
    pub policy_database_url: Option<String>,
}

/// Where policies come from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    Files { model: PathBuf, files: Vec<PathBuf> },
    Database { model: PathBuf, url: String },
}

/// A validated scope requirement.
#[derive(Debug, Clone)]
pub struct ScopeRule {
    pub method: String,
    pub target: String,
    pub require: Vec<String>,
}

/// How the gateway authenticates itself to an upstream. Never the agent's token.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    /// A static bearer token.
    Bearer(Secret),
    /// OAuth 2.0 client credentials grant.
    OAuth(OAuthClient),
}

/// Validated client-credentials settings.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// A validated upstream route.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub url: reqwest::Url,
    pub credential: Credential,
    /// Time to wait for the response head.
    pub timeout: std::time::Duration,
    /// Longest silence allowed inside a response body.
    pub idle_timeout: std::time::Duration,
    /// Longest a response may last in total, if limited.
    pub max_stream: Option<std::time::Duration>,
    pub ca_file: Option<PathBuf>,
    pub audit_mode: AuditMode,
    pub record_arguments: Vec<String>,
    pub redact_arguments: BTreeMap<String, Vec<String>>,
    pub scopes: Vec<ScopeRule>,
    /// The canonical resource URI of this route (the token audience).
    pub resource: String,
}

/// The validated configuration the gateway runs with.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub max_in_flight_per_principal: usize,
    pub allowed_origins: Vec<String>,
    pub authorization_servers: Vec<String>,
    pub verifier: authz_token::VerifierConfig,
    pub policy: PolicySource,
    pub policy_poll_interval: std::time::Duration,
    pub audit_database_url: String,
    pub audit_signing_key_file: Option<PathBuf>,
    pub audit_writer: authz_audit::WriterConfig,
    pub scope_hierarchy: BTreeMap<String, Vec<String>>,
    pub upstreams: Vec<Upstream>,
    pub telemetry: Telemetry,
    pub revocation_database_url: String,
    pub revocation_poll_interval: std::time::Duration,
    pub token_exchange: Option<TokenExchange>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_AUDIT_URL: &str = "sqlite://authz-audit.db?mode=rwc";
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

impl RawConfig {
    /// Reads and parses a TOML file; unknown keys are errors that name the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "--config",
                format!("cannot read {}: {e}", path.display()),
                "pass an existing TOML file with --config or AUTHZ_CONFIG",
            )
        })?;
        Self::from_toml(&text).map_err(|mut e| {
            e.problem = format!("{} (in {})", e.problem, path.display());
            e
        })
    }

    /// Parses TOML text. A value that does not fit is reported at its full key path, array
    /// indices included (`upstreams[1].url`, `server.lisen` for an unknown key); a syntax error,
    /// which has no key yet, at `<file>` with its line and column.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let problem = match e.span().map(|s| line_col(text, s.start)) {
                Some((line, col)) => format!("{} (line {line}, column {col})", e.message()),
                None => e.message().to_owned(),
            };
            ConfigError::new("<file>", problem, TOML_HINT)
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "<file>".to_owned()
            } else {
                path
            };
            ConfigError::new(key, e.into_inner().message(), TOML_HINT)
        })
    }
}

const TOML_HINT: &str = "see the configuration reference in README.md; unknown keys are refused";

/// The 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before, |i| &before[i + 1..])
        .chars()
        .count()
        + 1;
    (line, col)
}

impl Config {
    /// Validates raw configuration plus overrides. `env` resolves credential variables (injected
    /// so tests can feed values).
    pub fn from_raw(
        raw: RawConfig,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let listen_text = overrides
            .listen
            .clone()
            .or(raw.server.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::new(
                "server.listen",
                format!("`{listen_text}` is not an address"),
                "use host:port, e.g. 127.0.0.1:8080",
            )
        })?;
        let public_url = overrides
            .public_url
            .clone()
            .or(raw.server.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let parsed = reqwest::Url::parse(&public_url).map_err(|e| {
            ConfigError::new(
                "server.public_url",
                format!("`{public_url}`: {e}"),
                "an absolute http(s) URL",
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(ConfigError::new(
                "server.public_url",
                format!("`{public_url}` must be an http(s) URL without a query"),
                "e.g. https://gateway.example.com",
            ));
        }
        let public_url = public_url.trim_end_matches('/').to_owned();
        let max_body_bytes = raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes == 0 || max_body_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                format!("{max_body_bytes} is out of range"),
                "between 1 byte and 64 MiB",
            ));
        }

        let max_in_flight_per_principal = raw.server.max_in_flight_per_principal.unwrap_or(64);
        if max_in_flight_per_principal == 0 || max_in_flight_per_principal > 100_000 {
            return Err(ConfigError::new(
                "server.max_in_flight_per_principal",
                format!("{max_in_flight_per_principal} is out of range"),
                "between 1 and 100000",
            ));
        }

        let auth = raw.auth.ok_or_else(|| {
            ConfigError::new(
                "auth",
                "no [auth] section: the gateway cannot verify tokens",
                "add [[auth.issuers]] with issuer and jwks_file (authzctl keys generate makes a dev key)",
            )
        })?;
        if auth.issuers.is_empty() {
            return Err(ConfigError::new(
                "auth.issuers",
                "no trusted issuer",
                "add at least one [[auth.issuers]] entry",
            ));
        }
        let authorization_servers = if raw.server.authorization_servers.is_empty() {
            auth.issuers.iter().map(|i| i.issuer.clone()).collect()
        } else {
            raw.server.authorization_servers
        };

        let model = raw
            .policy
            .model
            .unwrap_or_else(|| PathBuf::from("policies/model.conf"));
        let policy = match (
            overrides
                .policy_database_url
                .clone()
                .or(raw.policy.database_url),
            raw.policy.files,
        ) {
            (Some(_), files) if !files.is_empty() => {
                return Err(ConfigError::new(
                    "policy",
                    "both policy.files and policy.database_url are set",
                    "choose one policy source",
                ));
            }
            (Some(url), _) => PolicySource::Database { model, url },
            (None, files) if files.is_empty() => PolicySource::Files {
                model,
                files: vec![PathBuf::from("policies/policy.csv")],
            },
            (None, files) => PolicySource::Files { model, files },
        };

        let poll_ms = raw.policy.poll_interval_ms.unwrap_or(1000);
        if !(10..=3_600_000).contains(&poll_ms) {
            return Err(ConfigError::new(
                "policy.poll_interval_ms",
                format!("{poll_ms} is out of range"),
                "10 ms to 1 hour",
            ));
        }

        let audit_database_url = overrides
            .audit_database_url
            .clone()
            .or(raw.audit.database_url)
            .unwrap_or_else(|| DEFAULT_AUDIT_URL.to_owned());

        for (scope, implied) in &raw.scope_hierarchy {
            if implied.iter().any(|s| s == scope) {
                return Err(ConfigError::new(
                    format!("scope_hierarchy.{scope}"),
                    "a scope cannot imply itself",
                    "list only narrower scopes",
                ));
            }
        }

        if let Some(ep) = &raw.telemetry.otlp_endpoint
            && !reqwest::Url::parse(ep).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return Err(ConfigError::new(
                "telemetry.otlp_endpoint",
                format!("`{ep}` is not an http(s) URL"),
                "e.g. http://127.0.0.1:4318/v1/traces",
            ));
        }

        if raw.upstreams.is_empty() {
            return Err(ConfigError::new(
                "upstreams",
                "no upstream MCP server configured",
                "add an [[upstreams]] entry with name and url",
            ));
        }
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (i, u) in raw.upstreams.into_iter().enumerate() {
            let key = format!("upstreams[{i}]");
            if u.name.is_empty()
                || !u
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("`{}` is not a valid route name", u.name),
                    "use letters, digits, '-' and '_'",
                ));
            }
            if upstreams.iter().any(|x: &Upstream| x.name == u.name) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("duplicate upstream `{}`", u.name),
                    "route names must be unique",
                ));
            }
            let url = reqwest::Url::parse(&u.url)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{key}.url"),
                        format!("`{}` is not an http(s) URL", u.url),
                        "e.g. http://127.0.0.1:9100/mcp",
                    )
                })?;
            let bearer = secret(
                &format!("{key}.credential"),
                u.credential_env.as_deref(),
                u.credential_file.as_deref(),
                env,
            )?;
            let credential = match (bearer, u.oauth) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        format!("{key}.oauth"),
                        "both a static credential and oauth are set",
                        "choose one way for the gateway to authenticate upstream",
                    ));
                }
                (Some(b), None) => Credential::Bearer(b),
                (None, Some(o)) => {
                    let okey = format!("{key}.oauth");
                    let token_url = reqwest::Url::parse(&o.token_url)
                        .ok()
                        .filter(|url| matches!(url.scheme(), "http" | "https"))
                        .ok_or_else(|| {
                            ConfigError::new(
                                format!("{okey}.token_url"),
                                format!("`{}` is not an http(s) URL", o.token_url),
                                "the authorization server's token endpoint",
                            )
                        })?;
                    let client_secret = secret(
                        &format!("{okey}.client_secret"),
                        o.client_secret_env.as_deref(),
                        o.client_secret_file.as_deref(),
                        env,
                    )?
                    .ok_or_else(|| {
                        ConfigError::new(
                            format!("{okey}.client_secret_env"),
                            "no client secret",
                            "set client_secret_env or client_secret_file",
                        )
                    })?;
                    if o.client_id.is_empty() {
                        return Err(ConfigError::new(
                            format!("{okey}.client_id"),
                            "empty",
                            "the gateway's OAuth client id",
                        ));
                    }
                    Credential::OAuth(OAuthClient {
                        token_url,
                        client_id: o.client_id,
                        client_secret,
                        scope: o.scope,
                        resource: o.resource,
                    })
                }
                (None, None) => Credential::None,
            };
            if let Some(ca) = &u.ca_file
                && !ca.is_file()
            {
                return Err(ConfigError::new(
                    format!("{key}.ca_file"),
                    format!("{} is not a readable file", ca.display()),
                    "a PEM file with one or more CA certificates",
                ));
            }
            if u.max_stream_secs == Some(0) {
                return Err(ConfigError::new(
                    format!("{key}.max_stream_secs"),
                    "must be positive",
                    "leave it out for no limit",
                ));
            }
            let idle_secs = u.idle_timeout_secs.unwrap_or(300);
            if idle_secs == 0 || idle_secs > 86_400 {
                return Err(ConfigError::new(
                    format!("{key}.idle_timeout_secs"),
                    "out of range",
                    "1..=86400 seconds",
                ));
            }
            let timeout_secs = u.timeout_secs.unwrap_or(30);
            if timeout_secs == 0 || timeout_secs > 3600 {
                return Err(ConfigError::new(
                    format!("{key}.timeout_secs"),
                    "out of range",
                    "1..=3600 seconds",
                ));
            }
            let mut scopes = Vec::with_capacity(u.scopes.len());
            for (j, r) in u.scopes.into_iter().enumerate() {
                if r.require.is_empty() || r.require.iter().any(|s| s.is_empty() || s.contains(' '))
                {
                    return Err(ConfigError::new(
                        format!("{key}.scopes[{j}].require"),
                        "must list one or more scope names without spaces",
                        "e.g. require = [\"tickets:read\"]",
                    ));
                }
                scopes.push(ScopeRule {
                    method: r.method,
                    target: r.target,
                    require: r.require,
                });
            }
            let resource = format!("{public_url}/mcp/{}", u.name);
            upstreams.push(Upstream {
                name: u.name,
                url,
                credential,
                timeout: std::time::Duration::from_secs(timeout_secs),
                idle_timeout: std::time::Duration::from_secs(idle_secs),
                max_stream: u.max_stream_secs.map(std::time::Duration::from_secs),
                ca_file: u.ca_file,
                audit_mode: u
                    .audit_mode
                    .or(raw.audit.mode)
                    .unwrap_or(AuditMode::Durable),
                record_arguments: u.record_arguments,
                redact_arguments: u.redact_arguments,
                scopes,
                resource,
            });
        }

        let revocation_database_url = raw
            .revocation
            .database_url
            .clone()
            .unwrap_or_else(|| audit_database_url.clone());
        let revocation_poll_ms = raw.revocation.poll_interval_ms.unwrap_or(500);
        if !(10..=60_000).contains(&revocation_poll_ms) {
            return Err(ConfigError::new(
                "revocation.poll_interval_ms",
                format!("{revocation_poll_ms} is out of range"),
                "10 ms to 60 s",
            ));
        }
        let mut auth = auth;
        let token_exchange = match raw.token_exchange {
            None => None,
            Some(t) => {
                let issuer = t.issuer.unwrap_or_else(|| format!("{public_url}/"));
                let max_ttl_secs = t.max_ttl_secs.unwrap_or(300);
                if !(1..=3600).contains(&max_ttl_secs) {
                    return Err(ConfigError::new(
                        "token_exchange.max_ttl_secs",
                        format!("{max_ttl_secs} is out of range"),
                        "1..=3600 seconds; exchanged tokens are meant to be short-lived",
                    ));
                }
                if auth.issuers.iter().any(|i| i.issuer == issuer) {
                    return Err(ConfigError::new(
                        "token_exchange.issuer",
                        format!("`{issuer}` is also an [[auth.issuers]] entry"),
                        "the gateway's own issuer is added automatically; give it its own name",
                    ));
                }
                // The gateway trusts its own tokens, for its own routes only, and only as
                // access tokens (`typ: at+jwt`).
                let mut own = authz_token::IssuerConfig::new(issuer.clone(), t.jwks_file);
                own.audiences = upstreams.iter().map(|u| u.resource.clone()).collect();
                own.require_typ_at_jwt = true;
                auth.issuers.push(own);
                Some(TokenExchange {
                    issuer,
                    signing_key_file: t.signing_key_file,
                    max_ttl_secs,
                })
            }
        };

        Ok(Config {
            listen,
            public_url,
            max_body_bytes,
            max_in_flight_per_principal,
            allowed_origins: raw.server.allowed_origins,
            authorization_servers,
            verifier: auth,
            policy,
            policy_poll_interval: std::time::Duration::from_millis(poll_ms),
            audit_database_url,
            audit_signing_key_file: raw.audit.signing_key_file,
            audit_writer: raw.audit.writer,
            scope_hierarchy: raw.scope_hierarchy,
            upstreams,
            telemetry: raw.telemetry,
            revocation_database_url,
            revocation_poll_interval: std::time::Duration::from_millis(revocation_poll_ms),
            token_exchange,
        })
    }
}

/// Resolves a secret given by environment variable name or file path (at most one).
fn secret(
    key: &str,
    var: Option<&str>,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    match (var, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{key}_env"),
            format!("both {key}_env and {key}_file are set"),
            "choose one",
        )),
        (Some(var), None) => env(var)
            .filter(|v| !v.is_empty())
            .map(|v| Some(Secret::new(v)))
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{key}_env"),
                    format!("environment variable {var} is not set"),
                    format!("export it, or remove {key}_env"),
                )
            }),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                    "point it at a readable file holding the secret",
                )
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}_file"),
                    format!("{} is empty", path.display()),
                    "put the secret in the file",
                ));
            }
            Ok(Some(Secret::new(text.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://gw.example/"

[auth]
[[auth.issuers]]
issuer = "https://idp.example"
jwks_file = "keys/jwks.json"

[[upstreams]]
name = "tickets"
url = "http://127.0.0.1:9100/mcp"
credential_env = "TICKETS_TOKEN"
scopes = [{ method = "tools/call", target = "delete_*", require = ["tickets:write"] }]
"#;

    fn env(var: &str) -> Option<String> {
        (var == "TICKETS_TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn a_good_file_validates() {
        let raw = RawConfig::from_toml(GOOD).expect("parses");
        let cfg = Config::from_raw(raw, &Overrides::default(), &env).expect("valid");
        assert_eq!(cfg.public_url, "https://gw.example");
        assert_eq!(cfg.upstreams[0].resource, "https://gw.example/mcp/tickets");
        assert_eq!(cfg.authorization_servers, vec!["https://idp.example"]);
        assert!(
            !format!("{cfg:?}").contains("s3cret"),
            "secrets are redacted in Debug"
        );
    }

    #[test]
    fn overrides_win_over_the_file() {
        let raw = RawConfig::from_toml(GOOD).expect("parses");
        let o = Overrides {
            listen: Some("127.0.0.1:9999".into()),
            ..Default::default()
        };
        let cfg = Config::from_raw(raw, &o, &env).expect("valid");
        assert_eq!(cfg.listen.port(), 9999);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = RawConfig::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n")
            .expect_err("unknown key");
        assert_eq!(err.key, "server.lisen");
        assert!(err.problem.contains("unknown field"), "{err}");
    }

    const SECOND: &str = r#"
[[upstreams]]
name = "billing"
url = "http://127.0.0.1:9200/mcp"
"#;

    #[test]
    fn a_bad_value_in_the_second_upstream_names_its_index() {
        let text = format!(
            "{GOOD}{}",
            SECOND.replace("\"http://127.0.0.1:9200/mcp\"", "5")
        );
        let err = RawConfig::from_toml(&text).expect_err("url is not a string");
        assert_eq!(err.key, "upstreams[1].url", "{err}");
        assert!(err.problem.contains("string"), "{err}");

        let text = format!(
            "{GOOD}{}",
            SECOND.replace("url = ", "timeout_secs = -1\nurl = ")
        );
        let err = RawConfig::from_toml(&text).expect_err("negative timeout");
        assert_eq!(err.key, "upstreams[1].timeout_secs", "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_at_their_full_path() {
        let text = format!("{GOOD}{SECOND}credentail_env = \"X\"\n");
        let err = RawConfig::from_toml(&text).expect_err("unknown key");
        assert_eq!(err.key, "upstreams[1].credentail_env", "{err}");
        assert!(err.problem.contains("unknown field"), "{err}");
        assert!(err.hint.contains("unknown keys are refused"), "{err}");

        let text = GOOD.replace("require = ", "requires = ");
        let err = RawConfig::from_toml(&text).expect_err("unknown key");
        assert_eq!(err.key, "upstreams[0].scopes[0].requires", "{err}");

        let err = RawConfig::from_toml("[sever]\nlisten = \"127.0.0.1:1\"\n").expect_err("unknown");
        assert_eq!(err.key, "sever", "{err}");
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = RawConfig::from_toml("[server]\nlisten = \n").expect_err("no value");
        assert_eq!(err.key, "<file>");
        assert!(err.problem.contains("line 2"), "{err}");
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (GOOD.replace("127.0.0.1:0", "nowhere"), "server.listen"),
            (
                GOOD.replace("http://127.0.0.1:9100/mcp", "ftp://x"),
                "upstreams[0].url",
            ),
            (
                GOOD.replace("TICKETS_TOKEN", "MISSING_VAR"),
                "upstreams[0].credential_env",
            ),
            (
                GOOD.replace("name = \"tickets\"", "name = \"a/b\""),
                "upstreams[0].name",
            ),
            (
                GOOD.replace("[\"tickets:write\"]", "[]"),
                "upstreams[0].scopes[0].require",
            ),
        ];
        for (text, key) in cases {
            let raw = RawConfig::from_toml(&text).expect("parses");
            let err = Config::from_raw(raw, &Overrides::default(), &env).expect_err(key);
            assert_eq!(err.key, key, "{err}");
        }
        let err = Config::from_raw(RawConfig::default(), &Overrides::default(), &env)
            .expect_err("no auth");
        assert_eq!(err.key, "auth");
    }
}
