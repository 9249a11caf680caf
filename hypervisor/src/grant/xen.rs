//! Grants on real Xen, through Linux's `/dev/xen/gntalloc` (frontend) and
//! `/dev/xen/gntdev` (backend: map, unmap, `IOCTL_GNTDEV_GRANT_COPY`).

use std::ffi::CStr;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use rustix::ioctl::ioctl;

use super::uapi::*;
use super::{
    Access, CopyDir, CopySegment, DomId, GntStatus, GrantCopy, GrantError, GrantMap, GrantMapping,
    GrantRef, GrantShare, SharedMem, SharedPages, PAGE_SIZE,
};
use crate::ioctl::{FlexBuf, XenIoctl};

/// The most pages one `share` or `map` call accepts (gntdev's per-call limit).
pub const MAX_PAGES_PER_CALL: usize = 65536;

/// Segments handed to the kernel per `IOCTL_GNTDEV_GRANT_COPY` (a stack array).
pub const COPY_CHUNK: usize = 64;

fn open_dev(path: &CStr) -> Result<OwnedFd, GrantError> {
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| GrantError::io("open Xen grant device", e.into()))
}

/// Runs `req` on `fd`; `op` names it in the error.
///
/// # Safety
/// The request's argument must be the one its number expects (`uapi.rs`, checked
/// against the C headers), and any pointers inside it valid for the call.
unsafe fn xen_ioctl(fd: &OwnedFd, req: XenIoctl<'_>, op: &'static str) -> Result<(), GrantError> {
    // SAFETY: the caller's contract.
    unsafe { ioctl(fd, req) }
        .map(drop)
        .map_err(|e| GrantError::io(op, e.into()))
}

fn check_count(n: usize) -> Result<(), GrantError> {
    if n == 0 || n > MAX_PAGES_PER_CALL {
        return Err(GrantError::InvalidArgument(format!(
            "page count {n} not in 1..={MAX_PAGES_PER_CALL}"
        )));
    }
    Ok(())
}

fn mmap_dev(fd: &OwnedFd, pages: usize, index: u64, writable: bool) -> std::io::Result<SharedMem> {
    // The preceding ioctl reserved the region at `index`; the kernel checks the range.
    SharedMem::map_fd(fd.as_fd(), pages * PAGE_SIZE, index, writable)
}

/// `/dev/xen/gntalloc`: the frontend's way to grant pages to another domain.
#[derive(Clone, Debug)]
pub struct Gntalloc {
    fd: Arc<OwnedFd>,
}

impl Gntalloc {
    /// Open `/dev/xen/gntalloc`.
    pub fn open() -> Result<Self, GrantError> {
        Ok(Gntalloc {
            fd: Arc::new(open_dev(c"/dev/xen/gntalloc")?),
        })
    }
}

impl GrantShare for Gntalloc {
    type Shared = XenSharedPages;

