//! The proxy-wasm adapter: maps Envoy's callbacks onto the core.
//! Only this module talks to the host, and only through [`host`].

mod host;
mod metrics;

use crate::budget::{self, SessionHandle, SessionKey};
use crate::catalog::{self, sync as catalog_sync, CatalogReader};
use crate::config::{Config, FailMode, PriceCatalogConfig};
use crate::exchange::{self, Endpoint, Injection, Priced, ResponsePlan};
use crate::fleet;
use crate::headers::HeaderPairs;
use crate::meter::{Metered, ResponseMeter};
use crate::money::{format_usd, Micros};
use crate::pricing::table::UnknownModels;
use crate::pricing::{PriceTable, ServiceTier};
use crate::realtime::{self, Notice, Phase, RealtimeEnv, RealtimeSession, Rewrite};
use crate::replies::{self, LocalReply};
use crate::usage::Usage;
use hashbrown::HashMap;
use host::{Buffer, Map, SharedData};
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Root tick: refreshes the gauges and sweeps idle sessions.
const TICK_MS: u32 = 1000;
/// The root tick: every second, or faster for a fleet store that syncs faster.
fn config_tick_ms(config: Option<&Config>) -> u32 {
    let sync = config
        .and_then(|c| c.global_store.as_ref())
        .map_or(u64::from(TICK_MS), |s| s.sync_interval_ms);
    u32::try_from(sync.min(u64::from(TICK_MS))).unwrap_or(TICK_MS)
}

/// How stale this VM's view of the global window may be at admission: a
/// breaker trip reaches every worker within this time.
const GLOBAL_MAX_AGE_MS: u64 = 100;
/// Session slots each VM examines per tick for idle sessions.
const SWEEP_BATCH: u32 = 256;

/// When the root tick must reset a Realtime stream of this VM.
#[derive(Clone, Copy)]
struct ResetDeadline {
    at_ms: u64,
    /// Still open: a reset then ends an idle session past its duration limit.
    idle_past_limit: bool,
}

/// What every stream of this VM shares.
struct Shared {
    config: Config,
    /// The configuration's price table with the live catalog's layer, as
    /// last picked up from shared data (version 0: none).
    prices: RefCell<Rc<PriceTable>>,
    catalog_version: Cell<u64>,
    unknown_models: RefCell<UnknownModels>,
    metrics: RefCell<Metrics>,
    /// The global window as last read or written by this VM, and when.
    global_seen: Cell<Option<(budget::GlobalState, u64)>>,
    /// Realtime streams by context id.
    realtime_deadlines: RefCell<HashMap<u32, ResetDeadline>>,
}

