//! A record body in the two encodings a replicated write needs: the canonical bytes its revision id
//! hashes (SPEC §3) and the wire JSON it is stored as.
//!
//! Parsing a body into [`Attributes`] — a tree of maps, strings and values — and encoding the tree
//! twice was a third of what a replicated record cost its target. But the text every Outpost peer
//! stores and sends is the canonical wire JSON (`Attributes::to_json`'s), which is its own stored
//! JSON: a [`Body`] keeps such text as it is and makes only its canonical bytes, in one scan
//! (`fast.rs`). Any other text is read the general way — the typed parse, encoded — so it is
//! canonicalised, or refused with the typed parse's message. A property test and a fuzz target hold
//! the two ways equal.

use std::fmt;

use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Attributes;

/// A record body as its canonical bytes and its wire JSON (both canonical: equal bodies have equal
/// encodings), with its nesting depth ([`Attributes::depth`]). Made from [`Attributes`]
/// ([`Body::new`]) or read from the wire form (`Deserialize`, [`Body::from_json`]) without building
/// them; serialised as its wire JSON.
#[derive(Clone)]
pub struct Body {
    canonical: Vec<u8>,
    json: String,
    depth: usize,
    /// Why a name of the attributes it was made from is not an attribute name (one read from the
    /// wire had its names checked).
    bad_name: Option<String>,
}

impl Body {
    /// The encodings of `attributes`.
    pub fn new(attributes: &Attributes) -> Body {
        let bad_name = attributes.keys().find_map(|k| crate::names::validate_attribute_name(k).err());
        let json = attributes.to_json();
        // The canonical bytes are about as long as the wire JSON or shorter (a length where the JSON
        // has quotes, a tag byte for each `{"type":…}`): sized by it, the buffer is seldom grown.
        let mut canonical = Vec::with_capacity(json.len());
        crate::canonical::encode_map(&mut canonical, attributes);
        Body { canonical, json, depth: attributes.depth(), bad_name: bad_name.map(|e| e.message) }
    }

    /// The empty body (a tombstone's).
    pub fn empty() -> Body {
        Body::new(&Attributes::new())
    }

    /// Read a body from its wire JSON (as stored, or as sent), checking it as the typed parse does.
    pub fn from_json(text: &str) -> serde_json::Result<Body> {
        match fast::read(text) {
            Some((canonical, depth)) => Ok(Body { canonical, json: text.to_owned(), depth, bad_name: None }),
            None => general_text(text),
        }
    }

    /// The body that `text` starts with when it is canonical wire JSON (the fast way of
    /// [`Body::from_json`]), and its length in bytes; `None` otherwise, for the caller to read the
    /// document holding it the general way.
    pub(crate) fn read_prefix(text: &str) -> Option<(Body, usize)> {
        let (canonical, depth, len) = fast::read_prefix(text)?;
        Some((Body { canonical, json: text[..len].to_owned(), depth, bad_name: None }, len))
    }

    /// [`Body::from_json`] of text it keeps as its JSON when that is canonical already; an error's
    /// message names no position (the caller's deserializer adds its own).
    fn read(text: String) -> Result<Body, String> {
        match fast::read(&text) {
            Some((canonical, depth)) => Ok(Body { canonical, json: text, depth, bad_name: None }),
            None => general_text(&text).map_err(|e| {
                let message = e.to_string();
                match (e.line(), message.rfind(" at line ")) {
                    (1.., Some(at)) => message[..at].to_owned(),
                    _ => message,
                }
            }),
        }
    }

    /// The canonical bytes (SPEC §3), which a revision id hashes.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// The wire JSON, as `Attributes::to_json` writes it.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The wire JSON, moved out.
    pub fn into_json(self) -> String {
        self.json
    }

    /// The deepest nesting of any value (0 when empty).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Refuse a body made from attributes whose names are not attribute names (SPEC §3: 1–256
    /// bytes, not starting with `_`); one read from the wire was checked as it was read.
    pub fn check_names(&self) -> Result<(), crate::Error> {
        self.bad_name.as_ref().map_or(Ok(()), |m| Err(crate::Error::invalid(m.clone())))
    }

    /// The body as typed attributes (parsed from its JSON: for the few rules that read values).
    pub fn attributes(&self) -> Attributes {
        crate::parse::attributes_unchecked(&self.json).expect("a body's JSON is the wire form it was made as")
    }
}

impl From<&Attributes> for Body {
    fn from(attributes: &Attributes) -> Body {
        Body::new(attributes)
    }
}

impl From<Attributes> for Body {
    fn from(attributes: Attributes) -> Body {
        Body::new(&attributes)
    }
}

/// Equal bodies have equal canonical bytes, and only they do.
impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.canonical == other.canonical
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Body").field(&self.json).finish()
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The JSON as it is (a scan, no tree): a body is always written as JSON.
        let raw: &serde_json::value::RawValue = serde_json::from_str(&self.json).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Read as the JSON text it is (a scan that checks it is JSON), then [`Body::from_json`]'s way: the
/// text every Outpost peer sends is canonical, kept as it is, and only its canonical bytes made.
impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Body::read(String::from(Box::<str>::from(raw))).map_err(de::Error::custom)
    }
}

/// A body read the general way, when its text is not canonical: the typed parse, encoded (so it is
/// canonicalised, or refused with the typed parse's message).
fn general_text(text: &str) -> serde_json::Result<Body> {
    let attributes: Attributes = serde_json::from_str(text)?;
    Ok(Body::new(&attributes))
}

pub(crate) mod fast;
#[cfg(test)]
mod tests;
