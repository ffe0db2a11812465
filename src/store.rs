//! The shared key-value store budgets live in: Envoy's shared data in
//! production (one per process, every worker), an in-memory store with the
//! same semantics in tests.
//!
//! Every write is a compare-and-swap, retried on conflict: no update is lost.
//! Envoy ignores the CAS value when the key does not exist yet, so a key is
//! created with [`CREATE_CAS`], a value no existing key holds in practice:
//! of two racing creators the second then fails with a CAS mismatch and
//! retries against the first one's value.

/// CAS value for creating writes (see the module docs).
pub const CREATE_CAS: u32 = u32::MAX;
/// Conflicting writers retry this often before giving up (never seen above
/// a handful with 2 workers; the cap only bounds a pathological case).
pub const MAX_CAS_ATTEMPTS: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    CasMismatch,
    /// Too many conflicting writers in a row.
    Contended,
    /// The host refused the call (status code).
    Host(u32),
}

/// A key-value store with compare-and-swap, as Envoy's shared data behaves:
/// `get` returns the value and its CAS token; `set` with `Some(cas)` fails
/// with [`StoreError::CasMismatch`] when the key exists with another token,
/// and succeeds whatever the token when the key does not exist.
pub trait Store {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// A store key: a prefix, then a slot number in at least 8 decimal digits
/// (`{n:08}`), made on the stack by hand: a slot's key is made for every
/// store access of a request, and the formatting machinery and an
/// allocation cost several times more.
pub type NumberedKey = crate::inline_text::InlineText<NUMBERED_KEY_CAP>;

/// Longest key (prefixes are constants checked against it where they are
/// defined, with [`numbered_key_fits`]).
const NUMBERED_KEY_CAP: usize = 40;
/// Digits of the largest `u32`.
const MAX_SLOT_DIGITS: usize = 10;

/// Whether every key made with `prefix` fits (for a compile-time check).
pub const fn numbered_key_fits(prefix: &str) -> bool {
    prefix.len() + MAX_SLOT_DIGITS <= NUMBERED_KEY_CAP
}

/// `prefix` then `n` in at least 8 decimal digits.
pub(crate) fn numbered_key(prefix: &'static str, n: u32) -> NumberedKey {
    let (digits, used) = crate::money::decimal_digits(u64::from(n));
    let digits = digits.get(..used.max(8)).unwrap_or(&digits);
    let mut key = NumberedKey::new();
    key.push(prefix.bytes());
    key.push(digits.iter().rev().copied());
    key
}

/// Fixed-width encoding of a stored record.
pub trait Record: Sized + Default {
    fn encode(&self) -> Encoded;
    /// None for a value of another layout (then it is treated as absent).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// Longest record (a session's or budget key's: 120 bytes).
const ENCODED_CAP: usize = 128;

/// A record's bytes, on the stack: a request writes its session's record
/// twice (reservation, settlement) and each budget key's as often.
#[derive(Clone, Copy)]
pub struct Encoded {
    bytes: [u8; ENCODED_CAP],
    len: usize,
}

impl std::ops::Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// A fixed-width record: `prefix`, then each value as 8 little-endian bytes
/// (what [`read_u64s`] reads back). Every record fits (each type's round
/// trip is tested): bytes past [`ENCODED_CAP`] would be dropped, and the
/// record then read as absent.
pub(crate) fn write_u64s(prefix: &[u8], values: &[u64]) -> Encoded {
    let mut out = Encoded {
        bytes: [0; ENCODED_CAP],
        len: 0,
    };
    for (slot, &b) in out.bytes.iter_mut().zip(prefix) {
        *slot = b;
        out.len += 1;
    }
    let rest = out.bytes.get_mut(out.len..).unwrap_or_default();
    let mut written = 0;
    for (slot, v) in rest.chunks_exact_mut(8).zip(values) {
        slot.copy_from_slice(&v.to_le_bytes());
        written += 8;
    }
    out.len += written;
    out
}

pub(crate) fn read_u64s<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    if bytes.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *slot = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(out)
}

/// A record as read from the store, with its CAS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<R> {
    pub record: Option<R>,
    pub cas: u32,
}

