//! What only netback's tests need beyond the shared harness (`testbed`).

/// Bytes of heap in use by this process (glibc `mallinfo2`: small blocks in use plus
/// mmap'ed blocks). Unlike RSS, it does not count shared memory the process touches
/// (grant mappings, pre-sized memory ports), so growth here is a leak, not warm-up.
pub fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// The threads of this process, less the test harness's: it starts a thread per test,
/// named after it (the kernel keeps the first 15 bytes), and those of `tests` may be
/// waiting while another test measures.
#[allow(dead_code)] // not every test binary counts threads
pub fn threads_except(tests: &[&str]) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| {
            let comm = comm.trim_end();
            !tests
                .iter()
                .any(|t| t.starts_with(comm) && comm.len() >= 15)
        })
        .count()
}
