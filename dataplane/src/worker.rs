//! The poll-mode worker loop, shaped like DPDK's l3fwd: one rx queue per
//! port, a stack array of mbuf pointers, buffered tx per port flushed when
//! full and on a ~100 µs TSC deadline, refused mbufs freed, one timestamp
//! per iteration, one stop flag. Nothing in the loop allocates, locks or
//! makes a syscall.
//!
//! Each iteration: receive a burst on every port and decide each packet
//! ([`Pipeline::process`]); packets of flows another worker owns go to that
//! worker's handoff ring (published once per iteration); then drain a
//! bounded slice of the handoff rings from other workers; publish pfsync
//! exports and apply imports; transmit the packets pfsync `defer` held
//! whose state the peer acknowledged (or that waited 20 ms); free the
//! fragments the reassembly table dropped and decide the datagrams it
//! completed (their fragments leave together, or go to their flow's
//! owner chained as one handoff item). On the tx
//! deadline: flush tx buffers, expire a slice of the shard, publish
//! counters, and pick up a new ruleset if its snapshot epoch moved.
//!
//! pfsync packets the box sends are never dropped for a full tx queue:
//! they are kept and offered again each iteration ([`crate::local_tx`]),
//! and taken from the control thread only as fast as they leave. On the
//! receiving side the sync port is left unread while the pfsync slow-path
//! ring is full, so the link makes the sender wait.

use crate::command::CommandPort;
use crate::counters::{DropReason, SharedCounters, Verdict, PFSYNC_CLASS, SLOW_CLASSES};
use crate::defer::DEFER_LIMIT;
use crate::dpdk::{mbuf, rdtsc, MbufRing, PortId, QueueId, RawMbuf};
use crate::frag::FRAGS_PER_DATAGRAM;
use crate::local_tx::{Credits, HeldTx, Taker};
use crate::neighbor_hold::HOLD_SLOTS;
use crate::pipeline::{Arrival, Pipeline, MAX_PORTS};
use crate::ring::{Consumer, Producer};
use crate::route::Neighbors;
use crate::rules::Ruleset;
use crate::snapshot::Snapshot;
use crate::time::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets per rx burst.
pub const BURST: usize = 32;
const _: () = assert!(BURST <= crate::pipeline::MAX_BURST);

/// Imported pfsync records applied per loop.
pub const IMPORT_BUDGET: usize = 64;

/// How long one expiry sweep over the whole shard takes (state timeouts
/// have a resolution of seconds; a state past its timeout is already gone
/// for packets, the sweep frees its slot and exports its deletion).
pub const EXPIRE_SWEEP_NS: u64 = 1_000_000_000;

/// State slots examined per expiry slice (every tx drain of `drain_ns`), so
/// that a shard of `capacity` slots is swept every [`EXPIRE_SWEEP_NS`]: a
/// small table is not rescanned thousands of times a second, a large one
/// keeps up.
pub fn expire_budget(capacity: usize, drain_ns: u64) -> usize {
    let per_drain = (capacity as u128 * drain_ns as u128).div_ceil(EXPIRE_SWEEP_NS as u128);
    per_drain.clamp(16, 1 << 16) as usize
}

/// A packet handed from the worker that received it to the worker that
/// owns its flow.
#[derive(Clone, Copy, Debug)]
pub struct Handoff {
    /// The mbuf (ownership moves with the item).
    pub mbuf: RawMbuf,
    /// The port it was received on, or, with [`LOCAL_OUT`] set, the port a
    /// frame the box sends leaves on.
    pub port: u16,
}

/// [`Handoff::port`] flag: a frame of the box's own, to be filtered `out`
/// ([`Pipeline::process_local_out_owned`]).
pub const LOCAL_OUT: u16 = 0x8000;

/// [`Handoff::port`] flag: sent on by the alias of a translated state's
/// far key to the worker holding the state
/// ([`Pipeline::process_redirected`]); never sent on again.
pub const REDIRECTED: u16 = 0x4000;

/// [`Handoff::port`] flag: the mbuf heads a chain of a reassembled
/// datagram's fragments ([`mbuf::chain`]), decided by
/// [`Pipeline::process_reassembled`] on the worker owning its flow.
pub const REASSEMBLED: u16 = 0x2000;

/// [`Handoff::port`] flag, with [`LOCAL_OUT`]: a frame of the box's own
/// that must not be lost (from the control thread's sync injection ring):
/// kept when its tx queue refuses it ([`crate::local_tx`]).
pub const RELIABLE: u16 = 0x1000;

