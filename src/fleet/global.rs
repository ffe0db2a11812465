//! The fleet-wide global window: the unreported spend in the global record
//! is reported, a reply books the fleet's spend and may trip the breaker.

use super::FleetView;
use crate::budget::{update, GlobalState, Store, StoreError, KEY_GLOBAL};
use crate::config::{GlobalConfig, GlobalStoreConfig};

/// A report with no answer after this many timeouts is taken back.
const STALE_REPORT_TIMEOUTS: u64 = 4;

/// Starts a report if none is in flight and at least one hit is unreported:
/// moves those hits' spend to `in_flight` and returns the hits to send.
/// A report with no answer for a long time is taken back first. While the
/// store's window is nearly full, a report is cut to what it still accepts,
/// so that the store's counter reaches the limit exactly and every other
/// Envoy's next report learns the fleet is over.
pub fn begin_report<S: Store + ?Sized>(
    store: &S,
    cfg: &GlobalStoreConfig,
    now_ms: u64,
) -> Result<Option<u32>, StoreError> {
    let mut hits = None;
    let stale_ms = cfg.timeout_ms.saturating_mul(STALE_REPORT_TIMEOUTS);
    update::<S, GlobalState>(store, KEY_GLOBAL, |current| {
        let mut s = current.copied().unwrap_or_default();
        let begun = s.fleet.begin(cfg.micros_per_hit, stale_ms, now_ms);
        if begun.took_back {
            s.store_errors += 1;
        }
        hits = u32::try_from(begun.hits).ok().filter(|&h| h > 0);
        (current.copied() != Some(s)).then_some(s)
    })?;
    Ok(hits)
}

