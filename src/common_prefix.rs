//! How many first bytes two byte strings share, compared 16 at a time with
//! the vector unit (Wasm SIMD in the filter's build, SSE2 natively): an SSE
//! stream's events are compared with the last scanned one twice each
//! ([`crate::event_scan`]), and word-at-a-time comparison was a quarter of
//! that path's instructions.

const LANE: usize = 16;

/// How many first bytes `a` and `b` share.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (
        a.get(..n).unwrap_or_default(),
        b.get(..n).unwrap_or_default(),
    );
    let (a_lanes, _) = a.as_chunks::<LANE>();
    let (b_lanes, _) = b.as_chunks::<LANE>();
    let mut same = 0;
    for (x, y) in a_lanes.iter().zip(b_lanes) {
        let differing = differing_bytes(x, y);
        if differing != 0 {
            return same + differing.trailing_zeros() as usize;
        }
        same += LANE;
    }
    if same == n {
        return n;
    }
    // The last bytes as one lane ending at `n`, overlapping bytes already
    // found equal (they set no bit): no byte-at-a-time tail.
    let last = n.saturating_sub(LANE);
    match (
        a.get(last..).and_then(|x| <&[u8; LANE]>::try_from(x).ok()),
        b.get(last..).and_then(|y| <&[u8; LANE]>::try_from(y).ok()),
    ) {
        (Some(x), Some(y)) => match differing_bytes(x, y) {
            0 => n,
            differing => last + differing.trailing_zeros() as usize,
        },
        // Shorter than a lane.
        _ => common_prefix_bytewise(a, b),
    }
}

fn common_prefix_bytewise(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Bit `i`: `x[i] != y[i]`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn differing_bytes(x: &[u8; LANE], y: &[u8; LANE]) -> u16 {
    use crate::wasm_lane::load;
    use core::arch::wasm32::{u8x16_bitmask, u8x16_eq};
    !u8x16_bitmask(u8x16_eq(load(x), load(y)))
}

/// Bit `i`: `x[i] != y[i]`.
#[cfg(target_arch = "x86_64")]
fn differing_bytes(x: &[u8; LANE], y: &[u8; LANE]) -> u16 {
    use core::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
    // SAFETY: SSE2 is part of every x86-64 CPU; each load reads the 16
    // bytes of its array (unaligned loads are allowed).
    let equal = unsafe {
        _mm_movemask_epi8(_mm_cmpeq_epi8(
            _mm_loadu_si128(x.as_ptr().cast::<__m128i>()),
            _mm_loadu_si128(y.as_ptr().cast::<__m128i>()),
        ))
    };
    // movemask sets only the low 16 bits.
    !(equal as u16)
}

/// Bit `i`: `x[i] != y[i]`.
#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64"
)))]
fn differing_bytes(x: &[u8; LANE], y: &[u8; LANE]) -> u16 {
    let mut differing = 0u16;
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        differing |= u16::from(a != b) << i;
    }
    differing
}

/// Compares [`common_prefix_len`] with a bytewise reading over strings of
/// every length to 80 with one difference at every place, and both orders:
/// what `make wasm-check` runs in V8 on the filter's build. The number of
/// comparisons made, or the first difference.
pub fn check_sweep() -> Result<usize, String> {
    let mut checked = 0;
    for len in 0..=80usize {
        let a: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        for at in 0..=len {
            for b_len in [at, len, len + 1] {
                let mut b = a.clone();
                b.resize(b_len, 0xAA);
                if let Some(byte) = b.get_mut(at) {
                    *byte ^= 0x80;
                }
                for (x, y) in [(&a, &b), (&b, &a)] {
                    checked += 1;
                    let (got, want) = (common_prefix_len(x, y), common_prefix_bytewise(x, y));
                    if got != want {
                        return Err(format!("{x:?} and {y:?}: {got}, bytewise {want}"));
                    }
                }
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_sweep_finds_no_difference() {
        assert!(check_sweep().is_ok_and(|n| n > 15_000));
    }

    proptest! {
        /// One difference at any place, and any two lengths.
        #[test]
        fn as_a_bytewise_reading(
            a in proptest::collection::vec(0u8..4, 0..70),
            cut in 0usize..70,
            flip in 1u8..=255,
            b_len in 0usize..70,
        ) {
            let mut b = a.clone();
            if let Some(byte) = b.get_mut(cut) {
                *byte ^= flip;
            }
            b.truncate(b_len);
            let bytewise = common_prefix_bytewise(&a, &b);
            prop_assert_eq!(common_prefix_len(&a, &b), bytewise);
            prop_assert_eq!(common_prefix_len(&b, &a), bytewise);
        }
    }
}
