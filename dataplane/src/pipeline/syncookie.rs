//! SYN cookies and `synproxy state` on the packet path: which SYNs get a
//! cookie instead of a state, which get dpf's own SYN-ACK, how the
//! client's ACK opens the server side, how the server's answer completes
//! (or resets) the connection, and the frames the firewall sends for it.
//! The cookie arithmetic and the handshake steps are in
//! [`crate::syncookie`]; this module moves them into frames. Only
//! forwarded connections are proxied (a `synproxy state` SYN to or from
//! the box is dropped, counted `synproxy`; SYNs to the box get no cookie).
//!
//! ```text
//! evaluate_new: a forwarded SYN that would create a state, `in` on a port,
//!   cookies active ─────────────────► Reply(in): SYN-ACK(cookie)  [syncookie-sent]
//!   else by a synproxy rule: state created, src PROXY_SRC
//!                 ─────────────────► Reply(in): SYN-ACK(dpf's ISN) [synproxy]
//! filter, state with src PROXY_SRC
//!   the client's SYN again ────────► Reply(in): the SYN-ACK again    [synproxy]
//!   its ACK of dpf's ISN: PROXY_DST ► Reply(toward the server): SYN   [synproxy]
//! filter, no state: an ACK (no SYN/RST/FIN), cookies enabled
//!   cookie valid ─ the rules see the recreated SYN (evaluate_new) ─ pass:
//!     state created, src PROXY_DST ─► Reply(toward the server): SYN  [synproxy]
//!   cookie invalid, cookies active ─► Drop                         [syncookie-invalid]
//! filter, state with src PROXY_DST
//!   server's SYN-ACK ──────────────► Reply(in): ACK, both ESTABLISHED [synproxy]
//!   the server's RST ──────────────► Reply(toward the client): RST, state removed
//!   the client's ACK again ────────► Reply(toward the server): SYN again
//!   anything else ─────────────────► Drop                              [synproxy]
//! ```
//!
//! Every frame is built into the frame's reply slot, so one received
//! packet gives at most one frame out and nothing allocates. The frames
//! dpf sends carry pf's TTL default and no options but the MSS; the
//! SYN-ACK offers no window scaling, SACK or timestamps (as pf's).

use super::*;
use crate::syncookie::{self as sc, CookieKeys, ProxyStep};
use crate::wire::build::Segment;

/// A worker's SYN cookie state: the keys of the current and previous
/// epoch, whether cookies are on now (adaptive), and the reason the next
/// [`Verdict::Reply`] is counted under.
#[derive(Debug)]
pub(super) struct CookieState {
    keys: CookieKeys,
    active: bool,
    /// Set while the rules evaluate a recreated SYN (it must not get a
    /// cookie again).
    pub(super) recreating: bool,
    /// [`Pipeline::evaluate_new`] created a state for an initial SYN `in`
    /// by a `synproxy state` rule.
    pub(super) synproxy_rule: bool,
    /// The counter of the reply being sent, when it is the firewall's own
    /// handshake and not a `block return`.
    pub(super) reply_reason: Option<DropReason>,
}

impl CookieState {
    pub(super) fn new() -> CookieState {
        CookieState {
            keys: CookieKeys::new(0),
            active: false,
            recreating: false,
            synproxy_rule: false,
            reply_reason: None,
        }
    }
}

/// What the firewall sends for a SYN cookie handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CookieAction {
    /// Back to the client: the SYN-ACK with the cookie (or synproxy's ISN)
    /// as its ISN, counted under `reason`.
    SynAck {
        cookie: u32,
        mss: u16,
        reason: DropReason,
    },
    /// On toward the packet's destination, translated and routed as the
    /// state's packets are: the SYN that opens the server's side, or the
    /// RST that tells the client the server refused.
    Onward(Segment),
    /// Back to the server: the ACK that completes its side.
    AckServer { seq: u32, ack: u32, win: u16 },
}

impl Pipeline {
    /// Once per burst: rotates the keys (every
    /// [`sc::KEY_LIFETIME_S`]) and decides whether cookies are on (pf's
    /// `pf_synflood_check` against the box's state count).
    #[inline]
    pub(super) fn refresh_syncookies(&mut self) {
        let mode = self.rules.options.syncookies;
        if !mode.enabled() {
            self.cookies.active = false;
            return;
        }
        self.cookies.keys.rotate(u64::from(self.now_s));
        let states = self.config.states_total.load(Ordering::Relaxed);
        self.cookies.active =
            mode.active(self.cookies.active, states, self.rules.options.limit_states);
    }

    /// Whether SYN cookies are on for this worker now.
    pub fn syncookies_active(&self) -> bool {
        self.cookies.active
    }

