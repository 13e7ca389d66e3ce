//! Lab test with real clients: network namespaces `client`, `fw` and
//! `server` joined by veth pairs; dpf runs in `fw` in router mode on
//! `net_af_packet` ports and is the default gateway of both sides. Linux's
//! own TCP stack makes connections through it. Everything the test creates
//! (namespaces, links, processes) is removed at the end, also on failure.

use dpf_tests::netns::{in_ns, must, plain_link, Namespaces};
use dpf_tests::*;
use std::process::Command;
use std::time::{Duration, Instant};

struct Lab {
    // Processes first: they stop before their namespaces go.
    procs: Vec<Proc>,
    ns: Namespaces,
}

impl Lab {
    fn client(&self) -> &str {
        self.ns.name(0)
    }
    fn fw(&self) -> &str {
        self.ns.name(1)
    }
    fn server(&self) -> &str {
        self.ns.name(2)
    }
}

fn setup() -> Lab {
    let lab = Lab {
        procs: Vec::new(),
        ns: Namespaces::new("dpl", &["c", "f", "s"]),
    };
    let (c, f, s) = (lab.client(), lab.fw(), lab.server());
    // client c0 <-> fl0 (fw), server s0 <-> fw0 (fw)
    must(&format!(
        "ip link add c0 netns {c} type veth peer name fl0 netns {f}"
    ));
    must(&format!(
        "ip link add s0 netns {s} type veth peer name fw0 netns {f}"
    ));
    for (ns, dev) in [(c, "c0"), (f, "fl0"), (f, "fw0"), (s, "s0")] {
        plain_link(ns, dev);
    }
    must(&format!("ip -n {c} addr add 10.71.1.2/24 dev c0"));
    must(&format!("ip -n {c} route add default via 10.71.1.1"));
    must(&format!("ip -n {s} addr add 10.71.2.2/24 dev s0"));
    must(&format!("ip -n {s} route add default via 10.71.2.1"));
    lab
}

const SERVER_PY: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
s.settimeout(30)  # a listener nobody reaches (rules forbid it) must not outlive the test
c, _ = s.accept()
block = bytes(range(256)) * 256
for i in range(int(sys.argv[2])):
    c.sendall(block)
c.close()
"#;

const CLIENT_PY: &str = r#"
import socket, sys, hashlib
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
"#;

#[test]
fn real_tcp_through_dpf_as_the_gateway() {
    let lab = setup();
    let dir = scratch();
    let sock = dir.path().join("dpf.sock");
    std::fs::write(
        dir.path().join("pf.conf"),
        "block in on wan0 all\npass in on lan0 all\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("server.py"), SERVER_PY).unwrap();
    std::fs::write(dir.path().join("client.py"), CLIENT_PY).unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nmode = \"router\"\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_af_packet0,iface=fl0\"\naddresses = [\"10.71.1.1/24\"]\n[[port]]\nname = \"wan0\"\ndevice = \"net_af_packet1,iface=fw0\"\naddresses = [\"10.71.2.1/24\"]\n[control]\nsocket = \"{}\"\n",
            eal_args("lab", 256, "0@0,1@1"),
            sock.display()
        ),
    )
    .unwrap();
    let mut lab = lab;
    let fw = lab.fw().to_string();
    lab.procs.push(
        Proc::spawn(
            "dpf",
            Command::new("ip")
                .args(["netns", "exec", &fw])
                .arg(dpf_bin())
                .args(["--config", cfg.to_str().unwrap()]),
        )
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "dpf did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // dpf answers ping to its own address (ARP for the gateway first).
    let out = in_ns(lab.client(), "ping -c 3 -i 0.2 -W 2 10.71.1.1");
    assert!(
        out.status.success(),
        "ping to dpf: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Ping through dpf: dpf resolves the server by itself.
    let out = in_ns(lab.client(), "ping -c 5 -i 0.2 -W 2 10.71.2.2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss") || text.contains(" 20% packet loss"),
        "ping through dpf: {text}"
    );

    // An 8 MiB TCP transfer server -> client completes intact.
    let server = lab.server().to_string();
    let py = format!("python3 {}", dir.path().join("server.py").display());
    lab.procs.push(
        Proc::spawn(
            "server",
            Command::new("ip").args(["netns", "exec", &server]).args([
                "sh",
                "-c",
                &format!("{py} 8080 128"),
            ]),
        )
        .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = in_ns(
        lab.client(),
        &format!(
            "python3 {} 10.71.2.2 8080",
            dir.path().join("client.py").display()
        ),
    );
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let expected = {
        use std::fmt::Write;
        let block: Vec<u8> = (0..=255u8).cycle().take(65536).collect();
        let mut all = Vec::new();
        for _ in 0..128 {
            all.extend_from_slice(&block);
        }
        let out = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(&all)?;
                c.wait_with_output()
            })
            .unwrap();
        let mut s = String::new();
        let _ = write!(
            s,
            "{} {}",
            all.len(),
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
        );
        s
    };
    assert_eq!(
        got,
        expected,
        "transfer through dpf: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The server cannot open a connection to the client: rules forbid it.
    let client = lab.client().to_string();
    lab.procs.push(
        Proc::spawn(
            "client listener",
            Command::new("ip").args(["netns", "exec", &client]).args([
                "sh",
                "-c",
                &format!("{py} 9090 1"),
            ]),
        )
        .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = in_ns(
        lab.server(),
        &format!(
            "python3 {} 10.71.1.2 9090",
            dir.path().join("client.py").display()
        ),
    );
    assert!(
        !out.status.success(),
        "server reached the client: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // dpfctl shows what happened.
    let ctl = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(dpfctl_bin())
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dpfctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let nbrs = ctl(&["-s", "neighbors"]);
    let nbrs = nbrs.as_array().unwrap();
    for ip in ["10.71.1.2", "10.71.2.2"] {
        assert!(
            nbrs.iter()
                .any(|n| n["address"] == ip && n["state"] == "reachable"),
            "{ip} not resolved: {nbrs:?}"
        );
    }
    let info = ctl(&["-s", "info"]);
    assert!(
        info["drops"]["blocked-by-rule"].as_u64().unwrap() >= 1,
        "{info}"
    );
    assert!(
        info["slow_path_stats"]["echo_replies"].as_u64().unwrap() >= 3,
        "{info}"
    );
    let routes = ctl(&["-s", "routes"]);
    assert_eq!(routes.as_array().unwrap().len(), 2);
}
