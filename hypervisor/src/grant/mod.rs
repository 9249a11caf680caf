//! Grant tables: sharing pages between domains.
//!
//! The two sides of a split driver use grants differently:
//!
//! * the **frontend** (guest) shares its own pages with a peer domain
//!   ([`GrantShare::share`]) and later revokes them ([`SharedPages::revoke`]);
//! * the **backend** (driver domain) either maps a peer's granted pages into its address
//!   space ([`GrantMap::map`], for long-lived pages such as the shared rings) or copies
//!   between a peer's grant and a local buffer without mapping anything
//!   ([`GrantCopy::copy`], the per-packet path of netback, batched like
//!   `GNTTABOP_copy`).
//!
//! Memory that a peer can write concurrently is only reachable through [`SharedMem`],
//! whose accessors are bounds-checked and use volatile or atomic accesses.
//!
//! Implementations: [`xen`] (`/dev/xen/gntalloc` and `/dev/xen/gntdev`) and
//! the `xen-local` crate (memfd-backed emulation).

use std::fmt;

use std::io;
use xen_ids::DomId;

mod mem;
pub mod uapi;
pub mod xen;

pub use mem::{MemError, Scalar, SharedMem};

/// The size of a grant: one Xen page.
pub const PAGE_SIZE: usize = 4096;

/// A grant reference (`grant_ref_t`): an index into the granting domain's grant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct GrantRef(pub u32);

impl fmt::Display for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gref {}", self.0)
    }
}

/// Access a grant gives (frontend) or a mapping asks for (backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The peer may only read (`GTF_readonly`).
    ReadOnly,
    /// The peer may read and write.
    Writable,
}

impl Access {
    /// Whether writing is allowed.
    pub fn is_writable(self) -> bool {
        self == Access::Writable
    }
}

/// A grant operation status (`GNTST_*` in Xen's `grant_table.h`), as reported per
/// segment by a grant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct GntStatus(pub i16);

impl GntStatus {
    /// `GNTST_okay`: the operation succeeded.
    pub const OKAY: GntStatus = GntStatus(0);
    /// `GNTST_general_error`: Xen's answer for a grant entry that does not permit the
    /// access (revoked or never granted, granted to another domain, write to a
    /// read-only grant).
    pub const GENERAL_ERROR: GntStatus = GntStatus(-1);
    /// `GNTST_bad_domain`: no such domain.
    pub const BAD_DOMAIN: GntStatus = GntStatus(-2);
    /// `GNTST_bad_gntref`: the reference is outside the grant table.
    pub const BAD_GNTREF: GntStatus = GntStatus(-3);
    /// `GNTST_bad_handle`.
    pub const BAD_HANDLE: GntStatus = GntStatus(-4);
    /// `GNTST_bad_virt_addr`: the local buffer range is invalid.
    pub const BAD_VIRT_ADDR: GntStatus = GntStatus(-5);
    /// `GNTST_permission_denied`.
    pub const PERMISSION_DENIED: GntStatus = GntStatus(-8);
    /// `GNTST_bad_page`.
    pub const BAD_PAGE: GntStatus = GntStatus(-9);
    /// `GNTST_bad_copy_arg`: offset + length crosses the end of the granted page.
    pub const BAD_COPY_ARG: GntStatus = GntStatus(-10);
    /// `GNTST_eagain`: try again.
    pub const EAGAIN: GntStatus = GntStatus(-12);

    /// Whether this is `GNTST_okay`.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Xen's name for the status.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "okay",
            -1 => "general error",
            -2 => "bad domain",
            -3 => "bad gntref",
            -4 => "bad handle",
            -5 => "bad virt addr",
            -6 => "bad dev addr",
            -7 => "no device space",
            -8 => "permission denied",
            -9 => "bad page",
            -10 => "bad copy arg",
            -11 => "address too big",
            -12 => "eagain",
            -13 => "no space",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for GntStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GNTST {} ({})", self.0, self.name())
    }
}

/// Errors of grant operations that fail as a whole (a grant copy reports per-segment
/// failures in [`CopySegment::status`] instead).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The grant table refused the operation for one reference.
    #[error("dom{domid} {gref}: refused, {status}: {reason}")]
    Refused {
        /// The granting domain.
        domid: DomId,
        /// The reference that was refused.
        gref: GrantRef,
        /// Xen's status code for the refusal.
        status: GntStatus,
        /// Why, in words.
        reason: String,
    },
    /// The arguments are invalid (zero pages, too many pages, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl GrantError {
    /// An I/O failure of operation `op` (for platform implementations).
    pub fn io(op: &'static str, source: io::Error) -> Self {
        GrantError::Io { op, source }
    }
}