/// How long a worker leaves its sync port unread while the pfsync
/// slow-path ring has no room (the control thread is slower than the link,
/// or stalled). Past it the port is read again and what does not fit is
/// dropped and counted, so other traffic on that port (a sync port should
/// carry none) waits at most this long.
pub const SYNC_RX_PAUSE_MAX_NS: u64 = 1_000_000_000;

/// A per-port transmit buffer (l3fwd's `tx_mbufs`).
struct TxBuffer {
    len: usize,
    mbufs: [*mut dpdk_sys::rte_mbuf; BURST],
}

impl TxBuffer {
    const fn new() -> TxBuffer {
        TxBuffer {
            len: 0,
            mbufs: [std::ptr::null_mut(); BURST],
        }
    }
}

/// Converts TSC ticks to nanoseconds with one multiply and shift.
#[derive(Clone, Copy, Debug)]
pub struct TscClock {
    ns_per_tick_q32: u64,
}

impl TscClock {
    /// A clock for a TSC of `hz` ticks per second.
    pub fn new(hz: u64) -> TscClock {
        let hz = hz.max(1);
        TscClock {
            ns_per_tick_q32: ((1_000_000_000u128 << 32) / hz as u128) as u64,
        }
    }

    /// The instant of TSC value `tsc`.
    #[inline(always)]
    pub fn instant(&self, tsc: u64) -> Instant {
        Instant(((tsc as u128 * self.ns_per_tick_q32 as u128) >> 32) as u64)
    }
}

/// Everything one worker owns.
pub struct Worker {
    /// Worker index (also its rx/tx queue on every port).
    pub index: usize,
    /// Ports to poll.
    pub ports: Vec<PortId>,
    /// The decision logic (owns the state shard).
    pub pipeline: Pipeline,
    /// Where published counters go.
    pub shared: Arc<SharedCounters>,
    /// Slow-path rings to the control thread, by [`Punt::class`] (CARP;
    /// pfsync; ARP and ND; the rest), if any: a flood of one class cannot
    /// fill the ring of another.
    pub slow_path: [Option<Arc<MbufRing>>; SLOW_CLASSES],
    /// The ruleset snapshot the control thread publishes.
    pub rules: Arc<Snapshot<Ruleset>>,
    /// Handoff rings to each other worker (`None` at this worker's index).
    pub handoff_out: Vec<Option<Producer<Handoff>>>,
    /// Handoff rings from the other workers.
    pub handoff_in: Vec<Consumer<Handoff>>,
    /// Operator commands from the control thread.
    pub commands: Option<CommandPort>,
    /// Router mode: the neighbour snapshot the control thread publishes.
    pub neighbors: Option<Arc<Snapshot<Neighbors>>>,
    /// Frames the control thread sends (drained by one worker; each mbuf's
    /// `port` field names its egress port).
    pub inject: Option<Arc<MbufRing>>,
    /// pfsync packets the control thread sends (drained by the same worker
    /// as `inject`, only as many as every worker can hold, see
    /// [`crate::local_tx`]): never dropped for a full tx queue.
    pub inject_sync: Option<Arc<MbufRing>>,
    /// Frames of `inject_sync` each worker has finished (with `[pfsync]`).
    pub credits: Option<Arc<Credits>>,
    /// TSC ticks between tx drains (~100 µs).
    pub drain_ticks: u64,
    /// TSC-to-nanoseconds conversion.
    pub clock: TscClock,
}

