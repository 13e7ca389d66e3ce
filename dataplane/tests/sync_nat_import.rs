//! pfsync imports of translated connections on a worker: an OpenBSD peer
//! keeps a translated connection as two states of its own (one per
//! interface, each with its own id) where dpf keeps one with two keys.
//! Whatever order they arrive in, the worker ends up with one state that
//! holds the translation and is found by both keys.

use dataplane::export::{ImportRecord, StateRecord};
use dataplane::flow::{proto, Addr, Af, FlowKey};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::ring::{channel, Consumer, Producer};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::{Shard, State, Translation};
use dataplane::time::Instant;
use dataplane::timeouts::TimeoutClass;
use std::sync::Arc;

const PEERS: u32 = 0xbb;
const OTHER: u32 = 0xcc;

fn rig() -> (Pipeline, Producer<ImportRecord>, Consumer<StateRecord>) {
    rig_with(Shard::new(64, 0).expect("shard"))
}

/// [`rig`] with side records for `records` of its 64 states.
fn rig_with_records(records: usize) -> (Pipeline, Producer<ImportRecord>, Consumer<StateRecord>) {
    rig_with(Shard::with_records(64, records, 0).expect("shard"))
}

fn rig_with(shard: Shard) -> (Pipeline, Producer<ImportRecord>, Consumer<StateRecord>) {
    let env = RuleEnv {
        interfaces: &[],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile("pass all\n", "t", &env).expect("ruleset");
    let mut p = Pipeline::new(PipelineConfig::default(), Arc::new(rules), shard);
    let (export, exported) = channel::<StateRecord>(64);
    let (imports, import) = channel::<ImportRecord>(64);
    p.set_sync(export, import, 128);
    (p, imports, exported)
}

fn tcp_key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> (FlowKey, bool) {
    FlowKey::from_packet(
        Af::Inet,
        proto::TCP,
        Addr::v4(src),
        sport,
        Addr::v4(dst),
        dport,
    )
}

fn state(k: (FlowKey, bool), id: u64, creatorid: u32) -> State {
    let mut st = State::new(k.0, k.1, id, creatorid, Instant::from_secs(1));
    st.timeout = TimeoutClass::TcpEstablished;
    st.src.state = 4;
    st.dst.state = 4;
    st.src.seqlo = 1000 + id as u32;
    st
}

fn upsert(st: State, tr: Translation) -> ImportRecord {
    ImportRecord::Upsert {
        state: st,
        translation: tr,
        age_s: 1,
        expire_s: 0,
    }
}

fn apply(p: &mut Pipeline, imports: &mut Producer<ImportRecord>, recs: &[ImportRecord]) {
    for r in recs {
        imports.push(*r).expect("ring");
    }
    imports.publish();
    p.sync_poll(Instant::from_secs(2), 64);
}

fn translation(k: (FlowKey, bool)) -> Translation {
    Translation {
        key: k.0,
        src_is_addr1: k.1,
        route: Default::default(),
        scrub: Default::default(),
    }
}

/// LAN client 10.1.0.50:40000 to 10.2.0.50:8080, `nat-to` 10.2.0.254:
/// OpenBSD's untranslated inbound state on the LAN side (id 1) and its
/// translated outbound one on the WAN side (id 2, stack side = the LAN
/// key, wire side = the translated key).
fn nat_pair() -> (State, State, Translation) {
    let lan = tcp_key([10, 1, 0, 50], 40000, [10, 2, 0, 50], 8080);
    let wan = tcp_key([10, 2, 0, 254], 61001, [10, 2, 0, 50], 8080);
    (state(lan, 1, PEERS), state(lan, 2, PEERS), translation(wan))
}

fn one_translated_state(p: &Pipeline, near: &FlowKey, far: &FlowKey) -> State {
    let sh = p.shard();
    assert_eq!(sh.len(), 1, "one state for the connection");
    assert_eq!(sh.translated_len(), 1, "and it translates");
    let (slot, side) = sh
        .lookup_side(near, near.symmetric_hash())
        .expect("found by its own key");
    assert!(!side);
    assert_eq!(
        sh.lookup_side(far, far.symmetric_hash()),
        Some((slot, true))
    );
    assert_eq!(sh.translation(slot).map(|t| t.key), Some(*far));
    *sh.get(slot).unwrap()
}

#[test]
fn an_openbsd_nat_connection_becomes_one_translated_state() {
    let (lan_state, wan_state, tr) = nat_pair();
    let (mut p, mut imports, _exported) = rig();
    apply(
        &mut p,
        &mut imports,
        &[upsert(lan_state, Translation::NONE), upsert(wan_state, tr)],
    );
    let st = one_translated_state(&p, lan_state.key(), &tr.key);
    // The first state's identity, the second one's peers merged in.
    assert_eq!((st.id(), st.creatorid()), (1, PEERS));
    assert_eq!({ st.src.seqlo }, 1002);
    // Later updates of either id land on it.
    apply(&mut p, &mut imports, &[upsert(wan_state, tr)]);
    assert_eq!(p.shard().len(), 1);
    assert_eq!(p.counters.total_drops(), 0);
}

#[test]
fn the_translated_half_first_then_the_untranslated_one_merges() {
    let (lan_state, wan_state, tr) = nat_pair();
    let (mut p, mut imports, _exported) = rig();
    apply(
        &mut p,
        &mut imports,
        &[upsert(wan_state, tr), upsert(lan_state, Translation::NONE)],
    );
    let st = one_translated_state(&p, lan_state.key(), &tr.key);
    assert_eq!(st.id(), 2);
}

/// WAN client 10.2.0.50:33333 to 10.2.0.254:8080, `rdr-to` 10.1.0.50
/// port 9090: OpenBSD's translated inbound state on the WAN side (id 1)
/// and its untranslated outbound one on the LAN side (id 2), which dpf
/// holds as the far key.
#[test]
fn an_openbsd_rdr_connection_becomes_one_translated_state_in_either_order() {
    let wan = tcp_key([10, 2, 0, 50], 33333, [10, 2, 0, 254], 8080);
    let lan = tcp_key([10, 2, 0, 50], 33333, [10, 1, 0, 50], 9090);
    let (wan_state, lan_state, tr) = (state(wan, 1, PEERS), state(lan, 2, PEERS), translation(lan));
    for order in [[0, 1], [1, 0]] {
        let recs = [upsert(wan_state, tr), upsert(lan_state, Translation::NONE)];
        let (mut p, mut imports, _exported) = rig();
        apply(&mut p, &mut imports, &[recs[order[0]], recs[order[1]]]);
        let st = one_translated_state(&p, &wan.0, &lan.0);
        assert_eq!(st.id(), 1, "order {order:?}");
        assert_eq!(p.counters.total_drops(), 0);
    }
}

/// Another creator's state on the same key is not the peer's other half:
/// it keeps its key and the import is merged as before (pf: EEXIST).
#[test]
fn another_creators_state_is_not_taken_for_the_other_half() {
    let (lan_state, _, tr) = nat_pair();
    let theirs = state((*lan_state.key(), lan_state.src_is_addr1()), 7, OTHER);
    let (mut p, mut imports, _exported) = rig();
    apply(
        &mut p,
        &mut imports,
        &[
            upsert(theirs, Translation::NONE),
            upsert(
                state((*lan_state.key(), lan_state.src_is_addr1()), 2, PEERS),
                tr,
            ),
        ],
    );
    assert_eq!(p.shard().len(), 1);
    assert_eq!(p.shard().translated_len(), 0);
}

/// An OpenBSD `rdr-to` connection whose untranslated half arrived first,
/// when no side record is left for the translated half: the half already
/// here is kept (not given up for a state that cannot be inserted) and the
/// import is counted `side-records-full`.
#[test]
fn the_untranslated_half_stays_when_the_translated_half_has_no_record() {
    let (mut p, mut imports, _exported) = rig_with_records(1);
    // Another connection takes the one record.
    let other = state(tcp_key([10, 1, 0, 9], 1, [10, 2, 0, 50], 80), 9, PEERS);
    let other_far = translation(tcp_key([10, 2, 0, 254], 9, [10, 2, 0, 50], 80));
    let wan = tcp_key([10, 2, 0, 50], 33333, [10, 2, 0, 254], 8080);
    let lan = tcp_key([10, 2, 0, 50], 33333, [10, 1, 0, 50], 9090);
    let (wan_state, lan_state, tr) = (state(wan, 1, PEERS), state(lan, 2, PEERS), translation(lan));
    apply(
        &mut p,
        &mut imports,
        &[
            upsert(other, other_far),
            upsert(lan_state, Translation::NONE),
            upsert(wan_state, tr),
        ],
    );
    let sh = p.shard();
    assert_eq!(sh.len(), 2);
    assert!(sh.find_by_id(2, PEERS).is_some(), "the LAN half is kept");
    assert!(sh.lookup(&lan.0, lan.0.symmetric_hash()).is_some());
    assert!(sh.find_by_id(1, PEERS).is_none());
    assert_eq!(
        p.counters.drops[dataplane::counters::DropReason::SideRecordsFull as usize],
        1
    );
}

/// A worker sized with fewer side records than states: a translated import
/// beyond them is refused and counted `side-records-full`, an untranslated
/// one still lands.
#[test]
fn a_translated_import_without_a_side_record_is_refused_and_counted() {
    let (mut p, mut imports, _exported) = rig_with_records(1);
    let one = state(tcp_key([10, 1, 0, 1], 1, [10, 2, 0, 50], 80), 1, PEERS);
    let two = state(tcp_key([10, 1, 0, 2], 1, [10, 2, 0, 50], 80), 2, PEERS);
    let plain = state(tcp_key([10, 1, 0, 3], 1, [10, 2, 0, 50], 80), 3, PEERS);
    let far = |n| translation(tcp_key([10, 2, 0, 254], n, [10, 2, 0, 50], 80));
    apply(
        &mut p,
        &mut imports,
        &[
            upsert(one, far(61001)),
            upsert(two, far(61002)),
            upsert(plain, Translation::NONE),
        ],
    );
    let sh = p.shard();
    assert_eq!(sh.len(), 2);
    assert!(sh.find_by_id(1, PEERS).is_some());
    assert!(sh.find_by_id(2, PEERS).is_none());
    assert!(sh.find_by_id(3, PEERS).is_some());
    assert_eq!(
        p.counters.drops[dataplane::counters::DropReason::SideRecordsFull as usize],
        1
    );
}
