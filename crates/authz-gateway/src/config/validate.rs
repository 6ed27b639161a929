//! Validation, one raw section at a time: each function checks its section's values and
//! returns the typed settings, or a [`ConfigError`] naming the key. [`super::Config::from_raw`]
//! calls them in file order and assembles the result.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{
    AuditMode, DEFAULT_POLICY_FILE, RawAdmin, RawApprovals, RawAudit, RawIdentity,
    RawIdentityAssertion, RawInputRule, RawOAuth, RawPolicy, RawRevocation, RawScopeRule,
    RawServer, RawSink, RawTokenExchange, RawUpstream, RawVirtualServer, SinkKind, Telemetry,
};
use super::{
    Admin, Approvals, AuditSink, ConfigError, Credential, Identity, IdentityAssertion, InputRule,
    Member, OAuthClient, Overrides, PolicySource, ScopeRule, Secret, StdioSpec, TokenExchange,
    Upstream, VirtualServer,
};
use crate::scopes::Glob;

/// Resolves the name of a credential environment variable.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The `[server]` section, validated.
pub(super) struct Server {
    pub listen: SocketAddr,
    /// Without a trailing `/`.
    pub public_url: String,
    pub max_body_bytes: usize,
    pub body_read_timeout: std::time::Duration,
    pub max_in_flight_per_principal: usize,
    pub allowed_origins: Vec<String>,
    /// Empty: advertise the trusted issuers.
    pub authorization_servers: Vec<String>,
    pub connections: crate::connections::ConnectionLimits,
    pub refusals: crate::refusals::RefusalLimits,
    pub request_state_key_file: Option<std::path::PathBuf>,
    pub request_state_ttl: std::time::Duration,
}

/// The largest `server.max_body_bytes` accepted.
pub const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;
const MAX_IN_FLIGHT_LIMIT: usize = 100_000;

pub(super) fn server(raw: RawServer, overrides: &Overrides) -> Result<Server, ConfigError> {
    let connections = connection_limits(&raw)?;
    let refusals = refusal_limits(&raw)?;
    let listen_text = overrides.listen.clone().unwrap_or(raw.listen);
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
        .or(raw.public_url)
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
    if raw.max_body_bytes == 0 || raw.max_body_bytes > MAX_BODY_LIMIT {
        return Err(ConfigError::new(
            "server.max_body_bytes",
            format!("{} is out of range", raw.max_body_bytes),
            "between 1 byte and 64 MiB",
        ));
    }
    if !(100..=600_000).contains(&raw.body_read_timeout_ms) {
        return Err(ConfigError::new(
            "server.body_read_timeout_ms",
            format!("{} is out of range", raw.body_read_timeout_ms),
            "between 100 ms and 10 minutes",
        ));
    }
    let in_flight = raw.max_in_flight_per_principal;
    if in_flight == 0 || in_flight > MAX_IN_FLIGHT_LIMIT {
        return Err(ConfigError::new(
            "server.max_in_flight_per_principal",
            format!("{in_flight} is out of range"),
            "between 1 and 100000",
        ));
    }
    in_range(
        "server.request_state_ttl_secs",
        raw.request_state_ttl_secs,
        1,
        86_400,
    )?;
    Ok(Server {
        connections,
        refusals,
        request_state_key_file: raw.request_state_key_file,
        request_state_ttl: std::time::Duration::from_secs(raw.request_state_ttl_secs),
        listen,
        public_url,
        max_body_bytes: raw.max_body_bytes,
        body_read_timeout: std::time::Duration::from_millis(raw.body_read_timeout_ms),
        max_in_flight_per_principal: in_flight,
        allowed_origins: raw.allowed_origins,
        authorization_servers: raw.authorization_servers,
    })
}

