//! The crate's layers, checked from its source: reads every file under `src/`, takes the
//! `crate::…`, `super::…` and (in the binary) `rollback_bot::…` paths of the code that is not
//! `#[cfg(test)]`, and fails naming the edge that
//! - crosses a layer upward (the table in [`LAYERS`]; README's module table explains it),
//! - closes an import circle between two files, or between two top-level modules,
//! - puts SQL outside `db`, the pool below it, a `kube::Api` call outside the Kubernetes
//!   client, `anyhow` outside `main`/`cli`/the bins, or I/O into `domain`.
//!
//! A parent module's own references to its children (`pub use child::X`, calls into a child)
//! are containment, not edges; a child's references to its parent are edges.
//!
//! Needs nothing but the standard library, so it runs in plain `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers from the bottom up. A module may import its own layer's files and the layers
/// listed after it in `may_import`; nothing else.
const LAYERS: &[(&str, &[&str])] = &[
    ("support", &[]),
    ("domain", &["support"]),
    ("clients", &["support", "domain"]),
    ("db", &["support", "domain", "clients"]),
    ("config", &["support", "domain", "clients"]),
    ("engine", &["support", "domain", "clients", "db", "config"]),
    (
        "steps",
        &["support", "domain", "clients", "db", "config", "engine"],
    ),
    (
        "slack",
        &[
            "support", "domain", "clients", "db", "config", "engine", "steps",
        ],
    ),
    (
        "http",
        &[
            "support", "domain", "clients", "db", "config", "engine", "steps", "slack",
        ],
    ),
    (
        "startup",
        &[
            "support", "domain", "clients", "db", "config", "engine", "steps", "slack", "http",
        ],
    ),
    (
        "main",
        &[
            "support", "domain", "clients", "db", "config", "engine", "steps", "slack", "http",
            "startup",
        ],
    ),
];

/// One source file of the library (or the binary's `main.rs`/`cli.rs`).
struct File {
    /// `src/`-relative path, for messages.
    name: String,
    /// Module path: `["clients", "k8s", "plan"]`; the binary's files are `["main", …]`.
    module: Vec<String>,
    /// The code without comments, string contents and `#[cfg(test)]` items.
    code: String,
}