/// Updates one key with a CAS loop: `f` sees the current record (None when
/// absent) and returns the new one, or None to leave the key as it is.
/// Returns the record before and after.
pub fn update<S: Store + ?Sized, R: Record + Clone>(
    store: &S,
    key: &str,
    f: impl FnMut(Option<&R>) -> Option<R>,
) -> Result<(Option<R>, Option<R>), StoreError> {
    update_from(store, key, None, f)
}

/// [`update`], whose first write is tried against `seen` (the record as
/// read earlier) instead of reading it again: one store call instead of two
/// when nothing wrote the key since. A conflict reads it as usual; so does
/// a decision not to write, which is only ever taken on a fresh read.
pub fn update_from<S: Store + ?Sized, R: Record + Clone>(
    store: &S,
    key: &str,
    mut seen: Option<Seen<R>>,
    mut f: impl FnMut(Option<&R>) -> Option<R>,
) -> Result<(Option<R>, Option<R>), StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let from_seen = seen.is_some();
        let (current, cas) = match seen.take() {
            Some(s) => (s.record, s.cas),
            None => match store.get(key)? {
                Some((bytes, cas)) => (R::decode(&bytes), cas),
                None => (None, CREATE_CAS),
            },
        };
        let Some(next) = f(current.as_ref()) else {
            if from_seen {
                continue;
            }
            return Ok((current.clone(), current));
        };
        match store.set(key, &next.encode(), cas) {
            Ok(()) => return Ok((current, Some(next))),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// An in-memory [`Store`] for native use of the core: the unit tests, and
/// the benchmarks and instruction guard that drive whole exchanges.
pub mod mem {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Envoy's shared-data semantics, in memory: a global CAS counter,
    /// CAS ignored for missing keys, and an optional hook that runs before
    /// each `set` so tests can interleave a competing writer.
    type SetHook = Box<dyn FnMut(&MemStore, &str)>;

    #[derive(Default)]
    pub struct MemStore {
        pub(crate) map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: Cell<u32>,
        pub before_set: RefCell<Option<SetHook>>,
        pub conflicts: Cell<u32>,
    }

    impl Store for MemStore {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Ok(self.map.borrow().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            let hook = self.before_set.borrow_mut().take();
            if let Some(mut h) = hook {
                h(self, key);
                *self.before_set.borrow_mut() = Some(h);
            }
            let mut map = self.map.borrow_mut();
            if let Some((_, current)) = map.get(key) {
                if cas != 0 && cas != *current {
                    self.conflicts.set(self.conflicts.get() + 1);
                    return Err(StoreError::CasMismatch);
                }
            }
            let next = self.next_cas.get().wrapping_add(1).max(1);
            self.next_cas.set(next);
            map.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{numbered_key, numbered_key_fits, read_u64s, write_u64s};

    #[test]
    fn the_longest_record_is_written_whole() {
        let values: [u64; 13] = std::array::from_fn(|i| u64::MAX - i as u64);
        let encoded = write_u64s(&[7; 16], &values);
        assert_eq!(encoded.len(), 120);
        assert_eq!(encoded.get(..16), Some(&[7; 16][..]));
        assert_eq!(encoded.get(16..).and_then(read_u64s::<13>), Some(values));
    }

    #[test]
    fn numbered_keys_are_zero_padded_to_eight_digits() {
        for n in [0, 7, 12_345_678, 99_999_999, 100_000_000, u32::MAX] {
            assert_eq!(numbered_key("p/", n).as_str(), format!("p/{n:08}"));
        }
        let longest = "p".repeat(30);
        assert!(numbered_key_fits(longest.as_str()));
        let key = numbered_key(longest.leak(), u32::MAX);
        assert_eq!(key.as_str(), format!("{}{}", "p".repeat(30), u32::MAX));
    }
}
