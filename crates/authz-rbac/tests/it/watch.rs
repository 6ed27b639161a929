//! Live changes: a second gateway's policy follows changes made through another within a
//! second (Postgres notifications), polling picks changes up on SQLite and without
//! notifications, policy files are watched, and a broken policy never replaces the working one.

use std::path::Path;
use std::time::Duration;

use authz_rbac::{Error, LintConfig, PolicyStore, Rbac, WatchConfig};
use authz_test_support::{TestDatabase, eventually};
use authz_types::{ReasonCode, RuleEffect};

use crate::common::{model_path, principal, sqlite_store, tool, write_around_the_store};

fn reason(rbac: &Rbac, name: &str) -> ReasonCode {
    rbac.decide(&principal("u", &[], None), "t", &tool(name))
        .expect("decide")
        .reason
}

async fn seed(store: &PolicyStore) {
    store.assign("u", "r", "default").await.expect("assign");
    store
        .grant("r", "default", "call", "tool:t/a", RuleEffect::Allow)
        .await
        .expect("grant");
}

fn lint_knowing_upstream_t() -> LintConfig {
    LintConfig {
        upstreams: Some(vec!["t".to_owned()]),
        ..LintConfig::default()
    }
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn a_second_gateway_follows_a_revoke_within_a_second_and_keeps_the_last_good_policy() {
    let db = TestDatabase::postgres().await;
    // Two gateways and an admin, each with its own pool, on one database.
    let admin = PolicyStore::connect(db.url())
        .await
        .expect("connect")
        .with_actor("test-admin");
    seed(&admin).await;
    let gateway_store = PolicyStore::connect(db.url()).await.expect("connect");
    let one = Rbac::from_store(&model_path(), admin.clone())
        .await
        .expect("load");
    let two = Rbac::from_store_with_lint(
        &model_path(),
        gateway_store.clone(),
        lint_knowing_upstream_t(),
    )
    .await
    .expect("load");
    // A poll interval far beyond the test: only the notification can make it in time.
    let watcher = two
        .spawn_watcher(WatchConfig {
            poll_interval: Duration::from_secs(3600),
            pg_listen: true,
            watch_files: false,
        })
        .expect("watch");
    eventually("the watcher to listen", Duration::from_secs(10), || {
        watcher.status().listening
    })
    .await;
    assert_eq!(reason(&two, "a"), ReasonCode::PolicyAllow);

    let revoked = admin
        .revoke("r", "default", "call", "tool:t/a", RuleEffect::Allow)
        .await
        .expect("revoke");
    eventually(
        "the second gateway to stop allowing within a second",
        Duration::from_secs(1),
        || reason(&two, "a") == ReasonCode::NoMatchingRule,
    )
    .await;
    assert_eq!(two.revision(), revoked);
    assert_eq!(watcher.status().revision, revoked);
    // The first one only changes when asked to.
    assert_eq!(reason(&one, "a"), ReasonCode::PolicyAllow);

    // A rule for an upstream the gateway does not know fails lint: the old policy keeps serving.
    admin
        .grant("r", "default", "call", "tool:t/b", RuleEffect::Allow)
        .await
        .expect("grant");
    eventually(
        "the second gateway to allow the new grant",
        Duration::from_secs(1),
        || reason(&two, "b") == ReasonCode::PolicyAllow,
    )
    .await;
    let good = two.revision();
    let broken = admin
        .grant(
            "r",
            "default",
            "call",
            "tool:elsewhere/x",
            RuleEffect::Allow,
        )
        .await
        .expect("grant");
    eventually(
        "the watcher to report the lint error",
        Duration::from_secs(1),
        || watcher.status().last_error.is_some(),
    )
    .await;
    let status = watcher.status();
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("lint error"), "{error}");
    assert!(error.contains("elsewhere"), "{error}");
    assert!(error.contains("casbin_rule row"), "{error}");
    assert_eq!(status.revision, good);
    assert_eq!(status.failed_reloads, 1);
    assert_eq!(two.revision(), good);
    assert_eq!(reason(&two, "b"), ReasonCode::PolicyAllow);
    assert!(broken > good);

    // A row written around the store, which no longer parses, is refused the same way.
    write_around_the_store(&db).await;
    db.execute("SELECT pg_notify('authz_policy_changed', 'raw')")
        .await;
    eventually(
        "the watcher to refuse the row written around the store",
        Duration::from_secs(1),
        || watcher.status().failed_reloads == 2,
    )
    .await;
    let error = watcher.status().last_error.unwrap_or_default();
    assert!(error.contains("invalid policy line"), "{error}");
    assert_eq!(two.revision(), good);
    assert_eq!(reason(&two, "b"), ReasonCode::PolicyAllow);

    // Repaired: the next change loads, and the error is gone.
    db.execute("DELETE FROM casbin_rule WHERE v2 = 'tool:t/['")
        .await;
    let fixed = admin
        .revoke(
            "r",
            "default",
            "call",
            "tool:elsewhere/x",
            RuleEffect::Allow,
        )
        .await
        .expect("revoke");
    eventually(
        "the second gateway to load the repaired policy",
        Duration::from_secs(1),
        || two.revision() == fixed,
    )
    .await;
    let status = watcher.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.failed_reloads, 2);
    assert!(status.reloads >= 3, "{status:?}");
    assert!(status.last_check_ms.is_some());

    drop(watcher);
    assert!(!two.status().watching);
    admin.close().await;
    gateway_store.close().await;
}

