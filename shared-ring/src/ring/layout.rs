//! The shared ring page of `xen/include/public/io/ring.h` (`DEFINE_RING_TYPES`).
//!
//! ```text
//! struct __name##_sring {
//!     RING_IDX req_prod, req_event;     // @0, @4
//!     RING_IDX rsp_prod, rsp_event;     // @8, @12
//!     union { ... uint8_t pvt_pad[4]; } pvt;  // @16
//!     uint8_t __pad[44];                // @20
//!     union __name##_sring_entry ring[1]; // @64, variable length
//! };
//! ```

/// `RING_IDX`: free-running 32-bit indices; slot = index & (size - 1).
pub type RingIdx = u32;

/// Byte offset of `req_prod` in the shared ring.
pub const REQ_PROD: usize = 0;
/// Byte offset of `req_event`.
pub const REQ_EVENT: usize = 4;
/// Byte offset of `rsp_prod`.
pub const RSP_PROD: usize = 8;
/// Byte offset of `rsp_event`.
pub const RSP_EVENT: usize = 12;
/// Byte offset of the `pvt` union (4 bytes; `netif.smartpoll_active` at its first byte).
pub const PVT: usize = 16;
/// Byte offset of `__pad[44]`.
pub const PAD: usize = 20;
/// Byte offset of `ring[]`, the first entry.
pub const RING: usize = 64;

/// `__RD32`: rounds a 32-bit value down to a power of two (0 stays 0).
pub const fn rd32(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// `__CONST_RING_SIZE`: the number of entries of `entry_bytes` that fit in a shared ring
/// of `ring_bytes` (usually a page), rounded down to a power of two.
///
/// 256 for both netif rings on a 4 KiB page; 128 for the netif control ring.
pub const fn ring_size(ring_bytes: usize, entry_bytes: usize) -> u32 {
    if ring_bytes <= RING || entry_bytes == 0 {
        return 0;
    }
    let n = (ring_bytes - RING) / entry_bytes;
    let n = if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    };
    rd32(n)
}

/// First byte after the ring entries: where the unused tail of the page starts.
pub const fn ring_end(ring_bytes: usize, entry_bytes: usize) -> usize {
    RING + ring_size(ring_bytes, entry_bytes) as usize * entry_bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rd32_matches_the_macro_definition() {
        // __RD32 spelled out as in ring.h, for comparison.
        const fn rd2(x: u32) -> u32 {
            if x & 2 != 0 {
                2
            } else {
                x & 1
            }
        }
        const fn rd4(x: u32) -> u32 {
            if x & 0xc != 0 {
                rd2(x >> 2) << 2
            } else {
                rd2(x)
            }
        }
        const fn rd8(x: u32) -> u32 {
            if x & 0xf0 != 0 {
                rd4(x >> 4) << 4
            } else {
                rd4(x)
            }
        }
        const fn rd16(x: u32) -> u32 {
            if x & 0xff00 != 0 {
                rd8(x >> 8) << 8
            } else {
                rd8(x)
            }
        }
        const fn rd32_macro(x: u32) -> u32 {
            if x & 0xffff_0000 != 0 {
                rd16(x >> 16) << 16
            } else {
                rd16(x)
            }
        }
        for x in (0..70_000u32).chain([u32::MAX, u32::MAX - 1, 1 << 31, (1 << 31) - 1]) {
            assert_eq!(rd32(x), rd32_macro(x), "x = {x}");
        }
    }

    #[test]
    fn netif_ring_sizes_on_4k() {
        assert_eq!(ring_size(4096, 12), 256); // TX: union of 12-byte request, 4-byte response
        assert_eq!(ring_size(4096, 8), 256); // RX: 8 and 8
        assert_eq!(ring_size(4096, 16), 128); // control ring
        assert_eq!(ring_end(4096, 12), 3136);
        assert_eq!(ring_end(4096, 8), 2112);
        assert_eq!(ring_size(64, 12), 0);
        assert_eq!(ring_size(0, 12), 0);
    }
}
