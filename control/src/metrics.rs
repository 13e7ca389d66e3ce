//! The Prometheus endpoint (`[metrics] listen = "addr:port"`, off by
//! default): a thread of its own that answers `GET /metrics` with the
//! text exposition (OpenMetrics, written by the `prometheus-client` crate).
//!
//! It reads the box through the control socket, as `dpfctl` does (the
//! typed requests of [`crate::ctl`]): the workers' counters and drops by
//! reason, the state table's fill, burst latency, per-port statistics,
//! CARP state and demotion per vhid, carpstats and pfsync counters. So it
//! takes nothing from the packet path and holds no lock of the daemon's; a
//! slow or stuck scraper delays only this thread (reads and writes time
//! out after 2 s; one connection at a time).

use crate::ctl::server::call_collect;
use crate::ctl::{CarpShow, Info, InterfaceEntry, PfsyncShow, Request};
use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Reads and writes of one scrape give up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most a request may send before its headers end.
const REQUEST_MAX: usize = 8192;

/// The running endpoint; stops its thread when dropped.
pub struct Exporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Where it listens (the port the OS chose for `:0`).
    pub addr: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `listen` (failing at start, as the control socket does) and
/// serves scrapes from the daemon behind the control socket `socket`.
pub fn start(listen: SocketAddr, socket: PathBuf) -> Result<Exporter> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("metrics: binding {listen}"))?;
    listener
        .set_nonblocking(true)
        .context("metrics: non-blocking")?;
    let addr = listener.local_addr().context("metrics: local address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_thread = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("dpf-metrics".into())
        .spawn(move || serve(&listener, &socket, &stop_thread))
        .context("metrics: starting its thread")?;
    Ok(Exporter {
        stop,
        thread: Some(thread),
        addr,
    })
}

