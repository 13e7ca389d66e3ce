//! IP fragment reassembly (pf's `set reassemble yes`): the per-worker
//! reassembly table, and the byte work of joining a datagram's fragments
//! into one contiguous packet and writing the filtered result back into
//! the same fragments.
//!
//! The table owns no packet bytes. A fragment it accepts is named by an
//! *entry* (an index below [`FragTable::capacity`]); the caller keeps the
//! frame (the worker: the mbuf) at that index until the table gives the
//! entry back, either in a completed datagram ([`FragTable::next_ready`],
//! entries in offset order: the caller now owns the frames again) or
//! released ([`FragTable::release`]: the caller frees the frames). Entries
//! handed back are reused only after that, so a frame is never
//! overwritten while still held.
//!
//! ```text
//! insert(key, off, len, more) ── bad alone (len 0, MF and len % 8, end > 65535) ─► Err(fragment-bad)
//!    │ datagram known?  no ─► new slot (full: evict the oldest 10%, counted fragment-limit)
//!    │ conflict with the datagram (overlap or duplicate ─► fragment-overlap; an end that
//!    │   contradicts the last fragment ─► fragment-bad; a 65th fragment ─► fragment-too-many):
//!    │   the whole datagram is released and counted
//!    ▼
//! Ok(entry) ── every byte of [0, end) held ─► ready queue (next_ready)
//! expire(now): datagrams older than `set timeout frag` are released (fragment-timeout)
//! ```
//!
//! Invariants: the entries of a datagram never overlap and lie inside
//! `[0, end)` once the last fragment is known, so the datagram is complete
//! exactly when the sum of their lengths equals `end`; at most
//! [`FRAGS_PER_DATAGRAM`] entries per datagram; at most `capacity` entries
//! and `capacity / 2` datagrams in use. Memory is allocated once, in
//! [`FragTable::new`]; no method allocates or panics on any input.
//!
//! pf departures (README, "Fragments"): an overlapping IPv4 fragment drops
//! the whole datagram as pf does for IPv6 (RFC 5722), where pf trims IPv4
//! overlaps; a datagram holds at most 64 fragments (pf: 64 per 4 KiB of
//! offset); the timeout runs from the first fragment (pf's too).

use crate::counters::{DropReason, WorkerCounters};
use crate::flow::{Addr, Af, FlowKey};
use crate::time::Instant;
use crate::wire::checksum;

/// Most fragments one datagram may have (a 65535-byte datagram in
/// fragments of 1024 payload bytes or more).
pub const FRAGS_PER_DATAGRAM: usize = 64;

/// The largest IP datagram (IPv4 total length, IPv6 payload length).
pub const IP_MAXPACKET: usize = 65535;

/// Room for the largest reassembled frame: two VLAN tags, an IPv6 header
/// (its payload length counts extension headers and data) or an IPv4
/// packet.
pub const SCRATCH_LEN: usize = 22 + 40 + IP_MAXPACKET;

const NONE: u32 = u32::MAX;

