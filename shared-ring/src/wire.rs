//! What a frame costs on the wire: the unit of every packets/s and bytes/s budget.
//!
//! A GSO super-frame (netif `XEN_NETIF_EXTRA_TYPE_GSO`) is one slot chain on the ring
//! but becomes `ceil(payload / mss)` segments on the wire, each carrying a copy of the
//! frame's headers (Ethernet, VLAN tags, IP, TCP with options). Charging it as one
//! packet of its own bytes would let a guest send 64 KiB frames with a tiny MSS and
//! put a thousand wire packets through a packets/s cap for every one charged. So every
//! bucket and meter of this project counts [`WireCost`]: the segments a frame becomes
//! and their bytes (`docs/protocol.md` §2.6).
//!
//! The cost is a pure function of the frame length, the MSS and the header length.
//! When the header length is not known yet (netback charges a guest's frame before it
//! copies it), [`WireCost::of`] returns an upper bound over every header a TCP frame can
//! have up to [`MAX_HEADER`]; the caller settles the difference once the headers are
//! read ([`WireCost::excess_over`]).

/// Smallest GSO segment size a frame may ask for (Linux's `tcp_min_snd_mss` default).
/// A request below it is malformed (netback drops it); the cost function itself still
/// charges such an MSS as asked (with 0 taken as 1), never less.
pub const MIN_GSO_MSS: u16 = 48;

/// Smallest header a TCP segment has: Ethernet (14) + IPv4 (20) + TCP (20).
pub const MIN_HEADER: u64 = 54;

/// Largest header assumed while the frame's headers are unknown: Ethernet (14) with two
/// VLAN tags (8), IPv4 with options (60), TCP with options (60). Longer ones exist only
/// with IPv6 extension headers; they are charged once the headers are read.
pub const MAX_HEADER: u64 = 142;

/// The wire cost of one frame: packets and bytes, as the buckets are charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WireCost {
    /// Packets on the wire (segments of a GSO frame; 1 otherwise). Never 0.
    pub packets: u64,
    /// Bytes on the wire: the frame's bytes plus a copy of its headers for every
    /// segment after the first. Never less than the frame's bytes.
    pub bytes: u64,
}

impl WireCost {
    /// The cost of a frame of `frame_len` bytes.
    ///
    /// * `mss`: `Some(segment size)` for a GSO frame (a hostile 0 counts as 1: the most
    ///   segments, never a division by zero), `None` otherwise;
    /// * `header_len`: the bytes of headers each segment carries (the offset of the
    ///   first payload byte), `None` when not known yet: then the result is an upper
    ///   bound of the cost for every header length from [`MIN_HEADER`] to
    ///   [`MAX_HEADER`].
    ///
    /// A non-GSO frame, or a GSO frame whose payload fits one segment, costs one packet
    /// of `frame_len` bytes. No input overflows (at most `frame_len²` in `u128`,
    /// saturated).
    pub fn of(frame_len: u64, mss: Option<u16>, header_len: Option<u64>) -> WireCost {
        let single = WireCost {
            packets: 1,
            bytes: frame_len,
        };
        let Some(mss) = mss else {
            return single;
        };
        let mss = u64::from(mss.max(1));
        // Segments are counted with the smallest header (the most payload) and each
        // repeated header with the largest one the frame may have.
        let (seg_header, copy_header) = match header_len {
            Some(h) => (h, h),
            None => (MIN_HEADER, MAX_HEADER),
        };
        let payload = frame_len.saturating_sub(seg_header);
        let packets = payload.div_ceil(mss).max(1);
        let copies = (packets - 1) as u128 * u128::from(copy_header.min(frame_len));
        let bytes = (u128::from(frame_len) + copies).min(u128::from(u64::MAX)) as u64;
        if packets == 1 {
            return single;
        }
        WireCost { packets, bytes }
    }

