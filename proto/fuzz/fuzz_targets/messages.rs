//! Arbitrary bytes decoded as the body of every message type; whatever
//! decodes must survive a re-encode and decode unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ekv_proto::msg::fuzz_decode_all(data));
