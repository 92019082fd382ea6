//! The workspace's layout rules, kept by CI: every crate lives in a directory named after its
//! package, no file of code is over 800 lines (its tests excepted), and no two files of one crate
//! import each other in a circle, so each crate's modules form a DAG.
//!
//! Imports are read from the source text: `crate::`, `super::` and `self::` paths, and paths
//! starting with a child module the file declares, in `use` items and in code alike. `mod`
//! declarations and `pub use` re-exports are not imports (a module root re-exporting its
//! children's items is how a module presents them). Comments, string literals and everything
//! from a file's first `#[cfg(test)]` on are skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines of code a file may hold before its tests.
const MAX_CODE_LINES: usize = 800;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every member's directory, from the workspace manifest.
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap();
    manifest[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: up to its first `#[cfg(test)]`, without comments and string literals.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = line.replace("'\\\"'", "' '").replace("'\"'", "' '");
        let line = line.as_str();
        let mut in_string = false;
        let mut escaped = false;
        let mut previous = ' ';
        for c in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
                continue;
            }
            if c == '"' {
                in_string = true;
                continue;
            }
            if c == '/' && previous == '/' {
                code.pop();
                break;
            }
            code.push(c);
            previous = c;
        }
        code.push('\n');
    }
    code
}

/// The module path of a file under `src/`: `lib.rs`/`main.rs` are the root, `a/b.rs` is `a::b`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        Vec::new()
    } else {
        parts
    }
}

/// Child modules a file declares (`mod x;` / `pub mod x;`).
fn declared_children(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(|name| name.trim().to_owned())
        })
        .collect()
}

/// The paths a `use` tree names, braces expanded: `a::{b, c::d}` is `a::b` and `a::c::d`.
fn use_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    match tree.find('{') {
        None => {
            let mut path = prefix.to_vec();
            path.extend(
                tree.split(" as ")
                    .next()
                    .unwrap_or(tree)
                    .split("::")
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty() && s != "*"),
            );
            if path.len() > 1 {
                out.push(path);
            }
        }
        Some(open) => {
            let mut path = prefix.to_vec();
            path.extend(
                tree[..open]
                    .split("::")
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
            );
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        use_tree(&path, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            use_tree(&path, &inner[start..], out);
        }
    }
}

/// Every `a::b::c` path in the code, as its segments, skipping `mod` lines and `pub use` items.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut statement: Option<(bool, String)> = None;
    for line in code.lines() {
        let trimmed = line.trim_start();
        // `use` items, whole (they may span lines), braces expanded; re-exports are skipped.
        if statement.is_none() {
            for (prefix, reexport) in [
                ("use ", false),
                ("pub use ", true),
                ("pub(crate) use ", true),
                ("pub(super) use ", true),
            ] {
                if let Some(rest) = trimmed.strip_prefix(prefix) {
                    statement = Some((reexport, String::from(rest)));
                    break;
                }
            }
            if statement.is_none() {
                if trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ") {
                    continue;
                }
            } else if let Some((_, text)) = &statement
                && !text.contains(';')
            {
                continue;
            }
        } else if let Some((_, text)) = &mut statement {
            text.push_str(trimmed);
            if !trimmed.contains(';') {
                continue;
            }
        }
        if let Some((reexport, text)) = statement.take() {
            if !reexport {
                use_tree(&[], text.trim_end().trim_end_matches(';'), &mut found);
            }
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
            if boundary && (chars[i].is_alphabetic() || chars[i] == '_') {
                let mut segments = Vec::new();
                let mut j = i;
                loop {
                    let start = j;
                    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                    segments.push(chars[start..j].iter().collect::<String>());
                    if j + 2 < chars.len()
                        && chars[j] == ':'
                        && chars[j + 1] == ':'
                        && (chars[j + 2].is_alphabetic() || chars[j + 2] == '_')
                    {
                        j += 2;
                    } else {
                        break;
                    }
                }
                if segments.len() > 1 {
                    found.push(segments);
                }
                i = j.max(i + 1);
            } else {
                i += 1;
            }
        }
    }
    found
}

