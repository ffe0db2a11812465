//! The event scanner against scanning every event whole from the start, on
//! streams of similar, diverging, repeated, broken and oversized events fed
//! in random splits: both must end each event the same way and capture the
//! same bytes at the same offsets.

use super::*;
use crate::json_scan::Captured;
use crate::meter::USAGE_PATHS;
use proptest::prelude::*;

/// An event's parts: content, model, usage, finish reason, obfuscation,
/// padding, sequence number; then how it is broken (4 and up: not) and where.
type Parts = (
    String,
    &'static str,
    String,
    &'static str,
    Option<String>,
    usize,
    String,
);

fn parts() -> impl Strategy<Value = (Parts, u8, prop::sample::Index)> {
    let content = prop_oneof![
        Just(String::new()),
        Just("token 1 ".to_string()),
        Just(r#"say \"usage\": {\"a\":1}"#.to_string()),
        "[a-z ]{0,40}",
        // Escapes anywhere: `\n` and `\"` next to plain text.
        r#"(a|b|\\n|\\"){0,8}"#,
    ];
    let model = prop_oneof![
        Just("gpt-4o-mini"),
        Just("gpt-4o"),
        Just("gpt-4o-mini-2024-07-18")
    ];
    let usage = prop_oneof![
        Just("null".to_string()),
        Just(r#"{"prompt_tokens":10,"completion_tokens":20}"#.to_string()),
    ];
    let finish = prop_oneof![Just("null"), Just(r#""stop""#), Just(r#""st\"op""#)];
    let obfuscation = prop_oneof![
        Just(None),
        "[a-zA-Z0-9]{0,12}".prop_map(Some),
        Just(Some(r#"a\\b"#.to_string()))
    ];
    // A value that changes from event to event: numbers of any length,
    // other literals, a string in its place.
    let sequence = prop_oneof![
        (0..2000u32).prop_map(|n| n.to_string()),
        Just("-1.5e3".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just(r#""7""#.to_string()),
        Just("1x".to_string()),
        Just("x1".to_string()),
    ];
    let pad = prop_oneof![Just(0usize), Just(1), Just(600)];
    (
        (content, model, usage, finish, obfuscation, pad, sequence),
        0..7u8,
        any::<prop::sample::Index>(),
    )
}

fn build(
    (content, model, usage, finish, obfuscation, pad, sequence): &Parts,
    how: u8,
    at: prop::sample::Index,
) -> Vec<u8> {
    let padding = "x".repeat(*pad);
    let obfuscation = obfuscation
        .as_ref()
        .map(|o| format!(r#","obfuscation":"{o}""#))
        .unwrap_or_default();
    let mut doc = format!(
        r#"{{"id":"chatcmpl-{padding}","object":"chat.completion.chunk","sequence_number":{sequence},"created":1700000000,"model":"{model}","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":{finish}}}],"usage":{usage}{obfuscation}}}"#
    )
    .into_bytes();
    let i = at.index(doc.len());
    match how {
        0 => doc.truncate(i),
        1 => doc[i] = b'}',
        2 => doc = b"[DONE]".to_vec(),
        3 => doc = [&b"null"[..], b"12", b" 7 ", b"\"a\""][at.index(4)].to_vec(),
        _ => {}
    }
    doc
}

/// A stream of events, most like the one before: the same but for what
/// changes in a stream (content, obfuscation, sequence number), as a stream
/// mostly is; the rest anything.
fn stream() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec((parts(), any::<bool>()), 1..10).prop_map(|events| {
        let mut last: Option<Parts> = None;
        let mut out = Vec::new();
        for ((mut parts, how, at), like_last) in events {
            if let (true, Some(last)) = (like_last, &last) {
                let (content, _, _, _, obfuscation, _, sequence) = parts;
                parts = (
                    content,
                    last.1,
                    last.2.clone(),
                    last.3,
                    obfuscation,
                    last.5,
                    sequence,
                );
                out.push(build(&parts, 4, at));
            } else {
                out.push(build(&parts, how, at));
            }
            last = Some(parts);
        }
        out
    })
}

fn fed_in(doc: &[u8], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
    at.sort_unstable();
    let mut parts = Vec::new();
    let mut last = 0;
    for cut in at.into_iter().chain([doc.len()]) {
        parts.push(doc[last..cut].to_vec());
        last = cut;
    }
    parts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn every_event_scans_as_if_scanned_whole(
        (events, how_fed) in stream().prop_flat_map(|events| {
            let n = events.len();
            (Just(events), prop::collection::vec(
                (prop::collection::vec(any::<prop::sample::Index>(), 0..3), any::<bool>(), any::<bool>()), n))
        }),
    ) {
        let mut reusing = EventScanner::new(USAGE_PATHS, 64);
        for (n, (doc, (cuts, in_one_piece, read))) in events.iter().zip(&how_fed).enumerate() {
            let mut whole = JsonScanner::new(USAGE_PATHS, 64);
            whole.feed(doc);
            let ended = if *in_one_piece {
                reusing.finish_whole(doc)
            } else {
                for part in fed_in(doc, cuts) {
                    reusing.feed(&part);
                }
                reusing.finish()
            };
            prop_assert_eq!(ended, whole.finish(), "event {}", n);
            // A stream reads nothing of most events: an event after one
            // whose captures were not read must come out the same.
            if *read {
                for t in 0..USAGE_PATHS.len() {
                    prop_assert_eq!(reusing.scanner().captured(t), whole.captured(t), "event {} path {}", n, t);
                    prop_assert_eq!(
                        reusing.scanner().captured_offset(t),
                        whole.captured_offset(t),
                        "event {} path {}", n, t
                    );
                }
            }
            reusing.next_event();
        }
    }
}

/// Ends the scanner's current event and feeds it `event` whole: how that
/// ended and whether it was scanned.
fn next_event_of(s: &mut EventScanner, event: &[u8]) -> (Result<(), ScanError>, Phase) {
    s.next_event();
    s.feed(event);
    (s.finish(), s.phase)
}

#[test]
fn a_repeated_prefix_is_not_scanned_again() {
    let a = br#"{"model":"m","choices":[{"delta":{"content":"hello"}}],"usage":null}"#;
    // A member the reference lacks: scanned, from the shared prefix on.
    let b =
        br#"{"model":"m","choices":[{"delta":{"content":"world","refusal":null}}],"usage":null}"#;
    let mut s = EventScanner::new(USAGE_PATHS, 64);
    assert_eq!(next_event_of(&mut s, a), (Ok(()), Phase::Scanned));
    assert_eq!(next_event_of(&mut s, b), (Ok(()), Phase::Scanned));
    // A copy now stands for the bytes up to `"content":"`: the next event
    // that must be scanned will not scan them.
    let (at, _) = s.copy.as_ref().expect("a copy of the shared prefix");
    assert_eq!(
        &b[..*at],
        br#"{"model":"m","choices":[{"delta":{"content":""#
    );
    assert_eq!(
        s.scanner().captured(1),
        Some(&Captured::Value(br#""m""#.to_vec()))
    );
}

#[test]
fn an_event_that_differs_in_plain_text_only_ends_as_the_reference() {
    let a = br#"{"model":"m","choices":[{"delta":{"content":"hello"}}],"usage":null,"obfuscation":"xy"}"#;
    let b = br#"{"model":"m","choices":[{"delta":{"content":"hi"}}],"usage":null,"obfuscation":"wxyz"}"#;
    let c =
        br#"{"model":"m","choices":[{"delta":{"content":"a\nb"}}],"usage":null,"obfuscation":"x"}"#;
    let mut s = EventScanner::new(USAGE_PATHS, 64);
    assert_eq!(next_event_of(&mut s, a), (Ok(()), Phase::Scanned));
    let usage_in_a = s.scanner().captured_offset(0).expect("usage captured");
    assert_eq!(next_event_of(&mut s, b), (Ok(()), Phase::Reused));
    // `usage` comes after the content, three bytes shorter; the shift after
    // the obfuscation string reaches only the document's end.
    assert_eq!(s.scanner().captured_offset(0), Some(usage_in_a - 3));
    assert_eq!(
        s.scanner().captured(0),
        Some(&Captured::Value(b"null".to_vec()))
    );
    // Escapes in the differing text: its end is read with them.
    assert_eq!(next_event_of(&mut s, c), (Ok(()), Phase::Reused));
    assert_eq!(s.scanner().captured_offset(0), Some(usage_in_a - 1));
}

#[test]
fn escapes_on_either_side_of_a_difference_are_read_from_the_string_start() {
    let reference = br#"{"c":"say \"hi\"","usage":{"prompt_tokens":1}}"#;
    let usage_at = |event: &[u8]| {
        let at = event
            .windows(8)
            .position(|w| w == br#""usage":"#)
            .unwrap_or(0);
        Some((at + 8) as u64)
    };
    let mut s = EventScanner::new(USAGE_PATHS, 64);
    assert_eq!(next_event_of(&mut s, reference), (Ok(()), Phase::Scanned));
    for event in [
        &br#"{"c":"say \"ho\"","usage":{"prompt_tokens":1}}"#[..],
        br#"{"c":"a\\","usage":{"prompt_tokens":1}}"#,
        br#"{"c":"say \n\u00e9\\\"","usage":{"prompt_tokens":1}}"#,
        br#"{"c":"","usage":{"prompt_tokens":1}}"#,
        br#"{"c":"say \"","usage":{"prompt_tokens":1}}"#,
    ] {
        assert_eq!(next_event_of(&mut s, event), (Ok(()), Phase::Reused));
        assert_eq!(s.scanner().captured_offset(0), usage_at(event));
    }
    // A backslash just before the difference escapes the event's first
    // differing byte: `a_quote_escaped_by_the_shared_bytes_is_not_a_string_end`.
}

#[test]
fn a_quote_escaped_by_the_shared_bytes_is_not_a_string_end() {
    // The event shares `{"c":"a\` with the reference and then has `"}`: that
    // quote is escaped, so the string never ends — though the bytes from it
    // on equal the reference's from its closing quote on. Then the same with
    // a whole vector lane after the difference (read in one step), where
    // the escaped quote does end a string: not the reference's.
    for (reference, event, error) in [
        (
            &br#"{"c":"a\nb"}"#[..],
            &br#"{"c":"a\"}"#[..],
            ScanError::Truncated,
        ),
        (
            br#"{"c":"a\nb","d":"0123456789abcdef"}"#,
            br#"{"c":"a\","d":"0123456789abcdef"}"#,
            ScanError::Syntax,
        ),
    ] {
        let mut s = EventScanner::new(USAGE_PATHS, 64);
        assert_eq!(next_event_of(&mut s, reference), (Ok(()), Phase::Scanned));
        assert_eq!(next_event_of(&mut s, event), (Err(error), Phase::Scanned));
    }
}

#[test]
fn an_event_that_differs_in_a_number_ends_as_the_reference() {
    let a = br#"{"type":"response.output_text.delta","sequence_number":9,"delta":"Hi","obfuscation":"abc"}"#;
    let b = br#"{"type":"response.output_text.delta","sequence_number":10,"delta":" there","obfuscation":"a"}"#;
    let c = br#"{"type":"response.output_text.delta","sequence_number":"11","delta":"!","obfuscation":"a"}"#;
    let mut s = EventScanner::new(USAGE_PATHS, 64);
    assert_eq!(next_event_of(&mut s, a), (Ok(()), Phase::Scanned));
    assert_eq!(next_event_of(&mut s, b), (Ok(()), Phase::Reused));
    assert_eq!(
        s.scanner().captured(4),
        Some(&Captured::Value(
            br#""response.output_text.delta""#.to_vec()
        ))
    );
    // A string where the reference had a number: scanned.
    assert_eq!(next_event_of(&mut s, c), (Ok(()), Phase::Scanned));
}