    fn share(
        &self,
        peer: DomId,
        pages: usize,
        access: Access,
    ) -> Result<XenSharedPages, GrantError> {
        check_count(pages)?;
        let mut buf = alloc_gref_request(peer, access, pages);
        let req = XenIoctl::flex(IOCTL_GNTALLOC_ALLOC_GREF, &mut buf);
        // SAFETY: the buffer holds the header plus `pages` gref slots, as the kernel
        // expects for this ioctl; it outlives the call.
        unsafe { xen_ioctl(&self.fd, req, "IOCTL_GNTALLOC_ALLOC_GREF")? };
        let (index, grefs) = alloc_gref_reply(&buf, pages);
        let dealloc = |fd: &OwnedFd| dealloc(fd, index, pages);
        match mmap_dev(&self.fd, pages, index, true) {
            Ok(mem) => Ok(XenSharedPages {
                fd: self.fd.clone(),
                index,
                grefs,
                mem: Some(mem),
                peer,
                access,
            }),
            Err(e) => {
                let _ = dealloc(&self.fd);
                Err(GrantError::io("mmap of gntalloc pages", e))
            }
        }
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The `IOCTL_GNTALLOC_ALLOC_GREF` argument for `pages` pages (`pages` checked by the
/// caller), laid out at the offsets of [`IoctlGntallocAllocGref`] (checked against C).
pub(crate) fn alloc_gref_request(peer: DomId, access: Access, pages: usize) -> FlexBuf {
    let ids = offset_of!(IoctlGntallocAllocGref, gref_ids);
    let mut buf = FlexBuf::new(ids, 4, pages, size_of::<IoctlGntallocAllocGref>());
    let b = buf.bytes_mut();
    let flags = if access.is_writable() {
        GNTALLOC_FLAG_WRITABLE
    } else {
        0
    };
    put(
        b,
        offset_of!(IoctlGntallocAllocGref, domid),
        &peer.0.to_ne_bytes(),
    );
    put(
        b,
        offset_of!(IoctlGntallocAllocGref, flags),
        &flags.to_ne_bytes(),
    );
    put(
        b,
        offset_of!(IoctlGntallocAllocGref, count),
        &(pages as u32).to_ne_bytes(),
    );
    buf
}

/// The kernel's answer in an `IOCTL_GNTALLOC_ALLOC_GREF` argument: the mmap offset and
/// the references.
pub(crate) fn alloc_gref_reply(buf: &FlexBuf, pages: usize) -> (u64, Vec<GrantRef>) {
    let b = buf.bytes();
    let ids = offset_of!(IoctlGntallocAllocGref, gref_ids);
    let index = get_u64(b, offset_of!(IoctlGntallocAllocGref, index));
    let grefs = (0..pages)
        .map(|i| GrantRef(get_u32(b, ids + 4 * i)))
        .collect();
    (index, grefs)
}

/// The `IOCTL_GNTDEV_MAP_GRANT_REF` argument for `refs` of `peer`.
pub(crate) fn map_grant_ref_request(peer: DomId, refs: &[GrantRef]) -> FlexBuf {
    let at = offset_of!(IoctlGntdevMapGrantRef, refs);
    let item = size_of::<IoctlGntdevGrantRef>();
    let mut buf = FlexBuf::new(at, item, refs.len(), size_of::<IoctlGntdevMapGrantRef>());
    let b = buf.bytes_mut();
    put(
        b,
        offset_of!(IoctlGntdevMapGrantRef, count),
        &(refs.len() as u32).to_ne_bytes(),
    );
    for (i, r) in refs.iter().enumerate() {
        let e = at + item * i;
        put(
            b,
            e + offset_of!(IoctlGntdevGrantRef, domid),
            &u32::from(peer.0).to_ne_bytes(),
        );
        put(
            b,
            e + offset_of!(IoctlGntdevGrantRef, ref_),
            &r.0.to_ne_bytes(),
        );
    }
    buf
}

/// The mmap offset the kernel wrote into an `IOCTL_GNTDEV_MAP_GRANT_REF` argument.
pub(crate) fn map_grant_ref_index(buf: &FlexBuf) -> u64 {
    get_u64(buf.bytes(), offset_of!(IoctlGntdevMapGrantRef, index))
}

fn dealloc(fd: &OwnedFd, index: u64, pages: usize) -> Result<(), GrantError> {
    let mut arg = IoctlGntallocDeallocGref {
        index,
        count: pages as u32,
    };
    let req = XenIoctl::new(IOCTL_GNTALLOC_DEALLOC_GREF, &mut arg);
    // SAFETY: a correctly laid out argument that outlives the call.
    unsafe { xen_ioctl(fd, req, "IOCTL_GNTALLOC_DEALLOC_GREF") }
}

/// Pages granted through `gntalloc`.
#[derive(Debug)]
pub struct XenSharedPages {
    fd: Arc<OwnedFd>,
    index: u64,
    grefs: Vec<GrantRef>,
    mem: Option<SharedMem>,
    peer: DomId,
    access: Access,
}

impl XenSharedPages {
    /// Ask the kernel to clear the byte at `offset` and/or notify `port` when this
    /// domain's mapping goes away (e.g. the process dies): `IOCTL_GNTALLOC_SET_UNMAP_NOTIFY`.
    pub fn set_unmap_notify(
        &self,
        offset: usize,
        clear_byte: bool,
        port: Option<crate::evtchn::Port>,
    ) -> Result<(), GrantError> {
        if offset >= self.grefs.len() * PAGE_SIZE {
            return Err(GrantError::InvalidArgument(format!(
                "offset {offset} outside the shared pages"
            )));
        }
        let mut arg = IoctlUnmapNotify {
            index: self.index + offset as u64,
            action: if clear_byte {
                UNMAP_NOTIFY_CLEAR_BYTE
            } else {
                0
            } | if port.is_some() {
                UNMAP_NOTIFY_SEND_EVENT
            } else {
                0
            },
            event_channel_port: port.map_or(0, |p| p.0),
        };
        let req = XenIoctl::new(IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, &mut arg);
        // SAFETY: a correctly laid out argument that outlives the call.
        unsafe { xen_ioctl(&self.fd, req, "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY") }
    }

    fn release(&mut self) -> Result<(), GrantError> {
        if self.mem.take().is_some() {
            dealloc(&self.fd, self.index, self.grefs.len())?;
        }
        Ok(())
    }
}

impl SharedPages for XenSharedPages {
    fn grefs(&self) -> &[GrantRef] {
        &self.grefs
    }
    fn peer(&self) -> DomId {
        self.peer
    }
    fn access(&self) -> Access {
        self.access
    }
    fn mem(&self) -> &SharedMem {
        self.mem.as_ref().expect("mapping present until revoke")
    }
    fn revoke(mut self) -> Result<(), GrantError> {
        self.release()
    }
}

impl Drop for XenSharedPages {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            log::error!("revoking gntalloc grants: {e}");
        }
    }
}

/// `/dev/xen/gntdev`: the backend's way to map a peer's grants and to grant-copy.
#[derive(Clone, Debug)]
pub struct Gntdev {
    fd: Arc<OwnedFd>,
}

impl Gntdev {
    /// Open `/dev/xen/gntdev`.
    pub fn open() -> Result<Self, GrantError> {
        Ok(Gntdev {
            fd: Arc::new(open_dev(c"/dev/xen/gntdev")?),
        })
    }
}

fn unmap_grant_ref(fd: &OwnedFd, index: u64, count: usize) -> Result<(), GrantError> {
    let mut arg = IoctlGntdevUnmapGrantRef {
        index,
        count: count as u32,
        pad: 0,
    };
    let req = XenIoctl::new(IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut arg);
    // SAFETY: a correctly laid out argument that outlives the call.
    unsafe { xen_ioctl(fd, req, "IOCTL_GNTDEV_UNMAP_GRANT_REF") }
}

impl GrantMap for Gntdev {
    type Mapping = XenMapping;

