//! Fragments on the packet path (pf's `set reassemble yes`): which worker
//! reassembles a datagram, and how a reassembled datagram is filtered as
//! a whole and leaves in its original fragments.
//!
//! ```text
//! fragment ── reassemble no ─────────────────────────────► Drop(Fragment)
//!    │ owner = keyed hash of (src, dst, proto, id) % workers ── not me ─► Handoff(owner)
//!    ▼
//! reassembly table (crate::frag) ── refused ──────────────► Drop(fragment-*)
//!    ▼ held
//! Reassembly(entry): the worker keeps the frame at `entry`
//! ...complete: next_reassembled() gives the entries back, in offset order
//! process_reassembled(frames): join into one frame (scratch), decide it
//!    like any packet (rules, states, translation, routing), then write the
//!    result back into the same frames ─► Forward / Reply / Drop, or
//!    Handoff(flow owner): the worker sends the frames on, chained, and
//!    the flow's owner decides them the same way
//! ```
//!
//! The fragments leave with the sizes they came with (pf keeps the
//! largest fragment size for IPv6 and lets the stack fragment IPv4 to the
//! egress MTU; see the README).

use super::*;
use crate::frag::{self, Ready, FRAGS_PER_DATAGRAM};

/// How a reassembled datagram reached the worker deciding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Reassembled here.
    Reassembled,
    /// Handed over by the worker that reassembled it (this one owns its
    /// flow).
    Owned,
    /// Sent on once more by an alias of a translated state's far key.
    Redirected,
}

