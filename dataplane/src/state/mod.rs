//! pf's state table, one shard per worker, and pf's state tracking.
//!
//! - [`entry`]: the 128-byte [`State`] and its [`Peer`]s, with pf's and
//!   pfsync's numbering (TCPS_*, PFUDPS_*, PFSTATE_*, PFTM_*), so a state
//!   converts to a `pfsync_state` field by field (spec/pfsync.md §3.6-3.8).
//! - [`table`]: [`Shard`], a fixed-capacity open-addressing table owned by
//!   one worker; all memory is allocated by [`Shard::new`], lookups cost
//!   about one cache miss in the index and one in the slab, expiry is a
//!   bounded round-robin sweep ([`Shard::expire_slice`]).
//! - [`track`]: state creation ([`new_state`], pf's `pf_create_state`) and
//!   per-packet tracking ([`track`](track::track): pf's
//!   `pf_tcp_track_full` / `pf_tcp_track_sloppy` and the UDP / ICMP /
//!   other pseudo states), and [`icmp_error_matches`].
//! - [`merge`]: pfsync update merging with stale detection
//!   ([`merge_peer_update`], spec/pfsync.md §5.3.1).
//!
//! Typical use on the owning worker:
//!
//! ```
//! use dataplane::flow::{proto, tcp_flags, Addr, Af, Direction, IfIndex, L4Info, PacketInfo, TcpInfo};
//! use dataplane::state::{new_state, track, Shard, StateOptions, TrackOutcome};
//! use dataplane::time::Instant;
//!
//! let mut shard = Shard::new(1024, 0).unwrap();
//! let syn = PacketInfo {
//!     af: Af::Inet, proto: proto::TCP,
//!     src: Addr::v4([10, 0, 0, 2]), dst: Addr::v4([192, 0, 2, 80]),
//!     sport: 40000, dport: 80, ip_len: 60, ttl: 64,
//!     ifindex: IfIndex(0), dir: Direction::In,
//!     l4: L4Info::Tcp(TcpInfo { seq: 1000, win: 64240, flags: tcp_flags::SYN, ..Default::default() }),
//! };
//! let now = Instant::from_secs(1);
//! let (key, swapped) = syn.key();
//! let hash = key.symmetric_hash();
//! assert!(shard.lookup(&key, hash).is_none());
//! let id = shard.alloc_id();
//! let st = new_state(&syn, now, StateOptions::default(), id, 0x1234).unwrap();
//! let slot = shard.insert(st).unwrap();
//!
//! // A later packet of the same flow:
//! let slot = shard.lookup(&key, hash).unwrap();
//! let st = shard.get_mut(slot).unwrap();
//! let from_src = st.is_from_src(swapped);
//! assert_eq!(track(st, &syn, from_src, now), TrackOutcome::Pass { transition: false });
//! ```

#![forbid(unsafe_code)]

pub mod entry;
pub mod merge;
pub mod table;
pub mod track;

#[cfg(test)]
mod track_tests;

pub use entry::{
    route_kind, state_flags, tcps, udps, Peer, Scrub, State, StateRoute, Translation, NO_RULE,
    ROUTE_PORT_LOOKUP, SYNC_FLAG_SRCNODE, WSCALE_FLAG, WSCALE_MASK,
};
pub use merge::{merge_peer_update, MergeOutcome};
pub use table::{
    InsertError, Shard, ShardError, SlotId, DEFAULT_CAPACITY, MAX_CAPACITY, MAX_PROBE_BUCKETS,
};
pub use track::{
    icmp_error_matches, new_state, seq_geq, seq_gt, track, track_established, track_udp_multiple,
    StateDrop, StateOptions, TrackOutcome,
};
