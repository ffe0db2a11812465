//! costguard-rls-server: the Envoy rate-limit service API over Limitador + Redis.
//!
//!   costguard-rls-server --port N --redis redis://127.0.0.1:6379 --limit costguard:10000000:3600
//!
//! `--limit NAMESPACE:MAX:SECONDS` (repeatable) adds a condition-less Limitador
//! limit: every ShouldRateLimit of that domain counts against it, by
//! `hits_addend` (Limitador counts 0 as 1, and does not count a request that
//! would go over). The reply carries the limit, the remaining hits and the time
//! until the counter resets, as Envoy's own ratelimit service does. Prints
//! "listening on 127.0.0.1:PORT" once serving.
//!
//! `--budget-limit DOMAIN:RULE:MAX:SECONDS` (repeatable) adds a limit per key
//! of a costguard budget rule: descriptors `costguard_budget = RULE`,
//! `costguard_key = KEY` count in Limitador namespace `DOMAIN/budget/RULE`
//! with the key as the limit's variable, by the descriptor's own
//! `hits_addend` (else the request's). Every descriptor is answered on its
//! own, in order, as envoyproxy/ratelimit does. `--session-limit
//! DOMAIN:MAX:SECONDS` does the same for HTTP sessions (`costguard_session`,
//! namespace `DOMAIN/session`).

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::limit::{Context, Expression, Limit};
use std::collections::HashMap;
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

struct Service {
    limiter: Arc<AsyncRateLimiter>,
}

fn unit_for(window: Duration) -> (Unit, u64) {
    match window.as_secs() {
        1 => (Unit::Second, 1),
        60 => (Unit::Minute, 1),
        3600 => (Unit::Hour, 1),
        86400 => (Unit::Day, 1),
        s => (Unit::Second, s),
    }
}

type Descriptor = envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;

fn entry<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.entries.iter().find(|e| e.key == key).map(|e| e.value.as_str())
}

/// A descriptor of a costguard budget key: (rule, key).
fn budget_key(d: &Descriptor) -> Option<(&str, &str)> {
    Some((entry(d, "costguard_budget")?, entry(d, "costguard_key")?))
}

/// The namespace (under the domain) and key a per-key descriptor counts in:
/// a budget rule's key, or an HTTP session.
fn per_key(domain: &str, d: &Descriptor) -> Option<(String, String)> {
    if let Some((rule, key)) = budget_key(d) {
        return Some((format!("{domain}/budget/{rule}"), key.to_string()));
    }
    entry(d, "costguard_session").map(|id| (format!("{domain}/session"), id.to_string()))
}

