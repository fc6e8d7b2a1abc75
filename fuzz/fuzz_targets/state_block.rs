//! The hand-packed state block, decoded against a baseline built from the first bytes:
//! never panics, and an accepted block yields a sorted, duplicate-free snapshot that
//! re-encodes to a block decoding to the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_shared::ids::NetId;
use tessera_shared::protocol::delta::{WireEntity, decode_block, encode_block};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 64);
    let baseline: Vec<WireEntity> = (0..n)
        .map(|i| WireEntity {
            id: NetId(i as u64 * 3 + 1),
            archetype: (i % 4) as u16,
            position: [i as i32 * 7, -(i as i32)],
            health: i as u32 * 10,
        })
        .collect();
    let mut out = Vec::new();
    if decode_block(&baseline, rest, &mut out).is_ok() {
        assert!(out.windows(2).all(|w| w[0].id < w[1].id));
        let mut block = Vec::new();
        encode_block(&baseline, &out, &mut block);
        let mut again = Vec::new();
        decode_block(&baseline, &block, &mut again).unwrap();
        assert_eq!(again, out);
    }
});
