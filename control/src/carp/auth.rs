//! CARP authentication: HMAC-SHA1 exactly as OpenBSD computes it
//! (`spec/carp.md` §3).
//!
//! Owns the passphrase → key derivation ([`Key`], §3.1), the construction of
//! the authenticated byte string (§3.2) and the two digest contexts
//! `NOV6LL` (sent) and `ORIG` (also accepted) of §3.3, and the per-VHID
//! replay cookie ([`new_cookie`], §3.4).
//!
//! Invariants: an [`AuthContext`] is prepared once per configuration change
//! (key, VHID, addresses, lladdr) and holds the HMAC state up to, but
//! excluding, the counter; per packet only the 8 counter bytes and the
//! finalisation are computed, with no allocation. Verification is constant
//! time (via `hmac`'s `verify_slice`).

use std::net::{Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::wire::{virtual_mac, MacAddr, CARP_ADVERTISEMENT, CARP_VERSION};

type HmacSha1 = Hmac<Sha1>;

/// Length of the key buffer (§3.1).
pub const KEY_LEN: usize = 20;
/// Length of the digest.
pub const MD_LEN: usize = 20;

/// The 20-byte CARP key (§3.1): the first ≤19 passphrase bytes, zero-padded.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Key([u8; KEY_LEN]);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Derives the key as `ifconfig carpN pass <passphrase>` does (§3.1):
    /// bytes copied as-is, truncated to 19 (the 20th byte is the NUL), no
    /// hashing. An empty passphrase gives the all-zero key.
    pub fn from_passphrase(passphrase: &[u8]) -> Key {
        let mut key = [0u8; KEY_LEN];
        let n = passphrase.len().min(KEY_LEN - 1);
        key[..n].copy_from_slice(&passphrase[..n]);
        Key(key)
    }

    /// The raw 20 key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Whether an IPv6 address is "scoped" in the BSD sense (§3.2): link-local
/// unicast `fe80::/10`, or multicast of interface-local or link-local scope.
fn is_scoped_v6(a: &[u8; 16]) -> bool {
    let link_local = a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
    let mc_scoped = a[0] == 0xff && matches!(a[1] & 0x0f, 0x01 | 0x02);
    link_local || mc_scoped
}

/// Decides the lladdr rule of §3.2: the carp lladdr is authenticated only
/// for the leader VHID, when the lladdr is neither the leader's virtual MAC
/// nor the parent's real MAC.
pub fn hmac_lladdr(
    is_leader: bool,
    leader_vhid: u8,
    lladdr: MacAddr,
    parent_mac: MacAddr,
) -> Option<MacAddr> {
    (is_leader && lladdr != virtual_mac(leader_vhid) && lladdr != parent_mac).then_some(lladdr)
}

/// Feeds IPv4 addresses ascending by numeric value, each once, never
/// `0.0.0.0` nor `255.255.255.255` (the strict-bound selection of §3.2).
/// Quadratic but allocation-free; runs only at configuration time.
fn feed_v4(mac: &mut HmacSha1, addrs: &[Ipv4Addr]) {
    let mut last: u32 = 0;
    loop {
        let mut cur = u32::MAX;
        let mut found = false;
        for a in addrs {
            let v = u32::from(*a);
            if v > last && v < cur {
                cur = v;
                found = true;
            }
        }
        if !found {
            break;
        }
        mac.update(&cur.to_be_bytes());
        last = cur;
    }
}

/// Feeds IPv6 addresses ascending by bytes, each once, never `::` nor
/// all-ones (§3.2). Scoped addresses are fed with bytes 2–3 zeroed when
/// `with_scoped` (the ORIG context) and skipped otherwise (NOV6LL).
fn feed_v6(mac: &mut HmacSha1, addrs: &[Ipv6Addr], with_scoped: bool) {
    let normalise = |a: &Ipv6Addr| -> Option<[u8; 16]> {
        let mut o = a.octets();
        if is_scoped_v6(&o) {
            if !with_scoped {
                return None;
            }
            o[2] = 0;
            o[3] = 0;
        }
        Some(o)
    };
    let mut last = [0u8; 16];
    loop {
        let mut cur = [0xffu8; 16];
        let mut found = false;
        for o in addrs.iter().filter_map(normalise) {
            if o > last && o < cur {
                cur = o;
                found = true;
            }
        }
        if !found {
            break;
        }
        mac.update(&cur);
        last = cur;
    }
}

/// What a VHID authenticates (§3.2), borrowed from its configuration.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The VHID.
    pub vhid: u8,
    /// The carp lladdr when the lladdr rule applies (see [`hmac_lladdr`]).
    pub lladdr: Option<MacAddr>,
    /// Every IPv4 address of the carp interface (any order, duplicates ok).
    pub v4: &'a [Ipv4Addr],
    /// Every IPv6 address of the carp interface, link-local included.
    pub v6: &'a [Ipv6Addr],
}

