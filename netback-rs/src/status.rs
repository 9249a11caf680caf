//! What operators see of a vif's queues: each queue of a vif with the data-path worker
//! serving it and its own counters ([`QueueStatus`], in [`crate::VifStatus::queues`]),
//! so that `netback status`, the per-queue metrics and `netback top`'s worker lines can
//! show which worker serves which queue and whether one worker carries more than the
//! others.

use crate::meter::VifCounters;

/// One queue of a vif, as [`crate::Netback::status`] reports it.
///
/// The queues of a [`crate::VifStatus`] are read together with the vif's counters: the
/// counters of its queues sum to the vif's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Queue index (0: the vif's first queue, the one with its credit area).
    pub index: u32,
    /// The data-path worker serving it (index from 0): queue k of a vif whose queue 0
    /// is on worker w₀ runs on worker (w₀ + k) mod the number of workers.
    pub worker: usize,
    /// Whether it is part of the vif's current connection (a queue of an earlier
    /// connection with more queues is kept, with its counters, but not connected).
    pub connected: bool,
    /// Its counters, cumulated over the vif's connections.
    pub counters: VifCounters,
}
