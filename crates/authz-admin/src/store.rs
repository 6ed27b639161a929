//! Opening the policy, audit and revocation stores: one [`with_store`] for all three, and a
//! Postgres probe that reports an unreachable server at once.

use anyhow::{Context as _, bail};
use authz_audit::redact_url;

/// How long a Postgres server may take to accept the first connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens one Postgres connection and closes it again, so an unreachable server or a refused
/// login is reported at once with its real cause. The stores' pools retry until their acquire
/// timeout (30 s) and then report only "pool timed out", which tells an operator nothing.
async fn probe_postgres(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        return Ok(());
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            // The probe has done its job; a failure to say goodbye does not matter.
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    }
}

/// A store the CLI opens: the policy, audit or revocation store.
pub(crate) trait Store: Sized {
    /// The store's name in messages: "cannot open the {KIND} store …".
    const KIND: &'static str;
    /// Connects without probing.
    async fn connect_pool(url: &str) -> anyhow::Result<Self>;
    /// Closes the pool.
    async fn close_pool(&self);
}

impl Store for authz_rbac::PolicyStore {
    const KIND: &'static str = "policy";
    async fn connect_pool(url: &str) -> anyhow::Result<Self> {
        Ok(Self::connect(url).await?)
    }
    async fn close_pool(&self) {
        self.close().await;
    }
}

impl Store for authz_audit::AuditStore {
    const KIND: &'static str = "audit";
    async fn connect_pool(url: &str) -> anyhow::Result<Self> {
        Ok(Self::connect(url).await?)
    }
    async fn close_pool(&self) {
        self.close().await;
    }
}

impl Store for authz_token::RevocationStore {
    const KIND: &'static str = "revocation";
    async fn connect_pool(url: &str) -> anyhow::Result<Self> {
        Ok(Self::connect(url).await?)
    }
    async fn close_pool(&self) {
        self.close().await;
    }
}

/// Arguments that name a store: its URL (or a usage error), and what to set on it once open.
pub(crate) trait StoreSource {
    type Store: Store;
    /// The store URL, or a usage error naming the flag and the environment variable.
    fn store_url(&self) -> anyhow::Result<String>;
    /// Adjusts the opened store (the policy store records changes with the actor).
    fn prepare(&self, store: Self::Store) -> Self::Store {
        store
    }
}

impl StoreSource for crate::StoreArgs {
    type Store = authz_rbac::PolicyStore;
    fn store_url(&self) -> anyhow::Result<String> {
        self.url().map(str::to_owned)
    }
    fn prepare(&self, store: Self::Store) -> Self::Store {
        store.with_actor(&self.actor())
    }
}

impl StoreSource for crate::AuditStoreArgs {
    type Store = authz_audit::AuditStore;
    fn store_url(&self) -> anyhow::Result<String> {
        self.url().map(str::to_owned)
    }
}

impl StoreSource for crate::RevocationStoreArgs {
    type Store = authz_token::RevocationStore;
    fn store_url(&self) -> anyhow::Result<String> {
        self.url()
    }
}

/// Probes a Postgres server, then connects; errors say which store could not be opened, with
/// the URL's password redacted.
pub(crate) async fn open<S: Store>(url: &str) -> anyhow::Result<S> {
    let context = || format!("cannot open the {} store {}", S::KIND, redact_url(url));
    probe_postgres(url).await.with_context(context)?;
    S::connect_pool(url).await.with_context(context)
}

/// Opens the policy store at `url` (for commands that take a URL rather than [`StoreArgs`]).
///
/// [`StoreArgs`]: crate::StoreArgs
pub(crate) async fn connect_policy_store(url: &str) -> anyhow::Result<authz_rbac::PolicyStore> {
    open(url).await
}

/// Connects, runs `body` and closes the pool whatever `body` returned. `body` gets the URL
/// (redacted) for messages.
pub(crate) async fn with_store<A: StoreSource, T>(
    args: &A,
    body: impl AsyncFnOnce(&A::Store, &str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = args.store_url()?;
    let store = args.prepare(open(&url).await?);
    let shown = redact_url(&url);
    let result = body(&store, &shown).await;
    store.close_pool().await;
    result
}
