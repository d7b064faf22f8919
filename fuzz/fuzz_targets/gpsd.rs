#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livecam_fuzz::gpsd(data));
