//! Support for dpf's black-box tests: locating the built `dpf` binary,
//! writing configurations with a unique EAL `--file-prefix`, reading and
//! writing pcaps, and child processes that are killed (by PID) when a test
//! fails. EAL never starts inside the test harness: every DPDK test runs
//! `dpf` as a child process with `--no-huge -m <MB>`.

pub mod frames;
pub mod fuzz_bodies;
pub mod netns;
pub mod pair;

use anyhow::{bail, Context, Result};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `dpf` binary: `$DPF_BIN`, or the one beside this test's profile
/// directory (`target/<profile>/dpf`).
pub fn dpf_bin() -> PathBuf {
    bin("DPF_BIN", "dpf")
}

/// The `dpfctl` binary, found like [`dpf_bin`].
pub fn dpfctl_bin() -> PathBuf {
    bin("DPFCTL_BIN", "dpfctl")
}

/// The `bench` binary (generators), found like [`dpf_bin`].
pub fn bench_bin() -> PathBuf {
    bin("BENCH_BIN", "bench")
}

fn bin(var: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let p = profile_dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --bins` first (scripts/test does)",
        p.display()
    );
    p
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique EAL file prefix for this process and call.
pub fn file_prefix(tag: &str) -> String {
    format!(
        "dpft-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// EAL arguments for a test run: no hugepages, `mem_mb` MB, own prefix,
/// quiet DPDK logs, and the given lcores.
pub fn eal_args(tag: &str, mem_mb: u32, lcores: &str) -> String {
    format!(
        r#"["--no-huge", "-m", "{mem_mb}", "--no-shconf", "--file-prefix", "{}", "--lcores", "{lcores}", "--log-level", "*:error"]"#,
        file_prefix(tag)
    )
}

/// A running child process, killed by PID when dropped.
pub struct Proc {
    child: Option<Child>,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout/stderr captured.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            child: Some(child),
            name: name.to_string(),
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's PID.
            unsafe {
                libc::kill(c.id() as i32, signal);
            }
        }
    }

    /// The child's standard output, for reading while it runs (then
    /// [`Proc::wait`] returns an empty stdout).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// When the child has exited: its status and both output streams, for
    /// a test's failure message (a test polling a daemon calls this so a
    /// crash names itself instead of failing the next client call).
    pub fn exit_report(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        c.try_wait().ok().flatten()?;
        let out = self.child.take()?.wait_with_output().ok()?;
        Some(format!(
            "{} exited: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Waits up to `timeout` for exit and returns its output; kills it and
    /// fails if it does not exit in time.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let mut child = self.child.take().context("already waited")?;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "{} did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.name,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs dpf to completion with `args`, failing after `timeout`.
pub fn run_dpf(args: &[&str], timeout: Duration) -> Result<Output> {
    let mut cmd = Command::new(dpf_bin());
    cmd.args(args);
    Proc::spawn("dpf", &mut cmd)?.wait(timeout)
}

/// Fails with both output streams when `status` is not success.
pub fn expect_success(out: &Output) -> Result<()> {
    if !out.status.success() {
        bail!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The exit code, or -signal.
pub fn code(status: &ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// Writes frames to a pcap (Ethernet link type).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = PcapWriter::new(file)?;
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i as u64),
            f.len() as u32,
            f,
        ))?;
    }
    Ok(())
}

/// Reads every frame of a pcap.
pub fn read_pcap(path: &Path) -> Result<Vec<Vec<u8>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = PcapReader::new(file)?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p?.data.into_owned());
    }
    Ok(out)
}

/// Internet checksum (RFC 1071) of `data`, for building test frames.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame with valid checksums.
pub fn udp4_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let ulen = (8 + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&ulen.to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let mut c = inet_checksum(&pseudo);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

/// A scratch directory removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dpf-test-")
        .tempdir()
        .expect("creating a scratch directory")
}
