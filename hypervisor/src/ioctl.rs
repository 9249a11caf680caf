//! The one ioctl shape of Xen's Linux devices (`/dev/xen/{gntalloc,gntdev,evtchn}`), as
//! a [`rustix::ioctl::Ioctl`]: a request number from `uapi.rs`, a pointer to the
//! argument (a `repr(C)` struct, a buffer holding a struct with a variable-length tail,
//! or nothing), and the call's return value as the result (`/dev/xen/evtchn`'s bind
//! ioctls return the new port).

use std::ffi::c_void;
use std::marker::PhantomData;

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

use crate::grant::uapi::FlexBuf;

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
}
