//! Per-vif counters, and the per-period meters derived from them.

/// Monotonic counters of one vif. "TX" is guest → port, "RX" is port → guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VifCounters {
    /// Frames forwarded from the guest to the port.
    pub tx_packets: u64,
    /// Their frame bytes.
    pub tx_bytes: u64,
    /// Packets those frames became on the wire ([`shared_ring::WireCost`]: the
    /// segments of a GSO frame; what packets/s budgets count).
    pub tx_wire_packets: u64,
    /// Their wire bytes (each segment's headers included; what bits/s budgets count).
    pub tx_wire_bytes: u64,
    /// Bytes grant-copied out of the guest (forwarded or not).
    pub tx_bytes_copied: u64,
    /// Frames refused by the backstop bucket (answered `NETIF_RSP_DROPPED`, not copied).
    pub tx_dropped_police: u64,
    /// Frames refused as malformed but protocol-conformant (runt, too many slots).
    pub tx_dropped_error: u64,
    /// Frames whose grant copy failed (bad or revoked grant).
    pub tx_copy_errors: u64,
    /// Frames the port could not take (full).
    pub tx_dropped_port: u64,
    /// Times the TX ring was left unread until tokens returned: the hold policy, or the
    /// drop policy past its allowance of drop answers (`DROP_ANSWERS_PER_SEC`).
    pub tx_held: u64,
    /// Frames delivered into the guest's RX buffers.
    pub rx_packets: u64,
    /// Their frame bytes.
    pub rx_bytes: u64,
    /// Wire packets of the frames delivered (see `tx_wire_packets`).
    pub rx_wire_packets: u64,
    /// Their wire bytes.
    pub rx_wire_bytes: u64,
    /// Frames refused by the RX backstop bucket (before any copy).
    pub rx_dropped_police: u64,
    /// Frames larger than the guest's buffers can take.
    pub rx_dropped_oversize: u64,
    /// Frames whose grant copy into the guest failed.
    pub rx_copy_errors: u64,
    /// Frames the frontend did not agree to take and software cannot fix (a GSO type it
    /// did not offer, more than one slot without `feature-sg`).
    pub rx_dropped_offload: u64,
    /// Frames dropped for lack of posted buffers, for a frontend without
    /// `feature-rx-notify` (one that would not say when it posts more).
    pub rx_dropped_no_buffers: u64,
    /// Frames delivered with their partial checksum completed in software (the frontend
    /// did not agree to take it partial). Not a drop.
    pub rx_csum_filled: u64,
    /// Frames dropped because the frontend had stalled: left a frame without RX buffers
    /// for the stall timeout (the frame, and those that came while it stayed stalled).
    pub rx_dropped_stalled: u64,
    /// Times the frontend stalled (its port's carrier turned off).
    pub rx_stalls: u64,
    /// Wire packets of the frames dropped for the RX budget (`rx_dropped_police`): with
    /// the delivered ones, what was offered to the vif (the RX demand).
    pub rx_police_wire_packets: u64,
    /// Their wire bytes.
    pub rx_police_wire_bytes: u64,
    /// Times the port was left unread until the RX budget's deficit accrued (policy
    /// `hold`).
    pub rx_held: u64,
    /// TX frames the backstop held or dropped because of the bits/s budget (what the
    /// guest is told; a frame held twice counts twice).
    pub tx_shaped_bps_frames: u64,
    /// Their wire bytes (as charged: the bound of a GSO frame's cost).
    pub tx_shaped_bps_bytes: u64,
    /// TX frames held or dropped because of the packets/s budget alone.
    pub tx_shaped_pps_frames: u64,
    /// Frames held or dropped because of the RX bits/s budget (what the guest is told).
    pub rx_shaped_bps_frames: u64,
    /// Their wire bytes.
    pub rx_shaped_bps_bytes: u64,
    /// Frames held or dropped because of the RX packets/s budget alone.
    pub rx_shaped_pps_frames: u64,
}

/// Counters of successive connections of one device add up (netback keeps the total
/// across reconnections).
impl core::ops::AddAssign for VifCounters {
    fn add_assign(&mut self, b: VifCounters) {
        let VifCounters {
            tx_packets,
            tx_bytes,
            tx_wire_packets,
            tx_wire_bytes,
            tx_bytes_copied,
            tx_dropped_police,
            tx_dropped_error,
            tx_copy_errors,
            tx_dropped_port,
            tx_held,
            rx_packets,
            rx_bytes,
            rx_wire_packets,
            rx_wire_bytes,
            rx_dropped_police,
            rx_dropped_oversize,
            rx_copy_errors,
            rx_dropped_offload,
            rx_dropped_no_buffers,
            rx_csum_filled,
            rx_dropped_stalled,
            rx_stalls,
            rx_police_wire_packets,
            rx_police_wire_bytes,
            rx_held,
            tx_shaped_bps_frames,
            tx_shaped_bps_bytes,
            tx_shaped_pps_frames,
            rx_shaped_bps_frames,
            rx_shaped_bps_bytes,
            rx_shaped_pps_frames,
        } = b; // exhaustive: a new counter must be added here
        self.tx_packets += tx_packets;
        self.tx_bytes += tx_bytes;
        self.tx_wire_packets += tx_wire_packets;
        self.tx_wire_bytes += tx_wire_bytes;
        self.tx_bytes_copied += tx_bytes_copied;
        self.tx_dropped_police += tx_dropped_police;
        self.tx_dropped_error += tx_dropped_error;
        self.tx_copy_errors += tx_copy_errors;
        self.tx_dropped_port += tx_dropped_port;
        self.tx_held += tx_held;
        self.rx_packets += rx_packets;
        self.rx_bytes += rx_bytes;
        self.rx_wire_packets += rx_wire_packets;
        self.rx_wire_bytes += rx_wire_bytes;
        self.rx_dropped_police += rx_dropped_police;
        self.rx_dropped_oversize += rx_dropped_oversize;
        self.rx_copy_errors += rx_copy_errors;
        self.rx_dropped_offload += rx_dropped_offload;
        self.rx_dropped_no_buffers += rx_dropped_no_buffers;
        self.rx_csum_filled += rx_csum_filled;
        self.rx_dropped_stalled += rx_dropped_stalled;
        self.rx_stalls += rx_stalls;
        self.rx_police_wire_packets += rx_police_wire_packets;
        self.rx_police_wire_bytes += rx_police_wire_bytes;
        self.rx_held += rx_held;
        self.tx_shaped_bps_frames += tx_shaped_bps_frames;
        self.tx_shaped_bps_bytes += tx_shaped_bps_bytes;
        self.tx_shaped_pps_frames += tx_shaped_pps_frames;
        self.rx_shaped_bps_frames += rx_shaped_bps_frames;
        self.rx_shaped_bps_bytes += rx_shaped_bps_bytes;
        self.rx_shaped_pps_frames += rx_shaped_pps_frames;
    }
}

