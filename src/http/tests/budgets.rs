//! Budget rules on the HTTP path: admission with reservations, refusals,
//! release, capacity, per-model rules, credentials.

use super::*;

/// 2026-12-02T12:00:00Z.
const NOON: u64 = 1_796_212_800_000;

/// gpt-5 at $10 in / $30 out; a $1 daily rule per API key, a $5 monthly
/// rule per team, and a gpt-5-only rule per user.
const RULES: &str = r#"{"pricing":{"gpt-5":{"input":10,"output":30},"other":{"input":1,"output":1}},
  "budgets":[
    {"name":"key-daily","key":"header:x-api-key","limit_usd":1,"window":"day"},
    {"name":"team-monthly","key":"header:x-team-id","limit_usd":5,"window":"month"},
    {"name":"user-gpt5","key":"header:x-user-id","limit_usd":0.5,"window":"hour","models":["gpt-5"]}
  ]}"#;

fn env_at(config: &str) -> FakeEnv {
    let mut env = FakeEnv::new(config);
    env.now = NOON;
    env
}

fn request(extra: &[(&str, &str)]) -> HeaderPairs {
    let mut h = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
    ];
    h.extend_from_slice(extra);
    headers(&h)
}

/// A request body asking gpt-5 for at most `max_tokens`: 40 bytes (10
/// input tokens) plus the number's digits.
fn body(model: &str, max_tokens: u64) -> String {
    format!(r#"{{"model":"{model}","max_tokens":{max_tokens}}}"#)
}

/// Headers and body of a request; the body's end decides.
fn open(
    env: &mut FakeEnv,
    ex: &mut HttpExchange,
    h: &HeaderPairs,
    body: &str,
) -> Result<(), LocalReply> {
    match ex.on_request_headers(env, h, false) {
        Admission::Refuse(r) => return Err(r),
        Admission::Admit { .. } => {}
    }
    // Chat Completions bodies are held for the include_usage rewrite; others are read as they pass.
    match ex.on_request_body(body.len(), true) {
        RequestBody::Rewrite => ex.rewrite_request_body(env, body.as_bytes()).map(|_| ()),
        RequestBody::Read => ex.read_request_body(env, body.as_bytes(), true),
        other => panic!("{other:?}"),
    }
}

/// The response: `output` tokens of `model`.
fn finish(env: &mut FakeEnv, ex: &mut HttpExchange, model: &str, output: u64) {
    ex.on_response_headers(env, &json_response(), false);
    let body = format!(
        r#"{{"model":"{model}","usage":{{"prompt_tokens":0,"completion_tokens":{output}}}}}"#
    );
    ex.on_response_body(env, body.as_bytes(), true);
    ex.on_end(env);
}

fn spend_call(env: &mut FakeEnv, h: &HeaderPairs, output: u64) -> Result<(), LocalReply> {
    let mut ex = HttpExchange::new();
    open(env, &mut ex, h, &body("gpt-5", output))?;
    finish(env, &mut ex, "gpt-5", output);
    Ok(())
}

#[test]
fn a_key_is_refused_at_its_limit_and_others_pass() {
    let mut env = env_at(RULES);
    let alice = request(&[("x-api-key", "alice")]);
    // $0.30 each (10,000 output tokens at $30/1M): 4 calls reach $1.20.
    for _ in 0..4 {
        spend_call(&mut env, &alice, 10_000).unwrap();
    }
    let mut ex = HttpExchange::new();
    let r = refusal(ex.on_request_headers(&mut env, &alice, false));
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after_s, Some(12 * 3600), "to the next 00:00 UTC");
    assert_eq!(
        r.body,
        r#"{"error":{"message":"Budget \"key-daily\" exhausted: $1.2 spent of $1 this day; resets in 12h.","type":"insufficient_quota","code":"budget_exceeded"}}"#
    );
    assert_eq!(env.count(&Event::BudgetRejected { rule: 0 }), 1);
    // Another key, and a request without the header, pass.
    spend_call(&mut env, &request(&[("x-api-key", "bob")]), 10).unwrap();
    spend_call(&mut env, &request(&[]), 10).unwrap();
    // The next day, alice has her budget again.
    env.now = NOON + 12 * 3600 * 1000;
    spend_call(&mut env, &alice, 10).unwrap();
}

