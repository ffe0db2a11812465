//! Prices per model and the cost of a response, in integer micro-dollars.
//!
//! Prices are µ$ per 1,000,000 tokens (so `$1.25 / 1M` is 1_250_000).
//! Rounding rule: a response's cost is Σ tokens × price over its parts,
//! computed exactly in `u128`, divided by 1,000,000 once and rounded **up**
//! to the next micro-dollar — a guard never undercounts, and no part is
//! rounded on its own.
//!
//! A model's prices come in tiers: the service tier the response says it
//! was served at (standard, flex, priority) and, for models with long-context
//! pricing, whether the response's input passed a threshold.
//! [`table`] resolves a reported model name to its prices, [`builtin`] is the
//! table generated from the pinned price catalog.

pub mod builtin;
pub mod names;
mod priced;
pub mod table;

pub use priced::{price, price_cost, Priced};
pub use table::{PriceMatch, PriceSource, PriceTable};

use crate::money::Micros;
use crate::usage::Usage;

/// Prices in µ$ per 1M tokens, with the contract's fallbacks resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelPrices {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub audio_input: u64,
    pub cached_audio_input: u64,
    pub audio_output: u64,
    pub image_input: u64,
    pub cached_image_input: u64,
}

impl ModelPrices {
    /// The price keys, in the order of [`ModelPrices::to_array`].
    pub const KEYS: [&'static str; 8] = [
        "input",
        "cached_input",
        "output",
        "audio_input",
        "cached_audio_input",
        "audio_output",
        "image_input",
        "cached_image_input",
    ];

    /// Every price, in [`ModelPrices::KEYS`] order.
    pub fn to_array(&self) -> [u64; 8] {
        [
            self.input,
            self.cached_input,
            self.output,
            self.audio_input,
            self.cached_audio_input,
            self.audio_output,
            self.image_input,
            self.cached_image_input,
        ]
    }

    /// From every price, in [`ModelPrices::KEYS`] order.
    pub const fn from_array(v: [u64; 8]) -> ModelPrices {
        let [input, cached_input, output, audio_input, cached_audio_input, audio_output, image_input, cached_image_input] =
            v;
        ModelPrices {
            input,
            cached_input,
            output,
            audio_input,
            cached_audio_input,
            audio_output,
            image_input,
            cached_image_input,
        }
    }
}

/// One price entry as configured: `input` and `output` are required in
/// practice (missing ones are 0), the rest fall back per the contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriceEntry {
    pub input: Option<u64>,
    pub cached_input: Option<u64>,
    pub output: Option<u64>,
    pub audio_input: Option<u64>,
    pub cached_audio_input: Option<u64>,
    pub audio_output: Option<u64>,
    pub image_input: Option<u64>,
    pub cached_image_input: Option<u64>,
}

impl PriceEntry {
    /// Applies the fallbacks: `cached_input`→`input`, `audio_input`→`input`,
    /// `cached_audio_input`→`cached_input`, `audio_output`→`output`,
    /// `image_input`→`input`, `cached_image_input`→`cached_input`.
    pub fn resolve(&self) -> ModelPrices {
        let input = self.input.unwrap_or(0);
        let output = self.output.unwrap_or(0);
        let cached_input = self.cached_input.unwrap_or(input);
        ModelPrices {
            input,
            cached_input,
            output,
            audio_input: self.audio_input.unwrap_or(input),
            cached_audio_input: self.cached_audio_input.unwrap_or(cached_input),
            audio_output: self.audio_output.unwrap_or(output),
            image_input: self.image_input.unwrap_or(input),
            cached_image_input: self.cached_image_input.unwrap_or(cached_input),
        }
    }
}

const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// The cost of `usage` at `prices`, rounded up to the micro-dollar.
pub fn cost_micros(usage: &Usage, prices: &ModelPrices) -> Micros {
    let parts: [(u64, u64); 8] = [
        (usage.text_input, prices.input),
        (usage.cached_text_input, prices.cached_input),
        (usage.audio_input, prices.audio_input),
        (usage.cached_audio_input, prices.cached_audio_input),
        (usage.image_input, prices.image_input),
        (usage.cached_image_input, prices.cached_image_input),
        (usage.text_output, prices.output),
        (usage.audio_output, prices.audio_output),
    ];
    // 8 parts of at most u64 × u64 each cannot overflow u128's headroom by
    // more than 3 bits; saturate anyway rather than trust that.
    let numerator = parts.iter().fold(0u128, |acc, &(tokens, price)| {
        acc.saturating_add(u128::from(tokens) * u128::from(price))
    });
    let micros = numerator.div_ceil(TOKENS_PER_PRICE_UNIT);
    u64::try_from(micros).unwrap_or(u64::MAX)
}

/// The service tier a response reports (`service_tier`): it, not the
/// request, decides the price (a request for priority may be served at standard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceTier {
    /// `default`, `auto`, absent, or a tier without prices of its own.
    #[default]
    Standard,
    Flex,
    Priority,
}