impl core::ops::Add for VifCounters {
    type Output = VifCounters;
    fn add(mut self, b: VifCounters) -> VifCounters {
        self += b;
        self
    }
}

impl VifCounters {
    /// The shaping counters the guest is told (credit area, version 2).
    pub fn shaped(&self) -> shared_ring::credit::BackCounters {
        shared_ring::credit::BackCounters {
            tx_shaped_bps_frames: self.tx_shaped_bps_frames,
            tx_shaped_bps_bytes: self.tx_shaped_bps_bytes,
            tx_shaped_pps_frames: self.tx_shaped_pps_frames,
            rx_shaped_bps_frames: self.rx_shaped_bps_frames,
            rx_shaped_bps_bytes: self.rx_shaped_bps_bytes,
            rx_shaped_pps_frames: self.rx_shaped_pps_frames,
        }
    }

    /// Frames dropped in the backend, whatever the reason, guest → port.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped_police + self.tx_dropped_error + self.tx_copy_errors + self.tx_dropped_port
    }

    /// Frames dropped in the backend, port → guest.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped_police
            + self.rx_dropped_oversize
            + self.rx_copy_errors
            + self.rx_dropped_offload
            + self.rx_dropped_no_buffers
            + self.rx_dropped_stalled
    }
}

/// Rates over one measurement period, on the wire (a GSO frame counts as the segments
/// it becomes, with their headers: the units of the budgets, `docs/protocol.md` §2.6).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Guest → port, bits per second (wire bytes × 8).
    pub tx_bps: f64,
    /// Guest → port, wire packets per second.
    pub tx_pps: f64,
    /// Port → guest, bits per second (wire bytes × 8).
    pub rx_bps: f64,
    /// Port → guest, wire packets per second.
    pub rx_pps: f64,
}

/// Turns successive counter snapshots into per-period rates.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    last: Option<(u64, VifCounters)>,
}

impl Meter {
    /// Records `c` at `now_ns` and returns the rates since the previous sample (None for
    /// the first sample or when no time passed).
    pub fn sample(&mut self, now_ns: u64, c: &VifCounters) -> Option<Rates> {
        let prev = self.last.replace((now_ns, *c));
        let (t0, p) = prev?;
        let dt = now_ns.checked_sub(t0).filter(|d| *d > 0)? as f64 / 1e9;
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        Some(Rates {
            tx_bps: 8.0 * d(c.tx_wire_bytes, p.tx_wire_bytes),
            tx_pps: d(c.tx_wire_packets, p.tx_wire_packets),
            rx_bps: 8.0 * d(c.rx_wire_bytes, p.rx_wire_bytes),
            rx_pps: d(c.rx_wire_packets, p.rx_wire_packets),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_deltas() {
        let mut m = Meter::default();
        let mut c = VifCounters::default();
        assert_eq!(m.sample(0, &c), None);
        c.tx_bytes = 125_000;
        c.tx_packets = 100;
        c.tx_wire_bytes = 125_000;
        c.tx_wire_packets = 100;
        let r = m.sample(1_000_000_000, &c).unwrap();
        assert_eq!(r.tx_bps, 1_000_000.0);
        assert_eq!(r.tx_pps, 100.0);
        assert_eq!(m.sample(1_000_000_000, &c), None);
    }

    #[test]
    fn rates_are_wire_rates() {
        // One 64 KiB GSO frame that went out as 1365 segments in 1 s.
        let mut m = Meter::default();
        let mut c = VifCounters::default();
        m.sample(0, &c);
        c.tx_packets = 1;
        c.tx_bytes = 65_535;
        c.tx_wire_packets = 1365;
        c.tx_wire_bytes = 65_535 + 1364 * 54;
        let r = m.sample(1_000_000_000, &c).unwrap();
        assert_eq!(r.tx_pps, 1365.0);
        assert_eq!(r.tx_bps, 8.0 * (65_535.0 + 1364.0 * 54.0));
    }
}
