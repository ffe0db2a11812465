//! The one-pass reader against the reading it replaced: the same usage
//! parsed into a `serde_json::Value` tree and queried. Both must agree on
//! every object, however its fields are typed, nested, repeated or null.

use super::reference::{from_tree, same};
use super::{Usage, UsageError};
use proptest::prelude::*;

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

/// A byte or two that JSON text is made of, or breaks on.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "\n", "0", "1", "-", ".", "e", "+", "n",
            "t", "u", "\\u", "\\ud800", "\\udc00", "\u{1}", "é", "\u{7f}",
        ][..],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Valid objects with one fragment inserted or one byte removed: both
    /// readings take or refuse the same texts.
    #[test]
    fn broken_texts_are_refused_by_both(
        text in value(),
        at in any::<prop::sample::Index>(),
        insert in prop::option::of(fragment()),
    ) {
        let mut text = text.into_bytes();
        let at = at.index(text.len() + 1);
        match insert {
            Some(f) => { text.splice(at..at, f.bytes()); }
            None if at < text.len() => { text.remove(at); }
            None => {}
        }
        let tree = from_tree(&text);
        let one_pass = Usage::from_json(&text);
        prop_assert!(same(&tree, &one_pass), "{}: tree {tree:?}, one pass {one_pass:?}", String::from_utf8_lossy(&text));
    }
}

#[test]
fn edge_cases_agree_with_the_tree() {
    let nested = |levels: usize| {
        format!(
            "{{\"prompt_tokens\":1,\"other\":{}{}}}",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let texts: Vec<Vec<u8>> = [
        r#"{"prompt_tokens":-0}"#,
        r#"{"prompt_tokens":01}"#,
        r#"{"prompt_tokens":1.}"#,
        r#"{"prompt_tokens":1,}"#,
        r#"{"prompt_tokens":1e400}"#,
        r#"{"prompt_tokens":18446744073709551615}"#,
        r#"{"prompt_tokens":18446744073709551616}"#,
        r#"{"prompt_tokens":1,"prompt_tokens_details":1e400}"#,
        r#"{"prompt_tokens":1,"other":"\ud800"}"#,
        r#"{"prompt_tokens":1,"other":"\ud800\udc00"}"#,
        r#"{"prompt_tokens":1,"other":"\udc00"}"#,
        r#"{"prompt\u005ftokens":7,"completion_tokens":"\u00e9"}"#,
        r#"{"prompt_tokens":1,"other":"tab	in"}"#,
        r#" {"prompt_tokens" : 1 } "#,
        r#"{"prompt_tokens":1}}"#,
        r#"{"prompt_tokens":nul}"#,
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .chain([
        nested(126).into_bytes(),
        nested(127).into_bytes(),
        b"{\"prompt_tokens\":1,\"o\":\"\xff\"}".to_vec(),
    ])
    .collect();
    for text in texts {
        let (tree, one_pass) = (from_tree(&text), Usage::from_json(&text));
        assert!(
            same(&tree, &one_pass),
            "{}: tree {tree:?}, one pass {one_pass:?}",
            String::from_utf8_lossy(&text)
        );
    }
}
