use super::*;
use crate::pricing::{ServiceTier, TierPrices};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// A small catalog in LiteLLM's shape: OpenAI and other providers, tiers,
/// long context, braces and escapes inside strings.
const CATALOG: &str = r#"{
  "sample_spec": {"litellm_provider": "one of the providers", "input_cost_per_token": 0.0, "notes": "a } and a { in \" text"},
  "claude-x": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05},
  "gpt-5.5": {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 1050000,
     "input_cost_per_token": 5e-06, "cache_read_input_token_cost": 5e-07, "output_cost_per_token": 3e-05,
     "input_cost_per_token_flex": 2.5e-06, "cache_read_input_token_cost_flex": 2.5e-07, "output_cost_per_token_flex": 1.5e-05,
     "input_cost_per_token_priority": 1.25e-05, "output_cost_per_token_priority": 7.5e-05,
     "input_cost_per_token_batches": 2.5e-06, "output_cost_per_token_batches": 1.5e-05,
     "input_cost_per_token_above_272k_tokens": 1e-05, "output_cost_per_token_above_272k_tokens": 4.5e-05,
     "cache_read_input_token_cost_above_272k_tokens": 1e-06,
     "input_cost_per_token_above_272k_tokens_flex": 5e-06, "output_cost_per_token_above_272k_tokens_flex": 2.25e-05,
     "supported_endpoints": ["/v1/chat/completions", "/v1/responses"],
     "search_context_cost_per_query": {"search_context_size_low": 0.01}},
  "gpt-5.5-2026-04-23": {"litellm_provider": "openai", "mode": "chat",
     "input_cost_per_token": 5e-06, "cache_read_input_token_cost": 5e-07, "output_cost_per_token": 3e-05,
     "input_cost_per_token_flex": 2.5e-06, "cache_read_input_token_cost_flex": 2.5e-07, "output_cost_per_token_flex": 1.5e-05,
     "input_cost_per_token_priority": 1.25e-05, "output_cost_per_token_priority": 7.5e-05,
     "input_cost_per_token_above_272k_tokens": 1e-05, "output_cost_per_token_above_272k_tokens": 4.5e-05,
     "cache_read_input_token_cost_above_272k_tokens": 1e-06,
     "input_cost_per_token_above_272k_tokens_flex": 5e-06, "output_cost_per_token_above_272k_tokens_flex": 2.25e-05},
  "gpt-realtime-2": {"litellm_provider": "openai", "mode": "realtime", "input_cost_per_token": 4e-06,
     "cache_read_input_token_cost": 4e-07, "output_cost_per_token": 2.4e-05, "input_cost_per_audio_token": 3.2e-05,
     "cache_read_input_audio_token_cost": 4e-07, "output_cost_per_audio_token": 6.4e-05,
     "input_cost_per_image_token": 5e-06, "cache_read_input_image_token_cost": 5e-07},
  "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0},
  "gpt-image-1": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_token": 5e-06},
  "low/1024-x-1024/gpt-image-1": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_image": 0.011},
  "tts-1": {"litellm_provider": "openai", "mode": "audio_speech", "input_cost_per_character": 1.5e-05},
  "gpt-odd": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": "cheap", "output_cost_per_token": 1e-06},
  "gpt-fine": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-13, "output_cost_per_token": 1e-06},
  "gpt-no-output": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06},
  "gpt-\u00e9": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
}"#;

fn names(read: &CatalogRead) -> Vec<&str> {
    let mut n: Vec<&str> = read.models.iter().map(|(n, _)| n.as_str()).collect();
    n.sort();
    n
}

#[test]
fn keeps_openai_token_priced_models_only() {
    let read = read_catalog(CATALOG.as_bytes()).unwrap();
    assert_eq!(
        names(&read),
        [
            "gpt-5.5",
            "gpt-5.5-2026-04-23",
            "gpt-realtime-2",
            "gpt-é",
            "text-embedding-3-small"
        ]
    );
    let mut invalid: Vec<&str> = read.invalid.iter().map(|(n, _)| n.as_str()).collect();
    invalid.sort();
    assert_eq!(invalid, ["gpt-fine", "gpt-no-output", "gpt-odd"]);
    assert_eq!(read.entries_seen, 13);
}

