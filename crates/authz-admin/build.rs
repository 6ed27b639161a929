//! Turns the Postgres tests on in a build made for them (see `authz-test-support`).

fn main() {
    // Postgres tests run only in a build made for them (`cargo xtask test` sets the variable);
    // elsewhere they are reported as ignored, never as passed. See `authz-test-support`.
    println!("cargo::rustc-check-cfg=cfg(authz_postgres)");
    println!("cargo::rerun-if-env-changed=AUTHZ_TEST_POSTGRES");
    if std::env::var_os("AUTHZ_TEST_POSTGRES").is_some() {
        println!("cargo::rustc-cfg=authz_postgres");
    }
}
