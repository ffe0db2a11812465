//! Rounds of budget-key reports: which keys have spend to report, the calls
//! that carry it, and what their replies come to. The adapter only sends
//! the calls and hands back the replies.
//!
//! Each VM remembers the fleet keys it booked spend for (bounded); a tick
//! reports those whose spend reached a whole hit, `descriptors_per_call` to
//! a call, and forgets a key once it has nothing left to report. Keys with
//! no activity on this Envoy are never polled.

use super::grpc_unframe;
use super::keys::{
    begin_key_report, begin_session_report, decode_key_replies, encode_key_reports,
    finish_key_report, finish_session_report, KeyBegun, KeyReport, KeyReported,
};
use super::FleetView;
use crate::budget::rules::RuleKey;
use crate::budget::SessionHandle;
use crate::config::Config;
use crate::money::Micros;
use crate::store::Store;
use crate::store::StoreError;
use hashbrown::HashMap;

/// Keys a VM remembers to report, at most.
pub const MAX_PENDING_KEYS: usize = 100_000;
/// Calls a VM starts per round, at most (the rest wait for the next round).
pub const MAX_CALLS_PER_ROUND: usize = 64;
/// A report with no answer after this many timeouts is taken back.
const STALE_REPORT_TIMEOUTS: u64 = 4;

/// What a fleet key counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// A key of the budget rule of this name.
    Rule { rule: String, key: RuleKey },
    /// An HTTP session (`session.scope: fleet`).
    Session(SessionHandle),
}

/// A fleet key with spend to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKey {
    pub counted: Counted,
    /// The rule's key id, or the session id.
    pub key_id: String,
}

impl PendingKey {
    fn fingerprint(&self) -> [u8; 16] {
        match &self.counted {
            Counted::Rule { key, .. } => key.fingerprint,
            Counted::Session(h) => h.key.fingerprint,
        }
    }

    /// The rule's name, or "HTTP sessions" (for logs).
    pub fn owner(&self) -> &str {
        match &self.counted {
            Counted::Rule { rule, .. } => rule,
            Counted::Session(_) => "HTTP sessions",
        }
    }
}

/// The keys this VM booked spend for and has not reported yet.
#[derive(Default)]
pub struct PendingKeys {
    keys: HashMap<[u8; 16], PendingKey>,
}

impl PendingKeys {
    /// Remembers a rule's key; false when the set is full (its spend then
    /// waits in shared data for the key's next booking).
    pub fn note(&mut self, rule: &str, key: &RuleKey, key_id: &str) -> bool {
        self.insert(PendingKey {
            counted: Counted::Rule {
                rule: rule.to_string(),
                key: key.clone(),
            },
            key_id: key_id.to_string(),
        })
    }

    /// Remembers a session (as [`Self::note`]).
    pub fn note_session(&mut self, handle: &SessionHandle) -> bool {
        self.insert(PendingKey {
            counted: Counted::Session(handle.clone()),
            key_id: handle.key.display_id.clone(),
        })
    }

