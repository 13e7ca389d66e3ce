//! pfsync on the wire, on the control thread: drains the workers' export
//! rings, converts each record to pfsync's `pfsync_state` and packs INS,
//! UPD and DEL_C messages into packets up to the sync interface's MTU
//! (sent at once when the loop has nothing more: sub-millisecond
//! propagation); parses received pfsync (spec §1.1 checks in order,
//! counted) and hands each state to the worker that owns its flow through
//! that worker's import ring (deletes go to every worker: DEL_C carries no
//! key). A bulk update (spec §5.6) is requested at start — CARP is demoted
//! by 32 until it completes or times out — and answered by listing every
//! worker's states.
//!
//! Updates of states the peer knows go out compressed (UPD_C, 84 bytes);
//! a state the peer may not know (re-sent after a full export ring, asked
//! for by UPD_REQ) in full (UPD). A received UPD_C is merged by the worker
//! that has the state; when none has it the peer is asked for it with
//! UPD_REQ (spec §5.3). Frames this box sent itself (an af_packet port sees
//! its own transmissions) are ignored by source MAC, so updates the peer
//! makes to states this box created are merged.
//!
//! `--sync-trace FILE` writes one line per state message sent or received
//! (`tx|rx ins|upd|updc|delc|bulk <id> <creatorid> <t_ns>`, t on the TSC
//! clock every dpf on a host shares) for the sync benchmark.
//!
//! Departure from ARCHITECTURE.md: this runs on the control thread, not a
//! thread of its own (the control loop already sleeps ~1 ms and owns the
//! injection path); `defer` is not implemented.

use crate::pfsync::pack::{Packer, PacketWriter};
use crate::pfsync::recv::valid_update;
use crate::pfsync::wire::frame::receive_frame;
use crate::pfsync::wire::{
    BusRepr, BusStatus, ClrRepr, KeyRepr, LinkParams, Message, PeerRepr, RxContext, StateId,
    StateRepr, UpdCRepr,
};
use crate::pfsync::PfsyncStats;
use crate::slowpath::Out;
use dataplane::export::{ImportRecord, StateRecord, SyncAction};
use dataplane::flow::{Af, Direction, FlowKey, IfIndex};
use dataplane::ring::{Consumer, Producer};
use dataplane::state::{state_flags, Peer, State};
use dataplane::time::{Duration, Instant};
use dataplane::timeouts::{TimeoutClass, Timeouts};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;

/// How long a bulk request waits for the end marker.
const BULK_TIMEOUT: Duration = Duration::from_secs(12);
/// Demotion while a bulk update is pending (spec §5.6).
pub const BULK_DEMOTE: i32 = 32;
/// Packets of a bulk update sent per control-loop round (~5 states each at
/// MTU 1500): the peer takes them through its slow-path ring, which must
/// not overflow.
const BULK_PACKETS_PER_ROUND: usize = 32;
/// Received records waiting for a worker's import ring, per worker, at
/// most (a bulk update arrives faster than a busy worker imports).
const IMPORT_BACKLOG_MAX: usize = 1 << 20;
/// Unknown-state reports awaiting the other workers' answers, at most.
const MISSING_MAX: usize = 65536;
/// How long an unknown-state report waits for the other workers.
const MISSING_WAIT: Duration = Duration::from_secs(1);
/// How often the trace file is flushed.
const TRACE_FLUSH: Duration = Duration::from_millis(100);

/// Bulk update status, for `dpfctl pfsync0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkState {
    /// Requested at start, waiting for the peer's end marker.
    Pending {
        /// Gives up at.
        until: Instant,
    },
    /// The peer's bulk update arrived.
    Done,
    /// No answer in time (no peer yet, or it is down).
    TimedOut,
}

/// pfsync on this box.
pub struct Sync {
    syncdev: u16,
    syncdev_name: String,
    syncpeer: Option<std::net::Ipv4Addr>,
    maxupd: u8,
    defer: bool,
    creatorid: u32,
    packer: Packer,
    /// For the messages the packer does not batch (UPD_REQ, BUS).
    writer: PacketWriter,
    exports: Vec<Consumer<StateRecord>>,
    imports: Vec<Producer<ImportRecord>>,
    ifnames: Vec<String>,
    timeouts: Timeouts,
    /// pfsync statistics (spec §5.9).
    pub stats: PfsyncStats,
    /// Bulk update state.
    pub bulk: BulkState,
    sent_packets: u64,
    sent_states: u64,
    received_states: u64,
    import_dropped: u64,
    sent_clears: u64,
    received_clears: u64,
    /// Received records that waited for room in an import ring.
    import_deferred: u64,
    /// Per worker: received records waiting for room in its import ring.
    import_backlog: Vec<std::collections::VecDeque<ImportRecord>>,
    sent_compressed: u64,
    received_compressed: u64,
    sent_requests: u64,
    received_requests: u64,
    sent_acks: u64,
    received_acks: u64,
    /// Our syncdev MAC: frames from it are our own, seen again.
    mac: [u8; 6],
    /// UPD_C'd states some worker reported unknown: how many workers did,
    /// and since when (UPD_REQ once all that could have it said no).
    missing: HashMap<StateId, (usize, Instant)>,
    /// Between the peer's BUS START and END of our bulk request.
    in_bulk: bool,
    /// States whose INS or UPD is in the packet being built.
    full_in_packet: Vec<StateId>,
    /// A bulk update being sent: the table and the next state to send.
    bulk_out: Option<(Vec<State>, usize)>,
    /// UPD_REQs to send at the end of this round.
    requests: Vec<StateId>,
    trace: Option<Trace>,
}

/// The `--sync-trace` file.
struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    flushed: Instant,
}

