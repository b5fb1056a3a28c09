//! The fast way to read replicated revisions: the JSON exactly as Outpost writes it — a page of
//! fetched revisions (`POST /revs/get`'s answer, `[{…},{…}]`), a quicksync event, and a page of
//! the changes feed (`GET /dbs/{db}/changes`, as the server streams it) — fields in the order
//! Outpost writes them, no whitespace, strings without escapes, every body canonical wire JSON.
//! Each body is read where it stands, by [`Body`]'s fast reader, which finds its end itself: read
//! through `serde`, the body is scanned twice (once by `serde_json` to find its extent as raw JSON,
//! once to make its canonical bytes), and the envelope's fields are matched by name.
//!
//! Anything else (other spacing or order, an escaped string, an absent field written as `null`, a
//! body that is not canonical) gets `None`, and the caller reads the whole document with `serde`,
//! which takes or refuses it with its own message. So this reader never refuses and never decides
//! a message: what it takes reads, through `serde`, as the same revisions (a property test and the
//! `value_decoder` fuzz target hold the two equal).

use std::str::FromStr;

use crate::{Body, Change, ChangesPage, RevId, RevisionData, RevisionEvent};

/// A position in a document being read.
struct Cursor<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Cursor<'t> {
    fn new(text: &'t str) -> Self {
        Cursor { text, at: 0 }
    }

    fn bytes(&self) -> &'t [u8] {
        &self.text.as_bytes()[self.at..]
    }

    fn eat(&mut self, expected: &str) -> Option<()> {
        self.bytes().starts_with(expected.as_bytes()).then(|| self.at += expected.len())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().first().copied()
    }

    /// A string without escapes or control characters: its text, borrowed.
    fn string(&mut self) -> Option<&'t str> {
        self.eat("\"")?;
        let rest = self.bytes();
        let len = crate::body::fast::special(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        // Both ends are ASCII, so they are character boundaries of the text.
        let text = &self.text[self.at..self.at + len];
        self.at += len + 1;
        Some(text)
    }

    /// A value written as a JSON string (a revision id, a chain hash, a digest), parsed.
    fn parsed<T: FromStr>(&mut self) -> Option<T> {
        self.string()?.parse().ok()
    }

    /// A non-negative integer as `serde_json` reads one into a `u64`: digits, no leading zero.
    fn u64(&mut self) -> Option<u64> {
        let digits = self.bytes().iter().take_while(|b| b.is_ascii_digit()).count();
        let text = &self.text[self.at..self.at + digits];
        if digits == 0 || (digits > 1 && text.starts_with('0')) {
            return None;
        }
        // A fraction or an exponent makes it another number: `serde`'s to read (and refuse).
        if matches!(self.bytes().get(digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let n = text.parse().ok()?;
        self.at += digits;
        Some(n)
    }

    fn bool(&mut self) -> Option<bool> {
        if self.eat("true").is_some() {
            return Some(true);
        }
        self.eat("false").map(|()| false)
    }

    /// A revision's table, id, rev and deletion, as both a revision and a change list them.
    fn key(&mut self) -> Option<(String, String, RevId, bool)> {
        self.eat("\"table\":")?;
        let table = self.string()?.to_owned();
        self.eat(",\"id\":")?;
        let id = self.string()?.to_owned();
        self.eat(",\"rev\":")?;
        let rev = self.parsed()?;
        self.eat(",\"deleted\":")?;
        Some((table, id, rev, self.bool()?))
    }

    /// A revision as `RevisionData`'s (and `RevisionJson`'s) `Serialize` writes it.
    fn revision(&mut self) -> Option<RevisionData> {
        self.eat("{")?;
        let (table, id, rev, deleted) = self.key()?;
        let attributes = match self.eat(",\"attributes\":") {
            Some(()) => {
                let (body, len) = Body::read_prefix(&self.text[self.at..])?;
                self.at += len;
                Some(body)
            }
            None => None,
        };
        self.eat(",\"ancestry\":")?;
        let ancestry = self.revs()?;
        let foreign = match self.eat(",\"foreign\":") {
            Some(()) => Some(self.parsed()?),
            None => None,
        };
        self.eat("}")?;
        Some(RevisionData { table, id, rev, deleted, attributes, ancestry, foreign })
    }

    /// A JSON array, each element read by `element`.
    fn array<T>(&mut self, mut element: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat("[")?;
        let mut out = Vec::new();
        if self.eat("]").is_some() {
            return Some(out);
        }
        loop {
            out.push(element(self)?);
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// Revision ids as a JSON array writes them.
    fn revs(&mut self) -> Option<Vec<RevId>> {
        self.array(|c| c.parsed())
    }

    /// An entry of the changes feed as `Change`'s `Serialize` writes it.
    fn change(&mut self) -> Option<Change> {
        self.eat("{\"seq\":")?;
        let seq = self.u64()?;
        self.eat(",")?;
        let (table, id, rev, deleted) = self.key()?;
        self.eat(",\"leaves\":")?;
        let leaves = self.revs()?;
        self.eat("}")?;
        Some(Change { seq, table, id, rev, deleted, leaves })
    }

    /// A revision event as `RevisionEvent`'s `Serialize` writes it.
    fn event(&mut self) -> Option<RevisionEvent> {
        self.eat("{\"seq\":")?;
        let seq = self.u64()?;
        self.eat(",\"chain\":")?;
        let chain = self.parsed()?;
        self.eat(",\"revision\":")?;
        let revision = self.revision()?;
        self.eat("}")?;
        Some(RevisionEvent { seq, chain, revision })
    }
}

/// A page of revisions (a JSON array of them), when it is written as Outpost writes it.
pub(crate) fn revisions(text: &str) -> Option<Vec<RevisionData>> {
    let mut c = Cursor::new(text);
    let out = c.array(Cursor::revision)?;
    (c.at == text.len()).then_some(out)
}

/// A page of the changes feed, when it is written as Outpost's server streams it (`last_seq`,
/// `pending` and `last_chain` first, then the entries).
pub(crate) fn changes(text: &str) -> Option<ChangesPage> {
    let mut c = Cursor::new(text);
    c.eat("{\"last_seq\":")?;
    let last_seq = c.u64()?;
    c.eat(",\"pending\":")?;
    let pending = c.u64()?;
    let last_chain = match c.eat(",\"last_chain\":") {
        Some(()) => Some(c.parsed()?),
        None => None,
    };
    c.eat(",\"changes\":")?;
    let changes = c.array(Cursor::change)?;
    c.eat("}")?;
    (c.at == text.len()).then_some(ChangesPage { changes, last_seq, pending, last_chain })
}

/// The revision event `text` starts with, when it is written as Outpost writes it, and its length.
pub(crate) fn event_prefix(text: &str) -> Option<(RevisionEvent, usize)> {
    let mut c = Cursor::new(text);
    let event = c.event()?;
    Some((event, c.at))
}

#[cfg(test)]
mod tests;
