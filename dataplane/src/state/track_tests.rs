//! Scenario tests for state creation and tracking: TCP connections driven
//! segment by segment, with the peer states and timeout class pf would
//! show after each, plus UDP, ICMP and ICMP-error checks.

use super::entry::{tcps, udps, State, WSCALE_FLAG};
use super::track::*;
use crate::flow::{
    proto, tcp_flags::*, Addr, Af, Direction, IcmpInfo, IfIndex, L4Info, PacketInfo, QuotedPacket,
    TcpInfo,
};
use crate::time::Instant;
use crate::timeouts::TimeoutClass;
use proptest::prelude::*;

const CLIENT: Addr = Addr::v4([192, 168, 1, 20]);
const SERVER: Addr = Addr::v4([10, 0, 0, 80]);
const CPORT: u16 = 49152;
const SPORT: u16 = 443;

/// A TCP segment between CLIENT and SERVER.
#[derive(Clone, Copy)]
struct Seg {
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    len: u16,
    wscale: Option<u8>,
}

fn seg(from_client: bool, flags: u8, seq: u32, ack: u32) -> Seg {
    Seg {
        from_client,
        flags,
        seq,
        ack,
        win: 65535,
        len: 0,
        wscale: None,
    }
}

impl Seg {
    fn len(mut self, len: u16) -> Seg {
        self.len = len;
        self
    }
    fn win(mut self, win: u16) -> Seg {
        self.win = win;
        self
    }
    fn wscale(mut self, ws: u8) -> Seg {
        self.wscale = Some(ws);
        self
    }
    fn pkt(self) -> PacketInfo {
        let (src, sport, dst, dport) = if self.from_client {
            (CLIENT, CPORT, SERVER, SPORT)
        } else {
            (SERVER, SPORT, CLIENT, CPORT)
        };
        PacketInfo {
            af: Af::Inet,
            proto: proto::TCP,
            src,
            dst,
            sport,
            dport,
            ip_len: 40 + self.len,
            ttl: 64,
            ifindex: IfIndex(1),
            dir: Direction::In,
            l4: L4Info::Tcp(TcpInfo {
                seq: self.seq,
                ack: self.ack,
                win: self.win,
                flags: self.flags,
                wscale: self.wscale,
                payload_len: self.len,
                ..TcpInfo::default()
            }),
        }
    }
}

/// Drives a connection: the state plus a fake clock.
struct Conn {
    st: State,
    now: Instant,
}

impl Conn {
    fn open(syn: Seg, opts: StateOptions) -> Conn {
        let now = Instant::from_secs(100);
        let st = new_state(&syn.pkt(), now, opts, 1, 0xdead_beef).expect("SYN creates state");
        Conn { st, now }
    }

    fn send(&mut self, s: Seg) -> TrackOutcome {
        self.now = self.now + crate::time::Duration::from_secs(1);
        let pkt = s.pkt();
        let (_, swapped) = pkt.key();
        let from_src = self.st.is_from_src(swapped);
        assert_eq!(from_src, s.from_client, "client opened, so client is src");
        track(&mut self.st, &pkt, from_src, self.now)
    }

    fn peers(&self) -> (u8, u8) {
        (self.st.src.state, self.st.dst.state)
    }
}

const PASS: TrackOutcome = TrackOutcome::Pass { transition: false };
const PASS_T: TrackOutcome = TrackOutcome::Pass { transition: true };

