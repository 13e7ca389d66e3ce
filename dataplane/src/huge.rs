//! The state table's large arrays (the slab of states, their side
//! records, the two indexes) on transparent huge pages where the kernel
//! offers them: an array of 4 MiB or more is allocated 2 MiB-aligned,
//! rounded up to whole 2 MiB pages and marked `MADV_HUGEPAGE` before it is
//! first written, so a 1M-state shard (~230 MB) takes ~115 TLB entries
//! instead of ~56 000 and a random lookup no longer pays a page walk. This
//! works without reserved hugepages (`transparent_hugepage` set to
//! `madvise` or `always`); where the kernel says no, the array is on
//! ordinary pages and nothing else changes. Allocated once, when the shard
//! is built (the control side), never on a worker's fast path.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A transparent huge page.
const HUGE_PAGE: usize = 2 << 20;
/// From this size an array goes on huge pages.
const HUGE_FROM: usize = 4 << 20;

/// A fixed-length array, on transparent huge pages when large (see the
/// module documentation); derefs to a slice.
pub struct HugeSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    /// What was allocated (`None` for a zero-sized array).
    layout: Option<Layout>,
}

// SAFETY: a HugeSlice owns its elements like a Box<[T]>.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: shared access only hands out &[T].
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

impl<T: Clone> HugeSlice<T> {
    /// `len` copies of `value`. Panics on a size overflow, as `vec!` does.
    pub fn filled(value: T, len: usize) -> HugeSlice<T> {
        let bytes = core::mem::size_of::<T>()
            .checked_mul(len)
            .expect("HugeSlice: size overflows");
        if bytes == 0 {
            return HugeSlice {
                ptr: NonNull::dangling(),
                len,
                layout: None,
            };
        }
        let huge = bytes >= HUGE_FROM;
        let layout = if huge {
            Layout::from_size_align(bytes.next_multiple_of(HUGE_PAGE), HUGE_PAGE)
        } else {
            Layout::array::<T>(len)
        }
        .expect("HugeSlice: layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut T) else {
            handle_alloc_error(layout)
        };
        if huge {
            // SAFETY: the range is the allocation just made, not yet
            // touched; an advice the kernel refuses changes nothing.
            unsafe {
                libc::madvise(raw as *mut libc::c_void, layout.size(), libc::MADV_HUGEPAGE);
            }
        }
        for i in 0..len {
            // SAFETY: i < len elements fit the allocation (the layout is
            // at least len * size_of::<T>() bytes, aligned for T).
            unsafe { ptr.as_ptr().add(i).write(value.clone()) };
        }
        HugeSlice {
            ptr,
            len,
            layout: Some(layout),
        }
    }
}

impl<T> Deref for HugeSlice<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: ptr holds len initialised elements (or is dangling with
        // zero-sized ones), owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeSlice<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self is unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the len elements are initialised and dropped once; the
        // allocation is freed with the layout it was made with.
        unsafe {
            core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
            if let Some(layout) = self.layout {
                dealloc(self.ptr.as_ptr() as *mut u8, layout);
            }
        }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HugeSlice").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn small_and_large_arrays_hold_their_values_and_drop_them_once() {
        let counted = Rc::new(());
        {
            let a = HugeSlice::filled(Rc::clone(&counted), 10);
            assert_eq!(a.len(), 10);
            assert_eq!(Rc::strong_count(&counted), 11);
        }
        assert_eq!(Rc::strong_count(&counted), 1);
        // Large: 2 MiB-aligned, every element written and writable.
        let mut b = HugeSlice::filled(7u64, (HUGE_FROM / 8) + 3);
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(b.iter().all(|&x| x == 7));
        let n = b.len();
        b[n - 1] = 9;
        assert_eq!(b[n - 1], 9);
        let z: HugeSlice<()> = HugeSlice::filled((), 5);
        assert_eq!(z.len(), 5);
        let e: HugeSlice<u32> = HugeSlice::filled(0, 0);
        assert!(e.is_empty());
    }
}
