//! dpf's fast path.
//!
//! The pure core (`wire`, `flow`, `rules`, `state`, `ring`, `pipeline`) never
//! names a DPDK type: it is unit-tested, fuzzed and benchmarked without EAL.
//! The shell (`dpdk`, `worker`, behind the default `dpdk` feature) binds it to
//! DPDK poll-mode drivers.

pub mod alias;
pub mod command;
pub mod counters;
pub mod cpu;
pub mod defer;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod export;
pub mod flow;
pub mod frag;
pub mod histogram;
pub mod huge;
pub mod local_tx;
pub mod lpm;
pub mod nat;
pub mod neighbor_hold;
pub mod pflog;
pub mod pipeline;
pub mod ring;
pub mod route;
pub mod rss;
pub mod rules;
pub mod scrub;
pub mod snapshot;
pub mod srcnodes;
pub mod state;
pub mod syncookie;
pub mod time;
pub mod timeouts;
pub mod wire;
#[cfg(feature = "dpdk")]
pub mod worker;
