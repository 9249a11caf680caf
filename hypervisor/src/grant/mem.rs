//! [`SharedMem`]: a mapping of memory that another domain may read or write at any time.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

/// Errors of [`SharedMem`] accessors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The access reaches outside the mapping.
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte mapping")]
    OutOfBounds {
        /// Start of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the mapping.
        size: usize,
    },
    /// A volatile or atomic access is not naturally aligned.
    #[error("offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// Start of the access.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
    /// A write to a read-only mapping.
    #[error("the mapping is read-only")]
    ReadOnly,
    /// A byte slice was asked of pages the peer may write
    /// ([`crate::grant::SharedPages::private_mut`]).
    #[error("the peer may write these pages")]
    PeerWritable,
}

/// Integer types that can be read and written volatilely in shared memory.
pub trait Scalar: Copy + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! scalar {
    ($($t:ty),*) => {$(impl sealed::Sealed for $t {} impl Scalar for $t {})*};
}
scalar!(u8, u16, u32, u64, i8, i16, i32, i64);

/// A page-aligned memory mapping shared with another domain (granted pages, a mapped
/// grant, a local emulation's memfd pages). It owns the mapping and unmaps it on drop.
///
/// The peer may write the memory at any time, so Rust references into it are not
/// handed out (the one exception: [`crate::grant::SharedPages::private_mut`], for pages
/// the peer may only read): every accessor is bounds-checked and copies data in or out, volatilely
/// for single integers, atomically for the ring indices that need ordering, and with a
/// plain byte copy for bulk data (whose content is only meaningful once a ring index
/// published it). Writes to a read-only mapping are refused with
/// [`MemError::ReadOnly`] rather than faulting.
#[derive(Debug)]
pub struct SharedMem {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: `SharedMem` owns a process-wide mapping; all accesses go through `&self`
// methods that use raw-pointer copies, volatile or atomic operations, which are sound
// under concurrent access from other threads (and other domains).
unsafe impl Send for SharedMem {}
// SAFETY: as above; no method hands out references that alias mutable state.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    /// Take ownership of a mapping created with `mmap`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be a mapping created by `mmap` that nothing else unmaps, with
    /// read access, and with write access if `writable`. It is `munmap`ped on drop.
    pub unsafe fn from_mmap(ptr: NonNull<u8>, len: usize, writable: bool) -> Self {
        SharedMem { ptr, len, writable }
    }

