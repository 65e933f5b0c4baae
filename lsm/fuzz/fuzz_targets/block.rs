//! Arbitrary bytes through every block decoder of the table format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ekv_lsm::table::fuzz_block(data));
