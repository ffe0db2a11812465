//! What the streams of a VM share, and the host side of the core's needs.
//!
//! State lives at two scopes. **VM scope** ([`Vm`], one per Wasm VM, never
//! replaced): the stats and their pending counts, the Realtime streams'
//! reset deadlines, the view of the global window, the unknown models
//! already logged. **Configuration scope** ([`Shared`]): the configuration
//! and the prices in use. A new configuration (a new root context, or
//! `on_configure` again on an existing one) builds a new [`Shared`], while
//! streams that began before keep theirs; because counts and deadlines are
//! VM-scoped, whichever root context ticks flushes and enforces them all.

use super::host::{self, SharedData};
use super::metrics::Metrics;
use crate::budget::{GlobalState, GlobalView, Store};
use crate::catalog::{self, sync as catalog_sync};
use crate::config::{Config, PriceCatalogConfig};
use crate::fleet::key_reports::PendingKeys;
use crate::http::budgets::{self, AppliedRule};
use crate::http::{self, Event, FilterState, HttpEnv};
use crate::money::format_usd;
use crate::pricing::table::UnknownModels;
use crate::pricing::PriceTable;
use crate::realtime::{Booked, Notice, RealtimeEnv, RuleOut};
use crate::usage::Usage;
use hashbrown::HashMap;
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

/// When the root tick must reset a Realtime stream of this VM.
#[derive(Clone, Copy)]
pub struct ResetDeadline {
    pub at_ms: u64,
    /// Still open: a reset then ends an idle session past its duration limit.
    pub idle_past_limit: bool,
}

/// VM-scoped state (see the module docs).
pub struct Vm {
    pub metrics: Metrics,
    /// Realtime streams by context id.
    pub realtime_deadlines: RefCell<HashMap<u32, ResetDeadline>>,
    pub global_view: GlobalView,
    unknown_models: RefCell<UnknownModels>,
    /// Fleet rules' keys this VM booked spend for, to report.
    pub pending_keys: RefCell<PendingKeys>,
    /// What this VM last added to the pending-descriptors gauge.
    pending_shown: Cell<usize>,
}

thread_local! {
    static VM: Rc<Vm> = Rc::new(Vm {
        metrics: Metrics::define(),
        realtime_deadlines: RefCell::new(HashMap::new()),
        global_view: GlobalView::default(),
        unknown_models: RefCell::new(UnknownModels::default()),
        pending_keys: RefCell::new(PendingKeys::default()),
        pending_shown: Cell::new(0),
    });
}

/// This VM's state (created, and its stats defined, on first use).
pub fn vm() -> Rc<Vm> {
    VM.with(Rc::clone)
}

impl Vm {
    /// Resets the Realtime streams whose deadline has passed.
    pub fn reset_overdue_streams(&self, now_ms: u64) {
        let overdue: Vec<(u32, ResetDeadline)> = match self.realtime_deadlines.try_borrow_mut() {
            Ok(mut map) => {
                let due: Vec<(u32, ResetDeadline)> = map
                    .iter()
                    .filter(|(_, d)| d.at_ms <= now_ms)
                    .map(|(id, d)| (*id, *d))
                    .collect();
                for (id, _) in &due {
                    map.remove(id);
                }
                due
            }
            Err(_) => return,
        };
        // No borrow is held here: a reset may run the stream's on_log at once.
        for (context_id, deadline) in overdue {
            if deadline.idle_past_limit {
                self.metrics.sessions_duration_exceeded.inc();
            }
            let reset = host::set_effective_context(context_id).and_then(|()| host::reset_stream());
            if let Err(e) = reset {
                log::debug!("cannot reset stream {context_id}: status {}", e.0);
            }
        }
    }

    /// Moves the process-wide pending-descriptors gauge by this VM's change.
    pub fn show_pending_keys(&self) {
        let Ok(pending) = self.pending_keys.try_borrow() else {
            return;
        };
        let now = pending.len();
        let before = self.pending_shown.replace(now);
        let change =
            i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
        if change != 0 {
            self.metrics.global_store_pending.shift(change);
        }
    }

    pub fn set_deadline(&self, context_id: u32, deadline: Option<ResetDeadline>) {
        if let Ok(mut map) = self.realtime_deadlines.try_borrow_mut() {
            match deadline {
                Some(d) => map.insert(context_id, d),
                None => map.remove(&context_id),
            };
        }
    }
}

