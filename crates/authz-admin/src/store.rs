//! Opening the policy, audit and revocation stores: one [`with_store`] for all three. Each store
//! connects through `authz_db::connect`, whose first connection reports an unreachable server or
//! a refused login at once, with its real cause.

use anyhow::Context as _;
use authz_audit::redact_url;

/// A store the CLI opens: the policy, audit or revocation store.
pub(crate) trait Store: Sized {
    /// The store's name in messages: "cannot open the {KIND} store …".
    const KIND: &'static str;
    /// Connects.
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

/// Connects; errors say which store could not be opened, with the URL's password redacted.
pub(crate) async fn open<S: Store>(url: &str) -> anyhow::Result<S> {
    let context = || format!("cannot open the {} store {}", S::KIND, redact_url(url));
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
