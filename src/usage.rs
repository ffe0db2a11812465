//! Token usage as OpenAI reports it, normalised into disjoint priced parts.
//!
//! Shapes read (all fields optional, unknown fields ignored):
//! - Chat Completions / Embeddings: `prompt_tokens`, `prompt_tokens_details.{cached_tokens,audio_tokens}`,
//!   `completion_tokens`, `completion_tokens_details.{reasoning_tokens,audio_tokens}`.
//! - Responses API: `input_tokens`, `input_tokens_details.cached_tokens`, `output_tokens`,
//!   `output_tokens_details.reasoning_tokens`.
//! - Realtime `response.done`: `input_tokens`, `input_token_details.{text,audio,image,cached}_tokens`,
//!   `input_token_details.cached_tokens_details.{text,audio,image}_tokens`, `output_tokens`,
//!   `output_token_details.{text,audio}_tokens`.
//!
//! Totals include their parts (cached ⊂ input, audio ⊂ input/output, reasoning ⊂ output).

use serde::Deserialize;

/// Usage split into disjoint parts: every token is in exactly one field
/// (besides `reasoning_output`, which is informational and part of `text_output`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub text_input: u64,
    pub cached_text_input: u64,
    pub audio_input: u64,
    pub cached_audio_input: u64,
    pub image_input: u64,
    pub cached_image_input: u64,
    pub text_output: u64,
    pub audio_output: u64,
    pub reasoning_output: u64,
}

impl Usage {
    pub fn input_total(&self) -> u64 {
        self.text_input
            + self.cached_text_input
            + self.audio_input
            + self.cached_audio_input
            + self.image_input
            + self.cached_image_input
    }
    pub fn output_total(&self) -> u64 {
        self.text_output + self.audio_output
    }
    pub fn cached_input_total(&self) -> u64 {
        self.cached_text_input + self.cached_audio_input + self.cached_image_input
    }
    pub fn audio_input_total(&self) -> u64 {
        self.audio_input + self.cached_audio_input
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// Not a JSON object, or a token count that is not a non-negative integer.
    Malformed(String),
    /// A JSON object without any token count we know.
    NoTokenCounts,
}

#[derive(Deserialize, Default)]
struct RawModalities {
    cached_tokens: Option<u64>,
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
    image_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    cached_tokens_details: Option<Box<RawModalities>>,
}

#[derive(Deserialize, Default)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<RawModalities>,
    completion_tokens_details: Option<RawModalities>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<RawModalities>,
    input_token_details: Option<RawModalities>,
    output_tokens_details: Option<RawModalities>,
    output_token_details: Option<RawModalities>,
}

/// Takes `part` out of `*rest`, never more than is left: malformed details
/// can never price more tokens than the reported total.
fn take(rest: &mut u64, part: Option<u64>) -> u64 {
    let taken = part.unwrap_or(0).min(*rest);
    *rest -= taken;
    taken
}

impl Usage {
    /// Parses a `usage` JSON object of any of the supported shapes.
    pub fn from_json(bytes: &[u8]) -> Result<Usage, UsageError> {
        let raw: RawUsage =
            serde_json::from_slice(bytes).map_err(|e| UsageError::Malformed(e.to_string()))?;
        Usage::from_raw(raw)
    }

