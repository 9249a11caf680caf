//! Shared memory as seen by this crate: a run of 32-bit words accessed only atomically.
//!
//! A ring page is written concurrently by the peer (another domain on Xen, another
//! process or thread on the `local` platform). Treating it as ordinary Rust memory would
//! be a data race the moment the peer misbehaves. Every access this crate makes to shared
//! memory therefore goes through [`AtomicU32`]: a relaxed atomic load or store of an
//! aligned word is a plain `mov` on x86 and `ldr`/`str` on Arm, so the protocol costs
//! nothing extra, and a hostile peer can at worst make us read values it chose, never
//! cause undefined behaviour.
//!
//! Xen's shared structures are little-endian; narrower fields are packed into words with
//! [`u32::to_le_bytes`] / [`u32::from_le_bytes`] so the byte layout is exactly the C one.

use core::sync::atomic::{AtomicU32, Ordering};

/// The Xen page size on x86 and Arm (`XEN_PAGE_SIZE`).
pub const XEN_PAGE_SIZE: usize = 4096;

/// One 4 KiB page of shared memory, page-aligned, made of atomic words.
///
/// Use it for rings that live in this process (tests, benchmarks, the `local` platform
/// when memory is allocated by Rust). Memory mapped from elsewhere (a grant mapping, a
/// memfd) is viewed through [`SharedMem::from_raw`] instead.
#[repr(C, align(4096))]
pub struct SharedPage {
    words: [AtomicU32; XEN_PAGE_SIZE / 4],
}

impl SharedPage {
    /// A zero-filled page.
    pub const fn new() -> Self {
        // `AtomicU32` is not `Copy`; build the array with a const item.
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU32 = AtomicU32::new(0);
        SharedPage {
            words: [ZERO; XEN_PAGE_SIZE / 4],
        }
    }

    /// A view of the whole page.
    pub fn mem(&self) -> SharedMem<'_> {
        SharedMem { words: &self.words }
    }
}

impl Default for SharedPage {
    fn default() -> Self {
        Self::new()
    }
}

/// A borrowed view of shared memory: a slice of atomic 32-bit words.
///
/// All reads and writes are atomic word accesses; byte and half-word fields are
/// extracted from (or merged into) their containing word.
#[derive(Clone, Copy)]
pub struct SharedMem<'a> {
    words: &'a [AtomicU32],
}

impl<'a> SharedMem<'a> {
    /// A view over words this process already owns as atomics.
    pub fn from_words(words: &'a [AtomicU32]) -> Self {
        SharedMem { words }
    }

    /// A view over `len` bytes of raw shared memory at `ptr`, e.g. a page mapped from a
    /// peer's grant. `len` is rounded down to whole words.
    ///
    /// # Safety
    ///
    /// `ptr` must be 4-byte aligned and valid for reads and writes of `len` bytes for
    /// the whole lifetime `'a` (the mapping must outlive the view), and every other
    /// accessor of that memory *inside this process* must use atomic accesses too. The
    /// peer domain may write the memory at any time: that is what this type is for.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        debug_assert_eq!(ptr as usize % 4, 0, "shared memory must be word aligned");
        // SAFETY: the caller guarantees alignment, validity for `len` bytes during `'a`,
        // and atomic-only access within this process; `AtomicU32` has the same size
        // and alignment as `u32`, and any bit pattern is a valid `AtomicU32`.
        let words = unsafe { core::slice::from_raw_parts(ptr as *const AtomicU32, len / 4) };
        SharedMem { words }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.words.len() * 4
    }

    /// True when the view is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The sub-view of `len` bytes starting at byte `offset` (both multiples of 4).
    ///
    /// Returns `None` when the range is unaligned or outside the view.
    pub fn slice(&self, offset: usize, len: usize) -> Option<SharedMem<'a>> {
        if offset % 4 != 0 || len % 4 != 0 {
            return None;
        }
        let end = offset.checked_add(len)?;
        let words = self.words.get(offset / 4..end / 4)?;
        Some(SharedMem { words })
    }

    /// The atomic word at byte `offset` (a multiple of 4).
    ///
    /// # Panics
    ///
    /// If `offset` is outside the view: callers index with offsets computed from a
    /// layout they validated at construction.
    #[inline(always)]
    pub fn word(&self, offset: usize) -> &'a AtomicU32 {
        &self.words[offset / 4]
    }

    /// Relaxed load of the word at byte `offset`.
    #[inline(always)]
    pub fn load(&self, offset: usize) -> u32 {
        self.word(offset).load(Ordering::Relaxed)
    }

    /// Relaxed store of the word at byte `offset`.
    #[inline(always)]
    pub fn store(&self, offset: usize, value: u32) {
        self.word(offset).store(value, Ordering::Relaxed)
    }

    /// Copies the whole view into `out` (up to the shorter length), word by word.
    pub fn copy_to(&self, out: &mut [u8]) {
        for (chunk, w) in out.chunks_mut(4).zip(self.words.iter()) {
            let bytes = w.load(Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// Overwrites the view from `data` (up to the shorter length, whole words only).
    pub fn copy_from(&self, data: &[u8]) {
        for (chunk, w) in data.chunks_exact(4).zip(self.words.iter()) {
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            w.store(u32::from_le_bytes(b), Ordering::Relaxed);
        }
    }

    /// Fills the view with zero.
    pub fn zero(&self) {
        for w in self.words {
            w.store(0, Ordering::Relaxed);
        }
    }
}

impl core::fmt::Debug for SharedMem<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedMem")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_page_sized_and_aligned() {
        assert_eq!(core::mem::size_of::<SharedPage>(), XEN_PAGE_SIZE);
        assert_eq!(core::mem::align_of::<SharedPage>(), XEN_PAGE_SIZE);
    }

    #[test]
    fn slice_checks_bounds_and_alignment() {
        let page = SharedPage::new();
        let m = page.mem();
        assert!(m.slice(4096, 0).is_some());
        assert!(m.slice(4096, 4).is_none());
        assert!(m.slice(2, 4).is_none());
        assert!(m.slice(0, 6).is_none());
        assert!(m.slice(usize::MAX - 3, 4).is_none());
        let s = m.slice(3136, 960).unwrap();
        s.store(0, 0xdead_beef);
        assert_eq!(m.load(3136), 0xdead_beef);
    }

    #[test]
    fn byte_copy_is_little_endian() {
        let page = SharedPage::new();
        let m = page.mem();
        m.store(0, 0x0403_0201);
        let mut out = [0u8; 6];
        m.copy_to(&mut out);
        assert_eq!(out, [1, 2, 3, 4, 0, 0]);
        m.copy_from(&[9, 8, 7, 6]);
        assert_eq!(m.load(0), 0x0607_0809);
    }
}
