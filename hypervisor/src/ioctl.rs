//! The one ioctl shape of Xen's Linux devices (`/dev/xen/{gntalloc,gntdev,evtchn}`), as
//! a [`rustix::ioctl::Ioctl`]: a request number from `uapi.rs`, a pointer to the
//! argument (a `repr(C)` struct, a buffer holding a struct with a variable-length tail,
//! or nothing), and the call's return value as the result (`/dev/xen/evtchn`'s bind
//! ioctls return the new port).

use std::ffi::c_void;
use std::marker::PhantomData;

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

/// One ioctl request on a Xen device; run it with `rustix::ioctl::ioctl`, whose safety
/// contract (the request number, the argument's type and the device must agree) the
/// caller states.
pub(crate) struct XenIoctl<'a> {
    opcode: Opcode,
    arg: *mut c_void,
    /// The argument is borrowed, exclusively, for as long as the request exists.
    _arg: PhantomData<&'a mut ()>,
}

impl<'a> XenIoctl<'a> {
    /// Request `opcode` with `arg`, a struct the kernel reads and may write back.
    pub(crate) fn new<T>(opcode: Opcode, arg: &'a mut T) -> Self {
        XenIoctl {
            opcode,
            arg: (arg as *mut T).cast(),
            _arg: PhantomData,
        }
    }

    /// Request `opcode` with a struct that ends in a variable-length array, laid out in
    /// `buf`.
    pub(crate) fn flex(opcode: Opcode, buf: &'a mut FlexBuf) -> Self {
        XenIoctl {
            opcode,
            arg: buf.as_mut_ptr(),
            _arg: PhantomData,
        }
    }

    /// Request `opcode`, which takes no argument.
    pub(crate) fn no_arg(opcode: Opcode) -> Self {
        XenIoctl {
            opcode,
            arg: std::ptr::null_mut(),
            _arg: PhantomData,
        }
    }
}

// SAFETY: `as_ptr` is the argument borrowed (exclusively, for the request's lifetime) at
// construction or null; `IS_MUTATING` is true because several of these ioctls write
// their argument back; the output is the raw return value, read from no memory.
unsafe impl Ioctl for XenIoctl<'_> {
    type Output = IoctlOutput;

    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _arg: *mut c_void,
    ) -> rustix::io::Result<Self::Output> {
        Ok(out)
    }
}

/// A heap buffer, 8-byte aligned, holding a C struct that ends in a variable-length
/// array (`gref_ids[count]`, `refs[count]`): a `header`-byte prefix then `count` items
/// of `item` bytes, and never shorter than `min` (the `sizeof` with a one-element array).
pub(crate) struct FlexBuf {
    words: Vec<u64>,
}

impl FlexBuf {
    pub(crate) fn new(header: usize, item: usize, count: usize, min: usize) -> Self {
        let bytes = (header + item * count).max(min);
        FlexBuf {
            words: vec![0u64; bytes.div_ceil(8)],
        }
    }

    pub(crate) fn as_mut_ptr<T>(&mut self) -> *mut T {
        self.words.as_mut_ptr().cast()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: a `Vec<u64>` is valid as bytes for its whole length.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * 8) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` guarantees exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.words.len() * 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evtchn::uapi as e;
    use crate::grant::uapi as g;

    #[test]
    fn requests_carry_the_uapi_number_and_the_argument_address() {
        let mut arg = g::IoctlGntdevUnmapGrantRef::default();
        let addr = std::ptr::addr_of_mut!(arg) as usize;
        let mut r = XenIoctl::new(g::IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut arg);
        assert_eq!(r.opcode(), 0x104701);
        assert_eq!(r.as_ptr() as usize, addr);

        let mut buf = FlexBuf::new(16, 4, 3, size_of::<g::IoctlGntallocAllocGref>());
        let addr = buf.bytes().as_ptr() as usize;
        let mut r = XenIoctl::flex(g::IOCTL_GNTALLOC_ALLOC_GREF, &mut buf);
        assert_eq!(r.opcode(), 0x184705);
        assert_eq!(r.as_ptr() as usize, addr);

        let mut r = XenIoctl::no_arg(e::IOCTL_EVTCHN_RESET);
        assert_eq!(r.opcode(), 0x4505);
        assert!(r.as_ptr().is_null());
    }

    #[test]
    fn flex_buffers_hold_header_and_items() {
        let b = FlexBuf::new(16, 4, 1, size_of::<g::IoctlGntallocAllocGref>());
        assert_eq!(b.bytes().len(), 24);
        let b = FlexBuf::new(16, 4, 3, size_of::<g::IoctlGntallocAllocGref>());
        assert_eq!(b.bytes().len(), 32); // 28 rounded up to words
        let b = FlexBuf::new(16, 8, 256, size_of::<g::IoctlGntdevMapGrantRef>());
        assert_eq!(b.bytes().len(), 16 + 8 * 256);
    }
}