/// Configuration-scoped state (see the module docs).
pub struct Shared {
    pub vm: Rc<Vm>,
    pub config: Config,
    /// The configuration's price table with the live catalog's layer, as
    /// last picked up from shared data (version 0: none).
    prices: Cell<Option<Rc<PriceTable>>>,
    catalog_version: Cell<u64>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let prices = Rc::new(config.prices.clone());
        let shared = Shared {
            vm: vm(),
            prices: Cell::new(Some(prices)),
            catalog_version: Cell::new(0),
            config,
        };
        let m = &shared.vm.metrics;
        for rule in &shared.config.budgets.rules {
            // Defined now, so every rule's stats exist from the start.
            m.with_budget(&rule.name, |_| {});
        }
        m.pricing_models
            .record(shared.config.prices.model_count() as u64);
        m.catalog_age_s.record(0);
        shared
    }

    pub fn prices(&self) -> Rc<PriceTable> {
        // A Cell, not a RefCell: no borrow that could fail.
        let current = self.prices.take();
        let prices = current
            .clone()
            .unwrap_or_else(|| Rc::new(self.config.prices.clone()));
        self.prices.set(current);
        prices
    }

    /// The core's host for one callback. The clock and the prices are read
    /// when first asked for: a body chunk that only feeds the meter costs no
    /// host call beyond reading the chunk.
    pub fn env(&self) -> HostEnv<'_> {
        HostEnv {
            shared: self,
            prices: OnceCell::new(),
            now_ms: Cell::new(None),
        }
    }

    /// Swaps in a newer live catalog (all of this VM's later pricing uses it).
    pub fn use_catalog(&self, version: u64, table: catalog::ModelTableRef) {
        let prices = self.config.prices.with_catalog(Some(table));
        self.vm
            .metrics
            .pricing_models
            .record(prices.model_count() as u64);
        self.prices.set(Some(Rc::new(prices)));
        self.catalog_version.set(version);
    }

    /// Reads the live catalog's shared record: picks up a newer table, and
    /// says whether this VM took the lease to fetch.
    pub fn poll_catalog(&self, pc: &PriceCatalogConfig, now_ms: u64, may_fetch: bool) -> bool {
        let source = catalog_source(pc);
        match catalog_sync::poll(
            &SharedData,
            source,
            self.catalog_version.get(),
            pc.timeout_ms,
            now_ms,
            may_fetch,
        ) {
            Ok(poll) => {
                self.vm
                    .metrics
                    .catalog_age_s
                    .record(poll.meta.age_s(now_ms));
                if let Some((version, table)) = poll.table {
                    log::info!(
                        "price catalog version {version} in use: {} models",
                        table.len()
                    );
                    self.use_catalog(version, std::sync::Arc::new(table));
                }
                poll.fetch
            }
            Err(e) => {
                log::warn!("cannot read the price catalog's shared record: {e:?}");
                false
            }
        }
    }

    /// Publishes the global window's state to the gauges.
    pub fn publish_global(&self, state: &GlobalState, now_ms: u64) {
        self.vm.global_view.note(*state, now_ms);
        let m = &self.vm.metrics;
        m.breaker_open
            .record(u64::from(state.open_for_ms(now_ms).is_some()));
        m.global_window_spend
            .record(state.spend_at(&self.config.global, now_ms));
    }

    /// Stats and logs for what the core reports.
    fn on_event(&self, event: Event, now_ms: u64) {
        let m = &self.vm.metrics;
        match event {
            Event::Request => m.requests.inc(),
            Event::RejectedCircuitOpen => m.rejected_circuit_open.inc(),
            Event::RejectedSessionBudget => m.rejected_session_budget.inc(),
            Event::RejectedOrigin => m.rejected_origin.inc(),
            Event::SessionTracked => m.http_sessions_tracked.shift(1),
            Event::SessionEvicted => m.http_sessions_evicted.inc(),
            Event::UsageMissing => m.usage_missing.inc(),
            Event::UsageParseError => m.usage_parse_errors.inc(),
            Event::Priced(priced) => {
                m.record_priced(&priced);
                if let Some(name) = &priced.unknown_name {
                    let first = self
                        .vm
                        .unknown_models
                        .try_borrow_mut()
                        .is_ok_and(|mut seen| seen.first_sighting(name));
                    if first {
                        log::warn!(
                            "model {name:?} has no price: priced as unknown_model and counted in \
                             costguard.usage.unknown_model (add it to `pricing`)"
                        );
                    }
                }
            }
            Event::GlobalSeen(state) => self.publish_global(&state, now_ms),
            Event::BreakerTripped(state) => {
                m.breaker_trips.inc();
                log::warn!(
                    "circuit breaker open: ${} spent in this window (budget ${})",
                    format_usd(state.window_spend),
                    format_usd(self.config.global.budget)
                );
                // Gauges follow on the tick (at most 1 s late); a trip shows at once.
                self.publish_global(&state, now_ms);
            }
            Event::SessionLost(id) => {
                log::warn!("session {id} was evicted before its spend was booked")
            }
            Event::BudgetRejected { rule } => self.on_rule(rule, |b| b.rejected.inc()),
            Event::BudgetSpend { rule, cost } => self.on_rule(rule, |b| b.spend.add(cost)),
            Event::BudgetReserved { rule, change } => {
                self.on_rule(rule, |b| b.reserved.shift(change))
            }
            Event::BudgetKeyClaimed {
                rule,
                from_rule_tag,
            } => {
                self.on_rule(rule, |b| b.keys.shift(1));
                let rules = &self.config.budgets.rules;
                if let Some(from) =
                    from_rule_tag.and_then(|t| rules.iter().position(|r| r.tag == t))
                {
                    self.on_rule(from, |b| b.keys.shift(-1));
                }
            }
            Event::BudgetFleetRefused { rule } => self.on_rule(rule, |b| b.fleet_refused.inc()),
            Event::SessionFleetPending(handle) => {
                let noted = self
                    .vm
                    .pending_keys
                    .try_borrow_mut()
                    .is_ok_and(|mut p| p.note_session(&handle));
                if !noted {
                    log::debug!(
                        "too many keys to report; session {} waits",
                        handle.key.display_id
                    );
                }
            }
            Event::BudgetFleetPending { rule, key, key_id } => {
                let Some(r) = self.config.budgets.rules.get(rule) else {
                    return;
                };
                let noted = self
                    .vm
                    .pending_keys
                    .try_borrow_mut()
                    .is_ok_and(|mut p| p.note(&r.name, &key, &key_id));
                if !noted {
                    log::debug!(
                        "budget {:?}: too many keys to report; this one waits",
                        r.name
                    );
                }
            }
            Event::BudgetCapacityExhausted { rule } => {
                m.budget_capacity_exhausted.inc();
                if let Some(r) = self.config.budgets.rules.get(rule) {
                    // Debug: a full table refuses every new key; the counter is the signal.
                    log::debug!(
                        "budget {:?}: no slot for another key (budgets_max_keys {})",
                        r.name,
                        self.config.budgets.max_keys
                    );
                }
            }
            Event::StoreFailed { doing, error } => log::warn!("cannot {doing}: {error:?}"),
        }
    }
}

