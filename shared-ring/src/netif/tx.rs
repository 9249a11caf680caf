//! Guest transmit: `struct netif_tx_request` / `struct netif_tx_response`.

use super::{assert_offset, GrantRef};
use crate::ring::entry::{hi16, lo16, word16, RingEntry};

bitflags::bitflags! {
    /// `NETTXF_*`: flags of a TX request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct NetTxFlags: u16 {
        /// `NETTXF_csum_blank`: the protocol checksum field is blank (checksum offload).
        const CSUM_BLANK = 1 << 0;
        /// `NETTXF_data_validated`: the packet data has been validated against the
        /// protocol checksum.
        const DATA_VALIDATED = 1 << 1;
        /// `NETTXF_more_data`: the packet continues in the next request.
        const MORE_DATA = 1 << 2;
        /// `NETTXF_extra_info`: the request is followed by an extra-info slot.
        const EXTRA_INFO = 1 << 3;
    }
}

/// `struct netif_tx_request` (12 bytes). The first request of a packet carries the
/// whole packet's `size`; continuation requests (after `NETTXF_more_data`) carry their
/// own fragment's size.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NetifTxRequest {
    /// `gref`: grant reference of the buffer page.
    pub gref: GrantRef,
    /// `offset`: offset of the data within the page.
    pub offset: u16,
    /// `flags`: `NETTXF_*` (see [`NetifTxRequest::tx_flags`]).
    pub flags: u16,
    /// `id`: echoed in the response.
    pub id: u16,
    /// `size`: packet size (first slot) or fragment size (continuation slots).
    pub size: u16,
}

impl NetifTxRequest {
    /// `flags` as [`NetTxFlags`], unknown bits kept.
    pub fn tx_flags(&self) -> NetTxFlags {
        NetTxFlags::from_bits_retain(self.flags)
    }
}

const _: () = assert!(core::mem::size_of::<NetifTxRequest>() == 12);
const _: () = assert!(core::mem::align_of::<NetifTxRequest>() == 4);
assert_offset!(NetifTxRequest, gref, 0);
assert_offset!(NetifTxRequest, offset, 4);
assert_offset!(NetifTxRequest, flags, 6);
assert_offset!(NetifTxRequest, id, 8);
assert_offset!(NetifTxRequest, size, 10);

impl RingEntry for NetifTxRequest {
    const WORDS: usize = 3;
    #[inline(always)]
    fn from_words(w: &[u32]) -> Self {
        NetifTxRequest {
            gref: w[0],
            offset: lo16(w[1]),
            flags: hi16(w[1]),
            id: lo16(w[2]),
            size: hi16(w[2]),
        }
    }
    #[inline(always)]
    fn to_words(&self, w: &mut [u32]) {
        w[0] = self.gref;
        w[1] = word16(self.offset, self.flags);
        w[2] = word16(self.id, self.size);
    }
}

/// `struct netif_tx_response` (4 bytes, in a 12-byte slot).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NetifTxResponse {
    /// `id`: the request's id.
    pub id: u16,
    /// `status`: `NETIF_RSP_*`.
    pub status: i16,
}

const _: () = assert!(core::mem::size_of::<NetifTxResponse>() == 4);
assert_offset!(NetifTxResponse, id, 0);
assert_offset!(NetifTxResponse, status, 2);

impl RingEntry for NetifTxResponse {
    const WORDS: usize = 1;
    #[inline(always)]
    fn from_words(w: &[u32]) -> Self {
        NetifTxResponse {
            id: lo16(w[0]),
            status: hi16(w[0]) as i16,
        }
    }
    #[inline(always)]
    fn to_words(&self, w: &mut [u32]) {
        w[0] = word16(self.id, self.status as u16);
    }
}
