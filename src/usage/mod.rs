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

mod fields;
#[doc(hidden)]
pub mod reference;

use fields::{Count, Details, Field, UsageFields};

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

/// A token count: absent or null is None; anything but a non-negative integer is malformed.
fn count(field: Count, key: &str) -> Result<Option<u64>, UsageError> {
    match field {
        Field::Absent => Ok(None),
        Field::Value(n) => Ok(Some(n)),
        Field::Wrong => Err(UsageError::Malformed(format!(
            "`{key}` is not a token count"
        ))),
    }
}

/// A details object: absent or null is empty; anything but an object is malformed.
fn details<'a, T>(field: &'a Field<T>, key: &str) -> Result<Option<&'a T>, UsageError> {
    match field {
        Field::Absent => Ok(None),
        Field::Value(d) => Ok(Some(d)),
        Field::Wrong => Err(UsageError::Malformed(format!("`{key}` is not an object"))),
    }
}

/// The details object of the first key present (the shapes name them differently).
fn first_details<'a>(
    candidates: [(&'a Field<Details>, &str); 3],
) -> Result<Option<&'a Details>, UsageError> {
    for (field, key) in candidates {
        if let Some(d) = details(field, key)? {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

fn detail(
    d: Option<&Details>,
    field: fn(&Details) -> Count,
    key: &str,
) -> Result<Option<u64>, UsageError> {
    d.map_or(Ok(None), |d| count(field(d), key))
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
        let f: UsageFields =
            fields::read(bytes).map_err(|e| UsageError::Malformed(e.to_string()))?;
        let input_total =
            count(f.input_tokens, "input_tokens")?.or(count(f.prompt_tokens, "prompt_tokens")?);
        let output_total = count(f.output_tokens, "output_tokens")?
            .or(count(f.completion_tokens, "completion_tokens")?);
        if input_total.is_none() && output_total.is_none() {
            return Err(UsageError::NoTokenCounts);
        }
        let input_details = first_details([
            (&f.input_token_details, "input_token_details"),
            (&f.input_tokens_details, "input_tokens_details"),
            (&f.prompt_tokens_details, "prompt_tokens_details"),
        ])?;
        let output_details = first_details([
            (&f.output_token_details, "output_token_details"),
            (&f.output_tokens_details, "output_tokens_details"),
            (&f.completion_tokens_details, "completion_tokens_details"),
        ])?;
        let cached_details = input_details.map_or(Ok(None), |d| {
            details(&d.cached_tokens_details, "cached_tokens_details")
        })?;

        let mut usage = Usage::default();
        // Input: cached parts first (most specific), then uncached audio and
        // image, and whatever is left is text.
        let mut rest = input_total.unwrap_or(0);
        let mut cached = take(
            &mut rest,
            detail(input_details, |d| d.cached_tokens, "cached_tokens")?,
        );
        match cached_details {
            Some(cd) => {
                usage.cached_audio_input =
                    take(&mut cached, count(cd.audio_tokens, "audio_tokens")?);
                usage.cached_image_input =
                    take(&mut cached, count(cd.image_tokens, "image_tokens")?);
                usage.cached_text_input = cached;
            }
            // Without a breakdown, cached tokens are text (Chat, Responses).
            None => usage.cached_text_input = cached,
        }
        let audio = detail(input_details, |d| d.audio_tokens, "audio_tokens")?
            .map(|a| a.saturating_sub(usage.cached_audio_input));
        usage.audio_input = take(&mut rest, audio);
        let image = detail(input_details, |d| d.image_tokens, "image_tokens")?
            .map(|i| i.saturating_sub(usage.cached_image_input));
        usage.image_input = take(&mut rest, image);
        usage.text_input = rest;

        let mut rest = output_total.unwrap_or(0);
        usage.audio_output = take(
            &mut rest,
            detail(output_details, |d| d.audio_tokens, "audio_tokens")?,
        );
        usage.text_output = rest;
        usage.reasoning_output =
            detail(output_details, |d| d.reasoning_tokens, "reasoning_tokens")?
                .unwrap_or(0)
                .min(rest);
        Ok(usage)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Text-only usage: `input` tokens (`cached` of them cached) and `output`.
    pub fn text_usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            text_input: input - cached,
            cached_text_input: cached,
            text_output: output,
            ..Usage::default()
        }
    }

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

#[cfg(test)]
mod against_a_tree;