#[test]
fn handshake_data_and_fin_close_step_by_step() {
    let (c, s) = (1000u32, 5000u32);
    let mut k = Conn::open(seg(true, SYN, c, 0).win(64240), StateOptions::default());
    assert_eq!(k.peers(), (tcps::SYN_SENT, tcps::CLOSED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpFirst);
    assert_eq!({ k.st.src.seqlo }, c);
    assert_eq!(
        { k.st.src.seqhi },
        c + 2,
        "pf: seq + len + 1, +1 for the SYN"
    );
    assert_eq!({ k.st.src.max_win }, 64240);
    assert_eq!(({ k.st.dst.seqhi }, { k.st.dst.max_win }), (1, 1));

    assert_eq!(k.send(seg(false, SYN | ACK, s, c + 1)), PASS_T);
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::SYN_SENT));
    assert_eq!(k.st.timeout, TimeoutClass::TcpOpening);
    assert_eq!({ k.st.dst.seqlo }, s + 1);

    assert_eq!(k.send(seg(true, ACK, c + 1, s + 1)), PASS_T);
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpEstablished);

    assert_eq!(k.send(seg(true, ACK | PSH, c + 1, s + 1).len(100)), PASS);
    assert_eq!({ k.st.src.seqlo }, c + 101);
    assert_eq!(k.send(seg(false, ACK | PSH, s + 1, c + 101).len(500)), PASS);
    assert_eq!({ k.st.dst.seqlo }, s + 501);
    assert_eq!(k.send(seg(true, ACK, c + 101, s + 501)), PASS);
    assert_eq!(k.st.timeout, TimeoutClass::TcpEstablished);

    // Client closes.
    assert_eq!(k.send(seg(true, FIN | ACK, c + 101, s + 501)), PASS_T);
    assert_eq!(k.peers(), (tcps::CLOSING, tcps::ESTABLISHED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpClosing);
    // Server acknowledges the FIN.
    assert_eq!(k.send(seg(false, ACK, s + 501, c + 102)), PASS_T);
    assert_eq!(k.peers(), (tcps::FIN_WAIT_2, tcps::ESTABLISHED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpClosing);
    // Server closes.
    assert_eq!(k.send(seg(false, FIN | ACK, s + 501, c + 102)), PASS_T);
    assert_eq!(k.peers(), (tcps::FIN_WAIT_2, tcps::CLOSING));
    assert_eq!(k.st.timeout, TimeoutClass::TcpFinWait);
    // Client acknowledges.
    assert_eq!(k.send(seg(true, ACK, c + 102, s + 502)), PASS_T);
    assert_eq!(k.peers(), (tcps::FIN_WAIT_2, tcps::FIN_WAIT_2));
    assert_eq!(k.st.timeout, TimeoutClass::TcpClosed);

    // Counters: 1 SYN + 5 from the client, 5 from the server.
    assert_eq!((k.st.packets(0), k.st.packets(1)), (6, 4));
    assert_eq!(k.st.bytes(0), 6 * 40 + 100);
    assert_eq!(k.st.bytes(1), 4 * 40 + 500);
    assert_eq!(
        k.st.last_seen_s(),
        109,
        "nine tracked packets, one second apart"
    );

    // A new SYN on the closed connection: pf drops the old state and
    // evaluates the SYN afresh.
    assert_eq!(k.send(seg(true, SYN, 90_000, 0)), TrackOutcome::Reuse);
}

fn established(c: u32, s: u32) -> Conn {
    let mut k = Conn::open(seg(true, SYN, c, 0), StateOptions::default());
    assert_eq!(k.send(seg(false, SYN | ACK, s, c.wrapping_add(1))), PASS_T);
    assert_eq!(
        k.send(seg(true, ACK, c.wrapping_add(1), s.wrapping_add(1))),
        PASS_T
    );
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
    k
}

#[test]
fn out_of_window_data_is_dropped() {
    let (c, s) = (1000u32, 5000u32);
    let mut k = established(c, s);
    let before = k.st;
    // Far ahead of anything the server's window allows.
    let r = k.send(seg(true, ACK, c + 1 + 200_000, s + 1).len(100));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadWindow));
    // Far behind (more than a window back).
    let r = k.send(seg(true, ACK, c.wrapping_sub(100_000), s + 1).len(100));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadWindow));
    // Acknowledging data the server never sent.
    let r = k.send(seg(true, ACK, c + 1, s + 1 + 300_000).len(10));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadWindow));
    assert_eq!(k.st, before, "drops change nothing, not even counters");
    // In-window data still passes.
    assert_eq!(k.send(seg(true, ACK, c + 1, s + 1).len(1000)), PASS);
}

#[test]
fn spoofed_rst_dropped_in_window_rst_closes() {
    let (c, s) = (1000u32, 5000u32);
    let mut k = established(c, s);
    // Inside the window but not at the exact sequence number: a blind
    // spoofing attempt.
    let r = k.send(seg(false, RST, s + 1 + 30_000, 0));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadRst));
    // Nowhere near the window.
    let r = k.send(seg(false, RST | ACK, s.wrapping_add(0x8000_0000), c + 1));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadRst));
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
    // The real RST carries exactly the next sequence number.
    assert_eq!(k.send(seg(false, RST, s + 1, 0)), PASS_T);
    assert_eq!(k.peers(), (tcps::TIME_WAIT, tcps::TIME_WAIT));
    assert_eq!(k.st.timeout, TimeoutClass::TcpClosed);
}

#[test]
fn rst_one_off_is_accepted_as_pf_does() {
    let (c, s) = (1000u32, 5000u32);
    let mut k = established(c, s);
    assert_eq!(k.send(seg(true, RST, c, 0)), PASS_T, "seq + 1 == seqlo");
    assert_eq!(k.peers(), (tcps::TIME_WAIT, tcps::TIME_WAIT));
}

