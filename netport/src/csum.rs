//! Bounds-checked Ethernet/IP/L4 header parsing and the Internet checksum.
//!
//! netif's `csum_blank` and GSO carry no header offsets, so whoever finishes a partial
//! checksum (a TAP, via the virtio-net `csum_start`/`csum_offset`, or software) derives them
//! from the headers: [`parse_l4`]. Every read is bounds-checked against the frame and the
//! lengths the IP header declares; a frame that cannot be parsed yields a [`ParseError`],
//! never a panic (a property test checks this on arbitrary bytes).

use std::fmt;
use std::io;

/// Ethertype of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Ethertype of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// Ethertype of an 802.1ad (QinQ) service tag.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Most VLAN tags skipped before the ethertype (QinQ).
const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers walked before giving up.
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// The IP version of a parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The L4 protocol of a parsed frame (the two a partial checksum is defined for here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Proto {
    /// TCP (checksum at offset 16 of its header).
    Tcp,
    /// UDP (checksum at offset 6 of its header).
    Udp,
}

/// Where the headers of a TCP/UDP-over-IP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Info {
    /// Offset of the IP header (14, or 18/22 behind VLAN tags).
    pub l3_offset: usize,
    /// IP version.
    pub ip: IpVersion,
    /// Offset of the TCP/UDP header: virtio-net `csum_start`.
    pub l4_offset: usize,
    /// TCP or UDP.
    pub proto: L4Proto,
    /// Offset of the checksum field within the L4 header: virtio-net `csum_offset`.
    pub csum_offset: usize,
    /// Offset of the first payload byte (end of the TCP header including options, or of the
    /// UDP header): virtio-net `hdr_len` for GSO.
    pub hdr_end: usize,
    /// L4 length (header + payload) as the IP header declares it; `l4_offset + l4_len <=
    /// frame.len()` (anything beyond is Ethernet padding).
    pub l4_len: usize,
}

