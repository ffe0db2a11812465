//! Budget keys of rules with `scope: fleet` (and HTTP sessions with
//! `session.scope: fleet`), counted in the fleet store.
//!
//! A key's spend is booked locally (its slot's `fleet` tally) and reported
//! off the request path: each report carries one descriptor per key,
//! `costguard_budget = <rule>`, `costguard_key = <key id>` for a rule's key,
//! `costguard_session = <session id>` for a session (a credential's hash,
//! never its value), with that key's hits in the descriptor's own
//! `hits_addend`. A key's reply tells the fleet's spend for it; `OVER_LIMIT`
//! refuses the key on this Envoy until the store's window resets.

use super::{
    Code, DescriptorEntry, FleetView, RateLimitDescriptor, RateLimitRequest, RateLimitResponse,
    UInt64Value,
};
use crate::budget::rules::{update_key, RuleKey};
use crate::budget::window::Window;
use crate::budget::{update_session_slot, SessionHandle};
use crate::fleet::FleetTally;
use crate::money::Micros;
use crate::store::{Store, StoreError};
use prost::Message;

pub const BUDGET_ENTRY: &str = "costguard_budget";
pub const KEY_ENTRY: &str = "costguard_key";
pub const SESSION_ENTRY: &str = "costguard_session";

/// One key's part of a report: a rule's key (`rule` set) or a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport<'a> {
    /// The rule's name; None for an HTTP session.
    pub rule: Option<&'a str>,
    /// The key id, or the session id.
    pub key_id: &'a str,
    pub hits: u64,
}

/// The request reporting several keys (each descriptor with its own hits;
/// a report of one key also sets the request's `hits_addend`, for services
/// that read only that one).
pub fn encode_key_reports(domain: &str, reports: &[KeyReport<'_>]) -> Vec<u8> {
    let entry = |key: &str, value: &str| DescriptorEntry {
        key: key.to_string(),
        value: value.to_string(),
    };
    let single = match reports {
        [one] => u32::try_from(one.hits).unwrap_or(u32::MAX),
        _ => 0,
    };
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: reports
            .iter()
            .map(|r| RateLimitDescriptor {
                entries: match r.rule {
                    Some(rule) => vec![entry(BUDGET_ENTRY, rule), entry(KEY_ENTRY, r.key_id)],
                    None => vec![entry(SESSION_ENTRY, r.key_id)],
                },
                hits_addend: Some(UInt64Value { value: r.hits }),
            })
            .collect(),
        hits_addend: single,
    }
    .encode_to_vec()
}

/// Each descriptor's outcome, in the order reported; None when the reply
/// does not answer every descriptor.
pub fn decode_key_replies(
    message: &[u8],
    micros_per_hit: Micros,
    descriptors: usize,
) -> Option<Vec<FleetView>> {
    let reply = RateLimitResponse::decode(message).ok()?;
    if reply.statuses.len() != descriptors {
        return None;
    }
    Some(
        reply
            .statuses
            .iter()
            .map(|s| super::view_of(Some(s), s.code == Code::OverLimit as i32, micros_per_hit))
            .collect(),
    )
}

/// A key's report, begun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyBegun {
    /// Hits to send now (0: none).
    pub hits: u64,
    /// A report of the key is (still) in flight.
    pub in_flight: bool,
}

/// Starts a key's report: the whole hits of its unreported spend move to
/// in flight.
pub fn begin_key_report<S: Store + ?Sized>(
    store: &S,
    key: &RuleKey,
    window: Window,
    slots: u32,
    micros_per_hit: Micros,
    stale_ms: u64,
    now_ms: u64,
) -> Result<KeyBegun, StoreError> {
    let mut hits = 0;
    let after = update_key(store, key, window, slots, now_ms, |s| {
        hits = s.fleet.begin(micros_per_hit, stale_ms, now_ms).hits;
        hits > 0
    })?;
    Ok(KeyBegun {
        hits,
        in_flight: after.is_some_and(|s| s.fleet.in_flight > 0),
    })
}

/// [`begin_key_report`] for an HTTP session.
pub fn begin_session_report<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    micros_per_hit: Micros,
    stale_ms: u64,
    now_ms: u64,
) -> Result<KeyBegun, StoreError> {
    let mut hits = 0;
    let after = update_session_slot(store, handle, |s| {
        hits = s.fleet.begin(micros_per_hit, stale_ms, now_ms).hits;
        hits > 0
    })?;
    Ok(KeyBegun {
        hits,
        in_flight: after.is_some_and(|s| s.fleet.in_flight > 0),
    })
}