impl Service {
    /// Counts `delta` in `namespace` (with the key as the limits' variable);
    /// the statuses of its counters and whether it was refused.
    async fn count(&self, namespace: &str, key: Option<&str>, delta: u64) -> Result<(Code, Vec<DescriptorStatus>), Status> {
        let namespace = namespace.into();
        let mut ctx = Context::default();
        if let Some(key) = key {
            ctx.list_binding("descriptors".to_string(), vec![HashMap::from([("key".to_string(), key.to_string())])]);
        }
        let result = self
            .limiter
            .check_rate_limited_and_update(&namespace, &ctx, delta)
            .await
            .map_err(|e| Status::unavailable(format!("limitador: {e}")))?;
        let code = if result.limited { Code::OverLimit } else { Code::Ok };
        let statuses = result
            .counters
            .iter()
            .map(|c| {
                let (unit, per) = unit_for(c.window());
                DescriptorStatus {
                    code: code as i32,
                    current_limit: Some(RateLimit {
                        name: c.limit().name().unwrap_or("").to_string(),
                        requests_per_unit: u32::try_from(c.max_value() / per).unwrap_or(u32::MAX),
                        unit: unit as i32,
                    }),
                    limit_remaining: u32::try_from(c.remaining().unwrap_or(c.max_value())).unwrap_or(u32::MAX),
                    duration_until_reset: Some(PbDuration {
                        seconds: c.expires_in().unwrap_or(c.window()).as_secs() as i64,
                        nanos: 0,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        Ok((code, statuses))
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(&self, request: Request<RateLimitRequest>) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        let request_delta = u64::from(req.hits_addend.max(1));
        if !req.descriptors.iter().any(|d| per_key(&req.domain, d).is_some()) {
            // The global window: one condition-less limit per domain.
            let (code, statuses) = self.count(&req.domain, None, request_delta).await?;
            return Ok(Response::new(RateLimitResponse { overall_code: code as i32, statuses, ..Default::default() }));
        }
        let mut overall = Code::Ok;
        let mut statuses = Vec::new();
        for d in &req.descriptors {
            let Some((namespace, key)) = per_key(&req.domain, d) else {
                statuses.push(DescriptorStatus { code: Code::Ok as i32, ..Default::default() });
                continue;
            };
            let delta = d.hits_addend.as_ref().map_or(request_delta, |h| h.value.max(1));
            let (code, mut counted) = self.count(&namespace, Some(&key), delta).await?;
            if code == Code::OverLimit {
                overall = Code::OverLimit;
            }
            let mut status = counted.pop().unwrap_or_default();
            status.code = code as i32;
            statuses.push(status);
        }
        Ok(Response::new(RateLimitResponse { overall_code: overall as i32, statuses, ..Default::default() }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 0u16;
    let mut redis_url = String::from("redis://127.0.0.1:6379");
    let mut limits = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).ok_or("--port N")?,
            "--redis" => redis_url = args.next().ok_or("--redis URL")?,
            "--limit" => {
                let spec = args.next().ok_or("--limit NAMESPACE:MAX:SECONDS")?;
                let parts: Vec<&str> = spec.split(':').collect();
                let [ns, max, secs] = parts[..] else { return Err("--limit NAMESPACE:MAX:SECONDS".into()) };
                limits.push(Limit::new(ns, max.parse()?, secs.parse()?, [], []));
            }
            "--budget-limit" => {
                let spec = args.next().ok_or("--budget-limit DOMAIN:RULE:MAX:SECONDS")?;
                let parts: Vec<&str> = spec.split(':').collect();
                let [domain, rule, max, secs] = parts[..] else {
                    return Err("--budget-limit DOMAIN:RULE:MAX:SECONDS".into());
                };
                let key = Expression::parse("descriptors[0].key").map_err(|e| format!("{e:?}"))?;
                limits.push(Limit::new(format!("{domain}/budget/{rule}").as_str(), max.parse()?, secs.parse()?, [], [key]));
            }
            "--session-limit" => {
                let spec = args.next().ok_or("--session-limit DOMAIN:MAX:SECONDS")?;
                let parts: Vec<&str> = spec.split(':').collect();
                let [domain, max, secs] = parts[..] else {
                    return Err("--session-limit DOMAIN:MAX:SECONDS".into());
                };
                let key = Expression::parse("descriptors[0].key").map_err(|e| format!("{e:?}"))?;
                limits.push(Limit::new(format!("{domain}/session").as_str(), max.parse()?, secs.parse()?, [], [key]));
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    // Short timeouts: an outage must fail calls at once, not hang them for a minute.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(200))
        .set_response_timeout(Duration::from_millis(200))
        .set_number_of_retries(1)
        .set_max_delay(200);
    let client = redis::Client::open(redis_url.as_str())?;
    let manager = ConnectionManager::new_with_config(client, config).await?;
    let storage = AsyncRedisStorage::new_with_conn_manager(manager).await?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    for l in limits {
        limiter.add_limit(l);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(Service { limiter: Arc::new(limiter) }))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! costguard's hand-declared messages against the real, generated schema.
    use super::*;
    use prost::Message;

    #[test]
    fn costguard_reports_decode_as_the_real_request() {
        let bytes = costguard::fleet::encode_report("costguard", 4_321);
        let req = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.domain, "costguard");
        assert_eq!(req.hits_addend, 4_321);
        let entry = &req.descriptors[0].entries[0];
        assert_eq!((entry.key.as_str(), entry.value.as_str()), ("costguard_global", "spend"));
    }

    #[test]
    fn costguard_key_reports_decode_as_the_real_request() {
        use costguard::fleet::keys::{encode_key_reports, KeyReport};
        let bytes = encode_key_reports(
            "costguard",
            &[
                KeyReport { rule: Some("key-daily"), key_id: "h:00ff", hits: 12 },
                KeyReport { rule: None, key_id: "s-1", hits: 3 },
            ],
        );
        let req = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.descriptors.len(), 2);
        assert_eq!(budget_key(&req.descriptors[0]), Some(("key-daily", "h:00ff")));
        assert_eq!(req.descriptors[0].hits_addend.as_ref().map(|h| h.value), Some(12));
        assert_eq!(req.descriptors[1].hits_addend.as_ref().map(|h| h.value), Some(3));
        assert_eq!(per_key("costguard", &req.descriptors[1]), Some(("costguard/session".to_string(), "s-1".to_string())));
    }

    #[test]
    fn real_replies_decode_in_costguard() {
        let reply = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit as i32,
                current_limit: Some(RateLimit { name: "x".into(), requests_per_unit: 1_000, unit: Unit::Hour as i32 }),
                limit_remaining: 7,
                duration_until_reset: Some(PbDuration { seconds: 42, nanos: 0 }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let cfg = costguard::config::Config::parse(br#"{"global_store":{"rls_cluster":"r","usd_per_hit":0.001}}"#)
            .unwrap()
            .global_store
            .unwrap();
        let view = costguard::fleet::decode_reply(&reply.encode_to_vec(), &cfg).unwrap();
        assert!(view.over_limit);
        assert_eq!((view.spend, view.remaining_hits, view.reset_in_ms), (993 * 1_000, 7, 42_000));
    }
}
