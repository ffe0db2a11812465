//! Scans a stream of similar JSON documents — the events of one SSE stream —
//! without scanning again what each one repeats from an earlier one.
//!
//! The events of a stream differ in a few values (the content, the
//! `obfuscation` padding the API adds by default, a Responses API
//! `sequence_number`) and repeat everything else: `{"id":"chatcmpl-…",
//! "object":"chat.completion.chunk","created":…,"model":"…","choices":[{
//! "index":0,"delta":{"content":"…"},"finish_reason":null}],"usage":null}`.
//! The scanner is deterministic and indifferent to how its input is split,
//! so equal bytes read from equal states leave equal states. An event (up to
//! [`HEAD_CAP`] bytes) is held until it ends, then compared with the last
//! event that was scanned (the reference):
//! - where they differ only inside values that the reference's scan read
//!   while capturing nothing — string text (an uncaptured string's text
//!   matters only for where it ends: its escapes are read from its start),
//!   literals — both end each such value in the same state, so the
//!   event ends as the reference did: its final state is taken, with every
//!   offset after a difference moved by the bytes gained or lost there.
//!   Nothing is scanned.
//! - otherwise the event is scanned, from a copy of the state after the
//!   bytes it shares with the reference's start when there is one, and
//!   becomes the reference.
//!
//! An SSE event whole in its chunk is compared where it lies, before its
//! line end is searched for ([`EventScanner::finish_repeated`]).
//!
//! Longer events are scanned as they stream, past the held bytes. What is
//! captured and what counts as malformed are exactly what scanning every
//! byte gives (tested against it, and fuzzed).

use crate::common_prefix::common_prefix_len;
use crate::json_scan::{
    ends_literal, in_literal, starts_literal, JsonScanner, PathSpec, ScanError,
};
use crate::string_end::{string_end, string_end_in_lane, StringEnd};

/// The most bytes of an event compared with the next one's (and held while
/// they match).
const HEAD_CAP: usize = 512;
/// A copy is taken again only when the shared prefix grew by this many
/// bytes: a copy costs about what scanning a few dozen bytes does.
const RECOPY_GAIN: usize = 32;

/// Where a literal's text ends: at the delimiter the scanner ends it at, if
/// only bytes it reads as a literal come before it.
fn literal_end(text: &[u8]) -> Option<usize> {
    let len = text.iter().position(|&b| !in_literal(b))?;
    text.get(len)
        .is_some_and(|&b| ends_literal(b))
        .then_some(len)
}

pub struct EventScanner {
    scanner: JsonScanner,
    /// The scanner's state after the first `.0` bytes of `reference`.
    copy: Option<(usize, JsonScanner)>,
    /// The last scanned event's first bytes (up to [`HEAD_CAP`]).
    reference: Vec<u8>,
    /// The scanner's state at the end of `reference`, before `finish`, when
    /// `reference` is the whole event.
    reference_end: Option<JsonScanner>,
    /// `reference` holds no CR or LF: the bytes an event shares with it
    /// cannot end an SSE line.
    reference_one_line: bool,
    /// This event's first bytes (up to [`HEAD_CAP`]).
    head: Vec<u8>,
    phase: Phase,
    /// What `scanner` holds, as far as reusing the reference goes.
    scanner_holds: ScannerHolds,
    /// Offset changes of the event being ended as the reference (reused).
    shifts: Vec<(u64, i64)>,
    /// `shifts` are not yet applied to `scanner`: only [`Self::scanner`]
    /// needs them (reusing the reference again or scanning resets every
    /// offset), and a stream reads nothing of an event that it reuses.
    shifts_pending: bool,
}

/// What the scanner holds, so that an event that ends as the reference did
/// costs as little as it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScannerHolds {
    /// Another state: reusing the reference copies its end whole.
    Other,
    /// The reference's end, or that end finished (its offsets possibly
    /// moved): reusing the reference undoes the finish.
    ReferenceEnd,
    /// The reference's end finished, offsets unmoved, and what finishing it
    /// said: an event that reuses the reference needs nothing done.
    FinishedReferenceEnd(Result<(), ScanError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Every byte of this event so far is in `head`: nothing scanned yet.
    Holding,
    /// Longer than `head`: scanned as it streams.
    Streaming,
    /// Ended as the reference did, unscanned.
    Reused,
    /// Ended, scanned whole from `head`: the next reference.
    Scanned,
}

/// How much of the bytes compared with the reference is the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// All of them.
    Whole,
    /// Its data as an SSE stream carries it: the bytes up to the first line
    /// end, which must be a blank line's (`\n\n`).
    Line,
}

impl EventScanner {
    pub fn new(paths: PathSpec, capture_cap: usize) -> Self {
        EventScanner {
            scanner: JsonScanner::new(paths, capture_cap).recording_plain_values(),
            copy: None,
            reference: Vec::with_capacity(HEAD_CAP),
            reference_end: None,
            reference_one_line: false,
            head: Vec::with_capacity(HEAD_CAP),
            phase: Phase::Holding,
            scanner_holds: ScannerHolds::Other,
            shifts: Vec::new(),
            shifts_pending: false,
        }
    }

