//! The control socket: a Unix stream socket (mode 0600, in a 0700
//! directory) served from the control thread's loop, which also runs
//! CARP's timers. Nothing a client does may delay that loop, so:
//!
//! - every read and write is non-blocking, and one [`Server::poll`] does
//!   bounded work: at most [`Limits::read_budget_bytes`] read and
//!   [`Limits::write_budget_bytes`] written over all connections, listings
//!   advanced for at most [`Limits::poll_budget`], a bounded number of
//!   request lines per connection;
//! - each connection's unsent output is buffered. Whole answers are
//!   appended as they are made; a streamed listing ([`Service::pump`]) is
//!   produced only while less than [`Limits::stream_low_water_bytes`] is
//!   unsent, so a reader of any speed gets any listing. A client whose
//!   unsent output passes [`Limits::output_cap_bytes`] (it sends requests
//!   and does not read the answers), or that has output pending and read
//!   nothing for [`Limits::stall_timeout`] (a suspended `dpfctl`), is
//!   dropped and counted (`clients_dropped_slow`);
//! - at most [`Limits::max_clients`] connections; more are refused (closed
//!   at once) and counted;
//! - requests that need the workers ([`Request::uses_workers`]) are
//!   answered one at a time across all connections (the workers have one
//!   command ring each); a connection whose next request needs them waits
//!   until they are free. A listing whose client went away is drained
//!   ([`Service::drain`]) so the workers become free again.
//!
//! Requests on one connection are answered in order; the wire format is in
//! the [module doc](super).

use super::{parse_request, parse_response, Request, Response, SocketStats, MAX_REQUEST_BYTES};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What one [`Server::poll`] may do, and when a client is too slow.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most simultaneous connections.
    pub max_clients: usize,
    /// Unsent output beyond which a client is dropped.
    pub output_cap_bytes: usize,
    /// A streamed listing is produced while less than this is unsent.
    pub stream_low_water_bytes: usize,
    /// A client with output pending that reads nothing for this long is
    /// dropped.
    pub stall_timeout: Duration,
    /// Time one poll may spend producing listings.
    pub poll_budget: Duration,
    /// Bytes one poll reads, over all connections.
    pub read_budget_bytes: usize,
    /// Bytes one poll writes, over all connections.
    pub write_budget_bytes: usize,
    /// Items asked of [`Service::pump`] at a time.
    pub items_per_pump: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_clients: 16,
            output_cap_bytes: 4 << 20,
            stream_low_water_bytes: 256 << 10,
            stall_timeout: Duration::from_secs(5),
            poll_budget: Duration::from_micros(500),
            read_budget_bytes: 256 << 10,
            write_budget_bytes: 1 << 20,
            items_per_pump: 8,
        }
    }
}

/// Request lines one connection may have answered per poll.
const LINES_PER_POLL: usize = 8;
/// Bytes one connection may read per poll.
const READ_PER_CONN: usize = 64 << 10;
/// Reads of one connection per poll (a client sending a byte at a time).
const READS_PER_CONN: usize = 8;
/// Replies of an abandoned job dropped per poll (no serialising: cheap).
const DRAIN_PER_POLL: usize = 1024;
/// Connections accepted (or refused) per poll.
const ACCEPTS_PER_POLL: usize = 8;

/// How a request is answered.
pub enum Start<J> {
    /// At once, in one line.
    Answer(Response),
    /// Over several polls: the server calls [`Service::pump`] with the job.
    Stream(J),
}

/// One step of a job.
pub enum Step {
    /// Nothing new yet (the workers are working): ask again next poll.
    Wait,
    /// More items of a listing, more to come.
    Items(Vec<Value>),
    /// The last items of a listing (then `done`).
    Done(Vec<Value>),
    /// The job ends with this one-line answer (a kill's count, an error).
    Answer(Response),
}

