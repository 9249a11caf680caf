//! The virtio-net header a TAP with `IFF_VNET_HDR` puts before every frame, and its mapping
//! to and from [`FrameMeta`].
//!
//! | virtio-net (`struct virtio_net_hdr`)        | [`FrameMeta`] / netif                      |
//! |---------------------------------------------|--------------------------------------------|
//! | `flags & NEEDS_CSUM`, `csum_start/offset`   | `csum_blank` (+ `data_validated`); offsets derived from the headers |
//! | `flags & DATA_VALID`                        | `data_validated`                           |
//! | `gso_type` `TCPV4`/`TCPV6`, `gso_size`      | `gso: Some(Gso { size, kind })`            |
//! | `hdr_len`                                   | derived from the headers on send; ignored on receive |
//!
//! The header is in native byte order (legacy virtio; the TAP is not switched with
//! `TUNSETVNETLE`/`TUNSETVNETBE`).

use crate::csum::{self, IpVersion, L4Proto, ParseError};
use crate::port::{FrameMeta, Gso, GsoKind};
use std::fmt;
use std::io;

/// Size of `struct virtio_net_hdr` (what this crate sets with `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: partial checksum at `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: checksum already validated.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO; not mapped: netif has no UDP GSO).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` bit (ignored on receive: netif cannot carry it, and the
/// segments' CWR flag is set by the sender's TCP anyway).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// `GSO_BY_FRAGS`: a `gso_size` the kernel reserves (and refuses from a TAP).
pub const GSO_BY_FRAGS: u16 = 0xffff;

/// `struct virtio_net_hdr` (legacy, 10 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to replicate per segment (L2 to end of L4 header).
    pub hdr_len: u16,
    /// Segment payload size.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// Encodes in native byte order.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Decodes from native byte order.
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> Self {
        VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }
}

/// Why a frame and its metadata cannot be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// The headers cannot be parsed for the offload asked for.
    Headers(ParseError),
    /// A GSO type netif cannot carry (UDP, unknown).
    UnsupportedGso(u8),
    /// GSO with a segment size of 0.
    ZeroGsoSize,
    /// GSO with the segment size the kernel reserves ([`GSO_BY_FRAGS`]).
    ReservedGsoSize,
    /// The GSO kind does not match the frame (e.g. `TcpV4` on an IPv6 or UDP frame).
    GsoMismatch,
    /// GSO without a partial checksum from the TAP (the kernel never produces it).
    GsoWithoutPartialChecksum,
    /// The partial checksum's offsets are outside the frame.
    BadChecksumOffsets,
}

impl fmt::Display for VnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VnetError::Headers(e) => write!(f, "cannot locate the L4 checksum: {e}"),
            VnetError::UnsupportedGso(t) => write!(f, "unsupported GSO type {t:#x}"),
            VnetError::ZeroGsoSize => write!(f, "GSO with segment size 0"),
            VnetError::ReservedGsoSize => write!(f, "GSO with the reserved segment size 0xffff"),
            VnetError::GsoMismatch => write!(f, "GSO kind does not match the frame's headers"),
            VnetError::GsoWithoutPartialChecksum => write!(f, "GSO frame without NEEDS_CSUM"),
            VnetError::BadChecksumOffsets => write!(f, "csum_start/csum_offset outside the frame"),
        }
    }
}

impl std::error::Error for VnetError {}

impl From<ParseError> for VnetError {
    fn from(e: ParseError) -> Self {
        VnetError::Headers(e)
    }
}

