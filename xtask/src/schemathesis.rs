//! `cargo xtask schemathesis [--examples N]`: Schemathesis (a pip package, installed into the
//! git-ignored `target/schemathesis-venv`) against a running `outpost serve`'s `/openapi.json`, with
//! the checks `not_a_server_error`, `status_code_conformance`, `content_type_conformance` and
//! `response_schema_conformance`, on valid requests (see `run`). Any failure or error fails the step. The server runs on a free
//! loopback port over a throwaway data directory holding one database with a table and a record, so
//! that generated requests find something; it is stopped whatever happens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{cargo, step, workspace_root};

/// The Schemathesis release the checks are pinned to (a newer one may add checks of its own).
const VERSION: &str = "4.32.5";

/// Test cases per API operation and phase when `--examples` is not given.
pub const DEFAULT_EXAMPLES: u32 = 40;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv() -> PathBuf {
    workspace_root().join("target/schemathesis-venv")
}

/// Install Schemathesis into the virtualenv unless that version is there.
fn ensure_installed() -> Result<PathBuf, String> {
    let st = venv().join("bin/st");
    let installed = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(VERSION));
    if installed {
        return Ok(st);
    }
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(venv());
    step("python venv for schemathesis", create)?;
    let mut install = Command::new(venv().join("bin/pip"));
    install.args(["install", "--quiet", "--disable-pip-version-check", &format!("schemathesis=={VERSION}")]);
    step("pip install schemathesis", install)?;
    Ok(st)
}

/// `outpost` (the debug build) with arguments, which must succeed.
fn outpost(binary: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(binary).args(args).env_remove("OUTPOST_TOKEN").output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("outpost {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

pub fn command(args: &[String]) -> Result<(), String> {
    let examples = match args {
        [] => DEFAULT_EXAMPLES,
        [flag, n] if flag == "--examples" => {
            n.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("--examples {n:?}: expected a positive number"))?
        }
        _ => return Err("usage: cargo xtask schemathesis [--examples N]".into()),
    };
    run(examples)
}

pub fn run(examples: u32) -> Result<(), String> {
    let st = ensure_installed()?;
    // The same build as `cargo test --workspace --all-targets` (so nothing rebuilds after the tests
    // in CI): its outpost binary.
    let mut build = cargo();
    build.args(["build", "--workspace", "--all-targets", "--locked"]);
    step("build outpost", build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), Into::into);
    let binary = workspace_root().join(target).join("debug/outpost");
    let data = std::env::temp_dir().join(format!("outpost-schemathesis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("OUTPOST_LOG", "warn")
        .env_remove("OUTPOST_LISTEN")
        .env_remove("OUTPOST_DATA")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting outpost serve: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| format!("no address in the server's first line {line:?}"))?
        .to_owned();
    let db = format!("{url}/dbs/field");
    outpost(&binary, &["db", "create", &db])?;
    outpost(&binary, &["table", "create", &db, "t"])?;
    outpost(&binary, &["put", &db, "t", "r1", "name=Ann", "size=4"])?;
    let mut run = Command::new(st);
    run.arg("run")
        .arg(format!("{url}/openapi.json"))
        .args(["--checks", CHECKS, "--max-examples", &examples.to_string()])
        // Valid requests only: for some operations (PATCH of a table) Schemathesis 4 cannot build the
        // negated schemas of its negative mode ("a `not` whose complement is not spelled out") and
        // reports an error. Invalid input is the fuzz targets' and the bad-input suites' work.
        .args(["--mode", "positive"])
        // A fixed seed and no example database: the same cases on every machine and run.
        .args(["--seed", "1", "--generation-database", "none", "--workers", "2"])
        .args(["--request-timeout", "70", "--no-color"])
        .current_dir(std::env::temp_dir());
    let result = step(&format!("schemathesis ({examples} examples per operation)"), run);
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    result
}