#[test]
fn window_scaling_is_respected() {
    let (c, s) = (7_000_000u32, 900_000u32);
    let mut k = Conn::open(
        seg(true, SYN, c, 0).win(64240).wscale(7),
        StateOptions::default(),
    );
    assert_eq!(k.st.src.wscale, WSCALE_FLAG | 7);
    assert_eq!({ k.st.src.max_win }, 64240u32.div_ceil(128) as u16);
    assert_eq!(
        k.send(seg(false, SYN | ACK, s, c + 1).win(65535).wscale(7)),
        PASS_T
    );
    assert_eq!(k.st.dst.wscale, WSCALE_FLAG | 7);
    // Client advertises 4096 << 7 = 512 KiB.
    assert_eq!(k.send(seg(true, ACK, c + 1, s + 1).win(4096)), PASS_T);
    // Server sends 400 KiB ahead: beyond any unscaled window, inside the
    // scaled one.
    let far = s + 1 + 400_000;
    assert_eq!(k.send(seg(false, ACK, far, c + 1).win(512).len(1400)), PASS);
    // Past the scaled window (ack + 4096 << 7): dropped.
    let beyond = s + 1 + (4096 << 7) + 10;
    assert_eq!(
        k.send(seg(false, ACK, beyond, c + 1).win(512).len(100)),
        TrackOutcome::Drop(StateDrop::BadWindow)
    );
}

#[test]
fn large_window_without_scaling_is_dropped() {
    // The same 400 KiB jump without window scaling is out of window.
    let (c, s) = (7_000_000u32, 900_000u32);
    let mut k = established(c, s);
    assert_eq!(
        k.send(seg(false, ACK, s + 1 + 400_000, c + 1).len(1400)),
        TrackOutcome::Drop(StateDrop::BadWindow)
    );
}

#[test]
fn scaling_needs_both_syns() {
    // The client offers scaling, the server does not: pf turns it off and
    // un-scales the client's recorded window.
    let (c, s) = (1u32 << 20, 1u32 << 24);
    let mut k = Conn::open(
        seg(true, SYN, c, 0).win(64240).wscale(7),
        StateOptions::default(),
    );
    assert_eq!(k.send(seg(false, SYN | ACK, s, c + 1)), PASS_T);
    assert_eq!(k.st.src.wscale, 0);
    assert_eq!(k.st.dst.wscale, 0);
    // Un-scaled back from the rounded-up 502 (pf's arithmetic).
    assert_eq!({ k.st.src.max_win }, 502 << 7);
    assert_eq!(k.send(seg(true, ACK, c + 1, s + 1).win(4096)), PASS_T);
    // The client's 4096 is taken literally (not 4096 << 7 = 512 KiB): the
    // server may send no further than the window seen so far (64256).
    assert_eq!(
        k.send(seg(false, ACK, s + 1 + 60_000, c + 1).len(100)),
        PASS
    );
    assert_eq!(
        k.send(seg(false, ACK, s + 1 + 100_000, c + 1).len(100)),
        TrackOutcome::Drop(StateDrop::BadWindow)
    );
}

#[test]
fn sequence_numbers_wrap_at_2_pow_32() {
    let c = u32::MAX - 300;
    let s = u32::MAX - 50;
    let mut k = established(c, s);
    let mut cseq = c.wrapping_add(1);
    let mut sseq = s.wrapping_add(1);
    for _ in 0..10 {
        assert_eq!(k.send(seg(true, ACK, cseq, sseq).len(1000)), PASS);
        cseq = cseq.wrapping_add(1000);
        assert_eq!(k.send(seg(false, ACK, sseq, cseq).len(700)), PASS);
        sseq = sseq.wrapping_add(700);
    }
    assert!(cseq < c && sseq < s, "both sides wrapped");
    assert_eq!({ k.st.src.seqlo }, cseq);
    assert_eq!({ k.st.dst.seqlo }, sseq);
    // Still rejects junk after the wrap.
    assert_eq!(
        k.send(seg(true, ACK, cseq.wrapping_add(500_000), sseq).len(10)),
        TrackOutcome::Drop(StateDrop::BadWindow)
    );
}

/// Only the client -> server half is routed through this firewall.
fn one_way_flow(opts: StateOptions) -> (Conn, Vec<TrackOutcome>) {
    let c = 1000u32;
    let s = 777_777u32; // never seen
    let mut k = Conn::open(seg(true, SYN, c, 0), opts);
    let mut out = vec![k.send(seg(true, ACK, c + 1, s + 1))];
    let mut seq = c + 1;
    for i in 0..100u32 {
        out.push(k.send(seg(true, ACK | PSH, seq, s + 1 + i).len(1400)));
        seq += 1400;
    }
    (k, out)
}