    fn map(
        &self,
        peer: DomId,
        refs: &[GrantRef],
        access: Access,
    ) -> Result<XenMapping, GrantError> {
        check_count(refs.len())?;
        let mut buf = map_grant_ref_request(peer, refs);
        let req = XenIoctl::flex(IOCTL_GNTDEV_MAP_GRANT_REF, &mut buf);
        // SAFETY: the buffer holds the header and `refs.len()` grant refs as the kernel
        // expects; it outlives the call.
        unsafe { xen_ioctl(&self.fd, req, "IOCTL_GNTDEV_MAP_GRANT_REF")? };
        let index = map_grant_ref_index(&buf);
        match mmap_dev(&self.fd, refs.len(), index, access.is_writable()) {
            Ok(mem) => Ok(XenMapping {
                fd: self.fd.clone(),
                index,
                refs: refs.to_vec(),
                mem: Some(mem),
                peer,
            }),
            Err(e) => {
                let _ = unmap_grant_ref(&self.fd, index, refs.len());
                // The hypercall runs at mmap time: a refused grant shows up here.
                Err(GrantError::io(
                    "mmap of gntdev grants (refused by the hypervisor?)",
                    e,
                ))
            }
        }
    }
}

/// A peer's grants mapped through `gntdev`.
#[derive(Debug)]
pub struct XenMapping {
    fd: Arc<OwnedFd>,
    index: u64,
    refs: Vec<GrantRef>,
    mem: Option<SharedMem>,
    peer: DomId,
}

impl XenMapping {
    fn release(&mut self) -> Result<(), GrantError> {
        if self.mem.take().is_some() {
            unmap_grant_ref(&self.fd, self.index, self.refs.len())?;
        }
        Ok(())
    }
}

impl GrantMapping for XenMapping {
    fn peer(&self) -> DomId {
        self.peer
    }
    fn refs(&self) -> &[GrantRef] {
        &self.refs
    }
    fn mem(&self) -> &SharedMem {
        self.mem.as_ref().expect("mapping present until unmap")
    }
    fn unmap(mut self) -> Result<(), GrantError> {
        self.release()
    }
}

impl Drop for XenMapping {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            log::error!("unmapping gntdev grants: {e}");
        }
    }
}

