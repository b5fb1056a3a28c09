//! Every workload's result is checked, not only timed: a written or replicated database passes
//! `outpost db check` (every revision re-hashed, the chain and the states checked) and holds the
//! records it should, and a source with a corrupted body is refused by the target's hash check.

use std::path::Path;

use super::{path_str, remove_db, Bench};
use crate::procs::{Result, Server};

impl Bench<'_> {
    /// The database in `file` passes `outpost db check` and holds `records` live records.
    pub(super) fn checked(&self, file: &Path, records: u64, what: &str) -> Result<()> {
        let report = self.tools().outpost(&["db", "check", &path_str(file)]).map_err(|e| format!("{what}: {e}"))?;
        if report["ok"] != true {
            return Err(format!("{what}: outpost db check found problems: {report}"));
        }
        let held = report["records"].as_u64().unwrap_or(0);
        if held < records {
            return Err(format!("{what}: {held} records after the check, expected {records}"));
        }
        Ok(())
    }

    /// A copy of the source `name` served by `server` with one body changed behind Outpost's back
    /// must not replicate: the target re-hashes every body and refuses the one that does not match.
    pub(super) fn corrupted_source_refused(&self, server: &Server, name: &str) -> Result<()> {
        let tampered = format!("{name}-tampered");
        let copy = self.data.join(format!("{tampered}.outpost"));
        self.tools().outpost(&[
            "db",
            "backup",
            &path_str(&self.data.join(format!("{name}.outpost"))),
            &path_str(&copy),
        ])?;
        let conn = rusqlite::Connection::open(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
        let changed = conn
            .execute("UPDATE _events SET body = '{\"tampered\":{\"bool\":true}}' WHERE seq = (SELECT max(seq) / 2 FROM _events)", [])
            .map_err(|e| format!("tampering with {}: {e}", copy.display()))?;
        drop(conn);
        if changed != 1 {
            return Err(format!("tampering with {}: {changed} rows changed", copy.display()));
        }
        let target = self.cfg.work.join("tampered-target.outpost");
        let outcome = self.tools().outpost(&["sync", &server.db(&tampered), &path_str(&target), "--create-target"]);
        remove_db(&target);
        remove_db(&copy);
        match outcome {
            Ok(v) => Err(format!("a source with a corrupted body replicated: {v}")),
            Err(e) if e.contains("does not match its body") => {
                super::note("a source with a corrupted body was refused by the target's hash check");
                Ok(())
            }
            Err(e) => Err(format!("a source with a corrupted body failed otherwise than by its hash check: {e}")),
        }
    }
}
