//! Tidy checks: repository-wide rules, run as ordinary tests and by `cargo xtask tidy`.
//!
//! Following rust-analyzer's `xtask/src/tidy.rs`, the rules of the house style that a machine
//! can check are plain `#[test]`s here, so `cargo test` (and nextest) enforces them. Each check
//! is a function returning one precise message per violation, and each has a unit test that
//! feeds it a broken input, so none of them can pass vacuously.
//!
//! The checks:
//! 1. the dependency rule between workspace crates ([`dependency_rule_violations`]);
//! 2. every `.rs` file under `crates/`, `xtask/`, `examples/` starts with a `//!` line;
//! 3. every workspace member sets `[lints] workspace = true`;
//! 4. no `todo!`/`unimplemented!` in `src/` outside `#[cfg(test)]` items;
//! 5. at most one integration-test binary per crate, and it is `tests/it/main.rs`;
//! 6. only `authz-db` and the stores depend on sqlx ([`stores::check_sqlx_users`]);
//! 7. each store's migrations touch only its own tables, with versions unique across stores
//!    ([`stores::check_migrations`]);
//! 8. `ARCHITECTURE.md` has one line per source file and names only paths that exist
//!    ([`architecture::check_architecture`]).

mod architecture;
mod stores;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

/// The crate every other crate may depend on, and which itself depends on no workspace crate.
const VOCABULARY: &str = "authz-types";
/// The one SQL layer, which depends on no workspace crate.
const SQL_LAYER: &str = "authz-db";
/// Test fixtures: a dev-dependency only, of any crate.
const TEST_SUPPORT: &str = "authz-test-support";
/// Library crates that may depend on no workspace crate except [`VOCABULARY`] and [`SQL_LAYER`]
/// (and [`TEST_SUPPORT`] for their tests); each is also a store over [`SQL_LAYER`].
const LEAF_LIBRARIES: &[&str] = &["authz-token", "authz-rbac", "authz-audit"];
/// Crates nothing may depend on: the two binaries, xtask and the fuzz harness.
const NOT_DEPENDABLE: &[&str] = &["authz-gateway", "authz-admin", "xtask", FUZZ_HARNESS];
/// The fuzz harness: a test tool, like a crate's own tests it may link any crate (the gateway's
/// hidden `fuzzing` entry points included).
const FUZZ_HARNESS: &str = "authz-fuzz";
/// Top-level directories whose Rust files must start with a `//!` line.
const DOC_DIRS: &[&str] = &["crates", "xtask", "examples"];
/// Macros that mark unfinished code. Spelled in pieces so this file does not trip its own check.
const FORBIDDEN_MACROS: &[&str] = &[concat!("todo", "!("), concat!("unimplemented", "!(")];

/// A check over the whole workspace: one message per violation.
type Check = fn(&Workspace) -> Result<Vec<String>>;

