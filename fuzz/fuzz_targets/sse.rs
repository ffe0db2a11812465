#![no_main]
//! SSE bodies in arbitrary chunks: never a panic.
use costguard::meter::{BodyKind, ResponseMeter};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut meter = ResponseMeter::new(BodyKind::EventStream);
    for chunk in common::chunks(body, sizes) {
        meter.feed(chunk);
    }
    let _ = meter.finish();
});
