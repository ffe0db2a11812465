//! Fixed inputs for the core's hot paths, shared by the criterion bench
//! (`benches/core.rs`) and the instruction-count guard (`benches/hotpath.rs`).
#![allow(dead_code)]

use costguard::config::{Config, FailMode};
use costguard::http::budgets::AppliedRule;
use costguard::http::inspect_chat_request;
use costguard::meter::{BodyKind, ResponseMeter};
use costguard::money::Micros;
use costguard::pricing::cost_micros;
use costguard::pricing::price;
use costguard::realtime::{Booked, Notice, RealtimeEnv, RealtimeSession, RuleOut};
use costguard::usage::Usage;

pub const CHUNK: usize = 16 * 1024;

/// A Chat Completions body of about `size` bytes with usage at the end.
pub fn chat_json(size: usize) -> Vec<u8> {
    let text = "lorem \\\"usage\\\" {ipsum} [dolor] é世界 ".repeat(size / 40 + 1);
    format!(
        r#"{{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}}}}],"usage":{{"prompt_tokens":10,"completion_tokens":20,"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#
    )
    .into_bytes()
}

/// A Chat Completions SSE stream of `events` content chunks, then usage and [DONE].
pub fn chat_sse(events: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..events {
        out.push_str(&format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    out.push_str("data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

fn ws_text(payload: &[u8]) -> Vec<u8> {
    costguard::ws::encode_frame(costguard::ws::OP_TEXT, payload, None)
}

/// Server→client Realtime frames: `responses` × (`deltas` audio deltas of `delta_bytes`, one response.done).
pub fn realtime_stream(responses: usize, deltas: usize, delta_bytes: usize) -> Vec<u8> {
    let mut out = ws_text(br#"{"type":"session.created","session":{"model":"gpt-realtime"}}"#);
    let delta = format!(
        r#"{{"type":"response.output_audio.delta","response_id":"r","delta":"{}"}}"#,
        "A".repeat(delta_bytes)
    );
    for _ in 0..responses {
        for _ in 0..deltas {
            out.extend(ws_text(delta.as_bytes()));
        }
        out.extend(ws_text(br#"{"type":"response.done","response":{"id":"r","status":"completed","usage":{"total_tokens":150,"input_tokens":100,"output_tokens":50,"input_token_details":{"text_tokens":40,"audio_tokens":60,"cached_tokens":0},"output_token_details":{"text_tokens":10,"audio_tokens":40}}}}"#));
    }
    out
}

pub fn meter(kind: BodyKind, body: &[u8]) -> bool {
    let mut m = ResponseMeter::new(kind);
    for chunk in body.chunks(CHUNK) {
        m.feed(chunk);
    }
    matches!(m.finish(), costguard::meter::Metered::Usage { .. })
}

pub struct Env(pub Config);
impl RealtimeEnv for Env {
    fn book(&mut self, model: &str, usage: &Usage, _rules: &mut [AppliedRule]) -> Booked {
        Booked {
            cost: cost_micros(usage, self.0.prices.lookup(model).prices()),
            exhausted: None,
        }
    }
    fn exhausted_rule(&mut self, _rules: &mut [AppliedRule]) -> Option<RuleOut> {
        None
    }
    fn breaker_closes_sessions(&self) -> bool {
        false
    }
    fn random_mask(&mut self) -> [u8; 4] {
        [0; 4]
    }
    fn notice(&mut self, _: Notice) {}
}

pub fn realtime(body: &[u8]) -> Micros {
    let mut env =
        Env(Config::parse(br#"{"session":{"budget_usd":1000000}}"#)
            .unwrap_or_else(|_| unreachable!()));
    let cfg = env.0.session.clone();
    let mut s = RealtimeSession::new("s".into(), "gpt-realtime".into(), 0);
    for chunk in body.chunks(CHUNK) {
        let _ = s.server_chunk(chunk, &cfg, FailMode::Open, 0, &mut env);
    }
    s.spend
}

pub const SMALL_REQUEST: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// The core work of one small non-streaming request: inspect the request, meter and price the response.
pub fn small_request(config: &Config, response: &[u8]) -> Micros {
    let request = inspect_chat_request(SMALL_REQUEST);
    let mut m = ResponseMeter::new(BodyKind::Json);
    m.feed(response);
    match m.finish() {
        costguard::meter::Metered::Usage { model, usage, tier } => {
            price(
                &config.prices,
                model.as_deref(),
                request.model.as_deref(),
                &usage,
                tier,
            )
            .cost
        }
        _ => 0,
    }
}
