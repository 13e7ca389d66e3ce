//! pfsync between a worker's pipeline and the sync side, through the
//! export and import rings: nothing is lost for good when the export ring
//! is full (owed states are re-sent in full by the expiry sweep, deletions
//! wait in a backlog), compressed updates merge into the state that has
//! them or are reported missing, a stale peer update is answered with our
//! state, and an update request is answered with the whole state.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{client_port, client_v4, udp4_frame, SERVER_PORT, SERVER_V4};
use dataplane::counters::Verdict;
use dataplane::export::{ImportRecord, StateRecord, SyncAction};
use dataplane::flow::IfIndex;
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::ring::{channel, Consumer, Producer};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::{state_flags, tcps, Peer, Shard};
use dataplane::time::{Duration, Instant};
use dataplane::timeouts::TimeoutClass;
use std::sync::Arc;

const RULES: &str = "block all\npass in on lan0 proto udp keep state\npass out on wan0 proto udp\n";
const CREATORID: u32 = 0x0000_00aa;

struct Rig {
    p: Pipeline,
    exported: Consumer<StateRecord>,
    imports: Producer<ImportRecord>,
}

/// A pipeline whose export ring holds `export_capacity` records.
fn rig(export_capacity: usize) -> Rig {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile(RULES, "sync.conf", &env).expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    cfg.creatorid = CREATORID;
    let mut p = Pipeline::new(cfg, Arc::new(rules), Shard::new(1024, 0).expect("shard"));
    let (export, exported) = channel::<StateRecord>(export_capacity);
    let (imports, import) = channel::<ImportRecord>(64);
    p.set_sync(export, import, 128);
    Rig {
        p,
        exported,
        imports,
    }
}

impl Rig {
    /// One new UDP flow `i` from lan0: creates a state.
    fn new_flow(&mut self, i: usize, now: Instant) {
        let mut f = udp4_frame(client_v4(i), SERVER_V4, client_port(i), SERVER_PORT);
        assert_eq!(self.p.process(&mut f, 0, now), Verdict::Forward(1));
    }

    /// Publishes (as a burst does) and takes what was exported.
    fn drain(&mut self, now: Instant) -> Vec<StateRecord> {
        self.p.sync_poll(now, 64);
        std::iter::from_fn(|| self.exported.pop()).collect()
    }

    fn import(&mut self, rec: ImportRecord, now: Instant) -> Vec<StateRecord> {
        self.imports.push(rec).expect("import ring");
        self.imports.publish();
        self.drain(now)
    }

    fn owed(&self) -> usize {
        let mut n = 0;
        self.p.shard().scan(0, usize::MAX, |st, _| {
            n += (st.state_flags & state_flags::SYNC_OWED != 0) as usize;
            true
        });
        n
    }
}

fn actions(recs: &[StateRecord]) -> Vec<SyncAction> {
    recs.iter().map(|r| r.action).collect()
}

#[test]
fn inserts_refused_by_a_full_ring_are_sent_again_in_full_by_the_sweep() {
    let t = Instant::from_secs(10);
    let mut r = rig(2); // capacity rounds to a small power of two
    for i in 0..8 {
        r.new_flow(i, t);
    }
    let first = r.drain(t);
    assert!(first.len() < 8, "the ring took {} records", first.len());
    assert!(first.iter().all(|x| x.action == SyncAction::Insert));
    assert!(
        first.iter().all(|x| x.at == t),
        "an insert carries its creation time"
    );
    let refused = 8 - first.len();
    assert_eq!(r.owed(), refused);
    assert_eq!(r.p.counters.export_dropped, refused as u64);

    // Each sweep re-sends what fits; the rest stays owed.
    let mut again = Vec::new();
    for _ in 0..8 {
        r.p.expire(t + Duration::from_secs(1), 1024);
        again.extend(r.drain(t + Duration::from_secs(1)));
        if r.owed() == 0 {
            break;
        }
    }
    assert_eq!(r.owed(), 0);
    assert_eq!(again.len(), refused);
    assert!(again.iter().all(|x| x.action == SyncAction::FullUpdate));
    assert!(again
        .iter()
        .all(|x| x.state.state_flags & state_flags::SYNC_OWED == 0));
    assert_eq!(r.p.counters.export_resent, refused as u64);
    let mut ids: Vec<u64> = first.iter().chain(&again).map(|x| x.state.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "every state reached the sync side once");
}

