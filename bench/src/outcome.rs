//! What one run measured ([`RunOutcome`]), whichever the direction (transmit:
//! [`crate::run`], receive: [`crate::rx`]), and the progress lines both print.

use hypervisor::clock::monotonic_ns;
use testbed::BackendExit;

use crate::clock::sleep_until;
use crate::guest::GuestResult;
use crate::nic::Nic;
use crate::scenario::RunSpec;

/// Everything measured in one run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The settings.
    pub spec: RunSpec,
    /// Per VM: the guest's side.
    pub guests: Vec<GuestResult>,
    /// The backend's side.
    pub backend: BackendExit,
    /// The NIC and sink (per-VM sinks inside).
    pub nic: Nic,
    /// Measurement window length, s.
    pub window_s: f64,
    /// Traffic duration, s.
    pub duration_s: f64,
}

/// Every half second from `t0` to `end`: each VM's delivered Mb/s since the last line,
/// from the delivered byte counts `read` returns.
pub(crate) fn show_progress(
    read: &dyn Fn() -> [u64; 3],
    t0: u64,
    end: u64,
    progress: &mut dyn FnMut(&str),
) {
    sleep_until(t0);
    let mut last = (t0, [0u64; 3]);
    while monotonic_ns() < end {
        sleep_until((monotonic_ns() + 500_000_000).min(end));
        let now = monotonic_ns();
        let bytes = read();
        let dt = (now - last.0) as f64 / 1e9;
        let rates: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "VM{} {:6.1}",
                    i + 1,
                    (bytes[i] - last.1[i]) as f64 * 8.0 / dt / 1e6
                )
            })
            .collect();
        progress(&format!(
            "{:>4.1}/{:.1} s  Mb/s: {}",
            (now - t0) as f64 / 1e9,
            (end - t0) as f64 / 1e9,
            rates.join("  ")
        ));
        last = (now, bytes);
    }
}