/// Grants on `store` and waits for a polling watcher (no notifications) to pick it up.
async fn polling_follows(store: PolicyStore) {
    seed(&store).await;
    let rbac = Rbac::from_store(&model_path(), store.clone())
        .await
        .expect("load");
    let watcher = rbac
        .spawn_watcher(WatchConfig {
            poll_interval: Duration::from_millis(50),
            pg_listen: false,
            watch_files: false,
        })
        .expect("watch");
    assert_eq!(reason(&rbac, "b"), ReasonCode::NoMatchingRule);
    let revision = store
        .grant("r", "default", "call", "tool:t/b", RuleEffect::Allow)
        .await
        .expect("grant");
    eventually(
        "the polling watcher to load the grant",
        Duration::from_secs(5),
        || rbac.revision() == revision,
    )
    .await;
    assert_eq!(reason(&rbac, "b"), ReasonCode::PolicyAllow);
    let status = watcher.status();
    assert!(!status.listening);
    assert!(status.watching);
    assert_eq!(status.last_error, None);
    drop(watcher);
}

#[tokio::test]
async fn polling_picks_up_changes_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    polling_follows(store.clone()).await;
    store.close().await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn polling_picks_up_changes_on_postgres_without_notifications() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url()).await.expect("connect");
    polling_follows(store.clone()).await;
    store.close().await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write policy");
}

#[tokio::test]
async fn policy_files_are_watched_and_broken_files_keep_the_old_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    write(
        &policy,
        "p, r, default, tool:t/a, call, allow\ng, user:u, r, default\n",
    );
    let rbac = Rbac::from_files_with_lint(
        &model_path(),
        std::slice::from_ref(&policy),
        lint_knowing_upstream_t(),
    )
    .await
    .expect("load");
    let watcher = rbac
        .spawn_watcher(WatchConfig {
            poll_interval: Duration::from_millis(20),
            pg_listen: true,
            watch_files: true,
        })
        .expect("watch");
    eventually("the first file check", Duration::from_secs(5), || {
        watcher.status().last_check_ms.is_some()
    })
    .await;

    // The same content written again is no change: the revision stays.
    write(
        &policy,
        "p, r, default, tool:t/a, call, allow\ng, user:u, r, default\n",
    );
    let written = authz_types::now_unix_ms();
    eventually(
        "a file check after the rewrite",
        Duration::from_secs(5),
        || {
            watcher
                .status()
                .last_check_ms
                .is_some_and(|at| at > written + 20)
        },
    )
    .await;
    assert_eq!(rbac.revision(), 1);

    write(
        &policy,
        "p, r, default, tool:t/b, call, allow\ng, user:u, r, default\n",
    );
    eventually("revision 2 from the file", Duration::from_secs(5), || {
        rbac.revision() == 2
    })
    .await;
    assert_eq!(reason(&rbac, "a"), ReasonCode::NoMatchingRule);
    assert_eq!(reason(&rbac, "b"), ReasonCode::PolicyAllow);

    // A syntax error, then a lint error: reported with the file and line, never loaded.
    for (broken, needle) in [
        (
            "p, r, default, tool:t/[, call, allow\n",
            "invalid policy line 1",
        ),
        (
            "p, r, default, tool:t/b, call, allow\n\np, r, default, tool:nowhere/x, call, allow\n",
            "policy.csv:3",
        ),
    ] {
        let failures = watcher.status().failed_reloads;
        write(&policy, broken);
        eventually(
            "the watcher to refuse the broken file",
            Duration::from_secs(5),
            || watcher.status().failed_reloads > failures,
        )
        .await;
        let error = watcher.status().last_error.unwrap_or_default();
        assert!(error.contains(needle), "{error}");
        assert_eq!(rbac.revision(), 2);
        assert_eq!(reason(&rbac, "b"), ReasonCode::PolicyAllow);
    }
    // A refused content is not retried while it stays the same.
    let failures = watcher.status().failed_reloads;
    let checked = authz_types::now_unix_ms();
    eventually(
        "file checks after the refused content",
        Duration::from_secs(5),
        || {
            watcher
                .status()
                .last_check_ms
                .is_some_and(|at| at > checked + 60)
        },
    )
    .await;
    assert_eq!(watcher.status().failed_reloads, failures);

    write(
        &policy,
        "p, r, default, tool:t/c, call, allow\ng, user:u, r, default\n",
    );
    eventually("revision 3 from the file", Duration::from_secs(5), || {
        rbac.revision() == 3
    })
    .await;
    assert_eq!(reason(&rbac, "c"), ReasonCode::PolicyAllow);
    assert_eq!(watcher.status().last_error, None);
    watcher.stop();
}

#[test]
fn a_watcher_needs_a_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rbac = runtime
        .block_on(Rbac::from_files(
            &model_path(),
            &[crate::common::policy_path()],
        ))
        .expect("load");
    drop(runtime);
    let err = rbac
        .spawn_watcher(WatchConfig::default())
        .expect_err("no runtime");
    assert!(matches!(err, Error::NoRuntime { .. }), "{err:?}");
}
