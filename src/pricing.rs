//! Prices per model and the cost of a response, in integer micro-dollars.
//!
//! Prices are µ$ per 1,000,000 tokens (so `$1.25 / 1M` is 1_250_000).
//! Rounding rule: a response's cost is Σ tokens × price over its parts,
//! computed exactly in `u128`, divided by 1,000,000 once and rounded **up**
//! to the next micro-dollar — a guard never undercounts, and no part is
//! rounded on its own.

use crate::money::Micros;
use crate::usage::Usage;
use hashbrown::HashMap;

/// Prices in µ$ per 1M tokens, with the contract's fallbacks resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// What a reported model name matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceMatch<'a> {
    /// A configured or built-in model (the table's name, not the reported one).
    Known(&'a str, &'a ModelPrices),
    /// Priced by `unknown_model`.
    Unknown(&'a ModelPrices),
}

impl<'a> PriceMatch<'a> {
    pub fn prices(&self) -> &'a ModelPrices {
        match self {
            PriceMatch::Known(_, p) | PriceMatch::Unknown(p) => p,
        }
    }
    /// The name used in per-model stats.
    pub fn stat_name(&self) -> &'a str {
        match self {
            PriceMatch::Known(name, _) => name,
            PriceMatch::Unknown(_) => "unknown",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    by_name: HashMap<String, ModelPrices>,
    /// Names sorted longest first, for prefix matching.
    names_longest_first: Vec<String>,
    unknown: ModelPrices,
}

impl PriceTable {
    pub fn new(
        models: impl IntoIterator<Item = (String, ModelPrices)>,
        unknown: ModelPrices,
    ) -> Self {
        let by_name: HashMap<String, ModelPrices> = models.into_iter().collect();
        let mut names_longest_first: Vec<String> = by_name.keys().cloned().collect();
        names_longest_first.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        PriceTable {
            by_name,
            names_longest_first,
            unknown,
        }
    }

    /// Exact name first, then the longest table name the model starts with
    /// (`gpt-5-mini-2025-08-07` → `gpt-5-mini`), else `unknown_model`.
    pub fn lookup(&self, model: &str) -> PriceMatch<'_> {
        if let Some((name, prices)) = self.by_name.get_key_value(model) {
            return PriceMatch::Known(name, prices);
        }
        for name in &self.names_longest_first {
            if model.starts_with(name.as_str()) {
                if let Some(prices) = self.by_name.get(name) {
                    return PriceMatch::Known(name, prices);
                }
            }
        }
        PriceMatch::Unknown(&self.unknown)
    }

    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.names_longest_first.iter().map(String::as_str)
    }
}

/// µ$ per 1M tokens from a whole-cent-or-finer USD price, for the table below.
const fn usd(dollars_times_1000: u64) -> u64 {
    dollars_times_1000 * 1_000
}

fn text(input: u64, cached: u64, output: u64) -> PriceEntry {
    PriceEntry {
        input: Some(input),
        cached_input: Some(cached),
        output: Some(output),
        ..PriceEntry::default()
    }
}

fn realtime(text_prices: (u64, u64, u64), audio: (u64, u64, u64)) -> PriceEntry {
    PriceEntry {
        input: Some(text_prices.0),
        cached_input: Some(text_prices.1),
        output: Some(text_prices.2),
        audio_input: Some(audio.0),
        cached_audio_input: Some(audio.1),
        audio_output: Some(audio.2),
        ..PriceEntry::default()
    }
}

/// The built-in table: OpenAI's published standard-tier prices, USD per 1M
/// tokens (date and source in the README). Arguments are USD × 1000.
pub fn builtin_prices() -> Vec<(&'static str, PriceEntry)> {
    vec![
        ("gpt-5", text(usd(1_250), usd(125), usd(10_000))),
        ("gpt-5-mini", text(usd(250), usd(25), usd(2_000))),
        ("gpt-5-nano", text(usd(50), usd(5), usd(400))),
        ("gpt-4o", text(usd(2_500), usd(1_250), usd(10_000))),
        ("gpt-4o-mini", text(usd(150), usd(75), usd(600))),
        ("gpt-4.1", text(usd(2_000), usd(500), usd(8_000))),
        ("gpt-4.1-mini", text(usd(400), usd(100), usd(1_600))),
        ("gpt-4.1-nano", text(usd(100), usd(25), usd(400))),
        ("o3", text(usd(2_000), usd(500), usd(8_000))),
        ("o4-mini", text(usd(1_100), usd(275), usd(4_400))),
        (
            "gpt-realtime",
            realtime(
                (usd(4_000), usd(400), usd(16_000)),
                (usd(32_000), usd(400), usd(64_000)),
            ),
        ),
        (
            "gpt-realtime-mini",
            realtime(
                (usd(600), usd(60), usd(2_400)),
                (usd(10_000), usd(300), usd(20_000)),
            ),
        ),
        (
            "gpt-4o-realtime-preview",
            realtime(
                (usd(5_000), usd(2_500), usd(20_000)),
                (usd(40_000), usd(2_500), usd(80_000)),
            ),
        ),
        (
            "gpt-4o-mini-realtime-preview",
            realtime(
                (usd(600), usd(300), usd(2_400)),
                (usd(10_000), usd(300), usd(20_000)),
            ),
        ),
        ("text-embedding-3-small", text(usd(20), usd(20), 0)),
        ("text-embedding-3-large", text(usd(130), usd(130), 0)),
        ("text-embedding-ada-002", text(usd(100), usd(100), 0)),
    ]
}

