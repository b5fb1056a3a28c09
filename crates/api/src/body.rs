//! A record body in the two encodings a replicated write needs, made in one pass over its wire JSON:
//! the canonical bytes its revision id hashes (SPEC §3) and the wire JSON it is stored as.
//!
//! Parsing a body into [`Attributes`] — a tree of maps, strings and values — and encoding the tree
//! twice was a third of what a replicated record cost its target. A [`Body`] is read from the wire
//! form straight into both encodings: the same checks and canonicalisation as the typed parse (the
//! scalars are read by the same code, so the same input is refused with the same message), the
//! same bytes out (a property test holds the two equal), and nothing kept but the two encodings and
//! the body's nesting depth. Keys that arrive out of order are put in order; a duplicate is refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::{encode_value, put_lb};
use crate::parse::{scalar, type_of, Parsed, Scalar, TypeName};
use crate::value::{path_error, Path};
use crate::wire::{write_str, write_value};
use crate::{Attributes, ValueType};

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
        Body {
            canonical: crate::canonical::encode_attributes(attributes),
            json: attributes.to_json(),
            depth: attributes.depth(),
            bad_name: bad_name.map(|e| e.message),
        }
    }

    /// The empty body (a tombstone's).
    pub fn empty() -> Body {
        Body::new(&Attributes::new())
    }

    /// Read a body from its wire JSON (as stored, or as sent), checking it as the typed parse does.
    pub fn from_json(text: &str) -> serde_json::Result<Body> {
        serde_json::from_str(text)
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

    /// Whether the body has no attributes.
    pub fn is_empty(&self) -> bool {
        self.json == "{}"
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

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        let mut out = Out { canonical: Vec::with_capacity(256), json: String::with_capacity(512), entries: Vec::new() };
        let depth = MapSink { out: &mut out, path: &Path::Root, attributes: true }.deserialize(d)?;
        Ok(Body { canonical: out.canonical, json: out.json, depth, bad_name: None })
    }
}

/// The two encodings as they are written, and the entries of the maps being read (each map's from
/// where it started), to put their keys in order when they came out of it.
struct Out {
    canonical: Vec<u8>,
    json: String,
    entries: Vec<Entry>,
}

/// Where one map entry's key and whole encodings lie in [`Out`].
#[derive(Clone, Copy)]
struct Entry {
    key: (usize, usize),
    canonical: (usize, usize),
    json: (usize, usize),
}

impl Out {
    fn key(&self, entry: &Entry) -> &[u8] {
        &self.canonical[entry.key.0..entry.key.1]
    }

    /// A placeholder for a count, to be [`Out::patch`]ed.
    fn count(&mut self) -> usize {
        self.canonical.extend_from_slice(&[0; 4]);
        self.canonical.len() - 4
    }

    fn patch(&mut self, at: usize, count: usize) -> Result<(), String> {
        let count = u32::try_from(count).map_err(|_| "more than 2^32 items in one list or map".to_owned())?;
        self.canonical[at..at + 4].copy_from_slice(&count.to_be_bytes());
        Ok(())
    }

    /// Put the entries of the map from `first` on (whose encodings start at `canonical` and `json`)
    /// in key order, refusing a key given twice.
    fn sort(&mut self, first: usize, canonical: usize, json: usize, path: &Path<'_>) -> Result<(), String> {
        let mut entries = self.entries.split_off(first);
        entries.sort_by(|a, b| self.key(a).cmp(self.key(b)));
        if let Some(pair) = entries.windows(2).find(|w| self.key(&w[0]) == self.key(&w[1])) {
            let key = String::from_utf8_lossy(self.key(&pair[0])).into_owned();
            return Err(path_error(&Path::Key(path, &key), "duplicate key"));
        }
        let mut sorted_canonical = Vec::with_capacity(self.canonical.len() - canonical);
        let mut sorted_json = String::with_capacity(self.json.len() - json);
        for (i, e) in entries.iter().enumerate() {
            sorted_canonical.extend_from_slice(&self.canonical[e.canonical.0..e.canonical.1]);
            if i > 0 {
                sorted_json.push(',');
            }
            sorted_json.push_str(&self.json[e.json.0..e.json.1]);
        }
        self.canonical.truncate(canonical);
        self.canonical.extend_from_slice(&sorted_canonical);
        self.json.truncate(json);
        self.json.push_str(&sorted_json);
        Ok(())
    }
}

/// A map key, borrowed from the input where the JSON lets it be.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(Text)
    }
}

