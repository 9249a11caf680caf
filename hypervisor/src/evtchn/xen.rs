//! Event channels on real Xen, through Linux's `/dev/xen/evtchn`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, Opcode};

use super::uapi::*;
use super::{EventChannels, EvtchnError, Port};
use crate::ioctl::XenIoctl;
use xen_ids::DomId;

fn io_err(op: &'static str) -> impl Fn(Errno) -> EvtchnError {
    move |e| EvtchnError::Io {
        op,
        source: e.into(),
    }
}

/// An open `/dev/xen/evtchn` (non-blocking). All ports bound through it are reported on
/// its one fd; closing it unbinds them.
#[derive(Debug)]
pub struct XenEventChannels {
    fd: OwnedFd,
}

impl XenEventChannels {
    /// Open `/dev/xen/evtchn` in non-blocking mode.
    pub fn open() -> Result<Self, EvtchnError> {
        let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(c"/dev/xen/evtchn", flags, Mode::empty())
            .map_err(io_err("open /dev/xen/evtchn"))?;
        Ok(XenEventChannels { fd })
    }

    fn ioctl<T>(&self, op: &'static str, nr: Opcode, arg: &mut T) -> Result<u32, EvtchnError> {
        // SAFETY: `arg` is the correctly laid out argument of ioctl `nr` and outlives
        // the call; the kernel only reads it.
        let rc = unsafe { ioctl(&self.fd, XenIoctl::new(nr, arg)) }.map_err(io_err(op))?;
        Ok(rc as u32)
    }
}

impl AsFd for XenEventChannels {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl EventChannels for XenEventChannels {
    fn reopen(&self) -> Result<Self, EvtchnError> {
        XenEventChannels::open()
    }

    fn alloc_unbound(&self, peer: DomId) -> Result<Port, EvtchnError> {
        let mut arg = IoctlEvtchnBindUnboundPort {
            remote_domain: peer.0.into(),
        };
        self.ioctl(
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
            IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            &mut arg,
        )
        .map(Port)
    }

    fn bind_interdomain(&self, peer: DomId, remote: Port) -> Result<Port, EvtchnError> {
        let mut arg = IoctlEvtchnBindInterdomain {
            remote_domain: peer.0.into(),
            remote_port: remote.0,
        };
        self.ioctl(
            "IOCTL_EVTCHN_BIND_INTERDOMAIN",
            IOCTL_EVTCHN_BIND_INTERDOMAIN,
            &mut arg,
        )
        .map(Port)
    }

    fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        let mut arg = IoctlEvtchnNotify { port: port.0 };
        self.ioctl("IOCTL_EVTCHN_NOTIFY", IOCTL_EVTCHN_NOTIFY, &mut arg)
            .map(drop)
    }

    fn unbind(&self, port: Port) -> Result<(), EvtchnError> {
        let mut arg = IoctlEvtchnUnbind { port: port.0 };
        self.ioctl("IOCTL_EVTCHN_UNBIND", IOCTL_EVTCHN_UNBIND, &mut arg)
            .map(drop)
    }

    fn pending(&self, out: &mut [Port]) -> Result<usize, EvtchnError> {
        if out.is_empty() {
            return Ok(0);
        }
        // SAFETY: `Port` is a transparent u32, for which any bytes are valid, so `out`
        // is `4 * len` writable bytes, borrowed exclusively for the call.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), size_of_val(out))
        };
        match rustix::io::read(&self.fd, bytes) {
            Ok(n) => Ok(n / 4),
            Err(Errno::AGAIN) => Ok(0),
            Err(Errno::FBIG) => {
                // The driver's ring overflowed: reset it, report the loss.
                // SAFETY: IOCTL_EVTCHN_RESET takes no argument.
                let _ = unsafe { ioctl(&self.fd, XenIoctl::no_arg(IOCTL_EVTCHN_RESET)) };
                Err(EvtchnError::Overflow)
            }
            Err(e) => Err(io_err("read /dev/xen/evtchn")(e)),
        }
    }

    fn unmask(&self, port: Port) -> Result<(), EvtchnError> {
        let op = "write /dev/xen/evtchn (unmask)";
        let n = rustix::io::write(&self.fd, &port.0.to_ne_bytes()).map_err(io_err(op))?;
        if n != 4 {
            return Err(EvtchnError::Io {
                op,
                source: std::io::Error::from(std::io::ErrorKind::WriteZero),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ioctl_reaches_the_kernel_and_its_refusal_is_reported() {
        // No /dev/xen here: the same requests on /dev/null, which implements no ioctl,
        // come back ENOTTY through each operation's error path.
        let ev = XenEventChannels {
            fd: std::fs::File::open("/dev/null").unwrap().into(),
        };
        let refusals = [
            ("IOCTL_EVTCHN_BIND_UNBOUND_PORT", ev.alloc_unbound(DomId(1))),
            (
                "IOCTL_EVTCHN_BIND_INTERDOMAIN",
                ev.bind_interdomain(DomId(1), Port(2)),
            ),
            ("IOCTL_EVTCHN_NOTIFY", ev.notify(Port(2)).map(|()| Port(0))),
            ("IOCTL_EVTCHN_UNBIND", ev.unbind(Port(2)).map(|()| Port(0))),
        ];
        for (ioctl, r) in refusals {
            match r {
                Err(EvtchnError::Io { op, source }) => {
                    assert_eq!(op, ioctl);
                    assert_eq!(source.raw_os_error(), Some(Errno::NOTTY.raw_os_error()));
                }
                other => panic!("{ioctl}: expected ENOTTY, got {other:?}"),
            }
        }
        // Reading /dev/null is end of file: no ports pending.
        assert_eq!(ev.pending(&mut [Port(0); 4]).unwrap(), 0);
        // One fd for every port: none detaches, and none can be acknowledged alone.
        assert!(ev.detach(Port(2)).unwrap().is_none());
        assert!(matches!(ev.ack(Port(2)), Err(EvtchnError::UnknownPort(_))));
    }
}