/// What the control loop must do after a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// Nothing.
    None,
    /// The peer asked for a bulk update: list every state and send it.
    BulkRequested,
    /// Our bulk request was answered (remove the CARP demotion).
    BulkDone,
}

/// Configuration of [`Sync::new`].
pub struct SyncSetup {
    /// Port index of the sync interface.
    pub syncdev: u16,
    /// Its name.
    pub syncdev_name: String,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub ip: [u8; 4],
    /// Unicast peer, or the 224.0.0.240 group.
    pub syncpeer: Option<std::net::Ipv4Addr>,
    /// Link MTU.
    pub mtu: u16,
    /// `maxupd`.
    pub maxupd: u8,
    /// `defer`: our inserts ask for INS_ACK (the workers hold the packets).
    pub defer: bool,
    /// This box's creatorid.
    pub creatorid: u32,
    /// Interface names by index.
    pub ifnames: Vec<String>,
    /// State timeouts (for expiry times on the wire).
    pub timeouts: Timeouts,
}

impl Sync {
    /// pfsync over `exports` / `imports` (one ring pair per worker).
    pub fn new(
        s: SyncSetup,
        exports: Vec<Consumer<StateRecord>>,
        imports: Vec<Producer<ImportRecord>>,
        now: Instant,
    ) -> Result<Sync, String> {
        let link = LinkParams::new(
            s.mac,
            s.ip,
            s.syncpeer.map_or([0; 4], |p| p.octets()),
            s.syncpeer.map(|_| [0xff; 6]),
        )
        .map_err(|e| format!("pfsync link: {e}"))?;
        let packer = Packer::new(s.mtu as usize, link, rand::random())
            .map_err(|e| format!("pfsync: {e}"))?;
        let writer = PacketWriter::new(s.mtu as usize, link, rand::random())
            .map_err(|e| format!("pfsync: {e}"))?;
        let workers = imports.len();
        Ok(Sync {
            syncdev: s.syncdev,
            syncdev_name: s.syncdev_name,
            syncpeer: s.syncpeer,
            maxupd: s.maxupd,
            defer: s.defer,
            creatorid: s.creatorid,
            packer,
            writer,
            exports,
            imports,
            ifnames: s.ifnames,
            timeouts: s.timeouts,
            stats: PfsyncStats::default(),
            bulk: BulkState::Pending {
                until: now + BULK_TIMEOUT,
            },
            sent_packets: 0,
            sent_states: 0,
            received_states: 0,
            import_dropped: 0,
            sent_clears: 0,
            received_clears: 0,
            import_deferred: 0,
            import_backlog: vec![std::collections::VecDeque::new(); workers],
            sent_compressed: 0,
            received_compressed: 0,
            sent_requests: 0,
            received_requests: 0,
            sent_acks: 0,
            received_acks: 0,
            mac: s.mac,
            missing: HashMap::new(),
            in_bulk: false,
            full_in_packet: Vec::with_capacity(s.mtu as usize / 264 + 1),
            bulk_out: None,
            requests: Vec::new(),
            trace: None,
        })
    }

    /// Writes the `--sync-trace` file at `path` from now on.
    pub fn set_trace(&mut self, path: &std::path::Path, now: Instant) -> std::io::Result<()> {
        let f = std::fs::File::create(path)?;
        self.trace = Some(Trace {
            out: std::io::BufWriter::new(f),
            flushed: now,
        });
        Ok(())
    }

    fn trace(&mut self, dir: &str, msg: &str, id: StateId, at: Instant) {
        if let Some(t) = self.trace.as_mut() {
            let _ = writeln!(
                t.out,
                "{dir} {msg} {:016x} {:08x} {}",
                id.id, id.creatorid, at.0
            );
        }
    }

    /// The worker that has a state by its identity, if known: our own
    /// states carry the creating worker in the id's top 8 bits.
    fn owner_of_id(&self, id: StateId) -> Option<usize> {
        let w = (id.id >> 56) as usize;
        (id.creatorid == self.creatorid && w < self.imports.len()).then_some(w)
    }

    /// Hands `rec` to the worker that has the state, or to every worker
    /// when that is not known. Returns how many workers were asked.
    fn route_by_id(&mut self, id: StateId, rec: ImportRecord) -> usize {
        match self.owner_of_id(id) {
            Some(w) => {
                self.import_to(w, rec);
                1
            }
            None => {
                self.broadcast_to_workers(rec);
                self.imports.len()
            }
        }
    }

    /// A worker reported that it does not have a state the peer sent a
    /// compressed update for; once every worker that could have it said
    /// so, ask the peer for the whole state (UPD_REQ).
    fn missing(&mut self, id: StateId, now: Instant) {
        let asked = if self.owner_of_id(id).is_some() {
            1
        } else {
            self.imports.len().max(1)
        };
        let room = self.missing.len() < MISSING_MAX;
        let count = match self.missing.get_mut(&id) {
            Some(e) => {
                e.0 += 1;
                e.0
            }
            None if room => {
                self.missing.insert(id, (1, now));
                1
            }
            None => {
                self.stats.incr(crate::pfsync::Counter::Onomem);
                return;
            }
        };
        if count >= asked {
            self.missing.remove(&id);
            self.stats.incr(crate::pfsync::Counter::Badstate);
            // The bulk update we asked for brings every state: asking for
            // them one by one meanwhile would only double the traffic.
            if !matches!(self.bulk, BulkState::Pending { .. }) {
                self.requests.push(id);
            }
        }
    }

