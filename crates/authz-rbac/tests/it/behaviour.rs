//! Behaviour the crate relies on from Casbin, checked on small inline policies.

use std::path::PathBuf;

use authz_rbac::{CandidateOrigin, Error, Rbac};
use authz_types::{Effect, Method, Operation, ReasonCode, RuleEffect, Target};

use crate::common::{model_path, policy_path, principal, tool};

/// Writes `csv` to a temporary policy file and loads it with the real model.
async fn rbac_with(csv: &str) -> (Rbac, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("policy.csv");
    std::fs::write(&path, csv).expect("write policy");
    let rbac = Rbac::from_files(&model_path(), &[path])
        .await
        .expect("load");
    (rbac, dir)
}

#[tokio::test]
async fn deny_overrides_allow_whatever_the_order() {
    for csv in [
        "p, r, default, tool:t/*, call, allow\np, r, default, tool:t/drop_*, call, deny\ng, user:u, r, default\n",
        "p, r, default, tool:t/drop_*, call, deny\np, r, default, tool:t/*, call, allow\ng, user:u, r, default\n",
    ] {
        let (rbac, _dir) = rbac_with(csv).await;
        let u = principal("u", &[], None);
        let d = rbac.decide(&u, "t", &tool("drop_table")).expect("decide");
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.reason, ReasonCode::ExplicitDeny);
        assert_eq!(
            d.matched_rule.as_deref(),
            Some("p, r, default, tool:t/drop_*, call, deny")
        );
        let d = rbac.decide(&u, "t", &tool("select")).expect("decide");
        assert_eq!(d.reason, ReasonCode::PolicyAllow);
    }
}

#[tokio::test]
async fn approve_is_overridden_by_deny_and_overrides_allow_whatever_the_order() {
    let hold = "p, r, default, tool:t/drop_*, call, approve";
    for (csv, reason, rule) in [
        // The same rule as allow and as approve, in both orders: one approve line.
        (
            format!("p, r, default, tool:t/drop_*, call, allow\n{hold}\n"),
            ReasonCode::ApprovalRequired,
            hold,
        ),
        (
            format!("{hold}\np, r, default, tool:t/drop_*, call, allow\n"),
            ReasonCode::ApprovalRequired,
            hold,
        ),
        (
            format!("p, r, default, tool:t/*, call, allow\n{hold}\n"),
            ReasonCode::ApprovalRequired,
            hold,
        ),
        (
            format!("{hold}\np, r, default, tool:t/drop_*, call, deny\n"),
            ReasonCode::ExplicitDeny,
            "p, r, default, tool:t/drop_*, call, deny",
        ),
    ] {
        let (rbac, _dir) = rbac_with(&format!("{csv}g, user:u, r, default\n")).await;
        let u = principal("u", &[], None);
        let d = rbac.decide(&u, "t", &tool("drop_table")).expect("decide");
        assert_eq!(d.effect, Effect::Deny, "{csv}");
        assert_eq!(d.reason, reason, "{csv}");
        assert_eq!(d.matched_rule.as_deref(), Some(rule), "{csv}");
        assert_eq!(
            rbac.decide_with_casbin(&u, "t", &tool("drop_table"))
                .expect("casbin"),
            d,
            "{csv}"
        );
        let explained = rbac.explain(&u, "t", &tool("drop_table")).expect("explain");
        assert!(
            explained
                .matches
                .iter()
                .any(|m| m.effect == RuleEffect::Approve && m.rule == hold),
            "{csv}: {explained}"
        );
        // Other tools are not held.
        let other = rbac.decide(&u, "t", &tool("select")).expect("decide");
        assert_ne!(other.reason, ReasonCode::ApprovalRequired, "{csv}");
    }
}

#[tokio::test]
async fn approve_rules_apply_to_tool_calls_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.csv");
    for line in [
        "p, r, default, resource:t/**, read, approve",
        "p, r, default, tool:t/*, *, approve",
        "p, r, default, prompt:t/*, get, approve",
        "p, r, default, tool:t/*, call, maybe",
    ] {
        std::fs::write(&path, format!("{line}\n")).expect("write");
        let err = Rbac::from_files(&model_path(), std::slice::from_ref(&path))
            .await
            .expect_err(line);
        assert!(
            matches!(err, Error::InvalidPolicy { line: 1, .. }),
            "{line}: {err:?}"
        );
    }
}