/// The connection limits of `[server]`: each in range, the per-client cap within the total.
fn connection_limits(raw: &RawServer) -> Result<crate::connections::ConnectionLimits, ConfigError> {
    if !(100..=600_000).contains(&raw.header_read_timeout_ms) {
        return Err(ConfigError::new(
            "server.header_read_timeout_ms",
            format!("{} is out of range", raw.header_read_timeout_ms),
            "between 100 ms and 10 minutes",
        ));
    }
    if !(1..=1_000_000).contains(&raw.max_connections) {
        return Err(ConfigError::new(
            "server.max_connections",
            format!("{} is out of range", raw.max_connections),
            "between 1 and 1000000, below the process's open-file limit",
        ));
    }
    if raw.max_connections_per_client == 0 || raw.max_connections_per_client > raw.max_connections {
        return Err(ConfigError::new(
            "server.max_connections_per_client",
            format!(
                "{} is out of range (max_connections is {})",
                raw.max_connections_per_client, raw.max_connections
            ),
            "between 1 and server.max_connections",
        ));
    }
    if !(100..=86_400_000).contains(&raw.idle_timeout_ms) {
        return Err(ConfigError::new(
            "server.idle_timeout_ms",
            format!("{} is out of range", raw.idle_timeout_ms),
            "between 100 ms and 24 hours",
        ));
    }
    in_range(
        "server.shutdown_grace_ms",
        raw.shutdown_grace_ms,
        0,
        3_600_000,
    )?;
    in_range(
        "server.http2_max_concurrent_streams",
        raw.http2_max_concurrent_streams.into(),
        1,
        10_000,
    )?;
    in_range(
        "server.http2_max_header_list_bytes",
        raw.http2_max_header_list_bytes.into(),
        1024,
        1024 * 1024,
    )?;
    in_range(
        "server.http2_max_pending_reset_streams",
        raw.http2_max_pending_reset_streams as u64,
        1,
        10_000,
    )?;
    in_range(
        "server.http2_max_local_reset_streams",
        raw.http2_max_local_reset_streams as u64,
        1,
        100_000,
    )?;
    Ok(crate::connections::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_millis(raw.header_read_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(raw.idle_timeout_ms),
        shutdown_grace: std::time::Duration::from_millis(raw.shutdown_grace_ms),
        max_connections: raw.max_connections,
        max_connections_per_client: raw.max_connections_per_client,
        http2: crate::connections::Http2Limits {
            max_concurrent_streams: raw.http2_max_concurrent_streams,
            max_header_list_bytes: raw.http2_max_header_list_bytes,
            max_pending_reset_streams: raw.http2_max_pending_reset_streams,
            max_local_reset_streams: raw.http2_max_local_reset_streams,
        },
    })
}

/// The unauthenticated-refusal keys of `[server]`: a burst of at least one when the rate limit
/// is on, a window in range.
fn refusal_limits(raw: &RawServer) -> Result<crate::refusals::RefusalLimits, ConfigError> {
    in_range(
        "server.unauthenticated_per_client_per_sec",
        raw.unauthenticated_per_client_per_sec.into(),
        0,
        1_000_000,
    )?;
    let min_burst = u64::from(raw.unauthenticated_per_client_per_sec > 0);
    in_range(
        "server.unauthenticated_burst_per_client",
        raw.unauthenticated_burst_per_client.into(),
        min_burst,
        1_000_000,
    )?;
    if raw.refusal_aggregate_window_ms != 0 {
        in_range(
            "server.refusal_aggregate_window_ms",
            raw.refusal_aggregate_window_ms,
            100,
            3_600_000,
        )?;
    }
    Ok(crate::refusals::RefusalLimits {
        per_client_per_sec: raw.unauthenticated_per_client_per_sec,
        burst_per_client: raw.unauthenticated_burst_per_client,
        aggregate_window: std::time::Duration::from_millis(raw.refusal_aggregate_window_ms),
    })
}

/// `value` within `min..=max`, or an error naming `key` and the range.
fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{value} is out of range"),
            format!("between {min} and {max}"),
        ))
    }
}

