//! dpf's commands on DPDK's telemetry socket
//! (`/var/run/dpdk/<file-prefix>/dpdk_telemetry.v2`), next to DPDK's own
//! (`/ethdev/stats,0`, ...), so that `dpdk-telemetry.py` shows the box:
//!
//! | command | answer |
//! | --- | --- |
//! | `/dpf/info` | the counters of `dpfctl -s info` (states, limit, packets, control socket, daemon log) |
//! | `/dpf/drops` | drops by reason (`-` in a reason's name reads `_`: telemetry names allow only `[A-Za-z0-9_/]`) |
//! | `/dpf/carp` | each CARP interface's state; `/dpf/carp,carp1` that interface's fields |
//! | `/dpf/carp_stats` | carpstats and the net.inet.carp sysctls |
//! | `/dpf/pfsync` | pfsync's counters and settings |
//!
//! The callbacks run on DPDK's telemetry thread and read the box through
//! the control socket, as the Prometheus endpoint and `dpfctl` do: nothing
//! is taken from the packet path and no lock of the daemon's is held; an
//! answer waits 2 s at most. JSON answers are flattened into telemetry
//! dictionaries (DPDK 22.11 nests only arrays): a nested object's fields
//! become `parent/field`.

use crate::ctl::server::call_collect;
use crate::ctl::Request;
use serde_json::Value;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The control socket the callbacks ask.
static SOCKET: OnceLock<PathBuf> = OnceLock::new();

/// How long one telemetry answer may wait for the control thread.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Most entries of one telemetry dictionary (RTE_TEL_MAX_DICT_ENTRIES).
const MAX_ENTRIES: usize = 256;

/// Keys of `show-info` that are not counters (their own command, or a
/// histogram with no place in a flat dictionary).
const INFO_SKIP: &[&str] = &["drops", "burst_cycles_hist"];

type Callback =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut dpdk_sys::rte_tel_data) -> c_int;

/// Registers dpf's commands; they answer from the daemon behind
/// `socket`. Once per process, after the EAL started.
pub fn register(socket: PathBuf) -> anyhow::Result<()> {
    if SOCKET.set(socket).is_err() {
        anyhow::bail!("telemetry commands are already registered");
    }
    let commands: [(&str, Callback, &str); 5] = [
        ("/dpf/info", info_cb, "dpf counters (as dpfctl -s info). No parameters"),
        ("/dpf/drops", drops_cb, "dpf drops by reason. No parameters"),
        (
            "/dpf/carp",
            carp_cb,
            "CARP interfaces' states; with a carp interface name, its fields. Parameters: [carp name]",
        ),
        ("/dpf/carp_stats", carp_stats_cb, "carpstats and net.inet.carp sysctls. No parameters"),
        ("/dpf/pfsync", pfsync_cb, "pfsync counters and settings. No parameters"),
    ];
    for (name, cb, help) in commands {
        let c_name = CString::new(name)?;
        let c_help = CString::new(help)?;
        // SAFETY: both strings are NUL-terminated; DPDK copies them into
        // its command table; `cb` has the telemetry_cb signature and lives
        // for the process.
        let rc = unsafe {
            dpdk_sys::rte_telemetry_register_cmd(c_name.as_ptr(), Some(cb), c_help.as_ptr())
        };
        if rc != 0 {
            anyhow::bail!("telemetry: registering {name}: error {rc}");
        }
    }
    Ok(())
}

/// A telemetry name from a JSON key: `[A-Za-z0-9_/]` only, 63 bytes.
fn tel_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '/' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// One dictionary entry, flattened and typed.
#[derive(Debug, PartialEq)]
enum Entry {
    U64(String, u64),
    Int(String, i32),
    Str(String, String),
}