#[test]
fn converts_prices_and_tiers_exactly() {
    let read = read_catalog(CATALOG.as_bytes()).unwrap();
    let table = catalog_table(read);
    // The dated snapshot is priced like its base: folded away.
    assert!(table.get("gpt-5.5-2026-04-23").is_none());
    let (_, m) = table.get("gpt-5.5").unwrap();
    let s = &m.base.standard;
    assert_eq!(
        (s.input, s.cached_input, s.output),
        (5_000_000, 500_000, 30_000_000)
    );
    let flex = m.base.flex.unwrap();
    assert_eq!(
        (flex.input, flex.cached_input, flex.output),
        (2_500_000, 250_000, 15_000_000)
    );
    let prio = m.base.priority.unwrap();
    // No priority cached price: it falls back to the tier's own input price.
    assert_eq!(
        (prio.input, prio.cached_input, prio.output),
        (12_500_000, 12_500_000, 75_000_000)
    );
    let lc = m.long_context.unwrap();
    assert_eq!(lc.above_input_tokens, 272_000);
    assert_eq!(
        (lc.prices.standard.input, lc.prices.standard.output),
        (10_000_000, 45_000_000)
    );
    assert_eq!(lc.prices.flex.map(|p| p.output), Some(22_500_000));
    assert_eq!(lc.prices.priority, None);
    // 200k in + 1M out of gpt-5.5 at standard: $1 + $30; 1M in is past
    // 272k: every token at the long-context prices, $10 + $45.
    let usage = |input| crate::usage::Usage {
        text_input: input,
        text_output: 1_000_000,
        ..Default::default()
    };
    assert_eq!(
        crate::pricing::cost_for(&usage(200_000), m, ServiceTier::Standard),
        31_000_000
    );
    assert_eq!(
        crate::pricing::cost_for(&usage(1_000_000), m, ServiceTier::Standard),
        55_000_000
    );
    let (_, rt) = table.get("gpt-realtime-2").unwrap();
    let TierPrices { standard: p, .. } = rt.base;
    assert_eq!(
        p.to_array(),
        [4_000_000, 400_000, 24_000_000, 32_000_000, 400_000, 64_000_000, 5_000_000, 500_000]
    );
    let (_, emb) = table.get("text-embedding-3-small").unwrap();
    assert_eq!(
        (emb.base.standard.input, emb.base.standard.output),
        (20_000, 0)
    );
}

#[test]
fn any_chunking_gives_the_same_result() {
    let whole = read_catalog(CATALOG.as_bytes()).unwrap();
    let bytes = CATALOG.as_bytes();
    for size in [1, 2, 3, 7, 64, 1000] {
        let mut r = CatalogReader::new();
        for chunk in bytes.chunks(size) {
            r.feed(chunk);
        }
        let read = r.finish().unwrap();
        assert_eq!(read.models, whole.models, "chunks of {size}");
        assert_eq!(read.invalid, whole.invalid);
    }
}

