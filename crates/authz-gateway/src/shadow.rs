//! Shadow mode: a candidate policy evaluated beside the live one on real traffic, never
//! enforced. `authzctl policy shadow start` puts the candidate into the shared
//! [`ShadowStore`]; every replica reads it again every second and, while it runs, decides each
//! request the policy decides (allowed by a rule, refused by one or by none, held for an
//! approver) a second time under the candidate. When the two differ, the request's decision
//! record carries the candidate's answer in its `shadow` field (`<allow|deny|held> <reason>[:
//! <rule>]`) and the difference is counted; the live decision is what happens. A second decision
//! costs about what the first does (an index lookup, well under a microsecond to a few).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authz_rbac::{Rbac, ShadowStore};
use authz_types::{Decision, Operation, Principal};

/// How often the candidate is read again.
const POLL: Duration = Duration::from_secs(1);

/// The candidate running on this replica, if any.
pub(crate) struct Shadow {
    running: RwLock<Option<Arc<Running>>>,
    /// Requests decided a second time under a candidate.
    pub(crate) evaluated: AtomicU64,
    /// Of those, the ones the candidate decided otherwise.
    pub(crate) differences: AtomicU64,
    /// Candidates that did not load (the previous one, if any, stopped).
    pub(crate) load_failures: AtomicU64,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("candidate", &self.running_id())
            .finish_non_exhaustive()
    }
}

struct Running {
    id: i64,
    rbac: Rbac,
}

impl Shadow {
    /// Starts following `store`, building candidates with the live policy's `model`.
    pub(crate) fn start(store: ShadowStore, model: PathBuf) -> Arc<Shadow> {
        let shadow = Arc::new(Shadow {
            running: RwLock::new(None),
            evaluated: AtomicU64::new(0),
            differences: AtomicU64::new(0),
            load_failures: AtomicU64::new(0),
        });
        tokio::spawn(follow(Arc::downgrade(&shadow), store, model));
        shadow
    }

    /// The id of the candidate running here, if any.
    pub(crate) fn running_id(&self) -> Option<i64> {
        self.running
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|r| r.id)
    }

    /// The candidate's answer for a request the live policy decided `live`, when it differs.
    pub(crate) fn differs(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
        live: &Decision,
        args: authz_rbac::ConditionArgs<'_>,
    ) -> Option<String> {
        let old = live.reason.policy_outcome()?;
        let running = self
            .running
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        self.evaluated.fetch_add(1, Ordering::Relaxed);
        let candidate = match running.rbac.decide_with(principal, upstream, op, args) {
            Ok(d) => d,
            Err(e) => {
                self.differences.fetch_add(1, Ordering::Relaxed);
                return Some(format!("error {e}"));
            }
        };
        let new = candidate.reason.policy_outcome().unwrap_or("deny");
        if new == old {
            return None;
        }
        self.differences.fetch_add(1, Ordering::Relaxed);
        Some(match candidate.matched_rule {
            Some(rule) => format!("{new} {}: {rule}", candidate.reason),
            None => format!("{new} {}", candidate.reason),
        })
    }
}

async fn follow(shadow: std::sync::Weak<Shadow>, store: ShadowStore, model: PathBuf) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shadow) = shadow.upgrade() else {
            return;
        };
        let current = match store.current().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the shadow candidate failed; the one in force stays");
                continue;
            }
        };
        match current {
            None => {
                if shadow.running_id().is_some() {
                    tracing::info!("shadow mode stopped");
                }
                *shadow
                    .running
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            Some(c) if Some(c.id) == shadow.running_id() => {}
            Some(c) => match load(&model, &c.candidate).await {
                Ok(rbac) => {
                    tracing::info!(id = c.id, label = %c.label, started_by = %c.started_by, "shadow mode: evaluating a candidate policy beside the live one");
                    *shadow
                        .running
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Arc::new(Running { id: c.id, rbac }));
                }
                Err(e) => {
                    shadow.load_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(id = c.id, error = %e, "the shadow candidate does not load; shadow mode is off");
                    *shadow
                        .running
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    // Not retried until another candidate is started.
                    while matches!(store.current().await, Ok(Some(ref again)) if again.id == c.id) {
                        tick.tick().await;
                    }
                }
            },
        }
    }
}

/// Builds the candidate from its CSV text (through a private temporary file: the policy loader
/// reads files).
async fn load(model: &std::path::Path, csv: &str) -> anyhow::Result<Rbac> {
    let path = std::env::temp_dir().join(format!(
        "authz-shadow-{}.csv",
        uuid::Uuid::new_v4().simple()
    ));
    // A new file only: never one someone placed there, nor a link to one.
    {
        use tokio::io::AsyncWriteExt as _;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        file.write_all(csv.as_bytes()).await?;
        file.flush().await?;
    }
    let built = Rbac::from_files(model, std::slice::from_ref(&path)).await;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(built?)
}