    /// In [`Pipeline::evaluate_new`], for a packet the rules pass with a
    /// state: the cookie answer when it is an initial SYN received on a
    /// port (`in`) while cookies are on.
    #[inline]
    pub(super) fn cookie_for_syn(&self, info: &PacketInfo, inbound: bool) -> Option<FilterOutcome> {
        if !self.cookies.active || self.cookies.recreating || !inbound {
            return None;
        }
        let L4Info::Tcp(t) = info.l4 else {
            return None;
        };
        let syn = crate::flow::tcp_flags::SYN;
        if t.flags & (syn | crate::flow::tcp_flags::ACK) != syn {
            return None;
        }
        let cookie = sc::generate(&self.cookies.keys, info, &t);
        let mss = sc::MSS_TABLE[(cookie as u8 >> 5) as usize];
        Some(Cookie(CookieAction::SynAck {
            cookie,
            mss,
            reason: DropReason::SynCookieSent,
        }))
    }

    /// In [`Pipeline::filter`], for a TCP packet without a state: a valid
    /// cookie ACK creates the state from the SYN it stands for (the rules
    /// decide that SYN as pf's `pf_syncookie_recreate_syn`) and opens the
    /// server side; an invalid one is dropped while cookies are on.
    /// `None`: not a cookie matter, evaluate as usual.
    pub(super) fn cookie_ack(
        &mut self,
        info: &PacketInfo,
        passes: Passes,
        ip_options: bool,
        now: Instant,
    ) -> Option<FilterOutcome> {
        if !self.rules.options.syncookies.enabled() || self.cookies.recreating {
            return None;
        }
        let L4Info::Tcp(t) = info.l4 else {
            return None;
        };
        if !sc::is_cookie_ack(&t) || passes.ports().0.is_none() {
            return None;
        }
        let Some(mss) = sc::validate(&self.cookies.keys, info, &t) else {
            if !self.cookies.active {
                return None;
            }
            // pf: the rules decide it as any packet without a state; what
            // they would drop silently is counted as the bad cookie it is.
            return Some(match self.evaluate_new(info, passes, ip_options, now) {
                Blocked(ReturnMode::None) | Decided(Verdict::Drop(DropReason::BlockedByRule)) => {
                    Decided(Verdict::Drop(DropReason::SynCookieInvalid))
                }
                other => other,
            });
        };
        let mut syn = *info;
        syn.l4 = L4Info::Tcp(sc::recreate_syn(&t, mss));
        self.cookies.recreating = true;
        let outcome = self.evaluate_new(&syn, passes, ip_options, now);
        self.cookies.recreating = false;
        match outcome {
            Decided(Verdict::Forward(_)) => {}
            Decided(Verdict::Hold(slot)) => {
                // pfsync `defer`: the INS went out; the frame that goes
                // on is the firewall's SYN, not this ACK.
                if let Some(q) = self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
                    q.cancel(slot);
                }
            }
            other => return Some(other),
        }
        let (key, _) = info.key();
        let slot = self
            .shard
            .lookup_side(&key, key.symmetric_hash())
            .map(|(s, _)| s);
        let Some((st, tr)) = slot.and_then(|s| self.shard.get_mut_translated(s)) else {
            // Passed without a state (`no state`): nothing to proxy.
            return Some(Decided(Verdict::Drop(DropReason::Synproxy)));
        };
        let seq = sc::start_proxy_dst(st, &t, mss);
        // The peer learns the cookie (kept in src.seqhi) and PROXY_DST, so
        // it completes the server's side itself after a failover.
        export_or_owe(
            &mut self.sync,
            &mut self.counters,
            SyncAction::Update,
            st,
            &tr,
            now,
        );
        // The SYN's number already carries the client's modulator.
        self.pending_seq = None;
        Some(Cookie(CookieAction::Onward(server_syn(seq, mss, t.win))))
    }

    /// After [`Pipeline::evaluate_new`] passed an initial SYN `in` by a
    /// `synproxy state` rule: pf's `PF_TCPS_PROXY_SRC`. The state it created
    /// waits for the client's handshake; the SYN is answered with a SYN-ACK
    /// of the firewall's own random ISN instead of going on.
    pub(super) fn synproxy_after_new(
        &mut self,
        info: &PacketInfo,
        outcome: FilterOutcome,
        now: Instant,
    ) -> FilterOutcome {
        if !core::mem::take(&mut self.cookies.synproxy_rule) {
            return outcome;
        }
        match outcome {
            Decided(Verdict::Forward(_)) => {}
            Decided(Verdict::Hold(slot)) => {
                if let Some(q) = self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
                    q.cancel(slot);
                }
            }
            other => return other,
        }
        let L4Info::Tcp(t) = info.l4 else {
            return outcome;
        };
        let (key, _) = info.key();
        let slot = self
            .shard
            .lookup_side(&key, key.symmetric_hash())
            .map(|(s, _)| s);
        let isn = (self.next_random() as u32).max(1);
        let Some((st, tr)) = slot.and_then(|s| self.shard.get_mut_translated(s)) else {
            return Decided(Verdict::Drop(DropReason::Synproxy));
        };
        let v6 = info.af == crate::flow::Af::Inet6;
        let mss = sc::start_proxy_src(st, &t, isn, v6);
        export_or_owe(
            &mut self.sync,
            &mut self.counters,
            SyncAction::Update,
            st,
            &tr,
            now,
        );
        self.pending = None;
        self.pending_seq = None;
        self.pending_route = None;
        Cookie(CookieAction::SynAck {
            cookie: isn,
            mss,
            reason: DropReason::Synproxy,
        })
    }

    /// Writes the frame `action` asks for into the reply slot and returns
    /// the verdict that sends it. `onward`: the port and next hop toward
    /// the packet's destination in router mode (the routing lookup the
    /// caller made), unused on a bridge.
    pub(super) fn cookie_answer(
        &mut self,
        action: CookieAction,
        c: &Classified,
        in_port: u16,
        onward: Option<crate::route::NextHop>,
    ) -> Verdict {
        let syn = crate::flow::tcp_flags::SYN;
        let ack = crate::flow::tcp_flags::ACK;
        let FrameKind::Ip { info, .. } = &c.kind else {
            return Verdict::Drop(DropReason::Synproxy);
        };
        let info = *info;
        let slot = self.reply_slot.min(MAX_BURST - 1);
        let (built, port, reason) = match action {
            CookieAction::SynAck {
                cookie,
                mss,
                reason,
            } => {
                let seg = Segment {
                    seq: cookie,
                    ack: match info.l4 {
                        L4Info::Tcp(t) => t.seq.wrapping_add(1),
                        _ => 0,
                    },
                    flags: syn | ack,
                    win: sc::SYNACK_WINDOW,
                    mss: Some(mss),
                };
                let r = build::tcp_answer(c, c.dst_mac, seg);
                (
                    r.and_then(|r| r.emit(&mut self.replies[slot][..])),
                    in_port,
                    reason,
                )
            }
            CookieAction::AckServer { seq, ack: a, win } => {
                let seg = Segment {
                    seq,
                    ack: a,
                    flags: ack,
                    win,
                    mss: None,
                };
                let r = build::tcp_answer(c, c.dst_mac, seg);
                (
                    r.and_then(|r| r.emit(&mut self.replies[slot][..])),
                    in_port,
                    DropReason::Synproxy,
                )
            }
            CookieAction::Onward(seg) => match self.onward(c, &info, seg, slot, in_port, onward) {
                Ok((len, port)) => (Ok(len), port, DropReason::Synproxy),
                Err(v) => return v,
            },
        };
        match built {
            Ok(len) => {
                self.reply_lens[slot] = len as u16;
                self.cookies.reply_reason = Some(reason);
                Verdict::Reply(port)
            }
            Err(_) => Verdict::Drop(reason),
        }
    }

    /// The segment `seg` in the direction of the packet `c`, in reply
    /// slot `slot`: the state's translation and scrub applied, then
    /// addressed for its next hop (router mode) or sent out the bridge's
    /// other port with the packet's MACs.
    fn onward(
        &mut self,
        c: &Classified,
        info: &PacketInfo,
        seg: Segment,
        slot: usize,
        in_port: u16,
        onward: Option<crate::route::NextHop>,
    ) -> Result<(usize, u16), Verdict> {
        let failed = Verdict::Drop(DropReason::Synproxy);
        let reply = build::tcp_onward(c, seg).map_err(|_| failed)?;
        let mut frame = [0u8; REPLY_MAX];
        let len = reply.emit(&mut frame[..]).map_err(|_| failed)?;
        // Offsets and the summary of the frame as built (no IP options,
        // the packet's tags).
        let built = classify(&frame[..len], info.ifindex, Direction::Out).map_err(|_| failed)?;
        let FrameKind::Ip {
            info: built_info,
            l4_offset,
            ..
        } = built.kind
        else {
            return Err(failed);
        };
        let (l3, l4) = (usize::from(built.l3_offset), usize::from(l4_offset));
        let mut dst = info.dst;
        if self.pending.is_some() {
            let Some(d) = self.apply_pending(&mut frame[..len], l3, l4, &built_info) else {
                return Err(Verdict::Drop(DropReason::TranslationFailed));
            };
            dst = d;
        }
        self.apply_scrub(&mut frame[..len], l3, l4, &built_info);
        let port = match (self.router.as_mut(), onward) {
            (None, _) => match self.config.wire_peer.get(usize::from(in_port)) {
                Some(&p) if p != NO_EGRESS => p,
                _ => return Err(Verdict::Drop(DropReason::NoEgress)),
            },
            (Some(router), hop) => {
                let hop = match self.pending_route.take() {
                    // `route-to` / `reply-to`, as [`Pipeline::decide_routed`]
                    // follows them.
                    Some(r) => {
                        let addr = if r.addr == Addr::ZERO { dst } else { r.addr };
                        let port = if r.port == crate::state::ROUTE_PORT_LOOKUP {
                            router
                                .routing
                                .lookup(info.af, &addr)
                                .ok_or(Verdict::Drop(DropReason::NoRoute))?
                                .port
                        } else {
                            r.port
                        };
                        crate::route::NextHop { port, addr }
                    }
                    None if dst != info.dst || hop.is_none() => router
                        .routing
                        .lookup(info.af, &dst)
                        .ok_or(Verdict::Drop(DropReason::NoRoute))?,
                    None => hop.ok_or(Verdict::Drop(DropReason::NoRoute))?,
                };
                let Some(n) = router.neighbors.get(info.af, &hop.addr) else {
                    if let Some(p) = router.resolve.as_mut() {
                        let _ = p.push(ResolveRequest {
                            af: info.af,
                            addr: hop.addr,
                            port: hop.port,
                        });
                    }
                    // The client's next ACK asks again (the state stays
                    // in PROXY_DST).
                    return Err(Verdict::Drop(DropReason::NeighborUnresolved));
                };
                frame[0..6].copy_from_slice(&n.mac);
                frame[6..12].copy_from_slice(&router.routing.mac(hop.port).unwrap_or([0; 6]));
                hop.port
            }
        };
        self.replies[slot][..len].copy_from_slice(&frame[..len]);
        Ok((len, port))
    }
}

