//! Fuzz smoke run without libFuzzer: every seed of every target's corpus
//! (`fuzz/corpus/<target>/`) and a few thousand deterministic mutations of
//! them (bit flips, interesting bytes and 16-bit length values,
//! truncations, insertions, deletions, splices) go through the same target
//! bodies the cargo-fuzz binaries run (`dpf_tests::fuzz_bodies`).
//!
//! Deterministic: a fixed xorshift seed per target, so a failure reproduces
//! with the same command. `DPF_FUZZ_SMOKE_SCALE=<n>` multiplies the number
//! of mutations (default 1). A failing input is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-smoke-<target>-crash` (feed it to
//! `cargo fuzz run <target> <file>` or to the body) and printed in hex.

use dpf_tests::fuzz_bodies::{Body, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// xorshift64* (Vigna): small, fast, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes and 16-bit values that hit length and type checks.
const INTERESTING_U8: [u8; 10] = [0, 1, 2, 4, 0x10, 0x40, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING_U16: [u16; 10] = [0, 1, 7, 8, 20, 40, 64, 0x7fff, 0x8000, 0xffff];

/// Applies 1 to 4 random mutations to `input`; `others` is the corpus to
/// splice from.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                v[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                v[at] = INTERESTING_U8[rng.below(INTERESTING_U8.len())];
            }
            2 if len > 1 => {
                let at = rng.below(len - 1);
                let x = INTERESTING_U16[rng.below(INTERESTING_U16.len())];
                let bytes = if rng.below(2) == 0 {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                };
                v[at..at + 2].copy_from_slice(&bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                v[at] = rng.next() as u8;
            }
            4 => v.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                v.drain(at..at + n);
            }
            6 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, fill);
            }
            7 if len > 0 => {
                // Duplicate a chunk (repeats sections, options, list items).
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = v[at..at + n].to_vec();
                let to = rng.below(len + 1);
                v.splice(to..to, chunk);
            }
            _ if !others.is_empty() => {
                // Splice: our prefix, another seed's suffix.
                let other = &others[rng.below(others.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    v
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The seed files of `target`, sorted by name for determinism.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read seed"))
        })
        .collect();
    out.sort();
    out
}

fn body(target: &str) -> Body {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target {target}"))
}

/// Runs `f` on `input`; on a panic saves and prints the input first.
fn run_one(target: &str, what: &str, f: Body, input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(input))) {
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-smoke-{target}-crash"));
        let _ = std::fs::write(&path, input);
        let hex: Vec<String> = input.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "fuzz smoke {target}: {what} failed ({} bytes, saved to {}):\n{}",
            input.len(),
            path.display(),
            hex.join("")
        );
        std::panic::resume_unwind(panic);
    }
}

fn smoke(target: &str, mutations: usize, seed: u64) {
    let f = body(target);
    let corpus = seeds(target);
    assert!(corpus.len() >= 2, "corpus of {target} has too few seeds");
    for (name, bytes) in &corpus {
        run_one(target, &format!("seed {name}"), f, bytes);
    }
    let scale: usize = std::env::var("DPF_FUZZ_SMOKE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let all: Vec<Vec<u8>> = corpus.iter().map(|(_, b)| b.clone()).collect();
    let mut rng = Rng::new(seed);
    for i in 0..mutations * scale {
        let (name, base) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &all);
        run_one(target, &format!("mutation {i} of {name}"), f, &input);
    }
}

#[test]
fn every_target_has_a_smoke_test_and_a_fuzz_binary() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(corpus_dir(name).is_dir(), "no corpus for {name}");
        let bin = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        let src = std::fs::read_to_string(&bin).unwrap_or_else(|_| panic!("no {}", bin.display()));
        assert!(
            src.contains(&format!("fuzz_bodies::{name}(")),
            "{name}.rs does not call its body"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")));
    }
    let this = include_str!("fuzz_smoke.rs");
    for (name, _) in TARGETS {
        assert!(
            this.contains(&format!("smoke(\"{name}\"")),
            "no smoke test for {name}"
        );
    }
}