/// The prepared HMAC states of one VHID (§3.3): everything up to the
/// counter, for both the `NOV6LL` and the `ORIG` address sets.
#[derive(Clone)]
pub struct AuthContext {
    nov6ll: HmacSha1,
    orig: HmacSha1,
}

impl core::fmt::Debug for AuthContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AuthContext(..)")
    }
}

impl AuthContext {
    /// Prepares both contexts (OpenBSD's `carp_hmac_prepare`).
    pub fn new(key: &Key, input: &AuthInput<'_>) -> AuthContext {
        let prepare = |with_scoped: bool| {
            // A 20-byte key is always accepted by HMAC; fall back to the
            // zero key rather than panic should that ever change.
            let mut mac = HmacSha1::new_from_slice(key.as_bytes())
                .unwrap_or_else(|_| HmacSha1::new(&Default::default()));
            mac.update(&[CARP_VERSION, CARP_ADVERTISEMENT]);
            if let Some(ll) = input.lladdr {
                mac.update(&ll);
            }
            mac.update(&[input.vhid]);
            feed_v4(&mut mac, input.v4);
            feed_v6(&mut mac, input.v6, with_scoped);
            mac
        };
        AuthContext {
            nov6ll: prepare(false),
            orig: prepare(true),
        }
    }

    /// The digest to send for `counter` (the 8 header bytes): the NOV6LL
    /// context (§3.3).
    pub fn generate(&self, counter: &[u8; 8]) -> [u8; MD_LEN] {
        let mut mac = self.nov6ll.clone();
        mac.update(counter);
        mac.finalize().into_bytes().into()
    }

    /// The ORIG digest (link-local IPv6 included); for tests and diagnostics.
    pub fn generate_orig(&self, counter: &[u8; 8]) -> [u8; MD_LEN] {
        let mut mac = self.orig.clone();
        mac.update(counter);
        mac.finalize().into_bytes().into()
    }

    /// Verifies a received digest against both contexts, constant time
    /// each; accepts if either matches (§3.3).
    pub fn verify(&self, counter: &[u8; 8], md: &[u8; MD_LEN]) -> bool {
        let mut a = self.nov6ll.clone();
        a.update(counter);
        let mut b = self.orig.clone();
        b.update(counter);
        let ok_nov6ll = a.verify_slice(md).is_ok();
        let ok_orig = b.verify_slice(md).is_ok();
        ok_nov6ll | ok_orig
    }
}

