//! Operator commands to a worker and its replies, over the SPSC ring.
//!
//! The control thread never touches a shard: it sends a [`Command`] on a
//! worker's command ring, and the worker executes it a bounded slice at a
//! time between bursts ([`CommandPort::poll`]), copying states into its
//! reply ring. A full reply ring pauses the listing where it stopped; it
//! resumes on the next poll. Nothing here allocates.

use crate::flow::{Addr, Af, FlowKey};
use crate::pipeline::Pipeline;
use crate::ring::{Consumer, Producer};
use crate::rules::RuleCounters;
use crate::state::State;

/// Slab slots a worker examines per poll.
pub const SLOTS_PER_POLL: usize = 4096;

/// Matches states by endpoint address (`dpfctl -k host [-k host]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFilter {
    /// First host: one endpoint of the state.
    pub host: (Af, Addr),
    /// Optional second host: the other endpoint.
    pub peer: Option<(Af, Addr)>,
}

impl HostFilter {
    /// Whether `key` connects the filter's hosts.
    pub fn matches(&self, key: &FlowKey) -> bool {
        let has =
            |(af, a): (Af, Addr)| key.af == af as u8 && (key.addr[0] == a || key.addr[1] == a);
        match self.peer {
            None => has(self.host),
            Some(p) => {
                has(self.host) && has(p) && (self.host.1 != p.1 || key.addr[0] == key.addr[1])
            }
        }
    }
}

/// A request from the control thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Copy every state into the reply ring, then `ListDone`.
    ListStates,
    /// Remove the states matching the filter, then `Killed(n)`.
    KillStates(HostFilter),
    /// Remove every state, then `Killed(n)`.
    FlushStates,
    /// Send every rule's counters, then `ListDone`.
    RuleCounters,
}

/// A worker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// One state of a listing.
    State(State),
    /// The listing is complete.
    ListDone,
    /// A kill or flush removed this many states.
    Killed(u64),
    /// Counters of rule `index` (a `RuleCounters` listing).
    Rule(u32, RuleCounters),
}

#[derive(Clone, Copy, Debug)]
enum Active {
    Idle,
    Listing {
        cursor: usize,
    },
    Killing {
        cursor: usize,
        filter: Option<HostFilter>,
        removed: u64,
    },
    Rules {
        next: usize,
    },
    Reporting(Reply),
}

/// The worker's end of its command and reply rings.
#[derive(Debug)]
pub struct CommandPort {
    commands: Consumer<Command>,
    replies: Producer<Reply>,
    active: Active,
}

/// The control thread's end of one worker's command and reply rings.
#[derive(Debug)]
pub struct CommandClient {
    /// Sends commands.
    pub commands: Producer<Command>,
    /// Receives replies.
    pub replies: Consumer<Reply>,
}

/// Rings for one worker: (worker end, control end).
pub fn command_channel(reply_capacity: usize) -> (CommandPort, CommandClient) {
    let (cp, cc) = crate::ring::channel(16);
    let (rp, rc) = crate::ring::channel(reply_capacity);
    (
        CommandPort {
            commands: cc,
            replies: rp,
            active: Active::Idle,
        },
        CommandClient {
            commands: cp,
            replies: rc,
        },
    )
}

