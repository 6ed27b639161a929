//! The crate's module layering: each module of `src/` refers only to the modules listed before it
//! in lib.rs's layer list, so the module graph has no cycle (a layer that reaches up is how the
//! old `verify` → `revocation` → `jwks` → `keys` → `verify` cycle came about).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// `src` with comments and string and character literals blanked out, so only code is
/// searched.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
                continue;
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
            }
            // A raw string (`r"…"`, `r#"…"#`, `br#"…"#`); `r#ident` is left alone.
            'r' if !prev_ident || (c[i - 1] == 'b' && !(i > 1 && is_ident(c[i - 2]))) => {
                let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
                if c.get(i + 1 + hashes) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                i += hashes + 2;
                while i < c.len()
                    && !(c[i] == '"' && c[i + 1..].iter().take(hashes).all(|&ch| ch == '#'))
                {
                    i += 1;
                }
                i += hashes;
                out.push_str("\"\"");
            }
            // A character literal (`'x'`, `'\''`, `'\u{1F600}'`); otherwise a lifetime.
            '\'' if c.get(i + 1) == Some(&'\\') => {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                out.push_str("' '");
            }
            '\'' if c.get(i + 2) == Some(&'\'') => {
                i += 2;
                out.push_str("' '");
            }
            ch => out.push(ch),
        }
        i += 1;
    }
    out
}

/// The first name after each `crate::` in `code` (for `crate::{a, b::c}` both `a` and `b`),
/// and each of `layers` named right after `super::`.
fn crate_refs(code: &str, layers: &[&str]) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect()
    };
    let mut refs = Vec::new();
    for (prefix, modules_only) in [("crate::", false), ("super::", true)] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$') {
                continue;
            }
            let rest = code[at + prefix.len()..].trim_start();
            let names = if let Some(group) = rest.strip_prefix('{') {
                let mut names = Vec::new();
                let mut depth = 0;
                let mut expect = true;
                for (k, ch) in group.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => expect = true,
                        ch if expect && !ch.is_whitespace() => {
                            names.push(ident(&group[k..]));
                            expect = false;
                        }
                        _ => {}
                    }
                }
                names
            } else {
                vec![ident(rest)]
            };
            refs.extend(
                names
                    .into_iter()
                    .filter(|n| !modules_only || layers.contains(&n.as_str())),
            );
        }
    }
    refs
}

/// The names lib.rs re-exports (`pub use m::{A, B};`), each mapped to its module.
fn reexports(lib_code: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (at, _) in lib_code.match_indices("pub use ") {
        let statement = &lib_code[at + "pub use ".len()..];
        let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
        let Some((module, items)) = statement.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let name = item.rsplit(" as ").next().unwrap_or(item);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            map.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    map
}

/// Items defined in lib.rs itself (not re-exported): the bottom layer.
fn root_items(lib_code: &str) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    for kind in ["enum", "struct", "fn", "const", "static", "type", "trait"] {
        let pattern = format!("{kind} ");
        for (at, _) in lib_code.match_indices(&pattern) {
            let name: String = lib_code[at + pattern.len()..]
                .chars()
                .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
                .collect();
            items.insert(name);
        }
    }
    items
}

/// Every reference in module `module` (source `src`) to a module at or after its own layer.
fn violations(
    module: &str,
    src: &str,
    layers: &[&str],
    reexports: &HashMap<String, String>,
    roots: &BTreeSet<String>,
) -> Vec<String> {
    let position = |m: &str| layers.iter().position(|l| *l == m);
    let Some(own) = position(module) else {
        return vec![format!("{module}.rs is not one of the layers")];
    };
    let mut found = Vec::new();
    for name in crate_refs(&code_only(src), layers) {
        let target = if position(&name).is_some() {
            name.clone()
        } else if let Some(m) = reexports.get(&name) {
            m.clone()
        } else if roots.contains(&name) {
            continue;
        } else {
            found.push(format!(
                "{module}: crate::{name} is not a known module or item"
            ));
            continue;
        };
        match position(&target) {
            Some(t) if t < own => {}
            _ => found.push(format!(
                "{module} (layer {own}) refers to crate::{name} in {target}; \
                 a module may refer only to the layers before its own"
            )),
        }
    }
    found
}

