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
        for &b in bytes {
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
    }
}
