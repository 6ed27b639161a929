//! The `authz-gateway` binary: a thin wrapper over [`authz_gateway::run`].

fn main() -> std::process::ExitCode {
    authz_gateway::run()
}
