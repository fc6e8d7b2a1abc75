//! The bytes nodes read from Redis: handoff mail and ghost updates (the first byte picks
//! which). Decoding never panics, and whatever decodes re-encodes to bytes that decode to
//! the same thing (compared as bytes: a handoff may carry NaN, which the region refuses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_cluster::wire::{decode_ghosts, decode_handoff, encode_ghosts, encode_handoff};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Some(record) = decode_handoff(bytes) {
            let encoded = encode_handoff(&record);
            let again = decode_handoff(&encoded).expect("a re-encoded handoff decodes");
            assert_eq!(encode_handoff(&again), encoded);
        }
    } else if let Some(views) = decode_ghosts(bytes) {
        let again = decode_ghosts(&encode_ghosts(&views)).expect("re-encoded ghosts decode");
        assert_eq!(again, views);
    }
});
