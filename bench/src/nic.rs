//! The 1 Gb/s NIC model at the backend's port, and the sink behind it.
//!
//! Byte accounting (`docs/protocol.md` §2.6): a frame's length is from the destination
//! MAC to the end of the payload. On the wire each frame also costs the preamble and SFD
//! (8 bytes), the FCS (4 bytes) and the inter-frame gap (12 bytes), and frames shorter than
//! 60 bytes are padded to 60 (64 with the FCS). So a 1500-byte frame occupies 1524 byte
//! times, and 60-byte frames go at 1.488 Mp/s on a 1 Gb/s line.
//!
//! The model is a virtual-time FIFO: a frame handed to the NIC at time `t` starts
//! serializing at `max(t, end of the previous frame)` and departs (its last bit leaves)
//! `wire_bytes × 8 / line_bps` later. The queue holds at most `queue_frames` frames that
//! have not departed yet; a frame arriving at a full queue is dropped (tail drop). The
//! sink timestamps each departure and compares it with the send timestamp the generator
//! wrote in the frame ([`crate::frame`]): one-way delay, guest queue to wire.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

/// Preamble and start-of-frame delimiter, bytes.
pub const PREAMBLE_SFD: u64 = 8;
/// Frame check sequence, bytes.
pub const FCS: u64 = 4;
/// Inter-frame gap, byte times.
pub const IFG: u64 = 12;
/// Shortest frame without FCS (padded to it on the wire).
pub const MIN_FRAME: u64 = 60;

/// Byte times a frame of `frame_len` bytes (dest MAC .. end of payload) occupies on the wire.
pub fn wire_bytes(frame_len: u64) -> u64 {
    frame_len.max(MIN_FRAME) + FCS + PREAMBLE_SFD + IFG
}

/// Serialization time of one frame at `line_bps`, in picoseconds.
pub fn wire_time_ps(frame_len: u64, line_bps: u64) -> u64 {
    ((wire_bytes(frame_len) as u128 * 8 * 1_000_000_000_000) / line_bps.max(1) as u128) as u64
}

/// Frames per second a line of `line_bps` carries back to back.
pub fn line_pps(frame_len: u64, line_bps: u64) -> f64 {
    line_bps as f64 / (wire_bytes(frame_len) * 8) as f64
}

/// Bits/s of frame bytes (dest MAC .. payload) a line of `line_bps` carries with frames of
/// `frame_len` bytes back to back.
pub fn frame_capacity_bps(frame_len: u64, line_bps: u64) -> u64 {
    ((line_bps as u128 * frame_len as u128) / wire_bytes(frame_len) as u128) as u64
}

/// NIC model settings.
#[derive(Debug, Clone, Copy)]
pub struct NicConfig {
    /// Line rate, bits/s on the wire.
    pub line_bps: u64,
    /// Transmit queue length in frames (Linux `txqueuelen` is 1000).
    pub queue_frames: usize,
    /// Width of the throughput-over-time bins, ns.
    pub bin_ns: u64,
}

/// What the sink saw from one VM.
#[derive(Debug, Clone)]
pub struct VmSink {
    /// Frames that departed (whole run).
    pub frames: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// Frames that departed inside the measurement window.
    pub window_frames: u64,
    /// Their frame bytes.
    pub window_bytes: u64,
    /// One-way delay (µs) of frames departing inside the window.
    pub delay_us: Histogram<u64>,
    /// Sum of |delay(i) − delay(i−1)| over consecutive frames in the window, ns.
    pub ipdv_sum_ns: u128,
    /// Number of those differences.
    pub ipdv_n: u64,
    last_delay_ns: Option<u64>,
    /// Frames dropped at the NIC queue (tail drop).
    pub dropped_nic: u64,
    /// Frames dropped by the `tc`-like policer in front of the NIC (after the grant copy).
    pub dropped_police: u64,
    /// Frame bytes departed per bin since the run's start.
    pub bins_bytes: Vec<u64>,
    /// Frames departed per bin.
    pub bins_frames: Vec<u64>,
    /// Frames without a valid bench header (not counted in delays).
    pub foreign: u64,
}

