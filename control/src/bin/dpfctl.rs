//! `dpfctl`: pfctl's habits for a running dpf, over its control socket.
//!
//! ```text
//! dpfctl -s info|states|rules|interfaces [--json]
//! dpfctl -s states -k 10.0.0.1        (show only states of a host)
//! dpfctl -f pf.conf                   (load rules; errors give file:line:col)
//! dpfctl -k 10.0.0.1 [-k 10.0.0.2]    (kill states)
//! dpfctl -F states                    (flush states)
//! ```

use clap::Parser;
use control::ctl::server::call;
use control::ctl::{Request, Response};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Control a running dpf (pfctl-style).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Show: info, states, rules, interfaces, routes, neighbors.
    #[arg(short = 's', long = "show", value_name = "WHAT")]
    show: Option<String>,
    /// Load rules from a pf.conf file (the old rules stay if it is refused).
    #[arg(short = 'f', long = "file", value_name = "PF.CONF")]
    file: Option<PathBuf>,
    /// Kill states of a host (twice: states between two hosts). With -s
    /// states, show only states of that host.
    #[arg(short = 'k', long = "kill", value_name = "HOST")]
    kill: Vec<String>,
    /// Flush: states.
    #[arg(short = 'F', long = "flush", value_name = "WHAT")]
    flush: Option<String>,
    /// Interface group (ifconfig -g): show it, or change its carpdemote.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    group: Option<String>,
    /// ifconfig-style words: `carp1 advskew 100`, `carp1 down`, `sysctl
    /// net.inet.carp.preempt=1`, or after -g: `carpdemote 50` / `-carpdemote 50`.
    #[arg(
        value_name = "WORDS",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    words: Vec<String>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
    /// The control socket.
    #[arg(long, default_value = control::config::DEFAULT_SOCKET, env = "DPF_SOCKET")]
    socket: PathBuf,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // `dpfctl carp1 --json`: the trailing words swallow later flags.
    if let Some(i) = args.words.iter().position(|w| w == "--json") {
        args.words.remove(i);
        args.json = true;
    }
    let (request, show) = match build(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dpfctl: {e}");
            return ExitCode::from(2);
        }
    };
    let response = match call(&args.socket, &request, Duration::from_secs(30)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dpfctl: {}: {e}", args.socket.display());
            return ExitCode::from(1);
        }
    };
    if !response.ok {
        eprintln!(
            "dpfctl: {}",
            response.error.as_deref().unwrap_or("request failed")
        );
        return ExitCode::from(1);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response.data).unwrap_or_default()
        );
    } else {
        print_text(show.as_deref(), &request, &response);
    }
    ExitCode::SUCCESS
}

