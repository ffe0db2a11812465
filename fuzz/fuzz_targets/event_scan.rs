#![no_main]
//! Events (the input's lines) through the event scanner, which reuses what
//! an event repeats from an earlier one, against scanning each one whole:
//! the same end and the same captures at the same offsets (of the events
//! whose captures are read), fed in pieces or in one.
use costguard::event_scan::EventScanner;
use costguard::json_scan::JsonScanner;
use costguard::meter::USAGE_PATHS;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    // Which events are handed over in one piece, and which are read after
    // they end (a stream reads nothing of most): a bit per event each.
    let in_one_piece = sizes.first().copied().unwrap_or(0);
    let read = sizes.get(1).copied().unwrap_or(0xff);
    let mut reusing = EventScanner::new(USAGE_PATHS, 64);
    for (n, event) in body.split(|&b| b == b'\n').take(64).enumerate() {
        let mut whole = JsonScanner::new(USAGE_PATHS, 64);
        whole.feed(event);
        let ended = if in_one_piece >> (n % 8) & 1 == 1 {
            reusing.finish_whole(event)
        } else {
            for chunk in common::chunks(event, sizes) {
                reusing.feed(chunk);
            }
            reusing.finish()
        };
        assert_eq!(ended, whole.finish());
        if read >> (n % 8) & 1 == 0 {
            reusing.next_event();
            continue;
        }
        for target in 0..USAGE_PATHS.len() {
            assert_eq!(reusing.scanner().captured(target), whole.captured(target));
            assert_eq!(reusing.scanner().captured_offset(target), whole.captured_offset(target));
        }
        reusing.next_event();
    }
});
