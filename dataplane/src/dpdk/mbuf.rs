//! `Mbuf`: one owned packet buffer (single segment). Frees itself on drop;
//! `into_raw` hands ownership to DPDK (tx) or a ring.

use super::Mempool;
use std::ptr::NonNull;

/// A raw mbuf pointer that may cross threads inside rings. Owning it means
/// owning the mbuf; convert back with [`Mbuf::from_raw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMbuf(pub *mut dpdk_sys::rte_mbuf);

// SAFETY: an mbuf may be freed or transmitted from any lcore; the pointer is
// moved, never shared, between threads.
unsafe impl Send for RawMbuf {}

/// An owned mbuf.
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: see RawMbuf; an Mbuf is uniquely owned.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Allocates an empty mbuf from `pool`.
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the life of `pool`.
        let p = unsafe { dpdk_sys::dpf_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(p).map(Mbuf)
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else owns or will free.
    pub unsafe fn from_raw(raw: *mut dpdk_sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(raw).map(Mbuf)
    }

    /// Gives up ownership (e.g. to `tx_burst`); the caller must free it.
    pub fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The packet bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: the mbuf is valid and owned; buf_addr + data_off is the
        // start of data_len initialised bytes inside the buffer.
        unsafe { raw_data(self.0.as_ptr()) }
    }

    /// The packet bytes of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `data`, and `&mut self` guarantees exclusive access.
        unsafe { raw_data_mut(self.0.as_ptr()) }
    }

    /// Appends `len` bytes to the packet and returns them, or `None` if the
    /// buffer has no room.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: the mbuf is valid and exclusively ours.
        let p = unsafe { dpdk_sys::dpf_pktmbuf_append(self.0.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK returned a pointer to `len` bytes inside the buffer,
        // exclusively ours through &mut self.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len as usize) })
    }

    /// The port the mbuf was received on.
    pub fn port(&self) -> u16 {
        // SAFETY: reading a plain field of a valid mbuf.
        unsafe { (*self.0.as_ptr()).port }
    }

    /// The user tag a worker set with [`set_raw_tag`] (why a packet went
    /// to the slow path).
    pub fn tag(&self) -> u32 {
        // SAFETY: reading the `usr` member of the hash union of a valid
        // mbuf: every bit pattern is a valid u32.
        unsafe { (*self.0.as_ptr()).__bindgen_anon_2.hash.usr }
    }

    /// Sets the port field (the control thread marks injected frames with
    /// their egress port this way).
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: writing a plain field of an mbuf we own exclusively.
        unsafe { (*self.0.as_ptr()).port = port }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed exactly once.
        unsafe { dpdk_sys::dpf_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// Sets the user tag of a raw mbuf (the slow-path reason; the RSS hash it
/// overwrites has been used by then).
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller.
#[inline(always)]
pub unsafe fn set_raw_tag(m: *mut dpdk_sys::rte_mbuf, tag: u32) {
    // SAFETY: the caller owns the valid mbuf `m`; `usr` is a plain u32.
    unsafe { (*m).__bindgen_anon_2.hash.usr = tag }
}

/// The data of a raw mbuf.
///
/// # Safety
/// `m` must be a valid single-owner mbuf for the returned lifetime, with no
/// mutable alias.
#[inline(always)]
pub unsafe fn raw_data<'a>(m: *mut dpdk_sys::rte_mbuf) -> &'a [u8] {
    // SAFETY: by the caller's contract the mbuf is valid; DPDK keeps
    // data_len initialised bytes at buf_addr + data_off.
    unsafe {
        let base = (*m).buf_addr.cast::<u8>().add((*m).data_off as usize);
        std::slice::from_raw_parts(base, (*m).data_len as usize)
    }
}

/// The data of a raw mbuf, writable.
///
/// # Safety
/// `m` must be a valid mbuf exclusively owned by the caller for the returned
/// lifetime.
#[inline(always)]
pub unsafe fn raw_data_mut<'a>(m: *mut dpdk_sys::rte_mbuf) -> &'a mut [u8] {
    // SAFETY: as raw_data, and the caller guarantees exclusivity.
    unsafe {
        let base = (*m).buf_addr.cast::<u8>().add((*m).data_off as usize);
        std::slice::from_raw_parts_mut(base, (*m).data_len as usize)
    }
}

/// Chains single-segment mbufs into one multi-segment packet headed by
/// the first (how a reassembled datagram's fragments travel to another
/// worker as one handoff item); `None` for an empty slice. Freeing the
/// head frees them all; [`unchain`] takes them apart again.
///
/// # Safety
/// Every pointer must be a valid single-segment mbuf the caller owns
/// exclusively; ownership of all of them passes to the head.
pub unsafe fn chain(mbufs: &[*mut dpdk_sys::rte_mbuf]) -> Option<*mut dpdk_sys::rte_mbuf> {
    let (&head, rest) = mbufs.split_first()?;
    let mut tail = head;
    let mut pkt_len = 0u32;
    for &m in mbufs {
        // SAFETY: by the caller's contract each mbuf is valid and ours.
        pkt_len += u32::from(unsafe { (*m).data_len });
    }
    for &m in rest {
        // SAFETY: `tail` and `m` are valid mbufs we own; linking them is
        // how DPDK chains segments.
        unsafe { (*tail).next = m };
        tail = m;
    }
    // SAFETY: head is valid and ours; nb_segs and pkt_len describe the
    // chain just built (at most FRAGS_PER_DATAGRAM segments).
    unsafe {
        (*tail).next = std::ptr::null_mut();
        (*head).nb_segs = mbufs.len() as u16;
        (*head).pkt_len = pkt_len;
    }
    Some(head)
}

/// Takes a chain built by [`chain`] apart into `out` (each a
/// single-segment packet again); returns how many. Segments past `out`'s
/// length are freed.
///
/// # Safety
/// `head` must be a valid mbuf chain the caller owns exclusively.
pub unsafe fn unchain(head: *mut dpdk_sys::rte_mbuf, out: &mut [*mut dpdk_sys::rte_mbuf]) -> usize {
    let mut n = 0;
    let mut m = head;
    while !m.is_null() {
        // SAFETY: `m` is a segment of the chain we own; reading `next`
        // before unlinking it.
        let next = unsafe { (*m).next };
        // SAFETY: as above; a lone segment is a packet of its own.
        unsafe {
            (*m).next = std::ptr::null_mut();
            (*m).nb_segs = 1;
            (*m).pkt_len = u32::from((*m).data_len);
        }
        match out.get_mut(n) {
            Some(slot) => {
                *slot = m;
                n += 1;
            }
            // SAFETY: a single segment we own, no longer in `out`.
            None => unsafe { dpdk_sys::dpf_pktmbuf_free(m) },
        }
        m = next;
    }
    n
}
