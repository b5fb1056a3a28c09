//! The quicksync file format, version 2 (docs/FORMAT.md): one zstd stream of JSON lines — a header,
//! one line per revision event in seq order, the knowledge rows, a trailer. [`Writer`] and [`Reader`]
//! work a line at a time, so neither holds a file in memory, and both check what they pass: seqs
//! contiguous from the header's start, every chain hash following from the one before, the trailer
//! agreeing with what came before it. A file that reads to its trailer without error is internally
//! consistent; whether it is the file the manifest names is the blake3 check's job.

use std::io::{self, BufRead, BufReader, Read, Write};

use outpost_api::{ChainHash, Digest, Error, KnowledgeRow, Result, RevId, RevisionEvent, Uuid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The `format` value of every header.
pub const FORMAT: &str = "outpost-quicksync";
/// The format version this crate writes. It reads it and version 1, the same lines without foreign
/// revisions (SPEC §3), which version 2 added.
pub const VERSION: u32 = 2;
/// The oldest format version this crate reads.
pub const OLDEST_VERSION: u32 = 1;
/// The longest line a reader accepts (a revision body is at most a few MiB; this bounds memory on
/// corrupt input).
pub const MAX_LINE_BYTES: u64 = 64 << 20;

/// What a file holds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every revision event from seq 1 to `end_seq`, and the knowledge rows with local seq ≤ `end_seq`.
    Snapshot,
    /// Every revision event with seq in `[start_seq, end_seq]`, and the knowledge rows recorded in it.
    Delta,
}

impl Kind {
    /// The name used in manifests and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Delta => "delta",
        }
    }
}

/// The first line of a file: what it covers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// Snapshot or delta.
    pub kind: Kind,
    /// The epoch uuid of the database that names `end_seq` (SPEC §6).
    pub db: Uuid,
    /// The first seq in the file.
    pub start_seq: u64,
    /// The last seq in the file.
    pub end_seq: u64,
    /// The chain hash at `start_seq - 1`, from which the entries' chain folds.
    pub prev_chain: ChainHash,
}

impl Header {
    /// A header of the version this crate writes.
    pub fn new(kind: Kind, db: Uuid, start_seq: u64, end_seq: u64, prev_chain: ChainHash) -> Self {
        Header { format: FORMAT.to_owned(), version: VERSION, kind, db, start_seq, end_seq, prev_chain }
    }

    fn check(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::corrupt(format!("not a quicksync file (format {:?})", self.format)));
        }
        if !(OLDEST_VERSION..=VERSION).contains(&self.version) {
            return Err(Error::invalid(format!(
                "quicksync format version {} is not supported (this build reads versions {OLDEST_VERSION} to {VERSION})",
                self.version
            )));
        }
        if self.start_seq == 0 || self.end_seq < self.start_seq {
            return Err(Error::corrupt(format!(
                "the header's seqs {}..{} are not a range",
                self.start_seq, self.end_seq
            )));
        }
        if self.end_seq > i64::MAX as u64 {
            return Err(Error::corrupt(format!(
                "the header's end seq {} is past the largest seq, 2^63 - 1",
                self.end_seq
            )));
        }
        if self.kind == Kind::Snapshot && self.start_seq != 1 {
            return Err(Error::corrupt(format!("a snapshot starts at seq 1, not {}", self.start_seq)));
        }
        Ok(())
    }

    /// How many revision events the file holds.
    pub fn events(&self) -> u64 {
        self.end_seq - self.start_seq + 1
    }
}

/// The last line of a file: what came before it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Trailer {
    /// Revision events in the file.
    pub events: u64,
    /// Knowledge rows in the file.
    pub knowledge: u64,
    /// The chain hash at `end_seq`.
    pub end_chain: ChainHash,
}

/// One line, tagged by its single key.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line<E, K, H, T> {
    Header(H),
    Event(E),
    Knowledge(K),
    Trailer(T),
}

type LineOut<'a> = Line<&'a RevisionEvent, &'a KnowledgeRow, &'a Header, &'a Trailer>;
type LineIn<E> = Line<E, KnowledgeRow, Header, Trailer>;

/// An event line's seq and chain hash, and what the chain hash commits to: (table, id, rev, deleted)
/// and a foreign revision's digest.
pub type EventKeyRef<'a> = (u64, &'a ChainHash, (&'a str, &'a str, &'a RevId, bool), Option<&'a Digest>);

