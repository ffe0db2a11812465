//! `budgets` (rules), `reservation` and `budgets_max_keys`.

use super::{err, usd_value, ConfigError, Section, CREDENTIAL_HEADERS};
use crate::budget::rules::rule_tag;
use crate::budget::window::Window;
use crate::money::Micros;
use serde_json::{Map, Value};

/// A `models` entry: an exact name, or a prefix (written with a final `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(name) => model == name,
            ModelPattern::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }
}

/// One budget rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRule {
    pub name: String,
    /// Lower-case request header whose value is the rule's key.
    pub header: String,
    /// The header is a credential: keys are its hash.
    pub header_is_credential: bool,
    pub limit: Micros,
    pub window: Window,
    /// Empty: every model.
    pub models: Vec<ModelPattern>,
    /// [`rule_tag`] of the name.
    pub tag: u64,
    /// `scope: fleet`: also counted in the fleet store (`global_store`).
    pub fleet: bool,
}

impl BudgetRule {
    /// Whether the rule limits only some models.
    pub fn is_per_model(&self) -> bool {
        !self.models.is_empty()
    }

    /// Whether a request for `model` counts against the rule (a rule with
    /// `models` does not apply to a request naming none).
    pub fn applies_to(&self, model: Option<&str>) -> bool {
        self.models.is_empty() || model.is_some_and(|m| self.models.iter().any(|p| p.matches(m)))
    }