impl ServiceTier {
    /// From a response's `service_tier` value.
    pub fn from_response(value: &str) -> ServiceTier {
        match value {
            "flex" => ServiceTier::Flex,
            "priority" => ServiceTier::Priority,
            _ => ServiceTier::Standard,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Flex => "flex",
            ServiceTier::Priority => "priority",
        }
    }
}

/// One model's prices at each service tier; a tier without prices of its
/// own is priced at standard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierPrices {
    pub standard: ModelPrices,
    pub flex: Option<ModelPrices>,
    pub priority: Option<ModelPrices>,
}

impl TierPrices {
    pub fn standard(prices: ModelPrices) -> TierPrices {
        TierPrices {
            standard: prices,
            flex: None,
            priority: None,
        }
    }

    /// The prices for `tier`, and the tier whose prices they are.
    pub fn at(&self, tier: ServiceTier) -> (&ModelPrices, ServiceTier) {
        match (tier, &self.flex, &self.priority) {
            (ServiceTier::Flex, Some(p), _) => (p, ServiceTier::Flex),
            (ServiceTier::Priority, _, Some(p)) => (p, ServiceTier::Priority),
            _ => (&self.standard, ServiceTier::Standard),
        }
    }
}

/// Long-context pricing: a response whose input tokens are strictly above
/// `above_input_tokens` takes these prices for every one of its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    pub above_input_tokens: u64,
    pub prices: TierPrices,
}

/// Everything a model is priced by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelPricing {
    pub base: TierPrices,
    pub long_context: Option<LongContext>,
}

/// The prices chosen for one response, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected<'a> {
    pub prices: &'a ModelPrices,
    /// The tier whose prices apply (standard when the served tier has none).
    pub tier: ServiceTier,
    pub long_context: bool,
}

impl ModelPricing {
    pub fn flat(prices: ModelPrices) -> ModelPricing {
        ModelPricing {
            base: TierPrices::standard(prices),
            long_context: None,
        }
    }

    /// The prices for a response served at `tier` with `input_tokens` of input.
    pub fn select(&self, tier: ServiceTier, input_tokens: u64) -> Selected<'_> {
        let (set, long_context) = match &self.long_context {
            Some(lc) if input_tokens > lc.above_input_tokens => (&lc.prices, true),
            _ => (&self.base, false),
        };
        let (prices, tier) = set.at(tier);
        Selected {
            prices,
            tier,
            long_context,
        }
    }
}

/// Prices `usage` served at `tier`: the tier and long-context prices that
/// apply, then [`cost_micros`].
pub fn cost_for(usage: &Usage, pricing: &ModelPricing, tier: ServiceTier) -> Micros {
    cost_micros(usage, pricing.select(tier, usage.input_total()).prices)
}

/// The built-in layer of the price table (generated from the pinned catalog).
pub fn builtin_table() -> table::ModelTable {
    table::ModelTable::exact(
        builtin::MODELS
            .iter()
            .map(|(name, pricing)| (name.to_string(), *pricing)),
    )
}

