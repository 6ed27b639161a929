//! The configuration file as written: one struct per section, unknown keys refused, and every
//! default next to the field it fills (a `Default` impl or a `#[serde(default = ...)]`).
//!
//! A few defaults depend on other values and are filled in by validation instead, as the field
//! documentation says: `server.public_url` (from the listen address), the policy file (only
//! when no `policy.database_url` is given), `revocation.database_url` (the audit database),
//! `token_exchange.issuer` (from the public URL) and a route's `audit_mode` (`audit.mode`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

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
    /// Routes that combine several upstreams into one MCP server.
    #[serde(default)]
    pub virtual_servers: Vec<RawVirtualServer>,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub revocation: RawRevocation,
    pub token_exchange: Option<RawTokenExchange>,
    /// The admin listener (the approval page); unset: none.
    pub admin: Option<RawAdmin>,
    /// The key signing identity assertions for upstreams; needed by a route's
    /// `identity_assertion`.
    pub identity: Option<RawIdentity>,
    #[serde(default)]
    pub approvals: RawApprovals,
}

/// The admin listener: pages for people, never on the agents' listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Where the approval page listens, e.g. `127.0.0.1:9091`.
    pub listen: String,
    /// The page's URL as approvers reach it (links in held calls point there); default
    /// `http://<listen>`.
    pub public_url: Option<String>,
}

/// Calls held by `approve` rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// Token roles that may approve or reject on the page.
    #[serde(default = "default_approver_roles")]
    pub approver_roles: Vec<String>,
    /// The audience (`aud`) an approver's token must carry; default `<admin public_url>`.
    pub audience: Option<String>,
    /// How long a held call waits for an approver.
    #[serde(default = "default_pending_ttl_secs")]
    pub pending_ttl_secs: u64,
    /// How long an approved call may be retried (once).
    #[serde(default = "default_approved_ttl_secs")]
    pub approved_ttl_secs: u64,
    /// How long a rejection refuses identical calls.
    #[serde(default = "default_rejected_ttl_secs")]
    pub rejected_ttl_secs: u64,
    /// Pending approvals one principal may have at once (more held calls are refused, 429).
    #[serde(default = "default_max_pending")]
    pub max_pending_per_principal: u32,
}

impl Default for RawApprovals {
    fn default() -> Self {
        Self {
            approver_roles: default_approver_roles(),
            audience: None,
            pending_ttl_secs: default_pending_ttl_secs(),
            approved_ttl_secs: default_approved_ttl_secs(),
            rejected_ttl_secs: default_rejected_ttl_secs(),
            max_pending_per_principal: default_max_pending(),
        }
    }
}

