//! The fast way to read a body: the wire JSON exactly as `Attributes::to_json` writes it — no
//! whitespace, keys in order, every scalar in its canonical text, strings escaped as `write_str`
//! escapes them — is what every Outpost peer stores and sends. Such text is its own stored JSON, so
//! only its canonical bytes are made, scanning its bytes once.
//!
//! Anything else (other spacing, an escape written otherwise, `{"int": "007"}`, keys out of order,
//! an invalid name, deep nesting, malformed JSON) gets `None`, and the caller reads the text the
//! general way, which canonicalises or refuses it. So this reader never refuses and never decides
//! a message: text it takes reads, the general way, as the same body (a property test and a fuzz
//! target hold the two equal).

use base64::Engine as _;

use crate::canonical::encode_value;
use crate::scalar::format_float;
use crate::{Value, ValueType};

/// Where the first `"` or `\` of a string's rest is; `None` without one, or with a control character
/// (which is not JSON) before it. A string's bytes are most of a body: searched for the two bytes a
/// word at a time (`memchr2`), then checked for control characters in a loop the compiler vectorises.
pub(crate) fn special(rest: &[u8]) -> Option<usize> {
    let at = memchr::memchr2(b'"', b'\\', rest)?;
    let control = rest[..at].iter().fold(false, |any, &b| any | (b < 0x20));
    (!control).then_some(at)
}

/// Deeper than this is read the general way, which refuses it (past the JSON reader's recursion
/// limit: `names::MAX_DEPTH`).
const MAX_NESTING: usize = crate::names::MAX_DEPTH;

/// The canonical bytes and depth of `text` when it is canonical wire JSON; `None` otherwise.
pub(super) fn read(text: &str) -> Option<(Vec<u8>, usize)> {
    let mut r = Reader { text: text.as_bytes(), at: 0, out: Vec::with_capacity(text.len()), nesting: 0 };
    let depth = r.map(true)?;
    (r.at == r.text.len()).then_some((r.out, depth))
}

/// [`read`] of the body `text` starts with (it goes on after it: a document holding the body):
/// its canonical bytes, depth and length in bytes.
pub(super) fn read_prefix(text: &str) -> Option<(Vec<u8>, usize, usize)> {
    // Room for a typical body: the text's own length is the rest of the document.
    let mut r = Reader { text: text.as_bytes(), at: 0, out: Vec::with_capacity(512), nesting: 0 };
    let depth = r.map(true)?;
    Some((r.out, depth, r.at))
}

struct Reader<'t> {
    text: &'t [u8],
    at: usize,
    out: Vec<u8>,
    nesting: usize,
}