    /// "day", "month", "minute", "hour" or "60-second window": for messages.
    pub fn window_noun(&self) -> String {
        match self.window {
            Window::Day => "day".to_string(),
            Window::Month => "month".to_string(),
            Window::Seconds(60) => "minute".to_string(),
            Window::Seconds(3600) => "hour".to_string(),
            Window::Seconds(n) => format!("{n}-second window"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationMode {
    /// Reserve an estimate of each call's cost at admission.
    Estimate,
    /// Admit on committed spend alone.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationConfig {
    pub mode: ReservationMode,
    /// Output tokens assumed for a request that sets no maximum.
    pub default_output_tokens: u64,
}

impl Default for ReservationConfig {
    fn default() -> Self {
        ReservationConfig {
            mode: ReservationMode::Estimate,
            default_output_tokens: 1024,
        }
    }
}

/// Budget rules with their store's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    pub rules: Vec<BudgetRule>,
    pub reservation: ReservationConfig,
    /// Slots for rule keys in shared data.
    pub max_keys: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            rules: Vec::new(),
            reservation: ReservationConfig::default(),
            max_keys: 100_000,
        }
    }
}

const LONGEST_WINDOW_S: u64 = 366 * 86_400;

fn is_rule_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn window(key: &str, v: &Value) -> Result<Window, ConfigError> {
    let bad = || {
        err(
            key,
            &format!(
                "must be \"minute\", \"hour\", \"day\", \"month\" or a whole number of seconds \
                 from 1 to {LONGEST_WINDOW_S}"
            ),
        )
    };
    match v {
        Value::String(s) => match s.as_str() {
            "minute" => Ok(Window::Seconds(60)),
            "hour" => Ok(Window::Seconds(3600)),
            "day" => Ok(Window::Day),
            "month" => Ok(Window::Month),
            _ => Err(bad()),
        },
        Value::Number(n) => match n.as_u64() {
            Some(s) if (1..=LONGEST_WINDOW_S).contains(&s) => Ok(Window::Seconds(s)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn models(key: &str, v: &Value) -> Result<Vec<ModelPattern>, ConfigError> {
    let bad = || {
        err(
            key,
            "must be a non-empty list of model names, or prefixes ending in *",
        )
    };
    let Value::Array(items) = v else {
        return Err(bad());
    };
    if items.is_empty() {
        return Err(bad());
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.is_empty() => match s.find('*') {
                None => Ok(ModelPattern::Exact(s.clone())),
                Some(at) if at == s.len() - 1 => Ok(ModelPattern::Prefix(s[..at].to_string())),
                Some(_) => Err(bad()),
            },
            _ => Err(bad()),
        })
        .collect()
}

fn rule(key: &str, v: &Value, has_fleet_store: bool) -> Result<BudgetRule, ConfigError> {
    let s = Section::new(
        key,
        v,
        &["name", "key", "limit_usd", "window", "models", "scope"],
    )?;
    let name = match s.get("name") {
        Some(Value::String(n)) if is_rule_name(n) => n.clone(),
        _ => {
            return Err(err(
                &s.key("name"),
                "is required: 1 to 32 characters from a-z, 0-9, - and _",
            ))
        }
    };
    let header = match s.get("key") {
        Some(Value::String(k)) => k
            .strip_prefix("header:")
            .map(str::to_ascii_lowercase)
            .filter(|h| super::is_header_name(h)),
        _ => None,
    }
    .ok_or_else(|| {
        err(
            &s.key("key"),
            "is required: \"header:<request header name>\"",
        )
    })?;
    let limit = match s.get("limit_usd") {
        None => return Err(err(&s.key("limit_usd"), "is required")),
        Some(v) => usd_value(&s.key("limit_usd"), v)?,
    };
    if limit == 0 {
        return Err(err(&s.key("limit_usd"), "must be above 0"));
    }
    let window = match s.get("window") {
        None => return Err(err(&s.key("window"), "is required")),
        Some(v) => window(&s.key("window"), v)?,
    };
    let models = match s.get("models") {
        None => Vec::new(),
        Some(v) => models(&s.key("models"), v)?,
    };
    let fleet = match s.get("scope") {
        None => false,
        Some(Value::String(scope)) if scope == "local" => false,
        Some(Value::String(scope)) if scope == "fleet" => true,
        Some(_) => return Err(err(&s.key("scope"), "must be \"local\" or \"fleet\"")),
    };
    if fleet && !has_fleet_store {
        return Err(err(
            &s.key("scope"),
            "\"fleet\" needs global_store (the rate-limit service that counts it)",
        ));
    }
    Ok(BudgetRule {
        fleet,
        tag: rule_tag(&name),
        header_is_credential: CREDENTIAL_HEADERS.contains(&header.as_str()),
        name,
        header,
        limit,
        window,
        models,
    })
}

/// Reads `budgets`, `reservation` and `budgets_max_keys` from the root.
pub(super) fn parse(root: &Section<'_>, has_fleet_store: bool) -> Result<Budgets, ConfigError> {
    let mut budgets = Budgets::default();
    match root.get("budgets") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let key = format!("budgets[{i}]");
                let rule = rule(&key, item, has_fleet_store)?;
                if budgets.rules.iter().any(|r| r.name == rule.name) {
                    return Err(err(
                        &format!("{key}.name"),
                        &format!("duplicate rule name {:?}", rule.name),
                    ));
                }
                if budgets.rules.iter().any(|r| r.tag == rule.tag) {
                    return Err(err(&format!("{key}.name"), "choose another name"));
                }
                budgets.rules.push(rule);
            }
        }
        Some(_) => return Err(err("budgets", "must be a list of rules")),
    }
    let empty = Value::Object(Map::new());
    let r = Section::new(
        "reservation",
        root.get("reservation").unwrap_or(&empty),
        &["mode", "default_output_tokens"],
    )?;
    budgets.reservation = ReservationConfig {
        mode: match r.get("mode") {
            None => ReservationMode::Estimate,
            Some(Value::String(m)) if m == "estimate" => ReservationMode::Estimate,
            Some(Value::String(m)) if m == "off" => ReservationMode::Off,
            Some(_) => return Err(err("reservation.mode", "must be \"estimate\" or \"off\"")),
        },
        default_output_tokens: r.positive_int("default_output_tokens", 1024, 10_000_000)?,
    };
    budgets.max_keys = root.positive_int("budgets_max_keys", 100_000, 10_000_000)? as u32;
    Ok(budgets)
}

#[cfg(test)]
mod tests {
    use crate::budget::window::Window;
    use crate::config::tests::error_key;
    use crate::config::{Config, ReservationMode};

