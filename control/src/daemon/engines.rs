//! The control plane's engines — CARP, pfsync and the router's slow path —
//! and what the control loop does with them each round, every part with a
//! bound: the slow-path rings are served in class order (CARP and pfsync;
//! ARP and ND; the rest) with a budget each, then the timers run (neighbour
//! resolution, CARP with the ports' link state, pfsync with its unicast
//! peer's MAC). A box that finds it was stalled steps down and resyncs.
//! The loop itself (sleeping, the control socket, the injection queue)
//! is in the module above.

use super::{list_states, SLOW_BUDGETS};
use crate::carp::engine::Carp;
use crate::pfsync::engine::{Sync, SyncEvent, BULK_DEMOTE};
use crate::slowpath::{Out, SlowPath};
use dataplane::command::CommandClient;
use dataplane::counters::{Punt, SLOW_CLASSES};
use dataplane::dpdk::{Mbuf, MbufRing, RawMbuf};
use dataplane::flow::{Addr, Af};
use dataplane::ring::Consumer;
use dataplane::route::{Neighbors, ResolveRequest};
use dataplane::time::Instant;
use std::sync::Arc;

/// The protocol engines and the slow path, owned by the control thread.
pub(super) struct Engines {
    /// CARP, when `[[carp]]` is configured.
    pub carp: Option<Carp>,
    /// pfsync, when `[pfsync]` is configured.
    pub sync: Option<Sync>,
    /// ARP, ND, ICMP to the box, next-hop resolution.
    pub slowpath: SlowPath,
}

impl Engines {
    /// Takes what the workers punted, CARP and pfsync first, each ring
    /// within its budget, and hands every frame to its engine by the reason
    /// the worker gave (no parsing here). Returns whether anything came.
    pub(super) fn serve_slow_rings(
        &mut self,
        rings: &[Option<Arc<MbufRing>>; SLOW_CLASSES],
        clients: &mut [CommandClient],
        now: Instant,
        out: &mut Vec<Out>,
    ) -> bool {
        let mut busy = false;
        let mut buf = [RawMbuf(std::ptr::null_mut()); 64];
        for (ring, budget) in rings.iter().zip(SLOW_BUDGETS) {
            let Some(ring) = ring.as_ref() else { continue };
            let mut served = 0;
            while served < budget {
                let want = buf.len().min(budget - served);
                let n = ring.dequeue_burst(&mut buf[..want]);
                busy |= n > 0;
                served += n;
                for raw in &buf[..n] {
                    // SAFETY: dequeued from a slow-path ring: workers gave
                    // up these mbufs when they enqueued them.
                    let Some(m) = (unsafe { Mbuf::from_raw(raw.0) }) else {
                        continue;
                    };
                    self.dispatch(&m, clients, now, out);
                }
                if n < want {
                    break;
                }
            }
        }
        busy
    }

    fn dispatch(
        &mut self,
        m: &Mbuf,
        clients: &mut [CommandClient],
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match (
            Punt::from_tag(m.tag()),
            self.carp.as_mut(),
            self.sync.as_mut(),
        ) {
            (Some(Punt::Carp), Some(c), _) => c.handle(m.data(), m.port(), now, out),
            (Some(Punt::Pfsync), c, Some(s)) => match s.handle(m.data(), m.port(), now, out) {
                SyncEvent::BulkRequested => {
                    if let Some(states) = list_states(clients) {
                        s.send_bulk(states, out);
                    }
                }
                SyncEvent::BulkDone => {
                    if let Some(c) = c {
                        let _ = c.carpdemote("carp", -BULK_DEMOTE, now, out);
                    }
                }
                SyncEvent::None => {}
            },
            // CARP or pfsync without the engine: nothing answers them.
            (Some(Punt::Carp | Punt::Pfsync), _, _) => {}
            _ => self.slowpath.handle(m.data(), m.port(), now, out),
        }
    }

    /// The box was stopped or starved long enough for the peer to take
    /// over, and its table missed the peer's updates: every MASTER vhid
    /// becomes BACKUP, demoted until a bulk update ends (as at start), then
    /// preemption brings mastership back with a whole table.
    pub(super) fn step_down_after_stall(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        if !s.bulk_pending() {
            if let Some(c) = self.carp.as_mut() {
                let _ = c.carpdemote("carp", BULK_DEMOTE, now, out);
            }
            s.request_bulk(now, out);
        }
        if let Some(c) = self.carp.as_mut() {
            c.step_down(now, out);
        }
    }

    /// The timers of a round: the workers' resolve requests and the
    /// resolver's retries; CARP (with `links`, the ports' link state, when
    /// it was polled this round); pfsync (its unicast peer resolved like any
    /// next hop on `syncdev`; the end of a bulk update undemotes CARP).
    pub(super) fn poll(
        &mut self,
        now: Instant,
        links: Option<&[bool]>,
        neighbors: &Neighbors,
        syncdev: u16,
        resolve_rx: &mut [Consumer<ResolveRequest>],
        out: &mut Vec<Out>,
    ) {
        for rx in resolve_rx.iter_mut() {
            while let Some(req) = rx.pop() {
                self.slowpath.resolve(req, now, out);
            }
        }
        self.slowpath.poll(now, out);
        if let Some(c) = self.carp.as_mut() {
            for (i, &up) in links.unwrap_or(&[]).iter().enumerate() {
                c.set_link(i as u16, up, now, out);
            }
            c.poll(now, out);
        }
        if let Some(s) = self.sync.as_mut() {
            if let Some(peer) = s.unicast_peer() {
                let addr = Addr::v4(peer.octets());
                let nb = neighbors.get(Af::Inet, &addr).filter(|n| n.port == syncdev);
                if nb.is_none() {
                    let req = ResolveRequest {
                        af: Af::Inet,
                        addr,
                        port: syncdev,
                    };
                    self.slowpath.resolve(req, now, out);
                }
                s.set_peer_mac(nb.map(|n| n.mac), out);
            }
            if s.poll(now, out) {
                if let Some(c) = self.carp.as_mut() {
                    let _ = c.carpdemote("carp", -BULK_DEMOTE, now, out);
                }
            }
        }
    }
}
