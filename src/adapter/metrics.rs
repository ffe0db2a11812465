//! costguard's Envoy stats, defined once per VM with their ids cached.
//! The same name defined in every VM is one process-wide stat.
//!
//! Every host call costs microseconds of latency in this Envoy's V8 (measured),
//! so counters are summed in the VM and flushed to Envoy on the root tick
//! (every second): a request costs no stat calls at all. Gauges and
//! histograms, which change rarely, go to Envoy at once.

use super::host::{self, MetricKind};
use crate::exchange::Priced;
use hashbrown::HashMap;
use std::cell::Cell;

fn define(kind: MetricKind, name: &str) -> Option<u32> {
    match host::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("cannot define metric {name}: status {}", e.0);
            None
        }
    }
}

/// A counter whose increments are held in the VM until [`Counter::flush`].
#[derive(Default)]
pub struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn new(name: &str) -> Counter {
        Counter {
            id: define(MetricKind::Counter, name),
            pending: Cell::new(0),
        }
    }
    pub fn add(&self, n: u64) {
        self.pending.set(self.pending.get().saturating_add(n));
    }
    pub fn inc(&self) {
        self.add(1);
    }
    fn flush(&self) {
        let n = self.pending.take();
        if let (Some(id), true) = (self.id, n > 0) {
            let _ = host::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// A gauge or histogram: written to Envoy at once.
#[derive(Clone, Copy, Default)]
pub struct Direct(Option<u32>);

impl Direct {
    fn new(kind: MetricKind, name: &str) -> Direct {
        Direct(define(kind, name))
    }
    /// Gauges: move by a signed amount.
    pub fn shift(self, by: i64) {
        if let Some(id) = self.0 {
            let _ = host::increment_metric(id, by);
        }
    }
    /// Gauge value, or histogram sample.
    pub fn record(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = host::record_metric(id, value);
        }
    }
}

struct ModelMetrics {
    cost: Counter,
    input: Counter,
    output: Counter,
    cached_input: Counter,
    audio_input: Counter,
    audio_output: Counter,
}

impl ModelMetrics {
    fn counters(&self) -> [&Counter; 6] {
        [
            &self.cost,
            &self.input,
            &self.output,
            &self.cached_input,
            &self.audio_input,
            &self.audio_output,
        ]
    }
}

pub struct Metrics {
    pub requests: Counter,
    pub rejected_circuit_open: Counter,
    pub rejected_session_budget: Counter,
    pub rejected_origin: Counter,
    pub cost: Counter,
    pub sessions_started: Counter,
    pub sessions_ended: Counter,
    pub sessions_warned: Counter,
    pub sessions_budget_exceeded: Counter,
    pub sessions_duration_exceeded: Counter,
    pub sessions_aborted: Counter,
    pub sessions_active: Direct,
    pub session_cost: Direct,
    pub http_sessions_tracked: Direct,
    pub http_sessions_evicted: Counter,
    pub global_window_spend: Direct,
    pub breaker_open: Direct,
    pub breaker_trips: Counter,
    pub usage_parse_errors: Counter,
    pub usage_missing: Counter,
    pub usage_unknown_model: Counter,
    pub global_store_errors: Counter,
    pub global_store_healthy: Direct,
    pub pricing_models: Direct,
    pub catalog_age_s: Direct,
    pub catalog_errors: Counter,
    per_model: HashMap<String, ModelMetrics>,
}

impl Metrics {
    pub fn define() -> Metrics {
        use MetricKind::{Gauge, Histogram};
        let c = Counter::new;
        Metrics {
            requests: c("costguard.requests"),
            rejected_circuit_open: c("costguard.rejected.circuit_open"),
            rejected_session_budget: c("costguard.rejected.session_budget"),
            rejected_origin: c("costguard.rejected.origin"),
            cost: c("costguard.cost_micro_usd"),
            sessions_started: c("costguard.sessions.started"),
            sessions_ended: c("costguard.sessions.ended"),
            sessions_warned: c("costguard.sessions.warned"),
            sessions_budget_exceeded: c("costguard.sessions.budget_exceeded"),
            sessions_duration_exceeded: c("costguard.sessions.duration_exceeded"),
            sessions_aborted: c("costguard.sessions.aborted"),
            sessions_active: Direct::new(Gauge, "costguard.sessions.active"),
            session_cost: Direct::new(Histogram, "costguard.session_cost_micro_usd"),
            http_sessions_tracked: Direct::new(Gauge, "costguard.http_sessions.tracked"),
            http_sessions_evicted: c("costguard.http_sessions.evicted"),
            global_window_spend: Direct::new(Gauge, "costguard.global.window_spend_micro_usd"),
            breaker_open: Direct::new(Gauge, "costguard.circuit_breaker.open"),
            breaker_trips: c("costguard.circuit_breaker.trips"),
            usage_parse_errors: c("costguard.usage.parse_errors"),
            usage_missing: c("costguard.usage.missing"),
            usage_unknown_model: c("costguard.usage.unknown_model"),
            global_store_errors: c("costguard.global_store.errors"),
            global_store_healthy: Direct::new(Gauge, "costguard.global_store.healthy"),
            pricing_models: Direct::new(Gauge, "costguard.pricing.models"),
            catalog_age_s: Direct::new(Gauge, "costguard.pricing.catalog_age_s"),
            catalog_errors: c("costguard.pricing.catalog_errors"),
            per_model: HashMap::new(),
        }
    }

    /// Hands the counters' increments to Envoy (root tick).
    pub fn flush(&self) {
        for c in [
            &self.requests,
            &self.rejected_circuit_open,
            &self.rejected_session_budget,
            &self.rejected_origin,
            &self.cost,
            &self.sessions_started,
            &self.sessions_ended,
            &self.sessions_warned,
            &self.sessions_budget_exceeded,
            &self.sessions_duration_exceeded,
            &self.sessions_aborted,
            &self.http_sessions_evicted,
            &self.breaker_trips,
            &self.usage_parse_errors,
            &self.usage_missing,
            &self.usage_unknown_model,
            &self.global_store_errors,
            &self.catalog_errors,
        ] {
            c.flush();
        }
        for m in self.per_model.values() {
            for c in m.counters() {
                c.flush();
            }
        }
    }

    fn model(&mut self, model: &str) -> &ModelMetrics {
        self.per_model.entry_ref(model).or_insert_with(|| {
            let name = |suffix: &str| format!("costguard.model.{model}.{suffix}");
            ModelMetrics {
                cost: Counter::new(&name("cost_micro_usd")),
                input: Counter::new(&name("input_tokens")),
                output: Counter::new(&name("output_tokens")),
                cached_input: Counter::new(&name("cached_input_tokens")),
                audio_input: Counter::new(&name("audio_input_tokens")),
                audio_output: Counter::new(&name("audio_output_tokens")),
            }
        })
    }

    /// Counts one priced response.
    pub fn record_priced(&mut self, priced: &Priced) {
        self.cost.add(priced.cost);
        if priced.unknown_name.is_some() {
            self.usage_unknown_model.inc();
        }
        let m = self.model(&priced.stat_model);
        let u = &priced.usage;
        m.cost.add(priced.cost);
        m.input.add(u.input_total());
        m.output.add(u.output_total());
        m.cached_input.add(u.cached_input_total());
        m.audio_input.add(u.audio_input_total());
        m.audio_output.add(u.audio_output);
    }
}
