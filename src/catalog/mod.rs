//! The price catalog: LiteLLM's `model_prices_and_context_window.json`, the
//! field's maintained price database, read into costguard's prices.
//!
//! The file is a JSON object of ~5,000 entries (~3.5 MB), of which ~200 are
//! OpenAI's. [`CatalogReader`] is a push parser: it is fed the file in
//! chunks of any size, splits the top-level object into entries without
//! building it, holds at most one entry at a time (capped), and keeps only
//! the OpenAI models' prices. Prices are converted from their decimal text
//! (`"1.25e-06"` USD per token is exactly 1,250,000 µ$ per 1M tokens), never
//! through floating point.
//!
//! The same reader builds the generated built-in table (`make prices`) and
//! the live catalog fetched at run time (see [`sync`]).

pub mod sync;

use crate::money::{parse_decimal_units, DecimalError};
use crate::pricing::table::ModelTable;
use crate::pricing::{LongContext, ModelPricing, PriceEntry, TierPrices};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Largest catalog accepted (the real one is ~3.5 MB).
pub const MAX_CATALOG_BYTES: usize = 16 * 1024 * 1024;
/// Largest single entry read; larger ones are skipped (real ones are < 4 KB).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Longest entry name read; longer ones are skipped.
pub const MAX_NAME_BYTES: usize = 256;
/// Most OpenAI models kept from one catalog.
pub const MAX_MODELS: usize = 4096;
/// Per-token USD prices have 12 decimals of µ$ per 1M tokens: 1e-12 USD.
const PER_TOKEN_DECIMALS: u32 = 12;

/// Modes of the catalog whose models costguard prices (token-priced APIs).
const PRICED_MODES: [&str; 6] = [
    "chat",
    "responses",
    "embedding",
    "realtime",
    "audio_transcription",
    "audio_speech",
];

/// Why a whole catalog was refused (the last good table stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogError {
    /// Not a JSON object of entries.
    Syntax(u64),
    /// The file ended before its closing brace.
    Truncated,
    TooLarge,
    /// No OpenAI model could be read from it.
    NoModels,
    TooManyModels,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogError::Syntax(at) => write!(f, "not a JSON object of entries (byte {at})"),
            CatalogError::Truncated => write!(f, "truncated"),
            CatalogError::TooLarge => write!(f, "larger than {MAX_CATALOG_BYTES} bytes"),
            CatalogError::NoModels => write!(f, "no OpenAI model with token prices"),
            CatalogError::TooManyModels => write!(f, "more than {MAX_MODELS} OpenAI models"),
        }
    }
}

/// Why one entry was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySkip {
    /// Not an OpenAI model costguard prices (other provider, images, per-second…).
    NotPriced,
    /// An OpenAI entry whose prices cannot be used as they are.
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeRoot,
    /// Inside the root object: a key or `}`.
    ExpectKey,
    InKey {
        escaped: bool,
    },
    ExpectColon,
    ExpectValue,
    /// Inside an entry's value: `depth` counts open braces.
    InValue {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After a value: `,` or `}`.
    AfterValue,
    Done,
    Failed,
}

/// What reading a catalog produced.
#[derive(Debug, Default)]
pub struct CatalogRead {
    pub models: Vec<(String, ModelPricing)>,
    /// OpenAI entries left out, with why (for logs and `--explain`).
    pub invalid: Vec<(String, String)>,
    pub entries_seen: u64,
}

/// The push parser (see the module docs).
pub struct CatalogReader {
    state: State,
    name: Vec<u8>,
    name_overflow: bool,
    value: Vec<u8>,
    value_overflow: bool,
    fed: u64,
    error: Option<CatalogError>,
    read: CatalogRead,
}

impl Default for CatalogReader {
    fn default() -> Self {
        Self::new()
    }
}

impl CatalogReader {
    pub fn new() -> Self {
        CatalogReader {
            state: State::BeforeRoot,
            name: Vec::new(),
            name_overflow: false,
            value: Vec::new(),
            value_overflow: false,
            fed: 0,
            error: None,
            read: CatalogRead::default(),
        }
    }

