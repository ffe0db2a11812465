//! The root context: configuration, the tick (stats flush, gauges, Realtime
//! deadlines, idle sessions), fleet reports and the live price catalog.

use super::host::{self, Buffer, Map, SharedData};
use super::shared::{catalog_source, Shared};
use super::stream::Stream;
use crate::budget;
use crate::catalog::{self, sync as catalog_sync, CatalogReader};
use crate::config::{Config, GlobalStoreConfig, PriceCatalogConfig};
use crate::fleet;
use crate::fleet::key_reports::{self, PendingKey};
use hashbrown::HashMap;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

/// Root tick: refreshes the gauges and sweeps idle sessions.
const TICK_MS: u32 = 1000;
/// The root tick: every second, or faster for a fleet store that syncs faster.
fn config_tick_ms(config: Option<&Config>) -> u32 {
    let sync = config
        .and_then(|c| c.global_store.as_ref())
        .map_or(u64::from(TICK_MS), |s| s.sync_interval_ms);
    u32::try_from(sync.min(u64::from(TICK_MS))).unwrap_or(TICK_MS)
}

/// Session slots each VM examines per tick for idle sessions.
const SWEEP_BATCH: u32 = 256;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// When this VM last tried a fleet report.
    last_report_ms: u64,
    /// When this VM last reported its fleet rules' keys, and the calls in flight.
    last_key_round_ms: u64,
    key_calls: HashMap<u32, Vec<PendingKey>>,
    /// The price catalog fetch this VM has in flight.
    catalog_call: Option<u32>,
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
        shared.vm.metrics.catalog_errors.inc();
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
                shared.vm.metrics.catalog_age_s.record(0);
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
        if self.call_fleet_store(store, &body).is_none() {
            self.fleet_outcome(None, now);
        }
    }

    /// Sends a `ShouldRateLimit` (gRPC over an HTTP callout: the SDK's own
    /// gRPC call panics on a status it does not expect, such as an unknown
    /// cluster, trapping the VM). Returns the call's token; a failure is logged.
    fn call_fleet_store(&self, store: &GlobalStoreConfig, body: &[u8]) -> Option<u32> {
        let path = format!("/{}/{}", fleet::SERVICE, fleet::METHOD);
        let sent = self.dispatch_http_call(
            &store.rls_cluster,
            vec![
                (":method", "POST"),
                (":path", &path),
                (":authority", &store.rls_cluster),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
            Some(body),
            vec![],
            std::time::Duration::from_millis(store.timeout_ms),
        );
        sent.inspect_err(|e| {
            log::warn!(
                "fleet store: cannot call cluster {} ({e:?})",
                store.rls_cluster
            )
        })
        .ok()
    }

    /// Fleet rules: reports this VM's keys with spend, batched into calls.
    fn report_keys(&mut self, now: u64) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(store) = &shared.config.global_store else {
            return;
        };
        if now.saturating_sub(self.last_key_round_ms) < store.sync_interval_ms {
            return;
        }
        self.last_key_round_ms = now;
        let calls = match shared.vm.pending_keys.try_borrow_mut() {
            Ok(mut pending) if !pending.is_empty() => {
                key_reports::start_round(&SharedData, &shared.config, &mut pending, now)
            }
            _ => Vec::new(),
        };
        for call in calls {
            match self.call_fleet_store(store, &call.body) {
                Some(token) => {
                    self.key_calls.insert(token, call.keys);
                }
                None => self.key_call_done(&call.keys, None, now),
            }
        }
        shared.vm.show_pending_keys();
    }

    /// Books a key report's reply (None: the call failed).
    fn key_call_done(&self, keys: &[PendingKey], body: Option<&[u8]>, now: u64) {
        let Some(shared) = &self.shared else { return };
        let Ok(mut pending) = shared.vm.pending_keys.try_borrow_mut() else {
            return;
        };
        let outcome =
            key_reports::finish_call(&SharedData, &shared.config, keys, body, &mut pending, now);
        drop(pending);
        let m = &shared.vm.metrics;
        if outcome.failed {
            m.global_store_errors.inc();
            m.global_store_healthy.record(0);
        } else {
            m.global_store_healthy.record(1);
        }
        for (rule, dropped) in &outcome.dropped {
            m.global_store_refused.add(*dropped);
            log::warn!(
                "fleet store refused ${} of budget {rule:?} past its limit",
                crate::money::format_usd(*dropped)
            );
        }
        shared.vm.show_pending_keys();
    }

    /// Books a report's outcome into the shared record and the breaker.
    fn fleet_outcome(&self, view: Option<fleet::FleetView>, now: u64) {
        let Some(shared) = &self.shared else { return };
        let m = &shared.vm.metrics;
        if view.is_none() {
            m.global_store_errors.inc();
        }
        m.global_store_healthy.record(u64::from(view.is_some()));
        match fleet::finish_report(&SharedData, &shared.config.global, view, now) {
            Ok((state, tripped)) => {
                if tripped {
                    shared.vm.metrics.breaker_trips.inc();
                    log::warn!("circuit breaker open: the fleet reached its budget");
                }
                shared.publish_global(&state, now);
            }
            Err(e) => log::warn!("cannot book the fleet report: {e:?}"),
        }
    }
}

