//! Money set aside for calls in flight, in a store record, that cannot leak.
//!
//! Reservations are kept in two buckets by the period they were made in
//! (periods of [`RESERVATION_PERIOD_MS`]): the current one and the one
//! before. When a period passes, the older bucket is dropped. So a
//! reservation counts for at least one period and at most two, whatever
//! becomes of its holder (a VM that died with a stream in flight, a stream
//! Envoy never reported the end of), and releasing it later — once, with its
//! [`Ticket`] — takes out only what is still counted of it, never newer
//! reservations.

use crate::money::Micros;

/// The length of a reservation period: a reservation is dropped 15 to 30
/// minutes after it was made if its call never settled it.
pub const RESERVATION_PERIOD_MS: u64 = 15 * 60 * 1000;

/// Outstanding reservations of one budget (three u64 in its record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reservations {
    /// The period `current` belongs to (`previous` is the one before).
    pub period: u64,
    pub current: Micros,
    pub previous: Micros,
}

/// What a holder needs to release its reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticket {
    pub period: u64,
    pub amount: Micros,
}

fn period_of(now_ms: u64) -> u64 {
    now_ms / RESERVATION_PERIOD_MS
}

impl Reservations {
    pub fn to_u64s(self) -> [u64; 3] {
        [self.period, self.current, self.previous]
    }

    pub fn from_u64s([period, current, previous]: [u64; 3]) -> Self {
        Reservations {
            period,
            current,
            previous,
        }
    }

    /// The buckets as they stand at `now`: periods gone by drop their reservations.
    pub fn at(self, now_ms: u64) -> Reservations {
        let now = period_of(now_ms);
        match now.checked_sub(self.period) {
            Some(0) => self,
            Some(1) => Reservations {
                period: now,
                current: 0,
                previous: self.current,
            },
            // Two periods or more later (or a clock that went back): none left.
            _ if now < self.period => self,
            _ => Reservations {
                period: now,
                current: 0,
                previous: 0,
            },
        }
    }

    /// What is reserved (call [`Self::at`] first).
    pub fn total(&self) -> Micros {
        self.current.saturating_add(self.previous)
    }

    /// Reserves `amount` at `now` (call [`Self::at`] first).
    pub fn add(&mut self, amount: Micros, now_ms: u64) -> Ticket {
        self.current = self.current.saturating_add(amount);
        Ticket {
            period: period_of(now_ms).max(self.period),
            amount,
        }
    }

    /// Takes a reservation out, if it is still counted (call [`Self::at`] first).
    pub fn release(&mut self, ticket: Ticket) {
        if ticket.period == self.period {
            self.current = self.current.saturating_sub(ticket.amount);
        } else if ticket.period + 1 == self.period {
            self.previous = self.previous.saturating_sub(ticket.amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = RESERVATION_PERIOD_MS;

    #[test]
    fn a_reservation_counts_one_to_two_periods() {
        let t0 = 1000 * P + P / 2;
        let mut r = Reservations::default().at(t0);
        r.add(700, t0);
        assert_eq!(r.at(t0 + P / 2 - 1).total(), 700, "same period");
        assert_eq!(r.at(t0 + P).total(), 700, "next period");
        assert_eq!(r.at(t0 + 3 * P / 2).total(), 0, "two periods on");
        assert_eq!(r.at(t0 + 50 * P).total(), 0);
        assert_eq!(
            r.at(t0 - P).total(),
            700,
            "a clock that went back changes nothing"
        );
    }

    #[test]
    fn release_takes_out_only_what_is_still_counted() {
        let t0 = 1000 * P;
        let mut r = Reservations::default().at(t0);
        let old = r.add(1000, t0);
        let mut r = r.at(t0 + P);
        let newer = r.add(300, t0 + P);
        r.release(old);
        assert_eq!((r.current, r.previous), (300, 0));
        // Released again (a bug elsewhere) or too late: nothing newer goes.
        let mut r = r.at(t0 + 2 * P);
        r.release(old);
        assert_eq!(r.total(), 300);
        r.release(newer);
        assert_eq!(r.total(), 0);
        let mut expired = Reservations::default().at(t0);
        let t = expired.add(5, t0);
        let mut later = expired.at(t0 + 2 * P);
        let newest = later.add(9, t0 + 2 * P);
        later.release(t);
        assert_eq!(later.total(), 9);
        later.release(newest);
        assert_eq!(later.total(), 0);
    }
}
