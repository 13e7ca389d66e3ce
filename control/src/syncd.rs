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
//! Departure from ARCHITECTURE.md: this runs on the control thread, not a
//! thread of its own (the control loop already sleeps ~1 ms and owns the
//! injection path); sends are full UPD rather than compressed UPD_C, and
//! `defer` is not implemented.

use crate::pfsync::pack::{Packer, PacketWriter};
use crate::pfsync::wire::frame::receive_frame;
use crate::pfsync::wire::{
    BusRepr, BusStatus, ClrRepr, KeyRepr, LinkParams, Message, PeerRepr, RxContext, StateId,
    StateRepr,
};
use crate::pfsync::PfsyncStats;
use crate::slowpath::Out;
use dataplane::export::{ImportRecord, StateRecord, SyncAction};
use dataplane::flow::{Af, Direction, FlowKey, IfIndex};
use dataplane::ring::{Consumer, Producer};
use dataplane::state::{Peer, State};
use dataplane::time::{Duration, Instant};
use dataplane::timeouts::{TimeoutClass, Timeouts};
use serde_json::{json, Value};

/// How long a bulk request waits for the end marker.
const BULK_TIMEOUT: Duration = Duration::from_secs(12);
/// Demotion while a bulk update is pending (spec §5.6).
pub const BULK_DEMOTE: i32 = 32;

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
        Ok(Sync {
            syncdev: s.syncdev,
            syncdev_name: s.syncdev_name,
            syncpeer: s.syncpeer,
            maxupd: s.maxupd,
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
        })
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

    fn push(&mut self, msg: &Message, out: &mut Vec<Out>) {
        match self.packer.push(msg) {
            Ok(Some(frame)) => {
                out.push((self.syncdev, frame.to_vec()));
                self.sent_packets += 1;
            }
            Ok(None) => {}
            Err(_) => self.stats.incr(crate::pfsync::Counter::Onomem),
        }
    }

    fn flush(&mut self, out: &mut Vec<Out>) {
        if let Some(frame) = self.packer.flush() {
            out.push((self.syncdev, frame.to_vec()));
            self.sent_packets += 1;
        }
    }

    /// Drains the export rings into packets; sends what is pending.
    /// Returns whether a bulk timeout expired (remove the demotion).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Out>) -> bool {
        for w in 0..self.exports.len() {
            for _ in 0..4096 {
                let Some(rec) = self.exports[w].pop() else {
                    break;
                };
                let msg = match rec.action {
                    SyncAction::Insert => Message::Ins(self.to_wire(&rec.state, now)),
                    SyncAction::Update => Message::Upd(self.to_wire(&rec.state, now)),
                    SyncAction::Delete => Message::DelC(StateId {
                        id: rec.state.id(),
                        creatorid: rec.state.creatorid(),
                    }),
                };
                self.sent_states += 1;
                self.push(&msg, out);
            }
        }
        self.flush(out);
        if let BulkState::Pending { until } = self.bulk {
            if now >= until {
                self.bulk = BulkState::TimedOut;
                crate::log!(crate::log::Level::Warning, "pfsync: bulk update timed out");
                return true;
            }
        }
        false
    }

    /// Sends `states` (a bulk update), then the end marker.
    pub fn send_bulk(&mut self, states: &[State], now: Instant, out: &mut Vec<Out>) {
        self.send_alone(
            &Message::Bus(BusRepr {
                creatorid: self.creatorid,
                endtime: 0,
                status: BusStatus::Start as u8,
            }),
            out,
        );
        for st in states {
            let m = Message::Upd(self.to_wire(st, now));
            self.push(&m, out);
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
    pub fn handle(&mut self, frame: &[u8], port: u16, now: Instant) -> SyncEvent {
        let ctx = RxContext {
            pf_running: true,
            pfsync_up: true,
            on_syncdev: port == self.syncdev,
        };
        let Ok(pkt) = receive_frame(frame, &ctx, &mut self.stats) else {
            return SyncEvent::None;
        };
        let mut event = SyncEvent::None;
        let mut msgs = Vec::new();
        pkt.walker().for_each_message(|_| {}, |m| msgs.push(m));
        for m in msgs {
            match m {
                Message::Ins(s) | Message::Upd(s) => {
                    if s.creatorid == self.creatorid {
                        continue; // our own state coming back: never merge it
                    }
                    if let Some((state, age, expire)) = self.import_from_wire(&s, now) {
                        self.received_states += 1;
                        let owner = state.key().owner(self.imports.len());
                        let rec = ImportRecord::Upsert {
                            state,
                            age_s: age,
                            expire_s: expire,
                        };
                        if let Some(p) = self.imports.get_mut(owner) {
                            if p.push(rec).is_err() {
                                self.import_dropped += 1;
                            }
                            p.publish();
                        }
                    } else {
                        self.stats.incr(crate::pfsync::Counter::Badval);
                    }
                }
                Message::DelC(id) => {
                    self.broadcast_to_workers(ImportRecord::Delete {
                        id: id.id,
                        creatorid: id.creatorid,
                    });
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
                Message::Bus(b) if b.status == BusStatus::End as u8 => {
                    if matches!(self.bulk, BulkState::Pending { .. }) {
                        self.bulk = BulkState::Done;
                        crate::log!(crate::log::Level::Notice, "pfsync: bulk update received");
                        event = SyncEvent::BulkDone;
                    }
                }
                _ => {}
            }
        }
        event
    }

    /// Hands `rec` to every worker's import ring (deletions carry no key,
    /// so the owner is unknown); a full ring is counted.
    fn broadcast_to_workers(&mut self, rec: ImportRecord) {
        for p in self.imports.iter_mut() {
            if p.push(rec).is_err() {
                self.import_dropped += 1;
            }
            p.publish();
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
            state_flags: st.state_flags,
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
        st.state_flags = s.state_flags;
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
            "defer": false,
            "bulk": bulk,
            "creatorid": format!("{:08x}", self.creatorid),
            "sent_packets": self.sent_packets,
            "sent_states": self.sent_states,
            "received_states": self.received_states,
            "import_dropped": self.import_dropped,
            "sent_clears": self.sent_clears,
            "received_clears": self.received_clears,
            "stats": self.stats.iter().map(|(c, v)| (c.to_string(), Value::from(v))).collect::<serde_json::Map<_, _>>(),
        })
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
