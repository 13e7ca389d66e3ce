//! The translation options of a rule — `nat-to`, `rdr-to`, `binat-to`
//! with their port specs and pool options — and `tag` / `tagged`, parsed
//! into the syntax tree ([`PoolAst`], [`TaggedAst`]).
//!
//! Grammar (pfctl's `redirpool pool_opts`):
//! `nat-to|rdr-to|binat-to <host> | { <host>, ... } [port <p>[:<q>|:*]]
//! [bitmask | random | round-robin | source-hash [<0xhex32> | "<string>"]]
//! [sticky-address] [static-port]`; `tag <name>`, `[!] tagged <name>`.

use super::{HostAst, HostItem, Parser, Pos, RuleError, Tok};

/// pf's pool types (`PF_POOL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PoolType {
    /// The network bits from the pool, the host bits from the packet.
    Bitmask,
    /// A random address of the pool for each connection.
    Random,
    /// The pool's addresses in turn.
    RoundRobin,
    /// An address chosen by a keyed hash of the source address (the same
    /// source always gets the same address).
    SourceHash(Option<[u8; 16]>),
}

/// Where the translated port comes from: `port a`, `port a:b`, `port a:*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolPorts {
    pub low: u16,
    pub high: u16,
    /// `a:*`: the port is shifted by the rule's destination port range.
    pub star: bool,
}

/// One translation option as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PoolAst {
    pub pos: Pos,
    pub hosts: Vec<HostItem>,
    pub ports: Option<PoolPorts>,
    pub kind: Option<(PoolType, Pos)>,
    pub sticky: bool,
    pub static_port: bool,
}

/// `[!] tagged <name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaggedAst {
    pub not: bool,
    pub name: String,
    pub pos: Pos,
}

/// pf's `PF_TAG_NAME_SIZE - 1`.
pub(crate) const TAG_NAME_MAX: usize = 63;

impl Parser<'_> {
    /// After `nat-to` / `rdr-to` / `binat-to` (`what`): the redirection
    /// hosts, port spec and pool options.
    pub(super) fn pool(&mut self, what: &str, pos: Pos) -> Result<PoolAst, RuleError> {
        let hosts = self.list(|p| p.xhost())?;
        for h in &hosts {
            if h.not {
                return Err(self.err(
                    h.pos,
                    format!("{what}: a negated address cannot be a translation target"),
                ));
            }
            if h.host == HostAst::Any {
                return Err(self.err(
                    h.pos,
                    format!("{what}: 'any' cannot be a translation target"),
                ));
            }
        }
        let mut pool = PoolAst {
            pos,
            hosts,
            ports: None,
            kind: None,
            sticky: false,
            static_port: false,
        };
        if self.eat_kw("port") {
            let ppos = self.pos();
            let (s, _) = self.string("a port, a range a:b or a:*")?;
            let one = |p: &Self, v: &str| -> Result<u16, RuleError> {
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                    match v.parse::<u32>() {
                        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                        _ => Err(p.err(ppos, format!("illegal port value {v}"))),
                    }
                } else {
                    super::names::service_by_name(v)
                        .ok_or_else(|| p.err(ppos, format!("unknown port {v}")))
                }
            };
            let ports = match s.split_once(':') {
                None => {
                    let a = one(self, &s)?;
                    PoolPorts {
                        low: a,
                        high: a,
                        star: false,
                    }
                }
                Some((a, "*")) => {
                    let a = one(self, a)?;
                    PoolPorts {
                        low: a,
                        high: a,
                        star: true,
                    }
                }
                Some((a, b)) => {
                    let (a, b) = (one(self, a)?, one(self, b)?);
                    if a > b {
                        return Err(self.err(ppos, format!("invalid port range {s}")));
                    }
                    PoolPorts {
                        low: a,
                        high: b,
                        star: false,
                    }
                }
            };
            pool.ports = Some(ports);
        }
        loop {
            let kpos = self.pos();
            let kind = if self.eat_kw("bitmask") {
                PoolType::Bitmask
            } else if self.eat_kw("random") {
                PoolType::Random
            } else if self.eat_kw("round-robin") {
                PoolType::RoundRobin
            } else if self.eat_kw("source-hash") {
                PoolType::SourceHash(self.hash_key()?)
            } else if self.is_kw("least-states") {
                return Err(self.err(kpos, "least-states is not supported by dpf"));
            } else if self.eat_kw("sticky-address") {
                if pool.sticky {
                    return Err(self.err(kpos, "sticky-address cannot be redefined"));
                }
                pool.sticky = true;
                continue;
            } else if self.eat_kw("static-port") {
                if pool.static_port {
                    return Err(self.err(kpos, "static-port cannot be redefined"));
                }
                pool.static_port = true;
                continue;
            } else {
                break;
            };
            if pool.kind.is_some() {
                return Err(self.err(kpos, "pool type cannot be redefined"));
            }
            pool.kind = Some((kind, kpos));
        }
        Ok(pool)
    }

    /// The optional key of `source-hash`: `0x` and 32 hex digits, or a
    /// string (hashed to 128 bits, the same on every dpf box).
    fn hash_key(&mut self) -> Result<Option<[u8; 16]>, RuleError> {
        let pos = self.pos();
        let (s, quoted) = match self.peek() {
            Some(Tok::Str(s)) => (s.clone(), true),
            Some(Tok::Word(w)) if w.starts_with("0x") => (w.clone(), false),
            _ => return Ok(None),
        };
        self.i += 1;
        if !quoted {
            let hex = &s[2..];
            if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(self.err(pos, "hex key must be 128 bits (32 hex digits) long"));
            }
            let mut key = [0u8; 16];
            for (i, k) in key.iter_mut().enumerate() {
                *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            return Ok(Some(key));
        }
        Ok(Some(string_key(&s)))
    }

    /// After `tag`: the name.
    pub(super) fn tag_name(&mut self) -> Result<(String, Pos), RuleError> {
        let (name, pos) = self.string("a tag name")?;
        if name.is_empty() || name.len() > TAG_NAME_MAX {
            return Err(self.err(
                pos,
                format!("tag name '{name}' must be 1 to {TAG_NAME_MAX} characters"),
            ));
        }
        Ok((name, pos))
    }
}

