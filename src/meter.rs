//! Reads usage out of an upstream response body as it streams past.
//!
//! One [`ResponseMeter`] per response: a JSON body (Chat Completions,
//! Responses, Embeddings) or an SSE stream. Both run the bytes through the
//! same [`JsonScanner`], which captures only `usage` / `model` (top level,
//! or under `response` for the Responses API's stream events) — never the
//! whole body.

use crate::event_scan::EventScanner;
use crate::json_scan::{json_string, plain_json_text, Captured, JsonScanner, PathSpec};
use crate::json_tail::last_members;
use crate::pricing::ServiceTier;
use crate::sse::{EventEnd, EventSink, SseParser};
use crate::usage::{Usage, UsageError};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;

/// Largest `usage` / `model` value read; real ones are a few hundred bytes.
pub const CAPTURE_CAP: usize = 64 * 1024;
/// Largest SSE event data read. The scanner does not buffer events, so this
/// bounds work, not memory; a Responses API `response.completed` event
/// repeats the whole output, hence the generous size.
pub const SSE_EVENT_CAP: usize = 16 * 1024 * 1024;

/// Paths captured from every JSON document (body, SSE event, WebSocket message).
pub const USAGE_PATHS: PathSpec = &[
    &["usage"],
    &["model"],
    &["response", "usage"],
    &["response", "model"],
    &["type"],
    &["session", "model"],
    &["service_tier"],
    &["response", "service_tier"],
];
const _: () = assert!(crate::json_scan::fits(USAGE_PATHS));
const USAGE: usize = 0;
const MODEL: usize = 1;
const RESPONSE_USAGE: usize = 2;
const RESPONSE_MODEL: usize = 3;
const TYPE: usize = 4;
const SESSION_MODEL: usize = 5;
const SERVICE_TIER: usize = 6;
const RESPONSE_SERVICE_TIER: usize = 7;

/// What one JSON document said about usage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DocumentFacts {
    /// `type`, when the document had a string one.
    pub event_type: Option<String>,
    /// `model`, `response.model` or `session.model`.
    pub model: Option<String>,
    /// `usage` or `response.usage`, when present and not null.
    pub usage: Option<Result<Usage, UsageError>>,
    /// `service_tier` or `response.service_tier`: the tier that served it.
    pub service_tier: Option<ServiceTier>,
}

fn captured_bytes(scanner: &JsonScanner, target: usize) -> Option<Result<&[u8], UsageError>> {
    match scanner.captured(target)? {
        Captured::Value(v) => Some(Ok(v)),
        Captured::TooLarge => Some(Err(UsageError::Malformed("value too large".into()))),
    }
}

/// A captured string's text: borrowed when written without escapes (the
/// usual case: `type` and `service_tier` come with every stream event).
fn captured_text(scanner: &JsonScanner, target: usize) -> Option<Cow<'_, str>> {
    let bytes = captured_bytes(scanner, target)?.ok()?;
    match plain_json_text(bytes) {
        Some(inner) => std::str::from_utf8(inner).ok().map(Cow::Borrowed),
        None => json_string(bytes).map(Cow::Owned),
    }
}

/// A document's `type`.
pub fn event_type(scanner: &JsonScanner) -> Option<Cow<'_, str>> {
    captured_text(scanner, TYPE)
}

/// `usage` or `response.usage`, when present and not null.
fn usage_of(scanner: &JsonScanner) -> Option<Result<Usage, UsageError>> {
    [USAGE, RESPONSE_USAGE]
        .into_iter()
        .filter_map(|t| captured_bytes(scanner, t))
        .find(|bytes| !matches!(bytes, Ok(b) if b.trim_ascii() == b"null"))
        .map(|bytes| bytes.and_then(Usage::from_json))
}

/// The first non-empty `model`, `response.model` or `session.model`,
/// unless it is `current` (then None: a stream names the same model in
/// every event, and this spares an allocation per event).
fn model_unless(scanner: &JsonScanner, current: Option<&str>) -> Option<String> {
    for target in [MODEL, RESPONSE_MODEL, SESSION_MODEL] {
        let Some(Ok(bytes)) = captured_bytes(scanner, target) else {
            continue;
        };
        if current.is_some_and(|c| !c.is_empty() && plain_json_text(bytes) == Some(c.as_bytes())) {
            return None;
        }
        if let Some(model) = json_string(bytes).filter(|m| !m.is_empty()) {
            return Some(model);
        }
    }
    None
}

/// `service_tier` or `response.service_tier`.
fn tier_of(scanner: &JsonScanner) -> Option<ServiceTier> {
    [SERVICE_TIER, RESPONSE_SERVICE_TIER]
        .into_iter()
        .find_map(|t| captured_text(scanner, t))
        .map(|tier| ServiceTier::from_response(&tier))
}

impl DocumentFacts {
    /// Reads what the scanner captured from one document (with [`USAGE_PATHS`]).
    pub fn from_scanner(scanner: &JsonScanner) -> DocumentFacts {
        DocumentFacts {
            event_type: event_type(scanner).map(Cow::into_owned),
            model: model_unless(scanner, None),
            usage: usage_of(scanner),
            service_tier: tier_of(scanner),
        }
    }
}