    fn from_raw(raw: RawUsage) -> Result<Usage, UsageError> {
        let input_total = raw.input_tokens.or(raw.prompt_tokens);
        let output_total = raw.output_tokens.or(raw.completion_tokens);
        if input_total.is_none() && output_total.is_none() {
            return Err(UsageError::NoTokenCounts);
        }
        let input_details = raw
            .input_token_details
            .or(raw.input_tokens_details)
            .or(raw.prompt_tokens_details)
            .unwrap_or_default();
        let output_details = raw
            .output_token_details
            .or(raw.output_tokens_details)
            .or(raw.completion_tokens_details)
            .unwrap_or_default();

        let mut usage = Usage::default();

        // Input: cached parts first (most specific), then uncached audio and
        // image, and whatever is left is text.
        let mut rest = input_total.unwrap_or(0);
        let mut cached = take(&mut rest, input_details.cached_tokens);
        match &input_details.cached_tokens_details {
            Some(cd) => {
                usage.cached_audio_input = take(&mut cached, cd.audio_tokens);
                usage.cached_image_input = take(&mut cached, cd.image_tokens);
                usage.cached_text_input = cached;
            }
            // Without a breakdown, cached tokens are text (Chat, Responses).
            None => usage.cached_text_input = cached,
        }
        let audio = input_details
            .audio_tokens
            .map(|a| a.saturating_sub(usage.cached_audio_input));
        usage.audio_input = take(&mut rest, audio);
        let image = input_details
            .image_tokens
            .map(|i| i.saturating_sub(usage.cached_image_input));
        usage.image_input = take(&mut rest, image);
        usage.text_input = rest;

        let mut rest = output_total.unwrap_or(0);
        usage.audio_output = take(&mut rest, output_details.audio_tokens);
        usage.text_output = rest;
        usage.reasoning_output = output_details.reasoning_tokens.unwrap_or(0).min(rest);
        let _ = output_details.text_tokens; // implied by total − audio
        let _ = input_details.text_tokens; // implied by total − other parts
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_completion_usage_with_cached_and_audio() {
        let u = Usage::from_json(
            br#"{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,
                "prompt_tokens_details":{"cached_tokens":200,"audio_tokens":100},
                "completion_tokens_details":{"reasoning_tokens":300,"audio_tokens":50}}"#,
        )
        .unwrap();
        assert_eq!(u.cached_text_input, 200);
        assert_eq!(u.audio_input, 100);
        assert_eq!(u.text_input, 700);
        assert_eq!(u.audio_output, 50);
        assert_eq!(u.text_output, 450);
        assert_eq!(u.reasoning_output, 300);
        assert_eq!(u.input_total(), 1000);
        assert_eq!(u.output_total(), 500);
    }

    #[test]
    fn responses_api_usage() {
        let u = Usage::from_json(
            br#"{"input_tokens":36,"input_tokens_details":{"cached_tokens":6},
                "output_tokens":87,"output_tokens_details":{"reasoning_tokens":10},"total_tokens":123}"#,
        )
        .unwrap();
        assert_eq!(
            (u.text_input, u.cached_text_input, u.text_output),
            (30, 6, 87)
        );
    }

    #[test]
    fn embeddings_usage() {
        let u = Usage::from_json(br#"{"prompt_tokens":8,"total_tokens":8}"#).unwrap();
        assert_eq!((u.text_input, u.output_total()), (8, 0));
    }

    #[test]
    fn realtime_usage_with_modalities_and_cached_breakdown() {
        let u = Usage::from_json(
            br#"{"total_tokens":1000,"input_tokens":600,"output_tokens":400,
                "input_token_details":{"text_tokens":200,"audio_tokens":350,"image_tokens":50,
                   "cached_tokens":300,"cached_tokens_details":{"text_tokens":100,"audio_tokens":180,"image_tokens":20}},
                "output_token_details":{"text_tokens":100,"audio_tokens":300}}"#,
        )
        .unwrap();
        assert_eq!(u.cached_text_input, 100);
        assert_eq!(u.cached_audio_input, 180);
        assert_eq!(u.cached_image_input, 20);
        assert_eq!(u.audio_input, 170);
        assert_eq!(u.image_input, 30);
        assert_eq!(u.text_input, 100);
        assert_eq!(u.input_total(), 600);
        assert_eq!((u.text_output, u.audio_output), (100, 300));
    }

    #[test]
    fn parts_never_exceed_totals() {
        let u = Usage::from_json(
            br#"{"prompt_tokens":10,"completion_tokens":5,
                "prompt_tokens_details":{"cached_tokens":50,"audio_tokens":50},
                "completion_tokens_details":{"audio_tokens":99}}"#,
        )
        .unwrap();
        assert_eq!(u.input_total(), 10);
        assert_eq!(u.cached_text_input, 10);
        assert_eq!(u.output_total(), 5);
    }

    #[test]
    fn rejects_malformed_usage() {
        assert!(matches!(
            Usage::from_json(br#"{"prompt_tokens":-1}"#),
            Err(UsageError::Malformed(_))
        ));
        assert!(matches!(
            Usage::from_json(br#"{"prompt_tokens":1.5}"#),
            Err(UsageError::Malformed(_))
        ));
        assert!(matches!(
            Usage::from_json(b"[1]"),
            Err(UsageError::Malformed(_))
        ));
        assert_eq!(Usage::from_json(b"{}"), Err(UsageError::NoTokenCounts));
        assert!(Usage::from_json(b"null").is_err());
    }
}
