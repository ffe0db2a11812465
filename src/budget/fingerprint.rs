//! What a store slot keeps of a key: a SHA-256 prefix of it, remembered for
//! the keys of recent requests.
//!
//! A session or budget key makes many requests, and hashing it again for
//! each cost ~3.5k instructions natively (twice that in V8) — a tenth of a
//! small request's core work. The fingerprint is a pure function of the key,
//! so a bounded memo of recent keys changes nothing but that cost.

use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// Keys remembered (direct-mapped by a hash of the key's bytes).
const MEMO_ENTRIES: usize = 64;
/// Longer keys are hashed every time (a session id is at most 256 bytes).
const MEMO_MAX_KEY: usize = 320;

/// A fingerprint of the concatenation of `parts`: the first 16 bytes of its
/// SHA-256 (never the key itself), never all-zero (that marks a free slot).
pub(crate) fn slot_fingerprint(parts: &[&[u8]]) -> [u8; 16] {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MEMO_MAX_KEY {
        return sha256_fingerprint(parts);
    }
    MEMO.with(|memo| memo.borrow_mut().fingerprint(parts))
}

fn sha256_fingerprint(parts: &[&[u8]]) -> [u8; 16] {
    let digest = parts
        .iter()
        .fold(Sha256::new(), |h, part| h.chain_update(part))
        .finalize();
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    if fingerprint == [0; 16] {
        fingerprint[0] = 1;
    }
    fingerprint
}

thread_local! {
    // One per thread: a Wasm VM has one; native tests get one each.
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

#[derive(Default)]
struct Memo {
    entries: Vec<Entry>,
}

#[derive(Default)]
struct Entry {
    key: Vec<u8>,
    fingerprint: [u8; 16],
}

impl Memo {
    fn fingerprint(&mut self, parts: &[&[u8]]) -> [u8; 16] {
        if self.entries.is_empty() {
            self.entries.resize_with(MEMO_ENTRIES, Entry::default);
        }
        let Some(entry) = self.entries.get_mut(memo_index(parts)) else {
            return sha256_fingerprint(parts);
        };
        // An unused entry has an empty key and no key here is empty: the
        // parts always include a domain prefix.
        if entry.fingerprint != [0; 16] && is_concatenation(&entry.key, parts) {
            return entry.fingerprint;
        }
        entry.fingerprint = sha256_fingerprint(parts);
        entry.key.clear();
        parts.iter().for_each(|p| entry.key.extend_from_slice(p));
        entry.fingerprint
    }
}

/// FNV-1a over the parts' bytes, folded to an entry: cheap, and keys that
/// differ anywhere land apart.
fn memo_index(parts: &[&[u8]]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    ((h ^ (h >> 16)) as usize) % MEMO_ENTRIES
}

fn is_concatenation(key: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = key;
    for part in parts {
        match rest.split_at_checked(part.len()) {
            Some((head, tail)) if head == *part => rest = tail,
            _ => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_fingerprints_are_the_hash_of_the_whole_key() {
        // More keys than entries, each asked twice in different splits: the
        // memo must never answer for another key.
        let keys: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("session-{i}").into_bytes())
            .collect();
        for round in 0..2 {
            for key in &keys {
                let split = (key.len() * round) / 2;
                let (a, b) = key.split_at(split);
                let whole = sha256_fingerprint(&[b"d\0", key]);
                assert_eq!(slot_fingerprint(&[b"d\0", a, b]), whole);
                assert_eq!(slot_fingerprint(&[b"d\0", key]), whole);
                // Same bytes, other domain: another fingerprint.
                assert_ne!(slot_fingerprint(&[b"e\0", key]), whole);
            }
        }
        // Parts that concatenate to the same bytes are the same key.
        assert_eq!(
            slot_fingerprint(&[b"ab", b"c"]),
            slot_fingerprint(&[b"a", b"bc"])
        );
        let long = vec![b'x'; MEMO_MAX_KEY + 1];
        assert_eq!(slot_fingerprint(&[&long]), sha256_fingerprint(&[&long]));
    }

    #[test]
    fn fingerprints_are_sha256_prefixes() {
        let digest = Sha256::digest(b"costguard/session\0abc");
        assert_eq!(
            slot_fingerprint(&[b"costguard/session\0", b"abc"]).as_slice(),
            &digest[..16]
        );
    }
}
