//! The control socket protocol, shared by `dpf` and `dpfctl`.
//!
//! One JSON request per line; the answer is one or more JSON lines, each
//! carrying `version`. A malformed, unknown or wrong-version request gets
//! `ok: false` with an error and changes nothing.
//!
//! An answer is either one line with the whole `data`, or — for listings
//! that grow with the state table, the ruleset or the neighbour table
//! (`show-states`, `show-rules`, `show-neighbors`) — a stream: any number of `chunk` lines, each an array of
//! items, then a `done` line. The items of all chunks, in order, are the
//! listing. A stream may end with an error line instead of `done` (the
//! workers did not answer); what came before it is then incomplete.
//!
//! ```text
//! -> {"version":2,"request":{"cmd":"show-info"}}
//! <- {"version":2,"ok":true,"data":{"uptime_s":3,...}}
//! -> {"version":2,"request":{"cmd":"show-states","host":"10.0.0.1"}}
//! <- {"version":2,"ok":true,"chunk":[{"id":"...",...},...]}
//! <- {"version":2,"ok":true,"chunk":[...]}
//! <- {"version":2,"ok":true,"done":true}
//! -> {"version":1,"request":{"cmd":"show-info"}}
//! <- {"version":2,"ok":false,"error":"unsupported protocol version 1 (this dpf speaks 2)"}
//! ```
//!
//! Requests on one connection are answered in order, one at a time. The
//! typed shapes of `data` and of the chunk items are the structs below
//! ([`Info`], [`StateEntry`], ...); `dpfctl` reads answers into them.
//!
//! Version history: 1 — one response line per request, listings whole;
//! 2 — streamed listings (`chunk`/`done`); later in 2, the table requests
//! (`show-tables`, `flush-tables`, `table-show`, `table-test`,
//! `table-change`) were added: an older dpf refuses them as unknown.

