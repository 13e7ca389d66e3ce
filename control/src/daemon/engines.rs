//! The control plane's engines — CARP, pfsync and the router's slow path —
//! and what the control loop does with them each round, every part with a
//! bound: the slow-path rings are served in class order (CARP; pfsync;
//! ARP and ND; the rest) with a budget each, then the timers run (neighbour
//! resolution, CARP with the ports' link state, pfsync with its unicast
//! peer's MAC). A box that finds it was stalled steps down and resyncs.
//! A bulk update's table is collected from the workers a bounded number
//! of replies per round ([`BulkCollect`]), so CARP's timers keep running
//! while a million states are gathered.
//! The loop itself (sleeping, the control socket, the injection queue)
//! is in the module above.

use super::SLOW_BUDGETS;
use crate::carp::engine::Carp;
use crate::log::Level;
use crate::pfsync::engine::{Sync, SyncEvent, BULK_DEMOTE};
use crate::slowpath::{Out, SlowPath};
use dataplane::command::{Command, CommandClient, Reply, Ticket};
use dataplane::counters::{Punt, SLOW_CLASSES};
use dataplane::dpdk::{Mbuf, MbufRing, RawMbuf};
use dataplane::flow::{Addr, Af};
use dataplane::ring::Consumer;
use dataplane::route::{Neighbors, ResolveRequest};
use dataplane::state::{State, Translation};
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
    /// The table being collected for a bulk update the peer asked for.
    pub bulk: Option<BulkCollect>,
    /// CARP is demoted by [`BULK_DEMOTE`] until our bulk update ends (each
    /// demotion undone once, never more).
    pub bulk_demoted: bool,
}

/// Replies a bulk collection takes off the workers' rings per round.
const BULK_REPLIES_PER_ROUND: usize = 16384;

/// A bulk collection gives up (logged; the peer asks again) when no worker
/// answered for this long.
const BULK_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every state of every worker, gathered for a pfsync bulk update a
/// bounded number of replies per control round (taking only its own
/// replies, so a `dpfctl` listing on the same rings is not disturbed).
pub(super) struct BulkCollect {
    /// Per worker: the ListStates ticket and whether it ended.
    tickets: Vec<(Ticket, bool)>,
    states: Vec<(State, Translation)>,
    last_reply: std::time::Instant,
}

impl BulkCollect {
    /// Asks every worker for its states; `None` (logged) when a command
    /// ring is full (the peer asks again).
    pub(super) fn start(clients: &mut [CommandClient]) -> Option<BulkCollect> {
        let mut tickets = Vec::with_capacity(clients.len());
        for (w, c) in clients.iter_mut().enumerate() {
            match c.send(Command::ListStates) {
                Ok(t) => tickets.push((t, false)),
                Err(_) => {
                    for ((t, _), c) in tickets.iter().zip(clients.iter_mut()) {
                        c.abandon(*t);
                    }
                    crate::log!(
                        Level::Warning,
                        "pfsync bulk update not started: worker {w}'s command ring is full"
                    );
                    return None;
                }
            }
        }
        Some(BulkCollect {
            tickets,
            states: Vec::new(),
            last_reply: std::time::Instant::now(),
        })
    }

    /// Takes at most `budget` replies. `Ok(true)` once every worker has
    /// sent all its states; `Err` (the rest abandoned) when the workers
    /// stopped answering: a bulk update never ends on a partial table.
    fn pump(&mut self, clients: &mut [CommandClient], budget: usize) -> Result<bool, String> {
        let mut taken = 0;
        for (c, (ticket, done)) in clients.iter_mut().zip(self.tickets.iter_mut()) {
            while !*done && taken < budget {
                let Some(r) = c.recv_for(*ticket) else { break };
                taken += 1;
                *done = r.is_terminator();
                if let Reply::State(st, tr) = r {
                    self.states.push((st, tr));
                }
            }
        }
        if self.tickets.iter().all(|(_, d)| *d) {
            return Ok(true);
        }
        if taken > 0 {
            self.last_reply = std::time::Instant::now();
        } else if self.last_reply.elapsed() > BULK_REPLY_TIMEOUT {
            for (c, (ticket, done)) in clients.iter_mut().zip(self.tickets.iter()) {
                if !*done {
                    c.abandon(*ticket);
                }
            }
            return Err(format!(
                "the workers stopped answering ({} states collected)",
                self.states.len()
            ));
        }
        Ok(false)
    }
}