/// The key of a datagram under reassembly (pf's `pf_frnode` + id): source,
/// destination, protocol (0 for IPv6: only the first fragment's counts)
/// and the IP id / IPv6 fragment id, in a [`FlowKey`] so it shares the
/// keyed hash: `addr` = [src, dst] (not sorted), `port` = the id's halves,
/// `rdomain` = `0xf4a6` so no flow key equals it.
pub fn datagram_key(af: Af, src: Addr, dst: Addr, proto: u8, id: u32) -> FlowKey {
    FlowKey {
        addr: [src, dst],
        port: [(id >> 16) as u16, id as u16],
        rdomain: 0xf4a6,
        af: af as u8,
        proto,
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    off: u16,
    len: u16,
    /// The next entry of the datagram (by offset), or of the free or
    /// released list.
    next: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Free,
    Assembling,
    Ready,
}

#[derive(Clone, Copy, Debug)]
struct Datagram {
    key: FlowKey,
    hash: u64,
    /// First entry (lowest offset).
    head: u32,
    count: u8,
    phase: Phase,
    in_port: u16,
    /// Payload length, once the last fragment (MF clear) is known.
    end: u32,
    /// The highest end of any fragment held.
    max_end: u32,
    /// Payload bytes held.
    have: u32,
    created: Instant,
    /// Next datagram in the hash bucket, or in the free list.
    chain: u32,
    /// Age list (assembling) or ready queue (`newer` only).
    older: u32,
    newer: u32,
}

impl Datagram {
    const EMPTY: Datagram = Datagram {
        key: FlowKey {
            addr: [Addr::ZERO; 2],
            port: [0; 2],
            rdomain: 0,
            af: 0,
            proto: 0,
        },
        hash: 0,
        head: NONE,
        count: 0,
        phase: Phase::Free,
        in_port: 0,
        end: 0,
        max_end: 0,
        have: 0,
        created: Instant(0),
        chain: NONE,
        older: NONE,
        newer: NONE,
    };
}

/// A completed datagram [`FragTable::next_ready`] hands back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Its fragments (entries written to the caller's array, by offset).
    pub fragments: usize,
    /// The port its first-received fragment arrived on.
    pub in_port: u16,
}

/// One worker's reassembly table (see the module doc).
#[derive(Debug)]
pub struct FragTable {
    entries: Box<[Entry]>,
    free_entry: u32,
    free_entries: usize,
    /// Entries of dropped datagrams whose frames the caller must free.
    released: u32,
    /// How many.
    released_n: usize,
    datagrams: Box<[Datagram]>,
    free_dgram: u32,
    buckets: Box<[u32]>,
    oldest: u32,
    newest: u32,
    ready_head: u32,
    ready_tail: u32,
}

impl FragTable {
    /// A table holding at most `capacity` fragments (at least
    /// [`FRAGS_PER_DATAGRAM`], so one datagram always fits) of at most
    /// `capacity / 2` datagrams.
    pub fn new(capacity: usize) -> FragTable {
        let capacity = capacity.clamp(FRAGS_PER_DATAGRAM, NONE as usize - 1);
        let entries: Box<[Entry]> = (0..capacity)
            .map(|i| Entry {
                off: 0,
                len: 0,
                next: if i + 1 < capacity { i as u32 + 1 } else { NONE },
            })
            .collect();
        let ndgram = (capacity / 2).max(1);
        let datagrams: Box<[Datagram]> = (0..ndgram)
            .map(|i| Datagram {
                chain: if i + 1 < ndgram { i as u32 + 1 } else { NONE },
                ..Datagram::EMPTY
            })
            .collect();
        let nbuckets = (ndgram * 2).next_power_of_two();
        FragTable {
            entries,
            free_entry: 0,
            free_entries: capacity,
            released: NONE,
            released_n: 0,
            datagrams,
            free_dgram: 0,
            buckets: vec![NONE; nbuckets].into_boxed_slice(),
            oldest: NONE,
            newest: NONE,
            ready_head: NONE,
            ready_tail: NONE,
        }
    }

    /// Fragments the table can hold (entries are below it).
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Fragments held now (assembling, or complete and not yet taken);
    /// dropped ones awaiting [`FragTable::release`] do not count.
    pub fn held(&self) -> usize {
        self.entries.len() - self.free_entries - self.released_n
    }