    fn fail(&mut self, error: CatalogError) {
        self.state = State::Failed;
        self.error.get_or_insert(error);
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.fed.saturating_add(chunk.len() as u64) > MAX_CATALOG_BYTES as u64 {
            self.fail(CatalogError::TooLarge);
        }
        let mut i = 0;
        while i < chunk.len() {
            let Some(&b) = chunk.get(i) else { break };
            let at = self.fed + i as u64;
            match self.state {
                State::Done | State::Failed => {
                    if self.state == State::Done && !b.is_ascii_whitespace() {
                        self.fail(CatalogError::Syntax(at));
                    }
                    if self.state == State::Failed {
                        break;
                    }
                }
                State::BeforeRoot => match b {
                    b'{' => self.state = State::ExpectKey,
                    b if b.is_ascii_whitespace() => {}
                    // A UTF-8 byte-order mark.
                    0xEF | 0xBB | 0xBF if at < 3 => {}
                    _ => self.fail(CatalogError::Syntax(at)),
                },
                State::ExpectKey => match b {
                    b'"' => {
                        self.name.clear();
                        self.name_overflow = false;
                        self.state = State::InKey { escaped: false };
                    }
                    b'}' if self.read.entries_seen == 0 => self.state = State::Done,
                    b if b.is_ascii_whitespace() => {}
                    _ => self.fail(CatalogError::Syntax(at)),
                },
                State::InKey { escaped } => {
                    if !escaped && b == b'"' {
                        self.state = State::ExpectColon;
                    } else {
                        if self.name.len() < MAX_NAME_BYTES {
                            self.name.push(b);
                        } else {
                            self.name_overflow = true;
                        }
                        self.state = State::InKey {
                            escaped: !escaped && b == b'\\',
                        };
                    }
                }
                State::ExpectColon => match b {
                    b':' => {
                        self.value.clear();
                        self.value_overflow = false;
                        self.state = State::ExpectValue;
                    }
                    b if b.is_ascii_whitespace() => {}
                    _ => self.fail(CatalogError::Syntax(at)),
                },
                State::ExpectValue => match b {
                    b'{' => {
                        self.value.push(b);
                        self.state = State::InValue {
                            depth: 1,
                            in_string: false,
                            escaped: false,
                        };
                    }
                    b if b.is_ascii_whitespace() => {}
                    // Entries are objects; anything else is not a catalog.
                    _ => self.fail(CatalogError::Syntax(at)),
                },
                State::InValue {
                    depth,
                    in_string,
                    escaped,
                } => {
                    // Jump to the next byte that matters.
                    let rest = chunk.get(i..).unwrap_or(&[]);
                    let skip = if in_string {
                        if escaped {
                            0
                        } else {
                            memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len())
                        }
                    } else {
                        memchr::memchr3(b'"', b'{', b'}', rest).unwrap_or(rest.len())
                    };
                    self.capture(rest.get(..skip).unwrap_or(&[]));
                    i += skip;
                    let Some(&b) = chunk.get(i) else { break };
                    self.capture(&[b]);
                    self.state = if in_string {
                        State::InValue {
                            depth,
                            in_string: escaped || b != b'"',
                            escaped: !escaped && b == b'\\',
                        }
                    } else {
                        match b {
                            b'"' => State::InValue {
                                depth,
                                in_string: true,
                                escaped: false,
                            },
                            b'{' => State::InValue {
                                depth: depth + 1,
                                in_string: false,
                                escaped: false,
                            },
                            _ if depth > 1 => State::InValue {
                                depth: depth - 1,
                                in_string: false,
                                escaped: false,
                            },
                            _ => {
                                self.end_entry();
                                State::AfterValue
                            }
                        }
                    };
                    if self.state == State::AfterValue && self.error.is_some() {
                        self.state = State::Failed;
                    }
                }
                State::AfterValue => match b {
                    b',' => self.state = State::ExpectKey,
                    b'}' => self.state = State::Done,
                    b if b.is_ascii_whitespace() => {}
                    _ => self.fail(CatalogError::Syntax(at)),
                },
            }
            i += 1;
        }
        self.fed = self.fed.saturating_add(chunk.len() as u64);
    }

    fn capture(&mut self, bytes: &[u8]) {
        if self.value_overflow {
            return;
        }
        if self.value.len() + bytes.len() > MAX_ENTRY_BYTES {
            self.value_overflow = true;
            self.value = Vec::new();
        } else {
            self.value.extend_from_slice(bytes);
        }
    }

    fn end_entry(&mut self) {
        self.read.entries_seen += 1;
        if self.value_overflow || self.name_overflow {
            return;
        }
        // Cheap filter first: most entries are other providers'.
        if !self.value.windows(8).any(|w| w == b"\"openai\"") {
            return;
        }
        let Ok(name) = serde_json::from_slice::<String>(&[b"\"", &self.name[..], b"\""].concat())
        else {
            return;
        };
        match entry_pricing(&name, &self.value) {
            Ok(pricing) => {
                if self.read.models.len() >= MAX_MODELS {
                    self.fail(CatalogError::TooManyModels);
                    return;
                }
                self.read.models.push((name, pricing));
            }
            Err(EntrySkip::NotPriced) => {}
            Err(EntrySkip::Invalid(why)) => {
                if self.read.invalid.len() < MAX_MODELS {
                    self.read.invalid.push((name, why));
                }
            }
        }
    }

    /// The catalog's OpenAI models, or why the whole file is refused.
    pub fn finish(self) -> Result<CatalogRead, CatalogError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.state != State::Done {
            return Err(CatalogError::Truncated);
        }
        if self.read.models.is_empty() {
            return Err(CatalogError::NoModels);
        }
        Ok(self.read)
    }
}

/// A price-table layer shared between VMs' tables.
pub type ModelTableRef = std::sync::Arc<ModelTable>;

/// Reads a whole catalog held in memory.
pub fn read_catalog(bytes: &[u8]) -> Result<CatalogRead, CatalogError> {
    let mut reader = CatalogReader::new();
    reader.feed(bytes);
    reader.finish()
}