#[test]
fn imports_go_only_downward_and_never_in_circles() {
    let files = read_sources();
    let mut problems = Vec::new();
    let known: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();

    // File-level edges (deduplicated), each with the path that made it.
    let mut edges: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        for path in paths_in(
            &f.code,
            f.module.first().map(String::as_str) == Some("main"),
        ) {
            let Some(absolute) = resolve(&f.module, &path, top(f) == "main") else {
                continue;
            };
            let Some(target) = owning_file(&known, &absolute) else {
                continue;
            };
            let to = &files[target].module;
            // Containment: a module's references into itself or its children.
            if target == i || to.starts_with(&f.module) || to.is_empty() {
                continue;
            }
            edges.entry((i, target)).or_insert_with(|| path.join("::"));
        }
    }

    // Layers: every edge between top-level modules must point downward.
    for (&(from, to), path) in &edges {
        let (a, b) = (top(&files[from]), top(&files[to]));
        if a == b {
            continue;
        }
        match LAYERS.iter().find(|(name, _)| *name == a) {
            None => problems.push(format!(
                "{} is in top-level module `{a}`, which has no layer (add it to LAYERS)",
                files[from].name
            )),
            Some((_, allowed)) if !allowed.contains(&b) => problems.push(format!(
                "layer crossed: {} → {} (`{path}`): `{a}` may not import `{b}`",
                files[from].name, files[to].name
            )),
            Some(_) => {}
        }
    }

    // Circles between files.
    let file_graph: BTreeMap<usize, BTreeSet<usize>> =
        edges.keys().fold(BTreeMap::new(), |mut g, &(a, b)| {
            g.entry(a).or_default().insert(b);
            g
        });
    for circle in circles(&file_graph) {
        let names: Vec<&str> = circle.iter().map(|&i| files[i].name.as_str()).collect();
        let closing = (circle[circle.len() - 1], circle[0]);
        problems.push(format!(
            "file import circle {}: closed by {} → {} (`{}`)",
            names.join(" → "),
            files[closing.0].name,
            files[closing.1].name,
            edges[&closing]
        ));
    }

    // Circles between top-level modules.
    let tops: Vec<&str> = {
        let set: BTreeSet<&str> = files.iter().map(top).collect();
        set.into_iter().collect()
    };
    let index = |t: &str| tops.iter().position(|x| *x == t).unwrap();
    let mut top_graph: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut top_edge: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (&(from, to), path) in &edges {
        let (a, b) = (index(top(&files[from])), index(top(&files[to])));
        if a != b {
            top_graph.entry(a).or_default().insert(b);
            top_edge
                .entry((a, b))
                .or_insert_with(|| format!("{} → {} (`{path}`)", files[from].name, files[to].name));
        }
    }
    for circle in circles(&top_graph) {
        let names: Vec<&str> = circle.iter().map(|&i| tops[i]).collect();
        let closing = (circle[circle.len() - 1], circle[0]);
        problems.push(format!(
            "top-level import circle {}: closed by {}",
            names.join(" → "),
            top_edge[&closing]
        ));
    }

    // Where some things may appear at all.
    for f in &files {
        let t = top(f);
        let lines = || f.code.lines().enumerate().map(|(n, l)| (n + 1, l));
        for (n, line) in lines() {
            let at = format!("{}:{n}", f.name);
            let sql = ["sqlx::query", "query!(", "query_as!(", "query_scalar!("];
            if t != "db" && sql.iter().any(|s| line.contains(s)) {
                problems.push(format!("SQL outside db: {at}"));
            }
            let kube_api = line.contains("kube::Api")
                || line.contains("kube::api::Api")
                || line
                    .match_indices("Api::")
                    .chain(line.match_indices("Api<"))
                    .any(|(k, _)| !is_ident(line.as_bytes().get(k.wrapping_sub(1)).copied()));
            if kube_api && !f.module.starts_with(&["clients".into(), "k8s".into()]) {
                problems.push(format!("kube::Api outside clients::k8s: {at}"));
            }
            if t != "main" && line.contains("anyhow") {
                problems.push(format!("anyhow outside main/cli/the bins: {at}"));
            }
            let below_db = ["support", "domain", "clients"].contains(&t);
            if below_db && (line.contains("PgPool") || line.contains("PgConnection")) {
                problems.push(format!("the database pool below db: {at}"));
            }
            let io = [
                "tokio",
                "sqlx::query",
                "kube::",
                "hyper",
                "std::fs",
                "std::net",
            ];
            if t == "domain" && io.iter().any(|s| line.contains(s)) {
                problems.push(format!("I/O in domain (it must stay pure): {at}"));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} layering problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The workspace's other members (the Slack sandbox, the service simulator) have no layers,
/// but no import circles either.
#[test]
fn the_workspace_members_have_no_import_circles() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut problems = Vec::new();
    let mut members: Vec<PathBuf> = fs::read_dir(&crates)
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    members.sort();
    for src in members {
        let files = read_crate(&src);
        let known: BTreeMap<Vec<String>, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        let mut graph: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut via: BTreeMap<(usize, usize), String> = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            for path in paths_in(&f.code, false) {
                let Some(target) = resolve(&f.module, &path, false)
                    .and_then(|absolute| owning_file(&known, &absolute))
                else {
                    continue;
                };
                let to = &files[target].module;
                if target == i || to.starts_with(&f.module) || to.is_empty() {
                    continue;
                }
                graph.entry(i).or_default().insert(target);
                via.entry((i, target)).or_insert_with(|| path.join("::"));
            }
        }
        for circle in circles(&graph) {
            let names: Vec<&str> = circle.iter().map(|&i| files[i].name.as_str()).collect();
            let closing = (circle[circle.len() - 1], circle[0]);
            problems.push(format!(
                "{}: file import circle {}: closed by {} → {} (`{}`)",
                src.display(),
                names.join(" → "),
                files[closing.0].name,
                files[closing.1].name,
                via[&closing]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The test itself must see the cases it is about.
#[test]
fn the_checker_sees_paths_circles_and_test_modules() {
    let code = strip(
        "use crate::a::{b, c::{D, self}};\n\
         // use crate::commented::Out;\n\
         fn f() { let s = \"crate::in_string\"; super::g(); }\n\
         #[cfg(test)]\nmod tests { use crate::only_in_tests::X; }\n\
         #[cfg(test)]\nuse crate::test_import;\n",
    );
    let paths: BTreeSet<String> = paths_in(&code, false)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = ["crate::a::b", "crate::a::c::D", "crate::a::c", "super::g"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(paths, want);
    let module: Vec<String> = vec!["x".into(), "y".into()];
    assert_eq!(
        resolve(&module, &["super".into(), "z".into()], false),
        Some(vec!["x".to_string(), "z".to_string()])
    );
    let g: BTreeMap<usize, BTreeSet<usize>> = [
        (0, BTreeSet::from([1])),
        (1, BTreeSet::from([2])),
        (2, BTreeSet::from([0])),
        (3, BTreeSet::from([0])),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles(&g), vec![vec![0, 1, 2]]);
}

fn top(f: &File) -> &str {
    f.module.first().map_or("", String::as_str)
}

fn read_sources() -> Vec<File> {
    read_crate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// The files of the crate whose sources are under `root`.
fn read_crate(root: &Path) -> Vec<File> {
    let root = root.to_path_buf();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    // Files declared only under `#[cfg(test)] mod x;` belong to the tests.
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    for p in &paths {
        let raw = fs::read_to_string(p).unwrap();
        let lines: Vec<&str> = raw.lines().map(str::trim).collect();
        for w in lines.windows(2) {
            if w[0] == "#[cfg(test)]"
                && let Some(name) = w[1].strip_prefix("mod ").and_then(|m| m.strip_suffix(';'))
            {
                let dir = if p.file_name().unwrap() == "mod.rs" || p == &root.join("lib.rs") {
                    p.parent().unwrap().to_path_buf()
                } else {
                    p.with_extension("")
                };
                test_only.insert(dir.join(format!("{name}.rs")));
                test_only.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    let mut files = Vec::new();
    for p in paths {
        if test_only.contains(&p) {
            continue;
        }
        let rel = p.strip_prefix(&root).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        // Other binaries stand alone; the bot's binary is `main` (+ `cli`).
        if parts[0] == "bin" {
            continue;
        }
        let last = parts[parts.len() - 1].trim_end_matches(".rs").to_owned();
        let mut module: Vec<String> = parts[..parts.len() - 1].to_vec();
        match (parts.len(), last.as_str()) {
            (1, "lib") => {}
            (1, "main") => module.push("main".into()),
            (1, "cli") => module.extend(["main".to_owned(), "cli".to_owned()]),
            (_, "mod") => {}
            _ => module.push(last),
        }
        files.push(File {
            name: rel.to_string_lossy().into_owned(),
            module,
            code: strip(&fs::read_to_string(&p).unwrap()),
        });
    }
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code without comments, without the contents of string and char literals, and without
/// the items that follow `#[cfg(test)]`.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"'))
            && !is_ident(b.get(i.wrapping_sub(1)).copied())
        {
            // Raw string r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.len();
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                if b.get(j) == Some(&b'\n') {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '{'), or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                let ch = src[i + 1..].chars().next();
                let len = ch.map_or(0, char::len_utf8);
                if ch.is_some_and(|ch| !ch.is_ascii()) && b.get(i + 1 + len) == Some(&b'\'') {
                    out.push_str("' '");
                    i += 2 + len;
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    drop_test_items(&out)
}

fn is_ident(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Removes every item introduced by `#[cfg(test)]`: up to its `;` or its matching `}`.
fn drop_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, ch) in item.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        out.extend(item[..end].chars().filter(|&c| c == '\n'));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every `crate::…`/`super::…`/`self::…` path in the code (and `rollback_bot::…` in the
/// binary), `use` trees expanded.
fn paths_in(code: &str, binary: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let roots: &[&str] = if binary {
        &["crate", "super", "rollback_bot"]
    } else {
        &["crate", "super"]
    };
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let root = roots.iter().find(|r| {
            starts_word
                && chars[i..].starts_with(&r.chars().collect::<Vec<_>>())
                && chars[i + r.len()..].starts_with(&[':', ':'])
        });
        match root {
            Some(_) => {
                let (paths, next) = tree(&chars, i, vec![]);
                out.extend(paths);
                i = next.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

/// Parses a path or use tree at `i` (`a::b::{c, d::e}`); the expanded paths and where it ends.
fn tree(chars: &[char], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if chars.get(i) == Some(&'{') {
            i += 1;
            let mut all = Vec::new();
            loop {
                while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    None => return (all, i),
                    Some('}') => return (all, i + 1),
                    _ => {}
                }
                let (sub, next) = tree(chars, i, path.clone());
                all.extend(sub);
                i = next;
                // Skip `as name`.
                while chars.get(i).is_some_and(|c| *c != ',' && *c != '}') {
                    i += 1;
                }
            }
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if word.is_empty() {
            return (
                vec![path].into_iter().filter(|p| !p.is_empty()).collect(),
                i,
            );
        }
        if word != "self" && word != "*" {
            path.push(word);
        }
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![path], i);
        }
    }
}

/// The absolute module path of `path` as written in `module`; `None` if it is not ours.
fn resolve(module: &[String], path: &[String], binary: bool) -> Option<Vec<String>> {
    let mut base: Vec<String> = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        // In the binary, `crate` is the binary (`main`) and the library is `rollback_bot`.
        Some("crate") => {
            base = if binary { vec!["main".into()] } else { vec![] };
            rest = &rest[1..];
        }
        Some("rollback_bot") if binary => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The file whose module is the longest prefix of `path`.
fn owning_file(known: &BTreeMap<Vec<String>, usize>, path: &[String]) -> Option<usize> {
    (0..=path.len())
        .rev()
        .find_map(|n| known.get(&path[..n]).copied())
}

/// One circle per strongly connected component with more than one node (Tarjan), as the
/// node sequence of a shortest cycle through its smallest node.
fn circles(graph: &BTreeMap<usize, BTreeSet<usize>>) -> Vec<Vec<usize>> {
    let nodes: BTreeSet<usize> = graph
        .iter()
        .flat_map(|(a, bs)| std::iter::once(*a).chain(bs.iter().copied()))
        .collect();
    let mut tarjan = Tarjan {
        graph,
        counter: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &v in &nodes {
        if !tarjan.index.contains_key(&v) {
            tarjan.visit(v);
        }
    }
    let components = tarjan.components;
    // A shortest cycle through each component's smallest node (breadth-first inside it).
    components
        .into_iter()
        .map(|component| {
            let inside: BTreeSet<usize> = component.iter().copied().collect();
            let start = component[0];
            let mut previous: BTreeMap<usize, usize> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut last = start;
            'search: while let Some(v) = queue.pop_front() {
                for &w in graph.get(&v).into_iter().flatten() {
                    if !inside.contains(&w) {
                        continue;
                    }
                    if w == start {
                        last = v;
                        break 'search;
                    }
                    if let std::collections::btree_map::Entry::Vacant(e) = previous.entry(w) {
                        e.insert(v);
                        queue.push_back(w);
                    }
                }
            }
            let mut cycle = vec![last];
            while let Some(&p) = previous.get(cycle.last().unwrap()) {
                cycle.push(p);
            }
            if *cycle.last().unwrap() != start {
                cycle.push(start);
            }
            cycle.reverse();
            cycle
        })
        .collect()
}

/// Tarjan's strongly connected components.
struct Tarjan<'a> {
    graph: &'a BTreeMap<usize, BTreeSet<usize>>,
    counter: usize,
    index: BTreeMap<usize, usize>,
    low: BTreeMap<usize, usize>,
    stack: Vec<usize>,
    on_stack: BTreeSet<usize>,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index.insert(v, self.counter);
        self.low.insert(v, self.counter);
        self.counter += 1;
        self.stack.push(v);
        self.on_stack.insert(v);
        let graph = self.graph;
        for &w in graph.get(&v).into_iter().flatten() {
            if !self.index.contains_key(&w) {
                self.visit(w);
                let lw = self.low[&w];
                let lv = self.low.get_mut(&v).unwrap();
                *lv = (*lv).min(lw);
            } else if self.on_stack.contains(&w) {
                let iw = self.index[&w];
                let lv = self.low.get_mut(&v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if self.low[&v] == self.index[&v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack.remove(&w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                self.components.push(component);
            }
        }
    }
}
