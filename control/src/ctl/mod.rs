//! The control socket protocol: one JSON request per line, one JSON
//! response per line, both carrying `version`. A malformed, unknown or
//! wrong-version request gets `ok: false` with an error and changes
//! nothing.
//!
//! ```text
//! -> {"version":1,"request":{"cmd":"show-states","host":"10.0.0.1"}}
//! <- {"version":1,"ok":true,"data":[...]}
//! <- {"version":1,"ok":false,"error":"unknown command 'foo'"}
//! ```

pub mod handler;
pub mod server;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line accepted (a pf.conf travels inside `load-rules`).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// A request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Counters (`dpfctl -s info`).
    ShowInfo,
    /// States (`dpfctl -s states`), optionally those touching `host`.
    ShowStates {
        /// Only states with this address as an endpoint.
        #[serde(default)]
        host: Option<String>,
    },
    /// Rules with their counters (`dpfctl -s rules`).
    ShowRules,
    /// Interfaces with addresses, MACs, link and port statistics.
    ShowInterfaces,
    /// Replace the ruleset (`dpfctl -f`): the text and its file name for
    /// error messages.
    LoadRules {
        /// pf.conf text.
        text: String,
        /// Name used in `file:line:col` errors.
        file: String,
    },
    /// Remove states (`dpfctl -k host [-k host]`).
    KillStates {
        /// An endpoint address.
        host: String,
        /// The other endpoint, if given.
        #[serde(default)]
        peer: Option<String>,
    },
    /// Remove every state (`dpfctl -F states`).
    FlushStates,
    /// Routes (`dpfctl -s routes`).
    ShowRoutes,
    /// Neighbours (`dpfctl -s neighbors`).
    ShowNeighbors,
    /// Carp interfaces, states and carpstats (`dpfctl -s carp`, `dpfctl carp1`).
    ShowCarp {
        /// One interface, or all.
        #[serde(default)]
        name: Option<String>,
    },
    /// ifconfig words on a carp interface: `advskew N`, `up`, `down`,
    /// `state backup|master|init`.
    CarpSet {
        /// The carp interface.
        name: String,
        /// The words after its name.
        words: Vec<String>,
    },
    /// `-g group [carpdemote N | -carpdemote N]`.
    Group {
        /// The interface group.
        group: String,
        /// Demotion change, if any.
        #[serde(default)]
        carpdemote: Option<i32>,
    },
    /// pfsync status and statistics (`dpfctl pfsync0`, `dpfctl -s pfsync`).
    ShowPfsync,
    /// `sysctl [net.inet.carp.x[=v]]`.
    Sysctl {
        /// `name=value` to set, or `name` / nothing to read.
        #[serde(default)]
        arg: Option<String>,
    },
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

/// A response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer, when `ok` is true.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    /// A success carrying `data`.
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            ok: true,
            error: None,
            data,
        }
    }

    /// A failure.
    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            ok: false,
            error: Some(msg.into()),
            data: serde_json::Value::Null,
        }
    }
}

/// Parses one request line; errors are ready to send back.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
    let version = v.get("version").and_then(|x| x.as_u64());
    match version {
        Some(n) if n == PROTOCOL_VERSION as u64 => {}
        Some(n) => {
            return Err(format!(
                "unsupported protocol version {n} (this dpf speaks {PROTOCOL_VERSION})"
            ))
        }
        None => return Err("request has no version".into()),
    }
    let env: Envelope = serde_json::from_value(v).map_err(|e| format!("bad request: {e}"))?;
    Ok(env.request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let line = serde_json::to_string(&Envelope {
            version: 1,
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
            parse_request(r#"{"version":2,"request":{"cmd":"show-info"}}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(parse_request(r#"{"version":1,"request":{"cmd":"reboot"}}"#)
            .unwrap_err()
            .contains("reboot"));
        assert!(parse_request(r#"{"request":{"cmd":"show-info"}}"#)
            .unwrap_err()
            .contains("no version"));
    }
}