/// The `[auth]` section: present, with at least one trusted issuer.
pub(super) fn auth(
    raw: Option<authz_token::VerifierConfig>,
) -> Result<authz_token::VerifierConfig, ConfigError> {
    let auth = raw.ok_or_else(|| {
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
    Ok(auth)
}

/// The `[policy]` section: one policy source and its poll interval.
pub(super) fn policy(
    raw: RawPolicy,
    overrides: &Overrides,
) -> Result<(PolicySource, Duration), ConfigError> {
    let model = raw.model;
    let url = overrides.policy_database_url.clone().or(raw.database_url);
    let source = match (url, raw.files) {
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
            files: vec![PathBuf::from(DEFAULT_POLICY_FILE)],
        },
        (None, files) => PolicySource::Files { model, files },
    };
    let poll_ms = raw.poll_interval_ms;
    if !(10..=3_600_000).contains(&poll_ms) {
        return Err(ConfigError::new(
            "policy.poll_interval_ms",
            format!("{poll_ms} is out of range"),
            "10 ms to 1 hour",
        ));
    }
    Ok((source, Duration::from_millis(poll_ms)))
}

/// The audit database URL: the override wins over `audit.database_url`.
pub(super) fn audit_database_url(raw: &RawAudit, overrides: &Overrides) -> String {
    overrides
        .audit_database_url
        .clone()
        .unwrap_or_else(|| raw.database_url.clone())
}

/// The `[scope_hierarchy]` section: no scope implies itself.
pub(super) fn scope_hierarchy(raw: &BTreeMap<String, Vec<String>>) -> Result<(), ConfigError> {
    match raw.iter().find(|(scope, implied)| implied.contains(scope)) {
        Some((scope, _)) => Err(ConfigError::new(
            format!("scope_hierarchy.{scope}"),
            "a scope cannot imply itself",
            "list only narrower scopes",
        )),
        None => Ok(()),
    }
}

/// The `[telemetry]` section: the endpoint, if any, is an http(s) URL.
pub(super) fn telemetry(raw: &Telemetry) -> Result<(), ConfigError> {
    match &raw.otlp_endpoint {
        Some(ep) if !reqwest::Url::parse(ep).is_ok_and(|u| is_http(&u)) => Err(ConfigError::new(
            "telemetry.otlp_endpoint",
            format!("`{ep}` is not an http(s) URL"),
            "e.g. http://127.0.0.1:4318/v1/traces",
        )),
        _ => Ok(()),
    }
}

/// Every `[[audit.sinks]]` entry, with unique names; tokens are read now.
pub(super) fn audit_sinks(raw: &[RawSink], env: Env<'_>) -> Result<Vec<AuditSink>, ConfigError> {
    let mut out: Vec<AuditSink> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let key = format!("audit.sinks[{i}]");
        let bad = |field: &str, problem: String, hint: &str| {
            Err(ConfigError::new(format!("{key}.{field}"), problem, hint))
        };
        let name_ok = (1..=64).contains(&s.name.len())
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return bad(
                "name",
                format!("`{}` is not a sink name", s.name),
                "1 to 64 letters, digits, '-' and '_'",
            );
        }
        if out.iter().any(|o| o.name == s.name) {
            return bad(
                "name",
                format!("a second sink is named `{}`", s.name),
                "each sink keeps its own cursor: give each a unique name",
            );
        }
        let Some(url) = http_url(&s.url) else {
            return bad(
                "url",
                format!("`{}` is not an http(s) URL", s.url),
                "e.g. https://siem.example:8088/services/collector/event",
            );
        };
        let token = secret(
            &format!("{key}.token"),
            s.token_env.as_deref(),
            s.token_file.as_deref(),
            env,
        )?;
        let scheme = s.auth_scheme.clone().unwrap_or_else(|| {
            if s.kind == SinkKind::SplunkHec {
                "Splunk"
            } else {
                "Bearer"
            }
            .to_owned()
        });
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad(
                "auth_scheme",
                format!("`{scheme}` is not an authorization scheme"),
                "e.g. Bearer, Splunk, ApiKey",
            );
        }
        if s.auth_scheme.is_some() && token.is_none() {
            return bad(
                "auth_scheme",
                "set without a token".into(),
                "add token_env or token_file, or remove auth_scheme",
            );
        }
        let authorization = match token {
            Some(t)
                if t.expose()
                    .bytes()
                    .any(|b| b.is_ascii_control() || b == b' ') =>
            {
                return bad(
                    "token",
                    "the token holds spaces or control characters".into(),
                    "the file or variable must hold the token alone",
                );
            }
            Some(t) => Some(Secret::new(format!("{scheme} {}", t.expose()))),
            None => None,
        };
        if !(1..=10_000).contains(&s.batch_records) {
            return bad(
                "batch_records",
                format!("{} is out of range", s.batch_records),
                "1 to 10000",
            );
        }
        if !(10..=60_000).contains(&s.poll_interval_ms) {
            return bad(
                "poll_interval_ms",
                format!("{} is out of range", s.poll_interval_ms),
                "10 ms to 1 minute",
            );
        }
        if !(100..=120_000).contains(&s.timeout_ms) {
            return bad(
                "timeout_ms",
                format!("{} is out of range", s.timeout_ms),
                "100 ms to 2 minutes",
            );
        }
        if let Some(ca) = &s.ca_file
            && !ca.is_file()
        {
            return bad(
                "ca_file",
                format!("{} is not a readable file", ca.display()),
                "a PEM file with one or more CA certificates",
            );
        }
        out.push(AuditSink {
            name: s.name.clone(),
            kind: s.kind,
            url,
            authorization,
            batch_records: s.batch_records,
            poll_interval: Duration::from_millis(s.poll_interval_ms),
            timeout: Duration::from_millis(s.timeout_ms),
            start: s.start,
            ca_file: s.ca_file.clone(),
        });
    }
    Ok(out)
}

/// Every `[[upstreams]]` entry: at least one, with unique names.
pub(super) fn upstreams(
    raw: Vec<RawUpstream>,
    public_url: &str,
    default_mode: AuditMode,
    env: Env<'_>,
) -> Result<Vec<Upstream>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "upstreams",
            "no upstream MCP server configured",
            "add an [[upstreams]] entry with name and url",
        ));
    }
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(raw.len());
    for (i, u) in raw.into_iter().enumerate() {
        let key = format!("upstreams[{i}]");
        // An invalid name is reported as such by `upstream`, before anything else about it.
        if is_route_name(&u.name) && upstreams.iter().any(|x| x.name == u.name) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!("duplicate upstream `{}`", u.name),
                "route names must be unique",
            ));
        }
        upstreams.push(upstream(&key, u, public_url, default_mode, env)?);
    }
    Ok(upstreams)
}

