//! Budget rules' keys (an API key, a user, a team…): spend per window with
//! reservations, in a bounded set of reused store slots.
//!
//! A key's slot holds its window, the spend committed in it and the
//! reservations outstanding. Admission reserves an estimate **before** the
//! call (refused when committed + reserved ≥ the limit), so concurrent calls
//! see each other; settling replaces the reservation by the true cost,
//! exactly once. Reservations cannot leak ([`super::reservations`]); they
//! outlive a window's end, since their calls will book into the new one.
//!
//! A slot whose key has spend or reservations in its current window is
//! never given to another key: that would hand a payer a fresh budget. When
//! every slot a key may use is live, the key is refused ([`Reserve::Full`]).

use super::fingerprint::slot_fingerprint;
use super::held::{self, Held};
use super::reservations::{Reservations, Ticket};
use super::sessions::home_slot;
use super::window::Window;
use crate::fleet::FleetTally;
use crate::money::Micros;
use crate::store::{Record, Store, StoreError, CREATE_CAS, MAX_CAS_ATTEMPTS};

/// How many slots a key may live in, from its home slot on: enough that a
/// table half full almost never refuses a key it has room for (2^-32).
pub const RULE_PROBES: u32 = 32;

pub fn rule_slot_key(slot: u32) -> crate::store::NumberedKey {
    const PREFIX: &str = "costguard/v1/budget/";
    const _: () = assert!(crate::store::numbered_key_fits(PREFIX));
    crate::store::numbered_key(PREFIX, slot)
}

/// One key of one rule: its fingerprint in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleKey {
    pub fingerprint: [u8; 16],
    /// The rule's tag (see [`rule_tag`]), stored with the key so that a
    /// slot taken over can be counted off its rule.
    pub rule_tag: u64,
}

/// A rule's name as a number, stored in its keys' slots.
pub fn rule_tag(rule: &str) -> u64 {
    let f = slot_fingerprint(&[b"costguard/budget-rule\0", rule.as_bytes()]);
    let mut b = [0u8; 8];
    b.copy_from_slice(f.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(b)
}

impl RuleKey {
    /// `rule` is the rule's name, `key_id` the key as shown (already hashed
    /// for credentials): two rules on the same header are two keys.
    pub fn new(rule: &str, key_id: &[u8]) -> RuleKey {
        RuleKey {
            fingerprint: slot_fingerprint(&[b"costguard/budget\0", rule.as_bytes(), b"\0", key_id]),
            rule_tag: rule_tag(rule),
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
    pub rule_tag: u64,
    pub window_start_ms: u64,
    pub committed: Micros,
    pub reservations: Reservations,
    /// A rule with `scope: fleet`: the key's spend in the fleet store.
    pub fleet: FleetTally,
    /// The fleet store refused the key until then (`OVER_LIMIT`).
    pub refused_until_ms: u64,
}

impl Record for RuleSlot {
    fn encode(&self) -> crate::store::Encoded {
        let own = [self.rule_tag, self.window_start_ms, self.committed];
        held::encode(&self.fingerprint, own, &self.held())
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (fingerprint, [rule_tag, window_start_ms, committed], h) = held::decode(bytes)?;
        Some(RuleSlot {
            fingerprint,
            rule_tag,
            window_start_ms,
            committed,
            reservations: h.reservations,
            fleet: h.fleet,
            refused_until_ms: h.refused_until_ms,
        })
    }
}

impl RuleSlot {
    fn held(&self) -> Held {
        Held {
            reservations: self.reservations,
            fleet: self.fleet,
            refused_until_ms: self.refused_until_ms,
        }
    }

    /// The slot as it stands in the window containing `now`: a past
    /// window's spend and expired reservations count for nothing.
    pub fn at(mut self, window: Window, now_ms: u64) -> RuleSlot {
        let (start, _) = window.bounds(now_ms);
        if self.window_start_ms != start {
            self.window_start_ms = start;
            self.committed = 0;
        }
        self.reservations = self.reservations.at(now_ms);
        self
    }

    pub fn reserved(&self) -> Micros {
        self.reservations.total()
    }

    /// The key's spend: this Envoy's in the window, or, for a fleet rule,
    /// the fleet's as this Envoy knows it, whichever is more.
    pub fn spent(&self, now_ms: u64) -> Micros {
        self.committed.max(self.fleet.spend_at(now_ms))
    }

    /// Holds spend or reservations in the window containing `now`, or spend
    /// still to report to the fleet store.
    pub fn is_live(&self, window: Window, now_ms: u64) -> bool {
        self.fingerprint != [0; 16] && {
            let s = self.at(window, now_ms);
            s.committed > 0 || s.reserved() > 0 || s.fleet.is_pending()
        }
    }
}

/// How a key came by its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// It had it already (or nothing was written).
    No,
    /// A slot that never held a key.
    FreeSlot,
    /// The slot of another key (of the rule with this tag) whose window had ended.
    From(u64),
}

/// Where a key's reservation was made, to settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHandle {
    pub key: RuleKey,
    pub ticket: Ticket,
}

/// The outcome of asking a key for room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// Room, and the amount is now reserved; `remaining` was the room before it.
    Reserved {
        handle: RuleHandle,
        remaining: Micros,
        claimed: Claimed,
    },
    /// spent + reserved ≥ the limit, or the fleet store refused the key
    /// (`by_fleet`: this Envoy's own spend alone would have had room).
    Exhausted {
        committed: Micros,
        reserved: Micros,
        by_fleet: bool,
    },
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
            claim = Some((slot, state, cas));
        }
    }
    Ok(claim)
}

