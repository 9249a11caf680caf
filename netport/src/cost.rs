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