#[test]
fn reservations_hold_concurrent_calls_to_the_limit() {
    let mut env = env_at(RULES);
    let alice = request(&[("x-api-key", "alice")]);
    // Each call reserves 9 input (35 bytes) + 2,000 output tokens = $0.06009: 17 fit in $1.
    let mut open_calls = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let mut ex = HttpExchange::new();
        match open(&mut env, &mut ex, &alice, &body("gpt-5", 2000)) {
            Ok(()) => open_calls.push(ex),
            Err(r) => {
                assert_eq!(r.status, 429);
                refused += 1;
            }
        }
    }
    assert_eq!((open_calls.len(), refused), (17, 13));
    // The 17th call saw $1 − 16 × $0.06009 left.
    assert_eq!(env.filter[&FilterState::BudgetRemainingUsd], "0.03856");
    // The true costs replace the reservations: all were $0.06.
    for mut ex in open_calls {
        finish(&mut env, &mut ex, "gpt-5", 2000);
    }
    let spent: Micros = env
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BudgetSpend { rule: 0, cost } => Some(*cost),
            _ => None,
        })
        .sum();
    assert_eq!(spent, 17 * 60_000);
    let reserved: i64 = env
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BudgetReserved { rule: 0, change } => Some(*change),
            _ => None,
        })
        .sum();
    assert_eq!(reserved, 0, "every reservation released or replaced");
}

#[test]
fn with_reservations_off_concurrent_calls_all_pass() {
    let mut env = env_at(&RULES.replace(
        r#""budgets":"#,
        r#""reservation":{"mode":"off"},"budgets":"#,
    ));
    let alice = request(&[("x-api-key", "alice")]);
    let mut opened = Vec::new();
    for _ in 0..30 {
        let mut ex = HttpExchange::new();
        open(&mut env, &mut ex, &alice, &body("gpt-5", 2000)).unwrap();
        opened.push(ex);
    }
    for mut ex in opened {
        finish(&mut env, &mut ex, "gpt-5", 2000);
    }
    assert!(spend_call(&mut env, &alice, 1).is_err());
}

#[test]
fn a_refusal_names_the_rule_that_resets_last_and_releases_the_others() {
    let mut env = env_at(RULES);
    let both = request(&[("x-api-key", "k"), ("x-team-id", "t")]);
    // $1.20 on the key's day rule and the team's month rule.
    for _ in 0..4 {
        spend_call(&mut env, &both, 10_000).unwrap();
    }
    // Other keys of the same team fill the team's month past $5.
    for key in ["k2", "k4", "k5", "k6"] {
        let other = request(&[("x-api-key", key), ("x-team-id", "t")]);
        for _ in 0..4 {
            let _ = spend_call(&mut env, &other, 10_000);
        }
    }
    let r = refusal(HttpExchange::new().on_request_headers(&mut env, &both, false));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Budget \"team-monthly\" exhausted"),
        "{v}"
    );
    // 2026-12-02 12:00 to 2027-01-01 00:00: 29.5 days.
    assert_eq!(r.retry_after_s, Some(29 * 86_400 + 12 * 3600));
    // A fresh key of the team: the key's rule reserved, the team refused, the key released.
    let fresh = request(&[("x-api-key", "k3"), ("x-team-id", "t")]);
    let mut ex = HttpExchange::new();
    assert!(open(&mut env, &mut ex, &fresh, &body("gpt-5", 10)).is_err());
    let reserved: i64 = env
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BudgetReserved { change, .. } => Some(*change),
            _ => None,
        })
        .sum();
    assert_eq!(reserved, 0);
}

