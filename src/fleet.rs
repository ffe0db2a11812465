//! The fleet-wide global window through Envoy's rate-limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), as served
//! by `envoyproxy/ratelimit` or Kuadrant's Limitador.
//!
//! Each Envoy reports its spend as `hits_addend` of the descriptor
//! `costguard_global = spend` in the configured domain, one hit per
//! `usd_per_hit`. The store's limit is the global budget in hits, its unit the
//! window; its reply tells the fleet's spend (`limit − remaining`) and when
//! the window resets, and `OVER_LIMIT` trips every Envoy's breaker.
//!
//! Bookkeeping lives in the global record in shared data: spend is
//! `unreported` until a report takes it `in_flight`; a reply clears it, a
//! failure puts it back. So spend is never dropped, and only an answer lost
//! after the store counted it (a timeout) can count it twice.

use crate::budget::{update, GlobalState, Store, StoreError, KEY_GLOBAL};
use crate::config::{GlobalConfig, GlobalStoreConfig};
use crate::money::Micros;
use prost::Message;

/// The descriptor entry costguard reports under.
pub const DESCRIPTOR_KEY: &str = "costguard_global";
pub const DESCRIPTOR_VALUE: &str = "spend";
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// A report with no answer after this many timeouts is taken back.
const STALE_REPORT_TIMEOUTS: u64 = 4;

/// `envoy.service.ratelimit.v3.RateLimitRequest` (the fields costguard sets).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<DescriptorEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (the fields costguard reads).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The request reporting `hits`.
pub fn encode_report(domain: &str, hits: u32) -> Vec<u8> {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![DescriptorEntry {
                key: DESCRIPTOR_KEY.to_string(),
                value: DESCRIPTOR_VALUE.to_string(),
            }],
        }],
        hits_addend: hits,
    }
    .encode_to_vec()
}

/// Wraps a protobuf message in a gRPC frame (uncompressed).
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The message inside a gRPC frame.
pub fn grpc_unframe(body: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    (compressed == 0).then_some(())?;
    rest.get(4..4 + len)
}

/// What a reply said about the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetView {
    /// The report was refused: counting it would pass the limit.
    pub over_limit: bool,
    /// The fleet's spend in the store's window, µ$.
    pub spend: Micros,
    /// Hits the store still accepts.
    pub remaining_hits: u64,
    /// Until the store's window resets.
    pub reset_in_ms: u64,
}

