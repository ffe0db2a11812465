//! costguard-check-config: validates costguard plugin configurations (JSON)
//! exactly as the filter does at load, without Envoy, and explains prices.
//!
//!   costguard-check-config [--catalog FILE] [--explain MODEL]... [CONFIG...]
//!
//! `CONFIG` files (or - for standard input) are checked; each gets one line,
//! and the exit status is 1 if any is rejected. `--catalog FILE` reads a
//! price catalog (LiteLLM's JSON) exactly as the live catalog is read and
//! uses it as the catalog layer. `--explain MODEL` prints which entry, from
//! which source, and which prices per tier a model name resolves to, under
//! the last configuration given (or the defaults).

use costguard::catalog::{catalog_table, read_catalog};
use costguard::config::Config;
use costguard::money::format_usd;
use costguard::pricing::{ModelPrices, PriceMatch, PriceTable, TierPrices};
use std::io::Read;
use std::sync::Arc;

fn read(path: &str) -> std::io::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

const USAGE: &str =
    "usage: costguard-check-config [--catalog FILE] [--explain MODEL]... [CONFIG...] (- for stdin)";

/// USD per 1M tokens, every price of one tier.
fn prices_line(p: &ModelPrices) -> String {
    ModelPrices::KEYS
        .iter()
        .zip(p.to_array())
        .map(|(k, v)| format!("{k}={}", format_usd(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tiers_lines(prefix: &str, t: &TierPrices) -> Vec<String> {
    let mut lines = vec![format!("  {prefix}standard: {}", prices_line(&t.standard))];
    for (name, tier) in [("flex", &t.flex), ("priority", &t.priority)] {
        lines.push(match tier {
            Some(p) => format!("  {prefix}{name}: {}", prices_line(p)),
            None => format!("  {prefix}{name}: (none: standard prices apply)"),
        });
    }
    lines
}

fn explain(table: &PriceTable, model: &str) -> Vec<String> {
    let m = table.lookup(model);
    let mut lines = vec![match m {
        PriceMatch::Known { name, source, .. } => {
            format!("{model}: entry \"{name}\" from the {}", source.name())
        }
        PriceMatch::Unknown(_) => format!(
            "{model}: unknown model: priced by `unknown_model`, counted in costguard.usage.unknown_model"
        ),
    }];
    let pricing = m.pricing();
    lines.extend(tiers_lines("", &pricing.base));
    if let Some(lc) = &pricing.long_context {
        let prefix = format!("above {} input tokens, ", lc.above_input_tokens);
        lines.extend(tiers_lines(&prefix, &lc.prices));
    }
    lines
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut catalog: Option<String> = None;
    let mut models: Vec<String> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
            "--catalog" | "--explain" => {
                let Some(value) = args.next() else {
                    eprintln!("{arg} needs a value\n{USAGE}");
                    std::process::exit(2);
                };
                if arg == "--catalog" {
                    catalog = Some(value);
                } else {
                    models.push(value);
                }
            }
            _ => paths.push(arg),
        }
    }
    if paths.is_empty() && catalog.is_none() && models.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let mut failed = false;
    let mut config = None;
    for path in &paths {
        match read(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Config::parse(&text).map_err(|e| e.to_string()))
        {
            Ok(c) => {
                println!(
                    "{path}: OK (session budget ${}, global ${} per {} s, {} priced models)",
                    format_usd(c.session.budget),
                    format_usd(c.global.budget),
                    c.global.window_s,
                    c.prices.model_count()
                );
                config = Some(c);
            }
            Err(e) => {
                failed = true;
                println!("{path}: {e}");
            }
        }
    }
    let config = match config {
        Some(c) => c,
        None => match Config::parse(b"") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("default configuration: {e}");
                std::process::exit(2);
            }
        },
    };
    let mut table = config.prices.clone();
    if let Some(path) = &catalog {
        match read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| read_catalog(&bytes).map_err(|e| format!("refused whole: {e}")))
        {
            Ok(read) => {
                for (name, why) in &read.invalid {
                    println!("{path}: left out {name}: {why}");
                }
                let layer = catalog_table(read);
                println!("{path}: OK ({} OpenAI models)", layer.len());
                table = table.with_catalog(Some(Arc::new(layer)));
            }
            Err(e) => {
                failed = true;
                println!("{path}: {e}");
            }
        }
    }
    for model in &models {
        for line in explain(&table, model) {
            println!("{line}");
        }
    }
    if failed {
        std::process::exit(1);
    }
}