    fn insert(&mut self, key: PendingKey) -> bool {
        let fingerprint = key.fingerprint();
        if self.keys.contains_key(&fingerprint) {
            return true;
        }
        if self.keys.len() >= MAX_PENDING_KEYS {
            return false;
        }
        self.keys.insert(fingerprint, key);
        true
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn forget(&mut self, key: &PendingKey) {
        self.keys.remove(&key.fingerprint());
    }
}

/// One call of a round: its gRPC body and the keys it reports, in order.
pub struct KeyCall {
    pub body: Vec<u8>,
    pub keys: Vec<PendingKey>,
}

/// Starts a round: takes the whole hits of each pending key's unreported
/// spend in flight and packs them into calls. Keys of rules that are gone
/// (or no longer `fleet`) are forgotten; their spend stays local.
pub fn start_round<S: Store + ?Sized>(
    store: &S,
    config: &Config,
    pending: &mut PendingKeys,
    now_ms: u64,
) -> Vec<KeyCall> {
    let Some(gs) = &config.global_store else {
        return Vec::new();
    };
    let per_call = (gs.descriptors_per_call.max(1)) as usize;
    let stale_ms = gs.timeout_ms.saturating_mul(STALE_REPORT_TIMEOUTS);
    let mut batch: Vec<(PendingKey, u64)> = Vec::new();
    let mut gone = Vec::new();
    for (fingerprint, p) in pending.keys.iter() {
        if batch.len() >= per_call * MAX_CALLS_PER_ROUND {
            break;
        }
        match begin(store, config, p, stale_ms, now_ms) {
            // Its rule is gone, or no longer fleet-wide: its spend stays local.
            None => gone.push(*fingerprint),
            Some(Ok(b)) if b.hits > 0 => batch.push((p.clone(), b.hits)),
            // In flight: its reply decides. Otherwise below one hit: the rest
            // waits in the key's record for its next booking.
            Some(Ok(b)) if !b.in_flight => gone.push(*fingerprint),
            Some(Ok(_)) => {}
            Some(Err(e)) => log::debug!("fleet key report: {e:?}"),
        }
    }
    for f in gone {
        pending.keys.remove(&f);
    }
    batch
        .chunks(per_call)
        .map(|chunk| {
            let reports: Vec<KeyReport<'_>> = chunk
                .iter()
                .map(|(p, hits)| KeyReport {
                    rule: match &p.counted {
                        Counted::Rule { rule, .. } => Some(rule.as_str()),
                        Counted::Session(_) => None,
                    },
                    key_id: &p.key_id,
                    hits: *hits,
                })
                .collect();
            KeyCall {
                body: super::grpc_frame(&encode_key_reports(&gs.domain, &reports)),
                keys: chunk.iter().map(|(p, _)| p.clone()).collect(),
            }
        })
        .collect()
}

/// Starts one key's report; None when it is no longer counted in the fleet.
fn begin<S: Store + ?Sized>(
    store: &S,
    config: &Config,
    p: &PendingKey,
    stale_ms: u64,
    now_ms: u64,
) -> Option<Result<KeyBegun, StoreError>> {
    let per_hit = config.global_store.as_ref()?.micros_per_hit;
    Some(match &p.counted {
        Counted::Rule { rule, key } => {
            let r = config
                .budgets
                .rules
                .iter()
                .find(|r| &r.name == rule && r.fleet)?;
            begin_key_report(
                store,
                key,
                r.window,
                config.budgets.max_keys,
                per_hit,
                stale_ms,
                now_ms,
            )
        }
        Counted::Session(handle) => {
            if !config.session.fleet {
                return None;
            }
            begin_session_report(store, handle, per_hit, stale_ms, now_ms)
        }
    })
}

/// Books one key's reply (None: a failure); None when it is no longer counted.
fn finish<S: Store + ?Sized>(
    store: &S,
    config: &Config,
    p: &PendingKey,
    view: Option<&FleetView>,
    now_ms: u64,
) -> Option<Result<KeyReported, StoreError>> {
    let per_hit = config.global_store.as_ref()?.micros_per_hit;
    Some(match &p.counted {
        Counted::Rule { rule, key } => {
            let r = config.budgets.rules.iter().find(|r| &r.name == rule)?;
            finish_key_report(
                store,
                key,
                r.window,
                config.budgets.max_keys,
                per_hit,
                view,
                now_ms,
            )
        }
        Counted::Session(handle) => finish_session_report(store, handle, per_hit, view, now_ms),
    })
}

/// What a call's reply came to, for stats and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOutcome {
    /// The call failed (unreachable, error status, a reply that does not
    /// answer every key): its spend waits for the next round.
    pub failed: bool,
    /// Spend the store refused past a key's limit, per rule name.
    pub dropped: Vec<(String, Micros)>,
    /// Keys the store refused (`OVER_LIMIT`), by rule name.
    pub refused: Vec<String>,
}

