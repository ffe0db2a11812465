//! Where a JSON string's text ends: at the first quote no backslash escapes.
//!
//! Up to its first backslash the text is searched for a quote or a
//! backslash (one vectorized byte search: text without escapes ends there).
//! From the first backslash on it is read 64 bytes at a time as two bit
//! masks — where its quotes are, where its backslashes are — and the
//! escaped positions follow from the backslash mask by integer arithmetic.
//! A block costs the same whatever it holds: text with a `\"` every few
//! bytes (which stopped a byte search at each one) is read as fast as text
//! without. In the filter's build (Wasm SIMD) and natively on x86-64
//! (SSE2) a block's masks take a few vector instructions; elsewhere they
//! are built byte by byte. [`string_end_in_lane`] reads one 16-byte lane
//! the same way, and notes line ends: where an SSE event's token that
//! differs from the last event's ends, in one step.

/// Where a string whose text starts at `chunk[from]` ends in this chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringEnd {
    /// At the closing quote at this index.
    Closed(usize),
    /// Not in this chunk; `escape_pending`: its last byte began an escape,
    /// so the next chunk's first byte is escaped.
    Open { escape_pending: bool },
}

const BLOCK: usize = 64;
/// Bits at even positions.
const EVEN: u64 = 0x5555_5555_5555_5555;

/// Finds the closing quote of a string whose text starts at `chunk[from]`;
/// that byte is not escaped by what came before it.
#[inline]
pub fn string_end(chunk: &[u8], from: usize) -> StringEnd {
    let text = chunk.get(from..).unwrap_or(&[]);
    // Up to the first backslash a byte search is faster (text without
    // escapes, such as base64 audio, never needs more); from there blocks.
    let Some(first) = memchr::memchr2(b'"', b'\\', text) else {
        return StringEnd::Open {
            escape_pending: false,
        };
    };
    if text.get(first) == Some(&b'"') {
        return StringEnd::Closed(from + first);
    }
    escaped_string_end(text.get(first..).unwrap_or(&[]), from + first)
}

/// [`string_end`] from the string's first backslash, `text`, at `chunk[from]`.
#[inline(never)]
fn escaped_string_end(text: &[u8], from: usize) -> StringEnd {
    let (blocks, tail) = text.as_chunks::<BLOCK>();
    let mut first_escaped = false;
    let mut at = from;
    for block in blocks {
        let (quotes, backslashes) = masks(block);
        if let Some(quote) = closing_quote(quotes, backslashes, &mut first_escaped) {
            return StringEnd::Closed(at + quote);
        }
        at += BLOCK;
    }
    // The tail, padded with zero bytes (neither a quote nor a backslash).
    let mut padded = [0u8; BLOCK];
    if let Some(head) = padded.get_mut(..tail.len()) {
        head.copy_from_slice(tail);
    }
    let (quotes, backslashes) = masks(&padded);
    let (escaped, _) = escaped_positions(backslashes, first_escaped);
    let closing = quotes & !escaped;
    if closing != 0 {
        return StringEnd::Closed(at + closing.trailing_zeros() as usize);
    }
    StringEnd::Open {
        // `tail.len()` < 64: the position just past the text.
        escape_pending: (escaped >> tail.len()) & 1 == 1,
    }
}

/// The first quote of a block that is not escaped; `first_escaped` carries
/// whether a block's first byte is escaped from one block to the next.
fn closing_quote(quotes: u64, backslashes: u64, first_escaped: &mut bool) -> Option<usize> {
    if backslashes == 0 && !*first_escaped {
        return (quotes != 0).then(|| quotes.trailing_zeros() as usize);
    }
    let (escaped, next_first_escaped) = escaped_positions(backslashes, *first_escaped);
    *first_escaped = next_first_escaped;
    let closing = quotes & !escaped;
    (closing != 0).then(|| closing.trailing_zeros() as usize)
}

