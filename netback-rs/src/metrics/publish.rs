//! The hand-over between the event loop and the HTTP server: the latest [`Snapshot`] in a
//! cell the loop writes with a `try_lock`, so it never waits for a scraper.

use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use hypervisor::platform::BackendPlatform;

use super::sample::{Sampler, Snapshot};
use crate::backend::Netback;

/// The latest snapshot, shared between the event loop (writer) and the metrics server
/// (readers).
#[derive(Debug, Clone, Default)]
pub struct SnapshotCell {
    latest: Arc<Mutex<Option<Arc<Snapshot>>>>,
}

impl SnapshotCell {
    /// An empty cell (the server answers 503 until the first snapshot).
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `snap` without waiting: if a reader holds the lock right now, `snap` is
    /// handed back so the caller can retry on its next iteration.
    pub fn publish(&self, snap: Snapshot) -> Result<(), Snapshot> {
        match self.latest.try_lock() {
            Ok(mut g) => {
                *g = Some(Arc::new(snap));
                Ok(())
            }
            // A panicked reader cannot leave the Option half-written: replace it.
            Err(TryLockError::Poisoned(p)) => {
                *p.into_inner() = Some(Arc::new(snap));
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(snap),
        }
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        match self.latest.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Connects a [`Sampler`] to a [`SnapshotCell`] for the event loop: call
/// [`Publisher::tick`] after every iteration.
#[derive(Debug)]
pub struct Publisher {
    sampler: Sampler,
    cell: SnapshotCell,
    pending: Option<Snapshot>,
}

impl Publisher {
    /// Samples every `interval` into `cell`.
    pub fn new(interval: Duration, cell: SnapshotCell) -> Self {
        Publisher {
            sampler: Sampler::new(interval),
            cell,
            pending: None,
        }
    }

    /// Samples if due and publishes without blocking (a snapshot that met a busy reader
    /// is published on a later call, unless a newer one replaces it).
    pub fn tick<P: BackendPlatform>(&mut self, nb: &Netback<P>, now_ns: u64) {
        if let Some(s) = self.sampler.observe(nb, now_ns) {
            self.pending = Some(s);
        }
        if let Some(s) = self.pending.take() {
            if let Err(s) = self.cell.publish(s) {
                self.pending = Some(s);
            }
        }
    }
}
