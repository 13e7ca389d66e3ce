//! pf's stateless SYN cookies (`set syncookies`, OpenBSD
//! `pf_syncookies.c`): the mode and its adaptive hysteresis, the keyed MAC
//! that makes a cookie, its validation, and the server-side handshake step
//! that turns a cookie's state into an established, sequence-translated
//! one.
//!
//! ```text
//! client                     dpf                          server
//!   SYN isn ───────────────►  cookies active: no state
//!   ◄──────── SYN-ACK cookie  (ISN = MAC(4-tuple, isn, byte) | byte)
//!   ACK isn+1, cookie+1 ────► MAC checks out: rules see the recreated
//!                             SYN, the state is created (src PROXY_DST)
//!                             SYN isn (+src.seqdiff), MSS ─────────────►
//!                             ◄────────────────────── SYN-ACK sisn, isn+1
//!                             ACK ─────────────────────────────────────►
//!                             both ESTABLISHED, dst.seqdiff = cookie - sisn
//!   ◄─────── data both ways, the server's numbers shifted by dst.seqdiff ─►
//! ```
//!
//! The cookie byte is pf's `union pf_syncookie`: bit 0 the key parity
//! (`oddeven`), bit 1 SACK (always 0: dpf's SYN-ACK offers no SACK),
//! bits 2-4 the window scale index (always 0: no window scaling), bits 5-7
//! the MSS index into pf's table. The upper 24 bits are the SipHash-2-4 of
//! both addresses, both ports, the client's ISN and the byte.
//!
//! Keys: one per 15-second epoch (pf's `PF_SYNCOOKIE_SECRET_LIFETIME`),
//! derived from the process's flow hash secret ([`crate::flow::hash_secret`],
//! drawn from the OS RNG at start) and the epoch number, so every worker
//! agrees without sharing anything mutable. A cookie names its epoch's
//! parity; the current and the previous epoch are accepted (pf's two keys),
//! so a cookie lives 15 to 30 seconds. A worker caches both keys and
//! derives new ones once per epoch, never per packet.
//!
//! Invariants: everything is a pure function of its arguments (the keys of
//! an epoch, the packet summary, the state); nothing allocates.

use crate::flow::{tcp_flags, Addr, PacketInfo, TcpInfo};
use crate::state::entry::{tcps, State};
use crate::timeouts::TimeoutClass;

/// pf's MSS table (`pf_syncookie_msstab`): the cookie carries the index of
/// the largest entry not above the client's MSS.
pub const MSS_TABLE: [u16; 8] = [216, 536, 1200, 1360, 1400, 1440, 1452, 1460];

/// Seconds a key is current (pf's `PF_SYNCOOKIE_SECRET_LIFETIME`).
pub const KEY_LIFETIME_S: u64 = 15;

/// The window dpf's SYN-ACK advertises (unscaled; no window scale
/// option is offered).
pub const SYNACK_WINDOW: u16 = 65535;

/// `set syncookies` (pf's default: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Never answer SYNs with cookies.
    #[default]
    Never,
    /// Answer every SYN that would create a state with a cookie.
    Always,
    /// On when the state table fill passes `start`, off again below `end`
    /// (both in hundredths of a percent of `set limit states`).
    Adaptive {
        /// Fill (0.01 %) at which cookies turn on.
        start_cpct: u32,
        /// Fill (0.01 %) below which they turn off.
        end_cpct: u32,
    },
}

impl Mode {
    /// pf's defaults for `set syncookies adaptive` without a range:
    /// start 25 %, end 12.5 % (`PF_SYNCOOKIES_HIWATPCT`, half of it).
    pub const ADAPTIVE_DEFAULT: Mode = Mode::Adaptive {
        start_cpct: 2500,
        end_cpct: 1250,
    };

    /// Whether cookies are on, given whether they were (`active`), the
    /// states in the box and its limit (pf's `pf_synflood_check`).
    #[inline]
    pub fn active(self, active: bool, states: usize, limit: u32) -> bool {
        match self {
            Mode::Never => false,
            Mode::Always => true,
            Mode::Adaptive {
                start_cpct,
                end_cpct,
            } => {
                // states / limit compared with cpct / 10000, in integers.
                let fill = states as u64 * 10_000;
                let limit = u64::from(limit.max(1));
                if active {
                    fill >= u64::from(end_cpct) * limit
                } else {
                    fill > u64::from(start_cpct) * limit
                }
            }
        }
    }

