//! Budget rules on the HTTP path (and for Realtime sessions): which rules
//! apply to a request, admission with reservations, booking.
//!
//! A rule applies when the request carries its header (and, for a rule with
//! `models`, names one of them). Admission asks every applying rule for
//! room; when one refuses, the others still answer (a check, no
//! reservation) so that the refusal names the rule that resets last, and
//! what was reserved is released.

use super::{Event, HttpEnv};
use crate::budget::checked_key_id;
use crate::budget::reservations::Ticket;
use crate::budget::rules::{self, Claimed, Reserve, RuleHandle, RuleKey, Settled};
use crate::config::{BudgetRule, Config, FailMode};
use crate::headers::HeaderPairs;
use crate::money::Micros;
use crate::realtime::RuleOut;
use crate::replies::{self, BudgetRefusal, LocalReply};

/// One rule that applies to a request, with the request's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRule {
    /// Index in the configuration's rules.
    pub rule: usize,
    pub key: RuleKey,
    /// The key as the fleet store sees it (rules with `scope: fleet` only):
    /// the header's value, or its hash for a credential.
    pub key_id: Option<String>,
    /// The reservation made at admission (a check leaves an empty ticket).
    pub handle: Option<RuleHandle>,
}

/// The keys of every rule whose header the request carries. A value that
/// cannot be a key: `400 invalid_budget_key`.
pub fn rule_keys(
    rules: &[BudgetRule],
    headers: &HeaderPairs,
) -> Result<Vec<AppliedRule>, LocalReply> {
    let mut applied = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(value) = headers.get(&rule.header) else {
            continue;
        };
        let id = checked_key_id(value, rule.header_is_credential)
            .map_err(|_| replies::invalid_budget_key(&rule.header))?;
        applied.push(AppliedRule {
            rule: i,
            key: RuleKey::new(&rule.name, &id),
            key_id: rule
                .fleet
                .then(|| String::from_utf8_lossy(&id).into_owned()),
            handle: None,
        });
    }
    Ok(applied)
}

/// A rule that has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub rule: usize,
    pub committed: Micros,
    pub reserved: Micros,
}

impl Exhausted {
    pub fn reply(&self, rule: &BudgetRule, now_ms: u64) -> LocalReply {
        replies::budget_exceeded(&BudgetRefusal {
            rule: &rule.name,
            committed: self.committed,
            reserved: self.reserved,
            limit: rule.limit,
            window_noun: &rule.window_noun(),
            retry_after_s: rule.window.retry_after_s(now_ms),
        })
    }
}

/// Of several exhausted rules, the one whose window ends last.
fn latest_reset(rules: &[BudgetRule], exhausted: &[Exhausted], now_ms: u64) -> Option<Exhausted> {
    let end = |e: &Exhausted| rules.get(e.rule).map_or(0, |r| r.window.bounds(now_ms).1);
    exhausted
        .iter()
        .copied()
        .reduce(|best, e| if end(&e) > end(&best) { e } else { best })
}

/// Reports a slot a key claimed (for the keys gauge).
fn report_claim(env: &mut dyn HttpEnv, rule: usize, claimed: Claimed) {
    match claimed {
        Claimed::No => {}
        Claimed::FreeSlot => env.event(Event::BudgetKeyClaimed {
            rule,
            from_rule_tag: None,
        }),
        Claimed::From(tag) => env.event(Event::BudgetKeyClaimed {
            rule,
            from_rule_tag: Some(tag),
        }),
    }
}

/// Counts a key that found no slot once per call (a call asks at its
/// headers, at its body's end and when it books).
fn report_full(env: &mut dyn HttpEnv, rule: usize, reported: &mut bool) {
    if !std::mem::replace(reported, true) {
        env.event(Event::BudgetCapacityExhausted { rule });
    }
}

/// Asks each rule for room for `amount` (0: a check, nothing reserved).
/// Admitted: the least room left among them (None when no rule answered).
/// Refused: every reservation made here is released first.
pub fn admit(
    env: &mut dyn HttpEnv,
    applied: &mut [AppliedRule],
    amount: Micros,
    now_ms: u64,
    full_reported: &mut bool,
) -> Result<Option<Micros>, LocalReply> {
    let slots = env.config().budgets.max_keys;
    let fail_mode = env.config().fail_mode;
    let mut least: Option<Micros> = None;
    let mut exhausted: Vec<Exhausted> = Vec::new();
    let mut no_capacity: Option<usize> = None;
    for a in applied.iter_mut() {
        let Some(rule) = env.config().budgets.rules.get(a.rule) else {
            continue;
        };
        let (window, limit) = (rule.window, rule.limit);
        let refused = !exhausted.is_empty() || no_capacity.is_some();
        let ask = if refused { 0 } else { amount };
        match rules::reserve(env.store(), &a.key, window, limit, ask, slots, now_ms) {
            Ok(Reserve::Reserved {
                handle,
                remaining,
                claimed,
            }) => {
                least = Some(least.map_or(remaining, |l| l.min(remaining)));
                report_claim(env, a.rule, claimed);
                if handle.ticket.amount > 0 {
                    env.event(Event::BudgetReserved {
                        rule: a.rule,
                        change: i64::try_from(handle.ticket.amount).unwrap_or(i64::MAX),
                    });
                }
                a.handle = Some(handle);
            }
            Ok(Reserve::Exhausted {
                committed,
                reserved,
                by_fleet,
            }) => {
                if by_fleet {
                    env.event(Event::BudgetFleetRefused { rule: a.rule });
                }
                exhausted.push(Exhausted {
                    rule: a.rule,
                    committed,
                    reserved,
                })
            }
            Ok(Reserve::Full) => {
                report_full(env, a.rule, full_reported);
                if fail_mode == FailMode::Closed && no_capacity.is_none() {
                    no_capacity = Some(a.rule);
                }
            }
            Err(error) => env.event(Event::StoreFailed {
                doing: "reserve budget",
                error,
            }),
        }
    }
    let config = env.config();
    let refusal = match latest_reset(&config.budgets.rules, &exhausted, now_ms) {
        Some(e) => config
            .budgets
            .rules
            .get(e.rule)
            .map(|rule| (e.rule, e.reply(rule, now_ms))),
        None => no_capacity.and_then(|i| {
            let rule = config.budgets.rules.get(i)?;
            Some((i, replies::budget_capacity(&rule.name)))
        }),
    };
    let Some((rule, reply)) = refusal else {
        return Ok(least);
    };
    release(env, applied, now_ms);
    env.event(Event::BudgetRejected { rule });
    Err(reply)
}

