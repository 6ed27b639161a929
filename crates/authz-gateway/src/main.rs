//! The `authz-gateway` binary: a thin wrapper over [`authz_gateway::run`].

/// mimalloc instead of glibc's allocator: measured on the end-to-end benchmark, allocation and
/// freeing were a fifth of the gateway's CPU per call, much of it glibc consolidating free
/// chunks (see `BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    authz_gateway::run()
}
