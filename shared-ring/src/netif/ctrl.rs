//! The optional control ring: `struct xen_netif_ctrl_request` / `_response`.
//!
//! Linux netback offers it (`feature-ctrl-ring`) for Toeplitz hashing; this project's
//! drivers do not negotiate it, but the types are here so the ABI is complete and checked.

use super::assert_offset;
use crate::ring::entry::{hi16, lo16, word16, RingEntry};

/// `XEN_NETIF_CTRL_TYPE_INVALID`.
pub const XEN_NETIF_CTRL_TYPE_INVALID: u16 = 0;
/// `XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS`.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS: u16 = 1;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS`.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS: u16 = 2;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_KEY`.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY: u16 = 3;
/// `XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE`.
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE: u16 = 4;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE`.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE: u16 = 5;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING`.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING: u16 = 6;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM`.
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM: u16 = 7;
/// `XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE`.
pub const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE: u16 = 8;
/// `XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING`.
pub const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING: u16 = 9;
/// `XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING`.
pub const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING: u16 = 10;

/// `XEN_NETIF_CTRL_STATUS_SUCCESS`.
pub const XEN_NETIF_CTRL_STATUS_SUCCESS: u32 = 0;
/// `XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED`.
pub const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
/// `XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER`.
pub const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
/// `XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW`.
pub const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;

/// `XEN_NETIF_CTRL_HASH_ALGORITHM_NONE`.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
/// `XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// `XEN_NETIF_CTRL_HASH_TYPE_IPV4`.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 1 << 0;
/// `XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP`.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1 << 1;
/// `XEN_NETIF_CTRL_HASH_TYPE_IPV6`.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 1 << 2;
/// `XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP`.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 1 << 3;

/// `struct xen_netif_ctrl_request` (16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct XenNetifCtrlRequest {
    /// `id`: echoed in the response.
    pub id: u16,
    /// `type`: `XEN_NETIF_CTRL_TYPE_*`.
    pub r#type: u16,
    /// `data[3]`: type-specific parameters.
    pub data: [u32; 3],
}

const _: () = assert!(core::mem::size_of::<XenNetifCtrlRequest>() == 16);
assert_offset!(XenNetifCtrlRequest, id, 0);
assert_offset!(XenNetifCtrlRequest, r#type, 2);
assert_offset!(XenNetifCtrlRequest, data, 4);

impl RingEntry for XenNetifCtrlRequest {
    const WORDS: usize = 4;
    fn from_words(w: &[u32]) -> Self {
        XenNetifCtrlRequest {
            id: lo16(w[0]),
            r#type: hi16(w[0]),
            data: [w[1], w[2], w[3]],
        }
    }
    fn to_words(&self, w: &mut [u32]) {
        w[0] = word16(self.id, self.r#type);
        w[1..4].copy_from_slice(&self.data);
    }
}

/// `struct xen_netif_ctrl_response` (12 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct XenNetifCtrlResponse {
    /// `id`: the request's id.
    pub id: u16,
    /// `type`: the request's type.
    pub r#type: u16,
    /// `status`: `XEN_NETIF_CTRL_STATUS_*`.
    pub status: u32,
    /// `data`: type-specific result.
    pub data: u32,
}

const _: () = assert!(core::mem::size_of::<XenNetifCtrlResponse>() == 12);
assert_offset!(XenNetifCtrlResponse, id, 0);
assert_offset!(XenNetifCtrlResponse, r#type, 2);
assert_offset!(XenNetifCtrlResponse, status, 4);
assert_offset!(XenNetifCtrlResponse, data, 8);

impl RingEntry for XenNetifCtrlResponse {
    const WORDS: usize = 3;
    fn from_words(w: &[u32]) -> Self {
        XenNetifCtrlResponse {
            id: lo16(w[0]),
            r#type: hi16(w[0]),
            status: w[1],
            data: w[2],
        }
    }
    fn to_words(&self, w: &mut [u32]) {
        w[0] = word16(self.id, self.r#type);
        w[1] = self.status;
        w[2] = self.data;
    }
}
