//! pfsync: pf state table synchronisation, OpenBSD protocol version 6
//! (`spec/pfsync.md`). This module is the pure protocol core: no threads, no
//! I/O, no clock; time comes in as [`dataplane::time::Instant`].
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | zero-copy views and `Repr`s of every message (§2, §3), the §2.3 walker, Ethernet/IPv4 framing and the §1.1 receive checks |
//! | [`pack`] | building packets up to the MTU (§1.2) and the sender-side coalescing queue (§5.1, §5.2) |
//! | [`recv`] | what a received message does to the state table (§5.3, §5.3.1, §5.4), over the [`recv::StateStore`] trait |
//! | [`bulk`] | the bulk update protocol, requester and responder, with CARP demotion (§5.6) |
//! | [`defer`] | holding the first packet of a new state until the peer acknowledges it (§5.7) |
//! | [`stats`] | the 16 `net.inet.pfsync.stats` counters (§5.9) |
//!
//! The sync thread is the thin shell: it receives frames, runs
//! [`wire::frame::receive_frame`] and [`recv::Receiver::process`], drains the
//! workers' export queues into [`pack::Coalescer`]s, turns the drained
//! entries into messages with the store's current data, pushes them into a
//! [`pack::Packer`] and transmits what it returns; it drives [`bulk`] and
//! [`defer`] with `now` and executes their actions.
//!
//! Invariants kept across the module: no `unsafe`; no panics on any input;
//! no allocation after construction on the per-packet paths (buffers are
//! sized once from the MTU or a capacity).

pub mod bulk;
pub mod defer;
pub mod pack;
pub mod recv;
pub mod stats;
pub mod wire;

#[cfg(test)]
mod spec_vectors;

pub use stats::{Counter, PfsyncStats};
pub use wire::StateId;
