//! A JSON object's last top-level members, read backward from its end.
//!
//! A large response body's usage is written after its content (Chat
//! Completions: after `choices`; the Responses API: after `output`). The
//! meter scans such a body's first bytes forward and keeps only its last
//! ones: this finds the wanted members there without reading what came
//! before them.
//!
//! Reading backward relies on one property of JSON text: inside a string, a
//! quote preceded by an odd number of backslashes is escaped, and any other
//! quote ends the string (a run of backslashes pairs up from its first one,
//! which cannot itself be escaped). Where that run, or any value, reaches
//! back before the kept text, the read stops there.
use crate::json_scan::{in_literal, is_json_whitespace, json_string, plain_json_text};

/// Why the text is not the end of a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailError {
    /// It does not end with `}`: the body was cut, or is not an object.
    NotClosed,
    /// A member read backward is not JSON.
    Malformed,
}

/// The values of `keys` among the last top-level members of the object whose
/// end `text` is (each key's last occurrence, as text), read backward until
/// the object's start, the start of `text`, or every key found.
pub fn last_members<'a, const N: usize>(
    text: &'a [u8],
    keys: [&[u8]; N],
) -> Result<[Option<&'a [u8]>; N], TailError> {
    let mut found = [None; N];
    let mut end = skip_whitespace(text, text.len());
    if end == 0 || text.get(end - 1) != Some(&b'}') {
        return Err(TailError::NotClosed);
    }
    end -= 1;
    loop {
        if found.iter().all(Option::is_some) {
            return Ok(found);
        }
        let value_end = skip_whitespace(text, end);
        if value_end == 0 {
            return Ok(found);
        }
        if text.get(value_end - 1) == Some(&b'{') {
            // The object's start (or an empty object): nothing before it.
            return Ok(found);
        }
        let Some(value_start) = value_start(text, value_end)? else {
            return Ok(found);
        };
        let colon = skip_whitespace(text, value_start);
        if colon == 0 {
            return Ok(found);
        }
        if text.get(colon - 1) != Some(&b':') {
            return Err(TailError::Malformed);
        }
        let key_end = skip_whitespace(text, colon - 1);
        if key_end == 0 {
            return Ok(found);
        }
        if text.get(key_end - 1) != Some(&b'"') {
            return Err(TailError::Malformed);
        }
        let Some(key_start) = string_start(text, key_end - 1) else {
            return Ok(found);
        };
        let key = text.get(key_start..key_end).unwrap_or_default();
        if let Some(i) = wanted(key, &keys) {
            if let Some(slot) = found.get_mut(i) {
                slot.get_or_insert(text.get(value_start..value_end).unwrap_or_default());
            }
        }
        let before = skip_whitespace(text, key_start);
        if before == 0 {
            return Ok(found);
        }
        match text.get(before - 1) {
            Some(b',') => end = before - 1,
            Some(b'{') => return Ok(found),
            _ => return Err(TailError::Malformed),
        }
    }
}

/// The text of `key`'s value among the last members of the object whose end
/// `text` is, when that value is a string written without escapes or control
/// characters ([`plain_json_text`]).
pub fn last_plain_string<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let [value] = last_members(text, [key]).ok()?;
    plain_json_text(value?)
}

/// Which of `keys` a key (a JSON string, quotes included) is.
fn wanted(key: &[u8], keys: &[&[u8]]) -> Option<usize> {
    let inner = key.get(1..key.len().saturating_sub(1)).unwrap_or_default();
    if !inner.contains(&b'\\') {
        return keys.iter().position(|k| *k == inner);
    }
    let text = json_string(key)?;
    keys.iter().position(|k| *k == text.as_bytes())
}

/// Where the whitespace before `end` starts.
fn skip_whitespace(text: &[u8], mut end: usize) -> usize {
    while end > 0 && text.get(end - 1).is_some_and(|&b| is_json_whitespace(b)) {
        end -= 1;
    }
    end
}

/// The index of the quote that opens the string whose closing quote is at
/// `close`: None if it is not in `text` (or cannot be told from it).
fn string_start(text: &[u8], close: usize) -> Option<usize> {
    let mut before = close;
    loop {
        let quote = memchr::memrchr(b'"', text.get(..before)?)?;
        let run = text
            .get(..quote)?
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if run == quote {
            // The backslashes reach the start of the text: their parity,
            // and so the quote's meaning, depends on what came before.
            return None;
        }
        if run % 2 == 0 {
            return Some(quote);
        }
        before = quote;
    }
}

