//! What costguard does with one proxied request/response, decided without
//! the host: which endpoint it is, whether and how its response is metered,
//! the `include_usage` request rewrite, and pricing a metered response.

use crate::meter::BodyKind;
use crate::money::Micros;
use crate::pricing::{cost_micros, PriceMatch, PriceTable};
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

/// For a `"stream": true` Chat Completions request, makes sure it carries
/// `stream_options.include_usage = true`. A body without `stream_options`
/// gets it inserted in front, every other byte kept; one with
/// `stream_options` is re-serialised (field order kept).
pub fn inject_include_usage(body: &[u8]) -> Injection {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Injection::NotJson;
    };
    if map.get("stream") != Some(&Value::Bool(true)) {
        return Injection::NotStreaming;
    }
    match map.get("stream_options") {
        Some(opts) if opts.get("include_usage") == Some(&Value::Bool(true)) => {
            Injection::AlreadyIncluded
        }
        None => {
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
        Some(_) => {
            let mut map = map;
            let opts = map
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !opts.is_object() {
                *opts = Value::Object(Map::new());
            }
            if let Value::Object(o) = opts {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            match serde_json::to_vec(&Value::Object(map)) {
                Ok(v) => Injection::Rewritten(v),
                Err(_) => Injection::NotJson,
            }
        }
    }
}

/// The `model` of a request body, if it is a JSON object naming one.
pub fn request_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    serde_json::from_slice::<ModelOnly>(body).ok()?.model
}

/// One response, priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// The model as matched in the price table, or `unknown`.
    pub stat_model: String,
    pub unknown_model: bool,
    pub cost: Micros,
    pub usage: Usage,
}

/// Prices usage for the response's model (else the request's).
pub fn price(
    table: &PriceTable,
    model: Option<&str>,
    fallback_model: Option<&str>,
    usage: &Usage,
) -> Priced {
    let name = model.or(fallback_model).unwrap_or("");
    let matched = table.lookup(name);
    Priced {
        stat_model: matched.stat_name().to_string(),
        unknown_model: matches!(matched, PriceMatch::Unknown(_)),
        cost: cost_micros(usage, matched.prices()),
        usage: *usage,
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

    #[test]
    fn injects_include_usage_keeping_other_bytes() {
        let body = br#"{"model":"gpt-5", "stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0.7}"#;
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
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
        assert_eq!(v["stream_options"]["x"], 1);
        assert_eq!(v["model"], "m");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "stream", "stream_options"]);
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
    }

    #[test]
    fn prices_with_fallback_model() {
        let c = Config::parse(br#"{"pricing":{"gpt-5":{"input":10,"output":30}}}"#).unwrap();
        let usage = Usage {
            text_input: 100_000,
            text_output: 200_000,
            ..Usage::default()
        };
        let p = price(&c.prices, Some("gpt-5-2025-08-07"), None, &usage);
        assert_eq!(
            (p.stat_model.as_str(), p.cost, p.unknown_model),
            ("gpt-5", 7_000_000, false)
        );
        let p = price(&c.prices, None, Some("gpt-5"), &usage);
        assert_eq!(p.cost, 7_000_000);
        let p = price(&c.prices, Some("mystery"), None, &usage);
        assert_eq!((p.stat_model.as_str(), p.unknown_model), ("unknown", true));
        // $10 in / $40 out per 1M: 1.00 + 8.00.
        assert_eq!(p.cost, 9_000_000);
    }
}
