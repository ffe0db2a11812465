//! The HTTP policy against a fake host: admission order and replies, store
//! failures, fail modes, settling once, holding the body for the rewrite.

use super::*;
use crate::budget::GLOBAL_MAX_AGE_MS;
use crate::headers::serialize;
use crate::store::mem::MemStore;
use std::cell::Cell;
use std::collections::HashMap;

/// A store that can be made to fail every call, and counts them.
#[derive(Default)]
struct FlakyStore {
    inner: MemStore,
    failing: Cell<bool>,
    gets: Cell<u32>,
    sets: Cell<u32>,
}

impl FlakyStore {
    /// (gets, sets) since the last call.
    fn take_calls(&self) -> (u32, u32) {
        (self.gets.take(), self.sets.take())
    }
}

impl Store for FlakyStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.gets.set(self.gets.get() + 1);
        if self.failing.get() {
            return Err(StoreError::Host(2));
        }
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        self.sets.set(self.sets.get() + 1);
        if self.failing.get() {
            return Err(StoreError::Host(2));
        }
        self.inner.set(key, value, cas)
    }
}

struct FakeEnv {
    config: Config,
    store: FlakyStore,
    view: GlobalView,
    now: u64,
    events: Vec<Event>,
    filter: HashMap<FilterState, String>,
}

impl FakeEnv {
    fn new(config: &str) -> FakeEnv {
        FakeEnv {
            config: Config::parse(config.as_bytes()).unwrap(),
            store: FlakyStore::default(),
            view: GlobalView::default(),
            now: 1_000_000,
            events: Vec::new(),
            filter: HashMap::new(),
        }
    }
    fn count(&self, wanted: &Event) -> usize {
        self.events.iter().filter(|e| *e == wanted).count()
    }
    fn priced(&self) -> Vec<&Priced> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Priced(p) => Some(p),
                _ => None,
            })
            .collect()
    }
    fn store_failures(&self) -> Vec<&'static str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StoreFailed { doing, .. } => Some(*doing),
                _ => None,
            })
            .collect()
    }
    fn session_spend(&self, id: &str) -> Micros {
        let key = SessionKey::from_header(id.as_bytes(), false).unwrap();
        let cfg = self.config.session.clone();
        budget::open_session(&self.store, &cfg, &key, self.now)
            .unwrap()
            .state
            .spend
    }
}

impl HttpEnv for FakeEnv {
    fn config(&self) -> &Config {
        &self.config
    }
    fn prices(&self) -> &PriceTable {
        &self.config.prices
    }
    fn store(&self) -> &dyn Store {
        &self.store
    }
    fn global_view(&self) -> &GlobalView {
        &self.view
    }
    fn now_ms(&self) -> u64 {
        self.now
    }
    fn random_16(&mut self) -> [u8; 16] {
        [7; 16]
    }
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
    fn filter_state(&mut self, key: FilterState, value: &str) {
        self.filter.insert(key, value.to_string());
    }
}

/// gpt-5 at $10 in / $30 out per 1M tokens; a $5 session budget, a $100 window.
const CONFIG: &str = r#"{"pricing":{"gpt-5":{"input":10,"output":30}}}"#;

fn headers(pairs: &[(&str, &str)]) -> HeaderPairs {
    HeaderPairs::new(serialize(pairs))
}

fn chat_request(session: Option<&str>) -> HeaderPairs {
    let mut h = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
    ];
    if let Some(s) = session {
        h.push(("x-session-id", s));
    }
    headers(&h)
}

/// A JSON chat completion whose usage costs `cents` on CONFIG's gpt-5.
fn chat_body(cents: u64) -> String {
    format!(
        r#"{{"model":"gpt-5","choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":0}}}}"#,
        cents * 1_000
    )
}

fn json_response() -> HeaderPairs {
    headers(&[(":status", "200"), ("content-type", "application/json")])
}

fn admit(env: &mut FakeEnv, ex: &mut HttpExchange, h: &HeaderPairs) -> RemoveHeaders {
    match ex.on_request_headers(env, h, true) {
        Admission::Admit { remove, .. } => remove,
        Admission::Refuse(r) => panic!("refused: {r:?}"),
    }
}

