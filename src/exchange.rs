//! What costguard does with one proxied request/response, decided without
//! the host: which endpoint it is, whether and how its response is metered,
//! the `include_usage` request rewrite, and pricing a metered response.

use crate::json_scan::{Captured, JsonScanner, PathSpec};
use crate::meter::{json_string, BodyKind};
use crate::money::Micros;
use crate::pricing::{cost_micros, PriceMatch, PriceTable, ServiceTier};
use crate::usage::Usage;
use serde_json::{Map, Value};

/// Request bodies read for the `include_usage` rewrite are at most this
/// large; larger ones pass unchanged (and may then lack usage). Below
/// Envoy's default 1 MiB buffer limit, so buffering never causes a 413.
pub const MAX_REWRITE_BODY: usize = 512 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    Realtime,
    Other,
}

impl Endpoint {
    /// By the path's last segments, so prefixed routes (`/openai/v1/...`) work too.
    pub fn classify(path: &str) -> Endpoint {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Endpoint::ChatCompletions
        } else if path.ends_with("/responses") {
            Endpoint::Responses
        } else if path.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else if path.ends_with("/realtime") {
            Endpoint::Realtime
        } else {
            Endpoint::Other
        }
    }

    /// HTTP endpoints whose successful responses must carry usage.
    pub fn expects_usage(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Embeddings
        )
    }
}

/// What to do with a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePlan {
    /// Read usage from the body as it passes.
    Meter(BodyKind),
    /// Usage is expected but cannot be read (compressed, unexpected type).
    Unreadable,
    /// Nothing to price (error status, unmetered endpoint).
    Ignore,
}

pub fn plan_response(
    endpoint: Endpoint,
    status: u32,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> ResponsePlan {
    if !endpoint.expects_usage() || !(200..300).contains(&status) {
        return ResponsePlan::Ignore;
    }
    let encoded = content_encoding
        .map(str::trim)
        .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    if encoded {
        return ResponsePlan::Unreadable;
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("text/event-stream") => ResponsePlan::Meter(BodyKind::EventStream),
        Some("application/json") | None => ResponsePlan::Meter(BodyKind::Json),
        Some(m) if m.ends_with("+json") => ResponsePlan::Meter(BodyKind::Json),
        Some(_) => ResponsePlan::Unreadable,
    }
}

/// The outcome of the `include_usage` rewrite of a Chat Completions request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Not a streaming request: leave it.
    NotStreaming,
    /// Streaming, and it already asks for usage.
    AlreadyIncluded,
    /// The new body to send upstream.
    Rewritten(Vec<u8>),
    /// Not a JSON object: leave it to the upstream to reject.
    NotJson,
}

/// What a Chat Completions request body says, read in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub injection: Injection,
}

const REQUEST_PATHS: PathSpec = &[&["stream"], &["stream_options"], &["model"]];
const STREAM: usize = 0;
const STREAM_OPTIONS: usize = 1;
const MODEL: usize = 2;

/// Reads a Chat Completions request body for its `model` and, for a
/// `"stream": true` request, makes sure it carries
/// `stream_options.include_usage = true`. Every other byte is kept: a body
/// without `stream_options` gets it inserted in front; otherwise only the
/// `stream_options` value is replaced. The body is scanned once; nothing
/// but those values is parsed.
pub fn inspect_chat_request(body: &[u8]) -> ChatRequest {
    let mut scanner = JsonScanner::new(REQUEST_PATHS, 64 * 1024);
    scanner.feed(body);
    let complete = scanner.finish().is_ok();
    let value = |t: usize| match scanner.captured(t) {
        Some(Captured::Value(v)) => Some(v.as_slice()),
        _ => None,
    };
    let model = value(MODEL).and_then(json_string);
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !complete || !is_object {
        return ChatRequest {
            model,
            injection: Injection::NotJson,
        };
    }
    let injection = if value(STREAM) != Some(b"true") {
        Injection::NotStreaming
    } else {
        match (
            value(STREAM_OPTIONS),
            scanner.captured_offset(STREAM_OPTIONS),
        ) {
            (None, _) => insert_stream_options(body),
            (Some(opts), Some(at)) => replace_stream_options(body, opts, at as usize),
            (Some(_), None) => Injection::NotJson,
        }
    };
    ChatRequest { model, injection }
}

