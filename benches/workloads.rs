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

/// A Chat Completions body of about `size` bytes whose content reads like a
/// model's answer: lines, a list, a tab, quoted code — its escapes mostly
/// `\n`, few `\"`.
pub fn chat_json_text(size: usize) -> Vec<u8> {
    let line = "Here is the plan:\\n\\n1. Read the file.\\n2. Parse it with `serde_json::from_str(\\\"{}\\\")`.\\n\\tThen print it.\\n";
    let text = line.repeat(size / line.len() + 1);
    format!(
        r#"{{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}}}}],"usage":{{"prompt_tokens":10,"completion_tokens":20}}}}"#
    )
    .into_bytes()
}

/// A Chat Completions SSE stream of `events` content chunks, then usage and [DONE].
pub fn chat_sse(events: usize) -> Vec<u8> {
    chat_sse_with(events, |i| format!("token {i} "), |_| String::new())
}

/// The same with escapes in the content, as a model's answer has them: a
/// line break in every third chunk, a quote in every fifth.
pub fn chat_sse_escaped(events: usize) -> Vec<u8> {
    chat_sse_with(
        events,
        |i| match (i % 3, i % 5) {
            (0, _) => format!("token {i}\\n\\n"),
            (_, 0) => "\\\"q\\\"".to_string(),
            _ => format!("token {i} "),
        },
        |_| String::new(),
    )
}

/// The same with an `obfuscation` string of varying length in every content
/// chunk, as the API sends by default.
pub fn chat_sse_obfuscated(events: usize) -> Vec<u8> {
    chat_sse_with(
        events,
        |i| format!("token {i} "),
        |i| {
            let pad = &"Xq3vR8kLm2Zp"[..(i * 7) % 12];
            format!(",\"obfuscation\":\"{pad}\"")
        },
    )
}

/// A Responses API stream of `events` text deltas (each with its sequence
/// number and an obfuscation string), then `response.completed` with usage.
pub fn responses_sse(events: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..events {
        let pad = &"Xq3vR8kLm2Zp"[..(i * 7) % 12];
        let sequence = i + 4;
        out.push_str(&format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{sequence},\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"token {i} \",\"logprobs\":[],\"obfuscation\":\"{pad}\"}}\n\n"
        ));
    }
    out.push_str("event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":999,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"gpt-4.1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":10,\"output_tokens\":20,\"total_tokens\":30}}}\n\n");
    out.into_bytes()
}

