//! Datagram decoders (both directions): any bytes give a message or a typed error; an
//! accepted message survives a re-encode and decode unchanged. (Not byte-identical: bincode
//! accepts non-shortest varints, PROTOCOL.md section 2.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_shared::protocol::codec::{decode_datagram, encode_datagram};
use tessera_shared::protocol::messages::{InputC2s, StateS2c};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_datagram::<InputC2s>(data) {
        let again = encode_datagram(&msg).unwrap();
        assert!(again.len() <= data.len());
        assert_eq!(decode_datagram::<InputC2s>(&again).unwrap(), msg);
    }
    if let Ok(msg) = decode_datagram::<StateS2c>(data) {
        let again = encode_datagram(&msg).unwrap();
        assert!(again.len() <= data.len());
        assert_eq!(decode_datagram::<StateS2c>(&again).unwrap(), msg);
    }
});
