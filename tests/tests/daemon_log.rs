//! Where a live dpf's daemon messages go (`--log-to`):
//! - `syslog`: RFC 3164 datagrams, facility daemon, the message's own
//!   priority, tag `dpf[<pid>]`, to the socket given (`/dev/log` by
//!   default), and nothing of it on stderr;
//! - `journald`: the systemd journal's native protocol (PRIORITY,
//!   MESSAGE, SYSLOG_IDENTIFIER=dpf), to `/run/systemd/journal/socket` —
//!   tested in a private mount namespace whose `/run` is a tmpfs with a
//!   stand-in journal socket;
//! - `auto` (the default): the journal when stderr is the journal's stream
//!   (`JOURNAL_STREAM` names stderr's device and inode, as systemd sets it
//!   for a service), else stderr;
//! - `stderr`: `dpf[<pid>]: <priority>: <message>` lines.

use dpf_tests::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A configuration with a pcap port that replays a few frames, so that
/// `--exit-when-idle` ends the run.
fn config(dir: &Path, tag: &str) -> std::path::PathBuf {
    let input = dir.join("in.pcap");
    let frames: Vec<Vec<u8>> = (0..4u8)
        .map(|i| udp4_frame([10, 0, 0, i], [198, 19, 0, 1], 1024, 53, b"x"))
        .collect();
    write_pcap(&input, &frames).unwrap();
    let cfg = dir.join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args(tag, 256, "0@0,1@1"),
            input.display(),
            dir.join("out.pcap").display(),
            dir.join("dpf.sock").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn syslog_receives_the_daemon_messages_at_their_priorities() {
    let dir = scratch();
    let cfg = config(dir.path(), "log-syslog");
    let path = dir.path().join("log");
    let server = UnixDatagram::bind(&path).unwrap();
    let out = run_dpf(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--exit-when-idle",
            "300",
            "--log-to",
            "syslog",
            "--syslog-socket",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&out).unwrap();
    server.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = server.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let find = |needle: &str| {
        got.iter()
            .find(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("no '{needle}' in {got:#?}"))
            .clone()
    };
    // daemon.notice = 3 * 8 + 5; daemon.info = 3 * 8 + 6.
    let running = find("dpf running:");
    assert!(running.starts_with("<29>"), "{running}");
    assert!(running.contains("dpf["), "{running}");
    assert!(find("port lan0 up").starts_with("<30>"));
    assert!(find("stopping").starts_with("<29>"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("dpf running"),
        "messages went to stderr too: {stderr}"
    );
}

#[test]
fn stderr_lines_name_pid_and_priority() {
    let dir = scratch();
    let cfg = config(dir.path(), "log-stderr");
    let out = run_dpf(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--exit-when-idle",
            "300",
            "--log-to",
            "stderr",
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&out).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("dpf running:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.starts_with("dpf["), "{line}");
    assert!(line.contains("]: notice: dpf running:"), "{line}");
}

#[test]
fn an_unknown_log_sink_is_refused() {
    let out = run_dpf(&["--log-to", "file"], Duration::from_secs(30)).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'file'"), "{stderr}");
}

/// Runs `script` in a private mount namespace with a tmpfs `/run` and a
/// stand-in journal socket whose datagrams land in `journal.txt`.
fn in_journal_namespace(dir: &Path, script: &str) -> Option<String> {
    let listener = dir.join("journal.py");
    std::fs::write(
        &listener,
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.bind('/run/systemd/journal/socket')\n\
         f = open(sys.argv[1], 'ab')\n\
         while True:\n\
         \x20   f.write(s.recv(65536) + b'\\n--\\n')\n\
         \x20   f.flush()\n",
    )
    .unwrap();
    let journal = dir.join("journal.txt");
    let full = format!(
        "set -e\nmount -t tmpfs tmpfs /run\nmkdir -p /run/systemd/journal\n\
         python3 {} {} &\nJPID=$!\n\
         for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done\n\
         set +e\n{script}\nRC=$?\nkill $JPID\nexit $RC\n",
        listener.display(),
        journal.display()
    );
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        // Without mount namespaces (not root) the journal cannot be stood
        // in for; the syslog and stderr sinks are still tested.
        eprintln!("skipped: unshare -m is not available");
        return None;
    }
    let out = Proc::spawn(
        "unshare",
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &full]),
    )
    .unwrap()
    .wait(Duration::from_secs(90))
    .unwrap();
    expect_success(&out).unwrap();
    // MESSAGE is in the protocol's binary form (a length before it).
    Some(String::from_utf8_lossy(&std::fs::read(&journal).unwrap_or_default()).into_owned())
}

#[test]
fn journald_and_auto_under_a_service_write_the_journal() {
    let dir = scratch();
    let cfg = config(dir.path(), "log-journal");
    let dpf = dpf_bin();
    let stderr_file = dir.path().join("stderr.txt");
    // The first run asks for the journal; the second is `auto` with stderr
    // as systemd gives it to a service (JOURNAL_STREAM = its dev:inode).
    let script = format!(
        "{dpf} --config {cfg} --exit-when-idle 300 --log-to journald || exit 11\n\
         : > {err}\n\
         JOURNAL_STREAM=$(stat -c '%d:%i' {err}) {dpf} --config {cfg} --exit-when-idle 300 -l 7 2>>{err} || exit 12\n",
        dpf = dpf.display(),
        cfg = cfg.display(),
        err = stderr_file.display()
    );
    let Some(journal) = in_journal_namespace(dir.path(), &script) else {
        return;
    };
    let entries: Vec<&str> = journal.split("\n--\n").collect();
    let running: Vec<&&str> = entries
        .iter()
        .filter(|e| e.contains("dpf running:"))
        .collect();
    assert_eq!(running.len(), 2, "both runs wrote the journal: {journal}");
    for e in &running {
        assert!(e.contains("PRIORITY=5\n"), "{e}");
        assert!(e.contains("SYSLOG_IDENTIFIER=dpf\n"), "{e}");
    }
    let port = entries
        .iter()
        .find(|e| e.contains("port lan0 up"))
        .unwrap_or_else(|| panic!("{journal}"));
    assert!(port.contains("PRIORITY=6\n"), "{port}");
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    assert!(
        !stderr.contains("dpf running"),
        "auto under a service logged to stderr: {stderr}"
    );
}
