//! Thin, checked wrappers over the Linux system calls the local emulation uses:
//! sealed memfds, mmap of fds, eventfds, epoll, and SOCK_SEQPACKET Unix sockets that
//! carry file descriptors (SCM_RIGHTS).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use hypervisor::grant::SharedMem;

/// The most file descriptors one message carries (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS: usize = 250;
/// The largest message either side sends.
pub(crate) const MAX_MSG: usize = 64 * 1024;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A memfd of `len` bytes (zero-filled), sealed so that nobody can shrink or grow it:
/// a peer holding a mapping can never get SIGBUS from a truncation.
pub(crate) fn sealed_memfd(name: &std::ffi::CStr, len: usize) -> io::Result<OwnedFd> {
    // SAFETY: valid NUL-terminated name; the result is checked.
    let fd = owned(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain syscalls on an fd we own.
    unsafe {
        cvt(libc::ftruncate(fd.as_raw_fd(), len))?;
        cvt(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        ))?;
    }
    Ok(fd)
}

/// A new read-only open file description of the same file (through `/proc/self/fd`), so
/// that a peer receiving it cannot map it writable.
pub(crate) fn reopen_readonly(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
    // SAFETY: `path` is NUL-terminated; the result is checked.
    owned(unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) })
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
    let len = pieces.len() * page;
    // SAFETY: reserve an inaccessible anonymous range; the result is checked.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base =
        NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
    // SAFETY: the reservation is owned from now on (unmapped on drop, also on error).
    let mem = unsafe { SharedMem::from_mmap(base, len, writable) };
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    for (i, (fd, off)) in pieces.iter().enumerate() {
        let off =
            libc::off_t::try_from(*off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: MAP_FIXED replaces one page inside our own reservation only.
        let p = unsafe {
            libc::mmap(
                base.as_ptr().add(i * page).cast(),
                page,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(mem)
}

/// A non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// Add 1 to an eventfd (one `write` system call).
pub(crate) fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a local u64.
    let n = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    if n != 8 {
        let e = io::Error::last_os_error();
        // EAGAIN: the counter is saturated, the peer has a notification pending anyway.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reset an eventfd to zero; whether it was signalled.
pub(crate) fn eventfd_drain(fd: RawFd) -> io::Result<bool> {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a local u64.
    let n = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if n == 8 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EAGAIN) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// A new epoll instance.
pub(crate) fn epoll() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// `epoll_ctl`.
pub(crate) fn epoll_ctl(
    ep: RawFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    data: u64,
) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a valid event that outlives the call.
    cvt(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(drop)
}

/// `epoll_wait`, retried on EINTR; returns the ready events' data.
pub(crate) fn epoll_wait(
    ep: RawFd,
    out: &mut [libc::epoll_event],
    timeout_ms: i32,
) -> io::Result<usize> {
    let max = out.len().min(i32::MAX as usize) as i32;
    loop {
        // SAFETY: `out` has room for `max` events.
        let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), max, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A connected pair of SOCK_SEQPACKET Unix sockets.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} too long or contains NUL", path.display()),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// A listening SOCK_SEQPACKET socket at `path`. A stale socket file left by a dead
/// server (nobody accepts on it) is replaced; a live one is an `AddrInUse` error.
pub(crate) fn seqpacket_listen(path: &Path) -> io::Result<OwnedFd> {
    let (addr, len) = sockaddr(path)?;
    // SAFETY: plain syscall; the result is checked.
    let fd = owned(unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0)
    })?;
    let bind = || {
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        })
    };
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
    // SAFETY: plain syscall.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
    Ok(fd)
}

/// Accept one connection, retried on EINTR.
pub(crate) fn accept(listener: RawFd) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: we do not ask for the peer address.
        let fd = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        match owned(fd) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Connect a SOCK_SEQPACKET socket to `path`.
pub(crate) fn seqpacket_connect(path: &Path) -> io::Result<OwnedFd> {
    let (addr, len) = sockaddr(path)?;
    // SAFETY: plain syscall; the result is checked.
    let fd = owned(unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(fd)
}

const CMSG_BUF: usize = 1024 + 64; // room for MAX_FDS descriptors plus the header

/// Send one message with `fds` attached (SCM_RIGHTS).
pub(crate) fn send_msg(sock: RawFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS || data.len() > MAX_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message too large",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; CMSG_BUF / 8];
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `cbuf` is aligned and large enough for one cmsg of `payload` bytes
        // (MAX_FDS * 4 + header < CMSG_BUF); the data pointer stays inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
            let d = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                d.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: `msg` points at valid iovec and control buffers for the call.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
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
pub(crate) fn recv_msg(sock: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; CMSG_BUF / 8];
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_BUF as _;
    let n = loop {
        // SAFETY: `msg` points at valid buffers for the call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `cbuf`, bounded by
    // `msg_controllen`; each SCM_RIGHTS descriptor is new and owned by us.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..bytes / 4 {
                    let fd = data.cast::<RawFd>().add(i).read_unaligned();
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let truncated = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    Ok(Received {
        len: n,
        fds,
        truncated,
    })
}

/// Whether `fd` is an open `AF_UNIX`, `SOCK_SEQPACKET` socket.
pub(crate) fn is_seqpacket_unix_socket(fd: RawFd) -> bool {
    let get = |opt: libc::c_int| -> Option<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid out-parameters of the stated size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    get(libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET) && get(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
}

/// Count this process's open file descriptors (for leak checks).
pub fn open_fd_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}
