//! A request's cost estimate, for its reservation: read from the request
//! body as it passes (never held for it).
//!
//! Input tokens ≈ the body's bytes ÷ 4 (rounded up); output tokens = the
//! request's `max_completion_tokens`, `max_tokens` or `max_output_tokens`,
//! else `reservation.default_output_tokens`; priced at the standard prices
//! of the request's `model`.

use crate::json_scan::{json_string, Captured, JsonScanner, PathSpec};
use crate::money::Micros;
use crate::pricing::{price_cost, PriceTable, ServiceTier};
use crate::usage::Usage;

/// What the estimate reads, then what the `include_usage` rewrite reads of
/// a held Chat body: one scan of a held body serves both.
pub(crate) const HELD_BODY_PATHS: PathSpec = &[
    &["model"],
    &["max_completion_tokens"],
    &["max_tokens"],
    &["max_output_tokens"],
    &["stream"],
    &["stream_options"],
];
const _: () = assert!(crate::json_scan::fits(HELD_BODY_PATHS));
/// Where the rewrite's paths are in [`HELD_BODY_PATHS`].
pub(crate) const STREAM: usize = 4;
pub(crate) const STREAM_OPTIONS: usize = 5;
const PATHS: PathSpec = HELD_BODY_PATHS.split_at(STREAM).0;
const MODEL: usize = 0;
const MAX_OUTPUT: [usize; 3] = [1, 2, 3];
/// Bytes per input token assumed by the estimate.
pub const BYTES_PER_TOKEN: u64 = 4;

/// What a request body says about its cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub model: Option<String>,
    pub body_bytes: u64,
    /// The request's own maximum of output tokens, if it sets one.
    pub max_output_tokens: Option<u64>,
}

impl RequestFacts {
    /// The estimated cost.
    pub fn estimate(&self, prices: &PriceTable, default_output_tokens: u64) -> Micros {
        let usage = Usage {
            text_input: self.body_bytes.div_ceil(BYTES_PER_TOKEN),
            text_output: self.max_output_tokens.unwrap_or(default_output_tokens),
            ..Usage::default()
        };
        price_cost(prices, self.model.as_deref(), &usage, ServiceTier::Standard)
    }
}

/// Reads a request body chunk by chunk (bounded memory whatever its size).
pub struct RequestReader {
    scanner: JsonScanner,
    body_bytes: u64,
}

impl Default for RequestReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestReader {
    pub fn new() -> Self {
        RequestReader {
            // A model name or a number: a few bytes; longer values are not captured.
            scanner: JsonScanner::new(PATHS, 256),
            body_bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.body_bytes = self.body_bytes.saturating_add(chunk.len() as u64);
        self.scanner.feed(chunk);
    }

    pub fn finish(mut self) -> RequestFacts {
        // A body that is not JSON still has a size; its values are what was read.
        let _ = self.scanner.finish();
        RequestFacts::read(&self.scanner, self.body_bytes)
    }
}

impl RequestFacts {
    /// From a scanner of [`PATHS`] (or of [`HELD_BODY_PATHS`]) that has read
    /// the body's `body_bytes`.
    pub(crate) fn read(scanner: &JsonScanner, body_bytes: u64) -> RequestFacts {
        let value = |t: usize| match scanner.captured(t) {
            Some(Captured::Value(v)) => Some(v.as_slice()),
            _ => None,
        };
        let max_output_tokens = MAX_OUTPUT.iter().find_map(|&t| {
            value(t)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        RequestFacts {
            model: value(MODEL).and_then(json_string),
            body_bytes,
            max_output_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn facts(body: &[u8], split: usize) -> RequestFacts {
        let mut r = RequestReader::new();
        let (a, b) = body.split_at(split.min(body.len()));
        r.feed(a);
        r.feed(b);
        r.finish()
    }

    #[test]
    fn reads_model_and_maximum_at_any_split() {
        let body = br#"{"model":"gpt-5","messages":[{"role":"user","content":"hi","max_tokens":7}],"max_completion_tokens":500}"#;
        for split in 0..=body.len() {
            let f = facts(body, split);
            assert_eq!(f.model.as_deref(), Some("gpt-5"));
            assert_eq!(
                f.max_output_tokens,
                Some(500),
                "nested max_tokens is not the request's"
            );
            assert_eq!(f.body_bytes, body.len() as u64);
        }
        assert_eq!(
            facts(br#"{"model":"m","max_output_tokens":12}"#, 3).max_output_tokens,
            Some(12)
        );
        assert_eq!(facts(br#"{"max_tokens":null}"#, 3).max_output_tokens, None);
        let garbage = facts(b"not json at all", 4);
        assert_eq!((garbage.model, garbage.body_bytes), (None, 15));
    }

    #[test]
    fn estimate_prices_bytes_and_maximum_at_the_model() {
        let c = Config::parse(br#"{"pricing":{"m":{"input":2,"output":10}}}"#).unwrap();
        let f = RequestFacts {
            model: Some("m".into()),
            body_bytes: 4001,
            max_output_tokens: Some(1000),
        };
        // 1001 input tokens × $2/1M + 1000 × $10/1M = $0.002002 + $0.01.
        assert_eq!(f.estimate(&c.prices, 1024), 12_002);
        let no_max = RequestFacts {
            max_output_tokens: None,
            ..f
        };
        assert_eq!(no_max.estimate(&c.prices, 100), 2_002 + 1_000);
    }
}