/// Why a frame's headers could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The frame ends inside the named header.
    Truncated(&'static str),
    /// The ethertype (after VLAN tags) is not IPv4 or IPv6.
    NotIp(u16),
    /// A header field is inconsistent (named).
    BadHeader(&'static str),
    /// The packet is an IP fragment: no L4 header to checksum as a whole.
    Fragment,
    /// The L4 protocol (or an IPv6 extension header) is not one a partial checksum is
    /// handled for.
    UnsupportedProtocol(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated(h) => write!(f, "frame truncated inside the {h} header"),
            ParseError::NotIp(t) => write!(f, "ethertype {t:#06x} is not IPv4/IPv6"),
            ParseError::BadHeader(what) => write!(f, "bad header: {what}"),
            ParseError::Fragment => write!(f, "IP fragment"),
            ParseError::UnsupportedProtocol(p) => write!(f, "unsupported IP protocol {p}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

fn be16(b: &[u8], off: usize, what: &'static str) -> Result<u16, ParseError> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(ParseError::Truncated(what)),
    }
}

fn byte(b: &[u8], off: usize, what: &'static str) -> Result<u8, ParseError> {
    b.get(off).copied().ok_or(ParseError::Truncated(what))
}

/// Parses Ethernet (with up to two VLAN tags), IPv4 or IPv6 (walking hop-by-hop, routing,
/// destination-options and AH extension headers) and the TCP or UDP header.
///
/// Fails on anything else: non-IP, fragments, other protocols, truncation, or lengths the
/// frame does not hold.
pub fn parse_l4(frame: &[u8]) -> Result<L4Info, ParseError> {
    let mut off = 12;
    let mut ethertype = be16(frame, off, "Ethernet")?;
    off += 2;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(frame, off + 2, "VLAN")?;
        off += 4;
    }
    let l3 = off;
    let (ip, mut proto, l4, l3_end) = match ethertype {
        ETH_P_IP => {
            let vihl = byte(frame, l3, "IPv4")?;
            if vihl >> 4 != 4 {
                return Err(ParseError::BadHeader("IPv4 version"));
            }
            let ihl = usize::from(vihl & 0x0f) * 4;
            if ihl < 20 {
                return Err(ParseError::BadHeader("IPv4 IHL < 5"));
            }
            if frame.len() < l3 + ihl {
                return Err(ParseError::Truncated("IPv4"));
            }
            let tot = usize::from(be16(frame, l3 + 2, "IPv4")?);
            if tot < ihl {
                return Err(ParseError::BadHeader("IPv4 total length < IHL"));
            }
            if l3 + tot > frame.len() {
                return Err(ParseError::Truncated("IPv4 payload"));
            }
            let frag = be16(frame, l3 + 6, "IPv4")?;
            if frag & 0x3fff != 0 {
                return Err(ParseError::Fragment);
            }
            (IpVersion::V4, frame[l3 + 9], l3 + ihl, l3 + tot)
        }
        ETH_P_IPV6 => {
            let v = byte(frame, l3, "IPv6")?;
            if v >> 4 != 6 {
                return Err(ParseError::BadHeader("IPv6 version"));
            }
            if frame.len() < l3 + 40 {
                return Err(ParseError::Truncated("IPv6"));
            }
            let plen = usize::from(be16(frame, l3 + 4, "IPv6")?);
            if plen == 0 {
                return Err(ParseError::BadHeader("IPv6 payload length 0 (jumbogram)"));
            }
            let end = l3 + 40 + plen;
            if end > frame.len() {
                return Err(ParseError::Truncated("IPv6 payload"));
            }
            (IpVersion::V6, frame[l3 + 6], l3 + 40, end)
        }
        t => return Err(ParseError::NotIp(t)),
    };
    let mut l4 = l4;
    if ip == IpVersion::V6 {
        let mut walked = 0;
        loop {
            let len = match proto {
                IPPROTO_TCP | IPPROTO_UDP => break,
                // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
                0 | 43 | 60 => (usize::from(byte(frame, l4 + 1, "IPv6 extension")?) + 1) * 8,
                // Authentication header: (len + 2) * 4 bytes.
                51 => (usize::from(byte(frame, l4 + 1, "IPv6 AH")?) + 2) * 4,
                44 => return Err(ParseError::Fragment),
                p => return Err(ParseError::UnsupportedProtocol(p)),
            };
            walked += 1;
            if walked > MAX_IPV6_EXT_HEADERS {
                return Err(ParseError::BadHeader("too many IPv6 extension headers"));
            }
            if l4 + len > l3_end {
                return Err(ParseError::Truncated("IPv6 extension"));
            }
            proto = frame[l4];
            l4 += len;
        }
    }
    let l4_len = l3_end - l4;
    let (proto, csum_offset, hdr_len) = match proto {
        IPPROTO_TCP => {
            if l4_len < 20 {
                return Err(ParseError::Truncated("TCP"));
            }
            let doff = usize::from(frame[l4 + 12] >> 4) * 4;
            if doff < 20 {
                return Err(ParseError::BadHeader("TCP data offset < 5"));
            }
            if doff > l4_len {
                return Err(ParseError::Truncated("TCP options"));
            }
            (L4Proto::Tcp, 16, doff)
        }
        IPPROTO_UDP => {
            if l4_len < 8 {
                return Err(ParseError::Truncated("UDP"));
            }
            (L4Proto::Udp, 6, 8)
        }
        p => return Err(ParseError::UnsupportedProtocol(p)),
    };
    if l4 > usize::from(u16::MAX) {
        return Err(ParseError::BadHeader("L4 header beyond 65535"));
    }
    Ok(L4Info {
        l3_offset: l3,
        ip,
        l4_offset: l4,
        proto,
        csum_offset,
        hdr_end: l4 + hdr_len,
        l4_len,
    })
}

/// Adds `data` to a 32-bit ones'-complement accumulator as big-endian 16-bit words (an odd
/// trailing byte is padded with zero). Fold the result with [`fold`].
pub fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Sum 32-bit halves into a 64-bit accumulator; carries are folded at the end.
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for w in &mut rest {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = rest.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds a ones'-complement accumulator to 16 bits (not inverted).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The (unfolded) pseudo-header sum of a parsed frame: addresses, protocol and L4 length.
pub fn pseudo_header_sum(frame: &[u8], info: &L4Info) -> u64 {
    let proto = match info.proto {
        L4Proto::Tcp => IPPROTO_TCP,
        L4Proto::Udp => IPPROTO_UDP,
    };
    // `parse_l4` checked the whole IP header lies within the frame.
    let addrs = match info.ip {
        IpVersion::V4 => &frame[info.l3_offset + 12..info.l3_offset + 20],
        IpVersion::V6 => &frame[info.l3_offset + 8..info.l3_offset + 40],
    };
    ones_sum(addrs, u64::from(proto) + info.l4_len as u64)
}

/// Completes a partial checksum the virtio-net way: sums `frame[start..]` (whose checksum
/// field already holds the pseudo-header sum), folds, inverts and stores it at
/// `start + offset`. Fails, leaving the frame untouched, if the field is not inside the
/// frame.
pub fn complete_checksum_at(
    frame: &mut [u8],
    start: usize,
    offset: usize,
) -> Result<(), ParseError> {
    let field = start
        .checked_add(offset)
        .filter(|f| f.checked_add(2).is_some_and(|e| e <= frame.len()))
        .ok_or(ParseError::BadHeader("checksum field outside the frame"))?;
    let mut sum = !fold(ones_sum(&frame[start..], 0));
    if sum == 0 && is_udp_at(frame, start) {
        // UDP transmits a computed 0 as 0xffff (0 means "no checksum").
        sum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

fn is_udp_at(frame: &[u8], start: usize) -> bool {
    parse_l4(frame).is_ok_and(|i| i.l4_offset == start && i.proto == L4Proto::Udp)
}

/// Completes the partial checksum of a `csum_blank` TCP/UDP frame in software (what a
/// receiver that cannot take `csum_blank` frames needs, e.g. a frontend that turned
/// checksum offload off with `feature-no-csum-offload`). The checksum field must hold the
/// pseudo-header sum, as a `csum_blank` sender leaves it. Returns the parsed headers.
pub fn fill_partial_checksum(frame: &mut [u8]) -> Result<L4Info, ParseError> {
    let info = parse_l4(frame)?;
    let end = info.l4_offset + info.l4_len;
    let field = info.l4_offset + info.csum_offset;
    let mut sum = !fold(ones_sum(&frame[info.l4_offset..end], 0));
    if sum == 0 && info.proto == L4Proto::Udp {
        sum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(info)
}

/// Writes the pseudo-header sum (folded, not inverted) into the L4 checksum field, turning
/// a frame into a valid `csum_blank` frame whatever its checksum field held. Used to repair
/// GSO frames sent without `csum_blank` (as Linux's netback does for buggy frontends).
pub fn write_pseudo_header_checksum(frame: &mut [u8]) -> Result<L4Info, ParseError> {
    let info = parse_l4(frame)?;
    let field = info.l4_offset + info.csum_offset;
    let sum = fold(pseudo_header_sum(frame, &info));
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(info)
}

/// Verifies the L4 checksum of a complete (not `csum_blank`) TCP/UDP frame: true when the
/// sum over the pseudo-header and the L4 bytes is 0xffff (a UDP checksum of 0 means none
/// and is accepted).
pub fn verify_l4_checksum(frame: &[u8]) -> Result<bool, ParseError> {
    let info = parse_l4(frame)?;
    let l4 = &frame[info.l4_offset..info.l4_offset + info.l4_len];
    if info.proto == L4Proto::Udp && l4[6] == 0 && l4[7] == 0 {
        return Ok(true);
    }
    Ok(fold(ones_sum(l4, pseudo_header_sum(frame, &info))) == 0xffff)
}