pub fn decode_reply(message: &[u8], cfg: &GlobalStoreConfig) -> Option<FleetView> {
    let reply = RateLimitResponse::decode(message).ok()?;
    let over_limit = reply.overall_code == Code::OverLimit as i32;
    let status = reply.statuses.first();
    let limit = status
        .and_then(|s| s.current_limit.as_ref())
        .map_or(0, |l| u64::from(l.requests_per_unit));
    let remaining = status.map_or(0, |s| u64::from(s.limit_remaining));
    let reset_in_ms = status
        .and_then(|s| s.duration_until_reset.as_ref())
        .map_or(0, |d| {
            u64::try_from(d.seconds).unwrap_or(0) * 1000
                + u64::try_from(d.nanos).unwrap_or(0) / 1_000_000
        });
    Some(FleetView {
        over_limit,
        spend: limit
            .saturating_sub(remaining)
            .saturating_mul(cfg.micros_per_hit),
        remaining_hits: remaining,
        reset_in_ms,
    })
}

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
    update::<S, GlobalState>(store, KEY_GLOBAL, |current| {
        hits = None;
        let mut s = current.copied().unwrap_or_default();
        if s.in_flight > 0 {
            if now_ms.saturating_sub(s.in_flight_since_ms)
                < cfg.timeout_ms.saturating_mul(STALE_REPORT_TIMEOUTS)
            {
                return None;
            }
            s.unreported = s.unreported.saturating_add(s.in_flight);
            s.in_flight = 0;
            s.store_errors += 1;
        }
        let mut n = (s.unreported / cfg.micros_per_hit).min(u64::from(u32::MAX));
        if now_ms < s.fleet_reset_at_ms && s.fleet_remaining_hits > 0 {
            n = n.min(s.fleet_remaining_hits);
        }
        if n == 0 {
            return (current.copied() != Some(s)).then_some(s);
        }
        s.in_flight = n * cfg.micros_per_hit;
        s.unreported -= s.in_flight;
        s.in_flight_since_ms = now_ms;
        hits = u32::try_from(n).ok();
        Some(s)
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
                // Counted by the store; or refused because it would pass the
                // limit: then it is offered again, cut to what still fits, and
                // dropped once nothing fits (spend past the fleet's limit
                // cannot be recorded in the store; every breaker is open).
                if view.over_limit && view.remaining_hits > 0 {
                    s.unreported = s.unreported.saturating_add(s.in_flight);
                }
                s.in_flight = 0;
                s.store_errors = 0;
                s.fleet_spend = view.spend;
                s.fleet_remaining_hits = view.remaining_hits;
                s.fleet_reset_at_ms = now_ms.saturating_add(view.reset_in_ms);
                if view.over_limit || s.fleet_spend_at(now_ms) >= global.budget {
                    let until = now_ms
                        .saturating_add(view.reset_in_ms)
                        .max(now_ms.saturating_add(global.cooldown_s.saturating_mul(1000)));
                    tripped = s.trip(until, now_ms);
                }
            }
            None => {
                s.unreported = s.unreported.saturating_add(s.in_flight);
                s.in_flight = 0;
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
    use crate::config::Config;
    use crate::store::mem::MemStore;

    fn config() -> Config {
        Config::parse(
            br#"{"global":{"budget_usd":1,"window_s":3600,"cooldown_s":60},
                 "global_store":{"rls_cluster":"rls","usd_per_hit":0.001}}"#,
        )
        .unwrap()
    }

    #[test]
    fn request_encoding_matches_the_schema_field_numbers() {
        let bytes = encode_report("costguard", 300);
        // domain (1, len) "costguard", descriptors (2, len) { entries (1, len) { key (1) value (2) } }, hits_addend (3, varint) 300
        let want: Vec<u8> = [
            &[0x0A, 9][..],
            b"costguard",
            &[0x12, 27, 0x0A, 25, 0x0A, 16],
            b"costguard_global",
            &[0x12, 5],
            b"spend",
            &[0x18, 0xAC, 0x02],
        ]
        .concat();
        assert_eq!(bytes, want);
        assert_eq!(grpc_unframe(&grpc_frame(&bytes)), Some(&bytes[..]));
        assert_eq!(grpc_unframe(&[1, 0, 0, 0, 0]), None);
    }

    #[test]
    fn reply_decoding() {
        let c = config();
        let store_cfg = c.global_store.unwrap();
        let reply = RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: vec![DescriptorStatus {
                code: Code::Ok as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: 1000,
                    unit: 3,
                    name: String::new(),
                }),
                limit_remaining: 400,
                duration_until_reset: Some(Duration {
                    seconds: 120,
                    nanos: 500_000_000,
                }),
            }],
        }
        .encode_to_vec();
        let view = decode_reply(&reply, &store_cfg).unwrap();
        assert_eq!(
            view,
            FleetView {
                over_limit: false,
                spend: 600 * 1000,
                remaining_hits: 400,
                reset_in_ms: 120_500
            }
        );
        assert_eq!(decode_reply(b"\xff\xff", &store_cfg), None);
    }

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
        assert_eq!((s.unreported, s.in_flight, s.store_errors), (3_500, 0, 1));
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
            (s.unreported, s.in_flight, s.store_errors, s.fleet_spend),
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
        assert_eq!((s.unreported, s.in_flight), (300_000, 0));
        // The next report offers exactly what still fits.
        assert_eq!(begin_report(&store, &sc, 20).unwrap(), Some(190));
        let full = FleetView {
            over_limit: false,
            spend: 1_000_000,
            remaining_hits: 0,
            reset_in_ms: 59_000,
        };
        finish_report(&store, &c.global, Some(full), 30).unwrap();
        assert_eq!(read_global(&store).unwrap().unreported, 110_000);
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
        assert_eq!((s.unreported, s.in_flight), (0, 0));
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