    /// Bytes of memory the table uses.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
            + std::mem::size_of_val(&*self.datagrams)
            + std::mem::size_of_val(&*self.buckets)
    }

    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        (hash as usize) & (self.buckets.len() - 1)
    }

    fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let mut d = *self.buckets.get(self.bucket(hash))?;
        while d != NONE {
            let dg = self.datagrams.get(d as usize)?;
            if dg.hash == hash && dg.key == *key {
                return Some(d);
            }
            d = dg.chain;
        }
        None
    }

    /// Takes in a fragment of `len` payload bytes at byte offset `off`
    /// (`more`: the MF flag) of datagram `key` (`hash`: its keyed hash),
    /// received on `in_port`, with at most `limit` fragments held (`set
    /// limit frags` for this worker; the capacity bounds it too).
    /// `Ok(entry)`: the caller keeps the frame at `entry`; `Err(reason)`:
    /// the caller drops the frame (the table has counted any other
    /// fragments it dropped with it).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        off: u16,
        len: u16,
        more: bool,
        in_port: u16,
        now: Instant,
        limit: usize,
        counters: &mut WorkerCounters,
    ) -> Result<u32, DropReason> {
        let end = u32::from(off) + u32::from(len);
        // pf_fillup_fragment: no empty fragments, 8-byte multiples but for
        // the last, nothing past 65535.
        if len == 0 || (more && !len.is_multiple_of(8)) || end as usize > IP_MAXPACKET {
            return Err(DropReason::FragmentBad);
        }
        // A full table drops its oldest datagrams first (maybe this one).
        if self.free_entry == NONE || self.free_dgram == NONE || self.held() >= limit {
            self.evict(limit, counters);
        }
        let d = match self.find(key, hash) {
            Some(d) => d,
            None => self.create(key, hash, in_port, now)?,
        };
        let Some(dg) = self.datagrams.get(d as usize).copied() else {
            return Err(DropReason::Unclassified);
        };
        if dg.count > 0 {
            // Consistency with the fragments held (pf's "non terminal
            // fragments must have more fragments flag" and "check if we
            // saw the last fragment already").
            let conflict = if more {
                dg.end != 0 && end >= dg.end
            } else {
                (dg.end != 0 && end != dg.end) || end < dg.max_end
            };
            if conflict {
                self.drop_datagram(d, DropReason::FragmentBad, counters);
                return Err(DropReason::FragmentBad);
            }
            if usize::from(dg.count) >= FRAGS_PER_DATAGRAM {
                self.drop_datagram(d, DropReason::FragmentTooMany, counters);
                return Err(DropReason::FragmentTooMany);
            }
        }
        // The neighbours by offset: any overlap (a duplicate too) drops the
        // whole datagram (RFC 5722; teardrop and its kin).
        let mut prev = NONE;
        let mut cur = dg.head;
        while cur != NONE {
            let Some(e) = self.entries.get(cur as usize) else {
                break;
            };
            if e.off >= off {
                break;
            }
            prev = cur;
            cur = e.next;
        }
        let overlaps_prev = self
            .entries
            .get(prev as usize)
            .is_some_and(|p| u32::from(p.off) + u32::from(p.len) > u32::from(off));
        let overlaps_next = self
            .entries
            .get(cur as usize)
            .is_some_and(|n| u32::from(n.off) < end);
        if overlaps_prev || overlaps_next {
            self.drop_datagram(d, DropReason::FragmentOverlap, counters);
            return Err(DropReason::FragmentOverlap);
        }
        let Some(entry) = self.take_entry() else {
            // Only a table whose every fragment is in ready or released
            // datagrams gets here (the caller drains them every loop).
            if dg.count == 0 {
                self.unlink_age(d);
                self.unlink_bucket(d);
                self.free_datagram(d);
            }
            return Err(DropReason::FragmentLimit);
        };
        if let Some(e) = self.entries.get_mut(entry as usize) {
            *e = Entry {
                off,
                len,
                next: cur,
            };
        }
        if prev == NONE {
            if let Some(g) = self.datagrams.get_mut(d as usize) {
                g.head = entry;
            }
        } else if let Some(p) = self.entries.get_mut(prev as usize) {
            p.next = entry;
        }
        let Some(g) = self.datagrams.get_mut(d as usize) else {
            return Err(DropReason::Unclassified);
        };
        g.count += 1;
        g.have += u32::from(len);
        g.max_end = g.max_end.max(end);
        if !more {
            g.end = end;
        }
        if g.end != 0 && g.have == g.end {
            self.complete(d);
        }
        Ok(entry)
    }

    /// A new datagram slot for `key`.
    fn create(
        &mut self,
        key: &FlowKey,
        hash: u64,
        in_port: u16,
        now: Instant,
    ) -> Result<u32, DropReason> {
        let d = self.free_dgram;
        let Some(dg) = self.datagrams.get_mut(d as usize) else {
            return Err(DropReason::FragmentLimit);
        };
        self.free_dgram = dg.chain;
        *dg = Datagram {
            key: *key,
            hash,
            phase: Phase::Assembling,
            in_port,
            created: now,
            older: self.newest,
            ..Datagram::EMPTY
        };
        let b = self.bucket(hash);
        if let Some(head) = self.buckets.get_mut(b) {
            if let Some(dg) = self.datagrams.get_mut(d as usize) {
                dg.chain = *head;
            }
            *head = d;
        }
        if let Some(n) = self.datagrams.get_mut(self.newest as usize) {
            n.newer = d;
        }
        self.newest = d;
        if self.oldest == NONE {
            self.oldest = d;
        }
        Ok(d)
    }

    /// pf's `pf_flush_fragments`: drops the oldest datagrams until at
    /// most nine tenths of `limit` are held, and a slot and an entry are
    /// free.
    fn evict(&mut self, limit: usize, counters: &mut WorkerCounters) {
        let goal = (limit - limit / 10).min(limit.saturating_sub(1));
        while self.oldest != NONE
            && (self.free_dgram == NONE || self.free_entry == NONE || self.held() > goal)
        {
            self.drop_datagram(self.oldest, DropReason::FragmentLimit, counters);
        }
    }

    fn take_entry(&mut self) -> Option<u32> {
        let e = self.free_entry;
        let entry = self.entries.get(e as usize)?;
        self.free_entry = entry.next;
        self.free_entries -= 1;
        Some(e)
    }

    fn put_entry(&mut self, e: u32) {
        if let Some(entry) = self.entries.get_mut(e as usize) {
            entry.next = self.free_entry;
            self.free_entry = e;
            self.free_entries += 1;
        }
    }

    /// Takes datagram `d` off the age list.
    fn unlink_age(&mut self, d: u32) {
        let Some(g) = self.datagrams.get(d as usize).copied() else {
            return;
        };
        match self.datagrams.get_mut(g.older as usize) {
            Some(o) => o.newer = g.newer,
            None => self.oldest = g.newer,
        }
        match self.datagrams.get_mut(g.newer as usize) {
            Some(n) => n.older = g.older,
            None => self.newest = g.older,
        }
    }

    /// Takes datagram `d` out of its hash bucket.
    fn unlink_bucket(&mut self, d: u32) {
        let Some(g) = self.datagrams.get(d as usize).copied() else {
            return;
        };
        let b = self.bucket(g.hash);
        let Some(&head) = self.buckets.get(b) else {
            return;
        };
        if head == d {
            self.buckets[b] = g.chain;
            return;
        }
        let mut cur = head;
        while cur != NONE {
            let next = self.datagrams.get(cur as usize).map_or(NONE, |x| x.chain);
            if next == d {
                if let Some(x) = self.datagrams.get_mut(cur as usize) {
                    x.chain = g.chain;
                }
                return;
            }
            cur = next;
        }
    }

    fn free_datagram(&mut self, d: u32) {
        if let Some(g) = self.datagrams.get_mut(d as usize) {
            *g = Datagram {
                chain: self.free_dgram,
                ..Datagram::EMPTY
            };
            self.free_dgram = d;
        }
    }

    /// Drops an assembling datagram: its entries go to the released list
    /// (each counted `reason`), its slot is free.
    fn drop_datagram(&mut self, d: u32, reason: DropReason, counters: &mut WorkerCounters) {
        let Some(g) = self.datagrams.get(d as usize).copied() else {
            return;
        };
        if g.phase != Phase::Assembling {
            return;
        }
        self.unlink_age(d);
        self.unlink_bucket(d);
        let mut e = g.head;
        while e != NONE {
            let Some(entry) = self.entries.get_mut(e as usize) else {
                break;
            };
            let next = entry.next;
            entry.next = self.released;
            self.released = e;
            self.released_n += 1;
            counters.drop(reason);
            e = next;
        }
        self.free_datagram(d);
    }

    /// Datagram `d` has every byte: off the age list and the hash (a late
    /// duplicate starts a new datagram that times out), onto the ready
    /// queue.
    fn complete(&mut self, d: u32) {
        self.unlink_age(d);
        self.unlink_bucket(d);
        if let Some(g) = self.datagrams.get_mut(d as usize) {
            g.phase = Phase::Ready;
            g.newer = NONE;
        }
        match self.datagrams.get_mut(self.ready_tail as usize) {
            Some(t) => t.newer = d,
            None => self.ready_head = d,
        }
        self.ready_tail = d;
    }

    /// Pops the oldest completed datagram: writes its entries in offset
    /// order to `entries` and gives them back (the caller owns the frames
    /// again, and must take them out before the next insert).
    pub fn next_ready(&mut self, entries: &mut [u32; FRAGS_PER_DATAGRAM]) -> Option<Ready> {
        let d = self.ready_head;
        let g = self.datagrams.get(d as usize).copied()?;
        self.ready_head = g.newer;
        if self.ready_head == NONE {
            self.ready_tail = NONE;
        }
        let mut n = 0;
        let mut e = g.head;
        while e != NONE && n < FRAGS_PER_DATAGRAM {
            let next = self.entries.get(e as usize).map_or(NONE, |x| x.next);
            entries[n] = e;
            n += 1;
            self.put_entry(e);
            e = next;
        }
        self.free_datagram(d);
        Some(Ready {
            fragments: n,
            in_port: g.in_port,
        })
    }

    /// Calls `free(entry)` for every fragment of a dropped datagram (the
    /// caller frees its frame), then reuses the entries.
    pub fn release(&mut self, mut free: impl FnMut(u32)) {
        while self.released != NONE {
            let e = self.released;
            self.released = self.entries.get(e as usize).map_or(NONE, |x| x.next);
            self.released_n -= 1;
            free(e);
            self.put_entry(e);
        }
    }

    /// Drops the datagrams whose first fragment is `timeout_s` seconds old
    /// or more (counted `fragment-timeout`). Constant time when none is.
    pub fn expire(&mut self, now: Instant, timeout_s: u32, counters: &mut WorkerCounters) {
        let timeout_ns = u64::from(timeout_s) * 1_000_000_000;
        while let Some(g) = self.datagrams.get(self.oldest as usize) {
            if g.created.0.saturating_add(timeout_ns) > now.0 {
                break;
            }
            self.drop_datagram(self.oldest, DropReason::FragmentTimeout, counters);
        }
    }
}

