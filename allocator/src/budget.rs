//! Budgets: what the allocator hands to the netback for one vif: a bits/s and a
//! packets/s rate, each with a burst (token-bucket depth).
//!
//! Burst = rate × burst window (default: one readjustment period), but at least one
//! largest frame's wire cost: [`MIN_BURST_BYTES`] bytes and [`MIN_BURST_PACKETS`]
//! packets, so that a vif with a small budget is never frozen by a bucket too shallow
//! for its next frame. Rationale in `docs/allocator.md` §6.

use std::time::Duration;

/// The smallest byte burst of a non-zero bits/s budget: the wire cost of one largest
/// netif frame (`docs/protocol.md` §2.6). The first TX request's `size` is 16 bits, so
/// a GSO frame is at most 65 535 bytes; cut at the MSS of a 1500-byte MTU over IPv6
/// with TCP timestamps (1428 bytes, 86 bytes of headers per segment) it is 46 segments
/// and 69 405 bytes on the wire. Rounded up to 17 pages.
pub const MIN_BURST_BYTES: u64 = 69_632;

/// The smallest packet burst of a non-zero packets/s budget: the segments of that
/// largest frame (46), so a vif's full-size TSO frames can pass even a small budget
/// (on average still within it).
pub const MIN_BURST_PACKETS: u64 = 46;

/// One vif's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    /// Rate in bits/s of L2 frame bytes (B_i).
    pub bps: u64,
    /// Rate in packets/s (pps^vf_i); `None` = no packets/s limit.
    pub pps: Option<u64>,
    /// Byte bucket depth; 0 when `bps` is 0 (the vif is blocked).
    pub burst_bytes: u64,
    /// Packet bucket depth; `None` when `pps` is `None`, 0 when `pps` is `Some(0)`.
    pub burst_packets: Option<u64>,
}

impl Budget {
    /// A budget with bursts derived from the rates and `window` (see the module docs).
    pub fn with_bursts(bps: u64, pps: Option<u64>, window: Duration) -> Budget {
        let ns = window.as_nanos();
        let burst_bytes = if bps == 0 {
            0
        } else {
            let b = (bps as u128 * ns).div_ceil(8 * 1_000_000_000);
            (b.min(u64::MAX as u128) as u64).max(MIN_BURST_BYTES)
        };
        let burst_packets = pps.map(|p| {
            if p == 0 {
                0
            } else {
                let b = (p as u128 * ns).div_ceil(1_000_000_000);
                (b.min(u64::MAX as u128) as u64).max(MIN_BURST_PACKETS)
            }
        });
        Budget {
            bps,
            pps,
            burst_bytes,
            burst_packets,
        }
    }

    /// The bits/s rate as bytes/s (rounded down), for byte-counting token buckets.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bps / 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts() {
        let w = Duration::from_millis(20);
        let b = Budget::with_bursts(700_000_000, Some(60_000), w);
        assert_eq!(b.burst_bytes, 1_750_000);
        assert_eq!(b.burst_packets, Some(1200));
        let b = Budget::with_bursts(1_000, Some(1), w);
        assert_eq!(b.burst_bytes, MIN_BURST_BYTES);
        assert_eq!(b.burst_packets, Some(MIN_BURST_PACKETS));
        let b = Budget::with_bursts(0, Some(0), w);
        assert_eq!((b.burst_bytes, b.burst_packets), (0, Some(0)));
        assert_eq!(Budget::with_bursts(8, None, w).burst_packets, None);
    }
}
