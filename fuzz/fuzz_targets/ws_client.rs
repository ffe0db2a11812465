#![no_main]
//! Client→server WebSocket bytes, also past the duration limit: never a panic.
use costguard::realtime::RealtimeSession;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut env = common::Env::new();
    let cfg = env.config.session.clone();
    let mut s = RealtimeSession::new("s".into(), "gpt-realtime".into(), 0);
    let limit_at = u64::from(sizes.first().copied().unwrap_or(0)) * 10_000_000;
    for (i, chunk) in common::chunks(body, sizes).into_iter().enumerate() {
        let _ = s.client_chunk(chunk, &cfg, limit_at + i as u64, &mut env);
    }
});
