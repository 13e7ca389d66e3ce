//! The control thread's transmit path: the frames it builds (CARP
//! advertisements, pfsync packets, slow-path answers) wait in order for
//! room in the injection rings that worker 0 drains (the worker filters
//! them `out` and sends them; the control thread never touches a tx
//! queue). CARP and the slow path have a ring of their own, so a bulk
//! update never stands in front of an advertisement; pfsync's ring is
//! drained only as fast as the sync port takes its frames
//! ([`dataplane::local_tx`]), so they wait here instead of being lost, and
//! the bulk sender watches how many wait ([`InjectQueue::sync_backlog`]).

use dataplane::dpdk::{Mbuf, MbufRing, Mempool, RawMbuf};
use std::sync::Arc;

/// The two injection rings to worker 0.
#[derive(Clone, Debug)]
pub(super) struct InjectRings {
    /// CARP, ARP/ND, ICMP: sent (or dropped, counted, if the port is full)
    /// at once.
    pub(super) urgent: Arc<MbufRing>,
    /// pfsync packets: kept by the workers until their port takes them.
    pub(super) sync: Arc<MbufRing>,
}

/// Whether a frame this box built is pfsync (IPv4 protocol 240, untagged:
/// the only shape the pfsync engine builds).
fn is_pfsync_frame(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00][..]) && frame.get(23) == Some(&240)
}

/// Frames the control thread sends (advertisements, replies, pfsync
/// packets), kept in order until the injection ring that worker 0 drains
/// has room: a bulk update of a large table produces far more packets than
/// the ring holds, and none may be lost. Bounded: beyond
/// [`INJECT_PENDING_MAX`] frames the newest are dropped and counted.
pub(super) struct InjectQueue {
    /// CARP, ARP/ND, ICMP: ahead of everything pfsync queued, so a bulk
    /// update never delays an advertisement.
    urgent: std::collections::VecDeque<crate::slowpath::Out>,
    /// pfsync packets, in order.
    pending: std::collections::VecDeque<crate::slowpath::Out>,
    pub(super) sent: u64,
    pub(super) dropped: u64,
}

/// CARP and slow-path frames waiting for their injection ring, at most.
const INJECT_PENDING_MAX: usize = 1 << 20;
/// pfsync packets waiting for theirs, at most (~100 MB of MTU-sized
/// packets; a bulk update adds packets only while few wait, so this fills
/// only when state changes outrun the sync link for long).
const SYNC_PENDING_MAX: usize = 1 << 16;

/// Bytes of frame one packet buffer holds (after its 128-byte headroom):
/// pfsync sizes its packets to it.
pub(super) const MBUF_DATA_ROOM: usize = 2048;

impl InjectQueue {
    pub(super) fn new() -> InjectQueue {
        InjectQueue {
            urgent: std::collections::VecDeque::new(),
            pending: std::collections::VecDeque::new(),
            sent: 0,
            dropped: 0,
        }
    }

    /// Queues `out` and sends what the ring takes now.
    pub(super) fn send(
        &mut self,
        out: Vec<crate::slowpath::Out>,
        pool: &Mempool,
        rings: &InjectRings,
    ) {
        for o in out {
            // Larger than a packet buffer: never sendable, never counted
            // as sent.
            if o.1.len() > MBUF_DATA_ROOM {
                self.dropped += 1;
                continue;
            }
            let (q, max) = if is_pfsync_frame(&o.1) {
                (&mut self.pending, SYNC_PENDING_MAX)
            } else {
                (&mut self.urgent, INJECT_PENDING_MAX)
            };
            if q.len() < max {
                q.push_back(o);
            } else {
                self.dropped += 1;
            }
        }
        self.flush(pool, rings);
    }

    /// Sends queued frames, urgent ones first, each queue until its ring
    /// (or the packet pool) is full.
    pub(super) fn flush(&mut self, pool: &Mempool, rings: &InjectRings) {
        for (q, ring) in [
            (&mut self.urgent, &rings.urgent),
            (&mut self.pending, &rings.sync),
        ] {
            while let Some((port, frame)) = q.front() {
                if !transmit(pool, ring, *port, frame) {
                    break;
                }
                q.pop_front();
                self.sent += 1;
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.pending.is_empty()
    }

    /// pfsync packets waiting here and in their ring (not yet taken by a
    /// worker): a bulk update adds more only while this is small.
    pub(super) fn sync_backlog(&self, rings: &InjectRings) -> usize {
        self.pending.len() + rings.sync.len()
    }

    pub(super) fn len(&self) -> usize {
        self.urgent.len() + self.pending.len()
    }
}

/// Copies `frame` into a fresh mbuf for `port` and queues it for worker 0
/// to send (the control thread never uses a worker's tx queue). Returns
/// false, keeping nothing, when the pool or the ring is full.
fn transmit(pool: &Mempool, inject: &MbufRing, port: u16, frame: &[u8]) -> bool {
    let Some(mut m) = Mbuf::alloc(pool) else {
        return false;
    };
    let Some(data) = m.append(frame.len() as u16) else {
        // Larger than an mbuf: never sendable, do not retry it.
        return true;
    };
    data.copy_from_slice(frame);
    m.set_port(port);
    let raw = RawMbuf(m.into_raw());
    if inject.enqueue_burst(&[raw]) == 0 {
        // SAFETY: the ring refused it; we still own it.
        drop(unsafe { Mbuf::from_raw(raw.0) });
        return false;
    }
    true
}
