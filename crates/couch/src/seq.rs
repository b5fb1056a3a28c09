//! The opaque sequence strings of the changes feed (SPEC §17): `"<seq>-<epoch tag>"`, the tag the
//! first 16 hex digits of the database's current epoch uuid. A `since` written by another server, by
//! another epoch of this database (a restore, a fork), or as a bare number a CouchDB 1.x would give,
//! reads as 0: the client starts over, which costs a diff of what it holds and never skips a change.

use outpost_api::Uuid;

use crate::error::{CouchError, CouchResult};

/// The tag of an epoch.
fn tag(epoch: Uuid) -> String {
    epoch.simple().to_string()[..16].to_owned()
}

/// The string a client sees for `seq` of the database whose current epoch is `epoch`.
pub fn format(seq: u64, epoch: Uuid) -> String {
    format!("{seq}-{}", tag(epoch))
}

/// Where a `since` starts: its seq when it is one of ours under `epoch` (and not past `update_seq`),
/// `update_seq` for `now`, else 0 (a bare number is another server's, or CouchDB 1.x's). Text that is
/// no sequence at all is 400.
pub fn since_text(text: &str, epoch: Uuid, update_seq: u64) -> CouchResult<u64> {
    let text = text.trim().trim_matches('"');
    if text == "now" {
        return Ok(update_seq);
    }
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(0);
    }
    let Some((seq, their_tag)) = text.split_once('-') else {
        return Err(CouchError::bad_request(format!("since: {text:?} is not a sequence")));
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return Err(CouchError::bad_request(format!("since: {text:?} is not a sequence")));
    };
    // Ours, and not past the head (which only a forged or foreign string can be).
    Ok(if their_tag == tag(epoch) && seq <= update_seq { seq } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_sequences_round_trip_and_anything_else_starts_over() {
        let epoch = Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let other = Uuid::from_u128(7);
        let s = format(42, epoch);
        assert_eq!(s, "42-0123456789abcdef");
        assert_eq!(since_text(&s, epoch, 50).unwrap(), 42);
        assert_eq!(since_text(&format!("\"{s}\""), epoch, 50).unwrap(), 42, "JSON-quoted");
        assert_eq!(since_text(&format(42, other), epoch, 50).unwrap(), 0, "another epoch");
        assert_eq!(since_text(&s, epoch, 41).unwrap(), 0, "past the head");
        assert_eq!(since_text("17", epoch, 50).unwrap(), 0, "a bare number");
        assert_eq!(since_text("now", epoch, 50).unwrap(), 50);
        assert_eq!(since_text("0", epoch, 50).unwrap(), 0);
        assert!(since_text("abc", epoch, 50).is_err());
        assert!(since_text("x-0123456789abcdef", epoch, 50).is_err());
    }
}
