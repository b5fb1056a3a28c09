//! One benchmark run: seed the source databases, measure every selected workload several times
//! (each with its reference in the same run), and turn the medians into the SPEC §15 table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::procs::{Pass, Result, Server, Tools};

mod checks;
mod counts;
use crate::report::{count, mb, median, rate, Growth, Machine, Results, Row};

/// The seed of every workload's records.
pub const SEED: u64 = 20_261_121;
/// Records changed between two synchronised databases in B3.
pub const CHANGED: u64 = 200;
/// Records per `write_batch` when writing, and per transaction in the rusqlite reference.
pub const BATCH: usize = 1000;
/// Every target id, in order.
pub const IDS: [&str; 7] = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"];

pub struct Config {
    pub quick: bool,
    pub only: Option<BTreeSet<String>>,
    pub work: PathBuf,
    pub postgres: Option<String>,
    pub tools: Tools,
}

/// Sizes and repetitions of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Records of B1, B2, B4 and B7.
    pub records: u64,
    /// Database sizes for B3, B6 and the growth chart; the largest is also B5's.
    pub sizes: Vec<u64>,
    /// Measurements of each workload (medians reported).
    pub runs: usize,
    /// Measurements of B3 at each size.
    pub changed_runs: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan { records: 10_000, sizes: vec![2_000, 10_000, 50_000], runs: 3, changed_runs: 3 }
        } else {
            Plan { records: 100_000, sizes: vec![10_000, 100_000, 1_000_000], runs: 3, changed_runs: 5 }
        }
    }

    fn largest(&self) -> u64 {
        self.sizes.iter().copied().max().unwrap_or(self.records)
    }
}

struct Bench<'a> {
    cfg: &'a Config,
    plan: Plan,
    data: PathBuf,
    samples: BTreeMap<String, Vec<f64>>,
    rows: Vec<Row>,
    growth: Vec<Growth>,
}

