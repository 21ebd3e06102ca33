//! The layout of src/ stays as docs/architecture.md draws it: this reads the sources
//! and fails on an import cycle and on a module below the CLI that imports it.
//!
//! Modules are files (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`). A reference is
//! any path that starts with `crate::`, `super::` or `self::`, grouped `use` trees
//! included, or with the name of a child module; it points at the deepest module its
//! segments name. The rule, checked at every level: among the children of one module
//! (each with everything under it), the references form no cycle. A module's own file
//! may use its children and be used by them (`image/mod.rs` dispatches to its
//! adapters, which take its types); siblings may not lean on each other both ways, and
//! neither may the crate's top-level modules. Unit tests (`#[cfg(test)] mod tests`)
//! are left out: they see everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The command line and its parsing: the top, which only the binary may use.
const CLI: &str = "cli";
/// Beside it at the top: the fuzz harness, which feeds the parser what the binary would.
const BESIDE_CLI: &str = "fuzzing";

type Module = Vec<String>;

struct Source {
    module: Module,
    text: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|n| n != "main.rs"))
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Source {
                module,
                text: without_tests(&without_comments(&text)),
            }
        })
        .collect()
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The text with `//` comments, `/* */` comments and string literals blanked out, so
/// that a path named in a doc comment or a message is not an import.
fn without_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if text[i..].starts_with("//") {
            let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
            i = end;
        } else if text[i..].starts_with("/*") {
            let end = text[i + 2..]
                .find("*/")
                .map_or(text.len(), |n| i + 2 + n + 2);
            i = end;
        } else if text[i..].starts_with("r#\"") || text[i..].starts_with("r\"") {
            let hashes = text[i + 1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..]
                .find(&close)
                .map_or(text.len(), |n| start + n + close.len());
            out.push_str("\"\"");
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if bytes[i] == b'\'' && bytes.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' or '{'.
            out.push_str("' '");
            i += 3;
        } else if bytes[i] == b'\'' && bytes.get(i + 1) == Some(&b'\\') {
            let end = text[i + 2..]
                .find('\'')
                .map_or(text.len(), |n| i + 2 + n + 1);
            out.push_str("' '");
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The text without its `#[cfg(test)]` items.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at its matching brace, or at a `;` before any brace.
        let open = after.find('{');
        let semi = after.find(';');
        let end = match (open, semi) {
            (Some(open), Some(semi)) if semi < open => semi + 1,
            (Some(open), _) => {
                let mut depth = 0;
                let mut end = after.len();
                for (i, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(semi)) => semi + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path in `text`: the segments of each path, `use` groups expanded.
fn paths(text: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = chars[i].is_ascii_alphabetic() || chars[i] == '_';
        let after_path = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
        let after_ident = i >= 1 && is_ident(chars[i - 1]);
        if starts_word && !after_path && !after_ident {
            let (trees, end) = tree(&chars, i);
            found.extend(trees.into_iter().filter(|p| p.len() > 1 || p[0] == "*"));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// The paths of the use tree (or plain path) at `at`, and where it ends.
fn tree(chars: &[char], at: usize) -> (Vec<Vec<String>>, usize) {
    let mut i = at;
    let mut prefix = Vec::new();
    loop {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        if i == start {
            if chars.get(i) == Some(&'*') {
                prefix.push("*".to_owned());
                return (vec![prefix], i + 1);
            }
            if chars.get(i) == Some(&'{') {
                let mut all = Vec::new();
                i += 1;
                loop {
                    while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                        i += 1;
                    }
                    if i >= chars.len() || chars[i] == '}' {
                        break;
                    }
                    let (inner, end) = tree(chars, i);
                    for path in inner {
                        let mut whole = prefix.clone();
                        whole.extend(path.into_iter().filter(|s| s != "self"));
                        all.push(whole);
                    }
                    // Skip `as NAME` and anything else up to the next item.
                    i = end;
                    while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                        if chars[i] == '{' {
                            break;
                        }
                        i += 1;
                    }
                }
                return (all, i + 1);
            }
            return (
                vec![prefix].into_iter().filter(|p| !p.is_empty()).collect(),
                i,
            );
        }
        prefix.push(chars[start..i].iter().collect());
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// The module a path in `from` points at, if it names one of the crate's.
fn resolve(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut at: Module;
    let mut rest = path;
    match path.first()?.as_str() {
        "crate" => {
            at = Vec::new();
            rest = &path[1..];
        }
        "super" | "self" => {
            at = from.clone();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        at.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        "ecr_push" => {
            at = Vec::new();
            rest = &path[1..];
        }
        child => {
            // A child module named without `self::`.
            let mut candidate = from.clone();
            candidate.push(child.to_owned());
            if !modules.contains(&candidate) {
                return None;
            }
            at = from.clone();
        }
    }
    for segment in rest {
        let mut deeper = at.clone();
        deeper.push(segment.clone());
        if modules.contains(&deeper) {
            at = deeper;
        } else {
            break;
        }
    }
    Some(at)
}

/// Every reference between two different modules: (from, to).
fn references() -> BTreeSet<(Module, Module)> {
    let sources = sources();
    let modules: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    let mut edges = BTreeSet::new();
    for source in &sources {
        for path in paths(&source.text) {
            if let Some(to) = resolve(&source.module, &path, &modules)
                && to != source.module
            {
                edges.insert((source.module.clone(), to));
            }
        }
    }
    edges
}

/// The cycles among the children of `parent`: each a set of children that reach one
/// another, with the references that tie them (`from -> to`, as files).
fn cycles_under(parent: &Module, edges: &BTreeSet<(Module, Module)>) -> Vec<String> {
    let child_of = |m: &Module| -> Option<String> {
        (m.len() > parent.len() && m.starts_with(parent)).then(|| m[parent.len()].clone())
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges {
        if let (Some(a), Some(b)) = (child_of(from), child_of(to))
            && a != b
        {
            graph.entry(a).or_default().insert(b);
        }
    }
    let reach = |start: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut next = vec![start.clone()];
        while let Some(node) = next.pop() {
            for to in graph.get(&node).into_iter().flatten() {
                if seen.insert(to.clone()) {
                    next.push(to.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|node| (node, reach(node))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for (node, reached) in &reaches {
        if !reached.contains(*node) || found.iter().any(|c| c.contains(*node)) {
            continue;
        }
        let component: BTreeSet<String> = reached
            .iter()
            .filter(|other| reaches.get(other).is_some_and(|r| r.contains(*node)))
            .cloned()
            .collect();
        found.push(component);
    }
    found
        .into_iter()
        .map(|component| {
            let ties: Vec<String> = edges
                .iter()
                .filter(|(from, to)| {
                    let (a, b) = (child_of(from), child_of(to));
                    a != b
                        && a.is_some_and(|a| component.contains(&a))
                        && b.is_some_and(|b| component.contains(&b))
                })
                .map(|(from, to)| format!("{} -> {}", from.join("::"), to.join("::")))
                .collect();
            let names: Vec<String> = component.into_iter().collect();
            format!("{} ({})", names.join(", "), ties.join("; "))
        })
        .collect()
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let edges = references();
    let mut parents: BTreeSet<Module> = BTreeSet::new();
    for (from, _) in &edges {
        for n in 0..from.len() {
            parents.insert(from[..n].to_vec());
        }
    }
    let cycles: Vec<String> = parents
        .iter()
        .flat_map(|parent| {
            let base = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            cycles_under(parent, &edges)
                .into_iter()
                .map(move |cycle| format!("under {base}: {cycle}"))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn nothing_below_the_cli_imports_it() {
    let importers: Vec<String> = references()
        .into_iter()
        .filter(|(from, to)| {
            to.first().is_some_and(|m| m == CLI)
                && from.first().is_none_or(|m| m != CLI && m != BESIDE_CLI)
        })
        .map(|(from, to)| format!("{} uses {}", from.join("::"), to.join("::")))
        .collect();
    assert!(importers.is_empty(), "{}", importers.join("\n"));
}

#[test]
fn the_reader_sees_imports_as_written() {
    // The reader itself, on the shapes the sources use: a grouped use, a child named
    // without self::, a path in a string, a test module.
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["image".to_owned()],
        vec!["image".to_owned(), "oci".to_owned()],
        vec!["report".to_owned()],
        vec!["digest".to_owned()],
    ]
    .into_iter()
    .collect();
    let text = without_tests(&without_comments(
        "use crate::{digest::Digest, report::{self, human_bytes}};\n\
         // crate::cli::Push in a comment\n\
         fn f() { let _ = \"crate::cli\"; oci::open(); }\n\
         #[cfg(test)]\nmod tests { use crate::cli::Push; }\n",
    ));
    let image = vec!["image".to_owned()];
    let found: BTreeSet<Module> = paths(&text)
        .iter()
        .filter_map(|p| resolve(&image, p, &modules))
        .collect();
    let expected: BTreeSet<Module> = [
        vec!["digest".to_owned()],
        vec!["report".to_owned()],
        vec!["image".to_owned(), "oci".to_owned()],
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
}
