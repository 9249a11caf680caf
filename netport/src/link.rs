//! Link configuration of a network interface in the current namespace, without external
//! tools: `SIOC*` ioctls on an `AF_INET` datagram socket (up, MTU, MAC, index, bridge port)
//! and one rtnetlink request (`IFLA_GSO_MAX_SIZE`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCBRADDIF` (linux/sockios.h).
const SIOCBRADDIF: libc::c_ulong = 0x89a2;
/// `IFLA_GSO_MAX_SIZE` (linux/if_link.h).
const IFLA_GSO_MAX_SIZE: u16 = 41;
/// `NLM_F_REQUEST | NLM_F_ACK` (linux/netlink.h).
const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
/// `NLMSG_ERROR` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;

pub(crate) fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub(crate) fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A zeroed `ifreq` carrying `name` (validated: 1..=15 bytes, no NUL).
pub(crate) fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1..=15 bytes, no NUL or '/')"),
        ));
    }
    // SAFETY: `ifreq` is a C struct of integers, arrays and a union of such (and a pointer
    // member, for which all-zero is the null pointer): all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

pub(crate) fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `AF_INET` datagram socket for interface ioctls.
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain FFI call with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(ctx(io::Error::last_os_error(), "socket(AF_INET)"));
    }
    // SAFETY: `fd` is a fresh socket we own exclusively.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one interface ioctl on a control socket with `req`.
fn if_ioctl(req: &mut libc::ifreq, op: libc::c_ulong, what: &str) -> io::Result<()> {
    let sock = ctl_socket()?;
    // SAFETY: the SIOC* interface ioctls used here read/write a `struct ifreq`; `req` is a
    // live, initialised ifreq.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), op as _, req as *mut libc::ifreq) }).map_err(|e| {
        let name = ifreq_name(req);
        ctx(e, &format!("{what} {name}"))
    })
}

/// Sets (or clears) `IFF_UP` on interface `name` in the current network namespace.
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let mut req = ifreq_named(name)?;
    if_ioctl(&mut req, libc::SIOCGIFFLAGS, "SIOCGIFFLAGS")?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    let mut flags = unsafe { req.ifr_ifru.ifru_flags };
    if up {
        flags |= libc::IFF_UP as libc::c_short;
    } else {
        flags &= !(libc::IFF_UP as libc::c_short);
    }
    req.ifr_ifru.ifru_flags = flags;
    if_ioctl(&mut req, libc::SIOCSIFFLAGS, "SIOCSIFFLAGS")
}

/// Sets the MTU of interface `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = ifreq_named(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU too large"))?;
    if_ioctl(&mut req, libc::SIOCSIFMTU, "SIOCSIFMTU")
}

/// The MTU of interface `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut req = ifreq_named(name)?;
    if_ioctl(&mut req, libc::SIOCGIFMTU, "SIOCGIFMTU")?;
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// Sets the Ethernet address of interface `name`.
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut req = ifreq_named(name)?;
    // SAFETY: all-zero is a valid `sockaddr` (integers and a byte array).
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in sa.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_hwaddr = sa;
    if_ioctl(&mut req, libc::SIOCSIFHWADDR, "SIOCSIFHWADDR")
}

/// The Ethernet address of interface `name`.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq_named(name)?;
    if_ioctl(&mut req, libc::SIOCGIFHWADDR, "SIOCGIFHWADDR")?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data) {
        *d = s as u8;
    }
    Ok(mac)
}

/// The interface index of `name`.
pub fn index(name: &str) -> io::Result<u32> {
    let mut req = ifreq_named(name)?;
    if_ioctl(&mut req, libc::SIOCGIFINDEX, "SIOCGIFINDEX")?;
    // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member of the union.
    let idx = unsafe { req.ifr_ifru.ifru_ifindex };
    Ok(idx.max(0) as u32)
}

/// Attaches interface `ifname` to the existing Linux bridge `bridge` (`SIOCBRADDIF`).
pub fn bridge_add_if(bridge: &str, ifname: &str) -> io::Result<()> {
    let ifindex = index(ifname)?;
    let mut req = ifreq_named(bridge)?;
    req.ifr_ifru.ifru_ifindex = ifindex as libc::c_int;
    if_ioctl(&mut req, SIOCBRADDIF, "SIOCBRADDIF")
}

/// Sets the largest GSO super-packet the kernel builds for interface `name`
/// (`IFLA_GSO_MAX_SIZE`, by an rtnetlink `RTM_NEWLINK` request). An L3 packet of a GSO
/// frame the kernel hands to the device is then at most `size` bytes.
pub fn set_gso_max_size(name: &str, size: u32) -> io::Result<()> {
    let ifindex = index(name)?;
    // SAFETY: plain FFI call with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(ctx(io::Error::last_os_error(), "socket(AF_NETLINK)"));
    }
    // SAFETY: `fd` is a fresh socket we own exclusively.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16) + ifinfomsg (16) + rtattr (4) + u32 (4).
    let mut msg = Vec::with_capacity(40);
    msg.extend_from_slice(&40u32.to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // change
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&IFLA_GSO_MAX_SIZE.to_ne_bytes());
    msg.extend_from_slice(&size.to_ne_bytes());
    // SAFETY: sends `msg.len()` bytes from a live buffer on our socket.
    let n = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n != msg.len() as isize {
        return Err(ctx(io::Error::last_os_error(), "rtnetlink send"));
    }
    let mut ack = [0u8; 1024];
    // SAFETY: receives at most `ack.len()` bytes into a live local buffer.
    let n = unsafe { libc::recv(sock.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0) };
    if n < 0 {
        return Err(ctx(io::Error::last_os_error(), "rtnetlink recv"));
    }
    let ack = &ack[..n as usize];
    if ack.len() < 20 || u16::from_ne_bytes([ack[4], ack[5]]) != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "rtnetlink: unexpected reply to RTM_NEWLINK",
        ));
    }
    let err = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
    if err != 0 {
        return Err(ctx(
            io::Error::from_raw_os_error(-err),
            &format!("RTM_NEWLINK IFLA_GSO_MAX_SIZE {size} {name}"),
        ));
    }
    Ok(())
}
