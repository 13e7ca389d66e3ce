//! Packets waiting for their next hop's MAC (router mode), as the kernel's
//! ARP hold queue keeps them: a routed packet whose next hop is being
//! resolved is held, not dropped, and goes out as soon as the neighbour
//! snapshot has the MAC — so the first packets a new CARP master routes
//! after a takeover (TCP's retransmissions) are not lost to an empty
//! neighbour table.
//!
//! [`NeighborHold`] is the pipeline's half: which slot waits for which next
//! hop, on which port, until when. The worker keeps the packets (mbufs) in
//! an array indexed by slot and transmits or frees them when
//! [`NeighborHold::release`] says so. Fixed storage, allocated once:
//! [`HOLD_SLOTS`] packets per worker and [`HOLD_PER_HOP`] per next hop; a
//! packet that finds no room is dropped and counted `neighbor-unresolved`,
//! as is one still waiting after [`HOLD_TIMEOUT`] (the resolver's three
//! tries a second apart).

use crate::flow::{Addr, Af};
use crate::route::Neighbors;
use crate::time::{Duration, Instant};

/// Packets held at most per worker.
pub const HOLD_SLOTS: usize = 256;
/// Packets held at most per next hop (Linux's `unres_qlen_bytes` holds a
/// few; BSD's ARP holds one).
pub const HOLD_PER_HOP: usize = 8;
/// How long a packet waits at most.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
struct Slot {
    af: Af,
    addr: Addr,
    port: u16,
    deadline: Instant,
    used: bool,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            af: Af::Inet,
            addr: Addr::ZERO,
            port: 0,
            deadline: Instant(0),
            used: false,
        }
    }
}

/// What became of a held packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    /// The next hop is resolved: write this destination MAC and send.
    Resolved([u8; 6]),
    /// It waited [`HOLD_TIMEOUT`]: drop it.
    Expired,
}

/// The packets one worker holds for unresolved next hops.
#[derive(Debug)]
pub struct NeighborHold {
    slots: Box<[Slot; HOLD_SLOTS]>,
    used: usize,
    /// Earliest deadline among used slots (a bound: may be earlier).
    next_deadline: Instant,
}

impl Default for NeighborHold {
    fn default() -> Self {
        NeighborHold::new()
    }
}

impl NeighborHold {
    /// Nothing held.
    pub fn new() -> NeighborHold {
        NeighborHold {
            slots: Box::new([Slot::default(); HOLD_SLOTS]),
            used: 0,
            next_deadline: Instant(u64::MAX),
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// A slot for a packet to `addr` leaving on `port`, or `None` when the
    /// worker or that next hop has no room left.
    pub fn hold(&mut self, af: Af, addr: Addr, port: u16, now: Instant) -> Option<u16> {
        if self.used == HOLD_SLOTS {
            return None;
        }
        let same_hop = self
            .slots
            .iter()
            .filter(|s| s.used && s.af == af && s.addr == addr)
            .count();
        if same_hop >= HOLD_PER_HOP {
            return None;
        }
        let i = self.slots.iter().position(|s| !s.used)?;
        let deadline = now + HOLD_TIMEOUT;
        self.slots[i] = Slot {
            af,
            addr,
            port,
            deadline,
            used: true,
        };
        self.used += 1;
        if deadline < self.next_deadline {
            self.next_deadline = deadline;
        }
        u16::try_from(i).ok()
    }

    /// Gives slot `slot` back without a packet in it (the caller dropped
    /// what it would have held).
    pub fn cancel(&mut self, slot: u16) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.used {
                *s = Slot::default();
                self.used -= 1;
            }
        }
    }

