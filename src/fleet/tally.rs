//! Spend counted in the fleet store as one Envoy sees it: what it has not
//! reported yet, the report in flight, and the store's last word. Kept in a
//! shared-data record (the global window's, a budget key's), so every VM of
//! the Envoy reports from the same tally and nothing is reported twice.

use super::FleetView;
use crate::money::Micros;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetTally {
    /// Spend not yet reported.
    pub unreported: Micros,
    /// Spend in the report now in flight, and since when.
    pub in_flight: Micros,
    pub in_flight_since_ms: u64,
    /// The fleet's spend in the store's window, as its last reply said, until it resets.
    pub acknowledged: Micros,
    pub reset_at_ms: u64,
    /// Hits the store still accepts in its window, as its last reply said.
    pub remaining_hits: u64,
}

/// What starting a report did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Begun {
    /// Hits to send (0: nothing to send, or a report is still in flight).
    pub hits: u64,
    /// An unanswered report was taken back (a failure to count).
    pub took_back: bool,
}

impl FleetTally {
    /// Its six values, in the order budget-key and session records store them.
    pub fn to_u64s(&self) -> [u64; 6] {
        [
            self.unreported,
            self.in_flight,
            self.in_flight_since_ms,
            self.acknowledged,
            self.reset_at_ms,
            self.remaining_hits,
        ]
    }

    pub fn from_u64s(
        [unreported, in_flight, in_flight_since_ms, acknowledged, reset_at_ms, remaining_hits]: [u64; 6],
    ) -> FleetTally {
        FleetTally {
            unreported,
            in_flight,
            in_flight_since_ms,
            acknowledged,
            reset_at_ms,
            remaining_hits,
        }
    }

    /// The fleet's spend as this Envoy knows it: what the store last said
    /// (until its window resets) plus what it has not acknowledged.
    pub fn spend_at(&self, now_ms: u64) -> Micros {
        let acknowledged = if now_ms < self.reset_at_ms {
            self.acknowledged
        } else {
            0
        };
        acknowledged
            .saturating_add(self.unreported)
            .saturating_add(self.in_flight)
    }

    /// Holds spend to report.
    pub fn is_pending(&self) -> bool {
        self.unreported > 0 || self.in_flight > 0
    }

    pub fn add(&mut self, cost: Micros) {
        self.unreported = self.unreported.saturating_add(cost);
    }

    /// Starts a report if none is in flight and at least one hit is
    /// unreported: moves those hits' spend to `in_flight`. A report with no
    /// answer for `stale_ms` is taken back first. While the store's window
    /// is nearly full, a report is cut to what it still accepts, so that its
    /// counter reaches the limit exactly and every other Envoy's next report
    /// learns the limit is reached.
    pub fn begin(&mut self, micros_per_hit: Micros, stale_ms: u64, now_ms: u64) -> Begun {
        let mut begun = Begun::default();
        if self.in_flight > 0 {
            if now_ms.saturating_sub(self.in_flight_since_ms) < stale_ms {
                return begun;
            }
            self.fail();
            begun.took_back = true;
        }
        let per_hit = micros_per_hit.max(1);
        let mut n = (self.unreported / per_hit).min(u64::from(u32::MAX));
        if now_ms < self.reset_at_ms && self.remaining_hits > 0 {
            n = n.min(self.remaining_hits);
        }
        if n > 0 {
            self.in_flight = n * per_hit;
            self.unreported -= self.in_flight;
            self.in_flight_since_ms = now_ms;
            begun.hits = n;
        }
        begun
    }

    /// The store answered. Counted; or refused because it would pass the
    /// limit: then it is offered again, cut to what still fits, and dropped
    /// once nothing fits (returned: spend the store refused past its limit).
    pub fn accept(&mut self, view: &FleetView, now_ms: u64) -> Micros {
        let mut dropped = 0;
        if view.over_limit {
            if view.remaining_hits > 0 {
                self.unreported = self.unreported.saturating_add(self.in_flight);
            } else {
                dropped = self.in_flight;
            }
        }
        self.in_flight = 0;
        self.acknowledged = view.spend;
        self.remaining_hits = view.remaining_hits;
        self.reset_at_ms = now_ms.saturating_add(view.reset_in_ms);
        dropped
    }

    /// The report failed (unreachable, error status, bad reply): its spend
    /// waits for the next one.
    pub fn fail(&mut self) {
        self.unreported = self.unreported.saturating_add(self.in_flight);
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(over_limit: bool, spend: Micros, remaining_hits: u64) -> FleetView {
        FleetView {
            over_limit,
            spend,
            remaining_hits,
            reset_in_ms: 1_000,
        }
    }

    #[test]
    fn whole_hits_go_once_and_failures_keep_them() {
        let mut t = FleetTally::default();
        t.add(2_500);
        assert_eq!(t.begin(1_000, 1_000, 0).hits, 2);
        assert_eq!(t.begin(1_000, 1_000, 10).hits, 0, "one in flight");
        t.add(1_000);
        t.fail();
        assert_eq!((t.unreported, t.in_flight), (3_500, 0));
        assert_eq!(t.begin(1_000, 1_000, 20).hits, 3);
        assert_eq!(t.accept(&view(false, 3_000, 7), 30), 0);
        assert_eq!(t.spend_at(30), 3_500);
        assert_eq!(t.spend_at(1_030), 500, "the store's window reset");
        // Unanswered for too long: taken back, then sent again.
        let mut u = FleetTally::default();
        u.add(1_000);
        assert_eq!(u.begin(1_000, 1_000, 0).hits, 1);
        let again = u.begin(1_000, 1_000, 1_000);
        assert_eq!((again.hits, again.took_back), (1, true));
    }

    #[test]
    fn refused_spend_is_cut_to_what_fits_then_dropped() {
        let mut t = FleetTally::default();
        t.add(300_000);
        assert_eq!(t.begin(1_000, 1_000, 0).hits, 300);
        assert_eq!(t.accept(&view(true, 810_000, 190), 10), 0);
        assert_eq!(t.begin(1_000, 1_000, 20).hits, 190);
        assert_eq!(t.accept(&view(true, 1_000_000, 0), 30), 190_000);
        assert_eq!(t.unreported, 110_000);
    }
}