impl From<VnetError> for io::Error {
    fn from(e: VnetError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

fn check_gso_kind(kind: GsoKind, info: &csum::L4Info) -> Result<(), VnetError> {
    let ok = info.proto == L4Proto::Tcp
        && matches!(
            (kind, info.ip),
            (GsoKind::TcpV4, IpVersion::V4) | (GsoKind::TcpV6, IpVersion::V6)
        );
    if ok {
        Ok(())
    } else {
        Err(VnetError::GsoMismatch)
    }
}

/// The header to write before `frame` into a TAP for `meta`.
///
/// `csum_blank` (or GSO) frames get `NEEDS_CSUM` with `csum_start`/`csum_offset` derived by
/// [`csum::parse_l4`]; GSO frames also get `hdr_len` (end of the TCP header). A frame whose
/// headers do not support the requested offload is an error (the caller drops it).
/// GSO frames must be `csum_blank` (see [`csum::write_pseudo_header_checksum`] to repair
/// those that are not). `data_validated` alone maps to `DATA_VALID`, which Linux ignores on
/// TAP writes (the kernel then verifies the checksum itself, which is safe).
pub fn hdr_for_send(meta: &FrameMeta, frame: &[u8]) -> Result<VirtioNetHdr, VnetError> {
    let mut hdr = VirtioNetHdr::default();
    if let Some(gso) = meta.gso {
        if !meta.csum_blank {
            return Err(VnetError::GsoWithoutPartialChecksum);
        }
        if gso.size == 0 {
            return Err(VnetError::ZeroGsoSize);
        }
        if gso.size == GSO_BY_FRAGS {
            return Err(VnetError::ReservedGsoSize);
        }
        let info = csum::parse_l4(frame)?;
        check_gso_kind(gso.kind, &info)?;
        hdr.gso_type = match gso.kind {
            GsoKind::TcpV4 => VIRTIO_NET_HDR_GSO_TCPV4,
            GsoKind::TcpV6 => VIRTIO_NET_HDR_GSO_TCPV6,
        };
        hdr.gso_size = gso.size;
        // `hdr_end <= frame.len() <= 65535 + 18` but the field is 16 bits.
        hdr.hdr_len = u16::try_from(info.hdr_end).map_err(|_| VnetError::BadChecksumOffsets)?;
        set_partial(&mut hdr, &info)?;
    } else if meta.csum_blank {
        let info = csum::parse_l4(frame)?;
        set_partial(&mut hdr, &info)?;
    } else if meta.data_validated {
        hdr.flags = VIRTIO_NET_HDR_F_DATA_VALID;
    }
    Ok(hdr)
}

fn set_partial(hdr: &mut VirtioNetHdr, info: &csum::L4Info) -> Result<(), VnetError> {
    hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr.csum_start = u16::try_from(info.l4_offset).map_err(|_| VnetError::BadChecksumOffsets)?;
    hdr.csum_offset = info.csum_offset as u16;
    Ok(())
}

/// The metadata of a frame read from a TAP with header `hdr`; may complete the checksum in
/// `frame` in software.
///
/// * `NEEDS_CSUM` at the offsets [`csum::parse_l4`] derives (TCP/UDP over IP, the normal
///   case) → `csum_blank` and `data_validated` (as Linux's netback marks partial-checksum
///   frames towards a guest);
/// * `NEEDS_CSUM` elsewhere (a peer could not find it from the headers) → the checksum is
///   completed here, in software, and the frame is `data_validated`; offsets outside the
///   frame are an error;
/// * `DATA_VALID` → `data_validated`;
/// * GSO `TCPV4`/`TCPV6` (ECN bit ignored) → `gso`, which must match the headers and come
///   with a partial checksum; other GSO types are an error (UFO/USO are never enabled).
pub fn meta_from_recv(hdr: &VirtioNetHdr, frame: &mut [u8]) -> Result<FrameMeta, VnetError> {
    let mut meta = FrameMeta::default();
    let gso_kind = match hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE => None,
        VIRTIO_NET_HDR_GSO_TCPV4 => Some(GsoKind::TcpV4),
        VIRTIO_NET_HDR_GSO_TCPV6 => Some(GsoKind::TcpV6),
        _ => return Err(VnetError::UnsupportedGso(hdr.gso_type)),
    };
    if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let parsed = csum::parse_l4(frame);
        let standard = parsed.as_ref().is_ok_and(|i| {
            i.l4_offset == usize::from(hdr.csum_start)
                && i.csum_offset == usize::from(hdr.csum_offset)
        });
        if standard {
            meta.csum_blank = true;
            meta.data_validated = true;
        } else if gso_kind.is_some() {
            return Err(match parsed {
                Err(e) => VnetError::Headers(e),
                Ok(_) => VnetError::BadChecksumOffsets,
            });
        } else {
            csum::complete_checksum_at(
                frame,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )
            .map_err(|_| VnetError::BadChecksumOffsets)?;
            meta.data_validated = true;
        }
    } else if gso_kind.is_some() {
        return Err(VnetError::GsoWithoutPartialChecksum);
    } else if hdr.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
        meta.data_validated = true;
    }
    if let Some(kind) = gso_kind {
        if hdr.gso_size == 0 {
            return Err(VnetError::ZeroGsoSize);
        }
        let info = csum::parse_l4(frame)?;
        check_gso_kind(kind, &info)?;
        meta.gso = Some(Gso {
            size: hdr.gso_size,
            kind,
        });
    }
    Ok(meta)
}