/// Where the value that ends at `end` starts: None if before `text`.
fn value_start(text: &[u8], end: usize) -> Result<Option<usize>, TailError> {
    let Some(&last) = text.get(end - 1) else {
        return Err(TailError::Malformed);
    };
    match last {
        b'"' => Ok(string_start(text, end - 1)),
        b'}' | b']' => container_start(text, end - 1),
        b if in_literal(b) => {
            let len = text
                .get(..end)
                .unwrap_or_default()
                .iter()
                .rev()
                .take_while(|&&b| in_literal(b))
                .count();
            Ok((len < end).then_some(end - len))
        }
        _ => Err(TailError::Malformed),
    }
}

/// The index of the bracket that opens the object or array closed at
/// `close`: None if it is not in `text`.
fn container_start(text: &[u8], close: usize) -> Result<Option<usize>, TailError> {
    // The closers still open, innermost last (bounded as the forward scanner's depth).
    let mut open: Vec<u8> = Vec::new();
    let mut i = close + 1;
    while i > 0 {
        i -= 1;
        let Some(&b) = text.get(i) else {
            return Err(TailError::Malformed);
        };
        match b {
            b'"' => match string_start(text, i) {
                Some(start) => i = start,
                None => return Ok(None),
            },
            b'}' | b']' => {
                if open.len() >= crate::json_scan::MAX_DEPTH as usize {
                    return Err(TailError::Malformed);
                }
                open.push(b);
            }
            b'{' | b'[' => {
                let closer = if b == b'{' { b'}' } else { b']' };
                if open.pop() != Some(closer) {
                    return Err(TailError::Malformed);
                }
                if open.is_empty() {
                    return Ok(Some(i));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&[u8]; 3] = [b"usage", b"model", b"service_tier"];

    fn read(text: &str) -> Result<[Option<String>; 3], TailError> {
        last_members(text.as_bytes(), KEYS)
            .map(|found| found.map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned())))
    }

    mod against_a_parser {
        use super::super::*;
        use proptest::prelude::*;

        const KEYS: [&[u8]; 3] = [b"type", b"usage", b"delta"];

        /// Text meant to mislead a backward read: quotes, backslashes,
        /// brackets and a whole member inside a string.
        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    "A",
                    "\"",
                    "\\",
                    "\\\"",
                    "{",
                    "}",
                    "[",
                    ",",
                    ":",
                    " ",
                    "\"type\":\"response.output_audio.delta\"}",
                    "é",
                ]),
                0..8,
            )
            .prop_map(|parts| parts.concat())
        }

        fn value() -> impl Strategy<Value = serde_json::Value> {
            use serde_json::Value;
            let leaf = prop_oneof![
                text().prop_map(Value::String),
                any::<i32>().prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool),
                Just(Value::Null),
            ];
            leaf.prop_recursive(3, 12, 3, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::vec(
                        (prop::sample::select(vec!["type", "usage", "x"]), inner),
                        0..3
                    )
                    .prop_map(|m| Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                    )),
                ]
            })
        }

        /// An object with unique keys, written with whitespace between
        /// tokens and sometimes a key or the type written with escapes.
        fn object() -> impl Strategy<Value = Vec<u8>> {
            let member = (
                prop::sample::select(vec![
                    "\"type\"",
                    "\"usage\"",
                    "\"delta\"",
                    "\"ty\\u0070e\"",
                    "\"b\\\"c\"",
                ]),
                prop_oneof![
                    value().prop_map(|v| v.to_string()),
                    prop::sample::select(vec![
                        "\"response.output_audio.delta\"",
                        "\"response.done\"",
                        "\"response.output\\u005faudio.delta\""
                    ])
                    .prop_map(str::to_string),
                ],
                prop::sample::select(vec!["", " ", "\n\t"]),
            );
            prop::collection::vec(member, 0..5).prop_map(|members| {
                let mut seen = Vec::new();
                let mut out = String::from("{");
                for (key, value, ws) in members {
                    let name: String = serde_json::from_str(key).unwrap_or_default();
                    if seen.contains(&name) {
                        continue;
                    }
                    if !seen.is_empty() {
                        out.push_str(ws);
                        out.push(',');
                    }
                    seen.push(name);
                    out.push_str(&format!("{ws}{key}{ws}:{ws}{value}{ws}"));
                }
                out.push('}');
                out.into_bytes()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            /// Whatever part of its end the read gets, what it finds is the
            /// object's own member (keys are unique here).
            #[test]
            fn members_read_from_any_end_are_the_objects_own(doc in object()) {
                let parsed: serde_json::Value = serde_json::from_slice(&doc).unwrap_or_default();
                prop_assert!(parsed.is_object(), "{}", String::from_utf8_lossy(&doc));
                for from in 0..=doc.len() {
                    let end = &doc[from..];
                    if let Ok(found) = last_members(end, KEYS) {
                        for (key, value) in KEYS.iter().zip(found) {
                            if let Some(value) = value {
                                let read: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
                                let key = std::str::from_utf8(key).unwrap_or_default();
                                prop_assert_eq!(Some(&read), parsed.get(key), "from {}", from);
                            }
                        }
                    }
                    if let Some(t) = last_plain_string(end, b"type") {
                        let t = std::str::from_utf8(t).unwrap_or_default();
                        prop_assert_eq!(parsed.get("type").and_then(|v| v.as_str()), Some(t), "from {}", from);
                    }
                }
            }
        }
    }

    #[test]
    fn members_of_a_whole_object() {
        let found = read(r#" {"model":"gpt-5","choices":[{"a":"}]\"{["}],"usage":{"prompt_tokens":1,"x":[1,{"y":"\\"}]},"service_tier":"default"} "#).unwrap();
        assert_eq!(
            found[0].as_deref(),
            Some(r#"{"prompt_tokens":1,"x":[1,{"y":"\\"}]}"#)
        );
        assert_eq!(found[1].as_deref(), Some(r#""gpt-5""#));
        assert_eq!(found[2].as_deref(), Some(r#""default""#));
    }

    #[test]
    fn the_last_occurrence_counts() {
        let found = read(r#"{"usage":1,"usage":2 , "u\u0073age" : 3}"#).unwrap();
        assert_eq!(found[0].as_deref(), Some("3"));
    }

    #[test]
    fn text_that_begins_inside_a_value_stops_the_read() {
        // Cut inside the content string: the members after it are read.
        let found = read(r#"n \"usage\":{\"prompt_tokens\":9}\""}}],"usage":{"prompt_tokens":1},"service_tier":null}"#).unwrap();
        assert_eq!(found[0].as_deref(), Some(r#"{"prompt_tokens":1}"#));
        assert_eq!(found[1], None);
        assert_eq!(found[2].as_deref(), Some("null"));
        // A run of backslashes reaching the start: the quote's meaning is unknown.
        let found = read(r#"\\"}],"usage":7}"#).unwrap();
        assert_eq!(found[0].as_deref(), Some("7"));
        assert_eq!(
            read(r#","model":"m"}"#).unwrap()[1].as_deref(),
            Some(r#""m""#)
        );
        // A quote at the start, or after backslashes that reach it, may be escaped.
        assert_eq!(read(r#""model":"m"}"#).unwrap()[1], None);
        assert_eq!(read(r#"\"model":"m"}"#).unwrap()[1], None);
        assert_eq!(read(r#"12}"#).unwrap(), [None, None, None]);
    }

    #[test]
    fn ends_that_are_not_an_object() {
        // Cut after a nested object, text reads as that object's end: the
        // meter reads a tail only from a body that ended.
        assert_eq!(
            read(r#"{"usage":{"prompt_tokens":1}"#),
            Ok([None, None, None])
        );
        assert_eq!(
            read(r#"{"usage":{"prompt_tokens":1"#),
            Err(TailError::NotClosed)
        );
        assert_eq!(read(r#"[1]"#), Err(TailError::NotClosed));
        assert_eq!(read(""), Err(TailError::NotClosed));
        assert_eq!(read(r#"{"usage" 1}"#), Err(TailError::Malformed));
        assert_eq!(read(r#"{"a":1 "usage":2}"#), Err(TailError::Malformed));
        assert_eq!(read(r#"{"a":[1}}"#), Err(TailError::Malformed));
        assert_eq!(read(r#"{"a":@}"#), Err(TailError::Malformed));
        assert_eq!(read(r#"{usage:1}"#), Err(TailError::Malformed));
    }
}
