//! Child processes of the harness: start, read stdout line by line with a
//! deadline, interrupt with SIGINT, and make sure nothing outlives the
//! harness.
//!
//! Invariants: the harness only ever signals the processes it started, by
//! the PID `std::process::Child` gave it (SIGINT through `kill -s INT
//! <pid>`, SIGKILL through `Child::kill`), never by name; a [`Supervised`]
//! that is dropped while its child runs interrupts it, waits up to
//! [`STOP_GRACE`], then kills it. Every stdout line is also appended to the
//! run's log file; stderr goes to a file of its own.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a child has to exit after SIGINT before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// A running child whose stdout is read by a thread.
pub struct Supervised {
    child: Option<Child>,
    pid: u32,
    what: String,
    lines: Receiver<String>,
    stderr_path: PathBuf,
}

/// What the next stdout read gave.
pub enum Next {
    /// A line.
    Line(String),
    /// Nothing before the deadline.
    Timeout,
    /// stdout closed: the child is exiting or gone.
    Closed,
}

impl Supervised {
    /// Starts `command` with stdin from /dev/null, stdout piped (and copied
    /// to `stdout_log`) and stderr to `stderr_log`.
    pub fn start(
        what: &str,
        mut command: Command,
        stdout_log: &Path,
        stderr_log: &Path,
    ) -> anyhow::Result<Supervised> {
        let err = File::create(stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut log = File::create(stdout_log)
            .with_context(|| format!("creating {}", stdout_log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {what} ({:?})", command.get_program()))?;
        let pid = child.id();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: no stdout pipe");
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The log is best effort; the line still reaches the harness.
                let _ = writeln!(log, "{line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Supervised {
            child: Some(child),
            pid,
            what: what.to_string(),
            lines: rx,
            stderr_path: stderr_log.to_path_buf(),
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next stdout line, waiting until `deadline` at most.
    pub fn next_line(&self, deadline: Instant) -> Next {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => Next::Line(line),
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// The last `lines` lines of the child's stderr, for error messages.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGINT to the child (by PID), then collects the rest of its
    /// stdout and its exit status, killing it after [`STOP_GRACE`].
    pub fn interrupt_and_wait(mut self) -> anyhow::Result<(Vec<String>, ExitStatus)> {
        let Some(mut child) = self.child.take() else {
            bail!("{}: already stopped", self.what);
        };
        if child.try_wait()?.is_none() {
            send_sigint(self.pid);
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut rest = Vec::new();
        loop {
            match self.next_line(deadline) {
                Next::Line(line) => rest.push(line),
                Next::Closed => break,
                Next::Timeout => {
                    eprintln!(
                        "bench: {} (pid {}) did not stop within {:?} of SIGINT; killing it",
                        self.what, self.pid, STOP_GRACE
                    );
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = wait_until(&mut child, deadline)?;
        Ok((rest, status))
    }

    /// Waits for a child that is exiting on its own (stdout closed).
    pub fn wait(mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{}: already stopped", self.what);
        };
        wait_until(&mut child, Instant::now() + STOP_GRACE)
    }
}

/// Waits for `child` until `deadline`, then kills it and reaps it.
fn wait_until(child: &mut Child, deadline: Instant) -> anyhow::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok(child.wait()?);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGINT to one process we started, by PID.
fn send_sigint(pid: u32) {
    // Failure means the process is already gone, which is what we want.
    let _ = Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                send_sigint(self.pid);
                let _ = wait_until(&mut child, Instant::now() + STOP_GRACE);
            }
        }
    }
}

/// Where `program` is: itself if it names a path, else the first match on
/// `PATH` (nothing is run to find out).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("bench-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_lines_and_interrupts() {
        let d = dir();
        let mut cmd = Command::new("sh");
        // Prints a line, then waits for SIGINT and prints a last one.
        cmd.args([
            "-c",
            "trap 'echo bye; exit 0' INT; echo hello; echo oops >&2; while :; do sleep 0.05; done",
        ]);
        let p = Supervised::start("sh", cmd, &d.join("o.log"), &d.join("e.log")).unwrap();
        assert!(p.pid() > 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(matches!(p.next_line(deadline), Next::Line(l) if l == "hello"));
        assert!(matches!(
            p.next_line(Instant::now() + Duration::from_millis(100)),
            Next::Timeout
        ));
        assert_eq!(p.stderr_tail(5), "oops");
        let (rest, status) = p.interrupt_and_wait().unwrap();
        assert_eq!(rest, ["bye"]);
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(d.join("o.log")).unwrap(),
            "hello\nbye\n"
        );
        assert!(find_program("sh").is_some());
        assert!(find_program("/nonexistent/program").is_none());
        assert!(find_program("no-such-program-here").is_none());
    }

    #[test]
    fn exit_closes_stdout() {
        let d = dir();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; exit 3"]);
        let p = Supervised::start("sh", cmd, &d.join("o2.log"), &d.join("e2.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(matches!(p.next_line(deadline), Next::Line(_)));
        assert!(matches!(p.next_line(deadline), Next::Closed));
        assert_eq!(p.wait().unwrap().code(), Some(3));
    }
}
