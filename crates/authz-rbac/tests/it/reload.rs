//! Reloads: revisions grow, changes take effect, and a broken source keeps the old policy.

use authz_rbac::{Error, Rbac};
use authz_types::ReasonCode;

use crate::common::{model_path, principal, sqlite_store, tool, write_around_the_store};

const GOOD: &str = "p, r, default, tool:t/a, call, allow\ng, user:u, r, default\n";
const CHANGED: &str = "p, r, default, tool:t/b, call, allow\ng, user:u, r, default\n";

#[tokio::test]
async fn file_reload_swaps_and_broken_sources_keep_the_old_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.conf");
    let policy = dir.path().join("policy.csv");
    std::fs::copy(model_path(), &model).expect("copy model");
    std::fs::write(&policy, GOOD).expect("write");
    let rbac = Rbac::from_files(&model, std::slice::from_ref(&policy))
        .await
        .expect("load");
    let u = principal("u", &[], None);
    let reason = |name: &str| rbac.decide(&u, "t", &tool(name)).expect("decide").reason;
    assert_eq!(rbac.revision(), 1);
    assert_eq!(reason("a"), ReasonCode::PolicyAllow);

    // Broken policies: an invalid glob (Casbin would panic on it), a short line, bad CSV.
    for broken in [
        "p, r, default, tool:t/[, call, allow\n",
        "p, r, default, tool:t/b, call\n",
        "p, r, default, \"tool:t/b, call, allow\n",
        "g, u, r\n",
    ] {
        std::fs::write(&policy, broken).expect("write");
        let err = rbac.reload().await.expect_err(broken);
        assert!(
            matches!(err, Error::InvalidPolicy { line: 1, .. }),
            "{err:?}"
        );
        assert_eq!(rbac.revision(), 1);
        assert_eq!(
            reason("a"),
            ReasonCode::PolicyAllow,
            "old policy kept after {broken:?}"
        );
    }

    // Broken models: garbage, the wrong effect, a matcher that cannot evaluate, a missing file.
    std::fs::write(&policy, CHANGED).expect("write");
    let good_model = std::fs::read_to_string(model_path()).expect("read model");
    for broken in [
        "this is not a model".to_owned(),
        good_model.replace(
            "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
            "e = some(where (p.eft == allow))",
        ),
        good_model.replace("globMatch(r.obj, p.obj)", "noSuchFunction(r.obj, p.obj)"),
    ] {
        std::fs::write(&model, &broken).expect("write model");
        let err = rbac.reload().await.expect_err("broken model");
        assert!(
            matches!(err, Error::InvalidModel { .. } | Error::Model { .. }),
            "{err:?}"
        );
        assert_eq!(rbac.revision(), 1);
        assert_eq!(reason("a"), ReasonCode::PolicyAllow);
    }
    std::fs::remove_file(&model).expect("remove model");
    assert!(rbac.reload().await.is_err());
    assert_eq!(reason("a"), ReasonCode::PolicyAllow);

    // Fixed again: the change takes effect and the revision moves on by one.
    std::fs::copy(model_path(), &model).expect("copy model");
    assert_eq!(rbac.reload().await.expect("reload"), 2);
    assert_eq!(rbac.revision(), 2);
    assert_eq!(reason("a"), ReasonCode::NoMatchingRule);
    let d = rbac.decide(&u, "t", &tool("b")).expect("decide");
    assert_eq!(d.reason, ReasonCode::PolicyAllow);
    assert_eq!(d.policy_revision, 2);
}

#[tokio::test]
async fn store_reload_refuses_a_row_written_around_the_store() {
    let (store, db) = sqlite_store().await;
    store.assign("u", "r", "default").await.expect("assign");
    store
        .grant(
            "r",
            "default",
            "call",
            "tool:t/a",
            authz_types::RuleEffect::Allow,
        )
        .await
        .expect("grant");
    let rbac = Rbac::from_store(&model_path(), store.clone())
        .await
        .expect("load");
    assert_eq!(rbac.revision(), 2);

    // Someone writes an invalid pattern straight into the table, bypassing validation.
    write_around_the_store(&db).await;

    let err = rbac.reload().await.expect_err("invalid row");
    assert!(matches!(err, Error::InvalidPolicy { .. }), "{err:?}");
    assert_eq!(rbac.revision(), 2);
    let d = rbac
        .decide(&principal("u", &[], None), "t", &tool("a"))
        .expect("decide");
    assert_eq!(d.reason, ReasonCode::PolicyAllow);

    // A store-backed Rbac also keeps its policy when the model breaks.
    let err = Rbac::from_store(
        &db.dir().expect("sqlite").join("missing.conf"),
        store.clone(),
    )
    .await;
    assert!(err.is_err());
}
