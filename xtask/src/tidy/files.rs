//! The source-file conventions of STYLE.md, checked over the git-tracked `.rs` files: a `//!` doc
//! first, no `#[ignore]`, a soft line budget, the same file set in both storage crates, every
//! conformance suite test registered in the suite's macro, and every example declared.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Lines a non-test source file may have before its `#[cfg(test)]` part (STYLE.md: "a file over ~600
/// lines is usually two concepts").
pub const LINE_BUDGET: usize = 600;

/// Files allowed over the budget, each with the reason; kept empty where possible.
const OVER_BUDGET: &[(&str, &str)] = &[];

/// Files only one storage crate has, each with the reason.
const BACKEND_ONLY: &[(&str, &str)] = &[
    ("crates/storage-postgres/src/notify.rs", "LISTEN/NOTIFY between processes sharing one PostgreSQL"),
    ("crates/storage-sqlite/src/checkpoint.rs", "WAL checkpoints off the commit path (PostgreSQL checkpoints itself)"),
    ("crates/storage-sqlite/src/read.rs", "read connections beside the one writer (PostgreSQL reads from its pool)"),
    (
        "crates/storage-sqlite/src/staging.rs",
        "database files made aside and moved into place, the bulk bootstrap (PostgreSQL makes a schema in one transaction)",
    ),
];

/// Every problem the file conventions find under `root`.
pub fn check(root: &Path) -> Vec<String> {
    let files = match tracked(root) {
        Ok(files) => files,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for path in &files {
        let text = match std::fs::read_to_string(root.join(path)) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{path}: {e}"));
                continue;
            }
        };
        problems.extend(file_problems(path, &text));
    }
    problems.extend(storage_file_sets(&files));
    problems.extend(examples_declared(root, &files));
    problems.extend(suite_registration(root));
    problems
}

