#![no_main]
//! Events (the input's lines) through the event scanner, which reuses what
//! an event repeats from an earlier one, against scanning each one whole:
//! the same end and the same captures at the same offsets.
use costguard::event_scan::EventScanner;
use costguard::json_scan::JsonScanner;
use costguard::meter::USAGE_PATHS;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut reusing = EventScanner::new(USAGE_PATHS, 64);
    for event in body.split(|&b| b == b'\n').take(64) {
        let mut whole = JsonScanner::new(USAGE_PATHS, 64);
        whole.feed(event);
        for chunk in common::chunks(event, sizes) {
            reusing.feed(chunk);
        }
        assert_eq!(reusing.finish(), whole.finish());
        for target in 0..USAGE_PATHS.len() {
            assert_eq!(reusing.scanner().captured(target), whole.captured(target));
            assert_eq!(reusing.scanner().captured_offset(target), whole.captured_offset(target));
        }
        reusing.next_event();
    }
});