/// Every `[[virtual_servers]]` entry: a route name of its own, members that are upstreams (each
/// once), and prefixes that route back unambiguously — no member's name prefix (or URI prefix)
/// may be a prefix of another's, or a name could belong to two members.
pub(super) fn virtual_servers(
    raw: Vec<RawVirtualServer>,
    public_url: &str,
    upstreams: &[Upstream],
) -> Result<Vec<VirtualServer>, ConfigError> {
    let mut out: Vec<VirtualServer> = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        let key = format!("virtual_servers[{i}]");
        let bad = |field: &str, problem: String, hint: &str| {
            ConfigError::new(format!("{key}.{field}"), problem, hint.to_owned())
        };
        if !is_route_name(&v.name) {
            return Err(bad(
                "name",
                format!("`{}` is not a valid route name", v.name),
                "use letters, digits, '-' and '_'",
            ));
        }
        if upstreams.iter().any(|u| u.name == v.name) || out.iter().any(|x| x.name == v.name) {
            return Err(bad(
                "name",
                format!("duplicate route `{}`", v.name),
                "a virtual server's name must differ from every upstream's and virtual server's",
            ));
        }
        if v.members.is_empty() {
            return Err(bad(
                "members",
                "is empty".into(),
                "name the [[upstreams]] it combines",
            ));
        }
        let mut members: Vec<Member> = Vec::with_capacity(v.members.len());
        for (j, m) in v.members.iter().enumerate() {
            if !upstreams.iter().any(|u| &u.name == m) {
                return Err(bad(
                    &format!("members[{j}]"),
                    format!("`{m}` is not an upstream"),
                    "members are [[upstreams]] names (a virtual server cannot be a member)",
                ));
            }
            if members.iter().any(|x| &x.upstream == m) {
                return Err(bad(
                    &format!("members[{j}]"),
                    format!("`{m}` is named twice"),
                    "list each member once",
                ));
            }
            let prefix = v
                .prefixes
                .get(m)
                .cloned()
                .unwrap_or_else(|| format!("{m}_"));
            if !(1..=64).contains(&prefix.len())
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(bad(
                    &format!("prefixes.{m}"),
                    format!("`{prefix}` is not a valid name prefix"),
                    "1-64 characters of [A-Za-z0-9_.-] (tool names allow nothing else)",
                ));
            }
            let uri_prefix = match v.uri_prefixes.get(m) {
                Some(p) => p.clone(),
                None => default_uri_prefix(m),
            };
            if !is_scheme_prefix(&uri_prefix) {
                return Err(bad(
                    &format!("uri_prefixes.{m}"),
                    format!("`{uri_prefix}` is not a valid URI prefix"),
                    "a URI scheme start: a letter, then letters, digits, '+', '-' or '.' \
                     (e.g. `files+`), so prefixed URIs stay URIs",
                ));
            }
            for other in &members {
                let clash = |a: &str, b: &str| a.starts_with(b) || b.starts_with(a);
                if clash(&prefix, &other.prefix) {
                    return Err(bad(
                        &format!("prefixes.{m}"),
                        format!(
                            "`{prefix}` and `{}` (of `{}`) collide: one is a prefix of the other",
                            other.prefix, other.upstream
                        ),
                        "give the members prefixes none of which begins another",
                    ));
                }
                if clash(&uri_prefix, &other.uri_prefix) {
                    return Err(bad(
                        &format!("uri_prefixes.{m}"),
                        format!(
                            "`{uri_prefix}` and `{}` (of `{}`) collide: one is a prefix of the other",
                            other.uri_prefix, other.upstream
                        ),
                        "give the members URI prefixes none of which begins another",
                    ));
                }
            }
            members.push(Member {
                upstream: m.clone(),
                prefix,
                uri_prefix,
            });
        }
        for (field, map) in [("prefixes", &v.prefixes), ("uri_prefixes", &v.uri_prefixes)] {
            if let Some(k) = map.keys().find(|k| !v.members.contains(k)) {
                return Err(bad(
                    &format!("{field}.{k}"),
                    format!("`{k}` is not a member"),
                    "prefixes are given for members only",
                ));
            }
        }
        out.push(VirtualServer {
            resource: format!("{public_url}/mcp/{}", v.name),
            name: v.name,
            members,
        });
    }
    Ok(out)
}

/// `<member>+` as a URI scheme start: `_` (not allowed in a scheme) becomes `-`, and a name
/// that does not begin with a letter gets `m-` in front.
fn default_uri_prefix(member: &str) -> String {
    let mut p: String = member
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .collect();
    if !p.starts_with(|c: char| c.is_ascii_alphabetic()) {
        p.insert_str(0, "m-");
    }
    p.push('+');
    p
}

