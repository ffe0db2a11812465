//! The price table: which prices a reported model name gets, and from where.
//!
//! Three layers, in precedence order: the configuration's `pricing`
//! entries, the live price catalog (when one is configured and has been
//! fetched), the built-in table generated from the pinned catalog. A name is
//! looked up layer by layer; within a layer by its [`names::candidates`]
//! (exact, fine-tune base, without snapshot date). A name no layer knows is
//! priced by `unknown_model`.

use super::names::{self, strip_snapshot_date};
use super::{ModelPrices, ModelPricing};
use hashbrown::HashMap;
use std::sync::Arc;

/// Where a model's prices came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    Config,
    Catalog,
    Builtin,
}

impl PriceSource {
    pub fn name(self) -> &'static str {
        match self {
            PriceSource::Config => "configuration (`pricing`)",
            PriceSource::Catalog => "live price catalog",
            PriceSource::Builtin => "built-in table",
        }
    }
}

/// Models by name: one layer of the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelTable {
    by_name: HashMap<String, ModelPricing>,
}

impl ModelTable {
    /// Takes the entries as they are (configured names are the operator's).
    pub fn exact(entries: impl IntoIterator<Item = (String, ModelPricing)>) -> ModelTable {
        ModelTable {
            by_name: entries.into_iter().collect(),
        }
    }