/// The SYN dpf opens the server's side with: the client's ISN (as the
/// server sees it), the MSS the client offered, the client's window.
fn server_syn(seq: u32, mss: u16, win: u16) -> Segment {
    Segment {
        seq,
        ack: 0,
        flags: crate::flow::tcp_flags::SYN,
        win,
        mss: Some(mss),
    }
}

/// In [`Pipeline::filter`], for a packet of a state whose handshake dpf is
/// still doing (src in `PROXY_SRC` or `PROXY_DST`): pf's `pf_synproxy`.
/// Exports the state at each step the peer must know of. The flag says
/// the caller removes the state (the server refused it).
#[inline]
pub(super) fn on_proxy_state(
    st: &mut crate::state::State,
    tr: &Translation,
    info: &PacketInfo,
    from_src: bool,
    sync: &mut Option<SyncPorts>,
    counters: &mut WorkerCounters,
    now: Instant,
) -> Option<(FilterOutcome, bool)> {
    let proxy_src = st.src.state == crate::state::tcps::PROXY_SRC;
    if !proxy_src && st.src.state != crate::state::tcps::PROXY_DST {
        return None;
    }
    let L4Info::Tcp(t) = info.l4 else {
        return Some((Decided(Verdict::Drop(DropReason::Synproxy)), false));
    };
    let step = if proxy_src {
        sc::proxy_src_step(st, &t, from_src)
    } else {
        sc::proxy_dst_step(st, &t, from_src)
    };
    let mut remove = false;
    let outcome = match step {
        ProxyStep::SynAckAgain { isn, mss } => Cookie(CookieAction::SynAck {
            cookie: isn,
            mss,
            reason: DropReason::Synproxy,
        }),
        ProxyStep::AckServer { seq, ack, win } => {
            export_or_owe(sync, counters, SyncAction::Update, st, tr, now);
            Cookie(CookieAction::AckServer { seq, ack, win })
        }
        ProxyStep::ResendSyn { seq } => {
            if proxy_src {
                // Now PROXY_DST: the peer learns it.
                export_or_owe(sync, counters, SyncAction::Update, st, tr, now);
            }
            Cookie(CookieAction::Onward(server_syn(
                seq,
                st.src.mss,
                st.src.max_win,
            )))
        }
        ProxyStep::ResetClient { seq, ack } => {
            remove = true;
            Cookie(CookieAction::Onward(Segment {
                seq,
                ack,
                flags: crate::flow::tcp_flags::RST | crate::flow::tcp_flags::ACK,
                win: 0,
                mss: None,
            }))
        }
        ProxyStep::Drop => Decided(Verdict::Drop(DropReason::Synproxy)),
    };
    Some((outcome, remove))
}
