//! Plugin configuration: JSON text → validated runtime [`Config`].
//!
//! Every key is optional. Unknown keys, wrong types and impossible values
//! are errors that name the key (`session.warn_ratio: must be in (0, 1]`).

use crate::money::{json_number_to_units, Micros, MICROS_PER_USD};
use crate::pricing::table::ModelTable;
use crate::pricing::{
    builtin_table, default_unknown_model, LongContext, ModelPrices, ModelPricing, PriceEntry,
    PriceTable, TierPrices,
};
use serde_json::{Map, Value};
use std::sync::Arc;

mod budgets;
pub use budgets::{BudgetRule, Budgets, ModelPattern, ReservationConfig, ReservationMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Let the response pass and count `costguard.usage.missing`.
    Open,
    /// Treat the session as over budget.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub budget: Micros,
    /// `warn_ratio` in parts per million.
    pub warn_ratio_ppm: u64,
    pub max_duration_s: u64,
    /// Lower-case header name.
    pub id_header: String,
    /// The header is a credential: sessions are keyed by its hash.
    pub id_header_is_credential: bool,
    pub idle_ttl_s: u64,
    pub max_tracked: u32,
    /// `scope: fleet`: HTTP sessions are also counted in the fleet store.
    pub fleet: bool,
}

impl SessionConfig {
    /// Spend at or above which the warning fires: `spend >= warn_ratio × budget`,
    /// compared exactly.
    pub fn reaches_warning(&self, spend: Micros) -> bool {
        u128::from(spend) * 1_000_000 >= u128::from(self.budget) * u128::from(self.warn_ratio_ppm)
    }
    pub fn reaches_budget(&self, spend: Micros) -> bool {
        spend >= self.budget
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    pub budget: Micros,
    pub window_s: u64,
    pub cooldown_s: u64,
    pub close_active_sessions: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStoreConfig {
    pub rls_cluster: String,
    pub domain: String,
    pub sync_interval_ms: u64,
    pub timeout_ms: u64,
    pub micros_per_hit: Micros,
    /// Budget keys reported in one call (each descriptor with its own
    /// `hits_addend`; 1 for services that read only the request's).
    pub descriptors_per_call: u32,
}

/// `price_catalog`: where the live price catalog is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceCatalogConfig {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_s: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub session: SessionConfig,
    pub global: GlobalConfig,
    pub prices: PriceTable,
    pub allowed_origins: Vec<String>,
    pub inject_stream_usage: bool,
    pub fail_mode: FailMode,
    pub global_store: Option<GlobalStoreConfig>,
    pub price_catalog: Option<PriceCatalogConfig>,
    /// `budgets`, `reservation`, `budgets_max_keys`.
    pub budgets: Budgets,
    /// `response_headers`: the `x-costguard-*` response headers.
    pub response_headers: bool,
    /// `filter_state`: the `costguard.*` filter state an access log can read.
    pub filter_state: bool,
}

/// A configuration error, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "configuration key `{}`: {}", self.key, self.message)
        }
    }
}

const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// A JSON object being read, with its key path for error messages.
struct Section<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Section<'a> {
    fn new(path: &str, value: &'a Value, allowed: &[&str]) -> Result<Self, ConfigError> {
        let map = value
            .as_object()
            .ok_or_else(|| err(path, "must be an object"))?;
        let section = Section {
            path: path.to_string(),
            map,
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(err(
                &section.key(unknown),
                &format!("unknown key (known: {})", allowed.join(", ")),
            ));
        }
        Ok(section)
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name)
    }

    fn usd(&self, name: &str, default: Micros) -> Result<Micros, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => usd_value(&self.key(name), v),
        }
    }

    fn positive_int(&self, name: &str, default: u64, max: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 && n <= max => Ok(n),
                _ => Err(err(
                    &self.key(name),
                    &format!("must be a whole number from 1 to {max}"),
                )),
            },
        }
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| err(&self.key(name), "must be true or false")),
        }
    }

    fn string(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(err(&self.key(name), "must be a non-empty string")),
        }
    }
}

