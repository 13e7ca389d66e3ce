//! dpf's fast path.
//!
//! The pure core (`wire`, `flow`, `rules`, `state`, `ring`, `pipeline`) never
//! names a DPDK type: it is unit-tested, fuzzed and benchmarked without EAL.
//! The shell (`dpdk`, `worker`, behind the default `dpdk` feature) binds it to
//! DPDK poll-mode drivers.

pub mod flow;
pub mod ring;
pub mod rules;
pub mod state;
pub mod wire;
pub mod time;
pub mod timeouts;
