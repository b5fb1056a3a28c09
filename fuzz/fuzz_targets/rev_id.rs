//! `RevId` parsing: a parsed id has a generation in 1..=2^53-1 and prints back to itself, in text and
//! in JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_api::{RevId, MAX_GENERATION};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(rev) = text.parse::<RevId>() {
            assert!((1..=MAX_GENERATION).contains(&rev.generation), "{rev}");
            assert_eq!(rev.to_string().parse::<RevId>().expect("a printed id parses"), rev);
        }
    }
    if let Ok(rev) = serde_json::from_slice::<RevId>(data) {
        let json = serde_json::to_string(&rev).expect("an id encodes");
        assert_eq!(serde_json::from_str::<RevId>(&json).expect("an encoded id decodes"), rev);
    }
});
