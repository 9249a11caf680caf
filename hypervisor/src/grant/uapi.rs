//! Linux uapi of `/dev/xen/gntalloc` and `/dev/xen/gntdev` (`<xen/gntalloc.h>`,
//! `<xen/gntdev.h>`), and the grant-copy flags of Xen's `grant_table.h`.
//!
//! Every ioctl is `_IOC(_IOC_NONE, 'G', nr, sizeof(struct))`: direction "none" but with
//! a size. Layouts and numbers are checked against the C headers by
//! `tests/uapi_layout.rs`.

#![allow(missing_docs)] // field names and meanings are those of the C headers

use rustix::ioctl::{opcode, Direction, Opcode};
use std::mem::size_of;
use std::os::raw::{c_uint, c_void};

/// `_IOC(_IOC_NONE, 'G', nr, size)`.
const fn gio(nr: u8, size: usize) -> Opcode {
    opcode::from_components(Direction::None, b'G', nr, size)
}

/// `GNTALLOC_FLAG_WRITABLE`.
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;
/// `UNMAP_NOTIFY_CLEAR_BYTE`.
pub const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 1;
/// `UNMAP_NOTIFY_SEND_EVENT`.
pub const UNMAP_NOTIFY_SEND_EVENT: u32 = 2;
/// `GNTCOPY_source_gref`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1;
/// `GNTCOPY_dest_gref`.
pub const GNTCOPY_DEST_GREF: u16 = 2;

/// `struct ioctl_gntalloc_alloc_gref` (followed by `count - 1` more `gref_ids`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlGntallocAllocGref {
    pub domid: u16,
    pub flags: u16,
    pub count: u32,
    pub index: u64,
    pub gref_ids: [u32; 1],
}

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlGntallocDeallocGref {
    pub index: u64,
    pub count: u32,
}

/// `struct ioctl_gntalloc_unmap_notify` (same layout as gntdev's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlUnmapNotify {
    pub index: u64,
    pub action: u32,
    pub event_channel_port: u32,
}

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlGntdevGrantRef {
    pub domid: u32,
    pub ref_: u32,
}

/// `struct ioctl_gntdev_map_grant_ref` (followed by `count - 1` more `refs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlGntdevMapGrantRef {
    pub count: u32,
    pub pad: u32,
    pub index: u64,
    pub refs: [IoctlGntdevGrantRef; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlGntdevUnmapGrantRef {
    pub index: u64,
    pub count: u32,
    pub pad: u32,
}

/// `struct ioctl_gntdev_set_max_grants`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlGntdevSetMaxGrants {
    pub count: u32,
}

/// The `foreign` member of `gntdev_grant_copy_segment`'s source/dest union.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntdevCopyForeign {
    pub ref_: u32,
    pub offset: u16,
    pub domid: u16,
}

/// The source/dest union of `struct gntdev_grant_copy_segment`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union GntdevCopyPtr {
    pub virt: *mut c_void,
    pub foreign: GntdevCopyForeign,
}

/// `struct gntdev_grant_copy_segment`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GntdevGrantCopySegment {
    pub source: GntdevCopyPtr,
    pub dest: GntdevCopyPtr,
    pub len: u16,
    pub flags: u16,
    pub status: i16,
}

/// `struct ioctl_gntdev_grant_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoctlGntdevGrantCopy {
    pub count: c_uint,
    pub segments: *mut GntdevGrantCopySegment,
}

/// `IOCTL_GNTALLOC_ALLOC_GREF`.
pub const IOCTL_GNTALLOC_ALLOC_GREF: Opcode = gio(5, size_of::<IoctlGntallocAllocGref>());
/// `IOCTL_GNTALLOC_DEALLOC_GREF`.
pub const IOCTL_GNTALLOC_DEALLOC_GREF: Opcode = gio(6, size_of::<IoctlGntallocDeallocGref>());
/// `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`.
pub const IOCTL_GNTALLOC_SET_UNMAP_NOTIFY: Opcode = gio(7, size_of::<IoctlUnmapNotify>());
/// `IOCTL_GNTDEV_MAP_GRANT_REF`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: Opcode = gio(0, size_of::<IoctlGntdevMapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: Opcode = gio(1, size_of::<IoctlGntdevUnmapGrantRef>());
/// `IOCTL_GNTDEV_SET_MAX_GRANTS`.
pub const IOCTL_GNTDEV_SET_MAX_GRANTS: Opcode = gio(3, size_of::<IoctlGntdevSetMaxGrants>());
/// `IOCTL_GNTDEV_SET_UNMAP_NOTIFY`.
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: Opcode = gio(7, size_of::<IoctlUnmapNotify>());
/// `IOCTL_GNTDEV_GRANT_COPY`.
pub const IOCTL_GNTDEV_GRANT_COPY: Opcode = gio(8, size_of::<IoctlGntdevGrantCopy>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_research_notes() {
        // The values measured by compiling the headers (netif-protocol-notes §4); the
        // full cross-check against the C headers is tests/uapi_layout.rs.
        assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x184705);
        assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x104706);
        assert_eq!(IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, 0x104707);
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x184700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x104701);
        assert_eq!(IOCTL_GNTDEV_SET_MAX_GRANTS, 0x44703);
        assert_eq!(IOCTL_GNTDEV_GRANT_COPY, 0x104708);
        assert_eq!(size_of::<GntdevGrantCopySegment>(), 24);
    }
}
