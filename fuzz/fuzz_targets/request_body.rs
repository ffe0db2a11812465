#![no_main]
//! Request bodies read for the reservation estimate: never a panic, the
//! same facts however the body is split, and the same facts from a held
//! Chat body's one scan (which also reads what the rewrite needs).
use costguard::http::estimate::RequestReader;
use costguard::http::inspect_chat_request;
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
    let held = inspect_chat_request(body).facts;
    assert_eq!(held.body_bytes, facts.body_bytes);
    assert_eq!(held.max_output_tokens, facts.max_output_tokens);
    // The held scan captures up to 64 KiB, the reader 256 bytes: a longer
    // model name only the held scan reads.
    if facts.model.is_some() {
        assert_eq!(held.model, facts.model);
    }
});
