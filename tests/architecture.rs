//! The crate's shape, checked: no import cycle between sibling modules at any level
//! of the library (the top level, inside `model/`, inside `model/ops/`, ...), and no
//! path from the library into the command line or the TUI.
//!
//! Edges are read from the source: every `crate::`, `super::` and `self::` path and
//! every path through a child module, `use` groups expanded, comments skipped. A
//! re-export of a module's own descendant (`pub use child::Item` in a `mod.rs`) is
//! its facade, not a dependency. A child that names an item through its parent's
//! re-export depends on the parent: siblings use each other's real paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`model::ops::conv`; the crate root is empty) to its source.
type Sources = BTreeMap<String, String>;
/// Module to the modules its code names.
type Edges = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_library_has_no_import_cycle() {
    let sources = library_sources();
    assert!(sources.len() > 50, "read only {} modules", sources.len());
    let cycles = cycles(&edges(&sources));
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_library_never_reaches_into_the_cli_or_the_tui() {
    let sources = library_sources();
    for (module, text) in &sources {
        assert!(
            !module.starts_with("cli") && !module.starts_with("tui"),
            "`{module}` is declared in the library"
        );
        for path in paths(module, &children(&sources, module), text) {
            assert!(
                !path.starts_with("cli::") && !path.starts_with("tui::"),
                "`{module}` names `crate::{path}`"
            );
        }
    }
}

/// The check finds what it is for: cycles planted at the top level, between the
/// children of a module, through a `use` group and through `super::`.
#[test]
fn a_planted_cycle_is_found() {
    let plant = |files: &[(&str, &str)]| -> Vec<String> {
        let sources = files
            .iter()
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect();
        cycles(&edges(&sources))
    };
    let top = plant(&[
        ("", "pub mod a;\npub mod b;"),
        ("a", "use crate::b::Thing;"),
        ("b", "pub fn f() { crate::a::g() }"),
    ]);
    assert_eq!(top, ["a -> b -> a"]);
    let nested = plant(&[
        ("", "pub mod m;"),
        ("m", "mod x;\nmod y;\nmod z;\npub use x::X;"),
        ("m::x", "use super::{y::Y, z};"),
        ("m::y", "// crate::m::x is only a comment\nstruct Y;"),
        ("m::z", "use super::super::m::x::X;"),
    ]);
    assert_eq!(nested, ["m: x -> z -> x"]);
    let through_parent = plant(&[
        ("", "pub mod m;"),
        ("m", "mod x;\npub use x::X;\nfn f() { x::helper() }"),
        ("m::x", "use super::Model;"),
    ]);
    assert_eq!(through_parent, ["m: m -> x -> m"]);
    let inline = plant(&[
        ("", "pub mod m;"),
        ("m", "pub mod x;\nfn f() { x::g() }"),
        (
            "m::x",
            "pub mod inner {\n    use super::Thing;\n}\npub fn g() {}",
        ),
    ]);
    assert!(
        inline.is_empty(),
        "`super` in an inline module is its file: {inline:?}"
    );
    let multiline = plant(&[
        ("", "pub mod a;\npub mod b;"),
        ("a", "use crate::{\n    b::Thing,\n};"),
        (
            "b",
            "use crate::a;\nfn f() { let _ = '{'; let _ = \"{ \\\n crate::nothing::x\"; }",
        ),
    ]);
    assert_eq!(
        multiline,
        ["a -> b -> a"],
        "a `use` over several lines is one"
    );
    let clean = plant(&[
        ("", "pub mod a;\npub mod b;"),
        ("a", "use crate::b;"),
        ("b", "struct B;"),
    ]);
    assert!(clean.is_empty(), "{clean:?}");
}

/// The library's modules: `src/lib.rs` and every file below the modules it
/// declares.
fn library_sources() -> Sources {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut sources = Sources::from([(String::new(), lib.clone())]);
    for top in declared_modules(&lib) {
        let file = src.join(format!("{top}.rs"));
        let dir = src.join(&top);
        if file.is_file() {
            sources.insert(top.clone(), std::fs::read_to_string(&file).unwrap());
        }
        if dir.is_dir() {
            read_dir(&dir, &top, &mut sources);
        }
    }
    sources
}

fn read_dir(dir: &Path, module: &str, sources: &mut Sources) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            read_dir(&path, &format!("{module}::{name}"), sources);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let key = match name.as_str() {
                "mod" => module.to_owned(),
                _ => format!("{module}::{name}"),
            };
            sources.insert(key, text);
        }
    }
}