    /// Sends the UPD_REQs collected this round, as many per packet as fit
    /// (spec §5.3: one packet listing the unknown states, at once).
    fn send_requests(&mut self, out: &mut Vec<Out>) {
        if self.requests.is_empty() {
            return;
        }
        let requests = std::mem::take(&mut self.requests);
        self.writer.clear();
        for id in &requests {
            let msg = Message::UpdReq(*id);
            if self.writer.push(&msg).is_err() {
                if let Some(frame) = self.writer.finish() {
                    out.push((self.syncdev, frame.to_vec()));
                    self.sent_packets += 1;
                }
                self.writer.clear();
                if self.writer.push(&msg).is_err() {
                    self.stats.incr(crate::pfsync::Counter::Onomem);
                    continue;
                }
            }
            self.sent_requests += 1;
        }
        if let Some(frame) = self.writer.finish() {
            out.push((self.syncdev, frame.to_vec()));
            self.sent_packets += 1;
        }
        self.requests = requests;
        self.requests.clear();
    }

    /// The bulk request sent at start (UPD_REQ with id 0, creatorid 0).
    pub fn request_bulk(&mut self, out: &mut Vec<Out>) {
        self.send_alone(&Message::UpdReq(StateId::BULK_REQUEST), out);
    }

    /// Tells the peer that this box flushed its states (`pfctl -F states`):
    /// a CLR for this box's creator id (spec §3), sent at once.
    pub fn send_clear(&mut self, out: &mut Vec<Out>) {
        self.send_alone(
            &Message::Clr(ClrRepr {
                ifname: [0; 16],
                creatorid: self.creatorid,
            }),
            out,
        );
        self.sent_clears += 1;
    }

    /// Sends one control message (UPD_REQ, BUS, CLR) in a packet of its own.
    fn send_alone(&mut self, msg: &Message, out: &mut Vec<Out>) {
        self.writer.clear();
        if self.writer.push(msg).is_err() {
            self.stats.incr(crate::pfsync::Counter::Onomem);
            return;
        }
        if let Some(frame) = self.writer.finish() {
            out.push((self.syncdev, frame.to_vec()));
            self.sent_packets += 1;
        }
    }

    /// Queues a slice message. The receiver walks a packet's sections in
    /// a fixed order (UPD_C and DEL_C before INS and UPD, spec §1.2), so a
    /// compressed update or deletion of a state whose full message is in
    /// the packet being built closes that packet first.
    fn push(&mut self, msg: &Message, out: &mut Vec<Out>) {
        let (id, full) = match msg {
            Message::Ins(s) | Message::Upd(s) => (Some(s.state_id()), true),
            Message::UpdC(u) => (Some(u.state_id()), false),
            Message::DelC(id) => (Some(*id), false),
            _ => (None, false),
        };
        if let Some(id) = id.filter(|_| !full) {
            if self.full_in_packet.contains(&id) {
                self.flush(out);
            }
        }
        match self.packer.push(msg) {
            Ok(Some(frame)) => {
                out.push((self.syncdev, frame.to_vec()));
                self.sent_packets += 1;
                self.full_in_packet.clear();
            }
            Ok(None) => {}
            Err(_) => {
                self.stats.incr(crate::pfsync::Counter::Onomem);
                return;
            }
        }
        if let Some(id) = id.filter(|_| full) {
            self.full_in_packet.push(id);
        }
    }

    fn flush(&mut self, out: &mut Vec<Out>) {
        self.full_in_packet.clear();
        if let Some(frame) = self.packer.flush() {
            out.push((self.syncdev, frame.to_vec()));
            self.sent_packets += 1;
        }
    }

