//! The quicksync file reader: any bytes are read to a verified end or refused, without panicking,
//! without unbounded memory (lines are capped), and an item is only handed out in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_quicksync::format::{Item, Reader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = Reader::new(data) else { return };
    let (start, end) = (reader.header().start_seq, reader.header().end_seq);
    let mut next = start;
    // A file holds at most end - start + 1 events plus its knowledge rows; the loop ends at the
    // first error or the verified end.
    while let Ok(Some(item)) = reader.next_item() {
        if let Item::Event(event) = item {
            assert_eq!(event.seq, next, "events are handed out in seq order");
            assert!(event.seq <= end);
            next += 1;
        }
    }
    if reader.trailer().is_some() {
        assert_eq!(next, end + 1, "a verified file held every event it promised");
    }
});
