//! pfsync: pf state table synchronisation, OpenBSD protocol version 6
//! (`spec/pfsync.md`). This module is the pure protocol core: no threads, no
//! I/O, no clock; time comes in as [`dataplane::time::Instant`].
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | zero-copy views and `Repr`s of every message (§2, §3), the §2.3 walker, Ethernet/IPv4 framing and the §1.1 receive checks |
//! | [`auth`] | dpf's optional HMAC-SHA-256 trailer and its replay window (not OpenBSD: off by default) |
//! | [`pack`] | building packets up to the MTU (§1.2) |
//! | [`recv`] | the §5.3 validity checks of received state messages |
//! | [`stats`] | the 16 `net.inet.pfsync.stats` counters (§5.9) |
//!
//! The shell that runs is [`crate::pfsync::engine`], on the control thread: it
//! receives the frames the slow path hands it, checks them with
//! [`wire::frame::receive_frame`] (and [`auth`] when configured), walks
//! them and passes each state to the worker that owns it; it drains the
//! workers' export rings into a [`pack::Packer`] and queues the frames
//! for transmission. Merging (§5.3.1) runs on the owning worker
//! (`dataplane::state::merge_peer_update`).
//!
//! Invariants kept across the module: no `unsafe`; no panics on any input.

pub mod auth;
pub mod engine;
pub mod pack;
pub mod recv;
#[cfg(test)]
mod spec_vectors;
pub mod stats;
pub mod wire;

pub use stats::{Counter, PfsyncStats};
pub use wire::StateId;