/// Frontend side: share pages with a peer domain.
///
/// On Xen the pages are allocated by the kernel (`gntalloc`), so sharing allocates fresh,
/// zeroed pages and grants them; the caller writes into them through
/// [`SharedPages::mem`].
pub trait GrantShare {
    /// The handle to granted pages.
    type Shared: SharedPages;

    /// Allocate `pages` zeroed pages, grant each of them to `peer` with `access`, and
    /// map them locally (read-write: the granting domain owns them).
    fn share(&self, peer: DomId, pages: usize, access: Access) -> Result<Self::Shared, GrantError>;
}

/// Pages this domain granted to a peer. Dropping the handle revokes the grants (errors
/// are logged); [`SharedPages::revoke`] does the same and reports errors.
///
/// Revocation is Xen's `gnttab_end_foreign_access`: no new map or copy of these
/// references succeeds afterwards. A mapping the peer already holds stays valid until
/// the peer unmaps it (Xen defers freeing the page); the local mapping is gone as soon
/// as `revoke` returns, so the granting domain never sees the page again.
pub trait SharedPages: Send {
    /// The grant references, one per page, in page order.
    fn grefs(&self) -> &[GrantRef];
    /// The domain the pages are granted to.
    fn peer(&self) -> DomId;
    /// The access granted.
    fn access(&self) -> Access;
    /// The local (read-write) view of the pages.
    fn mem(&self) -> &SharedMem;
    /// Revoke the grants and unmap the pages.
    fn revoke(self) -> Result<(), GrantError>;

    /// `len` bytes at `offset` of the local view as a plain byte slice, for pages granted
    /// [`Access::ReadOnly`]: the peer may read them but never write them, and the slice
    /// borrows the handle exclusively, so nothing else writes them while it lives. A
    /// system call may fill it directly (a TAP `readv` into the TX buffers: no bounce
    /// copy). The peer may read the bytes while they are written; the frontend hands it
    /// a page only by publishing a ring request after the write.
    ///
    /// Errors: [`MemError::PeerWritable`] for pages granted writable (the peer could
    /// change them under the slice), [`MemError::ReadOnly`] for a read-only local view,
    /// [`MemError::OutOfBounds`].
    fn private_mut(&mut self, offset: usize, len: usize) -> Result<&mut [u8], MemError> {
        if self.access() != Access::ReadOnly {
            return Err(MemError::PeerWritable);
        }
        // SAFETY: the peer cannot write pages granted read-only (Xen and the local
        // emulation refuse writable maps and copies into them), and `&mut self` keeps
        // every other access through this handle out while the slice lives.
        unsafe { self.mem().slice_mut(offset, len) }
    }
}

/// Backend side: map a peer's granted pages.
pub trait GrantMap {
    /// The handle to a mapping.
    type Mapping: GrantMapping;

    /// Map `refs` (all granted by `peer`) into one contiguous range, in order, with
    /// `access`. All references are checked before the call returns a mapping: a single
    /// refused reference fails the whole call (`local`: [`GrantError::Refused`] naming
    /// the reference and Xen's status; `xen`: [`GrantError::Io`] from the `mmap` in
    /// which the hypervisor does the mapping).
    fn map(
        &self,
        peer: DomId,
        refs: &[GrantRef],
        access: Access,
    ) -> Result<Self::Mapping, GrantError>;
}

/// A peer's pages mapped into this process. Dropping it unmaps (errors are logged).
pub trait GrantMapping: Send {
    /// The granting domain.
    fn peer(&self) -> DomId;
    /// The mapped references, in page order.
    fn refs(&self) -> &[GrantRef];
    /// The mapped memory: page `i` is `refs()[i]`.
    fn mem(&self) -> &SharedMem;
    /// Unmap the pages.
    fn unmap(self) -> Result<(), GrantError>;
}

/// Direction of one grant-copy segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyDir {
    /// Peer's grant → local buffer (netback TX: `GNTCOPY_source_gref`).
    FromGrant,
    /// Local buffer → peer's grant (netback RX: `GNTCOPY_dest_gref`).
    ToGrant,
}