/// What answers requests: the daemon's [`super::handler::Control`], or a
/// fake in tests.
pub trait Service {
    /// A request being answered over several polls.
    type Job;
    /// Starts answering `req`.
    fn start(&mut self, req: Request) -> Start<Self::Job>;
    /// Advances `job` by at most about `max_items` items of work.
    fn pump(&mut self, job: &mut Self::Job, max_items: usize) -> Step;
    /// Advances a job nobody waits for any more (its client is gone),
    /// discarding its output; true once it has finished.
    fn drain(&mut self, job: &mut Self::Job, max_items: usize) -> bool;
}

/// Why the control socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process listens there.
    #[error("{0}: another dpf is listening there")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0}: exists and is not a socket; remove it or choose another [control] socket")]
    NotASocket(PathBuf),
    /// The directory lets others in and is not ours.
    #[error(
        "{dir}: directory has mode {mode:04o} and belongs to uid {owner}, not to us: anyone \
         with access to it could replace the socket; use a directory of mode 0700"
    )]
    LooseDirectory {
        /// The directory.
        dir: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// Its owner.
        owner: u32,
    },
    /// The parent is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BindError {
    let path = path.to_path_buf();
    move |source| BindError::Io { what, path, source }
}

struct Conn<J> {
    stream: UnixStream,
    /// Bytes received, not yet a whole request.
    input: Vec<u8>,
    /// `input[..scanned]` holds no newline.
    scanned: usize,
    /// Output; `output[..written]` is sent.
    output: Vec<u8>,
    written: usize,
    /// The streamed answer in progress.
    job: Option<J>,
    /// Whether that job holds the workers ([`Request::uses_workers`]).
    job_uses_workers: bool,
    /// The client closed its side: answer what it sent, then close.
    eof: bool,
    /// Answer what is pending, then close (a request that was too long).
    closing: bool,
    /// When output was last fully sent or some of it was read.
    last_drain: Instant,
}

impl<J> Conn<J> {
    fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    fn push(&mut self, r: &Response) {
        if self.pending() == 0 {
            self.output.clear();
            self.written = 0;
            self.last_drain = Instant::now();
        }
        match serde_json::to_writer(&mut self.output, r) {
            Ok(()) => self.output.push(b'\n'),
            Err(e) => {
                let _ = serde_json::to_writer(
                    &mut self.output,
                    &Response::err(format!("encoding the answer: {e}")),
                );
                self.output.push(b'\n');
            }
        }
    }
}

impl<J> Conn<J> {
    /// Appends one item of a listing to the chunk line being written,
    /// opening it if need be: the bytes are those of
    /// `Response::chunk(items)`, written item by item.
    fn push_item(&mut self, item: &Value, in_chunk: &mut bool) {
        if !*in_chunk {
            if self.pending() == 0 {
                self.output.clear();
                self.written = 0;
                self.last_drain = Instant::now();
            }
            self.output.extend_from_slice(
                format!(
                    "{{\"version\":{},\"ok\":true,\"chunk\":[",
                    super::PROTOCOL_VERSION
                )
                .as_bytes(),
            );
            *in_chunk = true;
        } else {
            self.output.push(b',');
        }
        if serde_json::to_writer(&mut self.output, item).is_err() {
            self.output.extend_from_slice(b"null");
        }
    }

    /// Closes the chunk line being written, if any.
    fn end_chunk(&mut self, in_chunk: &mut bool) {
        if *in_chunk {
            self.output.extend_from_slice(b"]}\n");
            *in_chunk = false;
        }
    }
}

/// The listening control socket and its open connections.
pub struct Server<J = super::handler::Job> {
    listener: UnixListener,
    path: PathBuf,
    conns: Vec<Conn<J>>,
    /// Jobs of clients that went away, drained so the workers are free
    /// (with whether they hold the workers).
    orphans: Vec<(J, bool)>,
    limits: Limits,
    /// Connection served first next poll (fairness).
    next: usize,
    /// Requests refused as malformed, unknown, of another version or too long.
    pub bad_requests: u64,
    accepted: u64,
    refused: u64,
    dropped_slow: u64,
    poll_max: Duration,
    polls_over_1ms: u64,
}