/// The positions of a block that a backslash escapes (a run of backslashes
/// escapes the byte after it when the run is odd; within a run they escape
/// each other in pairs), and whether the next block's first byte is one.
/// `first_escaped`: the block's first byte is escaped by the one before.
fn escaped_positions(backslashes: u64, first_escaped: bool) -> (u64, bool) {
    let carried = u64::from(first_escaped);
    // An escaped backslash escapes nothing.
    let escaping = backslashes & !carried;
    let run_starts = escaping & !(escaping << 1);
    // Adding a run's lowest bit to it carries to the position just past it;
    // a run of odd length ends at a position of the other parity than its start.
    let past_even_started = escaping.wrapping_add(run_starts & EVEN) & !escaping;
    let (sum, odd_run_at_end) = escaping.overflowing_add(run_starts & !EVEN);
    let past_odd_started = sum & !escaping;
    let escaped = (past_even_started & !EVEN) | (past_odd_started & EVEN) | carried;
    // A run that reaches the block's end is cut there: one that started at
    // an odd position and runs to bit 63 is odd, so it escapes the next
    // block's first byte (the carry out of the sum says it did).
    (escaped, odd_run_at_end)
}

/// Bit `i` of each: `block[i]` is a quote; `block[i]` is a backslash.
fn masks(block: &[u8; BLOCK]) -> (u64, u64) {
    let (lanes, _) = block.as_chunks::<LANE>();
    let (mut quotes, mut backslashes) = (0u64, 0u64);
    for (i, lane) in lanes.iter().enumerate() {
        let v = Lane::load(lane);
        quotes |= u64::from(v.bits([b'"'])) << (LANE * i);
        backslashes |= u64::from(v.bits([b'\\'])) << (LANE * i);
    }
    (quotes, backslashes)
}

/// How many bytes [`string_end_in_lane`] reads.
pub const LANE: usize = 16;

/// Where a string whose text starts at `chunk[from]` ends, when it ends
/// within the [`LANE`] bytes from there (and the chunk holds all of them),
/// and whether a CR or LF comes before that end. `escaped_first`: the byte
/// at `from` is escaped by a backslash before it. One vector step: an SSE
/// event's token that differs from the last event's is found to end, and
/// checked for line ends, at once, escapes or not.
#[inline]
pub fn string_end_in_lane(chunk: &[u8], from: usize, escaped_first: bool) -> Option<(usize, bool)> {
    let lane = chunk
        .get(from..)
        .and_then(|rest| rest.first_chunk::<LANE>())?;
    let v = Lane::load(lane);
    // The usual token has no escape and no line end: its first stop is
    // its closing quote (one mask).
    let first_stop = v.bits([b'"', b'\\', b'\r', b'\n']).trailing_zeros() as usize;
    match lane.get(first_stop) {
        None => return None,
        Some(b'"') if !escaped_first => return Some((from + first_stop, false)),
        Some(_) => {}
    }
    let escaped = escaped_positions(u64::from(v.bits([b'\\'])), escaped_first).0;
    let closing = u64::from(v.bits([b'"'])) & !escaped;
    if closing == 0 {
        return None;
    }
    let at = closing.trailing_zeros();
    let before = (1u64 << at) - 1;
    let line_ends = v.bits([b'\r', b'\n']);
    Some((from + at as usize, u64::from(line_ends) & before != 0))
}

/// One [`LANE`] of bytes in a vector register (Wasm SIMD in the filter's
/// build, SSE2 on x86-64, the bytes themselves elsewhere): the one place the
/// masks above are built.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
struct Lane(core::arch::wasm32::v128);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl Lane {
    fn load(bytes: &[u8; LANE]) -> Lane {
        Lane(crate::wasm_lane::load(bytes))
    }

    /// Bit `i`: byte `i` is one of `bytes`.
    fn bits<const N: usize>(&self, bytes: [u8; N]) -> u16 {
        use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_splat, v128_or};
        let any = bytes.iter().fold(u8x16_splat(0), |any, &b| {
            v128_or(any, u8x16_eq(self.0, u8x16_splat(b)))
        });
        u8x16_bitmask(any)
    }
}

#[cfg(target_arch = "x86_64")]
struct Lane(core::arch::x86_64::__m128i);

#[cfg(target_arch = "x86_64")]
impl Lane {
    fn load(bytes: &[u8; LANE]) -> Lane {
        use core::arch::x86_64::{__m128i, _mm_loadu_si128};
        // SAFETY: SSE2 is part of every x86-64 CPU; the load reads the 16
        // bytes of `bytes` (unaligned loads are allowed).
        Lane(unsafe { _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>()) })
    }

    /// Bit `i`: byte `i` is one of `bytes`.
    fn bits<const N: usize>(&self, bytes: [u8; N]) -> u16 {
        use core::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
        };
        // SAFETY: SSE2 is part of every x86-64 CPU (the intrinsics need
        // nothing else).
        let any = unsafe {
            let any = bytes.iter().fold(_mm_setzero_si128(), |any, &b| {
                _mm_or_si128(any, _mm_cmpeq_epi8(self.0, _mm_set1_epi8(b as i8)))
            });
            _mm_movemask_epi8(any)
        };
        // movemask sets only the low 16 bits.
        any as u16
    }
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64"
)))]
struct Lane([u8; LANE]);

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64"
)))]
impl Lane {
    fn load(bytes: &[u8; LANE]) -> Lane {
        Lane(*bytes)
    }