fn chat_sse_with(
    events: usize,
    content: impl Fn(usize) -> String,
    extra: impl Fn(usize) -> String,
) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..events {
        let (content, extra) = (content(i), extra(i));
        out.push_str(&format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}],\"usage\":null{extra}}}\n\n"
        ));
    }
    out.push_str("data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

fn ws_text(payload: &[u8]) -> Vec<u8> {
    costguard::ws::encode_frame(costguard::ws::OP_TEXT, payload, None)
}

/// Server→client Realtime frames: `responses` × (`deltas` audio deltas of
/// `delta_bytes`, one response.done). `type_last`: each delta's `type` after
/// its audio (as the simulator sends it: keys in alphabetical order), so
/// nothing can be skipped.
pub fn realtime_stream(
    responses: usize,
    deltas: usize,
    delta_bytes: usize,
    type_last: bool,
) -> Vec<u8> {
    let mut out = ws_text(br#"{"type":"session.created","session":{"model":"gpt-realtime"}}"#);
    let audio = "A".repeat(delta_bytes);
    let delta = if type_last {
        format!(
            r#"{{"content_index":0,"delta":"{audio}","item_id":"i","output_index":0,"response_id":"r","type":"response.output_audio.delta"}}"#
        )
    } else {
        format!(r#"{{"type":"response.output_audio.delta","response_id":"r","delta":"{audio}"}}"#)
    };
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

/// A body as the filter gets it: owned chunks (each the host's copy).
pub fn owned_chunks(body: &[u8]) -> Vec<Vec<u8>> {
    body.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

/// [`meter`] over owned chunks, which a long JSON body's tail keeps as they are.
pub fn meter_owned(kind: BodyKind, chunks: Vec<Vec<u8>>) -> bool {
    let mut m = ResponseMeter::new(kind);
    for chunk in chunks {
        m.feed_chunk(chunk.into());
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
                request.facts.model.as_deref(),
                &usage,
                tier,
            )
            .cost
        }
        _ => 0,
    }
}

/// A host for whole HTTP exchanges: the store in memory, events dropped.
pub struct ExchangeEnv {
    pub config: Config,
    store: costguard::store::mem::MemStore,
    view: costguard::budget::GlobalView,
    now: u64,
}

impl ExchangeEnv {
    pub fn new(config: Config) -> ExchangeEnv {
        ExchangeEnv {
            config,
            store: Default::default(),
            view: Default::default(),
            now: 1_000_000,
        }
    }
}

impl costguard::http::HttpEnv for ExchangeEnv {
    fn config(&self) -> &Config {
        &self.config
    }
    fn prices(&self) -> &costguard::pricing::PriceTable {
        &self.config.prices
    }
    fn store(&self) -> &dyn costguard::store::Store {
        &self.store
    }
    fn global_view(&self) -> &costguard::budget::GlobalView {
        &self.view
    }
    fn now_ms(&self) -> u64 {
        self.now
    }
    fn random_16(&mut self) -> [u8; 16] {
        [7; 16]
    }
    fn event(&mut self, event: costguard::http::Event) {
        std::hint::black_box(event);
    }
    fn filter_state(&mut self, key: costguard::http::FilterState, value: &str) {
        std::hint::black_box((key, value));
    }
}

/// Sessions the exchange workload spreads its requests over: few, so that
/// nearly every request finds its session's record (as in steady state).
pub const EXCHANGE_SESSIONS: usize = 4;

/// Headers of the exchange workload, serialised once as the host hands them over.
pub struct ExchangeHeaders {
    without_session: costguard::headers::HeaderPairs,
    with_session: Vec<costguard::headers::HeaderPairs>,
    response: costguard::headers::HeaderPairs,
}

impl ExchangeHeaders {
    pub fn new() -> ExchangeHeaders {
        use costguard::headers::{serialize, HeaderPairs};
        let length = SMALL_REQUEST.len().to_string();
        let request = |session: Option<&str>| {
            let mut pairs = vec![
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "api"),
                ("content-type", "application/json"),
                ("content-length", length.as_str()),
            ];
            pairs.extend(session.map(|id| ("x-session-id", id)));
            HeaderPairs::new(serialize(&pairs))
        };
        ExchangeHeaders {
            without_session: request(None),
            with_session: (0..EXCHANGE_SESSIONS)
                .map(|i| request(Some(&format!("session-{i}"))))
                .collect(),
            response: HeaderPairs::new(serialize(&[
                (":status", "200"),
                ("content-type", "application/json"),
            ])),
        }
    }
}

/// One small non-streaming Chat request through every callback of the core,
/// as the adapter drives it (the `n`th request; in a session when `sessions`).
/// Never inlined: a profile can count this function alone
/// (`valgrind --tool=callgrind --toggle-collect=*small_exchange`).
#[inline(never)]
pub fn small_exchange(
    env: &mut ExchangeEnv,
    headers: &ExchangeHeaders,
    n: usize,
    sessions: bool,
    response: &[u8],
) -> bool {
    use costguard::http::{Admission, HttpExchange, RequestBody};
    let request = match headers.with_session.get(n % EXCHANGE_SESSIONS) {
        Some(with_session) if sessions => with_session,
        _ => &headers.without_session,
    };
    let mut x = HttpExchange::new();
    if !matches!(
        x.on_request_headers(env, request, false),
        Admission::Admit { .. }
    ) {
        return false;
    }
    let ok = match x.on_request_body(SMALL_REQUEST.len(), true) {
        RequestBody::Rewrite => x.rewrite_request_body(env, SMALL_REQUEST).is_ok(),
        RequestBody::Read => x.read_request_body(env, SMALL_REQUEST, true).is_ok(),
        _ => true,
    };
    for header in x.response_headers_to_set(&env.config) {
        std::hint::black_box(header);
    }
    x.on_response_headers(env, &headers.response, false);
    x.on_response_body(env, response, true);
    x.on_end(env);
    ok
}