/// The result of metering one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metered {
    /// Usage was read. `model` is the response's (None if it named none);
    /// `tier` the service tier it says served it.
    Usage {
        model: Option<String>,
        usage: Usage,
        tier: ServiceTier,
    },
    /// The response carried no usage (or it was cut before it).
    Missing,
    /// The body or its usage was malformed.
    Malformed,
}

/// What kind of body is being metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    EventStream,
}

pub struct SseUsage {
    scanner: EventScanner,
    in_event: bool,
    model: Option<String>,
    usage: Option<Usage>,
    tier: Option<ServiceTier>,
    /// Events whose JSON or usage was malformed, or that were too large.
    pub malformed_events: u32,
    /// What the last scanned event added: an event that ends as it did adds
    /// the same, without reading its captures again.
    reference_outcome: Option<EventOutcome>,
}

/// What one event adds to a stream's metering, besides its model and tier
/// (which an event that repeats them leaves as they are).
#[derive(Debug, Clone, Copy)]
enum EventOutcome {
    Usage(Usage),
    Malformed,
    Nothing,
}

impl EventSink for SseUsage {
    fn data(&mut self, bytes: &[u8]) {
        self.in_event = true;
        self.scanner.feed(bytes);
    }

    fn end_event(&mut self, end: EventEnd) {
        let had_data = std::mem::replace(&mut self.in_event, false);
        if !had_data {
            return;
        }
        if end.done_marker {
            self.scanner.next_event();
            return;
        }
        let complete = self.scanner.finish().is_ok() && !end.oversized;
        self.add_event(complete, end);
    }

    fn whole_event(&mut self, data: &[u8], end: EventEnd) {
        if data.is_empty() || end.done_marker {
            return;
        }
        let complete = self.scanner.finish_whole(data).is_ok() && !end.oversized;
        self.add_event(complete, end);
    }

    fn repeated_event(&mut self, rest: &[u8], cap: usize) -> Option<usize> {
        let (len, ended) = self.scanner.finish_repeated(rest, cap)?;
        let end = EventEnd {
            done_marker: false,
            oversized: false,
        };
        self.add_event(ended.is_ok(), end);
        Some(len)
    }
}

impl SseUsage {
    /// Adds what the event just finished says.
    fn add_event(&mut self, complete: bool, end: EventEnd) {
        // Same captures, same end state (and a held event is never
        // oversized): the same outcome, the model and tier already read.
        let reused =
            self.reference_outcome.is_some() && self.scanner.ended_as_reference() && !end.oversized;
        if !reused {
            self.reference_outcome = Some(self.read_event(complete));
        }
        self.scanner.next_event();
        // Matched in place: an outcome is not copied per event.
        match &self.reference_outcome {
            Some(EventOutcome::Usage(u)) => self.usage = Some(*u),
            Some(EventOutcome::Malformed) => self.malformed_events += 1,
            Some(EventOutcome::Nothing) | None => {}
        }
    }

    /// Reads what an event captured: its usage outcome; its model and tier
    /// are kept. Read without allocating in the usual case (the same model
    /// again, no usage, no type).
    fn read_event(&mut self, complete: bool) -> EventOutcome {
        let scanned = self.scanner.scanner();
        let usage = usage_of(scanned);
        if let Some(m) = model_unless(scanned, self.model.as_deref()) {
            self.model = Some(m);
        }
        if let Some(t) = tier_of(scanned) {
            self.tier = Some(t);
        }
        match usage {
            Some(Ok(u)) => EventOutcome::Usage(u),
            Some(Err(_)) => EventOutcome::Malformed,
            None if !complete => EventOutcome::Malformed,
            None => EventOutcome::Nothing,
        }
    }
}

/// A JSON body is scanned forward this far. A longer one (a long answer)
/// has its usage after the content: its last [`JSON_TAIL`] bytes are kept
/// and read backward from its end ([`crate::json_tail`]), so the content
/// between is passed on unscanned.
pub const JSON_HEAD: usize = 64 * 1024;
/// How many of a long JSON body's last bytes are kept.
pub const JSON_TAIL: usize = 64 * 1024;

/// A JSON body: its head scanned, its tail kept once it is longer.
struct JsonBody {
    scanner: JsonScanner,
    seen_bytes: bool,
    /// The body's length so far.
    len: usize,
    head: usize,
    tail: usize,
    /// The body's chunks from `head - tail / 4` on (the quarter covers a
    /// member cut at the head's end), as few of the last as hold `tail`
    /// bytes (under `2 * tail` in all): owned chunks are kept as they came,
    /// not copied.
    kept: VecDeque<Vec<u8>>,
    kept_len: usize,
    /// The body's declared length (`content-length`): bytes before its last
    /// `tail` are then known unneeded as they pass, and are not read.
    declared_len: Option<usize>,
    /// A byte the meter needed was not read (a short or failed read): what
    /// the body says cannot be known.
    missed: bool,
}

/// What a JSON body's meter does with the next chunk: it scans the first
/// `scanned` bytes and keeps those from `keep_from` on; none between.
struct ChunkPlan {
    scanned: usize,
    keep_from: usize,
}

impl ChunkPlan {
    fn wanted(&self, chunk_len: usize) -> Range<usize> {
        match (self.scanned > 0, self.keep_from < chunk_len) {
            (true, true) => 0..chunk_len,
            (true, false) => 0..self.scanned,
            (false, _) => self.keep_from..chunk_len,
        }
    }
}

