//! Fuzz target: any bytes through the parser; it must return diagnostics, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lossc::syntax::parse(text);
    }
});
