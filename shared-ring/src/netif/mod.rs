//! The netif protocol's wire types: `xen/include/public/io/netif.h`.
//!
//! Every struct is `#[repr(C)]` with the field names of `netif.h`, and its size and field
//! offsets are asserted at compile time against the numbers of the C header (and, in
//! the `shared-ring-oracle` tests, against the header itself compiled by gcc).
//! All fields are plain integers: any bytes a peer writes decode to a value, and the
//! meaning is checked by the driver after the copy.

pub mod ctrl;
pub mod extra;
pub mod rx;
pub mod tx;

pub use ctrl::{XenNetifCtrlRequest, XenNetifCtrlResponse};
pub use extra::{ExtraInfo, ExtraInfoError, ExtraType, NetifExtraInfo, XenNetifExtraFlags};
pub use rx::{NetRxFlags, NetifRxRequest, NetifRxResponse};
pub use tx::{NetTxFlags, NetifTxRequest, NetifTxResponse};

use crate::ring::{layout, BackRing, FrontRing, Sring};

/// `grant_ref_t`.
pub type GrantRef = u32;

/// `XEN_NETIF_NR_SLOTS_MIN`: the number of slots a backend must accept for one packet
/// (a frontend may not use more unless the backend advertises `feature-sg` with more).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;

/// `XEN_NETIF_MAX_TX_SIZE`: the largest packet a TX request chain may describe
/// (the first request's `size` is the whole packet's size).
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

/// `XEN_NETIF_MAX_XDP_HEADROOM` (Linux's copy of `netif.h`).
pub const XEN_NETIF_MAX_XDP_HEADROOM: u16 = 0x7FFF;

/// `NETIF_RSP_DROPPED`: the packet was dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`: the request was malformed or could not be served.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: no response; used for auxiliary slots (`netif_extra_info`).
pub const NETIF_RSP_NULL: i16 = 1;

/// `DEFINE_RING_TYPES(netif_tx, struct netif_tx_request, struct netif_tx_response)`.
pub type NetifTxSring<'a> = Sring<'a, NetifTxRequest, NetifTxResponse>;
/// The netfront side of the TX ring.
pub type NetifTxFrontRing<'a> = FrontRing<'a, NetifTxRequest, NetifTxResponse>;
/// The netback side of the TX ring.
pub type NetifTxBackRing<'a> = BackRing<'a, NetifTxRequest, NetifTxResponse>;
/// `DEFINE_RING_TYPES(netif_rx, struct netif_rx_request, struct netif_rx_response)`.
pub type NetifRxSring<'a> = Sring<'a, NetifRxRequest, NetifRxResponse>;
/// The netfront side of the RX ring.
pub type NetifRxFrontRing<'a> = FrontRing<'a, NetifRxRequest, NetifRxResponse>;
/// The netback side of the RX ring.
pub type NetifRxBackRing<'a> = BackRing<'a, NetifRxRequest, NetifRxResponse>;
/// `DEFINE_RING_TYPES(xen_netif_ctrl, ...)`: the control ring.
pub type XenNetifCtrlSring<'a> = Sring<'a, XenNetifCtrlRequest, XenNetifCtrlResponse>;

/// Bytes of one TX ring slot (`sizeof(union netif_tx_sring_entry)`).
pub const NETIF_TX_SLOT_BYTES: usize = 12;
/// Bytes of one RX ring slot.
pub const NETIF_RX_SLOT_BYTES: usize = 8;
/// Entries of the TX ring on a 4 KiB page (`NET_TX_RING_SIZE`).
pub const NET_TX_RING_SIZE: u32 = layout::ring_size(4096, NETIF_TX_SLOT_BYTES);
/// Entries of the RX ring on a 4 KiB page (`NET_RX_RING_SIZE`).
pub const NET_RX_RING_SIZE: u32 = layout::ring_size(4096, NETIF_RX_SLOT_BYTES);
/// First byte after the TX ring's entries on a 4 KiB page: the unused tail where the
/// DBA-VM credit area lives.
pub const NET_TX_RING_END: usize = layout::ring_end(4096, NETIF_TX_SLOT_BYTES);

const _: () = {
    assert!(NetifTxSring::SLOT_BYTES == NETIF_TX_SLOT_BYTES);
    assert!(NetifRxSring::SLOT_BYTES == NETIF_RX_SLOT_BYTES);
    assert!(XenNetifCtrlSring::SLOT_BYTES == 16);
    assert!(NET_TX_RING_SIZE == 256);
    assert!(NET_RX_RING_SIZE == 256);
    assert!(NET_TX_RING_END == 3136);
};

/// Compile-time check of a field's offset.
macro_rules! assert_offset {
    ($t:ty, $f:ident, $off:expr) => {
        const _: () = assert!(core::mem::offset_of!($t, $f) == $off);
    };
}
pub(crate) use assert_offset;
