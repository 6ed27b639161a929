//! `cargo xtask bench`: runs every criterion benchmark of the workspace and prints one table.
//!
//! The benchmarks compare within one run (indexed vs plain Casbin decisions, verification vs raw
//! signature cost, durable ingestion): absolute times drift on shared machines, ratios do not.
//! Each benchmark also prints its own target check; this command gathers the medians criterion
//! wrote to `target/criterion/**/new/estimates.json` into a single table at the end.
//!
//! Postgres for the audit benchmark: `DATABASE_URL` when set, else Docker, else a throwaway
//! cluster like the tests', but with `fsync=on`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd;
use crate::postgres::{Durability, Postgres};

/// The benchmarks: (package, bench target, what it measures).
const BENCHES: &[(&str, &str, &str)] = &[
    (
        "authz-rbac",
        "decide",
        "authorization decisions at 10 / 1k / 10k policy lines, indexed vs Casbin",
    ),
    (
        "authz-token",
        "verify",
        "token verification per algorithm: raw crypto, uncached, cached",
    ),
    (
        "authz-audit",
        "ingest",
        "durable audit ingestion through the group-commit writer",
    ),
];

pub(crate) fn bench(extra: &[String]) -> Result<()> {
    // The audit benchmark writes into Postgres too: DATABASE_URL when set, else a cluster
    // started here with fsync on (unlike the tests' throwaway one), so durable means durable.
    let pg = Postgres::start_with(Durability::Durable)?;
    for (package, target, what) in BENCHES {
        println!("==> {package}/{target}: {what}");
        cmd::run(
            cmd::cargo()
                .args(["bench", "-p", package, "--bench", target, "--"])
                .args(extra)
                .env("DATABASE_URL", pg.url()),
        )?;
    }
    pg.stop()?;
    let dir = criterion_dir()?;
    let mut rows = Vec::new();
    collect(&dir, &dir, &mut rows)?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!("\n==> medians (criterion, this run)");
    let width = rows.iter().map(|(id, _)| id.len()).max().unwrap_or(10);
    for (id, ns) in rows {
        println!("  {id:width$}  {}", human(ns));
    }
    Ok(())
}

fn criterion_dir() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => cmd::workspace_root().join("target"),
    };
    Ok(target.join("criterion"))
}

/// Finds every `<id>/new/estimates.json` under `dir` and reads its median (nanoseconds).
fn collect(root: &Path, dir: &Path, rows: &mut Vec<(String, f64)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new").join("estimates.json");
        if estimates.is_file() {
            let text = std::fs::read_to_string(&estimates)
                .with_context(|| format!("reading {}", estimates.display()))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", estimates.display()))?;
            if let Some(ns) = v["median"]["point_estimate"].as_f64() {
                let id = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                rows.push((id, ns));
            }
        } else if path.file_name().is_some_and(|n| n != "report") {
            collect(root, &path, rows)?;
        }
    }
    Ok(())
}

fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humane() {
        assert_eq!(human(591.0), "591 ns");
        assert_eq!(human(2_500.0), "2.50 µs");
        assert_eq!(human(12_200_000.0), "12.20 ms");
    }

    #[test]
    fn estimates_are_collected_from_nested_ids() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        let nested = dir.join("decide").join("10k").join("new");
        std::fs::create_dir_all(&nested).expect("mkdir");
        std::fs::write(
            nested.join("estimates.json"),
            r#"{"median":{"point_estimate":591.0}}"#,
        )
        .expect("write");
        std::fs::create_dir_all(dir.join("report")).expect("mkdir");
        let mut rows = Vec::new();
        collect(&dir, &dir, &mut rows).expect("collect");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(
            rows,
            vec![(format!("decide{}10k", std::path::MAIN_SEPARATOR), 591.0)]
        );
    }
}