impl JsonBody {
    fn plan(&self, chunk_len: usize) -> ChunkPlan {
        let scanned = self.head.saturating_sub(self.len).min(chunk_len);
        let mut keep_from = self.head.saturating_sub(self.tail / 4);
        if let Some(declared) = self.declared_len {
            keep_from = keep_from.max(declared.saturating_sub(self.tail));
        }
        let keep_from = keep_from
            .saturating_sub(self.len)
            .min(chunk_len)
            // This chunk alone holds the tail: nothing before it is needed.
            .max(chunk_len.saturating_sub(self.tail));
        ChunkPlan { scanned, keep_from }
    }

    /// The bytes of the next chunk that must be read: one range, so a chunk
    /// whose head and tail are both needed is read whole.
    fn wanted(&self, chunk_len: usize) -> Range<usize> {
        self.plan(chunk_len).wanted(chunk_len)
    }

    /// The next chunk, `chunk_len` bytes long, of which `part` (from byte
    /// `at` on) was read.
    fn feed(&mut self, chunk_len: usize, at: usize, part: Cow<'_, [u8]>) {
        let plan = self.plan(chunk_len);
        let wanted = plan.wanted(chunk_len);
        let read_end = at.saturating_add(part.len());
        if !wanted.is_empty() && (at > wanted.start || read_end < wanted.end)
            || read_end > chunk_len
        {
            self.missed = true;
        }
        self.seen_bytes |= chunk_len > 0;
        self.len = self.len.saturating_add(chunk_len);
        if self.missed {
            // Nothing more is read: the outcome is known.
            self.kept.clear();
            self.kept_len = 0;
            return;
        }
        if let Some(head) = part.get(..plan.scanned).filter(|h| !h.is_empty()) {
            self.scanner.feed(head);
        }
        if plan.keep_from == chunk_len {
            return;
        }
        let skip = plan.keep_from - at;
        // An owned chunk needed whole is kept as it came; of any other only
        // the part needed is copied (a large chunk's buffer is not held).
        let piece = match part {
            Cow::Owned(owned) if skip == 0 => owned,
            part => part.get(skip..).unwrap_or_default().to_vec(),
        };
        self.kept_len += piece.len();
        self.kept.push_back(piece);
        // Earlier chunks go once the later ones hold the tail (all of them
        // when this chunk alone does).
        while let Some(front) = self.kept.front() {
            if self.kept_len - front.len() < self.tail {
                break;
            }
            self.kept_len -= front.len();
            self.kept.pop_front();
        }
    }

    /// The kept bytes, in one piece.
    fn kept_text(&self) -> Cow<'_, [u8]> {
        match self.kept.len() {
            0 => Cow::Borrowed(&[]),
            1 => Cow::Borrowed(self.kept.front().map_or(&[][..], Vec::as_slice)),
            _ => {
                let mut text = Vec::with_capacity(self.kept_len);
                for chunk in &self.kept {
                    text.extend_from_slice(chunk);
                }
                Cow::Owned(text)
            }
        }
    }

    /// `ended`: the body arrived whole, so its kept end is its end.
    fn finish(&mut self, ended: bool) -> Metered {
        if self.missed {
            return Metered::Malformed;
        }
        let failed_in_head = self.scanner.failed();
        let complete = self.scanner.finish().is_ok();
        let head = DocumentFacts::from_scanner(&self.scanner);
        if self.len <= self.head || !ended {
            // All of it was scanned, or its end is not the document's.
            return scanned_result(head, complete, self.seen_bytes);
        }
        // Bytes before the declared length's tail went unread: a body of
        // another length would be read from the wrong place.
        if failed_in_head || self.declared_len.is_some_and(|d| d != self.len) {
            return Metered::Malformed;
        }
        let kept = self.kept_text();
        // The model is written before the content: looked for in the tail
        // (read back to its start, through the content) only if not in the head.
        let members = if head.model.is_some() {
            last_members(&kept, [b"usage", b"service_tier"]).map(|[u, t]| [u, None, t])
        } else {
            last_members(&kept, [b"usage", b"model", b"service_tier"])
        };
        let Ok([usage, model, tier]) = members else {
            // Its end is not an object's (cut, or not JSON): only the head counts.
            return scanned_result(head, complete, self.seen_bytes);
        };
        // The tail's `usage` is the last one written (`null` too).
        let usage = match usage {
            Some(text) if text.trim_ascii() == b"null" => return Metered::Missing,
            Some(text) => Usage::from_json(text),
            None => match head.usage {
                Some(read) => read,
                None => return Metered::Missing,
            },
        };
        let Ok(usage) = usage else {
            return Metered::Malformed;
        };
        let model = model
            .and_then(json_string)
            .filter(|m| !m.is_empty())
            .or(head.model);
        let tier = tier
            .and_then(json_string)
            .map(|t| ServiceTier::from_response(&t))
            .or(head.service_tier);
        Metered::Usage {
            model,
            usage,
            tier: tier.unwrap_or_default(),
        }
    }
}