#[test]
fn broken_catalogs_are_refused_whole() {
    let truncated = &CATALOG[..CATALOG.len() / 2];
    assert_eq!(
        read_catalog(truncated.as_bytes()).unwrap_err(),
        CatalogError::Truncated
    );
    assert_eq!(read_catalog(b"").unwrap_err(), CatalogError::Truncated);
    assert!(matches!(
        read_catalog(b"<html>").unwrap_err(),
        CatalogError::Syntax(0)
    ));
    assert!(matches!(
        read_catalog(b"[1,2]").unwrap_err(),
        CatalogError::Syntax(0)
    ));
    assert!(matches!(
        read_catalog(br#"{"a": 1}"#).unwrap_err(),
        CatalogError::Syntax(_)
    ));
    assert!(matches!(
        read_catalog(format!("{CATALOG} x").as_bytes()).unwrap_err(),
        CatalogError::Syntax(_)
    ));
    assert_eq!(read_catalog(b"{}").unwrap_err(), CatalogError::NoModels);
    assert_eq!(
        read_catalog(br#"{"claude-x": {"litellm_provider": "anthropic"}}"#).unwrap_err(),
        CatalogError::NoModels
    );
    let mut r = CatalogReader::new();
    let filler = vec![b' '; 1024 * 1024];
    r.feed(b"{");
    for _ in 0..=MAX_CATALOG_BYTES / filler.len() {
        r.feed(&filler);
    }
    assert_eq!(r.finish().unwrap_err(), CatalogError::TooLarge);
}

#[test]
fn oversized_entries_are_skipped_not_held() {
    let big = format!(
        r#"{{"huge": {{"litellm_provider": "openai", "mode": "chat", "notes": "{}", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}},
            "gpt-ok": {{"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}}}"#,
        "x".repeat(MAX_ENTRY_BYTES)
    );
    let read = read_catalog(big.as_bytes()).unwrap();
    assert_eq!(names(&read), ["gpt-ok"]);
}

#[test]
fn per_token_prices_convert_exactly() {
    assert_eq!(per_token_usd_to_units("1.25e-06"), Ok(1_250_000));
    assert_eq!(per_token_usd_to_units("1.25E-6"), Ok(1_250_000));
    assert_eq!(per_token_usd_to_units("0.00000125"), Ok(1_250_000));
    assert_eq!(per_token_usd_to_units("3.75e-08"), Ok(37_500));
    assert_eq!(per_token_usd_to_units("1e-12"), Ok(1));
    assert_eq!(per_token_usd_to_units("0.0"), Ok(0));
    assert!(per_token_usd_to_units("1e-13").is_err());
    assert!(per_token_usd_to_units("-1e-06").is_err());
    assert!(per_token_usd_to_units("\"1e-06\"").is_err());
}

/// A decimal's canonical text, by moving its point (no arithmetic): `1.25e-06`
/// → `0.00000125`, `3E-5` → `0.00003`, `0.0` → `0`.
fn canonical(text: &str) -> String {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().unwrap()),
        None => (text, 0),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{frac}");
    let point = whole.len() as i64 + exp; // digits before the point
    let (int, fraction) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let int = int.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if fraction.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{fraction}")
    }
}

/// µ$ per 1M tokens back to USD per token, as plain decimal text.
fn per_token_text(units: u64) -> String {
    crate::money::decimal_text(units, 12).to_string()
}

/// Every price of every OpenAI entry of the pinned catalog (`make unit` sets
/// COSTGUARD_CATALOG; plain `cargo test` checks the small catalog above)
/// converts exactly: converted back, it is the catalog's decimal.
#[test]
fn every_catalog_price_converts_back_to_its_decimal() {
    let text = match std::env::var("COSTGUARD_CATALOG") {
        Ok(path) => std::fs::read_to_string(path).unwrap(),
        Err(_) => CATALOG.to_string(),
    };
    let all: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for (name, raw) in all {
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
            continue;
        };
        if fields.get("litellm_provider").map(|v| v.get()) != Some("\"openai\"")
            || name.contains('/')
        {
            continue;
        }
        for (key, value) in &fields {
            let price = value.get();
            let is_price = (key.contains("cost_per_token")
                || key.ends_with("_token_cost")
                || key.contains("_token_cost_"))
                && !price.starts_with('"')
                && !price.starts_with('{');
            if !is_price {
                continue;
            }
            match per_token_usd_to_units(price) {
                Ok(units) => {
                    assert_eq!(
                        per_token_text(units),
                        canonical(price),
                        "{name}.{key} = {price}"
                    );
                    assert_eq!(per_token_usd_to_units(&per_token_text(units)), Ok(units));
                    checked += 1;
                }
                // Finer than 1e-12 USD per token: such an entry is left out, never rounded.
                Err(_) => assert!(canonical(price)
                    .split('.')
                    .nth(1)
                    .is_some_and(|f| f.len() > 12)),
            }
        }
    }
    assert!(checked >= 20, "only {checked} prices checked");
    eprintln!("{checked} catalog prices convert exactly");
}

#[test]
fn catalog_meta_round_trips_through_its_record() {
    use crate::store::Record;
    let meta = sync::CatalogMeta {
        source: 1,
        version: 2,
        last_good_ms: 3,
        next_fetch_ms: 4,
        lease_until_ms: u64::MAX,
        since_ms: 6,
    };
    assert_eq!(sync::CatalogMeta::decode(&meta.encode()), Some(meta));
}