/// The key's record to write into a located slot, and how it was claimed.
fn take(found: RuleSlot, key: &RuleKey, window: Window, now_ms: u64) -> (RuleSlot, Claimed) {
    if found.fingerprint == key.fingerprint {
        return (found.at(window, now_ms), Claimed::No);
    }
    let claimed = if found.fingerprint == [0; 16] {
        Claimed::FreeSlot
    } else {
        Claimed::From(found.rule_tag)
    };
    let fresh = RuleSlot {
        fingerprint: key.fingerprint,
        rule_tag: key.rule_tag,
        ..RuleSlot::default()
    };
    (fresh.at(window, now_ms), claimed)
}

/// Asks for room for `amount` in the key's window containing `now`, and
/// reserves it. Refused when committed + reserved ≥ `limit`. An `amount` of
/// 0 only checks: nothing is written.
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
        let (mut s, claimed) = take(found, key, window, now_ms);
        let used = s.spent(now_ms).saturating_add(s.reserved());
        let refused = now_ms < s.refused_until_ms;
        if used >= limit || refused {
            return Ok(Reserve::Exhausted {
                committed: s.spent(now_ms),
                reserved: s.reserved(),
                by_fleet: s.committed.saturating_add(s.reserved()) < limit,
            });
        }
        let remaining = limit - used;
        if amount == 0 {
            return Ok(Reserve::Reserved {
                handle: RuleHandle {
                    key: key.clone(),
                    ticket: Ticket::default(),
                },
                remaining,
                claimed: Claimed::No,
            });
        }
        let ticket = s.reservations.add(amount, now_ms);
        match store.set(&rule_slot_key(slot), &s.encode(), cas) {
            Ok(()) => {
                return Ok(Reserve::Reserved {
                    handle: RuleHandle {
                        key: key.clone(),
                        ticket,
                    },
                    remaining,
                    claimed,
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
    pub claimed: Claimed,
}

/// Replaces a reservation by the true cost `actual` (0: released), once.
/// The cost is booked in the window containing `now` (a call that began
/// before a window ended is spend of the window it ends in); with `fleet`,
/// it also waits to be reported to the fleet store.
pub fn settle<S: Store + ?Sized>(
    store: &S,
    handle: &RuleHandle,
    window: Window,
    actual: Micros,
    fleet: bool,
    slots: u32,
    now_ms: u64,
) -> Result<Settled, StoreError> {
    let nothing = |lost| Settled {
        committed: 0,
        lost,
        claimed: Claimed::No,
    };
    if actual == 0 && handle.ticket.amount == 0 {
        return Ok(nothing(false));
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((slot, found, cas)) = locate(store, &handle.key, window, slots, now_ms)? else {
            return Ok(nothing(actual > 0));
        };
        let (mut s, claimed) = take(found, &handle.key, window, now_ms);
        if claimed == Claimed::No {
            s.reservations.release(handle.ticket);
        } else if actual == 0 {
            // Nothing to release, nothing to book: leave the slot alone.
            return Ok(nothing(false));
        }
        s.committed = s.committed.saturating_add(actual);
        if fleet {
            s.fleet.add(actual);
        }
        match store.set(&rule_slot_key(slot), &s.encode(), cas) {
            Ok(()) => {
                return Ok(Settled {
                    committed: s.spent(now_ms),
                    lost: false,
                    claimed,
                })
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

/// Changes the record of a key that holds a slot (a key without one is
/// left alone): `change` returns false to write nothing. Returns the record
/// as written, or as found when nothing was written; None without a slot.
pub fn update_key<S: Store + ?Sized>(
    store: &S,
    key: &RuleKey,
    window: Window,
    slots: u32,
    now_ms: u64,
    mut change: impl FnMut(&mut RuleSlot) -> bool,
) -> Result<Option<RuleSlot>, StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((slot, found, cas)) = locate(store, key, window, slots, now_ms)? else {
            return Ok(None);
        };
        if found.fingerprint != key.fingerprint {
            return Ok(None);
        }
        let mut s = found.at(window, now_ms);
        if !change(&mut s) {
            return Ok(Some(s));
        }
        match store.set(&rule_slot_key(slot), &s.encode(), cas) {
            Ok(()) => return Ok(Some(s)),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Contended)
}

#[cfg(test)]
mod tests;
