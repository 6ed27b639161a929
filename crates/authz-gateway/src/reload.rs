//! `SIGHUP`: the configuration file is read and validated again, and what can change while
//! serving is applied: every issuer's key files (or inline keys) are read again, every upstream's
//! credential is resolved again (its file re-read; OAuth client credentials replaced, the cached
//! token dropped), the policy is reloaded at once, and the `[server]` limits listed in
//! `RELOADABLE_SERVER_KEYS` take effect (per request, or per connection accepted from then on).
//! Any other key whose value differs from the running configuration is reported, each by its
//! path, and left as it runs until a restart.
//! A file that does not load, or keys that do not parse, change nothing.

use std::sync::Arc;

use crate::App;
use crate::config::Config;

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reloaded {
    /// Issuers whose keys were read again.
    pub(crate) issuers: Vec<String>,
    /// Upstreams whose credential was replaced.
    pub(crate) upstreams: Vec<String>,
    /// Limits (`server.*` keys) that changed and were applied, by path.
    pub(crate) limits: Vec<String>,
    /// Keys that changed in the file but need a restart, by path.
    pub(crate) refused: Vec<String>,
}

/// The `[server]` limits a reload applies: body size and read time, requests in flight per
/// principal, connection caps and deadlines, HTTP/2 limits (for connections accepted from then
/// on) and the unauthenticated refusal rate.
const RELOADABLE_SERVER_KEYS: &[&str] = &[
    "max_body_bytes",
    "body_read_timeout_ms",
    "max_in_flight_per_principal",
    "header_read_timeout_ms",
    "idle_timeout_ms",
    "shutdown_grace_ms",
    "max_connections",
    "max_connections_per_client",
    "http2_max_concurrent_streams",
    "http2_max_header_list_bytes",
    "http2_max_pending_reset_streams",
    "http2_max_local_reset_streams",
    "unauthenticated_per_client_per_sec",
    "unauthenticated_burst_per_client",
];

/// Whether a change at `path` (e.g. `upstreams[0].credential_file`) is applied by a reload.
fn reloadable(path: &str) -> bool {
    if let Some(key) = path.strip_prefix("server.") {
        return RELOADABLE_SERVER_KEYS.contains(&key);
    }
    let field = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.split_once("]."))
            .filter(|(index, _)| index.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, field)| field)
    };
    if let Some(f) = field("auth.issuers[") {
        return matches!(f, "jwks_file" | "jwks");
    }
    if let Some(f) = field("upstreams[") {
        return matches!(f, "credential_env" | "credential_file" | "oauth")
            || f.starts_with("oauth.");
    }
    false
}

/// Every key path whose value differs between `old` and `new`: tables key by key, arrays element
/// by element, a key on one side only included.
pub(crate) fn changed_keys(old: &toml::Value, new: &toml::Value) -> Vec<String> {
    fn walk(
        path: &str,
        old: Option<&toml::Value>,
        new: Option<&toml::Value>,
        out: &mut Vec<String>,
    ) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match (old, new) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    walk(&join(k), a.get(k), b.get(k), out);
                }
            }
            (Some(toml::Value::Array(a)), Some(toml::Value::Array(b)))
                if a.iter().chain(b).any(toml::Value::is_table) =>
            {
                for i in 0..a.len().max(b.len()) {
                    walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
                }
            }
            (a, b) if a != b => out.push(path.to_owned()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

/// Applies `new`, the configuration loaded from `new_text`, to the running gateway, which was
/// loaded from `old_text`. Keys are read before anything is replaced: if they fail, nothing is.
pub(crate) async fn apply(
    app: &Arc<App>,
    old_text: &str,
    new_text: &str,
    new: &Config,
) -> anyhow::Result<Reloaded> {
    let (old_doc, new_doc): (toml::Value, toml::Value) = (
        toml::from_str(old_text).unwrap_or(toml::Value::Table(Default::default())),
        toml::from_str(new_text)?,
    );
    let changed = changed_keys(&old_doc, &new_doc);
    let mut done = Reloaded {
        limits: changed
            .iter()
            .filter(|k| k.starts_with("server.") && reloadable(k))
            .cloned()
            .collect(),
        refused: changed.into_iter().filter(|k| !reloadable(k)).collect(),
        ..Reloaded::default()
    };
    for key in &done.refused {
        tracing::warn!(key = %key, "changed in the configuration file, but applied only after a restart");
    }
    done.issuers = app.verifier.reload_key_files(&new.verifier)?;
    for (i, up) in new.upstreams.iter().enumerate() {
        // A stdio route's credential is the bridge's own secret, made when the gateway started.
        if up.stdio.is_some() {
            continue;
        }
        match app.client(&up.name) {
            Some(client) if client.replace_credential(&up.credential).await => {
                done.upstreams.push(up.name.clone());
            }
            Some(_) => {
                let key = format!("upstreams[{i}] (credential kind)");
                tracing::warn!(key = %key, "changed in the configuration file, but applied only after a restart");
                done.refused.push(key);
            }
            None => {} // a new route: already in `refused`
        }
    }
    // Limits last: they cannot fail, and they are read per request or per connection.
    if !done.limits.is_empty() {
        app.body_limits
            .set(new.max_body_bytes, new.body_read_timeout);
        app.in_flight.set_max(new.max_in_flight_per_principal);
        app.connections.set_limits(new.connections);
        app.refusals.set_rate(
            new.refusals.per_client_per_sec,
            new.refusals.burst_per_client,
        );
        tracing::info!(keys = ?done.limits, "limits reloaded");
    }
    match app.rbac.reload().await {
        Ok(revision) => tracing::info!(revision, "policy reloaded on SIGHUP"),
        Err(e) => {
            tracing::error!(error = %e, "the policy could not be reloaded; the rules in force stay")
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> toml::Value {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn changes_are_named_by_their_path() {
        let old =
            doc("[server]\nlisten = \"a\"\n[[upstreams]]\nname = \"t\"\ncredential_file = \"x\"\n");
        let new = doc(
            "[server]\nlisten = \"b\"\nmax_body_bytes = 5\n[[upstreams]]\nname = \"t\"\ncredential_file = \"y\"\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            [
                "server.listen",
                "server.max_body_bytes",
                "upstreams[0].credential_file"
            ]
        );
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn only_keys_credentials_and_limits_reload() {
        for yes in [
            "auth.issuers[0].jwks_file",
            "auth.issuers[12].jwks",
            "upstreams[1].credential_file",
            "upstreams[0].credential_env",
            "upstreams[0].oauth",
            "upstreams[0].oauth.client_secret_file",
            "server.max_body_bytes",
            "server.max_connections_per_client",
            "server.unauthenticated_burst_per_client",
            "server.http2_max_concurrent_streams",
        ] {
            assert!(reloadable(yes), "{yes}");
        }
        for no in [
            "server.listen",
            "server.public_url",
            "server.refusal_aggregate_window_ms",
            "server.request_state_key_file",
            "auth.issuers[0].issuer",
            "upstreams[0].url",
            "upstreams[x].credential_file",
            "upstreams",
            "policy.files",
        ] {
            assert!(!reloadable(no), "{no}");
        }
    }
}