/// The git-tracked `.rs` files, as paths relative to `root`.
fn tracked(root: &Path) -> Result<Vec<String>, String> {
    let output = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard", "*.rs"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git ls-files: {e}"))?;
    if !output.status.success() {
        return Err(format!("git ls-files failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let listed = String::from_utf8_lossy(&output.stdout);
    Ok(listed.lines().filter(|p| root.join(p).is_file()).map(str::to_owned).collect())
}

/// Whether `path` holds tests only (an integration test, a `tests.rs` module, a bench or an example
/// is not held to the line budget).
fn is_test_file(path: &str) -> bool {
    path.starts_with("tests/tests/")
        || path.contains("/tests/")
        || path.ends_with("/tests.rs")
        || path.starts_with("fuzz/")
        || path.starts_with("examples/")
}

/// The problems of one file.
fn file_problems(path: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !text.trim_start().starts_with("//!") {
        problems.push(format!("{path}: a source file starts with a `//!` doc saying what it owns"));
    }
    let ignore = ["#[", "ignore"].concat();
    if let Some(n) = text.lines().position(|l| l.trim_start().starts_with(&ignore)) {
        problems.push(format!(
            "{path}:{}: no `#[ignore]` (STYLE.md): gate a slow test on an environment variable that xtask sets",
            n + 1
        ));
    }
    if !is_test_file(path) {
        let lines = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count();
        let allowed = OVER_BUDGET.iter().any(|(p, _)| *p == path);
        if lines > LINE_BUDGET && !allowed {
            problems.push(format!(
                "{path}: {lines} lines before its tests, over the budget of {LINE_BUDGET}: split it by concept \
                 (or name it in tidy's OVER_BUDGET with the reason)"
            ));
        }
    }
    problems
}

/// Both storage crates have the same `src/` files, save those named in [`BACKEND_ONLY`].
fn storage_file_sets(files: &[String]) -> Vec<String> {
    let crates = ["crates/storage-sqlite/src/", "crates/storage-postgres/src/"];
    let sets: Vec<BTreeSet<&str>> = crates
        .iter()
        .map(|dir| {
            files
                .iter()
                .filter(|f| !BACKEND_ONLY.iter().any(|(p, _)| p == f))
                .filter_map(|f| f.strip_prefix(dir))
                .collect()
        })
        .collect();
    let mut problems = Vec::new();
    for (i, dir) in crates.iter().enumerate() {
        let other = &sets[1 - i];
        for file in sets[i].difference(other) {
            problems.push(format!(
                "{dir}{file} has no counterpart in {}: both storage crates keep the same file set \
                 (or name it in tidy's BACKEND_ONLY with the reason)",
                crates[1 - i]
            ));
        }
    }
    problems
}

/// Every `examples/*.rs` is declared in the facade's manifest (so `cargo run --example` finds it).
fn examples_declared(root: &Path, files: &[String]) -> Vec<String> {
    let manifest = match std::fs::read_to_string(root.join("crates/outpost/Cargo.toml")) {
        Ok(text) => text,
        Err(e) => return vec![format!("crates/outpost/Cargo.toml: {e}")],
    };
    files
        .iter()
        .filter(|f| f.starts_with("examples/") && !f[9..].contains('/'))
        .filter(|f| !manifest.contains(&format!("path = \"../../{f}\"")))
        .map(|f| format!("{f}: not declared as an [[example]] in crates/outpost/Cargo.toml"))
        .collect()
}

/// Every `pub async fn` of `tests/src/suite/*.rs` is registered in `conformance_suite!`
/// (tests/src/lib.rs), so that no suite test is written and never run.
fn suite_registration(root: &Path) -> Vec<String> {
    let lib = match std::fs::read_to_string(root.join("tests/src/lib.rs")) {
        Ok(text) => text,
        Err(e) => return vec![format!("tests/src/lib.rs: {e}")],
    };
    let suite = root.join("tests/src/suite");
    let entries = match std::fs::read_dir(&suite) {
        Ok(entries) => entries,
        Err(e) => return vec![format!("{}: {e}", suite.display())],
    };
    let mut problems = Vec::new();
    let mut modules: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    modules.sort();
    for file in modules {
        let Some(module) = file.file_stem().and_then(|s| s.to_str()).filter(|m| *m != "mod") else { continue };
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for name in suite_tests(&text) {
            let registered = format!("{module}::{name},");
            if !lib.contains(&registered) {
                problems.push(format!(
                    "tests/src/suite/{module}.rs: {name} is not registered in conformance_suite! (tests/src/lib.rs)"
                ));
            }
        }
    }
    problems
}

/// The names of a suite module's test functions: its `pub async fn`s.
fn suite_tests(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split(['(', '<']).next())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_rule_finds_its_problem() {
        let long = format!("//! doc\n{}", "x\n".repeat(LINE_BUDGET + 1));
        let tested = format!("//! doc\n#[cfg(test)]\n{}", "x\n".repeat(LINE_BUDGET + 1));
        let ignored = ["//! doc\n#[", "ignore]\nfn t() {}\n"].concat();
        let cases: &[(&str, &str, &str)] = &[
            ("crates/a/src/ok.rs", "//! doc\nfn f() {}\n", ""),
            ("crates/a/src/nodoc.rs", "fn f() {}\n", "`//!` doc"),
            ("crates/a/src/long.rs", &long, "over the budget"),
            ("crates/a/src/tested.rs", &tested, ""),
            ("crates/a/tests/long.rs", &long, ""),
            ("crates/a/src/ignored.rs", &ignored, "no `#[ignore]`"),
        ];
        for (path, text, expect) in cases {
            let found = file_problems(path, text).join("\n");
            if expect.is_empty() {
                assert!(found.is_empty(), "{path}: {found}");
            } else {
                assert!(found.contains(expect), "{path}: expected {expect:?}, found {found:?}");
            }
        }
    }

    #[test]
    fn storage_crates_keep_one_file_set() {
        let files = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let same = files(&[
            "crates/storage-sqlite/src/store.rs",
            "crates/storage-postgres/src/store.rs",
            "crates/storage-postgres/src/notify.rs",
        ]);
        assert!(storage_file_sets(&same).is_empty());
        let odd = files(&["crates/storage-sqlite/src/store.rs", "crates/storage-sqlite/src/extra.rs"]);
        let found = storage_file_sets(&odd);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("extra.rs"), "{found:?}");
    }

    #[test]
    fn suite_tests_are_read_from_their_module() {
        let text = "pub async fn a_test<F: Factory>(f: &F) {}\nasync fn helper() {}\npub async fn other(f: &F) {}\n";
        assert_eq!(suite_tests(text), vec!["a_test", "other"]);
    }
}