    /// Maps `len` bytes of `fd` at byte `offset`, shared (`MAP_SHARED`), readable and,
    /// if `writable`, writable: with [`map_fd_pieces`](Self::map_fd_pieces), the one
    /// place the project maps a file descriptor (a gntalloc/gntdev region on Xen, a
    /// memfd on the local platform).
    pub fn map_fd(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: u64,
        writable: bool,
    ) -> io::Result<SharedMem> {
        let offset = file_offset(offset)?;
        // SAFETY: asks the kernel for a fresh shared mapping anywhere (address NULL):
        // nothing existing is replaced; the kernel validates fd, range and protection;
        // the result is checked before use.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                prot(writable),
                MapFlags::SHARED,
                fd,
                offset,
            )
        }?;
        let p = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        // SAFETY: a fresh mapping of `len` bytes with the protection above, owned by
        // nobody else: the new `SharedMem` unmaps it on drop.
        Ok(unsafe { SharedMem::from_mmap(p, len, writable) })
    }

    /// Maps pieces of several fds into one contiguous range: `pieces[i] = (fd, offset)`
    /// is mapped shared at `i * page` for `page` bytes (the local platform's view of
    /// grants that live in several allocations).
    pub fn map_fd_pieces(
        pieces: &[(BorrowedFd<'_>, u64)],
        page: usize,
        writable: bool,
    ) -> io::Result<SharedMem> {
        let len = pieces
            .len()
            .checked_mul(page)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags = MapFlags::PRIVATE | MapFlags::NORESERVE;
        // SAFETY: reserves a fresh inaccessible anonymous range anywhere (address
        // NULL): nothing existing is replaced; the result is checked before use.
        let base = unsafe {
            rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::empty(), flags)
        }?;
        let base = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        // SAFETY: the reservation is owned from now on (unmapped on drop, also on error).
        let mem = unsafe { SharedMem::from_mmap(base, len, writable) };
        for (i, (fd, offset)) in pieces.iter().enumerate() {
            let offset = file_offset(*offset)?;
            // SAFETY: MAP_FIXED replaces one page inside our own reservation only
            // (`i * page + page <= len`), which nothing references yet.
            unsafe {
                rustix::mm::mmap(
                    base.as_ptr().add(i * page).cast(),
                    page,
                    prot(writable),
                    MapFlags::SHARED | MapFlags::FIXED,
                    fd,
                    offset,
                )
            }?;
        }
        Ok(mem)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true for mappings made by this crate).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether writes are allowed.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The start of the mapping, for code (such as a ring implementation) that needs raw
    /// access. Dereferencing it is `unsafe`: stay within [`len`](Self::len), do not
    /// write unless [`is_writable`](Self::is_writable), remember the peer writes
    /// concurrently, and do not use it after the `SharedMem` is dropped.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, offset: usize, len: usize) -> Result<*mut u8, MemError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: offset <= len of the mapping, so the result stays inside it
                // (or one past its end when len == 0).
                Ok(unsafe { self.ptr.as_ptr().add(offset) })
            }
            _ => Err(MemError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    fn check_aligned(&self, offset: usize, size: usize) -> Result<*mut u8, MemError> {
        let p = self.check(offset, size)?;
        if (p as usize) % size != 0 {
            return Err(MemError::Misaligned {
                offset,
                align: size,
            });
        }
        Ok(p)
    }

    fn check_write(&self, offset: usize, len: usize) -> Result<*mut u8, MemError> {
        if !self.writable {
            return Err(MemError::ReadOnly);
        }
        self.check(offset, len)
    }

    /// Copy `buf.len()` bytes at `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemError> {
        let p = self.check(offset, buf.len())?;
        // SAFETY: `p..p+buf.len()` is inside the readable mapping (checked); `buf` is a
        // distinct local buffer, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy `buf` into the mapping at `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), MemError> {
        let p = self.check_write(offset, buf.len())?;
        // SAFETY: `p..p+buf.len()` is inside the writable mapping (checked); `buf` is a
        // local buffer, not part of the mapping.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
        Ok(())
    }

    /// `len` bytes at `offset` as a mutable byte slice (bounds and writability checked).
    ///
    /// # Safety
    /// Nothing else may write those bytes while the slice lives: not the peer (the pages
    /// must be granted to it read-only) and not this process (no other slice of them,
    /// no [`write`](Self::write) through another handle).
    // The exclusive borrow comes from the caller's contract, not from `&self`: the
    // mapping is shared by design, and the one caller holds its pages by `&mut`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<&mut [u8], MemError> {
        let p = self.check_write(offset, len)?;
        // SAFETY: `p..p+len` is inside the writable mapping (checked), which outlives the
        // borrow of `self`; exclusivity is the caller's contract.
        Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }

    /// Fill `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), MemError> {
        let p = self.check_write(offset, len)?;
        // SAFETY: `p..p+len` is inside the writable mapping (checked).
        unsafe { std::ptr::write_bytes(p, byte, len) };
        Ok(())
    }

    /// Volatile read of one naturally aligned integer at `offset`.
    pub fn read_volatile<T: Scalar>(&self, offset: usize) -> Result<T, MemError> {
        let p = self.check_aligned(offset, std::mem::size_of::<T>())?;
        // SAFETY: in bounds and aligned for `T` (checked); every bit pattern is a valid
        // integer.
        Ok(unsafe { std::ptr::read_volatile(p as *const T) })
    }

    /// Volatile write of one naturally aligned integer at `offset`.
    pub fn write_volatile<T: Scalar>(&self, offset: usize, value: T) -> Result<(), MemError> {
        if !self.writable {
            return Err(MemError::ReadOnly);
        }
        let p = self.check_aligned(offset, std::mem::size_of::<T>())?;
        // SAFETY: in bounds, aligned and writable (checked).
        unsafe { std::ptr::write_volatile(p as *mut T, value) };
        Ok(())
    }

    fn atomic<A>(&self, offset: usize, size: usize, write: bool) -> Result<&A, MemError> {
        if write && !self.writable {
            return Err(MemError::ReadOnly);
        }
        let p = self.check_aligned(offset, size)?;
        // SAFETY: in bounds and aligned (checked); the atomic types have the size and
        // alignment of the integer; the reference does not outlive `self` (the
        // mapping), and atomics are sound under concurrent access.
        Ok(unsafe { &*(p as *const A) })
    }

    /// Atomic load of a `u16` (e.g. a grant-table flags word).
    pub fn load_u16(&self, offset: usize, order: Ordering) -> Result<u16, MemError> {
        Ok(self.atomic::<AtomicU16>(offset, 2, false)?.load(order))
    }

    /// Atomic store of a `u16`.
    pub fn store_u16(&self, offset: usize, value: u16, order: Ordering) -> Result<(), MemError> {
        self.atomic::<AtomicU16>(offset, 2, true)?
            .store(value, order);
        Ok(())
    }

    /// Atomic load of a `u32` (e.g. a ring's `req_prod`).
    pub fn load_u32(&self, offset: usize, order: Ordering) -> Result<u32, MemError> {
        Ok(self.atomic::<AtomicU32>(offset, 4, false)?.load(order))
    }

    /// Atomic store of a `u32`.
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) -> Result<(), MemError> {
        self.atomic::<AtomicU32>(offset, 4, true)?
            .store(value, order);
        Ok(())
    }

    /// Atomic load of a `u64`.
    pub fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, MemError> {
        Ok(self.atomic::<AtomicU64>(offset, 8, false)?.load(order))
    }

    /// Atomic store of a `u64`.
    pub fn store_u64(&self, offset: usize, value: u64, order: Ordering) -> Result<(), MemError> {
        self.atomic::<AtomicU64>(offset, 8, true)?
            .store(value, order);
        Ok(())
    }

    /// Atomic compare-and-exchange of a `u64`; `Ok(Err(actual))` when the value differed.
    pub fn compare_exchange_u64(
        &self,
        offset: usize,
        current: u64,
        new: u64,
        order: Ordering,
    ) -> Result<Result<u64, u64>, MemError> {
        let a = self.atomic::<AtomicU64>(offset, 8, true)?;
        Ok(a.compare_exchange(current, new, order, Ordering::Relaxed))
    }
}

