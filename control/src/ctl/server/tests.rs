//! The server against real Unix-socket clients, with a fake service: slow
//! and malicious clients cost a poll no more than its budget and get
//! dropped, others are served meanwhile, and streamed listings arrive
//! whole.

use super::*;
use crate::ctl::PROTOCOL_VERSION;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Answers `show-info` with `pad` bytes of padding, streams `show-states`
/// as `stream_items` numbered items, refuses the rest.
struct Fake {
    pad: usize,
    stream_items: usize,
    drained: usize,
}

/// (next item, items in all)
type FakeJob = (usize, usize);

impl Service for Fake {
    type Job = FakeJob;

    fn start(&mut self, req: Request) -> Start<FakeJob> {
        match req {
            Request::ShowInfo => Start::Answer(Response::ok(json!({"pad": "x".repeat(self.pad)}))),
            Request::ShowStates { .. } | Request::ShowNeighbors => {
                Start::Stream((0, self.stream_items))
            }
            other => Start::Answer(Response::err(format!("fake: {other:?}"))),
        }
    }

    fn pump(&mut self, job: &mut FakeJob, max_items: usize) -> Step {
        let end = job.1.min(job.0 + max_items);
        let items = (job.0..end)
            .map(|n| json!({"n": n, "pad": "state"}))
            .collect();
        job.0 = end;
        if end == job.1 {
            Step::Done(items)
        } else {
            Step::Items(items)
        }
    }

    fn drain(&mut self, job: &mut FakeJob, max_items: usize) -> bool {
        let end = job.1.min(job.0 + max_items);
        self.drained += end - job.0;
        job.0 = end;
        end == job.1
    }
}

fn fake() -> Fake {
    Fake {
        pad: 16,
        stream_items: 1000,
        drained: 0,
    }
}

fn request_line(req: &Request) -> Vec<u8> {
    let mut line = serde_json::to_vec(&crate::ctl::Envelope {
        version: PROTOCOL_VERSION,
        request: req.clone(),
    })
    .unwrap();
    line.push(b'\n');
    line
}

/// Polls until `done()` or `timeout`; returns the longest poll.
fn run_until(
    server: &mut Server<FakeJob>,
    svc: &mut Fake,
    timeout: Duration,
    mut done: impl FnMut(&Server<FakeJob>) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut longest = Duration::ZERO;
    while !done(server) {
        assert!(start.elapsed() < timeout, "condition not reached in time");
        let t = Instant::now();
        server.poll(svc);
        longest = longest.max(t.elapsed());
        std::thread::sleep(Duration::from_micros(200));
    }
    longest
}

fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run").join("ctl.sock")
}

/// A generous bound for one poll on a shared, noisy machine (a 2-core
/// guest compiling in parallel has shown 230 ms): the budget is 0.5 ms of
/// production plus bounded reads and writes; what this guards against — a
/// blocking write to a client that does not read, or a read of everything
/// a client sends — takes many seconds.
const POLL_BOUND: Duration = Duration::from_millis(1500);

#[test]
fn serves_requests_and_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server: Server<FakeJob> = Server::bind(&path).unwrap();
    let mut svc = fake();
    let p2 = path.clone();
    let client = std::thread::spawn(move || {
        let ok = call_collect(&p2, &Request::ShowInfo, Duration::from_secs(10));
        let mut s = UnixStream::connect(&p2).unwrap();
        s.write_all(b"not json\n{\"version\":1,\"request\":{\"cmd\":\"show-info\"}}\n")
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        let bad = lines.next().unwrap().unwrap();
        let old = lines.next().unwrap().unwrap();
        (ok.unwrap(), bad, old)
    });
    run_until(&mut server, &mut svc, Duration::from_secs(20), |_| {
        client.is_finished()
    });
    let (ok, bad, old) = client.join().unwrap();
    assert_eq!(ok["pad"], "x".repeat(16));
    let bad = parse_response(bad.as_bytes()).unwrap();
    assert!(!bad.ok && bad.error.unwrap().contains("malformed"));
    // A client of another version is told which version this dpf speaks.
    let old = parse_response(old.as_bytes()).unwrap();
    assert!(old
        .error
        .unwrap()
        .contains("unsupported protocol version 1 (this dpf speaks 2)"));
    assert_eq!(server.bad_requests, 2);
    drop(server);
    assert!(!path.exists(), "socket removed on drop");
}