#[test]
fn full_tracking_drops_a_one_direction_flow() {
    let (k, out) = one_way_flow(StateOptions::default());
    assert!(
        out.contains(&TrackOutcome::Drop(StateDrop::BadWindow)),
        "{out:?}"
    );
    // It never reached established and its lifetime was never refreshed
    // past the loose matches.
    assert_eq!(k.peers(), (tcps::SYN_SENT, tcps::CLOSED));
}

#[test]
fn sloppy_accepts_a_one_direction_flow() {
    let opts = StateOptions {
        sloppy: true,
        ..StateOptions::default()
    };
    let (k, out) = one_way_flow(opts);
    assert_eq!(out[0], PASS_T, "ACK after SYN: both established");
    assert!(out[1..].iter().all(|o| *o == PASS), "{out:?}");
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpEstablished);
    assert_eq!(k.st.last_seen_s(), 201, "refreshed by every packet");
    assert!(k.st.is_sloppy());
}

#[test]
fn sloppy_half_close_and_rst() {
    let opts = StateOptions {
        sloppy: true,
        ..StateOptions::default()
    };
    let mut k = Conn::open(seg(true, SYN, 10, 0), opts);
    k.send(seg(true, ACK, 11, 99));
    assert_eq!(k.send(seg(true, FIN | ACK, 11, 99)), PASS_T);
    // Never saw the server: its FIN/ACK exchange is assumed.
    assert_eq!(k.peers(), (tcps::CLOSING, tcps::CLOSING));
    assert_eq!(k.st.timeout, TimeoutClass::TcpFinWait);
    // A sloppy RST is taken at any sequence number.
    assert_eq!(k.send(seg(true, RST, 123_456_789, 0)), PASS_T);
    assert_eq!(k.peers(), (tcps::TIME_WAIT, tcps::TIME_WAIT));
}

#[test]
fn retransmitted_syn_passes_and_keeps_the_state() {
    let c = 424_242u32;
    let mut k = Conn::open(seg(true, SYN, c, 0), StateOptions::default());
    assert_eq!(k.send(seg(true, SYN, c, 0)), PASS);
    assert_eq!(k.send(seg(true, SYN, c, 0)), PASS);
    assert_eq!(k.peers(), (tcps::SYN_SENT, tcps::CLOSED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpOpening);
    assert_eq!(k.st.packets(0), 3);
    // The handshake still completes.
    assert_eq!(k.send(seg(false, SYN | ACK, 1, c + 1)), PASS_T);
    assert_eq!(k.send(seg(true, ACK, c + 1, 2)), PASS_T);
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
}

#[test]
fn bad_syn_ack_during_handshake_resets_the_responder_side() {
    let c = 1000u32;
    let mut k = Conn::open(seg(true, SYN, c, 0), StateOptions::default());
    // Acknowledges something far from the client's ISN.
    let r = k.send(seg(false, SYN | ACK, 5000, c + 200_000));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::HandshakeMismatch));
    assert_eq!(
        ({ k.st.dst.seqlo }, { k.st.dst.seqhi }, { k.st.dst.max_win }),
        (0, 1, 1)
    );
    // The genuine SYN|ACK then passes.
    assert_eq!(k.send(seg(false, SYN | ACK, 5000, c + 1)), PASS_T);
    assert_eq!(k.send(seg(true, ACK, c + 1, 5001)), PASS_T);
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
}

#[test]
fn new_state_refuses_what_pf_would_not_create() {
    let now = Instant::from_secs(1);
    let o = StateOptions::default();
    assert!(new_state(&seg(true, ACK, 1, 1).pkt(), now, o, 1, 1).is_none());
    assert!(new_state(&seg(true, SYN | ACK, 1, 1).pkt(), now, o, 1, 1).is_none());
    assert!(new_state(&seg(true, RST, 1, 0).pkt(), now, o, 1, 1).is_none());
    let any = StateOptions {
        any_flags: true,
        ..o
    };
    // `flags any`: picked up mid-stream.
    let st = new_state(&seg(true, ACK, 77, 1).pkt(), now, any, 1, 1).unwrap();
    assert_eq!(({ st.src.seqlo }, { st.src.seqhi }), (77, 78));
    assert!(new_state(&seg(true, RST, 1, 0).pkt(), now, any, 1, 1).is_none());
    let mut err = icmp(true, 3);
    if let L4Info::Icmp(ref mut i) = err.l4 {
        i.is_error = true;
    }
    assert!(new_state(&err, now, o, 1, 1).is_none());
}

