//! The one clock of the project: monotonic nanoseconds since an epoch fixed at the first
//! reading in the process. Every driver takes its clock as a [`Clock`] value and passes
//! the time into every call below it (the ring, the credit area, the buckets, the
//! allocator never read a clock themselves); the default is [`monotonic_ns`], tests
//! inject their own.

use std::sync::OnceLock;
use std::time::Instant;

/// A source of monotonic nanoseconds, injected into the drivers. `Sync`: a driver's
/// threads (netback's data path and control thread) read the same clock.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The system's monotonic clock in nanoseconds since its first use in this process: the
/// drivers' default clock, and the clock every bench thread shares.
pub fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The default [`Clock`]: [`monotonic_ns`].
pub fn system() -> Clock {
    Box::new(monotonic_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let a = monotonic_ns();
        let b = system()();
        assert!(b >= a);
    }
}
