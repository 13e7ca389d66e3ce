//! pfsync on the wire, on the control thread: drains the workers' export
//! rings, converts each record to pfsync's `pfsync_state` and packs INS,
//! UPD and DEL_C messages into packets up to the sync interface's MTU
//! (every control round, a bounded share per ring: sub-millisecond
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
//! Trust (README "Who can write states"): frames are accepted only on
//! `syncdev` (§1.1, `badif`), with a unicast `syncpeer` only from its
//! address (`not_from_peer`), and with `auth` only when their
//! [`crate::pfsync::auth`] trailer verifies (`badauth`). With a unicast
//! `syncpeer` frames go to its MAC, which the control loop resolves
//! through the slow path's neighbour table ([`Sync::set_peer_mac`]);
//! until then they are held (bounded). Packets are sized to one packet
//! buffer, and counted as sent (`opackets`) when handed to the transmit
//! queue. The bulk request is retried every 2 s, 12 times (§5.6).
//!
//! `--sync-trace FILE` writes one line per state message sent or received
//! (`tx|rx ins|upd|updc|delc|bulk <id> <creatorid> <t_ns>`, t on the TSC
//! clock every dpf on a host shares) for the sync benchmark.
//!
//! Departure from ARCHITECTURE.md: this runs on the control thread, not a
//! thread of its own (the control loop owns the injection path; its
//! rounds are 100 µs apart under traffic, back to back while a round
//! leaves export records behind: [`Sync::exports_pending`]).

use crate::pfsync::auth::{self, AuthError, Signer, Verifier};
use crate::pfsync::pack::{Packer, PacketWriter};
use crate::pfsync::recv::{valid_insert, valid_update};
use crate::pfsync::wire::frame::{receive_frame, ETH_HDR_LEN};
use crate::pfsync::wire::{
    BusRepr, BusStatus, ClrRepr, KeyRepr, LinkParams, Message, PeerRepr, RxContext, StateId,
    StateRepr, UpdCRepr,
};
use crate::pfsync::{Counter, PfsyncStats};
use crate::slowpath::Out;
use dataplane::export::{ImportRecord, StateRecord, SyncAction};
use dataplane::flow::{Af, Direction, FlowKey, IfIndex};
use dataplane::ring::{Consumer, Producer};
use dataplane::state::{state_flags, Peer, State, Translation};
use dataplane::time::{Duration, Instant};
use dataplane::timeouts::{TimeoutClass, Timeouts};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;

/// Interval between bulk requests while none is answered (spec §5.6).
const BULK_RETRY: Duration = Duration::from_secs(2);
/// Bulk requests sent before giving up (spec §5.6).
const BULK_TRIES: u8 = 12;
/// Frames held while the unicast peer's MAC is not resolved, at most.
const HELD_MAX: usize = 4096;
/// Demotion while a bulk update is pending (spec §5.6).
pub const BULK_DEMOTE: i32 = 32;
/// Packets of a bulk update packed per control-loop round, at most (~5
/// states each at MTU 1500; ~40 µs of packing): the round stays short for
/// CARP's timers.
const BULK_PACKETS_PER_ROUND: usize = 128;
/// A bulk update packs more only while fewer pfsync packets than this
/// wait for the sync port ([`Sync::set_tx_backlog`]): the sync port's
/// pace (the peer's, through a link that makes the sender wait) sets the
/// bulk update's, and none of its packets is dropped for a full queue.
const BULK_BACKLOG_MAX: usize = 512;
/// Received records waiting for a worker's import ring, per worker, at
/// most (a bulk update arrives faster than a busy worker imports).
const IMPORT_BACKLOG_MAX: usize = 1 << 20;
/// Unknown-state reports awaiting the other workers' answers, at most.
const MISSING_MAX: usize = 65536;
/// How long an unknown-state report waits for the other workers.
const MISSING_WAIT: Duration = Duration::from_secs(1);
/// Export records taken from each worker's ring per round (bounded, so
/// CARP's timers run between slices of a burst of new states).
const EXPORTS_PER_ROUND: usize = 4096;
/// How often the trace file is flushed.
const TRACE_FLUSH: Duration = Duration::from_millis(100);

/// Bulk update requester (spec §5.6), for `dpfctl pfsync0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkState {
    /// Requested (§5.6 SENT): `sent` requests so far, the next (or giving
    /// up, after 12 requests) at `next_at`. A lone BUS END is ignored
    /// here, as OpenBSD does.
    Requested {
        /// Requests sent.
        sent: u8,
        /// Next retry, or giving up.
        next_at: Instant,
    },
    /// The peer's BUS START arrived (§5.6 BULK): waiting for its END.
    Receiving {
        /// Gives up at.
        until: Instant,
    },
    /// The peer's bulk update arrived.
    Done,
    /// No answer in time (no peer yet, or it is down).
    TimedOut,
}

impl BulkState {
    /// Whether our bulk update is still expected.
    pub fn pending(self) -> bool {
        matches!(
            self,
            BulkState::Requested { .. } | BulkState::Receiving { .. }
        )
    }
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
    states_total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    placement: dataplane::rss::Placement,
    /// pfsync statistics (spec §5.9).
    pub stats: PfsyncStats,
    /// Bulk update state.
    pub bulk: BulkState,
    /// How long a bulk update may take once started (§5.6 BULK timer).
    bulk_timeout: Duration,
    /// The IP datagram size our packets are limited to.
    mtu: usize,
    /// `syncpeer`, when unicast: frames are sent to it only, and accepted
    /// from it only.
    unicast_peer: Option<std::net::Ipv4Addr>,
    /// Its resolved MAC.
    peer_mac: Option<[u8; 6]>,
    /// Frames waiting for the peer's MAC, in order.
    held: std::collections::VecDeque<Vec<u8>>,
    held_frames: u64,
    held_dropped: u64,
    /// Packets from another source than the unicast `syncpeer`.
    not_from_peer: u64,
    /// `auth`: signs what we send.
    signer: Option<Signer>,
    /// `auth`: checks what we receive.
    verifier: Option<Verifier>,
    auth_missing: u64,
    auth_bad_mac: u64,
    auth_replayed: u64,
    /// A state of the running bulk update could not be packed: no BUS END.
    bulk_incomplete: bool,
    /// pfsync packets waiting for the sync port (the control loop's
    /// count, set every round).
    tx_backlog: usize,
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
    /// UPD_C'd (false) or deleted (true) states some worker reported
    /// unknown: how many workers did, and since when (`badstate`, and for
    /// an update an UPD_REQ, once all that could have it said no).
    missing: HashMap<(StateId, bool), (usize, Instant)>,
    /// Between the peer's BUS START and END of our bulk request.
    in_bulk: bool,
    /// States whose INS or UPD is in the packet being built.
    full_in_packet: Vec<StateId>,
    /// A bulk update being sent: the table and the next state to send.
    bulk_out: Option<(Vec<(State, Translation)>, usize)>,
    /// UPD_REQs to send at the end of this round.
    requests: Vec<StateId>,
    /// The last [`Sync::poll`] left records in an export ring.
    exports_left: bool,
    trace: Option<Trace>,
}

/// The `--sync-trace` file.
struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    flushed: Instant,
}

/// Bytes of the longest trace line: `rx updc`, 16 + 8 hex digits, 20
/// decimal digits, separators and the newline.
const TRACE_LINE_MAX: usize = 64;

/// Writes one `--sync-trace` line (`{dir} {msg} {id:016x} {creatorid:08x}
/// {t_ns}\n`) into `buf`, returning its length: formatted by hand, as it
/// runs once per state message on both boxes (`write!` cost as much as
/// packing the state).
fn trace_line(
    buf: &mut [u8; TRACE_LINE_MAX],
    dir: &str,
    msg: &str,
    id: StateId,
    at: Instant,
) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    for part in [dir.as_bytes(), b" ", msg.as_bytes(), b" "] {
        let k = part.len().min(8);
        buf[n..n + k].copy_from_slice(&part[..k]);
        n += k;
    }
    for i in (0..16).rev() {
        buf[n] = HEX[((id.id >> (i * 4)) & 0xf) as usize];
        n += 1;
    }
    buf[n] = b' ';
    n += 1;
    for i in (0..8).rev() {
        buf[n] = HEX[((id.creatorid >> (i * 4)) & 0xf) as usize];
        n += 1;
    }
    buf[n] = b' ';
    n += 1;
    let mut digits = [0u8; 20];
    let (mut v, mut k) = (at.0, 0);
    loop {
        digits[k] = b'0' + (v % 10) as u8;
        k += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for d in digits[..k].iter().rev() {
        buf[n] = *d;
        n += 1;
    }
    buf[n] = b'\n';
    n + 1
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
    /// The largest frame one packet buffer carries (Ethernet header
    /// included): a larger `mtu` is clamped to it, with a notice.
    pub max_frame_len: usize,
    /// `set limit states` (for the §5.6 bulk timeout).
    pub state_limit: u32,
    /// `auth`: the shared key, or `None` (OpenBSD's unauthenticated pfsync).
    pub auth: Option<auth::Key>,
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
    /// The box's state count (the workers' shared one): the expiry times
    /// on the wire include pf's adaptive scaling (spec/pfsync.md §3.7).
    pub states_total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Which worker owns a flow (imported states go to it).
    pub placement: dataplane::rss::Placement,
}

