//! An incremental, byte-oriented parser for `text/event-stream` (SSE).
//!
//! Push-style: [`SseParser::feed`] takes whatever bytes arrived, in any
//! split, and hands each event's `data` to an [`EventSink`] as it streams
//! past — the parser itself keeps no event buffer, so memory does not grow
//! with event size. Handles LF, CRLF and CR line ends (also split across
//! chunks), comments, multi-line `data:` (joined with `\n`), other fields
//! (ignored), a leading UTF-8 BOM and `[DONE]`. Bytes are never decoded
//! here, so a UTF-8 character split across chunks needs no care.

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
const DONE: &[u8] = b"[DONE]";

/// What the parser reports about one event when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventEnd {
    /// The data was exactly `[DONE]`.
    pub done_marker: bool,
    /// The data was longer than the cap; the sink saw only its first bytes.
    pub oversized: bool,
}

/// Receives the data of events as it streams.
pub trait EventSink {
    /// Next bytes of the current event's data (lines joined with `\n`).
    fn data(&mut self, bytes: &[u8]);
    /// The current event ended (it had at least one `data` line).
    fn end_event(&mut self, end: EventEnd);
    /// A whole event at once, its data one line that arrived in one piece
    /// (the usual event): the same as [`Self::data`] then
    /// [`Self::end_event`], for a sink that can read it in place.
    fn whole_event(&mut self, data: &[u8], end: EventEnd) {
        if !data.is_empty() {
            self.data(data);
        }
        self.end_event(end);
    }
    /// The usual event, if the sink can tell without searching `rest` (what
    /// follows `data:` and its space) for a line end that it is one like an
    /// earlier one: its data one line of at most `cap` bytes, neither empty
    /// nor `[DONE]`, then a blank line (`\n\n`). Taken as
    /// [`Self::whole_event`] would take it; the data's length.
    fn repeated_event(&mut self, _rest: &[u8], _cap: usize) -> Option<usize> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Reading a field name.
    Name,
    /// Reading a `data` value; `first` until the optional leading space is seen.
    DataValue { first: bool },
    /// A comment or a field we do not need: skip to the end of the line.
    Skip,
}

pub struct SseParser<S: EventSink> {
    pub sink: S,
    line: Line,
    bom_matched: u8,
    bom_done: bool,
    /// The previous byte was CR: a following LF belongs to the same line end.
    after_cr: bool,
    name: [u8; 4],
    name_len: u8,
    name_overflow: bool,
    data_lines: u32,
    data_bytes: usize,
    data_cap: usize,
    /// The first bytes of data, to recognise `[DONE]`.
    head: [u8; 7],
    head_len: u8,
}

impl<S: EventSink> SseParser<S> {
    /// `data_cap`: the most data bytes of one event passed to the sink.
    pub fn new(sink: S, data_cap: usize) -> Self {
        SseParser {
            sink,
            line: Line::Start,
            bom_matched: 0,
            bom_done: false,
            after_cr: false,
            name: [0; 4],
            name_len: 0,
            name_overflow: false,
            data_lines: 0,
            data_bytes: 0,
            data_cap,
            head: [0; 7],
            head_len: 0,
        }
    }

