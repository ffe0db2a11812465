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

/// A wait for people: `45s`, `12m5s`, `3h12m`, `2d4h` (two units at most,
/// the larger first; the smaller is dropped when zero).
pub fn format_wait(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut larger = UNITS.iter().skip_while(|(u, _)| seconds < *u);
    let Some((big, big_name)) = larger.next() else {
        return "0s".to_string();
    };
    let mut text = format!("{}{big_name}", seconds / big);
    if let Some((small, small_name)) = larger.next() {
        let rest = seconds % big / small;
        if rest > 0 {
            text.push_str(&format!("{rest}{small_name}"));
        }
    }
    text
}

/// Why a budget rule refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRefusal<'a> {
    pub rule: &'a str,
    pub committed: Micros,
    pub reserved: Micros,
    pub limit: Micros,
    /// "day", "month", …
    pub window_noun: &'a str,
    pub retry_after_s: u64,
}

pub fn budget_exceeded(r: &BudgetRefusal<'_>) -> LocalReply {
    let reserved = if r.reserved > 0 {
        format!(" and ${} reserved", format_usd(r.reserved))
    } else {
        String::new()
    };
    LocalReply {
        retry_after_s: Some(r.retry_after_s),
        ..reply(
            429,
            "insufficient_quota",
            "budget_exceeded",
            format!(
                "Budget {} exhausted: ${} spent{reserved} of ${} this {}; resets in {}.",
                Value::String(r.rule.to_string()),
                format_usd(r.committed),
                format_usd(r.limit),
                r.window_noun,
                format_wait(r.retry_after_s)
            ),
        )
    }
}

pub fn invalid_budget_key(header: &str) -> LocalReply {
    reply(
        400,
        "invalid_request_error",
        "invalid_budget_key",
        format!("The {header} header must be 1 to 256 bytes without control characters."),
    )
}

pub fn budget_capacity(rule: &str) -> LocalReply {
    reply(
        429,
        "insufficient_quota",
        "budget_capacity",
        format!(
            "Budget {} cannot track another key now (budgets_max_keys reached).",
            Value::String(rule.to_string())
        ),
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

    #[test]
    fn budget_replies_follow_the_contract() {
        let r = budget_exceeded(&BudgetRefusal {
            rule: "key-daily",
            committed: 20_010_000,
            reserved: 0,
            limit: 20_000_000,
            window_noun: "day",
            retry_after_s: 3 * 3600 + 12 * 60 + 7,
        });
        assert_eq!((r.status, r.retry_after_s), (429, Some(11_527)));
        assert_eq!(
            r.body,
            r#"{"error":{"message":"Budget \"key-daily\" exhausted: $20.01 spent of $20 this day; resets in 3h12m.","type":"insufficient_quota","code":"budget_exceeded"}}"#
        );
        let r = budget_exceeded(&BudgetRefusal {
            rule: "burst",
            committed: 1_500_000,
            reserved: 600_000,
            limit: 2_000_000,
            window_noun: "minute",
            retry_after_s: 42,
        });
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v["error"]["message"],
            "Budget \"burst\" exhausted: $1.5 spent and $0.6 reserved of $2 this minute; resets in 42s."
        );
        let v: Value = serde_json::from_str(&invalid_budget_key("x-api-key").body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_budget_key");
        let r = budget_capacity("key-daily");
        assert_eq!(r.status, 429);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "budget_capacity");
    }

    #[test]
    fn waits_read_well() {
        assert_eq!(format_wait(0), "0s");
        assert_eq!(format_wait(45), "45s");
        assert_eq!(format_wait(60), "1m");
        assert_eq!(format_wait(725), "12m5s");
        assert_eq!(format_wait(3600), "1h");
        assert_eq!(format_wait(11_527), "3h12m");
        assert_eq!(format_wait(86_400 * 30 + 3600 * 5 + 59), "30d5h");
    }
}