    /// Drains the export rings into packets; sends what is pending.
    /// Returns whether a bulk timeout expired (remove the demotion).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Out>) -> bool {
        self.drain_import_backlogs();
        for w in 0..self.exports.len() {
            for _ in 0..4096 {
                let Some(rec) = self.exports[w].pop() else {
                    break;
                };
                let id = StateId {
                    id: rec.state.id(),
                    creatorid: rec.state.creatorid(),
                };
                let (msg, name) = match rec.action {
                    SyncAction::Insert => (Message::Ins(self.to_wire(&rec.state, now)), "ins"),
                    SyncAction::Update => {
                        self.sent_compressed += 1;
                        (Message::UpdC(compressed(&rec.state)), "updc")
                    }
                    SyncAction::FullUpdate => (Message::Upd(self.to_wire(&rec.state, now)), "upd"),
                    SyncAction::Delete => (Message::DelC(id), "delc"),
                    SyncAction::Missing => {
                        self.missing(id, now);
                        continue;
                    }
                };
                self.trace("tx", name, id, rec.at);
                self.sent_states += 1;
                self.push(&msg, out);
            }
        }
        self.flush(out);
        self.send_requests(out);
        self.continue_bulk(now, out);
        if !self.missing.is_empty() {
            // Reports whose other workers found the state (and said
            // nothing) are forgotten after a while.
            self.missing
                .retain(|_, (_, since)| now.saturating_since(*since) < MISSING_WAIT);
        }
        if let Some(t) = self.trace.as_mut() {
            if now.saturating_since(t.flushed) >= TRACE_FLUSH {
                let _ = t.out.flush();
                t.flushed = now;
            }
        }
        if let BulkState::Pending { until } = self.bulk {
            if now >= until {
                self.bulk = BulkState::TimedOut;
                crate::log!(crate::log::Level::Warning, "pfsync: bulk update timed out");
                return true;
            }
        }
        false
    }

    /// Starts a bulk update of `states` (the peer's UPD_REQ 0/0): the start
    /// marker now, then [`BULK_PACKETS_PER_ROUND`] packets of full states
    /// per [`Sync::poll`] so the peer's receive path is never flooded, then
    /// the end marker. A request while one is running restarts it with the
    /// table as it is now.
    pub fn send_bulk(&mut self, states: Vec<State>, out: &mut Vec<Out>) {
        self.send_alone(
            &Message::Bus(BusRepr {
                creatorid: self.creatorid,
                endtime: 0,
                status: BusStatus::Start as u8,
            }),
            out,
        );
        crate::log!(
            crate::log::Level::Notice,
            "pfsync: bulk update of {} states started",
            states.len()
        );
        self.bulk_out = Some((states, 0));
    }

    /// Sends the next slice of a running bulk update; the end marker after
    /// the last state.
    fn continue_bulk(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some((states, mut next)) = self.bulk_out.take() else {
            return;
        };
        let before = out.len();
        while next < states.len() && out.len() - before < BULK_PACKETS_PER_ROUND {
            let st = &states[next];
            next += 1;
            let m = Message::Upd(self.to_wire(st, now));
            let id = StateId {
                id: st.id(),
                creatorid: st.creatorid(),
            };
            self.trace("tx", "bulk", id, now);
            self.push(&m, out);
        }
        if next < states.len() {
            self.bulk_out = Some((states, next));
            return;
        }
        self.flush(out);
        self.send_alone(
            &Message::Bus(BusRepr {
                creatorid: self.creatorid,
                endtime: 0,
                status: BusStatus::End as u8,
            }),
            out,
        );
        crate::log!(
            crate::log::Level::Notice,
            "pfsync: bulk update of {} states sent",
            states.len()
        );
    }

    /// Handles a received pfsync frame.
    pub fn handle(
        &mut self,
        frame: &[u8],
        port: u16,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> SyncEvent {
        let ctx = RxContext {
            pf_running: true,
            pfsync_up: true,
            on_syncdev: port == self.syncdev,
        };
        self.drain_import_backlogs();
        // Our own transmission seen again (an af_packet port receives what
        // it sends): never merge it.
        if frame.get(6..12) == Some(&self.mac[..]) {
            return SyncEvent::None;
        }
        let Ok(pkt) = receive_frame(frame, &ctx, &mut self.stats) else {
            return SyncEvent::None;
        };
        let mut event = SyncEvent::None;
        let mut msgs = Vec::new();
        let mut acks = Vec::new();
        pkt.walker().for_each_message(|_| {}, |m| msgs.push(m));
        for m in msgs {
            match m {
                Message::Ins(s) | Message::Upd(s) => {
                    let name = match m {
                        Message::Ins(_) => "ins",
                        _ if self.in_bulk => "bulk",
                        _ => "upd",
                    };
                    if let Some((state, age, expire)) = self.import_from_wire(&s, now) {
                        if matches!(m, Message::Ins(_)) && s.state_flags & state_flags::ACK != 0 {
                            // The peer holds the packet until we have it.
                            acks.push(s.state_id());
                        }
                        self.trace("rx", name, s.state_id(), now);
                        self.received_states += 1;
                        let owner = state.key().owner(self.imports.len());
                        let rec = ImportRecord::Upsert {
                            state,
                            age_s: age,
                            expire_s: expire,
                        };
                        self.import_to(owner, rec);
                    } else {
                        self.stats.incr(crate::pfsync::Counter::Badval);
                    }
                }
                Message::UpdC(u) => {
                    let timeout = TimeoutClass::ALL.get(u.timeout as usize).copied();
                    match timeout {
                        Some(timeout) if valid_update(u.timeout, &u.src, &u.dst) => {
                            self.received_compressed += 1;
                            self.trace("rx", "updc", u.state_id(), now);
                            self.route_by_id(
                                u.state_id(),
                                ImportRecord::Merge {
                                    id: u.id,
                                    creatorid: u.creatorid,
                                    src: peer_from_wire(&u.src),
                                    dst: peer_from_wire(&u.dst),
                                    timeout,
                                },
                            );
                        }
                        _ => self.stats.incr(crate::pfsync::Counter::Badval),
                    }
                }
                Message::InsAck(id) => {
                    self.received_acks += 1;
                    self.route_by_id(
                        id,
                        ImportRecord::Ack {
                            id: id.id,
                            creatorid: id.creatorid,
                        },
                    );
                }
                Message::UpdReq(id) if id != StateId::BULK_REQUEST => {
                    self.received_requests += 1;
                    self.route_by_id(
                        id,
                        ImportRecord::Request {
                            id: id.id,
                            creatorid: id.creatorid,
                        },
                    );
                }
                Message::DelC(id) => {
                    self.trace("rx", "delc", id, now);
                    self.route_by_id(
                        id,
                        ImportRecord::Delete {
                            id: id.id,
                            creatorid: id.creatorid,
                        },
                    );
                }
                // The peer flushed: remove the states it created (never
                // ours, whatever the message says).
                Message::Clr(c) if c.creatorid != self.creatorid => {
                    self.received_clears += 1;
                    self.broadcast_to_workers(ImportRecord::Clear {
                        creatorid: c.creatorid,
                    });
                }
                Message::UpdReq(id) if id == StateId::BULK_REQUEST => {
                    event = SyncEvent::BulkRequested
                }
                Message::Bus(b) if b.status == BusStatus::Start as u8 => {
                    self.in_bulk = matches!(self.bulk, BulkState::Pending { .. });
                }
                Message::Bus(b) if b.status == BusStatus::End as u8 => {
                    self.in_bulk = false;
                    if matches!(self.bulk, BulkState::Pending { .. }) {
                        self.bulk = BulkState::Done;
                        crate::log!(crate::log::Level::Notice, "pfsync: bulk update received");
                        event = SyncEvent::BulkDone;
                    }
                }
                _ => {}
            }
        }
        if !acks.is_empty() {
            self.send_acks(&acks, out);
        }
        event
    }

    /// INS_ACKs for the peer's deferred inserts, sent at once (spec §5.2),
    /// as many per packet as fit.
    fn send_acks(&mut self, acks: &[StateId], out: &mut Vec<Out>) {
        self.writer.clear();
        for id in acks {
            let msg = Message::InsAck(*id);
            if self.writer.push(&msg).is_err() {
                if let Some(frame) = self.writer.finish() {
                    out.push((self.syncdev, frame.to_vec()));
                    self.sent_packets += 1;
                }
                self.writer.clear();
                if self.writer.push(&msg).is_err() {
                    self.stats.incr(crate::pfsync::Counter::Onomem);
                    continue;
                }
            }
            self.sent_acks += 1;
        }
        if let Some(frame) = self.writer.finish() {
            out.push((self.syncdev, frame.to_vec()));
            self.sent_packets += 1;
        }
    }

    /// Hands `rec` to every worker's import ring (deletions carry no key,
    /// so the owner is unknown); a full ring is counted.
    fn broadcast_to_workers(&mut self, rec: ImportRecord) {
        for w in 0..self.imports.len() {
            self.import_to(w, rec);
        }
    }

    /// Hands `rec` to worker `w`'s import ring; when the ring is full it
    /// waits, in order, in that worker's backlog (retried every round) —
    /// a received state is only dropped, and counted, when the backlog is
    /// full too.
    fn import_to(&mut self, w: usize, rec: ImportRecord) {
        let (Some(p), Some(backlog)) = (self.imports.get_mut(w), self.import_backlog.get_mut(w))
        else {
            return;
        };
        if backlog.is_empty() && p.push(rec).is_ok() {
            p.publish();
            return;
        }
        if backlog.len() < IMPORT_BACKLOG_MAX {
            backlog.push_back(rec);
            self.import_deferred += 1;
        } else {
            self.import_dropped += 1;
        }
    }

    /// Moves what the workers' import rings take now from the backlogs.
    fn drain_import_backlogs(&mut self) {
        for (p, backlog) in self.imports.iter_mut().zip(self.import_backlog.iter_mut()) {
            let mut moved = false;
            while let Some(rec) = backlog.front() {
                if p.push(*rec).is_err() {
                    break;
                }
                backlog.pop_front();
                moved = true;
            }
            if moved {
                p.publish();
            }
        }
    }

    fn to_wire(&self, st: &State, now: Instant) -> StateRepr {
        let key = st.key();
        let af = key.family();
        let (src, sport) = st.src_endpoint();
        let (dst, dport) = st.dst_endpoint();
        // pf's wire key of an inbound state: [initiator, responder].
        let k = FlowKey {
            addr: [src, dst],
            port: [sport, dport],
            rdomain: 0,
            af: af as u8,
            proto: key.proto,
        };
        let wk = KeyRepr::from_flow_key(&k);
        let mut ifname = [0u8; 16];
        let name = self
            .ifnames
            .get(st.ifindex.0 as usize)
            .map_or("", String::as_str);
        for (d, b) in ifname.iter_mut().zip(name.bytes().take(15)) {
            *d = b;
        }
        StateRepr {
            id: st.id(),
            ifname,
            key: [wk, wk],
            src: peer_to_wire(&st.src),
            dst: peer_to_wire(&st.dst),
            rule: if st.rule == dataplane::state::NO_RULE {
                u32::MAX
            } else {
                st.rule
            },
            anchor: u32::MAX,
            nat_rule: u32::MAX,
            creation_s: st.age_s(now),
            expire_s: st.expire_in_s(now, &self.timeouts),
            packets: [st.packets(0), st.packets(1)],
            bytes: [st.bytes(0), st.bytes(1)],
            creatorid: st.creatorid(),
            af: af as u8,
            proto: key.proto,
            direction: 1,
            timeout: st.timeout as u8,
            state_flags: st.state_flags & state_flags::WIRE,
            ..StateRepr::default()
        }
    }

    fn import_from_wire(&self, s: &StateRepr, now: Instant) -> Option<(State, u32, u32)> {
        let af = match s.af {
            2 => Af::Inet,
            24 => Af::Inet6,
            _ => return None,
        };
        let k = &s.key[0];
        // Inbound: [initiator, responder]; outbound: the other way round.
        let (i, r) = if s.direction == 2 { (1, 0) } else { (0, 1) };
        let (key, swapped) =
            FlowKey::from_packet(af, s.proto, k.addr[i], k.port[i], k.addr[r], k.port[r]);
        let timeout = TimeoutClass::ALL.get(s.timeout as usize).copied()?;
        let mut st = State::new(key, swapped, s.id, s.creatorid, now);
        st.src = peer_from_wire(&s.src);
        st.dst = peer_from_wire(&s.dst);
        st.timeout = timeout;
        // ACK asks us for an INS_ACK; it is not part of the state.
        st.state_flags = s.state_flags & state_flags::WIRE & !state_flags::ACK
            | state_flags::SYNCED_SRC
            | state_flags::SYNCED_DST;
        st.direction = Direction::In;
        let name_len = s.ifname.iter().position(|b| *b == 0).unwrap_or(16);
        let name = std::str::from_utf8(&s.ifname[..name_len]).unwrap_or("");
        st.ifindex = IfIndex(self.ifnames.iter().position(|n| n == name).unwrap_or(0) as u16);
        Some((st, s.creation_s, s.expire_s))
    }

    /// `dpfctl pfsync0` / `-s pfsync`.
    pub fn show(&self, now: Instant) -> Value {
        let bulk = match self.bulk {
            BulkState::Pending { until } => {
                format!("pending ({} s left)", until.saturating_since(now).as_secs())
            }
            BulkState::Done => "done".into(),
            BulkState::TimedOut => "timed out".into(),
        };
        json!({
            "syncdev": self.syncdev_name,
            "syncpeer": self.syncpeer.map_or("224.0.0.240".to_string(), |p| p.to_string()),
            "maxupd": self.maxupd,
            "defer": self.defer,
            "bulk": bulk,
            "bulk_sending": self.bulk_out.as_ref().map(|(states, next)| json!({
                "states": states.len(),
                "sent": next,
            })),
            "creatorid": format!("{:08x}", self.creatorid),
            "sent_packets": self.sent_packets,
            "sent_states": self.sent_states,
            "received_states": self.received_states,
            "import_dropped": self.import_dropped,
            "import_deferred": self.import_deferred,
            "sent_clears": self.sent_clears,
            "received_clears": self.received_clears,
            "sent_compressed": self.sent_compressed,
            "received_compressed": self.received_compressed,
            "sent_requests": self.sent_requests,
            "received_requests": self.received_requests,
            "sent_acks": self.sent_acks,
            "received_acks": self.received_acks,
            "stats": self.stats.iter().map(|(c, v)| (c.to_string(), Value::from(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// A state's compressed update (UPD_C, spec §3.3): identity, both peers
/// and the timeout class; OpenBSD sends expire and flags as 0.
fn compressed(st: &State) -> UpdCRepr {
    UpdCRepr {
        id: st.id(),
        src: peer_to_wire(&st.src),
        dst: peer_to_wire(&st.dst),
        creatorid: st.creatorid(),
        expire_s: 0,
        timeout: st.timeout as u8,
        state_flags: 0,
    }
}

fn peer_to_wire(p: &Peer) -> PeerRepr {
    PeerRepr {
        seqlo: p.seqlo,
        seqhi: p.seqhi,
        seqdiff: p.seqdiff,
        max_win: p.max_win,
        mss: p.mss,
        state: p.state,
        wscale: p.wscale,
        ..PeerRepr::default()
    }
}

fn peer_from_wire(p: &PeerRepr) -> Peer {
    Peer {
        seqlo: p.seqlo,
        seqhi: p.seqhi,
        seqdiff: p.seqdiff,
        max_win: p.max_win,
        mss: p.mss,
        wscale: p.wscale,
        state: p.state,
    }
}

// Keep the PFTM numbering and TimeoutClass in step.
const _: () = assert!(TimeoutClass::OtherMultiple as u8 == 13);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfsync::wire::UpdCRepr;
    use dataplane::flow::{proto, Addr};
    use dataplane::ring::channel;

    const OURS: u32 = 0x0000_00aa;
    const PEERS: u32 = 0x0000_00bb;
    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    struct Rig {
        sync: Sync,
        exports: Vec<Producer<StateRecord>>,
        imports: Vec<Consumer<ImportRecord>>,
    }

    fn rig(workers: usize) -> Rig {
        let (mut ep, mut ec, mut ip, mut ic) = (vec![], vec![], vec![], vec![]);
        for _ in 0..workers {
            let (p, c) = channel::<StateRecord>(64);
            ep.push(p);
            ec.push(c);
            let (p, c) = channel::<ImportRecord>(64);
            ip.push(p);
            ic.push(c);
        }
        let setup = SyncSetup {
            syncdev: 0,
            syncdev_name: "sync0".into(),
            mac: OUR_MAC,
            ip: [10, 9, 0, 1],
            syncpeer: None,
            mtu: 1500,
            maxupd: 128,
            defer: false,
            creatorid: OURS,
            ifnames: vec!["sync0".into()],
            timeouts: Timeouts::default(),
        };
        Rig {
            sync: Sync::new(setup, ec, ip, Instant::from_secs(1)).unwrap(),
            exports: ep,
            imports: ic,
        }
    }

    fn state(id: u64, creatorid: u32) -> State {
        let (k, sw) = FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, 0, 0, 1]),
            1234,
            Addr::v4([10, 0, 0, 2]),
            80,
        );
        let mut st = State::new(k, sw, id, creatorid, Instant::from_secs(1));
        st.timeout = TimeoutClass::TcpEstablished;
        st.src.state = 4;
        st.dst.state = 4;
        st.src.seqlo = 1000;
        st
    }

    /// The messages of the frames the sync side sent.
    fn sent(out: &[Out]) -> Vec<Message> {
        let mut msgs = Vec::new();
        let ctx = RxContext {
            pf_running: true,
            pfsync_up: true,
            on_syncdev: true,
        };
        for (_, f) in out {
            let mut stats = PfsyncStats::default();
            let pkt = receive_frame(f, &ctx, &mut stats).expect("a valid pfsync frame");
            pkt.walker().for_each_message(|_| {}, |m| msgs.push(m));
        }
        msgs
    }

    /// A frame from the peer (or from us, with `mac`) carrying `msgs`.
    fn frame_from(mac: [u8; 6], msgs: &[Message]) -> Vec<u8> {
        let link = LinkParams::new(mac, [10, 9, 0, 2], [0; 4], None).unwrap();
        let mut w = PacketWriter::new(1500, link, 1).unwrap();
        for m in msgs {
            w.push(m).unwrap();
        }
        w.finish().unwrap().to_vec()
    }

    fn export(r: &mut Rig, w: usize, action: SyncAction, st: State) {
        r.exports[w]
            .push(StateRecord {
                action,
                state: st,
                at: Instant::from_secs(1),
            })
            .unwrap();
        r.exports[w].publish();
    }

    #[test]
    fn updates_go_out_compressed_and_re_sends_in_full() {
        let mut r = rig(1);
        let st = state(7, OURS);
        export(&mut r, 0, SyncAction::Insert, st);
        export(&mut r, 0, SyncAction::Update, st);
        let mut owed = st;
        owed.state_flags |= state_flags::SYNC_OWED;
        export(&mut r, 0, SyncAction::FullUpdate, owed);
        export(&mut r, 0, SyncAction::Delete, st);
        let mut out = Vec::new();
        r.sync.poll(Instant::from_secs(2), &mut out);
        // The receiver walks UPD_C and DEL_C before INS and UPD: each
        // follow-up of a state whose full message is in the packet being
        // built starts a new packet.
        assert_eq!(out.len(), 3);
        let msgs = sent(&out);
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(matches!(msgs[0], Message::Ins(ref s) if s.id == 7 && s.creatorid == OURS));
        match msgs[1] {
            Message::UpdC(u) => {
                assert_eq!((u.id, u.creatorid, u.timeout), (7, OURS, 2));
                assert_eq!((u.src.state, u.src.seqlo), (4, 1000));
            }
            ref m => panic!("expected UPD_C, got {m:?}"),
        }
        match msgs[2] {
            // The internal owed bit never reaches the wire.
            Message::Upd(ref s) => assert_eq!(s.state_flags & 0x8000, 0),
            ref m => panic!("expected UPD, got {m:?}"),
        }
        assert_eq!(
            msgs[3],
            Message::DelC(StateId {
                id: 7,
                creatorid: OURS
            })
        );
        assert_eq!(r.sync.show(Instant::from_secs(2))["sent_compressed"], 1);
    }

    fn upd_c(id: u64, creatorid: u32, timeout: u8) -> Message {
        Message::UpdC(UpdCRepr {
            id,
            src: peer_to_wire(&state(id, creatorid).src),
            dst: peer_to_wire(&state(id, creatorid).dst),
            creatorid,
            expire_s: 0,
            timeout,
            state_flags: 0,
        })
    }

    #[test]
    fn a_compressed_update_goes_to_the_worker_that_has_the_state() {
        let mut r = rig(2);
        let now = Instant::from_secs(2);
        // Our own state, made by worker 1 (id's top byte): only worker 1.
        let ours = (1u64 << 56) | 5;
        let f = frame_from(PEER_MAC, &[upd_c(ours, OURS, 2)]);
        assert_eq!(r.sync.handle(&f, 0, now, &mut Vec::new()), SyncEvent::None);
        assert!(r.imports[0].pop().is_none());
        match r.imports[1].pop() {
            Some(ImportRecord::Merge {
                id,
                creatorid,
                src,
                timeout,
                ..
            }) => {
                assert_eq!((id, creatorid), (ours, OURS));
                assert_eq!((src.state, src.seqlo), (4, 1000));
                assert_eq!(timeout, TimeoutClass::TcpEstablished);
            }
            other => panic!("expected a merge, got {other:?}"),
        }
        // The peer's state: every worker may have it.
        let f = frame_from(PEER_MAC, &[upd_c(9, PEERS, 2)]);
        r.sync.handle(&f, 0, now, &mut Vec::new());
        for w in 0..2 {
            assert!(matches!(
                r.imports[w].pop(),
                Some(ImportRecord::Merge { id: 9, .. })
            ));
        }
        // Invalid timeout: counted, not imported.
        let f = frame_from(PEER_MAC, &[upd_c(9, PEERS, 20)]);
        r.sync.handle(&f, 0, now, &mut Vec::new());
        assert!(r.imports.iter_mut().all(|c| c.pop().is_none()));
        assert_eq!(r.sync.stats.get(crate::pfsync::Counter::Badval), 1);
    }

    #[test]
    fn an_unknown_state_is_requested_once_no_worker_has_it() {
        let mut r = rig(2);
        r.sync.bulk = BulkState::Done;
        let now = Instant::from_secs(2);
        let id = StateId {
            id: 9,
            creatorid: PEERS,
        };
        let mut out = Vec::new();
        // Worker 0 does not have it; worker 1 has not answered yet.
        export(
            &mut r,
            0,
            SyncAction::Missing,
            State::identity_only(9, PEERS, now),
        );
        r.sync.poll(now, &mut out);
        assert!(out.is_empty(), "asked before every worker answered");
        export(
            &mut r,
            1,
            SyncAction::Missing,
            State::identity_only(9, PEERS, now),
        );
        r.sync.poll(now, &mut out);
        assert_eq!(sent(&out), vec![Message::UpdReq(id)]);
        assert_eq!(r.sync.show(now)["sent_requests"], 1);
    }

    #[test]
    fn a_bulk_update_goes_out_a_slice_per_round_and_ends_with_its_marker() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        let states: Vec<State> = (1..=1000).map(|i| state(i, OURS)).collect();
        let mut out = Vec::new();
        r.sync.send_bulk(states, &mut out);
        assert_eq!(
            sent(&out),
            vec![Message::Bus(BusRepr {
                creatorid: OURS,
                endtime: 0,
                status: BusStatus::Start as u8
            })]
        );
        let (mut upds, mut rounds, mut ended) = (0, 0, false);
        while !ended {
            let mut out = Vec::new();
            r.sync.poll(now, &mut out);
            rounds += 1;
            assert!(
                out.len() <= BULK_PACKETS_PER_ROUND + 2,
                "{} packets",
                out.len()
            );
            for m in sent(&out) {
                match m {
                    Message::Upd(_) => upds += 1,
                    Message::Bus(b) if b.status == BusStatus::End as u8 => ended = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(rounds < 100, "the bulk never ended");
        }
        assert_eq!(upds, 1000);
        assert!(rounds > 1, "paced over several rounds");
    }

    #[test]
    fn no_state_is_requested_while_our_bulk_update_is_pending() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        assert!(matches!(r.sync.bulk, BulkState::Pending { .. }));
        export(
            &mut r,
            0,
            SyncAction::Missing,
            State::identity_only(9, PEERS, now),
        );
        let mut out = Vec::new();
        r.sync.poll(now, &mut out);
        assert!(out.is_empty(), "the bulk update brings it");
    }

    #[test]
    fn received_states_wait_for_a_full_import_ring_instead_of_being_dropped() {
        let mut r = rig(1); // import rings of 64
        let now = Instant::from_secs(2);
        let msgs: Vec<Message> = (1..=17).map(|i| upd_c(i, PEERS, 2)).collect();
        for _ in 0..6 {
            r.sync
                .handle(&frame_from(PEER_MAC, &msgs), 0, now, &mut Vec::new());
        }
        let mut got = 0;
        for _ in 0..10 {
            while r.imports[0].pop().is_some() {
                got += 1;
            }
            r.sync.poll(now, &mut Vec::new());
        }
        assert_eq!(got, 6 * 17);
        let v = r.sync.show(now);
        assert_eq!(v["import_dropped"], 0);
        assert!(v["import_deferred"].as_u64() > Some(0));
    }

    #[test]
    fn an_update_request_asks_the_owning_worker_for_the_whole_state() {
        let mut r = rig(2);
        let now = Instant::from_secs(2);
        let f = frame_from(
            PEER_MAC,
            &[Message::UpdReq(StateId {
                id: 3,
                creatorid: OURS,
            })],
        );
        assert_eq!(r.sync.handle(&f, 0, now, &mut Vec::new()), SyncEvent::None);
        assert!(matches!(
            r.imports[0].pop(),
            Some(ImportRecord::Request {
                id: 3,
                creatorid: OURS
            })
        ));
        assert!(r.imports[1].pop().is_none());
        // The bulk request is still the bulk request.
        let f = frame_from(PEER_MAC, &[Message::UpdReq(StateId::BULK_REQUEST)]);
        assert_eq!(
            r.sync.handle(&f, 0, now, &mut Vec::new()),
            SyncEvent::BulkRequested
        );
    }

    #[test]
    fn our_own_frames_are_ignored_but_the_peers_updates_of_our_states_merge() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        let ins = Message::Ins(r.sync.to_wire(&state(4, OURS), now));
        // Seen again from our own MAC (af_packet sees its transmissions).
        r.sync
            .handle(&frame_from(OUR_MAC, &[ins]), 0, now, &mut Vec::new());
        assert!(r.imports[0].pop().is_none());
        // The peer forwarding our state after a failover sends its update.
        let upd = Message::Upd(r.sync.to_wire(&state(4, OURS), now));
        r.sync
            .handle(&frame_from(PEER_MAC, &[upd]), 0, now, &mut Vec::new());
        assert!(matches!(
            r.imports[0].pop(),
            Some(ImportRecord::Upsert { .. })
        ));
    }

    #[test]
    fn a_deferred_insert_is_acknowledged_at_once_and_an_ack_reaches_the_holder() {
        let mut r = rig(2);
        let now = Instant::from_secs(2);
        let mut wire = r.sync.to_wire(&state(4, PEERS), now);
        wire.state_flags |= state_flags::ACK;
        let mut out = Vec::new();
        r.sync.handle(
            &frame_from(PEER_MAC, &[Message::Ins(wire)]),
            0,
            now,
            &mut out,
        );
        let id = StateId {
            id: 4,
            creatorid: PEERS,
        };
        assert_eq!(sent(&out), vec![Message::InsAck(id)]);
        // The imported state does not keep the request flag.
        let rec = r.imports.iter_mut().find_map(|c| c.pop());
        match rec {
            Some(ImportRecord::Upsert { state, .. }) => {
                assert_eq!(state.state_flags & state_flags::ACK, 0)
            }
            other => panic!("expected the import, got {other:?}"),
        }
        // An INS_ACK for our state made by worker 1 goes to worker 1.
        let ours = StateId {
            id: (1u64 << 56) | 8,
            creatorid: OURS,
        };
        let mut out = Vec::new();
        r.sync.handle(
            &frame_from(PEER_MAC, &[Message::InsAck(ours)]),
            0,
            now,
            &mut out,
        );
        assert!(out.is_empty());
        assert!(r.imports[0].pop().is_none());
        assert!(matches!(
            r.imports[1].pop(),
            Some(ImportRecord::Ack { id, creatorid: OURS }) if id == ours.id
        ));
        let v = r.sync.show(now);
        assert_eq!(
            (v["sent_acks"].as_u64(), v["received_acks"].as_u64()),
            (Some(1), Some(1))
        );
    }

    #[test]
    fn the_trace_has_a_line_per_state_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace");
        let mut r = rig(1);
        r.sync.set_trace(&path, Instant::from_secs(1)).unwrap();
        export(&mut r, 0, SyncAction::Insert, state(0x11, OURS));
        let mut out = Vec::new();
        r.sync.poll(Instant::from_secs(2), &mut out);
        let f = frame_from(PEER_MAC, &[upd_c(0x22, PEERS, 2)]);
        r.sync
            .handle(&f, 0, Instant::from_nanos(2_500_000_000), &mut Vec::new());
        drop(r);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "tx ins 0000000000000011 000000aa 1000000000\nrx updc 0000000000000022 000000bb 2500000000\n"
        );
    }
}