fn default_approver_roles() -> Vec<String> {
    vec!["approver".to_owned()]
}
fn default_pending_ttl_secs() -> u64 {
    900
}
fn default_approved_ttl_secs() -> u64 {
    300
}
fn default_rejected_ttl_secs() -> u64 {
    900
}
fn default_max_pending() -> u32 {
    10
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
pub const DEFAULT_MAX_IN_FLIGHT_PER_PRINCIPAL: usize = 64;
/// How long a client may take to send a complete request head (like nginx's
/// `client_header_timeout`); also bounds how long an idle keep-alive connection is held.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// How long a POST body may take to arrive in full, once its head is in.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Open client connections, in total. Kept below the usual open-file limit so that accepting
/// never fails for want of descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Open client connections from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// How long a connection may stay open with no request in flight (like nginx's
/// `keepalive_timeout`; HTTP/1.1 keep-alive is also bounded by the head deadline).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// At shutdown, how long open requests and streams may take to finish before their connections
/// are closed.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// How long a sealed multi round-trip `requestState` may be brought back.
pub const DEFAULT_REQUEST_STATE_TTL_SECS: u64 = 600;
/// Streams one HTTP/2 connection may have open at once (nginx: 128; RFC 9113 advises >= 100).
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// The largest HTTP/2 request header list (room for large bearer tokens; nginx allows 32 KiB).
pub const DEFAULT_HTTP2_MAX_HEADER_LIST_BYTES: u32 = 32 * 1024;
/// Streams an HTTP/2 client may open and reset before they are taken (rapid reset).
pub const DEFAULT_HTTP2_MAX_PENDING_RESET_STREAMS: usize = 20;
/// Streams the gateway may reset for a client's protocol errors ("made you reset").
pub const DEFAULT_HTTP2_MAX_LOCAL_RESET_STREAMS: usize = 1024;
/// Unauthenticated refusals one client address may cause per second, on average (0: no limit).
pub const DEFAULT_UNAUTHENTICATED_PER_CLIENT_PER_SEC: u32 = 20;
/// How many it may cause at once.
pub const DEFAULT_UNAUTHENTICATED_BURST_PER_CLIENT: u32 = 100;
/// How long identical unauthenticated refusals are counted into one aggregate record.
pub const DEFAULT_REFUSAL_AGGREGATE_WINDOW_MS: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Default [`DEFAULT_LISTEN`]; the `--listen` flag wins over it.
    pub listen: String,
    /// The externally visible base URL; canonical resource URIs are `<public_url>/mcp/<name>`.
    /// Default `http://<listen>`.
    pub public_url: Option<String>,
    /// Default [`DEFAULT_MAX_BODY`].
    pub max_body_bytes: usize,
    /// Origins allowed to call (DNS-rebinding protection). Requests without `Origin` pass.
    pub allowed_origins: Vec<String>,
    /// Requests (including open SSE streams) one principal may have in flight.
    pub max_in_flight_per_principal: usize,
    /// Authorization servers advertised in protected resource metadata (empty: the issuers).
    pub authorization_servers: Vec<String>,
    /// Default [`DEFAULT_HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout_ms: u64,
    /// Default [`DEFAULT_BODY_READ_TIMEOUT_MS`].
    pub body_read_timeout_ms: u64,
    /// Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Default [`DEFAULT_MAX_CONNECTIONS_PER_CLIENT`].
    pub max_connections_per_client: usize,
    /// Default [`DEFAULT_IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: u64,
    /// Default [`DEFAULT_SHUTDOWN_GRACE_MS`].
    pub shutdown_grace_ms: u64,
    /// The key (64 hex digits) that seals multi round-trip `requestState`s; every replica must
    /// have the same. Without one, a random key per process (a single replica).
    pub request_state_key_file: Option<PathBuf>,
    /// Default [`DEFAULT_REQUEST_STATE_TTL_SECS`].
    pub request_state_ttl_secs: u64,
    /// Default [`DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS`].
    pub http2_max_concurrent_streams: u32,
    /// Default [`DEFAULT_HTTP2_MAX_HEADER_LIST_BYTES`].
    pub http2_max_header_list_bytes: u32,
    /// Default [`DEFAULT_HTTP2_MAX_PENDING_RESET_STREAMS`].
    pub http2_max_pending_reset_streams: usize,
    /// Default [`DEFAULT_HTTP2_MAX_LOCAL_RESET_STREAMS`].
    pub http2_max_local_reset_streams: usize,
    /// Default [`DEFAULT_UNAUTHENTICATED_PER_CLIENT_PER_SEC`].
    pub unauthenticated_per_client_per_sec: u32,
    /// Default [`DEFAULT_UNAUTHENTICATED_BURST_PER_CLIENT`].
    pub unauthenticated_burst_per_client: u32,
    /// Default [`DEFAULT_REFUSAL_AGGREGATE_WINDOW_MS`].
    pub refusal_aggregate_window_ms: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            public_url: None,
            max_body_bytes: DEFAULT_MAX_BODY,
            allowed_origins: Vec::new(),
            max_in_flight_per_principal: DEFAULT_MAX_IN_FLIGHT_PER_PRINCIPAL,
            authorization_servers: Vec::new(),
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            request_state_key_file: None,
            request_state_ttl_secs: DEFAULT_REQUEST_STATE_TTL_SECS,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            http2_max_header_list_bytes: DEFAULT_HTTP2_MAX_HEADER_LIST_BYTES,
            http2_max_pending_reset_streams: DEFAULT_HTTP2_MAX_PENDING_RESET_STREAMS,
            http2_max_local_reset_streams: DEFAULT_HTTP2_MAX_LOCAL_RESET_STREAMS,
            unauthenticated_per_client_per_sec: DEFAULT_UNAUTHENTICATED_PER_CLIENT_PER_SEC,
            unauthenticated_burst_per_client: DEFAULT_UNAUTHENTICATED_BURST_PER_CLIENT,
            refusal_aggregate_window_ms: DEFAULT_REFUSAL_AGGREGATE_WINDOW_MS,
        }
    }
}