fn serve(listener: &TcpListener, socket: &std::path::Path, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, socket);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn answer(mut stream: TcpStream, socket: &std::path::Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 || buf.len() + n > REQUEST_MAX {
            return reply(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                "bad request\n",
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => match render(socket) {
            Ok(body) => reply(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            ),
            Err(e) => reply(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                &format!("dpf is not answering on its control socket: {e:#}\n"),
            ),
        },
        (Some("GET"), Some(_)) => {
            reply(&mut stream, "404 Not Found", "text/plain", "try /metrics\n")
        }
        _ => reply(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n",
        ),
    }
}

fn reply(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn ask<T: serde::de::DeserializeOwned>(socket: &std::path::Path, r: &Request) -> Result<T> {
    let v = call_collect(socket, r, IO_TIMEOUT).map_err(|e| anyhow::anyhow!("{e}"))?;
    serde_json::from_value(v).context("decoding the answer")
}

type Labels = Vec<(String, String)>;

fn counter(reg: &mut Registry, name: &str, help: &str, values: &[(Labels, u64)]) {
    let f = Family::<Labels, Counter>::default();
    for (l, v) in values {
        f.get_or_create(l).inc_by(*v);
    }
    reg.register(name, help, f);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, values: &[(Labels, i64)]) {
    let f = Family::<Labels, Gauge>::default();
    for (l, v) in values {
        f.get_or_create(l).set(*v);
    }
    reg.register(name, help, f);
}

/// A counter without labels.
fn counter1(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// A gauge without labels.
fn gauge1(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    reg.register(name, help, g);
}

fn label(k: &str, v: impl Into<String>) -> Labels {
    vec![(k.to_string(), v.into())]
}

/// One scrape: the box's counters as the text exposition.
pub fn render(socket: &std::path::Path) -> Result<String> {
    let info: Info = ask(socket, &Request::ShowInfo)?;
    let ports: Vec<InterfaceEntry> = ask(socket, &Request::ShowInterfaces).unwrap_or_default();
    let carp: Option<CarpShow> = ask(socket, &Request::ShowCarp { name: None }).ok();
    let pfsync: Option<PfsyncShow> = ask(socket, &Request::ShowPfsync).ok();
    let mut reg = Registry::with_prefix("dpf");
    gauge1(
        &mut reg,
        "uptime_seconds",
        "Seconds since dpf started",
        info.uptime_s as i64,
    );
    gauge1(&mut reg, "workers", "Worker threads", info.workers as i64);
    gauge1(
        &mut reg,
        "states",
        "States in the table now",
        info.states as i64,
    );
    gauge1(
        &mut reg,
        "states_limit",
        "set limit states",
        info.states_limit as i64,
    );
    gauge1(
        &mut reg,
        "state_side_records",
        "States that may translate, route or keep scrub values (side records, sized at start)",
        info.side_records as i64,
    );
    gauge1(
        &mut reg,
        "state_side_records_used",
        "States holding a side record now",
        info.side_records_used as i64,
    );
    gauge1(
        &mut reg,
        "state_table_bytes",
        "Bytes of every worker's state table, allocated at start",
        info.state_table_bytes as i64,
    );
    for (name, help, v) in [
        (
            "states_created",
            "States inserted since start",
            info.states_created,
        ),
        (
            "states_removed",
            "States removed since start",
            info.states_removed,
        ),
        ("rx_packets", "Frames received", info.rx),
        ("rx_bytes", "Bytes received", info.rx_bytes),
        ("tx_packets", "Frames transmitted", info.tx),
        ("forwarded_packets", "Frames forwarded", info.forwarded),
        (
            "state_hits",
            "Packets that matched a state",
            info.state_hits,
        ),
        (
            "handed_off_packets",
            "Packets handed to the worker owning their flow",
            info.handed_off,
        ),
        (
            "slow_path_packets",
            "Packets sent to the control thread",
            info.slow_path,
        ),
        (
            "local_out_packets",
            "Frames the box sent itself",
            info.local_out,
        ),
        (
            "control_bad_requests",
            "Control requests refused",
            info.control_bad_requests,
        ),
        (
            "log_dropped_messages",
            "Daemon messages dropped: the log queue was full",
            info.log.dropped,
        ),
        (
            "log_write_errors",
            "Daemon messages the log sink (syslogd, journald, stderr) refused",
            info.log.write_errors,
        ),
        (
            "pflog_logged_packets",
            "Packets logged to pflog (rules and states with log)",
            info.pflog.logged,
        ),
        (
            "pflog_dropped_packets",
            "pflog records dropped: the log ring was full",
            info.pflog.dropped,
        ),
    ] {
        counter1(&mut reg, name, help, v);
    }
    let drops: Vec<(Labels, u64)> = info
        .drops
        .iter()
        .map(|(reason, n)| (label("reason", reason.clone()), *n))
        .collect();
    counter(
        &mut reg,
        "dropped_packets",
        "Frames dropped, by reason",
        &drops,
    );
    // Burst latency percentiles (ns) as gauges.
    let mut lat = Vec::new();
    if let Some(o) = info.burst_latency.as_object() {
        for (k, v) in o {
            if let (Some(q), Some(ns)) = (k.strip_suffix("_ns"), v.as_u64()) {
                lat.push((label("quantile", q.to_string()), ns as i64));
            }
        }
    }
    gauge(
        &mut reg,
        "burst_latency_nanoseconds",
        "Burst processing time percentiles",
        &lat,
    );
    // Per port.
    let mut up = Vec::new();
    let mut port_stats: std::collections::BTreeMap<String, Vec<(Labels, u64)>> = Default::default();
    for p in &ports {
        up.push((label("port", p.name.clone()), i64::from(p.link.up)));
        for (k, v) in &p.stats {
            port_stats
                .entry(k.clone())
                .or_default()
                .push((label("port", p.name.clone()), *v));
        }
    }
    gauge(
        &mut reg,
        "port_link_up",
        "Link state of each port (1 up)",
        &up,
    );
    for (stat, values) in &port_stats {
        let name = format!(
            "port_{}",
            stat.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        counter(&mut reg, &name, &format!("Port statistic {stat}"), values);
    }
    // CARP.
    if let Some(c) = carp {
        let mut master = Vec::new();
        let mut demote = Vec::new();
        for i in &c.interfaces {
            let l = vec![
                ("interface".to_string(), i.name.clone()),
                ("vhid".to_string(), i.vhid.to_string()),
            ];
            let state = match i.state.as_str() {
                "MASTER" => 2,
                "BACKUP" => 1,
                _ => 0,
            };
            master.push((l.clone(), state));
            demote.push((l, i.demote as i64));
        }
        gauge(
            &mut reg,
            "carp_state",
            "CARP state per vhid (0 INIT, 1 BACKUP, 2 MASTER)",
            &master,
        );
        gauge(
            &mut reg,
            "carp_demote",
            "Demotion counter of each carp interface",
            &demote,
        );
        let stats: Vec<(Labels, u64)> = c
            .stats
            .iter()
            .map(|(k, v)| (label("counter", k.clone()), *v))
            .collect();
        counter(&mut reg, "carpstats", "carpstats counters", &stats);
    }
    // pfsync.
    if let Some(p) = pfsync {
        let stats: Vec<(Labels, u64)> = p
            .stats
            .iter()
            .map(|(k, v)| (label("counter", k.clone()), *v))
            .collect();
        counter(&mut reg, "pfsyncstats", "pfsyncstats counters", &stats);
        for (name, help, v) in [
            ("pfsync_sent_states", "States sent by pfsync", p.sent_states),
            (
                "pfsync_received_states",
                "States received by pfsync",
                p.received_states,
            ),
            (
                "pfsync_export_lost",
                "pfsync deletions given up",
                p.exports.export_lost,
            ),
        ] {
            counter1(&mut reg, name, help, v);
        }
        gauge1(
            &mut reg,
            "pfsync_bulk_done",
            "1 when the last bulk update completed",
            i64::from(p.bulk == "done"),
        );
    }
    let mut out = String::new();
    encode(&mut out, &reg).context("encoding the exposition")?;
    Ok(out)
}
