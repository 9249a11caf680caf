//! The system calls the local emulation uses, over rustix: sealed memfds, eventfds, and
//! SOCK_SEQPACKET Unix sockets that carry file descriptors (SCM_RIGHTS). Mapping an fd is
//! [`SharedMem`]'s.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use hypervisor::grant::SharedMem;
use rustix::event::EventfdFlags;
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// The most file descriptors one message carries (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS: usize = 250;
/// The largest message either side sends.
pub(crate) const MAX_MSG: usize = 64 * 1024;
/// Control-message room for the most descriptors the kernel passes in one message.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(253));

/// Retries `f` while it is interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// A memfd of `len` bytes (zero-filled), sealed so that nobody can shrink or grow it:
/// a peer holding a mapping can never get SIGBUS from a truncation.
pub(crate) fn sealed_memfd(name: &std::ffi::CStr, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// A new read-only open file description of the same file (through `/proc/self/fd`), so
/// that a peer receiving it cannot map it writable.
pub(crate) fn reopen_readonly(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Map `len` bytes of `fd` at `offset`, shared.
pub(crate) fn mmap_fd(
    fd: BorrowedFd<'_>,
    len: usize,
    offset: u64,
    writable: bool,
) -> io::Result<SharedMem> {
    SharedMem::map_fd(fd, len, offset, writable)
}

/// Map pieces of several fds into one contiguous range: `pieces[i] = (fd, offset)` is
/// mapped at `i * page` for `page` bytes.
pub(crate) fn mmap_pieces(
    pieces: &[(BorrowedFd<'_>, u64)],
    page: usize,
    writable: bool,
) -> io::Result<SharedMem> {
    SharedMem::map_fd_pieces(pieces, page, writable)
}

/// A non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC,
    )?)
}

/// Add 1 to an eventfd (one `write` system call).
pub(crate) fn eventfd_signal(fd: impl AsFd) -> io::Result<()> {
    match rustix::io::write(fd, &1u64.to_ne_bytes()) {
        // EAGAIN: the counter is saturated, the peer has a notification pending anyway.
        Ok(_) | Err(Errno::AGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reset an eventfd to zero; whether it was signalled.
pub(crate) fn eventfd_drain(fd: impl AsFd) -> io::Result<bool> {
    match rustix::io::read(fd, &mut [0u8; 8]) {
        Ok(n) => Ok(n == 8),
        Err(Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A connected pair of SOCK_SEQPACKET Unix sockets.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

fn sockaddr(path: &Path) -> io::Result<SocketAddrUnix> {
    let bytes = path.as_os_str().as_bytes();
    // sun_path holds 108 bytes, including the terminating NUL.
    if bytes.len() >= 108 || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} too long or contains NUL", path.display()),
        ));
    }
    Ok(SocketAddrUnix::new(path)?)
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A listening SOCK_SEQPACKET socket at `path`. A stale socket file left by a dead
/// server (nobody accepts on it) is replaced; a live one is an `AddrInUse` error.
pub(crate) fn seqpacket_listen(path: &Path) -> io::Result<OwnedFd> {
    let addr = sockaddr(path)?;
    let fd = seqpacket_socket()?;
    let bind = || rustix::net::bind(&fd, &addr).map_err(io::Error::from);
    if let Err(e) = bind() {
        if e.kind() != io::ErrorKind::AddrInUse {
            return Err(e);
        }
        match seqpacket_connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a server is already listening there",
                ))
            }
            Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)?;
                bind()?;
            }
            Err(_) => return Err(e),
        }
    }
    rustix::net::listen(&fd, 64)?;
    Ok(fd)
}

/// Accept one connection, retried on EINTR.
pub(crate) fn accept(listener: impl AsFd) -> io::Result<OwnedFd> {
    retry(|| rustix::net::accept_with(&listener, SocketFlags::CLOEXEC))
}

/// Connect a SOCK_SEQPACKET socket to `path`.
pub(crate) fn seqpacket_connect(path: &Path) -> io::Result<OwnedFd> {
    let addr = sockaddr(path)?;
    let fd = seqpacket_socket()?;
    rustix::net::connect(&fd, &addr)?;
    Ok(fd)
}

/// Send one message with `fds` attached (SCM_RIGHTS).
pub(crate) fn send_msg(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS || data.len() > MAX_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message too large",
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("no room for the descriptors"));
    }
    let iov = [IoSlice::new(data)];
    retry(|| rustix::net::sendmsg(&sock, &iov, &mut control, SendFlags::NOSIGNAL)).map(drop)
}

/// Outcome of [`recv_msg`].
pub(crate) struct Received {
    /// Bytes of the message (0 with no fds: the peer closed).
    pub(crate) len: usize,
    /// Descriptors that came with it.
    pub(crate) fds: Vec<OwnedFd>,
    /// The message or its descriptors did not fit and were cut.
    pub(crate) truncated: bool,
}

/// Receive one message into `buf`, with its descriptors.
pub(crate) fn recv_msg(sock: impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        retry(|| rustix::net::recvmsg(&sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC))?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    Ok(Received {
        len: msg.bytes,
        fds,
        truncated: msg
            .flags
            .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC),
    })
}

/// Whether `fd` is an open `AF_UNIX`, `SOCK_SEQPACKET` socket.
pub(crate) fn is_seqpacket_unix_socket(fd: RawFd) -> bool {
    // SAFETY: the number is only borrowed for two `getsockopt` calls, which change
    // nothing and fail with EBADF if it is not open.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::net::sockopt::socket_type(fd) == Ok(SocketType::SEQPACKET)
        && rustix::net::sockopt::socket_domain(fd) == Ok(AddressFamily::UNIX)
}

/// Count this process's open file descriptors (for leak checks).
pub fn open_fd_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}
