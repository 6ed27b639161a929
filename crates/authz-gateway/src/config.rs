//! Gateway configuration: the raw TOML/env/flag input and its validation into typed config.
//!
//! Two phases (ripgrep style): [`RawConfig`] mirrors the file, refuses unknown keys and holds
//! the defaults (`raw.rs`); [`Config::from_raw`] checks every section (`validate.rs`, one
//! function per section) and produces what the rest of the program sees.
//! Precedence: defaults < TOML file < `AUTHZ_*` environment < flags (clap handles the last two).

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use raw::*;
pub use validate::MAX_BODY_LIMIT;

use crate::scopes::Glob;

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

/// Where the gateway itself is: the origins a same-origin browser page sends, and the `Host`
/// values that name it. Derived from `server.public_url` and, when the gateway listens on a
/// loopback address, the loopback names on its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnAddress {
    /// `scheme://host[:port]`, as browsers send `Origin` (default ports left out).
    origins: Vec<String>,
    /// `(host, port)` pairs a `Host` header may name (host lowercase, IPv6 in brackets).
    hosts: Vec<(String, u16)>,
    /// Whether the listener is on a loopback address: then a `Host` that is not one of
    /// [`OwnAddress::hosts`] is refused (DNS rebinding).
    loopback: bool,
}

impl OwnAddress {
    pub fn new(listen: SocketAddr, public_url: &str) -> Self {
        let mut origins = Vec::new();
        let mut hosts = Vec::new();
        if let Ok(url) = reqwest::Url::parse(public_url) {
            origins.push(url.origin().ascii_serialization());
            if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
                hosts.push((host.to_ascii_lowercase(), port));
            }
        }
        let loopback = listen.ip().is_loopback();
        if loopback {
            let port = listen.port();
            for host in ["localhost", "127.0.0.1", "[::1]"] {
                origins.push(if port == 80 {
                    format!("http://{host}")
                } else {
                    format!("http://{host}:{port}")
                });
                hosts.push((host.to_owned(), port));
            }
        }
        origins.dedup();
        hosts.dedup();
        Self {
            origins,
            hosts,
            loopback,
        }
    }

    /// Whether `origin` is the gateway's own (a same-origin page).
    pub fn is_own_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Whether a request with this `Host` may be served: anything when the gateway is not on
    /// loopback (a proxy in front decides its names), else only names of the gateway itself.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        if !self.loopback {
            return true;
        }
        let Some(host) = host else {
            // HTTP/1.0 without Host, or HTTP/2 without :authority: no name to rebind.
            return true;
        };
        let host = host.to_ascii_lowercase();
        // `name[:port]`, the name possibly a bracketed IPv6 address. Without a port the client
        // used its scheme's default, which a TLS proxy in front hides: the name must match.
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port))
                if name.starts_with('[') == name.ends_with(']') && !name.is_empty() =>
            {
                match port.parse::<u16>() {
                    Ok(p) => (name.to_owned(), Some(p)),
                    Err(_) => return false,
                }
            }
            _ => (host.clone(), None),
        };
        self.hosts
            .iter()
            .any(|(h, p)| *h == name && port.is_none_or(|port| port == *p))
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

/// Validated token exchange settings.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    pub issuer: String,
    pub signing_key_file: PathBuf,
    pub max_ttl_secs: i64,
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