/// Books a reply (None: a failure) into a tally; sets `refused_until` on `OVER_LIMIT`.
fn book_reply(
    fleet: &mut FleetTally,
    refused_until_ms: &mut u64,
    reply: Option<&FleetView>,
    now_ms: u64,
) -> KeyReported {
    let mut out = KeyReported::default();
    match reply {
        Some(view) => {
            out.dropped = fleet.accept(view, now_ms);
            if view.over_limit {
                out.refused = true;
                *refused_until_ms = now_ms.saturating_add(view.reset_in_ms.max(1));
            }
        }
        None => fleet.fail(),
    }
    out
}

/// Still to report: in flight, or a whole hit unreported.
fn still_pending(fleet: &FleetTally, micros_per_hit: Micros) -> bool {
    fleet.in_flight > 0 || fleet.unreported >= micros_per_hit
}

/// [`finish_key_report`] for an HTTP session.
pub fn finish_session_report<S: Store + ?Sized>(
    store: &S,
    handle: &SessionHandle,
    micros_per_hit: Micros,
    reply: Option<&FleetView>,
    now_ms: u64,
) -> Result<KeyReported, StoreError> {
    let mut out = KeyReported::default();
    let after = update_session_slot(store, handle, |s| {
        out = book_reply(&mut s.fleet, &mut s.refused_until_ms, reply, now_ms);
        true
    })?;
    out.pending = after.is_some_and(|s| still_pending(&s.fleet, micros_per_hit));
    Ok(out)
}

/// What a key's report came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyReported {
    /// Spend the store refused past the key's limit (it cannot be recorded).
    pub dropped: Micros,
    /// The store refused the key (`OVER_LIMIT`).
    pub refused: bool,
    /// Spend is still to report: a failure, or a whole hit booked meanwhile
    /// (a part below one hit waits in the key's record for its next booking).
    pub pending: bool,
}

