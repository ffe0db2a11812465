#![no_main]
//! JSON bodies (long ones' ends read backward too) and usage objects:
//! never a panic, usage parts never exceed
//! totals, a usage object is read as its reference reading (a parsed
//! tree) reads it, and so are a whole object's members read backward; a
//! body of a declared length reads the same when only what the meter wants
//! of each chunk is read.
use costguard::json_tail::last_members;
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
    // A whole object read backward: each member as a parsed tree has it
    // (the last of equal keys).
    if let Ok(serde_json::Value::Object(tree)) = serde_json::from_slice(body) {
        let found = last_members(body, [b"usage", b"model"]);
        let Ok(found) = found else {
            panic!("a JSON object's end not read: {found:?}");
        };
        for (key, text) in ["usage", "model"].into_iter().zip(found) {
            let read = text.map(|t| serde_json::from_slice::<serde_json::Value>(t).ok());
            assert_eq!(read, tree.get(key).map(|v| Some(v.clone())), "{key}");
        }
    }
    // As the filter meters bodies, and with a small head and tail, so that
    // short inputs reach a long body's reading (its end read backward).
    let meters = [
        ResponseMeter::new(BodyKind::Json),
        ResponseMeter::json_with_window(24, 48),
        ResponseMeter::json_with_window(7, 1),
    ];
    for (i, mut meter) in meters.into_iter().enumerate() {
        for chunk in common::chunks(body, sizes) {
            if i == 1 {
                // Owned, as the filter passes chunks: kept without a copy.
                meter.feed_chunk(chunk.to_vec().into());
            } else {
                meter.feed(chunk);
            }
        }
        let metered = if i % 2 == 0 {
            meter.finish()
        } else {
            meter.finish_cut()
        };
        if let Metered::Usage { usage, .. } = metered {
            assert!(usage.cached_input_total() <= usage.input_total());
        }
    }
    // Its length declared: reading of each chunk only what the meter wants
    // reads it as reading every byte does; a wrong length is never priced
    // once the tail is read.
    let declared = |len: u64, wanted_only: bool| {
        let mut meter = ResponseMeter::json_with_window(24, 48);
        meter.declare_len(len);
        for chunk in common::chunks(body, sizes) {
            let part = if wanted_only { meter.wanted(chunk.len()) } else { 0..chunk.len() };
            let start = part.start;
            meter.feed_part(chunk.len(), start, chunk[part].into());
        }
        meter.finish()
    };
    let len = body.len() as u64;
    assert_eq!(declared(len, true), declared(len, false));
    if body.len() > 24 {
        assert_eq!(declared(len + 1, true), Metered::Malformed);
    }
});
