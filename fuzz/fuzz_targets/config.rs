//! Fuzz target `config`. dpf.toml text: Config::parse.
//! The body is `dpf_tests::fuzz_bodies::config`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::config(data);
});
