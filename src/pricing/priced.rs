//! Pricing glue: one response's usage, model and service tier → its cost.

use super::{cost_micros, PriceMatch, PriceTable, ServiceTier};
use crate::money::Micros;
use crate::usage::Usage;

/// One response, priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// The model as matched in the price table, or `unknown`.
    pub stat_model: String,
    /// The reported name, when no table knew it (priced by `unknown_model`).
    pub unknown_name: Option<String>,
    pub cost: Micros,
    pub usage: Usage,
    /// The tier whose prices applied, and whether long-context prices did.
    pub tier: ServiceTier,
    pub long_context: bool,
}

/// Prices usage for the response's model (else the request's), at the
/// service tier the response reports.
pub fn price(
    table: &PriceTable,
    model: Option<&str>,
    fallback_model: Option<&str>,
    usage: &Usage,
    tier: ServiceTier,
) -> Priced {
    let name = model.or(fallback_model).unwrap_or("");
    let matched = table.lookup(name);
    let selected = matched.pricing().select(tier, usage.input_total());
    // The names are owned here, and only here: an estimate takes `price_cost`.
    Priced {
        stat_model: matched.stat_name().to_string(),
        unknown_name: matches!(matched, PriceMatch::Unknown(_)).then(|| name.to_string()),
        cost: cost_micros(usage, selected.prices),
        usage: *usage,
        tier: selected.tier,
        long_context: selected.long_context,
    }
}

/// What [`price`] charges, without the names it reports (an estimate
/// needs only the amount: no allocation).
pub fn price_cost(
    table: &PriceTable,
    model: Option<&str>,
    usage: &Usage,
    tier: ServiceTier,
) -> Micros {
    let matched = table.lookup(model.unwrap_or(""));
    cost_micros(
        usage,
        matched.pricing().select(tier, usage.input_total()).prices,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn prices_with_fallback_model() {
        let c = Config::parse(br#"{"pricing":{"gpt-5":{"input":10,"output":30}}}"#).unwrap();
        let usage = Usage {
            text_input: 100_000,
            text_output: 200_000,
            ..Usage::default()
        };
        let std = ServiceTier::Standard;
        let p = price(&c.prices, Some("gpt-5-2025-08-07"), None, &usage, std);
        assert_eq!(
            (p.stat_model.as_str(), p.cost, p.unknown_name),
            ("gpt-5", 7_000_000, None)
        );
        let p = price(&c.prices, None, Some("gpt-5"), &usage, std);
        assert_eq!(p.cost, 7_000_000);
        let p = price(&c.prices, Some("mystery"), None, &usage, std);
        assert_eq!(
            (p.stat_model.as_str(), p.unknown_name.as_deref()),
            ("unknown", Some("mystery"))
        );
        // $10 in / $40 out per 1M: 1.00 + 8.00.
        assert_eq!(p.cost, 9_000_000);
    }

    #[test]
    fn prices_at_the_served_tier_and_context_length() {
        let c = Config::parse(b"{}").unwrap();
        let usage = |input| Usage {
            text_input: input,
            text_output: 1_000_000,
            ..Usage::default()
        };
        let at = |model, input, tier| price(&c.prices, Some(model), None, &usage(input), tier);
        // gpt-5.5 from the generated table: $5 / $30, flex $2.50 / $15,
        // priority $12.50 / $75; above 272k input $10 / $45.
        assert_eq!(
            at("gpt-5.5", 200_000, ServiceTier::Standard).cost,
            31_000_000
        );
        assert_eq!(
            at("gpt-5.5-2026-04-23", 200_000, ServiceTier::Flex).cost,
            15_500_000
        );
        let p = at("gpt-5.5", 200_000, ServiceTier::Priority);
        assert_eq!((p.cost, p.tier), (77_500_000, ServiceTier::Priority));
        let p = at("gpt-5.5", 300_000, ServiceTier::Standard);
        assert_eq!((p.cost, p.long_context), (48_000_000, true));
        assert_eq!(at("gpt-5.4-mini", 0, ServiceTier::Standard).cost, 4_500_000);
        assert_eq!(
            at("gpt-realtime-2", 0, ServiceTier::Standard).cost,
            24_000_000
        );
        for unknown in ["gpt-5.5-turbo", "gpt-7", "gpt-realtime-9"] {
            assert_eq!(at(unknown, 0, ServiceTier::Standard).stat_model, "unknown");
        }
    }

    #[test]
    fn the_amount_alone_is_the_priced_amount() {
        let c = Config::parse(br#"{"pricing":{"gpt-5":{"input":10,"output":30}}}"#).unwrap();
        let tiers = [
            ServiceTier::Standard,
            ServiceTier::Flex,
            ServiceTier::Priority,
        ];
        let models = [
            None,
            Some(""),
            Some("gpt-5"),
            Some("gpt-5.5-2026-04-23"),
            Some("gpt-7"),
        ];
        for (model, tier, input) in models
            .into_iter()
            .flat_map(|m| tiers.map(|t| (m, t)))
            .flat_map(|(m, t)| [0, 200_000, 300_000].map(|i| (m, t, i)))
        {
            let usage = Usage {
                text_input: input,
                text_output: 1_000_000,
                ..Usage::default()
            };
            assert_eq!(
                price_cost(&c.prices, model, &usage, tier),
                price(&c.prices, model, None, &usage, tier).cost,
                "{model:?} {tier:?} {input}"
            );
        }
    }
}
