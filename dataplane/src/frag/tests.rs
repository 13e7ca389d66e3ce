//! The reassembly table on a fake clock, and join / split over real
//! fragment frames.

use super::*;
use proptest::prelude::*;

const T0: Instant = Instant(1_000_000_000);

fn key(id: u32) -> (FlowKey, u64) {
    let k = datagram_key(
        Af::Inet,
        Addr::v4([10, 0, 0, 1]),
        Addr::v4([10, 0, 0, 2]),
        17,
        id,
    );
    let h = k.symmetric_hash();
    (k, h)
}

struct T {
    t: FragTable,
    c: WorkerCounters,
}

impl T {
    fn new(cap: usize) -> T {
        T {
            t: FragTable::new(cap),
            c: WorkerCounters::default(),
        }
    }
    fn ins(&mut self, id: u32, off: u16, len: u16, more: bool) -> Result<u32, DropReason> {
        self.ins_at(id, off, len, more, T0)
    }
    fn ins_at(
        &mut self,
        id: u32,
        off: u16,
        len: u16,
        more: bool,
        now: Instant,
    ) -> Result<u32, DropReason> {
        let (k, h) = key(id);
        let cap = self.t.capacity();
        self.t
            .insert(&k, h, off, len, more, 3, now, cap, &mut self.c)
    }
    fn ready(&mut self) -> Option<Vec<u32>> {
        let mut e = [0; FRAGS_PER_DATAGRAM];
        let r = self.t.next_ready(&mut e)?;
        assert_eq!(r.in_port, 3);
        Some(e[..r.fragments].to_vec())
    }
    fn released(&mut self) -> Vec<u32> {
        let mut v = Vec::new();
        self.t.release(|e| v.push(e));
        v
    }
    fn drops(&self, r: DropReason) -> u64 {
        self.c.drops[r as usize]
    }
}

#[test]
fn in_order_fragments_complete_once() {
    let mut t = T::new(64);
    let a = t.ins(1, 0, 1480, true).unwrap();
    let b = t.ins(1, 1480, 1480, true).unwrap();
    assert_eq!(t.ready(), None);
    let c = t.ins(1, 2960, 100, false).unwrap();
    assert_eq!(t.ready(), Some(vec![a, b, c]));
    assert_eq!(t.ready(), None);
    assert_eq!(t.t.held(), 0);
}

#[test]
fn out_of_order_fragments_come_back_in_offset_order() {
    let mut t = T::new(64);
    let c = t.ins(7, 2960, 100, false).unwrap();
    let a = t.ins(7, 0, 1480, true).unwrap();
    assert_eq!(t.ready(), None);
    let b = t.ins(7, 1480, 1480, true).unwrap();
    assert_eq!(t.ready(), Some(vec![a, b, c]));
}

#[test]
fn datagrams_are_told_apart_by_id() {
    let mut t = T::new(64);
    let a1 = t.ins(1, 0, 8, true).unwrap();
    let a2 = t.ins(2, 0, 8, true).unwrap();
    let b2 = t.ins(2, 8, 8, false).unwrap();
    assert_eq!(t.ready(), Some(vec![a2, b2]));
    let b1 = t.ins(1, 8, 1, false).unwrap();
    assert_eq!(t.ready(), Some(vec![a1, b1]));
}

#[test]
fn a_duplicate_drops_the_whole_datagram() {
    let mut t = T::new(64);
    let a = t.ins(1, 0, 16, true).unwrap();
    let b = t.ins(1, 16, 16, true).unwrap();
    assert_eq!(t.ins(1, 16, 16, true), Err(DropReason::FragmentOverlap));
    let mut r = t.released();
    r.sort();
    assert_eq!(r, vec![a.min(b), a.max(b)]);
    assert_eq!(t.drops(DropReason::FragmentOverlap), 2);
    // The rest of the datagram starts a new one that never completes.
    t.ins(1, 32, 8, false).unwrap();
    assert_eq!(t.ready(), None);
    assert_eq!(t.t.held(), 1);
}

