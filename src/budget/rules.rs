//! Budget rules' keys (an API key, a user, a team…): spend per window with
//! reservations, in a bounded set of reused store slots.
//!
//! A key's slot holds its window, the spend committed in it and the
//! reservations outstanding. Admission reserves an estimate **before** the
//! call (refused when committed + reserved ≥ the limit), so concurrent calls
//! see each other; settling replaces the reservation by the true cost,
//! exactly once. Reservations expire after [`RESERVATION_TTL_MS`] even if
//! their holder vanished (a VM that died with a stream in flight), so none
//! can leak for longer.
//!
//! A slot whose key has spend or reservations in its current window is
//! never given to another key: that would hand a payer a fresh budget. When
//! every slot a key may use is live, the key is refused ([`Reserve::Full`]).

use super::sessions::{home_slot, slot_fingerprint};
use super::window::Window;
use crate::money::Micros;
use crate::store::{
    read_u64s, write_u64s, Record, Store, StoreError, CREATE_CAS, MAX_CAS_ATTEMPTS,
};

/// How many slots a key may live in, from its home slot on: enough that a
/// table half full almost never refuses a key it has room for (2^-32).
pub const RULE_PROBES: u32 = 32;
/// A reservation not settled within this long is dropped (the longest
/// stream costguard expects; its true cost is still booked when it ends).
pub const RESERVATION_TTL_MS: u64 = 15 * 60 * 1000;

pub fn rule_slot_key(slot: u32) -> String {
    format!("costguard/v1/budget/{slot:08}")
}

/// One key of one rule: its fingerprint in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleKey {
    pub fingerprint: [u8; 16],
}

impl RuleKey {
    /// `rule` is the rule's name, `key_id` the key as shown (already hashed
    /// for credentials): two rules on the same header are two keys.
    pub fn new(rule: &str, key_id: &str) -> RuleKey {
        RuleKey {
            fingerprint: slot_fingerprint(&[
                b"costguard/budget\0",
                rule.as_bytes(),
                b"\0",
                key_id.as_bytes(),
            ]),
        }
    }

    fn home_slot(&self, slots: u32) -> u32 {
        home_slot(&self.fingerprint, slots)
    }
}

/// One slot: a key's spend in its current window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleSlot {
    pub fingerprint: [u8; 16],
    pub window_start_ms: u64,
    pub committed: Micros,
    pub reserved: Micros,
    /// Every reservation in `reserved` was made before this minus the TTL.
    pub reserved_until_ms: u64,
    /// Counts the times `reserved` was dropped for expiry: a reservation
    /// settled after that is no longer in `reserved` (and must not take
    /// newer ones out of it).
    pub reserve_epoch: u64,
}

impl Record for RuleSlot {
    fn encode(&self) -> Vec<u8> {
        write_u64s(
            &self.fingerprint,
            &[
                self.window_start_ms,
                self.committed,
                self.reserved,
                self.reserved_until_ms,
                self.reserve_epoch,
            ],
        )
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let fingerprint: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let [window_start_ms, committed, reserved, reserved_until_ms, reserve_epoch] =
            read_u64s::<5>(bytes.get(16..)?)?;
        Some(RuleSlot {
            fingerprint,
            window_start_ms,
            committed,
            reserved,
            reserved_until_ms,
            reserve_epoch,
        })
    }
}

impl RuleSlot {
    /// The slot as it stands in the window containing `now`: a past
    /// window's spend and expired reservations count for nothing.
    pub fn at(mut self, window: Window, now_ms: u64) -> RuleSlot {
        let (start, _) = window.bounds(now_ms);
        if self.window_start_ms != start {
            self.window_start_ms = start;
            self.committed = 0;
            self.reserved = 0;
        }
        if now_ms >= self.reserved_until_ms && self.reserved > 0 {
            self.reserved = 0;
            self.reserve_epoch += 1;
        }
        self
    }

    /// Holds spend or reservations in the window containing `now`.
    pub fn is_live(&self, window: Window, now_ms: u64) -> bool {
        self.fingerprint != [0; 16] && {
            let s = self.at(window, now_ms);
            s.committed > 0 || s.reserved > 0
        }
    }
}

/// Where a key's reservation was made, to settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHandle {
    pub key: RuleKey,
    pub slot: u32,
    /// The window and reservation epoch the reservation belongs to.
    pub window_start_ms: u64,
    pub reserve_epoch: u64,
    pub reserved: Micros,
}

