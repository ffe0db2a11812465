//! Property tests of the cost math: exact against a big-integer reference,
//! monotone in every token count, additive up to the one rounding per
//! response, and free of overflow for any u32 token counts.

use costguard::pricing::{cost_micros, ModelPrices};
use costguard::usage::Usage;
use num_bigint::BigUint;
use proptest::prelude::*;

fn usage_from(t: [u32; 8]) -> Usage {
    Usage {
        text_input: u64::from(t[0]),
        cached_text_input: u64::from(t[1]),
        audio_input: u64::from(t[2]),
        cached_audio_input: u64::from(t[3]),
        image_input: u64::from(t[4]),
        cached_image_input: u64::from(t[5]),
        text_output: u64::from(t[6]),
        audio_output: u64::from(t[7]),
        reasoning_output: 0,
    }
}

fn prices_from(p: [u64; 8]) -> ModelPrices {
    ModelPrices {
        input: p[0],
        cached_input: p[1],
        audio_input: p[2],
        cached_audio_input: p[3],
        image_input: p[4],
        cached_image_input: p[5],
        output: p[6],
        audio_output: p[7],
    }
}

/// ceil(Σ tokens × price / 1e6) with arbitrary precision.
fn reference(t: [u32; 8], p: [u64; 8]) -> BigUint {
    let sum: BigUint = t
        .iter()
        .zip(p.iter())
        .map(|(&t, &p)| BigUint::from(t) * BigUint::from(p))
        .sum();
    let million = BigUint::from(1_000_000u32);
    (sum + &million - 1u32) / million
}

/// Prices up to $1,000,000 per 1M tokens, in µ$.
fn price() -> impl Strategy<Value = u64> {
    0u64..=1_000_000_000_000
}

proptest! {
    #[test]
    fn exact_against_big_integers(t in any::<[u32; 8]>(), p in proptest::array::uniform8(price())) {
        let got = cost_micros(&usage_from(t), &prices_from(p));
        prop_assert_eq!(BigUint::from(got), reference(t, p));
    }

    #[test]
    fn no_overflow_at_any_u32_counts_and_u64_prices(t in any::<[u32; 8]>(), p in any::<[u64; 8]>()) {
        let got = cost_micros(&usage_from(t), &prices_from(p));
        let r = reference(t, p);
        let max = BigUint::from(u64::MAX);
        prop_assert_eq!(BigUint::from(got), if r > max { max } else { r });
    }

    #[test]
    fn monotone_in_every_token_count(t in any::<[u32; 8]>(), p in proptest::array::uniform8(price()), i in 0usize..8, extra in 1u32..1_000_000) {
        let mut more = t;
        more[i] = t[i].saturating_add(extra);
        let prices = prices_from(p);
        prop_assert!(cost_micros(&usage_from(more), &prices) >= cost_micros(&usage_from(t), &prices));
    }

    #[test]
    fn additive_up_to_one_rounding_per_response(a in any::<[u16; 8]>(), b in any::<[u16; 8]>(), p in proptest::array::uniform8(price())) {
        let a32 = a.map(u32::from);
        let b32 = b.map(u32::from);
        let sum: [u32; 8] = std::array::from_fn(|i| a32[i] + b32[i]);
        let prices = prices_from(p);
        let separate = cost_micros(&usage_from(a32), &prices) + cost_micros(&usage_from(b32), &prices);
        let together = cost_micros(&usage_from(sum), &prices);
        // Each response rounds up once: two responses cost at most 1 µ$ more than one.
        prop_assert!(separate >= together && separate <= together + 1);
    }
}
