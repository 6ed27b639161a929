//! Tidy checks of `ARCHITECTURE.md`, the code map: every source file of every member has its
//! line, and every path the document names exists.
//!
//! Under a `### \`DIR\`` heading, a bullet ``- `FILE`: …`` names `DIR/src/FILE`. Anywhere in the
//! document, a back-ticked word that looks like a repository path (`crates/…`, `xtask/…`,
//! `examples/…`, `migrations/…`, `policies/…`, `tests/…` or a bare `*.md`) must exist; a path
//! with a placeholder (`<store>`, `{sqlite,postgres}`, `*`, `…`) is checked up to the
//! placeholder.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;

use super::{Workspace, read, rust_files};

/// Top-level folders whose paths the document may name.
const PATH_ROOTS: &[&str] = &[
    "crates/",
    "xtask/",
    "examples/",
    "migrations/",
    "policies/",
    ".ci/",
];

/// Both checks over the real `ARCHITECTURE.md`.
pub(super) fn check_architecture(ws: &Workspace) -> Result<Vec<String>> {
    let text = read(&ws.root.join("ARCHITECTURE.md"))?;
    let mut violations = Vec::new();
    let sections = file_lines(&text);
    for pkg in &ws.packages {
        let dir = ws.rel(pkg.dir()).to_string_lossy().into_owned();
        let Some(listed) = sections.iter().find(|(d, _)| *d == dir).map(|(_, f)| f) else {
            violations.push(format!(
                "ARCHITECTURE.md has no `### \\`{dir}\\`` section for workspace member `{}`",
                pkg.name
            ));
            continue;
        };
        let src = pkg.dir().join("src");
        let actual: BTreeSet<String> = rust_files(&src)?
            .iter()
            .filter_map(|f| f.strip_prefix(&src).ok())
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        for missing in actual.difference(listed) {
            violations.push(format!(
                "ARCHITECTURE.md, section `{dir}`: no line for `{missing}` (one line per file)"
            ));
        }
        for stale in listed.difference(&actual) {
            violations.push(format!(
                "ARCHITECTURE.md, section `{dir}`: `{stale}` is listed but {dir}/src/{stale} does \
                 not exist"
            ));
        }
    }
    for path in named_paths(&text) {
        if !ws.root.join(&path).exists() {
            violations.push(format!(
                "ARCHITECTURE.md names `{path}`, which does not exist"
            ));
        }
    }
    Ok(violations)
}

/// Per `### \`DIR\`` section, the files its bullets name (``- `FILE`:``).
pub(super) fn file_lines(text: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut sections: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### `")
            && let Some(dir) = heading.strip_suffix('`')
        {
            sections.push((dir.to_owned(), BTreeSet::new()));
        } else if line.starts_with("## ") {
            sections.push((String::new(), BTreeSet::new()));
        } else if let Some(rest) = line.strip_prefix("- `")
            && let Some((file, after)) = rest.split_once('`')
            && after.starts_with(':')
            && file.ends_with(".rs")
            && let Some((_, files)) = sections.last_mut()
        {
            files.insert(file.to_owned());
        }
    }
    sections.retain(|(dir, _)| !dir.is_empty());
    sections
}

/// The repository paths named in back-ticks, each cut at its first placeholder.
pub(super) fn named_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for (i, quoted) in text.split('`').enumerate() {
        if i % 2 == 0 || quoted.contains(' ') {
            continue;
        }
        let is_path = PATH_ROOTS.iter().any(|root| quoted.starts_with(root))
            || (quoted.ends_with(".md") && !quoted.contains('/'));
        if !is_path {
            continue;
        }
        let cut = quoted
            .find(['<', '{', '*', '…', '|'])
            .map_or(quoted, |at| &quoted[..at]);
        // Up to the last whole component before a placeholder.
        let cut = if cut.len() < quoted.len() {
            cut.rfind('/').map_or("", |slash| &cut[..slash])
        } else {
            cut
        };
        let cut = cut.trim_end_matches('/');
        if !cut.is_empty() && Path::new(cut).components().count() > 0 {
            paths.insert(cut.to_owned());
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;

    #[test]
    fn bullets_are_collected_per_section() {
        let text = "## Code map\n### `crates/a`\nprose `x.rs` here\n- `lib.rs`: the root.\n\
                    - `sub/mod.rs`: a module.\n- `Thing`: not a file\n### `xtask`\n\
                    - `main.rs`: entry.\n## Cross-cutting\n- `stray.rs`: outside a section.\n";
        let sections = file_lines(text);
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].0, "crates/a");
        assert_eq!(
            sections[0].1.iter().collect::<Vec<_>>(),
            ["lib.rs", "sub/mod.rs"]
        );
        assert_eq!(sections[1].1.iter().collect::<Vec<_>>(), ["main.rs"]);
    }

    #[test]
    fn paths_are_cut_at_their_placeholders() {
        let text = "`crates/a/src/lib.rs` and `migrations/<backend>/<store>/` and \
                    `migrations/{sqlite,postgres}/audit`, `NOTES.md`, `authz_types::X`, \
                    `cargo xtask ci`, `policies/*.csv`";
        let paths: Vec<String> = named_paths(text).into_iter().collect();
        assert_eq!(
            paths,
            ["NOTES.md", "crates/a/src/lib.rs", "migrations", "policies"]
        );
    }

    #[test]
    fn the_code_map_matches_the_tree() {
        let violations =
            check_architecture(&Workspace::load(&cmd::workspace_root()).expect("metadata"))
                .expect("check runs");
        assert!(violations.is_empty(), "{violations:#?}");
    }
}
