//! Conditions through `authzctl`: `role grant … --when` into a real store (refused when the
//! condition does not compile, revoked only with the same condition) and `policy check --args
//! --explain`, which shows the condition, the values it saw and how it came out.

use authz_admin::{EXIT_ERROR, Outcome, exit_code_of};

use crate::common::{fails, json, model, ok, run, sqlite_url, text};

#[tokio::test]
async fn a_condition_is_granted_checked_explained_and_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "policy.db");
    let model = model();
    let cond = "args.amount <= 500";
    let out = ok(&[
        "role",
        "grant",
        "support",
        "call",
        "tool:billing/refund",
        "--when",
        cond,
        "--database-url",
        &url,
    ])
    .await;
    assert!(
        out.contains(r#"granted `p, support, default, tool:billing/refund, call, allow, "args.amount <= 500"`"#),
        "{out}"
    );
    // A condition that does not compile changes nothing.
    let e = fails(&[
        "role",
        "grant",
        "support",
        "call",
        "tool:billing/x",
        "--when",
        "args.amount <=",
        "--database-url",
        &url,
    ])
    .await;
    assert!(text(&e).contains("does not parse"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    let e = fails(&[
        "role",
        "grant",
        "support",
        "call",
        "tool:billing/x",
        "--when",
        "env.HOME == 'x'",
        "--database-url",
        &url,
    ])
    .await;
    assert!(text(&e).contains("unknown variable `env`"), "{e:#}");

    let check = |args: &'static str| {
        let (model, url) = (model.clone(), url.clone());
        async move {
            run(&[
                "policy",
                "check",
                "sam",
                "tools/call",
                "refund",
                "--upstream",
                "billing",
                "--role",
                "support",
                "--model",
                &model,
                "--database-url",
                &url,
                "--args",
                args,
                "--explain",
            ])
            .await
            .expect("check")
        }
    };
    let (outcome, out) = check(r#"{"amount": 100}"#).await;
    assert_eq!(outcome, Outcome::Success, "{out}");
    assert!(out.contains("[condition true]"), "{out}");
    assert!(
        out.contains(r#"condition args.amount <= 500 saw {"amount":100} -> true"#),
        "{out}"
    );
    let (outcome, out) = check(r#"{"amount": 900, "note": "big"}"#).await;
    assert_eq!(outcome, Outcome::Deny, "{out}");
    assert!(out.contains("condition_not_met"), "{out}");
    // Only the fields the condition names are shown.
    assert!(
        out.contains(r#"saw {"amount":900} -> false (rule not applied)"#),
        "{out}"
    );
    let (outcome, out) = check(r#"{"amount": "100"}"#).await;
    assert_eq!(outcome, Outcome::Deny, "{out}");
    assert!(out.contains("-> error:"), "{out}");
    let v = json(&[
        "policy",
        "check",
        "sam",
        "tools/call",
        "refund",
        "--upstream",
        "billing",
        "--role",
        "support",
        "--model",
        &model,
        "--database-url",
        &url,
        "--args",
        r#"{"amount": 1}"#,
        "--explain",
    ])
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(
        v["explain"]["matches"][0]["condition"]["outcome"], "true",
        "{v}"
    );
    assert_eq!(
        v["explain"]["matches"][0]["condition"]["seen"]["amount"], 1,
        "{v}"
    );
    let e = fails(&[
        "policy",
        "check",
        "sam",
        "tools/call",
        "refund",
        "--upstream",
        "billing",
        "--model",
        &model,
        "--database-url",
        &url,
        "--args",
        "[1]",
    ])
    .await;
    assert!(text(&e).contains("--args must be a JSON object"), "{e:#}");

    // Revoking needs the same condition: without it there is no such rule.
    let e = fails(&[
        "role",
        "revoke",
        "support",
        "call",
        "tool:billing/refund",
        "--yes",
        "--database-url",
        &url,
    ])
    .await;
    assert!(
        text(&e).contains("not found") || text(&e).contains("no such"),
        "{e:#}"
    );
    let out = ok(&[
        "role",
        "revoke",
        "support",
        "call",
        "tool:billing/refund",
        "--when",
        cond,
        "--yes",
        "--database-url",
        &url,
    ])
    .await;
    assert!(out.contains("revoked"), "{out}");
}
