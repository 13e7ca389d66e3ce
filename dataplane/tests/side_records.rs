//! Side records on the packet path: a worker whose state table was sized
//! with fewer side records than states (a ruleset without translation,
//! routing or scrub values at start) refuses a new translated connection
//! when none is left, and counts it `side-records-full`; connections that
//! need none still get their states.

#[path = "../benches/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{client_port, client_v4, router_tables, tcp4_frame, Segment, LAN_MAC, SERVER_V4};
use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::tcp_flags as f;
use dataplane::flow::IfIndex;
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;

/// lan0's clients translated to wan0's address on the way out to port
/// 80; port 81 passes untranslated.
const RULES: &str = "\
set limit states 64
block all
pass in on lan0 keep state
pass out on wan0 proto tcp to port 80 nat-to 192.0.2.1 keep state
pass out on wan0 proto tcp to port 81 keep state
";

fn pipeline(records: usize) -> Pipeline {
    let (routing, neighbors) = router_tables(true, 8);
    let ifs = [("lan0", IfIndex(0)), ("wan0", IfIndex(1))];
    let env = RuleEnv {
        interfaces: &ifs,
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile(RULES, "nat.conf", &env).unwrap();
    assert!(rules.makes_side_records());
    let cfg = PipelineConfig {
        workers: 1,
        ..PipelineConfig::default()
    };
    let shard = Shard::with_records(64, records, 0).unwrap();
    let mut p = Pipeline::new(cfg, Arc::new(rules), shard);
    p.set_router(routing, neighbors, None);
    p
}

fn syn(flow: usize, dport: u16) -> Vec<u8> {
    let mut fr = tcp4_frame(
        client_v4(flow),
        SERVER_V4,
        Segment {
            sport: client_port(flow),
            dport,
            seq: 1000,
            ack: 0,
            flags: f::SYN,
        },
    );
    fr[0..6].copy_from_slice(&LAN_MAC);
    fr
}

fn source_of(frame: &[u8]) -> [u8; 4] {
    frame[26..30].try_into().unwrap()
}

#[test]
fn a_translated_connection_without_a_side_record_is_refused_and_counted() {
    let mut p = pipeline(2);
    let now = Instant::from_secs(1);
    let mut verdicts = Vec::new();
    for flow in 1..=4 {
        let mut fr = syn(flow, 80);
        let v = p.process(&mut fr, 0, now);
        if v == Verdict::Forward(1) {
            assert_eq!(source_of(&fr), [192, 0, 2, 1], "translated");
        }
        verdicts.push(v);
    }
    assert_eq!(
        verdicts,
        [
            Verdict::Forward(1),
            Verdict::Forward(1),
            Verdict::Drop(DropReason::SideRecordsFull),
            Verdict::Drop(DropReason::SideRecordsFull),
        ]
    );
    assert_eq!(
        p.counters.drops[DropReason::SideRecordsFull as usize],
        2,
        "counted"
    );
    assert_eq!(p.shard().records_used(), 2);
    assert_eq!(p.counters.side_records_used, 2, "the gauge follows");
    // An untranslated connection needs no record.
    let mut fr = syn(5, 81);
    assert_eq!(p.process(&mut fr, 0, now), Verdict::Forward(1));
    assert_eq!(source_of(&fr), client_v4(5));
    assert_eq!(p.shard().len(), 3);
    // Nothing stayed reserved for the refused ones: `set limit states 64`
    // still has room for 61 more states, and not one more.
    for flow in 6..=66 {
        let mut fr = syn(flow, 81);
        assert_eq!(
            p.process(&mut fr, 0, now),
            Verdict::Forward(1),
            "flow {flow}"
        );
    }
    assert_eq!(p.shard().len(), 64);
    let mut fr = syn(67, 81);
    assert_eq!(
        p.process(&mut fr, 0, now),
        Verdict::Drop(DropReason::StateTableFull)
    );
    assert_eq!(p.shard().records_used(), 2);
}

#[test]
fn a_shard_with_a_record_per_state_translates_every_connection() {
    let mut p = pipeline(64);
    let now = Instant::from_secs(1);
    for flow in 1..=40 {
        let mut fr = syn(flow, 80);
        assert_eq!(
            p.process(&mut fr, 0, now),
            Verdict::Forward(1),
            "flow {flow}"
        );
        assert_eq!(source_of(&fr), [192, 0, 2, 1]);
    }
    assert_eq!(p.shard().records_used(), 40);
    assert_eq!(p.counters.total_drops(), 0);
}
