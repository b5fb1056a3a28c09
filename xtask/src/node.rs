//! What the CouchDB-protocol tests run (`crates/cli/tests/pouchdb.rs`): the `pouchdb` npm package,
//! its memory adapter and chrome-remote-interface, installed with `npm ci` from the committed lock file
//! into `tests/couch-node/node_modules` (git-ignored); and Debian's `chromium`, installed with
//! apt-get when missing, for the browser test. What cannot be installed fails the step under `CI=true`
//! and is skipped (said so) elsewhere; the tests then fail or skip the same way.

use std::process::{Command, Stdio};

use crate::{step, workspace_root};

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `apt-get install -y chromium`, non-interactive.
fn apt_install_chromium() -> Command {
    let mut apt = Command::new("apt-get");
    apt.args(["install", "-y", "chromium"]).env("DEBIAN_FRONTEND", "noninteractive");
    apt
}

/// `npm ci` in `tests/couch-node`, and chromium when missing.
pub fn install() -> Result<(), String> {
    if runs("npm") {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(workspace_root().join("tests/couch-node"));
        step("npm ci (PouchDB for the CouchDB-protocol tests)", npm)?;
    } else if ci() {
        return Err("npm is missing: the PouchDB tests need node and npm (the image ships node 20)".into());
    } else {
        println!("\n==> npm ci (PouchDB): skipped, npm is missing; the PouchDB tests will be skipped");
    }
    if runs("chromium") {
        return Ok(());
    }
    if runs("apt-get") {
        // A fresh image may need its package lists first.
        if step("apt-get install chromium (the browser test)", apt_install_chromium()).is_err() {
            let mut update = Command::new("apt-get");
            update.arg("update");
            step("apt-get update", update)?;
            step("apt-get install chromium (the browser test)", apt_install_chromium())?;
        }
        return Ok(());
    }
    if ci() {
        return Err("chromium is missing and apt-get is not there to install it".into());
    }
    println!("\n==> chromium: missing; the browser test will be skipped (apt-get install chromium)");
    Ok(())
}
