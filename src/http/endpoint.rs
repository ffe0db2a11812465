//! Which OpenAI endpoint a request is for, and what to do with its response.

use crate::meter::BodyKind;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