/// A letter, then letters, digits, `+`, `-`, `.` (RFC 3986 scheme characters), at most 64.
fn is_scheme_prefix(p: &str) -> bool {
    p.len() <= 64
        && p.starts_with(|c: char| c.is_ascii_alphabetic())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

const MAX_IDLE_TIMEOUT_SECS: u64 = 86_400;
const MAX_TIMEOUT_SECS: u64 = 3600;

/// One `[[upstreams]]` entry; `key` is its path, e.g. `upstreams[1]`.
fn upstream(
    key: &str,
    mut u: RawUpstream,
    public_url: &str,
    default_mode: AuditMode,
    env: Env<'_>,
) -> Result<Upstream, ConfigError> {
    if !is_route_name(&u.name) {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!("`{}` is not a valid route name", u.name),
            "use letters, digits, '-' and '_'",
        ));
    }
    let stdio = match u.command.take() {
        Some(command) => Some(stdio_spec(key, command, &mut u, env)?),
        None => None,
    };
    let url = if stdio.is_some() {
        // Replaced by the gateway's loopback bridge when it starts (see `crate::stdio`).
        reqwest::Url::parse("http://127.0.0.1:9/mcp").map_err(|_| {
            ConfigError::new(format!("{key}.command"), "internal URL", "report a bug")
        })?
    } else {
        http_url(&u.url).ok_or_else(|| {
            ConfigError::new(
                format!("{key}.url"),
                format!("`{}` is not an http(s) URL", u.url),
                "e.g. http://127.0.0.1:9100/mcp, or command = [...] for a stdio server",
            )
        })?
    };
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
        (None, Some(o)) => Credential::OAuth(oauth(&format!("{key}.oauth"), o, env)?),
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
    if u.idle_timeout_secs == 0 || u.idle_timeout_secs > MAX_IDLE_TIMEOUT_SECS {
        return Err(ConfigError::new(
            format!("{key}.idle_timeout_secs"),
            "out of range",
            "1..=86400 seconds",
        ));
    }
    if u.timeout_secs == 0 || u.timeout_secs > MAX_TIMEOUT_SECS {
        return Err(ConfigError::new(
            format!("{key}.timeout_secs"),
            "out of range",
            "1..=3600 seconds",
        ));
    }
    let scopes = u
        .scopes
        .into_iter()
        .enumerate()
        .map(|(j, r)| scope_rule(&format!("{key}.scopes[{j}]"), r))
        .collect::<Result<_, _>>()?;
    let input_requests = u
        .input_requests
        .into_iter()
        .enumerate()
        .map(|(j, r)| input_rule(&format!("{key}.input_requests[{j}]"), r))
        .collect::<Result<_, _>>()?;
    let record_arguments = u
        .record_arguments
        .iter()
        .enumerate()
        .map(|(j, g)| glob(&format!("{key}.record_arguments[{j}]"), g))
        .collect::<Result<_, _>>()?;
    let redact_arguments = u
        .redact_arguments
        .into_iter()
        .map(|(g, fields)| Ok((glob(&format!("{key}.redact_arguments.{g}"), &g)?, fields)))
        .collect::<Result<_, ConfigError>>()?;
    let resource = format!("{public_url}/mcp/{}", u.name);
    // A stdio server has no URL of its own: its assertions name the route.
    let default_audience = if stdio.is_some() {
        format!("urn:authz-gateway:stdio:{}", u.name)
    } else {
        url.to_string()
    };
    let identity_assertion = u
        .identity_assertion
        .map(|a| identity_assertion(&format!("{key}.identity_assertion"), a, default_audience))
        .transpose()?;
    Ok(Upstream {
        name: u.name,
        url,
        credential,
        timeout: Duration::from_secs(u.timeout_secs),
        idle_timeout: Duration::from_secs(u.idle_timeout_secs),
        max_stream: u.max_stream_secs.map(Duration::from_secs),
        ca_file: u.ca_file,
        audit_mode: u.audit_mode.unwrap_or(default_mode),
        record_arguments,
        redact_arguments,
        scopes,
        resource,
        structured_denials: u.structured_denials,
        input_requests,
        pin_definitions: u.pin_definitions,
        identity_assertion,
        stdio,
    })
}

