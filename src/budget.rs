//! Session budgets and the global spend window, kept in a shared key-value
//! store with compare-and-swap (Envoy shared data, one per process).
//!
//! ## Key layout (version 1)
//! | key | value (little-endian, fixed width) |
//! |---|---|
//! | `costguard/v1/global` | window_start_ms u64 · window_spend µ$ u64 · open_until_ms u64 (breaker open while now < it) · trips u64 |
//! | `costguard/v1/slot/NNNNNNNN` (8 digits, `0..max_tracked`) | fingerprint [16] · spend µ$ u64 · last_seen_ms u64 · flags u64 |
//! | `costguard/v1/sweep` | next slot to sweep u64 |
//!
//! Keys can never be deleted in Envoy, so sessions live in a bounded set of
//! reused slots: a session's fingerprint (a SHA-256 prefix of its id, never
//! the id itself) picks a home slot, probing `PROBES` slots after it. A slot
//! whose session has been idle for `idle_ttl_s` is free; when every probed
//! slot holds a live session, the least recently used one is evicted.
//!
//! Every write is a compare-and-swap, retried on conflict: no update is lost.
//! Envoy ignores the CAS value when the key does not exist yet, so a key is
//! created with [`CREATE_CAS`], a value no existing key holds in practice:
//! of two racing creators the second then fails with a CAS mismatch and
//! retries against the first one's value.

use crate::config::{GlobalConfig, SessionConfig};
use crate::money::Micros;
use sha2::{Digest, Sha256};

pub const KEY_GLOBAL: &str = "costguard/v2/global";
pub const KEY_SWEEP: &str = "costguard/v1/sweep";
/// How many slots a session may live in, from its home slot on.
pub const PROBES: u32 = 8;
/// CAS value for creating writes (see the module docs).
pub const CREATE_CAS: u32 = u32::MAX;
/// Conflicting writers retry this often before giving up (never seen above
/// a handful with 2 workers; the cap only bounds a pathological case).
pub const MAX_CAS_ATTEMPTS: u32 = 256;
/// Longest session id accepted, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 256;

pub fn slot_key(slot: u32) -> String {
    format!("costguard/v1/slot/{slot:08}")
}

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

/// Fixed-width encoding of a stored record.
pub trait Record: Sized + Default {
    fn encode(&self) -> Vec<u8>;
    /// None for a value of another layout (then it is treated as absent).
    fn decode(bytes: &[u8]) -> Option<Self>;
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

/// Updates one key with a CAS loop: `f` sees the current record (None when
/// absent) and returns the new one, or None to leave the key as it is.
/// Returns the record before and after.
pub fn update<S: Store + ?Sized, R: Record + Clone>(
    store: &S,
    key: &str,
    mut f: impl FnMut(Option<&R>) -> Option<R>,
) -> Result<(Option<R>, Option<R>), StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (current, cas) = match store.get(key)? {
            Some((bytes, cas)) => (R::decode(&bytes), cas),
            None => (None, CREATE_CAS),
        };
        let Some(next) = f(current.as_ref()) else {
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

/// The global spend window and circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalState {
    pub window_start_ms: u64,
    pub window_spend: Micros,
    /// The breaker is open while `now < open_until_ms`.
    pub open_until_ms: u64,
    pub trips: u64,
    /// Fleet store (`global_store`): spend not yet reported.
    pub unreported: Micros,
    /// Spend in the report now in flight, and since when.
    pub in_flight: Micros,
    pub in_flight_since_ms: u64,
    /// The fleet's spend in the store's window, as its last reply said, until it resets.
    pub fleet_spend: Micros,
    pub fleet_reset_at_ms: u64,
    /// Failed reports in a row (0: the store is healthy).
    pub store_errors: u64,
    /// Hits the store still accepts in its window, as its last reply said.
    pub fleet_remaining_hits: u64,
}

impl Record for GlobalState {
    fn encode(&self) -> Vec<u8> {
        [
            self.window_start_ms,
            self.window_spend,
            self.open_until_ms,
            self.trips,
            self.unreported,
            self.in_flight,
            self.in_flight_since_ms,
            self.fleet_spend,
            self.fleet_reset_at_ms,
            self.store_errors,
            self.fleet_remaining_hits,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let [window_start_ms, window_spend, open_until_ms, trips, unreported, in_flight, in_flight_since_ms, fleet_spend, fleet_reset_at_ms, store_errors, fleet_remaining_hits] =
            read_u64s::<11>(bytes)?;
        Some(GlobalState {
            window_start_ms,
            window_spend,
            open_until_ms,
            trips,
            unreported,
            in_flight,
            in_flight_since_ms,
            fleet_spend,
            fleet_reset_at_ms,
            store_errors,
            fleet_remaining_hits,
        })
    }
}

impl GlobalState {
    /// Spend in the window that contains `now` (0 once that window is new).
    pub fn spend_at(&self, cfg: &GlobalConfig, now_ms: u64) -> Micros {
        if window_start(cfg, now_ms) == self.window_start_ms {
            self.window_spend
        } else {
            0
        }
    }
    /// The fleet's spend as this process knows it: what the store last said
    /// (until its window resets) plus what is not yet acknowledged.
    pub fn fleet_spend_at(&self, now_ms: u64) -> Micros {
        let acknowledged = if now_ms < self.fleet_reset_at_ms {
            self.fleet_spend
        } else {
            0
        };
        acknowledged
            .saturating_add(self.unreported)
            .saturating_add(self.in_flight)
    }

