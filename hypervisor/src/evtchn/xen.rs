//! Event channels on real Xen, through Linux's `/dev/xen/evtchn`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::uapi::*;
use super::{EventChannels, EvtchnError, Port};
use xen_ids::DomId;

/// An open `/dev/xen/evtchn` (non-blocking). All ports bound through it are reported on
/// its one fd; closing it unbinds them.
#[derive(Debug)]
pub struct XenEventChannels {
    fd: OwnedFd,
}

impl XenEventChannels {
    /// Open `/dev/xen/evtchn` in non-blocking mode.
    pub fn open() -> Result<Self, EvtchnError> {
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                c"/dev/xen/evtchn".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(EvtchnError::last_os("open /dev/xen/evtchn"));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(XenEventChannels { fd })
    }

    fn ioctl<T>(
        &self,
        op: &'static str,
        nr: std::os::raw::c_ulong,
        arg: &T,
    ) -> Result<u32, EvtchnError> {
        // SAFETY: `arg` is the correctly laid out argument of ioctl `nr` and outlives
        // the call; the kernel only reads it.
        let rc = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(&self.fd, nr, arg) };
        if rc < 0 {
            return Err(EvtchnError::last_os(op));
        }
        Ok(rc as u32)
    }
}

impl AsFd for XenEventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl EventChannels for XenEventChannels {
    fn alloc_unbound(&self, peer: DomId) -> Result<Port, EvtchnError> {
        let arg = IoctlEvtchnBindUnboundPort {
            remote_domain: peer.0.into(),
        };
        self.ioctl(
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
            IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            &arg,
        )
        .map(Port)
    }

    fn bind_interdomain(&self, peer: DomId, remote: Port) -> Result<Port, EvtchnError> {
        let arg = IoctlEvtchnBindInterdomain {
            remote_domain: peer.0.into(),
            remote_port: remote.0,
        };
        self.ioctl(
            "IOCTL_EVTCHN_BIND_INTERDOMAIN",
            IOCTL_EVTCHN_BIND_INTERDOMAIN,
            &arg,
        )
        .map(Port)
    }

    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        let arg = IoctlEvtchnNotify { port: port.0 };
        self.ioctl("IOCTL_EVTCHN_NOTIFY", IOCTL_EVTCHN_NOTIFY, &arg)
            .map(drop)
    }

    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        let arg = IoctlEvtchnUnbind { port: port.0 };
        self.ioctl("IOCTL_EVTCHN_UNBIND", IOCTL_EVTCHN_UNBIND, &arg)
            .map(drop)
    }

    fn pending(&self, out: &mut [Port]) -> Result<usize, EvtchnError> {
        if out.is_empty() {
            return Ok(0);
        }
        // SAFETY: `Port` is a transparent u32, so `out` is `4 * len` writable bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                out.as_mut_ptr().cast(),
                std::mem::size_of_val(out),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(0),
                Some(libc::EFBIG) => {
                    // The driver's ring overflowed: reset it, report the loss.
                    // SAFETY: IOCTL_EVTCHN_RESET takes no argument.
                    unsafe { vmm_sys_util::ioctl::ioctl(&self.fd, IOCTL_EVTCHN_RESET) };
                    Err(EvtchnError::Overflow)
                }
                _ => Err(EvtchnError::Io {
                    op: "read /dev/xen/evtchn",
                    source: e,
                }),
            };
        }
        Ok(n as usize / 4)
    }

    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        let v = port.0;
        // SAFETY: writes 4 bytes from a local u32.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&v as *const u32).cast(), 4) };
        if n != 4 {
            return Err(EvtchnError::last_os("write /dev/xen/evtchn (unmask)"));
        }
        Ok(())
    }
}
