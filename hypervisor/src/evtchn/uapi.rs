//! Linux uapi of `/dev/xen/evtchn` (`<xen/evtchn.h>`). Every ioctl is
//! `_IOC(_IOC_NONE, 'E', nr, sizeof(struct))`. Checked against the C header by
//! `tests/uapi_layout.rs`.

#![allow(missing_docs)] // field names and meanings are those of the C header

use rustix::ioctl::{opcode, Direction, Opcode};
use std::mem::size_of;
use std::os::raw::c_uint;

/// `_IOC(_IOC_NONE, 'E', nr, size)`.
const fn eio(nr: u8, size: usize) -> Opcode {
    opcode::from_components(Direction::None, b'E', nr, size)
}

/// `struct ioctl_evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlEvtchnBindVirq {
    pub virq: c_uint,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlEvtchnBindInterdomain {
    pub remote_domain: c_uint,
    pub remote_port: c_uint,
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlEvtchnBindUnboundPort {
    pub remote_domain: c_uint,
}

/// `struct ioctl_evtchn_unbind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlEvtchnUnbind {
    pub port: c_uint,
}

/// `struct ioctl_evtchn_notify`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlEvtchnNotify {
    pub port: c_uint,
}

/// `struct ioctl_evtchn_restrict_domid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoctlEvtchnRestrictDomid {
    pub domid: u16,
}

/// `IOCTL_EVTCHN_BIND_VIRQ`.
pub const IOCTL_EVTCHN_BIND_VIRQ: Opcode = eio(0, size_of::<IoctlEvtchnBindVirq>());
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: Opcode = eio(1, size_of::<IoctlEvtchnBindInterdomain>());
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: Opcode = eio(2, size_of::<IoctlEvtchnBindUnboundPort>());
/// `IOCTL_EVTCHN_UNBIND`.
pub const IOCTL_EVTCHN_UNBIND: Opcode = eio(3, size_of::<IoctlEvtchnUnbind>());
/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: Opcode = eio(4, size_of::<IoctlEvtchnNotify>());
/// `IOCTL_EVTCHN_RESET`.
pub const IOCTL_EVTCHN_RESET: Opcode = eio(5, 0);
/// `IOCTL_EVTCHN_RESTRICT_DOMID`.
pub const IOCTL_EVTCHN_RESTRICT_DOMID: Opcode = eio(6, size_of::<IoctlEvtchnRestrictDomid>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_research_notes() {
        assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x44500);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x84501);
        assert_eq!(IOCTL_EVTCHN_BIND_UNBOUND_PORT, 0x44502);
        assert_eq!(IOCTL_EVTCHN_UNBIND, 0x44503);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x44504);
        assert_eq!(IOCTL_EVTCHN_RESET, 0x4505);
    }
}