#[tokio::test]
async fn roles_inherit_through_several_levels_and_cycles_terminate() {
    let csv = "\
p, base, default, tool:t/read, call, allow
g, middle, base, default
g, top, middle, default
g, user:u, top, default
g, loop-a, loop-b, default
g, loop-b, loop-a, default
g, user:v, loop-a, default
";
    let (rbac, _dir) = rbac_with(csv).await;
    let d = rbac
        .decide(&principal("u", &[], None), "t", &tool("read"))
        .expect("decide");
    assert_eq!(d.reason, ReasonCode::PolicyAllow);
    assert_eq!(
        d.matched_rule.as_deref(),
        Some("p, base, default, tool:t/read, call, allow")
    );
    // Inheritance is one way: a base holder does not gain what `top` would have.
    let d = rbac
        .decide(&principal("v", &[], None), "t", &tool("read"))
        .expect("a role cycle must not hang or fail");
    assert_eq!(d.reason, ReasonCode::NoMatchingRule);
    let e = rbac
        .explain(&principal("u", &[], None), "t", &tool("read"))
        .expect("explain");
    assert_eq!(e.candidates[0].roles, vec!["base", "middle", "top"]);
}

#[tokio::test]
async fn tenants_are_isolated_and_star_rules_apply_everywhere() {
    let csv = "\
p, r, a, tool:t/only_a, call, allow
p, r, *, tool:t/everywhere, call, allow
p, r, *, tool:t/never, call, deny
p, r, b, tool:t/never, call, allow
g, user:u, r, a
g, user:u, r, b
";
    let (rbac, _dir) = rbac_with(csv).await;
    let in_a = principal("u", &[], Some("a"));
    let in_b = principal("u", &[], Some("b"));
    let in_c = principal("u", &[], Some("c"));
    let decide = |p, name: &str| rbac.decide(p, "t", &tool(name)).expect("decide").reason;
    assert_eq!(decide(&in_a, "only_a"), ReasonCode::PolicyAllow);
    assert_eq!(decide(&in_b, "only_a"), ReasonCode::NoMatchingRule);
    assert_eq!(decide(&in_a, "everywhere"), ReasonCode::PolicyAllow);
    assert_eq!(decide(&in_b, "everywhere"), ReasonCode::PolicyAllow);
    // No assignment in tenant c, so even `*` rules do not reach u there.
    assert_eq!(decide(&in_c, "everywhere"), ReasonCode::NoMatchingRule);
    // A `*` deny overrides a tenant allow.
    assert_eq!(decide(&in_b, "never"), ReasonCode::ExplicitDeny);
    // A token role is a subject in whatever tenant the token names.
    let role_in_c = principal("x", &["r"], Some("c"));
    assert_eq!(decide(&role_in_c, "everywhere"), ReasonCode::PolicyAllow);
    assert_eq!(decide(&role_in_c, "only_a"), ReasonCode::NoMatchingRule);
}