/// The outcome of asking a key for room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// Room, and `amount` is now reserved; `remaining` was the room before it.
    Reserved {
        handle: RuleHandle,
        remaining: Micros,
    },
    /// committed + reserved ≥ the limit.
    Exhausted { committed: Micros, reserved: Micros },
    /// Every slot the key may use holds another live key.
    Full,
}

/// Finds the key's slot, or the slot it may claim: (slot, current record, CAS).
fn locate<S: Store + ?Sized>(
    store: &S,
    key: &RuleKey,
    window: Window,
    slots: u32,
    now_ms: u64,
) -> Result<Option<(u32, RuleSlot, u32)>, StoreError> {
    let slots = slots.max(1);
    let home = key.home_slot(slots);
    let mut claim = None;
    for i in 0..RULE_PROBES.min(slots) {
        let slot = (home + i) % slots;
        let (state, cas) = match store.get(&rule_slot_key(slot))? {
            Some((bytes, cas)) => (RuleSlot::decode(&bytes).unwrap_or_default(), cas),
            None => (RuleSlot::default(), CREATE_CAS),
        };
        if state.fingerprint == key.fingerprint {
            return Ok(Some((slot, state, cas)));
        }
        if claim.is_none() && !state.is_live(window, now_ms) {
            claim = Some((slot, RuleSlot::default(), cas));
        }
    }
    Ok(claim)
}

/// Asks for room for `amount` (a reservation; 0 only checks) in the key's
/// window containing `now`. Refused when committed + reserved ≥ `limit`.
pub fn reserve<S: Store + ?Sized>(
    store: &S,
    key: &RuleKey,
    window: Window,
    limit: Micros,
    amount: Micros,
    slots: u32,
    now_ms: u64,
) -> Result<Reserve, StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((slot, found, cas)) = locate(store, key, window, slots, now_ms)? else {
            return Ok(Reserve::Full);
        };
        let mut s = RuleSlot {
            fingerprint: key.fingerprint,
            ..found
        }
        .at(window, now_ms);
        let used = s.committed.saturating_add(s.reserved);
        if used >= limit {
            return Ok(Reserve::Exhausted {
                committed: s.committed,
                reserved: s.reserved,
            });
        }
        s.reserved = s.reserved.saturating_add(amount);
        s.reserved_until_ms = s.reserved_until_ms.max(now_ms + RESERVATION_TTL_MS);
        match store.set(&rule_slot_key(slot), &s.encode(), cas) {
            Ok(()) => {
                return Ok(Reserve::Reserved {
                    handle: RuleHandle {
                        key: key.clone(),
                        slot,
                        window_start_ms: s.window_start_ms,
                        reserve_epoch: s.reserve_epoch,
                        reserved: amount,
                    },
                    remaining: limit - used,
                })
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// What settling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The key's committed spend in its window afterwards.
    pub committed: Micros,
    /// The key had no slot left to book into (table full of live keys).
    pub lost: bool,
}

/// Replaces a reservation by the true cost `actual` (0: released), once.
/// The cost is booked in the window containing `now` (a call that began
/// before a window ended is spend of the window it ends in).
pub fn settle<S: Store + ?Sized>(
    store: &S,
    handle: &RuleHandle,
    window: Window,
    actual: Micros,
    slots: u32,
    now_ms: u64,
) -> Result<Settled, StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((slot, found, cas)) = locate(store, &handle.key, window, slots, now_ms)? else {
            return Ok(Settled {
                committed: 0,
                lost: true,
            });
        };
        let same = found.fingerprint == handle.key.fingerprint;
        let mut s = RuleSlot {
            fingerprint: handle.key.fingerprint,
            ..found
        }
        .at(window, now_ms);
        // The reservation is still counted only in the window and epoch it was made in.
        if same
            && s.window_start_ms == handle.window_start_ms
            && s.reserve_epoch == handle.reserve_epoch
        {
            s.reserved = s.reserved.saturating_sub(handle.reserved);
        }
        s.committed = s.committed.saturating_add(actual);
        if actual == 0 && !same {
            // Nothing to release, nothing to book: leave the slot alone.
            return Ok(Settled {
                committed: 0,
                lost: false,
            });
        }
        match store.set(&rule_slot_key(slot), &s.encode(), cas) {
            Ok(()) => {
                return Ok(Settled {
                    committed: s.committed,
                    lost: false,
                })
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

#[cfg(test)]
mod tests;
