//! An incremental RFC 6455 frame parser (one per direction) and frame encoding.
//!
//! Push-style: [`FrameParser::feed`] takes the bytes of one body callback and
//! reports frame starts, payload slices (as they are, still masked) and frame
//! ends, each with its position in that chunk, so the caller knows the frame
//! boundaries where it may insert or cut. The parser keeps only the current
//! frame's header (at most 14 bytes) across chunks: payloads are never
//! buffered or copied.

/// Opcodes.
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..3 as the top three bits of the first byte (RSV1 = 0x40: compressed).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
    pub fn is_compressed(&self) -> bool {
        self.rsv & 0x40 != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A reserved opcode.
    BadOpcode,
    /// A control frame longer than 125 bytes or fragmented.
    BadControlFrame,
    /// A 64-bit length with its most significant bit set.
    BadLength,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A frame's header was read. `at`: where the frame began in this chunk,
    /// or None when its header began in an earlier chunk.
    Start {
        header: FrameHeader,
        at: Option<usize>,
    },
    /// The next payload bytes, still masked; `offset` is their position in
    /// the payload (for unmasking).
    Payload {
        header: FrameHeader,
        data: &'a [u8],
        offset: u64,
    },
    /// The frame ended just before `at` in this chunk.
    End { header: FrameHeader, at: usize },
    /// The stream is not valid WebSocket from here on; the parser stops.
    Error(FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload,
    Failed,
}

pub struct FrameParser {
    state: State,
    head: [u8; 14],
    head_len: usize,
    /// Where the current header began in the chunk being fed (None: earlier chunk).
    head_at: Option<usize>,
    header: FrameHeader,
    consumed: u64,
}

impl Default for FrameParser {
    fn default() -> Self {
        Self::new()
    }
}

/// Header length once its first two bytes are known.
fn header_len(b0_b1: [u8; 2]) -> usize {
    let masked = b0_b1[1] & 0x80 != 0;
    let ext = match b0_b1[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if masked { 4 } else { 0 }
}

impl FrameParser {
    pub fn new() -> Self {
        FrameParser {
            state: State::Header,
            head: [0; 14],
            head_len: 0,
            head_at: None,
            header: FrameHeader::default(),
            consumed: 0,
        }
    }

    /// True between frames (no frame partly read).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Header && self.head_len == 0
    }

    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Feeds one chunk. `on` sees every event in order; returning false stops
    /// the parse of this chunk (the parser is then left mid-stream: use it
    /// only when the rest of the stream is to be ignored).
    pub fn feed<'a>(&mut self, chunk: &'a [u8], mut on: impl FnMut(FrameEvent<'a>) -> bool) {
        let mut i = 0;
        while i < chunk.len() || (self.state == State::Payload && self.header.len == self.consumed)
        {
            match self.state {
                State::Failed => return,
                State::Header => {
                    if self.head_len == 0 {
                        self.head_at = Some(i);
                    }
                    let need = if self.head_len < 2 {
                        2
                    } else {
                        header_len([self.head[0], self.head[1]])
                    };
                    let take = (need - self.head_len).min(chunk.len() - i);
                    if let (Some(dst), Some(src)) = (
                        self.head.get_mut(self.head_len..self.head_len + take),
                        chunk.get(i..i + take),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    self.head_len += take;
                    i += take;
                    if self.head_len < need {
                        continue;
                    }
                    if need == 2 && header_len([self.head[0], self.head[1]]) > 2 {
                        continue; // extended length or mask still to come
                    }
                    match self.decode_header() {
                        Ok(h) => {
                            self.header = h;
                            self.consumed = 0;
                            self.head_len = 0;
                            self.state = State::Payload;
                            if !on(FrameEvent::Start {
                                header: h,
                                at: self.head_at,
                            }) {
                                return;
                            }
                        }
                        Err(e) => {
                            self.state = State::Failed;
                            on(FrameEvent::Error(e));
                            return;
                        }
                    }
                }
                State::Payload => {
                    let left = self.header.len - self.consumed;
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len() - i);
                    if take > 0 {
                        let data = chunk.get(i..i + take).unwrap_or(&[]);
                        let offset = self.consumed;
                        self.consumed += take as u64;
                        i += take;
                        if !on(FrameEvent::Payload {
                            header: self.header,
                            data,
                            offset,
                        }) {
                            return;
                        }
                    }
                    if self.consumed == self.header.len {
                        self.state = State::Header;
                        self.head_at = None;
                        if !on(FrameEvent::End {
                            header: self.header,
                            at: i,
                        }) {
                            return;
                        }
                    }
                }
            }
        }
        // A header left partial began in this chunk, which is now past.
        self.head_at = None;
    }

    fn decode_header(&self) -> Result<FrameHeader, FrameError> {
        let h = &self.head;
        // The header is complete, so every read below is within `head`.
        let at = |pos: usize| h.get(pos).copied().unwrap_or(0);
        let array = |pos: usize| -> [u8; 8] { std::array::from_fn(|i| at(pos + i)) };
        let (b0, b1) = (at(0), at(1));
        let opcode = b0 & 0x0F;
        let fin = b0 & 0x80 != 0;
        let (len, mask_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([at(2), at(3)])), 4),
            127 => {
                let len = u64::from_be_bytes(array(2));
                if len >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = (b1 & 0x80 != 0).then(|| std::array::from_fn(|i| at(mask_at + i)));
        if !matches!(
            opcode,
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(FrameError::BadOpcode);
        }
        if opcode & 0x8 != 0 && (len > 125 || !fin) {
            return Err(FrameError::BadControlFrame);
        }
        Ok(FrameHeader {
            fin,
            rsv: b0 & 0x70,
            opcode,
            mask,
            len,
        })
    }
}

/// XORs `data` (at `offset` in its payload) with the frame's mask into `out`.
pub fn unmask_into(data: &[u8], mask: Option<[u8; 4]>, offset: u64, out: &mut Vec<u8>) {
    match mask {
        None => out.extend_from_slice(data),
        Some(m) => out.extend(data.iter().enumerate().map(|(i, b)| {
            b ^ m
                .get(((offset + i as u64) % 4) as usize)
                .copied()
                .unwrap_or(0)
        })),
    }
}

/// One complete frame (FIN set). `mask`: Some for client→server frames.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    unmask_into(payload, mask, 0, &mut out);
    out
}

