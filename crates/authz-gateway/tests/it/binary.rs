//! The `authz-gateway` binary: configuration mistakes stop it before it listens.

use std::process::Command;

fn run_with_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .arg("--config")
        .arg(&path)
        .env_remove("AUTHZ_LISTEN")
        .env_remove("AUTHZ_PUBLIC_URL")
        .env_remove("AUTHZ_AUDIT_DATABASE_URL")
        .env_remove("AUTHZ_POLICY_DATABASE_URL")
        .output()
        .expect("run authz-gateway");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_exits_2_naming_the_key_with_a_hint() {
    let (code, stderr) = run_with_config("[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("server.lisen"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn a_missing_auth_section_exits_2_with_a_hint() {
    let (code, stderr) = run_with_config("[server]\nlisten = \"127.0.0.1:0\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`auth`") && stderr.contains("authzctl keys generate"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .args(["--config", "/nonexistent/gateway.toml"])
        .output()
        .expect("run authz-gateway");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
