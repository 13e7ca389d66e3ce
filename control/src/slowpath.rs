//! The slow path of router mode, sans-I/O: frames the workers sent to the
//! control thread (ARP, neighbour discovery, ICMP to the box's addresses,
//! packets whose TTL ran out) go in, frames to transmit come out; next-hop
//! resolution (ARP request / neighbour solicitation, retries, aging,
//! incomplete entries) runs on a clock passed in. Every change of the
//! resolved set is published as a new neighbour snapshot for the workers.

use dataplane::flow::{proto, Addr, Af, Direction, IfIndex, L4Info};
use dataplane::route::{Neighbor, NeighborEntry, Neighbors, ResolveRequest, Routing};
use dataplane::time::{Duration, Instant};
use dataplane::wire::build::{self, Body, Reply, L4};
use dataplane::wire::{
    arp, classify, ethernet, icmp, icmpv6, ipv4, ipv6, EtherType, EthernetAddress, FrameKind,
};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Tries before a next hop is given up (until the next request).
const RESOLVE_TRIES: u8 = 3;
/// Between tries.
const RESOLVE_RETRY: Duration = Duration::from_secs(1);
/// A resolved entry is refreshed after this...
const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// ...and forgotten after this without an answer.
const EXPIRE_AFTER: Duration = Duration::from_secs(20 * 60);
/// ICMP errors (time exceeded) per second.
const ICMP_ERRORS_PER_S: u32 = 100;

#[derive(Clone, Copy, Debug)]
enum Entry {
    Incomplete {
        port: u16,
        tries: u8,
        next_at: Instant,
    },
    Reachable {
        nb: Neighbor,
        learned_at: Instant,
        refreshing: Option<Instant>,
    },
    Static(Neighbor),
}

/// Slow-path counters (shown by `dpfctl -s info`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SlowPathStats {
    /// Frames received from workers.
    pub received: u64,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Neighbour solicitations answered.
    pub na_sent: u64,
    /// Echo requests answered.
    pub echo_replies: u64,
    /// ARP requests / neighbour solicitations sent to resolve next hops.
    pub resolutions_sent: u64,
    /// Next hops learned or refreshed.
    pub learned: u64,
    /// ICMP time exceeded sent.
    pub time_exceeded: u64,
    /// ICMP errors not sent because of the rate limit.
    pub icmp_rate_limited: u64,
    /// Frames dropped (not for the slow path, malformed, unanswerable).
    pub dropped: u64,
}

/// One neighbour table row, for `dpfctl -s neighbors`.
#[derive(Clone, Copy, Debug)]
pub struct NeighborRow {
    /// Family.
    pub af: Af,
    /// Address.
    pub addr: Addr,
    /// MAC, `None` while incomplete.
    pub mac: Option<[u8; 6]>,
    /// Port.
    pub port: u16,
    /// `incomplete`, `reachable` or `static`.
    pub state: &'static str,
}

/// A frame to transmit on a port.
pub type Out = (u16, Vec<u8>);

/// Router-mode slow path state.
pub struct SlowPath {
    routing: Arc<Routing>,
    table: HashMap<(Af, Addr), Entry>,
    dirty: bool,
    icmp_tokens: u32,
    icmp_refill_at: Instant,
    /// Counters.
    pub stats: SlowPathStats,
}

impl SlowPath {
    /// A slow path for `routing` with static neighbours `statics`.
    pub fn new(routing: Arc<Routing>, statics: &[NeighborEntry]) -> SlowPath {
        SlowPath {
            routing,
            table: statics
                .iter()
                .map(|(k, n)| (*k, Entry::Static(*n)))
                .collect(),
            dirty: true,
            icmp_tokens: ICMP_ERRORS_PER_S,
            icmp_refill_at: Instant(0),
            stats: SlowPathStats::default(),
        }
    }