/// The catalog's OpenAI models as a price-table layer.
pub fn catalog_table(read: CatalogRead) -> ModelTable {
    ModelTable::folded(read.models)
}

/// One catalog entry (a JSON object) → its prices, if it is an OpenAI
/// model priced per token.
pub fn entry_pricing(name: &str, entry: &[u8]) -> Result<ModelPricing, EntrySkip> {
    let fields: BTreeMap<String, &RawValue> = serde_json::from_slice(entry)
        .map_err(|e| EntrySkip::Invalid(format!("not a JSON object: {e}")))?;
    let text = |key: &str| -> Option<String> {
        fields
            .get(key)
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    };
    if text("litellm_provider").as_deref() != Some("openai") || name.contains('/') {
        return Err(EntrySkip::NotPriced);
    }
    let mode = text("mode").unwrap_or_default();
    if !PRICED_MODES.contains(&mode.as_str()) || !fields.contains_key("input_cost_per_token") {
        return Err(EntrySkip::NotPriced);
    }
    let prices = |suffix: &str| price_set(&fields, suffix);
    let tiers = |suffix: &str| -> Result<Option<TierPrices>, EntrySkip> {
        let Some(standard) = prices(suffix)? else {
            return Ok(None);
        };
        Ok(Some(TierPrices {
            standard,
            flex: prices(&format!("{suffix}_flex"))?,
            priority: prices(&format!("{suffix}_priority"))?,
        }))
    };
    let Some(base) = tiers("")? else {
        return Err(EntrySkip::NotPriced);
    };
    let needs_output = matches!(mode.as_str(), "chat" | "responses" | "realtime");
    if needs_output && !fields.contains_key("output_cost_per_token") {
        return Err(EntrySkip::Invalid("no output_cost_per_token".into()));
    }
    let long_context = match long_context_threshold(&fields)? {
        None => None,
        Some(k) => {
            let suffix = format!("_above_{k}k_tokens");
            tiers(&suffix)?.map(|prices| LongContext {
                above_input_tokens: k * 1000,
                prices,
            })
        }
    };
    Ok(ModelPricing { base, long_context })
}

/// Where one catalog price goes in a [`PriceEntry`].
type PriceSlot = fn(&mut PriceEntry) -> &mut Option<u64>;

/// Catalog key stems for each price, in [`PriceEntry`] order.
const PRICE_KEYS: [(&str, PriceSlot); 8] = [
    ("input_cost_per_token", |e| &mut e.input),
    ("cache_read_input_token_cost", |e| &mut e.cached_input),
    ("output_cost_per_token", |e| &mut e.output),
    ("input_cost_per_audio_token", |e| &mut e.audio_input),
    ("cache_read_input_audio_token_cost", |e| {
        &mut e.cached_audio_input
    }),
    ("output_cost_per_audio_token", |e| &mut e.audio_output),
    ("input_cost_per_image_token", |e| &mut e.image_input),
    ("cache_read_input_image_token_cost", |e| {
        &mut e.cached_image_input
    }),
];

/// The catalog key of one price: `input_cost_per_token` + `_above_272k_tokens` + `_flex`.
fn catalog_key(stem: &str, suffix: &str) -> String {
    format!("{stem}{suffix}")
}

/// One set of prices (a tier): None when it has no input price.
fn price_set(
    fields: &BTreeMap<String, &RawValue>,
    suffix: &str,
) -> Result<Option<crate::pricing::ModelPrices>, EntrySkip> {
    let mut entry = PriceEntry::default();
    for (stem, slot) in PRICE_KEYS {
        let key = catalog_key(stem, suffix);
        let Some(raw) = fields.get(&key) else {
            continue;
        };
        let text = raw.get().trim();
        if text == "null" {
            continue;
        }
        let units = per_token_usd_to_units(text)
            .map_err(|e| EntrySkip::Invalid(format!("`{key}`: {text} {e}")))?;
        *slot(&mut entry) = Some(units);
    }
    Ok(entry.input.is_some().then(|| entry.resolve()))
}

/// A per-token USD price (a JSON number's text) → µ$ per 1M tokens, exactly.
pub fn per_token_usd_to_units(text: &str) -> Result<u64, DecimalError> {
    if text.starts_with('"') {
        return Err(DecimalError::NotANumber);
    }
    parse_decimal_units(text, PER_TOKEN_DECIMALS)
}

/// The long-context threshold in thousands of tokens, from
/// `input_cost_per_token_above_<N>k_tokens`.
fn long_context_threshold(fields: &BTreeMap<String, &RawValue>) -> Result<Option<u64>, EntrySkip> {
    let mut found: Option<u64> = None;
    for key in fields.keys() {
        let Some(k) = key
            .strip_prefix("input_cost_per_token_above_")
            .and_then(|r| r.strip_suffix("k_tokens"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if found.is_some_and(|f| f != k) {
            return Err(EntrySkip::Invalid("several long-context thresholds".into()));
        }
        found = Some(k);
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
