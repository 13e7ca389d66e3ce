//! pfsync CLR and DEL_C on a worker: a peer's CLR is applied a bounded
//! number of slab slots per `sync_poll` (a forged or real flush of a large
//! table never stalls the worker loop), removes only that creator's
//! states, and a deletion of a state the worker does not have is reported
//! (`SyncAction::NotDeleted`, counted `badstate` by the sync side).

use dataplane::export::{ImportRecord, StateRecord, SyncAction};
use dataplane::flow::{proto, Addr, Af, FlowKey};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::ring::{channel, Consumer, Producer};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::{Shard, State};
use dataplane::time::Instant;
use std::sync::Arc;

const OURS: u32 = 0xaa;
const PEERS: u32 = 0xbb;

fn rig(n: u32) -> (Pipeline, Producer<ImportRecord>, Consumer<StateRecord>) {
    let env = RuleEnv {
        interfaces: &[],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile("pass all\n", "t", &env).expect("ruleset");
    let mut shard = Shard::new(4 * n as usize, 0).expect("shard");
    let now = Instant::from_secs(1);
    for i in 0..n {
        let (key, swapped) = FlowKey::from_packet(
            Af::Inet,
            proto::UDP,
            Addr::v4([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            1000,
            Addr::v4([192, 0, 2, 1]),
            53,
        );
        let creator = if i % 2 == 0 { PEERS } else { OURS };
        shard
            .insert(State::new(key, swapped, u64::from(i) + 1, creator, now))
            .expect("insert");
    }
    let mut p = Pipeline::new(PipelineConfig::default(), Arc::new(rules), shard);
    let (export, exported) = channel::<StateRecord>(1024);
    let (imports, import) = channel::<ImportRecord>(64);
    p.set_sync(export, import, 128);
    (p, imports, exported)
}

#[test]
fn a_clear_is_applied_a_bounded_slice_per_poll() {
    let n = 20_000;
    let (mut p, mut imports, _exported) = rig(n);
    let now = Instant::from_secs(2);
    imports
        .push(ImportRecord::Clear { creatorid: PEERS })
        .expect("ring");
    imports.publish();
    p.sync_poll(now, 64);
    let after_one = p.shard().len();
    assert!(
        after_one > (n / 2) as usize,
        "one poll walked the whole table: {after_one} left"
    );
    let mut polls = 1;
    while p.shard().len() > (n / 2) as usize {
        p.sync_poll(now, 64);
        polls += 1;
        assert!(polls < 1000, "the clear never finished");
    }
    assert!(polls > 2, "{polls} polls");
    // Only the peer's states went; ours stay; the walk has ended.
    let mut creators = Vec::new();
    p.shard().scan(0, usize::MAX, |st, _| {
        creators.push(st.creatorid());
        true
    });
    assert_eq!(creators.len(), (n / 2) as usize);
    assert!(creators.iter().all(|c| *c == OURS));
    p.sync_poll(now, 64);
    assert_eq!(p.shard().len(), (n / 2) as usize);
}

#[test]
fn deleting_an_unknown_state_is_reported() {
    let (mut p, mut imports, mut exported) = rig(10);
    let now = Instant::from_secs(2);
    for (id, creatorid) in [(1, PEERS), (999, PEERS)] {
        imports
            .push(ImportRecord::Delete { id, creatorid })
            .expect("ring");
    }
    imports.publish();
    p.sync_poll(now, 64);
    assert_eq!(p.shard().len(), 9);
    let recs: Vec<_> = std::iter::from_fn(|| exported.pop()).collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].action, SyncAction::NotDeleted);
    assert_eq!(
        (recs[0].state.id(), recs[0].state.creatorid()),
        (999, PEERS)
    );
}