#[tokio::test]
async fn subjects_and_roles_never_share_a_name() {
    let csv = "\
p, ticket-admin, default, tool:t/*, call, allow
p, user:carol, default, tool:t/carols_own, call, allow
g, user:carol, ticket-admin, default
";
    let (rbac, _dir) = rbac_with(csv).await;
    let decide = |who: &authz_types::Principal, name: &str| {
        rbac.decide(who, "t", &tool(name)).expect("decide")
    };

    // carol holds ticket-admin through `g, user:carol` and her own direct grant.
    let carol = principal("carol", &[], None);
    assert_eq!(
        decide(&carol, "delete_ticket").matched_rule.as_deref(),
        Some("p, ticket-admin, default, tool:t/*, call, allow")
    );
    let d = decide(&carol, "carols_own");
    assert_eq!(d.reason, ReasonCode::PolicyAllow);
    let e = rbac
        .explain(&carol, "t", &tool("carols_own"))
        .expect("explain");
    assert_eq!(e.candidates[0].name, "user:carol");
    assert_eq!(e.candidates[0].roles, vec!["ticket-admin"]);

    // A user whose `sub` is a role name holds nothing of that role.
    let impostor = principal("ticket-admin", &[], None);
    let d = decide(&impostor, "delete_ticket");
    assert_eq!(d.reason, ReasonCode::NoMatchingRule);
    assert_eq!(d.matched_rule, None);

    // A token role written like a subject is ignored; a bare one named like a user is only a
    // role, which inherits nothing from that user.
    for roles in [&["user:carol"][..], &["carol"], &["user:carol", "carol"]] {
        let mallory = principal("mallory", roles, None);
        for name in ["carols_own", "delete_ticket"] {
            assert_eq!(
                decide(&mallory, name).reason,
                ReasonCode::NoMatchingRule,
                "{roles:?} {name}"
            );
        }
    }
    let mallory = principal("mallory", &["user:carol", "ticket-admin"], None);
    assert_eq!(
        decide(&mallory, "delete_ticket").reason,
        ReasonCode::PolicyAllow,
        "the valid token role still counts"
    );
    let e = rbac
        .explain(&mallory, "t", &tool("carols_own"))
        .expect("explain");
    assert_eq!(e.ignored_roles, vec!["user:carol"]);
    let names: Vec<&str> = e.candidates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["user:mallory", "ticket-admin"]);
    let text = e.to_string();
    assert!(
        text.contains("ignored token roles (not valid role names): user:carol"),
        "{text}"
    );
    assert!(
        text.contains("user:mallory (token subject; no roles in tenant)"),
        "{text}"
    );
}

#[tokio::test]
async fn policy_files_refuse_roles_named_like_subjects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.csv");
    for (line, needle) in [
        (
            "g, user:alice, user:carol, default",
            "may not start with \"user:\"",
        ),
        (
            "g, reader, user:carol, default",
            "may not start with \"user:\"",
        ),
        ("g, user:, reader, default", "needs a name after \"user:\""),
        (
            "p, user:, default, tool:t/*, call, allow",
            "needs a name after \"user:\"",
        ),
    ] {
        std::fs::write(
            &path,
            format!("p, reader, default, tool:t/*, call, allow\n{line}\n"),
        )
        .expect("write");
        let err = Rbac::from_files(&model_path(), std::slice::from_ref(&path))
            .await
            .expect_err(line);
        let Error::InvalidPolicy {
            line: 2, source, ..
        } = &err
        else {
            panic!("{line}: {err:?}");
        };
        assert!(source.to_string().contains(needle), "{line}: {source}");
    }
}