/// A fresh per-VHID replay cookie (§3.4): 8 random bytes, never zero.
pub fn new_cookie<R: rand::RngCore + ?Sized>(rng: &mut R) -> u64 {
    loop {
        let c = rng.next_u64();
        if c != 0 {
            return c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn md(s: &str) -> [u8; 20] {
        hex(s).try_into().unwrap()
    }

    /// Reference: a plain HMAC over the spec's "msg" string.
    fn hmac_of(key: &Key, msg: &str) -> [u8; 20] {
        let mut m = HmacSha1::new_from_slice(key.as_bytes()).unwrap();
        m.update(&hex(msg));
        m.finalize().into_bytes().into()
    }

    #[test]
    fn key_derivation() {
        assert_eq!(
            Key::from_passphrase(b"secret").as_bytes()[..],
            hex("7365637265740000000000000000000000000000")[..]
        );
        assert_eq!(
            Key::from_passphrase(b"mekmitasdigoat").as_bytes()[..],
            hex("6d656b6d697461736469676f6174000000000000")[..]
        );
        assert_eq!(
            Key::from_passphrase(b"this passphrase is longer than nineteen").as_bytes()[..],
            hex("7468697320706173737068726173652069732000")[..]
        );
        assert_eq!(Key::from_passphrase(b"").as_bytes(), &[0u8; 20]);
        // Exactly 19 and 20 bytes: the 20th is always the NUL.
        assert_eq!(Key::from_passphrase(&[b'a'; 19]).as_bytes()[18], b'a');
        assert_eq!(Key::from_passphrase(&[b'a'; 20]).as_bytes()[19], 0);
    }

    #[test]
    fn v1_single_ipv4() {
        let key = Key::from_passphrase(b"secret");
        let ctx = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &["192.168.1.10".parse().unwrap()],
                v6: &[],
            },
        );
        let counter = 0x0123_4567_89ab_cdefu64.to_be_bytes();
        let want = md("302512fb82c45c1cc0abf1f8f00f3590ed3866f0");
        assert_eq!(hmac_of(&key, "02 01 01 c0a8010a 0123456789abcdef"), want);
        assert_eq!(ctx.generate(&counter), want);
        assert!(ctx.verify(&counter, &want));
        let mut bad = want;
        bad[19] ^= 1;
        assert!(!ctx.verify(&counter, &bad));
        assert!(!ctx.verify(&[0; 8], &want));
    }

    fn v2() -> (Key, AuthContext) {
        let key = Key::from_passphrase(b"mekmitasdigoat");
        let v4: Vec<Ipv4Addr> = ["192.0.2.254", "10.0.0.7", "10.0.0.1", "10.0.0.7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let v6: Vec<Ipv6Addr> = ["2001:db8::1", "fe80::200:5eff:fe00:12a"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ctx = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 42,
                lladdr: None,
                v4: &v4,
                v6: &v6,
            },
        );
        (key, ctx)
    }

    #[test]
    fn v2_sorted_dedup_and_both_contexts() {
        let (key, ctx) = v2();
        let counter = 0xdead_beef_cafe_f00du64.to_be_bytes();
        let nov6ll = md("78a87eaf428e96d4b16211e5104c1ea8a9e03569");
        let orig = md("e2aefd955a3d2a86790dad4c7cb7d7c07920ca80");
        assert_eq!(
            hmac_of(&key, "02 01 2a 0a000001 0a000007 c00002fe 20010db8000000000000000000000001 deadbeefcafef00d"),
            nov6ll
        );
        assert_eq!(
            hmac_of(&key, "02 01 2a 0a000001 0a000007 c00002fe 20010db8000000000000000000000001 fe8000000000000002005efffe00012a deadbeefcafef00d"),
            orig
        );
        assert_eq!(ctx.generate(&counter), nov6ll, "we send NOV6LL");
        assert_eq!(ctx.generate_orig(&counter), orig);
        assert!(ctx.verify(&counter, &nov6ll));
        assert!(ctx.verify(&counter, &orig));
    }

    #[test]
    fn v2_address_order_irrelevant_and_scope_bytes_zeroed() {
        let key = Key::from_passphrase(b"mekmitasdigoat");
        let v4: Vec<Ipv4Addr> = [
            "10.0.0.7",
            "10.0.0.1",
            "192.0.2.254",
            "0.0.0.0",
            "255.255.255.255",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        // Scope id embedded in bytes 2-3 (as a BSD kernel would) must not matter.
        let v6: Vec<Ipv6Addr> = [
            "fe80:5::200:5eff:fe00:12a",
            "2001:db8::1",
            "2001:db8::1",
            "::",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let ctx = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 42,
                lladdr: None,
                v4: &v4,
                v6: &v6,
            },
        );
        let counter = 0xdead_beef_cafe_f00du64.to_be_bytes();
        assert_eq!(
            ctx.generate(&counter),
            md("78a87eaf428e96d4b16211e5104c1ea8a9e03569")
        );
        assert_eq!(
            ctx.generate_orig(&counter),
            md("e2aefd955a3d2a86790dad4c7cb7d7c07920ca80")
        );
    }

    #[test]
    fn v3_truncated_passphrase() {
        let key = Key::from_passphrase(b"this passphrase is longer than nineteen");
        let ctx = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 255,
                lladdr: None,
                v4: &["203.0.113.5".parse().unwrap()],
                v6: &[],
            },
        );
        let want = md("8446fcac2088949b2404bfe6ee5903ffcbe1b992");
        assert_eq!(hmac_of(&key, "02 01 ff cb007105 0000000000000000"), want);
        assert_eq!(ctx.generate(&[0; 8]), want);
        // Equal to plain HMAC keyed with the 19-byte truncated passphrase.
        let mut m = HmacSha1::new_from_slice(b"this passphrase is ").unwrap();
        m.update(&hex("02 01 ff cb007105 0000000000000000"));
        assert_eq!(<[u8; 20]>::from(m.finalize().into_bytes()), want);
    }

    #[test]
    fn v4_no_passphrase_ipv6_only() {
        let key = Key::from_passphrase(b"");
        let v6: Vec<Ipv6Addr> = ["2001:db8:1::10", "2001:db8:1::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ctx = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 7,
                lladdr: None,
                v4: &[],
                v6: &v6,
            },
        );
        let want = md("e62e8ed49a2bbcd7553ed47a21bc3b564ff91568");
        assert_eq!(
            hmac_of(&key, "02 01 07 20010db8000100000000000000000002 20010db8000100000000000000000010 0000000000000001"),
            want
        );
        assert_eq!(ctx.generate(&1u64.to_be_bytes()), want);
        // No scoped addresses: both contexts agree.
        assert_eq!(ctx.generate_orig(&1u64.to_be_bytes()), want);
    }

    #[test]
    fn v5_lladdr_included() {
        let key = Key::from_passphrase(b"secret");
        let lladdr = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];
        let parent = [0x00, 0x0c, 0x29, 0x12, 0x34, 0x56];
        assert_eq!(hmac_lladdr(true, 1, lladdr, parent), Some(lladdr));
        let ctx = AuthContext::new(
            &key,
            &AuthInput {
                vhid: 1,
                lladdr: hmac_lladdr(true, 1, lladdr, parent),
                v4: &["192.168.1.10".parse().unwrap()],
                v6: &[],
            },
        );
        let want = md("696d5a3e65fc341571c496fd9c386cb839c59b6c");
        assert_eq!(
            hmac_of(&key, "02 01 020000aabbcc 01 c0a8010a 0123456789abcdef"),
            want
        );
        assert_eq!(ctx.generate(&0x0123_4567_89ab_cdefu64.to_be_bytes()), want);
    }

    #[test]
    fn lladdr_rule_cases() {
        let parent = [0x00, 0x0c, 0x29, 0x12, 0x34, 0x56];
        // Default lladdr = leader vMAC: absent.
        assert_eq!(hmac_lladdr(true, 1, virtual_mac(1), parent), None);
        // Real-MAC mode: absent.
        assert_eq!(hmac_lladdr(true, 1, parent, parent), None);
        // Not the leader: absent.
        assert_eq!(
            hmac_lladdr(false, 1, [2, 0, 0, 0xaa, 0xbb, 0xcc], parent),
            None
        );
    }

    #[test]
    fn spec_frames_authenticate() {
        use super::super::wire::{tests::FRAME_V4, tests::FRAME_V6, Packet};
        let ctx = AuthContext::new(
            &Key::from_passphrase(b"secret"),
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &["192.168.1.10".parse().unwrap()],
                v6: &[],
            },
        );
        let p = Packet::new_checked(&FRAME_V4[34..]).unwrap();
        assert!(ctx.verify(&p.counter_bytes(), &p.md()));
        let v6: Vec<Ipv6Addr> = ["2001:db8:1::10", "2001:db8:1::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ctx6 = AuthContext::new(
            &Key::default(),
            &AuthInput {
                vhid: 7,
                lladdr: None,
                v4: &[],
                v6: &v6,
            },
        );
        let p6 = Packet::new_checked(&FRAME_V6[54..]).unwrap();
        assert!(ctx6.verify(&p6.counter_bytes(), &p6.md()));
        assert!(!ctx.verify(&p6.counter_bytes(), &p6.md()));
    }

    #[test]
    fn cookie_never_zero() {
        struct Zeros(u32);
        impl rand::RngCore for Zeros {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                self.0 += 1;
                if self.0 < 3 {
                    0
                } else {
                    42
                }
            }
            fn fill_bytes(&mut self, d: &mut [u8]) {
                d.fill(0)
            }
            fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand::Error> {
                d.fill(0);
                Ok(())
            }
        }
        let mut rng = Zeros(0);
        assert_eq!(new_cookie(&mut rng), 42);
        assert_eq!(rng.0, 3);
    }
}
