//! The core's vector code (`string_end`'s block masks and first-stop lane, `common_prefix`'s lanes and the UTF-8
//! validator's ASCII blocks: Wasm SIMD in the filter's build, SSE2 or words
//! in native tests) checked against a byte-by-byte reading, compiled as the
//! filter is (wasm32-wasip1 with `simd128`) and run in V8 by `make
//! wasm-check` (`run.mjs`): the native unit tests cannot reach the Wasm
//! code path.

fn main() {
    match costguard::string_end::check_sweep() {
        Ok(checked) => println!("string_end: {checked} texts, each as a bytewise reading ends it"),
        Err(difference) => {
            eprintln!("string_end differs from a bytewise reading: {difference}");
            std::process::exit(1);
        }
    }
    match costguard::common_prefix::check_sweep() {
        Ok(checked) => {
            println!("common_prefix: {checked} pairs, each as a bytewise reading compares them")
        }
        Err(difference) => {
            eprintln!("common_prefix differs from a bytewise reading: {difference}");
            std::process::exit(1);
        }
    }
    match costguard::utf8::check_sweep() {
        Ok(checked) => println!("utf8: {checked} texts, each as the standard library reads it"),
        Err(difference) => {
            eprintln!("UTF-8 validation differs from the standard library: {difference}");
            std::process::exit(1);
        }
    }
}