/// Runs every check on the workspace and fails with all violations listed.
pub(crate) fn run() -> Result<()> {
    let ws = Workspace::load(&cmd::workspace_root())?;
    let checks: [(&str, Check); 8] = [
        ("dependency rule", check_dependency_rule),
        ("module docs", check_module_docs),
        ("workspace lints", check_workspace_lints),
        ("unfinished code", check_unfinished_code),
        ("test layout", check_test_layout),
        ("sqlx users", stores::check_sqlx_users),
        ("store migrations", stores::check_migrations),
        ("code map", architecture::check_architecture),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        let violations =
            check(&ws).with_context(|| format!("tidy check `{name}` could not run"))?;
        if violations.is_empty() {
            println!("tidy: {name}: ok");
        } else {
            println!("tidy: {name}: {} violation(s)", violations.len());
            for violation in &violations {
                println!("  - {violation}");
            }
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("tidy checks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The parts of `cargo metadata --no-deps` the checks need.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub root: PathBuf,
    pub packages: Vec<Package>,
}

/// One workspace member.
#[derive(Debug)]
pub(crate) struct Package {
    pub name: String,
    pub manifest_path: PathBuf,
    pub dependencies: Vec<Dependency>,
    pub targets: Vec<Target>,
}

/// One entry of a member's `[dependencies]`, `[dev-dependencies]` or `[build-dependencies]`.
#[derive(Debug)]
pub(crate) struct Dependency {
    /// The package name (not a `rename`).
    pub name: String,
    pub kind: DepKind,
}

/// Which dependency table an edge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepKind {
    Normal,
    Dev,
    Build,
}

/// One build target of a member (lib, bin, test, example, bench, ...).
#[derive(Debug)]
pub(crate) struct Target {
    pub kinds: Vec<String>,
    pub src_path: PathBuf,
}

impl Workspace {
    /// Runs `cargo metadata --format-version 1 --no-deps` for the workspace at `root`.
    pub(crate) fn load(root: &Path) -> Result<Self> {
        let json = cmd::output(
            cmd::cargo()
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .arg("--manifest-path")
                .arg(root.join("Cargo.toml")),
        )?;
        let value: Value =
            serde_json::from_str(&json).context("cargo metadata printed invalid JSON")?;
        Self::from_metadata(&value)
    }

    /// Reads the workspace from parsed `cargo metadata` output.
    pub(crate) fn from_metadata(value: &Value) -> Result<Self> {
        let str_field = |v: &Value, key: &str| -> Result<String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("cargo metadata: missing string field `{key}`"))
        };
        let array = |v: &'_ Value, key: &str| -> Result<Vec<Value>> {
            v.get(key)
                .and_then(Value::as_array)
                .cloned()
                .with_context(|| format!("cargo metadata: missing array field `{key}`"))
        };
        let members: BTreeSet<String> = array(value, "workspace_members")?
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        let mut packages = Vec::new();
        for pkg in array(value, "packages")? {
            if !members.contains(&str_field(&pkg, "id")?) {
                continue;
            }
            let dependencies = array(&pkg, "dependencies")?
                .iter()
                .map(|dep| {
                    let kind = match dep.get("kind").and_then(Value::as_str) {
                        None => DepKind::Normal,
                        Some("dev") => DepKind::Dev,
                        Some("build") => DepKind::Build,
                        Some(other) => bail!("cargo metadata: unknown dependency kind `{other}`"),
                    };
                    Ok(Dependency {
                        name: str_field(dep, "name")?,
                        kind,
                    })
                })
                .collect::<Result<_>>()?;
            let targets = array(&pkg, "targets")?
                .iter()
                .map(|target| {
                    Ok(Target {
                        kinds: array(target, "kind")?
                            .iter()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect(),
                        src_path: str_field(target, "src_path")?.into(),
                    })
                })
                .collect::<Result<_>>()?;
            packages.push(Package {
                name: str_field(&pkg, "name")?,
                manifest_path: str_field(&pkg, "manifest_path")?.into(),
                dependencies,
                targets,
            });
        }
        Ok(Self {
            root: str_field(value, "workspace_root")?.into(),
            packages,
        })
    }

    /// `path` relative to the workspace root, for messages.
    fn rel<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

impl Package {
    /// The directory holding the member's `Cargo.toml`.
    pub(crate) fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DepKind::Normal => "dependency",
            DepKind::Dev => "dev-dependency",
            DepKind::Build => "build-dependency",
        })
    }
}

/// Edges between workspace crates: crate name → (dependency name, kind).
#[derive(Debug, Default)]
pub(crate) struct DepGraph {
    edges: BTreeMap<String, BTreeSet<(String, DepKind)>>,
}

impl DepGraph {
    /// The graph of the real workspace; dependencies outside the workspace are left out.
    pub(crate) fn from_workspace(ws: &Workspace) -> Self {
        let members: BTreeSet<&str> = ws.packages.iter().map(|p| p.name.as_str()).collect();
        let mut graph = Self::default();
        for pkg in &ws.packages {
            graph.add_crate(&pkg.name);
            for dep in &pkg.dependencies {
                if members.contains(dep.name.as_str()) {
                    graph.add_edge(&pkg.name, &dep.name, dep.kind);
                }
            }
        }
        graph
    }

    /// Adds a crate without dependencies (a no-op if it is already there).
    pub(crate) fn add_crate(&mut self, name: &str) -> &mut Self {
        self.edges.entry(name.to_owned()).or_default();
        self
    }