impl VmSink {
    /// An empty sink.
    pub fn new() -> VmSink {
        VmSink {
            frames: 0,
            bytes: 0,
            window_frames: 0,
            window_bytes: 0,
            delay_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds"),
            ipdv_sum_ns: 0,
            ipdv_n: 0,
            last_delay_ns: None,
            dropped_nic: 0,
            dropped_police: 0,
            bins_bytes: Vec::new(),
            bins_frames: Vec::new(),
            foreign: 0,
        }
    }

    /// Counts `frame`, arrived (departed from the NIC, or received by the guest) at
    /// `at_ns`: in its bin of `bin_ns` since `t0_ns`, and, inside `window`, in the window
    /// counts and its one-way delay since the time its header carries.
    pub fn record(
        &mut self,
        at_ns: u64,
        frame: &[u8],
        t0_ns: u64,
        window: (u64, u64),
        bin_ns: u64,
    ) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
        let bin = (at_ns.saturating_sub(t0_ns) / bin_ns.max(1)) as usize;
        if bin < 100_000 {
            if self.bins_bytes.len() <= bin {
                self.bins_bytes.resize(bin + 1, 0);
                self.bins_frames.resize(bin + 1, 0);
            }
            self.bins_bytes[bin] += frame.len() as u64;
            self.bins_frames[bin] += 1;
        }
        if at_ns < window.0 || at_ns >= window.1 {
            return;
        }
        self.window_frames += 1;
        self.window_bytes += frame.len() as u64;
        match crate::frame::decode(frame) {
            Some(h) => {
                let delay = at_ns.saturating_sub(h.sent_ns);
                self.delay_us.saturating_record((delay / 1000).max(1));
                if let Some(prev) = self.last_delay_ns {
                    self.ipdv_sum_ns += prev.abs_diff(delay) as u128;
                    self.ipdv_n += 1;
                }
                self.last_delay_ns = Some(delay);
            }
            None => self.foreign += 1,
        }
    }

    /// Mean absolute difference of consecutive one-way delays (IPDV, RFC 5481), µs.
    pub fn jitter_us(&self) -> f64 {
        if self.ipdv_n == 0 {
            0.0
        } else {
            self.ipdv_sum_ns as f64 / self.ipdv_n as f64 / 1000.0
        }
    }
}

impl Default for VmSink {
    fn default() -> VmSink {
        VmSink::new()
    }
}

/// The shared NIC: one FIFO for every vif's port.
#[derive(Debug)]
pub struct Nic {
    cfg: NicConfig,
    /// Departure time of the last queued frame, ps.
    busy_until_ps: u64,
    /// Departure times (ps) of frames not yet departed, oldest first.
    backlog: VecDeque<u64>,
    /// One sink per VM.
    pub sinks: Vec<VmSink>,
    /// Start of the run (bins count from here), ns.
    pub t0_ns: u64,
    /// Measurement window [start, end), ns.
    pub window: (u64, u64),
}