    /// The next bytes of the current event.
    pub fn feed(&mut self, bytes: &[u8]) {
        let room = HEAD_CAP.saturating_sub(self.head.len());
        if self.phase == Phase::Holding {
            if bytes.len() <= room {
                self.head.extend_from_slice(bytes);
                return;
            }
            self.phase = Phase::Streaming;
            self.scan_held();
        }
        self.head
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
        self.scanner.feed(bytes);
    }

    /// Scans the held bytes: from the copy where it covers no more than
    /// what they share with the reference, else from the start; keeps a
    /// copy that is valid for this event.
    fn scan_held(&mut self) {
        self.scanner_holds = ScannerHolds::Other;
        self.shifts_pending = false;
        let shared = common_prefix_len(&self.head, &self.reference);
        let from = match &self.copy {
            Some((at, copy)) if *at <= shared => {
                self.scanner.clone_from(copy);
                *at
            }
            _ => {
                self.scanner.reset();
                self.copy = None;
                0
            }
        };
        self.scanner
            .feed(self.head.get(from..shared).unwrap_or(&[]));
        // A copy within the bytes this event shares with the reference is
        // valid for both: this event becomes the reference.
        if shared > 0 && (self.copy.is_none() || shared >= from + RECOPY_GAIN) {
            self.copy = Some((shared, self.scanner.clone()));
        }
        self.scanner.feed(self.head.get(shared..).unwrap_or(&[]));
    }

    /// The event's length (of `bytes`, as `extent` says), when it differs
    /// from the reference only in the text of values the reference's scan
    /// read while capturing nothing — strings (whatever their escapes),
    /// literals — so that both end each such value in the same state: then
    /// `shifts` holds how the event's offsets moved.
    fn plain_text_match(&mut self, event: &[u8], extent: Extent) -> Option<usize> {
        self.shifts.clear();
        let end = self.reference_end.as_ref()?;
        let reference = self.reference.as_slice();
        let values = end.plain_values();
        let (mut at, mut at_ref, mut next_value) = (0, 0, 0);
        loop {
            let same = common_prefix_len(
                event.get(at..).unwrap_or(&[]),
                reference.get(at_ref..).unwrap_or(&[]),
            );
            at += same;
            at_ref += same;
            if at_ref == reference.len() {
                let ended = match extent {
                    Extent::Whole => at == event.len(),
                    Extent::Line => event.get(at..at + 2) == Some(b"\n\n"),
                };
                if ended {
                    return Some(at);
                }
            }
            // The first difference must be inside the text of a value the
            // reference's scan noted (its end included: the event's text may
            // run on).
            while values
                .get(next_value)
                .is_some_and(|value| value.to < at_ref as u64)
            {
                next_value += 1;
            }
            let value = values.get(next_value)?;
            let (from, to) = (
                usize::try_from(value.from).ok()?,
                usize::try_from(value.to).ok()?,
            );
            if at_ref < from {
                return None;
            }
            if value.literal {
                let rest = event.get(at..).unwrap_or(&[]);
                // A first byte that differs must start a literal too (and a
                // literal's bytes are no line end).
                let starts = at_ref > from || rest.first().is_some_and(|&b| starts_literal(b));
                let len = literal_end(rest).filter(|_| starts)?;
                at += len;
            } else {
                // The text from `from` to the difference is shared, so the
                // event's starts where the shift so far puts the
                // reference's. An odd run of backslashes just before the
                // difference (counted back no further than that start)
                // escapes the first differing byte.
                let start = (from + at).checked_sub(at_ref)?;
                let backslashes = event
                    .get(start..at)
                    .unwrap_or_default()
                    .iter()
                    .rev()
                    .take_while(|&&b| b == b'\\')
                    .count();
                let escaped_first = backslashes % 2 == 1;
                // Text the event does not share may not end its line. The
                // usual difference, a short token, ends (and is checked for
                // line ends) within one vector lane.
                at = match string_end_in_lane(event, at, escaped_first) {
                    Some((_, true)) if extent == Extent::Line => return None,
                    Some((quote, _)) => quote,
                    None => {
                        let from = at + usize::from(escaped_first);
                        let StringEnd::Closed(quote) = string_end(event, from) else {
                            return None;
                        };
                        let differing = event.get(at..quote).unwrap_or_default();
                        if extent == Extent::Line
                            && differing.iter().any(|&b| b == b'\r' || b == b'\n')
                        {
                            return None;
                        }
                        quote
                    }
                };
            }
            at_ref = to;
            next_value += 1;
            self.shifts.push((to as u64, at as i64 - at_ref as i64));
        }
    }

