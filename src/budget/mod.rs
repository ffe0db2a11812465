//! Session budgets and the global spend window, kept in a shared key-value
//! store with compare-and-swap (Envoy shared data, one per process).
//!
//! ## Key layout (version 1)
//! | key | value (little-endian, fixed width) |
//! |---|---|
//! | `costguard/v1/global` | window_start_ms u64 · window_spend µ$ u64 · open_until_ms u64 (breaker open while now < it) · trips u64 |
//! | `costguard/v1/slot/NNNNNNNN` (8 digits, `0..max_tracked`) | fingerprint [16] · spend µ$ u64 · last_seen_ms u64 · flags u64 |
//! | `costguard/v1/sweep` | next slot to sweep u64 |
//!
//! Keys can never be deleted in Envoy, so sessions live in a bounded set of
//! reused slots: a session's fingerprint (a SHA-256 prefix of its id, never
//! the id itself) picks a home slot, probing `PROBES` slots after it. A slot
//! whose session has been idle for `idle_ttl_s` is free; when every probed
//! slot holds a live session, the least recently used one is evicted.
//!
//! Every write is a compare-and-swap in [`crate::store`]: no update is lost.

mod fingerprint;
mod global;
mod held;
pub mod reservations;
pub mod rules;
mod sessions;
pub mod window;

pub use crate::store::{update, Record, Store, StoreError, CREATE_CAS, MAX_CAS_ATTEMPTS};
pub use global::*;
pub use sessions::*;

#[cfg(test)]
mod tests;