    /// Bit `i`: byte `i` is one of `bytes`.
    fn bits<const N: usize>(&self, bytes: [u8; N]) -> u16 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |mask, (i, b)| mask | (u16::from(bytes.contains(b)) << i))
    }
}

/// The end as a byte-by-byte reading of the text says: the reference the
/// block reading is checked against.
#[doc(hidden)]
pub fn string_end_bytewise(chunk: &[u8], from: usize) -> StringEnd {
    let mut escaped = false;
    for (i, &b) in chunk.iter().enumerate().skip(from) {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return StringEnd::Closed(i);
        }
    }
    StringEnd::Open {
        escape_pending: escaped,
    }
}

/// [`string_end_in_lane`] byte by byte: what the vector step is checked against.
#[doc(hidden)]
pub fn string_end_in_lane_bytewise(
    chunk: &[u8],
    from: usize,
    escaped_first: bool,
) -> Option<(usize, bool)> {
    let lane = chunk.get(from..from.checked_add(LANE)?)?;
    let (mut escaped, mut line_end) = (escaped_first, false);
    for (i, &b) in lane.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Some((from + i, line_end));
        }
        line_end |= b == b'\r' || b == b'\n';
    }
    None
}

/// Checks [`string_end`] against [`string_end_bytewise`] on a fixed sweep:
/// runs of 0-130 backslashes before a quote, at every offset across the
/// first block's end, whole and cut after the run; then 20,000 pseudo-random
/// texts of up to 400 quotes, backslashes and other bytes, from several
/// starts. What it exercises is the build's vector code, so the filter's
/// Wasm build runs it too (`make wasm-check`). Returns how many it checked,
/// or the first text that differs.
#[doc(hidden)]
pub fn check_sweep() -> Result<usize, String> {
    let mut checked = 0;
    let mut check = |text: &[u8], from: usize| {
        checked += 1;
        let (got, want) = (string_end(text, from), string_end_bytewise(text, from));
        let lane_ends = [false, true].map(|escaped_first| {
            (
                string_end_in_lane(text, from, escaped_first),
                string_end_in_lane_bytewise(text, from, escaped_first),
            )
        });
        if got != want {
            Err(format!(
                "{text:?} from {from}: {got:?}, a bytewise reading {want:?}"
            ))
        } else if let Some((got, want)) = lane_ends.iter().find(|(got, want)| got != want) {
            Err(format!(
                "{text:?} from {from}: in one lane {got:?}, a bytewise reading {want:?}"
            ))
        } else {
            Ok(())
        }
    };
    for run in 0..=130usize {
        for start in 0..=130usize {
            let mut text = vec![b'a'; start];
            text.extend(std::iter::repeat_n(b'\\', run));
            text.extend_from_slice(b"\"bc\"");
            check(&text, 0)?;
            check(&text, start.min(1))?;
            check(text.get(..start + run).unwrap_or(&[]), 0)?;
        }
    }
    const BYTES: [u8; 10] = [b'a', b'\\', b'"', b'\\', 0xE9, b'n', 0, b'\\', b'\r', b'\n'];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64: deterministic, and enough to mix the bytes.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 400) as usize;
        let text: Vec<u8> = (0..len)
            .map(|_| BYTES.get((next() % 10) as usize).copied().unwrap_or(0))
            .collect();
        for from in [0, 1, 63, 64, 65] {
            check(&text, from.min(len))?;
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_finds_no_difference() {
        assert_eq!(check_sweep(), Ok(3 * 131 * 131 + 5 * 20_000));
    }

    proptest::proptest! {
        #[test]
        fn ends_where_a_byte_by_byte_reading_does(
            text in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'\\', b'"', b'\\', 0xE9, b'n', 0]),
                0..400,
            ),
            from in 0usize..64,
        ) {
            let from = from.min(text.len());
            proptest::prop_assert_eq!(string_end(&text, from), string_end_bytewise(&text, from));
        }
    }
}
