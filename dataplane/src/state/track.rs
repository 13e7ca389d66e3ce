//! pf's state creation and per-packet state tracking: TCP sequence window
//! tracking (`pf_tcp_track_full`, after Guido van Rooij's "Real Stateful
//! TCP Packet Filtering in IP Filter"), the sloppy tracker
//! (`pf_tcp_track_sloppy`), UDP / other single-multiple pseudo states,
//! ICMP query states, and the check of an ICMP error against the state of
//! the packet it quotes.
//!
//! Everything is a pure function of the state, the packet summary and
//! `now`. Peers are named as pf names them: `src` is the endpoint that sent
//! the first packet, `dst` the other; when tracking a packet, the *sender*
//! and *receiver* are `src`/`dst` or the reverse.
//!
//! `modulate state`: each peer's `seqdiff` is its modulator; tracking works
//! on the unmodulated numbers (an ACK is shifted back by the receiver's
//! modulator) and the pipeline rewrites the packets.
//!
//! `synproxy state` and SYN cookies: the `PROXY_SRC` / `PROXY_DST` steps
//! are [`crate::syncookie`]'s; tracking starts once both peers are
//! established. Not implemented (pf features dpf does not offer):
//! `scrub` normalisation, source tracking limits, and sending the RST pf
//! emits on a handshake mismatch (reported as
//! [`StateDrop::HandshakeMismatch`] so the caller may).

use super::entry::{state_flags, tcps, udps, Peer, State, MAX_WINSHIFT, WSCALE_FLAG, WSCALE_MASK};
use crate::flow::{
    proto, tcp_flags, Af, IcmpInfo, L4Info, PacketInfo, QuotedPacket, TcpInfo, TcpSegment,
};
use crate::time::Instant;
use crate::timeouts::TimeoutClass;

/// pf's `MAXACKWINDOW`: how far an ACK may lag (one maximal unscaled window
/// plus a 1500-byte fudge).
const MAX_ACK_WINDOW: i64 = 0xffff + 1500;
/// Largest unscaled TCP window.
const TCP_MAXWIN: u32 = 0xffff;