/// What a JSON body's scanned part says on its own: `complete` if it was
/// one whole document.
fn scanned_result(facts: DocumentFacts, complete: bool, seen_bytes: bool) -> Metered {
    match facts.usage {
        Some(Ok(usage)) => Metered::Usage {
            model: facts.model,
            usage,
            tier: facts.service_tier.unwrap_or_default(),
        },
        Some(Err(_)) => Metered::Malformed,
        None if !complete && seen_bytes => Metered::Malformed,
        None => Metered::Missing,
    }
}

enum Body {
    Json(Box<JsonBody>),
    Sse(Box<SseParser<SseUsage>>),
}

pub struct ResponseMeter {
    body: Body,
}

impl ResponseMeter {
    pub fn new(kind: BodyKind) -> Self {
        match kind {
            BodyKind::Json => Self::json_with_window(JSON_HEAD, JSON_TAIL),
            BodyKind::EventStream => Self::event_stream(),
        }
    }

    /// A JSON body's meter that scans `head` bytes and keeps the last `tail`
    /// ([`JSON_HEAD`], [`JSON_TAIL`]): small ones let tests and the fuzzer
    /// reach long bodies' reading with small inputs.
    #[doc(hidden)]
    pub fn json_with_window(head: usize, tail: usize) -> Self {
        ResponseMeter {
            body: Body::Json(Box::new(JsonBody {
                scanner: JsonScanner::new(USAGE_PATHS, CAPTURE_CAP),
                seen_bytes: false,
                len: 0,
                head,
                tail: tail.max(1),
                kept: VecDeque::new(),
                kept_len: 0,
                declared_len: None,
                missed: false,
            })),
        }
    }

