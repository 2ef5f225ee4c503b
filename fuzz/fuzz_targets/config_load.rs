//! Fuzz the config loader: any bytes give a config or diagnostics, never a panic.
//! Run: `cargo install cargo-fuzz && cargo +nightly fuzz run config_load` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env = BTreeMap::new();
    let _ = nodepool::config::load_str(Path::new("fuzz.yaml"), &text, None, &env);
});
