//! `outpost-bench`: the SPEC §15 benchmarks (`cargo xtask bench` builds it in release and runs it).
//!
//! `run` seeds source databases, starts `outpost serve` on loopback ports, measures each workload
//! several times as separate processes (the `outpost` CLI and this binary's `worker`s, each reporting
//! its peak RSS from the OS), measures the references in the same run, and writes the results as
//! JSON, an SVG chart and the generated part of docs/BENCHMARKS.md.

mod floor;
mod procs;
mod records;
mod report;
mod run;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "outpost-bench", about = "The SPEC §15 benchmarks; normally run as `cargo xtask bench`.")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Measure every workload (or those of --only) and write the report.
    Run(RunArgs),
    /// One measured write (used by `run`; prints a JSON line).
    #[command(subcommand, hide = true)]
    Worker(WorkerCmd),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Small sizes (10k records; 2k/10k/50k for growth) for a run of a few minutes.
    #[arg(long)]
    quick: bool,
    /// Only these targets (B1…B7), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "B2,B5")]
    only: Option<Vec<String>>,
    /// Where results.json and replication.svg go (default: docs/bench for a full run,
    /// target/bench/quick for --quick).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The markdown report whose generated part is replaced (default: docs/BENCHMARKS.md for a
    /// full run, OUT/BENCHMARKS.md for --quick).
    #[arg(long, value_name = "FILE")]
    doc: Option<PathBuf>,
    /// Scratch directory for the databases (removed at the end).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// The `outpost` binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    outpost: Option<PathBuf>,
    /// A PostgreSQL server for B7 (postgres://…); B7 is reported as not measured without one.
    #[arg(long, env = "OUTPOST_BENCH_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
}

#[derive(Subcommand, Debug)]
enum WorkerCmd {
    /// Write records through Outpost's batch API.
    Write(WriteArgs),
    /// Insert the same records with bare rusqlite (B1's reference).
    Reference(WriteArgs),
    /// Insert the same new records into a candidate schema, everything but the SQL made untimed.
    Floor(FloorArgs),
}

#[derive(Args, Debug)]
struct FloorArgs {
    #[command(flatten)]
    rows: WriteArgs,
    /// The schema whose floor is measured.
    #[arg(long, value_enum)]
    schema: floor::Schema,
}

#[derive(Args, Debug)]
struct WriteArgs {
    /// A SQLite file, postgres://… (with --name) or http://…/dbs/NAME.
    #[arg(long)]
    db: String,
    #[arg(long, default_value = "bench")]
    name: String,
    #[arg(long)]
    create: bool,
    #[arg(long, default_value_t = 0)]
    from: u64,
    #[arg(long)]
    count: u64,
    #[arg(long, default_value_t = 0)]
    version: u64,
    #[arg(long, default_value_t = run::SEED)]
    seed: u64,
    #[arg(long, default_value_t = run::BATCH)]
    batch: usize,
    /// Make the records but write none: the baseline an instruction count of the write path
    /// subtracts.
    #[arg(long)]
    dry: bool,
}

impl WriteArgs {
    fn rows(&self) -> worker::Rows {
        worker::Rows {
            seed: self.seed,
            from: self.from,
            count: self.count,
            version: self.version,
            batch: self.batch.max(1),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run_command(args),
        Cmd::Worker(cmd) => worker_command(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("outpost-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn worker_command(cmd: WorkerCmd) -> Result<(), String> {
    let measured = match cmd {
        WorkerCmd::Floor(args) => floor::floor(Path::new(&args.rows.db), args.rows.rows(), args.schema)?,
        WorkerCmd::Reference(args) => {
            worker::reference(Path::new(&args.db), args.rows(), args.dry).map_err(|e| format!("rusqlite: {e}"))?
        }
        WorkerCmd::Write(args) => {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let db = worker::open(&args.db, &args.name, args.create).await.map_err(|e| e.to_string())?;
                let rows = args.rows();
                let measured = if args.dry {
                    worker::make(db.as_ref(), rows).await
                } else {
                    worker::write(db.as_ref(), rows).await
                };
                measured.map_err(|e| e.to_string())
            })?
        }
    };
    println!("{}", serde_json::to_string(&measured).map_err(|e| e.to_string())?);
    Ok(())
}

fn run_command(args: RunArgs) -> Result<(), String> {
    let bench = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let outpost = args.outpost.unwrap_or_else(|| bench.with_file_name("outpost"));
    if !outpost.is_file() {
        return Err(format!(
            "{}: no outpost binary (build it: cargo build --release -p outpost-cli)",
            outpost.display()
        ));
    }
    let only = match args.only {
        Some(ids) => {
            let ids: std::collections::BTreeSet<String> = ids.iter().map(|s| s.trim().to_uppercase()).collect();
            if let Some(bad) = ids.iter().find(|id| !run::IDS.contains(&id.as_str())) {
                return Err(format!("--only: unknown target {bad:?} (expected some of {})", run::IDS.join(",")));
            }
            Some(ids)
        }
        None => None,
    };
    let out = args.out.unwrap_or_else(|| PathBuf::from(if args.quick { "target/bench/quick" } else { "docs/bench" }));
    let doc = args.doc.unwrap_or_else(|| {
        if args.quick {
            out.join("BENCHMARKS.md")
        } else {
            PathBuf::from("docs/BENCHMARKS.md")
        }
    });
    let work = args.work.unwrap_or_else(|| std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id())));
    let config =
        run::Config { quick: args.quick, only, work, postgres: args.postgres, tools: procs::Tools { outpost, bench } };
    let results = run::run(&config);
    let _ = std::fs::remove_dir_all(&config.work);
    let results = results?;

    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = out.join("results.json");
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&json, text + "\n").map_err(|e| format!("{}: {e}", json.display()))?;
    let svg = out.join("replication.svg");
    std::fs::write(&svg, report::chart(&results.growth)).map_err(|e| format!("{}: {e}", svg.display()))?;
    let chart = relative(&svg, doc.parent().unwrap_or(Path::new(".")));
    let existing = std::fs::read_to_string(&doc).unwrap_or_else(|_| "# Benchmarks\n".into());
    let markdown = report::splice(&existing, &report::markdown(&results, &chart));
    std::fs::write(&doc, markdown).map_err(|e| format!("{}: {e}", doc.display()))?;

    for row in &results.rows {
        let met = match row.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        println!("{:3} {:<48} {:<12} ({}) {}", row.id, row.figure, met, row.target, row.ratio);
    }
    println!("\nwrote {}, {} and {} in {:.0} s", json.display(), svg.display(), doc.display(), results.seconds);
    Ok(())
}

/// `path` relative to `dir` when it lies inside it, else as given.
fn relative(path: &Path, dir: &Path) -> String {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let (p, d) = (canon(path), canon(dir));
    p.strip_prefix(&d).map_or_else(|_| p.to_string_lossy().into_owned(), |r| r.to_string_lossy().into_owned())
}