    /// Opens the breaker at `now` until `until_ms` unless it is open already.
    pub fn trip(&mut self, until_ms: u64, now_ms: u64) -> bool {
        if self.open_for_ms(now_ms).is_some() {
            return false;
        }
        self.open_until_ms = until_ms;
        self.trips += 1;
        true
    }

    /// Milliseconds until the breaker closes, if it is open at `now`.
    pub fn open_for_ms(&self, now_ms: u64) -> Option<u64> {
        (now_ms < self.open_until_ms).then(|| self.open_until_ms - now_ms)
    }
}

/// Start of the epoch-aligned window containing `now`.
pub fn window_start(cfg: &GlobalConfig, now_ms: u64) -> u64 {
    let w = cfg.window_s.saturating_mul(1000).max(1);
    now_ms - now_ms % w
}

/// When a breaker that opens at `now` closes: at the next window's start,
/// but never sooner than `cooldown_s` after opening.
pub fn close_time(cfg: &GlobalConfig, opened_ms: u64) -> u64 {
    let next_window = window_start(cfg, opened_ms) + cfg.window_s.saturating_mul(1000);
    next_window.max(opened_ms + cfg.cooldown_s.saturating_mul(1000))
}

/// `retry-after`: whole seconds, rounded up.
pub fn retry_after_s(open_for_ms: u64) -> u64 {
    open_for_ms.div_ceil(1000).max(1)
}

/// Result of adding spend to the global window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalAdd {
    pub state: GlobalState,
    /// This addition opened the breaker.
    pub tripped: bool,
}

pub fn read_global<S: Store + ?Sized>(store: &S) -> Result<GlobalState, StoreError> {
    Ok(store
        .get(KEY_GLOBAL)?
        .and_then(|(bytes, _)| GlobalState::decode(&bytes))
        .unwrap_or_default())
}

/// Adds `cost` to the window containing `now`; opens the breaker when the
/// window's spend reaches the budget. With a fleet store (`fleet`), the cost
/// also waits to be reported, and the fleet's known spend counts too.
pub fn add_global_spend<S: Store + ?Sized>(
    store: &S,
    cfg: &GlobalConfig,
    cost: Micros,
    now_ms: u64,
    fleet: bool,
) -> Result<GlobalAdd, StoreError> {
    let mut tripped = false;
    let (_, after) = update::<S, GlobalState>(store, KEY_GLOBAL, |current| {
        let mut s = current.copied().unwrap_or_default();
        let start = window_start(cfg, now_ms);
        if s.window_start_ms != start {
            s.window_start_ms = start;
            s.window_spend = 0;
        }
        s.window_spend = s.window_spend.saturating_add(cost);
        if fleet {
            s.unreported = s.unreported.saturating_add(cost);
        }
        let over =
            s.window_spend >= cfg.budget || (fleet && s.fleet_spend_at(now_ms) >= cfg.budget);
        tripped = over && s.trip(close_time(cfg, now_ms), now_ms);
        Some(s)
    })?;
    Ok(GlobalAdd {
        state: after.unwrap_or_default(),
        tripped,
    })
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

impl SessionKey {
    /// From the `id_header` value. Over 256 bytes or control characters: invalid.
    pub fn from_header(value: &[u8], is_credential: bool) -> Result<SessionKey, InvalidSessionId> {
        if value.is_empty()
            || value.len() > MAX_SESSION_ID_LEN
            || value.iter().any(|&b| b < 0x20 || b == 0x7F)
        {
            return Err(InvalidSessionId);
        }
        let display_id = if is_credential {
            format!(
                "h:{}",
                sha256_hex_prefix(b"costguard/credential\0", value, 32)
            )
        } else {
            String::from_utf8_lossy(value).into_owned()
        };
        Ok(SessionKey::from_display_id(display_id))
    }

    pub fn from_display_id(display_id: String) -> SessionKey {
        let digest = Sha256::new()
            .chain_update(b"costguard/session\0")
            .chain_update(display_id.as_bytes())
            .finalize();
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        if fingerprint == [0; 16] {
            fingerprint[0] = 1; // all-zero marks a free slot
        }
        SessionKey {
            display_id,
            fingerprint,
        }
    }

    fn home_slot(&self, max_tracked: u32) -> u32 {
        let mut h = [0u8; 8];
        h.copy_from_slice(self.fingerprint.get(8..16).unwrap_or(&[0; 8]));
        (u64::from_le_bytes(h) % u64::from(max_tracked.max(1))) as u32
    }
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
}

impl Record for SessionSlot {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.fingerprint);
        for v in [self.spend, self.last_seen_ms, self.flags] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (fp, rest) = bytes.split_at_checked(16)?;
        let [spend, last_seen_ms, flags] = read_u64s::<3>(rest)?;
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(fp);
        Some(SessionSlot {
            fingerprint,
            spend,
            last_seen_ms,
            flags,
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
                if now_ms.saturating_sub(state.last_seen_ms) >= TOUCH_GRANULARITY_MS {
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
    modify_session(store, handle, now_ms, |s| {
        s.spend = s.spend.saturating_add(cost)
    })
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
        fn encode(&self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
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
            if s.is_free() || s.is_live(cfg, now_ms) {
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

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::config::Config;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Envoy's shared-data semantics, in memory: a global CAS counter,
    /// CAS ignored for missing keys, and an optional hook that runs before
    /// each `set` so tests can interleave a competing writer.
    type SetHook = Box<dyn FnMut(&MemStore, &str)>;

    #[derive(Default)]
    pub struct MemStore {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
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

    fn config(json: &str) -> Config {
        Config::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn session_spend_and_budget_seed_scenario() {
        let c = config("{}");
        let store = MemStore::default();
        let key = SessionKey::from_header(b"user-1", false).unwrap();
        let open = open_session(&store, &c.session, &key, 1_000).unwrap();
        assert!(open.started && open.took_free_slot);
        for (i, cost) in [2_000_000, 2_000_000, 1_500_000].into_iter().enumerate() {
            let s = open_session(&store, &c.session, &key, 2_000 + i as u64).unwrap();
            assert!(!s.state.is_over(&c.session), "call {i} refused");
            add_session_spend(&store, &s.handle, cost, 2_000).unwrap();
        }
        let s = open_session(&store, &c.session, &key, 3_000).unwrap();
        assert_eq!(s.state.spend, 5_500_000);
        assert!(s.state.is_over(&c.session));
        // Another session is unaffected.
        let other = SessionKey::from_header(b"user-2", false).unwrap();
        let o = open_session(&store, &c.session, &other, 3_000).unwrap();
        assert_eq!(o.state.spend, 0);
        assert!(!o.state.is_over(&c.session));
    }

    #[test]
    fn exactly_the_budget_is_over() {
        let c = config("{}");
        let store = MemStore::default();
        let key = SessionKey::from_header(b"exact", false).unwrap();
        let s = open_session(&store, &c.session, &key, 0).unwrap();
        add_session_spend(&store, &s.handle, 5_000_000, 0).unwrap();
        assert!(open_session(&store, &c.session, &key, 1)
            .unwrap()
            .state
            .is_over(&c.session));
    }

    #[test]
    fn racing_creators_of_one_key_both_count() {
        // Two writers both see the key missing; the second's creating write
        // must fail (CAS mismatch) and retry on top of the first.
        let store = MemStore::default();
        let c = config("{}");
        let fired = Cell::new(false);
        let hook_cfg = c.global.clone();
        *store.before_set.borrow_mut() = Some(Box::new(move |s: &MemStore, key: &str| {
            if key == KEY_GLOBAL && !fired.replace(true) {
                add_global_spend(s, &hook_cfg, 7, 0, false).unwrap();
            }
        }));
        add_global_spend(&store, &c.global, 5, 0, false).unwrap();
        *store.before_set.borrow_mut() = None;
        assert_eq!(read_global(&store).unwrap().window_spend, 12);
        assert!(store.conflicts.get() >= 1);
    }

    #[test]
    fn racing_session_creators_share_one_slot() {
        let store = MemStore::default();
        let c = config("{}");
        let key = SessionKey::from_header(b"raced", false).unwrap();
        let fired = Cell::new(false);
        let (hook_cfg, hook_key) = (c.session.clone(), key.clone());
        *store.before_set.borrow_mut() = Some(Box::new(move |s: &MemStore, _key: &str| {
            if !fired.replace(true) {
                let other = open_session(s, &hook_cfg, &hook_key, 0).unwrap();
                add_session_spend(s, &other.handle, 1_000, 0).unwrap();
            }
        }));
        let mine = open_session(&store, &c.session, &key, 0).unwrap();
        *store.before_set.borrow_mut() = None;
        assert!(
            !mine.started,
            "the second creator must find the first one's slot"
        );
        add_session_spend(&store, &mine.handle, 2_000, 0).unwrap();
        assert_eq!(
            open_session(&store, &c.session, &key, 0)
                .unwrap()
                .state
                .spend,
            3_000
        );
    }

    #[test]
    fn concurrent_spend_updates_are_never_lost() {
        // Every add's first attempt is interleaved with a competing add: all must land.
        let store = MemStore::default();
        let c = config("{}");
        let key = SessionKey::from_header(b"busy", false).unwrap();
        let handle = open_session(&store, &c.session, &key, 0).unwrap().handle;
        let (h2, g2) = (handle.clone(), c.global.clone());
        let armed = std::rc::Rc::new(Cell::new(false));
        let trigger = armed.clone();
        *store.before_set.borrow_mut() = Some(Box::new(move |s: &MemStore, key: &str| {
            if trigger.replace(false) {
                if key == KEY_GLOBAL {
                    add_global_spend(s, &g2, 1, 0, false).unwrap();
                } else {
                    add_session_spend(s, &h2, 1, 0).unwrap();
                }
            }
        }));
        for _ in 0..100 {
            armed.set(true);
            add_session_spend(&store, &handle, 10, 0).unwrap();
            armed.set(true);
            add_global_spend(&store, &c.global, 10, 0, false).unwrap();
        }
        assert_eq!(store.conflicts.get(), 200);
        *store.before_set.borrow_mut() = None;
        let s = open_session(&store, &c.session, &key, 0).unwrap().state;
        assert_eq!(s.spend, 100 * 11);
        assert_eq!(read_global(&store).unwrap().window_spend, 100 * 11);
    }

    #[test]
    fn breaker_timeline() {
        // $10 budget, 10 s windows, 4 s cooldown.
        let c = config(r#"{"global":{"budget_usd":10,"window_s":10,"cooldown_s":4}}"#);
        let g = &c.global;
        let store = MemStore::default();
        let t0 = 1_700_000_000_000; // a window boundary
        let add = |cost, t| add_global_spend(&store, g, cost, t, false).unwrap();
        assert!(!add(6_000_000, t0 + 1_000).tripped);
        let r = add(4_000_000, t0 + 2_000);
        assert!(r.tripped, "reaching the budget opens it");
        assert_eq!(
            r.state.open_until_ms,
            t0 + 10_000,
            "closes at the next window"
        );
        assert_eq!(retry_after_s(r.state.open_for_ms(t0 + 2_500).unwrap()), 8);
        assert!(!add(1, t0 + 3_000).tripped, "counts once while open");
        assert_eq!(read_global(&store).unwrap().trips, 1);
        assert_eq!(read_global(&store).unwrap().open_for_ms(t0 + 10_000), None);
        assert_eq!(read_global(&store).unwrap().spend_at(g, t0 + 10_000), 0);

        // Opening late in a window: the cooldown outlasts the window.
        let r = add(10_000_000, t0 + 18_000);
        assert!(r.tripped);
        assert_eq!(r.state.open_until_ms, t0 + 22_000);
        assert_eq!(read_global(&store).unwrap().trips, 2);
        // A new window with spend below budget stays closed after reopening.
        assert!(!add(1_000_000, t0 + 22_500).tripped);
    }

    #[test]
    fn idle_sessions_start_afresh_and_are_swept() {
        let c = config(r#"{"session":{"idle_ttl_s":10,"max_tracked":16}}"#);
        let store = MemStore::default();
        let key = SessionKey::from_header(b"sleepy", false).unwrap();
        let s = open_session(&store, &c.session, &key, 0).unwrap();
        add_session_spend(&store, &s.handle, 5_000_000, 0).unwrap();
        assert!(open_session(&store, &c.session, &key, 9_000)
            .unwrap()
            .state
            .is_over(&c.session));
        // The use at 9 s refreshed it; 10.5 s after that it has been idle too long.
        let back = open_session(&store, &c.session, &key, 19_500).unwrap();
        assert!(back.started);
        assert_eq!(back.state.spend, 0);

        let other = SessionKey::from_header(b"gone", false).unwrap();
        open_session(&store, &c.session, &other, 20_000).unwrap();
        assert_eq!(sweep_idle(&store, &c.session, 16, 25_000).unwrap(), 0);
        assert_eq!(sweep_idle(&store, &c.session, 16, 40_000).unwrap(), 2);
        assert_eq!(sweep_idle(&store, &c.session, 16, 40_000).unwrap(), 0);
    }

    #[test]
    fn slots_are_bounded_and_the_least_recent_is_evicted() {
        let c = config(r#"{"session":{"max_tracked":4}}"#);
        let store = MemStore::default();
        let keys: Vec<SessionKey> = (0..5)
            .map(|i| SessionKey::from_header(format!("s{i}").as_bytes(), false).unwrap())
            .collect();
        let mut evictions = 0;
        for (i, k) in keys.iter().enumerate() {
            let o = open_session(&store, &c.session, k, 1_000 * i as u64).unwrap();
            evictions += u32::from(o.evicted);
        }
        assert_eq!(evictions, 1);
        // s0 was the least recently used: it starts afresh.
        let again = open_session(&store, &c.session, &keys[0], 10_000).unwrap();
        assert!(again.started);
        assert_eq!(store.map.borrow().len(), 4);
    }

    #[test]
    fn session_ids_are_validated_and_credentials_hashed() {
        assert!(SessionKey::from_header(&[b'a'; 256], false).is_ok());
        assert_eq!(
            SessionKey::from_header(&[b'a'; 257], false),
            Err(InvalidSessionId)
        );
        assert_eq!(
            SessionKey::from_header(b"a\x01b", false),
            Err(InvalidSessionId)
        );
        assert_eq!(
            SessionKey::from_header(b"a\x7fb", false),
            Err(InvalidSessionId)
        );
        assert_eq!(SessionKey::from_header(b"", false), Err(InvalidSessionId));
        let secret = b"Bearer sk-live-1234567890";
        let k = SessionKey::from_header(secret, true).unwrap();
        assert!(k.display_id.starts_with("h:") && k.display_id.len() == 34);
        assert!(!k.display_id.contains("sk-live"));
        assert_eq!(k, SessionKey::from_header(secret, true).unwrap());
        let plain = SessionKey::from_header(b"user-7", false).unwrap();
        assert_eq!(plain.display_id, "user-7");
        // Nothing stored carries the id, only its fingerprint.
        let store = MemStore::default();
        let c = config("{}");
        open_session(&store, &c.session, &k, 0).unwrap();
        for (key, (value, _)) in store.map.borrow().iter() {
            assert!(!key.contains("sk-live"));
            assert!(!value.windows(7).any(|w| w == b"sk-live"));
        }
    }

    #[test]
    fn records_round_trip_and_reject_other_layouts() {
        let g = GlobalState {
            window_start_ms: 1,
            window_spend: 2,
            open_until_ms: 3,
            trips: 4,
            unreported: 5,
            in_flight: 6,
            in_flight_since_ms: 7,
            fleet_spend: 8,
            fleet_reset_at_ms: 9,
            store_errors: 10,
            fleet_remaining_hits: 11,
        };
        assert_eq!(GlobalState::decode(&g.encode()), Some(g));
        assert_eq!(GlobalState::decode(&[0; 32]), None);
        let s = SessionSlot {
            fingerprint: [7; 16],
            spend: 9,
            last_seen_ms: 10,
            flags: FLAG_OVER,
        };
        assert_eq!(SessionSlot::decode(&s.encode()), Some(s));
        assert_eq!(SessionSlot::decode(&[0; 39]), None);
        assert_eq!(slot_key(42), "costguard/v1/slot/00000042");
    }

    #[test]
    fn fail_closed_marks_the_session_over() {
        let c = config("{}");
        let store = MemStore::default();
        let key = SessionKey::from_header(b"closed", false).unwrap();
        let s = open_session(&store, &c.session, &key, 0).unwrap();
        mark_session_over(&store, &s.handle, 0).unwrap();
        let again = open_session(&store, &c.session, &key, 0).unwrap();
        assert!(again.state.is_over(&c.session));
        assert_eq!(again.state.spend, 0);
    }
}
