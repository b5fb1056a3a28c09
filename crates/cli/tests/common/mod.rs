//! What the binary's end-to-end tests share: running `outpost`, reading its JSON, replayable random
//! numbers, and a database's records for comparing two copies.

use std::path::Path;
use std::process::Command;

use outpost_api::{ChangeReader, ChangesRequest, Limits};
use serde_json::Value as Json;

/// Run the binary in `dir`: exit code, stdout, stderr.
pub fn outpost(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .current_dir(dir)
        .env_remove("OUTPOST_LOG")
        .output()
        .expect("the outpost binary runs");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Run the binary, expect success, parse its JSON output.
pub fn json_of(dir: &Path, args: &[&str]) -> Json {
    let (code, stdout, stderr) = outpost(dir, args);
    assert_eq!(code, 0, "outpost {}\nstdout: {stdout}\nstderr: {stderr}", args.join(" "));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("outpost {}: not JSON ({e}): {stdout}", args.join(" ")))
}

/// Deterministic pseudo-random numbers (xorshift), so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every record's (table, id, winner, deleted, leaves) of the database file at `path`, from its
/// whole changes feed, sorted.
pub async fn entries(path: &Path) -> Vec<(String, String, String, bool, Vec<String>)> {
    let db = outpost_sqlite::open_file(path, Limits::default()).await.unwrap();
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let page = db.changes(ChangesRequest { since, limit: 5000, tables: None }).await.unwrap();
        for c in page.changes {
            let mut leaves: Vec<String> = c.leaves.iter().map(ToString::to_string).collect();
            leaves.sort();
            out.push((c.table, c.id, c.rev.to_string(), c.deleted, leaves));
        }
        since = page.last_seq;
        if page.pending == 0 {
            out.sort();
            return out;
        }
    }
}
