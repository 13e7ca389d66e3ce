//! The bulk update protocol (`spec/pfsync.md` §5.6) as two sans-I/O
//! machines with time passed in.
//!
//! * [`BulkRequester`]: a node whose pfsync comes up asks its peer for the
//!   whole state table (UPD_REQ id 0 / creatorid 0) and keeps CARP demoted by
//!   32 until the transfer ends or it gives up, so it does not become MASTER
//!   with an empty table. It also holds the separate demotion by 1 while the
//!   sync link is down. Its outputs are [`BulkAction`]s (send the request,
//!   adjust the carp group demotion); it never sends anything itself.
//!
//!   ```text
//!   NONE --up--> START(30 s) --link--> SENT(2 s) --BUS START--> BULK(t) --BUS END--> DONE
//!                  |  timer: done         | timer: retry ×12, then done   | timer: done
//!                  +--BUS START--> BULK   (demote +32 on up, −32 on done or down)
//!   ```
//!
//! * [`BulkSender`]: the responder. A bulk request starts a stream: BUS
//!   START and as many full states (UPD) as fit, then every 20 ms another
//!   packet of states, BUS END in the packet with the last state if it fits
//!   (else alone); an empty table is answered by a lone BUS END. The caller
//!   owns the cursor over its states and passes it to each
//!   [`BulkSender::poll`].
//!
//! Invariant (requester): the +32 demotion is outstanding exactly while the
//! state is START, SENT or BULK, and the +1 link demotion exactly while
//! pfsync is up with its link down; every `+` is matched by one `−`.

use dataplane::time::{Duration, Instant};

use super::pack::{PackError, PacketWriter};
use super::wire::frame::LinkParams;
use super::wire::state::STATE_LEN;
use super::wire::{Action, BusRepr, BusStatus, Message, StateRepr, PFSYNC_MINPKT};

/// Bulk request attempts before giving up (§5.6).
pub const BULK_TRIES: u8 = 12;
/// Delay between bulk request attempts.
pub const BULK_RETRY: Duration = Duration::from_secs(2);
/// How long to wait for the sync link before giving up.
pub const LINK_WAIT: Duration = Duration::from_secs(30);
/// Interval between bulk update packets (responder).
pub const BULK_SEND_INTERVAL: Duration = Duration::from_millis(20);
/// CARP demotion held while the bulk update is pending.
pub const BULK_DEMOTE: i32 = 32;
/// CARP demotion held while the sync link is down.
pub const LINK_DEMOTE: i32 = 1;

/// Requester states (§5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReqState {
    /// pfsync is down.
    None,
    /// Up, waiting for the sync link.
    Start,
    /// Request sent, waiting for BUS START.
    Sent,
    /// Transfer running, waiting for BUS END.
    Bulk,
    /// Finished (or gave up).
    Done,
}

/// Inputs of the requester (timeouts come through [`BulkRequester::poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReqEvent {
    /// The pfsync interface came up; `link_up` is the sync link's state.
    Up {
        /// Sync interface link state at that moment.
        link_up: bool,
    },
    /// The pfsync interface went down.
    Down,
    /// The sync interface's link state changed.
    Link {
        /// New link state.
        up: bool,
    },
    /// A BUS START arrived.
    BusStart,
    /// A BUS END arrived.
    BusEnd,
}

/// What the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BulkAction {
    /// Send a bulk request (UPD_REQ id 0, creatorid 0), immediately.
    SendBulkRequest,
    /// Adjust the demotion of the `carp` interface group by `delta`.
    Demote {
        /// Change of the demotion counter.
        delta: i32,
        /// Why, in OpenBSD's words (for the log).
        reason: &'static str,
    },
}

/// Up to four actions of one step, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions {
    items: [Option<BulkAction>; 4],
    len: usize,
}