#[test]
fn chunked_listing_reassembles_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server: Server<FakeJob> = Server::bind(&path).unwrap();
    let mut svc = Fake {
        stream_items: 20_000,
        ..fake()
    };
    let p2 = path.clone();
    let client = std::thread::spawn(move || {
        let mut chunks = 0;
        let mut items = Vec::new();
        let r = call(
            &p2,
            &Request::ShowStates { host: None },
            Duration::from_secs(20),
            |c| {
                chunks += 1;
                items.extend(c);
                Ok(())
            },
        );
        (r, chunks, items)
    });
    let longest = run_until(&mut server, &mut svc, Duration::from_secs(60), |_| {
        client.is_finished()
    });
    let (r, chunks, items) = client.join().unwrap();
    assert!(matches!(r, Ok(Answer::Streamed)), "{r:?}");
    assert_eq!(items.len(), 20_000);
    assert!(items.iter().enumerate().all(|(i, v)| v["n"] == i));
    assert!(chunks > 1, "streamed in {chunks} chunk(s)");
    // A chunk line is exactly what `Response::chunk` serialises to.
    let mut c: Conn<FakeJob> = Conn {
        stream: UnixStream::pair().unwrap().0,
        input: Vec::new(),
        scanned: 0,
        output: Vec::new(),
        written: 0,
        job: None,
        job_uses_workers: false,
        eof: false,
        closing: false,
        last_drain: Instant::now(),
    };
    let mut open = false;
    let items = vec![json!({"a": 1}), json!("b"), json!([2])];
    for item in &items {
        c.push_item(item, &mut open);
    }
    c.end_chunk(&mut open);
    let mut expect = serde_json::to_vec(&Response::chunk(items)).unwrap();
    expect.push(b'\n');
    assert_eq!(
        String::from_utf8(c.output).unwrap(),
        String::from_utf8(expect).unwrap()
    );
    assert!(longest < POLL_BOUND, "a poll took {longest:?}");
    // An empty listing is a lone `done`.
    svc.stream_items = 0;
    let p2 = path.clone();
    let client = std::thread::spawn(move || {
        call_collect(
            &p2,
            &Request::ShowStates { host: None },
            Duration::from_secs(10),
        )
    });
    run_until(&mut server, &mut svc, Duration::from_secs(20), |_| {
        client.is_finished()
    });
    assert_eq!(client.join().unwrap().unwrap(), json!([]));
}

#[test]
fn client_that_never_reads_is_dropped_at_the_cap_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let limits = Limits {
        stall_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let mut server: Server<FakeJob> = Server::bind_with(&path, limits).unwrap();
    let mut svc = Fake {
        pad: 64 << 10,
        ..fake()
    };
    // 200 requests of 64 KiB answers, pipelined, never read.
    let mut greedy = UnixStream::connect(&path).unwrap();
    let mut lines = Vec::new();
    for _ in 0..200 {
        lines.extend(request_line(&Request::ShowInfo));
    }
    greedy.write_all(&lines).unwrap();
    let p2 = path.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let polite = std::thread::spawn(move || {
        let mut answered = 0;
        while !stop2.load(Ordering::Relaxed) {
            let v = call_collect(&p2, &Request::ShowInfo, Duration::from_secs(10)).unwrap();
            assert_eq!(v["pad"].as_str().unwrap().len(), 64 << 10);
            answered += 1;
        }
        answered
    });
    let longest = run_until(&mut server, &mut svc, Duration::from_secs(60), |s| {
        s.stats().clients_dropped_slow == 1
    });
    // Keep serving the polite client a little longer.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        server.poll(&mut svc);
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    run_until(&mut server, &mut svc, Duration::from_secs(20), |_| {
        polite.is_finished()
    });
    assert!(polite.join().unwrap() > 0, "the polite client was served");
    assert!(longest < POLL_BOUND, "a poll took {longest:?}");
    // The greedy client got less than everything, then the end.
    greedy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = greedy.read_to_end(&mut got);
    assert!(got.len() < 200 * (64 << 10), "{} bytes", got.len());
    assert_eq!(server.stats().clients_dropped_slow, 1);
}

#[test]
fn stalled_stream_is_dropped_and_frees_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let limits = Limits {
        stall_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let mut server: Server<FakeJob> = Server::bind_with(&path, limits).unwrap();
    let mut svc = Fake {
        stream_items: 200_000,
        ..fake()
    };
    // Asks for a big listing and never reads (a suspended dpfctl).
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled
        .write_all(&request_line(&Request::ShowStates { host: None }))
        .unwrap();
    run_until(&mut server, &mut svc, Duration::from_secs(5), |s| {
        s.stats().clients == 1 && s.workers_busy()
    });
    // A second listing waits for the workers; a plain request does not.
    let p2 = path.clone();
    let second = std::thread::spawn(move || {
        call_collect(
            &p2,
            &Request::ShowStates { host: None },
            Duration::from_secs(30),
        )
    });
    let p3 = path.clone();
    let info = std::thread::spawn(move || {
        let t = Instant::now();
        call_collect(&p3, &Request::ShowInfo, Duration::from_secs(30)).unwrap();
        t.elapsed()
    });
    let longest = run_until(&mut server, &mut svc, Duration::from_secs(30), |_| {
        info.is_finished()
    });
    // Well before the stalled client is dropped.
    assert!(
        info.join().unwrap() < Duration::from_secs(2),
        "info waited for the listing"
    );
    assert_eq!(server.stats().clients_dropped_slow, 0);
    let longest2 = run_until(&mut server, &mut svc, Duration::from_secs(60), |_| {
        second.is_finished()
    });
    assert_eq!(server.stats().clients_dropped_slow, 1);
    // The stalled client's listing was drained, then the second one ran.
    assert!(svc.drained > 0);
    let all = second.join().unwrap().unwrap();
    assert_eq!(all.as_array().unwrap().len(), 200_000);
    assert!(
        longest.max(longest2) < POLL_BOUND,
        "a poll took {longest:?} / {longest2:?}"
    );
}