/// The module file a path in module `from` refers to, if it names one of the crate's files.
fn target(
    from: &[String],
    children: &BTreeSet<String>,
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path[0].as_str() {
        "crate" => Vec::new(),
        "self" => from.to_vec(),
        "super" => from.to_vec(),
        first if children.contains(first) => from.to_vec(),
        _ => return None,
    };
    let mut rest = path;
    if matches!(path[0].as_str(), "crate" | "self") {
        rest = &path[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut deepest = base.clone();
    let mut walk = base;
    for segment in rest {
        walk.push(segment.clone());
        if modules.contains(&walk) {
            deepest = walk.clone();
        } else {
            break;
        }
    }
    Some(deepest)
}

/// A cycle in the graph, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn every_crate_directory_is_named_after_its_package() {
    for member in members() {
        let manifest =
            std::fs::read_to_string(workspace().join(&member).join("Cargo.toml")).unwrap();
        let package = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .unwrap()
            .trim_matches('"');
        // The protocol crate is `csi-proto` in `proto/`: the one name the CSI world expects.
        if member == "proto" {
            assert_eq!(package, "csi-proto");
            continue;
        }
        assert_eq!(package, member, "the package in {member}/ is {package}");
    }
}

#[test]
fn no_file_of_code_is_over_800_lines() {
    let mut over = Vec::new();
    for member in members() {
        let mut files = Vec::new();
        rust_files(&workspace().join(&member).join("src"), &mut files);
        for file in files {
            // A file that is a test module of its parent holds tests only.
            if file.file_stem().is_some_and(|s| s == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code_lines = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
                .count();
            if code_lines > MAX_CODE_LINES {
                over.push(format!("{} ({code_lines} lines)", file.display()));
            }
        }
    }
    assert!(
        over.is_empty(),
        "files of code over {MAX_CODE_LINES} lines: {over:#?}"
    );
}

#[test]
fn the_files_of_each_crate_import_each_other_without_cycles() {
    let mut cycles = Vec::new();
    for member in members() {
        let src = workspace().join(&member).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        // A crate with a library and binaries: each root is its own tree; main.rs's tree is
        // small and shares no files with the library's, so one graph of files serves both.
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for file in &files {
            let from = module_of(&src, file);
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let children = declared_children(&code);
            let edges = graph.entry(from.clone()).or_default();
            for path in paths(&code) {
                if let Some(to) = target(&from, &children, &path, &modules)
                    && to != from
                {
                    edges.insert(to);
                }
            }
        }
        if let Some(cycle) = find_cycle(&graph) {
            let names: Vec<String> = cycle.iter().map(|m| name(m)).collect();
            cycles.push(format!("{member}: {}", names.join(" -> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "files importing each other in a circle: {cycles:#?}"
    );
}

#[test]
fn the_import_reader_sees_what_it_must() {
    let code = code_of(
        "use crate::a::b::C;\nuse super::{x, y::{self as w}};\nuse crate::{\n  a,\n  m::child::K,\n};\npub use child::Thing;\nlet q = '\"';\nmod child;\nfn f() { child::run(\"crate::z::Q\"); } // crate::yy\n#[cfg(test)]\nuse crate::t;\n",
    );
    let found = paths(&code);
    assert!(found.contains(&vec!["crate".into(), "a".into(), "b".into(), "C".into()]));
    assert!(found.contains(&vec!["super".into(), "x".into()]));
    assert!(found.contains(&vec!["super".into(), "y".into(), "self".into()]));
    assert!(found.contains(&vec!["crate".into(), "a".into()]));
    assert!(found.contains(&vec![
        "crate".into(),
        "m".into(),
        "child".into(),
        "K".into()
    ]));
    assert!(found.contains(&vec!["child".into(), "run".into()]));
    assert!(
        !found.iter().any(|p| p.contains(&"Thing".to_owned())),
        "re-exports skipped"
    );
    assert!(
        !found.iter().any(|p| p.contains(&"z".to_owned())),
        "strings skipped"
    );
    assert!(
        !found.iter().any(|p| p.contains(&"yy".to_owned())),
        "comments skipped"
    );
    assert!(
        !found.iter().any(|p| p.contains(&"t".to_owned())),
        "tests skipped"
    );
    let modules: BTreeSet<Vec<String>> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["x".into()],
        vec!["m".into()],
        vec!["m".into(), "child".into()],
    ]
    .into_iter()
    .collect();
    let from = vec!["m".to_owned()];
    let children: BTreeSet<String> = ["child".to_owned()].into();
    let to = |p: &[&str]| {
        let p: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
        target(&from, &children, &p, &modules)
    };
    assert_eq!(
        to(&["crate", "a", "b", "C"]),
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(to(&["super", "x", "f"]), Some(vec!["x".into()]));
    assert_eq!(
        to(&["child", "run"]),
        Some(vec!["m".into(), "child".into()])
    );
    assert_eq!(to(&["std", "fs", "read"]), None);
    let mut graph = BTreeMap::new();
    graph.insert(vec!["a".to_owned()], BTreeSet::from([vec!["b".to_owned()]]));
    graph.insert(vec!["b".to_owned()], BTreeSet::from([vec!["a".to_owned()]]));
    assert!(find_cycle(&graph).is_some());
    graph.insert(vec!["b".to_owned()], BTreeSet::new());
    assert!(find_cycle(&graph).is_none());
}