impl Actions {
    fn push(&mut self, action: BulkAction) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(action);
            self.len += 1;
        }
    }
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The actions in order.
    pub fn iter(&self) -> impl Iterator<Item = BulkAction> + '_ {
        self.items.iter().take(self.len).flatten().copied()
    }
    /// Sum of the demotion deltas.
    pub fn demotion(&self) -> i32 {
        self.iter()
            .map(|a| match a {
                BulkAction::Demote { delta, .. } => delta,
                BulkAction::SendBulkRequest => 0,
            })
            .sum()
    }
}

/// How long the requester waits for BUS END once the transfer started
/// (§5.6): `4 × max(1, (state_limit / ((mtu − 40) / 264)) / 50)` seconds.
pub fn bulk_wait(state_limit: u32, mtu: usize) -> Duration {
    let per_packet = (mtu.saturating_sub(PFSYNC_MINPKT) / STATE_LEN).max(1) as u64;
    let packets = u64::from(state_limit) / per_packet;
    let secs = (packets / (1000 / BULK_SEND_INTERVAL.as_millis())).max(1);
    Duration::from_secs(4 * secs)
}

/// The requesting side of §5.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRequester {
    state: ReqState,
    tries: u8,
    deadline: Option<Instant>,
    demoted: bool,
    up: bool,
    link_down: bool,
    bulk_wait: Duration,
}

impl BulkRequester {
    /// A requester for a table of at most `state_limit` states and pfsync
    /// packets of `mtu` bytes (they size the BULK timeout).
    pub fn new(state_limit: u32, mtu: usize) -> BulkRequester {
        BulkRequester {
            state: ReqState::None,
            tries: 0,
            deadline: None,
            demoted: false,
            up: false,
            link_down: false,
            bulk_wait: bulk_wait(state_limit, mtu),
        }
    }

    /// Current state.
    pub fn state(&self) -> ReqState {
        self.state
    }

    /// Whether the +32 demotion is outstanding.
    pub fn is_demoted(&self) -> bool {
        self.demoted
    }

    /// Total demotion this machine currently holds.
    pub fn demotion(&self) -> i32 {
        i32::from(self.demoted) * BULK_DEMOTE + i32::from(self.link_down) * LINK_DEMOTE
    }

    /// Next deadline, if a timer is armed.
    pub fn poll_at(&self) -> Option<Instant> {
        self.deadline
    }

