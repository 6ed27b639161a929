//! `authz-fuzz [--secs N] [--seed S] [TARGET...]`: runs each fuzz target (all by default) for N
//! seconds (default 60). A failing input is written to `fuzz/regressions/<target>/` and the
//! run exits with status 1; the crate's tests replay every file there.

use std::time::{Duration, Instant};

fn main() {
    let mut secs = 60u64;
    let mut seed = None;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => secs = number(args.next(), "--secs"),
            "--seed" => seed = Some(number(args.next(), "--seed")),
            "-h" | "--help" => {
                println!("usage: authz-fuzz [--secs N] [--seed S] [TARGET...]");
                return;
            }
            name => names.push(name.to_owned()),
        }
    }
    let targets: Vec<_> = authz_fuzz::targets()
        .into_iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
        .collect();
    if targets.len() < names.len() {
        let known: Vec<_> = authz_fuzz::targets().iter().map(|t| t.name).collect();
        eprintln!(
            "error: unknown target in {names:?}; targets: {}",
            known.join(", ")
        );
        std::process::exit(2);
    }
    // A failing input is reported below; the default hook would print every caught panic.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for target in &targets {
        let seed = seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let deadline = Instant::now() + Duration::from_secs(secs);
        let run = authz_fuzz::fuzz(target, seed, |_| Instant::now() < deadline);
        match run.failure {
            None => println!(
                "fuzz {:<9} ok: {} inputs in {secs} s (seed {seed})",
                target.name, run.executions
            ),
            Some((input, message)) => {
                failed = true;
                let dir = authz_fuzz::crate_dir()
                    .join("regressions")
                    .join(target.name);
                let path = dir.join(format!("crash-{seed:016x}-{}", run.executions));
                let saved =
                    std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &input));
                println!(
                    "fuzz {:<9} FAILED after {} inputs (seed {seed}): {message}",
                    target.name, run.executions
                );
                match saved {
                    Ok(()) => println!("  input kept as {}", path.display()),
                    Err(e) => println!(
                        "  could not keep the input ({e}): {:?}",
                        String::from_utf8_lossy(&input)
                    ),
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn number(arg: Option<String>, flag: &str) -> u64 {
    arg.and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("error: {flag} needs a number");
        std::process::exit(2);
    })
}