pub mod handler;
pub mod server;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest request line accepted (a pf.conf travels inside `load-rules`).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// A request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Counters (`dpfctl -s info`): [`Info`].
    ShowInfo,
    /// States (`dpfctl -s states`), optionally those touching `host`:
    /// a stream of [`StateEntry`].
    ShowStates {
        /// Only states with this address as an endpoint.
        #[serde(default)]
        host: Option<String>,
    },
    /// Rules with their counters (`dpfctl -s rules`): a stream of
    /// [`RuleEntry`].
    ShowRules,
    /// Interfaces with addresses, MACs, link and port statistics:
    /// `Vec<`[`InterfaceEntry`]`>`.
    ShowInterfaces,
    /// Replace the ruleset (`dpfctl -f`), or with `anchor` the rules of
    /// that anchor (`dpfctl -a name -f`): the text and its file name for
    /// error messages. [`Loaded`].
    LoadRules {
        /// pf.conf text.
        text: String,
        /// Name used in `file:line:col` errors.
        file: String,
        /// The directory relative `include` / `load anchor` paths of the
        /// file start from (dpfctl's working directory).
        #[serde(default)]
        dir: Option<String>,
        /// Load into this anchor instead of the main ruleset.
        #[serde(default)]
        anchor: Option<String>,
    },
    /// Remove every rule (`dpfctl -F rules`), or with `anchor` that
    /// anchor's (`dpfctl -a name -F rules`); options stay. [`Loaded`].
    FlushRules {
        /// Flush this anchor instead of the main ruleset.
        #[serde(default)]
        anchor: Option<String>,
    },
    /// Per-label counters (`dpfctl -s labels`): `Vec<`[`LabelEntry`]`>`.
    ShowLabels,
    /// `set timeout` values (`dpfctl -s timeouts`): `Vec<`[`LimitEntry`]`>`.
    ShowTimeouts,
    /// `set limit` values (`dpfctl -s memory`): `Vec<`[`LimitEntry`]`>`.
    ShowMemory,
    /// Zero the rule and label counters (`dpfctl -z`): [`Killed`] (0).
    ZeroCounters,
    /// Remove the state with this id (`dpfctl -k id -k ID[/CREATORID]`):
    /// [`Killed`].
    KillStateId {
        /// State id, hex.
        id: String,
        /// Creator id, hex; this box's states' when absent.
        #[serde(default)]
        creatorid: Option<String>,
    },
    /// Remove the states created by rules with this label (`dpfctl -k
    /// label -k L`): [`Killed`].
    KillLabel {
        /// The label, as `-s labels` prints it.
        label: String,
    },
    /// Remove states (`dpfctl -k host [-k host]`): [`Killed`].
    KillStates {
        /// An endpoint address.
        host: String,
        /// The other endpoint, if given.
        #[serde(default)]
        peer: Option<String>,
    },
    /// Remove every state (`dpfctl -F states`): [`Killed`].
    FlushStates,
    /// Source nodes (`dpfctl -s Sources`): `Vec<`[`SourceEntry`]`>`.
    ShowSources,
    /// Remove the source nodes of `host` (`dpfctl -K host`), or every one
    /// (`dpfctl -F Sources`, `host` absent); their states stay and no
    /// longer count: [`SourcesKilled`].
    KillSources {
        /// The source address; all nodes when absent.
        #[serde(default)]
        host: Option<String>,
    },
    /// Routes (`dpfctl -s routes`): `Vec<`[`RouteEntry`]`>`.
    ShowRoutes,
    /// Neighbours (`dpfctl -s neighbors`): a stream of [`NeighborEntry`].
    ShowNeighbors,
    /// Carp interfaces, states and carpstats (`dpfctl -s carp`, `dpfctl
    /// carp1`): [`CarpShow`].
    ShowCarp {
        /// One interface, or all.
        #[serde(default)]
        name: Option<String>,
    },
    /// ifconfig words on a carp interface: `advskew N`, `up`, `down`,
    /// `state backup|master|init`. [`CarpShow`] of that interface.
    CarpSet {
        /// The carp interface.
        name: String,
        /// The words after its name.
        words: Vec<String>,
    },
    /// `-g group [carpdemote N | -carpdemote N]`: [`GroupShow`].
    Group {
        /// The interface group.
        group: String,
        /// Demotion change, if any.
        #[serde(default)]
        carpdemote: Option<i32>,
    },
    /// pfsync status and statistics (`dpfctl pfsync0`, `dpfctl -s
    /// pfsync`): [`PfsyncShow`].
    ShowPfsync,
    /// `sysctl [net.inet.carp.x[=v]]`: name → value.
    Sysctl {
        /// `name=value` to set, or `name` / nothing to read.
        #[serde(default)]
        arg: Option<String>,
    },
    /// The tables (`dpfctl -s Tables`): `Vec<`[`TableInfo`]`>`.
    ShowTables,
    /// Delete the tables no rule refers to, unpin the others (`dpfctl -F
    /// Tables`): [`TablesFlushed`].
    FlushTables,
    /// A table's entries (`dpfctl -t T -T show`): a stream of
    /// [`TableAddrEntry`].
    TableShow {
        /// The table.
        table: String,
    },
    /// Which hosts match a table (`dpfctl -t T -T test ADDR...`):
    /// [`TableTested`].
    TableTest {
        /// The table.
        table: String,
        /// Host addresses.
        addresses: Vec<String>,
    },
    /// Change a table (`dpfctl -t T -T add|delete|replace|flush|expire
    /// N|zero`): [`TableChanged`].
    TableChange {
        /// The table.
        table: String,
        /// What to do.
        op: TableOp,
        /// `[!]address[/len]` for add, delete and replace.
        #[serde(default)]
        addresses: Vec<String>,
    },
}

/// A table change (`-T` command).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum TableOp {
    /// Add the addresses (creates the table, `persist`, if it does not
    /// exist, as pfctl does).
    Add,
    /// Delete the addresses.
    Delete,
    /// Make the table exactly the addresses (creates it like `add`).
    Replace,
    /// Delete every entry.
    Flush,
    /// Delete entries not added, changed or zeroed for `seconds`.
    Expire {
        /// Age in seconds.
        seconds: u64,
    },
    /// Zero the table's statistics (its and its entries' cleared times).
    Zero,
}

