//! pfsync `defer` on a worker (spec/pfsync.md §5.7): the packet that
//! created a new state is held until the peer has the state — its INS_ACK,
//! or an update of the state from it — or [`DEFER_TIMEOUT`] passes, so a
//! failover right after the first packet cannot meet a backup without the
//! state.
//!
//! [`DeferQueue`] is the pipeline's half: which states hold a packet, the
//! port each goes out on, and when it must go at the latest. The worker
//! keeps the packets themselves (mbufs) in an array indexed by the slot
//! numbers this queue hands out, and transmits them when
//! [`DeferQueue::release`] says so. Fixed storage of [`DEFER_LIMIT`]
//! slots, allocated once; a new state that finds every slot taken is not
//! deferred (its packet goes out at once, counted `defer_full`), which
//! bounds the held packets as OpenBSD's per-slice limit does.

use crate::time::{Duration, Instant};

/// Packets held at most per worker (OpenBSD: 128 per slice).
pub const DEFER_LIMIT: usize = 128;
/// How long a packet is held at most.
pub const DEFER_TIMEOUT: Duration = Duration::from_millis(20);

/// Why a held packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// The peer acknowledged the state (INS_ACK, UPD or UPD_C).
    Acked,
    /// [`DEFER_TIMEOUT`] passed.
    Timeout,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    id: u64,
    creatorid: u32,
    deadline: Instant,
    port: u16,
    held: bool,
    acked: bool,
}

/// The states whose first packet a worker holds.
#[derive(Debug)]
pub struct DeferQueue {
    slots: Box<[Slot; DEFER_LIMIT]>,
    /// Slots holding a packet.
    held: usize,
    /// Slots acknowledged and not yet released.
    acked: usize,
    /// Earliest deadline among held slots (a bound: may be earlier).
    next_deadline: Instant,
}

impl Default for DeferQueue {
    fn default() -> Self {
        DeferQueue::new()
    }
}

impl DeferQueue {
    /// An empty queue.
    pub fn new() -> DeferQueue {
        DeferQueue {
            slots: Box::new([Slot::default(); DEFER_LIMIT]),
            held: 0,
            acked: 0,
            next_deadline: Instant(u64::MAX),
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Holds the packet of new state (`id`, `creatorid`) that goes out on
    /// `port`; returns its slot, or `None` when every slot is taken.
    pub fn hold(&mut self, id: u64, creatorid: u32, port: u16, now: Instant) -> Option<u16> {
        if self.held == DEFER_LIMIT {
            return None;
        }
        let i = self.slots.iter().position(|s| !s.held)?;
        let deadline = now + DEFER_TIMEOUT;
        self.slots[i] = Slot {
            id,
            creatorid,
            deadline,
            port,
            held: true,
            acked: false,
        };
        self.held += 1;
        self.next_deadline = self.next_deadline.min(deadline);
        Some(i as u16)
    }

    /// Forgets the packet in `slot` (it was dropped after all, e.g. for an
    /// unresolved next hop): nothing is released for it. Returns the port
    /// it would have left on, if a packet was held there.
    pub fn cancel(&mut self, slot: u16) -> Option<u16> {
        let s = self.slots.get_mut(slot as usize)?;
        if !s.held {
            return None;
        }
        let port = s.port;
        if s.acked {
            self.acked -= 1;
        }
        *s = Slot::default();
        self.held -= 1;
        Some(port)
    }

    /// The peer has state (`id`, `creatorid`): its packet may go. Returns
    /// whether a packet was held for it.
    pub fn ack(&mut self, id: u64, creatorid: u32) -> bool {
        if self.held == 0 {
            return false;
        }
        for s in self.slots.iter_mut() {
            if s.held && !s.acked && s.id == id && s.creatorid == creatorid {
                s.acked = true;
                self.acked += 1;
                return true;
            }
        }
        false
    }

    /// Releases every acknowledged packet and every packet whose deadline
    /// has passed, calling `release(slot, port, why)` for each. Constant
    /// time when nothing is due.
    pub fn release(&mut self, now: Instant, mut release: impl FnMut(u16, u16, Released)) {
        if self.held == 0 || (self.acked == 0 && now < self.next_deadline) {
            return;
        }
        let mut next = Instant(u64::MAX);
        for (i, s) in self.slots.iter_mut().enumerate() {
            if !s.held {
                continue;
            }
            let why = if s.acked {
                Released::Acked
            } else if now >= s.deadline {
                Released::Timeout
            } else {
                next = next.min(s.deadline);
                continue;
            };
            s.held = false;
            s.acked = false;
            self.held -= 1;
            release(i as u16, s.port, why);
        }
        self.acked = 0;
        self.next_deadline = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(q: &mut DeferQueue, now: Instant) -> Vec<(u16, u16, Released)> {
        let mut v = Vec::new();
        q.release(now, |slot, port, why| v.push((slot, port, why)));
        v
    }

    #[test]
    fn an_ack_releases_its_packet_at_once_and_the_rest_time_out() {
        let t = Instant::from_secs(1);
        let mut q = DeferQueue::new();
        let a = q.hold(1, 7, 3, t).unwrap();
        let b = q.hold(2, 7, 4, t + Duration::from_millis(5)).unwrap();
        assert_ne!(a, b);
        assert!(released(&mut q, t + Duration::from_millis(1)).is_empty());
        assert!(q.ack(2, 7));
        assert!(!q.ack(2, 7), "acknowledged once");
        assert!(!q.ack(2, 8), "another creator's state");
        assert_eq!(
            released(&mut q, t + Duration::from_millis(1)),
            vec![(b, 4, Released::Acked)]
        );
        assert!(released(&mut q, t + Duration::from_millis(19)).is_empty());
        assert_eq!(
            released(&mut q, t + DEFER_TIMEOUT),
            vec![(a, 3, Released::Timeout)]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_cancelled_packet_is_never_released() {
        let t = Instant::from_secs(1);
        let mut q = DeferQueue::new();
        let a = q.hold(1, 7, 3, t).unwrap();
        assert!(q.ack(1, 7));
        q.cancel(a);
        assert!(q.is_empty());
        assert!(released(&mut q, t + DEFER_TIMEOUT).is_empty());
        assert_eq!(q.hold(2, 7, 3, t), Some(a));
    }

    #[test]
    fn at_the_limit_new_states_are_not_held_and_slots_are_reused() {
        let t = Instant::from_secs(1);
        let mut q = DeferQueue::new();
        let slots: Vec<u16> = (0..DEFER_LIMIT as u64)
            .map(|i| q.hold(i, 7, 0, t).unwrap())
            .collect();
        assert_eq!(q.len(), DEFER_LIMIT);
        assert_eq!(q.hold(999, 7, 0, t), None);
        assert!(q.ack(5, 7));
        assert_eq!(released(&mut q, t).len(), 1);
        assert_eq!(q.hold(1000, 7, 0, t), Some(slots[5]));
        assert_eq!(released(&mut q, t + DEFER_TIMEOUT).len(), DEFER_LIMIT);
    }
}
