//! `manifest.csv` (SPEC §9): one row per published file, sorted by start seq, with what a client
//! needs to choose a file and check it before applying anything. Rewritten atomically (write, sync,
//! rename), so a reader sees the old or the new manifest, never a mix.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use outpost_api::{ChainHash, Error, Result, Uuid};

use crate::format::Kind;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.csv";
/// The manifest's header line.
pub const COLUMNS: &str = "kind,db_uuid,start_seq,end_seq,prev_chain,end_chain,file,bytes,blake3";

/// One published file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Row {
    /// Snapshot or delta.
    pub kind: Kind,
    /// The epoch uuid naming `end_seq`.
    pub db: Uuid,
    /// The first seq in the file.
    pub start_seq: u64,
    /// The last seq in the file.
    pub end_seq: u64,
    /// The chain hash at `start_seq - 1`.
    pub prev_chain: ChainHash,
    /// The chain hash at `end_seq`.
    pub end_chain: ChainHash,
    /// The file's name in the directory.
    pub file: String,
    /// The file's size.
    pub bytes: u64,
    /// The blake3 of the file, 64 hex characters.
    pub blake3: String,
}

/// The longest published file name.
pub const MAX_FILE_NAME: usize = 255;

/// Whether `name` may name a published file: letters, digits, `.`, `_`, `-`, not starting with `.`,
/// at most [`MAX_FILE_NAME`] bytes (no path can hide in it).
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Row {
    fn parse(line: &str) -> std::result::Result<Row, String> {
        let fields: Vec<&str> = line.split(',').collect();
        let [kind, db, start, end, prev, end_chain, file, bytes, blake3] = fields[..] else {
            return Err(format!("{} fields where 9 were expected", fields.len()));
        };
        let kind = match kind {
            "snapshot" => Kind::Snapshot,
            "delta" => Kind::Delta,
            other => return Err(format!("unknown kind {other:?}")),
        };
        let seq = |s: &str, what: &str| s.parse::<u64>().map_err(|_| format!("{what} {s:?} is not a seq"));
        let chain =
            |s: &str, what: &str| s.parse::<ChainHash>().map_err(|_| format!("{what} {s:?} is not a chain hash"));
        let row = Row {
            kind,
            db: db.parse().map_err(|_| format!("db_uuid {db:?} is not a uuid"))?,
            start_seq: seq(start, "start_seq")?,
            end_seq: seq(end, "end_seq")?,
            prev_chain: chain(prev, "prev_chain")?,
            end_chain: chain(end_chain, "end_chain")?,
            file: file.to_owned(),
            bytes: bytes.parse().map_err(|_| format!("bytes {bytes:?} is not a size"))?,
            blake3: blake3.to_owned(),
        };
        if row.start_seq == 0 || row.end_seq < row.start_seq {
            return Err(format!("seqs {}..{} are not a range", row.start_seq, row.end_seq));
        }
        if row.kind == Kind::Snapshot && row.start_seq != 1 {
            return Err("a snapshot starts at seq 1".to_owned());
        }
        if !is_file_name(&row.file) {
            return Err(format!("file {:?} is not a plain file name", row.file));
        }
        if row.blake3.len() != 64 || !row.blake3.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("blake3 {:?} is not 64 lowercase hex characters", row.blake3));
        }
        Ok(row)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            self.kind.as_str(),
            self.db,
            self.start_seq,
            self.end_seq,
            self.prev_chain,
            self.end_chain,
            self.file,
            self.bytes,
            self.blake3
        );
    }
}

/// Every row of a manifest, sorted by start seq (snapshots before deltas at the same start, then by
/// end seq).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Manifest {
    /// The rows.
    pub rows: Vec<Row>,
}