/// Translate one segment into the kernel's layout. The caller has checked the ranges
/// (`CopySegment::check_ranges`), so `local + local_offset .. + len` is inside the
/// buffer.
pub fn encode_segment(seg: &CopySegment, local: *mut u8) -> GntdevGrantCopySegment {
    let foreign = GntdevCopyPtr {
        foreign: GntdevCopyForeign {
            ref_: seg.gref.0,
            offset: seg.offset,
            domid: seg.domid.0,
        },
    };
    let virt = GntdevCopyPtr {
        virt: local.wrapping_add(seg.local_offset).cast(),
    };
    let (source, dest, flags) = match seg.dir {
        CopyDir::FromGrant => (foreign, virt, GNTCOPY_SOURCE_GREF),
        CopyDir::ToGrant => (virt, foreign, GNTCOPY_DEST_GREF),
    };
    GntdevGrantCopySegment {
        source,
        dest,
        len: seg.len,
        flags,
        status: GntStatus::GENERAL_ERROR.0,
    }
}

/// Run a batch through `ioctl`: segments that fail the range checks get their status
/// here and never reach the kernel (gntdev would fail the whole ioctl with `EINVAL`
/// for a foreign range crossing the page); the rest go in chunks of [`COPY_CHUNK`].
pub(crate) fn copy_batch(
    local: &mut [u8],
    segs: &mut [CopySegment],
    mut ioctl: impl FnMut(&mut [GntdevGrantCopySegment]) -> Result<(), GrantError>,
) -> Result<(), GrantError> {
    let local_len = local.len();
    let base = local.as_mut_ptr();
    let zero = GntdevGrantCopySegment {
        source: GntdevCopyPtr {
            virt: std::ptr::null_mut(),
        },
        dest: GntdevCopyPtr {
            virt: std::ptr::null_mut(),
        },
        len: 0,
        flags: 0,
        status: 0,
    };
    let mut kseg = [zero; COPY_CHUNK];
    let mut which = [0usize; COPY_CHUNK];
    let mut i = 0;
    while i < segs.len() {
        let mut n = 0;
        while i < segs.len() && n < COPY_CHUNK {
            let seg = &mut segs[i];
            match seg.check_ranges(local_len) {
                Ok(()) if seg.len == 0 => seg.status = GntStatus::OKAY,
                Ok(()) => {
                    kseg[n] = encode_segment(seg, base);
                    which[n] = i;
                    n += 1;
                }
                Err(st) => seg.status = st,
            }
            i += 1;
        }
        if n > 0 {
            ioctl(&mut kseg[..n])?;
            for k in 0..n {
                segs[which[k]].status = GntStatus(kseg[k].status);
            }
        }
    }
    Ok(())
}