#[test]
fn mid_stream_pickup_with_flags_any_uses_the_loose_path() {
    // pf's case 2: the firewall rebooted under an established connection.
    let any = StateOptions {
        any_flags: true,
        ..StateOptions::default()
    };
    let (c, s) = (50_000u32, 80_000u32);
    let mut k = Conn::open(seg(true, ACK, c, s).len(100), any);
    assert_eq!(k.peers(), (tcps::SYN_SENT, tcps::CLOSED));
    // The server's reply initialises its side; the client side is then
    // acknowledged into ESTABLISHED.
    assert_eq!(k.send(seg(false, ACK, s, c + 100).len(50)), PASS_T);
    assert_eq!(k.send(seg(true, ACK, c + 100, s + 50)), PASS_T);
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
    assert_eq!(k.st.timeout, TimeoutClass::TcpEstablished);
}

fn udp(from_client: bool) -> PacketInfo {
    let mut p = seg(from_client, 0, 0, 0).pkt();
    p.proto = proto::UDP;
    p.l4 = L4Info::Udp;
    p.ip_len = 28 + 32;
    p
}

#[test]
fn udp_single_then_multiple() {
    let now = Instant::from_secs(10);
    let mut st = new_state(&udp(true), now, StateOptions::default(), 1, 1).unwrap();
    assert_eq!(
        (st.src.state, st.dst.state),
        (udps::SINGLE, udps::NO_TRAFFIC)
    );
    assert_eq!(st.timeout, TimeoutClass::UdpFirst);
    let t = Instant::from_secs(11);
    assert_eq!(track(&mut st, &udp(true), true, t), PASS);
    assert_eq!(st.timeout, TimeoutClass::UdpSingle);
    assert_eq!(track(&mut st, &udp(false), false, t), PASS_T);
    assert_eq!((st.src.state, st.dst.state), (udps::MULTIPLE, udps::SINGLE));
    assert_eq!(st.timeout, TimeoutClass::UdpSingle);
    assert_eq!(track(&mut st, &udp(true), true, t), PASS_T);
    assert_eq!(
        (st.src.state, st.dst.state),
        (udps::MULTIPLE, udps::MULTIPLE)
    );
    assert_eq!(st.timeout, TimeoutClass::UdpMultiple);
    assert_eq!(track(&mut st, &udp(false), false, t), PASS);
    assert_eq!((st.packets(0), st.packets(1)), (3, 2));
}

#[test]
fn other_protocols_use_other_timeouts() {
    let mk = |from_client| {
        let mut p = udp(from_client);
        p.proto = 47; // GRE
        p.l4 = L4Info::Other;
        p
    };
    let now = Instant::from_secs(10);
    let mut st = new_state(&mk(true), now, StateOptions::default(), 1, 1).unwrap();
    assert_eq!(st.timeout, TimeoutClass::OtherFirst);
    assert_eq!(track(&mut st, &mk(false), false, now), PASS_T);
    assert_eq!(st.timeout, TimeoutClass::OtherSingle);
    assert_eq!(track(&mut st, &mk(true), true, now), PASS_T);
    assert_eq!(st.timeout, TimeoutClass::OtherMultiple);
    // A TCP packet can never be tracked on a GRE state.
    assert_eq!(
        track(&mut st, &seg(true, ACK, 1, 1).pkt(), true, now),
        TrackOutcome::Drop(StateDrop::ProtocolMismatch)
    );
}

fn icmp(from_client: bool, icmp_type: u8) -> PacketInfo {
    let mut p = seg(from_client, 0, 0, 0).pkt();
    p.proto = proto::ICMP;
    p.sport = 0x77;
    p.dport = 0x77;
    p.l4 = L4Info::Icmp(IcmpInfo {
        icmp_type,
        id: 0x77,
        ..IcmpInfo::default()
    });
    p
}

#[test]
fn icmp_echo_state_and_direction() {
    let now = Instant::from_secs(10);
    let mut st = new_state(&icmp(true, 8), now, StateOptions::default(), 1, 1).unwrap();
    assert_eq!(st.timeout, TimeoutClass::IcmpFirst);
    let (_, sw) = icmp(false, 0).key();
    assert!(!st.is_from_src(sw));
    assert_eq!(track(&mut st, &icmp(false, 0), false, now), PASS);
    assert_eq!(st.timeout, TimeoutClass::IcmpError);
    // An echo request from the responder's side is not part of this state.
    assert_eq!(
        track(&mut st, &icmp(false, 8), false, now),
        TrackOutcome::Drop(StateDrop::IcmpWrongDirection)
    );
    assert_eq!(
        track(&mut st, &icmp(true, 0), true, now),
        TrackOutcome::Drop(StateDrop::IcmpWrongDirection)
    );
}