#[test]
fn deletions_refused_by_a_full_ring_wait_in_the_backlog() {
    let t = Instant::from_secs(10);
    let mut r = rig(2);
    for i in 0..6 {
        r.new_flow(i, t);
        r.drain(t);
    }
    // UDP first-packet timeout is 60 s: all six expire in one sweep, more
    // than the ring takes.
    let later = t + Duration::from_secs(3600);
    assert_eq!(r.p.expire(later, 1024), 6);
    let mut dels = Vec::new();
    for _ in 0..8 {
        dels.extend(r.drain(later));
    }
    assert_eq!(actions(&dels), vec![SyncAction::Delete; 6]);
    assert!(r.p.counters.export_dropped > 0);
    assert_eq!(r.p.counters.export_lost, 0);
    let mut ids: Vec<u64> = dels.iter().map(|x| x.state.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    assert!(dels.iter().all(|d| d.state.creatorid() == CREATORID));
}

fn peer(state: u8, seqlo: u32) -> Peer {
    Peer {
        seqlo,
        state,
        ..Peer::default()
    }
}

#[test]
fn compressed_updates_merge_or_are_reported_missing() {
    let t = Instant::from_secs(10);
    let mut r = rig(64);
    r.new_flow(1, t);
    let ins = r.drain(t);
    let st = ins[0].state;
    assert_eq!(st.src.state, 1, "udp single");

    // A newer view from the peer (both sides MULTIPLE): merged, no answer.
    let merge = ImportRecord::Merge {
        id: st.id(),
        creatorid: st.creatorid(),
        src: peer(2, 0),
        dst: peer(2, 0),
        timeout: TimeoutClass::UdpMultiple,
    };
    assert!(r.import(merge, t).is_empty());
    let mut found = None;
    r.p.shard().scan(0, usize::MAX, |s, _| {
        found = Some(*s);
        true
    });
    let now_st = found.expect("state");
    assert_eq!((now_st.src.state, now_st.dst.state), (2, 2));
    assert_eq!(now_st.timeout, TimeoutClass::UdpMultiple);

    // An older view (src back at NO_TRAFFIC): refused and answered with
    // our state as a compressed update.
    let stale = ImportRecord::Merge {
        id: st.id(),
        creatorid: st.creatorid(),
        src: peer(0, 0),
        dst: peer(2, 0),
        timeout: TimeoutClass::UdpMultiple,
    };
    let answer = r.import(stale, t);
    assert_eq!(actions(&answer), vec![SyncAction::Update]);
    assert_eq!(answer[0].state.src.state, 2);
    assert_eq!(r.p.counters.sync_stale, 1);

    // A state this worker does not have: reported missing, by identity.
    let unknown = ImportRecord::Merge {
        id: 0x0100_0000_0000_0042,
        creatorid: 0xbb,
        src: peer(tcps::ESTABLISHED, 5),
        dst: peer(tcps::ESTABLISHED, 9),
        timeout: TimeoutClass::TcpEstablished,
    };
    let missing = r.import(unknown, t);
    assert_eq!(actions(&missing), vec![SyncAction::Missing]);
    assert_eq!(missing[0].state.id(), 0x0100_0000_0000_0042);
    assert_eq!(missing[0].state.creatorid(), 0xbb);
    assert_eq!(r.p.shard().len(), 1, "nothing was inserted");
}

#[test]
fn an_update_request_is_answered_with_the_whole_state() {
    let t = Instant::from_secs(10);
    let mut r = rig(64);
    r.new_flow(3, t);
    let st = r.drain(t)[0].state;
    let req = ImportRecord::Request {
        id: st.id(),
        creatorid: st.creatorid(),
    };
    let answer = r.import(req, t);
    assert_eq!(actions(&answer), vec![SyncAction::FullUpdate]);
    assert_eq!(answer[0].state.key(), st.key());
    // Asking for a state this worker does not have gets nothing.
    let none = ImportRecord::Request {
        id: 99,
        creatorid: 0xbb,
    };
    assert!(r.import(none, t).is_empty());
}

/// A pipeline with pfsync `defer` on.
fn defer_rig() -> Rig {
    let mut r = rig(64);
    r.p.set_defer(true);
    r
}

fn releases(r: &mut Rig, now: Instant) -> Vec<(u16, u16)> {
    let mut v = Vec::new();
    r.p.release_deferred(now, |slot, port| v.push((slot, port)));
    v
}

#[test]
fn defer_holds_the_first_packet_until_the_peer_acknowledges_the_state() {
    let t = Instant::from_secs(10);
    let mut r = defer_rig();
    let mut f = udp4_frame(client_v4(1), SERVER_V4, client_port(1), SERVER_PORT);
    let Verdict::Hold(slot) = r.p.process(&mut f, 0, t) else {
        panic!("the first packet of a new state is held");
    };
    let ins = r.drain(t);
    assert_eq!(actions(&ins), vec![SyncAction::Insert]);
    assert_ne!(
        ins[0].state.state_flags & state_flags::ACK,
        0,
        "the insert asks for an INS_ACK"
    );
    assert_eq!(r.p.counters.deferred, 1);
    assert_eq!(r.p.counters.forwarded, 0);
    // The state exists: the flow's next packet passes at once.
    let mut g = udp4_frame(client_v4(1), SERVER_V4, client_port(1), SERVER_PORT);
    assert_eq!(r.p.process(&mut g, 0, t), Verdict::Forward(1));
    assert!(releases(&mut r, t + Duration::from_millis(1)).is_empty());
    let st = ins[0].state;
    let ack = ImportRecord::Ack {
        id: st.id(),
        creatorid: st.creatorid(),
    };
    r.import(ack, t + Duration::from_millis(2));
    assert_eq!(
        releases(&mut r, t + Duration::from_millis(2)),
        vec![(slot, 1)]
    );
    assert_eq!(r.p.counters.defer_acked, 1);
    assert_eq!(r.p.counters.forwarded, 2);
}

#[test]
fn a_held_packet_goes_after_20_ms_or_on_the_peers_update() {
    let t = Instant::from_secs(10);
    let mut r = defer_rig();
    for i in 0..2 {
        let mut f = udp4_frame(client_v4(i), SERVER_V4, client_port(i), SERVER_PORT);
        assert!(matches!(r.p.process(&mut f, 0, t), Verdict::Hold(_)));
    }
    let ins = r.drain(t);
    // An update of the second state from the peer counts as its ack.
    let upd = ImportRecord::Merge {
        id: ins[1].state.id(),
        creatorid: ins[1].state.creatorid(),
        src: peer(2, 0),
        dst: peer(2, 0),
        timeout: TimeoutClass::UdpMultiple,
    };
    r.import(upd, t);
    assert_eq!(releases(&mut r, t).len(), 1);
    assert!(releases(&mut r, t + Duration::from_millis(19)).is_empty());
    assert_eq!(releases(&mut r, t + Duration::from_millis(20)).len(), 1);
    assert_eq!(
        (r.p.counters.defer_acked, r.p.counters.defer_timeout),
        (1, 1)
    );
}

#[test]
fn without_defer_nothing_is_held_and_inserts_ask_for_no_ack() {
    let t = Instant::from_secs(10);
    let mut r = rig(64);
    r.new_flow(1, t);
    let ins = r.drain(t);
    assert_eq!(ins[0].state.state_flags & state_flags::ACK, 0);
    assert!(releases(&mut r, t + Duration::from_secs(1)).is_empty());
}

#[test]
fn packets_short_of_maxupd_reach_the_peer_within_a_sweep() {
    let t = Instant::from_secs(10);
    let mut r = rig(64);
    r.new_flow(1, t);
    r.drain(t);
    // A few more packets of the flow: fewer than maxupd (128), no update.
    for _ in 0..3 {
        let mut f = udp4_frame(client_v4(1), SERVER_V4, client_port(1), SERVER_PORT);
        assert_eq!(r.p.process(&mut f, 0, t), Verdict::Forward(1));
    }
    assert!(r.drain(t).is_empty());
    // The sweep sends one compressed update; the next finds nothing new.
    r.p.expire(t + Duration::from_secs(1), 1024);
    let upd = r.drain(t + Duration::from_secs(1));
    assert_eq!(actions(&upd), vec![SyncAction::Update]);
    r.p.expire(t + Duration::from_secs(2), 1024);
    assert!(r.drain(t + Duration::from_secs(2)).is_empty());
}
