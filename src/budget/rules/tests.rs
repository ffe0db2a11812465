use super::*;
use crate::budget::reservations::RESERVATION_PERIOD_MS;
use crate::store::mem::MemStore;
use proptest::prelude::*;

const DAY: Window = Window::Day;
/// 2026-12-02T12:00:00Z.
const NOON: u64 = 1_796_212_800_000;

fn reserved(r: Reserve) -> (RuleHandle, Micros) {
    match r {
        Reserve::Reserved {
            handle, remaining, ..
        } => (handle, remaining),
        other => panic!("not reserved: {other:?}"),
    }
}

fn slot_of(store: &MemStore, key: &RuleKey, slots: u32) -> RuleSlot {
    let (_, slot, _) = locate(store, key, DAY, slots, NOON).unwrap().unwrap();
    slot
}

#[test]
fn reservations_make_concurrent_calls_see_each_other() {
    let store = MemStore::default();
    let key = RuleKey::new("key-daily", b"alice");
    // $1 limit, each call reserves $0.30: four fit (0, .3, .6, .9 < 1), the fifth does not.
    let mut handles = Vec::new();
    for i in 0..4u64 {
        let (h, remaining) =
            reserved(reserve(&store, &key, DAY, 1_000_000, 300_000, 100, NOON).unwrap());
        assert_eq!(remaining, 1_000_000 - i * 300_000);
        handles.push(h);
    }
    assert_eq!(
        reserve(&store, &key, DAY, 1_000_000, 300_000, 100, NOON).unwrap(),
        Reserve::Exhausted {
            committed: 0,
            reserved: 1_200_000,
            by_fleet: false,
        }
    );
    // The true costs replace the reservations.
    for h in &handles {
        settle(&store, h, DAY, 250_000, false, 100, NOON + 5).unwrap();
    }
    let s = slot_of(&store, &key, 100);
    assert_eq!((s.committed, s.reserved()), (1_000_000, 0));
    assert!(matches!(
        reserve(&store, &key, DAY, 1_000_000, 0, 100, NOON + 6).unwrap(),
        Reserve::Exhausted {
            committed: 1_000_000,
            ..
        }
    ));
    // Another key and another rule on the same key are untouched.
    for other in [
        RuleKey::new("key-daily", b"bob"),
        RuleKey::new("burst", b"alice"),
    ] {
        assert!(matches!(
            reserve(&store, &other, DAY, 1_000_000, 0, 100, NOON).unwrap(),
            Reserve::Reserved {
                remaining: 1_000_000,
                ..
            }
        ));
    }
}

#[test]
fn windows_reset_and_calls_book_where_they_end() {
    let store = MemStore::default();
    let key = RuleKey::new("key-daily", b"alice");
    let before_midnight = NOON + 12 * 3_600_000 - 1_000;
    let (h, _) =
        reserved(reserve(&store, &key, DAY, 1_000_000, 400_000, 10, before_midnight).unwrap());
    settle(&store, &h, DAY, 1_000_000, false, 10, before_midnight).unwrap();
    assert!(matches!(
        reserve(&store, &key, DAY, 1_000_000, 0, 10, before_midnight).unwrap(),
        Reserve::Exhausted { .. }
    ));
    // A call admitted before midnight that ends after it is spend of the new day.
    let (late, _) = reserved(
        reserve(
            &store,
            &key,
            Window::Seconds(3600),
            10_000_000,
            50,
            10,
            before_midnight,
        )
        .unwrap(),
    );
    let after_midnight = before_midnight + 2_000;
    let (_, remaining) =
        reserved(reserve(&store, &key, DAY, 1_000_000, 0, 10, after_midnight).unwrap());
    // A new day: the spend is gone, the call still in flight is still reserved.
    assert_eq!(remaining, 1_000_000 - 50);
    let settled = settle(&store, &late, DAY, 300, false, 10, after_midnight).unwrap();
    assert_eq!(settled.committed, 300);
}

