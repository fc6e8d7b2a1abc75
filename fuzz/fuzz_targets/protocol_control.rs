//! Control-stream decoders: the frame header and both message directions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_shared::protocol::codec::{FRAME_HEADER_BYTES, decode_frame_body, frame_body_len};
use tessera_shared::protocol::messages::{ControlC2s, ControlS2c};

fuzz_target!(|data: &[u8]| {
    if data.len() >= FRAME_HEADER_BYTES {
        let header = [data[0], data[1], data[2], data[3]];
        if let Ok(len) = frame_body_len(header) {
            let body = &data[FRAME_HEADER_BYTES..];
            let body = &body[..body.len().min(len)];
            let _ = decode_frame_body::<ControlC2s>(body);
            let _ = decode_frame_body::<ControlS2c>(body);
        }
    }
    let _ = decode_frame_body::<ControlC2s>(data);
    let _ = decode_frame_body::<ControlS2c>(data);
});