/// The outcome of a report: a reply, or a failure (unreachable, error status, bad reply).
pub fn finish_report<S: Store + ?Sized>(
    store: &S,
    global: &GlobalConfig,
    reply: Option<FleetView>,
    now_ms: u64,
) -> Result<(GlobalState, bool), StoreError> {
    let mut tripped = false;
    let (_, after) = update::<S, GlobalState>(store, KEY_GLOBAL, |current| {
        tripped = false;
        let mut s = current.copied().unwrap_or_default();
        match reply {
            Some(view) => {
                // Spend past the fleet's limit cannot be recorded in the
                // store; every breaker is open then.
                s.fleet.accept(&view, now_ms);
                s.store_errors = 0;
                if view.over_limit || s.fleet_spend_at(now_ms) >= global.budget {
                    let until = now_ms
                        .saturating_add(view.reset_in_ms)
                        .max(now_ms.saturating_add(global.cooldown_s.saturating_mul(1000)));
                    tripped = s.trip(until, now_ms);
                }
            }
            None => {
                s.fleet.fail();
                s.store_errors = s.store_errors.saturating_add(1);
            }
        }
        Some(s)
    })?;
    Ok((after.unwrap_or_default(), tripped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{add_global_spend, read_global};
    use crate::fleet::tests::config;
    use crate::store::mem::MemStore;

    #[test]
    fn spend_is_reported_once_and_kept_across_failures() {
        let c = config();
        let sc = c.global_store.clone().unwrap();
        let store = MemStore::default();
        add_global_spend(&store, &c.global, 2_500, 0, true).unwrap(); // 2.5 hits
        assert_eq!(begin_report(&store, &sc, 10).unwrap(), Some(2));
        // One report at a time.
        assert_eq!(begin_report(&store, &sc, 20).unwrap(), None);
        add_global_spend(&store, &c.global, 1_000, 30, true).unwrap();
        // The store is down: the spend goes back to unreported.
        finish_report(&store, &c.global, None, 40).unwrap();
        let s = read_global(&store).unwrap();
        assert_eq!(
            (s.fleet.unreported, s.fleet.in_flight, s.store_errors),
            (3_500, 0, 1)
        );
        // Next time all of it (3 whole hits) goes, the half hit stays.
        assert_eq!(begin_report(&store, &sc, 50).unwrap(), Some(3));
        let view = FleetView {
            over_limit: false,
            spend: 3_000,
            remaining_hits: 997,
            reset_in_ms: 1_000,
        };
        finish_report(&store, &c.global, Some(view), 60).unwrap();
        let s = read_global(&store).unwrap();
        assert_eq!(
            (
                s.fleet.unreported,
                s.fleet.in_flight,
                s.store_errors,
                s.fleet.acknowledged
            ),
            (500, 0, 0, 3_000)
        );
        assert_eq!(s.fleet_spend_at(60), 3_500);
        assert_eq!(s.fleet_spend_at(2_000), 500, "the store's window reset");
    }

    #[test]
    fn unanswered_reports_are_taken_back() {
        let c = config();
        let sc = c.global_store.clone().unwrap();
        let store = MemStore::default();
        add_global_spend(&store, &c.global, 1_000, 0, true).unwrap();
        assert_eq!(begin_report(&store, &sc, 0).unwrap(), Some(1));
        assert_eq!(begin_report(&store, &sc, 999).unwrap(), None);
        assert_eq!(
            begin_report(&store, &sc, 1_000).unwrap(),
            Some(1),
            "4 × 250 ms later"
        );
    }

    #[test]
    fn a_refused_report_fills_the_store_to_its_limit() {
        let c = config();
        let sc = c.global_store.clone().unwrap();
        let store = MemStore::default();
        add_global_spend(&store, &c.global, 300_000, 0, true).unwrap(); // 300 hits
        assert_eq!(begin_report(&store, &sc, 0).unwrap(), Some(300));
        // The store had only 190 left: refused.
        let refused = FleetView {
            over_limit: true,
            spend: 810_000,
            remaining_hits: 190,
            reset_in_ms: 60_000,
        };
        let (s, tripped) = finish_report(&store, &c.global, Some(refused), 10).unwrap();
        assert!(tripped);
        assert_eq!((s.fleet.unreported, s.fleet.in_flight), (300_000, 0));
        // The next report offers exactly what still fits.
        assert_eq!(begin_report(&store, &sc, 20).unwrap(), Some(190));
        let full = FleetView {
            over_limit: false,
            spend: 1_000_000,
            remaining_hits: 0,
            reset_in_ms: 59_000,
        };
        finish_report(&store, &c.global, Some(full), 30).unwrap();
        assert_eq!(read_global(&store).unwrap().fleet.unreported, 110_000);
        // Nothing fits any more: the rest is refused and dropped.
        assert_eq!(begin_report(&store, &sc, 40).unwrap(), Some(110));
        let over = FleetView {
            over_limit: true,
            spend: 1_000_000,
            remaining_hits: 0,
            reset_in_ms: 58_000,
        };
        finish_report(&store, &c.global, Some(over), 50).unwrap();
        let s = read_global(&store).unwrap();
        assert_eq!((s.fleet.unreported, s.fleet.in_flight), (0, 0));
    }

    #[test]
    fn the_fleet_trips_every_breaker() {
        let c = config();
        let store = MemStore::default();
        // Another Envoy spent most of it: the store says so, and over the limit.
        add_global_spend(&store, &c.global, 1_000, 0, true).unwrap();
        begin_report(&store, &c.global_store.clone().unwrap(), 0).unwrap();
        let (s, tripped) = finish_report(
            &store,
            &c.global,
            Some(FleetView {
                over_limit: true,
                spend: 1_000_000,
                remaining_hits: 0,
                reset_in_ms: 600_000,
            }),
            1_000,
        )
        .unwrap();
        assert!(tripped);
        assert_eq!(s.open_until_ms, 601_000);
        // Below the limit, the fleet's known spend plus ours trips it too.
        let store = MemStore::default();
        finish_report(
            &store,
            &c.global,
            Some(FleetView {
                over_limit: false,
                spend: 999_000,
                remaining_hits: 1,
                reset_in_ms: 5_000,
            }),
            0,
        )
        .unwrap();
        let added = add_global_spend(&store, &c.global, 1_000, 10, true).unwrap();
        assert!(added.tripped);
        assert_eq!(
            added.state.open_until_ms, 3_600_000,
            "local rule: the next window"
        );
    }
}