#[test]
fn reservations_of_vanished_calls_expire() {
    let store = MemStore::default();
    let key = RuleKey::new("r", b"k");
    reserved(reserve(&store, &key, DAY, 1_000, 1_000, 10, NOON).unwrap());
    assert!(matches!(
        reserve(&store, &key, DAY, 1_000, 0, 10, NOON + 1).unwrap(),
        Reserve::Exhausted { .. }
    ));
    let later = NOON + 2 * RESERVATION_PERIOD_MS;
    assert!(matches!(
        reserve(&store, &key, DAY, 1_000, 0, 10, later).unwrap(),
        Reserve::Reserved {
            remaining: 1_000,
            ..
        }
    ));
}

#[test]
fn a_late_settle_of_an_expired_reservation_leaves_newer_ones_alone() {
    let store = MemStore::default();
    let key = RuleKey::new("r", b"k");
    let (old, _) = reserved(reserve(&store, &key, DAY, 10_000, 1_000, 10, NOON).unwrap());
    let later = NOON + 2 * RESERVATION_PERIOD_MS;
    let (_new, _) = reserved(reserve(&store, &key, DAY, 10_000, 700, 10, later).unwrap());
    // The vanished call turns up after all: its cost is booked, the newer reservation stays.
    settle(&store, &old, DAY, 400, false, 10, later + 1).unwrap();
    let (_, s, _) = locate(&store, &key, DAY, 10, later + 1).unwrap().unwrap();
    assert_eq!((s.committed, s.reserved()), (400, 700));
}

#[test]
fn a_full_table_refuses_new_keys_and_never_evicts_live_ones() {
    let store = MemStore::default();
    let (a, b, c) = (
        RuleKey::new("r", b"a"),
        RuleKey::new("r", b"b"),
        RuleKey::new("r", b"c"),
    );
    for k in [&a, &b] {
        let (h, _) = reserved(reserve(&store, k, DAY, 1_000, 0, 2, NOON).unwrap());
        settle(&store, &h, DAY, 10, false, 2, NOON).unwrap();
    }
    assert_eq!(
        reserve(&store, &c, DAY, 1_000, 0, 2, NOON).unwrap(),
        Reserve::Full
    );
    // Both keep their spend.
    for k in [&a, &b] {
        assert_eq!(slot_of(&store, k, 2).committed, 10);
    }
    // A key without spend in its window holds no slot it can keep: the next day, c fits.
    let tomorrow = NOON + 86_400_000;
    assert!(matches!(
        reserve(&store, &c, DAY, 1_000, 5, 2, tomorrow).unwrap(),
        Reserve::Reserved { .. }
    ));
}

#[test]
fn records_round_trip() {
    let s = RuleSlot {
        fingerprint: [3; 16],
        rule_tag: 9,
        window_start_ms: 1,
        committed: 2,
        reservations: Reservations::from_u64s([3, 4, 5]),
        fleet: FleetTally {
            unreported: 6,
            in_flight: 7,
            in_flight_since_ms: 8,
            acknowledged: 10,
            reset_at_ms: 11,
            remaining_hits: 12,
        },
        refused_until_ms: 13,
    };
    assert_eq!(RuleSlot::decode(&s.encode()), Some(s));
    assert_eq!(RuleSlot::decode(&s.encode()[..119]), None);
}

#[test]
fn a_slot_taken_over_names_the_rule_it_was_taken_from() {
    let store = MemStore::default();
    let a = RuleKey::new("daily", b"a");
    let b = RuleKey::new("burst", b"b");
    let (h, _) = reserved(reserve(&store, &a, DAY, 1_000, 0, 1, NOON).unwrap());
    let s = settle(&store, &h, DAY, 10, false, 1, NOON).unwrap();
    assert_eq!(s.claimed, Claimed::FreeSlot);
    assert_eq!(
        reserve(&store, &b, DAY, 1_000, 1, 1, NOON).unwrap(),
        Reserve::Full
    );
    let tomorrow = NOON + 86_400_000;
    match reserve(&store, &b, DAY, 1_000, 1, 1, tomorrow).unwrap() {
        Reserve::Reserved { claimed, .. } => assert_eq!(claimed, Claimed::From(rule_tag("daily"))),
        other => panic!("{other:?}"),
    }
    // A check (amount 0) writes nothing, so claims nothing.
    let c = RuleKey::new("daily", b"c");
    let day_after = tomorrow + 86_400_000;
    assert!(matches!(
        reserve(&store, &c, DAY, 1_000, 0, 1, day_after).unwrap(),
        Reserve::Reserved {
            claimed: Claimed::No,
            remaining: 1_000,
            ..
        }
    ));
    assert_eq!(
        slot_of_at(&store, &b, 1, day_after).fingerprint,
        b.fingerprint
    );
}

