//! The `authzctl` binary: a thin wrapper over [`authz_admin::run`].

fn main() -> std::process::ExitCode {
    authz_admin::run()
}