/// A stdio upstream's `command`, `args`, `env`, `env_secrets`, `cwd` and `stdio` limits.
fn stdio_spec(
    key: &str,
    command: Vec<String>,
    u: &mut RawUpstream,
    env: Env<'_>,
) -> Result<StdioSpec, ConfigError> {
    let bad = |field: &str, problem: String, hint: &str| {
        ConfigError::new(format!("{key}.{field}"), problem, hint.to_owned())
    };
    if !u.url.is_empty() {
        return Err(bad(
            "command",
            "both url and command are set".into(),
            "an upstream is either an HTTP server (url) or a stdio server (command)",
        ));
    }
    if u.credential_env.is_some() || u.credential_file.is_some() || u.oauth.is_some() {
        return Err(bad(
            "command",
            "a stdio server has no upstream credential".into(),
            "give the child its secrets with env_secrets instead",
        ));
    }
    let Some((program, first_args)) = command.split_first() else {
        return Err(bad(
            "command",
            "is empty".into(),
            "e.g. [\"npx\", \"server\"]",
        ));
    };
    let program = resolve_program(program).ok_or_else(|| {
        bad(
            "command",
            format!("`{program}` is not an executable file (nor on PATH)"),
            "an absolute path, or a program on the gateway's PATH",
        )
    })?;
    let mut child_env = Vec::new();
    for name in &u.env {
        if let Some(value) = env(name) {
            child_env.push((name.clone(), Secret::new(value)));
        }
    }
    for (child_var, gateway_var) in &u.env_secrets {
        let value = env(gateway_var).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(
                &format!("env_secrets.{child_var}"),
                format!("environment variable {gateway_var} is not set"),
                "export it, or remove the entry",
            )
        })?;
        child_env.retain(|(k, _)| k != child_var);
        child_env.push((child_var.clone(), Secret::new(value)));
    }
    if let Some(cwd) = &u.cwd
        && !cwd.is_dir()
    {
        return Err(bad(
            "cwd",
            format!("{} is not a directory", cwd.display()),
            "the child's working directory",
        ));
    }
    let s = &u.stdio;
    if s.max_processes == 0 || s.max_per_principal == 0 || s.max_per_principal > s.max_processes {
        return Err(bad(
            "stdio.max_per_principal",
            format!(
                "{} per principal with {} in all",
                s.max_per_principal, s.max_processes
            ),
            "1 <= max_per_principal <= max_processes",
        ));
    }
    if !(1..=86_400).contains(&s.idle_secs) || !(1..=600).contains(&s.start_timeout_secs) {
        return Err(bad(
            "stdio.idle_secs",
            "idle_secs or start_timeout_secs out of range".into(),
            "idle 1..=86400 s, start-up 1..=600 s",
        ));
    }
    let mut args: Vec<String> = first_args.to_vec();
    args.append(&mut u.args);
    Ok(StdioSpec {
        program,
        args,
        env: child_env,
        cwd: u.cwd.clone(),
        max_processes: s.max_processes,
        max_per_principal: s.max_per_principal,
        share_per_principal: s.share == super::raw::StdioShare::Principal,
        idle: Duration::from_secs(s.idle_secs),
        start_timeout: Duration::from_secs(s.start_timeout_secs),
    })
}

/// `program` as an executable path: as given when it has a `/`, else found on the gateway's
/// `PATH` (the child's environment has no `PATH` unless allowed, so it is resolved here).
fn resolve_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| executable(p))
    })
}

/// Headers an identity assertion may not travel in: the gateway's own upstream credential,
/// what it forwards or sets itself, and hop-by-hop headers.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "accept",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "traceparent",
    "tracestate",
    "last-event-id",
];

fn identity_assertion(
    key: &str,
    a: RawIdentityAssertion,
    default_audience: String,
) -> Result<IdentityAssertion, ConfigError> {
    let lower = a.header.to_ascii_lowercase();
    let header = axum::http::HeaderName::from_bytes(lower.as_bytes())
        .ok()
        .filter(|_| {
            !RESERVED_HEADERS.contains(&lower.as_str())
                && !lower.starts_with("mcp-")
                && !lower.starts_with(crate::param_headers::PREFIX)
        })
        .ok_or_else(|| {
            ConfigError::new(
                format!("{key}.header"),
                format!("`{}` cannot carry the assertion", a.header),
                "a header of its own, e.g. x-identity-assertion (not Authorization, an MCP \
                 header or one the gateway forwards)",
            )
        })?;
    if !(1..=300).contains(&a.lifetime_secs) {
        return Err(ConfigError::new(
            format!("{key}.lifetime_secs"),
            format!("{} is out of range", a.lifetime_secs),
            "1..=300 seconds: an assertion is for one call, not a session",
        ));
    }
    let audience = a.audience.unwrap_or(default_audience);
    if audience.trim().is_empty() {
        return Err(ConfigError::new(
            format!("{key}.audience"),
            "is empty",
            "the upstream's identifier, default its URL",
        ));
    }
    Ok(IdentityAssertion {
        header,
        lifetime_secs: a.lifetime_secs,
        audience,
    })
}

