//! costguard's Envoy stats, defined once per VM with their ids cached.
//! The same name defined in every VM is one process-wide stat.
//!
//! Every host call costs microseconds of latency in this Envoy's V8 (measured),
//! so counters are summed in the VM and flushed to Envoy on the root tick
//! (every second): a request costs no stat calls at all. Gauges and
//! histograms, which change rarely, go to Envoy at once.

use super::host::{self, MetricKind};
use crate::pricing::Priced;
use hashbrown::HashMap;
use std::cell::{Cell, RefCell};

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

/// One budget rule's stats (`costguard.budget.<name>.*`).
pub struct BudgetMetrics {
    pub spend: Counter,
    pub rejected: Counter,
    /// Refusals due to the fleet's spend (`scope: fleet`).
    pub fleet_refused: Counter,
    /// Keys holding a slot.
    pub keys: Direct,
    /// Reservations outstanding, made by this Envoy's VMs.
    pub reserved: Direct,
}

/// Every stat but the per-model and per-rule ones, each named once: the macro defines
/// the struct, defines each metric in Envoy, and flushes every counter, so a
/// counter cannot be left out of the flush.
macro_rules! metrics {
    (
        counters { $($counter:ident: $counter_name:literal,)* }
        gauges { $($gauge:ident: $gauge_name:literal,)* }
        histograms { $($histogram:ident: $histogram_name:literal,)* }
    ) => {
        pub struct Metrics {
            $(pub $counter: Counter,)*
            $(pub $gauge: Direct,)*
            $(pub $histogram: Direct,)*
            per_model: RefCell<HashMap<String, ModelMetrics>>,
            per_budget: RefCell<HashMap<String, BudgetMetrics>>,
        }

        impl Metrics {
            pub fn define() -> Metrics {
                Metrics {
                    $($counter: Counter::new($counter_name),)*
                    $($gauge: Direct::new(MetricKind::Gauge, $gauge_name),)*
                    $($histogram: Direct::new(MetricKind::Histogram, $histogram_name),)*
                    per_model: RefCell::new(HashMap::new()),
                    per_budget: RefCell::new(HashMap::new()),
                }
            }

            /// Hands the counters' increments to Envoy (root tick).
            pub fn flush(&self) {
                $(self.$counter.flush();)*
                if let Ok(per_model) = self.per_model.try_borrow() {
                    for m in per_model.values() {
                        for c in m.counters() {
                            c.flush();
                        }
                    }
                }
                if let Ok(per_budget) = self.per_budget.try_borrow() {
                    for b in per_budget.values() {
                        b.spend.flush();
                        b.rejected.flush();
                        b.fleet_refused.flush();
                    }
                }
            }
        }
    };
}

metrics! {
    counters {
        requests: "costguard.requests",
        rejected_circuit_open: "costguard.rejected.circuit_open",
        rejected_session_budget: "costguard.rejected.session_budget",
        rejected_origin: "costguard.rejected.origin",
        cost: "costguard.cost_micro_usd",
        sessions_started: "costguard.sessions.started",
        sessions_ended: "costguard.sessions.ended",
        sessions_warned: "costguard.sessions.warned",
        sessions_budget_exceeded: "costguard.sessions.budget_exceeded",
        sessions_duration_exceeded: "costguard.sessions.duration_exceeded",
        sessions_aborted: "costguard.sessions.aborted",
        http_sessions_evicted: "costguard.http_sessions.evicted",
        breaker_trips: "costguard.circuit_breaker.trips",
        usage_parse_errors: "costguard.usage.parse_errors",
        usage_missing: "costguard.usage.missing",
        usage_unknown_model: "costguard.usage.unknown_model",
        global_store_errors: "costguard.global_store.errors",
        catalog_errors: "costguard.pricing.catalog_errors",
        budget_capacity_exhausted: "costguard.budget.capacity_exhausted",
        global_store_refused: "costguard.global_store.refused_micro_usd",
    }
    gauges {
        sessions_active: "costguard.sessions.active",
        http_sessions_tracked: "costguard.http_sessions.tracked",
        global_window_spend: "costguard.global.window_spend_micro_usd",
        breaker_open: "costguard.circuit_breaker.open",
        global_store_healthy: "costguard.global_store.healthy",
        pricing_models: "costguard.pricing.models",
        catalog_age_s: "costguard.pricing.catalog_age_s",
        global_store_pending: "costguard.global_store.pending_descriptors",
    }
    histograms {
        session_cost: "costguard.session_cost_micro_usd",
    }
}

impl Metrics {
    /// Runs `f` on a budget rule's stats, defining them on first use.
    pub fn with_budget(&self, rule: &str, f: impl FnOnce(&BudgetMetrics)) {
        // Not re-entered: nothing below calls back into the metrics.
        let Ok(mut per_budget) = self.per_budget.try_borrow_mut() else {
            return;
        };
        let b = per_budget.entry_ref(rule).or_insert_with(|| {
            let name = |suffix: &str| format!("costguard.budget.{rule}.{suffix}");
            BudgetMetrics {
                spend: Counter::new(&name("spend_micro_usd")),
                rejected: Counter::new(&name("rejected")),
                fleet_refused: Counter::new(&name("fleet_refused")),
                keys: Direct::new(MetricKind::Gauge, &name("keys")),
                reserved: Direct::new(MetricKind::Gauge, &name("reserved_micro_usd")),
            }
        });
        f(b);
    }

    /// Counts one priced response.
    pub fn record_priced(&self, priced: &Priced) {
        self.cost.add(priced.cost);
        if priced.unknown_name.is_some() {
            self.usage_unknown_model.inc();
        }
        // Not re-entered: nothing below calls back into the metrics.
        let Ok(mut per_model) = self.per_model.try_borrow_mut() else {
            return;
        };
        let model = priced.stat_model.as_str();
        let m = per_model.entry_ref(model).or_insert_with(|| {
            let name = |suffix: &str| format!("costguard.model.{model}.{suffix}");
            ModelMetrics {
                cost: Counter::new(&name("cost_micro_usd")),
                input: Counter::new(&name("input_tokens")),
                output: Counter::new(&name("output_tokens")),
                cached_input: Counter::new(&name("cached_input_tokens")),
                audio_input: Counter::new(&name("audio_input_tokens")),
                audio_output: Counter::new(&name("audio_output_tokens")),
            }
        });
        let u = &priced.usage;
        m.cost.add(priced.cost);
        m.input.add(u.input_total());
        m.output.add(u.output_total());
        m.cached_input.add(u.cached_input_total());
        m.audio_input.add(u.audio_input_total());
        m.audio_output.add(u.audio_output);
    }
}