    /// Adds "`from` depends on `to`" of the given kind.
    pub(crate) fn add_edge(&mut self, from: &str, to: &str, kind: DepKind) -> &mut Self {
        self.add_crate(to);
        self.edges
            .entry(from.to_owned())
            .or_default()
            .insert((to.to_owned(), kind));
        self
    }

    /// Whether the graph has a crate called `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.edges.contains_key(name)
    }
}

/// The dependency rule on the real workspace, plus a violation for each crate the rule names
/// that does not exist (a renamed crate would otherwise silently escape the rule).
fn check_dependency_rule(ws: &Workspace) -> Result<Vec<String>> {
    let graph = DepGraph::from_workspace(ws);
    let mut violations: Vec<String> = [VOCABULARY, SQL_LAYER, TEST_SUPPORT]
        .iter()
        .chain(LEAF_LIBRARIES)
        .chain(NOT_DEPENDABLE)
        .filter(|name| !graph.contains(name))
        .map(|name| format!("the dependency rule names crate `{name}`, but the workspace has none"))
        .collect();
    violations.extend(dependency_rule_violations(&graph));
    Ok(violations)
}

/// Every edge breaking the dependency rule of `gateway.md`, one message each.
///
/// `authz-types` and `authz-db` depend on no workspace crate; `authz-token`, `authz-rbac`,
/// `authz-audit` depend on none except those two; `authz-test-support` is only ever a
/// dev-dependency; nothing depends on `authz-gateway`, `authz-admin`, `xtask` or `authz-fuzz`,
/// except that the fuzz harness may link the gateway. Dev- and
/// build-dependencies count: a test that links another library couples the crates too. A crate's
/// dev-dependency on itself (to turn on a test-only feature) is not an edge.
pub(crate) fn dependency_rule_violations(graph: &DepGraph) -> Vec<String> {
    let mut violations = Vec::new();
    for (from, deps) in &graph.edges {
        for (to, kind) in deps {
            if from == to {
                continue;
            }
            if to == TEST_SUPPORT {
                if *kind != DepKind::Dev {
                    violations.push(format!(
                        "crate `{from}` has a {kind} on `{to}`, but `{TEST_SUPPORT}` may only be \
                         a dev-dependency"
                    ));
                }
            } else if NOT_DEPENDABLE.contains(&to.as_str()) && from != FUZZ_HARNESS {
                violations.push(format!(
                    "crate `{from}` has a {kind} on `{to}`, but nothing may depend on a binary \
                     crate or on xtask"
                ));
            } else if from == VOCABULARY || from == SQL_LAYER {
                violations.push(format!(
                    "crate `{from}` has a {kind} on `{to}`, but `{from}` may depend on no \
                     workspace crate"
                ));
            } else if LEAF_LIBRARIES.contains(&from.as_str()) && to != VOCABULARY && to != SQL_LAYER
            {
                violations.push(format!(
                    "crate `{from}` has a {kind} on `{to}`, but {} may depend on no workspace \
                     crate except `{VOCABULARY}` and `{SQL_LAYER}`",
                    LEAF_LIBRARIES.join(", ")
                ));
            }
        }
    }
    violations
}

/// Files whose first non-empty line is not a `//!` line, under [`DOC_DIRS`].
fn check_module_docs(ws: &Workspace) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for dir in DOC_DIRS {
        for file in rust_files(&ws.root.join(dir))? {
            let text = read(&file)?;
            if !starts_with_module_doc(&text) {
                violations.push(format!(
                    "{}: the first non-empty line must be a `//!` comment saying what the file \
                     is for",
                    ws.rel(&file).display()
                ));
            }
        }
    }
    Ok(violations)
}

/// Whether the first non-empty line of `text` is a `//!` inner doc comment.
pub(crate) fn starts_with_module_doc(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .is_some_and(|line| line.starts_with("//!"))
}

/// Members whose manifest does not opt into the workspace lints.
fn check_workspace_lints(ws: &Workspace) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for pkg in &ws.packages {
        if !has_workspace_lints(&read(&pkg.manifest_path)?) {
            violations.push(format!(
                "crate `{}` ({}): add `[lints]` with `workspace = true`",
                pkg.name,
                ws.rel(&pkg.manifest_path).display()
            ));
        }
    }
    Ok(violations)
}