    /// What `self` exceeds `other` by, in each unit (zero where `other` covers it):
    /// with `self` the exact cost and `other` what was charged, what is still to charge;
    /// the other way round, what to refund.
    pub fn excess_over(&self, charged: &WireCost) -> WireCost {
        WireCost {
            packets: self.packets.saturating_sub(charged.packets),
            bytes: self.bytes.saturating_sub(charged.bytes),
        }
    }

    /// Whether both parts are zero.
    pub fn is_zero(&self) -> bool {
        self.packets == 0 && self.bytes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_frame_is_one_packet_of_its_bytes() {
        assert_eq!(
            WireCost::of(1514, None, None),
            WireCost {
                packets: 1,
                bytes: 1514
            }
        );
        assert_eq!(
            WireCost::of(60, None, Some(54)),
            WireCost {
                packets: 1,
                bytes: 60
            }
        );
    }

    #[test]
    fn gso_frame_costs_its_segments_and_their_headers() {
        // 66-byte headers (TCP timestamps), 1448-byte MSS, 10 full segments.
        let c = WireCost::of(66 + 14_480, Some(1448), Some(66));
        assert_eq!(
            c,
            WireCost {
                packets: 10,
                bytes: 66 + 14_480 + 9 * 66
            }
        );
        // One byte more is an 11th segment.
        let c = WireCost::of(66 + 14_481, Some(1448), Some(66));
        assert_eq!(c.packets, 11);
        assert_eq!(c.bytes, 66 + 14_481 + 10 * 66);
    }

    #[test]
    fn the_issue_12_flood_costs_what_dom0_sends() {
        // 64 KiB frame, MSS 48, 54-byte headers: 1364 segments of 102 bytes at most.
        let c = WireCost::of(65_535, Some(48), Some(54));
        assert_eq!(c.packets, (65_535u64 - 54).div_ceil(48));
        assert_eq!(c.packets, 1365);
        assert_eq!(c.bytes, 65_535 + 1364 * 54);
    }

    #[test]
    fn gso_payload_within_one_segment_is_one_packet() {
        assert_eq!(
            WireCost::of(1514, Some(1460), Some(54)),
            WireCost {
                packets: 1,
                bytes: 1514
            }
        );
        // Header as long as the frame: no payload, one packet.
        assert_eq!(
            WireCost::of(54, Some(48), Some(54)),
            WireCost {
                packets: 1,
                bytes: 54
            }
        );
        assert_eq!(
            WireCost::of(54, Some(48), Some(200)),
            WireCost {
                packets: 1,
                bytes: 54
            }
        );
    }

    #[test]
    fn hostile_mss_zero_costs_the_most_not_nothing() {
        let c = WireCost::of(65_535, Some(0), Some(54));
        assert_eq!(c.packets, 65_535 - 54);
        assert_eq!(c, WireCost::of(65_535, Some(1), Some(54)));
        // u64-sized frames and headers saturate instead of overflowing.
        let c = WireCost::of(u64::MAX, Some(0), Some(u64::MAX / 2));
        assert_eq!(c.bytes, u64::MAX);
        assert!(c.packets >= 1);
    }

    #[test]
    fn unknown_header_is_an_upper_bound() {
        let bound = WireCost::of(65_535, Some(1448), None);
        for h in MIN_HEADER..=MAX_HEADER {
            let exact = WireCost::of(65_535, Some(1448), Some(h));
            assert!(
                exact.packets <= bound.packets && exact.bytes <= bound.bytes,
                "h {h}"
            );
            assert!(exact.excess_over(&bound).is_zero());
        }
        // Longer headers (IPv6 extension headers) may exceed it: the excess is exact.
        let exact = WireCost::of(65_535, Some(48), Some(400));
        let ex = exact.excess_over(&WireCost::of(65_535, Some(48), None));
        assert_eq!(ex.packets, 0);
        assert!(ex.bytes > 0);
    }
}
