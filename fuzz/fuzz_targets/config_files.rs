//! The configuration loader: three arbitrary files (split from the input at NUL bytes)
//! give a config or errors with positions, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_shared::config::{ConfigSources, load_strs};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let (tessera, world, balance) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let sources = ConfigSources::new(tessera, world, balance);
    if let Err(errors) = load_strs(&sources, Vec::new()) {
        assert!(!errors.0.is_empty());
    }
});
