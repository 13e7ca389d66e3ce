//! The full state message (`spec/pfsync.md` §3.6, §3.7): `pfsync_state_scrub`
//! (8 bytes) inside `pfsync_state_peer` (32), `pfsync_state_key` (40) and the
//! packed 264-byte `pfsync_state` carried by INS, UPD and DEL.
//!
//! ```text
//! scrub  0 pfss_flags[2] | 2 pfss_ttl | 3 scrub_flag | 4 pfss_ts_mod[4]
//! peer   0 scrub[8] | 8 seqlo[4] | 12 seqhi[4] | 16 seqdiff[4] | 20 max_win[2]
//!        | 22 mss[2] | 24 state | 25 wscale | 26 pad[6]
//! key    0 addr0[16] | 16 addr1[16] | 32 port0[2] | 34 port1[2] | 36 rdomain[2]
//!        | 38 af | 39 pad
//! state  0 id[8] | 8 ifname[16] | 24 key0[40] | 64 key1[40] | 104 src[32]
//!        | 136 dst[32] | 168 rt_addr[16] | 184 rule[4] | 188 anchor[4]
//!        | 192 nat_rule[4] | 196 creation[4] | 200 expire[4] | 204 packets[16]
//!        | 220 bytes[16] | 236 creatorid[4] | 240 rtableid[8] | 248 max_mss[2]
//!        | 250 af | 251 proto | 252 direction | 253 log | 254 rt | 255 timeout
//!        | 256 sync_flags | 257 updates | 258 min_ttl | 259 set_tos
//!        | 260 state_flags[2] | 262 set_prio[2]
//! ```
//!
//! Every integer is big-endian (pf converts with `hton*` before sending);
//! ports are network order; the 64-bit packet and byte counters are two BE
//! 32-bit halves, high first, which is the same bytes as one BE 64-bit value.
//! The `Repr`s keep raw numbers (`af`, `direction`, `timeout`...) so any
//! received state round-trips; validity is judged by `recv` (§5.3), not here.

use dataplane::flow::{Addr, FlowKey};

use super::{be16, be32, be64, byte, get, put, set_byte, view, Result};

/// Size of `pfsync_state_scrub`.
pub const SCRUB_LEN: usize = 8;
/// Size of `pfsync_state_peer`.
pub const PEER_LEN: usize = 32;
/// Size of `pfsync_state_key`.
pub const KEY_LEN: usize = 40;
/// Size of `pfsync_state`.
pub const STATE_LEN: usize = 264;

/// `scrub_flag` value meaning the scrub data is valid (§3.6).
pub const SCRUB_FLAG_VALID: u8 = 0x01;
/// `state_flags` bits (§3.8).
pub mod state_flags {
    /// Allow IP options.
    pub const ALLOWOPTS: u16 = 0x0001;
    /// Sloppy TCP tracking.
    pub const SLOPPY: u16 = 0x0002;
    /// Export with pflow.
    pub const PFLOW: u16 = 0x0004;
    /// Never synchronise this state.
    pub const NOSYNC: u16 = 0x0008;
    /// The sender holds a deferred packet and wants an INS_ACK.
    pub const ACK: u16 = 0x0010;
    /// Clear DF.
    pub const NODF: u16 = 0x0020;
    /// Set TOS.
    pub const SETTOS: u16 = 0x0040;
    /// Randomise the IP id.
    pub const RANDOMID: u16 = 0x0080;
    /// TCP scrubbing.
    pub const SCRUB_TCP: u16 = 0x0100;
    /// Set priority.
    pub const SETPRIO: u16 = 0x0200;
    /// Socket unlinked.
    pub const INP_UNLINKED: u16 = 0x0400;
}
/// PFTM_MAX: the first `timeout` value that is invalid on the wire (§3.8).
pub const PFTM_MAX: u8 = 20;
/// Largest valid peer `state` on the wire (PROXY_DST, §3.8).
pub const PEER_STATE_MAX: u8 = 12;
/// First synproxy peer state (PROXY_SRC).
pub const PEER_STATE_PROXY_SRC: u8 = 11;
/// OpenBSD's `AF_INET`.
pub const AF_INET: u8 = 2;
/// OpenBSD's `AF_INET6`.
pub const AF_INET6: u8 = 24;
/// `rule` / `anchor` / `nat_rule` value meaning "none".
pub const RULE_NONE: u32 = 0xffff_ffff;

// ---------------------------------------------------------------------------
// Scrub

/// Byte ranges of `pfsync_state_scrub`.
pub mod scrub_field {
    use core::ops::Range;
    /// `pfss_flags`, BE.
    pub const PFSS_FLAGS: Range<usize> = 0..2;
    /// `pfss_ttl`.
    pub const PFSS_TTL: usize = 2;
    /// `scrub_flag`.
    pub const SCRUB_FLAG: usize = 3;
    /// `pfss_ts_mod`, BE.
    pub const PFSS_TS_MOD: Range<usize> = 4..8;
}

view!(
    /// View of `pfsync_state_scrub` (§3.6).
    Scrub,
    SCRUB_LEN
);

