//! Fuzz target `import_records`. Arbitrary pfsync import records through a pipeline's import ring (set_sync, sync_poll), interleaved with packets of the imported states and expiry.
//! The body is `dpf_tests::fuzz_bodies::import_records`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::import_records(data);
});
