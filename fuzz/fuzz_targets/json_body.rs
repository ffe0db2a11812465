#![no_main]
//! JSON bodies and usage objects: never a panic, usage parts never exceed totals.
use costguard::meter::{BodyKind, Metered, ResponseMeter};
use costguard::usage::Usage;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = Usage::from_json(data) {
        assert!(u.reasoning_output <= u.text_output);
    }
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut meter = ResponseMeter::new(BodyKind::Json);
    for chunk in common::chunks(body, sizes) {
        meter.feed(chunk);
    }
    if let Metered::Usage { usage, .. } = meter.finish() {
        assert!(usage.cached_input_total() <= usage.input_total());
    }
});