impl<T: AsRef<[u8]>> Scrub<T> {
    /// `pfss_flags`.
    pub fn pfss_flags(&self) -> u16 {
        be16(self.buffer.as_ref(), scrub_field::PFSS_FLAGS.start)
    }
    /// `pfss_ttl`.
    pub fn pfss_ttl(&self) -> u8 {
        byte(self.buffer.as_ref(), scrub_field::PFSS_TTL)
    }
    /// `scrub_flag`.
    pub fn scrub_flag(&self) -> u8 {
        byte(self.buffer.as_ref(), scrub_field::SCRUB_FLAG)
    }
    /// `pfss_ts_mod`.
    pub fn pfss_ts_mod(&self) -> u32 {
        be32(self.buffer.as_ref(), scrub_field::PFSS_TS_MOD.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Scrub<T> {
    /// Sets `pfss_flags`.
    pub fn set_pfss_flags(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            scrub_field::PFSS_FLAGS.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `pfss_ttl`.
    pub fn set_pfss_ttl(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), scrub_field::PFSS_TTL, value);
    }
    /// Sets `scrub_flag`.
    pub fn set_scrub_flag(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), scrub_field::SCRUB_FLAG, value);
    }
    /// Sets `pfss_ts_mod`.
    pub fn set_pfss_ts_mod(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            scrub_field::PFSS_TS_MOD.start,
            &value.to_be_bytes(),
        );
    }
}

/// Scrub memory of one peer; all zero when the state has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScrubRepr {
    /// Only bit 0x0001 (timestamp modulation) is carried.
    pub pfss_flags: u16,
    /// Stashed TTL.
    pub pfss_ttl: u8,
    /// [`SCRUB_FLAG_VALID`] when the scrub data is valid.
    pub scrub_flag: u8,
    /// Timestamp modulation.
    pub pfss_ts_mod: u32,
}