/// A whole JSON exchange costing `cents`.
fn call(env: &mut FakeEnv, session: Option<&str>, cents: u64) -> Admission {
    let mut ex = HttpExchange::new();
    let admission = ex.on_request_headers(env, &chat_request(session), true);
    if matches!(admission, Admission::Admit { .. }) {
        ex.on_response_headers(env, &json_response(), false);
        ex.on_response_body(env, chat_body(cents).as_bytes(), true);
        ex.on_end(env);
    }
    admission
}

fn refusal(admission: Admission) -> LocalReply {
    match admission {
        Admission::Refuse(r) => r,
        Admission::Admit { .. } => panic!("admitted"),
    }
}

#[test]
fn admission_order_and_each_refusal_exactly() {
    // Over its budget: $2 + $2 + $1.50, then refused with the exact body.
    let mut env = FakeEnv::new(CONFIG);
    for cents in [200, 200, 150] {
        assert!(matches!(
            call(&mut env, Some("s1"), cents),
            Admission::Admit { .. }
        ));
    }
    let r = refusal(call(&mut env, Some("s1"), 1));
    assert_eq!((r.status, r.retry_after_s), (429, None));
    assert_eq!(
        r.body,
        r#"{"error":{"message":"Session budget exhausted: $5.5 spent of $5.","type":"insufficient_quota","code":"session_budget_exceeded"}}"#
    );
    assert_eq!(env.count(&Event::RejectedSessionBudget), 1);
    assert_eq!(env.filter[&FilterState::SessionCostUsd], "5.5");
    // Other sessions and session-less requests pass.
    assert!(matches!(
        call(&mut env, Some("s2"), 1),
        Admission::Admit { .. }
    ));

    // A bad session id: 400, before any store access.
    let bad = headers(&[
        (":path", "/v1/chat/completions"),
        ("x-session-id", "a\u{1}b"),
    ]);
    let r = refusal(HttpExchange::new().on_request_headers(&mut env, &bad, true));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"error":{"message":"The x-session-id header must be 1 to 256 bytes without control characters.","type":"invalid_request_error","code":"invalid_session_id"}}"#
    );

    // The breaker comes first: 503 with retry-after even for the session over budget.
    let global = env.config.global.clone();
    budget::add_global_spend(&env.store, &global, 100_000_000, env.now, false).unwrap();
    env.now += GLOBAL_MAX_AGE_MS; // past the view's cache
    let open_ms = budget::close_time(&global, env.now - GLOBAL_MAX_AGE_MS) - env.now;
    for session in [Some("s1"), None] {
        let r = refusal(call(&mut env, session, 1));
        assert_eq!(
            (r.status, r.retry_after_s),
            (503, Some(open_ms.div_ceil(1000)))
        );
        assert!(r
            .body
            .ends_with(r#"","type":"server_error","code":"circuit_open"}}"#));
    }
    assert_eq!(env.count(&Event::RejectedCircuitOpen), 2);
    assert_eq!(
        env.count(&Event::RejectedSessionBudget),
        1,
        "the session was not asked"
    );
}

#[test]
fn upgrades_check_the_origin_and_start_realtime_sessions() {
    let mut env = FakeEnv::new(r#"{"allowed_origins":["https://app.example"]}"#);
    let upgrade = |origin: &str| {
        headers(&[
            (":path", "/v1/realtime?model=gpt-realtime"),
            ("upgrade", "websocket"),
            ("origin", origin),
            ("sec-websocket-extensions", "permessage-deflate"),
        ])
    };
    let r = refusal(HttpExchange::new().on_request_headers(
        &mut env,
        &upgrade("https://evil.example"),
        true,
    ));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        r#"{"error":{"message":"This Origin may not open Realtime sessions.","type":"permission_error","code":"origin_not_allowed"}}"#
    );
    let mut ex = HttpExchange::new();
    match ex.on_request_headers(&mut env, &upgrade("https://app.example"), true) {
        Admission::Admit { remove, realtime } => {
            assert_eq!(
                remove.names().collect::<Vec<_>>(),
                ["sec-websocket-extensions"]
            );
            let session = realtime.unwrap();
            assert_eq!(session.model, "gpt-realtime");
            assert_eq!(env.filter[&FilterState::SessionId], session.id);
        }
        Admission::Refuse(r) => panic!("{r:?}"),
    }
    assert!(
        !ex.reads_response_headers(),
        "the Realtime session meters, not the exchange"
    );
}

#[test]
fn store_failures_admit_and_are_reported() {
    let mut env = FakeEnv::new(CONFIG);
    env.store.failing.set(true);
    assert!(matches!(
        call(&mut env, Some("s1"), 100),
        Admission::Admit { .. }
    ));
    assert_eq!(
        env.store_failures(),
        [
            "read the global window",
            "read session state",
            "book global spend"
        ]
    );
    // Priced and counted in the stats all the same.
    assert_eq!(env.priced().len(), 1);
    // The store is back: a session admitted meanwhile books, a failed booking is reported.
    env.store.failing.set(false);
    env.events.clear();
    let mut ex = HttpExchange::new();
    admit(&mut env, &mut ex, &chat_request(Some("s2")));
    env.store.failing.set(true);
    ex.on_response_headers(&mut env, &json_response(), false);
    ex.on_response_body(&mut env, chat_body(100).as_bytes(), true);
    assert_eq!(
        env.store_failures(),
        ["book session spend", "book global spend"]
    );
}

/// How a response can fail to carry readable usage.
#[derive(Clone, Copy, Debug)]
enum Unpriced {
    Malformed,
    NoUsage,
    Compressed,
    NotJson,
    CutBeforeUsage,
    ErrorStatus,
}

fn respond(env: &mut FakeEnv, ex: &mut HttpExchange, case: Unpriced) {
    let (status, ctype, encoding, body, ends): (&str, &str, Option<&str>, String, bool) = match case
    {
        Unpriced::Malformed => ("200", "application/json", None, "{\"usage\":{".into(), true),
        Unpriced::NoUsage => (
            "200",
            "application/json",
            None,
            r#"{"id":"x"}"#.into(),
            true,
        ),
        Unpriced::Compressed => (
            "200",
            "application/json",
            Some("gzip"),
            "\x1f\u{8b}".into(),
            true,
        ),
        Unpriced::NotJson => ("200", "text/html", None, "<html>".into(), true),
        Unpriced::CutBeforeUsage => (
            "200",
            "text/event-stream",
            None,
            "data: {\"choices\":[{\"delta\":{}}]}\n\n".into(),
            false,
        ),
        Unpriced::ErrorStatus => (
            "500",
            "application/json",
            None,
            r#"{"error":{}}"#.into(),
            true,
        ),
    };
    let mut h = vec![(":status", status), ("content-type", ctype)];
    if let Some(e) = encoding {
        h.push(("content-encoding", e));
    }
    ex.on_response_headers(env, &headers(&h), false);
    if ex.reads_response_body() {
        ex.on_response_body(env, body.as_bytes(), ends);
    }
    ex.on_end(env);
}

#[test]
fn fail_modes_for_every_unpriced_case() {
    let cases = [
        (Unpriced::Malformed, Some(Event::UsageParseError)),
        (Unpriced::NoUsage, Some(Event::UsageMissing)),
        (Unpriced::Compressed, Some(Event::UsageMissing)),
        (Unpriced::NotJson, Some(Event::UsageMissing)),
        (Unpriced::CutBeforeUsage, Some(Event::UsageMissing)),
        (Unpriced::ErrorStatus, None),
    ];
    for (case, counted) in cases {
        for mode in ["open", "closed"] {
            let mut env = FakeEnv::new(&format!(
                r#"{{"pricing":{{"gpt-5":{{"input":10,"output":30}}}},"fail_mode":"{mode}"}}"#
            ));
            let mut ex = HttpExchange::new();
            admit(&mut env, &mut ex, &chat_request(Some("s")));
            respond(&mut env, &mut ex, case);
            let what = format!("{case:?} with fail_mode {mode}");
            assert!(env.priced().is_empty(), "{what}: priced");
            let problems: Vec<&Event> = env
                .events
                .iter()
                .filter(|e| matches!(e, Event::UsageMissing | Event::UsageParseError))
                .collect();
            assert_eq!(problems, counted.iter().collect::<Vec<_>>(), "{what}");
            // Closed ends the session for every counted case, never for an error status.
            let next = call(&mut env, Some("s"), 1);
            let ended = matches!(next, Admission::Refuse(ref r) if r.status == 429);
            assert_eq!(ended, mode == "closed" && counted.is_some(), "{what}");
        }
    }
}

#[test]
fn settles_exactly_once_whatever_the_order() {
    type Steps = fn(&mut FakeEnv, &mut HttpExchange, &[u8]);
    let orders: [(&str, Steps); 4] = [
        ("end of body, then on_log", |env, ex, body| {
            ex.on_response_body(env, body, true);
            ex.on_end(env);
        }),
        ("on_log twice", |env, ex, body| {
            ex.on_response_body(env, body, false);
            ex.on_end(env);
            ex.on_end(env);
        }),
        ("end of body twice, more bytes after", |env, ex, body| {
            ex.on_response_body(env, body, true);
            ex.on_response_body(env, b"", true);
            ex.on_response_body(env, body, false);
            ex.on_end(env);
        }),
        ("body in pieces, then on_log", |env, ex, body| {
            let (a, b) = body.split_at(body.len() / 2);
            ex.on_response_body(env, a, false);
            ex.on_response_body(env, b, false);
            ex.on_end(env);
        }),
    ];
    for (name, steps) in orders {
        let mut env = FakeEnv::new(CONFIG);
        let mut ex = HttpExchange::new();
        admit(&mut env, &mut ex, &chat_request(Some("once")));
        ex.on_response_headers(&mut env, &json_response(), false);
        steps(&mut env, &mut ex, chat_body(150).as_bytes());
        assert_eq!(env.priced().len(), 1, "{name}");
        assert_eq!(env.session_spend("once"), 1_500_000, "{name}");
        assert_eq!(env.filter[&FilterState::CostUsd], "1.5", "{name}");
        assert_eq!(env.filter[&FilterState::SessionCostUsd], "1.5", "{name}");
    }
    // Headers that end the response settle at once: nothing to price, nothing counted twice.
    let mut env = FakeEnv::new(CONFIG);
    let mut ex = HttpExchange::new();
    admit(&mut env, &mut ex, &chat_request(None));
    ex.on_response_headers(&mut env, &json_response(), true);
    ex.on_end(&mut env);
    assert_eq!(env.count(&Event::UsageMissing), 1);
}

#[test]
fn the_body_is_held_for_the_rewrite_and_released_on_every_path() {
    let streaming = |length: Option<&str>| {
        let mut h = vec![
            (":path", "/v1/chat/completions"),
            ("accept-encoding", "gzip"),
        ];
        if let Some(l) = length {
            h.push(("content-length", l));
        }
        headers(&h)
    };
    let mut env = FakeEnv::new(CONFIG);
    let start = |env: &mut FakeEnv, h: &HeaderPairs, eos: bool| {
        let mut ex = HttpExchange::new();
        let remove = match ex.on_request_headers(env, h, eos) {
            Admission::Admit { remove, .. } => remove,
            Admission::Refuse(r) => panic!("{r:?}"),
        };
        (ex, remove)
    };

    // Held until the end, then rewritten; content-length goes, accept-encoding too.
    let (mut ex, remove) = start(&mut env, &streaming(Some("40")), false);
    assert_eq!(
        remove.names().collect::<Vec<_>>(),
        ["accept-encoding", "content-length"]
    );
    assert_eq!(ex.on_request_body(20, false), RequestBody::Pause);
    assert_eq!(ex.on_request_body(40, true), RequestBody::Rewrite);
    let new = ex
        .rewrite_request_body(&mut env, br#"{"model":"gpt-5","stream":true}"#)
        .unwrap()
        .unwrap();
    assert!(String::from_utf8(new)
        .unwrap()
        .contains(r#""include_usage":true"#));
    assert_eq!(
        ex.on_request_body(40, true),
        RequestBody::Continue,
        "released after"
    );

    // Chunked (no length): held too, nothing to remove but accept-encoding.
    let (mut ex, remove) = start(&mut env, &streaming(None), false);
    assert!(!remove.content_length);
    assert_eq!(ex.on_request_body(10, false), RequestBody::Pause);
    // Grew past the cap while held: released, passes unchanged.
    assert_eq!(
        ex.on_request_body(MAX_REWRITE_BODY + 1, false),
        RequestBody::Continue
    );
    assert_eq!(
        ex.on_request_body(MAX_REWRITE_BODY + 2, true),
        RequestBody::Continue
    );

    // Too large by its length, or no body at all: never held.
    let too_large = (MAX_REWRITE_BODY + 1).to_string();
    let (mut ex, remove) = start(&mut env, &streaming(Some(&too_large)), false);
    assert!(!remove.content_length);
    assert_eq!(ex.on_request_body(10, true), RequestBody::Continue);
    let (mut ex, _) = start(&mut env, &streaming(Some("0")), true);
    assert_eq!(ex.on_request_body(0, true), RequestBody::Continue);

    // The request ends early (client gone while held): released by the end.
    let (mut ex, _) = start(&mut env, &streaming(Some("40")), false);
    assert_eq!(ex.on_request_body(20, false), RequestBody::Pause);
    ex.on_end(&mut env);
    assert_eq!(ex.on_request_body(40, true), RequestBody::Continue);

    // Not asked for: inject_stream_usage off, or another endpoint.
    let mut off = FakeEnv::new(r#"{"inject_stream_usage":false}"#);
    let (mut ex, remove) = start(&mut off, &streaming(Some("40")), false);
    assert!(!remove.content_length);
    assert_eq!(ex.on_request_body(40, true), RequestBody::Continue);
    let other = headers(&[(":path", "/v1/responses"), ("content-length", "40")]);
    let (mut ex, remove) = start(&mut env, &other, false);
    assert_eq!(remove, RemoveHeaders::default());
    assert_eq!(ex.on_request_body(40, true), RequestBody::Continue);
}

#[test]
fn the_request_model_prices_a_response_that_names_none() {
    let mut env = FakeEnv::new(CONFIG);
    let mut ex = HttpExchange::new();
    let h = headers(&[(":path", "/v1/chat/completions"), ("content-length", "40")]);
    assert!(matches!(
        ex.on_request_headers(&mut env, &h, false),
        Admission::Admit { .. }
    ));
    assert_eq!(ex.on_request_body(40, true), RequestBody::Rewrite);
    assert_eq!(
        ex.rewrite_request_body(&mut env, br#"{"model":"gpt-5"}"#),
        Ok(None)
    );
    ex.on_response_headers(&mut env, &json_response(), false);
    ex.on_response_body(&mut env, br#"{"usage":{"prompt_tokens":100000}}"#, true);
    let priced = env.priced();
    assert_eq!(
        (priced[0].stat_model.as_str(), priced[0].cost),
        ("gpt-5", 1_000_000)
    );
}

#[test]
fn a_booking_that_trips_the_breaker_says_so() {
    let mut env =
        FakeEnv::new(r#"{"pricing":{"gpt-5":{"input":10,"output":30}},"global":{"budget_usd":2}}"#);
    call(&mut env, None, 150);
    assert!(!env
        .events
        .iter()
        .any(|e| matches!(e, Event::BreakerTripped(_))));
    call(&mut env, None, 50);
    assert!(env
        .events
        .iter()
        .any(|e| matches!(e, Event::BreakerTripped(_))));
    // This VM's view saw the trip: the next request is refused without a store read.
    env.store.failing.set(true);
    assert_eq!(refusal(call(&mut env, None, 1)).status, 503);
}

mod budgets;

/// The store calls a metered request of a known session costs: the
/// admission's read, the reservation's write (against that read), the
/// settlement's read and write; the global window's spend is held.
#[test]
fn a_session_request_costs_four_store_calls() {
    let mut env = FakeEnv::new(CONFIG);
    let body = br#"{"model":"gpt-5","messages":[]}"#;
    let request = |env: &mut FakeEnv| {
        let mut ex = HttpExchange::new();
        assert!(matches!(
            ex.on_request_headers(env, &chat_request(Some("s")), false),
            Admission::Admit { .. }
        ));
        assert_eq!(ex.on_request_body(body.len(), true), RequestBody::Rewrite);
        ex.rewrite_request_body(env, body).unwrap();
        ex.on_response_headers(env, &json_response(), false);
        ex.on_response_body(env, chat_body(1).as_bytes(), true);
        ex.on_end(env);
        env.store.take_calls()
    };
    // The first request also reads the global window, probes for a free
    // slot and claims it.
    request(&mut env);
    assert_eq!(request(&mut env), (2, 2));
    assert_eq!(request(&mut env), (2, 2));
    // Later than GLOBAL_MAX_AGE_MS: the admission reads the global window
    // again, and the held spend (older than GLOBAL_HOLD_MS) is written.
    env.now += 500;
    assert_eq!(request(&mut env), (4, 3));
    // A write by someone else in between: the write against the stale read
    // fails, and the reservation reads and writes again.
    let mut ex = HttpExchange::new();
    ex.on_request_headers(&mut env, &chat_request(Some("s")), false);
    call(&mut env, Some("s"), 1);
    env.store.take_calls();
    ex.on_request_body(body.len(), true);
    ex.rewrite_request_body(&mut env, body).unwrap();
    assert_eq!(env.store.take_calls(), (1, 2));
    assert_eq!(env.session_spend("s"), 5 * 10_000);
    assert_eq!(env.view.take_held(), Some(10_000), "held for the tick");
}

#[test]
fn a_long_json_body_is_priced_when_it_ends() {
    // Longer than the head that is scanned: its usage is read from its kept end,
    // which counts only once the body has ended (last chunk or trailers).
    let long = chat_body(150).replacen(
        "\"choices\":[]",
        &format!("\"choices\":[{{\"text\":\"{}\"}}]", "a".repeat(100_000)),
        1,
    );
    type Ending = fn(&mut FakeEnv, &mut HttpExchange, &[u8]);
    let endings: [(&str, Ending, usize); 3] = [
        (
            "last chunk",
            |env, ex, rest| ex.on_response_body(env, rest, true),
            1,
        ),
        (
            "trailers",
            |env, ex, rest| {
                ex.on_response_body(env, rest, false);
                ex.on_response_trailers(env);
            },
            1,
        ),
        (
            "cut",
            |env, ex, rest| ex.on_response_body(env, rest, false),
            0,
        ),
    ];
    for (name, ending, priced) in endings {
        let mut env = FakeEnv::new(CONFIG);
        let mut ex = HttpExchange::new();
        admit(&mut env, &mut ex, &chat_request(Some("long")));
        ex.on_response_headers(&mut env, &json_response(), false);
        let (first, rest) = long.as_bytes().split_at(long.len() / 2);
        ex.on_response_body(&mut env, first, false);
        ending(&mut env, &mut ex, rest);
        ex.on_end(&mut env);
        assert_eq!(env.priced().len(), priced, "{name}");
        assert_eq!(
            env.session_spend("long"),
            priced as u64 * 1_500_000,
            "{name}"
        );
        assert_eq!(env.count(&Event::UsageParseError), 1 - priced, "{name}");
    }
}

#[test]
fn a_long_json_body_of_a_declared_length_is_read_at_its_ends() {
    let long = chat_body(150).replacen(
        "\"choices\":[]",
        &format!("\"choices\":[{{\"text\":\"{}\"}}]", "a".repeat(300_000)),
        1,
    );
    // Its content-length, then one that is not its length.
    for (declared, priced) in [(long.len(), 1), (long.len() + 10, 0)] {
        let mut env = FakeEnv::new(CONFIG);
        let mut ex = HttpExchange::new();
        admit(&mut env, &mut ex, &chat_request(Some("long")));
        let length = declared.to_string();
        let response = headers(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", &length),
        ]);
        ex.on_response_headers(&mut env, &response, false);
        let mut read = 0;
        let chunks: Vec<&[u8]> = long.as_bytes().chunks(16 * 1024).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let wanted = ex.response_body_wanted(chunk.len());
            read += wanted.len();
            let part = chunk.get(wanted.clone()).unwrap_or_default();
            let last = i + 1 == chunks.len();
            ex.on_response_body_part(&mut env, chunk.len(), wanted.start, part.into(), last);
        }
        ex.on_end(&mut env);
        assert_eq!(env.priced().len(), priced, "declared {declared}");
        assert_eq!(env.count(&Event::UsageParseError), 1 - priced);
        // Its first 64 KiB and the 64 KiB before its declared end.
        let tail_read = crate::meter::JSON_TAIL - (declared - long.len());
        assert_eq!(read, crate::meter::JSON_HEAD + tail_read);
    }
}