#[test]
fn mutator_is_deterministic_and_mutates() {
    let seed = b"pass in on lan0 proto tcp to port 80".to_vec();
    let run = || {
        let mut rng = Rng::new(7);
        (0..50)
            .map(|_| mutate(&mut rng, &seed, std::slice::from_ref(&seed)))
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    assert!(a.iter().filter(|m| **m != seed).count() > 40);
}

/// The seeds are real inputs that reach deep code: most packet seeds
/// classify, the CARP and pfsync seeds pass their receive checks, a rules
/// seed compiles to several rules, a config seed is valid; and every body
/// takes the empty input.
#[test]
fn seeds_reach_the_deep_paths() {
    use dataplane::flow::{Direction, IfIndex};
    let classify = seeds("classify");
    let classified = classify
        .iter()
        .filter(|(_, b)| dataplane::wire::classify(b, IfIndex(0), Direction::In).is_ok())
        .count();
    assert!(
        classified * 2 > classify.len(),
        "most packet seeds classify"
    );
    let carp = seeds("carp");
    assert!(carp
        .iter()
        .any(|(_, b)| control::carp::wire::parse_frame(b).is_ok()));
    let ctx = control::pfsync::wire::RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: true,
    };
    let pfsync = seeds("pfsync");
    assert!(pfsync.iter().all(|(_, b)| {
        let mut stats = control::pfsync::PfsyncStats::default();
        control::pfsync::wire::frame::receive_frame(b, &ctx, &mut stats).is_ok()
    }));
    let env = dataplane::rules::RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    assert!(seeds("rules").iter().any(|(_, b)| {
        let text = String::from_utf8_lossy(b);
        dataplane::rules::Ruleset::compile(&text, "x", &env).is_ok_and(|r| r.len() > 3)
    }));
    assert!(seeds("config").iter().any(|(_, b)| {
        let text = String::from_utf8_lossy(b);
        control::config::Config::parse(&text, Path::new("x.toml")).is_ok()
    }));
    for (name, _) in TARGETS {
        body(name)(&[]);
    }
}

/// The seeds of the stateful targets reach what they are for: the slow
/// path answers ARP, NS and echo, learns a neighbour, resolves and sends
/// time exceeded; the pipeline creates states, tracks them, answers
/// `block return`, hands off, fills a small table and punts to the slow
/// path; pfsync imports states into the workers; imported records meet
/// packets; CARP elects a MASTER and accepts the peer's adverts.
#[test]
fn stateful_seeds_reach_the_deep_paths() {
    use dataplane::counters::DropReason;
    use dpf_tests::fuzz_bodies as fb;
    let sum = |target: &str, f: &dyn Fn(&[u8]) -> Vec<u64>| {
        let mut total = Vec::new();
        for (_, b) in seeds(target) {
            let v = f(&b);
            total.resize(v.len(), 0);
            for (t, x) in total.iter_mut().zip(v) {
                *t += x;
            }
        }
        total
    };
    let sp = sum("slowpath", &|b| {
        let s = fb::slowpath_run(b);
        vec![
            s.arp_replies,
            s.na_sent,
            s.echo_replies,
            s.learned,
            s.resolutions_sent,
            s.time_exceeded,
        ]
    });
    assert!(sp.iter().all(|&n| n > 0), "slowpath seeds: {sp:?}");
    let pl = sum("pipeline", &|b| {
        let c = fb::pipeline_run(b);
        vec![
            c.states_created,
            c.state_hits,
            c.block_returns,
            c.handed_off,
            c.slow_path,
            // A full table, or the `max 40` rule refusing first.
            c.drops[DropReason::StateTableFull as usize]
                + c.drops[DropReason::RuleMaxStates as usize],
            c.states_removed,
        ]
    });
    assert!(pl.iter().all(|&n| n > 0), "pipeline seeds: {pl:?}");
    let ps = sum("pfsync_import", &|b| {
        let (imported, held) = fb::pfsync_import_run(b);
        vec![imported, held as u64]
    });
    assert!(ps.iter().all(|&n| n > 0), "pfsync_import seeds: {ps:?}");
    let ir = sum("import_records", &|b| {
        let c = fb::import_records_run(b);
        vec![c.imported, c.state_hits, c.states_removed, c.forwarded]
    });
    assert!(ir.iter().all(|&n| n > 0), "import_records seeds: {ir:?}");
    let ce = sum("carp_engine", &|b| {
        let (stats, master) = fb::carp_engine_run(b);
        use control::carp::Counter;
        vec![
            u64::from(master),
            stats.get(Counter::IPackets),
            stats.get(Counter::IPackets6),
            stats.get(Counter::OPackets),
        ]
    });
    assert!(ce.iter().all(|&n| n > 0), "carp_engine seeds: {ce:?}");
}

