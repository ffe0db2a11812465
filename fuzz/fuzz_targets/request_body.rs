#![no_main]
//! Request bodies read for the reservation estimate: never a panic, and
//! the same facts however the body is split.
use costguard::http::estimate::RequestReader;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut split = RequestReader::new();
    for chunk in common::chunks(body, sizes) {
        split.feed(chunk);
    }
    let mut whole = RequestReader::new();
    whole.feed(body);
    let facts = whole.finish();
    assert_eq!(split.finish(), facts);
    assert_eq!(facts.body_bytes, body.len() as u64);
});
