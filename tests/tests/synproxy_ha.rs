//! SYN-flood defences on the FAQ's fw1/fw2 pair with real Linux TCP: a
//! connection whose handshake fw1 completed itself — through `synproxy
//! state`, or through a SYN cookie (`set syncookies always`) — has its
//! sequence numbers translated for its whole life. fw1 is SIGKILLed in the
//! middle of a transfer; fw2 has the state from pfsync, sequence offset
//! included, and the transfer completes intact through it.

use dpf_tests::netns::{in_ns, Namespaces};
use dpf_tests::pair::{dpfctl_json as ctl, wait_until};
use dpf_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const COMMON: &str = "\
block all
pass quick on { lan0 wan0 } proto carp keep state (no-sync)
pass quick on lan0 proto pfsync keep state (no-sync)
pass in on lan0 inet proto icmp
pass out on wan0 inet proto icmp
pass out on wan0 inet proto tcp
";

const LAN_HOST: &str = "10.1.0.50";
const WAN_HOST: &str = "10.2.0.50";

struct Net {
    procs: Vec<Option<Proc>>,
    ns: Vec<String>,
    _guard: Namespaces,
    dir: tempfile::TempDir,
}

impl Net {
    fn sock(&self, fw: usize) -> PathBuf {
        self.dir.path().join(format!("fw{fw}.sock"))
    }

    fn start(&mut self, fw: usize, advskew: u8, rules: &str) {
        let dir = self.dir.path();
        std::fs::write(dir.join("pf.conf"), rules).unwrap();
        let cfg = dir.join(format!("fw{fw}.toml"));
        std::fs::write(
            &cfg,
            dpf_tests::pair::faq_fw_config(fw, advskew, "10.2.0.254", "", "synha", &self.sock(fw)),
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
        wait_until(&format!("fw{fw}'s socket"), Duration::from_secs(30), || {
            self.sock(fw).exists()
        });
    }

    fn python(&self, name: &str, ns: &str, args: &[&str]) -> Proc {
        Proc::spawn(
            name,
            Command::new("ip")
                .args(["netns", "exec", ns, "python3"])
                .arg(self.dir.path().join("peer.py"))
                .args(args),
        )
        .unwrap()
    }
}

fn carp_state(net: &Net, fw: usize, name: &str) -> String {
    ctl(&net.sock(fw), &[name])["interfaces"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `peer.py server PORT BLOCKS GAP_S` sends BLOCKS blocks of 16 KiB, GAP_S
/// apart, then prints the client's `done` line; `peer.py client ADDR PORT
/// BLOCKS` checks every block and prints `blocks bad`.
const PEER_PY: &str = r#"
import socket, sys, time
block = bytes(range(256)) * 64
if sys.argv[1] == "server":
    port, blocks, gap = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1); s.settimeout(30)
    c, _ = s.accept(); c.settimeout(30)
    for i in range(blocks):
        c.sendall(block)
        time.sleep(gap)
    got = b""
    while not got.endswith(b"\n"):
        b = c.recv(100)
        if not b:
            break
        got += b
    print(got.decode().strip(), flush=True)
    c.close()
else:
    addr, port, blocks = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = socket.create_connection((addr, port), timeout=30)
    n = bad = 0
    rest = b""
    while n < blocks:
        b = c.recv(65536)
        if not b:
            break
        rest += b
        while len(rest) >= len(block):
            if rest[:len(block)] != block:
                bad += 1
            rest = rest[len(block):]; n += 1
    c.sendall(("done %d %d\n" % (n, bad)).encode())
    print(n, bad)
"#;

/// The transfer's state on `fw` (LAN host to WAN host port 8080).
fn transfer_state(net: &Net, fw: usize) -> Option<Value> {
    ctl(&net.sock(fw), &["-s", "states"])
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|s| s["proto"] == "tcp" && s["src"] == LAN_HOST && s["dport"] == 8080)
                .cloned()
        })
}

