//! A vif's shaping counters over all its queues: what the guest is told, in the credit
//! area (version 2), of the frames netback's budgets held or refused.
//!
//! Every queue counts its own frames (summed for status and metrics), and also adds
//! them here, so that the vif's first queue — the one whose TX page holds the credit
//! area — publishes the whole vif's figures, wherever its other queues run
//! (`docs/protocol.md` §2.2). Updated only when a frame is shaped (not on the
//! per-packet path of a conforming guest), relaxed atomics: the figures are counters,
//! read whole by one publisher.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use shared_ring::credit::BackCounters;

/// The shaping counters of every queue of one vif connection.
#[derive(Debug, Default)]
pub struct SharedShaped {
    tx_bps_frames: AtomicU64,
    tx_bps_bytes: AtomicU64,
    tx_pps_frames: AtomicU64,
    rx_bps_frames: AtomicU64,
    rx_bps_bytes: AtomicU64,
    rx_pps_frames: AtomicU64,
}

impl SharedShaped {
    /// A TX frame of `bytes` shaped: against the bits/s budget (`bps`) or the
    /// packets/s one.
    pub(super) fn add_tx(&self, bps: bool, bytes: u64) {
        if bps {
            self.tx_bps_frames.fetch_add(1, Relaxed);
            self.tx_bps_bytes.fetch_add(bytes, Relaxed);
        } else {
            self.tx_pps_frames.fetch_add(1, Relaxed);
        }
    }

    /// An RX frame of `bytes` shaped: against the bits/s budget (`bps`) or the
    /// packets/s one.
    pub(super) fn add_rx(&self, bps: bool, bytes: u64) {
        if bps {
            self.rx_bps_frames.fetch_add(1, Relaxed);
            self.rx_bps_bytes.fetch_add(bytes, Relaxed);
        } else {
            self.rx_pps_frames.fetch_add(1, Relaxed);
        }
    }

    /// The vif's figures so far.
    pub fn load(&self) -> BackCounters {
        BackCounters {
            tx_shaped_bps_frames: self.tx_bps_frames.load(Relaxed),
            tx_shaped_bps_bytes: self.tx_bps_bytes.load(Relaxed),
            tx_shaped_pps_frames: self.tx_pps_frames.load(Relaxed),
            rx_shaped_bps_frames: self.rx_bps_frames.load(Relaxed),
            rx_shaped_bps_bytes: self.rx_bps_bytes.load(Relaxed),
            rx_shaped_pps_frames: self.rx_pps_frames.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_direction_and_budget_counts_apart() {
        let s = SharedShaped::default();
        s.add_tx(true, 100);
        s.add_tx(true, 50);
        s.add_tx(false, 60);
        s.add_rx(false, 70);
        s.add_rx(true, 1500);
        let c = s.load();
        assert_eq!(
            (
                c.tx_shaped_bps_frames,
                c.tx_shaped_bps_bytes,
                c.tx_shaped_pps_frames
            ),
            (2, 150, 1)
        );
        assert_eq!(
            (
                c.rx_shaped_bps_frames,
                c.rx_shaped_bps_bytes,
                c.rx_shaped_pps_frames
            ),
            (1, 1500, 1)
        );
    }
}