impl CommandPort {
    /// Advances the current command by one bounded slice, or starts the
    /// next one. Returns the number of states removed (for counters).
    pub fn poll(&mut self, pipeline: &mut Pipeline) -> u64 {
        let mut removed_now = 0;
        let rule_counters_len = pipeline.rule_counters().len();
        self.active = match self.active {
            Active::Idle => match self.commands.pop() {
                None => Active::Idle,
                Some(Command::ListStates) => Active::Listing { cursor: 0 },
                Some(Command::KillStates(f)) => Active::Killing {
                    cursor: 0,
                    filter: Some(f),
                    removed: 0,
                },
                Some(Command::FlushStates) => Active::Killing {
                    cursor: 0,
                    filter: None,
                    removed: 0,
                },
                Some(Command::RuleCounters) => Active::Rules { next: 0 },
            },
            Active::Rules { mut next } => {
                let counters = pipeline.rule_counters();
                while next < rule_counters_len {
                    let c = counters[next];
                    if self.replies.push(Reply::Rule(next as u32, c)).is_err() {
                        break;
                    }
                    next += 1;
                }
                if next < rule_counters_len {
                    Active::Rules { next }
                } else {
                    Active::Reporting(Reply::ListDone)
                }
            }
            Active::Listing { cursor } => {
                let replies = &mut self.replies;
                match pipeline.shard().scan(cursor, SLOTS_PER_POLL, |st| {
                    replies.push(Reply::State(*st)).is_ok()
                }) {
                    Some(next) => Active::Listing { cursor: next },
                    None => Active::Reporting(Reply::ListDone),
                }
            }
            Active::Killing {
                cursor,
                filter,
                removed,
            } => {
                // Kills are exported one by one; a flush is one CLR.
                let (next, n) = pipeline.kill_states(
                    cursor,
                    SLOTS_PER_POLL,
                    |st| filter.is_none_or(|f| f.matches(st.key())),
                    filter.is_some(),
                );
                removed_now = n;
                match next {
                    Some(cursor) => Active::Killing {
                        cursor,
                        filter,
                        removed: removed + n,
                    },
                    None => Active::Reporting(Reply::Killed(removed + n)),
                }
            }
            Active::Reporting(r) => {
                if self.replies.push(r).is_ok() {
                    Active::Idle
                } else {
                    Active::Reporting(r)
                }
            }
        };
        self.replies.publish();
        removed_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{proto, tcp_flags, Direction, IfIndex, L4Info, PacketInfo, TcpInfo};
    use crate::pipeline::PipelineConfig;
    use crate::rules::{RuleEnv, Ruleset};
    use crate::state::{new_state, Shard, StateOptions};
    use crate::time::Instant;
    use std::sync::Arc;

    fn syn(i: u8) -> PacketInfo {
        PacketInfo {
            af: Af::Inet,
            proto: proto::TCP,
            src: Addr::v4([10, 0, 0, i]),
            dst: Addr::v4([192, 0, 2, 1]),
            sport: 40000,
            dport: 80,
            ip_len: 60,
            ttl: 64,
            ifindex: IfIndex(0),
            dir: Direction::In,
            l4: L4Info::Tcp(TcpInfo {
                seq: 1,
                win: 1000,
                flags: tcp_flags::SYN,
                ..Default::default()
            }),
        }
    }

    fn drive(port: &mut CommandPort, p: &mut Pipeline, client: &mut CommandClient) -> Vec<Reply> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            port.poll(p);
            while let Some(r) = client.replies.pop() {
                let done = !matches!(r, Reply::State(_));
                out.push(r);
                if done {
                    return out;
                }
            }
        }
        panic!("command never completed");
    }

    #[test]
    fn list_then_kill_by_host() {
        let mut shard = Shard::new(20_000, 0).unwrap();
        for i in 1..=200u8 {
            let id = shard.alloc_id();
            let st = new_state(
                &syn(i),
                Instant::from_secs(1),
                StateOptions::default(),
                id,
                7,
            )
            .unwrap();
            shard.insert(st).unwrap();
        }
        let env = RuleEnv {
            interfaces: &[],
            self_addrs: &[],
            names: &[],
        };
        let rules = Arc::new(Ruleset::compile("", "t", &env).unwrap());
        let mut p = Pipeline::new(PipelineConfig::default(), rules, shard);
        let (export, mut exported) = crate::ring::channel::<crate::export::StateRecord>(1024);
        let (_imports, import) = crate::ring::channel::<crate::export::ImportRecord>(16);
        p.set_sync(export, import, 1);
        // A tiny reply ring forces the listing to pause and resume.
        let (mut port, mut client) = command_channel(8);
        client.commands.push(Command::ListStates).unwrap();
        client.commands.publish();
        let replies = drive(&mut port, &mut p, &mut client);
        assert_eq!(replies.len(), 201);
        assert_eq!(replies.last(), Some(&Reply::ListDone));

        let filter = HostFilter {
            host: (Af::Inet, Addr::v4([10, 0, 0, 5])),
            peer: None,
        };
        client.commands.push(Command::KillStates(filter)).unwrap();
        client.commands.publish();
        assert_eq!(
            drive(&mut port, &mut p, &mut client),
            vec![Reply::Killed(1)]
        );
        assert_eq!(p.shard().len(), 199);
        // The kill goes to pfsync as one deletion of that state.
        p.sync_poll(Instant::from_secs(1), 0);
        let deleted: Vec<_> = std::iter::from_fn(|| exported.pop()).collect();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].action, crate::export::SyncAction::Delete);
        assert!(filter.matches(deleted[0].state.key()));
        client.commands.push(Command::FlushStates).unwrap();
        client.commands.publish();
        assert_eq!(
            drive(&mut port, &mut p, &mut client),
            vec![Reply::Killed(199)]
        );
        assert!(p.shard().is_empty());
        // A flush is one CLR from the control thread, not 199 deletions.
        p.sync_poll(Instant::from_secs(1), 0);
        assert!(exported.pop().is_none());
    }

    #[test]
    fn host_pair_filter_needs_both_endpoints() {
        let (key, _) = FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, 0, 0, 1]),
            1,
            Addr::v4([10, 0, 0, 2]),
            2,
        );
        let f = |a: [u8; 4], b: Option<[u8; 4]>| HostFilter {
            host: (Af::Inet, Addr::v4(a)),
            peer: b.map(|b| (Af::Inet, Addr::v4(b))),
        };
        assert!(f([10, 0, 0, 1], None).matches(&key));
        assert!(f([10, 0, 0, 1], Some([10, 0, 0, 2])).matches(&key));
        assert!(!f([10, 0, 0, 1], Some([10, 0, 0, 3])).matches(&key));
        assert!(!f([10, 0, 0, 3], None).matches(&key));
    }
}