#[test]
fn teardrop_and_partial_overlaps_drop_the_datagram() {
    // Teardrop: the second fragment starts inside the first and ends
    // before it.
    for (off, len) in [(8u16, 8u16), (24, 16), (0, 8), (8, 40)] {
        let mut t = T::new(64);
        t.ins(1, 0, 32, true).unwrap();
        t.ins(1, 40, 16, true).unwrap();
        let more = true;
        assert_eq!(
            t.ins(1, off, len, more),
            Err(DropReason::FragmentOverlap),
            "{off}+{len}"
        );
        assert_eq!(t.released().len(), 2);
        assert_eq!(t.t.held(), 0);
    }
}

#[test]
fn bad_fragments_are_refused_alone() {
    let mut t = T::new(64);
    t.ins(1, 0, 16, true).unwrap();
    assert_eq!(t.ins(1, 16, 0, true), Err(DropReason::FragmentBad));
    assert_eq!(t.ins(1, 16, 12, true), Err(DropReason::FragmentBad));
    assert_eq!(t.ins(1, 65528, 16, false), Err(DropReason::FragmentBad));
    assert!(t.released().is_empty());
    assert_eq!(t.t.held(), 1);
}

#[test]
fn a_contradicted_end_drops_the_datagram() {
    let mut t = T::new(64);
    t.ins(1, 0, 16, true).unwrap();
    t.ins(1, 32, 8, false).unwrap();
    // A second "last" fragment elsewhere, or one past the end.
    assert_eq!(t.ins(1, 16, 8, false), Err(DropReason::FragmentBad));
    assert_eq!(t.released().len(), 2);
    t.ins(2, 0, 16, true).unwrap();
    t.ins(2, 32, 8, false).unwrap();
    assert_eq!(t.ins(2, 40, 8, true), Err(DropReason::FragmentBad));
    assert_eq!(t.released().len(), 2);
    // A last fragment ending before data already held.
    t.ins(3, 32, 8, true).unwrap();
    assert_eq!(t.ins(3, 0, 16, false), Err(DropReason::FragmentBad));
    assert_eq!(t.released().len(), 1);
}

#[test]
fn a_65th_fragment_drops_the_datagram() {
    let mut t = T::new(256);
    for i in 0..FRAGS_PER_DATAGRAM as u16 {
        t.ins(1, i * 8, 8, true).unwrap();
    }
    assert_eq!(t.ins(1, 64 * 8, 8, false), Err(DropReason::FragmentTooMany));
    assert_eq!(t.released().len(), FRAGS_PER_DATAGRAM);
    assert_eq!(t.drops(DropReason::FragmentTooMany), 64);
}

#[test]
fn timeout_drops_incomplete_datagrams_only_when_due() {
    let mut t = T::new(64);
    t.ins_at(1, 0, 8, true, T0).unwrap();
    t.ins_at(2, 0, 8, true, T0 + crate::time::Duration::from_secs(30))
        .unwrap();
    t.t.expire(T0 + crate::time::Duration::from_secs(59), 60, &mut t.c);
    assert!(t.released().is_empty());
    t.t.expire(T0 + crate::time::Duration::from_secs(60), 60, &mut t.c);
    assert_eq!(t.released().len(), 1);
    assert_eq!(t.drops(DropReason::FragmentTimeout), 1);
    // The second one can still complete.
    t.ins_at(2, 8, 8, false, T0 + crate::time::Duration::from_secs(61))
        .unwrap();
    assert_eq!(t.ready().map(|v| v.len()), Some(2));
}

#[test]
fn the_limit_evicts_the_oldest_datagrams() {
    let mut t = T::new(64);
    let (k, h) = key(1000);
    // limit 8: eight one-fragment datagrams fill it.
    for id in 0..8 {
        let (k, h) = key(id);
        t.t.insert(&k, h, 0, 8, true, 3, T0, 8, &mut t.c).unwrap();
    }
    t.t.insert(&k, h, 0, 8, true, 3, T0, 8, &mut t.c).unwrap();
    // Down to nine tenths (7), then the new one: the oldest went.
    assert_eq!(t.drops(DropReason::FragmentLimit), 1);
    assert_eq!(t.released().len(), 1);
    assert_eq!(t.t.held(), 8);
    // The oldest is gone: its second half starts anew (and the next
    // oldest goes).
    let (k0, h0) = key(0);
    t.t.insert(&k0, h0, 8, 8, false, 3, T0, 8, &mut t.c)
        .unwrap();
    assert_eq!(t.ready(), None);
    assert_eq!(t.drops(DropReason::FragmentLimit), 2);
    // Datagram 1 (the next oldest) is gone too: completing it fails.
    let (k1, h1) = key(1);
    t.t.insert(&k1, h1, 8, 8, false, 3, T0, 8, &mut t.c)
        .unwrap();
    assert_eq!(t.ready(), None);
}