    /// Fires the timer if it is due.
    pub fn poll(&mut self, now: Instant) -> Actions {
        let mut out = Actions::default();
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            self.on_timeout(now, &mut out);
        }
        out
    }

    /// Handles one event.
    pub fn handle(&mut self, event: ReqEvent, now: Instant) -> Actions {
        let mut out = Actions::default();
        match event {
            ReqEvent::Up { link_up } => {
                if self.up {
                    return out;
                }
                self.up = true;
                // The link counts as down until proven up.
                self.link_down = true;
                out.push(BulkAction::Demote {
                    delta: LINK_DEMOTE,
                    reason: "pfsync up",
                });
                if self.state == ReqState::None {
                    self.demoted = true;
                    out.push(BulkAction::Demote {
                        delta: BULK_DEMOTE,
                        reason: "pfsync start",
                    });
                    self.set_state(ReqState::Start, Some(LINK_WAIT), now);
                }
                self.link(link_up, now, &mut out);
            }
            ReqEvent::Down => {
                if !self.up {
                    return out;
                }
                self.up = false;
                if self.link_down {
                    self.link_down = false;
                    out.push(BulkAction::Demote {
                        delta: -LINK_DEMOTE,
                        reason: "pfsync down",
                    });
                }
                self.tries = 0;
                self.set_state(ReqState::None, None, now);
                if self.demoted {
                    self.demoted = false;
                    out.push(BulkAction::Demote {
                        delta: -BULK_DEMOTE,
                        reason: "pfsync down",
                    });
                }
            }
            ReqEvent::Link { up } => {
                if self.up {
                    self.link(up, now, &mut out);
                }
            }
            ReqEvent::BusStart => match self.state {
                ReqState::Start | ReqState::Sent => {
                    let wait = self.bulk_wait;
                    self.set_state(ReqState::Bulk, Some(wait), now);
                }
                ReqState::None | ReqState::Bulk | ReqState::Done => {}
            },
            ReqEvent::BusEnd => {
                // START and SENT ignore it (the lone-END quirk, §5.6).
                if self.state == ReqState::Bulk {
                    self.done(now, &mut out);
                }
            }
        }
        out
    }

    fn link(&mut self, up: bool, now: Instant, out: &mut Actions) {
        if up && self.state == ReqState::Start {
            out.push(BulkAction::SendBulkRequest);
            self.set_state(ReqState::Sent, Some(BULK_RETRY), now);
        }
        if self.link_down == up {
            self.link_down = !up;
            out.push(BulkAction::Demote {
                delta: if up { -LINK_DEMOTE } else { LINK_DEMOTE },
                reason: "pfsync link",
            });
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Actions) {
        match self.state {
            ReqState::Start => self.done(now, out),
            ReqState::Sent => {
                self.tries = self.tries.saturating_add(1);
                if self.tries < BULK_TRIES {
                    out.push(BulkAction::SendBulkRequest);
                    self.set_state(ReqState::Sent, Some(BULK_RETRY), now);
                } else {
                    self.done(now, out);
                }
            }
            ReqState::Bulk => {
                // §5.6 / §8.2: OpenBSD re-sends the request but ends the bulk
                // phase anyway; mirrored for identical CARP behaviour.
                self.tries = self.tries.saturating_add(1);
                if self.tries < BULK_TRIES {
                    out.push(BulkAction::SendBulkRequest);
                }
                self.done(now, out);
            }
            ReqState::None | ReqState::Done => {}
        }
    }

    fn done(&mut self, now: Instant, out: &mut Actions) {
        self.set_state(ReqState::Done, None, now);
        if self.demoted {
            self.demoted = false;
            out.push(BulkAction::Demote {
                delta: -BULK_DEMOTE,
                reason: "pfsync done",
            });
        }
    }

    fn set_state(&mut self, state: ReqState, timer: Option<Duration>, now: Instant) {
        self.state = state;
        self.deadline = timer.map(|d| now + d);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Idle,
    Sending {
        next_at: Instant,
        started: bool,
        /// The caller's cursor is exhausted; only BUS END remains.
        end_pending: bool,
    },
}

/// The responding side of §5.6: streams the state table after a bulk
/// request, one packet per [`poll`](BulkSender::poll) every 20 ms.
#[derive(Debug, Clone)]
pub struct BulkSender {
    hostid: u32,
    writer: PacketWriter,
    state: SendState,
    /// A state taken from the cursor that did not fit the last packet.
    carry: Option<StateRepr>,
    requests_while_busy: u64,
}

impl BulkSender {
    /// A responder answering as `hostid`, building packets of `mtu` bytes.
    pub fn new(
        hostid: u32,
        mtu: usize,
        link: LinkParams,
        ip_id_seed: u32,
    ) -> Result<BulkSender, PackError> {
        Ok(BulkSender {
            hostid,
            writer: PacketWriter::new(mtu, link, ip_id_seed)?,
            state: SendState::Idle,
            carry: None,
            requests_while_busy: 0,
        })
    }

    /// Replaces the link parameters.
    pub fn set_link(&mut self, link: LinkParams) {
        self.writer.set_link(link);
    }

    /// A bulk request arrived. Returns `true` if a new stream starts: the
    /// caller then positions a fresh cursor at the head of its state list
    /// (a snapshot of head and tail, §5.6). While a stream runs the request
    /// is only noted (§5.6) and `false` is returned.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.state {
            SendState::Idle => {
                self.carry = None;
                self.state = SendState::Sending {
                    next_at: now,
                    started: false,
                    end_pending: false,
                };
                true
            }
            SendState::Sending { .. } => {
                self.requests_while_busy += 1;
                false
            }
        }
    }

    /// Requests that arrived while a stream was running.
    pub fn requests_while_busy(&self) -> u64 {
        self.requests_while_busy
    }

    /// Whether a stream is running.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, SendState::Sending { .. })
    }

    /// When the next packet is due.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            SendState::Idle => None,
            SendState::Sending { next_at, .. } => Some(next_at),
        }
    }

    /// Stops a running stream (pfsync going down).
    pub fn cancel(&mut self) {
        self.state = SendState::Idle;
        self.carry = None;
        self.writer.clear();
    }

    /// If a packet is due at `now`, builds it from `states` (the caller's
    /// cursor, continued across calls) and returns the frame to send.
    pub fn poll<I>(&mut self, now: Instant, states: &mut I) -> Option<&[u8]>
    where
        I: Iterator<Item = StateRepr> + ?Sized,
    {
        let SendState::Sending {
            next_at,
            started,
            end_pending,
        } = self.state
        else {
            return None;
        };
        if now < next_at {
            return None;
        }
        self.writer.clear();
        let end = Message::Bus(BusRepr::new(self.hostid, BusStatus::End));
        let mut exhausted = end_pending;
        let mut started = started;
        while !exhausted {
            let Some(state) = self.carry.take().or_else(|| states.next()) else {
                exhausted = true;
                break;
            };
            if !started {
                // §5.6 step 1: BUS START leads the first packet.
                let start = Message::Bus(BusRepr::new(self.hostid, BusStatus::Start));
                if self.writer.push(&start).is_err() {
                    self.carry = Some(state);
                    break;
                }
                started = true;
            }
            if self.writer.push(&Message::Upd(state)).is_err() {
                self.carry = Some(state);
                break;
            }
        }
        if exhausted {
            // §5.6 steps 3–4: END with the last states if it fits, else alone
            // in the next packet; an empty table gets a lone END.
            if self.writer.fits(Action::Bus) && self.writer.push(&end).is_ok() {
                self.state = SendState::Idle;
            } else {
                self.state = SendState::Sending {
                    next_at: now + BULK_SEND_INTERVAL,
                    started,
                    end_pending: true,
                };
            }
        } else {
            self.state = SendState::Sending {
                next_at: now + BULK_SEND_INTERVAL,
                started,
                end_pending: false,
            };
        }
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfsync::wire::frame::{receive_frame, RxContext};
    use crate::pfsync::wire::state::tests::example_state;
    use crate::pfsync::wire::PFSYNC_GROUP;
    use crate::pfsync::PfsyncStats;

    const T0: Instant = Instant::from_secs(1000);

    fn demote(delta: i32, reason: &'static str) -> BulkAction {
        BulkAction::Demote { delta, reason }
    }

    #[test]
    fn bulk_wait_examples_from_spec() {
        assert_eq!(bulk_wait(100_000, 1500), Duration::from_secs(1600));
        assert_eq!(bulk_wait(100_000, 9000), Duration::from_secs(240));
        assert_eq!(bulk_wait(10, 1500), Duration::from_secs(4));
    }

    #[test]
    fn request_demote_end_undemote() {
        let mut r = BulkRequester::new(100_000, 1500);
        let a = r.handle(ReqEvent::Up { link_up: true }, T0);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![
                demote(1, "pfsync up"),
                demote(32, "pfsync start"),
                BulkAction::SendBulkRequest,
                demote(-1, "pfsync link"),
            ]
        );
        assert_eq!(r.state(), ReqState::Sent);
        assert_eq!(r.demotion(), 32);
        assert_eq!(r.poll_at(), Some(T0 + BULK_RETRY));

        let t1 = T0 + Duration::from_millis(300);
        assert!(r.handle(ReqEvent::BusStart, t1).is_empty());
        assert_eq!(r.state(), ReqState::Bulk);
        assert_eq!(r.poll_at(), Some(t1 + Duration::from_secs(1600)));
        // Nothing fires before the deadline.
        assert!(r.poll(t1 + Duration::from_secs(100)).is_empty());

        let a = r.handle(ReqEvent::BusEnd, t1 + Duration::from_secs(2));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![demote(-32, "pfsync done")]
        );
        assert_eq!(r.state(), ReqState::Done);
        assert!(!r.is_demoted());
        assert_eq!(r.demotion(), 0);
        assert_eq!(r.poll_at(), None);
        // DONE ignores further BUS and link events.
        assert!(r
            .handle(ReqEvent::BusStart, t1 + Duration::from_secs(3))
            .is_empty());
        assert!(r.handle(ReqEvent::Link { up: true }, t1).is_empty());
    }

    #[test]
    fn retries_twelve_times_then_gives_up() {
        let mut r = BulkRequester::new(1000, 1500);
        r.handle(ReqEvent::Up { link_up: true }, T0);
        let mut now = T0;
        let mut requests = 1;
        // A lone BUS END (empty peer) is ignored in SENT.
        assert!(r.handle(ReqEvent::BusEnd, now).is_empty());
        loop {
            now = r.poll_at().unwrap();
            let a = r.poll(now);
            requests += a
                .iter()
                .filter(|x| *x == BulkAction::SendBulkRequest)
                .count();
            if r.state() == ReqState::Done {
                assert_eq!(a.demotion(), -32);
                break;
            }
        }
        assert_eq!(requests, 12);
        assert_eq!(now, T0 + Duration::from_secs(24));
        assert_eq!(r.demotion(), 0);
    }

    #[test]
    fn link_wait_timeout_and_link_demotion() {
        let mut r = BulkRequester::new(1000, 1500);
        let a = r.handle(ReqEvent::Up { link_up: false }, T0);
        assert_eq!(a.demotion(), 33);
        assert_eq!(r.state(), ReqState::Start);
        assert_eq!(r.poll_at(), Some(T0 + LINK_WAIT));
        assert!(r.poll(T0 + Duration::from_secs(29)).is_empty());
        let a = r.poll(T0 + LINK_WAIT);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![demote(-32, "pfsync done")]
        );
        assert_eq!(r.state(), ReqState::Done);
        // Link comes up after DONE: no new request, link demotion removed.
        let a = r.handle(ReqEvent::Link { up: true }, T0 + Duration::from_secs(40));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![demote(-1, "pfsync link")]
        );
        let a = r.handle(ReqEvent::Link { up: false }, T0 + Duration::from_secs(41));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![demote(1, "pfsync link")]);
        let a = r.handle(ReqEvent::Down, T0 + Duration::from_secs(42));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![demote(-1, "pfsync down")]
        );
        assert_eq!(r.state(), ReqState::None);
        assert_eq!(r.demotion(), 0);
    }

    #[test]
    fn bulk_timeout_resends_but_finishes() {
        let mut r = BulkRequester::new(10, 1500);
        r.handle(ReqEvent::Up { link_up: true }, T0);
        r.handle(ReqEvent::BusStart, T0);
        let a = r.poll(T0 + Duration::from_secs(4));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![BulkAction::SendBulkRequest, demote(-32, "pfsync done")]
        );
        assert_eq!(r.state(), ReqState::Done);
    }

    #[test]
    fn down_while_pending_removes_demotion_and_up_restarts() {
        let mut r = BulkRequester::new(10, 1500);
        r.handle(ReqEvent::Up { link_up: true }, T0);
        let a = r.handle(ReqEvent::Down, T0);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![demote(-32, "pfsync down")]
        );
        assert_eq!(r.poll_at(), None);
        let a = r.handle(ReqEvent::Up { link_up: true }, T0);
        assert_eq!(a.demotion(), 32);
        assert_eq!(r.state(), ReqState::Sent);
    }

    // -- responder ----------------------------------------------------------

    fn sender(mtu: usize) -> BulkSender {
        let link = LinkParams::new([2; 6], [10, 0, 0, 1], PFSYNC_GROUP, None).unwrap();
        BulkSender::new(0x8f3e_21a7, mtu, link, 3).unwrap()
    }

    fn decode(frame: &[u8]) -> Vec<String> {
        let ctx = RxContext {
            pf_running: true,
            pfsync_up: true,
            on_syncdev: true,
        };
        let mut stats = PfsyncStats::default();
        let p = receive_frame(frame, &ctx, &mut stats).unwrap();
        let mut out = Vec::new();
        for s in p.walker() {
            for m in s.unwrap().messages() {
                out.push(match m {
                    Message::Bus(b) if b.bus_status() == Some(BusStatus::Start) => "START".into(),
                    Message::Bus(_) => "END".into(),
                    Message::Upd(s) => format!("UPD{}", s.id),
                    other => format!("{other:?}"),
                });
            }
        }
        out
    }

    fn states(n: u64) -> impl Iterator<Item = StateRepr> {
        (0..n).map(|i| StateRepr {
            id: i,
            ..example_state()
        })
    }

    #[test]
    fn empty_table_gets_lone_bus_end() {
        let mut s = sender(1500);
        assert!(s.request(T0));
        let mut it = states(0);
        let f = s.poll(T0, &mut it).unwrap().to_vec();
        assert_eq!(decode(&f), vec!["END"]);
        assert!(!s.is_sending());
    }

    #[test]
    fn stream_in_chunks_every_20ms_with_end_in_last_packet() {
        let mut s = sender(1500);
        assert!(s.request(T0));
        assert!(!s.request(T0), "second request while busy is only noted");
        assert_eq!(s.requests_while_busy(), 1);
        let mut it = states(12);
        let p1 = s.poll(T0, &mut it).unwrap().to_vec();
        // START (4+12) + 5 states (4+5*264) = 1376 <= 1460 available.
        assert_eq!(
            decode(&p1),
            vec!["START", "UPD0", "UPD1", "UPD2", "UPD3", "UPD4"]
        );
        assert!(s.poll(T0 + Duration::from_millis(19), &mut it).is_none());
        let t2 = T0 + BULK_SEND_INTERVAL;
        assert_eq!(s.poll_at(), Some(t2));
        let p2 = s.poll(t2, &mut it).unwrap().to_vec();
        assert_eq!(decode(&p2), vec!["UPD5", "UPD6", "UPD7", "UPD8", "UPD9"]);
        let p3 = s.poll(t2 + BULK_SEND_INTERVAL, &mut it).unwrap().to_vec();
        assert_eq!(decode(&p3), vec!["UPD10", "UPD11", "END"]);
        assert!(!s.is_sending());
        assert_eq!(s.poll_at(), None);
    }

    #[test]
    fn end_goes_alone_when_last_packet_is_full() {
        // MTU 580: the first packet holds START + 1 state (40 + 16 + 268 =
        // 324; a second state would make 588); later packets hold 2 states
        // (40 + 4 + 528 = 572), leaving no room for END (+16).
        let mut s = sender(580);
        s.request(T0);
        let mut it = states(3);
        let mut now = T0;
        let mut packets = Vec::new();
        while let Some(f) = s.poll(now, &mut it) {
            packets.push(decode(f));
            now = now + BULK_SEND_INTERVAL;
        }
        assert_eq!(
            packets,
            vec![vec!["START", "UPD0"], vec!["UPD1", "UPD2"], vec!["END"]]
        );
        assert!(!s.is_sending());
    }

    #[test]
    fn tiny_mtu_carries_the_state_that_did_not_fit() {
        // MTU 308 fits one state but not START + state.
        let mut s = sender(308);
        s.request(T0);
        let mut it = states(2);
        let mut now = T0;
        let mut packets = Vec::new();
        while let Some(f) = s.poll(now, &mut it) {
            packets.push(decode(f));
            now = now + BULK_SEND_INTERVAL;
        }
        assert_eq!(
            packets,
            vec![vec!["START"], vec!["UPD0"], vec!["UPD1"], vec!["END"]]
        );
    }

    #[test]
    fn cancel_stops_stream() {
        let mut s = sender(1500);
        s.request(T0);
        s.cancel();
        assert!(s.poll(T0, &mut states(3)).is_none());
        assert!(s.request(T0));
    }
}