#[test]
fn a_rule_with_models_counts_only_those() {
    let mut env = env_at(RULES);
    let user = request(&[("x-user-id", "u")]);
    // 20,000 output tokens of gpt-5: $0.60, over the $0.50 of the hour.
    spend_call(&mut env, &user, 20_000).unwrap();
    let mut ex = HttpExchange::new();
    let r = open(&mut env, &mut ex, &user, &body("gpt-5", 10)).unwrap_err();
    assert!(r.body.contains("user-gpt5"));
    // Another model is not limited, and not counted.
    let mut ex = HttpExchange::new();
    open(&mut env, &mut ex, &user, &body("other", 10)).unwrap();
    finish(&mut env, &mut ex, "other", 10);
    assert_eq!(env.count(&Event::BudgetSpend { rule: 2, cost: 1 }), 0);
    // The hour passes.
    env.now += 3600 * 1000;
    let mut ex = HttpExchange::new();
    open(&mut env, &mut ex, &user, &body("gpt-5", 10)).unwrap();
}

#[test]
fn calls_without_usage_release_their_reservation() {
    let mut env = env_at(RULES);
    let alice = request(&[("x-api-key", "alice")]);
    for status in ["500", "200"] {
        let mut ex = HttpExchange::new();
        open(&mut env, &mut ex, &alice, &body("gpt-5", 30_000)).unwrap();
        ex.on_response_headers(
            &mut env,
            &headers(&[(":status", status), ("content-type", "application/json")]),
            false,
        );
        ex.on_response_body(&mut env, b"{}", false);
        ex.on_end(&mut env); // cut, or an error: no usage
    }
    // Neither the $0.90 reservations nor any spend are left: a $0.90 call still fits.
    let mut ex = HttpExchange::new();
    open(&mut env, &mut ex, &alice, &body("gpt-5", 30_000)).unwrap();
}

#[test]
fn keys_are_checked_and_credentials_never_stored_raw() {
    let mut env = env_at(RULES);
    let r = refusal(HttpExchange::new().on_request_headers(
        &mut env,
        &request(&[("x-api-key", "a\u{7f}b")]),
        false,
    ));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("invalid_budget_key"));
    let long = "k".repeat(257);
    let r = refusal(HttpExchange::new().on_request_headers(
        &mut env,
        &request(&[("x-api-key", &long)]),
        false,
    ));
    assert_eq!(r.status, 400);
    spend_call(&mut env, &request(&[("x-api-key", "sk-secret-123")]), 10).unwrap();
    let stored = env.store.inner.map.borrow();
    for (key, (value, _)) in stored.iter() {
        assert!(!key.contains("sk-secret"));
        assert!(!value.windows(9).any(|w| w == b"sk-secret"));
    }
}