    fn event_stream() -> Self {
        let sink = SseUsage {
            scanner: EventScanner::new(USAGE_PATHS, CAPTURE_CAP),
            in_event: false,
            model: None,
            usage: None,
            tier: None,
            malformed_events: 0,
            reference_outcome: None,
        };
        ResponseMeter {
            body: Body::Sse(Box::new(SseParser::new(sink, SSE_EVENT_CAP))),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.feed_chunk(Cow::Borrowed(chunk));
    }

    /// [`Self::feed`], keeping an owned chunk a long JSON body's tail needs
    /// without copying it.
    pub fn feed_chunk(&mut self, chunk: Cow<'_, [u8]>) {
        self.feed_part(chunk.len(), 0, chunk);
    }

    /// The body's declared length (`content-length` of a body not re-encoded),
    /// before its first chunk: a long JSON body's bytes before its last
    /// [`JSON_TAIL`] then need not be read ([`Self::wanted`]). A body that
    /// ends at another length is then not priced.
    pub fn declare_len(&mut self, len: u64) {
        if let Body::Json(body) = &mut self.body {
            if body.len == 0 {
                body.declared_len = usize::try_from(len).ok();
            }
        }
    }

    /// Which bytes of the next chunk, `chunk_len` long, must be read; the
    /// rest may pass unread.
    pub fn wanted(&self, chunk_len: usize) -> Range<usize> {
        match &self.body {
            Body::Json(body) => body.wanted(chunk_len),
            Body::Sse(_) => 0..chunk_len,
        }
    }

    /// The next chunk, `chunk_len` long, of which `part` was read from byte
    /// `at` on: at least what [`Self::wanted`] named, or what the body says
    /// is unknown (a JSON body is then not priced).
    pub fn feed_part(&mut self, chunk_len: usize, at: usize, part: Cow<'_, [u8]>) {
        match &mut self.body {
            Body::Json(body) => body.feed(chunk_len, at, part),
            Body::Sse(parser) => {
                parser.feed(&part);
                // An event stream is read whole: a hole is a malformed event.
                if at != 0 || part.len() != chunk_len {
                    parser.sink.malformed_events = parser.sink.malformed_events.saturating_add(1);
                }
            }
        }
    }

    /// The body ended: what it said.
    pub fn finish(&mut self) -> Metered {
        self.finish_as(true)
    }

    /// The stream was cut before its body ended: usage not yet seen is missing.
    pub fn finish_cut(&mut self) -> Metered {
        self.finish_as(false)
    }

    fn finish_as(&mut self, ended: bool) -> Metered {
        match &mut self.body {
            Body::Json(body) => body.finish(ended),
            Body::Sse(parser) => {
                parser.finish();
                let sink = &parser.sink;
                match sink.usage {
                    Some(usage) => Metered::Usage {
                        model: sink.model.clone(),
                        usage,
                        tier: sink.tier.unwrap_or_default(),
                    },
                    None if sink.malformed_events > 0 => Metered::Malformed,
                    None => Metered::Missing,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter_split(kind: BodyKind, body: &[u8], split: usize) -> Metered {
        let mut m = ResponseMeter::new(kind);
        m.feed(&body[..split]);
        m.feed(&body[split..]);
        m.finish()
    }

    use crate::usage::tests::text_usage;

    const CHAT_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-5-2025-08-07",
      "choices":[{"index":0,"message":{"role":"assistant","content":"the \"usage\": {\"prompt_tokens\": 999}"}}],
      "usage":{"prompt_tokens":100000,"completion_tokens":200000,"total_tokens":300000,
               "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

    #[test]
    fn chat_completion_json_at_every_split() {
        let want = Metered::Usage {
            model: Some("gpt-5-2025-08-07".into()),
            usage: text_usage(100_000, 0, 200_000),
            tier: ServiceTier::Standard,
        };
        for split in 0..=CHAT_JSON.len() {
            assert_eq!(
                meter_split(BodyKind::Json, CHAT_JSON.as_bytes(), split),
                want
            );
        }
    }

    #[test]
    fn malformed_truncated_and_missing_json() {
        let truncated = &CHAT_JSON.as_bytes()[..CHAT_JSON.len() / 2];
        assert_eq!(
            meter_split(BodyKind::Json, truncated, 3),
            Metered::Malformed
        );
        assert_eq!(
            meter_split(BodyKind::Json, b"not json", 3),
            Metered::Malformed
        );
        assert_eq!(
            meter_split(BodyKind::Json, br#"{"usage":{"prompt_tokens":"many"}}"#, 3),
            Metered::Malformed
        );
        assert_eq!(
            meter_split(BodyKind::Json, br#"{"id":"x"}"#, 3),
            Metered::Missing
        );
        assert_eq!(meter_split(BodyKind::Json, b"", 0), Metered::Missing);
        assert_eq!(
            meter_split(BodyKind::Json, br#"{"usage":null}"#, 0),
            Metered::Missing
        );
    }

    const CHAT_SSE: &str = "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"h\u{e9}llo \\\"usage\\\"\"}}],\"usage\":null}\r\n\r\n\
        : ping\r\n\r\n\
        data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\r\n\r\n\
        data: [DONE]\r\n\r\n";

    const RESPONSES_SSE: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5\",\"usage\":null}}\n\n\
        event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"\u{4e16}\"}\n\n\
        event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5-2025-08-07\",\n\
        data: \"output\":[{\"content\":[{\"text\":\"usage\"}]}],\"usage\":{\"input_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":9}}}\n\n";

    #[test]
    fn sse_streams_at_every_split() {
        let cases = [
            (CHAT_SSE, Some("gpt-4o-mini"), text_usage(10, 4, 20)),
            (RESPONSES_SSE, Some("gpt-5-2025-08-07"), text_usage(7, 2, 9)),
        ];
        for (stream, model, usage) in cases {
            let want = Metered::Usage {
                model: model.map(String::from),
                usage,
                tier: ServiceTier::Standard,
            };
            for split in 0..=stream.len() {
                assert_eq!(
                    meter_split(BodyKind::EventStream, stream.as_bytes(), split),
                    want,
                    "split {split}"
                );
            }
            // LF-only version of the same stream.
            let lf = stream.replace("\r\n", "\n");
            assert_eq!(meter_split(BodyKind::EventStream, lf.as_bytes(), 17), want);
        }
    }

    #[test]
    fn the_served_service_tier_is_read() {
        let json = br#"{"model":"gpt-5.5","service_tier":"flex","choices":[{"message":{"content":"service_tier priority"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let sse = "data: {\"model\":\"gpt-5.5\",\"service_tier\":\"priority\",\"choices\":[],\"usage\":null}\n\n\
            data: {\"model\":\"gpt-5.5\",\"service_tier\":\"priority\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let responses = "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5.5\",\"service_tier\":\"flex\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}}\n\n";
        let tier = |m: Metered| match m {
            Metered::Usage { tier, .. } => tier,
            other => panic!("{other:?}"),
        };
        for split in [0, 9, 40] {
            assert_eq!(
                tier(meter_split(BodyKind::Json, json, split)),
                ServiceTier::Flex
            );
            assert_eq!(
                tier(meter_split(BodyKind::EventStream, sse.as_bytes(), split)),
                ServiceTier::Priority
            );
            assert_eq!(
                tier(meter_split(
                    BodyKind::EventStream,
                    responses.as_bytes(),
                    split
                )),
                ServiceTier::Flex
            );
        }
        let default = br#"{"service_tier":"default","usage":{"prompt_tokens":1}}"#;
        assert_eq!(
            tier(meter_split(BodyKind::Json, default, 3)),
            ServiceTier::Standard
        );
    }

    #[test]
    fn captured_strings_read_as_a_json_parser_reads_them() {
        // A raw control character is not JSON: no type, no tier, as in a
        // parsed tree, whether the text is borrowed or read in full.
        for (doc, want) in [
            (r#"{"type":"response.done"}"#, Some("response.done")),
            (r#"{"type": "a\u0062" }"#, Some("ab")),
            ("{\"type\":\"response.done\t\"}", None),
            ("{\"type\":\"a\u{1}b\"}", None),
            (r#"{"type":7}"#, None),
        ] {
            let mut scanner = JsonScanner::new(USAGE_PATHS, CAPTURE_CAP);
            scanner.feed(doc.as_bytes());
            let _ = scanner.finish();
            assert_eq!(event_type(&scanner).as_deref(), want, "{doc:?}");
            let parsed: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
            assert_eq!(parsed["type"].as_str(), want, "{doc:?}");
        }
    }

    #[test]
    fn sse_model_is_the_last_one_named() {
        let body = concat!(
            "data: {\"model\":\"a\",\"usage\":null}\n\n",
            "data: {\"model\":\"a\"}\n\n",
            "data: {\"model\":\"\",\"response\":{\"model\":\"b\\u0031\"}}\n\n",
            "data: {\"model\":\"b1\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
            "data: {\"choices\":[]}\n\n",
        );
        let mut m = ResponseMeter::new(BodyKind::EventStream);
        m.feed(body.as_bytes());
        match m.finish() {
            Metered::Usage { model, .. } => assert_eq!(model.as_deref(), Some("b1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sse_stream_cut_before_usage_is_missing() {
        let cut = &CHAT_SSE[..CHAT_SSE.find(": ping").unwrap()];
        assert_eq!(
            meter_split(BodyKind::EventStream, cut.as_bytes(), 5),
            Metered::Missing
        );
        // Cut inside the usage event: the unfinished event is discarded.
        let cut = &CHAT_SSE[..CHAT_SSE.find("\"choices\":[]").unwrap()];
        assert_eq!(
            meter_split(BodyKind::EventStream, cut.as_bytes(), 5),
            Metered::Missing
        );
    }

    #[test]
    fn sse_with_malformed_usage_event() {
        let s = "data: {\"model\":\"x\",\"usage\":{\"prompt_tokens\":-5}}\n\n";
        assert_eq!(
            meter_split(BodyKind::EventStream, s.as_bytes(), 4),
            Metered::Malformed
        );
        let s = "data: {garbage\n\n";
        assert_eq!(
            meter_split(BodyKind::EventStream, s.as_bytes(), 4),
            Metered::Malformed
        );
    }

    /// An event that ends as the last scanned one adds that event's outcome
    /// without its captures being read again: the stream's result and its
    /// malformed count equal reading every event whole.
    mod long_json_bodies {
        use super::*;
        use proptest::prelude::*;

        /// Content text: escapes, backslash runs and look-alike members.
        fn content() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("lorem ipsum ".to_string()),
                Just(r#"\"usage\": {\"prompt_tokens\": 999}"#.to_string()),
                Just(r#"\\"#.to_string()),
                Just(r#"\\\""#.to_string()),
                Just(r#"}]{[,:"#.to_string()),
                Just(r#"\u00e9 \n é世界"#.to_string()),
            ];
            proptest::collection::vec(piece, 0..200).prop_map(|p| p.concat())
        }

        /// A Chat Completions or Responses API body around `content`,
        /// members in the orders the API writes them, or moved.
        fn body() -> impl Strategy<Value = String> {
            let usage = prop_oneof![
                Just(
                    r#"{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1}}"#
                ),
                Just(r#"{"input_tokens":7,"output_tokens":9}"#),
                Just("null"),
                Just(r#"{"prompt_tokens":-1}"#),
                Just(r#"{"prompt_tokens":1,}"#),
            ];
            let tier = prop_oneof![
                Just(""),
                Just(r#","service_tier":"flex""#),
                Just(r#", "service_tier" : "priority""#)
            ];
            let model = prop_oneof![
                Just(r#""model":"gpt-4o-mini","#),
                Just(""),
                Just(r#""model":"gpt-5","#)
            ];
            let space = prop_oneof![Just(""), Just(" "), Just("\n  ")];
            (content(), usage, tier, model, space, any::<bool>(), any::<bool>()).prop_map(
                |(c, u, t, m, w, responses, usage_first)| {
                    let items = if responses {
                        format!(r#""output":[{{"type":"message","content":[{{"type":"output_text","text":"{c}"}}]}}]"#)
                    } else {
                        format!(r#""choices":[{{"index":0,"message":{{"role":"assistant","content":"{c}"}}}}]"#)
                    };
                    let (before, after) = if usage_first {
                        (format!(r#""usage":{u},"#), String::new())
                    } else {
                        (String::new(), format!(r#",{w}"usage":{w}{u}"#))
                    };
                    format!(r#"{w}{{"id":"x",{m}{before}{items}{after}{t},"system_fingerprint":"fp"}}{w}"#)
                },
            )
        }

        fn meter(mut meter: ResponseMeter, body: &[u8], chunk: usize, ended: bool) -> Metered {
            // Chunks borrowed and owned (kept as they are), alternately.
            for (i, piece) in body.chunks(chunk.max(1)).enumerate() {
                if i % 2 == 0 {
                    meter.feed(piece);
                } else {
                    meter.feed_chunk(Cow::Owned(piece.to_vec()));
                }
            }
            if ended {
                meter.finish()
            } else {
                meter.finish_cut()
            }
        }

        /// As [`meter`], with the body's length declared, reading of each
        /// chunk only what the meter wants.
        fn meter_wanted(
            mut meter: ResponseMeter,
            body: &[u8],
            chunk: usize,
            declared: u64,
        ) -> Metered {
            meter.declare_len(declared);
            for (i, piece) in body.chunks(chunk.max(1)).enumerate() {
                let wanted = meter.wanted(piece.len());
                let part = &piece[wanted.clone()];
                if i % 2 == 0 {
                    meter.feed_part(piece.len(), wanted.start, Cow::Borrowed(part));
                } else {
                    meter.feed_part(piece.len(), wanted.start, Cow::Owned(part.to_vec()));
                }
            }
            meter.finish()
        }

        proptest! {
            #[test]
            fn reading_only_what_is_wanted_of_a_declared_length(body in body(), head in 80usize..400, chunk in 1usize..300) {
                let len = body.len() as u64;
                let whole = meter(ResponseMeter::new(BodyKind::Json), body.as_bytes(), chunk, true);
                let wanted = meter_wanted(ResponseMeter::json_with_window(head, 1024), body.as_bytes(), chunk, len);
                let usage_first = body.find("\"usage\":") < body.find("\"choices\"").or(body.find("\"output\""));
                if !usage_first || body.find("\"usage\":").is_some_and(|at| at + 120 < head) {
                    prop_assert_eq!(&wanted, &whole);
                }
                // Whatever the chunks: read whole, the same.
                let mut every_byte = ResponseMeter::json_with_window(head, 1024);
                every_byte.declare_len(len);
                prop_assert_eq!(meter(every_byte, body.as_bytes(), chunk, true), wanted);
                // Another length than the body's: not read from a wrong place.
                let other = meter_wanted(ResponseMeter::json_with_window(head, 1024), body.as_bytes(), chunk, len - 1);
                if body.len() > head {
                    prop_assert_eq!(other, Metered::Malformed);
                }
            }

            #[test]
            fn a_needed_byte_unread_is_never_priced(body in body(), head in 80usize..400, chunk in 1usize..300, which in any::<usize>(), short in 1usize..8) {
                let new_meter = || {
                    let mut m = ResponseMeter::json_with_window(head, 1024);
                    m.declare_len(body.len() as u64);
                    m
                };
                // Which chunks want bytes: that depends on lengths alone.
                let mut dry = new_meter();
                let wanting: Vec<usize> = body.as_bytes().chunks(chunk).enumerate().filter_map(|(i, piece)| {
                    let wants = !dry.wanted(piece.len()).is_empty();
                    dry.feed_part(piece.len(), 0, Cow::Borrowed(piece));
                    wants.then_some(i)
                }).collect();
                let shorted = wanting[which % wanting.len()];
                let mut m = new_meter();
                for (i, piece) in body.as_bytes().chunks(chunk).enumerate() {
                    let wanted = m.wanted(piece.len());
                    // The last bytes wanted of one chunk are not read.
                    let end = if i == shorted {
                        wanted.end.saturating_sub(short).max(wanted.start)
                    } else {
                        wanted.end
                    };
                    m.feed_part(piece.len(), wanted.start, Cow::Borrowed(&piece[wanted.start..end]));
                }
                prop_assert_eq!(m.finish(), Metered::Malformed);
            }

            #[test]
            fn as_if_read_whole(body in body(), head in 80usize..400, chunk in 1usize..300) {
                // Its usage follows the content, within the kept tail (what
                // follows the content fits in a quarter of it); or precedes
                // it, within the head.
                let whole = meter(ResponseMeter::new(BodyKind::Json), body.as_bytes(), chunk, true);
                let windowed = meter(ResponseMeter::json_with_window(head, 1024), body.as_bytes(), chunk, true);
                let usage_first = body.find("\"usage\":") < body.find("\"choices\"").or(body.find("\"output\""));
                if !usage_first || body.find("\"usage\":").is_some_and(|at| at + 120 < head) {
                    prop_assert_eq!(windowed, whole);
                }
            }

            #[test]
            fn a_cut_body_is_read_as_far_as_its_head(body in body(), head in 80usize..400, cut in 0usize..4000) {
                let cut = &body.as_bytes()[..cut.min(body.len())];
                let windowed = meter(ResponseMeter::json_with_window(head, 1024), cut, 64, false);
                let head_only = meter(ResponseMeter::new(BodyKind::Json), &cut[..cut.len().min(head)], 64, false);
                // What its head says: a cut document is malformed, one whose
                // end (`usage: null` included) is in the head is read whole.
                if cut.len() > head {
                    prop_assert_eq!(windowed, head_only);
                }
            }
        }

        #[test]
        fn a_long_body_is_priced_from_its_tail() {
            let content = "x\\\"y".repeat(40_000);
            let body = format!(
                r#"{{"model":"gpt-4o-mini","choices":[{{"message":{{"content":"{content}"}}}}],"usage":{{"prompt_tokens":10,"completion_tokens":20}},"service_tier":"flex"}}"#
            );
            let want = Metered::Usage {
                model: Some("gpt-4o-mini".into()),
                usage: text_usage(10, 0, 20),
                tier: ServiceTier::Flex,
            };
            assert!(body.len() > JSON_HEAD + JSON_TAIL);
            for chunk in [16 * 1024, 100_000, body.len()] {
                assert_eq!(
                    meter(
                        ResponseMeter::new(BodyKind::Json),
                        body.as_bytes(),
                        chunk,
                        true
                    ),
                    want
                );
            }
            // Its length declared: only its head and its tail are read.
            let mut read = 0;
            let mut m = ResponseMeter::new(BodyKind::Json);
            m.declare_len(body.len() as u64);
            for piece in body.as_bytes().chunks(16 * 1024) {
                let wanted = m.wanted(piece.len());
                read += wanted.len();
                m.feed_part(
                    piece.len(),
                    wanted.start,
                    Cow::Borrowed(&piece[wanted.clone()]),
                );
            }
            assert_eq!(m.finish(), want);
            assert_eq!(read, JSON_HEAD + JSON_TAIL);
            // Cut before its end: the usage at its end is not read.
            let cut = &body.as_bytes()[..body.len() - 1];
            assert_eq!(
                meter(ResponseMeter::new(BodyKind::Json), cut, 16 * 1024, false),
                Metered::Malformed
            );
            // Not JSON in its head: malformed, whatever its end says.
            let broken = body.replacen("\"choices\":", "\"choices\" ", 1);
            assert_eq!(
                meter(
                    ResponseMeter::new(BodyKind::Json),
                    broken.as_bytes(),
                    9_999,
                    true
                ),
                Metered::Malformed
            );
        }
    }

    mod reused_events {
        use super::*;
        use proptest::prelude::*;

        fn event() -> impl Strategy<Value = String> {
            let content = prop_oneof![Just("a"), Just("token 10 "), Just("b\\\"c")];
            let model = prop_oneof![Just("gpt-4o-mini"), Just("gpt-4o"), Just("")];
            let usage = prop_oneof![
                Just("null"),
                Just(r#"{"prompt_tokens":3,"completion_tokens":4}"#),
                Just(r#"{"prompt_tokens":5,"completion_tokens":6}"#),
                Just(r#"{"prompt_tokens":-1}"#),
            ];
            let tier = prop_oneof![Just(""), Just(r#","service_tier":"flex""#)];
            let tail = prop_oneof![Just("}"), Just("")];
            (content, model, usage, tier, tail).prop_map(|(c, m, u, t, end)| {
                format!(
                    r#"{{"model":"{m}","choices":[{{"delta":{{"content":"{c}"}}}}],"usage":{u}{t}{end}"#
                )
            })
        }

        /// Events mostly like one another: a stream's content chunks, the
        /// last of them with usage.
        fn similar_event() -> impl Strategy<Value = String> {
            let content = prop_oneof![Just("a"), Just("token 10 "), Just("b\\\"c"), Just("x\\\\")];
            let usage = prop_oneof![
                4 => Just("null"),
                1 => Just(r#"{"prompt_tokens":3,"completion_tokens":4}"#),
            ];
            (content, usage).prop_map(|(c, u)| {
                format!(
                    r#"{{"model":"m","choices":[{{"delta":{{"content":"{c}"}}}}],"usage":{u}}}"#
                )
            })
        }

        proptest! {
            #[test]
            fn as_if_every_event_was_read_whole(events in proptest::collection::vec(event(), 1..12)) {
                let (mut model, mut usage, mut tier, mut malformed) = (None, None, None, 0u32);
                let mut stream = String::new();
                for e in &events {
                    stream.push_str(&format!("data: {e}\n\n"));
                    let mut whole = JsonScanner::new(USAGE_PATHS, CAPTURE_CAP);
                    whole.feed(e.as_bytes());
                    let complete = whole.finish().is_ok();
                    let facts = DocumentFacts::from_scanner(&whole);
                    model = facts.model.or(model);
                    tier = facts.service_tier.or(tier);
                    match facts.usage {
                        Some(Ok(u)) => usage = Some(u),
                        Some(Err(_)) => malformed += 1,
                        None if !complete => malformed += 1,
                        None => {}
                    }
                }
                let mut m = ResponseMeter::new(BodyKind::EventStream);
                m.feed(stream.as_bytes());
                let counted = match &m.body {
                    Body::Sse(parser) => parser.sink.malformed_events,
                    Body::Json { .. } => unreachable!(),
                };
                prop_assert_eq!(counted, malformed);
                let want = match usage {
                    Some(usage) => Metered::Usage { model, usage, tier: tier.unwrap_or_default() },
                    None if malformed > 0 => Metered::Malformed,
                    None => Metered::Missing,
                };
                prop_assert_eq!(m.finish(), want);
            }

            /// Events found by comparing them with an earlier one (whole in
            /// a chunk) end as the same stream read a byte at a time says,
            /// whatever line ends, extra lines or stray line breaks in
            /// their data.
            #[test]
            fn in_one_chunk_as_a_byte_at_a_time(
                events in proptest::collection::vec((similar_event(), 0..8u8, any::<prop::sample::Index>()), 1..12),
            ) {
                let mut stream = String::new();
                for (e, how, at) in &events {
                    // Between tokens (after `{"model":"m",`) or not, or at
                    // the start of the content's text: a line end inside the
                    // text that differs from the last event's.
                    let content = e.find(r#""content":""#).map_or(1, |i| i + 11);
                    let cut = [1, 13, 24, e.len() - 1, content][at.index(5)];
                    let (head, tail) = e.split_at(cut);
                    stream.push_str(&match how {
                        0 => format!("data: {e}\r\n\r\n"),
                        1 => format!("data: {head}\ndata: {tail}\n\n"),
                        2 => format!("data: {head}\n{tail}\n\n"),
                        3 => format!("data: {head}\r{tail}\n\n"),
                        4 => format!(": comment\ndata:{e}\n\n"),
                        5 => format!("data: {e}\n"),
                        _ => format!("data: {e}\n\n"),
                    });
                }
                let meter = |chunks: &mut dyn Iterator<Item = &[u8]>| {
                    let mut m = ResponseMeter::new(BodyKind::EventStream);
                    for chunk in chunks {
                        m.feed(chunk);
                    }
                    let malformed = match &m.body {
                        Body::Sse(parser) => parser.sink.malformed_events,
                        Body::Json { .. } => unreachable!(),
                    };
                    (m.finish(), malformed)
                };
                let bytes = stream.as_bytes();
                prop_assert_eq!(
                    meter(&mut std::iter::once(bytes)),
                    meter(&mut bytes.chunks(1))
                );
            }
        }
    }
}
