//! The global spend window and the circuit breaker, in one store record.

use crate::config::GlobalConfig;
use crate::fleet::FleetTally;
use crate::money::Micros;
use crate::store::{read_u64s, update, write_u64s, Record, Store, StoreError};

pub const KEY_GLOBAL: &str = "costguard/v2/global";

/// The global spend window and circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalState {
    pub window_start_ms: u64,
    pub window_spend: Micros,
    /// The breaker is open while `now < open_until_ms`.
    pub open_until_ms: u64,
    pub trips: u64,
    /// Fleet store (`global_store`): the window's spend in the store.
    pub fleet: FleetTally,
    /// Failed reports in a row (0: the store is healthy).
    pub store_errors: u64,
}

impl Record for GlobalState {
    fn encode(&self) -> crate::store::Encoded {
        write_u64s(
            &[],
            &[
                self.window_start_ms,
                self.window_spend,
                self.open_until_ms,
                self.trips,
                self.fleet.unreported,
                self.fleet.in_flight,
                self.fleet.in_flight_since_ms,
                self.fleet.acknowledged,
                self.fleet.reset_at_ms,
                self.store_errors,
                self.fleet.remaining_hits,
            ],
        )
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let [window_start_ms, window_spend, open_until_ms, trips, unreported, in_flight, in_flight_since_ms, fleet_spend, fleet_reset_at_ms, store_errors, fleet_remaining_hits] =
            read_u64s::<11>(bytes)?;
        Some(GlobalState {
            window_start_ms,
            window_spend,
            open_until_ms,
            trips,
            fleet: FleetTally {
                unreported,
                in_flight,
                in_flight_since_ms,
                acknowledged: fleet_spend,
                reset_at_ms: fleet_reset_at_ms,
                remaining_hits: fleet_remaining_hits,
            },
            store_errors,
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
    /// The fleet's spend as this process knows it.
    pub fn fleet_spend_at(&self, now_ms: u64) -> Micros {
        self.fleet.spend_at(now_ms)
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
            s.fleet.add(cost);
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

/// How stale a VM's view of the global window may be at admission: a
/// breaker trip reaches every worker within this time.
pub const GLOBAL_MAX_AGE_MS: u64 = 100;

/// A VM holds spend back from the shared window at most this long while it
/// keeps booking (the root tick writes what is left within a second)...
pub const GLOBAL_HOLD_MS: u64 = GLOBAL_MAX_AGE_MS;
/// ...and at most this share of the global budget (1/100).
pub const GLOBAL_HOLD_SHARE: u64 = 100;

/// One VM's view of the global window: read from the store at most every
/// [`GLOBAL_MAX_AGE_MS`] for admission (the VM's own bookings refresh it
/// too), so requests rarely pay a store read for it.
///
/// It also holds the VM's spend not yet written to the window: a booking
/// adds to it, and it is written in one compare-and-swap once it is
/// [`GLOBAL_HOLD_MS`] old, reaches 1/[`GLOBAL_HOLD_SHARE`] of the budget,
/// would reach the budget with the spend last seen, or belongs to an
/// earlier window — so under load a VM writes the window ~10 times a
/// second instead of once per response, and near the budget at once.
#[derive(Debug, Default)]
pub struct GlobalView {
    seen: std::cell::Cell<Option<(GlobalState, u64)>>,
    held: std::cell::Cell<Micros>,
    held_since_ms: std::cell::Cell<u64>,
}

impl GlobalView {
    /// The state for admitting a request at `now`.
    pub fn for_admission<S: Store + ?Sized>(
        &self,
        store: &S,
        now_ms: u64,
    ) -> Result<GlobalState, StoreError> {
        if let Some((state, at)) = self.seen.get() {
            if now_ms.saturating_sub(at) < GLOBAL_MAX_AGE_MS {
                return Ok(state);
            }
        }
        let state = read_global(store)?;
        self.note(state, now_ms);
        Ok(state)
    }

    /// Remembers a state just read or written.
    pub fn note(&self, state: GlobalState, now_ms: u64) {
        self.seen.set(Some((state, now_ms)));
    }

    /// Holds `cost` of booked spend; returns the spend to write now, if it
    /// is time (see the type's docs).
    pub fn hold(&self, cfg: &GlobalConfig, cost: Micros, now_ms: u64) -> Option<Micros> {
        let before = self.held.get();
        let held = before.saturating_add(cost);
        if held == 0 {
            return None;
        }
        let since = if before == 0 {
            now_ms
        } else {
            self.held_since_ms.get()
        };
        let seen_spend = self
            .seen
            .get()
            .map_or(0, |(state, _)| state.spend_at(cfg, now_ms));
        let due = now_ms.saturating_sub(since) >= GLOBAL_HOLD_MS
            || held >= cfg.budget / GLOBAL_HOLD_SHARE
            || seen_spend.saturating_add(held) >= cfg.budget
            || window_start(cfg, since) != window_start(cfg, now_ms);
        if due {
            self.held.set(0);
            return Some(held);
        }
        self.held.set(held);
        self.held_since_ms.set(since);
        None
    }

    /// Everything held (the root tick writes it).
    pub fn take_held(&self) -> Option<Micros> {
        Some(self.held.take()).filter(|&held| held > 0)
    }

    /// Writes `amount` of held spend to the window; a failed write holds it
    /// again, so it is written later rather than lost.
    pub fn write_held<S: Store + ?Sized>(
        &self,
        store: &S,
        cfg: &GlobalConfig,
        amount: Micros,
        now_ms: u64,
        fleet: bool,
    ) -> Result<GlobalAdd, StoreError> {
        let added = add_global_spend(store, cfg, amount, now_ms, fleet);
        match &added {
            Ok(added) => self.note(added.state, now_ms),
            Err(_) => {
                let held = self.held.get();
                if held == 0 {
                    self.held_since_ms.set(now_ms);
                }
                self.held.set(held.saturating_add(amount));
            }
        }
        added
    }

    /// The breaker is open, as last seen.
    pub fn breaker_open(&self, now_ms: u64) -> bool {
        self.seen
            .get()
            .is_some_and(|(state, _)| state.open_for_ms(now_ms).is_some())
    }
}