#[tokio::test]
async fn globs_keep_star_within_a_segment() {
    let csv = "\
p, r, default, resource:t/*, read, allow
p, r, default, resource:t/files/**, subscribe, allow
g, user:u, r, default
";
    let (rbac, _dir) = rbac_with(csv).await;
    let u = principal("u", &[], None);
    let read = |uri: &str| {
        rbac.decide(
            &u,
            "t",
            &Operation::new(Method::ResourcesRead, Target::Resource(uri.into())),
        )
        .expect("decide")
        .reason
    };
    let subscribe = |uri: &str| {
        rbac.decide(
            &u,
            "t",
            &Operation::new(Method::ResourcesSubscribe, Target::Resource(uri.into())),
        )
        .expect("decide")
        .reason
    };
    assert_eq!(read("plain-name"), ReasonCode::PolicyAllow);
    // A URI with slashes needs `**`: `*` does not cross `/`.
    assert_eq!(read("tickets://open"), ReasonCode::NoMatchingRule);
    assert_eq!(subscribe("files/a/b/c.txt"), ReasonCode::PolicyAllow);
    assert_eq!(subscribe("other/a"), ReasonCode::NoMatchingRule);
}

#[tokio::test]
async fn explanation_lists_every_match_and_reads_well() {
    let rbac = Rbac::from_files(&model_path(), &[policy_path()])
        .await
        .expect("load");
    let dave = principal("dave", &["ticket-reader"], None);
    let e = rbac
        .explain(&dave, "tickets", &tool("delete_ticket"))
        .expect("explain");
    assert_eq!(e.decision.reason, ReasonCode::ExplicitDeny);
    assert_eq!(e.objects, vec!["tool:tickets/delete_ticket"]);
    assert_eq!(e.candidates.len(), 2);
    assert_eq!(e.candidates[0].name, "user:dave");
    assert_eq!(e.candidates[0].origin, CandidateOrigin::Subject);
    assert_eq!(
        e.candidates[0].roles,
        vec!["ticket-admin", "ticket-auditor", "ticket-reader"]
    );
    assert_eq!(e.candidates[1].name, "ticket-reader");
    assert_eq!(e.candidates[1].origin, CandidateOrigin::TokenRole);
    assert!(e.ignored_roles.is_empty());
    // The admin allow and the auditor deny both matched, even though the deny decides.
    let rules: Vec<(&str, RuleEffect)> = e
        .matches
        .iter()
        .map(|m| (m.rule.as_str(), m.effect))
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                "p, ticket-admin, default, tool:tickets/*, call, allow",
                RuleEffect::Allow
            ),
            (
                "p, ticket-auditor, default, tool:tickets/delete_*, call, deny",
                RuleEffect::Deny
            ),
        ]
    );
    let text = e.to_string();
    assert!(
        text.starts_with("deny (explicit_deny) at policy revision 1"),
        "{text}"
    );
    assert!(
        text.contains("decided by: p, ticket-auditor, default, tool:tickets/delete_*, call, deny"),
        "{text}"
    );
    assert!(
        text.contains(
            "user:dave (token subject; roles in tenant: ticket-admin, ticket-auditor, ticket-reader)"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn decide_never_panics_on_odd_input() {
    let rbac = Rbac::from_files(&model_path(), &[policy_path()])
        .await
        .expect("load");
    let long = "x".repeat(100_000);
    let odd: Vec<&str> = vec![
        "",
        "[",
        "]",
        "{",
        "}",
        "{a,",
        "\\",
        "**",
        "*",
        "?",
        "[!",
        "\0",
        "\u{202e}",
        "../..",
        "/",
        "//",
        "é€😀",
        ",",
        "\"",
        "'",
        "eval(1)",
        "r.sub == p.sub",
        &long,
    ];
    for s in &odd {
        for (subject, tenant) in [(*s, None), ("mallory", Some(*s)), (*s, Some(*s))] {
            let who = principal(subject, &[s], tenant);
            let ops = [
                Operation::new(Method::ToolsCall, Target::Tool(s.to_string())),
                Operation::new(Method::ResourcesRead, Target::Resource(s.to_string())),
                Operation::new(
                    Method::SubscriptionsListen,
                    Target::Resources(vec![s.to_string(), "x".into()]),
                ),
                Operation::new(Method::PromptsGet, Target::Prompt(s.to_string())),
                Operation::new(Method::TasksUpdate, Target::Task(s.to_string())),
                Operation::new(Method::Unknown(s.to_string()), Target::Tool(s.to_string())),
            ];
            for op in &ops {
                for upstream in [*s, "tickets"] {
                    let d = rbac
                        .decide(&who, upstream, op)
                        .expect("decide must not fail");
                    // None of these principals holds any role, so nothing may be allowed.
                    assert_eq!(d.effect, Effect::Deny, "{subject:?} {tenant:?} {op:?}");
                    rbac.explain(&who, upstream, op)
                        .expect("explain must not fail");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_model_with_another_matcher_is_served_by_casbin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.conf");
    // The same meaning written differently: the index only reproduces the known matcher, so
    // this model is decided by Casbin alone.
    let text = std::fs::read_to_string(model_path()).expect("read model");
    let reordered = text.replace(
        "m = (r.dom == p.dom || p.dom == \"*\") && (r.sub == p.sub || g(r.sub, p.sub, r.dom))",
        "m = (r.sub == p.sub || g(r.sub, p.sub, r.dom)) && (r.dom == p.dom || p.dom == \"*\")",
    );
    assert_ne!(reordered, text);
    std::fs::write(&model, reordered).expect("write model");
    let rbac = Rbac::from_files(&model, &[policy_path()])
        .await
        .expect("load");
    assert!(!rbac.status().indexed);
    let dave = principal("dave", &[], None);
    let d = rbac
        .decide(&dave, "tickets", &tool("delete_ticket"))
        .expect("decide");
    assert_eq!(d.reason, ReasonCode::ExplicitDeny);
    assert_eq!(
        d,
        rbac.decide_with_casbin(&dave, "tickets", &tool("delete_ticket"))
            .expect("decide")
    );

    let indexed = Rbac::from_files(&model_path(), &[policy_path()])
        .await
        .expect("load");
    assert!(indexed.status().indexed);
}