fn insert_stream_options(body: &[u8]) -> Injection {
    let Some(open) = body.iter().position(|&b| b == b'{') else {
        return Injection::NotJson;
    };
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(body.get(..=open).unwrap_or(&[]));
    out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
    let rest = body.get(open + 1..).unwrap_or(&[]);
    if rest.iter().any(|b| !b.is_ascii_whitespace() && *b != b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Injection::Rewritten(out)
}

fn replace_stream_options(body: &[u8], opts: &[u8], at: usize) -> Injection {
    let mut map = match serde_json::from_slice::<Value>(opts) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if map.get("include_usage") == Some(&Value::Bool(true)) {
        return Injection::AlreadyIncluded;
    }
    map.insert("include_usage".into(), Value::Bool(true));
    let Ok(new_opts) = serde_json::to_vec(&Value::Object(map)) else {
        return Injection::NotJson;
    };
    let (Some(before), Some(after)) = (body.get(..at), body.get(at + opts.len()..)) else {
        return Injection::NotJson;
    };
    Injection::Rewritten([before, &new_opts, after].concat())
}

/// One response, priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// The model as matched in the price table, or `unknown`.
    pub stat_model: String,
    /// The reported name, when no table knew it (priced by `unknown_model`).
    pub unknown_name: Option<String>,
    pub cost: Micros,
    pub usage: Usage,
    /// The tier whose prices applied, and whether long-context prices did.
    pub tier: ServiceTier,
    pub long_context: bool,
}

