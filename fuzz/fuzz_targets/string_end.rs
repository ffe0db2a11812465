#![no_main]
//! Where a string's text ends, read in 64-byte blocks as quote and
//! backslash masks, against reading it byte by byte: the same closing quote,
//! or the same pending escape; and where it ends within one 16-byte lane
//! (whatever escapes the first byte), and whether a line end comes first,
//! against the same bytes read one at a time. The first byte picks where the
//! text starts.
use costguard::string_end::{
    string_end, string_end_bytewise, string_end_in_lane, string_end_in_lane_bytewise,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&start, text)) = data.split_first() else {
        return;
    };
    let from = usize::from(start).min(text.len());
    assert_eq!(string_end(text, from), string_end_bytewise(text, from));
    for escaped_first in [false, true] {
        assert_eq!(
            string_end_in_lane(text, from, escaped_first),
            string_end_in_lane_bytewise(text, from, escaped_first)
        );
    }
});
