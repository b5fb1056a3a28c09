//! `cargo xtask fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets of `fuzz/` (nightly, outside the
//! workspace), each run for a bounded time from its committed seeds in `fuzz/seeds/<target>/`. New
//! inputs the fuzzer finds go to `target/fuzz/corpus/<target>/` (kept between local runs, never
//! committed by accident); a crash is written to `target/fuzz/artifacts/<target>/` and fails the run
//! (turn it into a regression test, and add it to the seeds).

use std::path::Path;
use std::process::Command;

use crate::{step, workspace_root};

/// Every target, in the order CI runs them.
pub const TARGETS: [&str; 6] = ["value_decoder", "rev_id", "planner", "quicksync_reader", "manifest", "http_bodies"];

/// How long each target runs when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// A command of the nightly toolchain (through rustup, whatever toolchain runs xtask).
fn nightly(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root()).env("RUSTUP_TOOLCHAIN", "nightly");
    for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Install cargo-fuzz unless it is there.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let found = nightly("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-fuzz", "--locked"]).env_remove("CARGO").env_remove("RUSTUP_TOOLCHAIN");
    step("install cargo-fuzz", install)
}

pub fn command(args: &[String]) -> Result<(), String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--seconds {value:?}: expected a positive number"))?;
            }
            target if TARGETS.contains(&target) => chosen.push(target),
            other => {
                return Err(format!("unknown fuzz target or option {other:?}; the targets are {}", TARGETS.join(", ")))
            }
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.to_vec();
    }
    run(&chosen, seconds)
}

/// Build every target once, then run each chosen one for `seconds`.
pub fn run(targets: &[&str], seconds: u64) -> Result<(), String> {
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let mut build = nightly("cargo");
    build.args(["fuzz", "build", "--fuzz-dir", "fuzz"]);
    step("fuzz build", build)?;
    for target in targets {
        let seeds = root.join("fuzz/seeds").join(target);
        let corpus = root.join("target/fuzz/corpus").join(target);
        let artifacts = root.join("target/fuzz/artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        if !has_files(&seeds) {
            return Err(format!("fuzz target {target} has no seeds in {}", seeds.display()));
        }
        let mut run = nightly("cargo");
        run.args(["fuzz", "run", "--fuzz-dir", "fuzz", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-timeout=20")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()));
        step(&format!("fuzz {target} ({seconds} s)"), run)
            .map_err(|e| format!("{e}: the input that failed is in {}", artifacts.display()))?;
    }
    Ok(())
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_file())))
}
