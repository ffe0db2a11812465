//! The one-pass reader against the reading it replaced: the same usage
//! parsed into a `serde_json::Value` tree and queried. Both must agree on
//! every object, however its fields are typed, nested, repeated or null.

use super::{take, Usage, UsageError};
use proptest::prelude::*;
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

fn from_tree(bytes: &[u8]) -> Result<Usage, UsageError> {
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

const KEYS: &[&str] = &[
    "input_tokens",
    "prompt_tokens",
    "output_tokens",
    "completion_tokens",
    "total_tokens",
    "input_token_details",
    "input_tokens_details",
    "prompt_tokens_details",
    "output_token_details",
    "output_tokens_details",
    "completion_tokens_details",
    "cached_tokens",
    "audio_tokens",
    "image_tokens",
    "text_tokens",
    "reasoning_tokens",
    "cached_tokens_details",
    "other",
];

/// A key as JSON text: usually plain, sometimes with an escape in it.
fn key() -> impl Strategy<Value = String> {
    (prop::sample::select(KEYS), any::<bool>()).prop_map(|(k, escaped)| {
        if escaped {
            format!("\"{}\"", k.replacen('_', "\\u005f", 1))
        } else {
            format!("\"{k}\"")
        }
    })
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..5_000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => (-5_000i64..0).prop_map(|n| n.to_string()),
        1 => Just("-0".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("1e3".to_string()),
        1 => Just("null".to_string()),
        1 => Just("true".to_string()),
        1 => Just("\"12\"".to_string()),
    ]
}

/// JSON text of any value, objects mostly of the usage keys.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            3 => prop::collection::vec((key(), inner.clone()), 0..8).prop_map(|entries| {
                let fields: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
            1 => prop::collection::vec(inner, 0..3).prop_map(|items| format!("[{}]", items.join(","))),
        ]
    })
}

/// Errors agree in kind; their messages may differ only for text that is not JSON.
fn same(a: &Result<Usage, UsageError>, b: &Result<Usage, UsageError>) -> bool {
    match (a, b) {
        (Err(UsageError::Malformed(_)), Err(UsageError::Malformed(_))) => true,
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn one_pass_reading_agrees_with_the_tree(text in value()) {
        let tree = from_tree(text.as_bytes());
        let one_pass = Usage::from_json(text.as_bytes());
        prop_assert!(same(&tree, &one_pass), "{text}: tree {tree:?}, one pass {one_pass:?}");
        // Where a field is at fault, both name the same one.
        if let (Err(UsageError::Malformed(t)), Err(UsageError::Malformed(o))) = (&tree, &one_pass) {
            if t.starts_with('`') {
                prop_assert_eq!(t, o);
            }
        }
    }
}

#[test]
fn texts_that_are_not_one_object_are_malformed_in_both() {
    for text in [
        "[1]",
        "null",
        "1",
        "\"x\"",
        "{\"prompt_tokens\":1} 2",
        "{\"prompt_tokens\":1",
        "",
    ] {
        let one_pass = Usage::from_json(text.as_bytes());
        assert!(
            matches!(one_pass, Err(UsageError::Malformed(_))),
            "{text}: {one_pass:?}"
        );
        assert!(same(&from_tree(text.as_bytes()), &one_pass), "{text}");
    }
}