    /// The resolved neighbours, if they changed since the last call.
    pub fn take_snapshot(&mut self) -> Option<Neighbors> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(Neighbors::new(self.table.iter().filter_map(
            |(k, e)| match e {
                Entry::Reachable { nb, .. } | Entry::Static(nb) => Some((*k, *nb)),
                Entry::Incomplete { .. } => None,
            },
        )))
    }

    /// Every entry for display, sorted by family and address.
    pub fn entries(&self) -> Vec<NeighborRow> {
        let row = |af: Af, addr: Addr, mac, port, state| NeighborRow {
            af,
            addr,
            mac,
            port,
            state,
        };
        let mut v: Vec<_> = self
            .table
            .iter()
            .map(|((af, a), e)| match e {
                Entry::Incomplete { port, .. } => row(*af, *a, None, *port, "incomplete"),
                Entry::Reachable { nb, .. } => row(*af, *a, Some(nb.mac), nb.port, "reachable"),
                Entry::Static(nb) => row(*af, *a, Some(nb.mac), nb.port, "static"),
            })
            .collect();
        v.sort_by_key(|r| (r.af as u8, r.addr));
        v
    }

    fn mac(&self, port: u16) -> EthernetAddress {
        EthernetAddress(self.routing.mac(port).unwrap_or([0; 6]))
    }

    /// Handles one frame received on `port`; returns what to send.
    pub fn handle(&mut self, frame: &[u8], port: u16, now: Instant, out: &mut Vec<Out>) {
        self.stats.received += 1;
        let Ok(c) = classify(frame, IfIndex(port), Direction::In) else {
            self.stats.dropped += 1;
            return;
        };
        let our_mac = self.mac(port);
        match c.kind {
            FrameKind::Arp => self.arp(frame, &c, port, our_mac, now, out),
            FrameKind::Ip { info, .. } => {
                // A VIP is ours only while we are MASTER for its VHID, and
                // answers come from its virtual MAC.
                let vip = self.routing.vips.lookup(info.af, &info.dst);
                let vip_master = vip.filter(|v| self.routing.vips.is_master(v.port, v.vhid));
                let ours =
                    self.routing.owner_of(info.af, &info.dst).is_some() || vip_master.is_some();
                let our_mac = vip_master.map_or(our_mac, |v| EthernetAddress(vmac(v.vhid)));
                match info.l4 {
                    L4Info::Icmp(i)
                        if ours
                            && info.af == Af::Inet
                            && i.icmp_type == icmp::msg_type::ECHO_REQUEST =>
                    {
                        self.send(build::icmpv4_echo_reply(frame, our_mac), port, out, |s| {
                            s.echo_replies += 1
                        });
                    }
                    L4Info::Icmp(i) if info.af == Af::Inet6 && info.proto == proto::ICMPV6 => {
                        self.icmpv6(frame, i.icmp_type, ours, port, our_mac, now, out);
                    }
                    _ if !ours && info.ttl <= 1 && !is_group(info.af, &info.dst) => {
                        self.time_exceeded(frame, info.af, port, now, out);
                    }
                    _ => self.stats.dropped += 1,
                }
            }
            FrameKind::Other => self.stats.dropped += 1,
        }
    }

    fn send(
        &mut self,
        r: Result<Reply<'_>, dataplane::wire::WireError>,
        port: u16,
        out: &mut Vec<Out>,
        count: impl FnOnce(&mut SlowPathStats),
    ) {
        match r.and_then(|r| {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf).map(|n| {
                buf.truncate(n);
                buf
            })
        }) {
            Ok(buf) => {
                count(&mut self.stats);
                out.push((port, buf));
            }
            Err(_) => self.stats.dropped += 1,
        }
    }

    fn learn(
        &mut self,
        af: Af,
        addr: Addr,
        mac: [u8; 6],
        port: u16,
        now: Instant,
        only_if_known: bool,
    ) {
        // Only neighbours on the port's own subnets.
        let on_link = self
            .routing
            .interfaces
            .get(port as usize)
            .is_some_and(|i| i.addrs.iter().any(|a| a.prefix.contains(af, &addr)));
        if !on_link || mac[0] & 1 != 0 {
            return;
        }
        let key = (af, addr);
        match self.table.get(&key) {
            Some(Entry::Static(_)) => {}
            None if only_if_known => {}
            Some(Entry::Reachable { nb, .. }) if nb.mac == mac && nb.port == port => {
                self.table.insert(
                    key,
                    Entry::Reachable {
                        nb: Neighbor { mac, port },
                        learned_at: now,
                        refreshing: None,
                    },
                );
            }
            _ => {
                self.table.insert(
                    key,
                    Entry::Reachable {
                        nb: Neighbor { mac, port },
                        learned_at: now,
                        refreshing: None,
                    },
                );
                self.stats.learned += 1;
                self.dirty = true;
            }
        }
    }

    fn arp(
        &mut self,
        frame: &[u8],
        c: &dataplane::wire::Classified,
        port: u16,
        our_mac: EthernetAddress,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(bytes) = frame.get(c.l3_offset as usize..) else {
            self.stats.dropped += 1;
            return;
        };
        let Ok(repr) = arp::Packet::new_checked(bytes).and_then(|p| arp::Repr::parse(&p)) else {
            self.stats.dropped += 1;
            return;
        };
        let target = Addr::v4(repr.target_protocol_addr.octets());
        let sender = Addr::v4(repr.sender_protocol_addr.octets());
        // A VIP is answered with its virtual MAC, and only by the MASTER.
        if let Some(v) = self.routing.vips.lookup(Af::Inet, &target) {
            if v.port == port
                && self.routing.vips.is_master(port, v.vhid)
                && repr.operation == arp::Operation::Request
            {
                let vmac = EthernetAddress(vmac(v.vhid));
                self.learn(
                    Af::Inet,
                    sender,
                    repr.sender_hardware_addr.0,
                    port,
                    now,
                    false,
                );
                self.send(build::arp_reply_to(&repr, c.vlan, vmac), port, out, |s| {
                    s.arp_replies += 1
                });
            } else {
                self.stats.dropped += 1;
            }
            return;
        }
        let for_us = self.routing.owner_of(Af::Inet, &target) == Some(port);
        // RFC 826: update a known sender; add it when the request is for us.
        self.learn(
            Af::Inet,
            sender,
            repr.sender_hardware_addr.0,
            port,
            now,
            !for_us,
        );
        if for_us && repr.operation == arp::Operation::Request {
            self.send(
                build::arp_reply_to(&repr, c.vlan, our_mac),
                port,
                out,
                |s| s.arp_replies += 1,
            );
        } else if !for_us {
            self.stats.dropped += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn icmpv6(
        &mut self,
        frame: &[u8],
        icmp_type: u8,
        ours: bool,
        port: u16,
        our_mac: EthernetAddress,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Ok(c) = classify(frame, IfIndex(port), Direction::In) else {
            return;
        };
        let FrameKind::Ip {
            info, l4_offset, ..
        } = c.kind
        else {
            return;
        };
        let Some(l4) = frame.get(l4_offset as usize..) else {
            return;
        };
        let ips = dataplane::wire::IpPair::from_addrs(info.af, info.src, info.dst);
        let Ok(repr) = icmpv6::Packet::new_checked(l4).and_then(|p| icmpv6::Repr::parse(&p, &ips))
        else {
            self.stats.dropped += 1;
            return;
        };
        match repr {
            icmpv6::Repr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let target = Addr::v6(target_addr.octets());
                if let Some(l) = lladdr {
                    self.learn(Af::Inet6, info.src, l.0, port, now, false);
                }
                // An IPv6 VIP is answered with its virtual MAC, and only by
                // the MASTER of its VHID (carp spec §4.11).
                let answer_mac = match self.routing.vips.lookup(Af::Inet6, &target) {
                    Some(v) if v.port == port && self.routing.vips.is_master(port, v.vhid) => {
                        Some(EthernetAddress(vmac(v.vhid)))
                    }
                    Some(_) => None,
                    None => {
                        (self.routing.owner_of(Af::Inet6, &target) == Some(port)).then_some(our_mac)
                    }
                };
                if let Some(mac) = answer_mac {
                    self.send(
                        build::neighbor_advert_reply(frame, mac, true),
                        port,
                        out,
                        |s| s.na_sent += 1,
                    );
                } else {
                    self.stats.dropped += 1;
                }
            }
            icmpv6::Repr::NeighborAdvert {
                target_addr,
                lladdr: Some(l),
                ..
            } => {
                self.learn(
                    Af::Inet6,
                    Addr::v6(target_addr.octets()),
                    l.0,
                    port,
                    now,
                    true,
                );
            }
            icmpv6::Repr::EchoRequest { .. } if ours => {
                self.send(build::icmpv6_echo_reply(frame, our_mac), port, out, |s| {
                    s.echo_replies += 1
                });
            }
            _ => {
                let _ = icmp_type;
                self.stats.dropped += 1;
            }
        }
    }

    fn time_exceeded(&mut self, frame: &[u8], af: Af, port: u16, now: Instant, out: &mut Vec<Out>) {
        if now >= self.icmp_refill_at {
            self.icmp_tokens = ICMP_ERRORS_PER_S;
            self.icmp_refill_at = now + Duration::from_secs(1);
        }
        if self.icmp_tokens == 0 {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        self.icmp_tokens -= 1;
        let Ok(c) = classify(frame, IfIndex(port), Direction::In) else {
            return;
        };
        let FrameKind::Ip { info, .. } = c.kind else {
            return;
        };
        let Some(src) = self.routing.address_on(port, af) else {
            self.stats.dropped += 1;
            return;
        };
        let l3 = c.l3_offset as usize;
        let eth = ethernet::Repr {
            src_addr: self.mac(port),
            dst_addr: c.src_mac,
            vlan_id: c.vlan,
            ethertype: if af == Af::Inet {
                EtherType::IPV4
            } else {
                EtherType::IPV6
            },
        };
        let reply = match af {
            Af::Inet => {
                let ihl = ((frame.get(l3).copied().unwrap_or(0x45) & 0x0f) as usize) * 4;
                let quoted = &frame[l3..frame.len().min(l3 + ihl + 8)];
                let l4 = L4::Icmpv4(icmp::Repr::TimeExceeded {
                    code: 0,
                    data: quoted,
                });
                Reply {
                    eth,
                    body: Body::Ipv4 {
                        ip: ipv4::Repr {
                            src_addr: Ipv4Addr::from(src.v4_octets()),
                            dst_addr: Ipv4Addr::from(info.src.v4_octets()),
                            protocol: proto::ICMP,
                            payload_len: 0,
                            ttl: ipv4::DEFAULT_TTL,
                            tos: 0,
                            ident: 0,
                            dont_frag: false,
                        },
                        l4,
                    },
                }
            }
            Af::Inet6 => {
                let quoted = &frame[l3..frame.len().min(l3 + icmpv6::MAX_ERROR_QUOTE)];
                let l4 = L4::Icmpv6(icmpv6::Repr::TimeExceeded {
                    code: 0,
                    data: quoted,
                });
                Reply {
                    eth,
                    body: Body::Ipv6 {
                        ip: ipv6::Repr {
                            src_addr: Ipv6Addr::from(src.0),
                            dst_addr: Ipv6Addr::from(info.src.0),
                            next_header: proto::ICMPV6,
                            payload_len: 0,
                            hop_limit: ipv6::DEFAULT_HOP_LIMIT,
                            traffic_class: 0,
                            flow_label: 0,
                        },
                        l4,
                    },
                }
            }
        };
        self.send(Ok(reply), port, out, |s| s.time_exceeded += 1);
    }

    /// A worker could not forward to `req.addr`: start resolving it.
    pub fn resolve(&mut self, req: ResolveRequest, now: Instant, out: &mut Vec<Out>) {
        let key = (req.af, req.addr);
        if self.table.contains_key(&key) {
            return;
        }
        self.table.insert(
            key,
            Entry::Incomplete {
                port: req.port,
                tries: 1,
                next_at: now + RESOLVE_RETRY,
            },
        );
        self.solicit(req.af, req.addr, req.port, out);
    }

    /// Retries, refreshes and ages entries; returns when to call again.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Out>) {
        let mut solicit = Vec::new();
        let mut removed = false;
        self.table.retain(|(af, addr), e| match e {
            Entry::Static(_) => true,
            Entry::Incomplete {
                port,
                tries,
                next_at,
            } => {
                if now < *next_at {
                    true
                } else if *tries >= RESOLVE_TRIES {
                    false
                } else {
                    *tries += 1;
                    *next_at = now + RESOLVE_RETRY;
                    solicit.push((*af, *addr, *port));
                    true
                }
            }
            Entry::Reachable {
                nb,
                learned_at,
                refreshing,
            } => {
                let age = now.saturating_since(*learned_at);
                if age >= EXPIRE_AFTER {
                    removed = true;
                    false
                } else {
                    if age >= REFRESH_AFTER && refreshing.is_none_or(|t| now >= t) {
                        *refreshing = Some(now + RESOLVE_RETRY);
                        solicit.push((*af, *addr, nb.port));
                    }
                    true
                }
            }
        });
        if removed {
            self.dirty = true;
        }
        for (af, addr, port) in solicit {
            self.solicit(af, addr, port, out);
        }
    }

    fn solicit(&mut self, af: Af, addr: Addr, port: u16, out: &mut Vec<Out>) {
        let Some(src) = self.routing.address_on(port, af) else {
            self.stats.dropped += 1;
            return;
        };
        let mac = self.mac(port);
        let reply = match af {
            Af::Inet => build::arp_request(
                None,
                mac,
                Ipv4Addr::from(src.v4_octets()),
                Ipv4Addr::from(addr.v4_octets()),
            ),
            Af::Inet6 => {
                // Solicited-node multicast: ff02::1:ff00:0/104 plus the low 24 bits of the target.
                let t = addr.0;
                let dst = Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | t[13] as u16,
                    (t[14] as u16) << 8 | t[15] as u16,
                );
                Reply {
                    eth: ethernet::Repr {
                        src_addr: mac,
                        dst_addr: EthernetAddress([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
                        vlan_id: None,
                        ethertype: EtherType::IPV6,
                    },
                    body: Body::Ipv6 {
                        ip: ipv6::Repr {
                            src_addr: Ipv6Addr::from(src.0),
                            dst_addr: dst,
                            next_header: proto::ICMPV6,
                            payload_len: 0,
                            hop_limit: 255,
                            traffic_class: 0,
                            flow_label: 0,
                        },
                        l4: L4::Icmpv6(icmpv6::Repr::NeighborSolicit {
                            target_addr: Ipv6Addr::from(t),
                            lladdr: Some(mac),
                        }),
                    },
                }
            }
        };
        self.send(Ok(reply), port, out, |s| s.resolutions_sent += 1);
    }
}

/// The CARP virtual MAC of `vhid`.
fn vmac(vhid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vhid]
}

