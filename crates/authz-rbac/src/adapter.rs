//! The Casbin adapter over an in-memory [`PolicySet`]. Both policy sources (files and the SQL
//! [`PolicyStore`](crate::PolicyStore)) are loaded into a `PolicySet` first, so Casbin never
//! reads the store itself.

use async_trait::async_trait;
use casbin::{Adapter, Filter, Model};

use crate::{Error, PolicySet};

fn add_set(set: &PolicySet, m: &mut dyn Model) {
    for rule in &set.rules {
        m.add_policy("p", "p", rule.casbin_key());
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