impl Nic {
    /// A NIC with `vms` sinks; bins count from `t0_ns`.
    pub fn new(cfg: NicConfig, vms: usize) -> Nic {
        Nic {
            cfg,
            busy_until_ps: 0,
            backlog: VecDeque::with_capacity(cfg.queue_frames),
            sinks: (0..vms).map(|_| VmSink::new()).collect(),
            t0_ns: 0,
            window: (0, u64::MAX),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NicConfig {
        &self.cfg
    }

    /// Frames queued and not yet departed at `now_ns`.
    pub fn backlog(&mut self, now_ns: u64) -> usize {
        let now_ps = now_ns.saturating_mul(1000);
        while self.backlog.front().is_some_and(|&d| d <= now_ps) {
            self.backlog.pop_front();
        }
        self.backlog.len()
    }

    /// Offers `frame` from VM `vm` at `now_ns`. Returns its departure time (ns), or `None`
    /// if the queue was full (tail drop).
    pub fn transmit(&mut self, now_ns: u64, vm: usize, frame: &[u8]) -> Option<u64> {
        if self.backlog(now_ns) >= self.cfg.queue_frames {
            if let Some(s) = self.sinks.get_mut(vm) {
                s.dropped_nic += 1;
            }
            return None;
        }
        let now_ps = now_ns.saturating_mul(1000);
        let start = self.busy_until_ps.max(now_ps);
        let dep_ps = start + wire_time_ps(frame.len() as u64, self.cfg.line_bps);
        self.busy_until_ps = dep_ps;
        self.backlog.push_back(dep_ps);
        let dep_ns = dep_ps / 1000;
        let (t0, window, bin_ns) = (self.t0_ns, self.window, self.cfg.bin_ns);
        if let Some(s) = self.sinks.get_mut(vm) {
            s.record(dep_ns, frame, t0, window, bin_ns);
        }
        Some(dep_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_byte_frames_at_one_gigabit() {
        // 60 bytes + FCS = the 64-byte minimum Ethernet frame: 84 byte times.
        assert_eq!(wire_bytes(60), 84);
        let pps = line_pps(60, 1_000_000_000);
        assert!((pps - 1_488_095.2).abs() < 1.0, "{pps}");
        // Shorter frames are padded.
        assert_eq!(wire_bytes(42), 84);
        // A 64-byte frame (our accounting, FCS excluded) takes 88 byte times.
        assert_eq!(wire_bytes(64), 88);
        assert_eq!(wire_time_ps(60, 1_000_000_000), 672_000);
    }

    #[test]
    fn fifteen_hundred_byte_frames_at_one_gigabit() {
        assert_eq!(wire_bytes(1500), 1524);
        let pps = line_pps(1500, 1_000_000_000);
        assert!((pps - 1e9 / (1524.0 * 8.0)).abs() < 1e-6);
        assert_eq!(wire_time_ps(1500, 1_000_000_000), 12_192_000);
        // Frame-byte capacity: 1 Gb/s × 1500/1524 = 984.25 Mb/s.
        assert_eq!(frame_capacity_bps(1500, 1_000_000_000), 984_251_968);
    }

    #[test]
    fn fifo_serializes_back_to_back_and_tail_drops() {
        let mut nic = Nic::new(
            NicConfig {
                line_bps: 1_000_000_000,
                queue_frames: 3,
                bin_ns: 1_000_000,
            },
            1,
        );
        let f = vec![0u8; 1500];
        // Four frames at t = 0: three queue, the fourth is dropped.
        assert_eq!(nic.transmit(0, 0, &f), Some(12_192));
        assert_eq!(nic.transmit(0, 0, &f), Some(24_384));
        assert_eq!(nic.transmit(0, 0, &f), Some(36_576));
        assert_eq!(nic.transmit(0, 0, &f), None);
        assert_eq!(nic.sinks[0].dropped_nic, 1);
        // Once the first has departed there is room again; it queues behind the others.
        assert_eq!(nic.transmit(12_192, 0, &f), Some(48_768));
        // An idle line serializes at once.
        assert_eq!(nic.transmit(1_000_000, 0, &f), Some(1_012_192));
        assert_eq!(nic.sinks[0].frames, 5);
        assert_eq!(nic.sinks[0].bytes, 7500);
    }

    #[test]
    fn delay_and_jitter_from_frame_timestamps() {
        let mut nic = Nic::new(
            NicConfig {
                line_bps: 1_000_000_000,
                queue_frames: 100,
                bin_ns: 1_000_000,
            },
            1,
        );
        let mut f = vec![0u8; 1500];
        crate::frame::encode(&mut f, 0, 0, 0);
        nic.transmit(10_000, 0, &f); // delay 22.192 µs
        crate::frame::encode(&mut f, 0, 1, 100_000);
        nic.transmit(100_000, 0, &f); // delay 12.192 µs
        let s = &nic.sinks[0];
        assert_eq!(s.delay_us.len(), 2);
        assert!((s.jitter_us() - 10.0).abs() < 0.01, "{}", s.jitter_us());
    }
}
