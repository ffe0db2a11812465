//! Short text made on the stack: a request's store keys and the amounts
//! its filter state and headers carry are made for every request, and an
//! allocation costs the Wasm build a trip through its allocator.

/// Up to `N` bytes of ASCII text. Its makers write only ASCII and make
/// sure it fits — a store key's prefix is checked at compile time, an
/// amount's longest text is the cap — so bytes past `N` are dropped.
#[derive(Clone, Copy)]
pub struct InlineText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> InlineText<N> {
    pub(crate) const fn new() -> Self {
        InlineText {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Appends `text` (ASCII), as much of it as fits.
    pub(crate) fn push(&mut self, text: impl IntoIterator<Item = u8>) {
        for b in text {
            let Some(slot) = self.bytes.get_mut(self.len) else {
                return;
            };
            *slot = b;
            self.len += 1;
        }
    }

    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl<const N: usize> std::ops::Deref for InlineText<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> AsRef<str> for InlineText<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> std::fmt::Display for InlineText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for InlineText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl<const N: usize> PartialEq<&str> for InlineText<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::InlineText;

    #[test]
    fn keeps_what_fits_and_drops_the_rest() {
        let mut text = InlineText::<4>::new();
        text.push(*b"ab");
        assert_eq!(text, "ab");
        text.push(*b"cdef");
        assert_eq!((text.as_str(), text.len()), ("abcd", 4));
    }
}