/// `a > b` in sequence space (RFC 1982 style, `SEQ_GT`).
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a >= b` in sequence space (`SEQ_GEQ`).
#[inline]
pub fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Rule options that shape a new state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// `keep state (sloppy)`: TCP without sequence number checks.
    pub sloppy: bool,
    /// `no-sync`: pfsync never announces the state.
    pub no_sync: bool,
    /// The rule had `flags any`: a TCP state may start from a packet that is
    /// not an initial SYN (pf then picks the connection up mid-stream).
    pub any_flags: bool,
    /// The rule tag of the rule that created the state
    /// (`Ruleset::state_rule_tag`).
    pub rule: u32,
    /// `allow-opts`: later packets with IP options pass by this state.
    pub allow_opts: bool,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            sloppy: false,
            no_sync: false,
            any_flags: false,
            rule: super::entry::NO_RULE,
            allow_opts: false,
        }
    }
}

/// Why state tracking dropped a packet. Each value indexes a drop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StateDrop {
    /// A TCP segment outside the sequence / acknowledgement window (pf's
    /// `PFRES_BADSTATE`).
    BadWindow,
    /// An RST that is not exactly in sequence (spoofing defence).
    BadRst,
    /// An unexpected segment while both sides were still in SYN_SENT (pf
    /// answers it with an RST and forgets the sender's sequence numbers).
    HandshakeMismatch,
    /// An ICMP query or reply flowing the wrong way for its state.
    IcmpWrongDirection,
    /// The packet's protocol does not match the state (caller bug).
    ProtocolMismatch,
}

/// The result of [`track`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackOutcome {
    /// Forward the packet.
    Pass {
        /// A peer's TCP state or a UDP/other single->multiple level changed:
        /// pfsync should announce the state now (spec/pfsync.md §5.2).
        transition: bool,
    },
    /// Drop the packet; the state is unchanged except as pf changes it.
    Drop(StateDrop),
    /// A new SYN hit a state both of whose sides are closed (FIN_WAIT_2 or
    /// TIME_WAIT): pf removes the old state and evaluates the packet as if no
    /// state existed, which normally creates a fresh one. The caller removes
    /// the state and runs the ruleset.
    Reuse,
}

/// pf's `pf_get_wscale`: the peer's window scale option as stored in
/// [`Peer::wscale`], 0 if absent or not on a SYN.
fn wscale_of(tcp: &TcpInfo) -> u8 {
    match tcp.wscale {
        Some(shift) if tcp.flags & tcp_flags::SYN != 0 => shift.min(MAX_WINSHIFT) | WSCALE_FLAG,
        _ => 0,
    }
}

fn tcp_timeout(src: u8, dst: u8) -> TimeoutClass {
    if src >= tcps::FIN_WAIT_2 && dst >= tcps::FIN_WAIT_2 {
        TimeoutClass::TcpClosed
    } else if src >= tcps::CLOSING && dst >= tcps::CLOSING {
        TimeoutClass::TcpFinWait
    } else if src < tcps::ESTABLISHED || dst < tcps::ESTABLISHED {
        TimeoutClass::TcpOpening
    } else if src >= tcps::CLOSING || dst >= tcps::CLOSING {
        TimeoutClass::TcpClosing
    } else {
        TimeoutClass::TcpEstablished
    }
}

/// ICMP(v6) query types: `Some(true)` for a request, `Some(false)` for its
/// reply, `None` for types pf does not pair. (pf's `pf_icmp_mapping`.)
fn icmp_query_kind(af: Af, icmp_type: u8) -> Option<bool> {
    match (af, icmp_type) {
        // echo, timestamp, information, address mask requests / replies
        (Af::Inet, 8 | 13 | 15 | 17) => Some(true),
        (Af::Inet, 0 | 14 | 16 | 18) => Some(false),
        // ICMPv6 echo, node information
        (Af::Inet6, 128 | 139) => Some(true),
        (Af::Inet6, 129 | 140) => Some(false),
        _ => None,
    }
}

/// Builds the state pf's `pf_create_state` would create for `pkt`, the first
/// packet of a connection that a `keep state` rule passed. Returns `None`
/// when pf creates no state:
///
/// - an ICMP error (it belongs to the state of the packet it quotes);
/// - a TCP RST (dpf never creates state from one);
/// - a TCP packet that is not an initial SYN (SYN without ACK), unless the
///   rule said `flags any`. The rule's `flags S/SA` check itself belongs to
///   the ruleset and happens before this call.
///
/// `id` should come from [`Shard::alloc_id`](super::Shard::alloc_id).
pub fn new_state(
    pkt: &PacketInfo,
    now: Instant,
    opts: StateOptions,
    id: u64,
    creatorid: u32,
) -> Option<State> {
    let (key, swapped) = pkt.key();
    let mut st = State::new(key, swapped, id, creatorid, now);
    st.rule = opts.rule;
    st.ifindex = pkt.ifindex;
    st.direction = pkt.dir;
    if opts.sloppy {
        st.state_flags |= state_flags::SLOPPY;
    }
    if opts.allow_opts {
        st.state_flags |= state_flags::ALLOWOPTS;
    }
    if opts.no_sync || pkt.proto == proto::PFSYNC {
        st.state_flags |= state_flags::NOSYNC;
    }
    match pkt.l4 {
        L4Info::Tcp(tcp) => {
            let syn = tcp.flags & tcp_flags::SYN != 0;
            let initial_syn = tcp.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            if tcp.flags & tcp_flags::RST != 0 || (!initial_syn && !opts.any_flags) {
                return None;
            }
            let src = &mut st.src;
            src.seqlo = tcp.seq;
            let mut seqhi = tcp.seq.wrapping_add(tcp.payload_len as u32).wrapping_add(1);
            if syn {
                seqhi = seqhi.wrapping_add(1);
                src.wscale = wscale_of(&tcp);
            }
            if tcp.flags & tcp_flags::FIN != 0 {
                seqhi = seqhi.wrapping_add(1);
            }
            src.seqhi = seqhi;
            let mut max_win = (tcp.win as u32).max(1);
            let shift = src.wscale & WSCALE_MASK;
            if shift != 0 {
                // Remove the scale factor from the initial window (rounding
                // up): the SYN's window is never scaled.
                max_win = (max_win + (1 << shift) - 1) >> shift;
            }
            src.max_win = max_win as u16;
            src.state = tcps::SYN_SENT;
            st.dst.seqhi = 1;
            st.dst.max_win = 1;
            st.dst.state = tcps::CLOSED;
            st.timeout = TimeoutClass::TcpFirst;
        }
        L4Info::Udp => {
            st.src.state = udps::SINGLE;
            st.dst.state = udps::NO_TRAFFIC;
            st.timeout = TimeoutClass::UdpFirst;
        }
        L4Info::Icmp(icmp) => {
            if icmp.is_error {
                return None;
            }
            st.timeout = TimeoutClass::IcmpFirst;
        }
        L4Info::Other => {
            st.src.state = udps::SINGLE;
            st.dst.state = udps::NO_TRAFFIC;
            st.timeout = TimeoutClass::OtherFirst;
        }
    }
    st.count(true, pkt.ip_len as u32);
    Some(st)
}

/// Tracks `pkt` on its state, as pf's `pf_test_state` does: TCP window
/// tracking (or the sloppy tracker), UDP/other single->multiple, ICMP
/// query direction; on a pass, updates the counters and (when pf does) the
/// activity time and timeout class.
///
/// `from_src` says whether the packet was sent by the state's `src` peer
/// ([`State::is_from_src`] of the packet key's `swapped`).
///
/// ICMP errors are not tracked here: they belong to the state of the packet
/// they quote and are checked with [`icmp_error_matches`].
pub fn track(state: &mut State, pkt: &PacketInfo, from_src: bool, now: Instant) -> TrackOutcome {
    if pkt.proto != state.key().proto {
        return TrackOutcome::Drop(StateDrop::ProtocolMismatch);
    }
    let before = (state.src.state, state.dst.state);
    let refresh = match pkt.l4 {
        L4Info::Tcp(tcp) => {
            // pf_test_state: a fresh SYN on a connection closed on both
            // sides starts over with a new state.
            if tcp.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
                && state.src.state >= tcps::FIN_WAIT_2
                && state.dst.state >= tcps::FIN_WAIT_2
            {
                return TrackOutcome::Reuse;
            }
            let sloppy = state.is_sloppy();
            // Windows last written by pfsync lag the connection: the first
            // packet of each side re-anchors them (see state_flags::SYNCED_*).
            let synced = state.state_flags & (state_flags::SYNCED_SRC | state_flags::SYNCED_DST);
            let own_bit = if from_src {
                state_flags::SYNCED_SRC
            } else {
                state_flags::SYNCED_DST
            };
            let (snd, rcv) = if from_src {
                (&mut state.src, &mut state.dst)
            } else {
                (&mut state.dst, &mut state.src)
            };
            let (refresh, timeout) = if sloppy {
                tcp_track_sloppy(snd, rcv, &tcp)
            } else {
                match tcp_track_full(snd, rcv, &tcp, synced != 0) {
                    Ok(r) => {
                        state.state_flags &= !own_bit;
                        r
                    }
                    Err(drop) => {
                        if drop == StateDrop::HandshakeMismatch {
                            // pf forgets the sender's sequence numbers so its
                            // next SYN starts over.
                            let snd = if from_src {
                                &mut state.src
                            } else {
                                &mut state.dst
                            };
                            snd.seqlo = 0;
                            snd.seqhi = 1;
                            snd.max_win = 1;
                        }
                        return TrackOutcome::Drop(drop);
                    }
                }
            };
            if refresh {
                state.timeout = timeout;
            }
            refresh
        }
        L4Info::Udp | L4Info::Other => {
            let (snd, rcv) = if from_src {
                (&mut state.src, &mut state.dst)
            } else {
                (&mut state.dst, &mut state.src)
            };
            if snd.state < udps::SINGLE {
                snd.state = udps::SINGLE;
            }
            if rcv.state == udps::SINGLE {
                rcv.state = udps::MULTIPLE;
            }
            let multiple = state.src.state == udps::MULTIPLE && state.dst.state == udps::MULTIPLE;
            let udp = matches!(pkt.l4, L4Info::Udp);
            state.timeout = match (udp, multiple) {
                (true, true) => TimeoutClass::UdpMultiple,
                (true, false) => TimeoutClass::UdpSingle,
                (false, true) => TimeoutClass::OtherMultiple,
                (false, false) => TimeoutClass::OtherSingle,
            };
            true
        }
        L4Info::Icmp(icmp) => {
            if let Some(drop) = icmp_query_check(state, pkt.af, &icmp, from_src) {
                return TrackOutcome::Drop(drop);
            }
            // pf: any further packet of an ICMP query state moves it to the
            // short icmp.error timeout (the reply has been seen).
            state.timeout = TimeoutClass::IcmpError;
            true
        }
    };
    if refresh {
        state.touch(now);
    }
    state.count(from_src, pkt.ip_len as u32);
    let after = (state.src.state, state.dst.state);
    TrackOutcome::Pass {
        transition: before != after,
    }
}

/// The established-connection lane of [`track`]: a TCP segment without
/// SYN, FIN or RST but with ACK, on a strictly tracked state whose two
/// peers are ESTABLISHED and whose windows pfsync has not just written.
/// When the segment is inside the windows, does exactly what [`track`]
/// does for it (advance the windows, keep the established timeout, refresh
/// the activity time, count the packet; no transition) and returns `true`.
/// Otherwise — any other shape of state or segment, or a segment outside
/// the windows — changes nothing and returns `false`, and the caller runs
/// [`track`] (which decides the loose cases, the drops and the
/// transitions). A property test holds the two to the same result.
#[inline(always)]
pub fn track_established(
    state: &mut State,
    tcp: &TcpSegment,
    ip_len: u16,
    from_src: bool,
    now: Instant,
) -> bool {
    const NOT_PLAIN: u16 = state_flags::SLOPPY | state_flags::SYNCED_SRC | state_flags::SYNCED_DST;
    if state.src.state != tcps::ESTABLISHED
        || state.dst.state != tcps::ESTABLISHED
        || state.state_flags & NOT_PLAIN != 0
        || tcp.flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST | tcp_flags::ACK)
            != tcp_flags::ACK
        || state.key().proto != proto::TCP
    {
        return false;
    }
    let (snd, rcv) = if from_src {
        (&mut state.src, &mut state.dst)
    } else {
        (&mut state.dst, &mut state.src)
    };
    if snd.seqlo == 0 {
        return false;
    }
    let (sws, dws) = if snd.wscale != 0 && rcv.wscale != 0 {
        (snd.wscale & WSCALE_MASK, rcv.wscale & WSCALE_MASK)
    } else {
        (0, 0)
    };
    let win = tcp.win as u32;
    let ack = tcp.ack.wrapping_sub(rcv.seqdiff);
    let mut seq = tcp.seq;
    let mut end = seq.wrapping_add(tcp.payload_len as u32);
    if seq == end {
        seq = snd.seqlo;
        end = seq;
    }
    let ackskew = rcv.seqlo.wrapping_sub(ack) as i32 as i64;
    let rcv_win = (rcv.max_win as u32) << dws;
    let in_window = seq_geq(snd.seqhi, end)
        && seq_geq(seq, snd.seqlo.wrapping_sub(rcv_win))
        && ackskew >= -MAX_ACK_WINDOW
        && ackskew <= (MAX_ACK_WINDOW << sws);
    if !in_window {
        return false;
    }
    advance(snd, rcv, win, win << sws, end, ack);
    state.timeout = TimeoutClass::TcpEstablished;
    state.touch(now);
    state.count(from_src, ip_len as u32);
    true
}

/// The established lane of [`track`] for UDP: a datagram of a state whose
/// two peers have both sent (`MULTIPLE`). Does what [`track`] does for it
/// (keep the multiple timeout, refresh the activity time, count; no
/// transition) and returns `true`; any other state changes nothing and
/// returns `false`. A property test holds the two to the same result.
#[inline(always)]
pub fn track_udp_multiple(state: &mut State, ip_len: u16, from_src: bool, now: Instant) -> bool {
    if state.src.state != udps::MULTIPLE
        || state.dst.state != udps::MULTIPLE
        || state.key().proto != proto::UDP
    {
        return false;
    }
    state.timeout = TimeoutClass::UdpMultiple;
    state.touch(now);
    state.count(from_src, ip_len as u32);
    true
}

/// pf_icmp_state_lookup's direction check: a request must come from the
/// side that created the state, its reply from the other side.
fn icmp_query_check(state: &State, af: Af, icmp: &IcmpInfo, from_src: bool) -> Option<StateDrop> {
    if icmp.is_error || state.is_sloppy() {
        return None;
    }
    match icmp_query_kind(af, icmp.icmp_type) {
        Some(request) if request != from_src => Some(StateDrop::IcmpWrongDirection),
        _ => None,
    }
}

/// `pf_tcp_track_full`: checks the segment against the sender's and
/// receiver's windows and advances them. Returns whether the state's
/// activity time is refreshed (only on the strict path) and the new timeout.
fn tcp_track_full(
    snd: &mut Peer,
    rcv: &mut Peer,
    tcp: &TcpInfo,
    resync: bool,
) -> Result<(bool, TimeoutClass), StateDrop> {
    let flags = tcp.flags;
    let syn = flags & tcp_flags::SYN != 0;
    let fin = flags & tcp_flags::FIN != 0;
    let rst = flags & tcp_flags::RST != 0;
    let has_ack = flags & tcp_flags::ACK != 0;
    let len = tcp.payload_len as u32;
    let mut win = tcp.win as u32;

    // Window scaling applies only once both SYNs carried the option, and
    // never to a SYN's own window.
    let (mut sws, mut dws) = if snd.wscale != 0 && rcv.wscale != 0 && !syn {
        (snd.wscale & WSCALE_MASK, rcv.wscale & WSCALE_MASK)
    } else {
        (0, 0)
    };

    let orig_seq = tcp.seq;
    let mut seq = tcp.seq;
    let mut ack;
    let mut end;
    let mut data_end;
    if snd.seqlo == 0 {
        // First packet from this end: initialise its side. Its ACK
        // acknowledges the other side's sequence as it went out (with
        // `modulate state`, shifted by that side's modulator).
        ack = tcp.ack.wrapping_sub(rcv.seqdiff);
        end = seq.wrapping_add(len);
        if syn {
            end = end.wrapping_add(1);
            if rcv.wscale & WSCALE_FLAG != 0 {
                snd.wscale = wscale_of(tcp);
                if snd.wscale & WSCALE_FLAG != 0 {
                    // Both sides scale: remove the factor from this SYN's
                    // window (rounding up).
                    sws = snd.wscale & WSCALE_MASK;
                    win = (win + (1 << sws) - 1) >> sws;
                    dws = rcv.wscale & WSCALE_MASK;
                } else {
                    // The other side offered scaling, this one declined: no
                    // scaling at all; undo it on the other side's window.
                    let shift = rcv.wscale & WSCALE_MASK;
                    rcv.max_win = ((rcv.max_win as u32) << shift).min(TCP_MAXWIN) as u16;
                    rcv.wscale = 0;
                }
            }
        }
        data_end = end;
        if fin {
            end = end.wrapping_add(1);
        }
        snd.seqlo = seq;
        if snd.state < tcps::SYN_SENT {
            snd.state = tcps::SYN_SENT;
        }
        // Slide the window if seqhi was never set (1) or lags.
        let reach = end.wrapping_add(((rcv.max_win as u32) << dws).max(1));
        if snd.seqhi == 1 || seq_geq(reach, snd.seqhi) {
            snd.seqhi = reach;
        }
        if win > snd.max_win as u32 {
            snd.max_win = win.min(TCP_MAXWIN) as u16;
        }
    } else {
        ack = tcp.ack.wrapping_sub(rcv.seqdiff);
        end = seq.wrapping_add(len);
        if syn {
            end = end.wrapping_add(1);
        }
        data_end = end;
        if fin {
            end = end.wrapping_add(1);
        }
    }

    if !has_ack {
        // Let it through the ACK skew check.
        ack = rcv.seqlo;
    } else if (ack == 0 && rst) || rcv.state < tcps::SYN_SENT {
        // Stacks put no real ACK in an RST|ACK after a SYN times out; and a
        // peer that has not sent a SYN has nothing to acknowledge.
        ack = rcv.seqlo;
    }

    // Where the sender really is, even for a segment without data.
    let sender_end = end;
    if seq == end {
        // Ease sequencing restrictions on segments without data.
        seq = snd.seqlo;
        data_end = seq;
        end = seq;
    }

    let ackskew = rcv.seqlo.wrapping_sub(ack) as i32 as i64;
    let rcv_win = (rcv.max_win as u32) << dws;
    let win_scaled = win << sws;

    // After pfsync wrote the windows, a packet that is neither SYN nor RST
    // is taken as the connection's truth (re-anchoring below).
    let resync = resync && !syn && !rst && snd.seqlo != 0;
    let in_window = resync
        || seq_geq(snd.seqhi, data_end)
        // last octet inside the other side's window
        && seq_geq(seq, snd.seqlo.wrapping_sub(rcv_win))
        // retransmission: at most one window back
        && ackskew >= -MAX_ACK_WINDOW
        // acking at most one reassembled fragment backwards
        && ackskew <= (MAX_ACK_WINDOW << sws);
    // acking at most one window forwards
    let rst_ok = !rst
        || orig_seq == snd.seqlo
        || orig_seq == snd.seqlo.wrapping_add(1)
        || orig_seq.wrapping_add(1) == snd.seqlo;

    if in_window && rst_ok {
        advance(snd, rcv, win, win_scaled, end, ack);
        if resync {
            // Re-anchor the sender where its packet says it is.
            if seq_gt(sender_end, snd.seqlo) {
                snd.seqlo = sender_end;
            }
            if seq_gt(sender_end, snd.seqhi) {
                snd.seqhi = sender_end;
            }
        }
        if syn && snd.state < tcps::SYN_SENT {
            snd.state = tcps::SYN_SENT;
        }
        if fin && snd.state < tcps::CLOSING {
            snd.state = tcps::CLOSING;
        }
        if has_ack {
            if rcv.state == tcps::SYN_SENT {
                rcv.state = tcps::ESTABLISHED;
            } else if rcv.state == tcps::CLOSING {
                rcv.state = tcps::FIN_WAIT_2;
            }
        }
        if rst {
            snd.state = tcps::TIME_WAIT;
            rcv.state = tcps::TIME_WAIT;
        }
        // The caller maps (src, dst) and (snd, rcv) alike: the timeout rule
        // is symmetric.
        return Ok((true, tcp_timeout(snd.state, rcv.state)));
    }

    let loose_ok = (rcv.state < tcps::SYN_SENT
        || rcv.state >= tcps::FIN_WAIT_2
        || snd.state >= tcps::FIN_WAIT_2)
        // within a window forward of the originating packet
        && seq_geq(snd.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), data_end)
        // within a window backward of the originating packet
        && seq_geq(seq, snd.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32));
    if loose_ok {
        // Shotgunned SYNs, connections picked up mid-stream, and stray
        // packets just after a close: pass, track, but do not refresh the
        // state's lifetime (so a flood cannot keep it alive).
        advance(snd, rcv, win, win_scaled, end, ack);
        if fin && snd.state < tcps::CLOSING {
            snd.state = tcps::CLOSING;
        }
        if rst {
            snd.state = tcps::TIME_WAIT;
            rcv.state = tcps::TIME_WAIT;
        }
        return Ok((false, tcp_timeout(snd.state, rcv.state)));
    }

    if snd.state == tcps::SYN_SENT && rcv.state == tcps::SYN_SENT {
        return Err(StateDrop::HandshakeMismatch);
    }
    if rst {
        Err(StateDrop::BadRst)
    } else {
        Err(StateDrop::BadWindow)
    }
}

/// Updates max window, sender's highest sequence and the receiver's upper
/// bound after an accepted segment.
#[inline]
fn advance(snd: &mut Peer, rcv: &mut Peer, win: u32, win_scaled: u32, end: u32, ack: u32) {
    if (snd.max_win as u32) < win {
        snd.max_win = win.min(TCP_MAXWIN) as u16;
    }
    if seq_gt(end, snd.seqlo) {
        snd.seqlo = end;
    }
    if seq_geq(ack.wrapping_add(win_scaled), rcv.seqhi) {
        rcv.seqhi = ack.wrapping_add(win_scaled.max(1));
    }
}

/// `pf_tcp_track_sloppy`: state progression from flags alone, for
/// asymmetric routing where only one direction is seen.
fn tcp_track_sloppy(snd: &mut Peer, rcv: &mut Peer, tcp: &TcpInfo) -> (bool, TimeoutClass) {
    let flags = tcp.flags;
    if flags & tcp_flags::SYN != 0 && snd.state < tcps::SYN_SENT {
        snd.state = tcps::SYN_SENT;
    }
    if flags & tcp_flags::FIN != 0 && snd.state < tcps::CLOSING {
        snd.state = tcps::CLOSING;
    }
    if flags & tcp_flags::ACK != 0 {
        if rcv.state == tcps::SYN_SENT {
            rcv.state = tcps::ESTABLISHED;
        } else if rcv.state == tcps::CLOSING {
            rcv.state = tcps::FIN_WAIT_2;
        } else if snd.state == tcps::SYN_SENT && rcv.state < tcps::SYN_SENT {
            // Only one half of the connection is visible: an ACK after the
            // SYN with nothing seen from the other side means established.
            snd.state = tcps::ESTABLISHED;
            rcv.state = tcps::ESTABLISHED;
        } else if snd.state == tcps::CLOSING && rcv.state == tcps::ESTABLISHED && rcv.seqlo == 0 {
            // Half-visible close: no FIN/ACK exchange will be seen.
            rcv.state = tcps::CLOSING;
        }
    }
    if flags & tcp_flags::RST != 0 {
        snd.state = tcps::TIME_WAIT;
        rcv.state = tcps::TIME_WAIT;
    }
    (true, tcp_timeout(snd.state, rcv.state))
}

/// Whether an ICMP error quoting `quoted` is consistent with `state` (pf's
/// check in `pf_test_state_icmp`). `quoted_from_src` says whether the
/// quoted packet was sent by the state's `src` peer ([`State::is_from_src`]
/// of the quoted packet's key).
///
/// For TCP the quoted sequence number must lie in the sender's window:
/// `seqlo - max_win(receiver, scaled) <= seq <= seqhi` (skipped for sloppy
/// states). Other protocols match on the key alone. pf neither refreshes
/// nor changes the timeout of a TCP/UDP state on an ICMP error; the pipeline
/// passes the error and may count it with [`State::count`].
pub fn icmp_error_matches(state: &State, quoted: &QuotedPacket, quoted_from_src: bool) -> bool {
    if quoted.proto != state.key().proto {
        return false;
    }
    if quoted.proto != proto::TCP || state.is_sloppy() {
        return true;
    }
    let (snd, rcv) = if quoted_from_src {
        (&state.src, &state.dst)
    } else {
        (&state.dst, &state.src)
    };
    let dws = if snd.wscale != 0 && rcv.wscale != 0 {
        rcv.wscale & WSCALE_MASK
    } else {
        0
    };
    let seq = quoted.tcp_seq.wrapping_sub(snd.seqdiff);
    let lo = snd.seqlo.wrapping_sub((rcv.max_win as u32) << dws);
    seq_geq(snd.seqhi, seq) && seq_geq(seq, lo)
}
