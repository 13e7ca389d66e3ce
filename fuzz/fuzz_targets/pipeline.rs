//! Fuzz target `pipeline`. Bursts of frames through Pipeline::process_burst with the state table carried across bursts (wire/router mode, lookahead on/off, one or two workers), answers to earlier frames, clock steps with expiry.
//! The body is `dpf_tests::fuzz_bodies::pipeline`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::pipeline(data);
});