    /// Ends the current event: whether it was one complete JSON value. Its
    /// captures are read from [`Self::scanner`] until [`Self::next_event`].
    pub fn finish(&mut self) -> Result<(), ScanError> {
        if self.phase == Phase::Holding {
            let head = std::mem::take(&mut self.head);
            let reused = self.plain_text_match(&head, Extent::Whole).is_some();
            self.head = head;
            return self.end_held(reused);
        }
        self.scanner.finish()
    }

    /// An event whose data starts `rest` (an SSE line's value), ended as
    /// the reference did when its data is one line of at most `cap` bytes
    /// and a blank line, and differs from the reference as
    /// [`Self::finish_whole`] allows: its data's length and how it ended.
    /// Found by comparing it with the reference, without searching it for
    /// its line end first (the shared bytes are the reference's, which
    /// hold none). Otherwise nothing changes.
    pub fn finish_repeated(
        &mut self,
        rest: &[u8],
        cap: usize,
    ) -> Option<(usize, Result<(), ScanError>)> {
        if self.phase != Phase::Holding || !self.head.is_empty() || !self.reference_one_line {
            return None;
        }
        // Its data fits the head (as `finish_whole` compares no longer
        // event) and the cap: it ends within these bytes.
        let window = rest
            .get(..HEAD_CAP.min(cap).saturating_add(2))
            .unwrap_or(rest);
        let len = self
            .plain_text_match(window, Extent::Line)
            .filter(|&len| len > 0)?;
        Some((len, self.end_held(true)))
    }

    /// [`Self::feed`] of a whole event, then [`Self::finish`]; an event
    /// that ends as the reference did is compared in place, not copied.
    pub fn finish_whole(&mut self, event: &[u8]) -> Result<(), ScanError> {
        if self.phase == Phase::Holding && self.head.is_empty() && event.len() <= HEAD_CAP {
            let reused = self.plain_text_match(event, Extent::Whole).is_some();
            if !reused {
                self.head.extend_from_slice(event);
            }
            return self.end_held(reused);
        }
        self.feed(event);
        self.finish()
    }

    /// Ends the held event: as the reference did (`reused`), or scanned as
    /// the next reference.
    fn end_held(&mut self, reused: bool) -> Result<(), ScanError> {
        if reused {
            self.reuse_reference();
            if let ScannerHolds::FinishedReferenceEnd(result) = self.scanner_holds {
                return result;
            }
        } else {
            self.scan_held_as_reference();
        }
        let result = self.scanner.finish();
        self.scanner_holds = ScannerHolds::FinishedReferenceEnd(result);
        result
    }

    /// The held event ends as the reference did: its end state is taken.
    fn reuse_reference(&mut self) {
        // A scanner that is the reference's end finished, its offsets where
        // they were, is already what this event leaves.
        match (self.scanner_holds, &self.reference_end) {
            (ScannerHolds::FinishedReferenceEnd(_), _) | (_, None) => {}
            (ScannerHolds::ReferenceEnd, Some(end)) => self.scanner.unfinish(end),
            (ScannerHolds::Other, Some(end)) => {
                self.scanner.clone_from(end);
                self.scanner_holds = ScannerHolds::ReferenceEnd;
            }
        }
        // Finishing reads no offset that a shift moves (a literal
        // ended by the document's end is never a reusable value).
        self.shifts_pending = true;
        self.phase = Phase::Reused;
    }

    /// The held event is scanned, and becomes the next reference.
    fn scan_held_as_reference(&mut self) {
        self.scan_held();
        match &mut self.reference_end {
            Some(end) => end.clone_from(&self.scanner),
            None => self.reference_end = Some(self.scanner.clone()),
        }
        self.scanner_holds = ScannerHolds::ReferenceEnd;
        self.phase = Phase::Scanned;
    }

    /// Whether the event just finished ended as the reference did, unscanned:
    /// then it captured the same bytes and ended in the same state as the
    /// last event that [`Self::finish`] reported as not reused.
    pub fn ended_as_reference(&self) -> bool {
        self.phase == Phase::Reused
    }

    /// The scanner, with what it captured from the current event.
    pub fn scanner(&mut self) -> &JsonScanner {
        if std::mem::take(&mut self.shifts_pending) {
            self.scanner.shift_offsets(&self.shifts);
            if let ScannerHolds::FinishedReferenceEnd(_) = self.scanner_holds {
                self.scanner_holds = ScannerHolds::ReferenceEnd;
            }
        }
        &self.scanner
    }

    /// Ready for the next event, compared with the reference.
    pub fn next_event(&mut self) {
        match self.phase {
            // Nothing of this event was scanned (or it ended as the
            // reference): the reference stays.
            Phase::Holding | Phase::Reused => {}
            Phase::Scanned => {
                std::mem::swap(&mut self.reference, &mut self.head);
                self.reference_one_line = memchr::memchr2(b'\r', b'\n', &self.reference).is_none();
            }
            Phase::Streaming => {
                std::mem::swap(&mut self.reference, &mut self.head);
                self.reference_end = None;
                self.reference_one_line = false;
            }
        }
        self.head.clear();
        self.phase = Phase::Holding;
    }
}

#[cfg(test)]
mod tests;