/// A 128-bit pool key from a string: two independent 64-bit FNV-1a style
/// passes (deterministic, so both boxes of a pair map alike).
fn string_key(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (half, seed) in [
        (0usize, 0xcbf2_9ce4_8422_2325u64),
        (1, 0x8422_2325_cbf2_9ce4),
    ] {
        let mut h = seed;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out[half * 8..half * 8 + 8].copy_from_slice(&h.to_be_bytes());
    }
    out
}

/// One next hop of `route-to` / `reply-to`: `(if addr)`, `(if)` (the
/// packet's destination on that interface) or `addr` (its interface by a
/// route lookup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteHop {
    pub iface: Option<(String, Pos)>,
    pub addr: Option<HostItem>,
}

/// `route-to` / `reply-to` as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteAst {
    pub pos: Pos,
    /// `reply-to` (else `route-to`).
    pub reply: bool,
    pub hops: Vec<RouteHop>,
    pub kind: Option<(PoolType, Pos)>,
}

impl Parser<'_> {
    /// After `route-to` / `reply-to`: one hop or `{ hop, ... }`, then an
    /// optional pool type.
    pub(super) fn route_spec(&mut self, reply: bool, pos: Pos) -> Result<RouteAst, RuleError> {
        let hops = self.list(|p| p.route_hop())?;
        let kpos = self.pos();
        let kind = if self.eat_kw("round-robin") {
            Some((PoolType::RoundRobin, kpos))
        } else if self.eat_kw("random") {
            Some((PoolType::Random, kpos))
        } else if self.eat_kw("source-hash") {
            Some((PoolType::SourceHash(self.hash_key()?), kpos))
        } else if self.is_kw("bitmask")
            || self.is_kw("least-states")
            || self.is_kw("sticky-address")
        {
            return Err(self.err(kpos, "this pool option is not supported by dpf with route-to/reply-to (round-robin, random, source-hash)"));
        } else {
            None
        };
        Ok(RouteAst {
            pos,
            reply,
            hops,
            kind,
        })
    }

    fn route_hop(&mut self) -> Result<RouteHop, RuleError> {
        if self.eat(&Tok::LParen) {
            let (name, npos) = self.string("an interface name")?;
            let addr = if self.peek() == Some(&Tok::RParen) {
                None
            } else {
                Some(self.route_addr()?)
            };
            self.expect(&Tok::RParen, "')' after the next hop")?;
            return Ok(RouteHop {
                iface: Some((name, npos)),
                addr,
            });
        }
        Ok(RouteHop {
            iface: None,
            addr: Some(self.route_addr()?),
        })
    }

    fn route_addr(&mut self) -> Result<HostItem, RuleError> {
        let h = self.xhost()?;
        match &h.host {
            HostAst::Net { af, len, .. }
                if !h.not
                    && *len
                        == if *af == crate::flow::Af::Inet {
                            32
                        } else {
                            128
                        } =>
            {
                Ok(h)
            }
            _ => Err(self.err(h.pos, "a next hop must be a single address")),
        }
    }
}