/// The layer list in lib.rs: the comment line after the one naming this file.
fn declared_layers(lib_text: &str) -> Vec<String> {
    let mut lines = lib_text.lines();
    lines
        .find(|l| l.starts_with("//") && l.contains("tests/it/layering.rs"))
        .expect("lib.rs names tests/it/layering.rs in the comment above the layer list");
    let list = lines.next().and_then(|l| l.strip_prefix("// ")).expect(
        "the line after the one naming tests/it/layering.rs lists the layers: `// a, b, c`",
    );
    list.split(',').map(|m| m.trim().to_owned()).collect()
}

#[test]
fn modules_refer_only_to_earlier_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_text = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let layers = declared_layers(&lib_text);
    let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
    let lib = code_only(&lib_text);
    let (reexports, roots) = (reexports(&lib), root_items(&lib));

    let mut problems = Vec::new();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            problems.push(format!("src/{name}/: nested modules are not layered"));
            continue;
        }
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module == "lib" {
            continue;
        }
        files.insert(module.to_owned());
        let text = std::fs::read_to_string(&path).expect("module source");
        problems.extend(violations(module, &text, &layers, &reexports, &roots));
    }
    let listed: BTreeSet<String> = layers.iter().map(|l| (*l).to_owned()).collect();
    assert_eq!(listed.len(), layers.len(), "a layer is listed twice");
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        files, listed,
        "src/*.rs and the layer list in lib.rs differ"
    );
    assert_eq!(
        declared, listed,
        "the `mod` declarations and the layer list differ"
    );

    // The root's own items sit below every layer, so outside its `pub use` lines lib.rs may not
    // use any module.
    let mut root = lib.clone();
    while let Some(at) = root.find("pub use ") {
        let end = root[at..].find(';').map_or(root.len(), |e| at + e + 1);
        root.replace_range(at..end, "");
    }
    for module in &layers {
        for (at, _) in root.match_indices(&format!("{module}::")) {
            let before = root[..at].chars().next_back();
            if !before.is_some_and(|ch| ch.is_alphanumeric() || ch == '_') {
                problems.push(format!("lib.rs refers to {module}:: outside a `pub use`"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_through_comments_literals_groups_and_reexports() {
    let layers = ["error", "json", "rules", "keys", "verify", "mint"];
    let lib = "pub use verify::{MAX_TOKEN_BYTES, Verifier};\npub enum Error {}\n";
    let (re, roots) = (reexports(lib), root_items(lib));
    let count = |module: &str, src: &str| violations(module, src, &layers, &re, &roots).len();

    assert_eq!(
        count("keys", "use crate::Error;\nuse crate::rules::kid_is_safe;"),
        0
    );
    assert_eq!(count("keys", "use crate::verify::Verifier;"), 1);
    assert_eq!(count("keys", "fn f() -> crate::Verifier { todo!() }"), 1);
    assert_eq!(
        count("keys", "use crate::{Error, rules::x, verify::{A, B}};"),
        1
    );
    assert_eq!(
        count(
            "keys",
            "use crate::{\n    json::{self, Json},\n    mint,\n};"
        ),
        1
    );
    assert_eq!(count("keys", "crate::keys::f();"), 1);
    assert_eq!(count("keys", "crate::nowhere::f();"), 1);
    assert_eq!(count("keys", "fn f() { super::verify::g() }"), 1);
    assert_eq!(count("keys", "mod tests { use super::*; }"), 0);
    assert_eq!(count("unlisted", ""), 1);
    for hidden in [
        "// use crate::verify::X;",
        "/// [`V`](crate::verify::V)",
        "/* a /* nested */ crate::verify::X */",
        r#"const S: &str = "crate::verify::X \" crate::mint";"#,
        r##"const S: &[u8] = br#"crate::verify "x" "#;"##,
        "let q = '\"'; let s = \"crate::verify\";",
    ] {
        assert_eq!(count("keys", hidden), 0, "{hidden}");
    }
    // Literals and lifetimes end where they should: what follows them is still code.
    for visible in [
        "let q = '\"'; crate::verify::f();",
        "let q = '\\''; crate::verify::f();",
        "fn f<'a>(x: &'a str) { crate::verify::g(x) }",
        r##"let s = r#"a"#; crate::verify::f();"##,
        "let s = \"a\\\\\"; crate::verify::f();",
    ] {
        assert_eq!(count("keys", visible), 1, "{visible}");
    }
}
