//! Incremental UTF-8 validation: bytes arrive in chunks, a character may be
//! split anywhere, and only a few bytes of state are kept.

/// Validates a byte stream fed in pieces (RFC 3629: no overlongs, no
/// surrogates, nothing above U+10FFFF).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still expected for the current character.
    pending: u8,
    /// Allowed range of the next byte (the first continuation byte is narrower for some leads).
    lo: u8,
    hi: u8,
    invalid: bool,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.invalid {
            return;
        }
        let mut rest = bytes;
        loop {
            if self.pending == 0 {
                rest = after_ascii(rest);
            }
            let Some((&b, after)) = rest.split_first() else {
                return;
            };
            rest = after;
            if self.pending > 0 {
                if b < self.lo || b > self.hi {
                    self.invalid = true;
                    return;
                }
                self.pending -= 1;
                (self.lo, self.hi) = (0x80, 0xBF);
                continue;
            }
            (self.pending, self.lo, self.hi) = match b {
                0x00..=0x7F => continue,
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                0xED => (2, 0x80, 0x9F),
                0xF0 => (3, 0x90, 0xBF),
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                _ => {
                    self.invalid = true;
                    return;
                }
            };
        }
    }

    /// Whether everything fed so far is valid; `complete`: also no character left unfinished.
    pub fn is_valid(&self, complete: bool) -> bool {
        !self.invalid && (!complete || self.pending == 0)
    }
}

/// Each byte's high bit in a 64-bit word: set only in non-ASCII bytes.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// What follows the leading ASCII bytes, skipped 64 at a time (one test
/// and one branch per block), then eight at a time: most of what is
/// validated (JSON text, base64 audio) is ASCII.
fn after_ascii(bytes: &[u8]) -> &[u8] {
    let mut rest = bytes;
    while let Some((block, after)) = rest.split_first_chunk::<64>() {
        if !is_ascii_block(block) {
            break;
        }
        rest = after;
    }
    while let Some((word, after)) = rest.split_first_chunk::<8>() {
        if u64::from_le_bytes(*word) & HIGH_BITS != 0 {
            break;
        }
        rest = after;
    }
    rest
}

/// Whether no byte of the block has its high bit set: four vectors OR-ed,
/// then their high bits (Wasm SIMD in the filter).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn is_ascii_block(block: &[u8; 64]) -> bool {
    use core::arch::wasm32::{u8x16, u8x16_bitmask, v128, v128_or};
    let (lanes, _) = block.as_chunks::<16>();
    let any = lanes.iter().fold(
        u8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        |any: v128, lane| v128_or(any, crate::wasm_lane::load(lane)),
    );
    u8x16_bitmask(any) == 0
}

/// Whether no byte of the block has its high bit set: eight words OR-ed,
/// then one test.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn is_ascii_block(block: &[u8; 64]) -> bool {
    let (words, _) = block.as_chunks::<8>();
    let any = words
        .iter()
        .fold(0u64, |any, word| any | u64::from_le_bytes(*word));
    any & HIGH_BITS == 0
}

/// Checks the validator against the standard library's reading on texts
/// with a character or a fault at every place of runs long enough for the
/// 64-byte blocks, fed whole and in two pieces. The filter's Wasm build
/// runs it too (`make wasm-check`): the block test differs there. Returns
/// how many it checked, or the first text that differs.
#[doc(hidden)]
pub fn check_sweep() -> Result<usize, String> {
    let mut checked = 0;
    let inserts: [&[u8]; 6] = [
        b"\xc3\xa9",
        b"\xe4\xb8\x96",
        b"\xf0\x9f\x98\x80",
        b"\xff",
        b"\x80",
        b"\xed\xa0\x80",
    ];
    for len in [63usize, 64, 65, 130, 200] {
        for at in 0..len {
            for insert in inserts {
                let mut text = vec![b'a'; len];
                text.splice(at..=at, insert.iter().copied());
                let want = std::str::from_utf8(&text).is_ok();
                for split in [0, at, at + 1, text.len() / 2] {
                    let split = split.min(text.len());
                    let (head, tail) = text.split_at(split);
                    let mut v = Utf8Validator::new();
                    v.feed(head);
                    v.feed(tail);
                    checked += 1;
                    if v.is_valid(true) != want {
                        return Err(format!("{text:?} split at {split}: valid {}", !want));
                    }
                }
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_split(bytes: &[u8]) -> bool {
        let whole = {
            let mut v = Utf8Validator::new();
            v.feed(bytes);
            v.is_valid(true)
        };
        for split in 0..=bytes.len() {
            let mut v = Utf8Validator::new();
            v.feed(&bytes[..split]);
            v.feed(&bytes[split..]);
            assert_eq!(v.is_valid(true), whole, "split {split}");
        }
        assert_eq!(whole, std::str::from_utf8(bytes).is_ok());
        whole
    }

    #[test]
    fn the_sweep_agrees_with_std() {
        assert!(check_sweep().is_ok_and(|checked| checked > 10_000));
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        assert!(valid_split("plain é世界 😀 \u{10FFFF}".as_bytes()));
        for bad in [
            &b"\xff"[..],
            b"\xc0\x80",         // overlong
            b"\xe0\x80\x80",     // overlong
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\x80",
            b"ok\xe4\xb8", // cut short
        ] {
            assert!(!valid_split(bad), "{bad:?}");
        }
        // Long ASCII runs around multi-byte characters and faults, at every split.
        let run = "abcdefghijklmnopqrstuvwxyz0123456789";
        assert!(valid_split(
            format!("{run}é{run}世界{run}😀{run}").as_bytes()
        ));
        let mut bad = format!("{run}{run}").into_bytes();
        bad.insert(40, 0xff);
        assert!(!valid_split(&bad));
        // A character or a fault at every place of a run long enough for
        // the 64-byte blocks.
        for at in 0..150 {
            let mut text = vec![b'a'; 150];
            text.splice(at..=at, "é".bytes());
            assert!(valid_split(&text), "é at {at}");
            text.splice(at..=at, [0xff]);
            assert!(!valid_split(&text), "0xff at {at}");
        }
    }

    proptest::proptest! {
        /// Mostly-ASCII bytes with some of every other kind, fed in two pieces.
        #[test]
        fn agrees_with_std_on_any_bytes(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    6 => 0x20u8..0x7f,
                    1 => 0x80u8..=0xff,
                    1 => proptest::prelude::any::<u8>(),
                ],
                0..200,
            ),
            split in 0usize..200,
        ) {
            let split = split.min(bytes.len());
            let mut v = Utf8Validator::new();
            v.feed(&bytes[..split]);
            v.feed(&bytes[split..]);
            proptest::prop_assert_eq!(v.is_valid(true), std::str::from_utf8(&bytes).is_ok());
        }

        /// Any text is valid, split anywhere (even inside a character).
        #[test]
        fn text_is_valid_at_any_split(text in "[a-z ]{0,20}\\PC{0,20}[a-z ]{0,20}", split in 0usize..200) {
            let bytes = text.as_bytes();
            let split = split.min(bytes.len());
            let mut v = Utf8Validator::new();
            v.feed(&bytes[..split]);
            v.feed(&bytes[split..]);
            proptest::prop_assert!(v.is_valid(true));
        }
    }
}
