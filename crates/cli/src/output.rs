//! What commands print: machine JSON (`--json`, records in typed wire form or, with `--plain`, plain
//! JSON bodies) and concise human text. Results go to stdout; notes such as "more records after …"
//! go to stderr so that piped output stays data.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use outpost_api::{Change, ChangesPage, CompactReport, DbInfo, Error, Record, RecordPage, Result, TableDef};
use outpost_engine::CheckReport;
use serde::Serialize;

/// Write `text` and a newline to stdout. A reader that went away (`outpost ls … | head`) is not an
/// error.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::internal(format!("writing to stdout: {e}"))),
        _ => Ok(()),
    }
}

/// A note for people, on stderr.
pub fn note(text: &str) {
    eprintln!("{text}");
}

/// Machine JSON, one document on one line.
pub fn emit_json(value: &impl Serialize) -> Result<()> {
    emit(&serde_json::to_string(value).map_err(|e| Error::internal(format!("encoding output: {e}")))?)
}

/// A record as JSON: typed wire attributes, or plain JSON ones with `plain`.
pub fn record_json(record: &Record, plain: bool) -> Result<serde_json::Value> {
    let mut json = serde_json::to_value(record).map_err(|e| Error::internal(format!("encoding a record: {e}")))?;
    if plain {
        json["attributes"] = record.attributes.to_plain();
    }
    Ok(json)
}

/// A page of records as JSON: `{"records": [...], "next_after": ...}`.
pub fn page_json(page: &RecordPage, plain: bool) -> Result<serde_json::Value> {
    let records = page.records.iter().map(|r| record_json(r, plain)).collect::<Result<Vec<_>>>()?;
    Ok(serde_json::json!({ "records": records, "next_after": page.next_after }))
}

/// Rows of `label value`, labels padded to one width.
fn rows(items: &[(&str, String)]) -> String {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let indent = format!("\n{}", " ".repeat(width + 2));
    let lines: Vec<String> =
        items.iter().map(|(k, v)| format!("{k:<width$}  {}", v.replace('\n', &indent)).trim_end().to_owned()).collect();
    lines.join("\n")
}

fn pretty(json: &serde_json::Value) -> String {
    serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
}

