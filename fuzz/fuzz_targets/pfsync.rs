//! Fuzz target `pfsync`. A pfsync frame: the §1.1 receive checks, the §2.3 walker over every message (round trips), re-packing.
//! The body is `dpf_tests::fuzz_bodies::pfsync`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::pfsync(data);
});
