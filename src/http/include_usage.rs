//! The `include_usage` rewrite of streaming Chat Completions requests: the
//! upstream then reports a stream's usage in a final chunk.

use super::estimate::{RequestFacts, HELD_BODY_PATHS, STREAM, STREAM_OPTIONS};
use crate::json_scan::{Captured, JsonScanner};
use serde_json::{Map, Value};

/// Request bodies read for the `include_usage` rewrite are at most this
/// large; larger ones pass unchanged (and may then lack usage). Below
/// Envoy's default 1 MiB buffer limit, so buffering never causes a 413.
pub const MAX_REWRITE_BODY: usize = 512 * 1024;

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
    /// Its model and what its estimate needs.
    pub facts: RequestFacts,
    pub injection: Injection,
}

/// Reads a Chat Completions request body for its model and estimate and,
/// for a `"stream": true` request, makes sure it carries
/// `stream_options.include_usage = true`. Every other byte is kept: a body
/// without `stream_options` gets it inserted in front; otherwise only the
/// `stream_options` value is replaced. The body is scanned once; nothing
/// but those values is parsed.
pub fn inspect_chat_request(body: &[u8]) -> ChatRequest {
    let mut scanner = JsonScanner::new(HELD_BODY_PATHS, 64 * 1024);
    scanner.feed(body);
    let complete = scanner.finish().is_ok();
    let value = |t: usize| match scanner.captured(t) {
        Some(Captured::Value(v)) => Some(v.as_slice()),
        _ => None,
    };
    let facts = RequestFacts::read(&scanner, body.len() as u64);
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !complete || !is_object {
        return ChatRequest {
            facts,
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
    ChatRequest { facts, injection }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inject_include_usage(body: &[u8]) -> Injection {
        inspect_chat_request(body).injection
    }

    #[test]
    fn a_held_body_reads_what_the_estimate_reader_reads() {
        use super::super::estimate::RequestReader;
        for body in [
            &br#"{"model":"gpt-5","stream":true,"max_tokens":7,"messages":[{"max_tokens":9}]}"#[..],
            br#"{"stream_options":{"include_usage":true},"max_completion_tokens":30,"model":"o3"}"#,
            br#"{"model":"gpt-5","max_output_tokens":"12"}"#,
            br#"{"model":"#,
            b"not json",
        ] {
            let mut reader = RequestReader::new();
            reader.feed(body);
            assert_eq!(inspect_chat_request(body).facts, reader.finish());
        }
    }

    #[test]
    fn injects_include_usage_keeping_other_bytes() {
        let body = br#"{"model":"gpt-5", "stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0.7}"#;
        assert_eq!(
            inspect_chat_request(body).facts.model.as_deref(),
            Some("gpt-5")
        );
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
}