/// Releases the reservations made at admission (nothing is booked).
pub fn release(env: &mut dyn HttpEnv, applied: &mut [AppliedRule], now_ms: u64) {
    settle(env, applied, 0, now_ms, &mut true);
}

/// Books `cost` into each rule, replacing its reservation (once: the
/// handles are consumed). Returns each rule's committed spend afterwards.
pub fn settle(
    env: &mut dyn HttpEnv,
    applied: &mut [AppliedRule],
    cost: Micros,
    now_ms: u64,
    full_reported: &mut bool,
) -> Vec<(usize, Settled)> {
    let slots = env.config().budgets.max_keys;
    let mut out = Vec::new();
    for a in applied.iter_mut() {
        let Some((window, fleet)) = env
            .config()
            .budgets
            .rules
            .get(a.rule)
            .map(|r| (r.window, r.fleet))
        else {
            continue;
        };
        let handle = a.handle.take().unwrap_or_else(|| RuleHandle {
            key: a.key.clone(),
            ticket: Ticket::default(),
        });
        if handle.ticket.amount > 0 {
            env.event(Event::BudgetReserved {
                rule: a.rule,
                change: -i64::try_from(handle.ticket.amount).unwrap_or(i64::MAX),
            });
        }
        match rules::settle(env.store(), &handle, window, cost, fleet, slots, now_ms) {
            Ok(settled) => {
                report_claim(env, a.rule, settled.claimed);
                if cost > 0 {
                    if settled.lost {
                        report_full(env, a.rule, full_reported);
                    }
                    env.event(Event::BudgetSpend { rule: a.rule, cost });
                    if let (Some(key_id), false) = (&a.key_id, settled.lost) {
                        env.event(Event::BudgetFleetPending {
                            rule: a.rule,
                            key: a.key.clone(),
                            key_id: key_id.clone(),
                        });
                    }
                }
                out.push((a.rule, settled));
            }
            Err(error) => env.event(Event::StoreFailed {
                doing: "book budget spend",
                error,
            }),
        }
    }
    out
}

/// Books a Realtime response's cost into the session's rules; returns a
/// rule it exhausted (the one that resets last), if any.
pub fn book(
    env: &mut dyn HttpEnv,
    applied: &mut [AppliedRule],
    cost: Micros,
    now_ms: u64,
) -> Option<Exhausted> {
    let settled = settle(env, applied, cost, now_ms, &mut false);
    let config = env.config();
    let exhausted: Vec<Exhausted> = settled
        .into_iter()
        .filter(|(rule, s)| {
            config
                .budgets
                .rules
                .get(*rule)
                .is_some_and(|r| !s.lost && s.committed >= r.limit)
        })
        .map(|(rule, s)| Exhausted {
            rule,
            committed: s.committed,
            reserved: 0,
        })
        .collect();
    latest_reset(&config.budgets.rules, &exhausted, now_ms)
}

/// An exhausted rule, as a Realtime session reports it.
pub fn rule_out(config: &Config, e: &Exhausted) -> Option<RuleOut> {
    let rule = config.budgets.rules.get(e.rule)?;
    Some(RuleOut {
        name: rule.name.clone(),
        spent: e.committed,
        limit: rule.limit,
    })
}

/// A rule with no room now (a check: nothing is written), if any.
pub fn first_exhausted(
    env: &mut dyn HttpEnv,
    applied: &[AppliedRule],
    now_ms: u64,
) -> Option<Exhausted> {
    let slots = env.config().budgets.max_keys;
    let mut exhausted = Vec::new();
    for a in applied.iter() {
        let Some(rule) = env.config().budgets.rules.get(a.rule) else {
            continue;
        };
        if let Ok(Reserve::Exhausted {
            committed,
            reserved,
            ..
        }) = rules::reserve(
            env.store(),
            &a.key,
            rule.window,
            rule.limit,
            0,
            slots,
            now_ms,
        ) {
            exhausted.push(Exhausted {
                rule: a.rule,
                committed,
                reserved,
            });
        }
    }
    latest_reset(&env.config().budgets.rules, &exhausted, now_ms)
}