/// Flattens a JSON object into dictionary entries (`parent/child` for
/// nested objects; numbers that are not u64 or i32, and arrays, become
/// strings; nulls are left out), at most [`MAX_ENTRIES`].
fn flatten(v: &Value, skip: &[&str]) -> Vec<Entry> {
    fn walk(prefix: &str, v: &Value, skip: &[&str], out: &mut Vec<Entry>) {
        let Value::Object(map) = v else { return };
        for (k, v) in map {
            if prefix.is_empty() && skip.contains(&k.as_str()) {
                continue;
            }
            let name = if prefix.is_empty() {
                tel_name(k)
            } else {
                tel_name(&format!("{prefix}/{k}"))
            };
            match v {
                Value::Null => {}
                Value::Bool(b) => out.push(Entry::U64(name, u64::from(*b))),
                Value::Number(n) => {
                    match (n.as_u64(), n.as_i64().and_then(|i| i32::try_from(i).ok())) {
                        (Some(u), _) => out.push(Entry::U64(name, u)),
                        (None, Some(i)) => out.push(Entry::Int(name, i)),
                        (None, None) => out.push(Entry::Str(name, n.to_string())),
                    }
                }
                Value::String(s) => out.push(Entry::Str(name, s.clone())),
                Value::Array(_) => out.push(Entry::Str(name, v.to_string())),
                Value::Object(_) => walk(&name, v, skip, out),
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, skip, &mut out);
    out.truncate(MAX_ENTRIES);
    out
}

/// Fills `d` with `entries` as a dictionary; a negative errno on failure.
///
/// # Safety
/// `d` is the `rte_tel_data` DPDK passed to the callback.
unsafe fn fill(d: *mut dpdk_sys::rte_tel_data, entries: &[Entry]) -> c_int {
    // SAFETY: `d` is valid per this function's contract.
    let rc = unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
    if rc != 0 {
        return rc;
    }
    for e in entries {
        let (name, rc) = match e {
            Entry::U64(n, v) => {
                let Ok(c) = CString::new(n.as_str()) else {
                    continue;
                };
                // SAFETY: `d` is a started dictionary; `c` is NUL-terminated
                // and copied by DPDK.
                (n, unsafe {
                    dpdk_sys::rte_tel_data_add_dict_u64(d, c.as_ptr(), *v)
                })
            }
            Entry::Int(n, v) => {
                let Ok(c) = CString::new(n.as_str()) else {
                    continue;
                };
                // SAFETY: as above.
                (n, unsafe {
                    dpdk_sys::rte_tel_data_add_dict_int(d, c.as_ptr(), *v)
                })
            }
            Entry::Str(n, v) => {
                let (Ok(c), Ok(val)) = (CString::new(n.as_str()), CString::new(truncate(v, 127)))
                else {
                    continue;
                };
                // SAFETY: as above; DPDK copies the value (127 bytes at most).
                (n, unsafe {
                    dpdk_sys::rte_tel_data_add_dict_string(d, c.as_ptr(), val.as_ptr())
                })
            }
        };
        if rc < 0 {
            crate::log!(crate::log::Level::Debug, "telemetry: {name}: error {rc}");
        }
    }
    0
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The answer to `request`, or why there is none.
fn ask(request: &Request) -> Result<Value, String> {
    let socket = SOCKET.get().ok_or("not registered")?;
    call_collect(socket, request, ASK_TIMEOUT).map_err(|e| e.to_string())
}

/// The callbacks' common tail: entries into `d`, or an error string.
///
/// # Safety
/// `d` is the `rte_tel_data` DPDK passed to the callback.
unsafe fn answer(d: *mut dpdk_sys::rte_tel_data, entries: Result<Vec<Entry>, String>) -> c_int {
    let entries = entries.unwrap_or_else(|e| vec![Entry::Str("error".into(), e)]);
    // SAFETY: per this function's contract.
    unsafe { fill(d, &entries) }
}

/// Runs `f` and never lets a panic cross into C.
fn guarded(f: impl FnOnce() -> Result<Vec<Entry>, String>) -> Result<Vec<Entry>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("internal error".into()))
}

/// The info entries (`dpfctl -s info`).
fn info_entries() -> Result<Vec<Entry>, String> {
    Ok(flatten(&ask(&Request::ShowInfo)?, INFO_SKIP))
}

/// Drops by reason.
fn drops_entries() -> Result<Vec<Entry>, String> {
    let info = ask(&Request::ShowInfo)?;
    Ok(flatten(info.get("drops").unwrap_or(&Value::Null), &[]))
}

/// Each CARP interface's state, or one interface's fields.
fn carp_entries(param: Option<&str>) -> Result<Vec<Entry>, String> {
    let show = ask(&Request::ShowCarp { name: None })?;
    let list = show
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let name_of = |i: &Value| {
        i.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match param {
        None => Ok(list
            .iter()
            .map(|i| {
                let state = i
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                Entry::Str(tel_name(&name_of(i)), state)
            })
            .collect()),
        Some(p) => list
            .iter()
            .find(|i| name_of(i) == p)
            .map(|i| flatten(i, &[]))
            .ok_or_else(|| format!("no carp interface {p}")),
    }
}

/// carpstats and sysctls.
fn carp_stats_entries() -> Result<Vec<Entry>, String> {
    let show = ask(&Request::ShowCarp { name: None })?;
    let mut v = serde_json::Map::new();
    for k in ["stats", "sysctl", "vmac_filter"] {
        if let Some(x) = show.get(k) {
            v.insert(k.into(), x.clone());
        }
    }
    Ok(flatten(&Value::Object(v), &[]))
}

/// pfsync's counters.
fn pfsync_entries() -> Result<Vec<Entry>, String> {
    Ok(flatten(&ask(&Request::ShowPfsync)?, &[]))
}

/// The parameter string, if any.
///
/// # Safety
/// `params` is NULL or a NUL-terminated string.
unsafe fn param<'a>(params: *const c_char) -> Option<&'a str> {
    if params.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    let s = unsafe { CStr::from_ptr(params) }.to_str().ok()?.trim();
    (!s.is_empty()).then_some(s)
}

unsafe extern "C" fn info_cb(
    _: *const c_char,
    _: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    // SAFETY: `d` comes from DPDK's telemetry thread for this call.
    unsafe { answer(d, guarded(info_entries)) }
}

unsafe extern "C" fn drops_cb(
    _: *const c_char,
    _: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    // SAFETY: as in `info_cb`.
    unsafe { answer(d, guarded(drops_entries)) }
}

unsafe extern "C" fn carp_cb(
    _: *const c_char,
    params: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    // SAFETY: DPDK passes NULL or a NUL-terminated parameter string.
    let p = unsafe { param(params) }.map(str::to_string);
    // SAFETY: as in `info_cb`.
    unsafe { answer(d, guarded(|| carp_entries(p.as_deref()))) }
}

unsafe extern "C" fn carp_stats_cb(
    _: *const c_char,
    _: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    // SAFETY: as in `info_cb`.
    unsafe { answer(d, guarded(carp_stats_entries)) }
}

unsafe extern "C" fn pfsync_cb(
    _: *const c_char,
    _: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    // SAFETY: as in `info_cb`.
    unsafe { answer(d, guarded(pfsync_entries)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_flatten_into_telemetry_names_and_types() {
        let v = json!({
            "states": 3, "drops": {"bad-len": 1}, "control_socket": {"clients": 2},
            "bulk": "done", "skew": -4, "ratio": 0.5, "on": true, "none": null, "list": [1, 2]
        });
        let got = flatten(&v, &["drops"]);
        assert!(got.contains(&Entry::U64("states".into(), 3)));
        assert!(got.contains(&Entry::U64("control_socket/clients".into(), 2)));
        assert!(got.contains(&Entry::Str("bulk".into(), "done".into())));
        assert!(got.contains(&Entry::Int("skew".into(), -4)));
        assert!(got.contains(&Entry::Str("ratio".into(), "0.5".into())));
        assert!(got.contains(&Entry::U64("on".into(), 1)));
        assert!(got.contains(&Entry::Str("list".into(), "[1,2]".into())));
        assert!(!got
            .iter()
            .any(|e| matches!(e, Entry::U64(n, _) if n.starts_with("drops"))));
        assert_eq!(got.len(), 7);
        let drops = flatten(&json!({"bad-len": 1, "a b": 2}), &[]);
        assert_eq!(
            drops,
            vec![Entry::U64("a_b".into(), 2), Entry::U64("bad_len".into(), 1)]
        );
    }

    #[test]
    fn a_dictionary_holds_at_most_dpdks_entries_and_names_are_bounded() {
        let mut m = serde_json::Map::new();
        for i in 0..1000 {
            m.insert(format!("k{i}"), json!(i));
        }
        assert_eq!(flatten(&Value::Object(m), &[]).len(), MAX_ENTRIES);
        assert_eq!(tel_name(&"x".repeat(200)).len(), 63);
        assert_eq!(truncate("ééé", 3), "é");
    }
}