/// What a [`Reader`] reads an event line into: enough to check its seq and fold the chain.
pub trait EventLine: DeserializeOwned {
    /// The event's seq and chain hash, and what the chain hash commits to.
    fn key(&self) -> EventKeyRef<'_>;

    /// The event of an event line (the newline included) read the fast way, when it is written as
    /// [`Writer`] writes it; `None` otherwise, and the line is read through `serde`, which takes
    /// it as the same event or refuses it.
    fn read_fast(_line: &str) -> Option<Self> {
        None
    }
}

impl EventLine for RevisionEvent {
    fn key(&self) -> EventKeyRef<'_> {
        let r = &self.revision;
        (self.seq, &self.chain, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref())
    }

    /// Each body's canonical bytes made where it stands, in one scan (`RevisionEvent::read_prefix`).
    fn read_fast(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("{\"event\":")?;
        let (event, len) = RevisionEvent::read_prefix(rest)?;
        (&rest[len..] == "}\n").then_some(event)
    }
}

/// An event line read only as far as its seq and chain need: the body and ancestry are skipped
/// (checked to be JSON, not parsed into values), which is what verifying a file's chain needs. The
/// bodies are checked when applied (each re-hashed against its revision id).
#[derive(Clone, PartialEq, Debug, Deserialize)]
pub struct EventKey {
    /// The event's seq.
    pub seq: u64,
    /// The chain hash after the event.
    pub chain: ChainHash,
    /// What the chain commits to.
    pub revision: RevisionKey,
}

/// The part of a revision the chain hash commits to, with the shape of the rest checked: the
/// ancestry parsed (revision ids), the body only checked to be an object or absent (its values are
/// checked, and the body re-hashed, when applied).
#[derive(Clone, PartialEq, Debug, Deserialize)]
pub struct RevisionKey {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The revision id.
    pub rev: RevId,
    /// Whether it is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// Ancestor revision ids, parent first.
    #[serde(default)]
    pub ancestry: Vec<RevId>,
    /// The body, skipped.
    #[serde(default, rename = "attributes")]
    body: Option<SkippedObject>,
    /// A foreign revision's digest, which its chain hash commits to.
    #[serde(default)]
    pub foreign: Option<Digest>,
}

/// A JSON object read through without keeping anything; any other value is refused.
#[derive(Clone, PartialEq, Debug)]
struct SkippedObject;

impl<'de> Deserialize<'de> for SkippedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SkippedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a body (an object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<SkippedObject, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(SkippedObject)
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl EventLine for EventKey {
    fn key(&self) -> EventKeyRef<'_> {
        let r = &self.revision;
        (self.seq, &self.chain, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref())
    }
}

/// A `Write` that counts and hashes what passes through it (the file's size and blake3).
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(e: io::Error) -> Error {
    Error::internal(format!("writing a quicksync file: {e}"))
}

/// What [`Writer::finish`] wrote.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Written {
    /// The trailer written.
    pub trailer: Trailer,
    /// Compressed bytes written.
    pub bytes: u64,
    /// The blake3 of the compressed bytes, in hex.
    pub blake3: String,
}

/// Writes one file, line by line. Events must come in seq order, each chain following the previous
/// one (a source that answers otherwise is refused before a wrong file exists); knowledge rows after
/// every event.
pub struct Writer<W: Write> {
    encoder: zstd::Encoder<'static, Hashing<W>>,
    header: Header,
    chain: ChainHash,
    next_seq: u64,
    knowledge: u64,
    line: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Start a file with `header`, compressing at zstd `level`.
    pub fn new(inner: W, header: Header, level: i32) -> Result<Self> {
        header.check()?;
        let hashing = Hashing { inner, hasher: blake3::Hasher::new(), bytes: 0 };
        let mut encoder = zstd::Encoder::new(hashing, level).map_err(io_err)?;
        // A checksum of the content in the frame: damage is caught by zstd itself, not only by the chain.
        encoder.include_checksum(true).map_err(io_err)?;
        let mut writer = Writer {
            encoder,
            chain: header.prev_chain,
            next_seq: header.start_seq,
            header: header.clone(),
            knowledge: 0,
            line: Vec::with_capacity(1024),
        };
        writer.line(&Line::Header(&header))?;
        Ok(writer)
    }