/// Where a fragment's fields are in its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Address family.
    pub af: Af,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// IPv4 protocol (0 for IPv6: only the first fragment's counts).
    pub proto: u8,
    /// IP id (16 bits) or IPv6 fragment id.
    pub id: u32,
    /// Offset of its data in the datagram, in bytes.
    pub off: u16,
    /// Bytes of data it carries.
    pub len: u16,
    /// More fragments follow (MF).
    pub more: bool,
    /// IPv4 don't-fragment flag.
    pub df: bool,
    /// Offset of the IP header in the frame.
    pub l3: usize,
    /// Offset of its data in the frame (after the IPv4 header, or the
    /// IPv6 fragment header).
    pub data: usize,
    /// IPv6: offset of the fragment header (the end of the unfragmentable
    /// part).
    pub frag_header: usize,
    /// IPv6: the byte that names the fragment header (the fixed header's
    /// next header or the previous extension header's).
    pub next_header_at: usize,
    /// IPv6: the fragment header's next header (the first fragment's
    /// upper-layer protocol or extension header).
    pub next_header: u8,
}

/// Reads the fragment fields of the IP packet at `l3` of `frame`; `None`
/// when it is not a well-formed fragment.
pub fn parse(frame: &[u8], l3: usize) -> Option<Fragment> {
    let ip = frame.get(l3..)?;
    match ip.first()? >> 4 {
        4 => {
            let hl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if hl < 20 || total < hl || total > ip.len() {
                return None;
            }
            let flags = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            let a = |at: usize| -> Option<Addr> {
                Some(Addr::v4([
                    *ip.get(at)?,
                    *ip.get(at + 1)?,
                    *ip.get(at + 2)?,
                    *ip.get(at + 3)?,
                ]))
            };
            Some(Fragment {
                af: Af::Inet,
                src: a(12)?,
                dst: a(16)?,
                proto: *ip.get(9)?,
                id: u32::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?])),
                off: (flags & 0x1fff) << 3,
                len: (total - hl) as u16,
                more: flags & 0x2000 != 0,
                df: flags & 0x4000 != 0,
                l3,
                data: l3 + hl,
                frag_header: 0,
                next_header_at: 0,
                next_header: 0,
            })
        }
        6 => {
            let fixed = ip.get(..40)?;
            let end = 40 + usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
            if end > ip.len() {
                return None;
            }
            let mut nh = fixed[6];
            let mut nh_at = 6;
            let mut at = 40;
            for _ in 0..crate::wire::ipv6::MAX_EXT_HEADERS {
                let hdr = ip.get(at..at + 8)?;
                if at + 8 > end {
                    return None;
                }
                match nh {
                    44 => {
                        let offlg = u16::from_be_bytes([hdr[2], hdr[3]]);
                        let data = at + 8;
                        let mut src = [0u8; 16];
                        src.copy_from_slice(&fixed[8..24]);
                        let mut dst = [0u8; 16];
                        dst.copy_from_slice(&fixed[24..40]);
                        return Some(Fragment {
                            af: Af::Inet6,
                            src: Addr::v6(src),
                            dst: Addr::v6(dst),
                            proto: 0,
                            id: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                            off: offlg & 0xfff8,
                            len: (end - data) as u16,
                            more: offlg & 1 != 0,
                            df: false,
                            l3,
                            data: l3 + data,
                            frag_header: l3 + at,
                            next_header_at: l3 + nh_at,
                            next_header: hdr[0],
                        });
                    }
                    0 | 43 | 60 => {
                        nh_at = at;
                        nh = hdr[0];
                        at += (usize::from(hdr[1]) + 1) * 8;
                    }
                    51 => {
                        nh_at = at;
                        nh = hdr[0];
                        at += (usize::from(hdr[1]) + 2) * 4;
                    }
                    _ => return None,
                }
            }
            None
        }
        _ => None,
    }
}

