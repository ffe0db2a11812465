//! costguard: prices OpenAI API usage flowing through Envoy and enforces
//! spend budgets.
//!
//! Everything but [`adapter`] is host-independent plain Rust, tested natively;
//! the adapter (compiled for wasm only) maps proxy-wasm callbacks onto it.

pub mod budget;
pub mod catalog;
pub mod common_prefix;
pub mod config;
pub mod event_scan;
pub mod fleet;
pub mod headers;
pub mod http;
pub mod inline_text;
pub mod json_scan;
pub mod json_tail;
pub mod meter;
pub mod money;
pub mod pricing;
pub mod realtime;
pub mod replies;
pub mod sse;
pub mod store;
pub mod string_end;
pub mod usage;
pub mod utf8;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_lane;
pub mod ws;

#[cfg(target_arch = "wasm32")]
mod adapter;
