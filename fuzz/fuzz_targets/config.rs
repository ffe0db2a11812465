#![no_main]
//! Plugin configuration text: accepted or rejected with a message, never a panic.
use costguard::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Config::parse(data) {
        assert!(!e.to_string().is_empty());
    }
});