/// The body of a gRPC callout's response when it succeeded (HTTP 200 and
/// `grpc-status: 0`); otherwise logged and None.
fn grpc_ok(body_size: usize) -> Option<Vec<u8>> {
    let headers = host::get_headers(Map::HttpCallResponseHeaders).unwrap_or_default();
    let trailers = host::get_headers(Map::HttpCallResponseTrailers).unwrap_or_default();
    let grpc_status = trailers
        .get_str("grpc-status")
        .or(headers.get_str("grpc-status"));
    let ok = headers.get_str(":status") == Some("200") && grpc_status == Some("0");
    if !ok {
        log::warn!(
            "fleet store: report failed (status {:?}, grpc-status {:?})",
            headers.get_str(":status"),
            grpc_status
        );
        return None;
    }
    host::get_buffer(Buffer::HttpCallResponseBody, 0, body_size).ok()
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
        if let Some(keys) = self.key_calls.remove(&token_id) {
            let body = grpc_ok(body_size);
            return self.key_call_done(&keys, body.as_deref(), now);
        }
        let Some(store) = self
            .shared
            .as_ref()
            .and_then(|s| s.config.global_store.clone())
        else {
            return;
        };
        let view = grpc_ok(body_size).and_then(|body| {
            fleet::grpc_unframe(&body).and_then(|m| fleet::decode_reply(m, &store))
        });
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
        // Only the configuration is swapped: stats and deadlines live at VM
        // scope, so streams that began before keep being counted and enforced.
        let shared = Rc::new(Shared::new(config));
        // A catalog another VM (or the previous configuration) fetched
        // applies at once; fetching waits for the tick.
        if let Some(pc) = &shared.config.price_catalog {
            shared.poll_catalog(pc, host::now_ms(), false);
        }
        self.shared = Some(shared);
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
        let vm = Rc::clone(&shared.vm);
        if let Some(held) = vm.global_view.take_held() {
            crate::http::write_global(&mut shared.env(), held, now);
        }
        vm.metrics.flush();
        if let Ok(state) = budget::read_global(&SharedData) {
            shared.publish_global(&state, now);
        }
        vm.reset_overdue_streams(now);
        match budget::sweep_idle(&SharedData, &shared.config.session, SWEEP_BATCH, now) {
            Ok(0) => {}
            Ok(dropped) => vm.metrics.http_sessions_tracked.shift(-i64::from(dropped)),
            Err(e) => log::debug!("idle sweep: {e:?}"),
        }
        self.report_to_fleet(now);
        self.report_keys(now);
        self.sync_catalog(now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream::new(shared, context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
