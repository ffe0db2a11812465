//! Scans a stream of similar JSON documents — the events of one SSE stream —
//! without scanning again the bytes each one repeats from the one before.
//!
//! The events of a stream share a long prefix (`{"id":"chatcmpl-…","object":
//! "chat.completion.chunk","created":…,"model":"…","choices":[{"index":0,
//! "delta":{"content":"`); only a few bytes of each differ. The scanner is
//! deterministic and indifferent to how its input is split, so its state
//! after a prefix depends on the prefix's bytes alone: a copy of that state,
//! taken once, stands for scanning those bytes again in every event that
//! starts with them. An event's bytes are compared with the previous event's
//! first bytes as they arrive (a comparison costs a fraction of a scan), held
//! while they match, then the scan resumes from the copy, or from the start
//! where no copy applies. What is captured and what counts as malformed are
//! exactly what scanning every byte gives (tested against it).

use crate::json_scan::{JsonScanner, PathSpec, ScanError};

/// The most bytes of an event compared with the next one's (and held while
/// they match).
const HEAD_CAP: usize = 512;
/// A copy is taken again only when the shared prefix grew by this many
/// bytes: a copy costs about what scanning a few dozen bytes does.
const RECOPY_GAIN: usize = 32;

/// How many first bytes `a` and `b` share, compared eight at a time.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (a.get(..n).unwrap_or(&[]), b.get(..n).unwrap_or(&[]));
    let mut same = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        if x != y {
            break;
        }
        same += 8;
    }
    let tail = a.get(same..).unwrap_or(&[]).iter();
    same + tail
        .zip(b.get(same..).unwrap_or(&[]))
        .take_while(|(x, y)| x == y)
        .count()
}

pub struct EventScanner {
    scanner: JsonScanner,
    /// The scanner's state after the first `.0` bytes of `prev_head`.
    copy: Option<(usize, JsonScanner)>,
    /// The previous event's first bytes (up to [`HEAD_CAP`]).
    prev_head: Vec<u8>,
    /// This event's first bytes (up to [`HEAD_CAP`]).
    head: Vec<u8>,
    /// Every byte of this event so far equals `prev_head`'s: held, not yet scanned.
    matching: bool,
}

impl EventScanner {
    pub fn new(paths: PathSpec, capture_cap: usize) -> Self {
        EventScanner {
            scanner: JsonScanner::new(paths, capture_cap),
            copy: None,
            prev_head: Vec::with_capacity(HEAD_CAP),
            head: Vec::with_capacity(HEAD_CAP),
            matching: true,
        }
    }

    /// The next bytes of the current event.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.matching {
            let want = self.prev_head.get(self.head.len()..).unwrap_or(&[]);
            let same = common_prefix_len(bytes, want);
            let (held, rest) = bytes.split_at(same);
            let more_to_compare = rest.is_empty() && same < want.len();
            self.head.extend_from_slice(held);
            if more_to_compare {
                return;
            }
            bytes = rest;
            self.scan_held();
        }
        let room = HEAD_CAP.saturating_sub(self.head.len());
        self.head
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
        self.scanner.feed(bytes);
    }

    /// Scans the held bytes: from the copy if it covers no more than them,
    /// else from the start; then keeps a copy that is valid for this event.
    fn scan_held(&mut self) {
        self.matching = false;
        let held = self.head.len();
        let from = match &self.copy {
            Some((at, copy)) if *at <= held => {
                self.scanner.clone_from(copy);
                *at
            }
            _ => {
                self.scanner.reset();
                self.copy = None;
                0
            }
        };
        self.scanner.feed(self.head.get(from..).unwrap_or(&[]));
        // The next event is compared with this one: a copy taken within the
        // bytes this one shares with the previous event stays valid.
        if held > 0 && (self.copy.is_none() || held >= from + RECOPY_GAIN) {
            self.copy = Some((held, self.scanner.clone()));
        }
    }

    /// Ends the current event: whether it was one complete JSON value. Its
    /// captures are read from [`Self::scanner`] until [`Self::next_event`].
    pub fn finish(&mut self) -> Result<(), ScanError> {
        if self.matching {
            self.scan_held();
        }
        self.scanner.finish()
    }

    /// The scanner, with what it captured from the current event.
    pub fn scanner(&self) -> &JsonScanner {
        &self.scanner
    }

    /// Ready for the next event, compared with this one.
    pub fn next_event(&mut self) {
        if self.matching {
            // Nothing of this event was scanned: drop it, keep the previous head.
            self.head.clear();
            return;
        }
        std::mem::swap(&mut self.prev_head, &mut self.head);
        self.head.clear();
        self.matching = true;
    }
}

#[cfg(test)]
mod tests;