    /// Lets go of the packets whose next hop `neighbors` now resolves and
    /// of those that waited too long, calling `release(slot, port,
    /// outcome)` for each. `resolved_changed`: the neighbour snapshot is
    /// new since the last call (otherwise only deadlines are checked,
    /// which is constant time until the earliest one).
    pub fn release(
        &mut self,
        neighbors: &Neighbors,
        resolved_changed: bool,
        now: Instant,
        mut release: impl FnMut(u16, u16, HoldOutcome),
    ) {
        if self.used == 0 || (!resolved_changed && now < self.next_deadline) {
            return;
        }
        let mut next = Instant(u64::MAX);
        for (i, s) in self.slots.iter_mut().enumerate() {
            if !s.used {
                continue;
            }
            let outcome = match neighbors.get(s.af, &s.addr) {
                Some(n) if n.port == s.port => Some(HoldOutcome::Resolved(n.mac)),
                _ if now >= s.deadline => Some(HoldOutcome::Expired),
                _ => None,
            };
            match outcome {
                Some(o) => {
                    s.used = false;
                    self.used -= 1;
                    release(i as u16, s.port, o);
                }
                None => next = next.min(s.deadline),
            }
        }
        self.next_deadline = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Neighbor;

    fn nb(addr: Addr, mac: [u8; 6], port: u16) -> Neighbors {
        Neighbors::new([((Af::Inet, addr), Neighbor { mac, port })])
    }

    #[test]
    fn held_packets_go_when_resolved_or_expire() {
        let gw = Addr::v4([10, 2, 0, 254]);
        let other = Addr::v4([10, 2, 0, 9]);
        let mut h = NeighborHold::new();
        let t0 = Instant::from_secs(10);
        let a = h.hold(Af::Inet, gw, 1, t0).unwrap();
        let b = h.hold(Af::Inet, gw, 1, t0).unwrap();
        let c = h.hold(Af::Inet, other, 1, t0).unwrap();
        assert_eq!(h.len(), 3);
        let mut got = Vec::new();
        // Nothing resolved, nothing due: nothing happens.
        h.release(&Neighbors::new([]), true, t0, |s, p, o| got.push((s, p, o)));
        assert!(got.is_empty());
        // The gateway resolves: its two packets go, in slot order.
        let mac = [2, 0xfe, 0, 0, 0, 1];
        h.release(&nb(gw, mac, 1), true, t0, |s, p, o| got.push((s, p, o)));
        assert_eq!(
            got,
            vec![
                (a, 1, HoldOutcome::Resolved(mac)),
                (b, 1, HoldOutcome::Resolved(mac))
            ]
        );
        // The other never answers: it expires after the timeout.
        got.clear();
        h.release(
            &nb(gw, mac, 1),
            false,
            t0 + Duration::from_secs(1),
            |s, p, o| got.push((s, p, o)),
        );
        assert!(got.is_empty());
        h.release(&nb(gw, mac, 1), false, t0 + HOLD_TIMEOUT, |s, p, o| {
            got.push((s, p, o))
        });
        assert_eq!(got, vec![(c, 1, HoldOutcome::Expired)]);
        assert!(h.is_empty());
    }

    #[test]
    fn room_is_bounded_per_hop_and_per_worker() {
        let mut h = NeighborHold::new();
        let t = Instant(0);
        let gw = Addr::v4([10, 2, 0, 254]);
        for _ in 0..HOLD_PER_HOP {
            assert!(h.hold(Af::Inet, gw, 1, t).is_some());
        }
        assert!(h.hold(Af::Inet, gw, 1, t).is_none(), "per next hop");
        let mut i = 0u32;
        while h.len() < HOLD_SLOTS {
            let b = i.to_be_bytes();
            assert!(h
                .hold(Af::Inet, Addr::v4([10, 9, b[2], b[3]]), 1, t)
                .is_some());
            i += 1;
        }
        assert!(
            h.hold(Af::Inet, Addr::v4([10, 8, 0, 1]), 1, t).is_none(),
            "per worker"
        );
    }

    #[test]
    fn a_neighbor_on_another_port_does_not_release() {
        let gw = Addr::v4([10, 2, 0, 254]);
        let mut h = NeighborHold::new();
        h.hold(Af::Inet, gw, 1, Instant(0)).unwrap();
        let mut n = 0;
        h.release(&nb(gw, [2; 6], 0), true, Instant(0), |_, _, _| n += 1);
        assert_eq!(n, 0);
    }
}