fn slot_of_at(store: &MemStore, key: &RuleKey, slots: u32, now: u64) -> RuleSlot {
    let (_, slot, _) = locate(store, key, DAY, slots, now).unwrap().unwrap();
    slot
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { key: usize, amount: u64 },
    Settle { nth: usize, actual: u64 },
    Wait { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..400_000u64).prop_map(|(key, amount)| Op::Reserve { key, amount }),
        (0..64usize, 0..400_000u64).prop_map(|(nth, actual)| Op::Settle { nth, actual }),
        (0..10_000u64).prop_map(|ms| Op::Wait { ms }),
        (0..2 * RESERVATION_PERIOD_MS).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// A reservation made at `at` is still counted at `now`: made in this
/// reservation period or the one before.
fn counted(at: u64, now: u64) -> bool {
    now / RESERVATION_PERIOD_MS - at / RESERVATION_PERIOD_MS <= 1
}

proptest! {
    /// Against a model: every reservation is counted until it settles (once)
    /// or expires (one to two periods after it was made), committed spend is
    /// the sum of the true costs settled in the window, and nothing ever
    /// goes below zero.
    #[test]
    fn bookkeeping_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let store = MemStore::default();
        // Short windows, so they turn over; waits long enough for reservations to expire.
        let window = Window::Seconds(60);
        let limit = 1_000_000;
        let keys: Vec<RuleKey> = (0..3).map(|i| RuleKey::new("r", format!("k{i}").as_bytes())).collect();
        let mut now = NOON;
        // Outstanding: (key, handle, made at).
        let mut outstanding: Vec<(usize, RuleHandle, u64)> = Vec::new();
        // Per key: committed in its window (window start, sum).
        let mut committed: Vec<(u64, u64)> = vec![(0, 0); 3];
        for op in ops {
            match op {
                Op::Wait { ms } => now += ms,
                Op::Reserve { key, amount } => {
                    let start = window.bounds(now).0;
                    let model_committed = if committed[key].0 == start { committed[key].1 } else { 0 };
                    let model_reserved: u64 = outstanding.iter()
                        .filter(|(k, _, at)| *k == key && counted(*at, now))
                        .map(|(_, h, _)| h.ticket.amount).sum();
                    match reserve(&store, &keys[key], window, limit, amount, 16, now).unwrap() {
                        Reserve::Reserved { handle, remaining, .. } => {
                            prop_assert!(model_committed + model_reserved < limit);
                            prop_assert_eq!(remaining, limit - model_committed - model_reserved);
                            outstanding.push((key, handle, now));
                        }
                        Reserve::Exhausted { committed: c, reserved: r, .. } => {
                            prop_assert!(model_committed + model_reserved >= limit);
                            prop_assert_eq!((c, r), (model_committed, model_reserved));
                        }
                        Reserve::Full => prop_assert!(false, "16 slots for 3 keys"),
                    }
                }
                Op::Settle { nth, actual } => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let (key, handle, _) = outstanding.remove(nth % outstanding.len());
                    let start = window.bounds(now).0;
                    let settled = settle(&store, &handle, window, actual, false, 16, now).unwrap();
                    if committed[key].0 != start {
                        committed[key] = (start, 0);
                    }
                    committed[key].1 += actual;
                    prop_assert_eq!(settled.committed, committed[key].1);
                    prop_assert!(!settled.lost);
                }
            }
        }
    }
}
