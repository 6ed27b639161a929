//! Test harness: starts the demo upstream and a gateway in front of it, mints tokens, reads the
//! audit trail.

use std::path::PathBuf;

use authz_audit::AuditStore;
use authz_gateway::config::{Config, Overrides, RawConfig};
use authz_test_support::repo_path;
use authz_token::{KeyAlgorithm, MintRequest, Signer};
use authz_types::{AuditFilter, AuditRecord, RecordKind};
use demo_upstream::{DemoConfig, DemoUpstream};
use rmcp::{
    ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _,
    model::ProtocolVersion,
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

pub(crate) const ISSUER: &str = "https://idp.test";
pub(crate) const UPSTREAM_SECRET: &str = "gateway-own-upstream-credential";
pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";

pub(crate) type Client = RunningService<RoleClient, ()>;

/// A running gateway with its upstream, keys and audit store.
pub(crate) struct Env {
    /// First, so that dropping an `Env` signals the gateway before anything else goes.
    gateway: Serving,
    pub _dir: tempfile::TempDir,
    pub base: String,
    /// `<base>/mcp/tickets`: the route and the token audience.
    pub route: String,
    pub upstream: DemoUpstream,
    pub signer: Signer,
    /// The private JWK behind `signer`, for hand-built tokens.
    pub private_jwk: String,
    /// The public JWKS file the gateway trusts.
    pub jwks_path: PathBuf,
    /// The admin listener's base URL, when [`Options::admin`] asked for one.
    pub admin: Option<String>,
    /// A key the gateway does not trust, for forged tokens.
    pub attacker: Signer,
    pub audit: AuditStore,
    pub audit_url: String,
    pub http: reqwest::Client,
}

/// A gateway serving on a listener until [`Serving::stop`] or until dropped.
pub(crate) struct Serving {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Builds the gateway from `config` and serves it on `listener`.
    pub(crate) async fn start(config: Config, listener: tokio::net::TcpListener) -> Self {
        Self::start_with_admin(config, listener, None).await
    }

    /// [`Serving::start`], and the admin listener on `admin` when given.
    pub(crate) async fn start_with_admin(
        config: Config,
        listener: tokio::net::TcpListener,
        admin: Option<tokio::net::TcpListener>,
    ) -> Self {
        let app = authz_gateway::App::new(config)
            .await
            .expect("gateway starts");
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(admin) = admin {
            tokio::spawn(authz_gateway::serve_admin(
                app.clone(),
                admin,
                std::future::pending(),
            ));
        }
        let task = tokio::spawn(async move {
            let _ = authz_gateway::serve(app, listener, async {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the gateway gracefully and waits until it has drained its audit queue.
    pub(crate) async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("gateway task");
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves a scripted stand-in (an upstream, a token endpoint, a collector) on a fresh loopback
/// port; returns its address.
pub(crate) async fn serve_stand_in(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Which audit backend a test runs against (a Postgres URL usually from a
/// [`authz_test_support::TestDatabase`] that outlives the gateway).
pub(crate) enum AuditBackend {
    Sqlite,
    Postgres(String),
}

pub(crate) async fn start(backend: AuditBackend) -> Env {
    start_with(backend, Options::default()).await
}

/// Variations of the standard set-up.
#[derive(Default)]
pub(crate) struct Options {
    /// The credential the gateway presents upstream (default: the right one).
    pub upstream_credential: Option<&'static str>,
    /// Point the gateway at a port where nothing listens.
    pub dead_upstream: bool,
    /// Authenticate upstream with OAuth client credentials from this token endpoint instead of
    /// a static bearer (client `gateway`, secret `gateway-client-secret`).
    pub oauth_token_url: Option<String>,
    /// Read policies from this CSV file instead of the repository's.
    pub policy_file: Option<PathBuf>,
    /// Read policies from this SQL store instead of the repository's CSV files.
    pub policy_database_url: Option<String>,
    /// Add a second route, `billing`, to the same demo upstream.
    pub second_upstream: bool,
    /// Extra TOML keys for the `tickets` upstream (e.g. argument recording).
    pub upstream_extra: Option<String>,
    /// Enable `POST /token` with a fresh gateway signing key.
    pub token_exchange: bool,
    /// `audit.mode` (`durable` unless set).
    pub audit_mode: Option<&'static str>,
    /// Forward to this URL instead of the demo upstream.
    pub upstream_url: Option<String>,
    /// `server.max_in_flight_per_principal` (default: the gateway's).
    pub max_in_flight: Option<usize>,
    /// Extra TOML lines for `[server]` (connection limits).
    pub server_extra: Option<String>,
    /// `policy.quotas_file`.
    pub quotas_file: Option<PathBuf>,
    /// Extra TOML lines for `[policy]`.
    pub policy_extra: Option<String>,
    /// `server.public_url` (default: the gateway's own address), so a second gateway can serve
    /// the same resource as another.
    pub public_url: Option<String>,
    /// Sign and trust with this key pair (private JWK, public JWKS file) instead of a fresh one,
    /// so two gateways accept the same tokens.
    pub keys: Option<(String, PathBuf)>,
    /// Fetch the issuer's keys from a JWKS URL (a stand-in serving them over loopback HTTP)
    /// instead of reading the file.
    pub jwks_over_http: bool,
    /// Extra TOML at the end of the `[audit]` section (e.g. `[[audit.sinks]]` tables).
    pub audit_extra: Option<String>,
    /// Serve the admin listener (the approval page) on a fresh loopback port.
    pub admin: bool,
    /// Extra TOML lines for `[approvals]`.
    pub approvals_extra: Option<String>,
    /// Extra top-level TOML sections (e.g. `[identity]`).
    pub sections_extra: Option<String>,
    /// Make `tickets` a stdio upstream running this `command` (a TOML array) instead of the
    /// demo upstream over HTTP.
    pub stdio_command: Option<String>,
    /// More environment variables the configuration may read (name, value).
    pub env_extra: Vec<(String, String)>,
}

pub(crate) async fn start_with(backend: AuditBackend, opts: Options) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let (private_jwk, public_jwks) = match &opts.keys {
        Some((private, jwks)) => (
            private.clone(),
            std::fs::read_to_string(jwks).expect("read the shared JWKS"),
        ),
        None => {
            let k = authz_token::generate_key_pair(KeyAlgorithm::Es256, "test-key").expect("keys");
            (k.private_jwk, k.public_jwks)
        }
    };
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &public_jwks).expect("write jwks");
    let signer = Signer::from_private_jwk(&private_jwk).expect("signer");
    let evil = authz_token::generate_key_pair(KeyAlgorithm::Es256, "test-key").expect("keys");
    let attacker = Signer::from_private_jwk(&evil.private_jwk).expect("attacker signer");

    let upstream = demo_upstream::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream"),
        DemoConfig {
            require_bearer: Some(UPSTREAM_SECRET.to_owned()),
            ..DemoConfig::default()
        },
    )
    .await
    .expect("demo upstream");

    let audit_url = match backend {
        AuditBackend::Sqlite => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("audit.db").display()
        ),
        AuditBackend::Postgres(url) => url,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let admin_listener = if opts.admin {
        Some(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind admin"),
        )
    } else {
        None
    };
    let admin_base = admin_listener
        .as_ref()
        .map(|l| format!("http://{}", l.local_addr().expect("admin addr")));
    let credential_toml = match &opts.oauth_token_url {
        Some(url) => format!(
            "oauth = {{ token_url = \"{url}\", client_id = \"gateway\", client_secret_env = \"GW_CLIENT_SECRET\", scope = \"tickets\" }}"
        ),
        None => "credential_env = \"TICKETS_UPSTREAM_TOKEN\"".to_owned(),
    };
    let upstream_url = if let Some(url) = &opts.upstream_url {
        url.clone()
    } else if opts.dead_upstream {
        closed_port_url().await
    } else {
        upstream.url()
    };
    let toml = format!(
        r#"
{sections_extra}
{admin_section}
[approvals]
{approvals_extra}

[server]
public_url = "{public_url}"
{max_in_flight}
{server_extra}

{auth}
[policy]
model = "{model}"
{policy_source}
poll_interval_ms = 200
{quotas_file}
{policy_extra}

[audit]
database_url = "{audit_url}"
{audit_mode}
{audit_extra}

{token_exchange}

[revocation]
# Faster than the 500 ms default so "within a second" holds on a loaded CI machine too.
poll_interval_ms = 200

[scope_hierarchy]
"tickets:write" = ["tickets:read"]

[[upstreams]]
name = "tickets"
{upstream_source}
{upstream_extra}
scopes = [
  {{ method = "tools/call", target = "delete_*", require = ["tickets:write"] }},
  {{ method = "tools/call", target = "create_*", require = ["tickets:write"] }},
  {{ method = "*", require = ["tickets:read"] }},
]
{second_upstream}
"#,
        admin_section = admin_base
            .as_ref()
            .map(|b| format!(
                "[admin]\nlisten = \"{}\"\n",
                b.trim_start_matches("http://")
            ))
            .unwrap_or_default(),
        approvals_extra = opts.approvals_extra.as_deref().unwrap_or_default(),
        sections_extra = opts.sections_extra.as_deref().unwrap_or_default(),
        second_upstream = if opts.second_upstream {
            format!(
                "\n[[upstreams]]\nname = \"billing\"\nurl = \"{}\"\ncredential_env = \"TICKETS_UPSTREAM_TOKEN\"\n",
                upstream.url()
            )
        } else {
            String::new()
        },
        auth = if opts.jwks_over_http {
            let served = public_jwks.clone();
            let app = axum::Router::new().route(
                "/jwks.json",
                axum::routing::get(move || {
                    let served = served.clone();
                    async move { ([("content-type", "application/json")], served) }
                }),
            );
            let at = serve_stand_in(app).await;
            format!(
                "[auth]\nleeway_secs = 5\nmax_lifetime_secs = 3600\n\n[[auth.issuers]]\n\
                 issuer = \"{ISSUER}\"\njwks_url = \"http://{at}/jwks.json\"\n\
                 jwks_fetch = {{ allow_http = true }}\n"
            )
        } else {
            auth_toml(&jwks)
        },
        upstream_extra = opts.upstream_extra.as_deref().unwrap_or(""),
        model = repo_path("policies/model.conf").display(),
        policy_source = match &opts.policy_database_url {
            Some(url) => format!("database_url = \"{url}\""),
            None => format!(
                "files = [\"{}\"]",
                opts.policy_file
                    .clone()
                    .unwrap_or_else(|| repo_path("policies/policy.csv"))
                    .display()
            ),
        },
        token_exchange = if opts.token_exchange {
            let k =
                authz_token::generate_key_pair(KeyAlgorithm::Es256, "gateway-key").expect("keys");
            let private = dir.path().join("gateway-key.jwk");
            let public = dir.path().join("gateway-jwks.json");
            std::fs::write(&private, &k.private_jwk).expect("write key");
            std::fs::write(&public, &k.public_jwks).expect("write jwks");
            format!(
                "[token_exchange]\nsigning_key_file = \"{}\"\njwks_file = \"{}\"\nmax_ttl_secs = 300\n",
                private.display(),
                public.display()
            )
        } else {
            String::new()
        },
        audit_mode = opts
            .audit_mode
            .map(|m| format!("mode = \"{m}\""))
            .unwrap_or_default(),
        server_extra = opts.server_extra.as_deref().unwrap_or_default(),
        audit_extra = opts.audit_extra.as_deref().unwrap_or_default(),
        public_url = opts.public_url.as_deref().unwrap_or(&base),
        policy_extra = opts.policy_extra.as_deref().unwrap_or_default(),
        quotas_file = opts
            .quotas_file
            .as_ref()
            .map(|f| format!("quotas_file = \"{}\"", f.display()))
            .unwrap_or_default(),
        max_in_flight = opts
            .max_in_flight
            .map(|n| format!("max_in_flight_per_principal = {n}"))
            .unwrap_or_default(),
        upstream_source = match &opts.stdio_command {
            Some(command) => format!("command = {command}"),
            None => format!("url = \"{upstream_url}\"\n{credential_toml}"),
        },
    );
    let raw = RawConfig::from_toml(&toml).expect("test config parses");
    let credential = opts
        .upstream_credential
        .unwrap_or(UPSTREAM_SECRET)
        .to_owned();
    let env_extra = opts.env_extra.clone();
    let env = |k: &str| match k {
        "TICKETS_UPSTREAM_TOKEN" => Some(credential.clone()),
        "GW_CLIENT_SECRET" => Some("gateway-client-secret".to_owned()),
        _ => env_extra
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone()),
    };
    let config = Config::from_raw(raw, &Overrides::default(), &env).expect("test config validates");
    let gateway = Serving::start_with_admin(config, listener, admin_listener).await;
    let audit = AuditStore::connect(&audit_url).await.expect("audit store");
    Env {
        gateway,
        _dir: dir,
        route: format!("{base}/mcp/tickets"),
        base,
        upstream,
        signer,
        private_jwk: private_jwk.clone(),
        jwks_path: jwks.clone(),
        admin: admin_base,
        attacker,
        audit,
        audit_url,
        http: reqwest::Client::new(),
    }
}

/// The `[auth]` section of an in-process test gateway: trusts the keys in `jwks` for [`ISSUER`],
/// with a 5 s leeway and tokens of at most an hour.
pub(crate) fn auth_toml(jwks: &std::path::Path) -> String {
    format!(
        r#"[auth]
leeway_secs = 5
max_lifetime_secs = 3600

[[auth.issuers]]
issuer = "{ISSUER}"
jwks_file = "{}"
"#,
        jwks.display()
    )
}

/// A URL on a loopback port that was free a moment ago and is closed now.
async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}/mcp")
}

impl Env {
    /// Stops the gateway gracefully and waits until it has drained its audit queue.
    pub(crate) async fn stop(mut self) -> Self {
        self.gateway.stop().await;
        self
    }

    /// A request for a token; adjust fields before [`Env::mint`].
    pub(crate) fn token_request(
        &self,
        subject: &str,
        roles: &[&str],
        scopes: &[&str],
    ) -> MintRequest {
        let mut req = MintRequest::new(ISSUER, subject, self.route.clone());
        req.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        req.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        req.client_id = Some("test-agent".into());
        req.ttl_secs = 600;
        req
    }

    pub(crate) fn mint(&self, req: &MintRequest) -> String {
        self.signer.mint(req).expect("mint")
    }

    pub(crate) fn token(&self, subject: &str, roles: &[&str], scopes: &[&str]) -> String {
        self.mint(&self.token_request(subject, roles, scopes))
    }

    fn transport(&self, token: &str) -> StreamableHttpClientTransport<reqwest::Client> {
        StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.route.clone())
                .auth_header(token.to_owned()),
        )
    }

    /// rmcp's session-based client (initialize handshake, 2025-11-25).
    pub(crate) async fn legacy_client(&self, token: &str) -> Client {
        ().serve(self.transport(token))
            .await
            .expect("initialize through the gateway")
    }

    /// rmcp's stateless 2026-07-28 client.
    pub(crate) async fn modern_client(&self, token: &str) -> Client {
        ().serve_with_lifecycle(
            self.transport(token),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover through the gateway")
    }

    /// GETs `path` (starting with `/`) below the gateway's base URL.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET from the gateway")
    }

    /// Opens the server-to-client SSE stream (a GET on the route) with `token` and `headers`.
    pub(crate) async fn get_stream(
        &self,
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .get(&self.route)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("GET stream from the gateway")
    }

    /// A POST to `url` with the content type and `Accept` of an MCP message, for the requests
    /// [`Env::post`] cannot build (odd URLs, bodies or headers); add the rest and send it.
    pub(crate) fn json_post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
    }

    /// POSTs one JSON-RPC message with the given headers.
    pub(crate) async fn post(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> reqwest::Response {
        let mut req = self.json_post(&self.route).body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("HTTP exchange with the gateway")
    }

    /// POSTs the plain [`tools_call`] (no `_meta`, no MCP headers) with `token`, if any.
    pub(crate) async fn post_tools_call(
        &self,
        token: Option<&str>,
        id: u64,
        name: &str,
    ) -> reqwest::Response {
        self.post(token, &[], &tools_call(id, name)).await
    }

    /// POSTs the 2026-07-28 stateless `tools/call` of [`stateless_call`] with `token`.
    pub(crate) async fn post_stateless_call(
        &self,
        token: &str,
        id: u64,
        name: &'static str,
    ) -> reqwest::Response {
        let (headers, body) = stateless_call(id, name);
        self.post(Some(token), &headers, &body).await
    }

    /// The decision records of one request (found by the `x-request-id` the gateway returned).
    /// Outcome records (written when the answer ends) are read with [`Env::outcomes_for_request`].
    pub(crate) async fn records_for(&self, resp: &reqwest::Response) -> Vec<AuditRecord> {
        let filter = AuditFilter {
            request_id: Some(request_id(resp)),
            ..AuditFilter::default()
        };
        query(&self.audit, &filter, RecordKind::Decision).await
    }

    /// The one decision record of a request, asserting there is exactly one.
    pub(crate) async fn the_record_for(&self, resp: &reqwest::Response) -> AuditRecord {
        let mut records = self.records_for(resp).await;
        assert_eq!(records.len(), 1, "exactly one decision record: {records:?}");
        records.swap_remove(0)
    }

    /// The records of one kind of one request id, as committed now (no waiting).
    pub(crate) async fn records_for_request(
        &self,
        request_id: &str,
        kind: RecordKind,
    ) -> Vec<AuditRecord> {
        let filter = AuditFilter {
            request_id: Some(request_id.to_owned()),
            ..AuditFilter::default()
        };
        query(&self.audit, &filter, kind).await
    }

    /// The outcome records of one request id, waiting (bounded) for the first to be committed:
    /// they are written when the answer ends, without holding up the response.
    pub(crate) async fn outcomes_for_request(&self, request_id: &str) -> Vec<AuditRecord> {
        let filter = AuditFilter {
            request_id: Some(request_id.to_owned()),
            ..AuditFilter::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let found = query(&self.audit, &filter, RecordKind::Outcome).await;
            if !found.is_empty() || std::time::Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Every decision record.
    pub(crate) async fn all_records(&self) -> Vec<AuditRecord> {
        let filter = AuditFilter {
            limit: Some(10_000),
            ..AuditFilter::default()
        };
        query(&self.audit, &filter, RecordKind::Decision).await
    }

    /// Asserts that each of `request_ids` has exactly one decision record.
    pub(crate) async fn assert_one_decision_each(&self, request_ids: &[String]) {
        let records = self.all_records().await;
        for id in request_ids {
            assert_eq!(
                records.iter().filter(|r| &r.request_id == id).count(),
                1,
                "request {id}: exactly one decision record"
            );
        }
    }

    /// Makes the SQLite audit store refuse every insert `when` selects (`""`: every insert), as a
    /// full disk or a lost database would; returns a pool on that database.
    pub(crate) async fn refuse_audit_inserts(&self, when: &str) -> sqlx::SqlitePool {
        let pool = sqlx::SqlitePool::connect(&self.audit_url)
            .await
            .expect("open audit db");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_records {when} BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )))
        .execute(&pool)
        .await
        .expect("install trigger");
        pool
    }

    /// Verifies the audit hash chain, asserts it is intact and returns the report.
    pub(crate) async fn assert_chain_intact(&self) -> authz_audit::VerifyReport {
        let report = authz_audit::verify(&self.audit, None, None)
            .await
            .expect("verify");
        assert!(report.is_intact(), "{report:?}");
        report
    }
}

/// The records of `kind` that `filter` selects.
pub(crate) async fn query(
    audit: &AuditStore,
    filter: &AuditFilter,
    kind: RecordKind,
) -> Vec<AuditRecord> {
    audit
        .query(filter)
        .await
        .expect("query audit")
        .into_iter()
        .map(|r| r.record)
        .filter(|r| r.kind == kind)
        .collect()
}

/// The `x-request-id` the gateway answered with.
pub(crate) fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id header")
        .to_owned()
}

/// The `WWW-Authenticate` challenge of a response; empty when there is none.
pub(crate) fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// A plain `tools/call` of tool `name` with arguments `{"id": 1}`.
pub(crate) fn tools_call(id: u64, name: &str) -> String {
    serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"id":1}}}).to_string()
}

/// A complete 2026-07-28 stateless `tools/call`: body with `_meta`, and the headers it needs.
pub(crate) fn stateless_call(
    id: u64,
    name: &'static str,
) -> (Vec<(&'static str, &'static str)>, String) {
    let body = serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"id":1},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
                 "io.modelcontextprotocol/clientCapabilities":{}}}});
    let headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ];
    (headers, body.to_string())
}
