//! The layout budget-key and session records share: the fingerprint, three
//! values of the record's own, then what both hold the same way — the
//! reservations, the fleet tally and the fleet's refusal.

use super::reservations::Reservations;
use crate::fleet::FleetTally;
use crate::store::{read_u64s, write_u64s};

/// A record's shared part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub reservations: Reservations,
    pub fleet: FleetTally,
    pub refused_until_ms: u64,
}

/// Fingerprint · `own` · reservations · fleet tally · refused-until.
pub(crate) fn encode(fingerprint: &[u8; 16], own: [u64; 3], held: &Held) -> crate::store::Encoded {
    let [period, current, previous] = held.reservations.to_u64s();
    let [unreported, in_flight, since, acknowledged, reset_at, remaining] = held.fleet.to_u64s();
    let [a, b, c] = own;
    write_u64s(
        fingerprint,
        &[
            a,
            b,
            c,
            period,
            current,
            previous,
            unreported,
            in_flight,
            since,
            acknowledged,
            reset_at,
            remaining,
            held.refused_until_ms,
        ],
    )
}

/// What [`encode`] wrote; None for another layout.
pub(crate) fn decode(bytes: &[u8]) -> Option<([u8; 16], [u64; 3], Held)> {
    let fingerprint: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let [a, b, c, period, current, previous, unreported, in_flight, since, acknowledged, reset_at, remaining, refused_until_ms] =
        read_u64s::<13>(bytes.get(16..)?)?;
    let held = Held {
        reservations: Reservations::from_u64s([period, current, previous]),
        fleet: FleetTally::from_u64s([
            unreported,
            in_flight,
            since,
            acknowledged,
            reset_at,
            remaining,
        ]),
        refused_until_ms,
    };
    Some((fingerprint, [a, b, c], held))
}
