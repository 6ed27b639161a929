//! The configuration loader on arbitrary files: a configuration or an error naming its key,
//! never a panic.

use authz_gateway::config::{Config, Overrides, RawConfig};

pub const DICTIONARY: &[&[u8]] = &[
    b"[server]\n",
    b"[auth]\n",
    b"[[auth.issuers]]\n",
    b"[[upstreams]]\n",
    b"[audit.writer]\n",
    b"[policy]\n",
    b"max_connections = ",
    b"max_connections_per_client = ",
    b"idle_timeout_ms = ",
    b"refusal_aggregate_window_ms = ",
    b"http2_max_header_list_bytes = ",
    b"18446744073709551615",
    b"-1",
    b"0",
    b"nan",
    b"inf",
    b"\"\"",
    b"[]",
    b"{}",
    b"'''",
    b"\"\"\"",
    b"= ",
    b"\n",
];

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let raw = match RawConfig::from_toml(text) {
        Ok(raw) => raw,
        Err(e) => {
            assert!(!e.key.is_empty(), "a TOML error names no key: {e}");
            return;
        }
    };
    if let Err(e) = Config::from_raw(raw, &Overrides::default(), &|_| None) {
        assert!(!e.key.is_empty(), "a validation error names no key: {e}");
    }
}