/// Where a joined datagram's parts are in the scratch frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The whole frame's length.
    pub len: usize,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the data the fragments carried.
    pub data: usize,
    /// Address family.
    pub af: Af,
}

/// Joins a complete datagram's fragment frames (in offset order) into one
/// frame in `scratch`: the first fragment's link and IP headers (IPv4:
/// total length set, MF and offset cleared, checksum recomputed; IPv6:
/// the fragment header removed, the payload length set), then every
/// fragment's data. Checks that the frames are one datagram, contiguous
/// from 0 and ended by a last fragment; `fragment-bad` when not, or when
/// the datagram exceeds 65535 bytes (pf's "too big").
pub fn join(frames: &[&mut [u8]], scratch: &mut [u8]) -> Result<Joined, DropReason> {
    let bad = Err(DropReason::FragmentBad);
    let Some(first) = frames.first() else {
        return bad;
    };
    let l3 = crate::wire::l3_offset(first).ok_or(DropReason::FragmentBad)?;
    let Some(h0) = parse(first, l3) else {
        return bad;
    };
    let head_end = match h0.af {
        Af::Inet => h0.data,
        Af::Inet6 => h0.frag_header,
    };
    let Some(head) = first.get(..head_end) else {
        return bad;
    };
    let Some(dst) = scratch.get_mut(..head_end) else {
        return bad;
    };
    dst.copy_from_slice(head);
    let mut at = 0usize;
    for (k, f) in frames.iter().enumerate() {
        let Some(l3k) = crate::wire::l3_offset(f) else {
            return bad;
        };
        let Some(h) = parse(f, l3k) else {
            return bad;
        };
        let last = k + 1 == frames.len();
        if h.af != h0.af
            || h.src != h0.src
            || h.dst != h0.dst
            || h.id != h0.id
            || h.proto != h0.proto
            || usize::from(h.off) != at
            || h.more == last
        {
            return bad;
        }
        let len = usize::from(h.len);
        let (Some(src), Some(dst)) = (
            f.get(h.data..h.data + len),
            scratch.get_mut(head_end + at..head_end + at + len),
        ) else {
            return bad;
        };
        dst.copy_from_slice(src);
        at += len;
    }
    match h0.af {
        Af::Inet => {
            let hl = h0.data - l3;
            let total = hl + at;
            if total > IP_MAXPACKET {
                return bad;
            }
            let Some(ip) = scratch.get_mut(l3..l3 + total) else {
                return bad;
            };
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            // Only DF may stay (and a fragment with DF was refused).
            ip[6] &= 0x40;
            ip[7] = 0;
            ip[10] = 0;
            ip[11] = 0;
            let c = checksum::finish(checksum::data(&ip[..hl]));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Af::Inet6 => {
            let plen = head_end - l3 - 40 + at;
            if plen > IP_MAXPACKET {
                return bad;
            }
            let Some(ip) = scratch.get_mut(l3..l3 + 40 + plen) else {
                return bad;
            };
            ip[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
            let Some(nh) = scratch.get_mut(h0.next_header_at) else {
                return bad;
            };
            *nh = h0.next_header;
        }
    }
    Ok(Joined {
        len: head_end + at,
        l3,
        data: head_end,
        af: h0.af,
    })
}

/// Writes a filtered joined datagram back into its fragment frames, each
/// keeping its size, offset and fragment fields: the link addresses, the
/// IP fields filtering may change (IPv4 TOS, TTL, addresses; IPv6 hop
/// limit, addresses) and each fragment's share of the data (a translated
/// transport header in the first). IPv4 header checksums are recomputed;
/// with `clear_df` the DF bit goes (`set reassemble yes no-df`).
pub fn split(frames: &mut [&mut [u8]], scratch: &[u8], joined: &Joined, clear_df: bool) -> bool {
    let (l3s, ds) = (joined.l3, joined.data);
    let Some(shdr) = scratch.get(l3s..l3s + 40usize.min(ds.saturating_sub(l3s))) else {
        return false;
    };
    let Some(macs) = scratch.get(..12) else {
        return false;
    };
    for f in frames.iter_mut() {
        let Some(l3) = crate::wire::l3_offset(f) else {
            return false;
        };
        let Some(h) = parse(f, l3) else {
            return false;
        };
        let len = usize::from(h.len);
        let from = ds + usize::from(h.off);
        let (Some(src), Some(dst)) = (
            scratch.get(from..from + len),
            f.get_mut(h.data..h.data + len),
        ) else {
            return false;
        };
        dst.copy_from_slice(src);
        f[..12].copy_from_slice(macs);
        match h.af {
            Af::Inet => {
                let hl = h.data - l3;
                if shdr.len() < 20 {
                    return false;
                }
                let ip = &mut f[l3..l3 + hl];
                ip[1] = shdr[1];
                ip[8] = shdr[8];
                ip[12..20].copy_from_slice(&shdr[12..20]);
                if clear_df {
                    ip[6] &= !0x40;
                }
                ip[10] = 0;
                ip[11] = 0;
                let c = checksum::finish(checksum::data(ip));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            }
            Af::Inet6 => {
                if shdr.len() < 40 {
                    return false;
                }
                let ip = &mut f[l3..l3 + 40];
                ip[7] = shdr[7];
                ip[8..40].copy_from_slice(&shdr[8..40]);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