impl Manifest {
    /// Parse a manifest's text; every malformed row is an error naming its line.
    pub fn parse(text: &str) -> Result<Manifest> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, header)) if header.trim() == COLUMNS => {}
            _ => return Err(Error::corrupt(format!("{MANIFEST}: the first line must be {COLUMNS:?}"))),
        }
        let mut rows = Vec::new();
        for (i, line) in lines {
            let row = Row::parse(line.trim()).map_err(|e| Error::corrupt(format!("{MANIFEST} line {}: {e}", i + 1)))?;
            rows.push(row);
        }
        let manifest = Manifest { rows };
        if !manifest.rows.windows(2).all(|w| order(&w[0]) <= order(&w[1])) {
            return Err(Error::corrupt(format!("{MANIFEST}: rows are not sorted by start seq")));
        }
        Ok(manifest)
    }

    /// The manifest's text.
    pub fn render(&self) -> String {
        let mut out = format!("{COLUMNS}\n");
        for row in &self.rows {
            row.render(&mut out);
        }
        out
    }

    /// Sort the rows as a manifest lists them.
    pub fn sort(&mut self) {
        self.rows.sort_by_key(order);
    }

    /// The deltas, in seq order.
    pub fn deltas(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.kind == Kind::Delta).collect()
    }

    /// The snapshot reaching furthest.
    pub fn latest_snapshot(&self) -> Option<&Row> {
        self.rows.iter().filter(|r| r.kind == Kind::Snapshot).max_by_key(|r| r.end_seq)
    }

    /// Read `dir/manifest.csv`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        match fs::read_to_string(dir.join(MANIFEST)) {
            Ok(text) => Manifest::parse(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("reading {}: {e}", dir.join(MANIFEST).display()))),
        }
    }

    /// Replace `dir/manifest.csv` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomically(dir, MANIFEST, self.render().as_bytes())
    }
}

fn order(row: &Row) -> (u64, Kind, u64) {
    (row.start_seq, row.kind, row.end_seq)
}

/// Write `dir/name` through a temporary file: written, synced, renamed, and the directory synced,
/// so after a crash the name holds the old bytes or the new ones.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::internal(format!("writing {}: {e}", dir.join(name).display()));
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, dir.join(name)).map_err(io)?;
    sync_dir(dir).map_err(io)
}

/// Make a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, start: u64, end: u64) -> Row {
        Row {
            kind,
            db: Uuid::nil(),
            start_seq: start,
            end_seq: end,
            prev_chain: ChainHash([1; 32]),
            end_chain: ChainHash([2; 32]),
            file: format!("{}-{start}-{end}.qs", kind.as_str()),
            bytes: 42,
            blake3: "ab".repeat(32),
        }
    }

    #[test]
    fn a_manifest_round_trips() {
        let mut m =
            Manifest { rows: vec![row(Kind::Delta, 11, 20), row(Kind::Delta, 1, 10), row(Kind::Snapshot, 1, 20)] };
        m.sort();
        assert_eq!(
            m.rows.iter().map(|r| (r.kind, r.start_seq)).collect::<Vec<_>>(),
            [(Kind::Snapshot, 1), (Kind::Delta, 1), (Kind::Delta, 11)]
        );
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert_eq!(m.latest_snapshot().unwrap().end_seq, 20);
        assert_eq!(m.deltas().len(), 2);
    }

    #[test]
    fn malformed_rows_are_refused_with_their_line() {
        let good = row(Kind::Delta, 1, 10);
        let mut text = String::new();
        good.render(&mut text);
        let cases = [
            text.replace("delta", "patch"),
            text.replace(",42,", ",-1,"),
            text.replace("delta-1-10.qs", "../etc"),
            text.replace("delta-1-10.qs", ".hidden"),
            text.replace(&"ab".repeat(32), "AB"),
            text.replace(",1,10,", ",10,1,"),
            text.replace(",1,10,", ",0,10,"),
            text.trim_end().to_owned() + ",extra\n",
        ];
        for case in cases {
            let e = Manifest::parse(&format!("{COLUMNS}\n{case}")).unwrap_err();
            assert!(e.message.contains("line 2"), "{case}: {e}");
        }
        assert!(Manifest::parse(&text).is_err(), "no header line");
        let unsorted = Manifest { rows: vec![row(Kind::Delta, 11, 20), row(Kind::Delta, 1, 10)] };
        assert!(Manifest::parse(&unsorted.render()).is_err(), "unsorted rows");
    }

    #[test]
    fn file_names_are_plain() {
        for good in ["delta-000001-000010-abcdef.qs.zst", "a", "A_b.c-d"] {
            assert!(is_file_name(good), "{good}");
        }
        for bad in ["", ".", "..", ".x", "a/b", "a\\b", "a b", "é", "manifest.csv\n"] {
            assert!(!is_file_name(bad), "{bad}");
        }
    }
}
