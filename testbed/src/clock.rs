//! netback's clock in tests: the system's monotonic clock plus an offset the test moves
//! ahead, so that timeouts and budgets over long windows are reached without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hypervisor::clock::{monotonic_ns, Clock};

/// The system's clock plus an offset that only grows ([`SkewedClock::advance`]).
#[derive(Debug, Default)]
pub struct SkewedClock {
    skew: AtomicU64,
}

impl SkewedClock {
    /// A clock with no offset yet.
    pub fn new() -> Arc<SkewedClock> {
        Arc::new(SkewedClock::default())
    }

    /// The time now, ns.
    pub fn now(&self) -> u64 {
        monotonic_ns() + self.skew.load(Ordering::Relaxed)
    }

    /// Moves the clock `ns` ahead.
    pub fn advance(&self, ns: u64) {
        self.skew.fetch_add(ns, Ordering::Relaxed);
    }

    /// This clock as netback's [`Clock`] (e.g. [`crate::BackendOptions::clock`]).
    pub fn clock(self: &Arc<Self>) -> Clock {
        let c = Arc::clone(self);
        Box::new(move || c.now())
    }
}
