//! No import cycles between modules: in each crate of the workspace, the graph of which file
//! module names which (every `use` tree and every path starting `crate::`, `super::` or
//! `self::`, read with `syn`; test modules and `#[cfg(test)]` items left out) has no cycle.
//! A module and its own submodules are one unit here (a `mod.rs` re-exports its children; a
//! child uses its parent's items). A failure names the modules of each cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The crates checked: their name and source root.
const CRATES: [(&str, &str); 5] = [
    ("livecam-system", "system/src"),
    ("livecam-sim", "sim/src"),
    ("livecam-emulator", "emulator/src"),
    ("livecam-experiments", "experiments/src"),
    ("livecam", "src"),
];

/// A module's path in its crate, e.g. `["proto", "policy"]` (empty: the crate root).
type Module = Vec<String>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file holds: `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs`/`main.rs` the root.
fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file
        .strip_prefix(root)
        .expect("under root")
        .with_extension("");
    let mut parts: Module = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects the module paths a file names: each as the segments after `crate`, or resolved
/// from `super`/`self` against the file's module.
struct Names<'a> {
    here: &'a Module,
    /// Inline `mod` blocks entered (`self`/`super` resolve against them too).
    inline: Module,
    out: BTreeSet<Module>,
}

impl Names<'_> {
    fn resolve(&mut self, segments: &[String]) {
        let mut base: Module = self.here.iter().chain(&self.inline).cloned().collect();
        let mut rest = segments;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            _ => return,
        }
        base.extend(rest.iter().cloned());
        self.out.insert(base);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_cfg_test(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.inline.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.inline.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, p);
    }
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a Module) {
            self.index.insert(v, (self.next, self.next));
            self.next += 1;
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flatten() {
                match self.index.get(w) {
                    None => {
                        self.visit(w);
                        let low = self.index[w].1.min(self.index[v].1);
                        self.index.get_mut(v).expect("visited").1 = low;
                    }
                    Some(&(i, _)) if self.stack.contains(&w) => {
                        let low = i.min(self.index[v].1);
                        self.index.get_mut(v).expect("visited").1 = low;
                    }
                    Some(_) => {}
                }
            }
            let (i, low) = self.index[v];
            if i == low {
                let at = self.stack.iter().rposition(|m| *m == v).expect("on stack");
                let comp: Vec<Module> = self.stack.drain(at..).cloned().collect();
                if comp.len() > 1 {
                    self.found.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

/// The file module a named path lands in: its longest prefix that is a file module.
fn file_module<'a>(modules: &'a BTreeSet<Module>, named: &Module) -> Option<&'a Module> {
    (0..=named.len())
        .rev()
        .find_map(|n| modules.get(&named[..n].to_vec()))
}

#[test]
fn no_module_imports_its_own_importer() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for (name, src) in CRATES {
        let root = workspace.join(src);
        let mut files = Vec::new();
        rs_files(&root, &mut files);
        // Test modules (`tests.rs`, `tests/mod.rs`) are left out with their files.
        let files: Vec<(Module, PathBuf)> = files
            .into_iter()
            .map(|f| (module_of(&root, &f), f))
            .filter(|(m, _)| m.last().map(String::as_str) != Some("tests"))
            .collect();
        let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        let mut resolved = 0;
        for (module, file) in &files {
            let text = std::fs::read_to_string(file).expect("read source");
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let mut names = Names {
                here: module,
                inline: Vec::new(),
                out: BTreeSet::new(),
            };
            names.visit_file(&ast);
            for named in &names.out {
                let Some(target) = file_module(&modules, named) else {
                    continue;
                };
                resolved += 1;
                // A module and its submodules are one unit.
                if target.starts_with(module) || module.starts_with(target) {
                    continue;
                }
                edges
                    .entry(module.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
        for cycle in cycles(&edges) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            problems.push(format!("{name}: {}", names.join(" <-> ")));
        }
        // The check must see the paths it claims to check.
        assert!(
            resolved > 0 || files.len() < 2,
            "{name}: no crate-internal paths found in its {} modules",
            files.len()
        );
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n  {}",
        problems.join("\n  ")
    );
}
