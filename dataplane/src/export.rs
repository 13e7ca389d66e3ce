//! pfsync's records between workers and the sync side, over the SPSC rings.
//!
//! Export (worker -> sync): a worker pushes a [`StateRecord`] when it
//! creates a state (INS), on a TCP state transition or every `maxupd`
//! packets (UPD, sent compressed as UPD_C), and when a state goes (DEL),
//! and publishes once per burst. A full ring is counted (`export_dropped`)
//! and nothing is lost for good: a state whose INS or UPD did not fit is
//! marked [`state_flags::SYNC_OWED`](crate::state::state_flags::SYNC_OWED) and sent again in full by the worker's expiry
//! sweep (within a second); a deletion that did not fit waits in a small
//! per-worker backlog that is retried every burst (`export_lost` counts the
//! deletions that found that backlog full too — the peer then expires the
//! state by its own timeouts).
//!
//! Import (sync -> owning worker): received states are inserted or merged
//! by the worker that owns their flow, so shards stay single-writer.
//! Imported states keep the peer's creatorid and are never exported back.

use crate::state::{Peer, State, Translation};
use crate::time::Instant;
use crate::timeouts::TimeoutClass;

/// What happened to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Created here.
    Insert,
    /// Changed (TCP transition, or `maxupd` packets): the peer knows the
    /// state, a compressed update (UPD_C) carries the change.
    Update,
    /// The whole state (UPD): the peer may not know it (a re-send after a
    /// full ring, the answer to the peer's UPD_REQ).
    FullUpdate,
    /// Removed or expired.
    Delete,
    /// The peer sent a compressed update for a state this worker does not
    /// have (only `state`'s id and creatorid are meaningful): the sync side
    /// asks the peer for it with UPD_REQ once no worker has it.
    Missing,
    /// The peer deleted (DEL_C) a state this worker does not have (only
    /// `state`'s id and creatorid are meaningful): the sync side counts
    /// `badstate` once no worker has it (spec/pfsync.md §5.3).
    NotDeleted,
}

/// A state change a worker exports.
#[derive(Clone, Copy, Debug)]
pub struct StateRecord {
    /// What happened.
    pub action: SyncAction,
    /// The state as it is now (as it was, for a delete).
    pub state: State,
    /// Its translation ([`Translation::NONE`] for a state that translates
    /// nothing, and for deletions).
    pub translation: Translation,
    /// When the worker exported it (for an insert: the state's creation),
    /// on the TSC clock every dpf process on a host shares.
    pub at: Instant,
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
        /// Its translation (the far key), [`Translation::NONE`] if none.
        translation: Translation,
        /// Seconds since the peer created it.
        age_s: u32,
        /// Seconds the peer had left before expiry (0: unknown).
        expire_s: u32,
    },
    /// A compressed update (UPD_C): merge these peers into the state with
    /// this identity; a worker that does not have it answers
    /// [`SyncAction::Missing`].
    Merge {
        /// State id.
        id: u64,
        /// Creator id.
        creatorid: u32,
        /// pf's `src` peer.
        src: Peer,
        /// pf's `dst` peer.
        dst: Peer,
        /// Timeout class.
        timeout: TimeoutClass,
    },
    /// The peer asked for this state in full (UPD_REQ): the worker that has
    /// it exports a [`SyncAction::FullUpdate`].
    Request {
        /// State id.
        id: u64,
        /// Creator id.
        creatorid: u32,
    },
    /// The peer acknowledged the insert of a state we hold a packet for
    /// (INS_ACK, pfsync `defer`): release the packet.
    Ack {
        /// State id.
        id: u64,
        /// Creator id.
        creatorid: u32,
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