/// A map of typed values (the body itself when `attributes`, whose keys are attribute names):
/// written as it is read; its depth is its deepest value's.
struct MapSink<'o, 'p> {
    out: &'o mut Out,
    path: &'p Path<'p>,
    attributes: bool,
}

impl<'de> DeserializeSeed<'de> for MapSink<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MapSink<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attributes {
            f.write_str("a JSON object of attribute name → typed value")
        } else {
            write!(f, "a JSON object of typed values at attribute {:?}", self.path.to_string())
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let out = self.out;
        out.canonical.push(0x09);
        let count = out.count();
        out.json.push('{');
        let (canonical, json, first) = (out.canonical.len(), out.json.len(), out.entries.len());
        let (mut depth, mut sorted) = (0, true);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.attributes {
                crate::names::validate_attribute_name(&key).map_err(|e| de::Error::custom(e.message))?;
            }
            if out.entries.len() > first {
                out.json.push(',');
            }
            let (c, j) = (out.canonical.len(), out.json.len());
            put_lb(&mut out.canonical, key.as_bytes());
            write_str(&mut out.json, &key);
            out.json.push(':');
            depth = depth.max(map.next_value_seed(ValueSink { out: &mut *out, path: &Path::Key(self.path, &key) })?);
            let entry = Entry {
                key: (c + 4, c + 4 + key.len()),
                canonical: (c, out.canonical.len()),
                json: (j, out.json.len()),
            };
            if let Some(last) = out.entries[first..].last() {
                match out.key(last).cmp(key.as_bytes()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(de::Error::custom(path_error(&Path::Key(self.path, &key), "duplicate key")))
                    }
                    std::cmp::Ordering::Greater => sorted = false,
                }
            }
            out.entries.push(entry);
        }
        let n = out.entries.len() - first;
        if !sorted {
            out.sort(first, canonical, json, self.path).map_err(de::Error::custom)?;
        }
        out.entries.truncate(first);
        out.patch(count, n).map_err(de::Error::custom)?;
        out.json.push('}');
        Ok(depth)
    }
}

/// A list of typed values; its depth is its deepest item's.
struct ListSink<'o, 'p> {
    out: &'o mut Out,
    path: &'p Path<'p>,
}

impl<'de> DeserializeSeed<'de> for ListSink<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSink<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON array of typed values at attribute {:?}", self.path.to_string())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let out = self.out;
        out.canonical.push(0x08);
        let count = out.count();
        out.json.push('[');
        let (mut n, mut depth) = (0, 0);
        loop {
            if n > 0 {
                out.json.push(',');
            }
            match seq.next_element_seed(ValueSink { out: &mut *out, path: &Path::Index(self.path, n) })? {
                Some(d) => {
                    depth = depth.max(d);
                    n += 1;
                }
                None => {
                    if n > 0 {
                        out.json.pop();
                    }
                    break;
                }
            }
        }
        out.patch(count, n).map_err(de::Error::custom)?;
        out.json.push(']');
        Ok(depth)
    }
}

/// One typed value (`{"int": "5"}`); its depth is [`crate::Value::depth`]'s.
struct ValueSink<'o, 'p> {
    out: &'o mut Out,
    path: &'p Path<'p>,
}

impl<'de> DeserializeSeed<'de> for ValueSink<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValueSink<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::parse::expecting_value(self.path, f)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let (out, path) = (self.out, self.path);
        let ty = type_of(map.next_key::<TypeName>()?, path).map_err(de::Error::custom)?;
        let depth = match ty {
            ValueType::List | ValueType::Map => {
                out.json.push_str("{\"");
                out.json.push_str(ty.as_str());
                out.json.push_str("\":");
                let depth = if ty == ValueType::List {
                    map.next_value_seed(ListSink { out: &mut *out, path })?
                } else {
                    map.next_value_seed(MapSink { out: &mut *out, path, attributes: false })?
                };
                out.json.push('}');
                1 + depth
            }
            ty => {
                match scalar(ty, map.next_value::<Scalar<'de>>()?, path).map_err(de::Error::custom)? {
                    Parsed::Text(text) => {
                        out.canonical.push(0x05);
                        put_lb(&mut out.canonical, text.as_bytes());
                        out.json.push_str("{\"string\":");
                        write_str(&mut out.json, &text);
                        out.json.push('}');
                    }
                    Parsed::Value(value) => {
                        encode_value(&mut out.canonical, &value);
                        write_value(&mut out.json, &value);
                    }
                }
                1
            }
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(path_error(
                path,
                "a value is an object with exactly one key naming its type",
            )));
        }
        Ok(depth)
    }
}

#[cfg(test)]
mod tests;
