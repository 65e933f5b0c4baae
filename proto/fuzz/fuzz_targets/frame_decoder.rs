//! Arbitrary bytes as a socket stream through the incremental frame decoder,
//! in varying chunk sizes, and every whole frame's body decoded as its type.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ekv_proto::frame::fuzz_frame_decoder(data));