#[test]
fn a_full_key_table_refuses_when_closed_and_counts_when_open() {
    for (mode, refused) in [("closed", true), ("open", false)] {
        let config = RULES.replace(
            r#""budgets":"#,
            &format!(r#""fail_mode":"{mode}","budgets_max_keys":2,"budgets":"#),
        );
        let mut env = env_at(&config);
        for key in ["a", "b"] {
            spend_call(&mut env, &request(&[("x-api-key", key)]), 10).unwrap();
        }
        let result = spend_call(&mut env, &request(&[("x-api-key", "c")]), 10);
        assert_eq!(result.is_err(), refused, "{mode}");
        if let Err(r) = result {
            assert_eq!(r.status, 429);
            assert!(r.body.contains("budget_capacity"));
        }
        assert!(env.count(&Event::BudgetCapacityExhausted { rule: 0 }) >= 1);
        // The live keys keep their spend and room.
        spend_call(&mut env, &request(&[("x-api-key", "a")]), 10).unwrap();
    }
}

#[test]
fn the_session_is_reserved_too() {
    let mut env =
        env_at(r#"{"pricing":{"gpt-5":{"input":10,"output":30}},"session":{"budget_usd":0.1}}"#);
    let s = request(&[("x-session-id", "s")]);
    // Each reserves ≈ $0.0301: four fit in $0.10, the fifth is refused at its body.
    let mut opened = Vec::new();
    for _ in 0..4 {
        let mut ex = HttpExchange::new();
        open(&mut env, &mut ex, &s, &body("gpt-5", 1000)).unwrap();
        opened.push(ex);
    }
    let mut ex = HttpExchange::new();
    let r = open(&mut env, &mut ex, &s, &body("gpt-5", 1000)).unwrap_err();
    assert!(r.body.contains("session_budget_exceeded"));
    for mut ex in opened {
        finish(&mut env, &mut ex, "gpt-5", 1000);
    }
    assert_eq!(env.session_spend("s"), 120_000);
}

#[test]
fn remaining_room_is_a_response_header() {
    let mut env = env_at(RULES);
    let h = request(&[("x-api-key", "a"), ("x-team-id", "t")]);
    spend_call(&mut env, &h, 10_000).unwrap();
    let mut ex = HttpExchange::new();
    open(&mut env, &mut ex, &h, &body("gpt-5", 10)).unwrap();
    let set: Vec<(&str, String)> = ex
        .response_headers_to_set(&env.config)
        .map(|(n, v)| (n, v.to_string()))
        .collect();
    assert_eq!(set, [(HEADER_BUDGET_REMAINING, "0.7".to_string())]);
    assert_eq!(env.filter[&FilterState::BudgetRemainingUsd], "0.7");
}

#[test]
fn response_headers_and_filter_state_can_be_turned_off() {
    let config = RULES.replacen('{', r#"{"response_headers":false,"filter_state":false,"#, 1);
    let mut env = env_at(&config);
    let h = request(&[("x-api-key", "a"), ("x-session-id", "s")]);
    let mut ex = HttpExchange::new();
    open(&mut env, &mut ex, &h, &body("gpt-5", 10)).unwrap();
    assert_eq!(ex.response_headers_to_set(&env.config).count(), 0);
    finish(&mut env, &mut ex, "gpt-5", 1000);
    assert!(env.filter.is_empty(), "{:?}", env.filter);
    assert_eq!(
        env.session_spend("s"),
        30_000,
        "the call is booked all the same"
    );
}

#[test]
fn a_body_with_a_length_is_decided_before_its_last_byte_goes_on() {
    // Envoy may deliver the whole body without end_of_stream, and the end in
    // a later, empty callback: the upstream has the request by then.
    let mut env = env_at(RULES);
    let user = |len: &str| {
        headers(&[
            (":method", "POST"),
            (":path", "/v1/responses"),
            ("x-user-id", "u"),
            ("content-length", len),
        ])
    };
    let body = body("gpt-5", 20_000);
    // Spend the user's $0.50 of gpt-5 this hour.
    spend_call(&mut env, &request(&[("x-user-id", "u")]), 20_000).unwrap();
    let mut ex = HttpExchange::new();
    assert!(matches!(
        ex.on_request_headers(&mut env, &user(&body.len().to_string()), false),
        Admission::Admit { .. }
    ));
    let (a, b) = body.as_bytes().split_at(10);
    assert_eq!(ex.on_request_body(a.len(), false), RequestBody::Read);
    assert!(ex.read_request_body(&mut env, a, false).is_ok());
    assert_eq!(ex.on_request_body(b.len(), false), RequestBody::Read);
    let refused = ex.read_request_body(&mut env, b, false).unwrap_err();
    assert_eq!(refused.status, 429);
    // The end that follows changes nothing.
    assert_eq!(ex.on_request_body(0, true), RequestBody::Continue);
}
