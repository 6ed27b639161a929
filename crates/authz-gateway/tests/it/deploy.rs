//! The packaging names only metrics the gateway exports: every `authz_*` metric in the
//! Prometheus alert rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/dashboards/authz-gateway.json`) is declared on a live gateway's `/metrics`,
//! so a renamed metric cannot silently disable an alert or empty a panel.

use std::collections::BTreeSet;

use authz_test_support::repo_path;

use crate::harness::{self, AuditBackend};

/// The `authz_*` metric names a text mentions, histogram and counter suffixes removed.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("authz_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_alerts_and_the_dashboard_name_only_exported_metrics() {
    // Keys from a JWKS URL, so the fetch metrics exist too, and an audit sink, so the shipping
    // metrics do.
    let collector = axum::Router::new().route("/v1/logs", axum::routing::post(|| async { "{}" }));
    let at = harness::serve_stand_in(collector).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            jwks_over_http: true,
            audit_extra: Some(format!(
                "[[audit.sinks]]\nname = \"otel\"\nkind = \"otlp_logs\"\nurl = \"http://{at}/v1/logs\"\n"
            )),
            ..Default::default()
        },
    )
    .await;
    // One of each: allowed, denied by policy, unauthenticated, so labelled families have samples.
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let reader = env.token("rita", &["ticket-reader"], &["tickets:write"]);
    assert_eq!(
        env.post_stateless_call(&admin, 1, "get_ticket")
            .await
            .status(),
        200
    );
    assert_eq!(
        env.post_stateless_call(&reader, 2, "delete_ticket")
            .await
            .status(),
        403
    );
    assert_eq!(env.post(None, &[], "{}").await.status(), 401);
    let page = env.get("/metrics").await.text().await.expect("metrics");
    let exported = names_in(&page);

    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/dashboards/authz-gateway.json",
    ] {
        let text = std::fs::read_to_string(repo_path(file)).expect("read the file");
        let named = names_in(&text);
        assert!(!named.is_empty(), "{file} names no metric");
        let missing: Vec<_> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics /metrics does not export: {missing:?}"
        );
    }
    // The dashboard is valid JSON.
    let dashboard =
        std::fs::read_to_string(repo_path("deploy/grafana/dashboards/authz-gateway.json"))
            .expect("read");
    let v: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert!(v["panels"].as_array().is_some_and(|p| !p.is_empty()));
}

/// The replicas' configuration parses: no unknown or misspelt key (files and variables it names
/// exist only inside the containers, so it is not validated further here).
#[test]
fn the_compose_gateway_configuration_parses() {
    let text = std::fs::read_to_string(repo_path("deploy/gateway.compose.toml")).expect("read");
    let raw = authz_gateway::config::RawConfig::from_toml(&text).expect("parses");
    assert_eq!(raw.audit.sinks.len(), 1, "the OTLP logs sink");
}