/// Read access, and write access if `writable`.
fn prot(writable: bool) -> ProtFlags {
    if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    }
}

/// A file offset `mmap` can take (an `off_t`).
fn file_offset(offset: u64) -> io::Result<u64> {
    if i64::try_from(offset).is_err() {
        return Err(io::Error::from_raw_os_error(
            rustix::io::Errno::OVERFLOW.raw_os_error(),
        ));
    }
    Ok(offset)
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: we own the mapping (contract of `from_mmap`) and nothing can use it
        // after drop: every accessor borrows `self`.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            log::error!("munmap of shared memory failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(len: usize, writable: bool) -> SharedMem {
        // SAFETY: a fresh anonymous mapping; arguments are valid.
        let p = unsafe {
            rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, prot(writable), MapFlags::PRIVATE)
        }
        .unwrap();
        // SAFETY: just mapped, owned by the SharedMem from now on.
        unsafe { SharedMem::from_mmap(NonNull::new(p.cast()).unwrap(), len, writable) }
    }

    #[test]
    fn bounds_alignment_and_read_only_are_errors() {
        let m = anon(4096, true);
        m.write(4090, &[1, 2, 3, 4, 5, 6]).unwrap();
        let mut b = [0u8; 6];
        m.read(4090, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6]);
        assert!(matches!(
            m.write(4091, &[0; 6]),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(matches!(
            m.read(usize::MAX, &mut b),
            Err(MemError::OutOfBounds { .. })
        ));
        assert_eq!(
            m.load_u32(2, Ordering::Acquire),
            Err(MemError::Misaligned {
                offset: 2,
                align: 4
            })
        );
        m.store_u32(8, 0xdead_beef, Ordering::Release).unwrap();
        assert_eq!(m.read_volatile::<u32>(8).unwrap(), 0xdead_beef);
        m.write_volatile::<u16>(12, 7).unwrap();
        assert_eq!(m.load_u16(12, Ordering::Relaxed).unwrap(), 7);
        assert!(m.load_u64(4096, Ordering::Relaxed).is_err());
        assert_eq!(
            m.compare_exchange_u64(16, 0, 5, Ordering::AcqRel).unwrap(),
            Ok(0)
        );
        assert_eq!(
            m.compare_exchange_u64(16, 0, 6, Ordering::AcqRel).unwrap(),
            Err(5)
        );

        let ro = anon(4096, false);
        assert_eq!(ro.write(0, &[1]), Err(MemError::ReadOnly));
        assert_eq!(
            ro.store_u32(0, 1, Ordering::Relaxed),
            Err(MemError::ReadOnly)
        );
        assert_eq!(ro.write_volatile::<u8>(0, 1), Err(MemError::ReadOnly));
        assert_eq!(ro.fill(0, 1, 0), Err(MemError::ReadOnly));
        assert_eq!(ro.load_u32(0, Ordering::Relaxed), Ok(0));
    }

    /// A two-page memfd whose page `i` is filled with byte `i + 1`.
    fn two_pages() -> std::os::fd::OwnedFd {
        use rustix::fs::MemfdFlags;
        let fd = rustix::fs::memfd_create(c"mem-test", MemfdFlags::CLOEXEC).unwrap();
        let mut bytes = vec![1u8; 4096];
        bytes.resize(8192, 2);
        assert_eq!(rustix::io::write(&fd, &bytes).unwrap(), 8192);
        fd
    }

    #[test]
    fn fds_map_whole_and_in_pieces_onto_the_same_pages() {
        use std::os::fd::AsFd;
        let fd = two_pages();
        let second = SharedMem::map_fd(fd.as_fd(), 4096, 4096, true).unwrap();
        assert_eq!(second.read_volatile::<u8>(4095).unwrap(), 2);
        let swapped =
            SharedMem::map_fd_pieces(&[(fd.as_fd(), 4096), (fd.as_fd(), 0)], 4096, false).unwrap();
        assert_eq!(swapped.len(), 8192);
        assert_eq!(swapped.read_volatile::<u8>(0).unwrap(), 2);
        assert_eq!(swapped.read_volatile::<u8>(4096).unwrap(), 1);
        second.write_volatile::<u8>(7, 9).unwrap();
        assert_eq!(swapped.read_volatile::<u8>(7).unwrap(), 9);
        assert_eq!(swapped.write(0, &[1]), Err(MemError::ReadOnly));
        let e = SharedMem::map_fd(fd.as_fd(), 4096, 1 << 63, false).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::OVERFLOW.raw_os_error())
        );
        // A piece the fd cannot back fails the whole mapping.
        assert!(
            SharedMem::map_fd_pieces(&[(fd.as_fd(), 0), (fd.as_fd(), 4097)], 4096, false).is_err()
        );
    }
}
