//! The wire cost of a frame as the buckets charge it ([`shared_ring::WireCost`]), with
//! the header length read from the frame itself.

use crate::csum::{parse_l4, L4Proto};
use crate::port::FrameMeta;
use shared_ring::WireCost;

/// What `frame` costs on the wire: for a GSO frame, its segments and a copy of its
/// headers (Ethernet to the end of the TCP header) per extra segment. Headers that do
/// not parse as TCP over IP are charged at the upper bound ([`WireCost::of`] with no
/// header length), never less.
pub fn frame_cost(frame: &[u8], meta: &FrameMeta) -> WireCost {
    let len = frame.len() as u64;
    let Some(gso) = meta.gso else {
        return WireCost::of(len, None, None);
    };
    let header = parse_l4(frame)
        .ok()
        .filter(|i| i.proto == L4Proto::Tcp)
        .map(|i| i.hdr_end as u64);
    WireCost::of(len, Some(gso.size), header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::{Gso, GsoKind};

    /// An Ethernet + IPv4 + TCP frame of `len` bytes, TCP with `opts` option bytes.
    fn tcp4(len: usize, proto: u8, opts: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[23] = proto;
        f[34 + 12] = (((20 + opts) / 4) as u8) << 4;
        f
    }

    fn gso(size: u16) -> FrameMeta {
        FrameMeta {
            csum_blank: true,
            data_validated: true,
            gso: Some(Gso {
                size,
                kind: GsoKind::TcpV4,
            }),
        }
    }

    #[test]
    fn a_plain_frame_is_one_packet() {
        let f = tcp4(1514, 6, 0);
        let c = frame_cost(&f, &FrameMeta::default());
        assert_eq!((c.packets, c.bytes), (1, 1514));
    }

    #[test]
    fn a_gso_frame_is_charged_with_its_own_headers() {
        // 66-byte headers (12 bytes of TCP options), 10 segments of 1448.
        let f = tcp4(66 + 14_480, 6, 12);
        let c = frame_cost(&f, &gso(1448));
        assert_eq!((c.packets, c.bytes), (10, 66 + 14_480 + 9 * 66));
    }

    #[test]
    fn headers_that_do_not_parse_are_charged_the_bound() {
        let len = 30_000;
        let bound = WireCost::of(len as u64, Some(48), None);
        // UDP under a TCP GSO type, and bytes that are no IP at all.
        let udp = tcp4(len, 17, 0);
        assert_eq!(frame_cost(&udp, &gso(48)), bound);
        assert_eq!(frame_cost(&vec![0xa5; len], &gso(48)), bound);
    }
}
