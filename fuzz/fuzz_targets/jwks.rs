#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jwt_filter_fuzz_harness::jwks(data));
