#![no_main]
//! Server→client WebSocket bytes in arbitrary chunks: never a panic; once
//! costguard has closed the session, nothing more reaches the client.
use costguard::config::FailMode;
use costguard::realtime::{Phase, RealtimeSession, Rewrite};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut env = common::Env::new();
    let cfg = env.config.session.clone();
    let mut s = RealtimeSession::new("s".into(), "gpt-realtime".into(), 0);
    for chunk in common::chunks(body, sizes) {
        let closed_before = matches!(s.phase, Phase::Closed { .. });
        let out = s.server_chunk(chunk, &cfg, FailMode::Open, 0, &mut env);
        if closed_before {
            assert!(matches!(out, Rewrite::Replace(ref v) if v.is_empty()) || chunk.is_empty());
        }
    }
});
