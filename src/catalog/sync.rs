//! The live catalog across an Envoy process: one VM fetches, every VM
//! picks up the result.
//!
//! Shared data holds a small `meta` record (version, when the last good
//! fetch was, when the next is due, a fetch lease) and the parsed table
//! (`table`: version, source, the models as compact JSON). On its tick each
//! VM reads `meta` once; when a fetch is due and nobody holds the lease, it
//! takes the lease with a compare-and-swap and fetches. The fetcher parses
//! the file and publishes the table, then `meta`; a VM that sees a new
//! version reads the table and swaps its prices. So the file is fetched and
//! parsed once per process, and every VM moves to the same version.
//! A failed fetch or parse keeps the last good table and is retried after
//! [`retry_ms`].

use crate::pricing::table::ModelTable;
use crate::pricing::{LongContext, ModelPrices, ModelPricing, TierPrices};
use crate::store::{read_u64s, update, write_u64s, Record, Store, StoreError};

pub const KEY_META: &str = "costguard/v1/catalog/meta";
pub const KEY_TABLE: &str = "costguard/v1/catalog/table";
/// A fetch lease outlives the fetch's timeout by this much; a VM that
/// vanished mid-fetch loses it then.
const LEASE_SLACK_MS: u64 = 5_000;
/// A failed fetch is retried after this long (or `refresh_s`, if shorter).
const RETRY_MS: u64 = 30_000;