/// One table (an item of `show-tables`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableInfo {
    /// Name.
    pub name: String,
    /// pfctl's flag letters: `c`onst, `p`ersist, `a`ctive, `i`nactive,
    /// `r`eferenced, `h` (anchor), `C`ounters; `-` when absent.
    pub flags: String,
    /// Entries.
    pub addresses: u64,
    /// Unix seconds of the last zero (or creation).
    pub cleared: u64,
}

/// One entry of a table (an item of `table-show`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableAddrEntry {
    /// As pfctl prints it: `!` when negated, `/len` unless a host.
    pub address: String,
    /// Unix seconds it was added, changed or zeroed.
    pub cleared: u64,
}

/// `table-change`: pfctl's counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableChanged {
    /// The table.
    pub table: String,
    /// The table did not exist and was created (`add`, `replace`).
    pub created: bool,
    /// Distinct addresses given.
    pub given: u64,
    /// Entries added.
    pub added: u64,
    /// Entries deleted (or expired).
    pub deleted: u64,
    /// Entries whose negation changed (`replace`).
    pub changed: u64,
    /// Addresses left alone because the table has them with the other
    /// negation.
    pub conflicts: u64,
}

/// One address of a `table-test` (in [`TableTested`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableTestResult {
    /// The address as given.
    pub address: String,
    /// Whether it matches the table.
    pub matched: bool,
    /// The entry that decided (the longest containing it), if any.
    pub entry: Option<String>,
}

/// `table-test`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableTested {
    /// Addresses given.
    pub given: u64,
    /// Addresses that match.
    pub matched: u64,
    /// Per address.
    pub results: Vec<TableTestResult>,
}

/// `flush-tables`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TablesFlushed {
    /// Tables deleted.
    pub deleted: u64,
}

impl Request {
    /// Whether the answer needs the workers (their command rings): such
    /// requests are answered one at a time across all connections, over
    /// several control-loop rounds.
    pub fn uses_workers(&self) -> bool {
        matches!(
            self,
            Request::ShowStates { .. }
                | Request::ShowRules
                | Request::ShowLabels
                | Request::KillStates { .. }
                | Request::KillStateId { .. }
                | Request::KillLabel { .. }
                | Request::FlushStates
                | Request::ZeroCounters
                | Request::KillSources { .. }
        )
    }
}

/// A request with its protocol version.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The request.
    pub request: Request,
}

/// One line of an answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Whether the request succeeded (so far, for a stream).
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The whole answer of a one-line response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The next items of a streamed listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Vec<Value>>,
    /// The streamed listing is complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

impl Response {
    fn new(ok: bool) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            ok,
            error: None,
            data: None,
            chunk: None,
            done: false,
        }
    }

    /// A success carrying `data`.
    pub fn ok(data: Value) -> Response {
        Response {
            data: Some(data),
            ..Response::new(true)
        }
    }

    /// A success carrying a typed answer.
    pub fn ok_typed<T: Serialize>(data: &T) -> Response {
        match serde_json::to_value(data) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(format!("encoding the answer: {e}")),
        }
    }

    /// A failure.
    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            error: Some(msg.into()),
            ..Response::new(false)
        }
    }

    /// Items of a streamed listing.
    pub fn chunk(items: Vec<Value>) -> Response {
        Response {
            chunk: Some(items),
            ..Response::new(true)
        }
    }

    /// The end of a streamed listing.
    pub fn done() -> Response {
        Response {
            done: true,
            ..Response::new(true)
        }
    }
}

/// Parses one request line; errors are ready to send back.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
    let version = v.get("version").and_then(Value::as_u64);
    match version {
        Some(n) if n == PROTOCOL_VERSION as u64 => {}
        Some(n) => {
            return Err(format!(
                "unsupported protocol version {n} (this dpf speaks {PROTOCOL_VERSION}); use the dpfctl of this dpf"
            ))
        }
        None => return Err("request has no version".into()),
    }
    let env: Envelope = serde_json::from_value(v).map_err(|e| format!("bad request: {e}"))?;
    Ok(env.request)
}

