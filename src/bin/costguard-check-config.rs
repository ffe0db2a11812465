//! costguard-check-config: validates costguard plugin configurations (JSON)
//! exactly as the filter does at load, without Envoy.
//!
//!   costguard-check-config FILE...   (or - for standard input)
//!
//! Prints one line per input and exits 1 if any is rejected.

use costguard::config::Config;
use costguard::money::format_usd;
use std::io::Read;

fn read(path: &str) -> std::io::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() || paths.iter().any(|p| p == "-h" || p == "--help") {
        eprintln!("usage: costguard-check-config FILE... (JSON plugin configuration; - for stdin)");
        std::process::exit(2);
    }
    let mut failed = false;
    for path in &paths {
        match read(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Config::parse(&text).map_err(|e| e.to_string()))
        {
            Ok(c) => println!(
                "{path}: OK (session budget ${}, global ${} per {} s, {} priced models)",
                format_usd(c.session.budget),
                format_usd(c.global.budget),
                c.global.window_s,
                c.prices.model_names().count()
            ),
            Err(e) => {
                failed = true;
                println!("{path}: {e}");
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
