#![no_main]
//! Differential: a body metered whole and the same body split at arbitrary
//! points give the same usage and cost (JSON, SSE, Realtime frames).
use costguard::config::FailMode;
use costguard::meter::{BodyKind, ResponseMeter};
use costguard::realtime::{RealtimeSession, Rewrite};
use libfuzzer_sys::fuzz_target;

mod common;

fn meter(kind: BodyKind, parts: &[&[u8]]) -> costguard::meter::Metered {
    let mut m = ResponseMeter::new(kind);
    for p in parts {
        m.feed(p);
    }
    m.finish()
}

fn realtime(parts: &[&[u8]]) -> (u64, Vec<u8>) {
    let mut env = common::Env::new();
    let cfg = env.config.session.clone();
    let mut s = RealtimeSession::new("s".into(), "gpt-realtime".into(), 0);
    let mut out = Vec::new();
    for p in parts {
        match s.server_chunk(p, &cfg, FailMode::Open, 0, &mut env) {
            Rewrite::Keep => out.extend_from_slice(p),
            Rewrite::Replace(v) => out.extend(v),
        }
    }
    (s.spend, out)
}

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let parts = common::chunks(body, sizes);
    for kind in [BodyKind::Json, BodyKind::EventStream] {
        assert_eq!(meter(kind, &[body]), meter(kind, &parts));
    }
    assert_eq!(realtime(&[body]), realtime(&parts));
});