/// Parses one answer line (the `dpfctl` side), checking the version
/// before anything else so a dpf of another version is named as such.
pub fn parse_response(line: &[u8]) -> Result<Response, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("malformed answer: {e}"))?;
    match v.get("version").and_then(Value::as_u64) {
        Some(n) if n == PROTOCOL_VERSION as u64 => {}
        Some(n) => {
            return Err(format!(
                "dpf speaks control protocol version {n}, this dpfctl speaks {PROTOCOL_VERSION}: use the dpfctl of that dpf"
            ))
        }
        None => return Err("answer has no version (not a dpf control socket?)".into()),
    }
    serde_json::from_value(v).map_err(|e| format!("malformed answer: {e}"))
}

/// `show-info`: counters like `pfctl -si`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Info {
    /// Seconds since start.
    pub uptime_s: u64,
    /// Worker threads.
    pub workers: u64,
    /// States now.
    pub states: u64,
    /// `set limit states`.
    pub states_limit: u64,
    /// States that may translate, route or scrub (side records, every
    /// worker's; sized at start).
    #[serde(default)]
    pub side_records: u64,
    /// States holding a side record now (every worker's).
    #[serde(default)]
    pub side_records_used: u64,
    /// Bytes of every worker's state table, allocated at start.
    #[serde(default)]
    pub state_table_bytes: u64,
    /// States inserted since start.
    pub states_created: u64,
    /// States removed since start.
    pub states_removed: u64,
    /// Frames received.
    pub rx: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Packets that matched a state.
    pub state_hits: u64,
    /// Packets handed to their owning worker.
    pub handed_off: u64,
    /// Packets sent to the control thread.
    pub slow_path: u64,
    /// Frames the box sent itself.
    pub local_out: u64,
    /// Routed packets held while their next hop was resolved.
    #[serde(default)]
    pub neighbor_held: u64,
    /// Times the sync port began refusing pfsync packets, which a worker
    /// kept and sent when it took them (never dropped for a full queue).
    #[serde(default)]
    pub local_tx_waits: u64,
    /// Worker iterations that left the sync port unread while the pfsync
    /// slow-path ring was full (the link waits; states are not lost).
    #[serde(default)]
    pub sync_rx_paused: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Burst processing time percentiles.
    #[serde(default)]
    pub burst_latency: Value,
    /// Control requests refused (malformed, unknown, wrong version, too long).
    pub control_bad_requests: u64,
    /// The control socket's connections.
    pub control_socket: SocketStats,
    /// Frames the control thread sent, dropped, still pending.
    pub control_tx: ControlTx,
    /// Router mode: the slow path's counters.
    #[serde(default)]
    pub slow_path_stats: Value,
    /// Daemon messages lost: the log queue was full, or the sink
    /// (syslogd, journald, stderr) refused them.
    #[serde(default)]
    pub log: LogStats,
    /// pflog records handed to the logger and lost (`log` rules).
    #[serde(default)]
    pub pflog: PflogStats,
}

/// pflog's counters (in [`Info`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PflogStats {
    /// Records the workers handed to the logger.
    pub logged: u64,
    /// Records lost: a worker's ring to the logger was full.
    pub dropped: u64,
}

/// The daemon log's losses (in [`Info`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogStats {
    /// Messages dropped because the queue to the log writer was full.
    pub dropped: u64,
    /// Messages the sink refused.
    pub write_errors: u64,
}

/// The control socket's counters (in [`Info`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SocketStats {
    /// Connections open now.
    pub clients: u64,
    /// Connections accepted since start.
    pub clients_accepted: u64,
    /// Connections refused: already the most connections open.
    pub clients_refused: u64,
    /// Connections dropped because they did not read their answers (more
    /// unread output than the cap, or none read for the stall timeout).
    pub clients_dropped_slow: u64,
    /// The longest time one poll of the socket took, in microseconds (what
    /// the socket cost the control loop at worst).
    #[serde(default)]
    pub poll_max_us: u64,
    /// Polls that took more than 1 ms.
    #[serde(default)]
    pub polls_over_1ms: u64,
}

