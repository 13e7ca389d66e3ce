//! Fuzz target `slowpath`. A program of frames on any port, next-hop resolutions, clock steps and VIP ownership changes for the router-mode slow path (SlowPath::handle / resolve / poll).
//! The body is `dpf_tests::fuzz_bodies::slowpath`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::slowpath(data);
});