/// Default `unknown_model` prices: $10 in / $40 out per 1M tokens.
pub fn default_unknown_model() -> PriceEntry {
    PriceEntry {
        input: Some(10_000_000),
        output: Some(40_000_000),
        ..PriceEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn flat(input: u64, cached: u64, output: u64) -> ModelPrices {
        PriceEntry {
            input: Some(input),
            cached_input: Some(cached),
            output: Some(output),
            ..PriceEntry::default()
        }
        .resolve()
    }

    use crate::usage::tests::text_usage;

    #[test]
    fn seed_examples_are_exact() {
        let gpt5 = flat(10_000_000, 10_000_000, 30_000_000);
        assert_eq!(
            cost_micros(&text_usage(100_000, 0, 200_000), &gpt5),
            7_000_000
        );
        let mini = flat(3_000_000, 3_000_000, 15_000_000);
        assert_eq!(
            cost_micros(&text_usage(500_000, 0, 1_000_000), &mini),
            16_500_000
        );
        let rt = flat(100_000_000, 100_000_000, 200_000_000);
        assert_eq!(cost_micros(&text_usage(25_000, 0, 50_000), &rt), 12_500_000);
    }

    #[test]
    fn cached_tokens_priced_once_at_cached_price() {
        let p = flat(1_250_000, 125_000, 10_000_000);
        // 1M in (400k cached) + 100k out: 600k×$1.25 + 400k×$0.125 + 100k×$10 per 1M.
        assert_eq!(
            cost_micros(&text_usage(1_000_000, 400_000, 100_000), &p),
            750_000 + 50_000 + 1_000_000
        );
    }

    #[test]
    fn rounds_up_once_per_response() {
        let p = flat(50_000, 5_000, 400_000);
        // 1 input token at $0.05/1M = 0.05 µ$ → 1 µ$.
        assert_eq!(cost_micros(&text_usage(1, 0, 0), &p), 1);
        // 20 tokens = exactly 1 µ$.
        assert_eq!(cost_micros(&text_usage(20, 0, 0), &p), 1);
        assert_eq!(cost_micros(&text_usage(21, 0, 0), &p), 2);
        assert_eq!(cost_micros(&Usage::default(), &p), 0);
    }

    #[test]
    fn audio_tokens_at_audio_prices() {
        let p = PriceEntry {
            input: Some(4_000_000),
            cached_input: Some(400_000),
            output: Some(16_000_000),
            audio_input: Some(32_000_000),
            cached_audio_input: Some(400_000),
            audio_output: Some(64_000_000),
            ..PriceEntry::default()
        }
        .resolve();
        let u = Usage {
            text_input: 1_000_000,
            audio_input: 1_000_000,
            cached_audio_input: 1_000_000,
            audio_output: 1_000_000,
            text_output: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(
            cost_micros(&u, &p),
            (4_000_000 + 32_000_000 + 400_000 + 64_000_000 + 16_000_000)
        );
    }

    #[test]
    fn fallbacks_follow_the_contract() {
        let e = PriceEntry {
            input: Some(10),
            output: Some(20),
            cached_input: Some(5),
            ..PriceEntry::default()
        };
        let p = e.resolve();
        assert_eq!(p.audio_input, 10);
        assert_eq!(p.cached_audio_input, 5);
        assert_eq!(p.audio_output, 20);
        assert_eq!(p.image_input, 10);
        assert_eq!(p.cached_image_input, 5);
        let no_cached = PriceEntry {
            input: Some(7),
            ..PriceEntry::default()
        }
        .resolve();
        assert_eq!(
            (no_cached.cached_input, no_cached.cached_audio_input),
            (7, 7)
        );
    }

    #[test]
    fn no_overflow_at_extremes() {
        let u = Usage {
            text_input: u64::MAX,
            text_output: u64::MAX,
            ..Usage::default()
        };
        let p = ModelPrices {
            input: u64::MAX,
            output: u64::MAX,
            ..flat(1, 1, 1)
        };
        assert_eq!(cost_micros(&u, &p), u64::MAX);
    }

    /// gpt-5.5 as the catalog prices it: $5 / $30, flex $2.50 / $15,
    /// priority $12.50 / $75, above 272k input tokens $10 / $45 (flex $5 / $22.50).
    fn gpt55() -> ModelPricing {
        ModelPricing {
            base: TierPrices {
                standard: flat(5_000_000, 500_000, 30_000_000),
                flex: Some(flat(2_500_000, 250_000, 15_000_000)),
                priority: Some(flat(12_500_000, 1_250_000, 75_000_000)),
            },
            long_context: Some(LongContext {
                above_input_tokens: 272_000,
                prices: TierPrices {
                    standard: flat(10_000_000, 1_000_000, 45_000_000),
                    flex: Some(flat(5_000_000, 500_000, 22_500_000)),
                    priority: None,
                },
            }),
        }
    }

    #[test]
    fn tiers_selected_by_the_served_tier() {
        let m = gpt55();
        let u = text_usage(100_000, 0, 1_000_000);
        assert_eq!(cost_for(&u, &m, ServiceTier::Standard), 30_500_000);
        assert_eq!(cost_for(&u, &m, ServiceTier::Flex), 15_250_000);
        assert_eq!(cost_for(&u, &m, ServiceTier::Priority), 76_250_000);
        let plain = ModelPricing::flat(flat(1_000_000, 100_000, 2_000_000));
        let s = plain.select(ServiceTier::Priority, 10);
        assert_eq!((s.tier, s.long_context), (ServiceTier::Standard, false));
        assert_eq!(ServiceTier::from_response("flex"), ServiceTier::Flex);
        assert_eq!(
            ServiceTier::from_response("priority"),
            ServiceTier::Priority
        );
        for other in ["default", "auto", "scale", ""] {
            assert_eq!(ServiceTier::from_response(other), ServiceTier::Standard);
        }
    }

    #[test]
    fn long_context_boundary_is_strictly_above() {
        let m = gpt55();
        let at = text_usage(272_000, 0, 0);
        let above = text_usage(272_001, 0, 0);
        assert_eq!(cost_for(&at, &m, ServiceTier::Standard), 1_360_000);
        assert_eq!(cost_for(&above, &m, ServiceTier::Standard), 2_720_010);
        // Long context at flex; at priority the long-context set has no
        // priority prices, so its standard ones apply.
        assert_eq!(cost_for(&above, &m, ServiceTier::Flex), 1_360_005);
        let s = m.select(ServiceTier::Priority, 272_001);
        assert_eq!((s.tier, s.long_context), (ServiceTier::Standard, true));
        // Cached and audio input count towards the threshold.
        let mixed = Usage {
            text_input: 200_000,
            cached_text_input: 72_001,
            ..Usage::default()
        };
        assert!(
            m.select(ServiceTier::Standard, mixed.input_total())
                .long_context
        );
    }
}