/// A validated scope requirement; its target glob is compiled.
#[derive(Debug, Clone)]
pub struct ScopeRule {
    pub method: String,
    pub target: Glob,
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

/// A validated `[[audit.sinks]]` entry.
#[derive(Debug, Clone)]
pub struct AuditSink {
    pub name: String,
    pub kind: raw::SinkKind,
    pub url: reqwest::Url,
    /// The whole `Authorization` value (`<scheme> <token>`), when a token is set.
    pub authorization: Option<Secret>,
    pub batch_records: u32,
    pub poll_interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub start: authz_audit::ShipStart,
    pub ca_file: Option<PathBuf>,
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
    /// Tools/prompts whose raw arguments are recorded.
    pub record_arguments: Vec<Glob>,
    /// Per tool/prompt glob, the argument fields redacted in recorded arguments.
    pub redact_arguments: Vec<(Glob, Vec<String>)>,
    pub scopes: Vec<ScopeRule>,
    /// The canonical resource URI of this route (the token audience).
    pub resource: String,
    /// Policy denials of `tools/call` answered as tool error results (see
    /// [`crate::error::ApiError::as_tool_result`]).
    pub structured_denials: bool,
    /// What the upstream may ask the client for (see [`crate::input_requests`]).
    pub input_requests: Vec<InputRule>,
    /// Pinned definitions (see [`crate::pins`]).
    pub pin_definitions: crate::pins::PinMode,
    /// The identity assertion sent upstream, if any (see [`crate::identity`]).
    pub identity_assertion: Option<IdentityAssertion>,
    /// A stdio server the gateway runs (see [`crate::stdio`]); `url` is then the gateway's
    /// own loopback bridge, set when the gateway starts.
    pub stdio: Option<StdioSpec>,
}

/// A validated stdio upstream: what to run, with what, within which limits.
#[derive(Clone)]
pub struct StdioSpec {
    /// The program, resolved to a path when the configuration loads.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The child's whole environment: the allow-listed variables and the secrets.
    pub env: Vec<(String, Secret)>,
    pub cwd: Option<PathBuf>,
    pub max_processes: usize,
    pub max_per_principal: usize,
    /// `stdio.share = "principal"`: a principal's sessions share one process.
    pub share_per_principal: bool,
    pub idle: std::time::Duration,
    pub start_timeout: std::time::Duration,
}

impl std::fmt::Debug for StdioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("max_processes", &self.max_processes)
            .field("max_per_principal", &self.max_per_principal)
            .finish_non_exhaustive()
    }
}

/// A validated [`raw::RawIdentityAssertion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityAssertion {
    pub header: axum::http::HeaderName,
    pub lifetime_secs: i64,
    pub audience: String,
}

/// A validated [`raw::RawIdentity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub signing_key_file: PathBuf,
    pub jwks_file: PathBuf,
    pub issuer: String,
}

/// A validated [`raw::RawInputRule`].
#[derive(Debug, Clone)]
pub struct InputRule {
    pub method: String,
    pub target: Glob,
    pub sampling: bool,
    pub elicitation: bool,
    /// ASCII-serialized origins (`https://host[:port]`, default port left out).
    pub url_origins: Option<Vec<String>>,
    pub roots: bool,
}

/// The validated configuration the gateway runs with.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    /// The gateway's own origins and host names, for the `Origin` and `Host` checks.
    pub own: OwnAddress,
    pub max_body_bytes: usize,
    /// How long a POST body may take to arrive in full (`server.body_read_timeout_ms`).
    pub body_read_timeout: std::time::Duration,
    pub max_in_flight_per_principal: usize,
    pub allowed_origins: Vec<String>,
    pub authorization_servers: Vec<String>,
    /// Request-head deadline and open-connection caps (see [`crate::connections`]).
    pub connections: crate::connections::ConnectionLimits,
    /// The per-client rate limit and aggregation of unauthenticated refusals (see
    /// [`crate::refusals`]).
    pub refusals: crate::refusals::RefusalLimits,
    /// The key file sealing multi round-trip `requestState`s (see [`crate::request_state`]).
    pub request_state_key_file: Option<PathBuf>,
    pub request_state_ttl: std::time::Duration,
    pub verifier: authz_token::VerifierConfig,
    pub policy: PolicySource,
    pub policy_poll_interval: std::time::Duration,
    /// Rate limits and quotas, when configured (see [`crate::quotas`]).
    pub quotas_file: Option<PathBuf>,
    /// How often quota spending is exchanged with other replicas (through the first Postgres
    /// of the policy and audit stores).
    pub quota_sync_interval: std::time::Duration,
    pub audit_database_url: String,
    pub audit_signing_key_file: Option<PathBuf>,
    pub audit_writer: authz_audit::WriterConfig,
    /// Where the trail is shipped (see [`crate::shipping`]).
    pub audit_sinks: Vec<AuditSink>,
    pub scope_hierarchy: BTreeMap<String, Vec<String>>,
    pub upstreams: Vec<Upstream>,
    pub telemetry: Telemetry,
    pub revocation_database_url: String,
    pub revocation_poll_interval: std::time::Duration,
    pub token_exchange: Option<TokenExchange>,
    /// The admin listener serving the approval page, if any.
    pub admin: Option<Admin>,
    /// The identity issuer signing assertions for upstreams, if configured.
    pub identity: Option<Identity>,
    pub approvals: Approvals,
    /// Routes combining several upstreams (see [`VirtualServer`]).
    pub virtual_servers: Vec<VirtualServer>,
}