/// Runs the transfer through fw1 with `rules` (after [`COMMON`]), kills
/// fw1 in the middle, and checks the transfer completes through fw2.
/// `counter`: the drop reason counting fw1's own handshake frames.
fn transfer_survives_failover(prefix: &str, rules: &str, counter: &str) {
    const BLOCKS: usize = 150;
    let guard = dpf_tests::pair::faq_segments(prefix, false, true);
    let mut net = Net {
        procs: vec![None, None, None],
        ns: guard.names().to_vec(),
        _guard: guard,
        dir: scratch(),
    };
    // Options first, as pfctl wants them.
    let (set, rest): (Vec<&str>, Vec<&str>) = rules.lines().partition(|l| l.starts_with("set "));
    let rules = format!("{}\n{COMMON}{}\n", set.join("\n"), rest.join("\n"));
    net.start(1, 0, &rules);
    net.start(2, 100, &rules);
    wait_until("fw1 MASTER of both", Duration::from_secs(15), || {
        carp_state(&net, 1, "carp1") == "MASTER" && carp_state(&net, 1, "carp2") == "MASTER"
    });
    wait_until("fw2's bulk update", Duration::from_secs(15), || {
        !ctl(&net.sock(2), &["pfsync0"])["bulk"]
            .as_str()
            .unwrap_or("pending")
            .starts_with("pending")
    });
    std::fs::write(net.dir.path().join("peer.py"), PEER_PY).unwrap();
    // Both hosts resolved by fw1.
    let ping = in_ns(&net.ns[0], &format!("ping -c 3 -i 0.2 -W 1 {WAN_HOST}"));
    assert!(ping.status.success(), "ping through fw1");
    let blocks = BLOCKS.to_string();
    let server = net.python("server", &net.ns[1], &["server", "8080", &blocks, "0.025"]);
    std::thread::sleep(Duration::from_millis(300));
    let client = net.python("client", &net.ns[0], &["client", WAN_HOST, "8080", &blocks]);
    // fw1 answered the handshake itself, and the state with its sequence
    // offset is on fw2.
    let t0 = Instant::now();
    let (s1, s2) = loop {
        if let (Some(a), Some(b)) = (transfer_state(&net, 1), transfer_state(&net, 2)) {
            if a["timeout"] == "tcp.established" && b["timeout"] == "tcp.established" {
                break (a, b);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the proxied state did not reach fw2\nfw1: {}\nfw2: {}",
            ctl(&net.sock(1), &["-s", "states"]),
            ctl(&net.sock(2), &["-s", "states"])
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((&s1["id"], &s1["creatorid"]), (&s2["id"], &s2["creatorid"]));
    let info1 = ctl(&net.sock(1), &["-s", "info"]);
    assert!(
        info1["drops"][counter].as_u64() > Some(0),
        "fw1 answered the handshake itself ({counter}): {}",
        info1["drops"]
    );
    std::thread::sleep(Duration::from_millis(1000));
    if let Some(p) = net.procs[1].take() {
        p.signal(libc::SIGKILL);
        let _ = p.wait(Duration::from_secs(10));
    }
    let took = wait_until("fw2 MASTER of both", Duration::from_secs(10), || {
        carp_state(&net, 2, "carp1") == "MASTER" && carp_state(&net, 2, "carp2") == "MASTER"
    });
    let out = client.wait(Duration::from_secs(40)).unwrap();
    let srv = server.wait(Duration::from_secs(10)).unwrap();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let s2 = transfer_state(&net, 2);
    assert_eq!(
        text(&out),
        format!("{BLOCKS} 0"),
        "the transfer through the failover: {}\nfw2 state: {s2:?}\nfw2 drops: {}",
        String::from_utf8_lossy(&out.stderr),
        ctl(&net.sock(2), &["-s", "info"])["drops"]
    );
    assert_eq!(text(&srv), format!("done {BLOCKS} 0"));
    let s2 = s2.expect("the state on fw2");
    assert!(s2["packets"][0].as_u64() > Some(0), "fw2 passed it: {s2}");
    eprintln!(
        "{prefix}: fw2 MASTER {:.2} s after the kill; transfer intact",
        took.as_secs_f64()
    );
}

#[test]
fn a_synproxied_connection_survives_a_failover() {
    transfer_survives_failover(
        "dsp",
        "pass in on lan0 inet proto tcp from 10.1.0.0/24 to any port 8080 synproxy state\n",
        "synproxy",
    );
}

#[test]
fn a_connection_made_by_a_syn_cookie_survives_a_failover() {
    transfer_survives_failover(
        "dsc",
        "set syncookies always\npass in on lan0 inet proto tcp from 10.1.0.0/24 to any port 8080\n",
        "syncookie-sent",
    );
}
