//! `cargo xtask`: the project's automation. `cargo xtask ci` is the one command CI and developers
//! run: if it passes locally, CI is green.

mod fuzz;
mod node;
mod pg;
mod schemathesis;
mod tidy;

use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci      every check CI runs: rustfmt, clippy (warnings denied), tidy, npm ci of the PouchDB tests'
          packages, all tests (the PostgreSQL ones against a throwaway cluster it starts and stops, unless
          OUTPOST_TEST_POSTGRES names a server), then Schemathesis against a running server and every fuzz
          target for 20 s
  bench   [--quick] [--only B2,B5] [--out DIR] [--doc FILE]: the SPEC §15 benchmarks on release builds,
          against a throwaway PostgreSQL for B7; a full run rewrites docs/BENCHMARKS.md and docs/bench/,
          --quick (a few minutes) writes target/bench/quick/
  fuzz    [--seconds N] [TARGET]: the cargo-fuzz targets of fuzz/ on the nightly toolchain (cargo-fuzz is
          installed if missing), each for N seconds (default 60) from its seeds in fuzz/seeds/TARGET;
          targets: value_decoder, rev_id, planner, quicksync_reader, manifest, http_bodies
  schemathesis  [--examples N]: Schemathesis (pip, into target/schemathesis-venv) against a running
          outpost serve's /openapi.json with the four conformance checks; N test cases per operation
  pg      start|stop|url: a PostgreSQL for this workspace's tests (export OUTPOST_TEST_POSTGRES=$(cargo xtask pg url))
  tidy    project conventions: dependency direction of SPEC §1, crate-root docs
  help    this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("pg") => pg::command(&workspace_root(), &args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("schemathesis") => schemathesis::command(&args[1..]),
        Some("tidy") => tidy::check(&workspace_root()).map_err(|problems| problems.join("\n")),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Run one step, echoing it and its duration; fail with its name.
fn step(name: &str, mut cmd: Command) -> Result<(), String> {
    println!("\n==> {name}");
    let started = Instant::now();
    let status = cmd.status().map_err(|e| format!("{name}: cannot start: {e}"))?;
    println!("<== {name}: {} in {:.0?}", if status.success() { "ok" } else { "FAILED" }, started.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

/// The examples: every `examples/*.rs` (tidy checks that crates/outpost/Cargo.toml names each).
fn examples() -> Result<Vec<String>, String> {
    let dir = workspace_root().join("examples");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.path().file_name()?.to_str()?.strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// How long CI runs each fuzz target.
const CI_FUZZ_SECONDS: u64 = 20;

fn ci() -> Result<(), String> {
    let started = Instant::now();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("rustfmt", fmt)?;

    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]);
    step("clippy", clippy)?;

    println!("\n==> tidy");
    tidy::check(&workspace_root()).map_err(|problems| format!("tidy:\n{}", problems.join("\n")))?;
    println!("<== tidy: ok");

    // What the PouchDB tests drive.
    node::install()?;

    // Stopped when dropped: at the end, or as soon as a step fails.
    let postgres = pg::throwaway()?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--all-targets", "--locked"]);
    if let Some(pg) = &postgres {
        test.env(pg::URL_VAR, pg.url());
    }
    step("tests", test)?;

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc", "--locked"]);
    step("doc tests", doc)?;
    drop(postgres);

    // Every example, as a user runs it from a fresh clone.
    for example in examples()? {
        let mut run = cargo();
        run.args(["run", "--locked", "--example", &example]);
        step(&format!("example {example}"), run)?;
    }

    // The OpenAPI document against the running server.
    schemathesis::run(schemathesis::DEFAULT_EXAMPLES)?;

    // Every fuzz target, briefly, from its committed seeds.
    fuzz::run(&fuzz::TARGETS, CI_FUZZ_SECONDS)?;

    println!("\nci: every check passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo xtask bench`: build `outpost` and `outpost-bench` in release, start a throwaway PostgreSQL
/// for B7 (unless one is given or B7 is not asked for), and run the benchmarks from the workspace root.
fn bench(args: &[String]) -> Result<(), String> {
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "outpost-cli", "-p", "outpost-bench"]);
    step("release build", build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), Into::into);
    let target = if target.is_absolute() { target } else { workspace_root().join(target) };
    let only_b7_absent = args
        .windows(2)
        .find(|w| w[0] == "--only")
        .is_some_and(|w| !w[1].split(',').any(|id| id.trim().eq_ignore_ascii_case("B7")));
    let given = std::env::var("OUTPOST_BENCH_POSTGRES").ok().filter(|u| !u.is_empty());
    let postgres = if only_b7_absent || given.is_some() { None } else { pg::throwaway()? };
    let mut run = Command::new(target.join("release").join("outpost-bench"));
    run.current_dir(workspace_root()).arg("run").args(args);
    if let Some(pg) = &postgres {
        run.env("OUTPOST_BENCH_POSTGRES", pg.url());
    } else if let Some(url) = given.or_else(|| std::env::var(pg::URL_VAR).ok()) {
        run.env("OUTPOST_BENCH_POSTGRES", url);
    }
    step("bench", run)
}