/// Prices usage for the response's model (else the request's), at the
/// service tier the response reports.
pub fn price(
    table: &PriceTable,
    model: Option<&str>,
    fallback_model: Option<&str>,
    usage: &Usage,
    tier: ServiceTier,
) -> Priced {
    let name = model.or(fallback_model).unwrap_or("");
    let matched = table.lookup(name);
    let selected = matched.pricing().select(tier, usage.input_total());
    Priced {
        stat_model: matched.stat_name().to_string(),
        unknown_name: matches!(matched, PriceMatch::Unknown(_)).then(|| name.to_string()),
        cost: cost_micros(usage, selected.prices),
        usage: *usage,
        tier: selected.tier,
        long_context: selected.long_context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn classifies_endpoints() {
        assert_eq!(
            Endpoint::classify("/v1/chat/completions"),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            Endpoint::classify("/openai/v1/chat/completions?x=1"),
            Endpoint::ChatCompletions
        );
        assert_eq!(Endpoint::classify("/v1/responses"), Endpoint::Responses);
        assert_eq!(Endpoint::classify("/v1/embeddings/"), Endpoint::Embeddings);
        assert_eq!(
            Endpoint::classify("/v1/realtime?model=gpt-realtime"),
            Endpoint::Realtime
        );
        assert_eq!(Endpoint::classify("/v1/models"), Endpoint::Other);
        assert_eq!(
            Endpoint::classify("/v1/responses/resp_123"),
            Endpoint::Other
        );
    }

    #[test]
    fn plans_responses() {
        use ResponsePlan::*;
        let chat = Endpoint::ChatCompletions;
        assert_eq!(
            plan_response(chat, 200, Some("application/json"), None),
            Meter(BodyKind::Json)
        );
        assert_eq!(
            plan_response(chat, 200, Some("text/event-stream; charset=utf-8"), None),
            Meter(BodyKind::EventStream)
        );
        assert_eq!(
            plan_response(chat, 200, Some("application/json"), Some("gzip")),
            Unreadable
        );
        assert_eq!(
            plan_response(chat, 200, Some("application/json"), Some("identity")),
            Meter(BodyKind::Json)
        );
        assert_eq!(
            plan_response(chat, 200, Some("text/html"), None),
            Unreadable
        );
        assert_eq!(
            plan_response(chat, 429, Some("application/json"), None),
            Ignore
        );
        assert_eq!(
            plan_response(chat, 500, Some("application/json"), None),
            Ignore
        );
        assert_eq!(
            plan_response(Endpoint::Other, 200, Some("application/json"), None),
            Ignore
        );
    }

    fn inject_include_usage(body: &[u8]) -> Injection {
        inspect_chat_request(body).injection
    }

    #[test]
    fn injects_include_usage_keeping_other_bytes() {
        let body = br#"{"model":"gpt-5", "stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0.7}"#;
        assert_eq!(inspect_chat_request(body).model.as_deref(), Some("gpt-5"));
        let Injection::Rewritten(out) = inject_include_usage(body) else {
            panic!("not rewritten")
        };
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            r#"{"stream_options":{"include_usage":true},"model":"gpt-5", "stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0.7}"#
        );
    }

    #[test]
    fn overrides_explicit_false_and_keeps_other_options() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let Injection::Rewritten(out) = inject_include_usage(body) else {
            panic!("not rewritten")
        };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true,"x":1}}"#
        );
    }

    #[test]
    fn leaves_other_requests_alone() {
        assert_eq!(
            inject_include_usage(br#"{"model":"m"}"#),
            Injection::NotStreaming
        );
        assert_eq!(
            inject_include_usage(br#"{"stream":false}"#),
            Injection::NotStreaming
        );
        assert_eq!(
            inject_include_usage(br#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            Injection::AlreadyIncluded
        );
        assert_eq!(inject_include_usage(b"[]"), Injection::NotJson);
        assert_eq!(inject_include_usage(b"{bad"), Injection::NotJson);
        assert_eq!(
            inject_include_usage(br#"{"stream":"true"}"#),
            Injection::NotStreaming
        );
        // A nested "stream" is not the request's.
        assert_eq!(
            inject_include_usage(br#"{"x":{"stream":true}}"#),
            Injection::NotStreaming
        );
    }

    #[test]
    fn prices_with_fallback_model() {
        let c = Config::parse(br#"{"pricing":{"gpt-5":{"input":10,"output":30}}}"#).unwrap();
        let usage = Usage {
            text_input: 100_000,
            text_output: 200_000,
            ..Usage::default()
        };
        let std = ServiceTier::Standard;
        let p = price(&c.prices, Some("gpt-5-2025-08-07"), None, &usage, std);
        assert_eq!(
            (p.stat_model.as_str(), p.cost, p.unknown_name),
            ("gpt-5", 7_000_000, None)
        );
        let p = price(&c.prices, None, Some("gpt-5"), &usage, std);
        assert_eq!(p.cost, 7_000_000);
        let p = price(&c.prices, Some("mystery"), None, &usage, std);
        assert_eq!(
            (p.stat_model.as_str(), p.unknown_name.as_deref()),
            ("unknown", Some("mystery"))
        );
        // $10 in / $40 out per 1M: 1.00 + 8.00.
        assert_eq!(p.cost, 9_000_000);
    }

    #[test]
    fn prices_at_the_served_tier_and_context_length() {
        let c = Config::parse(b"{}").unwrap();
        let usage = |input| Usage {
            text_input: input,
            text_output: 1_000_000,
            ..Usage::default()
        };
        let at = |model, input, tier| price(&c.prices, Some(model), None, &usage(input), tier);
        // gpt-5.5 from the generated table: $5 / $30, flex $2.50 / $15,
        // priority $12.50 / $75; above 272k input $10 / $45.
        assert_eq!(
            at("gpt-5.5", 200_000, ServiceTier::Standard).cost,
            31_000_000
        );
        assert_eq!(
            at("gpt-5.5-2026-04-23", 200_000, ServiceTier::Flex).cost,
            15_500_000
        );
        let p = at("gpt-5.5", 200_000, ServiceTier::Priority);
        assert_eq!((p.cost, p.tier), (77_500_000, ServiceTier::Priority));
        let p = at("gpt-5.5", 300_000, ServiceTier::Standard);
        assert_eq!((p.cost, p.long_context), (48_000_000, true));
        assert_eq!(at("gpt-5.4-mini", 0, ServiceTier::Standard).cost, 4_500_000);
        assert_eq!(
            at("gpt-realtime-2", 0, ServiceTier::Standard).cost,
            24_000_000
        );
        for unknown in ["gpt-5.5-turbo", "gpt-7", "gpt-realtime-9"] {
            assert_eq!(at(unknown, 0, ServiceTier::Standard).stat_model, "unknown");
        }
    }
}
