//! HTTP session budgets: a bounded set of reused slots in the store.

use super::held::{self, Held};
use super::reservations::{Reservations, Ticket};
use crate::config::SessionConfig;
use crate::fleet::FleetTally;
use crate::money::Micros;
use crate::store::{
    read_u64s, update, update_from, Record, Seen, Store, StoreError, CREATE_CAS, MAX_CAS_ATTEMPTS,
};
use sha2::{Digest, Sha256};

use super::fingerprint::slot_fingerprint;

pub const KEY_SWEEP: &str = "costguard/v1/sweep";
/// How many slots a session may live in, from its home slot on.
pub const PROBES: u32 = 8;
/// Longest session id accepted, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 256;

pub fn slot_key(slot: u32) -> crate::store::NumberedKey {
    const PREFIX: &str = "costguard/v1/slot/";
    const _: () = assert!(crate::store::numbered_key_fits(PREFIX));
    crate::store::numbered_key(PREFIX, slot)
}

/// A session's identity: the id shown to clients and the fingerprint stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// For `x-costguard-session-id`, logs and filter state. A hash when the
    /// header is a credential, so the secret is never shown.
    pub display_id: String,
    pub fingerprint: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSessionId;

fn sha256_hex_prefix(domain: &[u8], value: &[u8], hex_len: usize) -> String {
    let digest = Sha256::new()
        .chain_update(domain)
        .chain_update(value)
        .finalize();
    digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xF])
        .take(hex_len)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect()
}

/// A header value that identifies a payer (a session id, a budget key):
/// 1 to 256 bytes without control characters. A credential is replaced by
/// its hash (`h:` + 32 hex digits), so the secret is never stored or shown.
pub fn checked_key_id(
    value: &[u8],
    is_credential: bool,
) -> Result<std::borrow::Cow<'_, [u8]>, InvalidSessionId> {
    if value.is_empty()
        || value.len() > MAX_SESSION_ID_LEN
        || value.iter().any(|&b| b < 0x20 || b == 0x7F)
    {
        return Err(InvalidSessionId);
    }
    Ok(if is_credential {
        let hash = sha256_hex_prefix(b"costguard/credential\0", value, 32);
        std::borrow::Cow::Owned(format!("h:{hash}").into_bytes())
    } else {
        std::borrow::Cow::Borrowed(value)
    })
}

impl SessionKey {
    /// From the `id_header` value. Over 256 bytes or control characters: invalid.
    pub fn from_header(value: &[u8], is_credential: bool) -> Result<SessionKey, InvalidSessionId> {
        let id = checked_key_id(value, is_credential)?;
        Ok(SessionKey::from_display_id(
            String::from_utf8_lossy(&id).into_owned(),
        ))
    }

    pub fn from_display_id(display_id: String) -> SessionKey {
        let fingerprint = slot_fingerprint(&[b"costguard/session\0", display_id.as_bytes()]);
        SessionKey {
            display_id,
            fingerprint,
        }
    }

    fn home_slot(&self, max_tracked: u32) -> u32 {
        home_slot(&self.fingerprint, max_tracked)
    }
}

/// The first of a key's slots, from its fingerprint.
pub(crate) fn home_slot(fingerprint: &[u8; 16], slots: u32) -> u32 {
    let mut h = [0u8; 8];
    h.copy_from_slice(fingerprint.get(8..16).unwrap_or(&[0; 8]));
    (u64::from_le_bytes(h) % u64::from(slots.max(1))) as u32
}

pub const FLAG_OVER: u64 = 1;

/// One session slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSlot {
    /// All zeros: free.
    pub fingerprint: [u8; 16],
    pub spend: Micros,
    pub last_seen_ms: u64,
    pub flags: u64,
    /// Estimates of the session's calls in flight.
    pub reservations: Reservations,
    /// `session.scope: fleet`: the session's spend in the fleet store.
    pub fleet: FleetTally,
    /// The fleet store refused the session until then (`OVER_LIMIT`).
    pub refused_until_ms: u64,
}

