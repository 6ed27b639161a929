//! Binding of MCP session ids and task ids to the principal that created them.
//!
//! A session never carries authority (every message is authorized on its own), but a session
//! id presented by anyone other than its owner is refused as if it did not exist, so a leaked id
//! is useless to another principal. Tasks (`tasks/*`) are bound the same way.
//!
//! Each replica keeps the bindings it knows in memory. With a shared store (the first Postgres
//! among the policy and audit stores, see [`authz_rbac::BindingStore`]) a session binding is
//! written there before the `initialize` answer leaves, and an id this replica does not know is
//! looked up there, so any replica serves any session: no sticky routing. Ownership never
//! changes once bound (the first binding wins), so what a replica remembers stays true; only a
//! session ended through another replica may still look open here, and the upstream refuses
//! it. A task binding is written in the background (it is observed inside the answer's
//! stream), so a poll reaching another replica within milliseconds of the answer may get 404.
//! Without a shared store (SQLite), bindings are this replica's alone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_rbac::{BindingKind, BindingStore};
use authz_types::Principal;

/// How long a shared binding lasts (sessions and tasks outlive no working day's worth of use).
pub(crate) const BINDING_TTL: Duration = Duration::from_secs(24 * 3600);

/// Who owns a session: issuer, subject and tenant of the principal that initialized it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    issuer: String,
    subject: String,
    tenant: String,
}

impl Owner {
    pub(crate) fn of(p: &Principal) -> Self {
        Self {
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            tenant: p.tenant_or_default().to_owned(),
        }
    }

    /// The stored form, `issuer \n subject \n tenant` (none of them holds a newline: token
    /// claims with control characters are refused).
    fn key(&self) -> String {
        format!("{}\n{}\n{}", self.issuer, self.subject, self.tenant)
    }

    fn parse(key: &str) -> Option<Self> {
        let mut parts = key.splitn(3, '\n');
        Some(Self {
            issuer: parts.next()?.to_owned(),
            subject: parts.next()?.to_owned(),
            tenant: parts.next()?.to_owned(),
        })
    }
}

/// A principal with only a subject (issuer `i`, no tenant, no claims), for unit tests.
#[cfg(test)]
pub(crate) fn test_principal(subject: &str) -> Principal {
    Principal {
        subject: subject.into(),
        issuer: "i".into(),
        tenant: None,
        client_id: None,
        actors: vec![],
        scopes: vec![],
        roles: vec![],
        token_id: None,
        expires_at: 0,
        issued_at: None,
        claims: Default::default(),
    }
}

/// What a presented session id means for a principal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionCheck {
    Owned,
    /// Unknown to this gateway, or ended.
    Unknown,
    /// Bound to someone else.
    Foreign,
}

/// Bounded map of session id → owner. The oldest binding is forgotten first when full; a client
/// whose session was forgotten gets 404 and re-initializes, as the transport specifies.
#[derive(Debug)]
pub(crate) struct OwnerBindings {
    inner: Mutex<Inner>,
    capacity: usize,
    shared: Option<Shared>,
}

/// The store every replica shares, and what kind of id this map binds.
#[derive(Debug)]
struct Shared {
    store: BindingStore,
    kind: BindingKind,
    /// Store operations that failed (the binding then holds on this replica only).
    errors: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    owners: HashMap<(String, String), Owner>,
    order: VecDeque<(String, String)>,
}