fn quoted_tcp(from_client: bool, seq: u32) -> QuotedPacket {
    let (src, sport, dst, dport) = if from_client {
        (CLIENT, CPORT, SERVER, SPORT)
    } else {
        (SERVER, SPORT, CLIENT, CPORT)
    };
    QuotedPacket {
        proto: proto::TCP,
        src,
        dst,
        sport,
        dport,
        tcp_seq: seq,
    }
}

#[test]
fn icmp_error_must_quote_an_in_window_sequence_number() {
    let (c, s) = (1000u32, 5000u32);
    let mut k = established(c, s);
    k.send(seg(true, ACK, c + 1, s + 1).len(1400));
    // Packet too big for the client's last segment (PMTU discovery).
    let q = quoted_tcp(true, c + 1);
    let (_, sw) =
        crate::flow::FlowKey::from_packet(Af::Inet, q.proto, q.src, q.sport, q.dst, q.dport);
    let from_src = k.st.is_from_src(sw);
    assert!(from_src);
    assert!(icmp_error_matches(&k.st, &q, from_src));
    // A forged error quoting a sequence number far off is refused.
    assert!(!icmp_error_matches(
        &k.st,
        &quoted_tcp(true, c + 10_000_000),
        true
    ));
    assert!(!icmp_error_matches(
        &k.st,
        &quoted_tcp(true, c.wrapping_sub(200_000)),
        true
    ));
    // Quoting a server segment is checked against the server's window.
    assert!(icmp_error_matches(&k.st, &quoted_tcp(false, s + 1), false));
    assert!(!icmp_error_matches(
        &k.st,
        &quoted_tcp(false, s + 5_000_000),
        false
    ));
    // Sloppy states skip the check; UDP states match on the key alone.
    k.st.state_flags |= super::entry::state_flags::SLOPPY;
    assert!(icmp_error_matches(
        &k.st,
        &quoted_tcp(true, c + 10_000_000),
        true
    ));
    let st = new_state(&udp(true), k.now, StateOptions::default(), 2, 1).unwrap();
    let qu = QuotedPacket {
        proto: proto::UDP,
        ..quoted_tcp(true, 0)
    };
    assert!(icmp_error_matches(&st, &qu, true));
    assert!(!icmp_error_matches(&st, &quoted_tcp(true, 0), true));
}

#[test]
fn options_set_pfsync_flags() {
    let now = Instant::from_secs(1);
    let o = StateOptions {
        no_sync: true,
        rule: 12,
        ..StateOptions::default()
    };
    let st = new_state(&seg(true, SYN, 1, 0).pkt(), now, o, 1, 1).unwrap();
    assert!(st.is_nosync());
    assert!(!st.is_sloppy());
    assert_eq!(st.rule, 12);
    assert_eq!(st.direction, Direction::In);
    assert_eq!(st.ifindex, IfIndex(1));
}

fn arb_tcp() -> impl Strategy<Value = (bool, TcpInfo)> {
    (
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        proptest::option::of(any::<u8>()),
        any::<u16>(),
    )
        .prop_map(|(from, seq, ack, win, flags, wscale, len)| {
            (
                from,
                TcpInfo {
                    seq,
                    ack,
                    win,
                    flags,
                    wscale,
                    payload_len: len,
                    ..TcpInfo::default()
                },
            )
        })
}

fn arb_peer() -> impl Strategy<Value = super::entry::Peer> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        0u8..=12,
    )
        .prop_map(
            |(seqlo, seqhi, seqdiff, max_win, wscale, state)| super::entry::Peer {
                seqlo,
                seqhi,
                seqdiff,
                max_win,
                mss: 0,
                wscale,
                state,
            },
        )
}