#[test]
fn malicious_senders_cost_a_poll_its_budget_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server: Server<FakeJob> = Server::bind(&path).unwrap();
    let mut svc = fake();
    // One sends a line longer than any request, without a newline...
    let p1 = path.clone();
    let flood = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&p1).unwrap();
        let block = vec![b'a'; 1 << 16];
        let mut sent = 0;
        while sent <= MAX_REQUEST_BYTES + (1 << 16) {
            if s.write_all(&block).is_err() {
                break;
            }
            sent += block.len();
        }
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut answer = String::new();
        let _ = BufReader::new(s).read_line(&mut answer);
        answer
    });
    // ...another a request a byte at a time.
    let p2 = path.clone();
    let dribble = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&p2).unwrap();
        for b in request_line(&Request::ShowInfo) {
            s.write_all(&[b]).unwrap();
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        answer
    });
    let longest = run_until(&mut server, &mut svc, Duration::from_secs(60), |_| {
        flood.is_finished() && dribble.is_finished()
    });
    let refused = parse_response(flood.join().unwrap().as_bytes()).unwrap();
    assert!(refused.error.unwrap().contains("request longer than"));
    let served = parse_response(dribble.join().unwrap().as_bytes()).unwrap();
    assert!(served.ok);
    assert_eq!(server.bad_requests, 1);
    assert!(longest < POLL_BOUND, "a poll took {longest:?}");
}

#[test]
fn connections_beyond_the_limit_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let limits = Limits {
        max_clients: 2,
        ..Limits::default()
    };
    let mut server: Server<FakeJob> = Server::bind_with(&path, limits).unwrap();
    let mut svc = fake();
    let _a = UnixStream::connect(&path).unwrap();
    let _b = UnixStream::connect(&path).unwrap();
    let mut c = UnixStream::connect(&path).unwrap();
    run_until(&mut server, &mut svc, Duration::from_secs(5), |s| {
        s.stats().clients_refused == 1
    });
    assert_eq!(server.stats().clients, 2);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "refused: closed at once");
}

/// umask is per process: the tests that change it run one at a time.
static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn socket_is_0600_from_bind_and_its_directory_0700() {
    let _g = UMASK.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("ctl.sock");
    // Even under the loosest umask.
    // SAFETY: umask has no preconditions; restored below.
    let old = unsafe { libc::umask(0) };
    let server = Server::<FakeJob>::bind(&path);
    // SAFETY: as above.
    let during = unsafe { libc::umask(old) };
    let server = server.unwrap();
    assert_eq!(during, 0, "bind restores the umask it found");
    assert_eq!(mode(&path), 0o600, "socket mode");
    assert_eq!(mode(path.parent().unwrap()), 0o700, "directory mode");
    // A second dpf on the same socket is refused; a stale file replaced.
    assert!(matches!(
        Server::<FakeJob>::bind(&path),
        Err(BindError::InUse(_))
    ));
    drop(server);
    let _stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(_stale);
    let server = Server::<FakeJob>::bind(&path).unwrap();
    drop(server);
    // Something that is not a socket is left alone.
    std::fs::write(&path, "precious").unwrap();
    let e = Server::<FakeJob>::bind(&path).err().unwrap();
    assert!(matches!(e, BindError::NotASocket(_)), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn loose_directory_of_someone_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Ours (a scratch directory, /run/dpf of an older dpf): accepted.
    let server = Server::<FakeJob>::bind(&shared.join("ok.sock")).unwrap();
    drop(server);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // cannot give a directory away without root
    }
    let c = std::ffi::CString::new(shared.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; chown has no other preconditions.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    let e = Server::<FakeJob>::bind(&shared.join("ctl.sock"))
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            BindError::LooseDirectory {
                mode: 0o777,
                owner: 65534,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("0777") && msg.contains("0700"), "{msg}");
    assert!(!shared.join("ctl.sock").exists());
}

#[test]
fn a_listing_the_workers_do_not_make_does_not_hold_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let limits = Limits {
        stall_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let mut server: Server<FakeJob> = Server::bind_with(&path, limits).unwrap();
    let mut svc = Fake {
        stream_items: 100_000,
        ..fake()
    };
    // A neighbour listing, never read: stalled, but not on the workers.
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled
        .write_all(&request_line(&Request::ShowNeighbors))
        .unwrap();
    run_until(&mut server, &mut svc, Duration::from_secs(5), |s| {
        s.conns.iter().any(|c| c.job.is_some())
    });
    assert!(!server.workers_busy());
    let p2 = path.clone();
    let states = std::thread::spawn(move || {
        call_collect(
            &p2,
            &Request::ShowStates { host: None },
            Duration::from_secs(30),
        )
    });
    run_until(&mut server, &mut svc, Duration::from_secs(60), |_| {
        states.is_finished()
    });
    let all = states.join().unwrap().unwrap();
    assert_eq!(all.as_array().unwrap().len(), 100_000);
    assert_eq!(server.stats().clients_dropped_slow, 0);
}