impl Pipeline {
    /// A fragment received on `in_port` (IP header at `l3`): reassembled
    /// by the owner of its datagram.
    pub(super) fn fragment_in(
        &mut self,
        frame: &[u8],
        l3: usize,
        in_port: u16,
        now: Instant,
        owned: bool,
    ) -> Verdict {
        let opts = &self.rules.options;
        if !opts.reassemble {
            return Verdict::Drop(DropReason::Fragment);
        }
        let Some(f) = frag::parse(frame, l3) else {
            return Verdict::Drop(DropReason::BadHeader);
        };
        // pf: a fragment with DF is bogus unless `no-df` clears it.
        if f.df && !opts.reassemble_no_df {
            return Verdict::Drop(DropReason::FragmentBad);
        }
        let limit = (opts.limit_frags as usize).div_ceil(self.config.workers.max(1));
        if limit == 0 {
            return Verdict::Drop(DropReason::FragmentLimit);
        }
        let key = frag::datagram_key(f.af, f.src, f.dst, f.proto, f.id);
        let hash = key.symmetric_hash();
        // The device put every fragment of a datagram on one queue (RSS
        // hashes fragments on their addresses): reassembled there.
        if !owned && !self.arrival_placed && self.config.workers > 1 {
            let owner = self.config.placement.fragment_owner(
                f.af,
                &f.src,
                &f.dst,
                hash,
                self.config.workers,
            );
            if owner != self.config.worker {
                return Verdict::Handoff(owner as u16);
            }
        }
        // Due timeouts first: a late fragment does not revive a datagram
        // the sweep would have dropped already.
        let timeout = opts.frag_timeout_s;
        let counters = &mut self.counters;
        self.frags.expire(now, timeout, counters);
        match self.frags.insert(
            &key, hash, f.off, f.len, f.more, in_port, now, limit, counters,
        ) {
            Ok(entry) => Verdict::Reassembly(entry),
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Fragments this worker's reassembly table holds at most (the worker
    /// keeps a frame per entry below it).
    pub fn fragment_capacity(&self) -> usize {
        self.frags.capacity()
    }

    /// Fragments held now.
    pub fn fragments_held(&self) -> usize {
        self.frags.held()
    }

    /// Calls `free(entry)` for each fragment the table dropped (overlap,
    /// timeout, limit): the worker frees the frame it keeps there. Call it
    /// after every burst, before the entries can be reused.
    pub fn release_fragments(&mut self, free: impl FnMut(u32)) {
        self.frags.release(free);
    }

    /// The next completed datagram: its entries in offset order in
    /// `entries` (the worker takes its frames out at once: the entries are
    /// free again) and the port it arrived on; then decide it with
    /// [`Pipeline::process_reassembled`].
    pub fn next_reassembled(&mut self, entries: &mut [u32; FRAGS_PER_DATAGRAM]) -> Option<Ready> {
        let r = self.frags.next_ready(entries)?;
        self.counters.reassembled += 1;
        Some(r)
    }

    /// Decides a complete datagram given as its fragment frames in offset
    /// order: joined into one frame, decided as one packet received on
    /// `in_port` (rules and states see the whole datagram), and on
    /// `Forward` the frames are rewritten as the packet was (translation,
    /// TTL, MACs) and each goes out on that port. `Reply` answers from
    /// reply slot 0; `Handoff(w)`: the frames, untouched, go to worker `w`
    /// (as [`Arrival::Owned`], or [`Arrival::Redirected`] when this one
    /// was owned). Counts every frame.
    pub fn process_reassembled(
        &mut self,
        frames: &mut [&mut [u8]],
        in_port: u16,
        now: Instant,
        arrival: Arrival,
    ) -> Verdict {
        self.refresh_tables();
        self.reply_slot = 0;
        let n = frames.len() as u64;
        if arrival != Arrival::Reassembled {
            self.counters.handed_in += n;
        }
        let mut scratch = std::mem::take(&mut self.frag_scratch);
        let verdict = self.decide_joined(frames, &mut scratch, in_port, now, arrival);
        self.frag_scratch = scratch;
        match verdict {
            Verdict::Forward(_) => self.counters.forwarded += n,
            Verdict::Drop(r) => self.counters.drops[r as usize] += n,
            Verdict::Reply(_) => {
                self.counters.block_returns += 1;
                self.counters.drops[DropReason::BlockedByRule as usize] += n;
            }
            v => self.count(v),
        }
        verdict
    }

    fn decide_joined(
        &mut self,
        frames: &mut [&mut [u8]],
        scratch: &mut [u8],
        in_port: u16,
        now: Instant,
        arrival: Arrival,
    ) -> Verdict {
        if frames.is_empty() || frames.len() > FRAGS_PER_DATAGRAM {
            return Verdict::Drop(DropReason::Unclassified);
        }
        let joined = match frag::join(frames, scratch) {
            Ok(j) => j,
            Err(r) => return Verdict::Drop(r),
        };
        let Some(frame) = scratch.get_mut(..joined.len) else {
            return Verdict::Drop(DropReason::Unclassified);
        };
        let classified = classify(frame, IfIndex(in_port), Direction::In);
        self.redirected = arrival == Arrival::Redirected;
        let verdict = self.decide(
            frame,
            in_port,
            now,
            arrival != Arrival::Reassembled,
            classified,
            None,
        );
        self.redirected = false;
        let verdict = match verdict {
            // pfsync `defer` holds one frame per state: a datagram goes at
            // once (its state is exported as any other).
            Verdict::Hold(slot) => {
                match self
                    .sync
                    .as_mut()
                    .and_then(|s| s.defer.as_mut())
                    .and_then(|q| q.cancel(slot))
                {
                    Some(port) => Verdict::Forward(port),
                    None => Verdict::Drop(DropReason::Unclassified),
                }
            }
            // The next hop is being asked for; a datagram is not held.
            Verdict::AwaitNeighbor(slot) => {
                if let Some(r) = self.router.as_mut() {
                    r.hold.cancel(slot);
                }
                Verdict::Drop(DropReason::NeighborUnresolved)
            }
            Verdict::SlowPath(_) => Verdict::Drop(DropReason::FragmentLocal),
            v => v,
        };
        if let Verdict::Forward(_) = verdict {
            let clear_df = self.rules.options.reassemble_no_df;
            if !frag::split(frames, frame, &joined, clear_df) {
                return Verdict::Drop(DropReason::BadHeader);
            }
        }
        verdict
    }
}
