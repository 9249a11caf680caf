//! `struct netif_extra_info`: auxiliary slots that follow a request (TX) or response
//! (RX) flagged `NETTXF_extra_info` / `NETRXF_extra_info`.
//!
//! An extra-info slot overlays a ring slot (8 bytes of a 12-byte TX slot, all of an
//! 8-byte RX slot) and has no id; in TX the backend answers it with `NETIF_RSP_NULL`.

use super::assert_offset;
use crate::ring::entry::RingEntry;

/// `XEN_NETIF_EXTRA_TYPE_NONE`: never used; invalid.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO` (`u.gso`).
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD` (`u.mcast`).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL` (`u.mcast`).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH` (`u.hash`).
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_XDP` (`u.xdp`; Linux's copy of `netif.h` only).
pub const XEN_NETIF_EXTRA_TYPE_XDP: u8 = 5;
/// `XEN_NETIF_EXTRA_TYPE_MAX` as Linux defines it (Xen's own header stops at 5).
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 6;

/// `XEN_NETIF_GSO_TYPE_NONE`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

bitflags::bitflags! {
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct XenNetifExtraFlags: u8 {
        /// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
        const MORE = 1 << 0;
    }
}

/// `struct netif_extra_info` (8 bytes, 2-aligned): `type`, `flags`, and a 6-byte union
/// kept raw here; [`NetifExtraInfo::parse`] interprets it.
#[repr(C, align(2))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NetifExtraInfo {
    /// `type`: `XEN_NETIF_EXTRA_TYPE_*`.
    pub r#type: u8,
    /// `flags`: `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// `u`: the type-specific union, as bytes.
    pub u: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<NetifExtraInfo>() == 8);
const _: () = assert!(core::mem::align_of::<NetifExtraInfo>() == 2);
assert_offset!(NetifExtraInfo, r#type, 0);
assert_offset!(NetifExtraInfo, flags, 1);
assert_offset!(NetifExtraInfo, u, 2);

impl RingEntry for NetifExtraInfo {
    const WORDS: usize = 2;
    #[inline(always)]
    fn from_words(w: &[u32]) -> Self {
        let a = w[0].to_le_bytes();
        let b = w[1].to_le_bytes();
        NetifExtraInfo {
            r#type: a[0],
            flags: a[1],
            u: [a[2], a[3], b[0], b[1], b[2], b[3]],
        }
    }
    #[inline(always)]
    fn to_words(&self, w: &mut [u32]) {
        let u = &self.u;
        w[0] = u32::from_le_bytes([self.r#type, self.flags, u[0], u[1]]);
        w[1] = u32::from_le_bytes([u[2], u[3], u[4], u[5]]);
    }
}

/// The kind of an extra-info slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtraType {
    /// `XEN_NETIF_EXTRA_TYPE_GSO`.
    Gso,
    /// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
    McastAdd,
    /// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
    McastDel,
    /// `XEN_NETIF_EXTRA_TYPE_HASH`.
    Hash,
    /// `XEN_NETIF_EXTRA_TYPE_XDP`.
    Xdp,
}

impl ExtraType {
    /// Index `type - 1`, for drivers that keep one slot per type (as Linux netback does
    /// to reject duplicates).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Number of extra types (`XEN_NETIF_EXTRA_TYPE_MAX - 1`).
    pub const COUNT: usize = 5;
}

impl TryFrom<u8> for ExtraType {
    type Error = ExtraInfoError;
    fn try_from(t: u8) -> Result<Self, ExtraInfoError> {
        match t {
            XEN_NETIF_EXTRA_TYPE_GSO => Ok(ExtraType::Gso),
            XEN_NETIF_EXTRA_TYPE_MCAST_ADD => Ok(ExtraType::McastAdd),
            XEN_NETIF_EXTRA_TYPE_MCAST_DEL => Ok(ExtraType::McastDel),
            XEN_NETIF_EXTRA_TYPE_HASH => Ok(ExtraType::Hash),
            XEN_NETIF_EXTRA_TYPE_XDP => Ok(ExtraType::Xdp),
            other => Err(ExtraInfoError::InvalidType(other)),
        }
    }
}

/// An extra-info slot, interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtraInfo {
    /// `u.gso`: segmentation offload.
    Gso {
        /// `size`: maximum payload of each segment (the TCP MSS).
        size: u16,
        /// `type`: `XEN_NETIF_GSO_TYPE_*`.
        r#type: u8,
        /// `features`: `XEN_NETIF_GSO_FEAT_*` (none are defined).
        features: u16,
    },
    /// `u.mcast` for `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
    McastAdd {
        /// `addr`: the multicast MAC address.
        addr: [u8; 6],
    },
    /// `u.mcast` for `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
    McastDel {
        /// `addr`: the multicast MAC address.
        addr: [u8; 6],
    },
    /// `u.hash`: a packet hash.
    Hash {
        /// `type`: `_XEN_NETIF_CTRL_HASH_TYPE_*` bit number.
        r#type: u8,
        /// `algorithm`: `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        algorithm: u8,
        /// `value`: the hash, little-endian in the slot.
        value: u32,
    },
    /// `u.xdp`: headroom the frontend wants in front of received data.
    Xdp {
        /// `headroom`: bytes (≤ `XEN_NETIF_MAX_XDP_HEADROOM`).
        headroom: u16,
    },
}

/// Why an extra-info slot was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtraInfoError {
    /// `type` is `XEN_NETIF_EXTRA_TYPE_NONE` or unknown.
    InvalidType(u8),
}

