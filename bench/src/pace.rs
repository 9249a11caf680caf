//! Offering frames on a fixed schedule: back to back at a line rate, as a traffic
//! generator does (the guests' on TX, the NIC model's senders on RX). When the machine
//! cannot keep up (more than [`MAX_LAG_NS`] behind), the frames it could not even
//! generate are skipped and counted, not offered.

use crate::nic::wire_time_ps;

/// How far a generator may fall behind its schedule before it skips frames.
pub const MAX_LAG_NS: u64 = 2_000_000;

/// The schedule of one flow of equal frames at a line rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval_ps: u128,
    next_ps: u128,
    /// Frames skipped because the generator was too far behind.
    pub skipped: u64,
}

impl Pacer {
    /// Frames of `frame_len` bytes back to back at `line_bps` (wire overhead included),
    /// the first due at `t0_ns`.
    pub fn new(t0_ns: u64, frame_len: usize, line_bps: u64) -> Pacer {
        Pacer {
            interval_ps: wire_time_ps(frame_len as u64, line_bps).max(1) as u128,
            next_ps: t0_ns as u128 * 1000,
            skipped: 0,
        }
    }

    /// How many frames are due at `now_ns` (taken off the schedule); frames more than
    /// [`MAX_LAG_NS`] late are skipped instead.
    pub fn due(&mut self, now_ns: u64) -> u64 {
        let now_ps = now_ns as u128 * 1000;
        if self.next_ps > now_ps {
            return 0;
        }
        let max_lag_ps = MAX_LAG_NS as u128 * 1000;
        let lag = now_ps - self.next_ps;
        if lag > max_lag_ps {
            let skip = (lag - max_lag_ps) / self.interval_ps;
            self.skipped += skip as u64;
            self.next_ps += skip * self.interval_ps;
        }
        let due = (now_ps - self.next_ps) / self.interval_ps + 1;
        self.next_ps += due * self.interval_ps;
        due as u64
    }

    /// The flow is idle at `now_ns`: nothing is owed for the time until it resumes.
    pub fn pause(&mut self, now_ns: u64) {
        self.next_ps = now_ns as u128 * 1000;
    }

    /// When the next frame is due, ns.
    pub fn next_ns(&self) -> u64 {
        (self.next_ps / 1000) as u64
    }
}

/// Adds `n` to the bin of `bin_ns` width that `now_ns` falls in, counted from `t0_ns`
/// (bins past 100 000 are not kept).
pub fn add_to_bin(bins: &mut Vec<u64>, t0_ns: u64, now_ns: u64, bin_ns: u64, n: u64) {
    let bin = (now_ns.saturating_sub(t0_ns) / bin_ns.max(1)) as usize;
    if bin < 100_000 {
        if bins.len() <= bin {
            bins.resize(bin + 1, 0);
        }
        bins[bin] += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_rate_schedule_with_skips() {
        // 1500-byte frames at 1 Gb/s: one every 12.192 µs.
        let mut p = Pacer::new(1_000_000, 1500, 1_000_000_000);
        assert_eq!(p.due(999_999), 0);
        assert_eq!(p.due(1_000_000), 1);
        assert_eq!(p.next_ns(), 1_012_192);
        // 1 ms later: 82 frames are due (1 + floor(987.808 µs / 12.192 µs)).
        assert_eq!(p.due(2_000_000), 82);
        // 10 ms behind: everything beyond 2 ms of lag is skipped, not offered.
        let due = p.due(12_000_000);
        assert_eq!(due + p.skipped, 820);
        assert!((164..=166).contains(&due), "{due}");
        p.pause(20_000_000);
        assert_eq!(p.due(20_000_000), 1);
    }
}