fn err(key: &str, message: &str) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn usd_value(key: &str, v: &Value) -> Result<Micros, ConfigError> {
    let Value::Number(n) = v else {
        return Err(err(key, "must be a number (USD)"));
    };
    json_number_to_units(n, 6).map_err(|e| err(key, &format!("{e} (USD, at most 6 decimals)")))
}

fn price_entry(s: &Section<'_>) -> Result<PriceEntry, ConfigError> {
    let price = |name: &str| -> Result<Option<u64>, ConfigError> {
        s.get(name).map(|v| usd_value(&s.key(name), v)).transpose()
    };
    let entry = PriceEntry {
        input: price("input")?,
        cached_input: price("cached_input")?,
        output: price("output")?,
        audio_input: price("audio_input")?,
        cached_audio_input: price("cached_audio_input")?,
        audio_output: price("audio_output")?,
        image_input: price("image_input")?,
        cached_image_input: price("cached_image_input")?,
    };
    if entry.input.is_none() {
        return Err(err(&s.key("input"), "is required in a price entry"));
    }
    Ok(entry)
}

/// Prices without tiers (`unknown_model`, and each tier of a model).
fn flat_prices(key: &str, v: &Value) -> Result<PriceEntry, ConfigError> {
    price_entry(&Section::new(key, v, &ModelPrices::KEYS)?)
}

/// Standard prices plus optional `flex` / `priority` tiers, each resolved
/// with the same fallbacks.
fn tier_prices(s: &Section<'_>) -> Result<TierPrices, ConfigError> {
    let tier = |name: &str| -> Result<Option<ModelPrices>, ConfigError> {
        s.get(name)
            .map(|v| flat_prices(&s.key(name), v).map(|e| e.resolve()))
            .transpose()
    };
    Ok(TierPrices {
        standard: price_entry(s)?.resolve(),
        flex: tier("flex")?,
        priority: tier("priority")?,
    })
}

