//! An incremental JSON scanner that captures the values at a few key paths
//! (e.g. `usage`, `model`, `response.usage`) from a document fed in chunks.
//!
//! It keeps no copy of the document: only its nesting (one bit per level)
//! and the bytes of the values being captured, each capped. It understands
//! just enough JSON to know where values start and end — strings with
//! escapes, nesting, member keys — so a `"usage"` inside message content or
//! a nested object is never mistaken for the top-level one. Captured values
//! are validated later by a real parser (serde_json).
//!
//! Keys written with escapes (`"us\u0061ge"`) never match a path.

use crate::string_end::{string_end, StringEnd};

/// Deepest nesting tracked; deeper documents are rejected as malformed.
pub const MAX_DEPTH: u32 = 1024;
/// Longest key path that can be captured.
pub const MAX_PATH_LEN: usize = 3;
/// Longest key compared against a path component; longer keys never match.
const MAX_KEY_LEN: usize = 24;
/// Most values a recording scanner notes (see [`JsonScanner::plain_values`]).
const MAX_PLAIN_VALUES: usize = 32;

/// The text of a string or literal value read while nothing was being
/// captured, as document offsets: a string's from its first byte after the
/// opening quote to its closing quote, a literal's from its first byte to
/// the delimiter that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainValue {
    pub from: u64,
    pub to: u64,
    pub literal: bool,
}