/// Default `unknown_model` prices: $10 in / $40 out per 1M tokens.
pub fn default_unknown_model() -> PriceEntry {
    PriceEntry {
        input: Some(usd(10_000)),
        output: Some(usd(40_000)),
        ..PriceEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::new(
            builtin_prices()
                .into_iter()
                .map(|(n, e)| (n.to_string(), e.resolve())),
            default_unknown_model().resolve(),
        )
    }

    fn text_usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            text_input: input - cached,
            cached_text_input: cached,
            text_output: output,
            ..Usage::default()
        }
    }

    #[test]
    fn seed_examples_are_exact() {
        let gpt5 = text(usd(10_000), usd(10_000), usd(30_000)).resolve();
        assert_eq!(
            cost_micros(&text_usage(100_000, 0, 200_000), &gpt5),
            7_000_000
        );
        let mini = text(usd(3_000), usd(3_000), usd(15_000)).resolve();
        assert_eq!(
            cost_micros(&text_usage(500_000, 0, 1_000_000), &mini),
            16_500_000
        );
        let rt = text(usd(100_000), usd(100_000), usd(200_000)).resolve();
        assert_eq!(cost_micros(&text_usage(25_000, 0, 50_000), &rt), 12_500_000);
    }

    #[test]
    fn cached_tokens_priced_once_at_cached_price() {
        let t = table();
        let p = t.lookup("gpt-5").prices();
        // 1M in (400k cached) + 100k out: 600k×$1.25 + 400k×$0.125 + 100k×$10 per 1M.
        assert_eq!(
            cost_micros(&text_usage(1_000_000, 400_000, 100_000), p),
            750_000 + 50_000 + 1_000_000
        );
    }

    #[test]
    fn rounds_up_once_per_response() {
        let p = table().lookup("gpt-5-nano").prices().to_owned();
        // 1 input token at $0.05/1M = 0.05 µ$ → 1 µ$.
        assert_eq!(cost_micros(&text_usage(1, 0, 0), &p), 1);
        // 20 tokens = exactly 1 µ$.
        assert_eq!(cost_micros(&text_usage(20, 0, 0), &p), 1);
        assert_eq!(cost_micros(&text_usage(21, 0, 0), &p), 2);
        assert_eq!(cost_micros(&Usage::default(), &p), 0);
    }

    #[test]
    fn audio_tokens_at_audio_prices() {
        let t = table();
        let p = t.lookup("gpt-realtime").prices();
        let u = Usage {
            text_input: 1_000_000,
            audio_input: 1_000_000,
            cached_audio_input: 1_000_000,
            audio_output: 1_000_000,
            text_output: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(
            cost_micros(&u, p),
            (4_000_000 + 32_000_000 + 400_000 + 64_000_000 + 16_000_000)
        );
    }

    #[test]
    fn model_matching_exact_then_longest_prefix() {
        let t = table();
        assert_eq!(t.lookup("gpt-5").stat_name(), "gpt-5");
        assert_eq!(t.lookup("gpt-5-2025-08-07").stat_name(), "gpt-5");
        assert_eq!(t.lookup("gpt-5-mini-2025-08-07").stat_name(), "gpt-5-mini");
        assert_eq!(
            t.lookup("gpt-4o-mini-realtime-preview-2024-12-17")
                .stat_name(),
            "gpt-4o-mini-realtime-preview"
        );
        assert_eq!(
            t.lookup("gpt-realtime-2025-08-28").stat_name(),
            "gpt-realtime"
        );
        assert_eq!(
            t.lookup("gpt-4.1-mini-2025-04-14").stat_name(),
            "gpt-4.1-mini"
        );
        assert!(matches!(t.lookup("claude-3"), PriceMatch::Unknown(_)));
        assert_eq!(t.lookup("claude-3").stat_name(), "unknown");
        assert!(matches!(t.lookup(""), PriceMatch::Unknown(_)));
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
            ..table().lookup("gpt-5").prices().to_owned()
        };
        assert_eq!(cost_micros(&u, &p), u64::MAX);
    }
}
