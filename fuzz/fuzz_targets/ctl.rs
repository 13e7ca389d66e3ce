//! Fuzz target `ctl`. One control-socket request line: ctl::parse_request (round trip through serialisation).
//! The body is `dpf_tests::fuzz_bodies::ctl`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::ctl(data);
});
