//! The proxy-wasm adapter: maps Envoy's callbacks onto the core.
//! Only this module talks to the host, and only through [`host`].
//!
//! - [`root`]: configuration, the tick, fleet reports, the live price catalog;
//! - [`stream`]: one HTTP stream, translated for the core's HTTP exchange;
//! - [`shared`]: VM- and configuration-scoped state, the core's host;
//! - [`metrics`]: every stat, defined and flushed in one place.

mod host;
mod metrics;
mod root;
mod shared;
mod stream;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;
use root::Root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}