proptest! {
    /// Arbitrary segments on arbitrary (e.g. pfsync-imported) peers never
    /// panic (no arithmetic overflow), and a drop leaves counters alone.
    #[test]
    fn tracking_arbitrary_segments_never_panics(
        src in arb_peer(),
        dst in arb_peer(),
        sloppy in any::<bool>(),
        segs in proptest::collection::vec(arb_tcp(), 1..30),
    ) {
        let now = Instant::from_secs(5);
        let mut st = new_state(&seg(true, SYN, 1, 0).pkt(), now, StateOptions { sloppy, ..StateOptions::default() }, 1, 1).unwrap();
        st.src = src;
        st.dst = dst;
        for (from_client, tcp) in segs {
            let mut p = seg(from_client, 0, 0, 0).pkt();
            p.l4 = L4Info::Tcp(tcp);
            let before = (st.packets(0), st.packets(1));
            let r = track(&mut st, &p, from_client, now);
            let after = (st.packets(0), st.packets(1));
            match r {
                TrackOutcome::Pass { .. } => prop_assert_eq!(after.0 + after.1, before.0 + before.1 + 1),
                _ => prop_assert_eq!(after, before),
            }
            let q = quoted_tcp(from_client, tcp.seq);
            let _ = icmp_error_matches(&st, &q, from_client);
        }
    }

    /// The same segments tracked from the wrong side (src/dst swapped in
    /// the state) produce mirror-image states: tracking is symmetric.
    #[test]
    fn new_state_never_panics(tcp in arb_tcp(), any_flags in any::<bool>()) {
        let mut p = seg(tcp.0, 0, 0, 0).pkt();
        p.l4 = L4Info::Tcp(tcp.1);
        let o = StateOptions { any_flags, ..StateOptions::default() };
        if let Some(st) = new_state(&p, Instant::from_secs(1), o, 1, 1) {
            prop_assert_eq!(st.src.state, tcps::SYN_SENT);
            prop_assert!(st.src.wscale & 0x0f <= 14);
        }
    }
}

/// The connection as a backup knows it from pfsync: windows written by the
/// peer (both SYNCED bits set) while the real connection moved on by
/// `lag` bytes in each direction.
fn synced_behind(lag: u32) -> (Conn, u32, u32) {
    let (c, s) = (1000u32, 5000u32);
    let mut k = established(c, s);
    k.st.state_flags |=
        super::entry::state_flags::SYNCED_SRC | super::entry::state_flags::SYNCED_DST;
    (k, c + 1 + lag, s + 1 + lag)
}

#[test]
fn windows_written_by_pfsync_are_re_anchored_by_each_sides_first_packet() {
    use super::entry::state_flags::{SYNCED_DST, SYNCED_SRC};
    let (mut k, c, s) = synced_behind(200_000);
    // Far beyond the stale windows: taken as the truth, once per side.
    assert_eq!(k.send(seg(false, ACK, s, c).len(1000)), PASS);
    assert_eq!(k.st.state_flags & (SYNCED_SRC | SYNCED_DST), SYNCED_SRC);
    assert_eq!(k.send(seg(true, ACK, c, s + 1000)), PASS);
    assert_eq!(k.st.state_flags & (SYNCED_SRC | SYNCED_DST), 0);
    // Tracking is strict again from the re-anchored windows.
    assert_eq!(k.send(seg(false, ACK, s + 1000, c).len(1000)), PASS);
    let r = k.send(seg(false, ACK, s + 2000 + 300_000, c).len(100));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadWindow));
}

#[test]
fn a_stale_synced_window_still_refuses_a_blind_rst_and_a_syn() {
    let (mut k, c, s) = synced_behind(200_000);
    let r = k.send(seg(false, RST, s + 17, 0));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadRst));
    let r = k.send(seg(true, SYN, c + 5, 0));
    assert!(matches!(r, TrackOutcome::Drop(_)), "{r:?}");
    assert_eq!(k.peers(), (tcps::ESTABLISHED, tcps::ESTABLISHED));
}

#[test]
fn without_the_synced_bits_the_same_packets_are_dropped() {
    let (mut k, c, s) = synced_behind(200_000);
    k.st.state_flags = 0;
    let r = k.send(seg(false, ACK, s, c).len(1000));
    assert_eq!(r, TrackOutcome::Drop(StateDrop::BadWindow));
}

