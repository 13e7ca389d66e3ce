//! Fuzz target `carp`. A CARP frame or header: parse_frame, Packet/Repr (round trip), the spec §2.5 validation pipeline.
//! The body is `dpf_tests::fuzz_bodies::carp`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::carp(data);
});
