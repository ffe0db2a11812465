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

use crate::config::GlobalStoreConfig;
use crate::money::Micros;
use prost::Message;

/// The descriptor entry costguard reports under.
pub const DESCRIPTOR_KEY: &str = "costguard_global";
pub const DESCRIPTOR_VALUE: &str = "spend";
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

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
    /// Overrides the request's `hits_addend` for this descriptor.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

/// `google.protobuf.UInt64Value`.
#[derive(Clone, PartialEq, Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
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
            hits_addend: None,
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
    Some(view_of(
        reply.statuses.first(),
        over_limit,
        cfg.micros_per_hit,
    ))
}

/// One descriptor's status, in µ$.
fn view_of(
    status: Option<&DescriptorStatus>,
    over_limit: bool,
    micros_per_hit: Micros,
) -> FleetView {
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
    FleetView {
        over_limit,
        spend: limit
            .saturating_sub(remaining)
            .saturating_mul(micros_per_hit),
        remaining_hits: remaining,
        reset_in_ms,
    }
}

mod global;
pub mod key_reports;
pub mod keys;
mod tally;
pub use global::{begin_report, finish_report};
pub use tally::{Begun, FleetTally};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A $1 global window reported in $0.001 hits.
    pub(in crate::fleet) fn config() -> Config {
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
}