/// The names of the `mod` items a file declares.
fn declared_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("pub ")
                .or_else(|| l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.trim_end_matches(';').trim();
            name.chars()
                .all(|c| c.is_alphanumeric() || c == '_')
                .then(|| name.to_owned())
        })
        .collect()
}

/// The direct children of `module` among the sources.
fn children(sources: &Sources, module: &str) -> BTreeSet<String> {
    sources
        .keys()
        .filter_map(|m| {
            let rest = match module {
                "" => m.as_str(),
                _ => m.strip_prefix(module)?.strip_prefix("::")?,
            };
            (!rest.is_empty() && !rest.contains("::")).then(|| rest.to_owned())
        })
        .collect()
}

/// Every module each module's code names (itself excluded).
fn edges(sources: &Sources) -> Edges {
    let mut edges = Edges::new();
    for (module, text) in sources {
        let targets = edges.entry(module.clone()).or_default();
        for path in paths(module, &children(sources, module), text) {
            let segments: Vec<&str> = path.split("::").collect();
            // The longest prefix that is a module is the one depended on.
            let target = (0..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|m| sources.contains_key(m))
                .unwrap_or_default();
            if &target != module {
                targets.insert(target);
            }
        }
    }
    edges
}

/// The absolute paths (without `crate::`) that `module`'s code names.
fn paths(module: &str, children: &BTreeSet<String>, text: &str) -> Vec<String> {
    let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    for code in code_lines(text) {
        let code = code.as_str();
        let trimmed = code.trim_start();
        // `super::` inside an inline module (`mod tests { .. }`) is one level up.
        let inner: Vec<&str> = inline.iter().map(|(m, _)| m.as_str()).collect();
        let facade = ["pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        for path in expand(code) {
            let Some(absolute) = resolve(&own, &inner, children, &path) else {
                continue;
            };
            // A re-export of the module's own descendant is its facade.
            let own_prefix = own.join("::");
            let descendant = own.is_empty() || absolute.starts_with(&format!("{own_prefix}::"));
            if !(facade && descendant) {
                out.push(absolute);
            }
        }
        let item = ["pub ", "pub(crate) ", "pub(super) "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p))
            .unwrap_or(trimmed);
        if let Some(name) = item.strip_prefix("mod ").and_then(|r| r.strip_suffix(" {")) {
            inline.push((name.to_owned(), depth));
        }
        depth += code.matches('{').count();
        depth = depth.saturating_sub(code.matches('}').count());
        while inline.last().is_some_and(|(_, d)| *d >= depth) {
            inline.pop();
        }
    }
    out
}

/// `text` as lines of code: comments dropped, string and character literals
/// emptied (a `{` or a path in one is no code; strings may span lines), and each
/// `use` statement on one line, however many it spans.
fn code_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for code in code_only(text).lines() {
        let starts_use = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .any(|p| code.trim_start().starts_with(p));
        if pending.is_empty() && (code.contains(';') || !starts_use) {
            lines.push(code.to_owned());
            continue;
        }
        pending.push_str(code);
        pending.push(' ');
        if code.contains(';') {
            lines.push(std::mem::take(&mut pending));
        }
    }
    lines.extend((!pending.is_empty()).then_some(pending));
    lines
}

/// `text` without comments and with string and character literals emptied; line
/// breaks are kept, so lines stay lines.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // Skips a literal's body up to its closing `end`, keeping its line breaks.
    let skip = |chars: &mut std::iter::Peekable<std::str::Chars>, out: &mut String, end: char| {
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next().filter(|&c| c == '\n')),
                '\n' => out.push('\n'),
                c if c == end => break,
                _ => {}
            }
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                skip(&mut chars, &mut out, '"');
                out.push_str("\"\"");
            }
            // A character literal ('{', '\n'), not a lifetime ('a).
            '\'' if matches!(chars.clone().nth(1), Some('\'')) || chars.peek() == Some(&'\\') => {
                skip(&mut chars, &mut out, '\'');
                out.push_str("' '");
            }
            c => out.push(c),
        }
    }
    out
}