/// One segment of a batched grant copy: `len` bytes between the peer's grant `gref` at
/// `offset` and the caller's local buffer at `local_offset`.
///
/// A segment never crosses the end of the granted page (`offset + len <= PAGE_SIZE`),
/// exactly like `GNTTABOP_copy`. The result lands in `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySegment {
    /// Direction.
    pub dir: CopyDir,
    /// The granting domain.
    pub domid: DomId,
    /// The peer's grant.
    pub gref: GrantRef,
    /// Byte offset inside the granted page.
    pub offset: u16,
    /// Byte offset inside the local buffer.
    pub local_offset: usize,
    /// Number of bytes.
    pub len: u16,
    /// Out: `GNTST_okay` or why this segment failed.
    pub status: GntStatus,
}

impl CopySegment {
    /// A segment copying from the peer's grant into the local buffer.
    pub fn from_grant(
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        local_offset: usize,
        len: u16,
    ) -> Self {
        CopySegment {
            dir: CopyDir::FromGrant,
            domid,
            gref,
            offset,
            local_offset,
            len,
            status: GntStatus::GENERAL_ERROR,
        }
    }

    /// A segment copying from the local buffer into the peer's grant.
    pub fn to_grant(
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        local_offset: usize,
        len: u16,
    ) -> Self {
        CopySegment {
            dir: CopyDir::ToGrant,
            ..Self::from_grant(domid, gref, offset, local_offset, len)
        }
    }

    /// The checks that do not need the grant table: the range inside the granted page
    /// (`GNTST_bad_copy_arg`) and inside the local buffer (`GNTST_bad_virt_addr`).
    pub fn check_ranges(&self, local_len: usize) -> Result<(), GntStatus> {
        if usize::from(self.offset) + usize::from(self.len) > PAGE_SIZE {
            return Err(GntStatus::BAD_COPY_ARG);
        }
        match self.local_offset.checked_add(usize::from(self.len)) {
            Some(end) if end <= local_len => Ok(()),
            _ => Err(GntStatus::BAD_VIRT_ADDR),
        }
    }
}

/// Backend side: batched copies between peers' grants and a local buffer
/// (`IOCTL_GNTDEV_GRANT_COPY`), with a status per segment.
pub trait GrantCopy {
    /// Perform every segment of `segs` between the peers' grants and `local`, and set
    /// each segment's `status`. Segments fail independently (a refused or malformed
    /// segment does not stop the others); `Err` means the whole batch could not be
    /// attempted (e.g. the device or the local hypervisor connection failed), in which
    /// case the statuses are unspecified.
    fn copy(&self, local: &mut [u8], segs: &mut [CopySegment]) -> Result<(), GrantError>;

    /// Releases whatever the implementation keeps of `peer`'s grants between copies
    /// (its domain died or its last device closed). Copies with `peer` keep working
    /// afterwards; they start from nothing cached.
    fn forget_peer(&self, peer: DomId);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Two pages granted with `access`, over a memfd.
    struct Pages {
        mem: SharedMem,
        access: Access,
    }

    impl SharedPages for Pages {
        fn grefs(&self) -> &[GrantRef] {
            &[]
        }
        fn peer(&self) -> DomId {
            DomId(1)
        }
        fn access(&self) -> Access {
            self.access
        }
        fn mem(&self) -> &SharedMem {
            &self.mem
        }
        fn revoke(self) -> Result<(), GrantError> {
            Ok(())
        }
    }

    fn pages(access: Access) -> Pages {
        use rustix::fs::MemfdFlags;
        let fd = rustix::fs::memfd_create(c"pages", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let mem = SharedMem::map_fd(fd.as_fd(), 8192, 0, true).unwrap();
        Pages { mem, access }
    }

    #[test]
    fn only_pages_the_peer_cannot_write_are_lent_as_a_slice() {
        let mut ro = pages(Access::ReadOnly);
        let s = ro.private_mut(4090, 10).unwrap();
        s.copy_from_slice(b"0123456789");
        let mut back = [0u8; 10];
        ro.mem().read(4090, &mut back).unwrap();
        assert_eq!(&back, b"0123456789");
        assert!(matches!(
            ro.private_mut(8000, 200),
            Err(MemError::OutOfBounds { .. })
        ));
        let mut rw = pages(Access::Writable);
        assert_eq!(rw.private_mut(0, 1).err(), Some(MemError::PeerWritable));
    }
}