    fn line(&mut self, line: &LineOut<'_>) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line).map_err(|e| Error::internal(format!("encoding a line: {e}")))?;
        self.line.push(b'\n');
        self.encoder.write_all(&self.line).map_err(io_err)
    }

    /// Append the next revision event.
    pub fn event(&mut self, event: &RevisionEvent) -> Result<()> {
        if self.knowledge > 0 {
            return Err(Error::internal("quicksync writer: an event after the knowledge rows"));
        }
        if event.seq != self.next_seq || event.seq > self.header.end_seq {
            return Err(Error::corrupt(format!(
                "the source gave event {} where seq {} (of {}..={}) was due",
                event.seq, self.next_seq, self.header.start_seq, self.header.end_seq
            )));
        }
        let r = &event.revision;
        let chain = self.chain.next_event(event.seq, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref());
        if chain != event.chain {
            return Err(Error::corrupt(format!(
                "the source's chain hash at seq {} does not follow from seq {}",
                event.seq,
                event.seq - 1
            )));
        }
        self.line(&Line::Event(event))?;
        self.chain = chain;
        self.next_seq += 1;
        Ok(())
    }

    /// Append a knowledge row (after every event).
    pub fn knowledge(&mut self, row: &KnowledgeRow) -> Result<()> {
        if row.local_seq > self.header.end_seq {
            return Err(Error::internal(format!(
                "quicksync writer: a knowledge row at local seq {} is after the file's end {}",
                row.local_seq, self.header.end_seq
            )));
        }
        self.line(&Line::Knowledge(row))?;
        self.knowledge += 1;
        Ok(())
    }

    /// Write the trailer and end the stream; returns what was written and the inner writer.
    pub fn finish(mut self) -> Result<(Written, W)> {
        if self.next_seq != self.header.end_seq + 1 {
            return Err(Error::corrupt(format!(
                "the file ends at seq {} but its header promised {}",
                self.next_seq - 1,
                self.header.end_seq
            )));
        }
        let trailer = Trailer { events: self.header.events(), knowledge: self.knowledge, end_chain: self.chain };
        self.line(&Line::Trailer(&trailer))?;
        let mut hashing = self.encoder.finish().map_err(io_err)?;
        hashing.flush().map_err(io_err)?;
        let written = Written { trailer, bytes: hashing.bytes, blake3: hashing.hasher.finalize().to_hex().to_string() };
        Ok((written, hashing.inner))
    }
}

/// One item of a file after its header.
#[derive(Clone, PartialEq, Debug)]
pub enum Item<E = RevisionEvent> {
    /// A revision event.
    Event(E),
    /// A knowledge row.
    Knowledge(KnowledgeRow),
}

/// Reads one file, line by line, verifying as it goes; [`Reader::next_item`] returns `None` only
/// after a trailer that agrees with everything before it and nothing after it. Events are read as
/// `E`: whole [`RevisionEvent`]s, or only their [`EventKey`] when the bodies are not wanted.
pub struct Reader<R: Read, E = RevisionEvent> {
    lines: BufReader<zstd::Decoder<'static, BufReader<R>>>,
    header: Header,
    chain: ChainHash,
    next_seq: u64,
    knowledge: u64,
    trailer: Option<Trailer>,
    buf: String,
    events: std::marker::PhantomData<E>,
}

impl<R: Read> Reader<R> {
    /// Open a file and read its header; events are read whole.
    pub fn new(inner: R) -> Result<Self> {
        Self::start(inner)
    }
}

impl<R: Read> Reader<R, EventKey> {
    /// Open a file and read its header; events are read only as far as their seq and chain (what
    /// verifying a file needs: bodies are skipped as JSON, never parsed into values).
    pub fn keys(inner: R) -> Result<Self> {
        Self::start(inner)
    }
}