impl ScrubRepr {
    /// Whether the sender had scrub data.
    pub const fn is_valid(&self) -> bool {
        self.scrub_flag & SCRUB_FLAG_VALID != 0
    }
    /// Parses.
    pub fn parse<T: AsRef<[u8]>>(v: &Scrub<T>) -> Result<ScrubRepr> {
        v.check_len()?;
        Ok(ScrubRepr {
            pfss_flags: v.pfss_flags(),
            pfss_ttl: v.pfss_ttl(),
            scrub_flag: v.scrub_flag(),
            pfss_ts_mod: v.pfss_ts_mod(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        SCRUB_LEN
    }
    /// Writes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Scrub<T>) {
        v.set_pfss_flags(self.pfss_flags);
        v.set_pfss_ttl(self.pfss_ttl);
        v.set_scrub_flag(self.scrub_flag);
        v.set_pfss_ts_mod(self.pfss_ts_mod);
    }
}

// ---------------------------------------------------------------------------
// Peer

/// Byte ranges of `pfsync_state_peer`.
pub mod peer_field {
    use core::ops::Range;
    /// Scrub data.
    pub const SCRUB: Range<usize> = 0..8;
    /// Highest sequence number sent, BE.
    pub const SEQLO: Range<usize> = 8..12;
    /// Highest ACK seen + window, BE.
    pub const SEQHI: Range<usize> = 12..16;
    /// Sequence number modulator, BE.
    pub const SEQDIFF: Range<usize> = 16..20;
    /// Largest unscaled window seen, BE.
    pub const MAX_WIN: Range<usize> = 20..22;
    /// MSS option, BE.
    pub const MSS: Range<usize> = 22..24;
    /// TCP state or UDP/other state level.
    pub const STATE: usize = 24;
    /// Window scale: low 4 bits shift, 0x80 negotiated.
    pub const WSCALE: usize = 25;
    /// Padding.
    pub const PAD: Range<usize> = 26..32;
}

view!(
    /// View of `pfsync_state_peer` (§3.6).
    Peer,
    PEER_LEN
);

impl<T: AsRef<[u8]>> Peer<T> {
    /// The scrub sub-structure.
    pub fn scrub(&self) -> Scrub<&[u8]> {
        Scrub::new_unchecked(self.buffer.as_ref().get(peer_field::SCRUB).unwrap_or(&[]))
    }
    /// `seqlo`.
    pub fn seqlo(&self) -> u32 {
        be32(self.buffer.as_ref(), peer_field::SEQLO.start)
    }
    /// `seqhi`.
    pub fn seqhi(&self) -> u32 {
        be32(self.buffer.as_ref(), peer_field::SEQHI.start)
    }
    /// `seqdiff`.
    pub fn seqdiff(&self) -> u32 {
        be32(self.buffer.as_ref(), peer_field::SEQDIFF.start)
    }
    /// `max_win`.
    pub fn max_win(&self) -> u16 {
        be16(self.buffer.as_ref(), peer_field::MAX_WIN.start)
    }
    /// `mss`.
    pub fn mss(&self) -> u16 {
        be16(self.buffer.as_ref(), peer_field::MSS.start)
    }
    /// `state`.
    pub fn state(&self) -> u8 {
        byte(self.buffer.as_ref(), peer_field::STATE)
    }
    /// `wscale`.
    pub fn wscale(&self) -> u8 {
        byte(self.buffer.as_ref(), peer_field::WSCALE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Peer<T> {
    /// The scrub sub-structure, writable.
    pub fn scrub_mut(&mut self) -> Scrub<&mut [u8]> {
        Scrub::new_unchecked(
            self.buffer
                .as_mut()
                .get_mut(peer_field::SCRUB)
                .unwrap_or(&mut []),
        )
    }
    /// Sets `seqlo`.
    pub fn set_seqlo(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            peer_field::SEQLO.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `seqhi`.
    pub fn set_seqhi(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            peer_field::SEQHI.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `seqdiff`.
    pub fn set_seqdiff(&mut self, value: u32) {
        put(
            self.buffer.as_mut(),
            peer_field::SEQDIFF.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `max_win`.
    pub fn set_max_win(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            peer_field::MAX_WIN.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `mss`.
    pub fn set_mss(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            peer_field::MSS.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `state`.
    pub fn set_state(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), peer_field::STATE, value);
    }
    /// Sets `wscale`.
    pub fn set_wscale(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), peer_field::WSCALE, value);
    }
    /// Zeroes the padding.
    pub fn clear_pad(&mut self) {
        put(self.buffer.as_mut(), peer_field::PAD.start, &[0u8; 6]);
    }
}

/// One side of a connection as pfsync carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerRepr {
    /// Scrub data (all zero if none).
    pub scrub: ScrubRepr,
    /// Highest sequence number sent.
    pub seqlo: u32,
    /// Highest ACK seen + window.
    pub seqhi: u32,
    /// Sequence number modulator.
    pub seqdiff: u32,
    /// Largest window seen, unscaled.
    pub max_win: u16,
    /// MSS option.
    pub mss: u16,
    /// TCP state (0..=12) or UDP/other level (0..=2).
    pub state: u8,
    /// Window scale (low 4 bits shift, 0x80 negotiated).
    pub wscale: u8,
}

impl PeerRepr {
    /// Parses.
    pub fn parse<T: AsRef<[u8]>>(v: &Peer<T>) -> Result<PeerRepr> {
        v.check_len()?;
        Ok(PeerRepr {
            scrub: ScrubRepr::parse(&v.scrub())?,
            seqlo: v.seqlo(),
            seqhi: v.seqhi(),
            seqdiff: v.seqdiff(),
            max_win: v.max_win(),
            mss: v.mss(),
            state: v.state(),
            wscale: v.wscale(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        PEER_LEN
    }
    /// Writes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Peer<T>) {
        self.scrub.emit(&mut v.scrub_mut());
        v.set_seqlo(self.seqlo);
        v.set_seqhi(self.seqhi);
        v.set_seqdiff(self.seqdiff);
        v.set_max_win(self.max_win);
        v.set_mss(self.mss);
        v.set_state(self.state);
        v.set_wscale(self.wscale);
        v.clear_pad();
    }
}

// ---------------------------------------------------------------------------
// Key

/// Byte ranges of `pfsync_state_key`.
pub mod key_field {
    use core::ops::Range;
    /// `addr[0]`.
    pub const ADDR0: Range<usize> = 0..16;
    /// `addr[1]`.
    pub const ADDR1: Range<usize> = 16..32;
    /// `port[0]`, network order.
    pub const PORT0: Range<usize> = 32..34;
    /// `port[1]`, network order.
    pub const PORT1: Range<usize> = 34..36;
    /// `rdomain`, BE.
    pub const RDOMAIN: Range<usize> = 36..38;
    /// `af` (2 / 24, 0 = same as the state).
    pub const AF: usize = 38;
    /// Padding.
    pub const PAD: usize = 39;
}

view!(
    /// View of `pfsync_state_key` (§3.7).
    Key,
    KEY_LEN
);

impl<T: AsRef<[u8]>> Key<T> {
    /// `addr[i]` for `i` in 0..2 (other indexes read as zero).
    pub fn addr(&self, i: usize) -> Addr {
        let start = if i == 0 {
            key_field::ADDR0.start
        } else {
            key_field::ADDR1.start
        };
        Addr(get(self.buffer.as_ref(), start))
    }
    /// `port[i]` as a host integer.
    pub fn port(&self, i: usize) -> u16 {
        let start = if i == 0 {
            key_field::PORT0.start
        } else {
            key_field::PORT1.start
        };
        be16(self.buffer.as_ref(), start)
    }
    /// `rdomain`.
    pub fn rdomain(&self) -> u16 {
        be16(self.buffer.as_ref(), key_field::RDOMAIN.start)
    }
    /// `af`.
    pub fn af(&self) -> u8 {
        byte(self.buffer.as_ref(), key_field::AF)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Key<T> {
    /// Sets `addr[i]`.
    pub fn set_addr(&mut self, i: usize, value: Addr) {
        let start = if i == 0 {
            key_field::ADDR0.start
        } else {
            key_field::ADDR1.start
        };
        put(self.buffer.as_mut(), start, &value.0);
    }
    /// Sets `port[i]` from a host integer.
    pub fn set_port(&mut self, i: usize, value: u16) {
        let start = if i == 0 {
            key_field::PORT0.start
        } else {
            key_field::PORT1.start
        };
        put(self.buffer.as_mut(), start, &value.to_be_bytes());
    }
    /// Sets `rdomain`.
    pub fn set_rdomain(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            key_field::RDOMAIN.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `af`.
    pub fn set_af(&mut self, value: u8) {
        set_byte(self.buffer.as_mut(), key_field::AF, value);
    }
    /// Zeroes the padding.
    pub fn clear_pad(&mut self) {
        set_byte(self.buffer.as_mut(), key_field::PAD, 0);
    }
}

/// A state key. Index 0 is the packet's source for an inbound state and its
/// destination for an outbound one (§3.7); this is **not** the canonical
/// lower-first order of [`FlowKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyRepr {
    /// The two addresses (IPv4 in the first 4 bytes).
    pub addr: [Addr; 2],
    /// The two ports, host integers.
    pub port: [u16; 2],
    /// Routing domain.
    pub rdomain: u16,
    /// Address family (2, 24, or 0 = the state's).
    pub af: u8,
}

impl KeyRepr {
    /// Parses.
    pub fn parse<T: AsRef<[u8]>>(v: &Key<T>) -> Result<KeyRepr> {
        v.check_len()?;
        Ok(KeyRepr {
            addr: [v.addr(0), v.addr(1)],
            port: [v.port(0), v.port(1)],
            rdomain: v.rdomain(),
            af: v.af(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        KEY_LEN
    }
    /// Writes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut Key<T>) {
        v.set_addr(0, self.addr[0]);
        v.set_addr(1, self.addr[1]);
        v.set_port(0, self.port[0]);
        v.set_port(1, self.port[1]);
        v.set_rdomain(self.rdomain);
        v.set_af(self.af);
        v.clear_pad();
    }

    /// The key as a [`FlowKey`] with the same index order (not
    /// canonicalised), `af` 0 replaced by `state_af`, and `proto`.
    pub fn to_flow_key(&self, state_af: u8, proto: u8) -> FlowKey {
        FlowKey {
            addr: self.addr,
            port: self.port,
            rdomain: self.rdomain,
            af: if self.af == 0 { state_af } else { self.af },
            proto,
        }
    }

    /// A key from a [`FlowKey`], keeping its index order.
    pub fn from_flow_key(key: &FlowKey) -> KeyRepr {
        KeyRepr {
            addr: key.addr,
            port: key.port,
            rdomain: key.rdomain,
            af: key.af,
        }
    }
}

// ---------------------------------------------------------------------------
// State

/// Byte ranges of `pfsync_state` (§3.7).
pub mod state_field {
    use core::ops::Range;
    /// State id, BE 64-bit.
    pub const ID: Range<usize> = 0..8;
    /// Bound interface name, NUL padded.
    pub const IFNAME: Range<usize> = 8..24;
    /// Wire key.
    pub const KEY0: Range<usize> = 24..64;
    /// Stack key.
    pub const KEY1: Range<usize> = 64..104;
    /// Peer that sent the first packet.
    pub const SRC: Range<usize> = 104..136;
    /// The other peer.
    pub const DST: Range<usize> = 136..168;
    /// route-to / reply-to / dup-to next hop.
    pub const RT_ADDR: Range<usize> = 168..184;
    /// Rule number, BE.
    pub const RULE: Range<usize> = 184..188;
    /// Anchor rule number, BE.
    pub const ANCHOR: Range<usize> = 188..192;
    /// Always 0xffffffff.
    pub const NAT_RULE: Range<usize> = 192..196;
    /// Age in seconds, BE.
    pub const CREATION: Range<usize> = 196..200;
    /// Seconds until expiry, BE.
    pub const EXPIRE: Range<usize> = 200..204;
    /// Packet counters [src→dst, dst→src], each BE 64-bit (hi, lo).
    pub const PACKETS: Range<usize> = 204..220;
    /// Byte counters, same encoding.
    pub const BYTES: Range<usize> = 220..236;
    /// Creator id.
    pub const CREATORID: Range<usize> = 236..240;
    /// Two signed BE 32-bit routing table ids.
    pub const RTABLEID: Range<usize> = 240..248;
    /// Scrub max-mss, BE.
    pub const MAX_MSS: Range<usize> = 248..250;
    /// Address family of the wire key.
    pub const AF: usize = 250;
    /// IP protocol of the wire key.
    pub const PROTO: usize = 251;
    /// 1 = IN, 2 = OUT.
    pub const DIRECTION: usize = 252;
    /// pflog flags.
    pub const LOG: usize = 253;
    /// 0 none, 1 route-to, 2 dup-to, 3 reply-to.
    pub const RT: usize = 254;
    /// PFTM_* index.
    pub const TIMEOUT: usize = 255;
    /// 0x04 = has source-tracking nodes.
    pub const SYNC_FLAGS: usize = 256;
    /// `updates` (0).
    pub const UPDATES: usize = 257;
    /// Scrub min-ttl.
    pub const MIN_TTL: usize = 258;
    /// set-tos value.
    pub const SET_TOS: usize = 259;
    /// State flags, BE.
    pub const STATE_FLAGS: Range<usize> = 260..262;
    /// Queueing priorities.
    pub const SET_PRIO: Range<usize> = 262..264;
}

view!(
    /// View of the packed 264-byte `pfsync_state` (§3.7).
    State,
    STATE_LEN
);

macro_rules! state_u8 {
    ($get:ident, $set:ident, $field:ident) => {
        impl<T: AsRef<[u8]>> State<T> {
            #[doc = concat!("`", stringify!($get), "`.")]
            pub fn $get(&self) -> u8 {
                byte(self.buffer.as_ref(), state_field::$field)
            }
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> State<T> {
            #[doc = concat!("Sets `", stringify!($get), "`.")]
            pub fn $set(&mut self, value: u8) {
                set_byte(self.buffer.as_mut(), state_field::$field, value);
            }
        }
    };
}

macro_rules! state_u32 {
    ($get:ident, $set:ident, $field:ident) => {
        impl<T: AsRef<[u8]>> State<T> {
            #[doc = concat!("`", stringify!($get), "`.")]
            pub fn $get(&self) -> u32 {
                be32(self.buffer.as_ref(), state_field::$field.start)
            }
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> State<T> {
            #[doc = concat!("Sets `", stringify!($get), "`.")]
            pub fn $set(&mut self, value: u32) {
                put(
                    self.buffer.as_mut(),
                    state_field::$field.start,
                    &value.to_be_bytes(),
                );
            }
        }
    };
}

state_u32!(rule, set_rule, RULE);
state_u32!(anchor, set_anchor, ANCHOR);
state_u32!(nat_rule, set_nat_rule, NAT_RULE);
state_u32!(creation, set_creation, CREATION);
state_u32!(expire, set_expire, EXPIRE);
state_u32!(creatorid, set_creatorid, CREATORID);
state_u8!(af, set_af, AF);
state_u8!(proto, set_proto, PROTO);
state_u8!(direction, set_direction, DIRECTION);
state_u8!(log, set_log, LOG);
state_u8!(rt, set_rt, RT);
state_u8!(timeout, set_timeout, TIMEOUT);
state_u8!(sync_flags, set_sync_flags, SYNC_FLAGS);
state_u8!(updates, set_updates, UPDATES);
state_u8!(min_ttl, set_min_ttl, MIN_TTL);
state_u8!(set_tos, set_set_tos, SET_TOS);

impl<T: AsRef<[u8]>> State<T> {
    /// `id`.
    pub fn id(&self) -> u64 {
        be64(self.buffer.as_ref(), state_field::ID.start)
    }
    /// `ifname`, NUL padded.
    pub fn ifname(&self) -> [u8; 16] {
        get(self.buffer.as_ref(), state_field::IFNAME.start)
    }
    /// `key[i]` (0 = wire, 1 = stack).
    pub fn key(&self, i: usize) -> Key<&[u8]> {
        let range = if i == 0 {
            state_field::KEY0
        } else {
            state_field::KEY1
        };
        Key::new_unchecked(self.buffer.as_ref().get(range).unwrap_or(&[]))
    }
    /// The source peer.
    pub fn src(&self) -> Peer<&[u8]> {
        Peer::new_unchecked(self.buffer.as_ref().get(state_field::SRC).unwrap_or(&[]))
    }
    /// The destination peer.
    pub fn dst(&self) -> Peer<&[u8]> {
        Peer::new_unchecked(self.buffer.as_ref().get(state_field::DST).unwrap_or(&[]))
    }
    /// `rt_addr`.
    pub fn rt_addr(&self) -> Addr {
        Addr(get(self.buffer.as_ref(), state_field::RT_ADDR.start))
    }
    /// `packets[i]`.
    pub fn packets(&self, i: usize) -> u64 {
        be64(
            self.buffer.as_ref(),
            state_field::PACKETS.start + 8 * (i & 1),
        )
    }
    /// `bytes[i]`.
    pub fn bytes(&self, i: usize) -> u64 {
        be64(self.buffer.as_ref(), state_field::BYTES.start + 8 * (i & 1))
    }
    /// `rtableid[i]`.
    pub fn rtableid(&self, i: usize) -> i32 {
        be32(
            self.buffer.as_ref(),
            state_field::RTABLEID.start + 4 * (i & 1),
        ) as i32
    }
    /// `max_mss`.
    pub fn max_mss(&self) -> u16 {
        be16(self.buffer.as_ref(), state_field::MAX_MSS.start)
    }
    /// `state_flags`.
    pub fn state_flags(&self) -> u16 {
        be16(self.buffer.as_ref(), state_field::STATE_FLAGS.start)
    }
    /// `set_prio`.
    pub fn set_prio(&self) -> [u8; 2] {
        get(self.buffer.as_ref(), state_field::SET_PRIO.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> State<T> {
    /// Sets `id`.
    pub fn set_id(&mut self, value: u64) {
        put(
            self.buffer.as_mut(),
            state_field::ID.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `ifname`.
    pub fn set_ifname(&mut self, value: &[u8; 16]) {
        put(self.buffer.as_mut(), state_field::IFNAME.start, value);
    }
    /// `key[i]`, writable.
    pub fn key_mut(&mut self, i: usize) -> Key<&mut [u8]> {
        let range = if i == 0 {
            state_field::KEY0
        } else {
            state_field::KEY1
        };
        Key::new_unchecked(self.buffer.as_mut().get_mut(range).unwrap_or(&mut []))
    }
    /// The source peer, writable.
    pub fn src_mut(&mut self) -> Peer<&mut [u8]> {
        Peer::new_unchecked(
            self.buffer
                .as_mut()
                .get_mut(state_field::SRC)
                .unwrap_or(&mut []),
        )
    }
    /// The destination peer, writable.
    pub fn dst_mut(&mut self) -> Peer<&mut [u8]> {
        Peer::new_unchecked(
            self.buffer
                .as_mut()
                .get_mut(state_field::DST)
                .unwrap_or(&mut []),
        )
    }
    /// Sets `rt_addr`.
    pub fn set_rt_addr(&mut self, value: Addr) {
        put(self.buffer.as_mut(), state_field::RT_ADDR.start, &value.0);
    }
    /// Sets `packets[i]`.
    pub fn set_packets(&mut self, i: usize, value: u64) {
        put(
            self.buffer.as_mut(),
            state_field::PACKETS.start + 8 * (i & 1),
            &value.to_be_bytes(),
        );
    }
    /// Sets `bytes[i]`.
    pub fn set_bytes(&mut self, i: usize, value: u64) {
        put(
            self.buffer.as_mut(),
            state_field::BYTES.start + 8 * (i & 1),
            &value.to_be_bytes(),
        );
    }
    /// Sets `rtableid[i]`.
    pub fn set_rtableid(&mut self, i: usize, value: i32) {
        put(
            self.buffer.as_mut(),
            state_field::RTABLEID.start + 4 * (i & 1),
            &value.to_be_bytes(),
        );
    }
    /// Sets `max_mss`.
    pub fn set_max_mss(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            state_field::MAX_MSS.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `state_flags`.
    pub fn set_state_flags(&mut self, value: u16) {
        put(
            self.buffer.as_mut(),
            state_field::STATE_FLAGS.start,
            &value.to_be_bytes(),
        );
    }
    /// Sets `set_prio`.
    pub fn set_set_prio(&mut self, value: [u8; 2]) {
        put(self.buffer.as_mut(), state_field::SET_PRIO.start, &value);
    }
}

/// A full state as pfsync carries it (INS, UPD, DEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StateRepr {
    /// State id.
    pub id: u64,
    /// Bound interface, NUL padded (floating states: the "all" group).
    pub ifname: [u8; 16],
    /// `[wire key, stack key]`.
    pub key: [KeyRepr; 2],
    /// Peer that sent the first packet.
    pub src: PeerRepr,
    /// The other peer.
    pub dst: PeerRepr,
    /// route-to / reply-to / dup-to next hop.
    pub rt_addr: Addr,
    /// Rule number, [`RULE_NONE`] = none.
    pub rule: u32,
    /// Anchor rule number, [`RULE_NONE`] = none.
    pub anchor: u32,
    /// Always [`RULE_NONE`] from current senders.
    pub nat_rule: u32,
    /// Age of the state in seconds.
    pub creation_s: u32,
    /// Seconds until expiry (0 if already expired).
    pub expire_s: u32,
    /// Packets `[src→dst, dst→src]`.
    pub packets: [u64; 2],
    /// Bytes `[src→dst, dst→src]`.
    pub bytes: [u64; 2],
    /// Creator's hostid.
    pub creatorid: u32,
    /// Routing table ids by key index; -1 = route normally.
    pub rtableid: [i32; 2],
    /// Scrub max-mss.
    pub max_mss: u16,
    /// Address family of the wire key (2 or 24).
    pub af: u8,
    /// IP protocol of the wire key.
    pub proto: u8,
    /// 1 = IN, 2 = OUT.
    pub direction: u8,
    /// pflog flags.
    pub log: u8,
    /// 0 none, 1 route-to, 2 dup-to, 3 reply-to.
    pub rt: u8,
    /// PFTM_* index (§3.8).
    pub timeout: u8,
    /// 0x04 = has source-tracking nodes.
    pub sync_flags: u8,
    /// 0 from current senders.
    pub updates: u8,
    /// Scrub min-ttl.
    pub min_ttl: u8,
    /// set-tos value.
    pub set_tos: u8,
    /// [`state_flags`] bits.
    pub state_flags: u16,
    /// Queueing priorities.
    pub set_prio: [u8; 2],
}

impl StateRepr {
    /// Parses.
    pub fn parse<T: AsRef<[u8]>>(v: &State<T>) -> Result<StateRepr> {
        v.check_len()?;
        Ok(StateRepr {
            id: v.id(),
            ifname: v.ifname(),
            key: [KeyRepr::parse(&v.key(0))?, KeyRepr::parse(&v.key(1))?],
            src: PeerRepr::parse(&v.src())?,
            dst: PeerRepr::parse(&v.dst())?,
            rt_addr: v.rt_addr(),
            rule: v.rule(),
            anchor: v.anchor(),
            nat_rule: v.nat_rule(),
            creation_s: v.creation(),
            expire_s: v.expire(),
            packets: [v.packets(0), v.packets(1)],
            bytes: [v.bytes(0), v.bytes(1)],
            creatorid: v.creatorid(),
            rtableid: [v.rtableid(0), v.rtableid(1)],
            max_mss: v.max_mss(),
            af: v.af(),
            proto: v.proto(),
            direction: v.direction(),
            log: v.log(),
            rt: v.rt(),
            timeout: v.timeout(),
            sync_flags: v.sync_flags(),
            updates: v.updates(),
            min_ttl: v.min_ttl(),
            set_tos: v.set_tos(),
            state_flags: v.state_flags(),
            set_prio: v.set_prio(),
        })
    }
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        STATE_LEN
    }
    /// Writes all 264 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut State<T>) {
        v.set_id(self.id);
        v.set_ifname(&self.ifname);
        self.key[0].emit(&mut v.key_mut(0));
        self.key[1].emit(&mut v.key_mut(1));
        self.src.emit(&mut v.src_mut());
        self.dst.emit(&mut v.dst_mut());
        v.set_rt_addr(self.rt_addr);
        v.set_rule(self.rule);
        v.set_anchor(self.anchor);
        v.set_nat_rule(self.nat_rule);
        v.set_creation(self.creation_s);
        v.set_expire(self.expire_s);
        v.set_packets(0, self.packets[0]);
        v.set_packets(1, self.packets[1]);
        v.set_bytes(0, self.bytes[0]);
        v.set_bytes(1, self.bytes[1]);
        v.set_creatorid(self.creatorid);
        v.set_rtableid(0, self.rtableid[0]);
        v.set_rtableid(1, self.rtableid[1]);
        v.set_max_mss(self.max_mss);
        v.set_af(self.af);
        v.set_proto(self.proto);
        v.set_direction(self.direction);
        v.set_log(self.log);
        v.set_rt(self.rt);
        v.set_timeout(self.timeout);
        v.set_sync_flags(self.sync_flags);
        v.set_updates(self.updates);
        v.set_min_ttl(self.min_ttl);
        v.set_set_tos(self.set_tos);
        v.set_state_flags(self.state_flags);
        v.set_set_prio(self.set_prio);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pfsync::wire::ifname_from_str;
    use proptest::prelude::*;

    /// The state of the spec's worked example (§7).
    pub(crate) fn example_state() -> StateRepr {
        let key = KeyRepr {
            addr: [Addr::v4([192, 0, 2, 10]), Addr::v4([198, 51, 100, 20])],
            port: [51000, 443],
            rdomain: 0,
            af: AF_INET,
        };
        StateRepr {
            id: 0x6789_0123_0000_0a2f,
            ifname: ifname_from_str("em0"),
            key: [key, key],
            src: PeerRepr {
                scrub: ScrubRepr::default(),
                seqlo: 0x1a2b_3c4d,
                seqhi: 0x1a2c_8f61,
                seqdiff: 0,
                max_win: 64240,
                mss: 1460,
                state: 4,
                wscale: 0x87,
            },
            dst: PeerRepr {
                scrub: ScrubRepr::default(),
                seqlo: 0x5e6f_7081,
                seqhi: 0x5e70_d2f9,
                seqdiff: 0,
                max_win: 502,
                mss: 1460,
                state: 4,
                wscale: 0x87,
            },
            rt_addr: Addr::ZERO,
            rule: 3,
            anchor: RULE_NONE,
            nat_rule: RULE_NONE,
            creation_s: 30,
            expire_s: 86400,
            packets: [12, 10],
            bytes: [1800, 9000],
            creatorid: 0x8f3e_21a7,
            rtableid: [-1, 0],
            max_mss: 0,
            af: AF_INET,
            proto: 6,
            direction: 1,
            log: 0,
            rt: 0,
            timeout: 2,
            sync_flags: 0,
            updates: 0,
            min_ttl: 0,
            set_tos: 0,
            state_flags: 0,
            set_prio: [0, 0],
        }
    }

    #[test]
    fn example_state_field_offsets() {
        let mut buf = [0u8; STATE_LEN];
        example_state().emit(&mut State::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[0..8], &[0x67, 0x89, 0x01, 0x23, 0, 0, 0x0a, 0x2f]);
        assert_eq!(&buf[8..12], b"em0\0");
        assert_eq!(&buf[24..28], &[192, 0, 2, 10]);
        assert_eq!(&buf[56..64], &[0xc7, 0x38, 0x01, 0xbb, 0, 0, 2, 0]);
        assert_eq!(&buf[104 + 8..104 + 12], &[0x1a, 0x2b, 0x3c, 0x4d]);
        assert_eq!(
            &buf[104 + 20..104 + 26],
            &[0xfa, 0xf0, 0x05, 0xb4, 0x04, 0x87]
        );
        assert_eq!(
            &buf[184..196],
            &[0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(&buf[196..204], &[0, 0, 0, 0x1e, 0, 1, 0x51, 0x80]);
        assert_eq!(&buf[212..220], &[0, 0, 0, 0, 0, 0, 0, 0x0a]);
        assert_eq!(
            &buf[236..248],
            &[0x8f, 0x3e, 0x21, 0xa7, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(&buf[248..256], &[0, 0, 2, 6, 1, 0, 0, 2]);
        let back = StateRepr::parse(&State::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(back, example_state());
        assert!(State::new_checked(&buf[..263]).is_err());
    }

    #[test]
    fn key_converts_to_flow_key_with_state_af() {
        let mut k = example_state().key[0];
        k.af = 0;
        let fk = k.to_flow_key(AF_INET6, 17);
        assert_eq!(fk.af, AF_INET6);
        assert_eq!(fk.proto, 17);
        assert_eq!(fk.port, [51000, 443]);
        assert_eq!(KeyRepr::from_flow_key(&fk).af, AF_INET6);
    }

    fn arb_addr() -> impl Strategy<Value = Addr> {
        any::<[u8; 16]>().prop_map(Addr)
    }

    fn arb_peer() -> impl Strategy<Value = PeerRepr> {
        (
            (any::<u16>(), any::<u8>(), any::<u8>(), any::<u32>()),
            (any::<u32>(), any::<u32>(), any::<u32>()),
            (any::<u16>(), any::<u16>(), any::<u8>(), any::<u8>()),
        )
            .prop_map(|(s, q, w)| PeerRepr {
                scrub: ScrubRepr {
                    pfss_flags: s.0,
                    pfss_ttl: s.1,
                    scrub_flag: s.2,
                    pfss_ts_mod: s.3,
                },
                seqlo: q.0,
                seqhi: q.1,
                seqdiff: q.2,
                max_win: w.0,
                mss: w.1,
                state: w.2,
                wscale: w.3,
            })
    }

    fn arb_key() -> impl Strategy<Value = KeyRepr> {
        (
            arb_addr(),
            arb_addr(),
            any::<[u16; 2]>(),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(a0, a1, port, rdomain, af)| KeyRepr {
                addr: [a0, a1],
                port,
                rdomain,
                af,
            })
    }

    pub(crate) fn arb_state() -> impl Strategy<Value = StateRepr> {
        (
            (any::<u64>(), any::<[u8; 16]>(), arb_key(), arb_key()),
            (arb_peer(), arb_peer(), arb_addr()),
            (
                any::<[u32; 5]>(),
                any::<[u64; 2]>(),
                any::<[u64; 2]>(),
                any::<u32>(),
            ),
            (any::<[i32; 2]>(), any::<u16>(), any::<[u8; 10]>()),
            (any::<u16>(), any::<[u8; 2]>()),
        )
            .prop_map(|(a, b, c, d, e)| StateRepr {
                id: a.0,
                ifname: a.1,
                key: [a.2, a.3],
                src: b.0,
                dst: b.1,
                rt_addr: b.2,
                rule: c.0[0],
                anchor: c.0[1],
                nat_rule: c.0[2],
                creation_s: c.0[3],
                expire_s: c.0[4],
                packets: c.1,
                bytes: c.2,
                creatorid: c.3,
                rtableid: d.0,
                max_mss: d.1,
                af: d.2[0],
                proto: d.2[1],
                direction: d.2[2],
                log: d.2[3],
                rt: d.2[4],
                timeout: d.2[5],
                sync_flags: d.2[6],
                updates: d.2[7],
                min_ttl: d.2[8],
                set_tos: d.2[9],
                state_flags: e.0,
                set_prio: e.1,
            })
    }

    proptest! {
        #[test]
        fn state_parse_emit_round_trip(s in arb_state()) {
            let mut buf = [0u8; STATE_LEN];
            s.emit(&mut State::new_unchecked(&mut buf[..]));
            let back = StateRepr::parse(&State::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn state_emit_parse_preserves_all_but_padding(bytes in proptest::collection::vec(any::<u8>(), STATE_LEN)) {
            let r = StateRepr::parse(&State::new_checked(&bytes[..]).unwrap()).unwrap();
            let mut out = [0u8; STATE_LEN];
            r.emit(&mut State::new_unchecked(&mut out[..]));
            let mut expected = bytes.clone();
            // Padding bytes: key pads, peer pads.
            for base in [24usize, 64] { expected[base + 39] = 0; }
            for base in [104usize, 136] { for b in &mut expected[base + 26..base + 32] { *b = 0; } }
            prop_assert_eq!(&out[..], &expected[..]);
        }

        #[test]
        fn peer_and_key_round_trip(p in arb_peer(), k in arb_key()) {
            let mut buf = [0u8; PEER_LEN];
            p.emit(&mut Peer::new_unchecked(&mut buf[..]));
            prop_assert_eq!(PeerRepr::parse(&Peer::new_unchecked(&buf[..])), Ok(p));
            let mut kb = [0u8; KEY_LEN];
            k.emit(&mut Key::new_unchecked(&mut kb[..]));
            prop_assert_eq!(KeyRepr::parse(&Key::new_unchecked(&kb[..])), Ok(k));
        }

        #[test]
        fn short_buffers_are_rejected_not_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..STATE_LEN)) {
            prop_assert!(State::new_checked(&bytes[..]).is_err());
            let v = State::new_unchecked(&bytes[..]);
            // Unchecked getters on a short buffer must not panic either.
            let _ = (v.id(), v.state_flags(), v.src().seqlo(), v.key(1).af());
        }
    }
}