fn note(message: &str) {
    eprintln!("bench: {message}");
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn run(cfg: &Config) -> Result<Results> {
    let started = Instant::now();
    let plan = Plan::new(cfg.quick);
    let want = |id: &str| cfg.only.as_ref().is_none_or(|o| o.contains(id));
    let _ = std::fs::remove_dir_all(&cfg.work);
    let data = cfg.work.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let mut bench =
        Bench { cfg, plan: plan.clone(), data, samples: BTreeMap::new(), rows: Vec::new(), growth: Vec::new() };

    // The sizes whose first full replication is measured: B2's, the growth sizes, B5's reference.
    let mut sizes = BTreeSet::new();
    if want("B2") || want("B4") || want("B7") {
        sizes.insert(plan.records);
    }
    if want("B3") || want("B6") {
        sizes.extend(plan.sizes.iter().copied());
    }
    if want("B5") {
        sizes.insert(plan.largest());
    }
    for &size in &sizes {
        bench.seed_source(size, want("B5") && size == plan.largest())?;
    }
    if want("B1") {
        bench.b1()?;
    }
    for &size in &sizes {
        bench.replication(
            size,
            (want("B3") || want("B6")) && plan.sizes.contains(&size),
            want("B5") && size == plan.largest(),
        )?;
    }
    if want("B2") {
        bench.b2();
    }
    if want("B3") {
        bench.b3();
    }
    if want("B4") {
        bench.b4()?;
    }
    if want("B5") {
        bench.b5_reference()?;
        bench.b5();
    }
    if want("B6") {
        bench.b6();
    }
    if want("B7") {
        bench.b7()?;
    }
    let _ = std::fs::remove_dir_all(&cfg.work);
    Ok(Results {
        mode: if cfg.quick { "quick" } else { "full" }.into(),
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: command_line("git", &["rev-parse", "--short", "HEAD"]),
        machine: machine(),
        seconds: started.elapsed().as_secs_f64(),
        rows: bench.rows,
        growth: bench.growth,
        samples: bench.samples,
    })
}

impl Bench<'_> {
    fn sample(&mut self, name: &str, value: f64) {
        self.samples.entry(name.to_owned()).or_default().push(value);
    }

    fn median(&self, name: &str) -> f64 {
        self.samples.get(name).map_or(f64::NAN, |v| median(v))
    }

    fn tools(&self) -> &Tools {
        &self.cfg.tools
    }

    fn write_args(locator: &str, name: &str, create: bool, from: u64, count: u64, version: u64) -> Vec<String> {
        let mut args = vec![
            "write".into(),
            "--db".into(),
            locator.into(),
            "--name".into(),
            name.into(),
            "--from".into(),
            from.to_string(),
            "--count".into(),
            count.to_string(),
            "--version".into(),
            version.to_string(),
            "--seed".into(),
            SEED.to_string(),
            "--batch".into(),
            BATCH.to_string(),
        ];
        if create {
            args.push("--create".into());
        }
        args
    }

    fn source_name(size: u64) -> String {
        format!("src{size}")
    }

    /// Write the source database of `size` records (not a measured figure, but recorded). With
    /// `quicksync`, publish it as a snapshot of 80% of the records and deltas of the rest, as a
    /// server publishing as it goes would have.
    fn seed_source(&mut self, size: u64, quicksync: bool) -> Result<()> {
        let name = Self::source_name(size);
        let file = path_str(&self.data.join(format!("{name}.outpost")));
        let first = if quicksync { size * 4 / 5 } else { size };
        note(&format!("seeding {name} ({} records)", count(size)));
        let m = self.tools().worker(&Self::write_args(&file, &name, true, 0, first, 0))?;
        let mut seconds = m.seconds;
        if quicksync {
            let dir = path_str(&self.data.join("quicksync").join(&name));
            let every = (size / 10).max(1).to_string();
            let snapshot_every = (size / 2).max(1).to_string();
            let publish = ["quicksync", "publish", &file, &dir, "--every", &every, "--snapshot-every", &snapshot_every];
            self.tools().outpost(&publish)?;
            let m = self.tools().worker(&Self::write_args(&file, &name, false, first, size - first, 0))?;
            seconds += m.seconds;
            self.tools().outpost(&publish)?;
        }
        self.sample(&format!("seed.{size}.rec_s"), size as f64 / seconds);
        Ok(())
    }

    fn b1(&mut self) -> Result<()> {
        let n = self.plan.records;
        for run in 0..self.plan.runs {
            let file = self.cfg.work.join(format!("b1-{run}.outpost"));
            let reference = self.cfg.work.join(format!("b1-{run}.sqlite"));
            let mut ref_args = Self::write_args(&path_str(&reference), "b1", true, 0, n, 0);
            ref_args[0] = "reference".into();
            // Alternate the order so neither side always runs on a warmer machine.
            let (outpost, bare) = if run % 2 == 0 {
                let o = self.tools().worker(&Self::write_args(&path_str(&file), "b1", true, 0, n, 0))?;
                (o, self.tools().worker(&ref_args)?)
            } else {
                let b = self.tools().worker(&ref_args)?;
                (self.tools().worker(&Self::write_args(&path_str(&file), "b1", true, 0, n, 0))?, b)
            };
            note(&format!(
                "B1 run {}: outpost {}, bare rusqlite {}",
                run + 1,
                rate(n as f64 / outpost.seconds),
                rate(n as f64 / bare.seconds)
            ));
            self.sample("B1.outpost.rec_s", n as f64 / outpost.seconds);
            self.sample("B1.rusqlite.rec_s", n as f64 / bare.seconds);
            self.sample("B1.outpost.peak_mb", outpost.peak_rss_bytes.unwrap_or(0) as f64 / 1e6);
            self.checked(&file, n, &format!("B1 run {}", run + 1))?;
            remove_db(&file);
            remove_db(&reference);
            // The schema floors: the same new records, only the SQL timed (floor.rs).
            for schema in crate::floor::Schema::ALL {
                let floor = self.cfg.work.join(format!("b1-floor-{run}.outpost"));
                let mut args = Self::write_args(&path_str(&floor), "b1", true, 0, n, 0);
                args[0] = "floor".into();
                args.extend(["--schema".into(), schema.name().into()]);
                let m = self.tools().worker(&args)?;
                note(&format!("B1 run {}: {} floor {}", run + 1, schema.name(), rate(n as f64 / m.seconds)));
                self.sample(&format!("B1.floor.{}.rec_s", schema.name()), n as f64 / m.seconds);
                remove_db(&floor);
            }
        }
        let callgrind = self.b1_instructions()?;
        let ours = self.median("B1.outpost.rec_s");
        let bare = self.median("B1.rusqlite.rec_s");
        let ratio = ours / bare;
        let floors: Vec<String> = crate::floor::Schema::ALL
            .iter()
            .map(|schema| {
                let floor = self.median(&format!("B1.floor.{}.rec_s", schema.name()));
                format!("{} {} ({:.2}× bare)", schema.name(), rate(floor), floor / bare)
            })
            .collect();
        self.rows.push(Row {
            id: "B1".into(),
            workload: format!("bulk local write of {} records, SQLite", count(n)),
            figure: rate(ours),
            reference: format!("bare rusqlite insert: {}", rate(bare)),
            ratio: format!("{ratio:.2}×"),
            target: "≥ 100k rec/s and ≥ 0.5× bare rusqlite".into(),
            met: Some(ours >= 100_000.0 && ratio >= 0.5),
            note: format!(
                "schema floors (only the SQL of new records timed, crates/bench/src/floor.rs): {}; {callgrind}",
                floors.join(", ")
            ),
        });
        Ok(())
    }

    /// First full replications of the `size` source over HTTP into new SQLite files (B2-style; the
    /// growth table and B6), then B3's changed records at this size, then B5's quicksync pulls.
    fn replication(&mut self, size: u64, changed: bool, quicksync: bool) -> Result<()> {
        let name = Self::source_name(size);
        let server =
            Server::start(&self.tools().outpost, &self.data, &self.cfg.work.join(format!("serve-{size}.log")))?;
        let url = server.db(&name);
        let mut client_peak: f64 = 0.0;
        let mut kept = None;
        for run in 0..self.plan.runs {
            let target = self.cfg.work.join(format!("client-{size}-{run}.outpost"));
            let v = self.tools().outpost(&["sync", &url, &path_str(&target), "--create-target"])?;
            let pass = Pass::of_sync(&v);
            if pass.written < size {
                return Err(format!("replicating {name}: {} revisions written, expected {size}", pass.written));
            }
            let per_s = size as f64 / (pass.ms / 1000.0);
            note(&format!(
                "replication of {} records, run {}: {} ({:.0} ms)",
                count(size),
                run + 1,
                rate(per_s),
                pass.ms
            ));
            self.sample(&format!("replication.{size}.rec_s"), per_s);
            let peak = pass.peak_rss_bytes.unwrap_or(0) as f64;
            self.sample(&format!("replication.{size}.client_peak_mb"), peak / 1e6);
            client_peak = client_peak.max(peak);
            if let Some(old) = kept.replace(target) {
                remove_db(&old);
            }
        }
        let server_peak = server.peak_rss().unwrap_or(0) as f64;
        self.sample(&format!("replication.{size}.server_peak_mb"), server_peak / 1e6);
        let target = kept.expect("at least one run");
        if size == self.plan.records {
            // B2's result, checked: the replica is sound and whole, and a corrupted source is refused.
            self.checked(&target, size, &format!("the replica of {name}"))?;
            self.corrupted_source_refused(&server, &name)?;
        }
        if changed {
            for run in 0..self.plan.changed_runs as u64 {
                // A different stretch of records each time, spread over the database.
                let from = (run * 7919 * CHANGED) % (size - CHANGED);
                self.tools().worker(&Self::write_args(&url, &name, false, from, CHANGED, run + 1))?;
                let v = self.tools().outpost(&["sync", &url, &path_str(&target)])?;
                let pass = Pass::of_sync(&v);
                if pass.written < CHANGED {
                    return Err(format!("B3 at {size}: {} revisions written, expected {CHANGED}", pass.written));
                }
                note(&format!("{CHANGED} changed records of {}, run {}: {:.0} ms", count(size), run + 1, pass.ms));
                self.sample(&format!("changed.{size}.ms"), pass.ms);
            }
        }
        remove_db(&target);
        if quicksync {
            let files = format!("{url}/quicksync/");
            for run in 0..self.plan.runs {
                let target = self.cfg.work.join(format!("qs-{run}.outpost"));
                let cache = self.cfg.work.join(format!("qs-cache-{run}"));
                let v = self.tools().outpost(&[
                    "quicksync",
                    "pull",
                    &files,
                    &path_str(&target),
                    "--no-live",
                    "--cache",
                    &path_str(&cache),
                ])?;
                let pass = Pass::of_pull(&v);
                if pass.written < size {
                    return Err(format!(
                        "quicksync pull of {name}: {} revisions written, expected {size}",
                        pass.written
                    ));
                }
                let per_s = size as f64 / (pass.ms / 1000.0);
                note(&format!("quicksync bootstrap of {} records, run {}: {}", count(size), run + 1, rate(per_s)));
                self.sample(&format!("quicksync.{size}.rec_s"), per_s);
                self.sample(&format!("quicksync.{size}.peak_mb"), pass.peak_rss_bytes.unwrap_or(0) as f64 / 1e6);
                remove_db(&target);
                let _ = std::fs::remove_dir_all(&cache);
            }
        }
        if self.plan.sizes.contains(&size) {
            let changed_ms = self.median(&format!("changed.{size}.ms"));
            self.growth.push(Growth {
                records: size,
                replication_rec_s: self.median(&format!("replication.{size}.rec_s")),
                server_peak_bytes: server_peak,
                client_peak_bytes: client_peak,
                changed_ms,
            });
        }
        Ok(())
    }

    fn b2(&mut self) {
        let n = self.plan.records;
        let per_s = self.median(&format!("replication.{n}.rec_s"));
        self.rows.push(Row {
            id: "B2".into(),
            workload: format!("first full replication of {} records, SQLite → SQLite over HTTP on loopback", count(n)),
            figure: rate(per_s),
            reference: format!("B1 write: {}", rate(self.median("B1.outpost.rec_s"))),
            ratio: String::new(),
            target: "≥ 80k rec/s".into(),
            met: Some(per_s >= 80_000.0),
            note: String::new(),
        });
    }

    fn b3(&mut self) {
        let (small, large) = (self.plan.sizes[0], self.plan.largest());
        let at_large = self.median(&format!("changed.{large}.ms"));
        let at_small = self.median(&format!("changed.{small}.ms"));
        let ratio = at_large / at_small;
        let all: Vec<String> = self
            .plan
            .sizes
            .iter()
            .map(|s| format!("{}: {:.0} ms", count(*s), self.median(&format!("changed.{s}.ms"))))
            .collect();
        self.rows.push(Row {
            id: "B3".into(),
            workload: format!("{CHANGED} changed records replicated between two {}-record databases", count(large)),
            figure: format!("{at_large:.0} ms"),
            reference: format!("same on {} records: {at_small:.0} ms", count(small)),
            ratio: format!("{ratio:.2}×"),
            target: "< 100 ms; ≤ 1.5× the small databases'".into(),
            met: Some(at_large < 100.0 && ratio <= 1.5),
            note: format!("by size: {}", all.join(", ")),
        });
    }

    /// SPEC §8's scenario: us-east ⇄ us-west in sync, store1 synced from us-east, then store1's first
    /// pass from us-west, which must start from what us-east's knowledge vouches for.
    fn b4(&mut self) -> Result<()> {
        let n = self.plan.records;
        let server = Server::start(&self.tools().outpost, &self.data, &self.cfg.work.join("serve-b4.log"))?;
        let east = server.db(&Self::source_name(n));
        for run in 0..self.plan.runs {
            let west = server.db(&format!("west{run}"));
            // us-east ⇄ us-west: both ways, so each holds knowledge about the other.
            self.tools().outpost(&["sync", &east, &west, "--create-target", "--both"])?;
            let store = self.cfg.work.join(format!("store-{run}.outpost"));
            let full = Pass::of_sync(&self.tools().outpost(&["sync", &east, &path_str(&store), "--create-target"])?);
            let first = Pass::of_sync(&self.tools().outpost(&["sync", &west, &path_str(&store)])?);
            note(&format!(
                "B4 run {}: {} records fetched in {:.0} ms; the full sync took {:.0} ms",
                run + 1,
                first.fetched,
                first.ms,
                full.ms
            ));
            self.sample("B4.fast_forward.ms", first.ms);
            self.sample("B4.fast_forward.fetched", first.fetched as f64);
            self.sample("B4.full.ms", full.ms);
            remove_db(&store);
        }
        let ms = self.median("B4.fast_forward.ms");
        let full = self.median("B4.full.ms");
        let fetched = self.samples["B4.fast_forward.fetched"].iter().copied().fold(0.0, f64::max);
        let ratio = ms / full;
        self.rows.push(Row {
            id: "B4".into(),
            workload: format!("transitive fast-forward first sync (§8 scenario, {} records)", count(n)),
            figure: format!("{fetched:.0} records transferred, {ms:.0} ms"),
            reference: format!("full sync: {full:.0} ms"),
            ratio: format!("{:.2}%", ratio * 100.0),
            target: "0 records; ≤ 2% of a full sync's time".into(),
            met: Some(fetched == 0.0 && ratio <= 0.02),
            note: String::new(),
        });
        Ok(())
    }

    /// B5's first reference: the bare rusqlite insert of the same rows (B1's reference at B5's size).
    fn b5_reference(&mut self) -> Result<()> {
        let size = self.plan.largest();
        for run in 0..self.plan.runs {
            let reference = self.cfg.work.join(format!("b5-{run}.sqlite"));
            let mut args = Self::write_args(&path_str(&reference), "b5", true, 0, size, 0);
            args[0] = "reference".into();
            let bare = self.tools().worker(&args)?;
            note(&format!(
                "B5 run {}: bare rusqlite insert of {} rows {}",
                run + 1,
                count(size),
                rate(size as f64 / bare.seconds)
            ));
            self.sample(&format!("B5.rusqlite.{size}.rec_s"), size as f64 / bare.seconds);
            remove_db(&reference);
        }
        Ok(())
    }

    fn b5(&mut self) {
        let size = self.plan.largest();
        let restore = self.median(&format!("quicksync.{size}.rec_s"));
        let replication = self.median(&format!("replication.{size}.rec_s"));
        let bare = self.median(&format!("B5.rusqlite.{size}.rec_s"));
        let (to_bare, to_replication) = (restore / bare, restore / replication);
        self.rows.push(Row {
            id: "B5".into(),
            workload: format!("quicksync bootstrap of {} records from snapshot + deltas over HTTP", count(size)),
            figure: rate(restore),
            reference: format!(
                "bare rusqlite insert of the same rows: {}; full replication of the same: {}",
                rate(bare),
                rate(replication)
            ),
            ratio: format!("{to_bare:.2}× bare, {to_replication:.1}× replication"),
            target: "≥ 1.0× bare rusqlite; ≥ 2.5× replication".into(),
            met: Some(to_bare >= 1.0 && to_replication >= 2.5),
            note: format!(
                "peak RSS of the pulling process: {}",
                mb(self.median(&format!("quicksync.{size}.peak_mb")) * 1e6)
            ),
        });
    }

    fn b6(&mut self) {
        let (Some(small), Some(large)) = (self.growth.first(), self.growth.last()) else { return };
        let peak = |g: &Growth| g.server_peak_bytes.max(g.client_peak_bytes);
        let ratio = peak(large) / peak(small);
        self.rows.push(Row {
            id: "B6".into(),
            workload: format!("peak memory during replication of {} records", count(large.records)),
            figure: format!("server {}, client {}", mb(large.server_peak_bytes), mb(large.client_peak_bytes)),
            reference: format!("at {} records: {}", count(small.records), mb(peak(small))),
            ratio: format!("{ratio:.2}×"),
            target: "≤ 150 MB RSS; flat in size (≤ 1.5× from smallest)".into(),
            met: Some(peak(large) <= 150e6 && ratio <= 1.5),
            note: String::new(),
        });
    }

    fn b7(&mut self) -> Result<()> {
        let n = self.plan.records;
        let Some(pg) = self.cfg.postgres.clone() else {
            self.rows.push(Row {
                id: "B7".into(),
                workload: "B1 and B2 with PostgreSQL as target".into(),
                target: "≥ 40k rec/s".into(),
                note: "no PostgreSQL given (`cargo xtask bench` starts one; or pass --postgres URL)".into(),
                ..Row::default()
            });
            return Ok(());
        };
        let server = Server::start(&self.tools().outpost, &self.data, &self.cfg.work.join("serve-b7.log"))?;
        let source = server.db(&Self::source_name(n));
        let stamp = std::process::id();
        for run in 0..self.plan.runs {
            let name = format!("bench_w{stamp}_{run}");
            let m = self.tools().worker(&Self::write_args(&pg, &name, true, 0, n, 0))?;
            self.sample("B7.write.rec_s", n as f64 / m.seconds);
            let name = format!("bench_r{stamp}_{run}");
            let v = self.tools().outpost(&["--db", &name, "sync", &source, &pg, "--create-target"])?;
            let pass = Pass::of_sync(&v);
            if pass.written < n {
                return Err(format!("B7: {} revisions written into PostgreSQL, expected {n}", pass.written));
            }
            self.sample("B7.replication.rec_s", n as f64 / (pass.ms / 1000.0));
            note(&format!(
                "B7 run {}: write {}, replication {}",
                run + 1,
                rate(n as f64 / m.seconds),
                rate(n as f64 / (pass.ms / 1000.0))
            ));
        }
        let write = self.median("B7.write.rec_s");
        let replication = self.median("B7.replication.rec_s");
        self.rows.push(Row {
            id: "B7".into(),
            workload: format!("B1 and B2 ({} records) with PostgreSQL as target", count(n)),
            figure: format!("write {}, replication {}", rate(write), rate(replication)),
            reference: format!(
                "SQLite: write {}, replication {}",
                rate(self.median("B1.outpost.rec_s")),
                rate(self.median(&format!("replication.{n}.rec_s")))
            ),
            ratio: String::new(),
            target: "≥ 40k rec/s".into(),
            met: Some(write >= 40_000.0 && replication >= 40_000.0),
            note: String::new(),
        });
        Ok(())
    }
}

/// Remove a SQLite database file with its WAL and shared-memory files.
fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".into(), |(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = crate::worker::rss_line(&meminfo, "MemTotal:").unwrap_or(0) as f64 / (1u64 << 30) as f64;
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
    }
}
