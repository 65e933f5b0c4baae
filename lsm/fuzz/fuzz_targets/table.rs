//! Arbitrary bytes opened, scanned and searched as a whole table file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ekv_lsm::table::fuzz_table(data));