    // Kept out of its callers: the metering entry point then stays small
    // for both body kinds, and V8's code for the JSON path does not
    // depend on this parser (inlined here, it cost 1 MiB bodies 10-12%).
    #[inline(never)]
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if !self.bom_done {
            while let (Some(&b), Some(&want)) =
                (chunk.first(), BOM.get(usize::from(self.bom_matched)))
            {
                if b != want {
                    break;
                }
                self.bom_matched += 1;
                chunk = chunk.get(1..).unwrap_or(&[]);
            }
            if usize::from(self.bom_matched) == BOM.len() || !chunk.is_empty() {
                self.bom_done = true;
            }
        }
        let mut i = 0;
        while let Some(&b) = chunk.get(i) {
            let crlf_tail = std::mem::replace(&mut self.after_cr, false) && b == b'\n';
            match self.line {
                // A `data:` line, the usual one, without reading its name
                // byte by byte (the same steps as the `Name` path below).
                Line::Start
                    if chunk
                        .get(i..)
                        .is_some_and(|rest| rest.starts_with(b"data:")) =>
                {
                    i += b"data:".len();
                    if self.data_lines == 0 {
                        if let Some(taken) = self.take_whole_event(chunk.get(i..).unwrap_or(&[])) {
                            i += taken;
                            continue;
                        }
                    }
                    self.name_overflow = false;
                    self.name = *b"data";
                    self.name_len = 4;
                    self.begin_data_line();
                    self.line = Line::DataValue { first: true };
                }
                // An `event:` line (the Responses API names every event):
                // a field this parser ignores, skipped without reading its
                // name byte by byte.
                Line::Start
                    if chunk
                        .get(i..)
                        .is_some_and(|rest| rest.starts_with(b"event:")) =>
                {
                    i += b"event:".len();
                    self.line = Line::Skip;
                }
                Line::Start => {
                    i += 1;
                    match b {
                        _ if crlf_tail => {}
                        b'\r' | b'\n' => {
                            self.after_cr = b == b'\r';
                            self.dispatch();
                        }
                        b':' => self.line = Line::Skip,
                        _ => {
                            self.name_len = 0;
                            self.name_overflow = false;
                            self.push_name(b);
                            self.line = Line::Name;
                        }
                    }
                }
                Line::Name => {
                    i += 1;
                    match b {
                        b':' => {
                            self.line = if self.is_data() {
                                self.begin_data_line();
                                Line::DataValue { first: true }
                            } else {
                                Line::Skip
                            };
                        }
                        b'\r' | b'\n' => {
                            // A field with no colon has an empty value.
                            if self.is_data() {
                                self.begin_data_line();
                            }
                            self.end_line(b);
                        }
                        _ => self.push_name(b),
                    }
                }
                Line::DataValue { first } => {
                    if first && b == b' ' {
                        i += 1;
                        self.line = Line::DataValue { first: false };
                        continue;
                    }
                    let rest = chunk.get(i..).unwrap_or(&[]);
                    let len = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    self.data(rest.get(..len).unwrap_or(&[]));
                    i += len;
                    if let Some(&eol) = chunk.get(i) {
                        i += 1;
                        self.end_line(eol);
                    } else {
                        self.line = Line::DataValue { first: false };
                    }
                }
                Line::Skip => {
                    let rest = chunk.get(i..).unwrap_or(&[]);
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        Some(len) => {
                            i += len + 1;
                            self.end_line(rest.get(len).copied().unwrap_or(b'\n'));
                        }
                        None => i = chunk.len(),
                    }
                }
            }
        }
    }

    /// The usual event, whole in `rest` (what follows its `data:`): one data
    /// line and a blank line, each ended by LF. Passes it to the sink in one
    /// piece, as the general path would (first offered as a repeated event,
    /// which the sink may recognise without a search for its line end), and
    /// returns the bytes it took.
    fn take_whole_event(&mut self, rest: &[u8]) -> Option<usize> {
        let space = usize::from(rest.first() == Some(&b' '));
        let value = rest.get(space..)?;
        if !value.starts_with(DONE) {
            if let Some(len) = self.sink.repeated_event(value, self.data_cap) {
                return Some(space + len + 2);
            }
        }
        let len = memchr::memchr2(b'\r', b'\n', value)?;
        if value.get(len..len + 2)? != b"\n\n" {
            return None;
        }
        let data = value.get(..len)?;
        let end = EventEnd {
            done_marker: data == DONE,
            oversized: len > self.data_cap,
        };
        self.sink
            .whole_event(data.get(..self.data_cap).unwrap_or(data), end);
        Some(space + len + 2)
    }

    /// The stream ended. An event without its terminating blank line is
    /// discarded, as the SSE spec says. Returns whether one was pending.
    pub fn finish(&mut self) -> bool {
        let pending = self.data_lines > 0;
        self.data_lines = 0;
        self.data_bytes = 0;
        self.head_len = 0;
        pending
    }

    fn end_line(&mut self, eol: u8) {
        self.after_cr = eol == b'\r';
        self.line = Line::Start;
    }

    fn push_name(&mut self, b: u8) {
        match self.name.get_mut(usize::from(self.name_len)) {
            Some(slot) => {
                *slot = b;
                self.name_len += 1;
            }
            None => self.name_overflow = true,
        }
    }

    fn is_data(&self) -> bool {
        !self.name_overflow && self.name.get(..usize::from(self.name_len)) == Some(b"data")
    }

    fn begin_data_line(&mut self) {
        if self.data_lines > 0 {
            self.data(b"\n");
        }
        self.data_lines += 1;
    }

    fn data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let room = self.data_cap.saturating_sub(self.data_bytes);
        let passed = bytes.get(..room.min(bytes.len())).unwrap_or(&[]);
        let held = usize::from(self.head_len);
        if let Some(room) = self.head.get_mut(held..) {
            let n = room.len().min(bytes.len());
            if let (Some(to), Some(from)) = (room.get_mut(..n), bytes.get(..n)) {
                to.copy_from_slice(from);
                self.head_len += n as u8;
            }
        }
        self.data_bytes = self.data_bytes.saturating_add(bytes.len());
        if !passed.is_empty() {
            self.sink.data(passed);
        }
    }

    fn dispatch(&mut self) {
        if self.data_lines == 0 {
            return;
        }
        let end = EventEnd {
            done_marker: self.head.get(..usize::from(self.head_len)) == Some(DONE),
            oversized: self.data_bytes > self.data_cap,
        };
        self.data_lines = 0;
        self.data_bytes = 0;
        self.head_len = 0;
        self.sink.end_event(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        current: Vec<u8>,
        events: Vec<(String, EventEnd)>,
    }
    impl EventSink for Collect {
        fn data(&mut self, bytes: &[u8]) {
            self.current.extend_from_slice(bytes);
        }
        fn end_event(&mut self, end: EventEnd) {
            let data = String::from_utf8(std::mem::take(&mut self.current)).unwrap();
            self.events.push((data, end));
        }
    }

    fn parse_split(stream: &[u8], splits: &[usize], cap: usize) -> Vec<(String, EventEnd)> {
        let mut p = SseParser::new(Collect::default(), cap);
        let mut last = 0;
        for &s in splits {
            p.feed(&stream[last..s]);
            last = s;
        }
        p.feed(&stream[last..]);
        p.finish();
        p.sink.events
    }

    fn plain(data: &str) -> (String, EventEnd) {
        (
            data.to_string(),
            EventEnd {
                done_marker: data == "[DONE]",
                oversized: false,
            },
        )
    }

    #[test]
    fn line_ends_comments_fields_and_multiline_data() {
        let stream = "\u{feff}: keep-alive\r\nevent: message\r\ndata: {\"a\":\r\ndata:1}\r\nid: 7\r\n\r\n\
                      data: é世界\rretry: 10\r\rdata\n\ndata: [DONE]\n\n: trailing comment\ndata: cut";
        let want = vec![
            plain("{\"a\":\n1}"),
            plain("é世界"),
            plain(""),
            plain("[DONE]"),
        ];
        let bytes = stream.as_bytes();
        assert_eq!(parse_split(bytes, &[], 1 << 20), want);
        for a in 0..=bytes.len() {
            assert_eq!(parse_split(bytes, &[a], 1 << 20), want, "split at {a}");
        }
        // Byte at a time.
        let all: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(parse_split(bytes, &all, 1 << 20), want);
    }

    /// Records how each event was handed over: whole, or in pieces.
    #[derive(Default)]
    struct HowHanded {
        collect: Collect,
        whole: Vec<bool>,
    }
    impl EventSink for HowHanded {
        fn data(&mut self, bytes: &[u8]) {
            self.collect.data(bytes);
        }
        fn end_event(&mut self, end: EventEnd) {
            self.collect.end_event(end);
            self.whole.push(false);
        }
        fn whole_event(&mut self, data: &[u8], end: EventEnd) {
            self.collect.data(data);
            self.collect.end_event(end);
            self.whole.push(true);
        }
    }

    #[test]
    fn the_usual_event_is_handed_over_whole_and_others_in_pieces() {
        let stream = b"data: {\"a\":1}\n\nevent: x\ndata:{}\n\ndata: [DONE]\n\n\
                       data: a\ndata: b\n\ndata: crlf\r\n\r\ndata: cut\n";
        let rest = b"\ndata: \n\n";
        let mut p = SseParser::new(HowHanded::default(), 1 << 20);
        p.feed(stream);
        p.feed(rest);
        p.finish();
        let events: Vec<_> = p
            .sink
            .collect
            .events
            .iter()
            .map(|(d, _)| d.as_str())
            .collect();
        assert_eq!(
            events,
            ["{\"a\":1}", "{}", "[DONE]", "a\nb", "crlf", "cut", ""]
        );
        assert!(p.sink.collect.events[2].1.done_marker);
        // Two data lines, CRLF line ends, a blank line in the next chunk:
        // the general path.
        assert_eq!(p.sink.whole, [true, true, true, false, false, false, true]);
    }

    #[test]
    fn event_lines_are_skipped_however_they_arrive() {
        let stream = b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent\ndata: 3\n\nevent:data: x\ndata: 4\n\n";
        let want: Vec<_> = ["1", "2", "3", "4"].map(plain).to_vec();
        for a in 0..=stream.len() {
            assert_eq!(parse_split(stream, &[a], 64), want, "split at {a}");
        }
    }

    #[test]
    fn an_oversized_whole_event_is_cut_and_flagged() {
        let mut p = SseParser::new(HowHanded::default(), 4);
        p.feed(b"data: 0123456789\n\n");
        assert_eq!(p.sink.whole, [true]);
        assert_eq!(
            p.sink.collect.events,
            [(
                "0123".to_string(),
                EventEnd {
                    done_marker: false,
                    oversized: true
                }
            )]
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert_eq!(
            parse_split(b"event: x\n\n: c\n\nid: 1\n\n", &[], 64),
            vec![]
        );
    }

    #[test]
    fn oversized_events_are_cut_and_flagged() {
        let events = parse_split(b"data: 0123456789\n\ndata: ok\n\n", &[], 4);
        assert_eq!(
            events,
            vec![
                (
                    "0123".to_string(),
                    EventEnd {
                        done_marker: false,
                        oversized: true
                    }
                ),
                plain("ok"),
            ]
        );
    }

    #[test]
    fn done_must_be_exact() {
        let events = parse_split(b"data: [DONE]x\n\ndata:[DONE]\n\n", &[], 64);
        assert!(!events[0].1.done_marker);
        assert!(events[1].1.done_marker);
    }

    #[test]
    fn unfinished_event_is_reported_by_finish() {
        let mut p = SseParser::new(Collect::default(), 64);
        p.feed(b"data: {\"usage\"");
        assert!(p.finish());
        assert!(p.sink.events.is_empty());
    }
}