fn list(revs: &[impl std::fmt::Display]) -> String {
    if revs.is_empty() {
        "none".to_owned()
    } else {
        revs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// One record for people: its rev, its attributes as pretty plain JSON, then what was asked for.
pub fn record_human(record: &Record) -> String {
    let mut out = format!("rev {}", record.rev);
    if record.deleted {
        out.push_str(" (deleted)");
    }
    out.push('\n');
    out.push_str(&pretty(&record.attributes.to_plain()));
    if let Some(conflicts) = &record.conflicts {
        out.push_str(&format!("\nconflicts: {}", list(conflicts)));
    }
    if let Some(fields) = record.field_conflicts.as_ref().filter(|f| !f.is_empty()) {
        out.push_str(&format!("\nfield conflicts: {}", list(fields)));
    }
    if let Some(revs) = &record.revisions {
        out.push_str(&format!("\nrevisions: {}", list(revs)));
    }
    out
}

/// A page of records for people: one line each, `id  rev  {plain json}`.
pub fn page_human(page: &RecordPage) -> String {
    let width = page.records.iter().map(|r| r.id.chars().count()).max().unwrap_or(0).min(40);
    let lines: Vec<String> = page
        .records
        .iter()
        .map(|r| {
            let body = if r.deleted { "(deleted)".to_owned() } else { r.attributes.to_plain().to_string() };
            format!("{:<width$}  {}  {body}", r.id, r.rev)
        })
        .collect();
    lines.join("\n")
}

/// One change for people: `seq  table/id  rev`, marked when deleted or branched.
pub fn change_line(change: &Change) -> String {
    let mut line = format!("{}  {}/{}  {}", change.seq, change.table, change.id, change.rev);
    if change.deleted {
        line.push_str("  deleted");
    }
    if change.leaves.len() > 1 {
        line.push_str(&format!("  ({} leaves)", change.leaves.len()));
    }
    line
}

/// The position line after a page of changes.
pub fn changes_footer(page: &ChangesPage) -> String {
    format!("last_seq {}, pending {}", page.last_seq, page.pending)
}

/// A table definition for people.
pub fn table_human(def: &TableDef) -> String {
    let fields = if def.fields.is_empty() {
        "none".to_owned()
    } else {
        let decls: Vec<String> = def
            .fields
            .iter()
            .map(|(name, d)| format!("{name}: {}{}", d.ty, if d.required { " (required)" } else { "" }))
            .collect();
        decls.join(", ")
    };
    let mut items = vec![
        ("name", def.name.clone()),
        ("rev", def.rev.to_string()),
        ("description", def.description.clone()),
        ("created_at", def.created_at.to_string()),
        ("created_by", def.created_by.clone()),
        ("policy", def.policy.as_str().to_owned()),
        ("fields", fields),
    ];
    if !def.metadata.is_empty() {
        items.push(("metadata", def.metadata.to_plain().to_string()));
    }
    if let Some(keep) = def.keep_bodies {
        items.push(("keep_bodies", keep.to_string()));
    }
    if def.couch {
        items.push(("couch", "true".to_owned()));
    }
    rows(&items)
}

/// Table definitions for people: one line each, `name  policy  description`.
pub fn tables_human(defs: &[TableDef]) -> String {
    let width = defs.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let lines: Vec<String> = defs
        .iter()
        .map(|d| format!("{:<width$}  {:<14}  {}", d.name, d.policy.as_str(), d.description).trim_end().to_owned())
        .collect();
    lines.join("\n")
}

/// Database identity and position for people.
pub fn info_human(info: &DbInfo) -> String {
    let epochs: Vec<String> = info.epochs.iter().map(|e| format!("{} from seq {}", e.uuid, e.start_seq)).collect();
    rows(&[
        ("name", info.name.clone()),
        ("uuid", info.uuid.to_string()),
        ("backend", info.backend.clone()),
        ("update_seq", info.update_seq.to_string()),
        ("records", info.record_count.to_string()),
        ("chain", info.chain.to_string()),
        ("epochs", epochs.join("\n")),
    ])
}

/// One database in a directory listing: its info, or why it could not be read.
#[derive(Serialize)]
pub struct ListedDb {
    /// The database name.
    pub name: String,
    /// Its file.
    pub path: String,
    /// Its info when it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<DbInfo>,
    /// The error when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

/// A directory listing for people: a header, then `name  update_seq  records` rows.
pub fn dbs_human(dbs: &[ListedDb]) -> String {
    let width = dbs.iter().map(|d| d.name.len()).max().unwrap_or(0).max("NAME".len());
    let mut lines = vec![format!("{:<width$}  {:>10}  {:>10}", "NAME", "UPDATE_SEQ", "RECORDS")];
    for d in dbs {
        lines.push(match (&d.info, &d.error) {
            (Some(i), _) => format!("{:<width$}  {:>10}  {:>10}", d.name, i.update_seq, i.record_count),
            (None, Some(e)) => format!("{:<width$}  error: {e}", d.name),
            (None, None) => d.name.clone(),
        });
    }
    lines.join("\n")
}

/// A compaction's report for people: what was dropped and the space before and after.
pub fn compact_human(report: &CompactReport) -> String {
    let mut out = format!(
        "{} records read, {} bodies dropped ({})",
        report.records,
        report.bodies_dropped,
        bytes(report.body_bytes)
    );
    if let (Some(before), Some(after)) = (report.size_before, report.size_after) {
        out.push_str(&format!("; size {} -> {}", bytes(before), bytes(after)));
    }
    out
}

/// A byte count for people: `512 B`, `1.5 KiB`, `20.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The outcome of `db check` for people.
pub fn check_human(report: &CheckReport) -> String {
    let compacted = if report.compacted > 0 { format!(" ({} compacted)", report.compacted) } else { String::new() };
    let superseded = if report.superseded > 0 {
        format!(" ({} superseded by a better body)", report.superseded)
    } else {
        String::new()
    };
    let foreign = if report.foreign > 0 {
        format!(" ({} foreign, against their digests)", report.foreign)
    } else {
        String::new()
    };
    let summary = format!(
        "{} revision events read, {} bodies re-hashed{foreign}{compacted}{superseded}, {} records' states recomputed \
         ({} live), \
         update_seq {}",
        report.events, report.rehashed, report.records, report.live_records, report.update_seq
    );
    if report.problems.is_empty() {
        format!("ok: {summary}")
    } else {
        let mut out = format!("{} problem(s): {summary}", report.problems.len());
        for p in &report.problems {
            out.push_str(&format!("\n  {p}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_api::{Attributes, Value};

    fn record() -> Record {
        Record {
            table: "t".into(),
            id: "a".into(),
            rev: "2-0123456789abcdef0123456789abcdef".parse().unwrap(),
            deleted: false,
            attributes: Attributes::new().with("size", Value::Int(4)).with("name", Value::string("Ann")),
            conflicts: Some(vec!["2-00000000000000000000000000000001".parse().unwrap()]),
            field_conflicts: Some(vec![]),
            revisions: None,
        }
    }

    #[test]
    fn records_print_in_wire_or_plain_json() {
        let r = record();
        let wire = record_json(&r, false).unwrap();
        assert_eq!(wire["attributes"]["size"], serde_json::json!({"int": "4"}));
        let plain = record_json(&r, true).unwrap();
        assert_eq!(plain["attributes"]["size"].to_string(), "4");
        assert_eq!(plain["rev"], "2-0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn a_record_for_people_shows_rev_body_and_conflicts() {
        let text = record_human(&record());
        let expect = "rev 2-0123456789abcdef0123456789abcdef\n{\n  \"name\": \"Ann\",\n  \"size\": 4\n}\n\
                      conflicts: 2-00000000000000000000000000000001";
        assert_eq!(text, expect);
    }
}

/// A progress bar on stderr when a person is watching and no JSON was asked for.
#[derive(Clone)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar titled `what`; `unit` goes before the position (e.g. `"seq "`).
    pub(crate) fn new(json: bool, what: &str, unit: &str) -> Bar {
        if json || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix}} [{{bar:30}}] {unit}{{pos}}/{{len}} {{msg}} ({{elapsed}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(Some(bar))
    }

    /// Show `done` of `total` with a message.
    pub(crate) fn show(&self, done: u64, total: u64, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_length(total.max(done));
            bar.set_position(done);
            bar.set_message(message.to_owned());
        }
    }

    /// Clear the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// The process's peak resident set size (VmHWM), where the OS tells it: `--json` reports of long
/// work include it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