impl Shared {
    fn metrics(&self) -> std::cell::RefMut<'_, Metrics> {
        self.metrics.borrow_mut()
    }

    fn prices(&self) -> Rc<PriceTable> {
        Rc::clone(&self.prices.borrow())
    }

    /// Swaps in a newer live catalog (all of this VM's later pricing uses it).
    fn use_catalog(&self, version: u64, table: catalog::ModelTableRef) {
        let prices = self.config.prices.with_catalog(Some(table));
        self.metrics()
            .pricing_models
            .record(prices.model_count() as u64);
        *self.prices.borrow_mut() = Rc::new(prices);
        self.catalog_version.set(version);
    }

    /// Reads the live catalog's shared record: picks up a newer table, and
    /// says whether this VM took the lease to fetch.
    fn poll_catalog(&self, pc: &PriceCatalogConfig, now_ms: u64, may_fetch: bool) -> bool {
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
                self.metrics().catalog_age_s.record(poll.meta.age_s(now_ms));
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

    /// The global window for admission: read from shared data at most every
    /// [`GLOBAL_MAX_AGE_MS`] (this VM's own bookings refresh it too), so
    /// requests rarely pay a host call for it.
    fn global_state(&self, now_ms: u64) -> Result<budget::GlobalState, budget::StoreError> {
        if let Some((state, at)) = self.global_seen.get() {
            if now_ms.saturating_sub(at) < GLOBAL_MAX_AGE_MS {
                return Ok(state);
            }
        }
        let state = budget::read_global(&SharedData)?;
        self.global_seen.set(Some((state, now_ms)));
        Ok(state)
    }

    /// Publishes the global window's state to the gauges.
    fn publish_global(&self, state: &budget::GlobalState, now_ms: u64) {
        self.global_seen.set(Some((*state, now_ms)));
        let m = self.metrics();
        m.breaker_open
            .record(u64::from(state.open_for_ms(now_ms).is_some()));
        m.global_window_spend
            .record(state.spend_at(&self.config.global, now_ms));
    }

    /// Books a priced response into the stats and the global window.
    fn book_global(&self, priced: &Priced, now_ms: u64) {
        self.metrics().record_priced(priced);
        if let Some(name) = &priced.unknown_name {
            if self.unknown_models.borrow_mut().first_sighting(name) {
                log::warn!(
                    "model {name:?} has no price: priced as unknown_model and counted in \
                     costguard.usage.unknown_model (add it to `pricing`)"
                );
            }
        }
        let fleet = self.config.global_store.is_some();
        match budget::add_global_spend(&SharedData, &self.config.global, priced.cost, now_ms, fleet)
        {
            Ok(added) => {
                if added.tripped {
                    self.metrics().breaker_trips.inc();
                    log::warn!(
                        "circuit breaker open: ${} spent in this window (budget ${})",
                        format_usd(added.state.window_spend),
                        format_usd(self.config.global.budget)
                    );
                }
                // Gauges follow on the tick (at most 1 s late); a trip shows at once.
                self.global_seen.set(Some((added.state, now_ms)));
                if added.tripped {
                    self.publish_global(&added.state, now_ms);
                }
            }
            Err(e) => log::warn!("cannot book global spend: {e:?}"),
        }
    }

    /// Resets the Realtime streams whose deadline has passed.
    fn reset_overdue_streams(&self, now_ms: u64) {
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
                self.metrics().sessions_duration_exceeded.inc();
            }
            let reset = host::set_effective_context(context_id).and_then(|()| host::reset_stream());
            if let Err(e) = reset {
                log::debug!("cannot reset stream {context_id}: status {}", e.0);
            }
        }
    }
}

/// The host side of a Realtime session's needs.
struct RealtimeHost<'a> {
    shared: &'a Shared,
    now_ms: u64,
}

impl RealtimeEnv for RealtimeHost<'_> {
    fn book(&mut self, model: &str, usage: &Usage) -> Micros {
        let prices = self.shared.prices();
        let priced = exchange::price(&prices, Some(model), None, usage, ServiceTier::Standard);
        self.shared.book_global(&priced, self.now_ms);
        priced.cost
    }
    fn breaker_closes_sessions(&self) -> bool {
        self.shared.config.global.close_active_sessions
            && self
                .shared
                .global_seen
                .get()
                .is_some_and(|(state, _)| state.open_for_ms(self.now_ms).is_some())
    }
    fn random_mask(&mut self) -> [u8; 4] {
        host::random_bytes()
    }
    fn notice(&mut self, notice: Notice) {
        let m = self.shared.metrics();
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

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    /// When this VM last tried a fleet report.
    last_report_ms: u64,
    /// The price catalog fetch this VM has in flight.
    catalog_call: Option<u32>,
}

fn catalog_source(pc: &PriceCatalogConfig) -> u64 {
    catalog_sync::source_id(&pc.cluster, &pc.authority, &pc.path)
}

/// The catalog is read out of Envoy's buffer in pieces this large, so the
/// VM never holds the whole file.
const CATALOG_READ_PIECE: usize = 256 * 1024;

