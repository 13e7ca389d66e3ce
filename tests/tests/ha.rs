//! The FAQ's fw1/fw2 pair with real Linux hosts: a LAN bridge (client
//! 10.1.0.50, gateway VIP 10.1.0.254 on carp1) and a WAN bridge (server
//! 10.2.0.50, gateway VIP 10.2.0.254 on carp2); pfsync over the LAN port.
//! Rules block everything without a state, so a connection survives a
//! failover only if the new master has its state from pfsync: a TCP
//! transfer runs through fw1, fw1 is SIGKILLed mid-transfer, and the
//! transfer completes intact through fw2.

use dpf_tests::netns::Namespaces;
use dpf_tests::pair::{dpfctl_json as ctl, wait_until};
use dpf_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Net {
    // Processes first: they stop before their namespaces go.
    procs: Vec<Option<Proc>>,
    ns: Vec<String>,
    _guard: Namespaces,
    dir: tempfile::TempDir,
    /// pfsync `defer` on both boxes.
    defer: bool,
}

const RULES: &str = "\
block all
pass quick on { lan0 wan0 } proto carp keep state (no-sync)
pass quick on lan0 proto pfsync keep state (no-sync)
pass in on lan0 proto tcp from 10.1.0.0/24 to any
pass out on wan0 proto tcp
pass in on lan0 proto icmp
pass out on wan0 proto icmp
";

impl Net {
    fn sock(&self, fw: usize) -> PathBuf {
        self.dir.path().join(format!("fw{fw}.sock"))
    }

