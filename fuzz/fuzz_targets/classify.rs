//! Fuzz target `classify`. One Ethernet frame: wire::classify, every layer's new_checked + Repr::parse (round trips), the reply builders.
//! The body is `dpf_tests::fuzz_bodies::classify`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::classify(data);
});
