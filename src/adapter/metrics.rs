//! costguard's Envoy stats, defined once per VM with their ids cached.
//! The same name defined in every VM is one process-wide stat.

use super::host::{self, MetricKind};
use crate::exchange::Priced;
use hashbrown::HashMap;

/// Contract name → id. A failed definition leaves id `None`: the stat is
/// missing, the filter goes on.
#[derive(Clone, Copy, Default)]
pub struct Metric(Option<u32>);

impl Metric {
    fn define(kind: MetricKind, name: &str) -> Metric {
        match host::define_metric(kind, name) {
            Ok(id) => Metric(Some(id)),
            Err(e) => {
                log::warn!("cannot define metric {name}: status {}", e.0);
                Metric(None)
            }
        }
    }
    pub fn add(self, n: u64) {
        if let Some(id) = self.0 {
            if n > 0 {
                let _ = host::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
    pub fn inc(self) {
        self.add(1);
    }
    /// For gauges: move by a signed amount.
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

#[derive(Clone, Copy)]
struct ModelMetrics {
    cost: Metric,
    input: Metric,
    output: Metric,
    cached_input: Metric,
    audio_input: Metric,
    audio_output: Metric,
}

pub struct Metrics {
    pub requests: Metric,
    pub rejected_circuit_open: Metric,
    pub rejected_session_budget: Metric,
    pub rejected_origin: Metric,
    pub cost: Metric,
    pub sessions_started: Metric,
    pub sessions_ended: Metric,
    pub sessions_warned: Metric,
    pub sessions_budget_exceeded: Metric,
    pub sessions_duration_exceeded: Metric,
    pub sessions_active: Metric,
    pub sessions_aborted: Metric,
    pub session_cost: Metric,
    pub http_sessions_tracked: Metric,
    pub http_sessions_evicted: Metric,
    pub global_window_spend: Metric,
    pub breaker_open: Metric,
    pub breaker_trips: Metric,
    pub usage_parse_errors: Metric,
    pub usage_missing: Metric,
    pub usage_unknown_model: Metric,
    pub global_store_errors: Metric,
    per_model: HashMap<String, ModelMetrics>,
}

impl Metrics {
    pub fn define() -> Metrics {
        use MetricKind::*;
        let m = Metric::define;
        Metrics {
            requests: m(Counter, "costguard.requests"),
            rejected_circuit_open: m(Counter, "costguard.rejected.circuit_open"),
            rejected_session_budget: m(Counter, "costguard.rejected.session_budget"),
            rejected_origin: m(Counter, "costguard.rejected.origin"),
            cost: m(Counter, "costguard.cost_micro_usd"),
            sessions_started: m(Counter, "costguard.sessions.started"),
            sessions_ended: m(Counter, "costguard.sessions.ended"),
            sessions_warned: m(Counter, "costguard.sessions.warned"),
            sessions_budget_exceeded: m(Counter, "costguard.sessions.budget_exceeded"),
            sessions_duration_exceeded: m(Counter, "costguard.sessions.duration_exceeded"),
            sessions_active: m(Gauge, "costguard.sessions.active"),
            sessions_aborted: m(Counter, "costguard.sessions.aborted"),
            session_cost: m(Histogram, "costguard.session_cost_micro_usd"),
            http_sessions_tracked: m(Gauge, "costguard.http_sessions.tracked"),
            http_sessions_evicted: m(Counter, "costguard.http_sessions.evicted"),
            global_window_spend: m(Gauge, "costguard.global.window_spend_micro_usd"),
            breaker_open: m(Gauge, "costguard.circuit_breaker.open"),
            breaker_trips: m(Counter, "costguard.circuit_breaker.trips"),
            usage_parse_errors: m(Counter, "costguard.usage.parse_errors"),
            usage_missing: m(Counter, "costguard.usage.missing"),
            usage_unknown_model: m(Counter, "costguard.usage.unknown_model"),
            global_store_errors: m(Counter, "costguard.global_store.errors"),
            per_model: HashMap::new(),
        }
    }

    fn model(&mut self, model: &str) -> ModelMetrics {
        if let Some(m) = self.per_model.get(model) {
            return *m;
        }
        let name = |suffix: &str| format!("costguard.model.{model}.{suffix}");
        let m = ModelMetrics {
            cost: Metric::define(MetricKind::Counter, &name("cost_micro_usd")),
            input: Metric::define(MetricKind::Counter, &name("input_tokens")),
            output: Metric::define(MetricKind::Counter, &name("output_tokens")),
            cached_input: Metric::define(MetricKind::Counter, &name("cached_input_tokens")),
            audio_input: Metric::define(MetricKind::Counter, &name("audio_input_tokens")),
            audio_output: Metric::define(MetricKind::Counter, &name("audio_output_tokens")),
        };
        self.per_model.insert(model.to_string(), m);
        m
    }

    /// Counts one priced response.
    pub fn record_priced(&mut self, priced: &Priced) {
        self.cost.add(priced.cost);
        if priced.unknown_model {
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