impl Worker {
    /// Runs until `stop` is set. Returns 0.
    pub fn run(mut self, stop: &AtomicBool) -> i32 {
        let queue = QueueId(self.index as u16);
        let mut tx: [TxBuffer; MAX_PORTS] = [const { TxBuffer::new() }; MAX_PORTS];
        let mut rx: [*mut dpdk_sys::rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        let mut verdicts = [Verdict::Drop(DropReason::Unclassified); BURST];
        let mut handed: [Handoff; BURST] = [Handoff {
            mbuf: RawMbuf(std::ptr::null_mut()),
            port: 0,
        }; BURST];
        let mut slow: [[RawMbuf; BURST]; SLOW_CLASSES] =
            [[RawMbuf(std::ptr::null_mut()); BURST]; SLOW_CLASSES];
        let mut ports = [PortId(0); MAX_PORTS];
        let nports = self.ports.len().min(MAX_PORTS);
        ports[..nports].copy_from_slice(&self.ports[..nports]);
        let mut rules_epoch = self.rules.epoch();
        let mut neighbors_epoch = self.neighbors.as_ref().map_or(0, |n| n.epoch());
        let mut injected: [RawMbuf; BURST] = [RawMbuf(std::ptr::null_mut()); BURST];
        // pfsync `defer`: packets held by slot until the pipeline releases
        // them (`Verdict::Hold`), and the slots released in one round.
        let mut held: [*mut dpdk_sys::rte_mbuf; DEFER_LIMIT] = [std::ptr::null_mut(); DEFER_LIMIT];
        let mut released: [(u16, u16); DEFER_LIMIT] = [(0, 0); DEFER_LIMIT];
        // Router mode: packets waiting for their next hop's MAC, by slot.
        let mut awaiting: [*mut dpdk_sys::rte_mbuf; HOLD_SLOTS] =
            [std::ptr::null_mut(); HOLD_SLOTS];
        let mut resolved: [(u16, u16, Option<[u8; 6]>); HOLD_SLOTS] = [(0, 0, None); HOLD_SLOTS];
        // Fragments under reassembly, by reassembly-table entry (allocated
        // once, before the loop).
        let mut frag_mbufs: Vec<*mut dpdk_sys::rte_mbuf> =
            vec![std::ptr::null_mut(); self.pipeline.fragment_capacity()];
        // Frames that must not be lost, refused by their tx queue and
        // kept; the taker's count of what it gave each worker.
        let mut keep: HeldTx<*mut dpdk_sys::rte_mbuf> = HeldTx::new(std::ptr::null_mut());
        let mut kept_published = 0u64;
        let mut taker = self.credits.as_ref().map(|c| Taker::new(c.workers()));
        // The pfsync sync port: read only while the pfsync slow-path ring
        // has room (for at most SYNC_RX_PAUSE_MAX_NS).
        let sync_port = self.pipeline.syncdev();
        let mut sync_paused_since: Option<Instant> = None;
        let mut next_drain = rdtsc() + self.drain_ticks;
        let expire_slots = expire_budget(
            self.pipeline.shard().capacity(),
            self.clock.instant(self.drain_ticks).0,
        );
        while !stop.load(Ordering::Relaxed) {
            let tsc = rdtsc();
            let now = self.clock.instant(tsc);
            // Busy time is counted from the end of the previous burst's
            // work (or the iteration start), so two busy ports are not
            // counted twice.
            let mut mark = tsc;
            for &port in &ports[..nports] {
                if Some(port.0) == sync_port && self.sync_rx_must_wait(now, &mut sync_paused_since)
                {
                    self.pipeline.counters.sync_rx_paused += 1;
                    continue;
                }
                // SAFETY: the port is started with rx queue `queue` owned by
                // this worker alone; `rx` has room for BURST pointers.
                let n = unsafe {
                    dpdk_sys::dpf_eth_rx_burst(port.0, queue.0, rx.as_mut_ptr(), BURST as u16)
                } as usize;
                if n == 0 {
                    continue;
                }
                let mut slow_len = [0usize; SLOW_CLASSES];
                self.pipeline.counters.rx += n as u64;
                self.pipeline.counters.bursts += 1;
                let mut frames: [&mut [u8]; BURST] = Default::default();
                for (f, &m) in frames.iter_mut().zip(&rx[..n]) {
                    // SAFETY: rx_burst returned n valid mbufs now owned by
                    // this worker; each frame is borrowed once, until the
                    // verdicts are acted on below.
                    *f = unsafe { mbuf::raw_data_mut(m) };
                    self.pipeline.counters.rx_bytes += f.len() as u64;
                }
                self.pipeline
                    .process_burst(&mut frames[..n], port.0, now, &mut verdicts[..n]);
                for (i, (&m, &verdict)) in rx[..n].iter().zip(&verdicts[..n]).enumerate() {
                    match verdict {
                        Verdict::Forward(out) => {
                            push_tx(&mut tx, out, m, queue, &mut self.pipeline);
                        }
                        Verdict::SlowPath(punt) => {
                            // SAFETY: we own m until it is enqueued.
                            unsafe { mbuf::set_raw_tag(m, punt as u32) };
                            let c = punt.class();
                            slow[c][slow_len[c]] = RawMbuf(m);
                            slow_len[c] += 1;
                        }
                        Verdict::Handoff(owner) => {
                            self.hand_off(owner, m, port.0);
                        }
                        Verdict::Reply(out) => {
                            send_reply(&mut tx, out, m, queue, &mut self.pipeline, i);
                        }
                        Verdict::Hold(slot) => held[slot as usize % DEFER_LIMIT] = m,
                        Verdict::AwaitNeighbor(slot) => awaiting[slot as usize % HOLD_SLOTS] = m,
                        Verdict::Reassembly(e) => keep_fragment(&mut frag_mbufs, e, m),
                        Verdict::Drop(_) => {
                            // SAFETY: we own m; freed once.
                            unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
                        }
                    }
                }
                for c in 0..SLOW_CLASSES {
                    if slow_len[c] > 0 {
                        self.enqueue_slow_path(c, &slow[c][..slow_len[c]]);
                    }
                }
                let end = rdtsc();
                self.pipeline.counters.busy_cycles += end - mark;
                self.pipeline.counters.burst_cycles.record(end - mark);
                mark = end;
            }
            for p in self.handoff_out.iter_mut().flatten() {
                p.publish();
            }
            self.pipeline.publish_requests();
            self.pipeline.poll_aliases();
            self.pipeline.sync_poll(now, IMPORT_BUDGET);
            let n = self
                .inject
                .as_ref()
                .map_or(0, |ring| ring.dequeue_burst(&mut injected));
            for m in &injected[..n] {
                // SAFETY: dequeued mbufs are ours; reading the port field.
                let out = unsafe { (*m.0).port };
                // SAFETY: we own the mbuf; its frame is borrowed until the
                // verdict is acted on.
                let frame = unsafe { mbuf::raw_data_mut(m.0) };
                // The box's own frames obey the `out` rules like any other.
                match self.pipeline.process_local_out(frame, out, now) {
                    Verdict::Forward(p) => push_tx(&mut tx, p, m.0, queue, &mut self.pipeline),
                    Verdict::Handoff(owner) => {
                        self.hand_off(owner, m.0, out | LOCAL_OUT);
                    }
                    _ => {
                        // SAFETY: we own m; freed once.
                        unsafe { dpdk_sys::dpf_pktmbuf_free(m.0) };
                    }
                }
            }
            if let Some(taker) = taker.as_mut() {
                if let Some(ring) = self.inject_sync.take() {
                    self.take_sync_frames(&ring, taker, &mut injected, &mut keep, now);
                    self.inject_sync = Some(ring);
                }
            }
            for ring in 0..self.handoff_in.len() {
                let n = self.handoff_in[ring].pop_batch(&mut handed);
                for h in &handed[..n] {
                    if h.port & REASSEMBLED != 0 {
                        let mut ms = [std::ptr::null_mut(); FRAGS_PER_DATAGRAM];
                        // SAFETY: the handing worker gave up the whole
                        // chain when it pushed it.
                        let k = unsafe { mbuf::unchain(h.mbuf.0, &mut ms) };
                        let arrival = if h.port & REDIRECTED != 0 {
                            Arrival::Redirected
                        } else {
                            Arrival::Owned
                        };
                        let port = h.port & !(REASSEMBLED | REDIRECTED);
                        self.decide_reassembled(&ms[..k], port, arrival, &mut tx, queue, now);
                        continue;
                    }
                    // SAFETY: the handing worker gave up ownership of the
                    // mbuf when it pushed it; we are its only owner now.
                    let frame = unsafe { mbuf::raw_data_mut(h.mbuf.0) };
                    if h.port & RELIABLE != 0 {
                        let out = h.port & !(LOCAL_OUT | RELIABLE);
                        let verdict = self.pipeline.process_local_out_owned(frame, out, now);
                        self.keep_local(verdict, h.mbuf.0, &mut keep, now);
                        continue;
                    }
                    let verdict = if h.port & LOCAL_OUT != 0 {
                        self.pipeline
                            .process_local_out_owned(frame, h.port & !LOCAL_OUT, now)
                    } else if h.port & REDIRECTED != 0 {
                        self.pipeline
                            .process_redirected(frame, h.port & !REDIRECTED, now)
                    } else {
                        self.pipeline.process_owned(frame, h.port, now)
                    };
                    match verdict {
                        Verdict::Forward(out) => {
                            push_tx(&mut tx, out, h.mbuf.0, queue, &mut self.pipeline);
                        }
                        Verdict::Reply(out) => {
                            send_reply(&mut tx, out, h.mbuf.0, queue, &mut self.pipeline, 0);
                        }
                        Verdict::Hold(slot) => held[slot as usize % DEFER_LIMIT] = h.mbuf.0,
                        Verdict::AwaitNeighbor(slot) => {
                            awaiting[slot as usize % HOLD_SLOTS] = h.mbuf.0
                        }
                        Verdict::Reassembly(e) => keep_fragment(&mut frag_mbufs, e, h.mbuf.0),
                        // Traffic to the box that the rules let in on its
                        // flow's owner.
                        Verdict::SlowPath(punt) => {
                            // SAFETY: we own the handed mbuf.
                            unsafe { mbuf::set_raw_tag(h.mbuf.0, punt as u32) };
                            self.enqueue_slow_path(punt.class(), &[h.mbuf]);
                        }
                        // The far key of a translated state held by another
                        // worker (an alias): sent on once, marked so it is
                        // decided there.
                        Verdict::Handoff(owner) if h.port & (LOCAL_OUT | REDIRECTED) == 0 => {
                            self.hand_off(owner, h.mbuf.0, h.port | REDIRECTED);
                        }
                        _ => {
                            // SAFETY: we own it; freed once. (Redirected and
                            // local frames are never handed off again.)
                            unsafe { dpdk_sys::dpf_pktmbuf_free(h.mbuf.0) };
                        }
                    }
                }
            }
            if !keep.is_empty() {
                self.flush_kept(&mut keep, queue, now);
            }
            if keep.done() != kept_published {
                kept_published = keep.done();
                if let Some(c) = self.credits.as_ref() {
                    c.publish_done(self.index, kept_published);
                }
            }
            self.drain_fragments(&mut frag_mbufs, &mut tx, queue, now);
            let mut n_released = 0;
            self.pipeline.release_deferred(now, |slot, port| {
                released[n_released] = (slot, port);
                n_released += 1;
            });
            for &(slot, port) in &released[..n_released] {
                let m =
                    std::mem::replace(&mut held[slot as usize % DEFER_LIMIT], std::ptr::null_mut());
                if !m.is_null() {
                    push_tx(&mut tx, port, m, queue, &mut self.pipeline);
                }
            }
            let mut n_resolved = 0;
            self.pipeline.release_awaiting(now, |slot, port, mac| {
                resolved[n_resolved] = (slot, port, mac);
                n_resolved += 1;
            });
            for &(slot, port, mac) in &resolved[..n_resolved] {
                let m = std::mem::replace(
                    &mut awaiting[slot as usize % HOLD_SLOTS],
                    std::ptr::null_mut(),
                );
                if m.is_null() {
                    continue;
                }
                match mac {
                    Some(mac) => {
                        // SAFETY: a held packet is ours alone; its frame was
                        // checked to hold an Ethernet header when decided.
                        let frame = unsafe { mbuf::raw_data_mut(m) };
                        if let Some(dst) = frame.get_mut(0..6) {
                            dst.copy_from_slice(&mac);
                        }
                        push_tx(&mut tx, port, m, queue, &mut self.pipeline);
                    }
                    // SAFETY: ours alone; freed once.
                    None => unsafe { dpdk_sys::dpf_pktmbuf_free(m) },
                }
            }
            if tsc >= next_drain {
                for (p, buf) in tx.iter_mut().enumerate() {
                    flush_tx(buf, p as u16, queue, &mut self.pipeline);
                }
                self.pipeline.expire(now, expire_slots);
                self.drain_fragments(&mut frag_mbufs, &mut tx, queue, now);
                if let Some(c) = self.commands.as_mut() {
                    c.poll(&mut self.pipeline);
                }
                let epoch = self.rules.epoch();
                if epoch != rules_epoch {
                    rules_epoch = epoch;
                    self.pipeline.set_rules(self.rules.load());
                }
                if let Some(n) = self.neighbors.as_ref() {
                    let epoch = n.epoch();
                    if epoch != neighbors_epoch {
                        neighbors_epoch = epoch;
                        self.pipeline.set_neighbors(n.load());
                    }
                }
                self.shared.publish(self.index, &self.pipeline.counters);
                next_drain = tsc + self.drain_ticks;
            }
        }
        for (p, buf) in tx.iter_mut().enumerate() {
            flush_tx(buf, p as u16, queue, &mut self.pipeline);
        }
        self.flush_kept(&mut keep, queue, self.clock.instant(rdtsc()));
        for m in held
            .iter()
            .chain(keep.held())
            .chain(awaiting.iter())
            .chain(frag_mbufs.iter())
            .filter(|m| !m.is_null())
        {
            // SAFETY: a held packet is ours alone; freed once at shutdown.
            unsafe { dpdk_sys::dpf_pktmbuf_free(*m) };
        }
        for p in self.handoff_out.iter_mut().flatten() {
            p.publish();
        }
        self.shared.publish(self.index, &self.pipeline.counters);
        0
    }

    /// Takes pfsync frames from the control thread, only as many as every
    /// worker can still hold, filters them `out` and keeps them (or hands
    /// them to their flow's owner, which keeps them).
    fn take_sync_frames(
        &mut self,
        ring: &MbufRing,
        taker: &mut Taker,
        buf: &mut [RawMbuf; BURST],
        keep: &mut HeldTx<*mut dpdk_sys::rte_mbuf>,
        now: Instant,
    ) {
        let Some(credits) = self.credits.as_ref() else {
            return;
        };
        let mut room = taker.room(credits, BURST);
        // Room in every handoff ring too (only this worker pushes to them,
        // so the room stays): a frame whose flow another worker owns is
        // never dropped for a full handoff ring.
        for p in self.handoff_out.iter_mut().flatten() {
            if room == 0 {
                break;
            }
            room = room.min(p.free_slots());
        }
        if room == 0 {
            return;
        }
        let n = ring.dequeue_burst(&mut buf[..room]);
        for m in &buf[..n] {
            // SAFETY: dequeued mbufs are ours; reading the port field.
            let out = unsafe { (*m.0).port };
            // SAFETY: we own the mbuf; its frame is borrowed until the
            // verdict is acted on.
            let frame = unsafe { mbuf::raw_data_mut(m.0) };
            match self.pipeline.process_local_out(frame, out, now) {
                Verdict::Handoff(owner) => {
                    if self.hand_off(owner, m.0, out | LOCAL_OUT | RELIABLE) {
                        taker.gave(owner as usize);
                    }
                }
                verdict => {
                    taker.gave(self.index);
                    self.keep_local(verdict, m.0, keep, now);
                }
            }
        }
    }

    /// Holds a frame that must not be lost if the rules let it out, else
    /// frees it; either way it counts toward this worker's credits.
    fn keep_local(
        &mut self,
        verdict: Verdict,
        m: *mut dpdk_sys::rte_mbuf,
        keep: &mut HeldTx<*mut dpdk_sys::rte_mbuf>,
        now: Instant,
    ) {
        let refused = match verdict {
            Verdict::Forward(port) if (port as usize) < MAX_PORTS => {
                keep.push(m, port, now).is_err()
            }
            Verdict::Forward(_) => {
                self.pipeline.counters.drop(DropReason::NoEgress);
                true
            }
            _ => true,
        };
        if refused {
            keep.finish_unsent();
            // SAFETY: we own m; freed once.
            unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
        }
    }

    /// Offers the held frames to their tx queues again.
    fn flush_kept(
        &mut self,
        keep: &mut HeldTx<*mut dpdk_sys::rte_mbuf>,
        queue: QueueId,
        now: Instant,
    ) {
        let f = keep.flush(
            now,
            |port, frames| {
                // SAFETY: tx queue `queue` of `port` belongs to this
                // worker; the frames are mbufs we own; tx_burst takes the
                // ones it accepts.
                unsafe {
                    dpdk_sys::dpf_eth_tx_burst(
                        port,
                        queue.0,
                        frames.as_mut_ptr(),
                        frames.len() as u16,
                    ) as usize
                }
            },
            // SAFETY: a stale held frame is ours alone; freed once.
            |m| unsafe { dpdk_sys::dpf_pktmbuf_free(m) },
        );
        self.pipeline.counters.tx += f.sent as u64;
        self.pipeline.counters.local_tx_waits += f.began_wait as u64;
        for _ in 0..f.stale {
            self.pipeline.counters.drop(DropReason::TxFull);
        }
    }

    /// Whether the sync port must stay unread this iteration: the pfsync
    /// slow-path ring lacks room for a burst, and has for less than
    /// [`SYNC_RX_PAUSE_MAX_NS`].
    fn sync_rx_must_wait(&self, now: Instant, since: &mut Option<Instant>) -> bool {
        let Some(Some(ring)) = self.slow_path.get(PFSYNC_CLASS) else {
            return false;
        };
        if ring.free() >= BURST {
            *since = None;
            return false;
        }
        let start = *since.get_or_insert(now);
        now.0.saturating_sub(start.0) < SYNC_RX_PAUSE_MAX_NS
    }

    /// Hands `m` to worker `owner`; false (freed and counted) when its
    /// ring is full.
    #[inline]
    fn hand_off(&mut self, owner: u16, m: *mut dpdk_sys::rte_mbuf, port: u16) -> bool {
        let item = Handoff {
            mbuf: RawMbuf(m),
            port,
        };
        let pushed = match self.handoff_out.get_mut(owner as usize) {
            Some(Some(p)) => p.push(item).is_ok(),
            _ => false,
        };
        if !pushed {
            self.pipeline.counters.handed_off -= 1;
            self.pipeline.counters.drop(DropReason::HandoffRingFull);
            // SAFETY: the ring refused it; we still own it.
            unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
        }
        pushed
    }

    /// Frees the fragments the reassembly table dropped, then decides
    /// every datagram it completed.
    fn drain_fragments(
        &mut self,
        frag_mbufs: &mut [*mut dpdk_sys::rte_mbuf],
        tx: &mut [TxBuffer; MAX_PORTS],
        queue: QueueId,
        now: Instant,
    ) {
        self.pipeline.release_fragments(|e| {
            if let Some(m) = frag_mbufs.get_mut(e as usize) {
                let m = std::mem::replace(m, std::ptr::null_mut());
                if !m.is_null() {
                    // SAFETY: a held fragment is ours alone; freed once.
                    unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
                }
            }
        });
        let mut entries = [0u32; FRAGS_PER_DATAGRAM];
        let mut ms = [std::ptr::null_mut(); FRAGS_PER_DATAGRAM];
        while let Some(ready) = self.pipeline.next_reassembled(&mut entries) {
            let mut k = 0;
            for &e in &entries[..ready.fragments] {
                if let Some(m) = frag_mbufs.get_mut(e as usize) {
                    let m = std::mem::replace(m, std::ptr::null_mut());
                    if !m.is_null() {
                        ms[k] = m;
                        k += 1;
                    }
                }
            }
            if k != ready.fragments {
                for &m in &ms[..k] {
                    // SAFETY: ours alone; freed once.
                    unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
                }
                self.pipeline.counters.drops[DropReason::Unclassified as usize] += k as u64;
                continue;
            }
            self.decide_reassembled(
                &ms[..k],
                ready.in_port,
                Arrival::Reassembled,
                tx,
                queue,
                now,
            );
        }
    }

    /// Decides a reassembled datagram given as its fragment mbufs (in
    /// offset order) and acts on the verdict: every fragment out, the
    /// answer in place of the first, the chain to the flow's owner, or
    /// all freed.
    fn decide_reassembled(
        &mut self,
        ms: &[*mut dpdk_sys::rte_mbuf],
        port: u16,
        arrival: Arrival,
        tx: &mut [TxBuffer; MAX_PORTS],
        queue: QueueId,
        now: Instant,
    ) {
        let n = ms.len().min(FRAGS_PER_DATAGRAM);
        let mut frames: [&mut [u8]; FRAGS_PER_DATAGRAM] =
            std::array::from_fn(|_| Default::default());
        for (f, &m) in frames.iter_mut().zip(&ms[..n]) {
            // SAFETY: each fragment mbuf is ours alone and borrowed once,
            // until the verdict is acted on.
            *f = unsafe { mbuf::raw_data_mut(m) };
        }
        let verdict = self
            .pipeline
            .process_reassembled(&mut frames[..n], port, now, arrival);
        match verdict {
            Verdict::Forward(out) => {
                for &m in &ms[..n] {
                    push_tx(tx, out, m, queue, &mut self.pipeline);
                }
            }
            Verdict::Reply(out) if n > 0 => {
                for &m in &ms[1..n] {
                    // SAFETY: ours alone; freed once.
                    unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
                }
                send_reply(tx, out, ms[0], queue, &mut self.pipeline, 0);
            }
            Verdict::Handoff(owner) if arrival != Arrival::Redirected => {
                let flags = match arrival {
                    Arrival::Reassembled => REASSEMBLED,
                    _ => REASSEMBLED | REDIRECTED,
                };
                // SAFETY: the fragments are ours alone; the chain takes
                // them all.
                let Some(head) = (unsafe { mbuf::chain(&ms[..n]) }) else {
                    return;
                };
                let item = Handoff {
                    mbuf: RawMbuf(head),
                    port: port | flags,
                };
                let pushed = match self.handoff_out.get_mut(owner as usize) {
                    Some(Some(p)) => p.push(item).is_ok(),
                    _ => false,
                };
                if !pushed {
                    self.pipeline.counters.handed_off -= 1;
                    self.pipeline.counters.drops[DropReason::HandoffRingFull as usize] += n as u64;
                    // SAFETY: the ring refused it; freeing the head frees
                    // the chain.
                    unsafe { dpdk_sys::dpf_pktmbuf_free(head) };
                }
            }
            _ => {
                for &m in &ms[..n] {
                    // SAFETY: ours alone; freed once.
                    unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
                }
            }
        }
    }

    fn enqueue_slow_path(&mut self, class: usize, mbufs: &[RawMbuf]) {
        let taken = match self.slow_path.get(class) {
            Some(Some(ring)) => ring.enqueue_burst(mbufs),
            _ => 0,
        };
        for m in &mbufs[taken..] {
            self.pipeline.counters.drop(DropReason::SlowPathRingFull);
            // SAFETY: the ring refused it; we still own it.
            unsafe { dpdk_sys::dpf_pktmbuf_free(m.0) };
        }
    }
}

/// Keeps a fragment the reassembly table took at `entry` (freed if the
/// entry is out of range, which the table never gives).
#[inline]
fn keep_fragment(
    frag_mbufs: &mut [*mut dpdk_sys::rte_mbuf],
    entry: u32,
    m: *mut dpdk_sys::rte_mbuf,
) {
    match frag_mbufs.get_mut(entry as usize) {
        Some(slot) => *slot = m,
        // SAFETY: we own m; freed once.
        None => unsafe { dpdk_sys::dpf_pktmbuf_free(m) },
    }
}

/// Turns `m` into the pipeline's `block return` answer for frame `index`
/// of the burst and queues it on `port`. The mbuf is reused: no allocation.
fn send_reply(
    tx: &mut [TxBuffer; MAX_PORTS],
    port: u16,
    m: *mut dpdk_sys::rte_mbuf,
    queue: QueueId,
    pipeline: &mut Pipeline,
    index: usize,
) {
    let reply_len = pipeline.reply(index).len();
    // SAFETY: we own m (single segment); reading its length fields.
    let cur = unsafe { (*m).data_len } as usize;
    // SAFETY: we own m; append/trim adjust data_len/pkt_len within the
    // buffer and fail (return null / -1) when there is no room.
    let resized = unsafe {
        if reply_len > cur {
            !dpdk_sys::dpf_pktmbuf_append(m, (reply_len - cur) as u16).is_null()
        } else {
            dpdk_sys::dpf_pktmbuf_trim(m, (cur - reply_len) as u16) == 0
        }
    };
    if !resized {
        // SAFETY: we own m; freed once.
        unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
        return;
    }
    // SAFETY: we own m exclusively; its data is now reply_len bytes.
    let data = unsafe { mbuf::raw_data_mut(m) };
    data.copy_from_slice(pipeline.reply(index));
    push_tx(tx, port, m, queue, pipeline);
}

#[inline(always)]
fn push_tx(
    tx: &mut [TxBuffer; MAX_PORTS],
    port: u16,
    m: *mut dpdk_sys::rte_mbuf,
    queue: QueueId,
    pipeline: &mut Pipeline,
) {
    let Some(buf) = tx.get_mut(port as usize) else {
        pipeline.counters.drop(DropReason::NoEgress);
        // SAFETY: we own m.
        unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
        return;
    };
    buf.mbufs[buf.len] = m;
    buf.len += 1;
    if buf.len == BURST {
        flush_tx(buf, port, queue, pipeline);
    }
}

#[inline]
fn flush_tx(buf: &mut TxBuffer, port: u16, queue: QueueId, pipeline: &mut Pipeline) {
    if buf.len == 0 {
        return;
    }
    // SAFETY: tx queue `queue` of `port` belongs to this worker; the first
    // buf.len pointers are mbufs we own; tx_burst takes ownership of the
    // ones it accepts.
    let sent = unsafe {
        dpdk_sys::dpf_eth_tx_burst(port, queue.0, buf.mbufs.as_mut_ptr(), buf.len as u16)
    } as usize;
    pipeline.counters.tx += sent as u64;
    for &m in &buf.mbufs[sent..buf.len] {
        pipeline.counters.drop(DropReason::TxFull);
        // SAFETY: refused by tx_burst, still ours; freed once.
        unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
    }
    buf.len = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_budget_sweeps_the_shard_once_a_second() {
        // 1M states, a drain every 100 µs: 100 slots a drain, 10,000 drains
        // a second.
        assert_eq!(expire_budget(1_000_000, 100_000), 100);
        // Small tables get the floor, huge ones the ceiling.
        assert_eq!(expire_budget(10_000, 100_000), 16);
        assert_eq!(expire_budget(1 << 28, 1_000_000), 1 << 16);
    }

    #[test]
    fn tsc_clock_converts_ticks_to_ns() {
        let c = TscClock::new(2_500_000_000);
        assert_eq!(c.instant(2_500_000_000).0, 999_999_999);
        assert_eq!(c.instant(0).0, 0);
    }
}