impl GrantCopy for Gntdev {
    fn copy(&self, local: &mut [u8], segs: &mut [CopySegment]) -> Result<(), GrantError> {
        copy_batch(local, segs, |k| {
            let mut arg = IoctlGntdevGrantCopy {
                count: k.len() as u32,
                segments: k.as_mut_ptr(),
            };
            let req = XenIoctl::new(IOCTL_GNTDEV_GRANT_COPY, &mut arg);
            // SAFETY: `arg` points at `count` initialised segments whose local
            // addresses lie inside `local`, which is exclusively borrowed for the call.
            unsafe { xen_ioctl(&self.fd, req, "IOCTL_GNTDEV_GRANT_COPY") }
        })
    }

    /// Nothing to release: `GNTTABOP_copy` maps nothing between copies.
    fn forget_peer(&self, _peer: DomId) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_for_the_kernel() {
        let mut local = vec![0u8; 100];
        let base = local.as_mut_ptr();
        let s = CopySegment::from_grant(DomId(7), GrantRef(42), 4000, 10, 96);
        let k = encode_segment(&s, base);
        assert_eq!(k.flags, GNTCOPY_SOURCE_GREF);
        assert_eq!(k.len, 96);
        // SAFETY: reading the union members this direction wrote.
        unsafe {
            assert_eq!(k.source.foreign.ref_, 42);
            assert_eq!(k.source.foreign.offset, 4000);
            assert_eq!(k.source.foreign.domid, 7);
            assert_eq!(k.dest.virt as usize, base as usize + 10);
        }
        let s = CopySegment::to_grant(DomId(1), GrantRef(9), 0, 3, 5);
        let k = encode_segment(&s, base);
        assert_eq!(k.flags, GNTCOPY_DEST_GREF);
        // SAFETY: as above.
        unsafe {
            assert_eq!(k.dest.foreign.ref_, 9);
            assert_eq!(k.source.virt as usize, base as usize + 3);
        }
    }

