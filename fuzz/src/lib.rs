//! Helpers shared by the fuzz targets: turning fuzz bytes into shared ring pages.

#![forbid(unsafe_code)]

use core::sync::atomic::AtomicU32;

use shared_ring::{SharedMem, XEN_PAGE_SIZE};

/// Offset of the first ring entry in a ring page (the `ring.h` header is 64 bytes).
pub const RING_ENTRIES_AT: usize = 64;

/// A page of atomic words built from fuzz bytes.
pub struct FuzzPage {
    words: Vec<AtomicU32>,
}

impl FuzzPage {
    /// A zeroed page.
    pub fn zeroed() -> Self {
        FuzzPage {
            words: (0..XEN_PAGE_SIZE / 4).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The page as shared memory.
    pub fn mem(&self) -> SharedMem<'_> {
        SharedMem::from_words(&self.words)
    }

    /// Writes `bytes` from byte `at`, wrapping inside `[lo, hi)` (the entry area of a
    /// ring, so that short inputs land in the slots the consumer reads first).
    pub fn fill_wrapping(&self, bytes: &[u8], at: usize, lo: usize, hi: usize) {
        let mem = self.mem();
        let span = hi - lo;
        let mut page = vec![0u8; XEN_PAGE_SIZE];
        mem.copy_to(&mut page);
        for (k, b) in bytes.iter().take(span).enumerate() {
            page[lo + (at - lo + k) % span] = *b;
        }
        mem.copy_from(&page);
    }
}

/// Little-endian u32 from the first four bytes of `d` (zero-padded), and the rest.
pub fn take_u32(d: &[u8]) -> (u32, &[u8]) {
    let mut b = [0u8; 4];
    let n = d.len().min(4);
    b[..n].copy_from_slice(&d[..n]);
    (u32::from_le_bytes(b), &d[n..])
}

/// One byte (0 if none), and the rest.
pub fn take_u8(d: &[u8]) -> (u8, &[u8]) {
    match d.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, d),
    }
}
