//! pfsync's records between workers and the sync side, over the SPSC rings.
//!
//! Export (worker -> sync): a worker pushes a [`StateRecord`] when it
//! creates a state (INS), on a TCP state transition or every `maxupd`
//! packets (UPD), and when a state goes (DEL), and publishes once per
//! burst. A full ring is counted (`export_dropped`) — the state goes out
//! again with its next update or in the next bulk update.
//!
//! Import (sync -> owning worker): received states are inserted or merged
//! by the worker that owns their flow, so shards stay single-writer.
//! Imported states keep the peer's creatorid and are never exported back.

use crate::state::State;

/// What happened to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Created here.
    Insert,
    /// Changed (TCP transition, or `maxupd` packets).
    Update,
    /// Removed or expired.
    Delete,
}

/// A state change a worker exports.
#[derive(Clone, Copy, Debug)]
pub struct StateRecord {
    /// What happened.
    pub action: SyncAction,
    /// The state as it is now (as it was, for a delete).
    pub state: State,
}

/// A state the sync side received, for its owning worker.
#[derive(Clone, Copy, Debug)]
pub enum ImportRecord {
    /// Insert, or merge into the existing state with this id/creatorid
    /// (stale sides are refused, spec/pfsync.md §5.3.1). `age_s` and
    /// `expire_s` are the sender's creation age and time left.
    Upsert {
        /// The state, in this box's representation.
        state: State,
        /// Seconds since the peer created it.
        age_s: u32,
        /// Seconds the peer had left before expiry (0: unknown).
        expire_s: u32,
    },
    /// Remove the state with this identity, if this worker has it.
    Delete {
        /// State id.
        id: u64,
        /// Creator id.
        creatorid: u32,
    },
    /// The peer flushed its table (pfsync CLR): remove every state this
    /// creator made.
    Clear {
        /// Creator id.
        creatorid: u32,
    },
}