#[test]
fn capacity_is_a_hard_bound() {
    let mut t = T::new(64);
    for id in 0..1000 {
        let _ = t.ins(id, 0, 8, true);
        assert!(t.t.held() <= 64);
        t.released();
    }
    assert!(t.drops(DropReason::FragmentLimit) > 900);
}

proptest! {
    /// Any order of a datagram's fragments completes it once, with its
    /// entries in offset order; nothing is left held.
    #[test]
    fn any_order_completes(sizes in prop::collection::vec(1u16..200, 1..40), seed in any::<u64>()) {
        let mut t = T::new(256);
        let mut frags = Vec::new();
        let mut off = 0u16;
        for (i, s) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            let len = if last { *s } else { s * 8 };
            frags.push((off, len, !last));
            off += len;
        }
        let mut order: Vec<usize> = (0..frags.len()).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut entry_of = vec![0; frags.len()];
        for (n, &i) in order.iter().enumerate() {
            let (o, l, m) = frags[i];
            entry_of[i] = t.ins(9, o, l, m).unwrap();
            if n + 1 < order.len() {
                prop_assert_eq!(t.ready(), None);
            }
        }
        prop_assert_eq!(t.ready(), Some(entry_of));
        prop_assert_eq!(t.t.held(), 0);
    }

    /// Hostile input never panics, never holds more than the capacity,
    /// and every entry is accounted for: held = given out - released -
    /// completed.
    #[test]
    fn hostile_input_is_bounded(ops in prop::collection::vec((0u32..6, any::<u16>(), 0u16..3000, any::<bool>(), 0u8..4), 1..400)) {
        let mut t = T::new(64);
        let mut out = std::collections::HashSet::new();
        let mut now = T0;
        for (id, off, len, more, tick) in ops {
            now = now + crate::time::Duration::from_secs(u64::from(tick) * 20);
            if let Ok(e) = t.ins_at(id, off & 0xfff8, len, more, now) {
                prop_assert!(out.insert(e), "entry {} given twice", e);
            }
            t.t.expire(now, 60, &mut t.c);
            for e in t.released() {
                prop_assert!(out.remove(&e));
            }
            while let Some(es) = t.ready() {
                for e in es {
                    prop_assert!(out.remove(&e));
                }
            }
            prop_assert!(t.t.held() <= 64);
            prop_assert_eq!(t.t.held(), out.len());
        }
    }
}