/// A `pricing` entry: prices, optional tiers, optional long-context prices.
fn model_pricing(key: &str, v: &Value) -> Result<ModelPricing, ConfigError> {
    let tiered: Vec<&str> = ModelPrices::KEYS
        .iter()
        .copied()
        .chain(["flex", "priority"])
        .collect();
    let model_keys: Vec<&str> = tiered
        .iter()
        .copied()
        .chain(["above_input_tokens", "above"])
        .collect();
    let s = Section::new(key, v, &model_keys)?;
    let base = tier_prices(&s)?;
    let long_context = match (s.get("above_input_tokens"), s.get("above")) {
        (None, None) => None,
        (Some(_), None) => return Err(err(&s.key("above"), "is required with above_input_tokens")),
        (None, Some(_)) => return Err(err(&s.key("above_input_tokens"), "is required with above")),
        (Some(_), Some(above)) => Some(LongContext {
            above_input_tokens: s.positive_int("above_input_tokens", 0, u64::from(u32::MAX))?,
            prices: tier_prices(&Section::new(&s.key("above"), above, &tiered)?)?,
        }),
    };
    Ok(ModelPricing { base, long_context })
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    pub fn parse(text: &[u8]) -> Result<Config, ConfigError> {
        let trimmed = text.trim_ascii();
        let root: Value = if trimmed.is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(trimmed).map_err(|e| err("", &format!("not valid JSON: {e}")))?
        };
        let root = Section::new(
            "",
            &root,
            &[
                "session",
                "global",
                "pricing",
                "unknown_model",
                "allowed_origins",
                "inject_stream_usage",
                "fail_mode",
                "global_store",
                "price_catalog",
                "budgets",
                "reservation",
                "budgets_max_keys",
                "response_headers",
                "filter_state",
            ],
        )?;
        let empty = Value::Object(Map::new());

        let s = Section::new(
            "session",
            root.get("session").unwrap_or(&empty),
            &[
                "budget_usd",
                "warn_ratio",
                "max_duration_s",
                "id_header",
                "idle_ttl_s",
                "max_tracked",
                "scope",
            ],
        )?;
        let warn_ratio_ppm = match s.get("warn_ratio") {
            None => 800_000,
            Some(v) => {
                let ppm = match v {
                    Value::Number(n) => json_number_to_units(n, 6).ok(),
                    _ => None,
                };
                match ppm {
                    Some(p) if p > 0 && p <= 1_000_000 => p,
                    _ => {
                        return Err(err(
                            "session.warn_ratio",
                            "must be a number in (0, 1] with at most 6 decimals",
                        ))
                    }
                }
            }
        };
        let id_header = s.string("id_header", "x-session-id")?.to_ascii_lowercase();
        if !is_header_name(&id_header) {
            return Err(err("session.id_header", "must be an HTTP header name"));
        }
        let session = SessionConfig {
            budget: s.usd("budget_usd", 5 * MICROS_PER_USD)?,
            warn_ratio_ppm,
            max_duration_s: s.positive_int("max_duration_s", 1800, 365 * 86_400)?,
            id_header_is_credential: CREDENTIAL_HEADERS.contains(&id_header.as_str()),
            id_header,
            idle_ttl_s: s.positive_int("idle_ttl_s", 3600, 365 * 86_400)?,
            max_tracked: s.positive_int("max_tracked", 100_000, 10_000_000)? as u32,
            fleet: match s.get("scope") {
                None => false,
                Some(Value::String(v)) if v == "local" => false,
                Some(Value::String(v)) if v == "fleet" => true,
                Some(_) => return Err(err("session.scope", "must be \"local\" or \"fleet\"")),
            },
        };

        let g = Section::new(
            "global",
            root.get("global").unwrap_or(&empty),
            &[
                "budget_usd",
                "window_s",
                "cooldown_s",
                "close_active_sessions",
            ],
        )?;
        let global = GlobalConfig {
            budget: g.usd("budget_usd", 100 * MICROS_PER_USD)?,
            window_s: g.positive_int("window_s", 3600, 366 * 86_400)?,
            cooldown_s: match g.get("cooldown_s") {
                None => 300,
                Some(v) => v.as_u64().ok_or_else(|| {
                    err(
                        "global.cooldown_s",
                        "must be a whole number of seconds >= 0",
                    )
                })?,
            },
            close_active_sessions: g.bool("close_active_sessions", false)?,
        };

        let mut configured: Vec<(String, ModelPricing)> = Vec::new();
        if let Some(pricing) = root.get("pricing") {
            let map = pricing
                .as_object()
                .ok_or_else(|| err("pricing", "must be an object of model name → prices"))?;
            for (model, v) in map {
                if model.is_empty() {
                    return Err(err("pricing", "model names must not be empty"));
                }
                // A configured model replaces every other source's entry whole.
                configured.push((
                    model.clone(),
                    model_pricing(&format!("pricing.{model}"), v)?,
                ));
            }
        }
        let unknown = match root.get("unknown_model") {
            None => default_unknown_model(),
            Some(v) => flat_prices("unknown_model", v)?,
        };
        let prices = PriceTable::new(
            ModelTable::exact(configured),
            Arc::new(builtin_table()),
            ModelPricing::flat(unknown.resolve()),
        );

        let allowed_origins = match root.get("allowed_origins") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|o| match o {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(err(
                        "allowed_origins",
                        "must be a list of non-empty strings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err("allowed_origins", "must be a list of origins")),
        };

        let fail_mode = match root.get("fail_mode") {
            None => FailMode::Open,
            Some(Value::String(s)) if s == "open" => FailMode::Open,
            Some(Value::String(s)) if s == "closed" => FailMode::Closed,
            Some(_) => return Err(err("fail_mode", "must be \"open\" or \"closed\"")),
        };

        let global_store = match root.get("global_store") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let gs = Section::new(
                    "global_store",
                    v,
                    &[
                        "rls_cluster",
                        "domain",
                        "sync_interval_ms",
                        "timeout_ms",
                        "usd_per_hit",
                        "descriptors_per_call",
                    ],
                )?;
                if gs.get("rls_cluster").is_none() {
                    return Err(err("global_store.rls_cluster", "is required"));
                }
                let micros_per_hit = gs.usd("usd_per_hit", 10)?;
                if micros_per_hit == 0 {
                    return Err(err("global_store.usd_per_hit", "must be at least 0.000001"));
                }
                Some(GlobalStoreConfig {
                    rls_cluster: gs.string("rls_cluster", "")?,
                    domain: gs.string("domain", "costguard")?,
                    sync_interval_ms: gs.positive_int("sync_interval_ms", 1000, 3_600_000)?,
                    timeout_ms: gs.positive_int("timeout_ms", 250, 60_000)?,
                    micros_per_hit,
                    descriptors_per_call: gs.positive_int("descriptors_per_call", 1, 1000)? as u32,
                })
            }
        };

        let price_catalog = match root.get("price_catalog") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let pc = Section::new(
                    "price_catalog",
                    v,
                    &["cluster", "path", "authority", "refresh_s", "timeout_ms"],
                )?;
                if pc.get("cluster").is_none() {
                    return Err(err("price_catalog.cluster", "is required"));
                }
                let cluster = pc.string("cluster", "")?;
                let path = pc.string("path", "/model_prices_and_context_window.json")?;
                if !path.starts_with('/') {
                    return Err(err("price_catalog.path", "must start with /"));
                }
                Some(PriceCatalogConfig {
                    authority: pc.string("authority", &cluster)?,
                    cluster,
                    path,
                    refresh_s: pc.positive_int("refresh_s", 3600, 30 * 86_400)?,
                    timeout_ms: pc.positive_int("timeout_ms", 5000, 60_000)?,
                })
            }
        };

        let budgets = budgets::parse(&root, global_store.is_some())?;
        if session.fleet && global_store.is_none() {
            return Err(err(
                "session.scope",
                "\"fleet\" needs global_store (the rate-limit service that counts it)",
            ));
        }

        Ok(Config {
            budgets,
            session,
            global,
            prices,
            allowed_origins,
            inject_stream_usage: root.bool("inject_stream_usage", true)?,
            response_headers: root.bool("response_headers", true)?,
            filter_state: root.bool("filter_state", true)?,
            fail_mode,
            global_store,
            price_catalog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key an invalid configuration's error names.
    pub(in crate::config) fn error_key(json: &str) -> String {
        match Config::parse(json.as_bytes()) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e.key,
        }
    }

    #[test]
    fn defaults() {
        let c = Config::parse(b"").unwrap();
        assert_eq!(c.session.budget, 5_000_000);
        assert_eq!(c.session.warn_ratio_ppm, 800_000);
        assert_eq!(c.session.max_duration_s, 1800);
        assert_eq!(c.session.id_header, "x-session-id");
        assert_eq!(c.session.max_tracked, 100_000);
        assert_eq!(c.global.budget, 100_000_000);
        assert_eq!((c.global.window_s, c.global.cooldown_s), (3600, 300));
        assert!(c.inject_stream_usage);
        assert!(c.response_headers && c.filter_state);
        assert_eq!(c.fail_mode, FailMode::Open);
        assert!(c.global_store.is_none());
        assert_eq!(c.prices.lookup("gpt-5").prices().input, 1_250_000);
        assert_eq!(Config::parse(b"{}").unwrap().session.budget, 5_000_000);
    }

    #[test]
    fn contract_example_parses() {
        let c = Config::parse(
            br#"{"session":{"budget_usd":5.0,"warn_ratio":0.8,"max_duration_s":1800,"id_header":"X-Session-Id",
                 "idle_ttl_s":3600,"max_tracked":100000},
                 "global":{"budget_usd":100.0,"window_s":3600,"cooldown_s":300,"close_active_sessions":false},
                 "pricing":{"gpt-5":{"input":10,"output":30}},
                 "unknown_model":{"input":10.0,"output":40.0},"allowed_origins":["https://app.example"],
                 "inject_stream_usage":true,"fail_mode":"closed",
                 "global_store":{"rls_cluster":"rls","domain":"costguard","sync_interval_ms":1000,"timeout_ms":250,"usd_per_hit":0.00001}}"#,
        )
        .unwrap();
        assert_eq!(c.session.id_header, "x-session-id");
        assert_eq!(c.fail_mode, FailMode::Closed);
        // Replaced whole: no cached price inherited from the built-in gpt-5.
        let p = c.prices.lookup("gpt-5-2025-08-07").prices();
        assert_eq!(
            (p.input, p.cached_input, p.output),
            (10_000_000, 10_000_000, 30_000_000)
        );
        assert_eq!(c.global_store.unwrap().micros_per_hit, 10);
    }

    #[test]
    fn tiers_and_catalog_parse() {
        let c = Config::parse(
            br#"{"pricing":{"m":{"input":1,"output":2,"flex":{"input":0.5,"output":1},
                 "priority":{"input":2,"output":4},"above_input_tokens":272000,
                 "above":{"input":3,"output":6,"flex":{"input":1.5,"output":3}}}},
                 "price_catalog":{"cluster":"prices","path":"/model_prices.json","authority":"prices.internal",
                 "refresh_s":3600,"timeout_ms":5000}}"#,
        )
        .unwrap();
        let m = *c.prices.lookup("m").pricing();
        assert_eq!(m.base.standard.input, 1_000_000);
        assert_eq!(m.base.flex.map(|p| p.output), Some(1_000_000));
        assert_eq!(m.base.priority.map(|p| p.input), Some(2_000_000));
        let lc = m.long_context.unwrap();
        assert_eq!(lc.above_input_tokens, 272_000);
        assert_eq!(lc.prices.standard.output, 6_000_000);
        assert_eq!(lc.prices.flex.map(|p| p.input), Some(1_500_000));
        assert_eq!(lc.prices.priority, None);
        let pc = c.price_catalog.unwrap();
        assert_eq!(
            (pc.cluster.as_str(), pc.path.as_str(), pc.authority.as_str()),
            ("prices", "/model_prices.json", "prices.internal")
        );
        assert_eq!((pc.refresh_s, pc.timeout_ms), (3600, 5000));
        let d = Config::parse(br#"{"price_catalog":{"cluster":"prices"}}"#).unwrap();
        let pc = d.price_catalog.unwrap();
        assert_eq!(pc.authority, "prices");
        assert_eq!(pc.path, "/model_prices_and_context_window.json");
    }

    #[test]
    fn warning_threshold_is_exact() {
        let c = Config::parse(b"{}").unwrap();
        assert!(!c.session.reaches_warning(3_999_999));
        assert!(c.session.reaches_warning(4_000_000));
        assert!(!c.session.reaches_budget(4_999_999));
        assert!(c.session.reaches_budget(5_000_000));
        assert!(c.session.reaches_budget(5_500_000));
    }

    #[test]
    fn credential_headers_are_flagged() {
        let c = Config::parse(br#"{"session":{"id_header":"Authorization"}}"#).unwrap();
        assert!(c.session.id_header_is_credential);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(error_key(r#"{"sesion":{}}"#), "sesion");
        assert_eq!(error_key(r#"{"session":{"budget":1}}"#), "session.budget");
        assert_eq!(
            error_key(r#"{"session":{"budget_usd":-1}}"#),
            "session.budget_usd"
        );
        assert_eq!(
            error_key(r#"{"session":{"budget_usd":"5"}}"#),
            "session.budget_usd"
        );
        assert_eq!(
            error_key(r#"{"session":{"warn_ratio":0}}"#),
            "session.warn_ratio"
        );
        assert_eq!(
            error_key(r#"{"session":{"warn_ratio":1.5}}"#),
            "session.warn_ratio"
        );
        assert_eq!(
            error_key(r#"{"session":{"max_duration_s":0}}"#),
            "session.max_duration_s"
        );
        assert_eq!(
            error_key(r#"{"session":{"max_duration_s":1.5}}"#),
            "session.max_duration_s"
        );
        assert_eq!(
            error_key(r#"{"session":{"id_header":"bad header"}}"#),
            "session.id_header"
        );
        assert_eq!(
            error_key(r#"{"session":{"max_tracked":0}}"#),
            "session.max_tracked"
        );
        assert_eq!(
            error_key(r#"{"global":{"window_s":-5}}"#),
            "global.window_s"
        );
        assert_eq!(
            error_key(r#"{"global":{"cooldown_s":"x"}}"#),
            "global.cooldown_s"
        );
        assert_eq!(
            error_key(r#"{"global":{"close_active_sessions":1}}"#),
            "global.close_active_sessions"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"input":0.0000001}}}"#),
            "pricing.m.input"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"inptu":1}}}"#),
            "pricing.m.inptu"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"output":1}}}"#),
            "pricing.m.input"
        );
        assert_eq!(error_key(r#"{"pricing":[]}"#), "pricing");
        assert_eq!(
            error_key(r#"{"unknown_model":{"input":-1}}"#),
            "unknown_model.input"
        );
        assert_eq!(error_key(r#"{"allowed_origins":"x"}"#), "allowed_origins");
        assert_eq!(
            error_key(r#"{"inject_stream_usage":"yes"}"#),
            "inject_stream_usage"
        );
        assert_eq!(error_key(r#"{"response_headers":1}"#), "response_headers");
        assert_eq!(error_key(r#"{"filter_state":"no"}"#), "filter_state");
        assert_eq!(error_key(r#"{"fail_mode":"ajar"}"#), "fail_mode");
        assert_eq!(
            error_key(r#"{"global_store":{}}"#),
            "global_store.rls_cluster"
        );
        assert_eq!(
            error_key(r#"{"global_store":{"rls_cluster":"r","usd_per_hit":0}}"#),
            "global_store.usd_per_hit"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"input":1,"flex":{"output":1}}}}"#),
            "pricing.m.flex.input"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"input":1,"flex":{"input":1,"above":{}}}}}"#),
            "pricing.m.flex.above"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"input":1,"above_input_tokens":272000}}}"#),
            "pricing.m.above"
        );
        assert_eq!(
            error_key(r#"{"pricing":{"m":{"input":1,"above":{"input":2}}}}"#),
            "pricing.m.above_input_tokens"
        );
        assert_eq!(
            error_key(
                r#"{"pricing":{"m":{"input":1,"above_input_tokens":0,"above":{"input":2}}}}"#
            ),
            "pricing.m.above_input_tokens"
        );
        assert_eq!(
            error_key(
                r#"{"pricing":{"m":{"input":1,"above_input_tokens":5,"above":{"input":2,"priority":{"input":0.0000001}}}}}"#
            ),
            "pricing.m.above.priority.input"
        );
        assert_eq!(
            error_key(r#"{"price_catalog":{}}"#),
            "price_catalog.cluster"
        );
        assert_eq!(
            error_key(r#"{"price_catalog":{"cluster":"p","path":"x.json"}}"#),
            "price_catalog.path"
        );
        assert_eq!(
            error_key(r#"{"price_catalog":{"cluster":"p","refresh_s":0}}"#),
            "price_catalog.refresh_s"
        );
        assert_eq!(
            error_key(r#"{"price_catalog":{"cluster":"p","timeout":5}}"#),
            "price_catalog.timeout"
        );
        assert_eq!(
            error_key(r#"{"session":{"scope":"fleet"}}"#),
            "session.scope"
        );
        assert_eq!(
            error_key(r#"{"session":{"scope":"everywhere"}}"#),
            "session.scope"
        );
        assert_eq!(error_key("[1]"), "");
        assert_eq!(error_key("{"), "");
    }

    #[test]
    fn error_message_is_readable() {
        let e = Config::parse(br#"{"session":{"warn_ratio":2}}"#).unwrap_err();
        assert_eq!(e.to_string(), "configuration key `session.warn_ratio`: must be a number in (0, 1] with at most 6 decimals");
    }
}
