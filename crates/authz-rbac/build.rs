//! Rebuilds the crate when a migration is added (`sqlx::migrate!` embeds the migration folders,
//! but the compiler only notices edits to files it already included, not new files), and turns
//! the Postgres tests on in a build made for them.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite/policy");
    println!("cargo:rerun-if-changed=../../migrations/postgres/policy");
    println!("cargo:rerun-if-changed=../../migrations/sqlite/quota");
    println!("cargo:rerun-if-changed=../../migrations/postgres/quota");
    // Postgres tests run only in a build made for them (`cargo xtask test` sets the variable);
    // elsewhere they are reported as ignored, never as passed. See `authz-test-support`.
    println!("cargo::rustc-check-cfg=cfg(authz_postgres)");
    println!("cargo::rerun-if-env-changed=AUTHZ_TEST_POSTGRES");
    if std::env::var_os("AUTHZ_TEST_POSTGRES").is_some() {
        println!("cargo::rustc-cfg=authz_postgres");
    }
}