impl Shared {
    /// Runs `f` on the stats of the rule at index `rule` of this configuration.
    fn on_rule(&self, rule: usize, f: impl FnOnce(&super::metrics::BudgetMetrics)) {
        if let Some(r) = self.config.budgets.rules.get(rule) {
            self.vm.metrics.with_budget(&r.name, f);
        }
    }
}

pub fn catalog_source(pc: &PriceCatalogConfig) -> u64 {
    catalog_sync::source_id(&pc.cluster, &pc.authority, &pc.path)
}

/// The core's host ([`HttpEnv`]) for one callback: time read at most once.
pub struct HostEnv<'a> {
    shared: &'a Shared,
    prices: OnceCell<Rc<PriceTable>>,
    now_ms: Cell<Option<u64>>,
}

impl HostEnv<'_> {
    fn now(&self) -> u64 {
        match self.now_ms.get() {
            Some(now) => now,
            None => {
                let now = host::now_ms();
                self.now_ms.set(Some(now));
                now
            }
        }
    }
}

impl HttpEnv for HostEnv<'_> {
    fn config(&self) -> &Config {
        &self.shared.config
    }
    fn prices(&self) -> &PriceTable {
        self.prices.get_or_init(|| self.shared.prices())
    }
    fn store(&self) -> &dyn Store {
        &SharedData
    }
    fn global_view(&self) -> &GlobalView {
        &self.shared.vm.global_view
    }
    fn now_ms(&self) -> u64 {
        self.now()
    }
    fn random_16(&mut self) -> [u8; 16] {
        host::random_bytes()
    }
    fn event(&mut self, event: Event) {
        let now = self.now();
        self.shared.on_event(event, now);
    }
    fn filter_state(&mut self, key: FilterState, value: &str) {
        if let Err(e) = host::set_filter_state(key.key(), value.as_bytes()) {
            log::debug!("cannot set filter state {}: status {}", key.key(), e.0);
        }
    }
}

impl RealtimeEnv for HostEnv<'_> {
    fn book(&mut self, model: &str, usage: &Usage, rules: &mut [AppliedRule]) -> Booked {
        http::book_realtime(self, model, usage, rules)
    }
    fn exhausted_rule(&mut self, rules: &mut [AppliedRule]) -> Option<RuleOut> {
        let now = self.now();
        let exhausted = budgets::first_exhausted(self, rules, now)?;
        budgets::rule_out(self.config(), &exhausted)
    }
    fn breaker_closes_sessions(&self) -> bool {
        self.shared.config.global.close_active_sessions
            && self.shared.vm.global_view.breaker_open(self.now())
    }
    fn random_mask(&mut self) -> [u8; 4] {
        host::random_bytes()
    }
    fn notice(&mut self, notice: Notice) {
        let m = &self.shared.vm.metrics;
        match notice {
            Notice::Warned => m.sessions_warned.inc(),
            Notice::BudgetExceeded => m.sessions_budget_exceeded.inc(),
            Notice::DurationExceeded => m.sessions_duration_exceeded.inc(),
            Notice::BreakerClosed => {}
            Notice::UsageMissing => m.usage_missing.inc(),
            Notice::ParseError => m.usage_parse_errors.inc(),
        }
    }
}