/// Whether a `Cargo.toml` text sets `lints.workspace = true`, in any of its TOML spellings:
/// a `[lints]` table, a root-level dotted key, or a root-level inline table.
pub(crate) fn has_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        // Comments are cut naively at `#`, which is safe for the short lines that matter here.
        let code: String = line
            .split('#')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if code.starts_with('[') {
            table = Some(code.trim_matches(['[', ']']).to_owned());
            continue;
        }
        let found = match table.as_deref() {
            None => code == "lints.workspace=true" || code == "lints={workspace=true}",
            Some("lints") => code == "workspace=true",
            Some(_) => false,
        };
        if found {
            return true;
        }
    }
    false
}

/// Uses of [`FORBIDDEN_MACROS`] in every member's `src/`.
fn check_unfinished_code(ws: &Workspace) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for pkg in &ws.packages {
        for file in rust_files(&pkg.dir().join("src"))? {
            for (line, mac) in unfinished_code(&read(&file)?) {
                violations.push(format!(
                    "{}:{line}: `{mac}..)` outside tests; finish the code or return an error",
                    ws.rel(&file).display()
                ));
            }
        }
    }
    Ok(violations)
}

/// The 1-based lines of `text` using a forbidden macro, skipping `#[cfg(test)]` items.
///
/// The end of a test item is found by counting braces after the attribute, ignoring `//`
/// comments; braces inside string literals can fool it, which is acceptable for a lint.
pub(crate) fn unfinished_code(text: &str) -> Vec<(usize, &'static str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(rest) = lines[i].trim_start().strip_prefix("#[cfg(test)]") {
            i = end_of_item(rest, &lines[i + 1..]).map_or(lines.len(), |end| i + 1 + end);
            continue;
        }
        for mac in FORBIDDEN_MACROS {
            if lines[i].contains(mac) {
                found.push((i + 1, *mac));
            }
        }
        i += 1;
    }
    found
}

/// Given the rest of the attribute line and the following lines, the index into `following` of
/// the line just after the item ends (`None` if it never ends).
fn end_of_item(rest: &str, following: &[&str]) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    // Index 0 is the attribute line itself, so line `k` of `following` is `k + 1` here.
    for (k, line) in std::iter::once(rest)
        .chain(following.iter().copied())
        .enumerate()
    {
        let code = line.split("//").next().unwrap_or_default();
        for c in code.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if opened && depth == 0 {
                        return Some(k);
                    }
                }
                ';' if !opened => return Some(k),
                _ => {}
            }
        }
    }
    None
}

/// Integration-test binaries other than `tests/it/main.rs`, per member.
fn check_test_layout(ws: &Workspace) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for pkg in &ws.packages {
        let mut binaries: BTreeSet<PathBuf> = pkg
            .targets
            .iter()
            .filter(|t| t.kinds.iter().any(|k| k == "test"))
            .map(|t| t.src_path.clone())
            .collect();
        // Also look at the files, in case `autotests = false` hides one from cargo metadata.
        let tests_dir = pkg.dir().join("tests");
        if tests_dir.is_dir() {
            for entry in fs::read_dir(&tests_dir)
                .with_context(|| format!("could not list {}", tests_dir.display()))?
            {
                let path = entry?.path();
                if path.is_dir() && path.join("main.rs").is_file() {
                    binaries.insert(path.join("main.rs"));
                } else if path.extension().is_some_and(|e| e == "rs") {
                    binaries.insert(path);
                }
            }
        }
        for binary in extra_test_binaries(pkg.dir(), &binaries) {
            violations.push(format!(
                "crate `{}`: integration-test binary {} is not allowed; make it a module of \
                 tests/it/ (one test binary per crate: tests/it/main.rs)",
                pkg.name,
                ws.rel(binary).display()
            ));
        }
    }
    Ok(violations)
}

/// The test binaries of a crate in `crate_dir` other than its one allowed `tests/it/main.rs`.
pub(crate) fn extra_test_binaries<'a>(
    crate_dir: &Path,
    binaries: &'a BTreeSet<PathBuf>,
) -> Vec<&'a PathBuf> {
    let allowed = crate_dir.join("tests").join("it").join("main.rs");
    binaries.iter().filter(|b| **b != allowed).collect()
}