    fn start(&mut self, fw: usize, advskew: u8) {
        let dir = self.dir.path();
        std::fs::write(dir.join("pf.conf"), RULES).unwrap();
        let cfg = dir.join(format!("fw{fw}.toml"));
        std::fs::write(
            &cfg,
            dpf_tests::pair::faq_fw_config(
                fw,
                advskew,
                "10.2.0.254",
                &format!("maxupd = 128\ndefer = {}\n", self.defer),
                "ha",
                &self.sock(fw),
            ),
        )
        .unwrap();
        let ns = self.ns[fw + 1].clone();
        let p = Proc::spawn(
            &format!("fw{fw}"),
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(dpf_bin())
                .args(["--config", cfg.to_str().unwrap()]),
        )
        .unwrap();
        self.procs[fw] = Some(p);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.sock(fw).exists() {
            assert!(Instant::now() < deadline, "fw{fw} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn carp_state(net: &Net, fw: usize, name: &str) -> String {
    ctl(&net.sock(fw), &[name])["interfaces"][0]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn setup() -> Net {
    let guard = dpf_tests::pair::faq_segments("dph", false, true);
    let ns: Vec<String> = guard.names().to_vec();
    Net {
        procs: vec![None, None, None],
        ns,
        _guard: guard,
        dir: scratch(),
        defer: false,
    }
}

/// `server.py BLOCKS [CONNS [GAP_S]]`: accepts CONNS connections, then
/// sends BLOCKS blocks of 16 KiB on each, GAP_S apart.
const SERVER_PY: &str = r#"
import socket, sys, time
blocks = int(sys.argv[1])
conns = int(sys.argv[2]) if len(sys.argv) > 2 else 1
gap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.004
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(conns)
s.settimeout(30)  # never outlive the test
cs = [s.accept()[0] for _ in range(conns)]
block = bytes(range(256)) * 64
for i in range(blocks):
    for c in cs:
        c.sendall(block)
    time.sleep(gap)
for c in cs:
    c.close()
"#;

/// `client.py [CONNS]`: opens CONNS connections to the server and prints,
/// per connection, `blocks bad_blocks leftover_bytes`.
const CLIENT_PY: &str = r#"
import socket, sys, selectors
conns = int(sys.argv[1]) if len(sys.argv) > 1 else 1
expect = bytes(range(256)) * 64
sel = selectors.DefaultSelector()
st = []
for i in range(conns):
    c = socket.create_connection(("10.2.0.50", 8080), timeout=30)
    c.setblocking(False)
    st.append([0, 0, b""])
    sel.register(c, selectors.EVENT_READ, i)
left = conns
while left:
    events = sel.select(timeout=30)
    if not events:
        break
    for key, _ in events:
        s = st[key.data]
        try:
            b = key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            b = b""
        if not b:
            sel.unregister(key.fileobj); key.fileobj.close(); left -= 1
            continue
        s[2] += b
        while len(s[2]) >= len(expect):
            if s[2][:len(expect)] != expect: s[1] += 1
            s[2] = s[2][len(expect):]; s[0] += 1
for n, bad, rest in st:
    print(n, bad, len(rest))
"#;

#[test]
fn established_connections_survive_a_failover_through_pfsync() {
    const CONNS: usize = 16;
    let mut net = setup();
    // Both boxes hold each connection's first packet until the peer has
    // its state (pfsync defer).
    net.defer = true;
    net.start(1, 0);
    net.start(2, 100);
    wait_until("fw1 MASTER of both", Duration::from_secs(15), || {
        carp_state(&net, 1, "carp1") == "MASTER" && carp_state(&net, 1, "carp2") == "MASTER"
    });
    wait_until("fw2's bulk update", Duration::from_secs(15), || {
        ctl(&net.sock(2), &["pfsync0"])["bulk"].as_str() != Some("pending")
            && !ctl(&net.sock(2), &["pfsync0"])["bulk"]
                .as_str()
                .unwrap_or("")
                .starts_with("pending")
    });
    std::fs::write(net.dir.path().join("server.py"), SERVER_PY).unwrap();
    std::fs::write(net.dir.path().join("client.py"), CLIENT_PY).unwrap();
    // Resolve the server's address on fw1 first (a packet to an unresolved
    // next hop is dropped, and a SYN would wait for its retransmission).
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &net.ns[0], "ping", "-c", "3", "-i", "0.2", "-W", "1",
        ])
        .arg("10.2.0.50")
        .output();
    // 16 connections, each 200 blocks of 16 KiB, a round every 30 ms:
    // about 6 s of transfer.
    let wan = net.ns[1].clone();
    let server = Proc::spawn(
        "server",
        Command::new("ip")
            .args(["netns", "exec", &wan, "python3"])
            .arg(net.dir.path().join("server.py"))
            .args(["200", &CONNS.to_string(), "0.03"]),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let lan = net.ns[0].clone();
    let client = Proc::spawn(
        "client",
        Command::new("ip")
            .args(["netns", "exec", &lan, "python3"])
            .arg(net.dir.path().join("client.py"))
            .arg(CONNS.to_string()),
    )
    .unwrap();
    let transfer_states = |fw: usize| -> Vec<Value> {
        ctl(&net.sock(fw), &["-s", "states"])
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["dport"] == 8080 && s["proto"] == "tcp")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    // Every connection's state reaches fw2 through pfsync.
    let t0 = Instant::now();
    while transfer_states(2).len() < CONNS {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "states not synced\nfw1 pfsync0: {}\nfw2 pfsync0: {}\nfw1 states: {}\nfw1 info: {}",
            ctl(&net.sock(1), &["pfsync0"]),
            ctl(&net.sock(2), &["pfsync0"]),
            ctl(&net.sock(1), &["-s", "states"]),
            ctl(&net.sock(1), &["-s", "info"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{CONNS} states present on the backup {:.0} ms after the transfer started (upper bound)",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let on_master = transfer_states(1);
    let on_backup = transfer_states(2);
    assert_eq!(on_master.len(), CONNS);
    for m in &on_master {
        let b = on_backup
            .iter()
            .find(|b| b["id"] == m["id"])
            .unwrap_or_else(|| panic!("state {} not on fw2: {on_backup:?}", m["id"]));
        assert_eq!(
            m["creatorid"], b["creatorid"],
            "the backup keeps the master's creatorid"
        );
        assert_eq!((&m["src"], &m["sport"]), (&b["src"], &b["sport"]));
    }
    // Defer: each connection's SYN was held on fw1 until fw2's INS_ACK (or,
    // on a loaded machine, the 20 ms timeout); fw2 acknowledged every
    // insert and every held packet went out.
    let p1 = ctl(&net.sock(1), &["pfsync0"]);
    assert_eq!(p1["defer"], true, "{p1}");
    // (If the ping did not resolve the server's address, the first SYN
    // was dropped for it and its retransmission found the state.)
    assert!(
        p1["exports"]["deferred"].as_u64() >= Some(CONNS as u64 - 1),
        "{p1}"
    );
    wait_until("fw2's INS_ACKs on fw1", Duration::from_secs(10), || {
        let p1 = ctl(&net.sock(1), &["pfsync0"]);
        let p2 = ctl(&net.sock(2), &["pfsync0"]);
        let e = &p1["exports"];
        let released =
            e["defer_acked"].as_u64().unwrap_or(0) + e["defer_timeout"].as_u64().unwrap_or(0);
        p2["sent_acks"].as_u64() >= Some(CONNS as u64)
            && p1["received_acks"].as_u64() >= Some(CONNS as u64)
            && Some(released) == e["deferred"].as_u64()
    });
    let p1 = ctl(&net.sock(1), &["pfsync0"]);
    eprintln!(
        "defer on fw1: {} held, {} released by INS_ACK, {} by timeout",
        p1["exports"]["deferred"], p1["exports"]["defer_acked"], p1["exports"]["defer_timeout"]
    );
    // TCP window advances reach the backup: the server's sequence numbers
    // there move on while the transfer runs (compressed updates every
    // maxupd packets or state change).
    let m = on_master[0].clone();
    let server_seqlo = |fw: usize| {
        ctl(&net.sock(fw), &["-s", "states"])
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == m["id"]).cloned())
            .map(|s| s["dst_window"]["seqlo"].as_u64().unwrap_or(0))
    };
    let before = server_seqlo(2).expect("state on the backup");
    wait_until(
        "the server's seqlo to advance on fw2",
        Duration::from_secs(5),
        || server_seqlo(2).is_some_and(|now| now != before),
    );
    assert!(
        ctl(&net.sock(2), &["pfsync0"])["received_compressed"].as_u64() > Some(0),
        "updates travel as UPD_C"
    );
    // Kill the master mid-transfer.
    std::thread::sleep(Duration::from_millis(500));
    if let Some(p) = net.procs[1].take() {
        p.signal(libc::SIGKILL);
        let _ = p.wait(Duration::from_secs(10));
    }
    let took = wait_until("fw2 MASTER of both", Duration::from_secs(10), || {
        carp_state(&net, 2, "carp1") == "MASTER" && carp_state(&net, 2, "carp2") == "MASTER"
    });
    eprintln!(
        "fw2 took over {:.2} s after fw1 was killed",
        took.as_secs_f64()
    );
    let out = client.wait(Duration::from_secs(90)).unwrap();
    let _ = server.wait(Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let info = ctl(&net.sock(2), &["-s", "info"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec!["200 0 0"; CONNS],
        "every connection's transfer through the failover: {} / {}\nfw2: {info}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A backup started after connections exist gets the whole state table
/// by bulk update (spec §5.6) and keeps CARP demoted until it has it.
#[test]
fn a_late_backup_gets_the_table_by_bulk_update() {
    let mut net = setup();
    net.start(1, 0);
    wait_until("fw1 MASTER of both", Duration::from_secs(20), || {
        carp_state(&net, 1, "carp1") == "MASTER" && carp_state(&net, 1, "carp2") == "MASTER"
    });
    // fw1 asked for a bulk update at its own start; nobody answered. Until
    // its requests time out (12 every 2 s, spec §5.6) it advertises demote
    // 32, so a newcomer would (rightly) win: wait for it, as a box that has
    // been running would.
    wait_until(
        "fw1's unanswered bulk request to time out",
        Duration::from_secs(35),
        || ctl(&net.sock(1), &["pfsync0"])["bulk"] == "timed out",
    );
    std::fs::write(net.dir.path().join("server.py"), SERVER_PY).unwrap();
    std::fs::write(net.dir.path().join("client.py"), CLIENT_PY).unwrap();
    let wan = net.ns[1].clone();
    let lan = net.ns[0].clone();
    let server = Proc::spawn(
        "server",
        Command::new("ip")
            .args(["netns", "exec", &wan, "python3"])
            .arg(net.dir.path().join("server.py"))
            .arg("1500"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = Proc::spawn(
        "client",
        Command::new("ip")
            .args(["netns", "exec", &lan, "python3"])
            .arg(net.dir.path().join("client.py")),
    )
    .unwrap();
    wait_until(
        "the connection's state on fw1",
        Duration::from_secs(5),
        || {
            ctl(&net.sock(1), &["-s", "states"])
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["dport"] == 8080))
        },
    );
    // fw2 starts late: it asks for the table, and is demoted by 32 while
    // it waits for it.
    net.start(2, 100);
    let demote_at_start = ctl(&net.sock(2), &["carp1"])["interfaces"][0]["demote"].clone();
    wait_until("fw2's bulk update", Duration::from_secs(15), || {
        ctl(&net.sock(2), &["pfsync0"])["bulk"] == "done"
    });
    let on_master = ctl(&net.sock(1), &["-s", "states"]);
    let on_backup = ctl(&net.sock(2), &["-s", "states"]);
    let m = on_master
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["dport"] == 8080)
        .unwrap()
        .clone();
    let b = on_backup
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == m["id"])
        .unwrap_or_else(|| panic!("state {} not on the late backup: {on_backup}", m["id"]))
        .clone();
    assert_eq!(b["creatorid"], m["creatorid"]);
    // The bulk usually completes within milliseconds, before this query.
    eprintln!("fw2 demote right after start: {demote_at_start}");
    // Once the bulk is done the demotion is gone and fw2 is a plain backup.
    wait_until("fw2 undemoted", Duration::from_secs(5), || {
        ctl(&net.sock(2), &["carp1"])["interfaces"][0]["demote"] == 0
    });
    assert_eq!(carp_state(&net, 2, "carp1"), "BACKUP");
    let out = client.wait(Duration::from_secs(60)).unwrap();
    let _ = server.wait(Duration::from_secs(10));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1500 0 0");

    // Deletions are carried: `dpfctl -k` on the master removes the state
    // on the backup (DEL_C)...
    let has = |fw: usize, pred: &dyn Fn(&Value) -> bool| {
        ctl(&net.sock(fw), &["-s", "states"])
            .as_array()
            .is_some_and(|a| a.iter().any(pred))
    };
    let client_ip = m["src"].as_str().unwrap().to_string();
    let server_ip = m["dst"].as_str().unwrap().to_string();
    assert!(
        has(2, &|s| s["id"] == m["id"]),
        "the closed connection's state is still on fw2"
    );
    let killed = ctl(&net.sock(1), &["-k", &client_ip]);
    assert!(killed["killed"].as_u64().unwrap_or(0) >= 1, "{killed}");
    wait_until(
        "the killed state to leave fw2",
        Duration::from_secs(5),
        || !has(2, &|s| s["id"] == m["id"]),
    );
    // ... and `-F states` on the master clears the backup's copies of the
    // master's states (one CLR).
    let ping = must_output(Command::new("ip").args([
        "netns", "exec", &lan, "ping", "-c", "1", "-W", "2", &server_ip,
    ]));
    assert!(ping.status.success(), "ping through fw1: {ping:?}");
    wait_until("the ping's state on fw2", Duration::from_secs(5), || {
        has(2, &|s| s["proto"] == "icmp")
    });
    ctl(&net.sock(1), &["-F", "states"]);
    wait_until(
        "fw2 to drop fw1's states (CLR)",
        Duration::from_secs(5),
        || !has(2, &|s| s["creatorid"] == m["creatorid"]),
    );
    assert!(ctl(&net.sock(2), &["pfsync0"])["received_clears"].as_u64() >= Some(1));
}

fn must_output(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("command runs")
}