impl core::fmt::Display for ExtraInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExtraInfoError::InvalidType(t) => write!(f, "invalid netif_extra_info type {t}"),
        }
    }
}

impl NetifExtraInfo {
    /// `flags` as [`XenNetifExtraFlags`], unknown bits kept.
    pub fn extra_flags(&self) -> XenNetifExtraFlags {
        XenNetifExtraFlags::from_bits_retain(self.flags)
    }

    /// True when another extra-info slot follows.
    pub fn has_more(&self) -> bool {
        self.extra_flags().contains(XenNetifExtraFlags::MORE)
    }

    /// Interprets the slot by its `type`.
    pub fn parse(&self) -> Result<ExtraInfo, ExtraInfoError> {
        let u = &self.u;
        let u16_at = |i: usize| u16::from_le_bytes([u[i], u[i + 1]]);
        Ok(match ExtraType::try_from(self.r#type)? {
            ExtraType::Gso => ExtraInfo::Gso {
                size: u16_at(0),
                r#type: u[2],
                features: u16_at(4),
            },
            ExtraType::McastAdd => ExtraInfo::McastAdd { addr: *u },
            ExtraType::McastDel => ExtraInfo::McastDel { addr: *u },
            ExtraType::Hash => ExtraInfo::Hash {
                r#type: u[0],
                algorithm: u[1],
                value: u32::from_le_bytes([u[2], u[3], u[4], u[5]]),
            },
            ExtraType::Xdp => ExtraInfo::Xdp {
                headroom: u16_at(0),
            },
        })
    }

    /// Builds the slot for `info` with the given `flags`.
    pub fn new(info: &ExtraInfo, flags: XenNetifExtraFlags) -> Self {
        let mut u = [0u8; 6];
        let r#type = match *info {
            ExtraInfo::Gso {
                size,
                r#type,
                features,
            } => {
                u[0..2].copy_from_slice(&size.to_le_bytes());
                u[2] = r#type;
                u[4..6].copy_from_slice(&features.to_le_bytes());
                XEN_NETIF_EXTRA_TYPE_GSO
            }
            ExtraInfo::McastAdd { addr } => {
                u = addr;
                XEN_NETIF_EXTRA_TYPE_MCAST_ADD
            }
            ExtraInfo::McastDel { addr } => {
                u = addr;
                XEN_NETIF_EXTRA_TYPE_MCAST_DEL
            }
            ExtraInfo::Hash {
                r#type,
                algorithm,
                value,
            } => {
                u[0] = r#type;
                u[1] = algorithm;
                u[2..6].copy_from_slice(&value.to_le_bytes());
                XEN_NETIF_EXTRA_TYPE_HASH
            }
            ExtraInfo::Xdp { headroom } => {
                u[0..2].copy_from_slice(&headroom.to_le_bytes());
                XEN_NETIF_EXTRA_TYPE_XDP
            }
        };
        NetifExtraInfo {
            r#type,
            flags: flags.bits(),
            u,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_extra_type_round_trips() {
        let cases = [
            ExtraInfo::Gso {
                size: 1448,
                r#type: XEN_NETIF_GSO_TYPE_TCPV4,
                features: 0,
            },
            ExtraInfo::McastAdd {
                addr: [1, 0, 0x5e, 0, 0, 1],
            },
            ExtraInfo::McastDel {
                addr: [0x33, 0x33, 0, 0, 0, 1],
            },
            ExtraInfo::Hash {
                r#type: 1,
                algorithm: 1,
                value: 0xdead_beef,
            },
            ExtraInfo::Xdp { headroom: 256 },
        ];
        for info in cases {
            let slot = NetifExtraInfo::new(&info, XenNetifExtraFlags::MORE);
            assert!(slot.has_more());
            assert_eq!(slot.parse(), Ok(info));
            let mut w = [0u32; 2];
            slot.to_words(&mut w);
            assert_eq!(NetifExtraInfo::from_words(&w), slot);
        }
    }

    #[test]
    fn gso_layout_matches_netif_h_diagram() {
        // |type |flags| size      |type | pad | features  |
        let slot = NetifExtraInfo::new(
            &ExtraInfo::Gso {
                size: 0x0102,
                r#type: 2,
                features: 0x0304,
            },
            XenNetifExtraFlags::empty(),
        );
        let mut w = [0u32; 2];
        slot.to_words(&mut w);
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&w[0].to_le_bytes());
        bytes[4..].copy_from_slice(&w[1].to_le_bytes());
        assert_eq!(bytes, [1, 0, 0x02, 0x01, 2, 0, 0x04, 0x03]);
    }

    #[test]
    fn invalid_types_are_rejected() {
        for t in [0u8, 6, 7, 255] {
            let slot = NetifExtraInfo {
                r#type: t,
                ..Default::default()
            };
            assert_eq!(slot.parse(), Err(ExtraInfoError::InvalidType(t)));
        }
    }
}