    #[test]
    fn the_contract_example_parses() {
        let c = Config::parse(
            br#"{"budgets":[
              { "name": "key-daily",   "key": "header:x-api-key",  "limit_usd": 20,   "window": "day" },
              { "name": "user-monthly","key": "header:X-User-Id",  "limit_usd": 100,  "window": "month" },
              { "name": "team-gpt5",   "key": "header:x-team-id",  "limit_usd": 1000, "window": "month", "models": ["gpt-5", "gpt-5-*"] },
              { "name": "burst",       "key": "header:x-api-key",  "limit_usd": 2.5,  "window": 60 }
            ], "reservation": {"mode": "off", "default_output_tokens": 200}, "budgets_max_keys": 50}"#,
        )
        .unwrap();
        let b = &c.budgets;
        assert_eq!(b.rules.len(), 4);
        assert_eq!(b.rules[0].header, "x-api-key");
        assert!(b.rules[0].header_is_credential);
        assert_eq!(b.rules[1].header, "x-user-id");
        assert!(!b.rules[1].header_is_credential);
        assert_eq!(b.rules[0].window, Window::Day);
        assert_eq!(b.rules[1].window, Window::Month);
        assert_eq!(b.rules[3].window, Window::Seconds(60));
        assert_eq!(b.rules[3].limit, 2_500_000);
        assert_eq!(b.rules[3].window_noun(), "minute");
        let team = &b.rules[2];
        assert!(team.applies_to(Some("gpt-5")));
        assert!(team.applies_to(Some("gpt-5-mini")));
        assert!(!team.applies_to(Some("gpt-5.5")));
        assert!(!team.applies_to(None));
        assert!(b.rules[0].applies_to(None));
        assert_eq!(b.reservation.mode, ReservationMode::Off);
        assert_eq!(b.reservation.default_output_tokens, 200);
        assert_eq!(b.max_keys, 50);
        assert!(!b.rules[0].fleet);
        let fleet = Config::parse(
            br#"{"global_store":{"rls_cluster":"rls"},"budgets":[
              {"name":"k","key":"header:x-api-key","limit_usd":1,"window":"day","scope":"fleet"}]}"#,
        )
        .unwrap();
        assert!(fleet.budgets.rules[0].fleet);
        let d = Config::parse(b"{}").unwrap().budgets;
        assert!(d.rules.is_empty());
        assert_eq!(d.reservation.mode, ReservationMode::Estimate);
        assert_eq!(d.reservation.default_output_tokens, 1024);
        assert_eq!(d.max_keys, 100_000);
    }

    #[test]
    fn bad_rules_name_the_key() {
        let rule = |extra: &str| {
            format!(
                r#"{{"budgets":[{{"name":"a","key":"header:x-k","limit_usd":1,"window":"day"{extra}}}]}}"#
            )
        };
        assert_eq!(error_key(&rule(r#","limt":1"#)), "budgets[0].limt");
        assert_eq!(error_key(&rule(r#","window":"week""#)), "budgets[0].window");
        assert_eq!(error_key(&rule(r#","window":0"#)), "budgets[0].window");
        assert_eq!(error_key(&rule(r#","window":1.5"#)), "budgets[0].window");
        assert_eq!(error_key(&rule(r#","key":"x-k""#)), "budgets[0].key");
        assert_eq!(
            error_key(&rule(r#","key":"header:bad header""#)),
            "budgets[0].key"
        );
        assert_eq!(
            error_key(&rule(r#","name":"Key Daily""#)),
            "budgets[0].name"
        );
        assert_eq!(
            error_key(&rule(r#","name":"abcdefghijklmnopqrstuvwxyz0123456""#)),
            "budgets[0].name"
        );
        assert_eq!(
            error_key(&rule(r#","limit_usd":0"#)),
            "budgets[0].limit_usd"
        );
        assert_eq!(
            error_key(&rule(r#","limit_usd":0.0000001"#)),
            "budgets[0].limit_usd"
        );
        assert_eq!(error_key(&rule(r#","models":[]"#)), "budgets[0].models");
        assert_eq!(
            error_key(&rule(r#","models":["gpt-*-mini"]"#)),
            "budgets[0].models"
        );
        assert_eq!(
            error_key(r#"{"budgets":[{"name":"a","key":"header:x","window":"day"}]}"#),
            "budgets[0].limit_usd"
        );
        assert_eq!(
            error_key(
                r#"{"budgets":[{"name":"a","key":"header:x","limit_usd":1,"window":"day"},
                               {"name":"a","key":"header:y","limit_usd":1,"window":"day"}]}"#
            ),
            "budgets[1].name"
        );
        assert_eq!(error_key(r#"{"budgets":{}}"#), "budgets");
        assert_eq!(
            error_key(r#"{"reservation":{"mode":"guess"}}"#),
            "reservation.mode"
        );
        assert_eq!(
            error_key(r#"{"reservation":{"default_output_tokens":0}}"#),
            "reservation.default_output_tokens"
        );
        assert_eq!(error_key(r#"{"budgets_max_keys":0}"#), "budgets_max_keys");
        assert_eq!(error_key(&rule(r#","scope":"fleet""#)), "budgets[0].scope");
        assert_eq!(error_key(&rule(r#","scope":"global""#)), "budgets[0].scope");
    }
}
