//! The proxy-wasm adapter: maps Envoy's callbacks onto the core.
//! Only this module talks to the host, and only through [`host`].

mod host;
mod metrics;

use crate::config::Config;
use crate::exchange::{self, Endpoint, Injection, Priced, ResponsePlan};
use crate::meter::{Metered, ResponseMeter};
use crate::money::format_usd;
use host::{Buffer, Map};
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// What every stream of this VM shares.
struct Shared {
    config: Config,
    metrics: RefCell<Metrics>,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    metrics: Option<Metrics>,
}

impl Context for Root {}

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
        let metrics = match (self.metrics.take(), self.shared.take()) {
            (Some(m), _) => m,
            (None, Some(old)) => match Rc::try_unwrap(old) {
                Ok(s) => s.metrics.into_inner(),
                Err(_) => Metrics::define(),
            },
            (None, None) => Metrics::define(),
        };
        self.shared = Some(Rc::new(Shared {
            config,
            metrics: RefCell::new(metrics),
        }));
        log::info!("configured");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Whether the request body is being held for the `include_usage` rewrite.
#[derive(PartialEq, Eq)]
enum RequestBody {
    PassThrough,
    HoldForRewrite,
}

struct Stream {
    shared: Rc<Shared>,
    endpoint: Endpoint,
    request_body: RequestBody,
    request_model: Option<String>,
    meter: Option<ResponseMeter>,
    /// A successful response whose usage could not be read at all.
    unreadable: bool,
    priced: Option<Priced>,
    finished: bool,
}

impl Stream {
    fn new(shared: Rc<Shared>) -> Self {
        Stream {
            shared,
            endpoint: Endpoint::Other,
            request_body: RequestBody::PassThrough,
            request_model: None,
            meter: None,
            unreadable: false,
            priced: None,
            finished: false,
        }
    }

    fn metrics(&self) -> std::cell::RefMut<'_, Metrics> {
        self.shared.metrics.borrow_mut()
    }

    /// Settles the response's usage once: at its end, or when the stream dies.
    fn finish_metering(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.unreadable {
            self.metrics().usage_missing.inc();
            return;
        }
        let Some(mut meter) = self.meter.take() else {
            return;
        };
        match meter.finish() {
            Metered::Usage { model, usage } => {
                let priced = exchange::price(
                    &self.shared.config.prices,
                    model.as_deref(),
                    self.request_model.as_deref(),
                    &usage,
                );
                self.metrics().record_priced(&priced);
                let _ = host::set_filter_state("costguard.cost_usd", format_usd(priced.cost).as_bytes());
                self.priced = Some(priced);
            }
            Metered::Missing => self.metrics().usage_missing.inc(),
            Metered::Malformed => self.metrics().usage_parse_errors.inc(),
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.metrics().requests.inc();
        let path = host::get_header(Map::RequestHeaders, ":path").ok().flatten().unwrap_or_default();
        self.endpoint = Endpoint::classify(&path);
        if self.endpoint == Endpoint::Other {
            return Action::Continue;
        }
        // Compressed responses cannot be metered: ask for identity.
        let _ = host::remove_header(Map::RequestHeaders, "accept-encoding");

        let wants_rewrite = self.endpoint == Endpoint::ChatCompletions
            && self.shared.config.inject_stream_usage
            && !end_of_stream;
        if wants_rewrite {
            let length = host::get_header(Map::RequestHeaders, "content-length")
                .ok()
                .flatten()
                .and_then(|l| l.trim().parse::<usize>().ok());
            if length.is_none_or(|l| l <= exchange::MAX_REWRITE_BODY) {
                // The rewritten body has another length; it goes upstream chunked.
                let _ = host::remove_header(Map::RequestHeaders, "content-length");
                self.request_body = RequestBody::HoldForRewrite;
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.request_body != RequestBody::HoldForRewrite {
            return Action::Continue;
        }
        if body_size > exchange::MAX_REWRITE_BODY {
            // Too large to hold: let it go as it is.
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
        self.request_model = exchange::request_model(&body);
        if let Injection::Rewritten(new_body) = exchange::inject_include_usage(&body) {
            if let Err(e) = host::set_buffer(Buffer::HttpRequestBody, 0, body_size, &new_body) {
                log::warn!("cannot rewrite the request body (status {})", e.0);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.endpoint == Endpoint::Other {
            return Action::Continue;
        }
        let header = |name: &str| host::get_header(Map::ResponseHeaders, name).ok().flatten();
        let status = header(":status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let plan = exchange::plan_response(
            self.endpoint,
            status,
            header("content-type").as_deref(),
            header("content-encoding").as_deref(),
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
    }
}