impl Record for SessionSlot {
    fn encode(&self) -> crate::store::Encoded {
        let held = Held {
            reservations: self.reservations,
            fleet: self.fleet,
            refused_until_ms: self.refused_until_ms,
        };
        held::encode(
            &self.fingerprint,
            [self.spend, self.last_seen_ms, self.flags],
            &held,
        )
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (fingerprint, [spend, last_seen_ms, flags], h) = match held::decode(bytes) {
            Some(decoded) => decoded,
            // Records written before reservations and fleet sessions existed
            // have three values: the rest starts at zero.
            None => {
                let (fp, rest) = bytes.split_at_checked(16)?;
                (fp.try_into().ok()?, read_u64s::<3>(rest)?, Held::default())
            }
        };
        Some(SessionSlot {
            fingerprint,
            spend,
            last_seen_ms,
            flags,
            reservations: h.reservations,
            fleet: h.fleet,
            refused_until_ms: h.refused_until_ms,
        })
    }
}

impl SessionSlot {
    pub fn is_free(&self) -> bool {
        self.fingerprint == [0; 16]
    }
    pub fn is_live(&self, cfg: &SessionConfig, now_ms: u64) -> bool {
        !self.is_free()
            && now_ms.saturating_sub(self.last_seen_ms) < cfg.idle_ttl_s.saturating_mul(1000)
    }
    pub fn is_over(&self, cfg: &SessionConfig) -> bool {
        self.flags & FLAG_OVER != 0 || cfg.reaches_budget(self.spend)
    }
    /// The session's spend: this Envoy's, or, for a fleet session, the
    /// fleet's as this Envoy knows it, whichever is more.
    pub fn spent(&self, now_ms: u64) -> Micros {
        self.spend.max(self.fleet.spend_at(now_ms))
    }

    /// Over budget once the calls in flight are counted too (or refused by
    /// the fleet store): no room for another call.
    pub fn has_no_room(&self, cfg: &SessionConfig, now_ms: u64) -> bool {
        self.is_over(cfg)
            || now_ms < self.refused_until_ms
            || cfg.reaches_budget(
                self.spent(now_ms)
                    .saturating_add(self.reservations.at(now_ms).total()),
            )
    }
}

/// Where a session lives, for the response to add its spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHandle {
    pub slot: u32,
    pub key: SessionKey,
}

/// A session as found (or started) when a request arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOpen {
    pub handle: SessionHandle,
    pub state: SessionSlot,
    /// The session was not tracked: this request started it.
    pub started: bool,
    /// Starting it took the slot of another live session.
    pub evicted: bool,
    /// It took a slot that held nothing (so the tracked count grows).
    pub took_free_slot: bool,
    /// The slot as read, when nothing was written to it: a later change can
    /// try its write against it without reading again.
    pub seen: Option<Seen<SessionSlot>>,
}

/// Writes to `last_seen_ms` are skipped when the stored one is this recent.
const TOUCH_GRANULARITY_MS: u64 = 1000;