/// Peers of an established connection near sequence `base` (so segments
/// drawn near it land inside and just outside the windows).
fn arb_established_peer(base: u32) -> impl Strategy<Value = super::entry::Peer> {
    (
        0u32..70_000,
        0u32..140_000,
        prop_oneof![Just(0u32), any::<u32>()],
        any::<u16>(),
        prop_oneof![Just(0u8), (0u8..=15).prop_map(|s| s | WSCALE_FLAG)],
        prop_oneof![4 => Just(tcps::ESTABLISHED), 1 => 0u8..=12],
    )
        .prop_map(move |(lo, span, seqdiff, max_win, wscale, state)| {
            let seqlo = base.wrapping_add(lo);
            super::entry::Peer {
                seqlo,
                seqhi: seqlo.wrapping_add(span),
                seqdiff,
                max_win,
                mss: 0,
                wscale,
                state,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    /// The established lane agrees with pf's tracker: where it takes a
    /// segment, the state afterwards is exactly what [`track`] leaves and
    /// `track` passes it without a transition; where it declines, it
    /// changed nothing.
    #[test]
    fn the_established_lane_is_track_where_it_applies(
        peers in any::<u32>().prop_flat_map(|b| (arb_established_peer(b), arb_established_peer(b.wrapping_add(1_000_000)))),
        state_flags in prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
        from_client in any::<bool>(),
        flags in prop_oneof![4 => Just(ACK), 2 => Just(ACK | PSH), 1 => any::<u8>()],
        seq_off in -80_000i64..200_000,
        ack_off in -80_000i64..200_000,
        win in any::<u16>(),
        len in prop_oneof![Just(0u16), 1u16..1500, any::<u16>()],
    ) {
        let (src, dst) = peers;
        let now = Instant::from_secs(5);
        let later = Instant::from_secs(9);
        let mut st = new_state(&seg(true, SYN, 1, 0).pkt(), now, StateOptions::default(), 1, 1).unwrap();
        st.src = src;
        st.dst = dst;
        st.state_flags = state_flags;
        let (snd, rcv) = if from_client { (src, dst) } else { (dst, src) };
        let tcp = TcpInfo {
            seq: snd.seqlo.wrapping_add(seq_off as u32),
            ack: rcv.seqlo.wrapping_add(rcv.seqdiff).wrapping_add(ack_off as u32),
            win,
            flags,
            payload_len: len,
            ..TcpInfo::default()
        };
        let mut p = seg(from_client, 0, 0, 0).pkt();
        p.l4 = L4Info::Tcp(tcp);
        p.ip_len = 40u16.wrapping_add(len);
        let original = st;
        let mut lane = st;
        let mut full = st;
        let took = track_established(&mut lane, &(&tcp).into(), p.ip_len, from_client, later);
        let r = track(&mut full, &p, from_client, later);
        if took {
            prop_assert_eq!(r, TrackOutcome::Pass { transition: false });
            prop_assert_eq!(lane, full);
        } else {
            prop_assert_eq!(lane, original);
        }
    }
}

#[test]
fn the_established_lane_takes_in_window_acks_and_declines_the_rest() {
    let (c, s) = (1000u32, 5000u32);
    let k = established(c, s);
    let mut st = k.st;
    let ack = seg(true, ACK, c + 1, s + 1).len(100).pkt();
    let L4Info::Tcp(tcp) = ack.l4 else {
        unreachable!()
    };
    assert!(track_established(
        &mut st,
        &(&tcp).into(),
        ack.ip_len,
        true,
        k.now
    ));
    assert_eq!(st.packets(0), k.st.packets(0) + 1);
    // A FIN, a segment far outside the window: the general tracker's.
    let fin = seg(true, ACK | FIN, c + 101, s + 1).pkt();
    let L4Info::Tcp(tcp) = fin.l4 else {
        unreachable!()
    };
    assert!(!track_established(
        &mut st,
        &(&tcp).into(),
        fin.ip_len,
        true,
        k.now
    ));
    let far = seg(true, ACK, c + 10_000_000, s + 1).len(100).pkt();
    let L4Info::Tcp(tcp) = far.l4 else {
        unreachable!()
    };
    let before = st;
    assert!(!track_established(
        &mut st,
        &(&tcp).into(),
        far.ip_len,
        true,
        k.now
    ));
    assert_eq!(st, before);
}

proptest! {
    /// The UDP lane agrees with pf's tracker wherever it takes a datagram,
    /// and changes nothing where it declines.
    #[test]
    fn the_udp_lane_is_track_where_it_applies(
        src_state in prop_oneof![3 => Just(udps::MULTIPLE), 1 => 0u8..=3],
        dst_state in prop_oneof![3 => Just(udps::MULTIPLE), 1 => 0u8..=3],
        from_client in any::<bool>(),
        len in any::<u16>(),
    ) {
        let now = Instant::from_secs(5);
        let mut p = seg(true, 0, 0, 0).pkt();
        p.proto = proto::UDP;
        p.l4 = L4Info::Udp;
        let mut st = new_state(&p, now, StateOptions::default(), 1, 1).unwrap();
        st.src.state = src_state;
        st.dst.state = dst_state;
        let mut q = seg(from_client, 0, 0, 0).pkt();
        q.proto = proto::UDP;
        q.l4 = L4Info::Udp;
        q.ip_len = len;
        let later = Instant::from_secs(9);
        let (original, mut lane, mut full) = (st, st, st);
        let took = track_udp_multiple(&mut lane, len, from_client, later);
        let r = track(&mut full, &q, from_client, later);
        if took {
            prop_assert_eq!(r, TrackOutcome::Pass { transition: false });
            prop_assert_eq!(lane, full);
        } else {
            prop_assert_eq!(lane, original);
        }
    }
}