    /// A catalog's entries, folded so that every dated snapshot resolves and
    /// stats use base names: an undated name missing from the catalog takes
    /// its newest snapshot's prices (OpenAI's alias points at one), and a
    /// snapshot priced exactly like its base is dropped (it resolves to the
    /// base by date stripping anyway).
    pub fn folded(entries: impl IntoIterator<Item = (String, ModelPricing)>) -> ModelTable {
        let mut by_name: HashMap<String, ModelPricing> = entries.into_iter().collect();
        let mut newest: HashMap<String, (String, ModelPricing)> = HashMap::new();
        for (name, pricing) in &by_name {
            let Some(base) = strip_snapshot_date(name) else {
                continue;
            };
            if by_name.contains_key(base) {
                continue;
            }
            let suffix_rank = |n: &str| (n.len() - base.len(), n.to_string());
            let replace = newest
                .get(base)
                .is_none_or(|(current, _)| suffix_rank(name) > suffix_rank(current));
            if replace {
                newest.insert(base.to_string(), (name.clone(), *pricing));
            }
        }
        for (base, (_, pricing)) in newest {
            by_name.insert(base, pricing);
        }
        let redundant: Vec<String> = by_name
            .iter()
            .filter(|(name, pricing)| {
                strip_snapshot_date(name).and_then(|base| by_name.get(base)) == Some(pricing)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in redundant {
            by_name.remove(&name);
        }
        ModelTable { by_name }
    }

    pub fn get(&self, name: &str) -> Option<(&str, &ModelPricing)> {
        self.by_name
            .get_key_value(name)
            .map(|(n, p)| (n.as_str(), p))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Names in sorted order (for listings and generated files).
    pub fn sorted(&self) -> Vec<(&str, &ModelPricing)> {
        let mut all: Vec<(&str, &ModelPricing)> =
            self.by_name.iter().map(|(n, p)| (n.as_str(), p)).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

/// What a reported model name matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceMatch<'a> {
    /// A model of one of the layers (the table's name, not the reported one).
    Known {
        name: &'a str,
        source: PriceSource,
        pricing: &'a ModelPricing,
    },
    /// Priced by `unknown_model`.
    Unknown(&'a ModelPricing),
}

impl<'a> PriceMatch<'a> {
    pub fn pricing(&self) -> &'a ModelPricing {
        match self {
            PriceMatch::Known { pricing, .. } | PriceMatch::Unknown(pricing) => pricing,
        }
    }
    /// Standard-tier prices (what most callers of the past wanted).
    pub fn prices(&self) -> &'a ModelPrices {
        &self.pricing().base.standard
    }
    /// The name used in per-model stats.
    pub fn stat_name(&self) -> &'a str {
        match self {
            PriceMatch::Known { name, .. } => name,
            PriceMatch::Unknown(_) => "unknown",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    config: Arc<ModelTable>,
    catalog: Option<Arc<ModelTable>>,
    builtin: Arc<ModelTable>,
    unknown: ModelPricing,
}

impl PriceTable {
    pub fn new(config: ModelTable, builtin: Arc<ModelTable>, unknown: ModelPricing) -> Self {
        PriceTable {
            config: Arc::new(config),
            catalog: None,
            builtin,
            unknown,
        }
    }

    /// The same table with a (new) live catalog between the configuration
    /// and the built-in layer.
    pub fn with_catalog(&self, catalog: Option<Arc<ModelTable>>) -> PriceTable {
        PriceTable {
            catalog,
            ..self.clone()
        }
    }

    pub fn has_catalog(&self) -> bool {
        self.catalog.is_some()
    }

    fn layers(&self) -> impl Iterator<Item = (&ModelTable, PriceSource)> {
        [
            Some((&*self.config, PriceSource::Config)),
            self.catalog.as_deref().map(|c| (c, PriceSource::Catalog)),
            Some((&*self.builtin, PriceSource::Builtin)),
        ]
        .into_iter()
        .flatten()
    }

    /// The prices for a reported model name (see the module docs).
    pub fn lookup(&self, reported: &str) -> PriceMatch<'_> {
        for (layer, source) in self.layers().filter(|(layer, _)| !layer.is_empty()) {
            for candidate in names::candidates(reported) {
                if let Some((name, pricing)) = layer.get(candidate) {
                    return PriceMatch::Known {
                        name,
                        source,
                        pricing,
                    };
                }
            }
        }
        PriceMatch::Unknown(&self.unknown)
    }

    /// Distinct model names across the layers.
    pub fn model_count(&self) -> usize {
        let mut seen: hashbrown::HashSet<&str> = hashbrown::HashSet::new();
        for (layer, _) in self.layers() {
            seen.extend(layer.by_name.keys().map(String::as_str));
        }
        seen.len()
    }
}

/// Remembers which unknown model names were already logged, so each is
/// logged once per VM; bounded so that clients inventing names cannot grow it.
#[derive(Debug, Default)]
pub struct UnknownModels {
    logged: hashbrown::HashSet<String>,
}

/// Most distinct unknown model names logged per VM.
pub const MAX_LOGGED_UNKNOWN_MODELS: usize = 256;

impl UnknownModels {
    /// True the first time `name` is seen (while fewer than the cap were).
    pub fn first_sighting(&mut self, name: &str) -> bool {
        if self.logged.len() >= MAX_LOGGED_UNKNOWN_MODELS || self.logged.contains(name) {
            return false;
        }
        self.logged.insert(name.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{PriceEntry, ServiceTier};

    fn priced(input: u64, output: u64) -> ModelPricing {
        ModelPricing::flat(
            PriceEntry {
                input: Some(input),
                output: Some(output),
                ..PriceEntry::default()
            }
            .resolve(),
        )
    }

    fn entries(list: &[(&str, u64, u64)]) -> Vec<(String, ModelPricing)> {
        list.iter()
            .map(|(n, i, o)| (n.to_string(), priced(*i, *o)))
            .collect()
    }

    fn table(builtin: &[(&str, u64, u64)]) -> PriceTable {
        PriceTable::new(
            ModelTable::default(),
            Arc::new(ModelTable::folded(entries(builtin))),
            priced(10_000_000, 40_000_000),
        )
    }

    #[test]
    fn only_snapshot_dates_are_stripped() {
        let t = table(&[
            ("gpt-5", 1_250_000, 10_000_000),
            ("gpt-5-mini", 250_000, 2_000_000),
            ("gpt-realtime", 4_000_000, 16_000_000),
        ]);
        assert_eq!(t.lookup("gpt-5-2025-08-07").stat_name(), "gpt-5");
        assert_eq!(t.lookup("gpt-5-mini-2025-08-07").stat_name(), "gpt-5-mini");
        for unknown in [
            "gpt-5.5",
            "gpt-5.4-mini",
            "gpt-realtime-2",
            "gpt-6-sol",
            "gpt-5-pro",
            "",
        ] {
            assert!(
                matches!(t.lookup(unknown), PriceMatch::Unknown(_)),
                "{unknown} must not borrow another model's prices"
            );
            assert_eq!(t.lookup(unknown).stat_name(), "unknown");
        }
        let with_new = table(&[
            ("gpt-5", 1_250_000, 10_000_000),
            ("gpt-5.5", 5_000_000, 30_000_000),
            ("gpt-5.4-mini", 750_000, 4_500_000),
            ("gpt-realtime-2", 4_000_000, 24_000_000),
            ("gpt-6-sol", 1, 2),
        ]);
        for own in ["gpt-5.5", "gpt-5.4-mini", "gpt-realtime-2", "gpt-6-sol"] {
            assert_eq!(with_new.lookup(own).stat_name(), own);
        }
        assert_eq!(with_new.lookup("gpt-5.5-2026-04-23").stat_name(), "gpt-5.5");
    }

    #[test]
    fn folding_aliases_and_dedups_snapshots() {
        let t = ModelTable::folded(entries(&[
            ("gpt-4o", 2_500_000, 10_000_000),
            ("gpt-4o-2024-08-06", 2_500_000, 10_000_000),
            ("gpt-4o-2024-05-13", 5_000_000, 15_000_000),
            (
                "gpt-4o-mini-realtime-preview-2024-12-17",
                600_000,
                2_400_000,
            ),
            ("gpt-4o-audio-preview-2024-12-17", 1, 1),
            ("gpt-4o-audio-preview-2025-06-03", 2, 2),
        ]));
        let names: Vec<&str> = t.sorted().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "gpt-4o",
                "gpt-4o-2024-05-13",
                "gpt-4o-audio-preview",
                "gpt-4o-audio-preview-2024-12-17",
                "gpt-4o-mini-realtime-preview"
            ]
        );
        assert_eq!(t.get("gpt-4o-audio-preview").unwrap().1, &priced(2, 2));
        let folded_again = ModelTable::folded(t.by_name.clone());
        assert_eq!(folded_again, t, "folding is idempotent");
    }

    #[test]
    fn layers_in_precedence_order() {
        let builtin = Arc::new(ModelTable::folded(entries(&[
            ("gpt-5", 1_250_000, 10_000_000),
            ("gpt-4o", 2_500_000, 10_000_000),
        ])));
        let config = ModelTable::exact(entries(&[("gpt-5", 10_000_000, 30_000_000)]));
        let t = PriceTable::new(config, builtin, priced(1, 1));
        let catalog = Arc::new(ModelTable::folded(entries(&[
            ("gpt-5", 2, 2),
            ("gpt-5-2025-08-07", 3, 3),
            ("gpt-4o", 4, 4),
        ])));
        let live = t.with_catalog(Some(catalog));
        // The configured gpt-5 wins over the catalog, even over its exact snapshot.
        let m = live.lookup("gpt-5-2025-08-07");
        assert!(matches!(
            m,
            PriceMatch::Known {
                source: PriceSource::Config,
                ..
            }
        ));
        assert_eq!(m.prices().input, 10_000_000);
        let m = live.lookup("gpt-4o");
        assert!(matches!(
            m,
            PriceMatch::Known {
                source: PriceSource::Catalog,
                ..
            }
        ));
        assert_eq!(m.prices().input, 4);
        assert!(matches!(
            t.lookup("gpt-4o"),
            PriceMatch::Known {
                source: PriceSource::Builtin,
                ..
            }
        ));
        assert_eq!(live.model_count(), 3);
        let s = live.lookup("gpt-4o").pricing().select(ServiceTier::Flex, 0);
        assert_eq!(s.tier, ServiceTier::Standard);
    }

    #[test]
    fn unknown_names_logged_once_and_bounded() {
        let mut seen = UnknownModels::default();
        assert!(seen.first_sighting("gpt-7"));
        assert!(!seen.first_sighting("gpt-7"));
        for i in 0..MAX_LOGGED_UNKNOWN_MODELS * 2 {
            seen.first_sighting(&format!("m{i}"));
        }
        assert_eq!(seen.logged.len(), MAX_LOGGED_UNKNOWN_MODELS);
    }
}
