//! Casbin adapters: one over an in-memory [`PolicySet`] (policy files) and one over the SQL
//! [`PolicyStore`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use casbin::{Adapter, Filter, Model};

use crate::{Error, PolicyRule, PolicySet, PolicyStore, RoleAssignment};

fn add_set(set: &PolicySet, m: &mut dyn Model) {
    for rule in &set.rules {
        m.add_policy("p", "p", rule.to_casbin());
    }
    for assignment in &set.assignments {
        m.add_policy("g", "g", assignment.to_casbin());
    }
}

fn to_casbin(error: Error) -> casbin::Error {
    casbin::Error::AdapterError(casbin::error::AdapterError(Box::new(error)))
}

/// Turns a Casbin error back into ours when it only wraps one of ours (adapters report through
/// Casbin's error type).
pub(crate) fn unwrap_adapter_error(error: casbin::Error) -> Error {
    match error {
        casbin::Error::AdapterError(casbin::error::AdapterError(inner)) => {
            match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Casbin {
                    source: Box::new(casbin::Error::AdapterError(casbin::error::AdapterError(
                        other,
                    ))),
                },
            }
        }
        other => Error::Casbin {
            source: Box::new(other),
        },
    }
}

fn unsupported(what: &str) -> casbin::Error {
    to_casbin(Error::Unsupported {
        operation: what.to_owned(),
    })
}

/// A read-only adapter over a policy already parsed and validated (policy files).
#[derive(Debug)]
pub(crate) struct SetAdapter {
    set: PolicySet,
}

impl SetAdapter {
    pub(crate) fn new(set: PolicySet) -> Self {
        Self { set }
    }
}

#[async_trait]
impl Adapter for SetAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        add_set(&self.set, m);
        Ok(())
    }

    async fn load_filtered_policy<'a>(
        &mut self,
        _m: &mut dyn Model,
        _f: Filter<'a>,
    ) -> casbin::Result<()> {
        Err(unsupported("load_filtered_policy"))
    }

    async fn save_policy(&mut self, _m: &mut dyn Model) -> casbin::Result<()> {
        Err(unsupported("save_policy on policy files"))
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        Err(unsupported("clear_policy on policy files"))
    }

    fn is_filtered(&self) -> bool {
        false
    }

    async fn add_policy(&mut self, _: &str, _: &str, _: Vec<String>) -> casbin::Result<bool> {
        Err(unsupported("add_policy on policy files"))
    }

    async fn add_policies(
        &mut self,
        _: &str,
        _: &str,
        _: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        Err(unsupported("add_policies on policy files"))
    }

    async fn remove_policy(&mut self, _: &str, _: &str, _: Vec<String>) -> casbin::Result<bool> {
        Err(unsupported("remove_policy on policy files"))
    }

    async fn remove_policies(
        &mut self,
        _: &str,
        _: &str,
        _: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        Err(unsupported("remove_policies on policy files"))
    }

    async fn remove_filtered_policy(
        &mut self,
        _: &str,
        _: &str,
        _: usize,
        _: Vec<String>,
    ) -> casbin::Result<bool> {
        Err(unsupported("remove_filtered_policy on policy files"))
    }
}

/// A Casbin [`Adapter`] over the SQL [`PolicyStore`].
///
/// `load_policy` reads every rule and the revision in one transaction and validates each row (a
/// row written around the store, with an invalid glob say, fails the load instead of panicking
/// later). `add_policy`/`remove_policy` (and their plural forms) write through the store, so
/// Casbin's management API works with auto-save; filtered loading, `save_policy` and
/// `clear_policy` are not supported.
#[derive(Debug, Clone)]
pub struct StoreAdapter {
    store: PolicyStore,
    loaded_revision: Arc<AtomicI64>,
}

impl StoreAdapter {
    pub fn new(store: PolicyStore) -> Self {
        Self {
            store,
            loaded_revision: Arc::new(AtomicI64::new(-1)),
        }
    }

    /// The store revision the last successful `load_policy` read, if any. Clones share it.
    pub fn loaded_revision(&self) -> Option<i64> {
        let revision = self.loaded_revision.load(Ordering::Acquire);
        (revision >= 0).then_some(revision)
    }

    async fn add(&self, ptype: &str, rule: Vec<String>) -> Result<bool, Error> {
        let outcome = match ptype {
            "p" => {
                let rule = PolicyRule::from_casbin(&rule)?;
                self.store.grant_rule(&rule).await
            }
            "g" => {
                let assignment = RoleAssignment::from_casbin(&rule)?;
                self.store.assign_rule(&assignment).await
            }
            other => {
                return Err(Error::Unsupported {
                    operation: format!("policy type {other}"),
                });
            }
        };
        match outcome {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remove(&self, ptype: &str, rule: Vec<String>) -> Result<bool, Error> {
        let outcome = match ptype {
            "p" => {
                let rule = PolicyRule::from_casbin(&rule)?;
                self.store.revoke_rule(&rule).await
            }
            "g" => {
                let assignment = RoleAssignment::from_casbin(&rule)?;
                self.store.unassign_rule(&assignment).await
            }
            other => {
                return Err(Error::Unsupported {
                    operation: format!("policy type {other}"),
                });
            }
        };
        match outcome {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Adapter for StoreAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let (set, revision) = self.store.snapshot().await.map_err(to_casbin)?;
        add_set(&set, m);
        self.loaded_revision.store(revision, Ordering::Release);
        Ok(())
    }

    async fn load_filtered_policy<'a>(
        &mut self,
        _m: &mut dyn Model,
        _f: Filter<'a>,
    ) -> casbin::Result<()> {
        Err(unsupported("load_filtered_policy"))
    }

    async fn save_policy(&mut self, _m: &mut dyn Model) -> casbin::Result<()> {
        Err(unsupported(
            "save_policy (write through PolicyStore instead)",
        ))
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        Err(unsupported(
            "clear_policy (write through PolicyStore instead)",
        ))
    }

    fn is_filtered(&self) -> bool {
        false
    }

    async fn add_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        self.add(ptype, rule).await.map_err(to_casbin)
    }

    async fn add_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let mut any = false;
        for rule in rules {
            any |= self.add(ptype, rule).await.map_err(to_casbin)?;
        }
        Ok(any)
    }

    async fn remove_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        self.remove(ptype, rule).await.map_err(to_casbin)
    }

    async fn remove_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let mut any = false;
        for rule in rules {
            any |= self.remove(ptype, rule).await.map_err(to_casbin)?;
        }
        Ok(any)
    }

    async fn remove_filtered_policy(
        &mut self,
        _sec: &str,
        _ptype: &str,
        _field_index: usize,
        _field_values: Vec<String>,
    ) -> casbin::Result<bool> {
        Err(unsupported("remove_filtered_policy"))
    }
}