pub const DEFAULT_POLICY_MODEL: &str = "policies/model.conf";
/// The policy file read when neither `policy.files` nor `policy.database_url` is given.
pub const DEFAULT_POLICY_FILE: &str = "policies/policy.csv";
pub const DEFAULT_POLICY_POLL_MS: u64 = 1000;
/// How often replicas exchange quota spending through a shared Postgres store.
pub const DEFAULT_QUOTA_SYNC_MS: u64 = 250;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    pub model: PathBuf,
    /// Empty: [`DEFAULT_POLICY_FILE`], unless `database_url` is set.
    pub files: Vec<PathBuf>,
    pub database_url: Option<String>,
    /// How often the policy source is checked for changes (Postgres also notifies at once).
    pub poll_interval_ms: u64,
    /// Rate limits and quotas (see the gateway's `quotas` module); none without a file. Read
    /// again as often as the policy is checked.
    pub quotas_file: Option<PathBuf>,
    /// How often quota spending is exchanged with the other replicas, when they share a
    /// Postgres store. Default [`DEFAULT_QUOTA_SYNC_MS`].
    pub quota_sync_interval_ms: u64,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            model: PathBuf::from(DEFAULT_POLICY_MODEL),
            files: Vec::new(),
            database_url: None,
            poll_interval_ms: DEFAULT_POLICY_POLL_MS,
            quotas_file: None,
            quota_sync_interval_ms: DEFAULT_QUOTA_SYNC_MS,
        }
    }
}

pub const DEFAULT_AUDIT_URL: &str = "sqlite://authz-audit.db?mode=rwc";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// Default [`DEFAULT_AUDIT_URL`]; `--audit-database-url` wins over it.
    pub database_url: String,
    /// Default audit mode of every route.
    pub mode: AuditMode,
    /// Ed25519 seed (32 raw bytes or 64 hex digits) that signs the chain's checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// The group-commit writer: queue, batch, flush interval, retries, checkpoints, chain id.
    pub writer: authz_audit::WriterConfig,
    /// Where the trail is shipped besides the store (see [`crate::shipping`]).
    pub sinks: Vec<RawSink>,
}

/// One `[[audit.sinks]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Names the sink in metrics and logs and keys its cursor in the store.
    pub name: String,
    pub kind: SinkKind,
    pub url: String,
    /// The token sent in `Authorization: <auth_scheme> <token>`, from a variable or a file.
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Default `Bearer`, or `Splunk` for `splunk_hec`.
    pub auth_scheme: Option<String>,
    #[serde(default = "default_sink_batch")]
    pub batch_records: u32,
    #[serde(default = "default_sink_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_sink_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub start: authz_audit::ShipStart,
    /// Extra CAs for the sink's TLS (system roots always).
    pub ca_file: Option<PathBuf>,
}

fn default_sink_batch() -> u32 {
    500
}
fn default_sink_poll_ms() -> u64 {
    1_000
}
fn default_sink_timeout_ms() -> u64 {
    10_000
}

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// `POST` of newline-delimited JSON, one record per line (`application/x-ndjson`).
    JsonLines,
    /// Splunk's HTTP Event Collector: one `{"time", "event", ...}` object per record.
    SplunkHec,
    /// OTLP/HTTP logs (JSON encoding), one log record per audit record.
    OtlpLogs,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_AUDIT_URL.to_owned(),
            mode: AuditMode::default(),
            signing_key_file: None,
            writer: authz_audit::WriterConfig::default(),
            sinks: Vec::new(),
        }
    }
}

/// How a route's requests wait for their audit record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditMode {
    /// The request is forwarded only after its record is committed; a store that cannot take
    /// it fails the request with 503. The default.
    #[default]
    Durable,
    /// The request does not wait for the commit; a full queue makes it wait (bounded), then 503.
    /// Records are never dropped silently.
    Buffered,
}