fn build(args: &Args) -> Result<(Request, Option<String>), String> {
    if let Some(group) = &args.group {
        let w: Vec<&str> = args.words.iter().map(String::as_str).collect();
        let carpdemote = match w.as_slice() {
            [] => None,
            ["carpdemote"] => Some(1),
            ["carpdemote", n] => Some(parse_demote(n)?),
            ["-carpdemote"] => Some(-1),
            ["-carpdemote", n] => Some(-parse_demote(n)?),
            _ => {
                return Err(format!(
                    "-g {group}: expected carpdemote N or -carpdemote N, got '{}'",
                    w.join(" ")
                ))
            }
        };
        return Ok((
            Request::Group {
                group: group.clone(),
                carpdemote,
            },
            None,
        ));
    }
    if let Some(first) = args.words.first() {
        if first == "sysctl" {
            return match args.words.len() {
                1 | 2 => Ok((
                    Request::Sysctl {
                        arg: args.words.get(1).cloned(),
                    },
                    None,
                )),
                _ => Err("sysctl takes one name or name=value".into()),
            };
        }
        if first == "pfsync0" && args.words.len() == 1 {
            return Ok((Request::ShowPfsync, None));
        }
        if args.words.len() == 1 {
            return Ok((
                Request::ShowCarp {
                    name: Some(first.clone()),
                },
                None,
            ));
        }
        return Ok((
            Request::CarpSet {
                name: first.clone(),
                words: args.words[1..].to_vec(),
            },
            None,
        ));
    }
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok((
            Request::LoadRules {
                text,
                file: path.display().to_string(),
            },
            None,
        ));
    }
    if let Some(what) = &args.flush {
        return match what.as_str() {
            "states" | "state" => Ok((Request::FlushStates, None)),
            other => Err(format!("-F {other}: can flush 'states'")),
        };
    }
    if let Some(what) = &args.show {
        let req = match what.as_str() {
            "info" | "i" => Request::ShowInfo,
            "states" | "s" | "state" => Request::ShowStates {
                host: args.kill.first().cloned(),
            },
            "rules" | "r" => Request::ShowRules,
            "interfaces" | "I" => Request::ShowInterfaces,
            "routes" | "route" => Request::ShowRoutes,
            "neighbors" | "neighbours" | "arp" => Request::ShowNeighbors,
            "carp" => Request::ShowCarp { name: None },
            "pfsync" => Request::ShowPfsync,
            other => {
                return Err(format!(
                "-s {other}: show one of info, states, rules, interfaces, routes, neighbors, carp, pfsync"
            ))
            }
        };
        return Ok((req, Some(what.clone())));
    }
    match args.kill.as_slice() {
        [] => Err("nothing to do: give -s, -f, -k or -F (see --help)".into()),
        [host] => Ok((
            Request::KillStates {
                host: host.clone(),
                peer: None,
            },
            None,
        )),
        [host, peer] => Ok((
            Request::KillStates {
                host: host.clone(),
                peer: Some(peer.clone()),
            },
            None,
        )),
        _ => Err("-k takes one or two hosts".into()),
    }
}

