//! `outpost sync SOURCE TARGET`: replication between any two locators (SPEC §7, §12), with a
//! progress bar on a terminal and the pass report as text or `--json`.

use std::sync::Arc;
use std::time::Instant;

use outpost_api::{Error, ErrorKind, Limits, Result};
use outpost_client::ClientConfig;
use outpost_reconciler::{CancellationToken, Options, Progress, ProgressFn, Report};
use serde::Serialize;

use crate::locator::{Locator, OpenDatabase};
use crate::output::{self, Bar};
use crate::SyncArgs;

pub async fn run(args: SyncArgs, json: bool) -> Result<()> {
    outpost_api::check_page(args.batch_size as u64, "--batch-size")?;
    let source_locator: Locator = args.source.parse()?;
    let target_locator: Locator = args.target.parse()?;
    if source_locator == target_locator {
        return Err(Error::invalid(format!("{source_locator} is both the source and the target")));
    }
    let source_client = crate::remote::config_with(args.source_token_file.as_deref())?;
    let target_client = crate::remote::config_with(args.target_token_file.as_deref())?;
    let source = source_locator.open_with(Limits::default(), &source_client).await.map_err(|e| e.context("source"))?;
    let target =
        open_target(&target_locator, args.create_target, &target_client).await.map_err(|e| e.context("target"))?;

    let cancel = CancellationToken::new();
    let interrupt = cancel.clone();
    // Ctrl-C stops at the next call boundary; everything committed so far stays.
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let bar = ProgressView::new(json, &format!("{source_locator} → {target_locator}"));
    let options = Options {
        tables: args.tables.clone(),
        batch_size: args.batch_size,
        continuous: args.continuous,
        progress: Some(bar.callback()),
        cancel,
        ..Options::default()
    };
    let result = if args.both {
        outpost_reconciler::sync(source.database(), target.database(), &options).await.map(|(a, b)| vec![a, b])
    } else {
        outpost_reconciler::replicate(source.database(), target.database(), &options).await.map(|r| vec![r])
    };
    bar.finish();
    let reports = result?;
    let directions: Vec<Direction<'_>> = reports
        .iter()
        .enumerate()
        .map(|(i, report)| {
            let (from, to) =
                if i == 0 { (&source_locator, &target_locator) } else { (&target_locator, &source_locator) };
            Direction { from: from.to_string(), to: to.to_string(), report, peak_rss_bytes: output::peak_rss() }
        })
        .collect();
    for d in &directions {
        for warning in &d.report.warnings {
            output::note(&format!("warning: {} → {}: {warning}", d.from, d.to));
        }
    }
    if json {
        if let [one] = directions.as_slice() {
            output::emit_json(one)
        } else {
            output::emit_json(&directions)
        }
    } else {
        let text: Vec<String> = directions.iter().map(human).collect();
        output::emit(&text.join("\n"))
    }
}

async fn open_target(locator: &Locator, create: bool, client: &ClientConfig) -> Result<OpenDatabase> {
    match locator.open_with(Limits::default(), client).await {
        Err(e) if e.kind == ErrorKind::NotFound && create => {
            let name = locator.default_name()?;
            locator.create_with(&name, Limits::default(), client).await
        }
        Err(e) if e.kind == ErrorKind::NotFound => {
            Err(Error::not_found(format!("{}; pass --create-target to create it", e.message)))
        }
        other => other,
    }
}

/// One direction's report, as `--json` prints it: `from` and `to` are the locators (the report's
/// `source` and `target` are the databases' uuids).
#[derive(Serialize)]
struct Direction<'a> {
    from: String,
    to: String,
    #[serde(flatten)]
    report: &'a Report,
    /// The peak resident set size of this process (VmHWM), where the OS tells it.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_bytes: Option<u64>,
}

fn human(d: &Direction<'_>) -> String {
    let r = d.report;
    let start = match r.start.origin {
        outpost_reconciler::Origin::Zero => "the beginning".to_owned(),
        origin => format!("seq {} ({})", r.start.seq, format!("{origin:?}").to_lowercase()),
    };
    let state = if r.cancelled {
        "stopped (cancelled; committed progress kept)"
    } else if r.drained {
        "drained"
    } else {
        "not drained"
    };
    format!(
        "{} → {}: {state}\n  started from {start}, now at source seq {}\n  {} changes read, {} revisions fetched, {} \
         written, {} in {} requests, {:.1}s{}",
        d.from,
        d.to,
        r.end_seq,
        r.progress.changes_read,
        r.progress.revisions_fetched,
        r.progress.revisions_written,
        bytes(r.progress.bytes),
        r.requests,
        r.duration_ms as f64 / 1000.0,
        if r.restarts > 0 { format!(", {} restarts after faults", r.restarts) } else { String::new() }
    )
}

/// A byte count for people.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A progress bar on stderr (only when a person is watching and no JSON was asked for): the source
/// seq against the source's update_seq, with records, revisions, bytes and the rate.
struct ProgressView {
    bar: Bar,
}

impl ProgressView {
    fn new(json: bool, what: &str) -> Self {
        ProgressView { bar: Bar::new(json, what, "seq ") }
    }

    fn callback(&self) -> ProgressFn {
        let bar = self.bar.clone();
        let started = Instant::now();
        // Both directions of --both report through one bar; the latest report wins.
        Arc::new(move |p: &Progress| {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let message = format!(
                "{} records, {} written, {} ({:.0} rec/s)",
                p.changes_read,
                p.revisions_written,
                bytes(p.bytes),
                p.changes_read as f64 / secs
            );
            bar.show(p.source_seq, p.source_update_seq, &message);
        })
    }

    fn finish(&self) {
        self.bar.finish();
    }
}