impl<'t> Reader<'t> {
    fn eat(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.at.checked_add(expected.len())?;
        (self.text.get(self.at..end)? == expected).then(|| self.at = end)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// A count's place in the output, filled by [`Reader::patch`].
    fn count(&mut self) -> usize {
        self.out.extend_from_slice(&[0; 4]);
        self.out.len() - 4
    }

    fn patch(&mut self, at: usize, count: usize) -> Option<()> {
        self.out[at..at + 4].copy_from_slice(&u32::try_from(count).ok()?.to_be_bytes());
        Some(())
    }

    /// A map of typed values (the body itself when `attributes`): its deepest value's depth.
    fn map(&mut self, attributes: bool) -> Option<usize> {
        self.eat(b"{")?;
        self.out.push(0x09);
        let count = self.count();
        let (mut n, mut depth) = (0, 0);
        // Where the previous key's bytes lie in the output.
        let mut previous: Option<(usize, usize)> = None;
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                let start = self.out.len();
                self.out.extend_from_slice(&[0; 4]);
                let len = self.string_into_out()?;
                self.out[start..start + 4].copy_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
                let key = (start + 4, start + 4 + len);
                if let Some((a, b)) = previous {
                    if self.out[a..b] >= self.out[key.0..key.1] {
                        return None;
                    }
                }
                if attributes && !crate::names::is_attribute_name(&self.out[key.0..key.1]) {
                    return None;
                }
                previous = Some(key);
                self.eat(b":")?;
                depth = depth.max(self.value()?);
                n += 1;
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.patch(count, n)?;
        Some(depth)
    }

    /// One typed value: its depth.
    fn value(&mut self) -> Option<usize> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return None;
        }
        self.eat(b"{\"")?;
        let name_end = self.at + memchr::memchr(b'"', self.text.get(self.at..)?)?;
        let ty = match &self.text[self.at..name_end] {
            b"null" => ValueType::Null,
            b"bool" => ValueType::Bool,
            b"int" => ValueType::Int,
            b"float" => ValueType::Float,
            b"decimal" => ValueType::Decimal,
            b"string" => ValueType::String,
            b"bytes" => ValueType::Bytes,
            b"timestamp" => ValueType::Timestamp,
            b"list" => ValueType::List,
            b"map" => ValueType::Map,
            _ => return None,
        };
        self.at = name_end;
        self.eat(b"\":")?;
        let depth = match ty {
            ValueType::Null => {
                self.eat(b"true")?;
                self.out.push(0x00);
                1
            }
            ValueType::Bool => {
                let b = if self.eat(b"true").is_some() {
                    true
                } else {
                    self.eat(b"false")?;
                    false
                };
                self.out.extend_from_slice(&[0x01, u8::from(b)]);
                1
            }
            ValueType::String => {
                self.out.push(0x05);
                let start = self.out.len();
                self.out.extend_from_slice(&[0; 4]);
                let len = self.string_into_out()?;
                self.out[start..start + 4].copy_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
                1
            }
            ValueType::Int => {
                let text = self.plain_string()?;
                let digits = text.strip_prefix('-').unwrap_or(text);
                // Canonical: no sign but a minus, no leading zero, no `-0`.
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || (digits.len() > 1 && digits.starts_with('0'))
                    || text == "-0"
                {
                    return None;
                }
                let i: i64 = text.parse().ok()?;
                self.out.push(0x02);
                self.out.extend_from_slice(&i.to_be_bytes());
                1
            }
            ValueType::List => {
                self.eat(b"[")?;
                self.out.push(0x08);
                let count = self.count();
                let (mut n, mut depth) = (0, 0);
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    loop {
                        depth = depth.max(self.value()?);
                        n += 1;
                        match self.peek()? {
                            b',' => self.at += 1,
                            b']' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.patch(count, n)?;
                1 + depth
            }
            ValueType::Map => 1 + self.map(false)?,
            ValueType::Decimal => {
                // Canonical text is the value's own: judged without parsing it.
                let text = self.plain_string()?;
                if !crate::Decimal::is_canonical(text) {
                    return None;
                }
                crate::canonical::put_decimal(&mut self.out, text);
                1
            }
            ty => {
                // Float, bytes, timestamp: parsed, and taken only when the text is the one the
                // value is written as.
                let text = self.plain_string()?;
                let value = Value::parse_typed(ty, text).ok()?;
                let canonical = match &value {
                    Value::Float(f) => format_float(*f) == text,
                    Value::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b) == text,
                    Value::Timestamp(t) => t.to_string() == text,
                    _ => false,
                };
                if !canonical {
                    return None;
                }
                encode_value(&mut self.out, &value);
                1
            }
        };
        self.eat(b"}")?;
        self.nesting -= 1;
        Some(depth)
    }

    /// A string without escapes (a scalar's text): borrowed.
    fn plain_string(&mut self) -> Option<&'t str> {
        self.eat(b"\"")?;
        let rest = self.text.get(self.at..)?;
        let len = special(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        self.at += len + 1;
        Some(text)
    }

    /// A string's text appended to the output: its length. Escapes are taken only as `write_str`
    /// writes them (the short ones for `" \ \n \r \t \b \f`, `\u00xx` in lower case for other
    /// control characters), so that the text is the one the string is written as.
    fn string_into_out(&mut self) -> Option<usize> {
        self.eat(b"\"")?;
        let start = self.out.len();
        loop {
            let rest = self.text.get(self.at..)?;
            let plain = special(rest)?;
            self.out.extend_from_slice(&rest[..plain]);
            self.at += plain;
            match rest[plain] {
                b'"' => {
                    self.at += 1;
                    return Some(self.out.len() - start);
                }
                b'\\' => {
                    let escape = *rest.get(plain + 1)?;
                    let (byte, used) = match escape {
                        b'"' => (b'"', 2),
                        b'\\' => (b'\\', 2),
                        b'n' => (b'\n', 2),
                        b'r' => (b'\r', 2),
                        b't' => (b'\t', 2),
                        b'b' => (0x08, 2),
                        b'f' => (0x0c, 2),
                        b'u' => {
                            let hex = rest.get(plain + 2..plain + 6)?;
                            let lower = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
                            if &hex[..2] != b"00" || !hex.iter().all(lower) {
                                return None;
                            }
                            let byte = u8::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()?;
                            // Only what has no short escape is written this way.
                            if byte >= 0x20 || matches!(byte, b'\n' | b'\r' | b'\t' | 0x08 | 0x0c) {
                                return None;
                            }
                            (byte, 6)
                        }
                        _ => return None,
                    };
                    self.out.push(byte);
                    self.at += used;
                }
                // `special` stops only at a quote or a backslash.
                _ => return None,
            }
        }
    }
}