    #[test]
    fn bad_ranges_never_reach_the_kernel_and_batches_are_chunked() {
        let mut local = vec![0u8; 4096];
        let mut segs = Vec::new();
        for i in 0..150u32 {
            segs.push(CopySegment::from_grant(DomId(1), GrantRef(i), 0, 0, 64));
        }
        segs[3].offset = 4090; // crosses the page
        segs[4].local_offset = 4095; // outside the local buffer
        segs[5].len = 0; // nothing to do
        let mut calls = Vec::new();
        copy_batch(&mut local, &mut segs, |k| {
            calls.push(k.len());
            for s in k.iter_mut() {
                // SAFETY: FromGrant segments carry the foreign ref in `source`.
                let r = unsafe { s.source.foreign.ref_ };
                s.status = if r % 2 == 0 { 0 } else { -1 };
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, vec![64, 64, 19]);
        assert_eq!(segs[3].status, GntStatus::BAD_COPY_ARG);
        assert_eq!(segs[4].status, GntStatus::BAD_VIRT_ADDR);
        assert_eq!(segs[5].status, GntStatus::OKAY);
        assert_eq!(segs[0].status, GntStatus::OKAY);
        assert_eq!(segs[1].status, GntStatus::GENERAL_ERROR);
        assert_eq!(segs[149].status, GntStatus::GENERAL_ERROR);
        assert_eq!(segs[148].status, GntStatus::OKAY);
    }

    #[test]
    fn alloc_and_map_arguments_are_laid_out_for_the_kernel() {
        let mut buf = alloc_gref_request(DomId(0x1234), Access::Writable, 3);
        {
            let b = buf.bytes();
            assert_eq!(b.len(), 32);
            assert_eq!(&b[0..2], &0x1234u16.to_ne_bytes());
            assert_eq!(&b[2..4], &1u16.to_ne_bytes());
            assert_eq!(&b[4..8], &3u32.to_ne_bytes());
        }
        assert_eq!(
            &alloc_gref_request(DomId(1), Access::ReadOnly, 1).bytes()[2..4],
            &[0, 0]
        );
        // What the kernel writes back: index at 8, gref_ids from 16.
        let b = buf.bytes_mut();
        b[8..16].copy_from_slice(&0x5000u64.to_ne_bytes());
        for (i, g) in [11u32, 12, 13].iter().enumerate() {
            b[16 + 4 * i..20 + 4 * i].copy_from_slice(&g.to_ne_bytes());
        }
        let (index, grefs) = alloc_gref_reply(&buf, 3);
        assert_eq!(index, 0x5000);
        assert_eq!(grefs, vec![GrantRef(11), GrantRef(12), GrantRef(13)]);

        let mut buf = map_grant_ref_request(DomId(7), &[GrantRef(40), GrantRef(41)]);
        {
            let b = buf.bytes();
            assert_eq!(b.len(), 32);
            assert_eq!(&b[0..4], &2u32.to_ne_bytes());
            assert_eq!(&b[16..20], &7u32.to_ne_bytes());
            assert_eq!(&b[20..24], &40u32.to_ne_bytes());
            assert_eq!(&b[24..28], &7u32.to_ne_bytes());
            assert_eq!(&b[28..32], &41u32.to_ne_bytes());
        }
        buf.bytes_mut()[8..16].copy_from_slice(&0x9000u64.to_ne_bytes());
        assert_eq!(map_grant_ref_index(&buf), 0x9000);
    }

    fn refused_by_dev_null<T: std::fmt::Debug>(r: Result<T, GrantError>, ioctl: &str) {
        match r {
            Err(GrantError::Io { op, source }) => {
                assert_eq!(op, ioctl);
                let enotty = rustix::io::Errno::NOTTY.raw_os_error();
                assert_eq!(source.raw_os_error(), Some(enotty), "{op}: {source}");
            }
            other => panic!("{ioctl}: expected ENOTTY, got {other:?}"),
        }
    }

    #[test]
    fn every_ioctl_reaches_the_kernel_and_its_refusal_is_reported() {
        // No /dev/xen here: the same requests on /dev/null, which implements no ioctl,
        // come back ENOTTY through each operation's error path.
        let fd: Arc<OwnedFd> = Arc::new(std::fs::File::open("/dev/null").unwrap().into());
        let gntalloc = Gntalloc { fd: fd.clone() };
        refused_by_dev_null(
            gntalloc.share(DomId(1), 2, Access::Writable),
            "IOCTL_GNTALLOC_ALLOC_GREF",
        );
        refused_by_dev_null(dealloc(&fd, 0, 1), "IOCTL_GNTALLOC_DEALLOC_GREF");
        let pages = XenSharedPages {
            fd: fd.clone(),
            index: 0,
            grefs: vec![GrantRef(1)],
            mem: None,
            peer: DomId(1),
            access: Access::Writable,
        };
        refused_by_dev_null(
            pages.set_unmap_notify(0, true, None),
            "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY",
        );
        let gntdev = Gntdev { fd: fd.clone() };
        refused_by_dev_null(
            gntdev.map(DomId(1), &[GrantRef(1)], Access::ReadOnly),
            "IOCTL_GNTDEV_MAP_GRANT_REF",
        );
        refused_by_dev_null(unmap_grant_ref(&fd, 0, 1), "IOCTL_GNTDEV_UNMAP_GRANT_REF");
        let mut local = vec![0u8; 64];
        let mut segs = [CopySegment::from_grant(DomId(1), GrantRef(1), 0, 0, 64)];
        refused_by_dev_null(
            gntdev.copy(&mut local, &mut segs),
            "IOCTL_GNTDEV_GRANT_COPY",
        );
    }

    #[test]
    fn page_counts_are_validated() {
        assert!(matches!(
            check_count(0),
            Err(GrantError::InvalidArgument(_))
        ));
        assert!(check_count(1).is_ok());
        assert!(check_count(MAX_PAGES_PER_CALL + 1).is_err());
    }
}
