//! The responses costguard sends instead of the upstream's, OpenAI-style so
//! that OpenAI SDKs surface them: `{"error":{"message","type","code"}}`.

use crate::money::{format_usd, Micros};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub body: String,
    /// `retry-after`, whole seconds.
    pub retry_after_s: Option<u64>,
}

/// `{"error":{"message":…,"type":…,"code":…}}`, in the contract's key order.
fn reply(status: u32, kind: &str, code: &str, message: String) -> LocalReply {
    let text = |s: &str| Value::String(s.to_string()).to_string();
    LocalReply {
        status,
        body: format!(
            r#"{{"error":{{"message":{},"type":{},"code":{}}}}}"#,
            text(&message),
            text(kind),
            text(code)
        ),
        retry_after_s: None,
    }
}

pub fn session_budget_exceeded(spend: Micros, budget: Micros) -> LocalReply {
    reply(
        429,
        "insufficient_quota",
        "session_budget_exceeded",
        format!(
            "Session budget exhausted: ${} spent of ${}.",
            format_usd(spend),
            format_usd(budget)
        ),
    )
}

pub fn circuit_open(retry_after_s: u64) -> LocalReply {
    LocalReply {
        retry_after_s: Some(retry_after_s),
        ..reply(
            503,
            "server_error",
            "circuit_open",
            format!("Global spend limit reached; new requests are refused for {retry_after_s} s."),
        )
    }
}

pub fn invalid_session_id(header: &str) -> LocalReply {
    reply(
        400,
        "invalid_request_error",
        "invalid_session_id",
        format!("The {header} header must be 1 to 256 bytes without control characters."),
    )
}

pub fn origin_not_allowed() -> LocalReply {
    reply(
        403,
        "permission_error",
        "origin_not_allowed",
        "This Origin may not open Realtime sessions.".to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_contract() {
        let r = session_budget_exceeded(5_500_000, 5_000_000);
        assert_eq!(r.status, 429);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota");
        assert_eq!(v["error"]["code"], "session_budget_exceeded");
        assert_eq!(
            v["error"]["message"],
            "Session budget exhausted: $5.5 spent of $5."
        );
        let r = circuit_open(42);
        assert_eq!((r.status, r.retry_after_s), (503, Some(42)));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
            (Some("server_error"), Some("circuit_open"))
        );
        let v: Value = serde_json::from_str(&invalid_session_id("x-session-id").body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_session_id");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let r = origin_not_allowed();
        assert_eq!(r.status, 403);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
            (Some("permission_error"), Some("origin_not_allowed"))
        );
    }
}