impl Engines {
    /// Takes what the workers punted, CARP first, then pfsync, each ring
    /// within its budget, and hands every frame to its engine by the reason
    /// the worker gave (no parsing here). Returns whether anything came
    /// and whether a ring used its whole budget (more may be waiting).
    pub(super) fn serve_slow_rings(
        &mut self,
        rings: &[Option<Arc<MbufRing>>; SLOW_CLASSES],
        clients: &mut [CommandClient],
        now: Instant,
        out: &mut Vec<Out>,
    ) -> (bool, bool) {
        let mut busy = false;
        let mut full = false;
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
            full |= served >= budget;
        }
        (busy, full)
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
                // Collected over the next rounds (see `Engines::poll`); a
                // request while one is being collected is answered by it.
                SyncEvent::BulkRequested => {
                    if self.bulk.is_none() {
                        self.bulk = BulkCollect::start(clients);
                    }
                }
                SyncEvent::BulkDone => {
                    if let Some(c) = c.filter(|_| self.bulk_demoted) {
                        let _ = c.carpdemote("carp", -BULK_DEMOTE, now, out);
                    }
                    self.bulk_demoted = false;
                }
                SyncEvent::None => {}
            },
            // CARP or pfsync without the engine: nothing answers them.
            (Some(Punt::Carp | Punt::Pfsync), _, _) => {}
            _ => self.slowpath.handle(m.data(), m.port(), now, out),
        }
    }

    /// Demotes CARP by [`BULK_DEMOTE`] until our bulk update ends, unless
    /// it already is.
    pub(super) fn demote_for_bulk(&mut self, now: Instant, out: &mut Vec<Out>) {
        if self.bulk_demoted {
            return;
        }
        if let Some(c) = self.carp.as_mut() {
            // Refused (the operator's demotion is at the ceiling): nothing
            // to undo later, and the box stays demoted anyway.
            self.bulk_demoted = c.carpdemote("carp", BULK_DEMOTE, now, out).is_ok();
        }
    }

    /// The box was stalled (its control thread, or the whole process).
    /// Long enough for the peer's sync port to give up waiting for it
    /// ([`dataplane::local_tx::STALE_NS`]: the peer dropped pfsync packets
    /// meant for us): ask for a bulk update, even while one is under way (the
    /// stall may have cost part of it, and a request restarts the peer's). A
    /// BACKUP stays demoted until it ends (as at start), so it never takes
    /// over with the gap; a MASTER keeps its role (the peer, being BACKUP,
    /// has the states it sent). With `step_down` (stalled long enough for
    /// the peer to have taken over, and our table missed its updates):
    /// every MASTER vhid becomes BACKUP too, demoted until the bulk update
    /// ends, then preemption brings mastership back with a whole table.
    pub(super) fn resync_after_stall(&mut self, step_down: bool, now: Instant, out: &mut Vec<Out>) {
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        s.request_bulk(now, out);
        if step_down || !self.carp.as_ref().is_some_and(Carp::any_master) {
            self.demote_for_bulk(now, out);
        }
        if step_down {
            if let Some(c) = self.carp.as_mut() {
                c.step_down(now, out);
            }
        }
    }

    /// Advances the bulk update's collection by a bounded number of
    /// replies; sends the update once the whole table is in.
    pub(super) fn pump_bulk(&mut self, clients: &mut [CommandClient], out: &mut Vec<Out>) {
        if let (Some(s), Some(b)) = (self.sync.as_mut(), self.bulk.as_mut()) {
            match b.pump(clients, BULK_REPLIES_PER_ROUND) {
                Ok(false) => {}
                Ok(true) => {
                    let states = std::mem::take(&mut b.states);
                    self.bulk = None;
                    s.send_bulk(states, out);
                }
                Err(e) => {
                    crate::log!(Level::Warning, "pfsync bulk update not sent: {e}");
                    self.bulk = None;
                }
            }
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
                if let Some(c) = self.carp.as_mut().filter(|_| self.bulk_demoted) {
                    let _ = c.carpdemote("carp", -BULK_DEMOTE, now, out);
                }
                self.bulk_demoted = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::command::{command_channel, CommandPort};
    use dataplane::flow::{proto, FlowKey};
    use dataplane::pipeline::{Pipeline, PipelineConfig};
    use dataplane::rules::{RuleEnv, Ruleset};
    use dataplane::state::Shard;

    /// A worker's pipeline with `n` states and its command rings.
    fn worker(n: u32) -> (Pipeline, CommandPort, CommandClient) {
        let mut shard = Shard::new(n as usize * 2, 0).unwrap();
        for i in 0..n {
            let (key, swapped) = FlowKey::from_packet(
                Af::Inet,
                proto::UDP,
                Addr::v4([10, 0, (i >> 8) as u8, i as u8]),
                1000,
                Addr::v4([192, 0, 2, 1]),
                53,
            );
            let id = shard.alloc_id();
            shard
                .insert(State::new(key, swapped, id, 7, Instant::from_secs(1)))
                .unwrap();
        }
        let env = RuleEnv {
            interfaces: &[],
            self_addrs: &[],
            names: &[],
        };
        let rules = std::sync::Arc::new(Ruleset::compile("", "t", &env).unwrap());
        let (port, client) = command_channel(1024);
        (
            Pipeline::new(PipelineConfig::default(), rules, shard),
            port,
            client,
        )
    }

    #[test]
    fn a_bulk_collection_takes_a_bounded_share_of_each_round() {
        let (mut p, mut port, client) = worker(5000);
        let mut clients = vec![client];
        // A `dpfctl -s states` asked first, on the same ring: its replies
        // are ahead of the collection's and stay its own.
        let listing = clients[0].send(Command::ListStates).unwrap();
        let mut bulk = BulkCollect::start(&mut clients).unwrap();
        let (mut rounds, mut listed, mut listing_done) = (0, 0, false);
        loop {
            port.poll(&mut p);
            let before = bulk.states.len();
            let done = bulk.pump(&mut clients, 100).unwrap();
            assert!(
                bulk.states.len() - before <= 100,
                "a round took more than its budget"
            );
            rounds += 1;
            while let Some(r) = clients[0].recv_for(listing) {
                listing_done |= r.is_terminator();
                listed += usize::from(matches!(r, Reply::State(..)));
            }
            if done {
                break;
            }
            assert!(rounds < 100_000, "the collection never ended");
        }
        assert!(listing_done && listed == 5000, "the listing got {listed}");
        assert_eq!(bulk.states.len(), 5000);
        assert!(
            rounds >= 50,
            "{rounds} rounds for 5000 states at 100 a round"
        );
    }

    #[test]
    fn a_silent_worker_ends_the_collection_without_a_partial_table() {
        let (_p, _port, client) = worker(10);
        let mut clients = vec![client];
        let mut bulk = BulkCollect::start(&mut clients).unwrap();
        assert_eq!(bulk.pump(&mut clients, 100), Ok(false));
        bulk.last_reply = std::time::Instant::now() - BULK_REPLY_TIMEOUT * 2;
        assert!(bulk.pump(&mut clients, 100).is_err());
    }
}