/// An Ethernet frame holding an IPv4 UDP datagram with `payload` bytes.
fn udp4(payload: usize, id: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + payload];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = checksum::finish(checksum::data(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// Splits an untagged IPv4 frame into fragments of at most `data` bytes.
fn fragment4(frame: &[u8], data: usize) -> Vec<Vec<u8>> {
    let payload = &frame[34..];
    payload
        .chunks(data)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = frame[..34].to_vec();
            f.extend_from_slice(chunk);
            let off = i * data;
            let more = off + chunk.len() < payload.len();
            let ip = &mut f[14..34];
            ip[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            let flags = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&flags.to_be_bytes());
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::finish(checksum::data(ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

/// An Ethernet frame holding an IPv6 UDP datagram, and its fragments of
/// at most `data` bytes each.
fn udp6_fragments(payload: usize, data: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut f = vec![0u8; 14 + 40 + 8 + payload];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    f[20] = 17;
    f[21] = 64;
    f[22..38].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f[38..54].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let whole = f.clone();
    let body = &f[54..];
    let frags = body
        .chunks(data)
        .enumerate()
        .map(|(i, chunk)| {
            let mut g = f[..54].to_vec();
            g[20] = 44;
            let off = i * data;
            let more = off + chunk.len() < body.len();
            let offlg = off as u16 | u16::from(more);
            g.extend_from_slice(&[17, 0]);
            g.extend_from_slice(&offlg.to_be_bytes());
            g.extend_from_slice(&0xdead_beefu32.to_be_bytes());
            g.extend_from_slice(chunk);
            let plen = (8 + chunk.len()) as u16;
            g[18..20].copy_from_slice(&plen.to_be_bytes());
            g
        })
        .collect();
    (whole, frags)
}

#[test]
fn join_rebuilds_an_ipv4_datagram_and_split_writes_it_back() {
    let whole = udp4(8192, 77);
    let mut frags = fragment4(&whole, 1480);
    assert_eq!(frags.len(), 6);
    let before = frags.clone();
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut refs: Vec<&mut [u8]> = frags.iter_mut().map(|f| &mut f[..]).collect();
    let j = join(&refs, &mut scratch).unwrap();
    assert_eq!(&scratch[..j.len], &whole[..]);
    // Unchanged, split writes the same bytes back.
    assert!(split(&mut refs, &scratch[..j.len], &j, false));
    drop(refs);
    assert_eq!(frags, before);
    // A rewritten TTL and source port reach the right fragments.
    scratch[14 + 8] = 63;
    scratch[34] = 0x99;
    let mut refs: Vec<&mut [u8]> = frags.iter_mut().map(|f| &mut f[..]).collect();
    assert!(split(&mut refs, &scratch[..j.len], &j, false));
    drop(refs);
    for f in &frags {
        assert_eq!(f[14 + 8], 63);
        assert_eq!(checksum::data(&f[14..34]), 0xffff, "header checksum");
    }
    assert_eq!(frags[0][34], 0x99);
    assert_eq!(&frags[1][34..], &before[1][34..]);
}

#[test]
fn join_rebuilds_an_ipv6_datagram_without_its_fragment_header() {
    let (whole, mut frags) = udp6_fragments(8192, 1448);
    assert_eq!(frags.len(), 6);
    let before = frags.clone();
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut refs: Vec<&mut [u8]> = frags.iter_mut().map(|f| &mut f[..]).collect();
    let j = join(&refs, &mut scratch).unwrap();
    assert_eq!(&scratch[..j.len], &whole[..]);
    assert!(split(&mut refs, &scratch[..j.len], &j, false));
    drop(refs);
    assert_eq!(frags, before);
    let f = parse(&frags[2], 14).unwrap();
    assert_eq!(
        (f.af, f.id, f.off, f.more),
        (Af::Inet6, 0xdead_beef, 2896, true)
    );
}

#[test]
fn join_refuses_gaps_foreign_fragments_and_oversize() {
    let whole = udp4(4000, 1);
    let mut frags = fragment4(&whole, 1480);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    // A gap.
    {
        let (a, b) = frags.split_at_mut(1);
        let refs: Vec<&mut [u8]> = vec![&mut a[0][..], &mut b[1][..]];
        assert_eq!(join(&refs, &mut scratch), Err(DropReason::FragmentBad));
    }
    // A fragment of another datagram.
    let mut other = fragment4(&udp4(4000, 2), 1480);
    {
        let (a, b) = frags.split_at_mut(2);
        let refs: Vec<&mut [u8]> = vec![&mut a[0][..], &mut other[1][..], &mut b[0][..]];
        assert_eq!(join(&refs, &mut scratch), Err(DropReason::FragmentBad));
    }
    // 65535 bytes of data behind a 20-byte header: more than an IPv4
    // packet holds (pf's "too big"), though every fragment is in range.
    let mut big = fragment4(&udp4(65535 - 8, 3), 1480);
    assert_eq!(big.len(), 45);
    let refs: Vec<&mut [u8]> = big.iter_mut().map(|f| &mut f[..]).collect();
    assert_eq!(join(&refs, &mut scratch), Err(DropReason::FragmentBad));
    assert_eq!(join(&[], &mut scratch), Err(DropReason::FragmentBad));
}
