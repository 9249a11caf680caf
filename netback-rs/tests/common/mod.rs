//! What only netback's tests need beyond the shared harness (`testbed`).

/// Bytes of heap in use by this process (glibc `mallinfo2`: small blocks in use plus
/// mmap'ed blocks). Unlike RSS, it does not count shared memory the process touches
/// (grant mappings, pre-sized memory ports), so growth here is a leak, not warm-up.
pub fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}