/// The `[identity]` section: required as soon as a route sends identity assertions.
pub(super) fn identity(
    raw: Option<RawIdentity>,
    public_url: &str,
    upstreams: &[Upstream],
) -> Result<Option<Identity>, ConfigError> {
    let wanted = upstreams
        .iter()
        .position(|u| u.identity_assertion.is_some());
    let Some(raw) = raw else {
        return match wanted {
            Some(i) => Err(ConfigError::new(
                format!("upstreams[{i}].identity_assertion"),
                "needs the gateway's identity key",
                "add [identity] with signing_key_file and jwks_file (authzctl keys generate)",
            )),
            None => Ok(None),
        };
    };
    for (key, path) in [
        ("identity.signing_key_file", &raw.signing_key_file),
        ("identity.jwks_file", &raw.jwks_file),
    ] {
        if !path.is_file() {
            return Err(ConfigError::new(
                key,
                format!("{} is not a readable file", path.display()),
                "authzctl keys generate writes both",
            ));
        }
    }
    Ok(Some(Identity {
        issuer: raw.issuer.unwrap_or_else(|| format!("{public_url}/")),
        signing_key_file: raw.signing_key_file,
        jwks_file: raw.jwks_file,
    }))
}

fn input_rule(key: &str, r: RawInputRule) -> Result<InputRule, ConfigError> {
    let url_origins = r
        .url_origins
        .map(|origins| {
            origins
                .iter()
                .enumerate()
                .map(|(j, o)| {
                    let bad = || {
                        ConfigError::new(
                            format!("{key}.url_origins[{j}]"),
                            format!("`{o}` is not an origin"),
                            "an origin is scheme://host[:port], no path: e.g. \"https://login.example.com\"",
                        )
                    };
                    let url = reqwest::Url::parse(o).map_err(|_| bad())?;
                    let origin = url.origin();
                    if !origin.is_tuple() || !matches!(url.path(), "" | "/") || url.query().is_some() {
                        return Err(bad());
                    }
                    Ok(origin.ascii_serialization())
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(InputRule {
        method: r.method,
        target: glob(&format!("{key}.target"), &r.target)?,
        sampling: r.sampling,
        elicitation: r.elicitation,
        url_origins,
        roots: r.roots,
    })
}

fn is_route_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An upstream's `oauth` table; `key` is its path, e.g. `upstreams[0].oauth`.
fn oauth(key: &str, o: RawOAuth, env: Env<'_>) -> Result<OAuthClient, ConfigError> {
    let token_url = http_url(&o.token_url).ok_or_else(|| {
        ConfigError::new(
            format!("{key}.token_url"),
            format!("`{}` is not an http(s) URL", o.token_url),
            "the authorization server's token endpoint",
        )
    })?;
    let client_secret = secret(
        &format!("{key}.client_secret"),
        o.client_secret_env.as_deref(),
        o.client_secret_file.as_deref(),
        env,
    )?
    .ok_or_else(|| {
        ConfigError::new(
            format!("{key}.client_secret_env"),
            "no client secret",
            "set client_secret_env or client_secret_file",
        )
    })?;
    if o.client_id.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.client_id"),
            "empty",
            "the gateway's OAuth client id",
        ));
    }
    Ok(OAuthClient {
        token_url,
        client_id: o.client_id,
        client_secret,
        scope: o.scope,
        resource: o.resource,
    })
}

/// One scope rule; `key` is its path, e.g. `upstreams[0].scopes[2]`. The target is compiled
/// here, once.
fn scope_rule(key: &str, r: RawScopeRule) -> Result<ScopeRule, ConfigError> {
    if r.require.is_empty() || r.require.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err(ConfigError::new(
            format!("{key}.require"),
            "must list one or more scope names without spaces",
            "e.g. require = [\"tickets:read\"]",
        ));
    }
    Ok(ScopeRule {
        method: r.method,
        target: glob(&format!("{key}.target"), &r.target)?,
        require: r.require,
    })
}

/// Compiles a glob at `key`.
fn glob(key: &str, pattern: &str) -> Result<Glob, ConfigError> {
    Glob::new(pattern).map_err(|e| {
        ConfigError::new(
            key,
            format!("`{pattern}` is not a valid glob: {}", e.kind()),
            "`*` matches any text (`/` included), `?` one character, `[abc]` one of a set, \
             `{a,b}` either; `\\` escapes the next character",
        )
    })
}

/// The `[revocation]` section: its database (default: the audit database) and poll interval.
pub(super) fn revocation(
    raw: RawRevocation,
    audit_database_url: &str,
) -> Result<(String, Duration), ConfigError> {
    let poll_ms = raw.poll_interval_ms;
    if !(10..=60_000).contains(&poll_ms) {
        return Err(ConfigError::new(
            "revocation.poll_interval_ms",
            format!("{poll_ms} is out of range"),
            "10 ms to 60 s",
        ));
    }
    let url = raw
        .database_url
        .unwrap_or_else(|| audit_database_url.to_owned());
    Ok((url, Duration::from_millis(poll_ms)))
}

