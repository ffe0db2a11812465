//! Shared pieces of the fuzz targets.
#![allow(dead_code)]

use costguard::config::Config;
use costguard::pricing::cost_micros;
use costguard::http::budgets::AppliedRule;
use costguard::realtime::{Booked, Notice, RealtimeEnv, RuleOut};
use costguard::usage::Usage;

/// Prices with the built-in table, remembers notices.
pub struct Env {
    pub config: Config,
    pub notices: Vec<Notice>,
}

impl Env {
    pub fn new() -> Self {
        let config = Config::parse(br#"{"session":{"budget_usd":5}}"#).unwrap_or_else(|_| unreachable!());
        Env { config, notices: Vec::new() }
    }
}

impl RealtimeEnv for Env {
    fn book(&mut self, model: &str, usage: &Usage, _rules: &mut [AppliedRule]) -> Booked {
        Booked {
            cost: cost_micros(usage, self.config.prices.lookup(model).prices()),
            exhausted: None,
        }
    }
    fn exhausted_rule(&mut self, _rules: &mut [AppliedRule]) -> Option<RuleOut> {
        None
    }
    fn breaker_closes_sessions(&self) -> bool {
        false
    }
    fn random_mask(&mut self) -> [u8; 4] {
        [1, 2, 3, 4]
    }
    fn notice(&mut self, notice: Notice) {
        self.notices.push(notice);
    }
}

/// Splits `data` into chunks whose sizes come from `sizes` (cycled, 1..=256).
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i % sizes.len().max(1)).map_or(rest.len(), |&s| usize::from(s) + 1);
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}