/// Frames the control thread sent (in [`Info`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct ControlTx {
    /// Sent.
    pub sent: u64,
    /// Dropped (queue full).
    pub dropped: u64,
    /// Waiting for the injection ring.
    pub pending: u64,
}

/// A peer's TCP window tracking (pfctl -vv's `[seqlo + win]`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerWindow {
    /// Lowest sequence number expected.
    pub seqlo: u32,
    /// Highest sequence number allowed.
    pub seqhi: u32,
    /// Largest window seen.
    pub max_win: u16,
    /// Window scale.
    pub wscale: u8,
}

/// One state (an item of `show-states`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StateEntry {
    /// State id, hex.
    pub id: String,
    /// pfsync creator id, hex.
    pub creatorid: String,
    /// `tcp`, `udp`, `icmp`, `icmp6` or a number.
    pub proto: String,
    /// `inet` or `inet6`.
    pub af: String,
    /// Interface (`all` for a floating state).
    #[serde(rename = "if")]
    pub interface: String,
    /// `in` or `out`.
    pub direction: String,
    /// Source address.
    pub src: String,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: String,
    /// Destination port.
    pub dport: u16,
    /// Source peer's state name.
    pub src_state: String,
    /// Destination peer's state name.
    pub dst_state: String,
    /// Source peer's window tracking.
    pub src_window: PeerWindow,
    /// Destination peer's window tracking.
    pub dst_window: PeerWindow,
    /// Timeout class.
    pub timeout: String,
    /// Age.
    pub age_s: u64,
    /// Time left.
    pub expires_in_s: u64,
    /// Packets each way.
    pub packets: [u64; 2],
    /// Bytes each way.
    pub bytes: [u64; 2],
    /// The rule that created it.
    pub rule: Option<u32>,
    /// A translated state's egress side (`nat-to`, `rdr-to`, `binat-to`):
    /// the connection's endpoints as its first packet left the box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatEndpoints>,
    /// `route-to ADDR` / `reply-to ADDR` (with `@PORT` when known): the
    /// state's route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

/// The translated side of a state (initiator `src`, responder `dst`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatEndpoints {
    /// Initiator's address after translation.
    pub src: String,
    /// Initiator's port after translation.
    pub sport: u16,
    /// Responder's address after translation.
    pub dst: String,
    /// Responder's port after translation.
    pub dport: u16,
}

/// One rule with its counters (an item of `show-rules`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleEntry {
    /// Rule number.
    pub number: u64,
    /// Its text.
    pub rule: String,
    /// Evaluations.
    pub evaluations: u64,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
    /// States created.
    pub states_created: u64,
    /// Of `packets`, those in the `out` direction.
    #[serde(default)]
    pub packets_out: u64,
    /// Of `bytes`, those of `out` packets.
    #[serde(default)]
    pub bytes_out: u64,
    /// States of this rule now (pfctl -vsr's `States:`).
    #[serde(default)]
    pub states_cur: u64,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// The anchor it is a rule of (none: the main ruleset).
    #[serde(default)]
    pub anchor: Option<String>,
}

/// One label's counters, summed over its rules and the workers
/// (`show-labels`; `pfctl -sl`'s columns).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabelEntry {
    /// The label.
    pub label: String,
    /// Evaluations of its rules.
    pub evaluations: u64,
    /// Packets its rules decided.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packets in the `in` direction.
    pub packets_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Packets in the `out` direction.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// States its rules created.
    pub states: u64,
}

/// A named value (`show-timeouts`, `show-memory`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitEntry {
    /// pf's name (`tcp.first`, `states`).
    pub name: String,
    /// Seconds (timeouts) or a count (limits).
    pub value: u64,
}

/// One interface (`show-interfaces`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InterfaceEntry {
    /// Port name.
    pub name: String,
    /// Port index.
    pub index: u64,
    /// DPDK driver.
    pub driver: String,
    /// MAC address.
    pub mac: String,
    /// Link status.
    pub link: Link,
    /// Addresses with prefix lengths.
    pub addresses: Vec<String>,
    /// Port statistics (`ipackets`, `opackets`, `imissed`, `oerrors`...).
    pub stats: BTreeMap<String, u64>,
}

