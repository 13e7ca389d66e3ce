//! A `synproxy state` connection across a failover, through the real
//! pfsync path in process: box A's worker proxies the handshake and
//! exports the state; A's sync engine packs it into pfsync frames; B's
//! sync engine parses them and hands the state to B's worker, which then
//! carries the connection with A's sequence translation (the server's
//! numbers shifted by `dst.seqdiff` to the ISN A gave the client), or
//! completes a handshake A began (the ISN A gave the client is kept in
//! `src.seqhi` in `PROXY_DST`).
//!
//! Wire mode (lan0 <-> wan0), the client on wan0 (port 1), the server on
//! lan0 (port 0).

use control::pfsync::engine::{Sync, SyncSetup};
use dataplane::counters::Verdict;
use dataplane::export::{ImportRecord, StateRecord};
use dataplane::flow::{Direction, IfIndex, L4Info, TcpInfo};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::ring::channel;
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::{tcps, Shard};
use dataplane::time::Instant;
use dataplane::wire::{classify, FrameKind};
use dpf_tests::frames::{flags, frame_with, tcp, L4};
use std::sync::Arc;

const RULES: &str = "block
pass in proto tcp to 10.1.0.7 port 80 synproxy state
pass out proto tcp
";
const CLIENT_MAC: [u8; 6] = [2, 0xc1, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "10.1.0.7";
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 0x8000_0000;

/// One box: a worker pipeline and its sync engine.
struct Node {
    p: Pipeline,
    sync: Sync,
}

fn boxed(creatorid: u32, mac: [u8; 6], ip: [u8; 4]) -> Node {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile(RULES, "pf.conf", &env).expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    cfg.creatorid = creatorid;
    let mut p = Pipeline::new(cfg, Arc::new(rules), Shard::new(1024, 0).expect("shard"));
    let (export, exported) = channel::<StateRecord>(64);
    let (imports, import) = channel::<ImportRecord>(64);
    p.set_sync(export, import, 128);
    let setup = SyncSetup {
        syncdev: 2,
        syncdev_name: "sync0".into(),
        mac,
        ip,
        syncpeer: None,
        mtu: 1500,
        max_frame_len: 2048,
        state_limit: 100_000,
        auth: None,
        maxupd: 128,
        defer: false,
        creatorid,
        ifnames: vec!["lan0".into(), "wan0".into(), "sync0".into()],
        timeouts: Default::default(),
        states_total: Default::default(),
        placement: Default::default(),
    };
    let sync = Sync::new(setup, vec![exported], vec![imports], Instant::from_secs(1))
        .expect("sync engine");
    Node { p, sync }
}

/// Everything A's worker exported, through A's engine onto the wire and
/// into B's engine and worker.
fn sync_a_to_b(a: &mut Node, b: &mut Node, now: Instant) {
    a.p.sync_poll(now, 64);
    let mut out = Vec::new();
    a.sync.poll(now, &mut out);
    // pfsync sends on a timer: a second poll later flushes what waits.
    a.sync
        .poll(now + dataplane::time::Duration::from_secs(1), &mut out);
    assert!(!out.is_empty(), "A sent pfsync frames");
    for (port, frame) in out {
        assert_eq!(port, 2, "on the sync port");
        b.sync.handle(&frame, 2, now, &mut Vec::new());
    }
    b.p.sync_poll(now, 64);
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn from_client(l4: &L4) -> Vec<u8> {
    frame_with(CLIENT_MAC, SERVER_MAC, 64, ip(CLIENT), ip(SERVER), l4)
}

fn from_server(l4: &L4) -> Vec<u8> {
    frame_with(SERVER_MAC, CLIENT_MAC, 64, ip(SERVER), ip(CLIENT), l4)
}

fn tcp_of(frame: &[u8]) -> TcpInfo {
    let c = classify(frame, IfIndex(0), Direction::Out).expect("parses, checksums valid");
    let FrameKind::Ip { info, .. } = c.kind else {
        panic!("not IP")
    };
    let L4Info::Tcp(t) = info.l4 else {
        panic!("not TCP")
    };
    t
}

fn data(sport: u16, dport: u16, seq: u32, ack: u32, len: usize) -> L4 {
    L4::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags: flags::ACK | flags::PSH,
        win: 1000,
        wscale: None,
        payload: vec![0x55; len],
    }
}

fn server_synack() -> L4 {
    L4::Tcp {
        sport: 80,
        dport: 40000,
        seq: SERVER_ISN,
        ack: CLIENT_ISN + 1,
        flags: flags::SYN | flags::ACK,
        win: 28960,
        wscale: None,
        payload: Vec::new(),
    }
}

/// The client's SYN and ACK on `a`: returns the ISN A gave the client.
fn client_handshake(a: &mut Node, now: Instant) -> u32 {
    let mut syn = from_client(&tcp(40000, 80, CLIENT_ISN, 0, flags::SYN));
    assert_eq!(a.p.process(&mut syn, 1, now), Verdict::Reply(1));
    let isn = tcp_of(a.p.reply(0)).seq;
    let mut ack = from_client(&tcp(
        40000,
        80,
        CLIENT_ISN + 1,
        isn.wrapping_add(1),
        flags::ACK,
    ));
    assert_eq!(
        a.p.process(&mut ack, 1, now),
        Verdict::Reply(0),
        "SYN to the server"
    );
    let s = tcp_of(a.p.reply(0));
    assert_eq!((s.flags, s.seq), (flags::SYN, CLIENT_ISN));
    isn
}

/// Data both ways through `b`, translated by the connection's offset.
fn data_flows_translated(b: &mut Node, isn: u32, now: Instant) {
    let mut get = from_client(&data(40000, 80, CLIENT_ISN + 1, isn.wrapping_add(1), 5));
    assert_eq!(b.p.process(&mut get, 1, now), Verdict::Forward(0));
    let t = tcp_of(&get);
    assert_eq!(
        (t.seq, t.ack),
        (CLIENT_ISN + 1, SERVER_ISN + 1),
        "ack shifted to the server's"
    );
    let mut resp = from_server(&data(80, 40000, SERVER_ISN + 1, CLIENT_ISN + 6, 12));
    assert_eq!(b.p.process(&mut resp, 0, now), Verdict::Forward(1));
    let t = tcp_of(&resp);
    assert_eq!(
        (t.seq, t.ack),
        (isn.wrapping_add(1), CLIENT_ISN + 6),
        "seq shifted to A's ISN"
    );
}

#[test]
fn a_proxied_connection_keeps_its_sequence_offset_on_the_peer() {
    let now = Instant::from_secs(2);
    let mut a = boxed(0xa, [2, 0, 0, 0, 0, 0xa], [10, 9, 0, 1]);
    let mut b = boxed(0xb, [2, 0, 0, 0, 0, 0xb], [10, 9, 0, 2]);
    let isn = client_handshake(&mut a, now);
    let mut synack = from_server(&server_synack());
    assert_eq!(
        a.p.process(&mut synack, 0, now),
        Verdict::Reply(0),
        "ACK to the server"
    );
    data_flows_translated(&mut a, isn, now);
    sync_a_to_b(&mut a, &mut b, now);
    // B holds the state as A does, offset included.
    assert_eq!(b.p.shard().len(), 1);
    let mut seen = None;
    b.p.shard().scan(0, usize::MAX, |st, _| {
        seen = Some(*st);
        true
    });
    let st = seen.expect("imported state");
    assert_eq!(
        (st.src.state, st.dst.state),
        (tcps::ESTABLISHED, tcps::ESTABLISHED)
    );
    assert_eq!({ st.dst.seqdiff }, isn.wrapping_sub(SERVER_ISN));
    // Failover: B carries the connection.
    data_flows_translated(&mut b, isn, now);
    assert_eq!(b.p.counters.total_drops(), 0, "{:?}", b.p.counters);
}

#[test]
fn a_handshake_begun_on_one_box_completes_on_the_peer() {
    let now = Instant::from_secs(2);
    let mut a = boxed(0xa, [2, 0, 0, 0, 0, 0xa], [10, 9, 0, 1]);
    let mut b = boxed(0xb, [2, 0, 0, 0, 0, 0xb], [10, 9, 0, 2]);
    let isn = client_handshake(&mut a, now);
    sync_a_to_b(&mut a, &mut b, now);
    // A fails; the server's SYN-ACK reaches B, which answers it.
    let mut synack = from_server(&server_synack());
    assert_eq!(b.p.process(&mut synack, 0, now), Verdict::Reply(0));
    let t = tcp_of(b.p.reply(0));
    assert_eq!(
        (t.flags, t.seq, t.ack),
        (flags::ACK, CLIENT_ISN + 1, SERVER_ISN + 1)
    );
    data_flows_translated(&mut b, isn, now);
}
