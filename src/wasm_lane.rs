//! The one way the core's Wasm SIMD code loads 16 bytes: safe code that
//! compiles to a single unaligned `v128.load`.

use core::arch::wasm32::{u8x16, v128};

/// `lane` as a vector.
pub(crate) fn load(lane: &[u8; 16]) -> v128 {
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15] = *lane;
    u8x16(
        b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15,
    )
}