/// All `.rs` files under `dir` (none if it does not exist), skipping `target` and hidden dirs.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if !dir.is_dir() {
        return Ok(files);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type()?.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads the real workspace once per test; `cargo metadata --no-deps` is quick.
    fn workspace() -> Workspace {
        Workspace::load(&cmd::workspace_root()).expect("cargo metadata")
    }

    fn assert_clean(check: &str, violations: Vec<String>) {
        assert!(
            violations.is_empty(),
            "tidy check `{check}` failed:\n  - {}",
            violations.join("\n  - ")
        );
    }

    // --- 1. dependency rule ---

    fn allowed_graph() -> DepGraph {
        let mut g = DepGraph::default();
        g.add_crate("authz-types")
            .add_edge("authz-token", "authz-types", DepKind::Normal)
            .add_edge("authz-rbac", "authz-types", DepKind::Normal)
            .add_edge("authz-audit", "authz-types", DepKind::Dev)
            .add_edge("authz-audit", "authz-db", DepKind::Normal)
            .add_edge("authz-audit", "authz-audit", DepKind::Dev)
            .add_edge("authz-rbac", "authz-test-support", DepKind::Dev)
            .add_edge("authz-test-support", "authz-db", DepKind::Normal)
            .add_edge("authz-gateway", "authz-token", DepKind::Normal)
            .add_edge("authz-gateway", "authz-rbac", DepKind::Normal)
            .add_edge("authz-admin", "authz-audit", DepKind::Normal)
            .add_crate("xtask");
        g
    }

    #[test]
    fn dependency_rule_accepts_the_intended_shape() {
        assert_eq!(
            dependency_rule_violations(&allowed_graph()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn dependency_rule_reports_each_broken_edge() {
        // Each forbidden edge, and the kind of dependency its violation names.
        use DepKind::{Build, Dev, Normal};
        let broken = [
            ("authz-types", "authz-token", Normal, "dependency"),
            ("authz-rbac", "authz-audit", Dev, "dev-dependency"),
            ("authz-token", "authz-gateway", Build, "build-dependency"),
            ("authz-gateway", "authz-admin", Normal, "dependency"),
            ("authz-admin", "xtask", Dev, "dev-dependency"),
            ("authz-db", "authz-types", Normal, "dependency"),
            ("authz-token", "authz-test-support", Normal, "dependency"),
            ("authz-audit", "authz-rbac", Normal, "dependency"),
        ];
        let mut g = allowed_graph();
        for (from, to, kind, _) in broken {
            g.add_edge(from, to, kind);
        }
        let violations = dependency_rule_violations(&g);
        for (from, to, _, named) in broken {
            let needle = format!("`{from}` has a {named} on `{to}`");
            assert!(
                violations.iter().any(|v| v.contains(&needle)),
                "no violation mentions {needle}: {violations:#?}"
            );
        }
        assert_eq!(violations.len(), broken.len(), "{violations:#?}");
    }

    #[test]
    fn dependency_rule_holds_in_the_workspace() {
        let graph = DepGraph::from_workspace(&workspace());
        // If a crate were renamed the rule would silently stop applying to it.
        for name in [VOCABULARY, SQL_LAYER, TEST_SUPPORT]
            .iter()
            .chain(LEAF_LIBRARIES)
            .chain(NOT_DEPENDABLE)
        {
            assert!(graph.contains(name), "workspace has no crate `{name}`");
        }
        assert_clean("dependency rule", dependency_rule_violations(&graph));
    }

    #[test]
    fn metadata_parsing_keeps_members_kinds_and_targets() {
        let json = serde_json::json!({
            "workspace_root": "/ws",
            "workspace_members": ["a 0.1.0 (path+file:///ws/a)"],
            "packages": [{
                "name": "a",
                "id": "a 0.1.0 (path+file:///ws/a)",
                "manifest_path": "/ws/a/Cargo.toml",
                "dependencies": [
                    {"name": "b", "kind": null},
                    {"name": "c", "kind": "dev"},
                    {"name": "d", "kind": "build"}
                ],
                "targets": [{"kind": ["test"], "src_path": "/ws/a/tests/x.rs"}]
            }]
        });
        let ws = Workspace::from_metadata(&json).expect("parse");
        assert_eq!(ws.root, Path::new("/ws"));
        let [pkg] = ws.packages.as_slice() else {
            panic!("one package expected: {ws:#?}")
        };
        let kinds: Vec<DepKind> = pkg.dependencies.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [DepKind::Normal, DepKind::Dev, DepKind::Build]);
        assert_eq!(pkg.dir(), Path::new("/ws/a"));
        assert_eq!(pkg.targets[0].src_path, Path::new("/ws/a/tests/x.rs"));
    }

    // --- 2. module docs ---

    #[test]
    fn module_doc_must_be_the_first_non_empty_line() {
        assert!(starts_with_module_doc("//! What this is for.\nfn f() {}\n"));
        assert!(starts_with_module_doc("\n\n   //! Indented is fine.\n"));
        assert!(!starts_with_module_doc(
            "// A plain comment.\n//! Too late.\n"
        ));
        assert!(!starts_with_module_doc("/// An item doc.\nfn f() {}\n"));
        assert!(!starts_with_module_doc("use std::fs;\n"));
        assert!(!starts_with_module_doc(""));
    }

    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        assert_clean(
            "module docs",
            check_module_docs(&workspace()).expect("check"),
        );
    }

    // --- 3. workspace lints ---

    #[test]
    fn workspace_lints_are_recognised_in_every_spelling() {
        assert!(has_workspace_lints(
            "[package]\nname = \"a\"\n\n[lints]\nworkspace = true # shared\n"
        ));
        assert!(has_workspace_lints("lints.workspace = true\n[package]\n"));
        assert!(has_workspace_lints("lints = { workspace = true }\n"));
        assert!(!has_workspace_lints("[package]\nname = \"a\"\n"));
        assert!(!has_workspace_lints("[lints]\nworkspace = false\n"));
        assert!(!has_workspace_lints("[lints]\n# workspace = true\n"));
        assert!(!has_workspace_lints("[package]\nworkspace = true\n"));
        assert!(!has_workspace_lints(
            "[lints]\n[dependencies]\nworkspace = true\n"
        ));
    }

    #[test]
    fn every_member_uses_the_workspace_lints() {
        assert_clean(
            "workspace lints",
            check_workspace_lints(&workspace()).expect("check"),
        );
    }

    // --- 4. unfinished code ---

    #[test]
    fn unfinished_code_is_found_outside_test_items_only() {
        let [todo, unimpl] = FORBIDDEN_MACROS else {
            panic!("two forbidden macros expected")
        };
        let text = format!(
            "//! Example.\n\
             fn a() {{ {todo}) }}\n\
             #[cfg(test)]\n\
             mod tests {{\n\
                 fn b() {{ {unimpl}) }}\n\
             }}\n\
             fn c() {{ {unimpl}\"x\") }}\n\
             #[cfg(test)]\n\
             mod more;\n\
             fn d() {{ {todo}) }}\n"
        );
        assert_eq!(
            unfinished_code(&text),
            [(2, *todo), (7, *unimpl), (10, *todo)]
        );
    }

    #[test]
    fn no_unfinished_code_in_sources() {
        assert_clean(
            "unfinished code",
            check_unfinished_code(&workspace()).expect("check"),
        );
    }

    // --- 5. test layout ---

    #[test]
    fn only_tests_it_main_is_an_allowed_test_binary() {
        let dir = Path::new("/ws/crates/a");
        let binaries: BTreeSet<PathBuf> = [
            dir.join("tests/it/main.rs"),
            dir.join("tests/smoke.rs"),
            dir.join("tests/other/main.rs"),
        ]
        .into();
        let extra = extra_test_binaries(dir, &binaries);
        assert_eq!(
            extra,
            [
                &dir.join("tests/other/main.rs"),
                &dir.join("tests/smoke.rs")
            ]
        );
        let only_it: BTreeSet<PathBuf> = [dir.join("tests/it/main.rs")].into();
        assert!(extra_test_binaries(dir, &only_it).is_empty());
    }

    #[test]
    fn at_most_one_integration_test_binary_per_crate() {
        assert_clean(
            "test layout",
            check_test_layout(&workspace()).expect("check"),
        );
    }
}