/// Which catalog (cluster, authority, path) the record describes: a changed
/// configuration fetches anew and never uses another source's table.
pub fn source_id(cluster: &str, authority: &str, path: &str) -> u64 {
    // FNV-1a: stable across VMs and builds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [cluster, "\n", authority, "\n", path].concat().bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// When to retry after a failed fetch.
pub fn retry_ms(refresh_ms: u64) -> u64 {
    refresh_ms.min(RETRY_MS)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogMeta {
    pub source: u64,
    /// Published table version (0: none yet).
    pub version: u64,
    pub last_good_ms: u64,
    pub next_fetch_ms: u64,
    pub lease_until_ms: u64,
    /// When this source was first wanted (the age before any good fetch).
    pub since_ms: u64,
}

impl Record for CatalogMeta {
    fn encode(&self) -> crate::store::Encoded {
        write_u64s(
            &[],
            &[
                self.source,
                self.version,
                self.last_good_ms,
                self.next_fetch_ms,
                self.lease_until_ms,
                self.since_ms,
            ],
        )
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let [source, version, last_good_ms, next_fetch_ms, lease_until_ms, since_ms] =
            read_u64s::<6>(bytes)?;
        Some(CatalogMeta {
            source,
            version,
            last_good_ms,
            next_fetch_ms,
            lease_until_ms,
            since_ms,
        })
    }
}

impl CatalogMeta {
    /// Seconds since the last good fetch (since the source was first wanted,
    /// before any).
    pub fn age_s(&self, now_ms: u64) -> u64 {
        let since = if self.version > 0 {
            self.last_good_ms
        } else {
            self.since_ms
        };
        now_ms.saturating_sub(since) / 1000
    }
}

/// What a VM should do after its tick's look at the catalog.
#[derive(Debug, Default)]
pub struct Poll {
    pub meta: CatalogMeta,
    /// A newer table than the VM's: (version, table).
    pub table: Option<(u64, ModelTable)>,
    /// This VM took the lease: it must fetch now.
    pub fetch: bool,
}

fn meta_for(current: Option<&CatalogMeta>, source: u64, now_ms: u64) -> CatalogMeta {
    match current {
        Some(m) if m.source == source => *m,
        // First use, or another source: start afresh, fetch at once.
        _ => CatalogMeta {
            source,
            since_ms: now_ms,
            ..CatalogMeta::default()
        },
    }
}

/// One VM's tick: reads `meta`, takes the lease when a fetch is due (and
/// `may_fetch`), and reads the table when it is newer than `have_version`.
pub fn poll<S: Store + ?Sized>(
    store: &S,
    source: u64,
    have_version: u64,
    timeout_ms: u64,
    now_ms: u64,
    may_fetch: bool,
) -> Result<Poll, StoreError> {
    let mut fetch = false;
    let (before, after) = update::<S, CatalogMeta>(store, KEY_META, |current| {
        let mut m = meta_for(current, source, now_ms);
        fetch = may_fetch && now_ms >= m.next_fetch_ms && now_ms >= m.lease_until_ms;
        if fetch {
            m.lease_until_ms = now_ms + timeout_ms + LEASE_SLACK_MS;
        }
        (current != Some(&m)).then_some(m)
    })?;
    let meta = after.or(before).unwrap_or_default();
    let table = if meta.version != have_version && meta.version > 0 {
        read_table(store, &meta)?
    } else {
        None
    };
    Ok(Poll { meta, table, fetch })
}

fn read_table<S: Store + ?Sized>(
    store: &S,
    meta: &CatalogMeta,
) -> Result<Option<(u64, ModelTable)>, StoreError> {
    let Some((bytes, _)) = store.get(KEY_TABLE)? else {
        return Ok(None);
    };
    Ok(decode_table(&bytes)
        .filter(|(source, version, _)| *source == meta.source && *version > 0)
        .map(|(_, version, models)| (version, ModelTable::exact(models))))
}

/// The fetch succeeded: publish the table, then the new version. None when
/// the process has moved on to another source meanwhile (a reconfiguration).
pub fn publish<S: Store + ?Sized>(
    store: &S,
    source: u64,
    table: &ModelTable,
    refresh_ms: u64,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let current = store
        .get(KEY_META)?
        .and_then(|(b, _)| CatalogMeta::decode(&b));
    if current.is_some_and(|m| m.source != source) {
        return Ok(None);
    }
    let version = current.map_or(0, |m| m.version) + 1;
    let cas = store.get(KEY_TABLE)?.map_or(0, |(_, cas)| cas);
    store.set(KEY_TABLE, &encode_table(source, version, table), cas)?;
    update::<S, CatalogMeta>(store, KEY_META, |current| {
        let mut m = meta_for(current, source, now_ms);
        m.version = m.version.max(version);
        m.last_good_ms = now_ms;
        m.next_fetch_ms = now_ms + refresh_ms;
        m.lease_until_ms = 0;
        Some(m)
    })?;
    Ok(Some(version))
}

/// The fetch or its parse failed: keep the table, retry later.
pub fn fetch_failed<S: Store + ?Sized>(
    store: &S,
    source: u64,
    refresh_ms: u64,
    now_ms: u64,
) -> Result<(), StoreError> {
    update::<S, CatalogMeta>(store, KEY_META, |current| {
        let mut m = meta_for(current, source, now_ms);
        m.next_fetch_ms = now_ms + retry_ms(refresh_ms);
        m.lease_until_ms = 0;
        Some(m)
    })?;
    Ok(())
}

/// Flags of the optional price sets of a model, in encoding order.
const HAS_FLEX: u8 = 1;
const HAS_PRIORITY: u8 = 2;
const HAS_LONG: u8 = 4;
const HAS_LONG_FLEX: u8 = 8;
const HAS_LONG_PRIORITY: u8 = 16;

fn put_prices(out: &mut Vec<u8>, p: &ModelPrices) {
    for v in p.to_array() {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The table in shared data: source, version, model count, then per model its name,
/// which price sets it has, the long-context threshold and the sets' prices
/// (8 little-endian u64 each).
fn encode_table(source: u64, version: u64, table: &ModelTable) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + table.len() * 160);
    out.extend_from_slice(&source.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    let models: Vec<_> = table
        .sorted()
        .into_iter()
        .filter_map(|(name, m)| Some((u16::try_from(name.len()).ok()?, name, m)))
        .collect();
    out.extend_from_slice(&(models.len() as u64).to_le_bytes());
    for (len, name, m) in models {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let lc = m.long_context.as_ref();
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        out.push(
            flag(m.base.flex.is_some(), HAS_FLEX)
                | flag(m.base.priority.is_some(), HAS_PRIORITY)
                | flag(lc.is_some(), HAS_LONG)
                | flag(lc.is_some_and(|l| l.prices.flex.is_some()), HAS_LONG_FLEX)
                | flag(
                    lc.is_some_and(|l| l.prices.priority.is_some()),
                    HAS_LONG_PRIORITY,
                ),
        );
        put_prices(&mut out, &m.base.standard);
        for p in [&m.base.flex, &m.base.priority].into_iter().flatten() {
            put_prices(&mut out, p);
        }
        if let Some(lc) = lc {
            out.extend_from_slice(&lc.above_input_tokens.to_le_bytes());
            put_prices(&mut out, &lc.prices.standard);
            for p in [&lc.prices.flex, &lc.prices.priority].into_iter().flatten() {
                put_prices(&mut out, p);
            }
        }
    }
    out
}

/// Reads what [`encode_table`] wrote; None for anything else.
struct Decoder<'a> {
    bytes: &'a [u8],
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn prices(&mut self) -> Option<ModelPrices> {
        let mut v = [0u64; 8];
        for slot in &mut v {
            *slot = self.u64()?;
        }
        Some(ModelPrices::from_array(v))
    }
    fn optional(&mut self, present: bool) -> Option<Option<ModelPrices>> {
        if present {
            self.prices().map(Some)
        } else {
            Some(None)
        }
    }
}

/// A published table: (source, version, models).
type Published = (u64, u64, Vec<(String, ModelPricing)>);

fn decode_table(bytes: &[u8]) -> Option<Published> {
    let mut d = Decoder { bytes };
    let source = d.u64()?;
    let version = d.u64()?;
    let count = d.u64()?;
    let mut models = Vec::new();
    for _ in 0..count {
        let len = u16::from_le_bytes(d.take(2)?.try_into().ok()?);
        let name = String::from_utf8(d.take(usize::from(len))?.to_vec()).ok()?;
        let flags = *d.take(1)?.first()?;
        let base = TierPrices {
            standard: d.prices()?,
            flex: d.optional(flags & HAS_FLEX != 0)?,
            priority: d.optional(flags & HAS_PRIORITY != 0)?,
        };
        let long_context = if flags & HAS_LONG != 0 {
            Some(LongContext {
                above_input_tokens: d.u64()?,
                prices: TierPrices {
                    standard: d.prices()?,
                    flex: d.optional(flags & HAS_LONG_FLEX != 0)?,
                    priority: d.optional(flags & HAS_LONG_PRIORITY != 0)?,
                },
            })
        } else {
            None
        };
        models.push((name, ModelPricing { base, long_context }));
    }
    d.bytes.is_empty().then_some((source, version, models))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{ModelPrices, PriceEntry};
    use crate::store::mem::MemStore;

    fn table(input: u64) -> ModelTable {
        let prices: ModelPrices = PriceEntry {
            input: Some(input),
            output: Some(2 * input),
            ..PriceEntry::default()
        }
        .resolve();
        ModelTable::exact([("gpt-5.5".to_string(), ModelPricing::flat(prices))])
    }

    fn input_of(t: &ModelTable) -> u64 {
        t.get("gpt-5.5").unwrap().1.base.standard.input
    }

    #[test]
    fn one_vm_fetches_every_vm_picks_it_up() {
        let store = MemStore::default();
        let src = source_id("prices", "prices.internal", "/model_prices.json");
        let a = poll(&store, src, 0, 5_000, 1_000, true).unwrap();
        assert!(a.fetch && a.table.is_none());
        // Another VM while the lease is held: no second fetch.
        let b = poll(&store, src, 0, 5_000, 1_500, true).unwrap();
        assert!(!b.fetch && b.table.is_none());
        assert_eq!(
            b.meta.age_s(3_000),
            2,
            "age counts from when it was first wanted"
        );
        let v = publish(&store, src, &table(5_000_000), 3_600_000, 2_000).unwrap();
        assert_eq!(v, Some(1));
        let b = poll(&store, src, 0, 5_000, 2_100, true).unwrap();
        let (version, t) = b.table.unwrap();
        assert_eq!((version, input_of(&t)), (1, 5_000_000));
        assert!(!b.fetch);
        assert_eq!(b.meta.age_s(12_000), 10);
        // Up to date: nothing to read.
        assert!(poll(&store, src, 1, 5_000, 2_200, true)
            .unwrap()
            .table
            .is_none());
        // Due again after refresh.
        assert!(poll(&store, src, 1, 5_000, 3_602_000, true).unwrap().fetch);
        publish(&store, src, &table(7_000_000), 3_600_000, 3_603_000).unwrap();
        let (version, t) = poll(&store, src, 1, 5_000, 3_604_000, true)
            .unwrap()
            .table
            .unwrap();
        assert_eq!((version, input_of(&t)), (2, 7_000_000));
    }

    #[test]
    fn the_shared_encoding_round_trips_every_shape() {
        let p = |n: u64| ModelPrices {
            input: n,
            cached_input: n + 1,
            output: n + 2,
            audio_input: n + 3,
            cached_audio_input: n + 4,
            audio_output: n + 5,
            image_input: n + 6,
            cached_image_input: u64::MAX - n,
        };
        let mut models = Vec::new();
        for shape in 0u8..32 {
            let set = |bit: u8, n| (shape & bit != 0).then(|| p(n));
            let long_context = (shape & HAS_LONG != 0).then(|| LongContext {
                above_input_tokens: 272_000 + u64::from(shape),
                prices: TierPrices {
                    standard: p(40),
                    flex: set(HAS_LONG_FLEX, 50),
                    priority: set(HAS_LONG_PRIORITY, 60),
                },
            });
            let pricing = ModelPricing {
                base: TierPrices {
                    standard: p(10),
                    flex: set(HAS_FLEX, 20),
                    priority: set(HAS_PRIORITY, 30),
                },
                long_context,
            };
            models.push((format!("m-{shape:02}-é"), pricing));
        }
        let table = ModelTable::exact(models.clone());
        let bytes = encode_table(7, 9, &table);
        let (source, version, decoded) = decode_table(&bytes).unwrap();
        assert_eq!((source, version), (7, 9));
        assert_eq!(ModelTable::exact(decoded), table);
        // Every truncation, and trailing bytes, are refused, never misread.
        for cut in 0..bytes.len() {
            assert!(decode_table(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert!(decode_table(&[&bytes[..], b"x"].concat()).is_none());
    }

    #[test]
    fn failures_keep_the_table_and_retry() {
        let store = MemStore::default();
        let src = source_id("c", "a", "/p");
        assert!(poll(&store, src, 0, 1_000, 0, true).unwrap().fetch);
        publish(&store, src, &table(1), 10_000, 0).unwrap();
        assert!(poll(&store, src, 1, 1_000, 10_000, true).unwrap().fetch);
        fetch_failed(&store, src, 10_000, 10_500).unwrap();
        let p = poll(&store, src, 1, 1_000, 11_000, true).unwrap();
        assert!(!p.fetch && p.table.is_none(), "the last good table stays");
        assert_eq!(p.meta.version, 1);
        assert!(
            poll(&store, src, 1, 1_000, 20_500, true).unwrap().fetch,
            "retried"
        );
        // A lease whose holder vanished expires.
        assert!(!poll(&store, src, 1, 1_000, 21_000, true).unwrap().fetch);
        assert!(
            poll(&store, src, 1, 1_000, 20_500 + 6_000, true)
                .unwrap()
                .fetch
        );
    }

    #[test]
    fn another_source_never_uses_the_old_table() {
        let store = MemStore::default();
        let old = source_id("c", "a", "/old");
        let new = source_id("c", "a", "/new");
        assert_ne!(old, new);
        poll(&store, old, 0, 1_000, 0, true).unwrap();
        publish(&store, old, &table(1), 60_000, 0).unwrap();
        let p = poll(&store, new, 0, 1_000, 100, true).unwrap();
        assert!(p.fetch && p.table.is_none());
        assert_eq!(p.meta.version, 0);
        // The old source's fetch, finishing late, does not take over.
        assert_eq!(publish(&store, old, &table(2), 60_000, 200).unwrap(), None);
        assert_eq!(
            poll(&store, new, 0, 1_000, 300, false).unwrap().meta.source,
            new
        );
    }
}