/// The paths a line names, `use` groups (`a::{b, c::{d}}`) expanded.
fn expand(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if starts && (bytes[i].is_alphabetic() || bytes[i] == '_') {
            let (paths, end) = path_at(&bytes, i);
            out.extend(paths.into_iter().filter(|p| p.contains("::")));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The path (or use tree) starting at `i`, and where it ends.
fn path_at(s: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut prefix = String::new();
    loop {
        let start = i;
        while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_' || s[i] == '*') {
            i += 1;
        }
        prefix.extend(&s[start..i]);
        if s.get(i) == Some(&':') && s.get(i + 1) == Some(&':') {
            i += 2;
            prefix.push_str("::");
            if s.get(i) == Some(&'{') {
                let mut paths = Vec::new();
                i += 1;
                loop {
                    while s.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                        i += 1;
                    }
                    match s.get(i) {
                        None => return (paths, i),
                        Some('}') => return (paths, i + 1),
                        _ => {}
                    }
                    let (inner, end) = path_at(s, i);
                    let base = prefix.trim_end_matches(':');
                    for p in inner {
                        paths.push(match p.as_str() {
                            "self" => base.to_owned(),
                            _ => format!("{prefix}{p}"),
                        });
                    }
                    i = end.max(i + 1);
                }
            }
        } else {
            return (vec![prefix], i);
        }
    }
}

/// `path` as written in the file of module `own`, inside its inline modules
/// `inline`, made absolute; `None` for paths outside the crate.
fn resolve(
    own: &[&str],
    inline: &[&str],
    children: &BTreeSet<String>,
    path: &str,
) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let here = || own.iter().chain(inline).copied().collect::<Vec<_>>();
    let mut base = match segments[0] {
        "crate" => {
            segments.remove(0);
            Vec::new()
        }
        "self" => {
            segments.remove(0);
            here()
        }
        "super" => {
            let mut base = here();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop()?;
            }
            base
        }
        // A path through one of the file module's children.
        first if children.contains(first) => own.to_vec(),
        _ => return None,
    };
    base.extend(segments);
    Some(base.join("::"))
}

/// Every cycle between siblings, at every level: `parent: a -> b -> a` (the crate
/// root's level without the prefix). A module's own file counts as a node of its
/// level, named as the module.
fn cycles(edges: &Edges) -> Vec<String> {
    let parents: BTreeSet<String> = edges
        .keys()
        .map(|m| m.rsplit_once("::").map_or("", |(p, _)| p).to_owned())
        .collect();
    let mut found = Vec::new();
    for parent in parents {
        // Each module below `parent` stands for the child of `parent` it is in.
        let node = |m: &str| -> Option<String> {
            let rest = match parent.as_str() {
                "" => m,
                p if m == p => return Some(p.rsplit("::").next().unwrap().to_owned()),
                p => m.strip_prefix(p)?.strip_prefix("::")?,
            };
            Some(
                rest.split("::")
                    .next()
                    .filter(|s| !s.is_empty())?
                    .to_owned(),
            )
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, targets) in edges {
            let Some(a) = node(from) else { continue };
            for to in targets {
                if let Some(b) = node(to).filter(|b| *b != a) {
                    graph.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        for cycle in simple_cycles(&graph) {
            found.push(match parent.as_str() {
                "" => cycle,
                p => format!("{p}: {cycle}"),
            });
        }
    }
    found
}

/// One cycle per strongly connected component of more than one node, as `a -> b -> a`.
fn simple_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // Breadth-first from `start` back to itself: the shortest cycle through it.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        let mut closing = None;
        while let Some(at) = queue.pop_front() {
            for next in graph.get(at).into_iter().flatten() {
                if next == start {
                    closing = Some(at);
                    break;
                }
                if !previous.contains_key(next.as_str()) {
                    previous.insert(next, at);
                    queue.push_back(next);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let Some(mut at) = closing else { continue };
        let mut path = vec![start.as_str()];
        let mut back = vec![at];
        while at != start {
            at = previous[at];
            if at != start {
                back.push(at);
            }
        }
        path.extend(back.into_iter().rev());
        path.push(start);
        reported.extend(path.iter().map(|s| s.to_string()));
        out.push(path.join(" -> "));
    }
    out
}