pub const DEFAULT_UPSTREAM_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT_SECS: u64 = 300;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    /// The upstream's Streamable HTTP endpoint; or `command` for a stdio server.
    #[serde(default)]
    pub url: String,
    /// A local MCP server speaking stdio: the program and its first arguments. The gateway
    /// starts it (one process per MCP session) and serves it at `/mcp/<name>`.
    pub command: Option<Vec<String>>,
    /// More arguments after `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of the gateway's environment variables the child may see (nothing else is
    /// passed on).
    #[serde(default)]
    pub env: Vec<String>,
    /// Secrets for the child: its variable name → the gateway's variable holding the value.
    #[serde(default)]
    pub env_secrets: BTreeMap<String, String>,
    /// The child's working directory; default the gateway's.
    pub cwd: Option<PathBuf>,
    /// Limits of a stdio server's processes.
    #[serde(default)]
    pub stdio: RawStdio,
    /// Name of an environment variable holding the gateway's own bearer credential upstream.
    pub credential_env: Option<String>,
    /// Path of a file holding that credential.
    pub credential_file: Option<PathBuf>,
    /// OAuth 2.0 client credentials: the gateway fetches (and caches) its own upstream token.
    pub oauth: Option<RawOAuth>,
    /// Seconds to wait for the upstream's response head.
    #[serde(default = "default_upstream_timeout_secs")]
    pub timeout_secs: u64,
    /// Seconds a response body (an SSE stream) may stay silent before it is cut.
    #[serde(default = "default_upstream_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
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
    /// Answer a policy denial of a `tools/call` as a tool error result with
    /// `_meta["io.modelcontextprotocol/authorization"]` (draft SEP-2643) instead of a JSON-RPC
    /// error, so an agent can tell "ask for a role" from "never".
    #[serde(default)]
    pub structured_denials: bool,
    /// What the upstream may ask the client for while serving a call (first match wins; no
    /// match: anything).
    #[serde(default)]
    pub input_requests: Vec<RawInputRule>,
    /// How the route treats tool, prompt and resource template definitions it has not approved
    /// (see [`crate::pins`]): `trust_on_first_use` (default), `strict` or `off`.
    #[serde(default)]
    pub pin_definitions: crate::pins::PinMode,
    /// Send the upstream a short-lived assertion of who is calling, signed by the gateway
    /// (`[identity]`); unset: none.
    pub identity_assertion: Option<RawIdentityAssertion>,
}

/// A virtual server: one route (`/mcp/<name>`) over several upstreams, their tools and prompts
/// listed under a per-member name prefix and their resources under a per-member URI prefix
/// (see `crate::proxy::virtual_route`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVirtualServer {
    pub name: String,
    /// The `[[upstreams]]` it combines, by name.
    pub members: Vec<String>,
    /// Per member, the prefix of its tool and prompt names; default `<member>_`.
    #[serde(default)]
    pub prefixes: BTreeMap<String, String>,
    /// Per member, the prefix of its resource URIs and templates; default `<member>+` (a URI
    /// scheme of its own: `files+file:///srv/a.txt`).
    #[serde(default)]
    pub uri_prefixes: BTreeMap<String, String>,
}

/// Limits of a stdio upstream's processes (see [`crate::stdio`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdio {
    /// Processes of this route at once (each MCP session has its own).
    #[serde(default = "default_stdio_max_processes")]
    pub max_processes: usize,
    /// Processes one principal may hold at once.
    #[serde(default = "default_stdio_max_per_principal")]
    pub max_per_principal: usize,
    /// `session` (default): one process per MCP session; `principal`: a principal's sessions
    /// share one process. Never one process for two principals.
    #[serde(default)]
    pub share: StdioShare,
    /// A process with nothing in flight and no open stream for this long is stopped.
    #[serde(default = "default_stdio_idle_secs")]
    pub idle_secs: u64,
    /// How long a new process may take to answer `initialize`.
    #[serde(default = "default_stdio_start_timeout_secs")]
    pub start_timeout_secs: u64,
}

/// How a stdio server's processes are shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioShare {
    #[default]
    Session,
    Principal,
}

impl Default for RawStdio {
    fn default() -> Self {
        Self {
            max_processes: default_stdio_max_processes(),
            max_per_principal: default_stdio_max_per_principal(),
            share: StdioShare::Session,
            idle_secs: default_stdio_idle_secs(),
            start_timeout_secs: default_stdio_start_timeout_secs(),
        }
    }
}

