//! Guest receive: `struct netif_rx_request` / `struct netif_rx_response`.

use super::{assert_offset, GrantRef};
use crate::ring::entry::{hi16, lo16, word16, RingEntry};

bitflags::bitflags! {
    /// `NETRXF_*`: flags of an RX response.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct NetRxFlags: u16 {
        /// `NETRXF_data_validated`: the data has been validated against the protocol
        /// checksum.
        const DATA_VALIDATED = 1 << 0;
        /// `NETRXF_csum_blank`: the protocol checksum field is blank.
        const CSUM_BLANK = 1 << 1;
        /// `NETRXF_more_data`: the packet continues in the next response.
        const MORE_DATA = 1 << 2;
        /// `NETRXF_extra_info`: the response is followed by an extra-info slot.
        const EXTRA_INFO = 1 << 3;
        /// `NETRXF_gso_prefix`: deprecated GSO prefix descriptor.
        const GSO_PREFIX = 1 << 4;
    }
}

/// `struct netif_rx_request` (8 bytes): a buffer page the frontend posts for the
/// backend to fill.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NetifRxRequest {
    /// `id`: echoed in the response.
    pub id: u16,
    /// `pad`.
    pub pad: u16,
    /// `gref`: grant reference of the buffer page.
    pub gref: GrantRef,
}

const _: () = assert!(core::mem::size_of::<NetifRxRequest>() == 8);
assert_offset!(NetifRxRequest, id, 0);
assert_offset!(NetifRxRequest, pad, 2);
assert_offset!(NetifRxRequest, gref, 4);

impl RingEntry for NetifRxRequest {
    const WORDS: usize = 2;
    #[inline(always)]
    fn from_words(w: &[u32]) -> Self {
        NetifRxRequest {
            id: lo16(w[0]),
            pad: hi16(w[0]),
            gref: w[1],
        }
    }
    #[inline(always)]
    fn to_words(&self, w: &mut [u32]) {
        w[0] = word16(self.id, self.pad);
        w[1] = self.gref;
    }
}

/// `struct netif_rx_response` (8 bytes). `status` < 0 is a `NETIF_RSP_*` error,
/// otherwise the number of bytes written at `offset`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NetifRxResponse {
    /// `id`: the request's id.
    pub id: u16,
    /// `offset`: where the data starts in the page.
    pub offset: u16,
    /// `flags`: `NETRXF_*` (see [`NetifRxResponse::rx_flags`]).
    pub flags: u16,
    /// `status`: `-ve` is `NETIF_RSP_*`, `+ve` is the data length.
    pub status: i16,
}

impl NetifRxResponse {
    /// `flags` as [`NetRxFlags`], unknown bits kept.
    pub fn rx_flags(&self) -> NetRxFlags {
        NetRxFlags::from_bits_retain(self.flags)
    }
}

const _: () = assert!(core::mem::size_of::<NetifRxResponse>() == 8);
assert_offset!(NetifRxResponse, id, 0);
assert_offset!(NetifRxResponse, offset, 2);
assert_offset!(NetifRxResponse, flags, 4);
assert_offset!(NetifRxResponse, status, 6);

impl RingEntry for NetifRxResponse {
    const WORDS: usize = 2;
    #[inline(always)]
    fn from_words(w: &[u32]) -> Self {
        NetifRxResponse {
            id: lo16(w[0]),
            offset: hi16(w[0]),
            flags: lo16(w[1]),
            status: hi16(w[1]) as i16,
        }
    }
    #[inline(always)]
    fn to_words(&self, w: &mut [u32]) {
        w[0] = word16(self.id, self.offset);
        w[1] = word16(self.flags, self.status as u16);
    }
}