impl Root {
    /// The live price catalog: pick up what another VM fetched, fetch when due.
    fn sync_catalog(&mut self, now: u64) {
        let Some(shared) = &self.shared else { return };
        let Some(pc) = shared.config.price_catalog.clone() else {
            return;
        };
        if !shared.poll_catalog(&pc, now, self.catalog_call.is_none()) {
            return;
        }
        let sent = self.dispatch_http_call(
            &pc.cluster,
            vec![
                (":method", "GET"),
                (":path", &pc.path),
                (":authority", &pc.authority),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            std::time::Duration::from_millis(pc.timeout_ms),
        );
        match sent {
            Ok(token) => self.catalog_call = Some(token),
            Err(e) => {
                let why = format!("cannot call cluster {} ({e:?})", pc.cluster);
                self.catalog_failed(&pc, &why, now);
            }
        }
    }

    fn catalog_failed(&self, pc: &PriceCatalogConfig, why: &str, now: u64) {
        let Some(shared) = &self.shared else { return };
        shared.metrics().catalog_errors.inc();
        log::warn!(
            "price catalog {}{}: {why}; keeping the prices in use",
            pc.authority,
            pc.path
        );
        let refresh_ms = pc.refresh_s.saturating_mul(1000);
        if let Err(e) = catalog_sync::fetch_failed(&SharedData, catalog_source(pc), refresh_ms, now)
        {
            log::warn!("cannot record the price catalog failure: {e:?}");
        }
    }

    /// The catalog's answer: read it in pieces, publish it to every VM.
    fn catalog_response(&self, body_size: usize, now: u64) {
        let Some(shared) = &self.shared else { return };
        let Some(pc) = shared.config.price_catalog.clone() else {
            return;
        };
        let status = host::get_header(Map::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some("200") {
            let why = match status {
                Some(s) => format!("status {s}"),
                None => "no response (unreachable, reset or timed out)".to_string(),
            };
            return self.catalog_failed(&pc, &why, now);
        }
        if body_size > catalog::MAX_CATALOG_BYTES {
            let why = format!(
                "{body_size} bytes, more than {}",
                catalog::MAX_CATALOG_BYTES
            );
            return self.catalog_failed(&pc, &why, now);
        }
        let mut reader = CatalogReader::new();
        let mut offset = 0;
        while offset < body_size {
            match host::get_buffer(Buffer::HttpCallResponseBody, offset, CATALOG_READ_PIECE) {
                Ok(piece) if !piece.is_empty() => {
                    offset += piece.len();
                    reader.feed(&piece);
                }
                Ok(_) => break,
                Err(e) => {
                    let why = format!("cannot read the body (status {})", e.0);
                    return self.catalog_failed(&pc, &why, now);
                }
            }
        }
        let read = match reader.finish() {
            Ok(read) => read,
            Err(e) => return self.catalog_failed(&pc, &e.to_string(), now),
        };
        if let Some((name, why)) = read.invalid.first() {
            log::warn!(
                "price catalog: {} OpenAI entries left out (e.g. {name}: {why})",
                read.invalid.len()
            );
        }
        let table = catalog::catalog_table(read);
        let refresh_ms = pc.refresh_s.saturating_mul(1000);
        match catalog_sync::publish(&SharedData, catalog_source(&pc), &table, refresh_ms, now) {
            Ok(Some(version)) => {
                log::info!(
                    "price catalog {}{} fetched: {} models (version {version}), {body_size} bytes read in {} ms",
                    pc.authority,
                    pc.path,
                    table.len(),
                    host::now_ms().saturating_sub(now)
                );
                shared.use_catalog(version, std::sync::Arc::new(table));
                shared.metrics().catalog_age_s.record(0);
            }
            Ok(None) => {}
            Err(e) => self.catalog_failed(&pc, &format!("cannot publish it ({e:?})"), now),
        }
    }

    /// Fleet store: starts a report of this process's unreported spend when
    /// one is due and none is in flight (in any VM).
    fn report_to_fleet(&mut self, now: u64) {
        let Some(shared) = &self.shared else { return };
        let Some(store) = &shared.config.global_store else {
            return;
        };
        if now.saturating_sub(self.last_report_ms) < store.sync_interval_ms {
            return;
        }
        self.last_report_ms = now;
        let hits = match fleet::begin_report(&SharedData, store, now) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                log::debug!("fleet report: {e:?}");
                return;
            }
        };
        let body = fleet::grpc_frame(&fleet::encode_report(&store.domain, hits));
        let path = format!("/{}/{}", fleet::SERVICE, fleet::METHOD);
        // gRPC over an HTTP callout: the SDK's own gRPC call panics on a
        // status it does not expect (an unknown cluster), trapping the VM.
        let sent = self.dispatch_http_call(
            &store.rls_cluster,
            vec![
                (":method", "POST"),
                (":path", &path),
                (":authority", &store.rls_cluster),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
            Some(&body),
            vec![],
            std::time::Duration::from_millis(store.timeout_ms),
        );
        if let Err(e) = sent {
            log::warn!(
                "fleet store: cannot call cluster {} ({e:?})",
                store.rls_cluster
            );
            self.fleet_outcome(None, now);
        }
    }

    /// Books a report's outcome into the shared record and the breaker.
    fn fleet_outcome(&self, view: Option<fleet::FleetView>, now: u64) {
        let Some(shared) = &self.shared else { return };
        {
            let m = shared.metrics();
            if view.is_none() {
                m.global_store_errors.inc();
            }
            m.global_store_healthy.record(u64::from(view.is_some()));
        }
        match fleet::finish_report(&SharedData, &shared.config.global, view, now) {
            Ok((state, tripped)) => {
                if tripped {
                    shared.metrics().breaker_trips.inc();
                    log::warn!("circuit breaker open: the fleet reached its budget");
                }
                shared.publish_global(&state, now);
            }
            Err(e) => log::warn!("cannot book the fleet report: {e:?}"),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let now = host::now_ms();
        if self.catalog_call == Some(token_id) {
            self.catalog_call = None;
            return self.catalog_response(body_size, now);
        }
        let Some(store) = self
            .shared
            .as_ref()
            .and_then(|s| s.config.global_store.clone())
        else {
            return;
        };
        let headers = host::get_headers(Map::HttpCallResponseHeaders).unwrap_or_default();
        let trailers = host::get_headers(Map::HttpCallResponseTrailers).unwrap_or_default();
        let grpc_status = trailers
            .get_str("grpc-status")
            .or(headers.get_str("grpc-status"));
        let ok = headers.get_str(":status") == Some("200") && grpc_status == Some("0");
        let view = if ok {
            host::get_buffer(Buffer::HttpCallResponseBody, 0, body_size)
                .ok()
                .and_then(|body| {
                    fleet::grpc_unframe(&body).and_then(|m| fleet::decode_reply(m, &store))
                })
        } else {
            None
        };
        if view.is_none() {
            log::warn!(
                "fleet store: report failed (status {:?}, grpc-status {:?})",
                headers.get_str(":status"),
                grpc_status
            );
        }
        self.fleet_outcome(view, now);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let text = match host::get_buffer(Buffer::PluginConfiguration, 0, usize::MAX) {
            Ok(t) => t,
            Err(e) => {
                log::error!("cannot read the plugin configuration (status {})", e.0);
                return false;
            }
        };
        let config = match Config::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                log::error!("rejected: {e}");
                return false;
            }
        };
        // Metric ids are per VM: define them once, keep them across reconfigures.
        let metrics = match self.shared.take().map(Rc::try_unwrap) {
            Some(Ok(old)) => old.metrics.into_inner(),
            _ => Metrics::define(),
        };
        let prices = Rc::new(config.prices.clone());
        self.shared = Some(Rc::new(Shared {
            prices: RefCell::new(prices),
            catalog_version: Cell::new(0),
            unknown_models: RefCell::new(UnknownModels::default()),
            config,
            metrics: RefCell::new(metrics),
            global_seen: Cell::new(None),
            realtime_deadlines: RefCell::new(HashMap::new()),
        }));
        if let Some(shared) = &self.shared {
            let m = shared.metrics();
            m.pricing_models
                .record(shared.config.prices.model_count() as u64);
            m.catalog_age_s.record(0);
        }
        if let Some(shared) = &self.shared {
            // A catalog another VM (or the previous configuration) fetched
            // applies at once; fetching waits for the tick.
            if let Some(pc) = &shared.config.price_catalog {
                shared.poll_catalog(pc, host::now_ms(), false);
            }
        }
        let tick = config_tick_ms(self.shared.as_ref().map(|s| &s.config));
        if let Err(e) = host::set_tick_period_ms(tick) {
            log::warn!("cannot set the tick period (status {})", e.0);
        }
        log::info!("configured");
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = &self.shared else { return };
        let now = host::now_ms();
        shared.metrics().flush();
        if let Ok(state) = budget::read_global(&SharedData) {
            shared.publish_global(&state, now);
        }
        shared.reset_overdue_streams(now);
        self.report_to_fleet(now);
        self.sync_catalog(now);
        let Some(shared) = &self.shared else { return };
        match budget::sweep_idle(&SharedData, &shared.config.session, SWEEP_BATCH, now) {
            Ok(0) => {}
            Ok(dropped) => shared
                .metrics()
                .http_sessions_tracked
                .shift(-i64::from(dropped)),
            Err(e) => log::debug!("idle sweep: {e:?}"),
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream::new(shared, context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Whether the request body is being held for the `include_usage` rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RequestBody {
    PassThrough,
    Held,
}

/// The HTTP session a request belongs to (`session.id_header`).
struct HttpSession {
    handle: SessionHandle,
    /// Budget left when the call was admitted.
    remaining: Micros,
}

/// A Realtime WebSocket session on this stream.
struct Realtime {
    session: RealtimeSession,
    /// The upstream answered `101`: frames flow.
    established: bool,
}

struct Stream {
    shared: Rc<Shared>,
    context_id: u32,
    endpoint: Endpoint,
    realtime: Option<Realtime>,
    request_body: RequestBody,
    request_model: Option<String>,
    session: Option<HttpSession>,
    meter: Option<ResponseMeter>,
    /// A successful response whose usage could not be read at all.
    unreadable: bool,
    finished: bool,
}

fn send_reply(reply: &LocalReply) {
    let retry_after = reply.retry_after_s.map(|s| s.to_string());
    let mut headers = vec![("content-type", "application/json")];
    if let Some(r) = &retry_after {
        headers.push(("retry-after", r.as_str()));
    }
    if let Err(e) = host::send_local_response(reply.status, &headers, reply.body.as_bytes()) {
        log::warn!("cannot send the local reply (status {})", e.0);
    }
}

impl Stream {
    fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Stream {
            shared,
            context_id,
            endpoint: Endpoint::Other,
            realtime: None,
            request_body: RequestBody::PassThrough,
            request_model: None,
            session: None,
            meter: None,
            unreadable: false,
            finished: false,
        }
    }

    fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Admission: the breaker, then the session's budget. `Err` holds the
    /// reply that refuses the request.
    fn admit(&mut self, headers: &HeaderPairs, now: u64) -> Result<(), LocalReply> {
        match self.shared.global_state(now) {
            Ok(state) => {
                if let Some(open_ms) = state.open_for_ms(now) {
                    self.shared.metrics().rejected_circuit_open.inc();
                    self.shared.publish_global(&state, now);
                    return Err(replies::circuit_open(budget::retry_after_s(open_ms)));
                }
            }
            // Shared data unreadable: admit (fail open) and say so.
            Err(e) => log::warn!("cannot read the global window: {e:?}"),
        }

        let is_upgrade = headers
            .get_str("upgrade")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
        if is_upgrade {
            return self.admit_upgrade(headers, now);
        }

        let session_cfg = &self.shared.config.session;
        let Some(value) = headers.get(&session_cfg.id_header) else {
            return Ok(());
        };
        let key = SessionKey::from_header(value, session_cfg.id_header_is_credential)
            .map_err(|_| replies::invalid_session_id(&session_cfg.id_header))?;
        let open = match budget::open_session(&SharedData, session_cfg, &key, now) {
            Ok(o) => o,
            Err(e) => {
                log::warn!("cannot read session state: {e:?}");
                return Ok(());
            }
        };
        {
            let m = self.shared.metrics();
            if open.took_free_slot {
                m.http_sessions_tracked.shift(1);
            }
            if open.evicted {
                m.http_sessions_evicted.inc();
            }
        }
        let _ = host::set_filter_state("costguard.session_id", key.display_id.as_bytes());
        if open.state.is_over(session_cfg) {
            self.shared.metrics().rejected_session_budget.inc();
            let _ = host::set_filter_state(
                "costguard.session_cost_usd",
                format_usd(open.state.spend).as_bytes(),
            );
            return Err(replies::session_budget_exceeded(
                open.state.spend,
                session_cfg.budget,
            ));
        }
        self.session = Some(HttpSession {
            handle: open.handle,
            remaining: session_cfg.budget.saturating_sub(open.state.spend),
        });
        Ok(())
    }

    /// A WebSocket upgrade: the Origin check, then a Realtime session of its own.
    fn admit_upgrade(&mut self, headers: &HeaderPairs, now: u64) -> Result<(), LocalReply> {
        let origins = &self.shared.config.allowed_origins;
        if !origins.is_empty() {
            let origin = headers.get_str("origin");
            if !origin.is_some_and(|o| origins.iter().any(|a| a == o)) {
                self.shared.metrics().rejected_origin.inc();
                return Err(replies::origin_not_allowed());
            }
        }
        // Compressed frames (permessage-deflate) cannot be metered.
        let _ = host::remove_header(Map::RequestHeaders, "sec-websocket-extensions");
        if self.endpoint == Endpoint::Realtime {
            let path = headers.get_str(":path").unwrap_or("");
            let id = realtime::uuid_v4(host::random_bytes());
            let model = realtime::model_from_path(path).unwrap_or_default();
            let _ = host::set_filter_state("costguard.session_id", id.as_bytes());
            self.realtime = Some(Realtime {
                session: RealtimeSession::new(id, model, now),
                established: false,
            });
        }
        Ok(())
    }

    /// The upgrade's answer: a `101` starts the session, anything else drops it.
    fn realtime_established(&mut self) {
        let status = host::get_header(Map::ResponseHeaders, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some("101") {
            self.realtime = None;
            return;
        }
        let Some(rt) = &mut self.realtime else { return };
        rt.established = true;
        let _ = host::set_header(
            Map::ResponseHeaders,
            "x-costguard-session-id",
            &rt.session.id,
        );
        let _ = host::set_header(
            Map::ResponseHeaders,
            "x-costguard-session-remaining-usd",
            &format_usd(self.shared.config.session.budget),
        );
        {
            let m = self.shared.metrics();
            m.sessions_started.inc();
            m.sessions_active.shift(1);
        }
        self.update_reset_deadline();
    }

    /// The WebSocket stream ended, however it ended.
    fn realtime_ended(&mut self) {
        let Some(rt) = self.realtime.take() else {
            return;
        };
        if let Ok(mut map) = self.shared.realtime_deadlines.try_borrow_mut() {
            map.remove(&self.context_id);
        }
        if !rt.established {
            return;
        }
        let spend = format_usd(rt.session.spend);
        let _ = host::set_filter_state("costguard.cost_usd", spend.as_bytes());
        let _ = host::set_filter_state("costguard.session_cost_usd", spend.as_bytes());
        let m = self.shared.metrics();
        m.sessions_ended.inc();
        if rt.session.aborted() {
            m.sessions_aborted.inc();
        }
        m.sessions_active.shift(-1);
        m.session_cost.record(rt.session.spend);
    }

    /// Tells the root tick when to reset this Realtime stream.
    fn update_reset_deadline(&self) {
        let Some(rt) = &self.realtime else { return };
        let deadline = ResetDeadline {
            at_ms: rt.session.reset_deadline_ms(&self.shared.config.session),
            idle_past_limit: rt.session.phase == Phase::Open,
        };
        if let Ok(mut map) = self.shared.realtime_deadlines.try_borrow_mut() {
            map.insert(self.context_id, deadline);
        }
    }

    /// Runs Realtime frames of one direction through the session.
    fn realtime_chunk(&mut self, buffer: Buffer, body_size: usize) {
        let Some(rt) = &mut self.realtime else { return };
        if !rt.established || body_size == 0 {
            return;
        }
        let chunk = match host::get_buffer(buffer, 0, body_size) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot read WebSocket bytes (status {})", e.0);
                return;
            }
        };
        let now = host::now_ms();
        let phase_before = rt.session.phase;
        let config = &self.shared.config;
        let mut env = RealtimeHost {
            shared: &self.shared,
            now_ms: now,
        };
        let rewrite = match buffer {
            Buffer::HttpResponseBody => {
                rt.session
                    .server_chunk(&chunk, &config.session, config.fail_mode, now, &mut env)
            }
            _ => rt
                .session
                .client_chunk(&chunk, &config.session, now, &mut env),
        };
        let phase_changed = rt.session.phase != phase_before;
        if let Rewrite::Replace(bytes) = rewrite {
            if let Err(e) = host::set_buffer(buffer, 0, body_size, &bytes) {
                log::warn!("cannot rewrite WebSocket bytes (status {})", e.0);
            }
        }
        if phase_changed {
            self.update_reset_deadline();
        }
    }

    /// Books a priced response: the session's spend, the global window.
    fn book(&mut self, priced: &Priced) {
        let now = host::now_ms();
        let _ = host::set_filter_state("costguard.cost_usd", format_usd(priced.cost).as_bytes());
        if let Some(session) = &self.session {
            match budget::add_session_spend(&SharedData, &session.handle, priced.cost, now) {
                Ok(added) if !added.lost => {
                    let _ = host::set_filter_state(
                        "costguard.session_cost_usd",
                        format_usd(added.after.spend).as_bytes(),
                    );
                }
                Ok(_) => log::warn!(
                    "session {} was evicted before its spend was booked",
                    session.handle.key.display_id
                ),
                Err(e) => log::warn!("cannot book session spend: {e:?}"),
            }
        }
        self.shared.book_global(priced, now);
    }

    /// Usage that should have been there was not: count it, and with
    /// `fail_mode: closed` treat the session as over budget.
    fn usage_unavailable(&mut self, malformed: bool) {
        {
            let m = self.shared.metrics();
            if malformed {
                m.usage_parse_errors.inc();
            } else {
                m.usage_missing.inc();
            }
        }
        if self.config().fail_mode == FailMode::Closed {
            if let Some(session) = &self.session {
                if let Err(e) =
                    budget::mark_session_over(&SharedData, &session.handle, host::now_ms())
                {
                    log::warn!("cannot close the session: {e:?}");
                }
            }
        }
    }

    /// Settles the response's usage once: at its end, or when the stream dies.
    fn finish_metering(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.unreadable {
            self.usage_unavailable(false);
            return;
        }
        let Some(mut meter) = self.meter.take() else {
            return;
        };
        match meter.finish() {
            Metered::Usage { model, usage, tier } => {
                let prices = self.shared.prices();
                let priced = exchange::price(
                    &prices,
                    model.as_deref(),
                    self.request_model.as_deref(),
                    &usage,
                    tier,
                );
                self.book(&priced);
            }
            Metered::Missing => self.usage_unavailable(false),
            Metered::Malformed => self.usage_unavailable(true),
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.shared.metrics().requests.inc();
        // One host call for every header this stream needs.
        let headers = host::get_headers(Map::RequestHeaders).unwrap_or_default();
        self.endpoint = Endpoint::classify(headers.get_str(":path").unwrap_or(""));
        if let Err(reply) = self.admit(&headers, host::now_ms()) {
            self.finished = true;
            send_reply(&reply);
            return Action::Pause;
        }
        if self.endpoint == Endpoint::Other {
            return Action::Continue;
        }
        // Compressed responses cannot be metered: ask for identity.
        if headers.get("accept-encoding").is_some() {
            let _ = host::remove_header(Map::RequestHeaders, "accept-encoding");
        }
        let wants_rewrite = self.endpoint == Endpoint::ChatCompletions
            && self.config().inject_stream_usage
            && !end_of_stream;
        if wants_rewrite {
            let length = headers
                .get_str("content-length")
                .and_then(|l| l.trim().parse::<usize>().ok());
            if length.is_none_or(|l| l <= exchange::MAX_REWRITE_BODY) {
                // A rewritten body has another length, and the headers go
                // upstream before the body is read (pausing the headers stops
                // the body callbacks too): the body goes chunked.
                if length.is_some() {
                    let _ = host::remove_header(Map::RequestHeaders, "content-length");
                }
                self.request_body = RequestBody::Held;
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.realtime.is_some() {
            self.realtime_chunk(Buffer::HttpRequestBody, body_size);
            return Action::Continue;
        }
        if self.request_body != RequestBody::Held {
            return Action::Continue;
        }
        if body_size > exchange::MAX_REWRITE_BODY {
            // Too large to hold: headers and body go on as they are.
            self.request_body = RequestBody::PassThrough;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.request_body = RequestBody::PassThrough;
        let Ok(body) = host::get_buffer(Buffer::HttpRequestBody, 0, body_size) else {
            return Action::Continue;
        };
        let request = exchange::inspect_chat_request(&body);
        self.request_model = request.model;
        if let Injection::Rewritten(new_body) = request.injection {
            if let Err(e) = host::set_buffer(Buffer::HttpRequestBody, 0, body_size, &new_body) {
                log::warn!("cannot rewrite the request body (status {})", e.0);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.realtime.is_some() {
            self.realtime_established();
            return Action::Continue;
        }
        if let Some(session) = &self.session {
            let _ = host::set_header(
                Map::ResponseHeaders,
                "x-costguard-session-id",
                &session.handle.key.display_id,
            );
            let _ = host::set_header(
                Map::ResponseHeaders,
                "x-costguard-session-remaining-usd",
                &format_usd(session.remaining),
            );
        }
        if self.endpoint == Endpoint::Other || self.finished {
            return Action::Continue;
        }
        let headers = host::get_headers(Map::ResponseHeaders).unwrap_or_default();
        let status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0);
        let plan = exchange::plan_response(
            self.endpoint,
            status,
            headers.get_str("content-type"),
            headers.get_str("content-encoding"),
        );
        match plan {
            ResponsePlan::Meter(kind) => self.meter = Some(ResponseMeter::new(kind)),
            ResponsePlan::Unreadable => self.unreadable = true,
            ResponsePlan::Ignore => {}
        }
        if end_of_stream {
            self.finish_metering();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.realtime.is_some() {
            self.realtime_chunk(Buffer::HttpResponseBody, body_size);
            return Action::Continue;
        }
        if let Some(meter) = &mut self.meter {
            if body_size > 0 {
                match host::get_buffer(Buffer::HttpResponseBody, 0, body_size) {
                    Ok(chunk) => meter.feed(&chunk),
                    Err(e) => log::warn!("cannot read the response body (status {})", e.0),
                }
            }
        }
        if end_of_stream {
            self.finish_metering();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // A stream cut before its end (client gone, upstream reset) ends here.
        self.finish_metering();
        self.realtime_ended();
    }
}