/// A validated [`raw::RawVirtualServer`]: its route name and members, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    pub name: String,
    /// The canonical resource URI of this route (the token audience).
    pub resource: String,
    pub members: Vec<Member>,
}

/// One member of a virtual server: the upstream and the prefixes that route back to it. No
/// member's prefix is a prefix of another's (checked at load), so routing is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub upstream: String,
    /// Before each tool and prompt name.
    pub prefix: String,
    /// Before each resource URI and URI template.
    pub uri_prefix: String,
}

/// The admin listener (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Without a trailing slash.
    pub public_url: String,
}

/// Calls held by `approve` rules (`[approvals]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    pub approver_roles: Vec<String>,
    /// The `aud` approvers' tokens carry; `None` without an admin listener and an explicit one.
    pub audience: Option<String>,
    pub pending_ttl: std::time::Duration,
    pub approved_ttl: std::time::Duration,
    pub rejected_ttl: std::time::Duration,
    pub max_pending_per_principal: u32,
}

impl Config {
    /// Validates raw configuration plus overrides, section by section in file order (so the
    /// first mistake reported is the first one in the file's layout). `env` resolves
    /// credential variables (injected so tests can feed values).
    pub fn from_raw(
        raw: RawConfig,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let server = validate::server(raw.server, overrides)?;
        let mut verifier = validate::auth(raw.auth)?;
        let authorization_servers = if server.authorization_servers.is_empty() {
            verifier.issuers.iter().map(|i| i.issuer.clone()).collect()
        } else {
            server.authorization_servers
        };
        let quotas_file = raw.policy.quotas_file.clone();
        let quota_sync_ms = raw.policy.quota_sync_interval_ms;
        if !(10..=60_000).contains(&quota_sync_ms) {
            return Err(ConfigError::new(
                "policy.quota_sync_interval_ms",
                format!("{quota_sync_ms} is out of range"),
                "10 ms to 1 minute",
            ));
        }
        let (policy, policy_poll_interval) = validate::policy(raw.policy, overrides)?;
        let audit_database_url = validate::audit_database_url(&raw.audit, overrides);
        let audit_sinks = validate::audit_sinks(&raw.audit.sinks, env)?;
        validate::scope_hierarchy(&raw.scope_hierarchy)?;
        validate::telemetry(&raw.telemetry)?;
        let upstreams =
            validate::upstreams(raw.upstreams, &server.public_url, raw.audit.mode, env)?;
        let (revocation_database_url, revocation_poll_interval) =
            validate::revocation(raw.revocation, &audit_database_url)?;
        let virtual_servers =
            validate::virtual_servers(raw.virtual_servers, &server.public_url, &upstreams)?;
        let token_exchange = validate::token_exchange(
            raw.token_exchange,
            &server.public_url,
            &mut verifier,
            &upstreams,
            &virtual_servers,
        )?;
        let (admin, approvals) = validate::approvals(raw.admin, raw.approvals, server.listen)?;
        let identity = validate::identity(raw.identity, &server.public_url, &upstreams)?;
        Ok(Config {
            own: OwnAddress::new(server.listen, &server.public_url),
            listen: server.listen,
            public_url: server.public_url,
            max_body_bytes: server.max_body_bytes,
            body_read_timeout: server.body_read_timeout,
            max_in_flight_per_principal: server.max_in_flight_per_principal,
            connections: server.connections,
            refusals: server.refusals,
            request_state_key_file: server.request_state_key_file,
            request_state_ttl: server.request_state_ttl,
            allowed_origins: server.allowed_origins,
            authorization_servers,
            verifier,
            policy,
            policy_poll_interval,
            quotas_file,
            quota_sync_interval: std::time::Duration::from_millis(quota_sync_ms),
            audit_database_url,
            audit_signing_key_file: raw.audit.signing_key_file,
            audit_writer: raw.audit.writer,
            audit_sinks,
            scope_hierarchy: raw.scope_hierarchy,
            upstreams,
            telemetry: raw.telemetry,
            revocation_database_url,
            revocation_poll_interval,
            token_exchange,
            admin,
            approvals,
            identity,
            virtual_servers,
        })
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
    fn virtual_servers_are_checked_at_load_prefix_collisions_included() {
        let two = format!(
            "{GOOD}\n[[upstreams]]\nname = \"tickets_v2\"\nurl = \"http://127.0.0.1:9101/mcp\"\n"
        );
        let load = |virtual_server: &str| {
            let text = format!("{two}\n[[virtual_servers]]\n{virtual_server}\n");
            let raw = RawConfig::from_toml(&text).map_err(|e| e.to_string())?;
            Config::from_raw(raw, &Overrides::default(), &env).map_err(|e| e.to_string())
        };
        let cfg = load(
            "name = \"all\"\nmembers = [\"tickets\", \"tickets_v2\"]\n\
             prefixes = { tickets_v2 = \"v2.\" }\nuri_prefixes = { tickets_v2 = \"v2+\" }",
        )
        .expect("valid");
        let v = &cfg.virtual_servers[0];
        assert_eq!(v.resource, "https://gw.example/mcp/all");
        assert_eq!(
            v.members
                .iter()
                .map(|m| (m.prefix.as_str(), m.uri_prefix.as_str()))
                .collect::<Vec<_>>(),
            [("tickets_", "tickets+"), ("v2.", "v2+")]
        );
        for (body, key, problem) in [
            // `tickets_` begins `tickets_v2_`: `tickets_v2_x` would belong to both.
            (
                "name = \"all\"\nmembers = [\"tickets\", \"tickets_v2\"]",
                "virtual_servers[0].prefixes.tickets_v2",
                "collide",
            ),
            (
                "name = \"all\"\nmembers = [\"tickets\", \"tickets_v2\"]\n\
                 prefixes = { tickets_v2 = \"v2_\" }\nuri_prefixes = { tickets_v2 = \"tickets+v2+\" }",
                "virtual_servers[0].uri_prefixes.tickets_v2",
                "collide",
            ),
            (
                "name = \"tickets\"\nmembers = [\"tickets\"]",
                "virtual_servers[0].name",
                "duplicate route",
            ),
            (
                "name = \"all\"\nmembers = [\"nowhere\"]",
                "virtual_servers[0].members[0]",
                "not an upstream",
            ),
            (
                "name = \"all\"\nmembers = [\"tickets\", \"tickets\"]",
                "virtual_servers[0].members[1]",
                "named twice",
            ),
            (
                "name = \"all\"\nmembers = []",
                "virtual_servers[0].members",
                "empty",
            ),
            (
                "name = \"all\"\nmembers = [\"tickets\"]\nprefixes = { tickets = \"a b\" }",
                "virtual_servers[0].prefixes.tickets",
                "not a valid name prefix",
            ),
            (
                "name = \"all\"\nmembers = [\"tickets\"]\nuri_prefixes = { tickets = \"1x+\" }",
                "virtual_servers[0].uri_prefixes.tickets",
                "not a valid URI prefix",
            ),
            (
                "name = \"all\"\nmembers = [\"tickets\"]\nprefixes = { other = \"o_\" }",
                "virtual_servers[0].prefixes.other",
                "not a member",
            ),
            (
                "name = \"all\"\nmembers = [\"tickets\"]\nurl = \"http://x\"",
                "url",
                "unknown field",
            ),
        ] {
            let err = load(body).expect_err(body);
            assert!(err.contains(key) && err.contains(problem), "{body}: {err}");
        }
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
    fn audit_sinks_are_validated_and_their_tokens_kept_secret() {
        let sink = |body: &str| {
            let text = format!("{GOOD}\n[[audit.sinks]]\nname = \"siem\"\n{body}\n");
            let raw = RawConfig::from_toml(&text)?;
            Config::from_raw(raw, &Overrides::default(), &env)
        };
        let cfg = sink("kind = \"splunk_hec\"\nurl = \"https://hec.example/services/collector\"\ntoken_env = \"TICKETS_TOKEN\"")
            .expect("valid");
        let s = &cfg.audit_sinks[0];
        assert_eq!(
            s.authorization.as_ref().map(Secret::expose),
            Some("Splunk s3cret")
        );
        assert_eq!((s.batch_records, s.timeout.as_millis()), (500, 10_000));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let json_lines = "kind = \"json_lines\"\nurl = \"https://c.example/in\"";
        for (body, key) in [
            (
                "kind = \"json_lines\"\nurl = \"ftp://x\"",
                "audit.sinks[0].url",
            ),
            (
                "kind = \"syslog\"\nurl = \"https://x\"",
                "audit.sinks[0].kind",
            ),
            (
                &format!("{json_lines}\nauth_scheme = \"Bearer\""),
                "audit.sinks[0].auth_scheme",
            ),
            (
                &format!("{json_lines}\ntoken_env = \"UNSET\""),
                "audit.sinks[0].token_env",
            ),
            (
                &format!("{json_lines}\nbatch_records = 0"),
                "audit.sinks[0].batch_records",
            ),
            (
                &format!("{json_lines}\ntimeout_ms = 5"),
                "audit.sinks[0].timeout_ms",
            ),
            (
                &format!("{json_lines}\nretries = 5"),
                "audit.sinks[0].retries",
            ),
            (
                &format!("{json_lines}\n[[audit.sinks]]\nname = \"siem\"\n{json_lines}"),
                "audit.sinks[1].name",
            ),
        ] {
            let err = sink(body).expect_err(body);
            assert_eq!(err.key, key, "{body}: {err}");
        }
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
    fn defaults_fill_what_the_file_leaves_out() {
        let raw = RawConfig::from_toml(GOOD).expect("parses");
        let cfg = Config::from_raw(raw, &Overrides::default(), &env).expect("valid");
        let up = &cfg.upstreams[0];
        assert_eq!(up.timeout.as_secs(), DEFAULT_UPSTREAM_TIMEOUT_SECS);
        assert_eq!(
            up.idle_timeout.as_secs(),
            DEFAULT_UPSTREAM_IDLE_TIMEOUT_SECS
        );
        assert_eq!(up.audit_mode, AuditMode::Durable);
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY);
        assert_eq!(
            cfg.max_in_flight_per_principal,
            DEFAULT_MAX_IN_FLIGHT_PER_PRINCIPAL
        );
        assert_eq!(cfg.audit_database_url, DEFAULT_AUDIT_URL);
        assert_eq!(cfg.revocation_database_url, DEFAULT_AUDIT_URL);
        assert_eq!(cfg.policy_poll_interval.as_millis(), 1000);
        assert_eq!(cfg.revocation_poll_interval.as_millis(), 500);
        assert_eq!(cfg.telemetry.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(
            cfg.refusals.per_client_per_sec,
            DEFAULT_UNAUTHENTICATED_PER_CLIENT_PER_SEC
        );
        assert_eq!(
            cfg.refusals.burst_per_client,
            DEFAULT_UNAUTHENTICATED_BURST_PER_CLIENT
        );
        assert_eq!(
            cfg.refusals.aggregate_window.as_millis(),
            u128::from(DEFAULT_REFUSAL_AGGREGATE_WINDOW_MS)
        );
        let c = cfg.connections;
        assert_eq!(
            c.idle_timeout.as_millis(),
            u128::from(DEFAULT_IDLE_TIMEOUT_MS)
        );
        assert_eq!(
            c.http2.max_concurrent_streams,
            DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS
        );
        assert_eq!(
            c.http2.max_header_list_bytes,
            DEFAULT_HTTP2_MAX_HEADER_LIST_BYTES
        );
        assert_eq!(
            c.http2.max_pending_reset_streams,
            DEFAULT_HTTP2_MAX_PENDING_RESET_STREAMS
        );
        assert_eq!(
            c.http2.max_local_reset_streams,
            DEFAULT_HTTP2_MAX_LOCAL_RESET_STREAMS
        );
        assert!(matches!(
            &cfg.policy,
            PolicySource::Files { model, files }
                if model.as_os_str() == DEFAULT_POLICY_MODEL
                    && files == &[PathBuf::from(DEFAULT_POLICY_FILE)]
        ));
        assert_eq!(up.scopes[0].target.as_str(), "delete_*");

        let default = RawConfig::from_toml("").expect("parses");
        assert_eq!(default.server.listen, DEFAULT_LISTEN);
        assert_eq!(default.audit.mode, AuditMode::Durable);
    }

    #[test]
    fn invalid_globs_are_refused_at_load_naming_the_rule() {
        let cases = [
            (
                GOOD.replace("delete_*", "delete_[*"),
                "upstreams[0].scopes[0].target",
            ),
            (
                format!("{GOOD}record_arguments = [\"ok\", \"{{create\"]\n"),
                "upstreams[0].record_arguments[1]",
            ),
            (
                format!("{GOOD}redact_arguments = {{ \"x[\" = [\"body\"] }}\n"),
                "upstreams[0].redact_arguments.x[",
            ),
            (
                format!("{GOOD}input_requests = [{{ target = \"a\" }}, {{ target = \"[\" }}]\n"),
                "upstreams[0].input_requests[1].target",
            ),
        ];
        for (text, key) in cases {
            let raw = RawConfig::from_toml(&text).expect("parses");
            let err = Config::from_raw(raw, &Overrides::default(), &env).expect_err(key);
            assert_eq!(err.key, key, "{err}");
            assert!(err.problem.contains("not a valid glob"), "{err}");
        }
    }

    #[test]
    fn input_request_rules_take_origins_only() {
        let with = |rule: &str| format!("{GOOD}input_requests = [{rule}]\n");
        let raw = RawConfig::from_toml(&with(
            "{ sampling = false, url_origins = [\"https://Login.Example:443\", \"http://idp:8080/\"] }",
        ))
        .expect("parses");
        let cfg = Config::from_raw(raw, &Overrides::default(), &env).expect("valid");
        let rule = &cfg.upstreams[0].input_requests[0];
        assert!(!rule.sampling && rule.elicitation && rule.roots);
        assert_eq!(
            rule.url_origins.as_deref(),
            Some(
                &[
                    "https://login.example".to_owned(),
                    "http://idp:8080".to_owned()
                ][..]
            )
        );
        for bad in [
            "https://x/path",
            "https://x?q=1",
            "data:text/plain,x",
            "login.example",
        ] {
            let raw = RawConfig::from_toml(&with(&format!("{{ url_origins = [\"{bad}\"] }}")))
                .expect("parses");
            let err = Config::from_raw(raw, &Overrides::default(), &env).expect_err(bad);
            assert_eq!(
                err.key, "upstreams[0].input_requests[0].url_origins[0]",
                "{err}"
            );
        }
        // Unknown keys in a rule are refused at parse time.
        assert!(RawConfig::from_toml(&with("{ sampling = false, smapling = true }")).is_err());
    }

    #[test]
    fn a_stdio_upstream_resolves_its_program_and_keeps_only_its_environment() {
        let text = GOOD.replace(
            "url = \"http://127.0.0.1:9100/mcp\"\ncredential_env = \"TICKETS_TOKEN\"",
            "command = [\"sh\", \"-c\"]\nargs = [\"exit 0\"]\nenv = [\"TICKETS_TOKEN\", \"ABSENT\"]",
        );
        let raw = RawConfig::from_toml(&text).expect("parses");
        let cfg = Config::from_raw(raw, &Overrides::default(), &env).expect("valid");
        let spec = cfg.upstreams[0].stdio.as_ref().expect("a stdio upstream");
        assert!(spec.program.is_absolute() && spec.program.ends_with("sh"));
        assert_eq!(spec.args, ["-c", "exit 0"]);
        let names: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["TICKETS_TOKEN"],
            "only allow-listed variables that are set"
        );
        assert!(!format!("{spec:?}").contains("s3cret"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (GOOD.replace("127.0.0.1:0", "nowhere"), "server.listen"),
            (
                format!("{GOOD}command = [\"/bin/sh\"]\n"),
                "upstreams[0].command",
            ),
            (
                GOOD.replace(
                    "url = \"http://127.0.0.1:9100/mcp\"",
                    "command = [\"/bin/sh\"]",
                ),
                "upstreams[0].command",
            ),
            (
                GOOD.replace(
                    "url = \"http://127.0.0.1:9100/mcp\"\ncredential_env = \"TICKETS_TOKEN\"",
                    "command = [\"no-such-program-here\"]",
                ),
                "upstreams[0].command",
            ),
            (
                GOOD.replace(
                    "url = \"http://127.0.0.1:9100/mcp\"\ncredential_env = \"TICKETS_TOKEN\"",
                    "command = [\"/bin/sh\"]\nenv_secrets = { X = \"UNSET_VAR\" }",
                ),
                "upstreams[0].env_secrets.X",
            ),
            (
                GOOD.replace(
                    "url = \"http://127.0.0.1:9100/mcp\"\ncredential_env = \"TICKETS_TOKEN\"",
                    "command = [\"/bin/sh\"]\nstdio = { max_processes = 2, max_per_principal = 3 }",
                ),
                "upstreams[0].stdio.max_per_principal",
            ),
            (
                format!("{GOOD}identity_assertion = {{}}\n"),
                "upstreams[0].identity_assertion",
            ),
            (
                format!("{GOOD}identity_assertion = {{ header = \"Authorization\" }}\n"),
                "upstreams[0].identity_assertion.header",
            ),
            (
                format!("{GOOD}identity_assertion = {{ header = \"mcp-name\" }}\n"),
                "upstreams[0].identity_assertion.header",
            ),
            (
                format!("{GOOD}identity_assertion = {{ lifetime_secs = 3600 }}\n"),
                "upstreams[0].identity_assertion.lifetime_secs",
            ),
            (
                format!(
                    "{GOOD}identity_assertion = {{}}\n[identity]\nsigning_key_file = \"/nope\"\n\
                     jwks_file = \"/nope\"\n"
                ),
                "identity.signing_key_file",
            ),
            (
                format!("{GOOD}\n[admin]\nlisten = \"here\"\n"),
                "admin.listen",
            ),
            (
                format!("{GOOD}\n[admin]\nlisten = \"127.0.0.1:9\"\npublic_url = \"ftp://x\"\n"),
                "admin.public_url",
            ),
            (
                format!("{GOOD}\n[approvals]\napprover_roles = []\n"),
                "approvals.approver_roles",
            ),
            (
                format!("{GOOD}\n[approvals]\napprover_roles = [\"user:olivia\"]\n"),
                "approvals.approver_roles",
            ),
            (
                format!("{GOOD}\n[approvals]\npending_ttl_secs = 0\n"),
                "approvals.pending_ttl_secs",
            ),
            (
                format!("{GOOD}\n[approvals]\nmax_pending_per_principal = 0\n"),
                "approvals.max_pending_per_principal",
            ),
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
            (
                GOOD.replace("[server]\n", "[server]\nbody_read_timeout_ms = 0\n"),
                "server.body_read_timeout_ms",
            ),
            (
                GOOD.replace("[server]\n", "[server]\nidle_timeout_ms = 10\n"),
                "server.idle_timeout_ms",
            ),
            (
                GOOD.replace("[server]\n", "[server]\nhttp2_max_concurrent_streams = 0\n"),
                "server.http2_max_concurrent_streams",
            ),
            (
                GOOD.replace(
                    "[server]\n",
                    "[server]\nhttp2_max_header_list_bytes = 100\n",
                ),
                "server.http2_max_header_list_bytes",
            ),
            (
                GOOD.replace(
                    "[server]\n",
                    "[server]\nhttp2_max_pending_reset_streams = 0\n",
                ),
                "server.http2_max_pending_reset_streams",
            ),
            (
                GOOD.replace(
                    "[server]\n",
                    "[server]\nhttp2_max_local_reset_streams = 1000000\n",
                ),
                "server.http2_max_local_reset_streams",
            ),
            (
                GOOD.replace("[server]\n", "[server]\nrefusal_aggregate_window_ms = 50\n"),
                "server.refusal_aggregate_window_ms",
            ),
            (
                GOOD.replace(
                    "[server]\n",
                    "[server]\nunauthenticated_burst_per_client = 0\n",
                ),
                "server.unauthenticated_burst_per_client",
            ),
            (
                format!("{GOOD}\n[policy]\nquota_sync_interval_ms = 0\n"),
                "policy.quota_sync_interval_ms",
            ),
            (
                GOOD.replace("[server]\n", "[server]\nrequest_state_ttl_secs = 0\n"),
                "server.request_state_ttl_secs",
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

    #[test]
    fn own_origins_and_hosts() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let own = OwnAddress::new(listen, "http://127.0.0.1:8080");
        for same in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
            "HTTP://LOCALHOST:8080",
        ] {
            assert!(own.is_own_origin(same), "{same}");
        }
        for other in [
            "http://evil.example:8080",
            "http://localhost:8081",
            "https://127.0.0.1:8080",
            "null",
        ] {
            assert!(!own.is_own_origin(other), "{other}");
        }
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "LocalHost:8080",
        ] {
            assert!(own.host_allowed(Some(ok)), "{ok}");
        }
        assert!(own.host_allowed(None), "no Host: nothing to rebind");
        // Without a port only the name is checked (a TLS proxy in front hides the port).
        assert!(own.host_allowed(Some("127.0.0.1")));
        for rebinding in [
            "evil.example:8080",
            "evil.example",
            "localhost:8081",
            "127.0.0.1:80x",
            "",
        ] {
            assert!(!own.host_allowed(Some(rebinding)), "{rebinding}");
        }
        // The public name counts, with its default port when it has none.
        let public = OwnAddress::new(listen, "https://gw.example");
        assert!(public.is_own_origin("https://gw.example"));
        assert!(public.host_allowed(Some("gw.example:443")));
        assert!(public.host_allowed(Some("gw.example")));
        assert!(!public.host_allowed(Some("gw.example:8443")));
        assert!(public.host_allowed(Some("localhost:8080")));
        // Not on loopback: a proxy in front decides the names; every Host passes.
        let exposed = OwnAddress::new("0.0.0.0:8080".parse().expect("addr"), "https://gw.example");
        assert!(exposed.host_allowed(Some("anything.example")));
        assert!(!exposed.is_own_origin("http://localhost:8080"));
    }
}
