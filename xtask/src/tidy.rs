//! Conventions checked by code (rust-analyzer's `tidy`): the dependency direction of SPEC §1 and a
//! `//!` doc at every crate root.

use std::path::Path;
use std::process::Command;

/// Which workspace crates each crate may depend on (normal dependencies), per SPEC §1's layering:
/// api ← engine ← storage-*; api ← http-client, reconciler, quicksync; engine/api ← http-server, which
/// also uses the reconciler and http-client for its replication jobs (`POST /replicate`, whose ends may
/// be URLs of other servers) and quicksync for publishing on a schedule; cli, tests and bench may use
/// everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("outpost-api", &[]),
    ("outpost-engine", &["outpost-api"]),
    ("outpost-sqlite", &["outpost-api", "outpost-engine"]),
    ("outpost-postgres", &["outpost-api", "outpost-engine"]),
    ("outpost-client", &["outpost-api"]),
    ("outpost-reconciler", &["outpost-api"]),
    ("outpost-quicksync", &["outpost-api"]),
    ("outpost-server", &["outpost-api", "outpost-engine", "outpost-reconciler", "outpost-client", "outpost-quicksync"]),
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
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workspace_keeps_its_layering() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        if let Err(problems) = super::check(root) {
            panic!("tidy found:\n{}", problems.join("\n"));
        }
    }
}
