//! Live policy changes: a background task that reloads the policy when its source changes.
//!
//! For a SQL store the task compares the store's revision with the serving one every poll
//! interval, and on Postgres it also listens on [`crate::POLICY_NOTIFY_CHANNEL`] so a change is
//! picked up as soon as it commits (the periodic check stays as the fallback for a lost
//! connection or a missed notification). For policy files it polls the files' modification time
//! and size, and reloads when their content hash differs from the serving policy's.
//!
//! A policy that fails to load or lint never replaces the serving one: the failure is logged and
//! recorded in [`crate::Rbac::status`], and the same content is not retried until it changes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use crate::rbac::{Marker, Source, error_chain, fingerprint, read_files};
use crate::{Error, POLICY_NOTIFY_CHANNEL, Rbac, WatchStatus};

/// How [`Rbac::spawn_watcher`] notices changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// How often the source is checked even without a notification (at least 10 ms).
    pub poll_interval: Duration,
    /// On a Postgres store, listen for change notifications.
    pub pg_listen: bool,
    /// For policy files, check the files every poll interval.
    pub watch_files: bool,
}

impl Default for WatchConfig {
    /// Checks every 2 seconds, listens on Postgres, watches files.
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            pg_listen: true,
            watch_files: true,
        }
    }
}

/// The running watcher. Dropping it stops the watcher.
#[must_use = "the watcher stops when its handle is dropped"]
#[derive(Debug)]
pub struct WatchHandle {
    rbac: Rbac,
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// The policy's health; the same as [`Rbac::status`].
    pub fn status(&self) -> WatchStatus {
        self.rbac.status()
    }

    /// Stops the watcher (the same as dropping the handle).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
        let mut status = self.rbac.lock_status();
        status.watching = false;
        status.listening = false;
    }
}

impl Rbac {
    /// Starts a background task that reloads the policy when its source changes (see the
    /// module documentation of [`WatchConfig`]'s fields). Must be called within a Tokio runtime
    /// ([`Error::NoRuntime`] otherwise). Keep the handle: dropping it stops the watcher.
    pub fn spawn_watcher(&self, config: WatchConfig) -> Result<WatchHandle, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            what: "the policy watcher",
        })?;
        self.lock_status().watching = true;
        let rbac = self.clone();
        let task = runtime.spawn(watch(rbac, config));
        Ok(WatchHandle {
            rbac: self.clone(),
            task,
        })
    }
}

/// The size and modification time of one watched file (`None` if it cannot be read).
type FileStat = Option<(SystemTime, u64)>;

async fn watch(rbac: Rbac, config: WatchConfig) {
    let pool = match &rbac.inner.source {
        Source::Store { store, .. } if config.pg_listen => store.pg_pool().cloned(),
        _ => None,
    };
    tracing::info!(
        poll_interval_ms = u64::try_from(config.poll_interval.as_millis()).unwrap_or(u64::MAX),
        pg_listen = pool.is_some(),
        "policy watcher started"
    );
    let changed = Arc::new(Notify::new());
    // The listener runs in this task, so aborting the watcher stops it too.
    let listener = async {
        match pool {
            Some(pool) => {
                let status = rbac.clone();
                authz_db::follow_channel(
                    pool,
                    POLICY_NOTIFY_CHANNEL,
                    Arc::clone(&changed),
                    config.poll_interval.max(Duration::from_secs(1)),
                    move |listening| status.lock_status().listening = listening,
                )
                .await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = listener => {}
        () = poll(&rbac, &config, &changed) => {}
    }
}

/// Checks the source every poll interval, and at once when the listener announces a change.
async fn poll(rbac: &Rbac, config: &WatchConfig, changed: &Notify) {
    let mut ticker = tokio::time::interval(config.poll_interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen_files: Option<Vec<FileStat>> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = changed.notified() => tracing::debug!("policy change announced"),
        }
        match &rbac.inner.source {
            Source::Store { store, .. } => {
                let checked = store.revision().await;
                let now = authz_types::now_unix_ms();
                let revision = match checked {
                    Ok(revision) => {
                        let mut status = rbac.lock_status();
                        status.check_error = None;
                        status.last_check_ms = Some(now);
                        revision
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "cannot check the policy store for changes"
                        );
                        let mut status = rbac.lock_status();
                        status.check_error = Some(error_chain(&error));
                        status.last_check_ms = Some(now);
                        continue;
                    }
                };
                reload_if_new(rbac, Marker::Revision(revision)).await;
            }
            Source::Files { model, policies } if config.watch_files => {
                check_files(rbac, model, policies, &mut seen_files).await;
            }
            Source::Files { .. } => {}
        }
    }
}

/// Reloads unless `marker` names the serving policy or the one refused last.
async fn reload_if_new(rbac: &Rbac, marker: Marker) {
    let failed = rbac.lock_status().failed;
    if marker != rbac.marker() && Some(marker) != failed {
        // A failure is logged and recorded in the status by `reload` itself.
        let _ = rbac.reload().await;
    }
}

async fn check_files(
    rbac: &Rbac,
    model: &PathBuf,
    policies: &[PathBuf],
    seen: &mut Option<Vec<FileStat>>,
) {
    let mut stats = Vec::with_capacity(policies.len() + 1);
    for path in std::iter::once(model).chain(policies) {
        let stat = tokio::fs::metadata(path)
            .await
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        stats.push(stat);
    }
    let now = authz_types::now_unix_ms();
    if seen.as_ref() == Some(&stats) {
        rbac.lock_status().last_check_ms = Some(now);
        return;
    }
    match read_files(model, policies).await {
        Ok(texts) => {
            {
                let mut status = rbac.lock_status();
                status.check_error = None;
                status.last_check_ms = Some(now);
            }
            *seen = Some(stats);
            let marker =
                Marker::Files(fingerprint(texts.iter().map(|(_, bytes)| bytes.as_slice())));
            reload_if_new(rbac, marker).await;
        }
        Err(error) => {
            // Not remembered as seen, so the files are read again at the next check (a file
            // being replaced can be missing for a moment).
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot read the policy files to check them for changes"
            );
            let mut status = rbac.lock_status();
            status.check_error = Some(error_chain(&error));
            status.last_check_ms = Some(now);
        }
    }
}
