//! CPU-specific helpers for the fast path, as safe functions: a cache
//! prefetch hint (for the burst passes) and an 8-lane equality mask (for
//! the state index's buckets). x86_64 uses SSE2 (part of its baseline);
//! other targets get portable fallbacks that compute the same results.

/// Asks the CPU to bring the cache line at `p` into all cache levels.
/// Any address is allowed (an invalid one is ignored by the hardware).
#[inline(always)]
pub fn prefetch_read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it does not dereference `p` in the
    // language's sense, never faults, and SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Bit `i` of the result is set when `lanes[i] == value`.
#[inline(always)]
pub fn eq_mask8(lanes: &[u32; 8], value: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{
            __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps,
            _mm_set1_epi32,
        };
        let p = lanes.as_ptr() as *const __m128i;
        // SAFETY: `lanes` is 32 bytes: two unaligned 16-byte loads at
        // offsets 0 and 16 stay in bounds. SSE2 is part of the x86_64
        // baseline.
        unsafe {
            let v = _mm_set1_epi32(value as i32);
            let lo = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_loadu_si128(p), v)));
            let hi = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(
                _mm_loadu_si128(p.add(1)),
                v,
            )));
            (lo as u32) | (hi as u32) << 4
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        eq_mask8_portable(lanes, value)
    }
}

/// The portable definition of [`eq_mask8`].
#[inline]
pub fn eq_mask8_portable(lanes: &[u32; 8], value: u32) -> u32 {
    let mut m = 0;
    for (i, &l) in lanes.iter().enumerate() {
        m |= u32::from(l == value) << i;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn eq_mask8_matches_portable(lanes in proptest::array::uniform8(0u32..4), pick in 0u32..5) {
            prop_assert_eq!(eq_mask8(&lanes, pick), eq_mask8_portable(&lanes, pick));
        }
    }

    #[test]
    fn eq_mask8_sets_lane_bits() {
        let lanes = [7, 1, 7, 2, 3, 7, 9, u32::MAX];
        assert_eq!(eq_mask8(&lanes, 7), 0b0010_0101);
        assert_eq!(eq_mask8(&lanes, u32::MAX), 0b1000_0000);
        assert_eq!(eq_mask8(&lanes, 5), 0);
    }
}
