//! Waiting on the one clock every thread of a run shares
//! ([`hypervisor::clock::monotonic_ns`]: frames carry its timestamps, so the generators,
//! netback, netfront and the NIC model must share its epoch).

use hypervisor::clock::monotonic_ns;

/// Sleeps until `deadline_ns` on [`monotonic_ns`]'s clock (returns at once if it passed).
pub fn sleep_until(deadline_ns: u64) {
    let now = monotonic_ns();
    if deadline_ns > now {
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}