impl OwnerBindings {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            shared: None,
        }
    }

    /// Shares the bindings through `store`, as ids of `kind`.
    pub(crate) fn shared(mut self, store: BindingStore, kind: BindingKind) -> Self {
        self.shared = Some(Shared {
            store,
            kind,
            errors: AtomicU64::new(0),
        });
        self
    }

    /// How many shared-store operations failed so far.
    pub(crate) fn store_errors(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.errors.load(Ordering::Relaxed))
    }

    fn store_failed(&self, what: &str, error: &authz_rbac::Error) {
        if let Some(s) = &self.shared {
            s.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(kind = s.kind.as_str(), %error, "the shared binding store failed to {what}; this replica alone knows the binding");
        }
    }

    /// Binds `id` to `owner` here and, with a shared store, there (awaited: the next request
    /// may reach another replica). Should the store already bind the id to someone else, that
    /// binding is the one kept.
    pub(crate) async fn bind(&self, upstream: &str, id: &str, owner: Owner) {
        self.bind_local(upstream, id, owner.clone());
        let Some(s) = &self.shared else {
            return;
        };
        let now = authz_types::now_unix_ms();
        let ttl = i64::try_from(BINDING_TTL.as_millis()).unwrap_or(i64::MAX);
        match s
            .store
            .bind(s.kind, upstream, id, &owner.key(), now + ttl, now)
            .await
        {
            Ok(Some(holder)) if holder != owner.key() => {
                tracing::error!(
                    kind = s.kind.as_str(),
                    upstream,
                    "an upstream handed out an id already bound to another principal; the first binding stands"
                );
                self.forget(upstream, id);
                if let Some(first) = Owner::parse(&holder) {
                    self.bind_local(upstream, id, first);
                }
            }
            Ok(_) => {}
            Err(e) => self.store_failed("bind", &e),
        }
    }

    /// [`OwnerBindings::bind`] from where nothing can wait (inside a response stream): bound
    /// here at once, in the store shortly after.
    pub(crate) fn bind_soon(self: &Arc<Self>, upstream: &str, id: &str, owner: Owner) {
        if self.shared.is_none() {
            self.bind_local(upstream, id, owner);
            return;
        }
        self.bind_local(upstream, id, owner.clone());
        let (this, upstream, id) = (Arc::clone(self), upstream.to_owned(), id.to_owned());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { this.bind(&upstream, &id, owner).await });
        }
    }

    /// Whether `principal` owns `id`: known here, else looked up in the shared store (a store
    /// that cannot answer makes the id unknown: refused, never assumed).
    pub(crate) async fn check(
        &self,
        upstream: &str,
        id: &str,
        principal: &Principal,
    ) -> SessionCheck {
        let here = self.check_local(upstream, id, principal);
        let Some(s) = &self.shared else {
            return here;
        };
        if here != SessionCheck::Unknown {
            return here;
        }
        match s
            .store
            .owner(s.kind, upstream, id, authz_types::now_unix_ms())
            .await
        {
            Ok(Some(holder)) => match Owner::parse(&holder) {
                Some(owner) => {
                    let mine = owner == Owner::of(principal);
                    self.bind_local(upstream, id, owner);
                    if mine {
                        SessionCheck::Owned
                    } else {
                        SessionCheck::Foreign
                    }
                }
                None => SessionCheck::Foreign,
            },
            Ok(None) => SessionCheck::Unknown,
            Err(e) => {
                self.store_failed("look up", &e);
                SessionCheck::Unknown
            }
        }
    }

    /// Ends the binding here and in the shared store.
    pub(crate) async fn end(&self, upstream: &str, id: &str) {
        self.forget(upstream, id);
        if let Some(s) = &self.shared
            && let Err(e) = s.store.end(s.kind, upstream, id).await
        {
            self.store_failed("end", &e);
        }
    }

    /// Deletes expired bindings from the shared store, every `every`, for as long as it runs.
    pub(crate) async fn prune_forever(self: Arc<Self>, every: Duration) {
        let Some(s) = &self.shared else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = s.store.prune(authz_types::now_unix_ms()).await {
                self.store_failed("prune", &e);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (each operation is a
        // single insert/remove), so recovering from poisoning is safe.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bind_local(&self, upstream: &str, session_id: &str, owner: Owner) {
        let key = (upstream.to_owned(), session_id.to_owned());
        let mut inner = self.lock();
        if inner.owners.insert(key.clone(), owner).is_none() {
            inner.order.push_back(key);
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.owners.remove(&old);
                }
            }
        }
    }

    fn check_local(&self, upstream: &str, session_id: &str, principal: &Principal) -> SessionCheck {
        let inner = self.lock();
        match inner
            .owners
            .get(&(upstream.to_owned(), session_id.to_owned()))
        {
            None => SessionCheck::Unknown,
            Some(o) if *o == Owner::of(principal) => SessionCheck::Owned,
            Some(_) => SessionCheck::Foreign,
        }
    }

    /// Whether `id` is bound to exactly this owner, as far as this replica knows (for filtering
    /// inside a response, where nothing can wait; a request checks with [`OwnerBindings::check`]).
    pub(crate) fn owner_is(&self, upstream: &str, id: &str, owner: &Owner) -> bool {
        self.lock()
            .owners
            .get(&(upstream.to_owned(), id.to_owned()))
            == Some(owner)
    }

    fn forget(&self, upstream: &str, session_id: &str) {
        let key = (upstream.to_owned(), session_id.to_owned());
        let mut inner = self.lock();
        if inner.owners.remove(&key).is_some() {
            inner.order.retain(|k| *k != key);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::test_principal as p;
    use super::*;

    #[test]
    fn sessions_belong_to_their_owner_only() {
        let s = OwnerBindings::new(2);
        s.bind_local("u", "s1", Owner::of(&p("alice")));
        assert_eq!(s.check_local("u", "s1", &p("alice")), SessionCheck::Owned);
        assert_eq!(
            s.check_local("u", "s1", &p("mallory")),
            SessionCheck::Foreign
        );
        assert_eq!(
            s.check_local("other", "s1", &p("alice")),
            SessionCheck::Unknown
        );
        s.forget("u", "s1");
        assert_eq!(s.check_local("u", "s1", &p("alice")), SessionCheck::Unknown);
    }

    #[test]
    fn owners_round_trip_through_their_stored_form() {
        let o = Owner::of(&p("alice"));
        assert_eq!(Owner::parse(&o.key()), Some(o));
        assert_eq!(Owner::parse("no newlines"), None);
    }

    #[tokio::test]
    async fn a_shared_store_makes_every_replica_know_every_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
        let store = BindingStore::connect(&url).await.expect("store");
        let a = OwnerBindings::new(10).shared(store.clone(), BindingKind::Session);
        let b = OwnerBindings::new(10).shared(store, BindingKind::Session);
        a.bind("u", "s1", Owner::of(&p("alice"))).await;
        assert_eq!(b.check("u", "s1", &p("alice")).await, SessionCheck::Owned);
        assert_eq!(
            b.check("u", "s1", &p("mallory")).await,
            SessionCheck::Foreign
        );
        // A second binding of the id by another principal does not take it over.
        b.bind("u", "s1", Owner::of(&p("mallory"))).await;
        assert_eq!(b.check("u", "s1", &p("alice")).await, SessionCheck::Owned);
        b.end("u", "s1").await;
        let c = OwnerBindings::new(10).shared(
            BindingStore::connect(&url).await.expect("store"),
            BindingKind::Session,
        );
        assert_eq!(c.check("u", "s1", &p("alice")).await, SessionCheck::Unknown);
        assert_eq!(a.store_errors() + b.store_errors() + c.store_errors(), 0);
    }

    #[test]
    fn capacity_forgets_the_oldest() {
        let s = OwnerBindings::new(2);
        for id in ["a", "b", "c"] {
            s.bind_local("u", id, Owner::of(&p("alice")));
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.check_local("u", "a", &p("alice")), SessionCheck::Unknown);
        assert_eq!(s.check_local("u", "c", &p("alice")), SessionCheck::Owned);
    }
}