/// A port's link (in [`InterfaceEntry`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Link {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s.
    pub speed_mbps: u32,
}

/// One route (`show-routes`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Prefix.
    pub destination: String,
    /// Next hop (none: on-link).
    pub gateway: Option<String>,
    /// Egress interface.
    pub interface: String,
}

/// One neighbour (`show-neighbors`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NeighborEntry {
    /// IP address.
    pub address: String,
    /// MAC, once resolved.
    pub mac: Option<String>,
    /// Interface.
    pub interface: String,
    /// Entry state.
    pub state: String,
}

/// A kill or flush (`kill-states`, `flush-states`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Killed {
    /// States removed.
    pub killed: u64,
}

/// One source node (`dpfctl -s Sources`, pfctl's `print_src_node`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceEntry {
    /// The source address.
    pub address: String,
    /// `inet` or `inet6`.
    pub af: String,
    /// States counted against it.
    pub states: u32,
    /// Established TCP connections (`max-src-conn`).
    pub connections: u32,
    /// The connection rate in thousandths (pfctl prints `N.M/Ss`).
    pub rate: u32,
    /// The rate's interval in seconds.
    pub rate_seconds: u32,
    /// Seconds since it was created.
    pub age: u64,
    /// With no state: seconds until it goes.
    pub expires_in: Option<u64>,
    /// The rule number of a per-rule node (`None`: `source-track global`,
    /// or a rule of an older ruleset).
    pub rule: Option<u32>,
}

/// `dpfctl -K` / `-F Sources`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourcesKilled {
    /// Source nodes removed.
    pub killed: u64,
    /// States detached from them (they stay, no longer counted).
    pub detached: u64,
}

/// A ruleset load (`load-rules`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Loaded {
    /// Rules loaded.
    pub rules: u64,
    /// The ruleset epoch published.
    pub epoch: u64,
    /// Notes for the operator.
    pub notes: Vec<String>,
}

/// One carp interface (in [`CarpShow`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CarpInterface {
    /// `carp1`.
    pub name: String,
    /// INIT, BACKUP, MASTER.
    pub state: String,
    /// The carpdev.
    pub carpdev: String,
    /// Virtual host id.
    pub vhid: u64,
    /// Advertisement base, seconds.
    pub advbase: u64,
    /// Advertisement skew.
    pub advskew: u64,
    /// Demotion counter that applies.
    #[serde(default)]
    pub demote: u64,
    /// Interface groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Administratively up.
    pub up: bool,
    /// The carpdev's link.
    pub link: String,
    /// Up and link not down.
    pub running: bool,
    /// Unicast peer.
    #[serde(default)]
    pub carppeer: Option<String>,
    /// Virtual MAC.
    pub lladdr: String,
    /// Virtual addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// State transitions.
    #[serde(default)]
    pub transitions: Value,
}

/// `show-carp` / `carp-set`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CarpShow {
    /// The interfaces shown.
    pub interfaces: Vec<CarpInterface>,
    /// net.inet.carp sysctls.
    #[serde(default)]
    pub sysctl: BTreeMap<String, i64>,
    /// carpstats.
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
    /// Virtual-MAC filter outcomes.
    #[serde(default)]
    pub vmac_filter: BTreeMap<String, u64>,
}

/// `group`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupShow {
    /// The group.
    pub group: String,
    /// Its demotion counter.
    pub carpdemote: u64,
    /// Its members.
    #[serde(default)]
    pub members: Value,
}

/// pfsync's export counters (in [`PfsyncShow`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct PfsyncExports {
    /// Exports that found the ring full.
    pub export_dropped: u64,
    /// States re-sent in full after that.
    pub export_resent: u64,
    /// Deletions lost.
    pub export_lost: u64,
    /// Stale updates answered.
    pub stale_answered: u64,
    /// States imported.
    pub imported: u64,
    /// Packets deferred.
    pub deferred: u64,
    /// Deferred packets acknowledged.
    pub defer_acked: u64,
    /// Deferred packets timed out.
    pub defer_timeout: u64,
    /// Not deferred: slots full.
    pub defer_full: u64,
}

