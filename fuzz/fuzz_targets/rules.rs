//! Fuzz target `rules`. pf.conf text: Ruleset::compile with two interfaces, evaluation of sample packets, canonical rule text round trip.
//! The body is `dpf_tests::fuzz_bodies::rules`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::rules(data);
});