/// Finds the session's slot, refreshing its last use, or claims one for it.
pub fn open_session<S: Store + ?Sized>(
    store: &S,
    cfg: &SessionConfig,
    key: &SessionKey,
    now_ms: u64,
) -> Result<SessionOpen, StoreError> {
    let home = key.home_slot(cfg.max_tracked);
    let probes = PROBES.min(cfg.max_tracked.max(1));
    for _ in 0..MAX_CAS_ATTEMPTS {
        // Look for the session itself, noting the best slot to claim.
        let mut claim: Option<(u32, SessionSlot, u32, bool)> = None; // slot, state, cas, live
        let mut found: Option<(u32, SessionSlot, u32)> = None;
        for i in 0..probes {
            let slot = (home + i) % cfg.max_tracked.max(1);
            let (state, cas) = match store.get(&slot_key(slot))? {
                Some((bytes, cas)) => (SessionSlot::decode(&bytes).unwrap_or_default(), cas),
                None => (SessionSlot::default(), CREATE_CAS),
            };
            if state.fingerprint == key.fingerprint {
                found = Some((slot, state, cas));
                break;
            }
            let live = state.is_live(cfg, now_ms);
            let better = match &claim {
                None => true,
                Some((_, c, _, c_live)) => {
                    (*c_live && !live) || (*c_live == live && state.last_seen_ms < c.last_seen_ms)
                }
            };
            if better {
                claim = Some((slot, state, cas, live));
            }
        }
        if let Some((slot, state, cas)) = found {
            let handle = SessionHandle {
                slot,
                key: key.clone(),
            };
            if state.is_live(cfg, now_ms) {
                let mut seen = Some(Seen {
                    record: Some(state),
                    cas,
                });
                if now_ms.saturating_sub(state.last_seen_ms) >= TOUCH_GRANULARITY_MS {
                    seen = None;
                    let touched = SessionSlot {
                        last_seen_ms: now_ms,
                        ..state
                    };
                    match store.set(&slot_key(slot), &touched.encode(), cas) {
                        Ok(()) | Err(StoreError::CasMismatch) => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(SessionOpen {
                    handle,
                    state,
                    started: false,
                    evicted: false,
                    took_free_slot: false,
                    seen,
                });
            }
            // Idle too long: its state is dropped, it starts afresh in place.
            match start_in(store, key, slot, cas, now_ms)? {
                Some(state) => {
                    return Ok(SessionOpen {
                        handle,
                        state,
                        started: true,
                        evicted: false,
                        took_free_slot: false,
                        seen: None,
                    })
                }
                None => continue,
            }
        }
        let Some((slot, old, cas, live)) = claim else {
            return Err(StoreError::Contended);
        };
        // Someone else may claim it first (maybe this very session): then look again.
        if let Some(state) = start_in(store, key, slot, cas, now_ms)? {
            return Ok(SessionOpen {
                handle: SessionHandle {
                    slot,
                    key: key.clone(),
                },
                state,
                started: true,
                evicted: live,
                took_free_slot: old.is_free(),
                seen: None,
            });
        }
    }
    Err(StoreError::Contended)
}

/// Writes a fresh record for `key` into `slot` (CAS `cas`); None when another
/// writer got there first.
fn start_in<S: Store + ?Sized>(
    store: &S,
    key: &SessionKey,
    slot: u32,
    cas: u32,
    now_ms: u64,
) -> Result<Option<SessionSlot>, StoreError> {
    let fresh = SessionSlot {
        fingerprint: key.fingerprint,
        last_seen_ms: now_ms,
        ..SessionSlot::default()
    };
    match store.set(&slot_key(slot), &fresh.encode(), cas) {
        Ok(()) => Ok(Some(fresh)),
        Err(StoreError::CasMismatch) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Result of adding spend to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAdd {
    pub before: SessionSlot,
    pub after: SessionSlot,
    /// The slot had been given to another session meanwhile: not recorded.
    pub lost: bool,
}

fn modify_session<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    now_ms: u64,
    change: impl Fn(&mut SessionSlot),
) -> Result<SessionAdd, StoreError> {
    let mut before = SessionSlot::default();
    let mut lost = false;
    let (_, after) = update::<S, SessionSlot>(store, &slot_key(handle.slot), |current| {
        let current = current.copied().unwrap_or_default();
        before = current;
        lost = current.fingerprint != handle.key.fingerprint;
        if lost {
            return None;
        }
        let mut next = current;
        change(&mut next);
        next.last_seen_ms = next.last_seen_ms.max(now_ms);
        Some(next)
    })?;
    Ok(SessionAdd {
        before,
        after: after.unwrap_or_default(),
        lost,
    })
}

pub fn add_session_spend<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    cost: Micros,
    now_ms: u64,
) -> Result<SessionAdd, StoreError> {
    settle_session(store, handle, Ticket::default(), cost, false, now_ms)
}

/// A reservation asked of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionReserve {
    Reserved(Ticket),
    /// Spend + reservations reached the budget meanwhile.
    NoRoom {
        spend: Micros,
    },
    /// The slot went to another session meanwhile: nothing was reserved.
    Lost,
}

/// Reserves `amount` for a call of the session, unless it has no room left.
pub fn reserve_session<S: Store + ?Sized>(
    store: &S,
    cfg: &SessionConfig,
    handle: &SessionHandle,
    seen: Option<Seen<SessionSlot>>,
    amount: Micros,
    now_ms: u64,
) -> Result<SessionReserve, StoreError> {
    let mut outcome = SessionReserve::Lost;
    update_from::<S, SessionSlot>(store, &slot_key(handle.slot), seen, |current| {
        let mut next = current.copied().unwrap_or_default();
        if next.fingerprint != handle.key.fingerprint {
            outcome = SessionReserve::Lost;
            return None;
        }
        next.reservations = next.reservations.at(now_ms);
        if next.has_no_room(cfg, now_ms) {
            outcome = SessionReserve::NoRoom { spend: next.spend };
            return None;
        }
        outcome = SessionReserve::Reserved(next.reservations.add(amount, now_ms));
        next.last_seen_ms = next.last_seen_ms.max(now_ms);
        Some(next)
    })?;
    Ok(outcome)
}

/// Replaces a call's reservation by its true cost (0: released); with
/// `fleet`, the cost also waits to be reported to the fleet store.
pub fn settle_session<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    ticket: Ticket,
    cost: Micros,
    fleet: bool,
    now_ms: u64,
) -> Result<SessionAdd, StoreError> {
    modify_session(store, handle, now_ms, |s| {
        s.reservations = s.reservations.at(now_ms);
        s.reservations.release(ticket);
        s.spend = s.spend.saturating_add(cost);
        if fleet {
            s.fleet.add(cost);
        }
    })
}

