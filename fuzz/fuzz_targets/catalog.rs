#![no_main]
//! Price catalogs in arbitrary chunks: never a panic, and the result never
//! depends on how the file was cut.
use costguard::catalog::{read_catalog, CatalogReader};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(4));
    let mut reader = CatalogReader::new();
    for chunk in common::chunks(body, sizes) {
        reader.feed(chunk);
    }
    let split = reader.finish();
    let whole = read_catalog(body);
    match (split, whole) {
        (Ok(a), Ok(b)) => assert_eq!(a.models, b.models),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("split {a:?} vs whole {b:?}"),
    }
});