/// Creates the socket's directory (mode 0700) or checks an existing one: a
/// directory others can enter is refused unless it is ours (`/run/dpf`
/// of an older dpf, a test's scratch directory).
fn prepare_dir(dir: &Path) -> Result<(), BindError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("creating directory", dir)),
        Err(e) => Err(io_err("reading", dir)(e)),
        Ok(m) if !m.is_dir() => Err(BindError::NotADirectory(dir.to_path_buf())),
        Ok(m) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 && m.uid() != me {
                return Err(BindError::LooseDirectory {
                    dir: dir.to_path_buf(),
                    mode,
                    owner: m.uid(),
                });
            }
            Ok(())
        }
    }
}

impl<J> Server<J> {
    /// Binds `path` with the default [`Limits`].
    pub fn bind(path: &Path) -> Result<Server<J>, BindError> {
        Server::bind_with(path, Limits::default())
    }

    /// Binds `path`: the directory is created with mode 0700 (or checked),
    /// and the socket is created under umask 0177, so it is 0600 from the
    /// moment it exists. A stale socket file (nobody listening) is
    /// replaced; a live one means another dpf runs there: an error.
    pub fn bind_with(path: &Path, limits: Limits) -> Result<Server<J>, BindError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        prepare_dir(dir)?;
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(BindError::NotASocket(path.to_path_buf()));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io_err("removing stale socket", path))?;
        }
        // umask is per process: another thread creating a file during these
        // few instructions would get 0600 too, never wider.
        // SAFETY: umask has no preconditions and cannot fail.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above; restores the mask we found.
        unsafe { libc::umask(old) };
        let listener = bound.map_err(io_err("binding", path))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("setting non-blocking", path))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            conns: Vec::new(),
            orphans: Vec::new(),
            limits,
            next: 0,
            bad_requests: 0,
            accepted: 0,
            refused: 0,
            dropped_slow: 0,
            poll_max: Duration::ZERO,
            polls_over_1ms: 0,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connection counters.
    pub fn stats(&self) -> SocketStats {
        SocketStats {
            clients: self.conns.len() as u64,
            clients_accepted: self.accepted,
            clients_refused: self.refused,
            clients_dropped_slow: self.dropped_slow,
            poll_max_us: self.poll_max.as_micros() as u64,
            polls_over_1ms: self.polls_over_1ms,
        }
    }

    /// Whether a job holds the workers (a connection's or an orphan).
    fn workers_busy(&self) -> bool {
        self.orphans.iter().any(|(_, w)| *w)
            || self
                .conns
                .iter()
                .any(|c| c.job.is_some() && c.job_uses_workers)
    }

    /// Accepts new connections, reads requests, advances streamed answers
    /// and writes what is ready, never blocking and within [`Limits`].
    pub fn poll<S: Service<Job = J>>(&mut self, svc: &mut S) {
        let started = Instant::now();
        let deadline = started + self.limits.poll_budget;
        for _ in 0..ACCEPTS_PER_POLL {
            let Ok((stream, _)) = self.listener.accept() else {
                break;
            };
            if self.conns.len() >= self.limits.max_clients || stream.set_nonblocking(true).is_err()
            {
                self.refused += 1;
                continue;
            }
            self.accepted += 1;
            self.conns.push(Conn {
                stream,
                input: Vec::new(),
                scanned: 0,
                output: Vec::new(),
                written: 0,
                job: None,
                job_uses_workers: false,
                eof: false,
                closing: false,
                last_drain: started,
            });
        }
        let mut i = 0;
        while i < self.orphans.len() {
            if svc.drain(&mut self.orphans[i].0, DRAIN_PER_POLL) {
                self.orphans.swap_remove(i);
            } else {
                i += 1;
            }
        }
        let n = self.conns.len();
        let mut budget = Budget {
            read: self.limits.read_budget_bytes,
            write: self.limits.write_budget_bytes,
            deadline,
        };
        let mut alive = vec![true; n];
        for k in 0..n {
            let i = (self.next + k) % n;
            alive[i] = self.serve(i, svc, &mut budget);
        }
        self.next = if n == 0 { 0 } else { (self.next + 1) % n };
        // Remove the dead, back to front so indices stay valid.
        for i in (0..n).rev() {
            if !alive[i] {
                let conn = self.conns.swap_remove(i);
                if let Some(job) = conn.job {
                    self.orphans.push((job, conn.job_uses_workers));
                }
            }
        }
        let took = started.elapsed();
        self.poll_max = self.poll_max.max(took);
        if took > Duration::from_millis(1) {
            self.polls_over_1ms += 1;
        }
    }

    /// Serves connection `i`; false when it is to be closed.
    fn serve<S: Service<Job = J>>(&mut self, i: usize, svc: &mut S, budget: &mut Budget) -> bool {
        let now = Instant::now();
        if !self.read(i, budget) {
            return false;
        }
        // Requests, in order; the next only once the previous is answered.
        let mut lines = 0;
        while self.conns[i].job.is_none() && !self.conns[i].closing && lines < LINES_PER_POLL {
            let busy = self.workers_busy();
            let c = &mut self.conns[i];
            let Some(off) = c.input[c.scanned..].iter().position(|b| *b == b'\n') else {
                c.scanned = c.input.len();
                if c.input.len() > MAX_REQUEST_BYTES {
                    self.bad_requests += 1;
                    c.push(&Response::err(format!(
                        "request longer than {MAX_REQUEST_BYTES} bytes"
                    )));
                    c.closing = true;
                    c.input = Vec::new();
                }
                break;
            };
            let nl = c.scanned + off;
            let parsed = parse_request(String::from_utf8_lossy(&c.input[..nl]).trim());
            if matches!(&parsed, Ok(r) if r.uses_workers()) && busy {
                // Wait for the workers; look at this line again next poll.
                c.scanned = nl;
                break;
            }
            c.input.drain(..=nl);
            c.scanned = 0;
            lines += 1;
            match parsed {
                Err(e) => {
                    self.bad_requests += 1;
                    c.push(&Response::err(e));
                }
                Ok(req) => {
                    let uses_workers = req.uses_workers();
                    match svc.start(req) {
                        Start::Answer(r) => c.push(&r),
                        Start::Stream(job) => {
                            c.job = Some(job);
                            c.job_uses_workers = uses_workers;
                        }
                    }
                }
            }
        }
        // The streamed answer, while the client keeps up: small steps,
        // serialised as they come (so the time and byte checks see the whole
        // cost), one chunk line per poll.
        let limits = self.limits;
        let c = &mut self.conns[i];
        let mut in_chunk = false;
        while c.job.is_some() {
            if c.pending() >= limits.stream_low_water_bytes || Instant::now() >= budget.deadline {
                break;
            }
            let Some(job) = c.job.as_mut() else { break };
            let (items, end) = match svc.pump(job, limits.items_per_pump) {
                Step::Wait => break,
                Step::Items(items) => (items, None),
                Step::Done(items) => (items, Some(Response::done())),
                Step::Answer(r) => (Vec::new(), Some(r)),
            };
            for item in &items {
                c.push_item(item, &mut in_chunk);
            }
            if let Some(r) = end {
                c.end_chunk(&mut in_chunk);
                c.push(&r);
                c.job = None;
            }
        }
        c.end_chunk(&mut in_chunk);
        if !self.write(i, budget) {
            return false;
        }
        let c = &mut self.conns[i];
        if c.pending() == 0 {
            c.last_drain = now;
        } else if c.pending() > limits.output_cap_bytes
            || now.duration_since(c.last_drain) > limits.stall_timeout
        {
            self.dropped_slow += 1;
            return false;
        }
        let finished = c.pending() == 0 && c.job.is_none();
        if finished && c.closing {
            return false;
        }
        if finished && c.eof && !c.input[c.scanned..].contains(&b'\n') {
            return false;
        }
        true
    }

    /// Reads what connection `i` sent, within budget; false on error.
    fn read(&mut self, i: usize, budget: &mut Budget) -> bool {
        let c = &mut self.conns[i];
        let mut buf = [0u8; 16384];
        let mut got = 0;
        for _ in 0..READS_PER_CONN {
            if c.eof || c.closing || c.input.len() > MAX_REQUEST_BYTES {
                break;
            }
            let want = buf.len().min(READ_PER_CONN - got).min(budget.read);
            if want == 0 {
                break;
            }
            match c.stream.read(&mut buf[..want]) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    got += n;
                    budget.read -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Writes connection `i`'s pending output, within budget; false on error.
    fn write(&mut self, i: usize, budget: &mut Budget) -> bool {
        let c = &mut self.conns[i];
        while c.pending() > 0 && budget.write > 0 {
            let end = c.written + c.pending().min(budget.write);
            match c.stream.write(&c.output[c.written..end]) {
                Ok(0) => return false,
                Ok(n) => {
                    c.written += n;
                    budget.write -= n;
                    c.last_drain = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if c.pending() == 0 {
            c.output.clear();
            c.written = 0;
        } else if c.written > c.output.len() / 2 {
            c.output.drain(..c.written);
            c.written = 0;
        }
        true
    }
}

struct Budget {
    read: usize,
    write: usize,
    deadline: Instant,
}

impl<J> Drop for Server<J> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a call failed (the `dpfctl` side).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The answer was not understood (another version, garbage).
    #[error("{0}")]
    Protocol(String),
    /// dpf refused the request.
    #[error("{0}")]
    Refused(String),
    /// The connection closed before the answer was complete.
    #[error("connection closed before the answer was complete")]
    Truncated,
}

/// A complete answer, as [`call`] returns it.
#[derive(Debug)]
pub enum Answer {
    /// A one-line answer's data.
    Data(Value),
    /// A streamed listing, complete; its items went to the callback.
    Streamed,
}

/// Sends one request and reads its answer (the `dpfctl` side): a one-line
/// answer is returned; the items of a streamed listing are handed to
/// `on_items` chunk by chunk as they arrive.
pub fn call(
    path: &Path,
    request: &Request,
    timeout: Duration,
    mut on_items: impl FnMut(Vec<Value>) -> Result<(), String>,
) -> Result<Answer, CallError> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(&super::Envelope {
        version: super::PROTOCOL_VERSION,
        request: request.clone(),
    })
    .map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Err(CallError::Truncated);
        }
        let r = parse_response(&buf).map_err(CallError::Protocol)?;
        if !r.ok {
            return Err(CallError::Refused(
                r.error.unwrap_or_else(|| "request failed".into()),
            ));
        }
        if let Some(items) = r.chunk {
            on_items(items).map_err(CallError::Protocol)?;
        } else if r.done {
            return Ok(Answer::Streamed);
        } else {
            return Ok(Answer::Data(r.data.unwrap_or(Value::Null)));
        }
    }
}

/// [`call`], with a streamed listing collected into one array.
pub fn call_collect(path: &Path, request: &Request, timeout: Duration) -> Result<Value, CallError> {
    let mut all = Vec::new();
    match call(path, request, timeout, |items| {
        all.extend(items);
        Ok(())
    })? {
        Answer::Data(v) => Ok(v),
        Answer::Streamed => Ok(Value::Array(all)),
    }
}

#[cfg(test)]
mod tests;
