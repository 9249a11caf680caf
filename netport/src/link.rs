//! Link configuration of a network interface in the current namespace, without external
//! tools: `SIOC*` ioctls on an `AF_INET` datagram socket (up, MTU, MAC, index, bridge port)
//! and one rtnetlink request (`IFLA_GSO_MAX_SIZE`). The calls go through rustix; the
//! `ifreq` layout and the request numbers are libc's.

use std::io;
use std::os::fd::OwnedFd;

use rustix::ioctl::{Opcode, Updater};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// `SIOCBRADDIF` (linux/sockios.h).
const SIOCBRADDIF: Opcode = 0x89a2;
/// `IFLA_GSO_MAX_SIZE` (linux/if_link.h).
const IFLA_GSO_MAX_SIZE: u16 = 41;
/// `NLM_F_REQUEST | NLM_F_ACK` (linux/netlink.h).
const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
/// `NLMSG_ERROR` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;

pub(crate) fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
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
    rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| ctx(e.into(), "socket(AF_INET)"))
}

/// Runs interface ioctl `OP` (one that reads and/or writes a `struct ifreq`) on a control
/// socket with `req`.
fn if_ioctl<const OP: Opcode>(req: &mut libc::ifreq, what: &str) -> io::Result<()> {
    let sock = ctl_socket()?;
    // SAFETY: the SIOC* interface ioctls used here read/write a `struct ifreq`; `req` is a
    // live, initialised ifreq.
    unsafe { rustix::ioctl::ioctl(&sock, Updater::<OP, libc::ifreq>::new(req)) }.map_err(|e| {
        let name = ifreq_name(req);
        ctx(e.into(), &format!("{what} {name}"))
    })
}

/// Sets (or clears) `IFF_UP` on interface `name` in the current network namespace.
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let mut req = ifreq_named(name)?;
    if_ioctl::<{ libc::SIOCGIFFLAGS as Opcode }>(&mut req, "SIOCGIFFLAGS")?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    let mut flags = unsafe { req.ifr_ifru.ifru_flags };
    if up {
        flags |= libc::IFF_UP as libc::c_short;
    } else {
        flags &= !(libc::IFF_UP as libc::c_short);
    }
    req.ifr_ifru.ifru_flags = flags;
    if_ioctl::<{ libc::SIOCSIFFLAGS as Opcode }>(&mut req, "SIOCSIFFLAGS")
}

/// Sets the MTU of interface `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = ifreq_named(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU too large"))?;
    if_ioctl::<{ libc::SIOCSIFMTU as Opcode }>(&mut req, "SIOCSIFMTU")
}

/// The MTU of interface `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut req = ifreq_named(name)?;
    if_ioctl::<{ libc::SIOCGIFMTU as Opcode }>(&mut req, "SIOCGIFMTU")?;
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
    if_ioctl::<{ libc::SIOCSIFHWADDR as Opcode }>(&mut req, "SIOCSIFHWADDR")
}

/// The Ethernet address of interface `name`.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq_named(name)?;
    if_ioctl::<{ libc::SIOCGIFHWADDR as Opcode }>(&mut req, "SIOCGIFHWADDR")?;
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
    if_ioctl::<{ libc::SIOCGIFINDEX as Opcode }>(&mut req, "SIOCGIFINDEX")?;
    // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member of the union.
    let idx = unsafe { req.ifr_ifru.ifru_ifindex };
    Ok(idx.max(0) as u32)
}

/// The current name of interface `index` (it changes when someone renames the interface).
pub fn name(index: u32) -> io::Result<String> {
    let sock = ctl_socket()?;
    rustix::net::netdevice::index_to_name(&sock, index)
        .map_err(|e| ctx(e.into(), &format!("interface index {index}")))
}

/// Attaches interface `ifname` to the existing Linux bridge `bridge` (`SIOCBRADDIF`).
pub fn bridge_add_if(bridge: &str, ifname: &str) -> io::Result<()> {
    let ifindex = index(ifname)?;
    let mut req = ifreq_named(bridge)?;
    req.ifr_ifru.ifru_ifindex = ifindex as libc::c_int;
    if_ioctl::<SIOCBRADDIF>(&mut req, "SIOCBRADDIF")
}

/// Sets the largest GSO super-packet the kernel builds for interface `name`
/// (`IFLA_GSO_MAX_SIZE`, by an rtnetlink `RTM_NEWLINK` request). An L3 packet of a GSO
/// frame the kernel hands to the device is then at most `size` bytes.
pub fn set_gso_max_size(name: &str, size: u32) -> io::Result<()> {
    let ifindex = index(name)?;
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )
    .map_err(|e| ctx(e.into(), "socket(AF_NETLINK)"))?;
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
    let n = rustix::net::send(&sock, &msg, SendFlags::empty())
        .map_err(|e| ctx(e.into(), "rtnetlink send"))?;
    if n != msg.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "rtnetlink send: short write",
        ));
    }
    let mut ack = [0u8; 1024];
    let (n, _) = rustix::net::recv(&sock, &mut ack[..], RecvFlags::empty())
        .map_err(|e| ctx(e.into(), "rtnetlink recv"))?;
    let ack = &ack[..n];
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
