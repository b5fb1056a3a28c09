//! Validation of names and ids, and the configurable limits of SPEC §13.

use crate::Error;

/// The deepest value nesting a body can have and still be read back: its wire JSON opens two levels
/// per value (`{"list":[`), one for the body and one for the innermost scalar, 2 × depth in all, and
/// the JSON reader takes 127 at most. `Limits::max_depth` is at most this.
pub const MAX_DEPTH: usize = 63;

/// Limits on input, checked at every boundary. Defaults follow SPEC §13.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest record body, in canonical bytes.
    pub max_body_bytes: usize,
    /// Deepest value nesting (a scalar is depth 1), at most [`MAX_DEPTH`].
    pub max_depth: usize,
    /// Most operations in one bulk request.
    pub max_bulk_ops: usize,
    /// Largest request body, in bytes (HTTP).
    pub max_request_bytes: usize,
    /// Longest record id, in bytes.
    pub max_id_bytes: usize,
    /// Most ids of history a replicated revision's ancestry keeps (CouchDB's `revs_limit`); a longer
    /// one is cut, its oldest kept ancestor becoming a stub.
    pub max_ancestry: usize,
    /// Most entries in one revs-diff or revs/get request (records, after duplicates are merged).
    pub max_request_entries: usize,
    /// Most tables a changes filter names.
    pub max_filter_tables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_depth: 32,
            max_bulk_ops: 10_000,
            max_request_bytes: 16 << 20,
            max_id_bytes: MAX_ID_BYTES,
            max_ancestry: 1000,
            max_request_entries: 10_000,
            max_filter_tables: 100,
        }
    }
}

/// Longest record id in bytes (SPEC §2).
pub const MAX_ID_BYTES: usize = 256;
/// Longest attribute name in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 256;
/// The reserved table holding table definitions.
pub const TABLES_TABLE: &str = "_tables";

fn name_ok(name: &str, extra: &[u8]) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || extra.contains(c))
}

/// A user table name: `^[a-z][a-z0-9_]{0,62}$`.
pub fn validate_table_name(name: &str) -> Result<(), Error> {
    if name_ok(name, b"") {
        Ok(())
    } else if name.starts_with('_') {
        Err(Error::invalid(format!("table name {name:?} is reserved: names beginning with '_' belong to the system")))
    } else {
        Err(Error::invalid(format!(
            "invalid table name {name:?}: expected 1-63 characters of a-z, 0-9 and '_', starting with a letter"
        )))
    }
}

/// A table name as it may appear in replication: a user table name or a reserved system table.
pub fn validate_any_table_name(name: &str) -> Result<(), Error> {
    if name == TABLES_TABLE {
        Ok(())
    } else {
        validate_table_name(name)
    }
}

/// A database name: `^[a-z][a-z0-9_-]{0,62}$` (it becomes a file name, so no path tricks).
pub fn validate_db_name(name: &str) -> Result<(), Error> {
    if name_ok(name, b"-") {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid database name {name:?}: expected 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter"
        )))
    }
}

/// A record id: 1–`max` bytes of UTF-8 without control characters.
pub fn validate_record_id(id: &str, max: usize) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::invalid("record id is empty"));
    }
    if id.len() > max {
        return Err(Error::invalid(format!("record id is {} bytes; the limit is {max}", id.len())));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!("record id contains the control character {c:?}")));
    }
    Ok(())
}

/// Whether `name` (UTF-8) is an attribute name ([`validate_attribute_name`]).
pub(crate) fn is_attribute_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_ATTRIBUTE_NAME_BYTES && name[0] != b'_'
}

/// An attribute name: 1–256 bytes of UTF-8, not starting with `_`.
pub fn validate_attribute_name(name: &str) -> Result<(), Error> {
    if is_attribute_name(name.as_bytes()) {
        return Ok(());
    }
    if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
        return Err(Error::invalid(format!(
            "invalid attribute name {name:?}: expected 1-{MAX_ATTRIBUTE_NAME_BYTES} bytes"
        )));
    }
    if name.starts_with('_') {
        return Err(Error::invalid(format!(
            "attribute name {name:?} is reserved: names beginning with '_' belong to the system"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_patterns() {
        for ok in ["a", "orders", "a1_b", &"a".repeat(63)] {
            validate_table_name(ok).unwrap();
            validate_db_name(ok).unwrap();
        }
        for bad in ["", "A", "1a", "_tables", "a-b", "a b", "../x", "%2e%2e", "a.b", &"a".repeat(64), "é"] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
        validate_db_name("field-db").unwrap();
        for bad in ["", "-a", "../x", "a/b", "a.db", "A", &"a".repeat(64)] {
            assert!(validate_db_name(bad).is_err(), "{bad}");
        }
        validate_any_table_name("_tables").unwrap();
        assert!(validate_any_table_name("_other").is_err());
    }

    #[test]
    fn ids_are_bounded_utf8_without_controls() {
        validate_record_id("'; DROP TABLE x; --", 256).unwrap();
        validate_record_id("../../etc/passwd", 256).unwrap();
        validate_record_id(&"é".repeat(128), 256).unwrap();
        assert!(validate_record_id("", 256).is_err());
        assert!(validate_record_id(&"a".repeat(257), 256).is_err());
        assert!(validate_record_id("a\nb", 256).is_err());
        assert!(validate_record_id("a\0b", 256).is_err());
    }
}
