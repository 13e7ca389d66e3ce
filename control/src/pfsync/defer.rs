//! Deferral of the first packet of a new state (`spec/pfsync.md` §5.7), as a
//! sans-I/O holding area with time passed in.
//!
//! With `defer` on, the packet that created a new local state (not
//! broadcast/multicast, not NOSYNC) is held; the state's INS goes out with
//! `state_flags |= ACK` and the slice is flushed at once. The packet is
//! released — handed back to the caller to transmit as pf would have — on
//! the first of: an INS_ACK, UPD or UPD_C for the state ([`Deferrals::ack`]),
//! 20 ms ([`Deferrals::poll`]), pfsync going down
//! ([`Deferrals::release_all`]). At most 128 packets are held per slice;
//! at the limit the expired ones, then the oldest, are released first.
//!
//! `P` is the caller's packet handle (an mbuf). Entries are kept in arrival
//! order, which is also deadline order (the delay is constant). Storage is
//! allocated once.

use std::collections::VecDeque;

use dataplane::time::{Duration, Instant};

use super::wire::StateId;

/// How long a packet is held at most (§5.7).
pub const DEFER_TIMEOUT: Duration = Duration::from_millis(20);
/// Packets held per slice at most (§5.7).
pub const DEFER_LIMIT: usize = 128;

/// Why a held packet is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Release {
    /// The peer acknowledged the state (INS_ACK, UPD or UPD_C).
    Acked,
    /// 20 ms passed.
    Timeout,
    /// Room was needed for a newer packet.
    OverLimit,
    /// pfsync went down.
    Down,
}

#[derive(Debug, Clone)]
struct Held<P> {
    id: StateId,
    deadline: Instant,
    packet: P,
}

/// The held packets of one slice.
#[derive(Debug, Clone)]
pub struct Deferrals<P> {
    held: VecDeque<Held<P>>,
    limit: usize,
}

impl<P> Default for Deferrals<P> {
    fn default() -> Self {
        Deferrals::with_limit(DEFER_LIMIT)
    }
}

impl<P> Deferrals<P> {
    /// A holding area for at most `limit` packets (at least 1).
    pub fn with_limit(limit: usize) -> Deferrals<P> {
        let limit = limit.max(1);
        Deferrals {
            held: VecDeque::with_capacity(limit),
            limit,
        }
    }

    /// Number of held packets.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether a packet is held for `id` (its INS must carry the ACK flag).
    pub fn is_held(&self, id: StateId) -> bool {
        self.held.iter().any(|h| h.id == id)
    }

    /// The earliest release deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        self.held.front().map(|h| h.deadline)
    }

    /// Holds `packet` for the new state `id`. If the area is full, expired
    /// packets and then the oldest are handed to `release` first.
    pub fn hold(
        &mut self,
        id: StateId,
        packet: P,
        now: Instant,
        mut release: impl FnMut(StateId, P, Release),
    ) {
        if self.held.len() >= self.limit {
            self.poll(now, &mut release);
        }
        while self.held.len() >= self.limit {
            match self.held.pop_front() {
                Some(h) => release(h.id, h.packet, Release::OverLimit),
                None => break,
            }
        }
        self.held.push_back(Held {
            id,
            deadline: now + DEFER_TIMEOUT,
            packet,
        });
    }

    /// The peer acknowledged `id`: returns its held packet to transmit.
    pub fn ack(&mut self, id: StateId) -> Option<P> {
        let at = self.held.iter().position(|h| h.id == id)?;
        self.held.remove(at).map(|h| h.packet)
    }

    /// Releases every packet whose 20 ms are over.
    pub fn poll(&mut self, now: Instant, mut release: impl FnMut(StateId, P, Release)) {
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            if let Some(h) = self.held.pop_front() {
                release(h.id, h.packet, Release::Timeout);
            }
        }
    }

    /// Releases everything (pfsync going down).
    pub fn release_all(&mut self, mut release: impl FnMut(StateId, P, Release)) {
        while let Some(h) = self.held.pop_front() {
            release(h.id, h.packet, Release::Down);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(id: u64) -> StateId {
        StateId { id, creatorid: 1 }
    }
    const T0: Instant = Instant::from_secs(50);

    #[test]
    fn ack_releases_before_timeout() {
        let mut d = Deferrals::default();
        d.hold(sid(1), "pkt1", T0, |_, _, _| panic!("nothing to release"));
        assert!(d.is_held(sid(1)));
        assert_eq!(d.poll_at(), Some(T0 + DEFER_TIMEOUT));
        assert_eq!(d.ack(sid(2)), None);
        assert_eq!(d.ack(sid(1)), Some("pkt1"));
        assert!(d.is_empty());
        assert_eq!(d.poll_at(), None);
    }

    #[test]
    fn timeout_after_20ms_exactly() {
        let mut d = Deferrals::default();
        d.hold(sid(1), 1u32, T0, |_, _, _| {});
        d.hold(sid(2), 2u32, T0 + Duration::from_millis(5), |_, _, _| {});
        let mut out = Vec::new();
        d.poll(T0 + Duration::from_micros(19_999), |id, p, r| {
            out.push((id.id, p, r))
        });
        assert!(out.is_empty());
        d.poll(T0 + DEFER_TIMEOUT, |id, p, r| out.push((id.id, p, r)));
        assert_eq!(out, vec![(1, 1, Release::Timeout)]);
        d.release_all(|id, p, r| out.push((id.id, p, r)));
        assert_eq!(out[1], (2, 2, Release::Down));
    }

    #[test]
    fn limit_releases_expired_then_oldest() {
        let mut d = Deferrals::with_limit(3);
        let mut out = Vec::new();
        d.hold(sid(1), 1, T0, |id, _, r| out.push((id.id, r)));
        d.hold(sid(2), 2, T0 + Duration::from_millis(10), |id, _, r| {
            out.push((id.id, r))
        });
        d.hold(sid(3), 3, T0 + Duration::from_millis(15), |id, _, r| {
            out.push((id.id, r))
        });
        // At T0+21ms only #1 has expired: it goes as a timeout.
        d.hold(sid(4), 4, T0 + Duration::from_millis(21), |id, _, r| {
            out.push((id.id, r))
        });
        assert_eq!(out, vec![(1, Release::Timeout)]);
        // Full again with nothing expired: the oldest (#2) makes room.
        d.hold(sid(5), 5, T0 + Duration::from_millis(22), |id, _, r| {
            out.push((id.id, r))
        });
        assert_eq!(out[1], (2, Release::OverLimit));
        assert_eq!(d.len(), 3);
    }
}