/// The `[token_exchange]` section. The gateway trusts its own tokens, for its own routes
/// (virtual servers included) only,
/// and only as access tokens (`typ: at+jwt`): its issuer is added to `auth`.
pub(super) fn token_exchange(
    raw: Option<RawTokenExchange>,
    public_url: &str,
    auth: &mut authz_token::VerifierConfig,
    upstreams: &[Upstream],
    virtual_servers: &[VirtualServer],
) -> Result<Option<TokenExchange>, ConfigError> {
    let Some(t) = raw else { return Ok(None) };
    let issuer = t.issuer.unwrap_or_else(|| format!("{public_url}/"));
    if !(1..=3600).contains(&t.max_ttl_secs) {
        return Err(ConfigError::new(
            "token_exchange.max_ttl_secs",
            format!("{} is out of range", t.max_ttl_secs),
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
    let mut own = authz_token::IssuerConfig::new(issuer.clone(), t.jwks_file);
    own.audiences = upstreams
        .iter()
        .map(|u| u.resource.clone())
        .chain(virtual_servers.iter().map(|v| v.resource.clone()))
        .collect();
    own.require_typ_at_jwt = true;
    auth.issuers.push(own);
    Ok(Some(TokenExchange {
        issuer,
        signing_key_file: t.signing_key_file,
        max_ttl_secs: t.max_ttl_secs,
    }))
}

fn is_http(url: &reqwest::Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

fn http_url(text: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(text).ok().filter(is_http)
}

/// Resolves a secret given by environment variable name or file path (at most one).
fn secret(
    key: &str,
    var: Option<&str>,
    file: Option<&Path>,
    env: Env<'_>,
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

/// The `[admin]` and `[approvals]` sections.
pub(super) fn approvals(
    admin: Option<RawAdmin>,
    raw: RawApprovals,
    server_listen: SocketAddr,
) -> Result<(Option<Admin>, Approvals), ConfigError> {
    let admin = admin
        .map(|a| {
            let listen: SocketAddr = a.listen.parse().map_err(|_| {
                ConfigError::new(
                    "admin.listen",
                    format!("`{}` is not an address", a.listen),
                    "use host:port, e.g. 127.0.0.1:9091",
                )
            })?;
            if listen == server_listen && listen.port() != 0 {
                return Err(ConfigError::new(
                    "admin.listen",
                    format!("`{listen}` is also server.listen"),
                    "pages for people never share the agents' listener; pick another port",
                ));
            }
            let public_url = a.public_url.unwrap_or_else(|| format!("http://{listen}"));
            if http_url(&public_url).is_none_or(|u| u.query().is_some()) {
                return Err(ConfigError::new(
                    "admin.public_url",
                    format!("`{public_url}` must be an http(s) URL without a query"),
                    "e.g. https://gateway-admin.example.com",
                ));
            }
            Ok(Admin {
                listen,
                public_url: public_url.trim_end_matches('/').to_owned(),
            })
        })
        .transpose()?;
    let secs = |key: &str, v: u64, max: u64| {
        if (1..=max).contains(&v) {
            Ok(std::time::Duration::from_secs(v))
        } else {
            Err(ConfigError::new(
                key,
                format!("{v} is out of range"),
                format!("1..={max} seconds"),
            ))
        }
    };
    let day = 24 * 3600;
    if raw.approver_roles.is_empty()
        || raw
            .approver_roles
            .iter()
            .any(|r| authz_rbac::check_role_name(r).is_err())
    {
        return Err(ConfigError::new(
            "approvals.approver_roles",
            format!("{:?} is not a list of role names", raw.approver_roles),
            "at least one role name (not `user:...`), e.g. [\"approver\"]",
        ));
    }
    if !(1..=1000).contains(&raw.max_pending_per_principal) {
        return Err(ConfigError::new(
            "approvals.max_pending_per_principal",
            format!("{} is out of range", raw.max_pending_per_principal),
            "1..=1000",
        ));
    }
    let audience = raw
        .audience
        .or_else(|| admin.as_ref().map(|a| a.public_url.clone()));
    Ok((
        admin,
        Approvals {
            approver_roles: raw.approver_roles,
            audience,
            pending_ttl: secs("approvals.pending_ttl_secs", raw.pending_ttl_secs, day)?,
            approved_ttl: secs("approvals.approved_ttl_secs", raw.approved_ttl_secs, day)?,
            rejected_ttl: secs("approvals.rejected_ttl_secs", raw.rejected_ttl_secs, day)?,
            max_pending_per_principal: raw.max_pending_per_principal,
        },
    ))
}