#[test]
fn smoke_classify() {
    smoke("classify", 40_000, 0x00c1_a551_f1ed);
}

#[test]
fn smoke_rules() {
    smoke("rules", 12_000, 0x0072_0e55);
}

#[test]
fn smoke_carp() {
    smoke("carp", 30_000, 0x00ca_2b00);
}

#[test]
fn smoke_pfsync() {
    smoke("pfsync", 30_000, 0x00bf_5c00);
}

#[test]
fn smoke_config() {
    smoke("config", 15_000, 0x00c0_0f16);
}

#[test]
fn smoke_ctl() {
    smoke("ctl", 20_000, 0x00c7_1000);
}

/// Found by the `rules` fuzz target: the canonical text of a rule whose
/// label holds a backslash does not parse back to the same rule. The lexer
/// reads `\x` inside a quoted string as `x` (so `"a\\b"` is the label
/// `a\b`), but `rules::compile` prints labels escaping only `"`, so the
/// text is `label "a\b"`, which parses back as the label `ab`.
/// Fixed in `dataplane/src/rules/compile.rs` (labels escape `\` too).
#[test]
fn rules_label_with_backslash_round_trips() {
    dpf_tests::fuzz_bodies::rules(br#"pass label "a\\b""#);
}

#[test]
fn smoke_slowpath() {
    smoke("slowpath", 20_000, 0x005e_0a7b);
}

#[test]
fn smoke_pipeline() {
    smoke("pipeline", 8_000, 0x0091_9e11);
}

#[test]
fn smoke_pfsync_import() {
    smoke("pfsync_import", 12_000, 0x00bf_1a90);
}

#[test]
fn smoke_import_records() {
    smoke("import_records", 16_000, 0x001a_9021);
}

#[test]
fn smoke_carp_engine() {
    smoke("carp_engine", 6_000, 0x00ca_2be9);
}

/// Found by the `import_records` and `pipeline` targets: the worker's
/// `states` gauge (`dpfctl -s info`, `--stats-every`) is not refreshed when
/// an imported pfsync DEL removes a state (`Pipeline::import`,
/// `ImportRecord::Delete`), nor when a TCP state is reused by a new SYN
/// and the ruleset then refuses the new one (`TrackOutcome::Reuse`): it
/// shows one state too many until the next insert or expiry sweep. The
/// bodies check `created == removed + held` instead. `dataplane/src/pipeline.rs`
/// is being changed by another engineer; this stays ignored until it is
/// fixed there.
#[test]
fn states_gauge_follows_an_imported_delete() {
    use dataplane::export::{ImportRecord, StateRecord};
    use dataplane::flow::{proto, Addr, Af, FlowKey, IfIndex};
    use dataplane::pipeline::{Pipeline, PipelineConfig};
    use dataplane::rules::{RuleEnv, Ruleset};
    use dataplane::state::{Shard, State};
    use dataplane::time::Instant;
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile("pass all\n", "t.conf", &env).unwrap();
    let mut p = Pipeline::new(
        PipelineConfig::default(),
        std::sync::Arc::new(rules),
        Shard::new(16, 0).unwrap(),
    );
    let (etx, _erx) = dataplane::ring::channel::<StateRecord>(16);
    let (mut itx, irx) = dataplane::ring::channel::<ImportRecord>(16);
    p.set_sync(etx, irx, 128);
    let (key, sw) = FlowKey::from_packet(
        Af::Inet,
        proto::UDP,
        Addr::v4([10, 1, 0, 9]),
        5353,
        Addr::v4([10, 2, 0, 50]),
        53,
    );
    let now = Instant::from_secs(100);
    let state = State::new(key, sw, 7, 0x0dbf_0002, now);
    itx.push(ImportRecord::Upsert {
        state,
        translation: dataplane::state::Translation::NONE,
        age_s: 1,
        expire_s: 60,
    })
    .unwrap();
    itx.publish();
    p.sync_poll(now, 16);
    assert_eq!((p.shard().len(), p.counters.states), (1, 1));
    itx.push(ImportRecord::Delete {
        id: 7,
        creatorid: 0x0dbf_0002,
    })
    .unwrap();
    itx.publish();
    p.sync_poll(now, 16);
    assert_eq!(p.shard().len(), 0);
    assert_eq!(
        p.counters.states, 0,
        "the gauge still counts the deleted state"
    );
}
