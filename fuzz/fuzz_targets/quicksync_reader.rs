//! The quicksync file reader: any file is read to a verified end or refused, without panicking or
//! unbounded memory (lines are capped). The fuzzer's bytes are the decompressed text, compressed here,
//! so mutations reach the line parser and the chain checks rather than the zstd frame; the first byte
//! chooses whether the frame is also cut short. Independently of the reader's own checks, a verified
//! file's events must fold to the trailer's chain, and the reader of keys only (what verifying before
//! applying uses) must find it sound with the same trailer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_quicksync::format::{Item, Reader};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, text)) = data.split_first() else { return };
    let Ok(mut file) = zstd::encode_all(text, 1) else { return };
    if cut % 8 == 0 {
        file.truncate(file.len() / 2);
    }
    let Ok(mut reader) = Reader::new(&file[..]) else { return };
    let header = reader.header().clone();
    let mut chain = header.prev_chain;
    let mut next = header.start_seq;
    while let Ok(Some(item)) = reader.next_item() {
        if let Item::Event(event) = item {
            assert_eq!(event.seq, next, "events are handed out in seq order");
            assert!(event.seq <= header.end_seq);
            let r = &event.revision;
            chain = chain.next_event(event.seq, (&r.table, &r.id, &r.rev, r.deleted), r.foreign.as_ref());
            next += 1;
        }
    }
    if let Some(trailer) = reader.trailer() {
        assert_eq!(next - 1, header.end_seq, "a verified file held every event it promised");
        assert_eq!(trailer.end_chain, chain, "the events fold to the trailer's chain");
        let keys = Reader::keys(&file[..]).and_then(Reader::verify);
        assert_eq!(keys.as_ref().ok(), Some(trailer), "the key reader verifies what the whole reader does");
    }
});