fn default_stdio_max_processes() -> usize {
    16
}
fn default_stdio_max_per_principal() -> usize {
    4
}
fn default_stdio_idle_secs() -> u64 {
    300
}
fn default_stdio_start_timeout_secs() -> u64 {
    10
}

/// A route's identity assertion (see [`crate::identity`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityAssertion {
    /// The request header carrying it.
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// Its lifetime in seconds (never past the agent token's own expiry).
    #[serde(default = "default_assertion_lifetime_secs")]
    pub lifetime_secs: i64,
    /// Its `aud`; default the upstream's URL.
    pub audience: Option<String>,
}

fn default_assertion_header() -> String {
    "x-identity-assertion".to_owned()
}
fn default_assertion_lifetime_secs() -> i64 {
    60
}

/// The gateway's identity issuer: the key that signs identity assertions for upstreams, its
/// public JWKS (served at `/.well-known/jwks.json`) and the `iss` it writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// The private signing key (JWK), e.g. from `authzctl keys generate`.
    pub signing_key_file: PathBuf,
    /// The matching public JWKS.
    pub jwks_file: PathBuf,
    /// `iss` of the assertions; default `<public_url>/`.
    pub issuer: Option<String>,
}

/// One rule over the input an upstream may request (2026-07-28 `inputRequests`, and the
/// server-to-client requests of session-based versions).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInputRule {
    /// A JSON-RPC method name (`tools/call`, `prompts/get`, `resources/read`), or `*`.
    #[serde(default = "any_target")]
    pub method: String,
    /// A glob over the call's target, default [`ANY_TARGET`].
    #[serde(default = "any_target")]
    pub target: String,
    /// May it ask for sampling (`sampling/createMessage`)?
    #[serde(default = "yes")]
    pub sampling: bool,
    /// May it elicit (`elicitation/create`, form or URL mode)?
    #[serde(default = "yes")]
    pub elicitation: bool,
    /// When set, URL-mode elicitation only to these origins (`https://host[:port]`); `[]`
    /// forbids URL mode.
    pub url_origins: Option<Vec<String>>,
    /// May it list the client's roots (`roots/list`)?
    #[serde(default = "yes")]
    pub roots: bool,
}

fn yes() -> bool {
    true
}

fn default_upstream_timeout_secs() -> u64 {
    DEFAULT_UPSTREAM_TIMEOUT_SECS
}

fn default_upstream_idle_timeout_secs() -> u64 {
    DEFAULT_UPSTREAM_IDLE_TIMEOUT_SECS
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

/// The target of a scope rule that names none: every operation, with or without a target.
pub const ANY_TARGET: &str = "*";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScopeRule {
    /// A JSON-RPC method name, or `*`.
    pub method: String,
    /// A glob over the operation's target (see [`crate::scopes::Glob`] for the dialect);
    /// default [`ANY_TARGET`].
    #[serde(default = "any_target")]
    pub target: String,
    pub require: Vec<String>,
}

fn any_target() -> String {
    ANY_TARGET.to_owned()
}

pub const DEFAULT_REVOCATION_POLL_MS: u64 = 500;

/// Where token revocations live (shared by every replica).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRevocation {
    /// Default: the audit database.
    pub database_url: Option<String>,
    /// How often the revision is polled besides Postgres notifications.
    pub poll_interval_ms: u64,
}

impl Default for RawRevocation {
    fn default() -> Self {
        Self {
            database_url: None,
            poll_interval_ms: DEFAULT_REVOCATION_POLL_MS,
        }
    }
}

pub const DEFAULT_EXCHANGE_MAX_TTL_SECS: i64 = 300;

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
    /// Longest lifetime of an exchanged token.
    #[serde(default = "default_exchange_max_ttl_secs")]
    pub max_ttl_secs: i64,
}

fn default_exchange_max_ttl_secs() -> i64 {
    DEFAULT_EXCHANGE_MAX_TTL_SECS
}

pub const DEFAULT_SERVICE_NAME: &str = "authz-gateway";

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
    DEFAULT_SERVICE_NAME.to_owned()
}

const TOML_HINT: &str = "see the configuration reference in README.md; unknown keys are refused";

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
