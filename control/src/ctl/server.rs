//! The control socket: a Unix stream socket (mode 0600) served without
//! blocking from the control thread's loop. Each connection sends request
//! lines and gets one response line per request.

use super::{parse_request, Request, Response, MAX_REQUEST_BYTES};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most simultaneous control connections.
const MAX_CONNECTIONS: usize = 16;

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// The listening control socket and its open connections.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    conns: Vec<Conn>,
    /// Requests refused as malformed, unknown or of another version.
    pub bad_requests: u64,
}

impl Server {
    /// Binds `path` with mode 0600. A stale socket file (nobody listening)
    /// is replaced; a live one means another dpf runs there: an error.
    pub fn bind(path: &Path) -> io::Result<Server> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another dpf is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            conns: Vec::new(),
            bad_requests: 0,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts new connections and answers every complete request line,
    /// without blocking on reads.
    pub fn poll(&mut self, handle: &mut dyn FnMut(Request) -> Response) {
        while let Ok((stream, _)) = self.listener.accept() {
            if self.conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.conns.push(Conn {
                stream,
                buf: Vec::new(),
            });
        }
        let mut i = 0;
        while i < self.conns.len() {
            let keep = self.serve(i, handle);
            if keep {
                i += 1;
            } else {
                self.conns.swap_remove(i);
            }
        }
    }

    fn serve(&mut self, i: usize, handle: &mut dyn FnMut(Request) -> Response) -> bool {
        let mut chunk = [0u8; 16384];
        loop {
            let conn = &mut self.conns[i];
            match conn.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    if conn.buf.len() > MAX_REQUEST_BYTES {
                        self.bad_requests += 1;
                        let _ = reply(&mut conn.stream, &Response::err("request too long"));
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        while let Some(nl) = self.conns[i].buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.conns[i].buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let response = match parse_request(text.trim()) {
                Ok(req) => handle(req),
                Err(e) => {
                    self.bad_requests += 1;
                    Response::err(e)
                }
            };
            if reply(&mut self.conns[i].stream, &response).is_err() {
                return false;
            }
        }
        true
    }
}

fn reply(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    // Responses can be large (a state listing): write them out with a
    // bounded wait rather than spinning on a non-blocking socket.
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let r = stream.write_all(&line);
    stream.set_nonblocking(true)?;
    r
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends one request and reads its response (the `dpfctl` side).
pub fn call(path: &Path, request: &Request, timeout: Duration) -> io::Result<Response> {
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
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.last() == Some(&b'\n') {
            break;
        }
    }
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::PROTOCOL_VERSION;

    #[test]
    fn serves_requests_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("dpf-ctl-test-{}", std::process::id()));
        let path = dir.join("ctl.sock");
        let mut server = Server::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let p2 = path.clone();
        let client = std::thread::spawn(move || {
            let ok = call(&p2, &Request::ShowInfo, Duration::from_secs(5)).unwrap();
            let mut s = UnixStream::connect(&p2).unwrap();
            s.write_all(b"not json\n").unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            let bad: Response = serde_json::from_slice(&buf[..n]).unwrap();
            (ok, bad)
        });
        let mut handled = 0;
        let start = std::time::Instant::now();
        while !client.is_finished() && start.elapsed() < Duration::from_secs(10) {
            server.poll(&mut |req| {
                handled += 1;
                assert_eq!(req, Request::ShowInfo);
                Response::ok(serde_json::json!({"answer": 42}))
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        let (ok, bad) = client.join().unwrap();
        assert!(ok.ok);
        assert_eq!(ok.version, PROTOCOL_VERSION);
        assert_eq!(ok.data["answer"], 42);
        assert!(!bad.ok);
        assert!(bad.error.unwrap().contains("malformed"));
        assert_eq!(handled, 1);
        assert_eq!(server.bad_requests, 1);
        drop(server);
        assert!(!path.exists(), "socket removed on drop");
        let _ = std::fs::remove_dir(&dir);
    }
}
