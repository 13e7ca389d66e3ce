//! Fuzz target `pfsync_import`. Received pfsync frames through pfsync::engine::Sync::handle into two workers' pipelines (import records, sync_poll) and back out through Sync::poll / send_bulk.
//! The body is `dpf_tests::fuzz_bodies::pfsync_import`, shared with the smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpf_tests::fuzz_bodies::pfsync_import(data);
});
