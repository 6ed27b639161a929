//! Binding of MCP session ids and task ids to the principal that created them.
//!
//! A session never carries authority (every message is authorized on its own), but a session
//! id presented by anyone other than its owner is refused as if it did not exist, so a leaked id
//! is useless to another principal. Tasks (`tasks/*`) are bound the same way.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use authz_types::Principal;

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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (each operation is a
        // single insert/remove), so recovering from poisoning is safe.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn bind(&self, upstream: &str, session_id: &str, owner: Owner) {
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

    pub(crate) fn check(
        &self,
        upstream: &str,
        session_id: &str,
        principal: &Principal,
    ) -> SessionCheck {
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

    /// Whether `id` is bound to exactly this owner.
    pub(crate) fn owner_is(&self, upstream: &str, id: &str, owner: &Owner) -> bool {
        self.lock()
            .owners
            .get(&(upstream.to_owned(), id.to_owned()))
            == Some(owner)
    }

    pub(crate) fn end(&self, upstream: &str, session_id: &str) {
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
        s.bind("u", "s1", Owner::of(&p("alice")));
        assert_eq!(s.check("u", "s1", &p("alice")), SessionCheck::Owned);
        assert_eq!(s.check("u", "s1", &p("mallory")), SessionCheck::Foreign);
        assert_eq!(s.check("other", "s1", &p("alice")), SessionCheck::Unknown);
        s.end("u", "s1");
        assert_eq!(s.check("u", "s1", &p("alice")), SessionCheck::Unknown);
    }

    #[test]
    fn capacity_forgets_the_oldest() {
        let s = OwnerBindings::new(2);
        for id in ["a", "b", "c"] {
            s.bind("u", id, Owner::of(&p("alice")));
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.check("u", "a", &p("alice")), SessionCheck::Unknown);
        assert_eq!(s.check("u", "c", &p("alice")), SessionCheck::Owned);
    }
}
