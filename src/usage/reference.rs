//! The reading that the one-pass reader replaced, kept as its reference:
//! the usage parsed into a `serde_json::Value` tree and queried. The
//! reader's property tests and the `json_body` fuzz target compare the two.

use super::{take, Usage, UsageError};
use serde_json::{Map, Value};

fn count(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, UsageError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| UsageError::Malformed(format!("`{key}` is not a token count"))),
    }
}

fn details<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, UsageError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(UsageError::Malformed(format!("`{key}` is not an object"))),
    }
}

fn first_details<'a>(
    obj: &'a Map<String, Value>,
    keys: &[&str],
) -> Result<Option<&'a Map<String, Value>>, UsageError> {
    for key in keys {
        if let Some(d) = details(obj, key)? {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

fn detail(d: Option<&Map<String, Value>>, key: &str) -> Result<Option<u64>, UsageError> {
    d.map_or(Ok(None), |d| count(d, key))
}

pub fn from_tree(bytes: &[u8]) -> Result<Usage, UsageError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| UsageError::Malformed(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(UsageError::Malformed("usage is not an object".into()));
    };
    let input_total = count(&obj, "input_tokens")?.or(count(&obj, "prompt_tokens")?);
    let output_total = count(&obj, "output_tokens")?.or(count(&obj, "completion_tokens")?);
    if input_total.is_none() && output_total.is_none() {
        return Err(UsageError::NoTokenCounts);
    }
    let input_details = first_details(
        &obj,
        &[
            "input_token_details",
            "input_tokens_details",
            "prompt_tokens_details",
        ],
    )?;
    let output_details = first_details(
        &obj,
        &[
            "output_token_details",
            "output_tokens_details",
            "completion_tokens_details",
        ],
    )?;
    let cached_details = input_details.map_or(Ok(None), |d| details(d, "cached_tokens_details"))?;
    let mut usage = Usage::default();
    let mut rest = input_total.unwrap_or(0);
    let mut cached = take(&mut rest, detail(input_details, "cached_tokens")?);
    match cached_details {
        Some(cd) => {
            usage.cached_audio_input = take(&mut cached, count(cd, "audio_tokens")?);
            usage.cached_image_input = take(&mut cached, count(cd, "image_tokens")?);
            usage.cached_text_input = cached;
        }
        None => usage.cached_text_input = cached,
    }
    let audio =
        detail(input_details, "audio_tokens")?.map(|a| a.saturating_sub(usage.cached_audio_input));
    usage.audio_input = take(&mut rest, audio);
    let image =
        detail(input_details, "image_tokens")?.map(|i| i.saturating_sub(usage.cached_image_input));
    usage.image_input = take(&mut rest, image);
    usage.text_input = rest;
    let mut rest = output_total.unwrap_or(0);
    usage.audio_output = take(&mut rest, detail(output_details, "audio_tokens")?);
    usage.text_output = rest;
    usage.reasoning_output = detail(output_details, "reasoning_tokens")?
        .unwrap_or(0)
        .min(rest);
    Ok(usage)
}

/// Errors agree in kind; their messages may differ only for text that is not JSON.
pub fn same(a: &Result<Usage, UsageError>, b: &Result<Usage, UsageError>) -> bool {
    match (a, b) {
        (Err(UsageError::Malformed(_)), Err(UsageError::Malformed(_))) => true,
        _ => a == b,
    }
}