fn parse_demote(n: &str) -> Result<i32, String> {
    n.parse::<i32>()
        .ok()
        .filter(|v| (0..=255).contains(v))
        .ok_or_else(|| format!("carpdemote '{n}': a number 0-255"))
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn print_text(show: Option<&str>, request: &Request, response: &Response) {
    let d = &response.data;
    match request {
        Request::ShowInfo => {
            println!(
                "Status: Enabled for {} s, {} worker(s)",
                u(d, "uptime_s"),
                u(d, "workers")
            );
            println!();
            println!("State Table                          Total");
            println!("  {:<30} {:>12}", "current entries", u(d, "states"));
            println!("  {:<30} {:>12}", "limit", u(d, "states_limit"));
            println!("  {:<30} {:>12}", "inserts", u(d, "states_created"));
            println!("  {:<30} {:>12}", "removals", u(d, "states_removed"));
            println!("  {:<30} {:>12}", "state hits", u(d, "state_hits"));
            println!("Packets");
            for k in [
                "rx",
                "tx",
                "forwarded",
                "handed_off",
                "slow_path",
                "dropped",
            ] {
                println!("  {:<30} {:>12}", k.replace('_', " "), u(d, k));
            }
            println!("Drops");
            if let Some(m) = d.get("drops").and_then(Value::as_object) {
                for (k, v) in m {
                    println!("  {:<30} {:>12}", k, v.as_u64().unwrap_or(0));
                }
            }
            if let Some(l) = d.get("burst_latency").filter(|l| u(l, "count") > 0) {
                println!("Burst processing time (ns)");
                for (name, k) in [
                    ("p50", "p50_ns"),
                    ("p99", "p99_ns"),
                    ("p99.9", "p999_ns"),
                    ("max", "max_ns"),
                ] {
                    let ns = l.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                    println!("  {name:<30} {ns:>12.0}");
                }
            }
        }
        Request::ShowStates { .. } => {
            let list = d.as_array().cloned().unwrap_or_default();
            for st in &list {
                let arrow = if s(st, "direction") == "out" {
                    "->"
                } else {
                    "<-"
                };
                let (a, b) = if arrow == "->" {
                    (
                        fmt_ep(s(st, "src"), u(st, "sport")),
                        fmt_ep(s(st, "dst"), u(st, "dport")),
                    )
                } else {
                    (
                        fmt_ep(s(st, "dst"), u(st, "dport")),
                        fmt_ep(s(st, "src"), u(st, "sport")),
                    )
                };
                println!(
                    "{:<6} {:<5} {:<40} {} {:<40} {}:{}",
                    s(st, "if"),
                    s(st, "proto"),
                    a,
                    arrow,
                    b,
                    s(st, "src_state"),
                    s(st, "dst_state")
                );
                let p = &st["packets"];
                let by = &st["bytes"];
                println!(
                    "   age {}s, expires in {}s, {}:{} pkts, {}:{} bytes, rule {}, id {} creatorid {}",
                    u(st, "age_s"),
                    u(st, "expires_in_s"),
                    p[0].as_u64().unwrap_or(0),
                    p[1].as_u64().unwrap_or(0),
                    by[0].as_u64().unwrap_or(0),
                    by[1].as_u64().unwrap_or(0),
                    st.get("rule").map_or("-".to_string(), |r| r.to_string()),
                    s(st, "id"),
                    s(st, "creatorid")
                );
            }
            if list.is_empty() {
                println!("no states");
            }
        }
        Request::ShowRules => {
            for r in d.as_array().cloned().unwrap_or_default() {
                println!("@{} {}", u(&r, "number"), s(&r, "rule"));
                println!(
                    "  [ Evaluations: {:<10} Packets: {:<10} Bytes: {:<12} States: {:<8} ]",
                    u(&r, "evaluations"),
                    u(&r, "packets"),
                    u(&r, "bytes"),
                    u(&r, "states_created")
                );
            }
        }
        Request::ShowInterfaces => {
            println!(
                "{:<10} {:<12} {:<18} {:<5} {:>12} {:>12} {:>10} {:>8}",
                "NAME", "DRIVER", "MAC", "LINK", "IPACKETS", "OPACKETS", "IMISSED", "OERRORS"
            );
            for i in d.as_array().cloned().unwrap_or_default() {
                let link = if i["link"]["up"].as_bool().unwrap_or(false) {
                    "up"
                } else {
                    "down"
                };
                let st = &i["stats"];
                println!(
                    "{:<10} {:<12} {:<18} {:<5} {:>12} {:>12} {:>10} {:>8}",
                    s(&i, "name"),
                    s(&i, "driver"),
                    s(&i, "mac"),
                    link,
                    u(st, "ipackets"),
                    u(st, "opackets"),
                    u(st, "imissed"),
                    u(st, "oerrors")
                );
            }
        }
        Request::LoadRules { file, .. } => {
            println!("dpfctl: loaded {} rules from {file}", u(d, "rules"));
            if let Some(notes) = d.get("notes").and_then(Value::as_array) {
                for n in notes {
                    println!("dpfctl: note: {}", n.as_str().unwrap_or(""));
                }
            }
        }
        Request::ShowRoutes => {
            println!("{:<44} {:<40} Interface", "Destination", "Gateway");
            for r in d.as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<44} {:<40} {}",
                    s(&r, "destination"),
                    r["gateway"].as_str().unwrap_or("link"),
                    s(&r, "interface")
                );
            }
        }
        Request::ShowNeighbors => {
            println!("{:<40} {:<18} {:<10} State", "Address", "MAC", "Interface");
            for n in d.as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<40} {:<18} {:<10} {}",
                    s(&n, "address"),
                    n["mac"].as_str().unwrap_or("(incomplete)"),
                    s(&n, "interface"),
                    s(&n, "state")
                );
            }
        }
        Request::ShowCarp { name } => {
            for c in d["interfaces"].as_array().cloned().unwrap_or_default() {
                let up = if c["up"].as_bool().unwrap_or(false) {
                    "UP"
                } else {
                    "DOWN"
                };
                let running = if c["running"].as_bool().unwrap_or(false) {
                    ",RUNNING"
                } else {
                    ""
                };
                println!("{}: flags=<{up}{running}>", s(&c, "name"));
                println!("\tlladdr {}", s(&c, "lladdr"));
                println!(
                    "\tcarp: {} carpdev {} vhid {} advbase {} advskew {}{}",
                    s(&c, "state"),
                    s(&c, "carpdev"),
                    u(&c, "vhid"),
                    u(&c, "advbase"),
                    u(&c, "advskew"),
                    c["carppeer"]
                        .as_str()
                        .map(|p| format!(" carppeer {p}"))
                        .unwrap_or_default()
                );
                let groups: Vec<&str> = c["groups"]
                    .as_array()
                    .map(|g| g.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!("\tcarpdev {} link {}", s(&c, "carpdev"), s(&c, "link"));
                println!("\tgroups: {}", groups.join(" "));
                if u(&c, "demote") > 0 {
                    println!("\tdemote: {}", u(&c, "demote"));
                }
                for a in c["addresses"].as_array().cloned().unwrap_or_default() {
                    let a = a.as_str().unwrap_or("");
                    let family = if a.contains(':') { "inet6" } else { "inet" };
                    println!("\t{family} {a}");
                }
            }
            if name.is_none() {
                if let Some(m) = d["sysctl"].as_object() {
                    for (k, v) in m {
                        println!("{k}={v}");
                    }
                }
                println!("carp statistics:");
                if let Some(m) = d["stats"].as_object() {
                    for (k, v) in m {
                        println!("  {:<24} {:>12}", k, v.as_u64().unwrap_or(0));
                    }
                }
                if let Some(m) = d["vmac_filter"].as_object() {
                    for (k, v) in m {
                        println!("  vmac_filter_{:<12} {:>12}", k, v.as_u64().unwrap_or(0));
                    }
                }
            }
        }
        Request::CarpSet { name, .. } => {
            let c = &d["interfaces"][0];
            println!(
                "{name}: carp: {} carpdev {} vhid {} advbase {} advskew {}",
                s(c, "state"),
                s(c, "carpdev"),
                u(c, "vhid"),
                u(c, "advbase"),
                u(c, "advskew")
            );
        }
        Request::Group { .. } => {
            println!(
                "{}: carp demote count {}",
                s(d, "group"),
                u(d, "carpdemote")
            );
        }
        Request::ShowPfsync => {
            println!("pfsync0: flags=<UP,RUNNING>");
            println!(
                "\tpfsync: syncdev {} syncpeer {} maxupd {} defer {}",
                s(d, "syncdev"),
                s(d, "syncpeer"),
                u(d, "maxupd"),
                if d["defer"].as_bool() == Some(true) {
                    "on"
                } else {
                    "off"
                }
            );
            println!("\tbulk update: {}", s(d, "bulk"));
            println!(
                "\tsent {} packets ({} states), received {} states",
                u(d, "sent_packets"),
                u(d, "sent_states"),
                u(d, "received_states")
            );
            println!(
                "\tcompressed updates: sent {} received {}; update requests: sent {} received {}",
                u(d, "sent_compressed"),
                u(d, "received_compressed"),
                u(d, "sent_requests"),
                u(d, "received_requests")
            );
            let e = &d["exports"];
            println!(
                "\texport ring full {} (re-sent {}, lost {}); stale updates answered {}",
                u(e, "export_dropped"),
                u(e, "export_resent"),
                u(e, "export_lost"),
                u(e, "stale_answered")
            );
            println!(
                "\tdeferred {} packets: {} acknowledged, {} timed out; {} not deferred (slots full); INS_ACK sent {} received {}",
                u(e, "deferred"),
                u(e, "defer_acked"),
                u(e, "defer_timeout"),
                u(e, "defer_full"),
                u(d, "sent_acks"),
                u(d, "received_acks")
            );
            if let Some(m) = d["stats"].as_object() {
                for (k, v) in m {
                    println!("  {:<24} {:>12}", k, v.as_u64().unwrap_or(0));
                }
            }
        }
        Request::Sysctl { .. } => {
            if let Some(m) = d.as_object() {
                for (k, v) in m {
                    println!("{k}={v}");
                }
            }
        }
        Request::KillStates { .. } | Request::FlushStates => {
            println!("killed {} states", u(d, "killed"));
        }
    }
    let _ = show;
}

fn fmt_ep(addr: &str, port: u64) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}
