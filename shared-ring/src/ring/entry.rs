//! How a ring entry moves between a Rust value and shared memory.

use crate::page::SharedMem;

/// A `#[repr(C)]` ring entry (request, response or anything that overlays a slot, such
/// as `netif_extra_info`) whose C size is a whole number of 32-bit words.
///
/// Entries are read from shared memory exactly once, word by word, into a local value
/// ([`RingEntry::read`]); all validation happens on that copy, so a peer that rewrites
/// the slot afterwards cannot change what was checked (the `RING_COPY_REQUEST` rule).
/// Every field of every implementor is a plain integer, so any bit pattern the peer
/// writes decodes to *some* value: decoding never fails and never panics.
pub trait RingEntry: Copy {
    /// `sizeof` of the C struct, in 32-bit words.
    const WORDS: usize;

    /// Builds the value from its little-endian words (`words.len() == WORDS`).
    fn from_words(words: &[u32]) -> Self;

    /// Writes the value as little-endian words (`words.len() == WORDS`).
    fn to_words(&self, words: &mut [u32]);

    /// Copies the entry at byte `offset` of `mem` out of shared memory, once.
    #[inline(always)]
    fn read(mem: &SharedMem<'_>, offset: usize) -> Self {
        let mut buf = [0u32; MAX_ENTRY_WORDS];
        let words = &mut buf[..Self::WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mem.load(offset + 4 * i);
        }
        Self::from_words(words)
    }

    /// Writes the entry at byte `offset` of `mem`.
    #[inline(always)]
    fn write(&self, mem: &SharedMem<'_>, offset: usize) {
        let mut buf = [0u32; MAX_ENTRY_WORDS];
        let words = &mut buf[..Self::WORDS];
        self.to_words(words);
        for (i, w) in words.iter().enumerate() {
            mem.store(offset + 4 * i, *w);
        }
    }
}

/// The largest entry this crate knows, in words (`xen_netif_ctrl_request`: 16 bytes).
pub const MAX_ENTRY_WORDS: usize = 4;

/// Low half-word of a little-endian word.
#[inline(always)]
pub(crate) const fn lo16(w: u32) -> u16 {
    w as u16
}

/// High half-word of a little-endian word.
#[inline(always)]
pub(crate) const fn hi16(w: u32) -> u16 {
    (w >> 16) as u16
}

/// A word from two half-words, `lo` at the lower address.
#[inline(always)]
pub(crate) const fn word16(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}