impl<R: Read, E: EventLine> Reader<R, E> {
    fn start(inner: R) -> Result<Self> {
        let decoder = zstd::Decoder::new(inner).map_err(|e| Error::corrupt(format!("not a zstd stream: {e}")))?;
        let mut lines = BufReader::with_capacity(256 << 10, decoder);
        let mut buf = String::new();
        let header = match read_line::<_, E>(&mut lines, &mut buf)? {
            Some(Line::Header(h)) => h,
            Some(_) => return Err(Error::corrupt("the file does not start with a header")),
            None => return Err(Error::corrupt("the file is empty")),
        };
        header.check()?;
        Ok(Reader {
            lines,
            chain: header.prev_chain,
            next_seq: header.start_seq,
            header,
            knowledge: 0,
            trailer: None,
            buf,
            events: std::marker::PhantomData,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trailer, once read.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// The next event or knowledge row; `None` at a verified end.
    pub fn next_item(&mut self) -> Result<Option<Item<E>>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        let line = read_line::<_, E>(&mut self.lines, &mut self.buf)?;
        let seq = self.next_seq;
        match line {
            None => Err(Error::corrupt(format!("the file ends before its trailer (after seq {}): truncated", seq - 1))),
            Some(Line::Header(_)) => Err(Error::corrupt("a second header")),
            Some(Line::Event(event)) => {
                let (event_seq, event_chain, committed, foreign) = event.key();
                if self.knowledge > 0 {
                    return Err(Error::corrupt(format!("event {event_seq} after the knowledge rows")));
                }
                if event_seq != seq || seq > self.header.end_seq {
                    return Err(Error::corrupt(format!(
                        "event {event_seq} where seq {seq} (of {}..={}) was due",
                        self.header.start_seq, self.header.end_seq
                    )));
                }
                let chain = self.chain.next_event(seq, committed, foreign);
                if chain != *event_chain {
                    return Err(Error::corrupt(format!(
                        "the chain hash of event {seq} does not follow from the one before it"
                    )));
                }
                self.chain = chain;
                self.next_seq += 1;
                Ok(Some(Item::Event(event)))
            }
            Some(Line::Knowledge(row)) => {
                if row.local_seq > self.header.end_seq {
                    return Err(Error::corrupt(format!(
                        "a knowledge row holds from local seq {}, after the file's end {}",
                        row.local_seq, self.header.end_seq
                    )));
                }
                self.knowledge += 1;
                Ok(Some(Item::Knowledge(row)))
            }
            Some(Line::Trailer(trailer)) => {
                if seq != self.header.end_seq + 1 {
                    return Err(Error::corrupt(format!(
                        "the trailer comes after seq {} but the header promised seqs up to {}",
                        seq - 1,
                        self.header.end_seq
                    )));
                }
                let expected =
                    Trailer { events: self.header.events(), knowledge: self.knowledge, end_chain: self.chain };
                if trailer != expected {
                    return Err(Error::corrupt(format!(
                        "the trailer ({} events, {} knowledge rows, chain {}) does not match the file ({} events, {} rows, chain {})",
                        trailer.events, trailer.knowledge, trailer.end_chain, expected.events, expected.knowledge, expected.end_chain
                    )));
                }
                if read_line::<_, E>(&mut self.lines, &mut self.buf)?.is_some() {
                    return Err(Error::corrupt("lines after the trailer"));
                }
                self.trailer = Some(trailer);
                Ok(None)
            }
        }
    }

    /// Read to the verified end, discarding the items; returns the trailer.
    pub fn verify(mut self) -> Result<Trailer> {
        while self.next_item()?.is_some() {}
        Ok(self.trailer.expect("a verified end has a trailer"))
    }
}

/// The next line, `None` at the end of the stream.
fn read_line<B: BufRead, E: EventLine>(lines: &mut B, buf: &mut String) -> Result<Option<LineIn<E>>> {
    buf.clear();
    let n = lines
        .by_ref()
        .take(MAX_LINE_BYTES + 1)
        .read_line(buf)
        .map_err(|e| Error::corrupt(format!("the compressed stream is damaged: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if n as u64 > MAX_LINE_BYTES || !buf.ends_with('\n') {
        return Err(Error::corrupt(if n as u64 > MAX_LINE_BYTES {
            format!("a line is longer than {MAX_LINE_BYTES} bytes")
        } else {
            "the last line is cut short: truncated".to_owned()
        }));
    }
    if let Some(event) = E::read_fast(buf) {
        return Ok(Some(Line::Event(event)));
    }
    serde_json::from_str(buf).map(Some).map_err(|e| Error::corrupt(format!("a line does not parse: {e}")))
}

#[cfg(test)]
mod tests;
