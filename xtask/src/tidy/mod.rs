//! Conventions checked by code (rust-analyzer's `tidy`): the dependency direction of SPEC §1, a `//!`
//! doc at every crate root, no forbidden crate in the tree, and the source-file conventions of
//! [`files`] (a `//!` doc on every file, no `#[ignore]`, the line budget, one file set for both
//! storage crates, every suite test registered).

use std::path::Path;
use std::process::Command;

mod files;

/// Which workspace crates each crate may depend on (normal dependencies), per SPEC §1's layering:
/// api ← engine ← storage-*; api ← http-client, reconciler, quicksync, couch; api ← http-server, which
/// also uses the reconciler and http-client for its replication jobs (`POST /replicate`, whose ends may
/// be URLs of other servers), quicksync for publishing on a schedule and couch for the CouchDB
/// protocol under `/couch/`, and never the engine (it serves
/// any `Databases`); the `outpost` facade re-exports the library crates; cli, tests and bench may use
/// everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("outpost-api", &[]),
    ("outpost-engine", &["outpost-api"]),
    ("outpost-sqlite", &["outpost-api", "outpost-engine"]),
    ("outpost-postgres", &["outpost-api", "outpost-engine"]),
    ("outpost-client", &["outpost-api"]),
    ("outpost-reconciler", &["outpost-api"]),
    ("outpost-quicksync", &["outpost-api"]),
    ("outpost-couch", &["outpost-api"]),
    ("outpost-server", &["outpost-api", "outpost-reconciler", "outpost-client", "outpost-quicksync", "outpost-couch"]),
    (
        "outpost",
        &[
            "outpost-api",
            "outpost-engine",
            "outpost-sqlite",
            "outpost-postgres",
            "outpost-client",
            "outpost-server",
            "outpost-reconciler",
            "outpost-quicksync",
            "outpost-couch",
            "outpost",
        ],
    ),
    ("outpost-cli", &["*"]),
    ("outpost-tests", &["*"]),
    ("outpost-bench", &["*"]),
    ("xtask", &[]),
];

/// Every problem found, or Ok.
pub fn check(root: &Path) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .map_err(|e| vec![format!("cannot run cargo metadata: {e}")])?;
    if !output.status.success() {
        return Err(vec![format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr))]);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| vec![format!("cargo metadata output: {e}")])?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default();
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == name) else {
            problems.push(format!(
                "{name}: not in tidy's layering table (xtask/src/tidy.rs); add it with its allowed deps"
            ));
            continue;
        };
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let normal = dep["kind"].is_null();
            if normal && members.contains(&dep_name) && !allowed.contains(&"*") && !allowed.contains(&dep_name) {
                problems.push(format!("{name} depends on {dep_name}, against the layering of SPEC §1"));
            }
        }
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
            if !(kinds.contains(&"lib") || kinds.contains(&"bin")) {
                continue;
            }
            let src = target["src_path"].as_str().unwrap_or_default();
            match std::fs::read_to_string(src) {
                Ok(text) if text.trim_start().starts_with("//!") => {}
                Ok(_) => {
                    problems.push(format!("{src}: a crate root starts with a `//!` doc saying what the crate owns"))
                }
                Err(e) => problems.push(format!("{src}: {e}")),
            }
        }
    }
    problems.extend(forbidden_crates(root));
    problems.extend(files::check(root));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Crates that must never be built: aws-lc needs cmake and clang, which the build machines lack
/// (SPEC §14: rustls with the ring provider only).
const FORBIDDEN: &[&str] = &["aws-lc-rs", "aws-lc-sys"];

/// Every forbidden crate in the dependency graph of any workspace crate, any target, any edge kind.
fn forbidden_crates(root: &Path) -> Vec<String> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["tree", "--workspace", "--target", "all", "--edges", "all", "--prefix", "none", "--format", "{p}"])
        .current_dir(root)
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => return vec![format!("cargo tree failed: {}", String::from_utf8_lossy(&output.stderr))],
        Err(e) => return vec![format!("cannot run cargo tree: {e}")],
    };
    let tree = String::from_utf8_lossy(&output.stdout);
    found_in(&tree)
}

fn found_in(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| FORBIDDEN.contains(name))
        .map(|name| format!("{name} is in the dependency tree (`cargo tree -i {name}` shows who pulls it in); use rustls with the ring provider"))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn forbidden_crates_are_found_by_name() {
        let tree =
            "outpost-server v0.1.0 (/w)\nrustls v0.23.1\naws-lc-rs v1.0.0\naws-lc-sys v0.2.0\naws-lc-rs v1.0.0\n";
        let found = super::found_in(tree);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(super::found_in("ring v0.17.0\nrustls v0.23.1\n").is_empty());
    }

    #[test]
    fn the_workspace_keeps_its_layering() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        if let Err(problems) = super::check(root) {
            panic!("tidy found:\n{}", problems.join("\n"));
        }
    }
}