    /// Whether returning cookies are checked at all.
    #[inline]
    pub fn enabled(self) -> bool {
        self != Mode::Never
    }
}

/// SipHash-2-4 (Aumasson, Bernstein) of six 64-bit words (a 48-byte
/// message) under `key`.
#[inline]
pub fn siphash24(key: (u64, u64), words: &[u64; 6]) -> u64 {
    let mut v0 = key.0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = key.1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = key.0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = key.1 ^ 0x7465_6462_7974_6573;
    #[inline(always)]
    fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }
    let last = (words.len() as u64 * 8) << 56;
    for &m in words.iter().chain(core::iter::once(&last)) {
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    v2 ^= 0xff;
    for _ in 0..4 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

/// The keys of the current and the previous epoch, cached by a worker.
#[derive(Clone, Copy, Debug)]
pub struct CookieKeys {
    epoch: u64,
    current: (u64, u64),
    previous: (u64, u64),
}

/// A domain word so that cookie keys never equal a flow hash.
const KEY_DOMAIN: u64 = 0x7066_5f73_796e_636b; // "pf_synck"

fn epoch_key(secret: &crate::flow::HashSecret, epoch: u64) -> (u64, u64) {
    let s = secret.0;
    let master = (s[0] ^ s[2].rotate_left(17), s[1] ^ s[3].rotate_left(29));
    (
        siphash24(master, &[KEY_DOMAIN, epoch, s[4], s[5], 0, 0]),
        siphash24(master, &[KEY_DOMAIN, epoch, s[4], s[5], 1, 0]),
    )
}

impl CookieKeys {
    /// The keys for the epoch of `now_s` under the process's secret.
    pub fn new(now_s: u64) -> CookieKeys {
        Self::with_secret(&crate::flow::hash_secret(), now_s)
    }

    /// The keys for the epoch of `now_s` under `secret` (tests).
    pub fn with_secret(secret: &crate::flow::HashSecret, now_s: u64) -> CookieKeys {
        let epoch = now_s / KEY_LIFETIME_S;
        CookieKeys {
            epoch,
            current: epoch_key(secret, epoch),
            previous: epoch_key(secret, epoch.wrapping_sub(1)),
        }
    }

    /// Moves to the epoch of `now_s` (pf's rotation), deriving keys only
    /// when the epoch changed.
    #[inline]
    pub fn rotate(&mut self, now_s: u64) {
        if now_s / KEY_LIFETIME_S != self.epoch {
            *self = CookieKeys::new(now_s);
        }
    }

    fn key_for_parity(&self, odd: bool) -> (u64, u64) {
        if odd == (self.epoch & 1 == 1) {
            self.current
        } else {
            self.previous
        }
    }
}

fn mac(key: (u64, u64), pkt: &PacketInfo, isn: u32, byte: u8) -> u32 {
    let w = |a: &Addr, half: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&a.0[half * 8..half * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let ports = u64::from(pkt.sport) << 48 | u64::from(pkt.dport) << 32 | u64::from(isn);
    let meta = u64::from(byte) << 8 | pkt.af as u64;
    let words = [
        w(&pkt.src, 0),
        w(&pkt.src, 1),
        w(&pkt.dst, 0),
        w(&pkt.dst, 1),
        ports,
        meta,
    ];
    siphash24(key, &words) as u32
}

/// The cookie ISN for the SYN `pkt` (client to server, `syn` its TCP
/// fields) under the current key (pf's `pf_syncookie_generate`).
#[inline]
pub fn generate(keys: &CookieKeys, pkt: &PacketInfo, syn: &TcpInfo) -> u32 {
    let mss = syn.mss.unwrap_or(536);
    let idx = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8;
    let byte = idx << 5 | (keys.epoch & 1) as u8;
    (mac(keys.current, pkt, syn.seq, byte) & !0xff) | u32::from(byte)
}

/// The MSS a returning ACK's cookie carries, or `None` if `ack` (client to
/// server) does not acknowledge a cookie of the current or the previous
/// key (pf's `pf_syncookie_validate`).
#[inline]
pub fn validate(keys: &CookieKeys, pkt: &PacketInfo, ack: &TcpInfo) -> Option<u16> {
    let cookie = ack.ack.wrapping_sub(1);
    let isn = ack.seq.wrapping_sub(1);
    let byte = cookie as u8;
    if byte & 0x1e != 0 {
        return None;
    }
    let key = keys.key_for_parity(byte & 1 == 1);
    (mac(key, pkt, isn, byte) & !0xff == cookie & !0xff).then_some(MSS_TABLE[(byte >> 5) as usize])
}

/// The flags of an ACK that may return a cookie: ACK, no SYN/RST/FIN.
#[inline]
pub fn is_cookie_ack(t: &TcpInfo) -> bool {
    t.flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST | tcp_flags::FIN) == tcp_flags::ACK
}

/// The SYN pf recreates from a valid cookie ACK: what the client sent
/// first, with the MSS the cookie carries (rules and state creation see
/// this).
#[inline]
pub fn recreate_syn(ack: &TcpInfo, mss: u16) -> TcpInfo {
    TcpInfo {
        seq: ack.seq.wrapping_sub(1),
        ack: 0,
        win: ack.win,
        flags: tcp_flags::SYN,
        wscale: None,
        mss: Some(mss),
        sack_permitted: false,
        timestamp: None,
        payload_len: 0,
    }
}

/// Puts a state just created from a recreated SYN into pf's
/// `PF_TCPS_PROXY_DST`: the client is established with dpf, the server
/// not yet; the cookie (the ISN the client got) is kept in `src.seqhi`, as
/// pf keeps its own ISN there. Returns the sequence number of the SYN dpf
/// sends the server (the client's ISN shifted by its modulator).
#[inline]
pub fn start_proxy_dst(st: &mut State, ack: &TcpInfo, cookie_mss: u16) -> u32 {
    st.src.state = tcps::PROXY_DST;
    st.src.seqhi = ack.ack.wrapping_sub(1);
    st.src.max_win = ack.win.max(1);
    st.src.mss = cookie_mss;
    st.src.wscale = 0;
    st.src.seqlo.wrapping_add(st.src.seqdiff)
}

/// pf's `synproxy state` on the initial SYN: the state (just created from
/// it) goes to `PF_TCPS_PROXY_SRC`, the firewall's ISN `isn` kept in
/// `src.seqhi`, the MSS the SYN-ACK offers (the client's) in `src.mss`.
#[inline]
pub fn start_proxy_src(st: &mut State, syn: &TcpInfo, isn: u32, v6: bool) -> u16 {
    st.src.state = tcps::PROXY_SRC;
    st.src.seqhi = isn;
    let mss = syn.mss.unwrap_or(if v6 { 1220 } else { 536 }).max(1);
    st.src.mss = mss;
    st.src.wscale = 0;
    mss
}

/// pf's `pf_synproxy` in `PF_TCPS_PROXY_SRC`: the client's SYN again is
/// answered again; its ACK of the firewall's ISN moves the state to
/// `PROXY_DST` and opens the server side; everything else is dropped.
pub fn proxy_src_step(st: &mut State, t: &TcpInfo, from_src: bool) -> ProxyStep {
    let (syn, ack) = (tcp_flags::SYN, tcp_flags::ACK);
    if !from_src || t.flags & tcp_flags::RST != 0 {
        return ProxyStep::Drop;
    }
    if t.flags & (syn | ack) == syn && t.seq == st.src.seqlo {
        return ProxyStep::SynAckAgain {
            isn: st.src.seqhi,
            mss: st.src.mss,
        };
    }
    if is_cookie_ack(t)
        && t.seq == st.src.seqlo.wrapping_add(1)
        && t.ack == st.src.seqhi.wrapping_add(1)
    {
        let mss = st.src.mss;
        return ProxyStep::ResendSyn {
            seq: start_proxy_dst(st, t, mss),
        };
    }
    ProxyStep::Drop
}

/// What to do with a packet of a state in `PROXY_SRC` or `PROXY_DST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyStep {
    /// The server's SYN-ACK: answer it with this ACK (seq, ack, window);
    /// the state is now established both ways.
    AckServer {
        /// Sequence number (server's view).
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Window (the client's, unscaled).
        win: u16,
    },
    /// `PROXY_SRC`: the client's SYN again; answer it again with this ISN
    /// and MSS.
    SynAckAgain {
        /// The firewall's ISN.
        isn: u32,
        /// MSS offered.
        mss: u16,
    },
    /// Send the server the SYN with this sequence number: the client's
    /// handshake ACK moved `PROXY_SRC` to `PROXY_DST`, or came again (the
    /// SYN or the server's answer was lost).
    ResendSyn {
        /// Sequence number (server's view).
        seq: u32,
    },
    /// The server answered dpf's SYN with an RST: send the client this
    /// RST (its view of the numbers) and remove the state.
    ResetClient {
        /// Sequence number (the client's view: the ISN it got, plus one).
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
    },
    /// Anything else while the server has not answered (pf:
    /// `PFRES_SYNPROXY`).
    Drop,
}

/// pf's `pf_synproxy` in `PF_TCPS_PROXY_DST` for the server's answer:
/// the SYN-ACK that acknowledges dpf's SYN establishes the state
/// (sequence translation for the server's numbers, windows, no scaling);
/// an RST that acknowledges it resets the client; the client's handshake
/// ACK again sends the SYN again; everything else is dropped.
pub fn proxy_dst_step(st: &mut State, t: &TcpInfo, from_src: bool) -> ProxyStep {
    let synack = tcp_flags::SYN | tcp_flags::ACK;
    let cookie = st.src.seqhi;
    if from_src {
        return if is_cookie_ack(t)
            && t.seq == st.src.seqlo.wrapping_add(1)
            && t.ack == cookie.wrapping_add(1)
        {
            ProxyStep::ResendSyn {
                seq: st.src.seqlo.wrapping_add(st.src.seqdiff),
            }
        } else {
            ProxyStep::Drop
        };
    }
    let acks_our_syn = t.flags & tcp_flags::ACK != 0
        && t.ack.wrapping_sub(st.src.seqdiff) == st.src.seqlo.wrapping_add(1);
    if t.flags & tcp_flags::RST != 0 {
        // The server refuses the connection dpf opened: the client, whose
        // handshake dpf completed, is reset in its numbers (pf leaves the
        // client waiting until the state times out).
        return if acks_our_syn {
            ProxyStep::ResetClient {
                seq: cookie.wrapping_add(1),
                ack: st.src.seqlo.wrapping_add(1),
            }
        } else {
            ProxyStep::Drop
        };
    }
    if t.flags & synack != synack || !acks_our_syn {
        return ProxyStep::Drop;
    }
    st.dst.max_win = t.win.max(1);
    st.dst.seqlo = t.seq;
    st.dst.mss = t.mss.unwrap_or(0);
    st.dst.seqdiff = cookie.wrapping_sub(t.seq);
    st.src.seqhi = st.src.seqlo.wrapping_add(u32::from(st.dst.max_win));
    st.dst.seqhi = st.dst.seqlo.wrapping_add(u32::from(st.src.max_win));
    st.src.wscale = 0;
    st.dst.wscale = 0;
    st.src.state = tcps::ESTABLISHED;
    st.dst.state = tcps::ESTABLISHED;
    st.timeout = TimeoutClass::TcpEstablished;
    ProxyStep::AckServer {
        seq: t.ack,
        ack: t.seq.wrapping_add(1),
        win: st.src.max_win,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{proto, Af, Direction, IfIndex, L4Info};

    fn pkt(seq: u32, ack: u32, flags: u8) -> (PacketInfo, TcpInfo) {
        let t = TcpInfo {
            seq,
            ack,
            win: 29200,
            flags,
            mss: Some(1460),
            ..TcpInfo::default()
        };
        let p = PacketInfo {
            af: Af::Inet,
            proto: proto::TCP,
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 1, 1]),
            sport: 40000,
            dport: 80,
            ip_len: 40,
            ttl: 64,
            l4: L4Info::Tcp(t),
            ifindex: IfIndex(0),
            dir: Direction::In,
        };
        (p, t)
    }

    #[test]
    fn siphash_reference_vector() {
        // SipHash-2-4 of bytes 0..47 under key 00..0f (the reference
        // implementation's vectors.h, entry 48, read as a little-endian
        // word).
        let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let mut words = [0u64; 6];
        for (i, w) in words.iter_mut().enumerate() {
            let b: [u8; 8] = core::array::from_fn(|j| (i * 8 + j) as u8);
            *w = u64::from_le_bytes(b);
        }
        assert_eq!(siphash24(key, &words), 0xe612_a3cb_9ecb_a951);
    }

    #[test]
    fn a_cookie_validates_for_its_connection_only() {
        let secret = crate::flow::HashSecret::DEFAULT;
        let keys = CookieKeys::with_secret(&secret, 1000);
        let (p, syn) = pkt(7777, 0, tcp_flags::SYN);
        let cookie = generate(&keys, &p, &syn);
        let (pa, ack) = pkt(7778, cookie.wrapping_add(1), tcp_flags::ACK);
        assert_eq!(validate(&keys, &pa, &ack), Some(1460));
        // Wrong cookie, wrong ISN, other port: refused.
        let (_, bad) = pkt(7778, cookie.wrapping_add(0x101), tcp_flags::ACK);
        assert_eq!(validate(&keys, &pa, &bad), None);
        let (_, bad) = pkt(7779, cookie.wrapping_add(1), tcp_flags::ACK);
        assert_eq!(validate(&keys, &pa, &bad), None);
        let mut other = pa;
        other.sport = 40001;
        assert_eq!(validate(&keys, &other, &ack), None);
        // Still good one epoch later, not two (pf's two keys).
        let next = CookieKeys::with_secret(&secret, 1000 + KEY_LIFETIME_S);
        assert_eq!(validate(&next, &pa, &ack), Some(1460));
        let later = CookieKeys::with_secret(&secret, 1000 + 2 * KEY_LIFETIME_S);
        assert_eq!(validate(&later, &pa, &ack), None);
        // Another secret: refused.
        let mut s2 = secret;
        s2.0[0] ^= 1;
        let k2 = CookieKeys::with_secret(&s2, 1000);
        assert_eq!(validate(&k2, &pa, &ack), None);
    }

    #[test]
    fn mss_is_rounded_down_to_the_table() {
        let keys = CookieKeys::with_secret(&crate::flow::HashSecret::DEFAULT, 5);
        for (mss, want) in [
            (1460, 1460),
            (1400, 1400),
            (1300, 1200),
            (100, 216),
            (9000, 1460),
        ] {
            let (p, mut syn) = pkt(1, 0, tcp_flags::SYN);
            syn.mss = Some(mss);
            let c = generate(&keys, &p, &syn);
            let (_, ack) = pkt(2, c.wrapping_add(1), tcp_flags::ACK);
            assert_eq!(validate(&keys, &p, &ack), Some(want), "mss {mss}");
        }
    }

    #[test]
    fn adaptive_has_hysteresis() {
        let m = Mode::Adaptive {
            start_cpct: 2500,
            end_cpct: 1250,
        };
        assert!(!m.active(false, 250, 1000));
        assert!(m.active(false, 251, 1000));
        assert!(m.active(true, 125, 1000));
        assert!(!m.active(true, 124, 1000));
        assert!(Mode::Always.active(false, 0, 1000));
        assert!(!Mode::Never.active(true, 1000, 1000));
    }

    fn parse(text: &str) -> Result<Mode, String> {
        let env = crate::rules::RuleEnv {
            interfaces: &[("lan0", crate::flow::IfIndex(0))],
            self_addrs: &[],
            names: &[],
        };
        crate::rules::Ruleset::compile(text, "t.conf", &env)
            .map(|r| r.options.syncookies)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn set_syncookies_parses_as_pfctl() {
        assert_eq!(parse("pass\n"), Ok(Mode::Never));
        assert_eq!(parse("set syncookies never\n"), Ok(Mode::Never));
        assert_eq!(parse("set syncookies always\n"), Ok(Mode::Always));
        assert_eq!(
            parse("set syncookies adaptive\n"),
            Ok(Mode::ADAPTIVE_DEFAULT)
        );
        assert_eq!(
            parse("set syncookies adaptive (start 25%, end 12.5%)\n"),
            Ok(Mode::Adaptive {
                start_cpct: 2500,
                end_cpct: 1250
            })
        );
        assert_eq!(
            parse("set syncookies adaptive (end 5%, start 100%)\n"),
            Ok(Mode::Adaptive {
                start_cpct: 10_000,
                end_cpct: 500
            })
        );
        for (bad, why) in [
            ("set syncookies sometimes\n", "unknown syncookies mode"),
            ("set syncookies adaptive (start 25%)\n", "needs both"),
            (
                "set syncookies adaptive (start 10%, end 20%)\n",
                "must not be above",
            ),
            (
                "set syncookies adaptive (start 101%, end 1%)\n",
                "not a percentage",
            ),
            (
                "set syncookies adaptive (start 25, end 1%)\n",
                "not a percentage",
            ),
            (
                "set syncookies adaptive (start 2.555%, end 1%)\n",
                "not a percentage",
            ),
            (
                "set syncookies adaptive (start 25%, start 20%)\n",
                "redefined",
            ),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("t.conf:1:"), "{bad}: {e}");
        }
    }

    #[test]
    fn synproxy_state_is_refused_where_it_cannot_proxy() {
        let env = crate::rules::RuleEnv {
            interfaces: &[("lan0", crate::flow::IfIndex(0))],
            self_addrs: &[],
            names: &[],
        };
        let compile = |t: &str| crate::rules::Ruleset::compile(t, "t.conf", &env);
        assert!(compile("pass in proto tcp synproxy state\n").is_ok());
        assert!(compile("pass in synproxy state\n").is_ok());
        assert!(compile("pass in proto { udp tcp } synproxy state\n").is_ok());
        let e = compile("pass in proto udp synproxy state\n")
            .expect_err("udp")
            .to_string();
        assert!(
            e.contains("t.conf:1:19") && e.contains("not supported"),
            "{e}"
        );
    }

    /// A state as `synproxy state` leaves it after the client's ACK:
    /// client ISN 1000, dpf's ISN 5000 in `src.seqhi`, `PROXY_DST`.
    fn proxy_dst_state() -> State {
        let (p, _) = pkt(1000, 0, tcp_flags::SYN);
        let (k, sw) = p.key();
        let mut st = State::new(k, sw, 1, 1, crate::time::Instant::from_secs(1));
        st.src.seqlo = 1000;
        st.src.state = tcps::PROXY_DST;
        st.src.seqhi = 5000;
        st.src.max_win = 29200;
        st
    }

    #[test]
    fn the_servers_synack_establishes_with_the_offset_and_an_rst_resets_the_client() {
        let mut st = proxy_dst_state();
        let (_, wrong) = pkt(9000, 1002, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(proxy_dst_step(&mut st, &wrong, false), ProxyStep::Drop);
        let (_, rst) = pkt(0, 1001, tcp_flags::RST | tcp_flags::ACK);
        assert_eq!(
            proxy_dst_step(&mut st, &rst, false),
            ProxyStep::ResetClient {
                seq: 5001,
                ack: 1001
            }
        );
        let (_, synack) = pkt(9000, 1001, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(
            proxy_dst_step(&mut st, &synack, false),
            ProxyStep::AckServer {
                seq: 1001,
                ack: 9001,
                win: 29200
            }
        );
        assert_eq!(
            (st.src.state, st.dst.state),
            (tcps::ESTABLISHED, tcps::ESTABLISHED)
        );
        assert_eq!({ st.dst.seqdiff }, 5000u32.wrapping_sub(9000));
        assert_eq!({ st.src.seqdiff }, 0);
    }
}