/// Changes a session's record in place (`change` returns false to write
/// nothing). None when the slot holds another session now.
pub fn update_session_slot<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    mut change: impl FnMut(&mut SessionSlot) -> bool,
) -> Result<Option<SessionSlot>, StoreError> {
    let mut mine = false;
    let (before, after) = update::<S, SessionSlot>(store, &slot_key(handle.slot), |current| {
        let mut next = current.copied().unwrap_or_default();
        mine = next.fingerprint == handle.key.fingerprint;
        (mine && change(&mut next)).then_some(next)
    })?;
    Ok(mine.then(|| after.or(before).unwrap_or_default()))
}

/// `fail_mode: closed`: the session is treated as over budget from now on.
pub fn mark_session_over<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    now_ms: u64,
) -> Result<SessionAdd, StoreError> {
    modify_session(store, handle, now_ms, |s| s.flags |= FLAG_OVER)
}

/// Frees up to `batch` slots' idle sessions, continuing where the last
/// sweep (by any VM) stopped. Returns how many sessions it dropped.
pub fn sweep_idle<S: Store + ?Sized>(
    store: &S,
    cfg: &SessionConfig,
    batch: u32,
    now_ms: u64,
) -> Result<u32, StoreError> {
    #[derive(Clone, Copy, Default)]
    struct Cursor(u64);
    impl Record for Cursor {
        fn encode(&self) -> crate::store::Encoded {
            crate::store::write_u64s(&[], &[self.0])
        }
        fn decode(bytes: &[u8]) -> Option<Self> {
            read_u64s::<1>(bytes).map(|[c]| Cursor(c))
        }
    }
    let max = u64::from(cfg.max_tracked.max(1));
    let (before, _) = update::<S, Cursor>(store, KEY_SWEEP, |c| {
        Some(Cursor((c.map_or(0, |c| c.0) + u64::from(batch)) % max))
    })?;
    let start = before.map_or(0, |c| c.0);
    let mut dropped = 0;
    for i in 0..u64::from(batch).min(max) {
        let slot = ((start + i) % max) as u32;
        let mut freed = false;
        update::<S, SessionSlot>(store, &slot_key(slot), |current| {
            freed = false;
            let s = current?;
            // Spend still to report to the fleet store keeps a session.
            if s.is_free() || s.is_live(cfg, now_ms) || s.fleet.is_pending() {
                return None;
            }
            freed = true;
            Some(SessionSlot::default())
        })?;
        if freed {
            dropped += 1;
        }
    }
    Ok(dropped)
}