/// Books a key's report: the store's reply for it, or None for a failure.
#[allow(clippy::too_many_arguments)]
pub fn finish_key_report<S: Store + ?Sized>(
    store: &S,
    key: &RuleKey,
    window: Window,
    slots: u32,
    micros_per_hit: Micros,
    reply: Option<&FleetView>,
    now_ms: u64,
) -> Result<KeyReported, StoreError> {
    let mut out = KeyReported::default();
    let after = update_key(store, key, window, slots, now_ms, |s| {
        out = book_reply(&mut s.fleet, &mut s.refused_until_ms, reply, now_ms);
        true
    })?;
    out.pending = after.is_some_and(|s| still_pending(&s.fleet, micros_per_hit));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{DescriptorStatus, RateLimit};
    use super::*;
    use crate::budget::rules::{reserve, settle, Reserve};
    use crate::store::mem::MemStore;

    const DAY: Window = Window::Day;
    const NOON: u64 = 1_796_212_800_000;

    #[test]
    fn reports_carry_one_descriptor_per_key_with_its_hits() {
        let bytes = encode_key_reports(
            "costguard",
            &[
                KeyReport {
                    rule: Some("key-daily"),
                    key_id: "h:ab",
                    hits: 300,
                },
                KeyReport {
                    rule: Some("burst"),
                    key_id: "u1",
                    hits: 2,
                },
            ],
        );
        let req = RateLimitRequest::decode(&bytes[..]).unwrap();
        assert_eq!(req.hits_addend, 0, "several keys: only per descriptor");
        assert_eq!(req.descriptors.len(), 2);
        let d = &req.descriptors[0];
        assert_eq!(
            (d.entries[0].key.as_str(), d.entries[0].value.as_str()),
            (BUDGET_ENTRY, "key-daily")
        );
        assert_eq!(
            (d.entries[1].key.as_str(), d.entries[1].value.as_str()),
            (KEY_ENTRY, "h:ab")
        );
        assert_eq!(d.hits_addend.as_ref().map(|h| h.value), Some(300));
        let one = encode_key_reports(
            "costguard",
            &[KeyReport {
                rule: None,
                key_id: "k",
                hits: 7,
            }],
        );
        let one = RateLimitRequest::decode(&one[..]).unwrap();
        assert_eq!(one.hits_addend, 7);
        let e = &one.descriptors[0].entries;
        assert_eq!(
            (e.len(), e[0].key.as_str(), e[0].value.as_str()),
            (1, SESSION_ENTRY, "k")
        );
    }

    fn status(over: bool, limit: u32, remaining: u32) -> DescriptorStatus {
        DescriptorStatus {
            code: if over { Code::OverLimit } else { Code::Ok } as i32,
            current_limit: Some(RateLimit {
                requests_per_unit: limit,
                unit: 4,
                name: String::new(),
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(super::super::Duration {
                seconds: 60,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn replies_answer_each_descriptor() {
        let reply = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![status(false, 100, 40), status(true, 100, 0)],
        }
        .encode_to_vec();
        let views = decode_key_replies(&reply, 1_000, 2).unwrap();
        assert_eq!((views[0].over_limit, views[0].spend), (false, 60_000));
        assert_eq!((views[1].over_limit, views[1].reset_in_ms), (true, 60_000));
        assert_eq!(decode_key_replies(&reply, 1_000, 3), None);
    }

    #[test]
    fn a_key_reports_once_learns_the_fleet_and_is_refused_when_over() {
        let store = MemStore::default();
        let key = RuleKey::new("k", b"alice");
        let limit = 1_000_000;
        let Reserve::Reserved { handle, .. } =
            reserve(&store, &key, DAY, limit, 100_000, 10, NOON).unwrap()
        else {
            panic!()
        };
        settle(&store, &handle, DAY, 250_500, true, 10, NOON).unwrap();
        // 250 whole hits of $0.001; the rest waits.
        assert_eq!(
            begin_key_report(&store, &key, DAY, 10, 1_000, 1_000, NOON)
                .unwrap()
                .hits,
            250
        );
        assert_eq!(
            begin_key_report(&store, &key, DAY, 10, 1_000, 1_000, NOON)
                .unwrap()
                .hits,
            0
        );
        // The fleet (other Envoys too) has $0.90 of $1 for the key.
        let view = FleetView {
            over_limit: false,
            spend: 900_000,
            remaining_hits: 100,
            reset_in_ms: 60_000,
        };
        let r = finish_key_report(&store, &key, DAY, 10, 1_000, Some(&view), NOON + 1).unwrap();
        // $0.0005 left, below one hit: it waits in the record for the key's next booking.
        assert_eq!(
            r,
            KeyReported {
                dropped: 0,
                refused: false,
                pending: false
            }
        );
        // Local spend alone ($0.2505) has room; the fleet's ($0.9005) plus a $0.0995
        // reservation reaches the limit.
        let Reserve::Reserved { .. } =
            reserve(&store, &key, DAY, limit, 99_500, 10, NOON + 2).unwrap()
        else {
            panic!("room for one more")
        };
        assert!(matches!(
            reserve(&store, &key, DAY, limit, 0, 10, NOON + 3).unwrap(),
            Reserve::Exhausted { by_fleet: true, .. }
        ));
        // OVER_LIMIT refuses the key until the store's window resets.
        let other = RuleKey::new("k", b"bob");
        reserve(&store, &other, DAY, limit, 1, 10, NOON).unwrap();
        settle(
            &store,
            &crate::budget::rules::RuleHandle {
                key: other.clone(),
                ticket: Default::default(),
            },
            DAY,
            5_000,
            true,
            10,
            NOON,
        )
        .unwrap();
        assert_eq!(
            begin_key_report(&store, &other, DAY, 10, 1_000, 1_000, NOON)
                .unwrap()
                .hits,
            5
        );
        let over = FleetView {
            over_limit: true,
            spend: 1_000_000,
            remaining_hits: 0,
            reset_in_ms: 30_000,
        };
        let r = finish_key_report(&store, &other, DAY, 10, 1_000, Some(&over), NOON + 10).unwrap();
        assert_eq!(
            r,
            KeyReported {
                dropped: 5_000,
                refused: true,
                pending: false
            }
        );
        assert!(matches!(
            reserve(&store, &other, DAY, limit, 0, 10, NOON + 20).unwrap(),
            Reserve::Exhausted { by_fleet: true, .. }
        ));
        assert!(matches!(
            reserve(&store, &other, DAY, limit, 0, 10, NOON + 30_010).unwrap(),
            Reserve::Reserved { .. }
        ));
        // A failed report keeps the spend for the next one.
        let third = RuleKey::new("k", b"carol");
        settle(
            &store,
            &crate::budget::rules::RuleHandle {
                key: third.clone(),
                ticket: Default::default(),
            },
            DAY,
            3_000,
            true,
            10,
            NOON,
        )
        .unwrap();
        assert_eq!(
            begin_key_report(&store, &third, DAY, 10, 1_000, 1_000, NOON)
                .unwrap()
                .hits,
            3
        );
        let r = finish_key_report(&store, &third, DAY, 10, 1_000, None, NOON + 1).unwrap();
        assert!(r.pending);
        assert_eq!(
            begin_key_report(&store, &third, DAY, 10, 1_000, 1_000, NOON + 2)
                .unwrap()
                .hits,
            3
        );
    }
}