/// `show-pfsync`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PfsyncShow {
    /// The sync interface.
    pub syncdev: String,
    /// Peer or multicast group.
    pub syncpeer: String,
    /// Packets per update.
    pub maxupd: u64,
    /// Defer on.
    pub defer: bool,
    /// Bulk update status.
    pub bulk: String,
    /// Packets sent.
    pub sent_packets: u64,
    /// States sent.
    pub sent_states: u64,
    /// States received.
    pub received_states: u64,
    /// UPD_C sent.
    pub sent_compressed: u64,
    /// UPD_C received.
    pub received_compressed: u64,
    /// UPD_REQ sent.
    pub sent_requests: u64,
    /// UPD_REQ received.
    pub received_requests: u64,
    /// INS_ACK sent.
    pub sent_acks: u64,
    /// INS_ACK received.
    pub received_acks: u64,
    /// The workers' export counters.
    #[serde(default)]
    pub exports: PfsyncExports,
    /// pfsyncstats.
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let line = serde_json::to_string(&Envelope {
            version: PROTOCOL_VERSION,
            request: Request::ShowStates {
                host: Some("10.0.0.1".into()),
            },
        })
        .unwrap();
        assert_eq!(
            parse_request(&line),
            Ok(Request::ShowStates {
                host: Some("10.0.0.1".into())
            })
        );
        assert!(parse_request("{").unwrap_err().contains("malformed"));
        assert!(
            parse_request(r#"{"version":1,"request":{"cmd":"show-info"}}"#)
                .unwrap_err()
                .contains("unsupported protocol version 1 (this dpf speaks 2)")
        );
        assert!(parse_request(r#"{"version":2,"request":{"cmd":"reboot"}}"#)
            .unwrap_err()
            .contains("reboot"));
        assert!(parse_request(r#"{"request":{"cmd":"show-info"}}"#)
            .unwrap_err()
            .contains("no version"));
    }

    #[test]
    fn table_requests_round_trip_and_refuse_unknown_fields() {
        for request in [
            Request::ShowTables,
            Request::FlushTables,
            Request::ShowSources,
            Request::KillSources { host: None },
            Request::KillSources {
                host: Some("10.0.0.1".into()),
            },
            Request::TableShow { table: "t".into() },
            Request::TableTest {
                table: "t".into(),
                addresses: vec!["10.0.0.1".into()],
            },
            Request::TableChange {
                table: "t".into(),
                op: TableOp::Expire { seconds: 60 },
                addresses: vec![],
            },
            Request::TableChange {
                table: "t".into(),
                op: TableOp::Add,
                addresses: vec!["!10.1/16".into()],
            },
        ] {
            let line = serde_json::to_string(&Envelope {
                version: PROTOCOL_VERSION,
                request: request.clone(),
            })
            .unwrap();
            assert_eq!(parse_request(&line), Ok(request));
        }
        let e = parse_request(
            r#"{"version":2,"request":{"cmd":"table-change","table":"t","op":"kill"}}"#,
        )
        .unwrap_err();
        assert!(e.contains("kill"), "{e}");
    }

    #[test]
    fn answers_round_trip_and_other_versions_are_named() {
        for r in [
            Response::ok(serde_json::json!({"killed": 3})),
            Response::err("no"),
            Response::chunk(vec![serde_json::json!(1), serde_json::json!(2)]),
            Response::done(),
        ] {
            let line = serde_json::to_vec(&r).unwrap();
            assert_eq!(parse_response(&line), Ok(r));
        }
        let e = parse_response(br#"{"version":1,"ok":true,"data":[]}"#).unwrap_err();
        assert!(e.contains("version 1") && e.contains("speaks 2"), "{e}");
        let k: Killed = serde_json::from_value(
            parse_response(br#"{"version":2,"ok":true,"data":{"killed":7}}"#)
                .unwrap()
                .data
                .unwrap(),
        )
        .unwrap();
        assert_eq!(k.killed, 7);
    }
}
