#![no_main]
//! JSON bodies and usage objects: never a panic, usage parts never exceed
//! totals, and a usage object is read as its reference reading (a parsed
//! tree) reads it.
use costguard::meter::{BodyKind, Metered, ResponseMeter};
use costguard::usage::{reference, Usage};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let usage = Usage::from_json(data);
    if let Ok(u) = &usage {
        assert!(u.reasoning_output <= u.text_output);
    }
    assert!(reference::same(&usage, &reference::from_tree(data)));
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut meter = ResponseMeter::new(BodyKind::Json);
    for chunk in common::chunks(body, sizes) {
        meter.feed(chunk);
    }
    if let Metered::Usage { usage, .. } = meter.finish() {
        assert!(usage.cached_input_total() <= usage.input_total());
    }
});