impl Sync {
    /// pfsync over `exports` / `imports` (one ring pair per worker).
    pub fn new(
        s: SyncSetup,
        exports: Vec<Consumer<StateRecord>>,
        imports: Vec<Producer<ImportRecord>>,
        now: Instant,
    ) -> Result<Sync, String> {
        // A unicast peer's MAC is filled in per frame once resolved (never
        // the broadcast address): the placeholder is all zeros.
        let link = LinkParams::new(
            s.mac,
            s.ip,
            s.syncpeer.map_or([0; 4], |p| p.octets()),
            Some([0; 6]),
        )
        .map_err(|e| format!("pfsync link: {e}"))?;
        let unicast_peer = s.syncpeer.filter(|p| !p.is_multicast());
        let trailer = if s.auth.is_some() {
            auth::TRAILER_LEN
        } else {
            0
        };
        // The IP datagram, trailer included, fits the port's MTU and one
        // packet buffer.
        let room = s.max_frame_len.saturating_sub(ETH_HDR_LEN);
        let mtu = usize::from(s.mtu).min(room).saturating_sub(trailer);
        if room < usize::from(s.mtu) {
            crate::log!(
                crate::log::Level::Notice,
                "pfsync: packets limited to {mtu} bytes (mtu {} does not fit a packet buffer)",
                s.mtu
            );
        }
        let packer = Packer::new(mtu, link, rand::random()).map_err(|e| format!("pfsync: {e}"))?;
        let writer =
            PacketWriter::new(mtu, link, rand::random()).map_err(|e| format!("pfsync: {e}"))?;
        if unicast_peer.is_none() {
            crate::log!(
                crate::log::Level::Warning,
                "pfsync: no unicast syncpeer: any host on {}'s segment can insert and remove states; use a dedicated port, syncpeer and auth",
                s.syncdev_name
            );
        } else if s.auth.is_none() {
            crate::log!(
                crate::log::Level::Warning,
                "pfsync: no auth: a host on {}'s segment that spoofs the syncpeer's address can insert and remove states",
                s.syncdev_name
            );
        }
        let per_packet = ((mtu - 40) / crate::pfsync::wire::state::STATE_LEN).max(1) as u64;
        let bulk_timeout =
            Duration::from_secs(4 * (u64::from(s.state_limit) / per_packet / 50).max(1));
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
            states_total: s.states_total,
            placement: s.placement,
            stats: PfsyncStats::default(),
            // [`Sync::request_bulk`] sends the first request at start.
            bulk: BulkState::Requested {
                sent: 0,
                next_at: now + BULK_RETRY,
            },
            bulk_timeout,
            mtu,
            unicast_peer,
            peer_mac: None,
            held: std::collections::VecDeque::new(),
            held_frames: 0,
            held_dropped: 0,
            not_from_peer: 0,
            signer: s
                .auth
                .clone()
                .map(|k| Signer::new(k, s.creatorid, rand::random())),
            verifier: s.auth.map(Verifier::new),
            auth_missing: 0,
            auth_bad_mac: 0,
            auth_replayed: 0,
            bulk_incomplete: false,
            tx_backlog: 0,
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
            full_in_packet: Vec::with_capacity(mtu / 264 + 1),
            bulk_out: None,
            requests: Vec::new(),
            exports_left: false,
            trace: None,
        })
    }

    /// Writes the `--sync-trace` file at `path` from now on.
    pub fn set_trace(&mut self, path: &std::path::Path, now: Instant) -> std::io::Result<()> {
        let f = std::fs::File::create(path)?;
        self.trace = Some(Trace {
            out: std::io::BufWriter::with_capacity(1 << 16, f),
            flushed: now,
        });
        Ok(())
    }

    fn trace(&mut self, dir: &str, msg: &str, id: StateId, at: Instant) {
        if let Some(t) = self.trace.as_mut() {
            let mut line = [0u8; TRACE_LINE_MAX];
            let n = trace_line(&mut line, dir, msg, id, at);
            let _ = t.out.write_all(&line[..n]);
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
    /// `delete`: the report is about a DEL_C (spec §5.3: an unknown state
    /// is `badstate`, nothing is asked for).
    fn missing(&mut self, id: StateId, delete: bool, now: Instant) {
        let asked = if self.owner_of_id(id).is_some() {
            1
        } else {
            self.imports.len().max(1)
        };
        let room = self.missing.len() < MISSING_MAX;
        let count = match self.missing.get_mut(&(id, delete)) {
            Some(e) => {
                e.0 += 1;
                e.0
            }
            None if room => {
                self.missing.insert((id, delete), (1, now));
                1
            }
            None => {
                self.stats.incr(Counter::Onomem);
                return;
            }
        };
        if count >= asked {
            self.missing.remove(&(id, delete));
            self.stats.incr(Counter::Badstate);
            // The bulk update we asked for brings every state: asking for
            // them one by one meanwhile would only double the traffic.
            if !delete && !self.bulk.pending() {
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
                if let Some(frame) = self.writer.finish().map(<[u8]>::to_vec) {
                    self.emit(frame, out);
                }
                self.writer.clear();
                if self.writer.push(&msg).is_err() {
                    self.stats.incr(Counter::Onomem);
                    continue;
                }
            }
            self.sent_requests += 1;
        }
        if let Some(frame) = self.writer.finish().map(<[u8]>::to_vec) {
            self.emit(frame, out);
        }
        self.requests = requests;
        self.requests.clear();
    }

    /// The bulk request sent at start (UPD_REQ with id 0, creatorid 0),
    /// re-sent by [`Sync::poll`] every 2 s until the peer's BUS START, 12
    /// times at most (spec §5.6).
    pub fn request_bulk(&mut self, now: Instant, out: &mut Vec<Out>) {
        self.send_alone(&Message::UpdReq(StateId::BULK_REQUEST), out);
        let sent = match self.bulk {
            BulkState::Requested { sent, .. } => sent.saturating_add(1),
            _ => 1,
        };
        self.bulk = BulkState::Requested {
            sent,
            next_at: now + BULK_RETRY,
        };
    }

    /// pfsync packets already waiting for the sync port: a bulk update
    /// packs more only while they are fewer than [`BULK_BACKLOG_MAX`].
    pub fn set_tx_backlog(&mut self, packets: usize) {
        self.tx_backlog = packets;
    }

    /// Whether the last [`Sync::poll`] left export records beyond its
    /// share: the control loop runs the next round without sleeping. (A
    /// bulk update stays paced a slice per round, and records waiting for
    /// room in an import ring wait for the worker, not for this thread.)
    pub fn exports_pending(&self) -> bool {
        self.exports_left
    }

    /// Whether a bulk update this box asked for is still under way (CARP
    /// stays demoted until it is not).
    pub fn bulk_pending(&self) -> bool {
        matches!(
            self.bulk,
            BulkState::Requested { .. } | BulkState::Receiving { .. }
        )
    }

    /// The unicast `syncpeer` whose MAC the caller resolves, if any.
    pub fn unicast_peer(&self) -> Option<std::net::Ipv4Addr> {
        self.unicast_peer
    }

    /// The unicast peer's MAC as the neighbour table has it now (`None`:
    /// unresolved). Frames held for it go out once it is known.
    pub fn set_peer_mac(&mut self, mac: Option<[u8; 6]>, out: &mut Vec<Out>) {
        self.peer_mac = mac;
        let Some(mac) = mac else {
            return;
        };
        while let Some(mut frame) = self.held.pop_front() {
            if let Some(dst) = frame.get_mut(0..6) {
                dst.copy_from_slice(&mac);
            }
            out.push((self.syncdev, frame));
            self.sent_packets += 1;
            self.stats.incr(Counter::Opackets);
        }
    }

    /// Hands a finished frame over for transmission: signed when `auth`
    /// is set, addressed to the unicast peer's MAC (held, bounded, while
    /// it is unresolved), and counted as sent (`opackets`) only then.
    fn emit(&mut self, mut frame: Vec<u8>, out: &mut Vec<Out>) {
        if let Some(signer) = self.signer.as_mut() {
            let ip = ETH_HDR_LEN;
            let Some(pfsync) = frame.get(ip + 20..) else {
                return;
            };
            let trailer = signer.sign(pfsync);
            frame.extend_from_slice(&trailer);
            let total = (frame.len() - ip) as u16;
            frame[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            let csum = crate::pfsync::wire::frame::ipv4_checksum(&frame[ip..ip + 20]);
            frame[ip + 10..ip + 12].copy_from_slice(&csum.to_be_bytes());
        }
        if self.unicast_peer.is_some() {
            match self.peer_mac {
                Some(mac) => frame[0..6].copy_from_slice(&mac),
                None => {
                    if self.held.len() < HELD_MAX {
                        self.held.push_back(frame);
                        self.held_frames += 1;
                    } else {
                        self.held_dropped += 1;
                        self.stats.incr(Counter::Oerrors);
                        self.bulk_incomplete = true;
                    }
                    return;
                }
            }
        }
        out.push((self.syncdev, frame));
        self.sent_packets += 1;
        self.stats.incr(Counter::Opackets);
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
            self.stats.incr(Counter::Onomem);
            return;
        }
        if let Some(frame) = self.writer.finish().map(<[u8]>::to_vec) {
            self.emit(frame, out);
        }
    }

    /// Queues a slice message. The receiver walks a packet's sections in
    /// a fixed order (UPD_C and DEL_C before INS and UPD, spec §1.2), so a
    /// compressed update or deletion of a state whose full message is in
    /// the packet being built closes that packet first.
    /// Returns false when the message could not be packed (counted).
    fn push(&mut self, msg: &Message, out: &mut Vec<Out>) -> bool {
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
        match self.packer.push(msg).map(|f| f.map(<[u8]>::to_vec)) {
            Ok(Some(frame)) => {
                self.emit(frame, out);
                self.full_in_packet.clear();
            }
            Ok(None) => {}
            Err(_) => {
                self.stats.incr(Counter::Onomem);
                return false;
            }
        }
        if let Some(id) = id.filter(|_| full) {
            self.full_in_packet.push(id);
        }
        true
    }

    fn flush(&mut self, out: &mut Vec<Out>) {
        self.full_in_packet.clear();
        if let Some(frame) = self.packer.flush().map(<[u8]>::to_vec) {
            self.emit(frame, out);
        }
    }

    /// Drains the export rings into packets; sends what is pending.
    /// Returns whether a bulk timeout expired (remove the demotion).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Out>) -> bool {
        self.drain_import_backlogs();
        self.exports_left = false;
        for w in 0..self.exports.len() {
            for taken in 0..=EXPORTS_PER_ROUND {
                if taken == EXPORTS_PER_ROUND {
                    // The round's share is used up: the loop comes back
                    // at once ([`Sync::work_pending`]).
                    self.exports_left = true;
                    break;
                }
                let Some(rec) = self.exports[w].pop() else {
                    break;
                };
                let id = StateId {
                    id: rec.state.id(),
                    creatorid: rec.state.creatorid(),
                };
                let (msg, name) = match rec.action {
                    SyncAction::Insert => (
                        Message::Ins(self.to_wire(&rec.state, &rec.translation, now)),
                        "ins",
                    ),
                    SyncAction::Update => {
                        self.sent_compressed += 1;
                        (Message::UpdC(compressed(&rec.state)), "updc")
                    }
                    SyncAction::FullUpdate => (
                        Message::Upd(self.to_wire(&rec.state, &rec.translation, now)),
                        "upd",
                    ),
                    SyncAction::Delete => (Message::DelC(id), "delc"),
                    SyncAction::Missing => {
                        self.missing(id, false, now);
                        continue;
                    }
                    SyncAction::NotDeleted => {
                        self.missing(id, true, now);
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
        match self.bulk {
            BulkState::Requested { sent, next_at } if now >= next_at => {
                if sent < BULK_TRIES {
                    self.request_bulk(now, out);
                } else {
                    self.bulk = BulkState::TimedOut;
                    crate::log!(
                        crate::log::Level::Warning,
                        "pfsync: no answer to {sent} bulk requests, giving up"
                    );
                    return true;
                }
            }
            BulkState::Receiving { until } if now >= until => {
                self.bulk = BulkState::TimedOut;
                self.in_bulk = false;
                crate::log!(crate::log::Level::Warning, "pfsync: bulk update timed out");
                return true;
            }
            _ => {}
        }
        false
    }

    /// Starts a bulk update of `states` (the peer's UPD_REQ 0/0): the start
    /// marker now, then [`BULK_PACKETS_PER_ROUND`] packets of full states
    /// per [`Sync::poll`] so the peer's receive path is never flooded, then
    /// the end marker. A request while one is running restarts it with the
    /// table as it is now.
    pub fn send_bulk(&mut self, states: Vec<(State, Translation)>, out: &mut Vec<Out>) {
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
        self.bulk_incomplete = false;
    }

    /// Sends the next slice of a running bulk update; the end marker after
    /// the last state.
    fn continue_bulk(&mut self, now: Instant, out: &mut Vec<Out>) {
        // Paused while the unicast peer's MAC is unresolved: the frames
        // would only pile up in the held queue.
        if self.unicast_peer.is_some() && self.peer_mac.is_none() {
            return;
        }
        let Some((states, mut next)) = self.bulk_out.take() else {
            return;
        };
        if self.tx_backlog >= BULK_BACKLOG_MAX {
            self.bulk_out = Some((states, next));
            return;
        }
        let before = out.len();
        while next < states.len() && out.len() - before < BULK_PACKETS_PER_ROUND {
            let (st, tr) = &states[next];
            next += 1;
            // Never export a state without a creator (spec §4). Every
            // other state goes, no-sync ones included, as OpenBSD does
            // (spec §5.6 and §8 point 1).
            if st.creatorid() == 0 {
                continue;
            }
            let m = Message::Upd(self.to_wire(st, tr, now));
            let id = StateId {
                id: st.id(),
                creatorid: st.creatorid(),
            };
            self.trace("tx", "bulk", id, now);
            if !self.push(&m, out) {
                self.bulk_incomplete = true;
            }
        }
        if next < states.len() {
            self.bulk_out = Some((states, next));
            return;
        }
        self.flush(out);
        if self.bulk_incomplete {
            // The peer must not end its demotion on a partial table: it
            // retries the request or times out.
            crate::log!(
                crate::log::Level::Warning,
                "pfsync: bulk update of {} states incomplete, no end marker sent",
                states.len()
            );
            return;
        }
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
        // §1.1, counted: not on syncdev (`badif`), TTL, version, length.
        let Ok(pkt) = receive_frame(frame, &ctx, &mut self.stats) else {
            return SyncEvent::None;
        };
        // A unicast syncpeer: from that address only.
        if let Some(peer) = self.unicast_peer {
            if pkt.src_ip != peer.octets() {
                self.not_from_peer += 1;
                return SyncEvent::None;
            }
        }
        // `auth`: nothing unauthenticated, altered or replayed.
        if let Some(v) = self.verifier.as_mut() {
            if let Err(e) = v.verify(pkt.pfsync, pkt.trailer) {
                self.stats.incr(Counter::Badauth);
                match e {
                    AuthError::Missing => self.auth_missing += 1,
                    AuthError::BadMac => self.auth_bad_mac += 1,
                    AuthError::Replay => self.auth_replayed += 1,
                }
                return SyncEvent::None;
            }
        }
        let mut event = SyncEvent::None;
        let mut acks = Vec::new();
        // §2.3: a section past the end (`badlen`) or an unusable action
        // (`badact`) stops the walk; what came before is processed. Each
        // message is handled as the walk yields it (not collected first:
        // a full state is ~300 bytes to copy).
        for section in pkt.walker() {
            match section {
                Ok(sec) => {
                    for m in sec.messages() {
                        self.handle_message(m, now, &mut event, &mut acks);
                    }
                }
                Err(e) => self.stats.incr(e.counter()),
            }
        }
        // The packet's records become visible to the workers at once.
        self.publish_imports();
        if !acks.is_empty() {
            self.send_acks(&acks, out);
        }
        event
    }

    /// One message of a received packet (spec §5.3-§5.6): states to their
    /// owner's import ring, acknowledgements to collect in `acks`, bulk
    /// markers into `event`.
    fn handle_message(
        &mut self,
        m: Message,
        now: Instant,
        event: &mut SyncEvent,
        acks: &mut Vec<StateId>,
    ) {
        match m {
            // §5.4 step 1: a state without a creator is rejected.
            Message::Ins(s) | Message::Upd(s) if s.creatorid == 0 => {
                self.stats.incr(Counter::Badstate);
            }
            Message::UpdC(UpdCRepr { creatorid: 0, .. })
            | Message::DelC(StateId { creatorid: 0, .. }) => {
                self.stats.incr(Counter::Badstate);
            }
            Message::Ins(s) | Message::Upd(s) if !valid_insert(&s) => {
                self.stats.incr(Counter::Badval);
            }
            Message::Ins(s) | Message::Upd(s) => {
                let name = match m {
                    Message::Ins(_) => "ins",
                    _ if self.in_bulk => "bulk",
                    _ => "upd",
                };
                if let Some((state, translation, age, expire)) = self.import_from_wire(&s, now) {
                    if matches!(m, Message::Ins(_)) && s.state_flags & state_flags::ACK != 0 {
                        // The peer holds the packet until we have it.
                        acks.push(s.state_id());
                    }
                    self.trace("rx", name, s.state_id(), now);
                    self.received_states += 1;
                    let key = state.key();
                    let owner = self
                        .placement
                        .owner(key, key.symmetric_hash(), self.imports.len());
                    let rec = ImportRecord::Upsert {
                        state,
                        translation,
                        age_s: age,
                        expire_s: expire,
                    };
                    self.import_to(owner, rec);
                } else {
                    self.stats.incr(Counter::Badval);
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
                    _ => self.stats.incr(Counter::Badval),
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
            // ours, whatever the message says). A CLR naming an
            // interface removes the states bound to it (§5.3): dpf's
            // are all floating ("all"), so only "" and "all" match.
            Message::Clr(c)
                if c.creatorid != self.creatorid
                    && c.creatorid != 0
                    && matches!(c.ifname, [0, ..] | [b'a', b'l', b'l', 0, ..]) =>
            {
                self.received_clears += 1;
                self.broadcast_to_workers(ImportRecord::Clear {
                    creatorid: c.creatorid,
                });
            }
            Message::UpdReq(id) if id == StateId::BULK_REQUEST => *event = SyncEvent::BulkRequested,
            // §5.6: START moves SENT to BULK; END ends BULK only (a
            // lone END in SENT is ignored, as OpenBSD does).
            Message::Bus(b) if b.status == BusStatus::Start as u8 => {
                if let BulkState::Requested { .. } = self.bulk {
                    self.bulk = BulkState::Receiving {
                        until: now + self.bulk_timeout,
                    };
                    self.in_bulk = true;
                }
            }
            Message::Bus(b) if b.status == BusStatus::End as u8 => {
                if let BulkState::Receiving { .. } = self.bulk {
                    self.in_bulk = false;
                    self.bulk = BulkState::Done;
                    crate::log!(crate::log::Level::Notice, "pfsync: bulk update received");
                    *event = SyncEvent::BulkDone;
                }
            }
            _ => {}
        }
    }

    /// Makes what was pushed to the import rings visible to the workers
    /// (one release store per ring that received something).
    fn publish_imports(&mut self) {
        for p in self.imports.iter_mut() {
            p.publish();
        }
    }

    /// INS_ACKs for the peer's deferred inserts, sent at once (spec §5.2),
    /// as many per packet as fit.
    fn send_acks(&mut self, acks: &[StateId], out: &mut Vec<Out>) {
        self.writer.clear();
        for id in acks {
            let msg = Message::InsAck(*id);
            if self.writer.push(&msg).is_err() {
                if let Some(frame) = self.writer.finish().map(<[u8]>::to_vec) {
                    self.emit(frame, out);
                }
                self.writer.clear();
                if self.writer.push(&msg).is_err() {
                    self.stats.incr(Counter::Onomem);
                    continue;
                }
            }
            self.sent_acks += 1;
        }
        if let Some(frame) = self.writer.finish().map(<[u8]>::to_vec) {
            self.emit(frame, out);
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
        // Published by the caller once per packet or round
        // ([`Sync::publish_imports`]).
        if backlog.is_empty() && p.push(rec).is_ok() {
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

    /// A state as pfsync carries it (spec/pfsync.md §3.7). An untranslated
    /// state goes as inbound with identical keys; a translated one
    /// ([`Translation`]: its egress key) as pf would hold it: when the
    /// source was translated (`nat-to`, `binat-to` outbound) as an
    /// outbound state with the egress key on the wire and the ingress key
    /// on the stack side, otherwise (`rdr-to`) as an inbound state with
    /// the ingress key on the wire and the egress key on the stack side.
    fn to_wire(&self, st: &State, tr: &Translation, now: Instant) -> StateRepr {
        let key = st.key();
        let af = key.family();
        let side = |(src, sport): (dataplane::flow::Addr, u16),
                    (dst, dport): (dataplane::flow::Addr, u16),
                    outbound: bool| {
            // pf stores the initiator at index `dir == IN ? 0 : 1`.
            let (addr, port) = if outbound {
                ([dst, src], [dport, sport])
            } else {
                ([src, dst], [sport, dport])
            };
            KeyRepr::from_flow_key(&FlowKey {
                addr,
                port,
                rdomain: 0,
                af: af as u8,
                proto: key.proto,
            })
        };
        let ingress = (st.src_endpoint(), st.dst_endpoint());
        let (keys, direction) = if tr.is_some() {
            let egress = (tr.src_endpoint(), tr.dst_endpoint());
            if egress.0 != ingress.0 {
                (
                    [
                        side(egress.0, egress.1, true),
                        side(ingress.0, ingress.1, true),
                    ],
                    2,
                )
            } else {
                (
                    [
                        side(ingress.0, ingress.1, false),
                        side(egress.0, egress.1, false),
                    ],
                    1,
                )
            }
        } else {
            let wk = side(ingress.0, ingress.1, false);
            ([wk, wk], 1)
        };
        // dpf's states are floating (lookups ignore the interface), as
        // pf's default `set state-policy floating`: bound to "all".
        let mut ifname = [0u8; 16];
        ifname[..3].copy_from_slice(b"all");
        StateRepr {
            id: st.id(),
            ifname,
            key: keys,
            // route-to / reply-to: the next hop (pfsync carries no
            // interface; the peer finds it by a route lookup).
            rt: tr.route.kind,
            rt_addr: tr.route.addr,
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
            // pf's `pf_state_expires`: the time left includes the
            // adaptive scaling of the moment.
            expire_s: st.expire_in_s_scaled(
                now,
                &self.timeouts,
                self.timeouts
                    .scale(self.states_total.load(std::sync::atomic::Ordering::Relaxed) as u64),
            ),
            packets: [st.packets(0), st.packets(1)],
            bytes: [st.bytes(0), st.bytes(1)],
            creatorid: st.creatorid(),
            af: af as u8,
            proto: key.proto,
            direction,
            timeout: st.timeout as u8,
            state_flags: st.state_flags & state_flags::WIRE,
            // pf marks states with source nodes; the nodes themselves are
            // not synced (neither by pf).
            sync_flags: if st.src_tracking().is_some() {
                dataplane::state::SYNC_FLAG_SRCNODE
            } else {
                0
            },
            // The state's scrub (spec/pfsync.md §3.7); the on/off options
            // are state_flags bits.
            max_mss: tr.scrub.max_mss,
            min_ttl: tr.scrub.min_ttl,
            set_tos: tr.scrub.set_tos,
            // pf's `st->log` (`act.log & PF_LOG_ALL` at creation).
            log: if st.log_all() {
                dataplane::pflog::log_flags::ALL
            } else {
                0
            },
            ..StateRepr::default()
        }
    }

    /// A received state in this box's representation: the state (keyed by
    /// the side its connection's first packet arrives on), its
    /// translation when the wire and stack keys differ, the peer's age and
    /// time left. The inverse of `to_wire`: an outbound
    /// state's stack key is the ingress side, an inbound state's wire key.
    fn import_from_wire(
        &self,
        s: &StateRepr,
        now: Instant,
    ) -> Option<(State, Translation, u32, u32)> {
        let af = match s.af {
            2 => Af::Inet,
            24 => Af::Inet6,
            _ => return None,
        };
        // Inbound: [initiator, responder]; outbound: the other way round.
        let (i, r) = if s.direction == 2 { (1, 0) } else { (0, 1) };
        let (ingress, egress) = if s.direction == 2 {
            (&s.key[1], &s.key[0])
        } else {
            (&s.key[0], &s.key[1])
        };
        let key_af = |k: &KeyRepr| match k.af {
            0 => Some(af),
            2 => Some(Af::Inet),
            24 => Some(Af::Inet6),
            _ => None,
        };
        // dpf does not translate between families (af-to).
        if key_af(ingress)? != af || key_af(egress)? != af {
            return None;
        }
        let k = ingress;
        let (key, swapped) =
            FlowKey::from_packet(af, s.proto, k.addr[i], k.port[i], k.addr[r], k.port[r]);
        // route-to / reply-to (dup-to is not kept: dpf has none); the port
        // is found by a route lookup of the next hop when it is used.
        let route = match s.rt {
            dataplane::state::route_kind::ROUTE_TO | dataplane::state::route_kind::REPLY_TO
                if s.rt_addr != dataplane::flow::Addr::ZERO =>
            {
                dataplane::state::StateRoute {
                    kind: s.rt,
                    port: dataplane::state::ROUTE_PORT_LOOKUP,
                    addr: s.rt_addr,
                }
            }
            _ => dataplane::state::StateRoute::NONE,
        };
        // The scrub values the peer's state applies (its flags come with
        // state_flags below).
        let scrub = dataplane::state::Scrub {
            max_mss: s.max_mss,
            min_ttl: s.min_ttl,
            set_tos: s.set_tos,
        };
        let translation = if s.key[0].addr == s.key[1].addr && s.key[0].port == s.key[1].port {
            Translation {
                route,
                scrub,
                ..Translation::NONE
            }
        } else {
            let e = egress;
            let (far, far_swapped) =
                FlowKey::from_packet(af, s.proto, e.addr[i], e.port[i], e.addr[r], e.port[r]);
            Translation {
                key: far,
                src_is_addr1: far_swapped,
                route,
                scrub,
            }
        };
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
        // `log (all)` (pf's `st->log`): this box logs the state's packets
        // after a failover as the peer did.
        st.set_log_all(s.log & dataplane::pflog::log_flags::ALL != 0);
        // Floating, whatever interface the peer bound it to (a peer's
        // names need not exist here): the port is only informative.
        let name_len = s.ifname.iter().position(|b| *b == 0).unwrap_or(16);
        let name = std::str::from_utf8(&s.ifname[..name_len]).unwrap_or("");
        st.ifindex = IfIndex(self.ifnames.iter().position(|n| n == name).unwrap_or(0) as u16);
        Some((st, translation, s.creation_s, s.expire_s))
    }

    /// `dpfctl pfsync0` / `-s pfsync`.
    pub fn show(&self, now: Instant) -> Value {
        let bulk = match self.bulk {
            BulkState::Requested { sent, .. } => format!("pending ({sent} requests sent)"),
            BulkState::Receiving { until } => format!(
                "pending (receiving, {} s left)",
                until.saturating_since(now).as_secs()
            ),
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
            "mtu": self.mtu,
            "auth": self.verifier.is_some(),
            "peer_mac": self.unicast_peer.map(|_| self.peer_mac.map(|m| format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ))),
            "held_frames": self.held_frames,
            "held_now": self.held.len(),
            "held_dropped": self.held_dropped,
            "not_from_peer": self.not_from_peer,
            "auth_missing": self.auth_missing,
            "auth_bad_mac": self.auth_bad_mac,
            "auth_replayed": self.auth_replayed,
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
        rig_with(workers, |_| {})
    }

    fn rig_with(workers: usize, f: impl FnOnce(&mut SyncSetup)) -> Rig {
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
            max_frame_len: 2048,
            state_limit: 100_000,
            auth: None,
            maxupd: 128,
            defer: false,
            creatorid: OURS,
            ifnames: vec!["sync0".into()],
            timeouts: Timeouts::default(),
            states_total: Default::default(),
            placement: Default::default(),
        };
        let mut setup = setup;
        f(&mut setup);
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
        frame_from_ip(mac, [10, 9, 0, 2], msgs)
    }

    fn frame_from_ip(mac: [u8; 6], ip: [u8; 4], msgs: &[Message]) -> Vec<u8> {
        let link = LinkParams::new(mac, ip, [0; 4], None).unwrap();
        let mut w = PacketWriter::new(1500, link, 1).unwrap();
        for m in msgs {
            w.push(m).unwrap();
        }
        w.finish().unwrap().to_vec()
    }

    fn export(r: &mut Rig, w: usize, action: SyncAction, st: State) {
        r.exports[w]
            .push(StateRecord {
                translation: Translation::NONE,
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
        r.sync.send_bulk(
            states.into_iter().map(|s| (s, Translation::NONE)).collect(),
            &mut out,
        );
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
        assert!(r.sync.bulk.pending());
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
    fn states_with_source_nodes_carry_pfs_srcnode_sync_flag() {
        let r = rig(1);
        let now = Instant::from_secs(2);
        let plain = state(4, OURS);
        assert_eq!(
            r.sync.to_wire(&plain, &Translation::NONE, now).sync_flags,
            0
        );
        let mut tracked = plain;
        tracked.set_src_tracked(false);
        let w = r.sync.to_wire(&tracked, &Translation::NONE, now);
        assert_eq!(w.sync_flags, 0x04, "spec/pfsync.md §3.7");
    }

    #[test]
    fn our_own_frames_are_ignored_but_the_peers_updates_of_our_states_merge() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        let ins = Message::Ins(r.sync.to_wire(&state(4, OURS), &Translation::NONE, now));
        // Seen again from our own MAC (af_packet sees its transmissions).
        r.sync
            .handle(&frame_from(OUR_MAC, &[ins]), 0, now, &mut Vec::new());
        assert!(r.imports[0].pop().is_none());
        // The peer forwarding our state after a failover sends its update.
        let upd = Message::Upd(r.sync.to_wire(&state(4, OURS), &Translation::NONE, now));
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
        let mut wire = r.sync.to_wire(&state(4, PEERS), &Translation::NONE, now);
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
    fn a_burst_beyond_a_rounds_share_is_reported_and_taken_next_round() {
        let (mut ep, ec) = channel::<StateRecord>(2 * EXPORTS_PER_ROUND);
        let mut r = rig(1);
        r.sync.exports = vec![ec];
        for i in 0..EXPORTS_PER_ROUND as u64 + 10 {
            ep.push(StateRecord {
                translation: Translation::NONE,
                action: SyncAction::Insert,
                state: state(i + 1, OURS),
                at: Instant::from_secs(1),
            })
            .unwrap();
        }
        ep.publish();
        let mut out = Vec::new();
        r.sync.poll(Instant::from_secs(2), &mut out);
        assert_eq!(sent(&out).len(), EXPORTS_PER_ROUND);
        assert!(r.sync.exports_pending(), "records were left in the ring");
        out.clear();
        r.sync.poll(Instant::from_secs(2), &mut out);
        assert_eq!(sent(&out).len(), 10);
        assert!(!r.sync.exports_pending());
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

    const OTHER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
    const PEER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 9, 0, 2);

    fn ins(id: u64, creatorid: u32) -> Message {
        let r = rig(1);
        Message::Ins(r.sync.to_wire(
            &state(id, creatorid),
            &Translation::NONE,
            Instant::from_secs(1),
        ))
    }

    fn imported(r: &mut Rig) -> usize {
        r.imports
            .iter_mut()
            .map(|c| std::iter::from_fn(|| c.pop()).count())
            .sum()
    }

    fn counter(r: &Rig, c: Counter) -> u64 {
        r.sync.stats.get(c)
    }

    #[test]
    fn pfsync_from_another_port_is_dropped_as_badif() {
        let mut r = rig(1);
        let f = frame_from(PEER_MAC, &[ins(1, PEERS)]);
        r.sync.handle(&f, 3, Instant::from_secs(2), &mut Vec::new());
        assert_eq!(imported(&mut r), 0);
        assert_eq!(counter(&r, Counter::Badif), 1);
        r.sync.handle(&f, 0, Instant::from_secs(2), &mut Vec::new());
        assert_eq!(imported(&mut r), 1);
    }

    #[test]
    fn with_a_unicast_syncpeer_only_its_address_writes_states() {
        let mut r = rig_with(1, |s| s.syncpeer = Some(PEER_IP));
        let now = Instant::from_secs(2);
        let forged = [
            ins(1, PEERS),
            Message::Clr(ClrRepr {
                ifname: [0; 16],
                creatorid: PEERS,
            }),
            Message::DelC(StateId {
                id: 1,
                creatorid: PEERS,
            }),
            Message::UpdReq(StateId::BULK_REQUEST),
            Message::Bus(BusRepr::new(PEERS, BusStatus::End)),
        ];
        for m in &forged {
            let f = frame_from_ip([2, 0, 0, 0, 0, 9], [10, 9, 0, 66], std::slice::from_ref(m));
            assert_eq!(r.sync.handle(&f, 0, now, &mut Vec::new()), SyncEvent::None);
        }
        assert_eq!(imported(&mut r), 0);
        assert_eq!(r.sync.show(now)["not_from_peer"], 5);
        let f = frame_from_ip(PEER_MAC, PEER_IP.octets(), &[ins(1, PEERS)]);
        r.sync.handle(&f, 0, now, &mut Vec::new());
        assert_eq!(imported(&mut r), 1);
    }

    #[test]
    fn a_unicast_peer_gets_frames_at_its_resolved_mac_held_until_then() {
        let mut r = rig_with(1, |s| s.syncpeer = Some(PEER_IP));
        let now = Instant::from_secs(2);
        assert_eq!(r.sync.unicast_peer(), Some(PEER_IP));
        let mut out = Vec::new();
        r.sync.request_bulk(now, &mut out);
        r.sync.send_clear(&mut out);
        assert!(out.is_empty(), "no MAC yet: held, never broadcast");
        assert_eq!(counter(&r, Counter::Opackets), 0);
        assert_eq!(r.sync.show(now)["held_now"], 2);
        r.sync.set_peer_mac(Some(PEER_MAC), &mut out);
        assert_eq!(out.len(), 2);
        for (_, f) in &out {
            assert_eq!(&f[0..6], &PEER_MAC);
            assert_eq!(&f[30..34], &PEER_IP.octets());
        }
        assert_eq!(
            sent(&out),
            vec![
                Message::UpdReq(StateId::BULK_REQUEST),
                Message::Clr(ClrRepr {
                    ifname: [0; 16],
                    creatorid: OURS
                })
            ]
        );
        assert_eq!(counter(&r, Counter::Opackets), 2);
        // Unresolved again: held, bounded, the excess counted.
        r.sync.set_peer_mac(None, &mut out);
        let mut out = Vec::new();
        for _ in 0..HELD_MAX + 3 {
            r.sync.send_clear(&mut out);
        }
        assert!(out.is_empty());
        assert_eq!(r.sync.show(now)["held_dropped"], 3);
        assert_eq!(counter(&r, Counter::Oerrors), 3);
    }

    #[test]
    fn opackets_counts_every_packet_sent() {
        let mut r = rig(1);
        let mut out = Vec::new();
        r.sync.request_bulk(Instant::from_secs(1), &mut out);
        export(&mut r, 0, SyncAction::Insert, state(7, OURS));
        r.sync.poll(Instant::from_secs(1), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(counter(&r, Counter::Opackets), 2);
        assert_eq!(r.sync.show(Instant::from_secs(1))["sent_packets"], 2);
    }

    fn key() -> Option<auth::Key> {
        auth::Key::new(b"a shared key of 32 bytes or so..")
    }

    #[test]
    fn with_auth_two_boxes_sync_and_unauthenticated_or_replayed_packets_are_dropped() {
        let mut a = rig_with(1, |s| s.auth = key());
        let mut b = rig_with(1, |s| {
            s.auth = key();
            s.mac = PEER_MAC;
            s.creatorid = PEERS;
        });
        let now = Instant::from_secs(2);
        export(&mut a, 0, SyncAction::Insert, state(7, OURS));
        let mut out = Vec::new();
        a.sync.poll(now, &mut out);
        assert_eq!(out.len(), 1);
        let signed = out[0].1.clone();
        // The trailer follows the pfsync payload; the IP length covers it.
        let ip_len = usize::from(u16::from_be_bytes([signed[16], signed[17]]));
        let pfsync_len = usize::from(u16::from_be_bytes([signed[36], signed[37]]));
        assert_eq!(ip_len, 20 + pfsync_len + auth::TRAILER_LEN);
        assert_eq!(signed.len(), 14 + ip_len);
        b.sync.handle(&signed, 0, now, &mut Vec::new());
        assert_eq!(imported(&mut b), 1);
        // Replayed.
        b.sync.handle(&signed, 0, now, &mut Vec::new());
        assert_eq!(imported(&mut b), 0);
        assert_eq!(b.sync.show(now)["auth_replayed"], 1);
        // Unauthenticated (as an OpenBSD peer or an attacker sends it).
        b.sync.handle(
            &frame_from(OTHER_MAC, &[ins(9, 0x77)]),
            0,
            now,
            &mut Vec::new(),
        );
        // Altered: a byte of the state changed.
        export(&mut a, 0, SyncAction::Insert, state(8, OURS));
        let mut out = Vec::new();
        a.sync.poll(now, &mut out);
        let mut altered = out[0].1.clone();
        altered[60] ^= 1;
        b.sync.handle(&altered, 0, now, &mut Vec::new());
        assert_eq!(imported(&mut b), 0);
        let v = b.sync.show(now);
        assert_eq!(
            (v["auth_missing"].as_u64(), v["auth_bad_mac"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(counter(&b, Counter::Badauth), 3);
        // The untampered one still goes through.
        b.sync.handle(&out[0].1, 0, now, &mut Vec::new());
        assert_eq!(imported(&mut b), 1);
    }

    #[test]
    fn a_jumbo_mtu_is_clamped_to_a_packet_buffer_and_a_bulk_ends_after_its_states() {
        for auth in [None, key()] {
            let mut r = rig_with(1, |s| {
                s.mtu = 9000;
                s.auth = auth.clone();
            });
            let now = Instant::from_secs(2);
            let trailer = if auth.is_some() { auth::TRAILER_LEN } else { 0 };
            assert_eq!(r.sync.mtu, 2048 - 14 - trailer);
            // At MTU 1500 the trailer's room is taken from the packet.
            let small = rig_with(1, |s| s.auth = auth.clone());
            assert_eq!(small.sync.mtu, 1500 - trailer);
            let states: Vec<State> = (1..=2000).map(|i| state(i, OURS)).collect();
            let mut out = Vec::new();
            r.sync.send_bulk(
                states.into_iter().map(|s| (s, Translation::NONE)).collect(),
                &mut out,
            );
            for _ in 0..200 {
                r.sync.poll(now, &mut out);
            }
            assert!(out.iter().all(|(_, f)| f.len() <= 2048));
            let mut stats = PfsyncStats::default();
            let ctx = RxContext {
                pf_running: true,
                pfsync_up: true,
                on_syncdev: true,
            };
            let mut msgs = Vec::new();
            for (_, f) in &out {
                let pkt = receive_frame(f, &ctx, &mut stats).unwrap();
                pkt.walker().for_each_message(|_| {}, |m| msgs.push(m));
            }
            let upds = msgs.iter().filter(|m| matches!(m, Message::Upd(_))).count();
            assert_eq!(upds, 2000);
            assert_eq!(
                msgs.last(),
                Some(&Message::Bus(BusRepr::new(OURS, BusStatus::End)))
            );
            assert_eq!(counter(&r, Counter::Opackets), out.len() as u64);
        }
    }

    #[test]
    fn a_state_without_creator_is_rejected_as_badstate() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        let f = frame_from(PEER_MAC, &[ins(1, 0), upd_c(2, 0, 2)]);
        r.sync.handle(&f, 0, now, &mut Vec::new());
        assert_eq!(imported(&mut r), 0);
        assert_eq!(counter(&r, Counter::Badstate), 2);
        // Nor does a bulk update export one.
        let mut out = Vec::new();
        r.sync.send_bulk(
            vec![
                (state(1, 0), Translation::NONE),
                (state(2, OURS), Translation::NONE),
            ],
            &mut out,
        );
        r.sync.poll(now, &mut out);
        let upds: Vec<_> = sent(&out)
            .into_iter()
            .filter_map(|m| match m {
                Message::Upd(s) => Some(s.creatorid),
                _ => None,
            })
            .collect();
        assert_eq!(upds, vec![OURS]);
    }

    #[test]
    fn overruns_truncated_states_and_unusable_actions_are_counted() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        // A DEL_C then an INS whose section claims 2 states but carries 1.
        let mut f = frame_from(PEER_MAC, &[upd_c(3, PEERS, 2), ins(1, PEERS)]);
        let sub = 34 + 20 + 4 + 84; // the INS subheader
        assert_eq!(f[sub], 13);
        f[sub + 3] = 2;
        r.sync.handle(&f, 0, now, &mut Vec::new());
        assert_eq!(counter(&r, Counter::Badlen), 1);
        assert_eq!(imported(&mut r), 1, "the UPD_C before it is processed");
        // An unknown action with message length 0.
        let mut f = frame_from(PEER_MAC, &[upd_c(3, PEERS, 2)]);
        f[34 + 20] = 200;
        f[34 + 20 + 1] = 0;
        r.sync.handle(&f, 0, now, &mut Vec::new());
        assert_eq!(counter(&r, Counter::Badact), 1);
        // Header length past the packet.
        let mut f = frame_from(PEER_MAC, &[upd_c(3, PEERS, 2)]);
        f[36..38].copy_from_slice(&2000u16.to_be_bytes());
        r.sync.handle(&f, 0, now, &mut Vec::new());
        assert_eq!(counter(&r, Counter::Badlen), 2);
        // Invalid field values.
        let mut bad = r.sync.to_wire(&state(5, PEERS), &Translation::NONE, now);
        bad.direction = 9;
        r.sync.handle(
            &frame_from(PEER_MAC, &[Message::Ins(bad)]),
            0,
            now,
            &mut Vec::new(),
        );
        assert_eq!(counter(&r, Counter::Badval), 1);
        assert_eq!(imported(&mut r), 0);
    }

    #[test]
    fn deleting_a_state_no_worker_has_counts_badstate() {
        let mut r = rig(2);
        let now = Instant::from_secs(2);
        let gone = State::identity_only(9, PEERS, now);
        export(&mut r, 0, SyncAction::NotDeleted, gone);
        r.sync.poll(now, &mut Vec::new());
        assert_eq!(counter(&r, Counter::Badstate), 0, "worker 1 may have it");
        export(&mut r, 1, SyncAction::NotDeleted, gone);
        let mut out = Vec::new();
        r.sync.poll(now, &mut out);
        assert_eq!(counter(&r, Counter::Badstate), 1);
        assert!(out.is_empty(), "nothing is requested for a deletion");
    }

    #[test]
    fn the_bulk_request_is_retried_every_2_s_12_times_then_given_up() {
        let mut r = rig(1);
        let mut t = Instant::from_secs(1);
        let mut out = Vec::new();
        r.sync.request_bulk(t, &mut out);
        let mut requests = sent(&out).len();
        // A lone BUS END (a peer with an empty table) is ignored (§5.6).
        let end = frame_from(
            PEER_MAC,
            &[Message::Bus(BusRepr::new(PEERS, BusStatus::End))],
        );
        assert_eq!(r.sync.handle(&end, 0, t, &mut Vec::new()), SyncEvent::None);
        let mut gave_up = None;
        for step in 1..=60 {
            t = t + Duration::from_millis(500);
            let mut out = Vec::new();
            if r.sync.poll(t, &mut out) {
                gave_up = Some(step);
                break;
            }
            requests += sent(&out)
                .iter()
                .filter(|m| **m == Message::UpdReq(StateId::BULK_REQUEST))
                .count();
        }
        assert_eq!(requests, 12);
        // 12 requests 2 s apart, then 2 s more: 24 s after the first.
        assert_eq!(gave_up, Some(48));
        assert_eq!(r.sync.bulk, BulkState::TimedOut);
    }

    #[test]
    fn a_bulk_update_start_then_end_completes_the_request() {
        let mut r = rig(1);
        let now = Instant::from_secs(1);
        r.sync.request_bulk(now, &mut Vec::new());
        let start = frame_from(
            PEER_MAC,
            &[Message::Bus(BusRepr::new(PEERS, BusStatus::Start))],
        );
        r.sync.handle(&start, 0, now, &mut Vec::new());
        assert!(matches!(r.sync.bulk, BulkState::Receiving { .. }));
        // No more requests while receiving.
        let mut out = Vec::new();
        r.sync.poll(now + Duration::from_secs(3), &mut out);
        assert!(out.is_empty());
        let end = frame_from(
            PEER_MAC,
            &[Message::Bus(BusRepr::new(PEERS, BusStatus::End))],
        );
        assert_eq!(
            r.sync.handle(&end, 0, now, &mut Vec::new()),
            SyncEvent::BulkDone
        );
        assert_eq!(r.sync.bulk, BulkState::Done);
        // BULK timer: 4 × max(1, 100000 / 5 / 50) s = 1600 s (spec §5.6).
        assert_eq!(r.sync.bulk_timeout, Duration::from_secs(1600));
    }

    #[test]
    fn states_are_exported_floating_and_imported_whatever_their_interface() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        let mut st = state(4, OURS);
        st.ifindex = IfIndex(0);
        let wire = r.sync.to_wire(&st, &Translation::NONE, now);
        assert_eq!(&wire.ifname[..4], b"all\0");
        let mut theirs = r.sync.to_wire(&state(5, PEERS), &Translation::NONE, now);
        theirs.ifname = *b"em0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        r.sync.handle(
            &frame_from(PEER_MAC, &[Message::Ins(theirs)]),
            0,
            now,
            &mut Vec::new(),
        );
        assert_eq!(imported(&mut r), 1);
    }

    #[test]
    fn icmp_states_carry_pfs_id_and_type_ports_and_round_trip() {
        let mut r = rig(1);
        let now = Instant::from_secs(2);
        let (a, b) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        // An echo request from a: pf's (id, ICMP_ECHO).
        let (k, sw) = FlowKey::from_packet(Af::Inet, proto::ICMP, a, 0x4242, b, 8);
        let mut st = State::new(k, sw, 3, OURS, now);
        st.timeout = TimeoutClass::IcmpFirst;
        let wire = r.sync.to_wire(&st, &Translation::NONE, now);
        assert_eq!(wire.key[0].port, [0x4242, 8]);
        assert_eq!(wire.key[0].addr[0], a);
        assert_eq!(wire.direction, 1);
        // Imported back (as from an OpenBSD peer): the same flow, which the
        // echo reply (b, 8) -> (a, 0x4242) matches.
        let f = frame_from(
            PEER_MAC,
            &[Message::Ins(StateRepr {
                creatorid: PEERS,
                ..wire
            })],
        );
        r.sync.handle(&f, 0, now, &mut Vec::new());
        match r.imports[0].pop() {
            Some(ImportRecord::Upsert { state, .. }) => {
                assert_eq!(*state.key(), k);
                let reply = FlowKey::from_packet(Af::Inet, proto::ICMP, b, 8, a, 0x4242);
                assert_eq!(reply.0, k);
            }
            other => panic!("expected the import, got {other:?}"),
        }
    }

    #[test]
    fn a_clear_goes_to_every_worker_unless_it_names_another_interface() {
        let mut r = rig(2);
        let now = Instant::from_secs(2);
        let clr = |name: &[u8], creatorid| {
            let mut ifname = [0u8; 16];
            ifname[..name.len()].copy_from_slice(name);
            Message::Clr(ClrRepr { ifname, creatorid })
        };
        let f = frame_from(
            PEER_MAC,
            &[
                clr(b"", PEERS),
                clr(b"all", PEERS),
                clr(b"em0", PEERS),
                clr(b"", OURS),
            ],
        );
        r.sync.handle(&f, 0, now, &mut Vec::new());
        for w in 0..2 {
            let got: Vec<_> = std::iter::from_fn(|| r.imports[w].pop()).collect();
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(got
                .iter()
                .all(|c| matches!(c, ImportRecord::Clear { creatorid: PEERS })));
        }
    }

    // ---- Translated states on the wire (spec/pfsync.md §3.7) ----

    /// Where `pfsync_state` starts in a frame carrying one message:
    /// Ethernet 14, IPv4 20, pfsync header 20, subheader 4 (spec §7.1,
    /// frame offset 0x3a).
    const STATE_AT: usize = 14 + 20 + 20 + 4;

    /// A TCP state whose first packet went `src` -> `dst`, with both peers
    /// established and distinct windows (so a swap of the peers shows).
    fn tcp_state(id: u64, src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> State {
        let (k, sw) = FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4(src.0),
            src.1,
            Addr::v4(dst.0),
            dst.1,
        );
        let mut st = State::new(k, sw, id, OURS, Instant::from_secs(1));
        st.timeout = TimeoutClass::TcpEstablished;
        st.src = Peer {
            seqlo: 0x1a2b_3c4d,
            seqhi: 0x1a2c_8f61,
            seqdiff: 0,
            max_win: 64240,
            mss: 0,
            wscale: 0x87,
            state: 4,
        };
        st.dst = Peer {
            seqlo: 0x5e6f_7081,
            seqhi: 0x5e70_d2f9,
            seqdiff: 0,
            max_win: 502,
            mss: 0,
            wscale: 0x87,
            state: 4,
        };
        st
    }

    /// The far side of a translation: the connection as it looks on the
    /// egress side, first packet `src` -> `dst`.
    fn egress(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Translation {
        let (key, src_is_addr1) = FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4(src.0),
            src.1,
            Addr::v4(dst.0),
            dst.1,
        );
        Translation {
            key,
            src_is_addr1,
            route: Default::default(),
            scrub: Default::default(),
        }
    }

    /// The frame the sync side sends for a worker's INS of `st`.
    fn emitted_ins(r: &mut Rig, st: State, tr: Translation) -> Vec<u8> {
        r.exports[0]
            .push(StateRecord {
                action: SyncAction::Insert,
                state: st,
                translation: tr,
                at: Instant::from_secs(1),
            })
            .unwrap();
        r.exports[0].publish();
        let mut out = Vec::new();
        r.sync.poll(Instant::from_secs(2), &mut out);
        assert_eq!(out.len(), 1, "one packet");
        let frame = out.remove(0).1;
        // One INS (action 13) of 66 words.
        assert_eq!(frame[STATE_AT - 4..STATE_AT], [13, 66, 0, 1]);
        frame
    }

    /// The frame, as if the peer had sent it, through the receive path:
    /// the state and translation handed to the worker.
    fn reimported(r: &mut Rig, mut frame: Vec<u8>) -> (State, Translation) {
        frame[6..12].copy_from_slice(&PEER_MAC);
        r.sync
            .handle(&frame, 0, Instant::from_secs(2), &mut Vec::new());
        match r.imports[0].pop() {
            Some(ImportRecord::Upsert {
                state, translation, ..
            }) => (state, translation),
            other => panic!("expected the import, got {other:?}"),
        }
    }

    /// What pfsync carries of a state comes back as it went.
    fn assert_round_trip(sent: (&State, &Translation), back: (&State, &Translation)) {
        let (a, b) = (sent.0, back.0);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.src_is_addr1(), b.src_is_addr1());
        assert_eq!(a.src_endpoint(), b.src_endpoint());
        assert_eq!((a.id(), a.creatorid()), (b.id(), b.creatorid()));
        assert_eq!(({ a.src }, { a.dst }), ({ b.src }, { b.dst }));
        assert_eq!(a.timeout, b.timeout);
        assert_eq!(sent.1, back.1, "the translation");
    }

    #[test]
    fn scrub_and_the_adaptively_scaled_expiry_go_out_and_come_back() {
        // 90 000 states between pf's default 60 000 and 120 000: the
        // timeouts are halved, and `expire` says so (spec §3.7).
        let states = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(90_000));
        let shared = states.clone();
        let mut r = rig_with(1, move |s| s.states_total = shared);
        let mut st = tcp_state(0x0a0b, ([10, 1, 0, 50], 40000), ([10, 2, 0, 50], 80));
        st.state_flags |= state_flags::NODF | state_flags::SETTOS | state_flags::RANDOMID;
        let tr = Translation {
            scrub: dataplane::state::Scrub {
                max_mss: 1400,
                min_ttl: 64,
                set_tos: 0x10,
            },
            ..Translation::NONE
        };
        let frame = emitted_ins(&mut r, st, tr);
        let s = &frame[STATE_AT..STATE_AT + 264];
        // Created at 1 s, sent at 2 s: 43 200 - 1 s left of 86 400 halved.
        assert_eq!(s[200..204], 43_199u32.to_be_bytes(), "expire scaled");
        assert_eq!(s[248..250], 1400u16.to_be_bytes(), "max_mss");
        assert_eq!((s[258], s[259]), (64, 0x10), "min_ttl, set_tos");
        let flags = u16::from_be_bytes([s[260], s[261]]);
        assert_eq!(
            flags & (state_flags::NODF | state_flags::SETTOS | state_flags::RANDOMID),
            state_flags::NODF | state_flags::SETTOS | state_flags::RANDOMID
        );
        let (back, back_tr) = reimported(&mut r, frame);
        assert_eq!(back_tr.scrub, tr.scrub, "the scrub values come back");
        assert_eq!(
            back.state_flags & (state_flags::NODF | state_flags::SETTOS | state_flags::RANDOMID),
            st.state_flags & (state_flags::NODF | state_flags::SETTOS | state_flags::RANDOMID)
        );
        // Below adaptive.start the full timeout goes out.
        states.store(10, std::sync::atomic::Ordering::Relaxed);
        let frame = emitted_ins(
            &mut r,
            tcp_state(0x0a0c, ([10, 1, 0, 51], 1), ([10, 2, 0, 50], 80)),
            Translation::NONE,
        );
        let s = &frame[STATE_AT..STATE_AT + 264];
        assert_eq!(s[200..204], 86_399u32.to_be_bytes());
    }

    #[test]
    fn log_all_goes_out_in_the_log_byte_and_comes_back() {
        let mut r = rig(1);
        let mut st = tcp_state(0x0a0d, ([10, 1, 0, 52], 40001), ([10, 2, 0, 50], 80));
        st.set_log_all(true);
        let frame = emitted_ins(&mut r, st, Translation::NONE);
        let s = &frame[STATE_AT..STATE_AT + 264];
        // spec §3.7: offset 253 is `log` (pf's PF_LOG_ALL = 0x02).
        assert_eq!(s[253], 0x02, "log");
        let (back, _) = reimported(&mut r, frame);
        assert!(back.log_all(), "the state logs all its packets here too");
        let plain = tcp_state(0x0a0e, ([10, 1, 0, 53], 40002), ([10, 2, 0, 50], 80));
        let frame = emitted_ins(&mut r, plain, Translation::NONE);
        assert_eq!(frame[STATE_AT + 253], 0);
        let (back, _) = reimported(&mut r, frame);
        assert!(!back.log_all());
    }

    #[test]
    fn a_nat_to_state_goes_out_as_pfs_outbound_state_byte_by_byte_and_round_trips() {
        let mut r = rig(1);
        // LAN client 10.1.0.50:40000 -> 10.2.0.50:8080 (port 0x1f90),
        // created inbound on the LAN port, `nat-to` 10.2.0.254 port 61001.
        let st = tcp_state(
            0x0102_0304_0506_0708,
            ([10, 1, 0, 50], 40000),
            ([10, 2, 0, 50], 8080),
        );
        let tr = egress(([10, 2, 0, 254], 61001), ([10, 2, 0, 50], 8080));
        let frame = emitted_ins(&mut r, st, tr);
        let s = &frame[STATE_AT..STATE_AT + 264];
        // pf holds a source translation as an outbound state on the WAN
        // interface: key[0] (wire) is the translated connection, key[1]
        // (stack) the LAN's; outbound, so index 0 is the destination and
        // index 1 the source (§3.7 index convention).
        #[rustfmt::skip]
        let wire: [u8; 40] = [
            10, 2, 0, 50,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[0] server
            10, 2, 0, 254,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[1] nat-to address
            0x1f, 0x90,     // port[0] 8080
            0xee, 0x49,     // port[1] 61001
            0, 0,           // rdomain
            2,              // af AF_INET
            0,              // pad
        ];
        #[rustfmt::skip]
        let stack: [u8; 40] = [
            10, 2, 0, 50,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[0] server
            10, 1, 0, 50,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[1] LAN client
            0x1f, 0x90,     // port[0] 8080
            0x9c, 0x40,     // port[1] 40000
            0, 0, 2, 0,
        ];
        assert_eq!(s[0..8], [1, 2, 3, 4, 5, 6, 7, 8], "id");
        assert_eq!(s[8..24], *b"all\0\0\0\0\0\0\0\0\0\0\0\0\0", "ifname");
        assert_eq!(s[24..64], wire, "key[0], the wire key");
        assert_eq!(s[64..104], stack, "key[1], the stack key");
        // src is the client (it sent the first packet), on both keys.
        assert_eq!(s[104 + 8..104 + 12], [0x1a, 0x2b, 0x3c, 0x4d], "src seqlo");
        assert_eq!(s[136 + 8..136 + 12], [0x5e, 0x6f, 0x70, 0x81], "dst seqlo");
        assert_eq!(s[192..196], [0xff; 4], "nat_rule: none");
        assert_eq!(s[236..240], OURS.to_be_bytes(), "creatorid");
        assert_eq!(s[250], 2, "af");
        assert_eq!(s[251], 6, "proto");
        assert_eq!(s[252], 2, "direction OUT");
        assert_eq!(s[255], 2, "timeout TCP established");
        let (back, back_tr) = reimported(&mut r, frame);
        assert_round_trip((&st, &tr), (&back, &back_tr));
    }

    #[test]
    fn an_rdr_to_state_goes_out_as_pfs_inbound_state_byte_by_byte_and_round_trips() {
        let mut r = rig(1);
        // WAN client 10.2.0.50:33333 (0x8235) -> 10.2.0.254:8080, created
        // inbound on the WAN port, `rdr-to` 10.1.0.50 port 9090 (0x2382).
        let st = tcp_state(9, ([10, 2, 0, 50], 33333), ([10, 2, 0, 254], 8080));
        let tr = egress(([10, 2, 0, 50], 33333), ([10, 1, 0, 50], 9090));
        let frame = emitted_ins(&mut r, st, tr);
        let s = &frame[STATE_AT..STATE_AT + 264];
        // pf holds a destination translation as an inbound state on the
        // WAN interface: key[0] (wire) as the client sent it, key[1]
        // (stack) redirected; inbound, so index 0 is the source.
        #[rustfmt::skip]
        let wire: [u8; 40] = [
            10, 2, 0, 50,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[0] WAN client
            10, 2, 0, 254,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[1] published address
            0x82, 0x35,     // port[0] 33333
            0x1f, 0x90,     // port[1] 8080
            0, 0, 2, 0,
        ];
        #[rustfmt::skip]
        let stack: [u8; 40] = [
            10, 2, 0, 50,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[0] WAN client
            10, 1, 0, 50,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // addr[1] LAN server
            0x82, 0x35,     // port[0] 33333
            0x23, 0x82,     // port[1] 9090
            0, 0, 2, 0,
        ];
        assert_eq!(s[0..8], 9u64.to_be_bytes(), "id");
        assert_eq!(s[24..64], wire, "key[0], the wire key");
        assert_eq!(s[64..104], stack, "key[1], the stack key");
        assert_eq!(s[104 + 8..104 + 12], [0x1a, 0x2b, 0x3c, 0x4d], "src seqlo");
        assert_eq!(s[250], 2, "af");
        assert_eq!(s[251], 6, "proto");
        assert_eq!(s[252], 1, "direction IN");
        let (back, back_tr) = reimported(&mut r, frame);
        assert_round_trip((&st, &tr), (&back, &back_tr));
    }

    #[test]
    fn an_inet6_nat_to_state_carries_whole_addresses_and_af_24() {
        let mut r = rig(1);
        let a = |last: u8| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            b[15] = last;
            Addr(b)
        };
        let (client, server, nat) = (a(0x50), a(0x99), a(0xfe));
        let (k, sw) = FlowKey::from_packet(Af::Inet6, proto::UDP, client, 5353, server, 53);
        let mut st = State::new(k, sw, 11, OURS, Instant::from_secs(1));
        st.timeout = TimeoutClass::UdpMultiple;
        let (fk, fsw) = FlowKey::from_packet(Af::Inet6, proto::UDP, nat, 50000, server, 53);
        let tr = Translation {
            key: fk,
            src_is_addr1: fsw,
            route: Default::default(),
            scrub: Default::default(),
        };
        let frame = emitted_ins(&mut r, st, tr);
        let s = &frame[STATE_AT..STATE_AT + 264];
        assert_eq!(s[24..40], server.0, "wire addr[0]: destination");
        assert_eq!(s[40..56], nat.0, "wire addr[1]: translated source");
        assert_eq!(s[56..60], [0, 53, 0xc3, 0x50], "wire ports 53 / 50000");
        assert_eq!(s[62], 24, "wire key af AF_INET6");
        assert_eq!(s[64..80], server.0, "stack addr[0]");
        assert_eq!(s[80..96], client.0, "stack addr[1]: the client");
        assert_eq!(s[96..100], [0, 53, 0x14, 0xe9], "stack ports 53 / 5353");
        assert_eq!(s[102], 24, "stack key af");
        assert_eq!(s[250..253], [24, 17, 2], "af, proto, direction OUT");
        let (back, back_tr) = reimported(&mut r, frame);
        assert_round_trip((&st, &tr), (&back, &back_tr));
    }

    /// What an OpenBSD box sends for one translated connection: two states
    /// of its own, each with its own id and interface. dpf keeps one state
    /// that translates, found by both sides' keys.
    #[test]
    fn an_openbsd_peers_two_states_of_a_translated_connection_become_one() {
        use dataplane::pipeline::{Pipeline, PipelineConfig};
        use dataplane::rules::{RuleEnv, Ruleset};
        use dataplane::state::Shard;
        let key = |a0: [u8; 4], a1: [u8; 4], p0: u16, p1: u16| KeyRepr {
            addr: [Addr::v4(a0), Addr::v4(a1)],
            port: [p0, p1],
            rdomain: 0,
            af: 2,
        };
        let pf_state = |id: u64, ifname: &[u8], direction: u8, keys: [KeyRepr; 2]| {
            let mut name = [0u8; 16];
            name[..ifname.len()].copy_from_slice(ifname);
            let mut s = StateRepr {
                id,
                ifname: name,
                key: keys,
                rule: 3,
                anchor: u32::MAX,
                nat_rule: u32::MAX,
                creation_s: 5,
                expire_s: 86395,
                creatorid: PEERS,
                rtableid: if direction == 1 { [-1, 0] } else { [0, -1] },
                af: 2,
                proto: 6,
                direction,
                timeout: 2,
                ..StateRepr::default()
            };
            s.src.state = 4;
            s.dst.state = 4;
            s.src.seqlo = 1000;
            s
        };
        let (lan_client, server, vip) = ([10, 1, 0, 50], [10, 2, 0, 50], [10, 2, 0, 254]);
        let lan_key = key(lan_client, server, 40000, 8080);
        // `match out on em1 nat-to 10.2.0.254`: the inbound state on em0
        // (untranslated), then the outbound one on em1 (wire: translated,
        // stack: the LAN's key, outbound index order).
        let nat = [
            pf_state(0x51, b"em0", 1, [lan_key, lan_key]),
            pf_state(
                0x52,
                b"em1",
                2,
                [
                    key(server, vip, 8080, 61001),
                    key(server, lan_client, 8080, 40000),
                ],
            ),
        ];
        // `pass in on em1 ... rdr-to 10.1.0.50 port 9090`: the inbound
        // state on em1 (wire: as sent, stack: redirected), then the
        // outbound one on em0 (untranslated, redirected).
        let wan_client = [10, 2, 0, 77];
        let rdr = [
            pf_state(
                0x61,
                b"em1",
                1,
                [
                    key(wan_client, vip, 33333, 8080),
                    key(wan_client, lan_client, 33333, 9090),
                ],
            ),
            pf_state(0x62, b"em0", 2, {
                let k = key(lan_client, wan_client, 9090, 33333);
                [k, k]
            }),
        ];
        let flow = |src: [u8; 4], sport, dst: [u8; 4], dport| {
            FlowKey::from_packet(
                Af::Inet,
                proto::TCP,
                Addr::v4(src),
                sport,
                Addr::v4(dst),
                dport,
            )
            .0
        };
        let cases = [
            (
                nat,
                flow(lan_client, 40000, server, 8080),
                flow(vip, 61001, server, 8080),
            ),
            (
                rdr,
                flow(wan_client, 33333, vip, 8080),
                flow(wan_client, 33333, lan_client, 9090),
            ),
        ];
        for (states, near, far) in cases {
            let mut r = rig(1);
            let f = frame_from(
                PEER_MAC,
                &[Message::Ins(states[0]), Message::Ins(states[1])],
            );
            r.sync.handle(&f, 0, Instant::from_secs(2), &mut Vec::new());
            // The worker side: a pipeline fed by this import ring.
            let env = RuleEnv {
                interfaces: &[],
                self_addrs: &[],
                names: &[],
            };
            let rules = Ruleset::compile("block all\n", "t", &env).unwrap();
            let mut p = Pipeline::new(
                PipelineConfig::default(),
                std::sync::Arc::new(rules),
                Shard::new(16, 0).unwrap(),
            );
            let (export, _exported) = channel::<StateRecord>(16);
            let (mut to_worker, import) = channel::<ImportRecord>(16);
            p.set_sync(export, import, 128);
            let mut n = 0;
            while let Some(rec) = r.imports[0].pop() {
                to_worker.push(rec).unwrap();
                n += 1;
            }
            assert_eq!(n, 2, "both states reach the worker");
            to_worker.publish();
            p.sync_poll(Instant::from_secs(2), 16);
            let sh = p.shard();
            assert_eq!(sh.len(), 1, "one state for the connection");
            let (slot, _) = sh.lookup_side(&near, near.symmetric_hash()).unwrap();
            assert_eq!(
                sh.lookup_side(&far, far.symmetric_hash()),
                Some((slot, true)),
                "the translated side finds the same state"
            );
            assert_eq!(sh.translation(slot).map(|t| t.key), Some(far));
            assert_eq!(sh.get(slot).unwrap().id(), states[0].id);
        }
    }
}