fn is_group(af: Af, a: &Addr) -> bool {
    match af {
        Af::Inet => a.0[0] >= 224,
        Af::Inet6 => a.0[0] == 0xff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::route::{IfAddr, Interface, Prefix};

    fn routing() -> Arc<Routing> {
        let ifa = |a: [u8; 4]| IfAddr {
            addr: Addr::v4(a),
            prefix: Prefix::new(Af::Inet, Addr::v4(a), 24),
        };
        Arc::new(Routing::new(
            vec![
                Interface {
                    name: "lan0".into(),
                    mac: [2, 0, 0, 0, 1, 1],
                    mtu: 1500,
                    addrs: vec![ifa([10, 1, 0, 1])],
                },
                Interface {
                    name: "wan0".into(),
                    mac: [2, 0, 0, 0, 2, 1],
                    mtu: 1500,
                    addrs: vec![ifa([10, 2, 0, 1])],
                },
            ],
            vec![],
        ))
    }

    fn arp_frame(
        op_request: bool,
        sender_mac: [u8; 6],
        sender: [u8; 4],
        target: [u8; 4],
    ) -> Vec<u8> {
        let r = if op_request {
            build::arp_request(
                None,
                EthernetAddress(sender_mac),
                Ipv4Addr::from(sender),
                Ipv4Addr::from(target),
            )
        } else {
            build::arp_reply(
                None,
                EthernetAddress(sender_mac),
                Ipv4Addr::from(sender),
                EthernetAddress([2, 0, 0, 0, 1, 1]),
                Ipv4Addr::from(target),
            )
        };
        let mut b = vec![0u8; r.buffer_len()];
        let n = r.emit(&mut b).unwrap();
        b.truncate(n);
        b
    }

    #[test]
    fn answers_arp_for_own_address_and_learns_the_asker() {
        let mut sp = SlowPath::new(routing(), &[]);
        let mut out = Vec::new();
        sp.handle(
            &arp_frame(true, [2, 9, 9, 9, 9, 9], [10, 1, 0, 7], [10, 1, 0, 1]),
            0,
            Instant(0),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 0);
        let reply = &out[0].1;
        assert_eq!(&reply[0..6], &[2, 9, 9, 9, 9, 9]);
        assert_eq!(&reply[6..12], &[2, 0, 0, 0, 1, 1]);
        assert_eq!(&reply[20..22], &[0, 2], "ARP reply opcode");
        let snap = sp.take_snapshot().unwrap();
        assert_eq!(
            snap.get(Af::Inet, &Addr::v4([10, 1, 0, 7])).unwrap().mac,
            [2, 9, 9, 9, 9, 9]
        );
        // Not for us: no answer, nothing learned from a stranger.
        out.clear();
        sp.handle(
            &arp_frame(true, [2, 8, 8, 8, 8, 8], [10, 1, 0, 8], [10, 1, 0, 99]),
            0,
            Instant(0),
            &mut out,
        );
        assert!(out.is_empty());
        assert!(sp.take_snapshot().is_none());
    }

    #[test]
    fn resolves_with_retries_and_gives_up() {
        let mut sp = SlowPath::new(routing(), &[]);
        let mut out = Vec::new();
        let req = ResolveRequest {
            af: Af::Inet,
            addr: Addr::v4([10, 2, 0, 9]),
            port: 1,
        };
        sp.resolve(req, Instant::from_secs(0), &mut out);
        sp.resolve(req, Instant::from_secs(0), &mut out);
        assert_eq!(out.len(), 1, "one request while incomplete");
        assert_eq!(&out[0].1[0..6], &[0xff; 6], "ARP request is broadcast");
        sp.poll(Instant::from_secs(1), &mut out);
        sp.poll(Instant::from_secs(2), &mut out);
        assert_eq!(out.len(), 3, "three tries");
        sp.poll(Instant::from_secs(3), &mut out);
        assert_eq!(out.len(), 3);
        assert!(sp.entries().is_empty(), "given up after three tries");
        // An answer resolves it and publishes the neighbour.
        sp.resolve(req, Instant::from_secs(10), &mut out);
        sp.handle(
            &arp_frame(false, [2, 7, 7, 7, 7, 7], [10, 2, 0, 9], [10, 2, 0, 1]),
            1,
            Instant::from_secs(10),
            &mut out,
        );
        let snap = sp.take_snapshot().unwrap();
        assert_eq!(
            snap.get(Af::Inet, &Addr::v4([10, 2, 0, 9])).unwrap().port,
            1
        );
        // Aged out after 20 minutes without answers to the refreshes.
        sp.poll(Instant::from_secs(10 + 20 * 60), &mut out);
        assert!(sp.take_snapshot().unwrap().is_empty());
    }
}

#[cfg(test)]
mod vip_tests {
    use super::*;
    use dataplane::route::{IfAddr, Interface, Prefix, Vip, VipTable};

    #[test]
    fn a_vip_answers_only_while_master_and_from_its_virtual_mac() {
        let a = Addr::v4([10, 1, 0, 1]);
        let vip = Addr::v4([10, 1, 0, 254]);
        let vips = Arc::new(VipTable::new(
            vec![Vip {
                af: Af::Inet,
                addr: vip,
                port: 0,
                vhid: 1,
            }],
            1,
        ));
        let routing = Arc::new(
            Routing::new(
                vec![Interface {
                    name: "lan0".into(),
                    mac: [2, 0, 0, 0, 1, 1],
                    mtu: 1500,
                    addrs: vec![IfAddr {
                        addr: a,
                        prefix: Prefix::new(Af::Inet, a, 24),
                    }],
                }],
                vec![],
            )
            .with_vips(Arc::clone(&vips)),
        );
        let mut sp = SlowPath::new(routing, &[]);
        // An echo request from a Linux host: 98 bytes.
        let mut f = vec![
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x01, 0x02, 0x09, 0, 0, 0, 0x32, 0x08, 0x00,
        ];
        let mut ip = vec![
            0x45, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 1, 0, 50, 10, 1, 0, 254,
        ];
        let c = dataplane::wire::checksum::data(&ip);
        ip[10..12].copy_from_slice(&(!c).to_be_bytes());
        let mut icmp = vec![8, 0, 0, 0, 0, 7, 0, 1];
        icmp.extend((0..56).map(|i| i as u8));
        let c = dataplane::wire::checksum::data(&icmp);
        icmp[2..4].copy_from_slice(&(!c).to_be_bytes());
        f.extend(ip);
        f.extend(icmp);
        let mut out = Vec::new();
        sp.handle(&f, 0, Instant(0), &mut out);
        assert!(out.is_empty(), "a BACKUP must not answer the VIP");
        vips.set_master(0, 1, true);
        sp.handle(&f, 0, Instant(0), &mut out);
        assert_eq!(out.len(), 1, "{:?}", sp.stats);
        assert_eq!(
            &out[0].1[6..12],
            &[0, 0, 0x5e, 0, 1, 1],
            "from the virtual MAC"
        );
    }

    #[test]
    fn an_ipv6_vip_is_resolved_to_its_virtual_mac_only_while_master() {
        let a = Addr::v6("2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets());
        let vip: Ipv6Addr = "2001:db8:1::fe".parse().unwrap();
        let vips = Arc::new(VipTable::new(
            vec![Vip {
                af: Af::Inet6,
                addr: Addr::v6(vip.octets()),
                port: 0,
                vhid: 2,
            }],
            1,
        ));
        let routing = Arc::new(
            Routing::new(
                vec![Interface {
                    name: "lan0".into(),
                    mac: [2, 0, 0, 0, 1, 1],
                    mtu: 1500,
                    addrs: vec![IfAddr {
                        addr: a,
                        prefix: Prefix::new(Af::Inet6, a, 64),
                    }],
                }],
                vec![],
            )
            .with_vips(Arc::clone(&vips)),
        );
        let mut sp = SlowPath::new(routing, &[]);
        // A host's solicitation for the VIP, to its solicited-node group.
        let host_mac = EthernetAddress([2, 9, 0, 0, 0, 0x50]);
        let t = vip.octets();
        let ns = Reply {
            eth: ethernet::Repr {
                src_addr: host_mac,
                dst_addr: EthernetAddress([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
                vlan_id: None,
                ethertype: EtherType::IPV6,
            },
            body: Body::Ipv6 {
                ip: ipv6::Repr {
                    src_addr: "2001:db8:1::50".parse().unwrap(),
                    dst_addr: "ff02::1:ff00:fe".parse().unwrap(),
                    next_header: proto::ICMPV6,
                    payload_len: 0,
                    hop_limit: 255,
                    traffic_class: 0,
                    flow_label: 0,
                },
                l4: L4::Icmpv6(icmpv6::Repr::NeighborSolicit {
                    target_addr: vip,
                    lladdr: Some(host_mac),
                }),
            },
        };
        let mut f = vec![0u8; ns.buffer_len()];
        let n = ns.emit(&mut f).unwrap();
        f.truncate(n);
        let mut out = Vec::new();
        sp.handle(&f, 0, Instant(0), &mut out);
        assert!(out.is_empty(), "a BACKUP must not answer for the VIP");
        vips.set_master(0, 2, true);
        sp.handle(&f, 0, Instant(0), &mut out);
        assert_eq!(out.len(), 1, "{:?}", sp.stats);
        let na = &out[0].1;
        let vmac = [0, 0, 0x5e, 0, 1, 2];
        assert_eq!(&na[0..6], &host_mac.0);
        assert_eq!(&na[6..12], &vmac, "from the virtual MAC");
        assert_eq!(na[54], 136, "neighbour advertisement");
        assert_eq!(&na[62..78], &vip.octets());
        assert_eq!(&na[80..86], &vmac, "target link-layer address");
    }
}