/// Books a call's reply (`body`: the gRPC body of a successful call, None
/// for a failure) into each key's record.
pub fn finish_call<S: Store + ?Sized>(
    store: &S,
    config: &Config,
    call: &[PendingKey],
    body: Option<&[u8]>,
    pending: &mut PendingKeys,
    now_ms: u64,
) -> CallOutcome {
    let micros_per_hit = config.global_store.as_ref().map_or(1, |g| g.micros_per_hit);
    let views = body
        .and_then(grpc_unframe)
        .and_then(|m| decode_key_replies(m, micros_per_hit, call.len()));
    let mut outcome = CallOutcome {
        failed: views.is_none(),
        ..CallOutcome::default()
    };
    for (i, p) in call.iter().enumerate() {
        let view = views.as_ref().and_then(|v| v.get(i));
        match finish(store, config, p, view, now_ms) {
            None => pending.forget(p),
            Some(Ok(done)) => {
                if done.dropped > 0 {
                    outcome.dropped.push((p.owner().to_string(), done.dropped));
                }
                if done.refused {
                    outcome.refused.push(p.owner().to_string());
                }
                if !done.pending {
                    pending.forget(p);
                }
            }
            Some(Err(e)) => log::debug!("fleet key report: {e:?}"),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::super::{
        Code, DescriptorStatus, Duration, RateLimit, RateLimitRequest, RateLimitResponse,
    };
    use super::*;
    use crate::budget::rules::{reserve, settle, Reserve, RuleHandle};
    use crate::store::mem::MemStore;
    use prost::Message;

    const NOON: u64 = 1_796_212_800_000;

    fn config(per_call: u32) -> Config {
        Config::parse(
            format!(
                r#"{{"global_store":{{"rls_cluster":"rls","usd_per_hit":0.001,"descriptors_per_call":{per_call}}},
                   "budgets":[{{"name":"k","key":"header:x-api-key","limit_usd":1,"window":"day","scope":"fleet"}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn book(store: &MemStore, c: &Config, pending: &mut PendingKeys, id: &str, cost: Micros) {
        let rule = &c.budgets.rules[0];
        let key = RuleKey::new(&rule.name, id.as_bytes());
        let Reserve::Reserved { handle, .. } = reserve(
            store,
            &key,
            rule.window,
            rule.limit,
            0,
            c.budgets.max_keys,
            NOON,
        )
        .unwrap() else {
            panic!()
        };
        let handle = RuleHandle {
            key: key.clone(),
            ..handle
        };
        settle(
            store,
            &handle,
            rule.window,
            cost,
            true,
            c.budgets.max_keys,
            NOON,
        )
        .unwrap();
        assert!(pending.note(&rule.name, &key, id));
    }

    fn reply_ok(n: usize) -> Vec<u8> {
        let status = DescriptorStatus {
            code: Code::Ok as i32,
            current_limit: Some(RateLimit {
                requests_per_unit: 1000,
                unit: 4,
                name: String::new(),
            }),
            limit_remaining: 400,
            duration_until_reset: Some(Duration {
                seconds: 60,
                nanos: 0,
            }),
        };
        super::super::grpc_frame(
            &RateLimitResponse {
                overall_code: Code::Ok as i32,
                statuses: vec![status; n],
            }
            .encode_to_vec(),
        )
    }

    #[test]
    fn a_round_batches_keys_and_forgets_them_once_reported() {
        let store = MemStore::default();
        let c = config(100);
        let mut pending = PendingKeys::default();
        for i in 0..250 {
            book(&store, &c, &mut pending, &format!("key-{i}"), 2_000);
        }
        // A key below one hit waits; it is not sent.
        book(&store, &c, &mut pending, "tiny", 500);
        let calls = start_round(&store, &c, &mut pending, NOON + 1);
        assert_eq!(
            calls.iter().map(|c| c.keys.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let req =
            RateLimitRequest::decode(super::super::grpc_unframe(&calls[0].body).unwrap()).unwrap();
        assert_eq!(req.descriptors.len(), 100);
        assert!(req
            .descriptors
            .iter()
            .all(|d| d.hits_addend.as_ref().map(|h| h.value) == Some(2)));
        // Nothing more to send while they are in flight.
        assert!(start_round(&store, &c, &mut pending, NOON + 2).is_empty());
        for call in &calls {
            let out = finish_call(
                &store,
                &c,
                &call.keys,
                Some(&reply_ok(call.keys.len())),
                &mut pending,
                NOON + 3,
            );
            assert!(!out.failed);
        }
        assert!(
            pending.is_empty(),
            "the key below one hit waits in its record, not here"
        );
    }

    #[test]
    fn a_failed_call_keeps_its_keys_and_their_spend() {
        let store = MemStore::default();
        let c = config(10);
        let mut pending = PendingKeys::default();
        for i in 0..5 {
            book(&store, &c, &mut pending, &format!("k{i}"), 3_000);
        }
        let calls = start_round(&store, &c, &mut pending, NOON);
        assert_eq!(calls.len(), 1);
        let out = finish_call(&store, &c, &calls[0].keys, None, &mut pending, NOON + 1);
        assert!(out.failed);
        // A reply that does not answer every key is a failure too.
        assert_eq!(pending.len(), 5);
        let again = start_round(&store, &c, &mut pending, NOON + 2);
        assert_eq!(again[0].keys.len(), 5);
        let out = finish_call(
            &store,
            &c,
            &again[0].keys,
            Some(&reply_ok(4)),
            &mut pending,
            NOON + 3,
        );
        assert!(out.failed);
        let third = start_round(&store, &c, &mut pending, NOON + 4);
        let req =
            RateLimitRequest::decode(super::super::grpc_unframe(&third[0].body).unwrap()).unwrap();
        assert!(req
            .descriptors
            .iter()
            .all(|d| d.hits_addend.as_ref().map(|h| h.value) == Some(3)));
    }
}
