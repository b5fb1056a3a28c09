//! What the CouchDB-protocol tests run (`crates/cli/tests/pouchdb.rs`): the `pouchdb` npm package,
//! its memory adapter and chrome-remote-interface, installed with `npm ci` from the committed lock file
//! into `tests/couch-node/node_modules` (git-ignored); and Debian's `chromium`, installed with
//! apt-get when missing, for the browser test. What cannot be installed fails the step under `CI=true`
//! and is skipped (said so) elsewhere; the tests then fail or skip the same way.

use std::process::{Command, Stdio};

use crate::{step, workspace_root};

/// `npm ci` in `tests/couch-node`.
pub fn install() -> Result<(), String> {
    let has_npm = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_npm {
        if std::env::var("CI").as_deref() == Ok("true") {
            return Err("npm is missing: the PouchDB tests need node and npm (the image ships node 20)".into());
        }
        println!("\n==> npm ci (PouchDB): skipped, npm is missing; the PouchDB tests will be skipped");
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(workspace_root().join("tests/couch-node"));
    step("npm ci (PouchDB for the CouchDB-protocol tests)", npm)
}