/// The key paths to capture, from the document root: at most
/// [`MAX_TARGETS`] (each spec checks that where it is defined, with
/// [`fits`]; a scanner captures none past it).
pub type PathSpec = &'static [&'static [&'static str]];

/// Most key paths one scanner captures.
pub const MAX_TARGETS: usize = 8;

/// Whether a scanner captures every path of `paths` (for a compile-time check).
pub const fn fits(paths: PathSpec) -> bool {
    paths.len() <= MAX_TARGETS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the root value, or after `:` or `,` in an array.
    ExpectValue,
    /// After `[`: a value or `]`.
    ExpectValueOrArrayEnd,
    /// After `{`: a key or `}`.
    ExpectKeyOrObjectEnd,
    /// After `,` in an object.
    ExpectKey,
    InKey {
        escaped: bool,
    },
    ExpectColon,
    InString {
        escaped: bool,
    },
    InLiteral,
    /// After a value: `,`, a closing bracket, or (at the root) the end.
    AfterValue,
    Done,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    Syntax,
    TooDeep,
    TrailingData,
    Truncated,
}

/// A captured value: its bytes, or the fact that it was larger than the cap.
#[derive(Debug, PartialEq, Eq)]
pub enum Captured {
    Value(Vec<u8>),
    TooLarge,
}

impl Clone for Captured {
    fn clone(&self) -> Self {
        match self {
            Captured::Value(v) => Captured::Value(v.clone()),
            Captured::TooLarge => Captured::TooLarge,
        }
    }
    /// Reuses the bytes' allocation (a scanner is copied once per SSE event).
    fn clone_from(&mut self, source: &Self) {
        match (self, source) {
            (Captured::Value(to), Captured::Value(from)) => to.clone_from(from),
            (to, from) => *to = from.clone(),
        }
    }
}

#[derive(Clone, Copy)]
struct Key {
    bytes: [u8; MAX_KEY_LEN],
    len: u8,
    /// Too long, escaped, or an array slot: matches nothing.
    unmatchable: bool,
}

impl Key {
    const NONE: Key = Key {
        bytes: [0; MAX_KEY_LEN],
        len: 0,
        unmatchable: true,
    };
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

#[derive(Clone)]
struct ActiveCapture {
    target: usize,
    /// Depth at which the captured value started; it ends when we are back.
    base_depth: u32,
    /// Start of the value's bytes in the current chunk.
    from: usize,
    /// Start of the value in the whole document.
    offset: u64,
    buf: Vec<u8>,
    too_large: bool,
}

/// Whether a value starting with `b` is read as a literal (a number,
/// `true`, `false`, `null`).
pub fn starts_literal(b: u8) -> bool {
    matches!(b, b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

/// Whether `b` continues a literal. The scanner does not check a literal's
/// spelling: a captured one is parsed later, others are not used.
pub fn in_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

/// Whether `b` ends a literal (and is then read as what follows it).
pub fn ends_literal(b: u8) -> bool {
    matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace()
}

pub struct JsonScanner {
    paths: PathSpec,
    capture_cap: usize,
    state: State,
    depth: u32,
    /// One bit per open container: 1 = object, 0 = array.
    kinds: [u64; (MAX_DEPTH as usize) / 64],
    /// Current member key at each of the first MAX_PATH_LEN levels.
    path: [Key; MAX_PATH_LEN],
    key: Key,
    active: Option<ActiveCapture>,
    /// Inline, not allocated: a scanner is made for every request and
    /// response body.
    captured: [Option<Captured>; MAX_TARGETS],
    /// Where each captured value starts in the document.
    captured_at: [Option<u64>; MAX_TARGETS],
    /// Bytes fed before the current chunk.
    fed: u64,
    error: Option<ScanError>,
    /// Where the text of the string or literal value being read starts in
    /// the document.
    value_from: u64,
    /// When recording: the values read while nothing was being captured.
    plain_values: Option<Vec<PlainValue>>,
}

impl Clone for JsonScanner {
    fn clone(&self) -> Self {
        let mut copy = JsonScanner::new(self.paths, self.capture_cap);
        copy.clone_from(self);
        copy
    }
    /// Field by field, reusing the allocations (a scanner is copied once per
    /// SSE event). The pattern names every field: a new one cannot be missed.
    fn clone_from(&mut self, source: &Self) {
        let JsonScanner {
            paths,
            capture_cap,
            state,
            depth,
            kinds,
            path,
            key,
            active,
            captured,
            captured_at,
            fed,
            error,
            value_from,
            plain_values,
        } = source;
        self.paths = *paths;
        self.capture_cap = *capture_cap;
        self.state = *state;
        self.depth = *depth;
        self.kinds = *kinds;
        self.path = *path;
        self.key = *key;
        self.active.clone_from(active);
        for (to, from) in self.captured.iter_mut().zip(captured) {
            to.clone_from(from);
        }
        self.captured_at = *captured_at;
        self.fed = *fed;
        self.error = *error;
        self.value_from = *value_from;
        self.plain_values.clone_from(plain_values);
    }
}

impl JsonScanner {
    pub fn new(paths: PathSpec, capture_cap: usize) -> Self {
        JsonScanner {
            paths,
            capture_cap,
            state: State::ExpectValue,
            depth: 0,
            kinds: [0; (MAX_DEPTH as usize) / 64],
            path: [Key::NONE; MAX_PATH_LEN],
            key: Key::NONE,
            active: None,
            captured: [const { None }; MAX_TARGETS],
            captured_at: [None; MAX_TARGETS],
            fed: 0,
            error: None,
            value_from: 0,
            plain_values: None,
        }
    }

    /// The same scanner, also noting where the text of each string or
    /// literal value is that is read while nothing is being captured (at
    /// most [`MAX_PLAIN_VALUES`]): see [`Self::plain_values`].
    pub fn recording_plain_values(mut self) -> Self {
        self.plain_values = Some(Vec::new());
        self
    }

    /// The document's string and literal values read while nothing was
    /// being captured, in order (a string's text with its escapes; a
    /// literal ended by the document's end is not among them); empty unless
    /// recording. A value missing from it is only one this cannot vouch for.
    pub fn plain_values(&self) -> &[PlainValue] {
        self.plain_values.as_deref().unwrap_or(&[])
    }

    /// Undoes [`Self::finish`] on a scanner that was a copy of `end` before
    /// it: takes back what finishing changes and the offsets (which may have
    /// been moved since), and nothing else — a fraction of a whole copy.
    pub fn unfinish(&mut self, end: &JsonScanner) {
        self.state = end.state;
        self.active.clone_from(&end.active);
        self.error = end.error;
        self.captured_at = end.captured_at;
        self.value_from = end.value_from;
        self.fed = end.fed;
    }

    /// Moves the document offsets the scanner holds as if bytes had been
    /// inserted into (or removed from) its document: `shifts` are (offset,
    /// change of every offset from there on), in ascending order.
    pub fn shift_offsets(&mut self, shifts: &[(u64, i64)]) {
        if shifts.iter().all(|&(_, change)| change == 0) {
            return;
        }
        let shifted = |offset: u64| {
            let mut change = 0;
            for &(from, by) in shifts {
                if from > offset {
                    break;
                }
                change = by;
            }
            offset.checked_add_signed(change).unwrap_or(offset)
        };
        for at in self.captured_at.iter_mut().flatten() {
            *at = shifted(*at);
        }
        if let Some(active) = &mut self.active {
            active.offset = shifted(active.offset);
        }
        self.value_from = shifted(self.value_from);
        self.fed = shifted(self.fed);
    }

    /// Forgets the document, keeps the allocation: ready for the next one.
    pub fn reset(&mut self) {
        self.state = State::ExpectValue;
        self.depth = 0;
        self.path = [Key::NONE; MAX_PATH_LEN];
        self.key = Key::NONE;
        self.active = None;
        for c in &mut self.captured {
            *c = None;
        }
        self.captured_at = [None; MAX_TARGETS];
        self.fed = 0;
        self.error = None;
        self.value_from = 0;
        if let Some(values) = &mut self.plain_values {
            values.clear();
        }
    }

    /// The value captured for `paths[target]`, if the document had it whole.
    pub fn captured(&self, target: usize) -> Option<&Captured> {
        self.captured.get(target).and_then(Option::as_ref)
    }

    /// Where the captured value of `paths[target]` starts in the document
    /// (its bytes run for the captured value's length).
    pub fn captured_offset(&self, target: usize) -> Option<u64> {
        self.captured_at.get(target).copied().flatten()
    }

    /// Whether the text fed so far is not the start of one JSON value.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Ends the document. Returns the error if it was not one complete value.
    /// Changes only `state`, `active` and `error` (see [`Self::unfinish`]).
    pub fn finish(&mut self) -> Result<(), ScanError> {
        match self.state {
            State::InLiteral if self.depth == 0 => {
                self.end_value(None);
                self.state = State::Done;
            }
            State::AfterValue if self.depth == 0 => self.state = State::Done,
            State::Done => {}
            State::Failed => {}
            _ => self.fail(ScanError::Truncated),
        }
        self.active = None;
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: ScanError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.state = State::Failed;
        self.active = None;
    }

    fn top_is_object(&self) -> bool {
        let level = self.depth.saturating_sub(1) as usize;
        self.kinds
            .get(level / 64)
            .is_some_and(|w| w & (1u64 << (level % 64)) != 0)
    }

    fn push(&mut self, object: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            self.fail(ScanError::TooDeep);
            return false;
        }
        let level = self.depth as usize;
        if let Some(w) = self.kinds.get_mut(level / 64) {
            if object {
                *w |= 1u64 << (level % 64);
            } else {
                *w &= !(1u64 << (level % 64));
            }
        }
        self.depth += 1;
        if let Some(slot) = self.path.get_mut(level) {
            *slot = Key::NONE;
        }
        true
    }

    /// Which target path (if any) the value starting now is at.
    fn target_here(&self) -> Option<usize> {
        let d = self.depth as usize;
        if d == 0 || d > MAX_PATH_LEN {
            return None;
        }
        let here = self.path.get(..d)?;
        if here.iter().any(|k| k.unmatchable) {
            return None;
        }
        self.paths.iter().position(|p| {
            p.len() == d
                && p.iter()
                    .zip(here.iter())
                    .all(|(want, got)| want.as_bytes() == got.as_bytes())
        })
    }

    fn start_value(&mut self, at: usize) {
        if self.active.is_none() {
            if let Some(target) = self.target_here() {
                self.active = Some(ActiveCapture {
                    target,
                    base_depth: self.depth,
                    from: at,
                    offset: self.fed + at as u64,
                    buf: Vec::new(),
                    too_large: false,
                });
            }
        }
    }

    fn append(&mut self, chunk: &[u8], end: usize) {
        if let Some(a) = &mut self.active {
            let part = chunk.get(a.from..end).unwrap_or(&[]);
            if a.too_large || a.buf.len() + part.len() > self.capture_cap {
                a.too_large = true;
                a.buf = Vec::new();
            } else {
                a.buf.extend_from_slice(part);
            }
            a.from = end;
        }
    }

    /// A value ended; `end` is the exclusive end in `chunk` (None: at EOF).
    fn end_value(&mut self, chunk_end: Option<(&[u8], usize)>) {
        let ends_capture = self
            .active
            .as_ref()
            .is_some_and(|a| a.base_depth == self.depth);
        if ends_capture {
            if let Some((chunk, end)) = chunk_end {
                self.append(chunk, end);
            }
            if let Some(a) = self.active.take() {
                let value = if a.too_large {
                    Captured::TooLarge
                } else {
                    Captured::Value(a.buf)
                };
                if let Some(slot) = self.captured.get_mut(a.target) {
                    *slot = Some(value);
                }
                if let Some(slot) = self.captured_at.get_mut(a.target) {
                    *slot = Some(a.offset);
                }
            }
        }
        self.state = State::AfterValue;
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        let n = chunk.len();
        while i < n {
            let Some(&b) = chunk.get(i) else { break };
            match self.state {
                State::Failed | State::Done => {
                    if self.state == State::Done && !b.is_ascii_whitespace() {
                        self.fail(ScanError::TrailingData);
                    }
                    if self.state == State::Failed {
                        return;
                    }
                    i += 1;
                }
                State::InString { escaped: false } => {
                    // A string value's text matters only for where it ends.
                    match string_end(chunk, i) {
                        StringEnd::Closed(quote) => {
                            if self.active.is_none() {
                                self.note_plain_value(quote, false);
                            }
                            i = quote + 1;
                            self.end_value(Some((chunk, i)));
                        }
                        StringEnd::Open { escape_pending } => {
                            self.state = State::InString {
                                escaped: escape_pending,
                            };
                            i = n;
                        }
                    }
                }
                State::InString { escaped: true } => {
                    // The escaped byte, the first of this chunk.
                    self.state = State::InString { escaped: false };
                    i += 1;
                }
                State::InKey { escaped: true } => {
                    self.key.unmatchable = true;
                    self.state = State::InKey { escaped: false };
                    i += 1;
                }
                State::InKey { escaped: false } => {
                    // Skip to the next quote or backslash in one step.
                    let rest = chunk.get(i..).unwrap_or(&[]);
                    let Some(off) = memchr::memchr2(b'"', b'\\', rest) else {
                        self.key_push(rest);
                        i = n;
                        continue;
                    };
                    self.key_push(rest.get(..off).unwrap_or(&[]));
                    i += off;
                    if chunk.get(i) == Some(&b'\\') {
                        self.state = State::InKey { escaped: true };
                    } else {
                        let level = self.depth as usize;
                        if let Some(slot) = level.checked_sub(1).and_then(|l| self.path.get_mut(l))
                        {
                            *slot = self.key;
                        }
                        self.state = State::ExpectColon;
                    }
                    i += 1;
                }
                State::InLiteral => {
                    if ends_literal(b) {
                        if self.active.is_none() {
                            self.note_plain_value(i, true);
                        }
                        self.end_value(Some((chunk, i)));
                        // The delimiter is handled in AfterValue.
                    } else if in_literal(b) {
                        i += 1;
                    } else {
                        self.fail(ScanError::Syntax);
                    }
                }
                _ if b.is_ascii_whitespace() => i += 1,
                State::ExpectValue | State::ExpectValueOrArrayEnd => {
                    if b == b']' && self.state == State::ExpectValueOrArrayEnd {
                        self.close(chunk, i, false);
                        i += 1;
                        continue;
                    }
                    self.start_value(i);
                    match b {
                        b'{' => {
                            if self.push(true) {
                                self.state = State::ExpectKeyOrObjectEnd;
                            }
                        }
                        b'[' => {
                            if self.push(false) {
                                self.state = State::ExpectValueOrArrayEnd;
                            }
                        }
                        b'"' => {
                            self.value_from = self.fed + i as u64 + 1;
                            self.state = State::InString { escaped: false };
                        }
                        b if starts_literal(b) => {
                            self.value_from = self.fed + i as u64;
                            self.state = State::InLiteral;
                        }
                        _ => self.fail(ScanError::Syntax),
                    }
                    i += 1;
                }
                State::ExpectKeyOrObjectEnd | State::ExpectKey => {
                    if b == b'}' && self.state == State::ExpectKeyOrObjectEnd {
                        self.close(chunk, i, true);
                    } else if b == b'"' {
                        self.key = Key {
                            unmatchable: false,
                            ..Key::NONE
                        };
                        self.state = State::InKey { escaped: false };
                    } else {
                        self.fail(ScanError::Syntax);
                    }
                    i += 1;
                }
                State::ExpectColon => {
                    if b == b':' {
                        self.state = State::ExpectValue;
                    } else {
                        self.fail(ScanError::Syntax);
                    }
                    i += 1;
                }
                State::AfterValue => {
                    if self.depth == 0 {
                        self.fail(ScanError::TrailingData);
                        return;
                    }
                    let object = self.top_is_object();
                    match (b, object) {
                        (b',', true) => self.state = State::ExpectKey,
                        (b',', false) => {
                            self.state = State::ExpectValue;
                        }
                        (b'}', true) => self.close(chunk, i, true),
                        (b']', false) => self.close(chunk, i, false),
                        _ => self.fail(ScanError::Syntax),
                    }
                    i += 1;
                }
            }
        }
        if self.state == State::AfterValue && self.depth == 0 {
            self.state = State::Done;
        }
        // Carry the part of a capture that continues into the next chunk.
        if self.active.is_some() {
            self.append(chunk, n);
            if let Some(a) = &mut self.active {
                a.from = 0;
            }
        }
        self.fed += n as u64;
    }

    /// A value read while nothing was being captured ended at `end` in this
    /// chunk (a string's closing quote, a literal's delimiter).
    fn note_plain_value(&mut self, end: usize, literal: bool) {
        if let Some(values) = &mut self.plain_values {
            if values.len() < MAX_PLAIN_VALUES {
                values.push(PlainValue {
                    from: self.value_from,
                    to: self.fed + end as u64,
                    literal,
                });
            }
        }
    }

    /// Closes the innermost container at `chunk[at]`.
    fn close(&mut self, chunk: &[u8], at: usize, object: bool) {
        if self.depth == 0 || self.top_is_object() != object {
            self.fail(ScanError::Syntax);
            return;
        }
        self.depth -= 1;
        self.end_value(Some((chunk, at + 1)));
    }

    fn key_push(&mut self, part: &[u8]) {
        if self.key.unmatchable {
            return;
        }
        let len = usize::from(self.key.len);
        match self.key.bytes.get_mut(len..len + part.len()) {
            Some(dst) => {
                dst.copy_from_slice(part);
                self.key.len += part.len() as u8;
            }
            None => self.key.unmatchable = true,
        }
    }
}

/// JSON's whitespace (RFC 8259), which unlike `u8::is_ascii_whitespace`
/// has no form feed.
pub fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The bytes that end a string's text written without escapes: a quote, a
/// backslash, or a control character (which JSON does not allow in strings).
// Indexing in a constant: out of range would not compile.
#[allow(clippy::indexing_slicing)]
static ENDS_PLAIN_TEXT: [bool; 256] = {
    let mut ends = [false; 256];
    let mut b = 0;
    while b < 256 {
        ends[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    ends
};

/// Whether `b` ends a string's text written without escapes (a table: one
/// load in the byte loops that read strings).
pub fn ends_plain_text(b: u8) -> bool {
    ENDS_PLAIN_TEXT.get(usize::from(b)) != Some(&false)
}

/// The text of a JSON string value written without escapes or control
/// characters (most are: a model's name, an event's `type`), borrowed: None
/// for any other value, which [`json_string`] then reads in full.
pub fn plain_json_text(bytes: &[u8]) -> Option<&[u8]> {
    let start = bytes
        .iter()
        .position(|&b| !is_json_whitespace(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_json_whitespace(b))
        .map_or(start, |last| last + 1);
    bytes
        .get(start..end)?
        .strip_prefix(b"\"")?
        .strip_suffix(b"\"")
        .filter(|text| !text.iter().any(|&b| ends_plain_text(b)))
}

/// A JSON string value's text (escapes resolved), or None if it is not a string.
pub fn json_string(bytes: &[u8]) -> Option<String> {
    match plain_json_text(bytes) {
        Some(text) => std::str::from_utf8(text).ok().map(str::to_owned),
        None => serde_json::from_slice::<String>(bytes).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: PathSpec = &[&["usage"], &["model"], &["response", "usage"], &["type"]];
    const _: () = assert!(fits(PATHS));

    fn scan_split(doc: &[u8], splits: &[usize]) -> (JsonScanner, Result<(), ScanError>) {
        let mut s = JsonScanner::new(PATHS, 1024);
        let mut last = 0;
        for &at in splits {
            s.feed(&doc[last..at]);
            last = at;
        }
        s.feed(&doc[last..]);
        let r = s.finish();
        (s, r)
    }

    fn value(s: &JsonScanner, t: usize) -> Option<String> {
        match s.captured(t) {
            Some(Captured::Value(v)) => Some(String::from_utf8(v.clone()).unwrap()),
            Some(Captured::TooLarge) => Some("<too large>".into()),
            None => None,
        }
    }

    #[test]
    fn captures_top_level_values_only() {
        let doc = br#"{"id":"x","choices":[{"message":{"content":"say \"usage\": {\"a\":1}","usage":{"fake":1}}}],
            "model" : "gpt-5-2025-08-07", "usage": {"prompt_tokens": 10, "nested": {"x": [1, 2, {"y": "}"}]}}, "n": -1.5e3, "t": true}"#;
        for split in 0..=doc.len() {
            let (s, r) = scan_split(doc, &[split]);
            assert_eq!(r, Ok(()), "split {split}");
            assert_eq!(
                value(&s, 0).as_deref(),
                Some(r#"{"prompt_tokens": 10, "nested": {"x": [1, 2, {"y": "}"}]}}"#),
                "split {split}"
            );
            assert_eq!(value(&s, 1).as_deref(), Some(r#""gpt-5-2025-08-07""#));
            assert_eq!(value(&s, 2), None);
        }
    }

    #[test]
    fn strings_end_where_their_escapes_say_at_any_split() {
        // Escaped backslashes before a closing quote, escaped quotes, a
        // backslash as a chunk's last byte: the string ends at the right quote.
        let doc = br#"{"a":"x\\","b":"\"","c":"\\\"\\","d":"q\\\\","usage":{"k":"v\"}"}}"#;
        let want: serde_json::Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(want["c"], "\\\"\\");
        assert_eq!(want["usage"]["k"], "v\"}");
        for a in 0..doc.len() {
            for b in a..doc.len() {
                let (s, r) = scan_split(doc, &[a, b]);
                assert_eq!(r, Ok(()), "splits {a} {b}");
                let usage = value(&s, 0).unwrap();
                let got: serde_json::Value = serde_json::from_str(&usage).unwrap();
                assert_eq!(got, want["usage"], "splits {a} {b}");
            }
        }
        let (_, r) = scan_split(br#"{"a":"x\"}"#, &[7]);
        assert_eq!(
            r,
            Err(ScanError::Truncated),
            "an escaped quote does not close"
        );
    }

    proptest::proptest! {
        #[test]
        fn strings_of_quotes_and_backslashes_end_where_json_says(
            text in "[a\\\\\"né/]{0,24}",
            cuts in proptest::collection::vec(0usize..200, 0..3),
        ) {
            // The text JSON-encoded (escaped quotes, runs of escaped
            // backslashes, \n) as a value and as a captured value's member.
            let encoded = serde_json::to_string(&text).unwrap();
            let doc = format!(r#"{{"a":{encoded},"usage":{{"k":{encoded}}},"model":{encoded}}}"#);
            let doc = doc.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (doc.len() + 1)).collect();
            at.sort_unstable();
            let (s, r) = scan_split(doc, &at);
            proptest::prop_assert_eq!(r, Ok(()));
            proptest::prop_assert_eq!(value(&s, 0), Some(format!(r#"{{"k":{encoded}}}"#)));
            proptest::prop_assert_eq!(value(&s, 1), Some(encoded));
        }
    }

    #[test]
    fn captures_nested_paths_and_literals_at_any_split() {
        let doc = br#"{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":5}},"usage":null}"#;
        for a in 0..doc.len() {
            for b in a..doc.len() {
                let (s, r) = scan_split(doc, &[a, b]);
                assert_eq!(r, Ok(()));
                assert_eq!(value(&s, 3).as_deref(), Some(r#""response.completed""#));
                assert_eq!(value(&s, 2).as_deref(), Some(r#"{"input_tokens":5}"#));
                assert_eq!(value(&s, 0).as_deref(), Some("null"));
                assert_eq!(value(&s, 1), None);
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let doc = br#"{"a":[[],{}],"usage":{"k":"\\"},"model":"x"}"#;
        let mut s = JsonScanner::new(PATHS, 1024);
        for b in doc.iter() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.finish(), Ok(()));
        assert_eq!(value(&s, 0).as_deref(), Some(r#"{"k":"\\"}"#));
        assert_eq!(value(&s, 1).as_deref(), Some(r#""x""#));
    }

    #[test]
    fn escaped_or_long_keys_never_match() {
        let doc = br#"{"us\u0061ge":{"a":1},"a_very_long_key_name_that_exceeds_the_cap":1}"#;
        let (s, r) = scan_split(doc, &[]);
        assert_eq!(r, Ok(()));
        assert_eq!(value(&s, 0), None);
    }

    #[test]
    fn arrays_are_not_paths() {
        let (s, r) = scan_split(br#"[{"usage":1}]"#, &[]);
        assert_eq!(r, Ok(()));
        assert_eq!(value(&s, 0), None);
    }

    #[test]
    fn capture_cap_is_enforced() {
        let mut s = JsonScanner::new(PATHS, 8);
        s.feed(br#"{"usage":{"prompt_tokens":1000}}"#);
        assert_eq!(s.finish(), Ok(()));
        assert_eq!(s.captured(0), Some(&Captured::TooLarge));
    }

    #[test]
    fn reports_malformed_and_truncated_documents() {
        for (doc, err) in [
            (&br#"{"usage":{"a":1}"#[..], ScanError::Truncated),
            (br#"{"usage":{"a":1}]"#, ScanError::Syntax),
            (br#"{"a" 1}"#, ScanError::Syntax),
            (br#"{"a":1}x"#, ScanError::TrailingData),
            (br#"{"a":1,}"#, ScanError::Syntax),
            (b"", ScanError::Truncated),
            (b"<html>", ScanError::Syntax),
            (br#"{"a":1}{"b":2}"#, ScanError::TrailingData),
        ] {
            let (_, r) = scan_split(doc, &[]);
            assert_eq!(r, Err(err), "{}", String::from_utf8_lossy(doc));
        }
        // Usage read whole before the document broke is still available.
        let (s, r) = scan_split(br#"{"usage":{"a":1},"x":"#, &[]);
        assert_eq!(r, Err(ScanError::Truncated));
        assert_eq!(value(&s, 0).as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn captured_values_know_their_offsets() {
        let doc = br#"{"a": [1], "model" : "m", "usage":{"x":1}}"#;
        for split in 0..doc.len() {
            let (s, _) = scan_split(doc, &[split]);
            assert_eq!(s.captured_offset(1), Some(21), "split {split}");
            assert_eq!(s.captured_offset(0), Some(34));
            assert_eq!(&doc[34..41], br#"{"x":1}"#);
        }
    }

    #[test]
    fn depth_is_bounded() {
        let doc = "[".repeat(MAX_DEPTH as usize + 1);
        let (_, r) = scan_split(doc.as_bytes(), &[]);
        assert_eq!(r, Err(ScanError::TooDeep));
    }

    #[test]
    fn reset_reuses_the_scanner() {
        let mut s = JsonScanner::new(PATHS, 64);
        s.feed(br#"{"model":"a"}"#);
        assert_eq!(s.finish(), Ok(()));
        s.reset();
        s.feed(br#"{"type":"b"}"#);
        assert_eq!(s.finish(), Ok(()));
        assert_eq!(value(&s, 1), None);
        assert_eq!(value(&s, 3).as_deref(), Some(r#""b""#));
    }

    #[test]
    fn json_string_reads_as_a_json_parser_does() {
        for text in [
            r#""gpt-4o-mini""#,
            r#"  "gpt-4o"	"#,
            r#""""#,
            r#"""#,
            r#""a\"b""#,
            r#""caf\u00e9 \n""#,
            r#""a" "b""#,
            r#""a"b""#,
            "\"tab\tin\"",
            "\x0c\"form feed\"",
            "\"é世界\"",
            "12",
            "null",
            r#""unterminated"#,
        ] {
            let parsed = serde_json::from_str::<String>(text).ok();
            assert_eq!(json_string(text.as_bytes()), parsed, "{text:?}");
            // The borrowed reading, where there is one, is the parsed text.
            if let Some(plain) = plain_json_text(text.as_bytes()) {
                assert_eq!(
                    std::str::from_utf8(plain).ok(),
                    parsed.as_deref(),
                    "{text:?}"
                );
            }
        }
        assert_eq!(json_string(b"\"\xff\""), None);
    }
}
