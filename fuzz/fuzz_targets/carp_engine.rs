//! Fuzz target `carp_engine`. The CARP engine (carp::engine::Carp: section 2.5 validation and the VHID state machines) fed frames and keyed adverts, with clock steps, link changes and demotion.
//! The body is `dpf_tests::fuzz_bodies::carp_engine`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::carp_engine(data);
});