/// A Close frame with a status code and reason.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    // Control payloads are at most 125 bytes.
    payload.extend_from_slice(
        reason
            .as_bytes()
            .get(..reason.len().min(123))
            .unwrap_or(&[]),
    );
    encode_frame(OP_CLOSE, &payload, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Ev {
        Start(u8, Option<usize>, u64),
        Payload(Vec<u8>),
        End(usize),
        Error(FrameError),
    }

    /// Feeds `stream` split at `splits`; returns events with positions made
    /// absolute, payloads unmasked and merged per frame.
    fn parse(stream: &[u8], splits: &[usize]) -> Vec<Ev> {
        let mut p = FrameParser::new();
        let mut evs: Vec<Ev> = Vec::new();
        let mut last = 0;
        let mut bounds: Vec<usize> = splits.to_vec();
        bounds.push(stream.len());
        for &b in &bounds {
            let base = last;
            p.feed(&stream[last..b], |e| {
                match e {
                    FrameEvent::Start { header, at } => {
                        evs.push(Ev::Start(header.opcode, at.map(|a| a + base), header.len))
                    }
                    FrameEvent::Payload {
                        header,
                        data,
                        offset,
                    } => {
                        let mut out = Vec::new();
                        unmask_into(data, header.mask, offset, &mut out);
                        if let Some(Ev::Payload(prev)) = evs.last_mut() {
                            prev.extend_from_slice(&out);
                        } else {
                            evs.push(Ev::Payload(out));
                        }
                    }
                    FrameEvent::End { at, .. } => evs.push(Ev::End(at + base)),
                    FrameEvent::Error(e) => evs.push(Ev::Error(e)),
                }
                true
            });
            last = b;
        }
        evs
    }

    fn normalise(evs: Vec<Ev>) -> Vec<Ev> {
        // Header start positions are only known when the header began in the chunk.
        evs.into_iter()
            .map(|e| match e {
                Ev::Start(op, _, len) => Ev::Start(op, None, len),
                e => e,
            })
            .collect()
    }

    #[test]
    fn frames_of_every_length_form_and_mask_at_every_split() {
        let mut stream = Vec::new();
        stream.extend(encode_frame(OP_TEXT, b"hello", None));
        stream.extend(encode_frame(OP_BINARY, &vec![7u8; 300], Some([1, 2, 3, 4])));
        stream.extend(encode_frame(OP_PING, b"", None));
        stream.extend(encode_frame(
            OP_TEXT,
            &vec![b'a'; 70_000],
            Some([9, 8, 7, 6]),
        ));
        stream.extend(close_frame(1000, "bye", None));
        let whole = parse(&stream, &[]);
        assert_eq!(whole[0], Ev::Start(OP_TEXT, Some(0), 5));
        assert_eq!(whole[1], Ev::Payload(b"hello".to_vec()));
        assert_eq!(whole[2], Ev::End(7));
        assert_eq!(whole[4], Ev::Payload(vec![7u8; 300]));
        assert_eq!(whole[6], Ev::Start(OP_PING, Some(7 + 8 + 300), 0));
        assert_eq!(whole.last(), Some(&Ev::End(stream.len())));
        let want = normalise(whole);
        for split in (0..stream.len()).step_by(97).chain(0..40) {
            assert_eq!(normalise(parse(&stream, &[split])), want, "split {split}");
        }
        let every: Vec<usize> = (1..400).collect();
        let prefix = &stream[..400];
        assert_eq!(
            normalise(parse(prefix, &every)),
            normalise(parse(prefix, &[]))
        );
    }

    #[test]
    fn start_position_known_only_for_headers_in_the_chunk() {
        let stream = encode_frame(OP_TEXT, &[1u8; 200], None); // 4-byte header
        let evs = parse(&stream, &[2]);
        assert_eq!(evs[0], Ev::Start(OP_TEXT, None, 200));
        let evs = parse(&stream, &[4]);
        assert_eq!(evs[0], Ev::Start(OP_TEXT, Some(0), 200));
    }

    #[test]
    fn rejects_invalid_frames() {
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse(&huge, &[]), vec![Ev::Error(FrameError::BadLength)]);
        assert_eq!(
            parse(&[0x83, 0], &[]),
            vec![Ev::Error(FrameError::BadOpcode)]
        );
        assert_eq!(
            parse(&[0x89, 126, 0, 200], &[]),
            vec![Ev::Error(FrameError::BadControlFrame)]
        );
        assert_eq!(
            parse(&[0x09, 0], &[]),
            vec![Ev::Error(FrameError::BadControlFrame)]
        );
        // After an error nothing more is reported.
        let mut p = FrameParser::new();
        p.feed(&[0x83, 0], |_| true);
        assert!(p.failed());
        let mut n = 0;
        p.feed(&encode_frame(OP_TEXT, b"x", None), |_| {
            n += 1;
            true
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn fragmented_message_with_interleaved_control_frame() {
        let mut stream = Vec::new();
        let mut first = encode_frame(OP_TEXT, b"{\"type\":", None);
        first[0] &= 0x7F; // not FIN
        stream.extend(first);
        stream.extend(encode_frame(OP_PING, b"p", None));
        stream.extend(encode_frame(OP_CONTINUATION, b"\"x\"}", None));
        let evs = parse(&stream, &[]);
        let starts: Vec<u8> = evs
            .iter()
            .filter_map(|e| {
                if let Ev::Start(op, _, _) = e {
                    Some(*op)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(starts, vec![OP_TEXT, OP_PING, OP_CONTINUATION]);
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let f = close_frame(CLOSE_POLICY_VIOLATION, "Budget exceeded", None);
        assert_eq!(f[0], 0x88);
        assert_eq!(&f[2..4], &[0x03, 0xF0]);
        assert_eq!(&f[4..], b"Budget exceeded");
        let masked = close_frame(1008, "x", Some([1, 2, 3, 4]));
        assert_eq!(masked[1], 0x80 | 3);
        assert_eq!(parse(&masked, &[])[1], Ev::Payload(vec![0x03, 0xF0, b'x']));
    }

    #[test]
    fn zero_length_frames_end_immediately() {
        let mut stream = encode_frame(OP_TEXT, b"", None);
        stream.extend(encode_frame(OP_PONG, b"", None));
        assert_eq!(
            parse(&stream, &[1, 3]),
            vec![
                Ev::Start(OP_TEXT, None, 0),
                Ev::End(2),
                Ev::Start(OP_PONG, None, 0),
                Ev::End(4)
            ]
        );
    }
}
