//! [`TapPort`]: a Linux TAP device (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`,
//! non-blocking) with checksum and TCP segmentation offloads mapped through the virtio-net
//! header ([`crate::vnet`]).
//!
//! Reading the TAP gives the frames the kernel sends *out* of the interface; writing it
//! injects frames the kernel *receives* on it. The link is configured without external
//! tools ([`crate::link`]: `SIOCSIFMTU`, `SIOCSIFHWADDR`, `SIOCSIFFLAGS`, `SIOCBRADDIF`,
//! and `IFLA_GSO_MAX_SIZE` over rtnetlink so TSO super-frames fit netif's 65535 bytes).
//!
//! `max_frame` is MTU + 18 without TSO, [`NETIF_MAX_FRAME`] with it. A frame the kernel
//! hands over that is longer (e.g. the MTU was raised behind the port's back) is dropped
//! and counted ([`TapStats::rx_oversize`]), never truncated. Writes never block: the
//! kernel takes each frame at once (or drops it in its own backlog, counted in the
//! interface's statistics), so `send` never returns `WouldBlock`.
//!
//! Persistence ([`TapConfig::persist`], `TUNSETPERSIST`): a TAP the port creates
//! disappears when the port is dropped, unless it was made persistent; then it stays,
//! with its addresses, MTU, bridge membership and the firewall rules naming it, until
//! persistence is cleared ([`Port::set_persistent`]) and its last port closes, or it is
//! deleted (`ip link del`). Opening a port on an existing persistent TAP of the same
//! name attaches to it ([`TapPort::attached`]) and leaves its link settings (MTU, MAC,
//! bridge) as they are: whoever set them up (netback before a restart, a hotplug
//! script) keeps them.

use std::io::{self, IoSlice, IoSliceMut};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, IntegerSetter, Opcode, Setter, Updater};

use crate::csum;
use crate::link::{self, ctx};
use crate::negotiate::Allowed;
use crate::port::{FrameMeta, Port, ETH_HLEN};
use crate::vnet::{self, VirtioNetHdr, VNET_HDR_LEN};

/// Ethernet header plus one VLAN tag: what a frame adds to the MTU.
pub const ETH_OVERHEAD: usize = 18;
/// The largest frame netif carries (`XEN_NETIF_MAX_TX_SIZE`): with TSO, a TapPort caps the
/// kernel's GSO super-packets (`IFLA_GSO_MAX_SIZE`) so that its frames fit.
pub const NETIF_MAX_FRAME: usize = 65535;
/// The kernel's default GSO limit (`GSO_LEGACY_MAX_SIZE`), used for `max_frame` when the
/// cap cannot be set.
const GSO_LEGACY_MAX_SIZE: usize = 65536;

// TUNSETOFFLOAD flags (linux/if_tun.h).
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

/// A TUN ioctl that takes an int by value (`TUNSETPERSIST`).
fn tun_set_int<const OP: Opcode>(fd: &OwnedFd, v: usize) -> io::Result<()> {
    // SAFETY: the TUN ioctls used with this take their argument by value (no pointer is
    // passed); the fd is a TAP.
    unsafe { Ok(ioctl(fd, IntegerSetter::<OP>::new_usize(v))?) }
}

/// `TUNSETOFFLOAD` with `flags` as its (by-value) argument.
fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes the flags as the ioctl argument by value; the fd is a
    // TAP.
    unsafe {
        let req = IntegerSetter::<{ libc::TUNSETOFFLOAD as Opcode }>::new_usize(flags as usize);
        Ok(ioctl(fd, req)?)
    }
}

/// Whether the TAP `fd` is attached to is persistent (`TUNGETIFF`): right after
/// `TUNSETIFF`, that it existed before (the port has not made it persistent yet).
fn is_persistent(fd: &OwnedFd, mut req: libc::ifreq) -> io::Result<bool> {
    // SAFETY: TUNGETIFF writes a `struct ifreq` through the pointer, which points at
    // `req`, a live, fully initialised ifreq; the fd is a TAP.
    unsafe {
        ioctl(
            fd,
            Updater::<{ libc::TUNGETIFF as Opcode }, _>::new(&mut req),
        )
    }
    .map_err(|e| ctx(e.into(), "TUNGETIFF"))?;
    // SAFETY: TUNGETIFF filled in the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(i32::from(flags) & libc::IFF_PERSIST != 0)
}

/// A new TAP's MTU, MAC and bridge as `cfg` asks.
fn configure_link(cfg: &TapConfig, name: &str) -> io::Result<()> {
    if let Some(mtu) = cfg.mtu {
        link::set_mtu(name, mtu)?;
    }
    if let Some(mac) = cfg.mac {
        link::set_mac(name, mac)?;
    }
    if let Some(br) = &cfg.bridge {
        link::bridge_add_if(br, name)?;
    }
    Ok(())
}

/// Which offloads the TAP accepts from the kernel (`TUNSETOFFLOAD`): with them, the
/// kernel hands the port partial-checksum frames and TCP super-frames instead of finishing
/// them in software. Frames written *into* the TAP may always carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapOffload {
    /// `TUN_F_CSUM`: partial checksums (`csum_blank`).
    pub csum: bool,
    /// `TUN_F_TSO4 | TUN_F_TSO6`: TCP segmentation offload (`gso`); requires `csum`.
    pub tso: bool,
}

impl Default for TapOffload {
    /// Both on: what a netif peer with `feature-gso-tcpv4/6` and checksum offload takes.
    fn default() -> Self {
        TapOffload {
            csum: true,
            tso: true,
        }
    }
}

/// How to open a [`TapPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name, at most 15 bytes; may be a template with `%d` ("vif%d"), which the
    /// kernel completes. Empty means "tap%d". An existing persistent TAP of that name is
    /// attached to.
    pub name: String,
    /// MTU to set (`None`: keep the kernel's, 1500 for a new TAP).
    pub mtu: Option<u32>,
    /// MAC address to set (`None`: keep the kernel's random one).
    pub mac: Option<[u8; 6]>,
    /// Offloads to enable.
    pub offload: TapOffload,
    /// Bring the link up after configuring it.
    pub up: bool,
    /// Attach the TAP to this existing Linux bridge.
    pub bridge: Option<String>,
    /// Make a TAP this port creates persistent (module docs).
    pub persist: bool,
}

impl TapConfig {
    /// A configuration for `name` with defaults: kernel MTU and MAC, checksum and TSO
    /// offloads on, link up, no bridge.
    pub fn new(name: &str) -> Self {
        TapConfig {
            name: name.to_owned(),
            mtu: None,
            mac: None,
            offload: TapOffload::default(),
            up: true,
            bridge: None,
            persist: false,
        }
    }
}

/// Counters of a [`TapPort`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames read from the TAP and handed out.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames read whose virtio-net header could not be mapped (dropped; logged).
    pub rx_bad_header: u64,
    /// Frames read that were longer than `max_frame` (dropped).
    pub rx_oversize: u64,
    /// Frames read with a partial checksum at non-standard offsets, completed in software.
    pub rx_csum_completed: u64,
    /// Frames written into the TAP.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// GSO frames sent without `csum_blank` whose pseudo-header checksum was rewritten.
    pub tx_gso_csum_fixup: u64,
}

/// A TAP device as a [`Port`]. See the module docs.
#[derive(Debug)]
pub struct TapPort {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
    max_frame: usize,
    offload: TapOffload,
    /// Read buffer: virtio-net header, then up to `max_frame + 1` frame bytes (one more to
    /// detect frames longer than `max_frame`).
    rbuf: Box<[u8]>,
    /// Copy of a frame being repaired before sending (rare path).
    scratch: Vec<u8>,
    stats: TapStats,
    /// The port attached to a persistent TAP that existed before it.
    attached: bool,
}

impl TapPort {
    /// Creates (or attaches to) and configures a TAP device. Needs `CAP_NET_ADMIN` and
    /// `/dev/net/tun`.
    ///
    /// Errors carry the step that failed (open, `TUNSETIFF`, `TUNSETVNETHDRSZ`,
    /// `TUNSETOFFLOAD`, MTU, MAC, up, bridge).
    pub fn open(cfg: &TapConfig) -> io::Result<TapPort> {
        Self::open_queue(cfg, false, true)
    }

    /// [`TapPort::open`] with `IFF_MULTI_QUEUE`: the first queue of a multi-queue TAP,
    /// to which [`TapPort::attach_queue`] adds more later. (A persistent TAP created
    /// without the flag cannot be opened so: `TUNSETIFF` refuses.)
    pub fn open_multi_queue(cfg: &TapConfig) -> io::Result<TapPort> {
        Self::open_queue(cfg, true, true)
    }

    /// Opens one more queue of the multi-queue TAP with interface index `ifindex`
    /// ([`TapPort::open_multi_queue`]; found by index, so a hotplug script may have
    /// renamed it): another fd of the same interface, its link not configured again,
    /// with `offload` (its own `TUNSETOFFLOAD`).
    pub fn attach_queue(ifindex: u32, offload: TapOffload) -> io::Result<TapPort> {
        let cfg = TapConfig {
            offload,
            persist: false,
            ..TapConfig::new(&link::name(ifindex)?)
        };
        Self::open_queue(&cfg, true, false)
    }

    /// Creates (or attaches to) a multi-queue TAP (`IFF_MULTI_QUEUE`) and opens `queues`
    /// queues of it, one fd (one port) each: the kernel spreads the flows it sends out
    /// of the interface across them (by flow hash), and frames written into any of them
    /// are received by the interface. The link is configured once, as [`TapPort::open`]
    /// does; every port has the same offloads. Dropping every port (unless persistent)
    /// removes the interface.
    pub fn open_queues(cfg: &TapConfig, queues: usize) -> io::Result<Vec<TapPort>> {
        if queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a multi-queue TAP needs at least one queue",
            ));
        }
        let first = Self::open_queue(cfg, true, true)?;
        let mut rest = TapConfig {
            name: first.name.clone(),
            ..cfg.clone()
        };
        rest.persist = false;
        let mut ports = vec![first];
        for _ in 1..queues {
            ports.push(Self::open_queue(&rest, true, false)?);
        }
        Ok(ports)
    }

    /// Opens one fd of the TAP (`multi_queue`: one queue of a multi-queue TAP) and, when
    /// `configure`, sets up its link.
    fn open_queue(cfg: &TapConfig, multi_queue: bool, configure: bool) -> io::Result<TapPort> {
        let template = if cfg.name.is_empty() {
            "tap%d"
        } else {
            &cfg.name
        };
        let mut req = link::ifreq_named(template)?;
        if cfg.offload.tso && !cfg.offload.csum {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TAP TSO offload requires checksum offload",
            ));
        }
        let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open("/dev/net/tun", flags, Mode::empty())
            .map_err(|e| ctx(e.into(), "open /dev/net/tun"))?;
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        req.ifr_ifru.ifru_flags = flags as i16;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is a live, fully
        // initialised ifreq and the fd is the tun control device we just opened.
        unsafe {
            ioctl(
                &fd,
                Updater::<{ libc::TUNSETIFF as Opcode }, _>::new(&mut req),
            )
        }
        .map_err(|e| ctx(e.into(), &format!("TUNSETIFF {template}")))?;
        let name = link::ifreq_name(&req);
        let attached = is_persistent(&fd, req)?;
        if cfg.persist && !attached {
            tun_set_int::<{ libc::TUNSETPERSIST as Opcode }>(&fd, 1)
                .map_err(|e| ctx(e, "TUNSETPERSIST"))?;
        }
        let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which points at the
        // request's own copy of `hdr_len`.
        unsafe {
            ioctl(
                &fd,
                Setter::<{ libc::TUNSETVNETHDRSZ as Opcode }, _>::new(hdr_len),
            )
        }
        .map_err(|e| ctx(e.into(), "TUNSETVNETHDRSZ"))?;
        let mut flags: libc::c_uint = 0;
        if cfg.offload.csum {
            flags |= TUN_F_CSUM;
        }
        if cfg.offload.tso {
            flags |= TUN_F_TSO4 | TUN_F_TSO6;
        }
        set_offload(&fd, flags).map_err(|e| ctx(e, "TUNSETOFFLOAD"))?;

        if !attached && configure {
            configure_link(cfg, &name)?;
        }
        if cfg.up && configure {
            link::set_up(&name, true)?;
        }
        let ifindex = link::index(&name)?;
        let mtu = link::mtu(&name)? as usize;
        let max_frame = if cfg.offload.tso && !configure {
            NETIF_MAX_FRAME.max(mtu + ETH_OVERHEAD)
        } else if cfg.offload.tso {
            match link::set_gso_max_size(&name, (NETIF_MAX_FRAME - ETH_OVERHEAD) as u32) {
                Ok(()) => NETIF_MAX_FRAME.max(mtu + ETH_OVERHEAD),
                Err(e) => {
                    log::warn!(
                        "{name}: cannot cap GSO size for netif ({e}); frames up to 64 KiB + 18"
                    );
                    GSO_LEGACY_MAX_SIZE + ETH_OVERHEAD
                }
            }
        } else {
            mtu + ETH_OVERHEAD
        };
        Ok(TapPort {
            fd,
            name,
            ifindex,
            max_frame,
            offload: cfg.offload,
            rbuf: vec![0u8; VNET_HDR_LEN + max_frame + 1].into_boxed_slice(),
            scratch: Vec::new(),
            stats: TapStats::default(),
            attached,
        })
    }

    /// True when the port attached to a persistent TAP that existed before it (e.g. left
    /// by a previous process), whose link settings it left as they were.
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// The interface name the kernel gave the TAP.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index (in the namespace it was created in).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The offloads enabled.
    pub fn offload(&self) -> TapOffload {
        self.offload
    }

    /// The port's counters.
    pub fn stats(&self) -> TapStats {
        self.stats
    }

    /// Reads one frame into `rbuf`; `Ok(None)` when none is ready. Drops (and counts)
    /// frames that cannot be mapped, and reads on.
    fn read_one(&mut self) -> io::Result<Option<(usize, FrameMeta)>> {
        // Taken out while `checked` counts into `self` (and put back).
        let mut rbuf = std::mem::take(&mut self.rbuf);
        let got = loop {
            let n = match rustix::io::read(&self.fd, &mut rbuf[..]) {
                Ok(n) => n,
                Err(Errno::AGAIN) => break Ok(None),
                Err(Errno::INTR) => continue,
                Err(e) => break Err(ctx(e.into(), &format!("read {}", self.name))),
            };
            let (h, frame) = rbuf.split_at_mut(VNET_HDR_LEN.min(n));
            let hdr = <&[u8; VNET_HDR_LEN]>::try_from(&h[..]).ok();
            if let Some(got) = self.checked(n, hdr, frame) {
                break Ok(Some(got));
            }
        };
        self.rbuf = rbuf;
        got
    }

    /// Reads one frame straight into `buf` (at least `max_frame` bytes: one read, no
    /// copy through `rbuf`); as [`TapPort::read_one`] otherwise.
    fn read_into(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        let max = self.max_frame;
        loop {
            let mut hdr = [0u8; VNET_HDR_LEN];
            // One byte past `max_frame`: a longer frame fills it and is dropped.
            let mut spare = [0u8; 1];
            let mut iov = [
                IoSliceMut::new(&mut hdr),
                IoSliceMut::new(&mut buf[..max]),
                IoSliceMut::new(&mut spare),
            ];
            let n = match rustix::io::readv(&self.fd, &mut iov) {
                Ok(n) => n,
                Err(Errno::AGAIN) => return Ok(None),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(ctx(e.into(), &format!("read {}", self.name))),
            };
            let frame = &mut buf[..n.saturating_sub(VNET_HDR_LEN).min(max)];
            let hdr = (n >= VNET_HDR_LEN).then_some(&hdr);
            if let Some(got) = self.checked(n, hdr, frame) {
                return Ok(Some(got));
            }
        }
    }

    /// A read of `n` bytes (virtio-net header `hdr`, when complete, then the frame's
    /// first bytes in `frame`): the frame's length and offloads, or `None` when it is
    /// dropped (counted and logged).
    fn checked(
        &mut self,
        n: usize,
        hdr: Option<&[u8; VNET_HDR_LEN]>,
        frame: &mut [u8],
    ) -> Option<(usize, FrameMeta)> {
        let hdr = match hdr {
            Some(h) if n >= VNET_HDR_LEN + ETH_HLEN => VirtioNetHdr::from_bytes(h),
            _ => {
                self.stats.rx_bad_header += 1;
                log::warn!("{}: short read of {n} bytes dropped", self.name);
                return None;
            }
        };
        let len = n - VNET_HDR_LEN;
        if len > self.max_frame {
            self.stats.rx_oversize += 1;
            log::warn!(
                "{}: frame longer than max_frame {} dropped",
                self.name,
                self.max_frame
            );
            return None;
        }
        match vnet::meta_from_recv(&hdr, &mut frame[..len]) {
            Ok(meta) => {
                if hdr.flags & vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 && !meta.csum_blank {
                    self.stats.rx_csum_completed += 1;
                }
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                Some((len, meta))
            }
            Err(e) => {
                self.stats.rx_bad_header += 1;
                log::warn!("{}: frame with {hdr:?} dropped: {e}", self.name);
                None
            }
        }
    }

    /// Sets the TAP's `TUNSETOFFLOAD` flags, and `max_frame` (and the read buffer) for
    /// them: the netif maximum with any TSO, MTU + 18 without.
    fn apply_offload(&mut self, flags: libc::c_uint) -> io::Result<()> {
        // A hotplug script may have renamed the interface since it was opened.
        if let Ok(name) = link::name(self.ifindex) {
            self.name = name;
        }
        set_offload(&self.fd, flags)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: TUNSETOFFLOAD: {e}", self.name)))?;
        let tso = flags & (TUN_F_TSO4 | TUN_F_TSO6) != 0;
        self.offload.tso = tso;
        self.offload.csum = flags & TUN_F_CSUM != 0;
        let mtu = link::mtu(&self.name)? as usize;
        self.max_frame = if tso {
            match link::set_gso_max_size(&self.name, (NETIF_MAX_FRAME - ETH_OVERHEAD) as u32) {
                Ok(()) => NETIF_MAX_FRAME.max(mtu + ETH_OVERHEAD),
                Err(_) => GSO_LEGACY_MAX_SIZE + ETH_OVERHEAD,
            }
        } else {
            mtu + ETH_OVERHEAD
        };
        self.rbuf = vec![0u8; VNET_HDR_LEN + self.max_frame + 1].into_boxed_slice();
        Ok(())
    }

    fn write_frame(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> io::Result<()> {
        let h = hdr.to_bytes();
        let iov = [IoSlice::new(&h), IoSlice::new(frame)];
        loop {
            let n = match rustix::io::writev(&self.fd, &iov) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(ctx(e.into(), &format!("write {}", self.name))),
            };
            if n != h.len() + frame.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("{}: short TAP write of {n} bytes", self.name),
                ));
            }
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += frame.len() as u64;
            return Ok(());
        }
    }
}

impl Port for TapPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        if buf.len() < self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "recv buffer of {} bytes is shorter than max_frame {}",
                    buf.len(),
                    self.max_frame
                ),
            ));
        }
        self.read_into(buf)
    }

    fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> io::Result<()> {
        // The kernel takes GSO frames written to a TAP whatever its own offload flags
        // (those only govern what it hands us), so a GSO frame may be up to the netif
        // maximum even when this TAP reads MTU-sized frames.
        let bound = if meta.gso.is_some() {
            self.max_frame.max(NETIF_MAX_FRAME)
        } else {
            self.max_frame
        };
        if frame.len() < ETH_HLEN || frame.len() > bound {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes outside TAP bounds {}..={}",
                    frame.len(),
                    ETH_HLEN,
                    bound
                ),
            ));
        }
        if meta.gso.is_some() && !meta.csum_blank {
            // A GSO frame must be checksum-partial; repair the pseudo-header sum in a copy.
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.extend_from_slice(frame);
            let r = csum::write_pseudo_header_checksum(&mut scratch)
                .map_err(io::Error::from)
                .and_then(|_| {
                    let m = FrameMeta {
                        csum_blank: true,
                        ..*meta
                    };
                    let hdr = vnet::hdr_for_send(&m, &scratch)?;
                    self.write_frame(&hdr, &scratch)
                });
            self.scratch = scratch;
            if r.is_ok() {
                self.stats.tx_gso_csum_fixup += 1;
            }
            return r;
        }
        let hdr = vnet::hdr_for_send(meta, frame)?;
        self.write_frame(&hdr, frame)
    }

    fn rx_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn set_gso(&mut self, enable: bool) -> io::Result<bool> {
        if enable == self.offload.tso {
            return Ok(enable);
        }
        // TSO needs checksum offload.
        let mut flags: libc::c_uint = 0;
        if self.offload.csum || enable {
            flags |= TUN_F_CSUM;
        }
        if enable {
            flags |= TUN_F_TSO4 | TUN_F_TSO6;
        }
        self.apply_offload(flags)?;
        Ok(enable)
    }

    fn set_offloads(&mut self, a: &Allowed) -> io::Result<()> {
        // TUN_F_CSUM covers both IP versions: a partial checksum of a version the peer
        // did not agree to is completed by the driver. Each TSO version on its own (the
        // caller's `Allowed` already requires SG and checksum offload for it).
        let mut flags: libc::c_uint = 0;
        if a.any_csum() || a.gso_v4 || a.gso_v6 {
            flags |= TUN_F_CSUM;
        }
        if a.gso_v4 {
            flags |= TUN_F_TSO4;
        }
        if a.gso_v6 {
            flags |= TUN_F_TSO6;
        }
        self.apply_offload(flags)
    }

    fn set_carrier(&mut self, on: bool) -> io::Result<()> {
        let v: libc::c_int = on.into();
        // SAFETY: TUNSETCARRIER reads an int through the pointer, which points at the
        // request's own copy of `v`; the fd is a TAP.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ libc::TUNSETCARRIER as Opcode }, _>::new(v),
            )
        }
        .map_err(|e| ctx(e.into(), &format!("{}: TUNSETCARRIER", self.name)))
    }

    fn set_persistent(&mut self, on: bool) -> io::Result<()> {
        tun_set_int::<{ libc::TUNSETPERSIST as Opcode }>(&self.fd, on as usize)
            .map_err(|e| ctx(e, &format!("{}: TUNSETPERSIST", self.name)))
    }

    fn recv_batch(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8], &FrameMeta) -> ControlFlow<()>,
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            let Some((len, meta)) = self.read_one()? else {
                break;
            };
            n += 1;
            if on_frame(&self.rbuf[VNET_HDR_LEN..VNET_HDR_LEN + len], &meta).is_break() {
                break;
            }
        }
        Ok(n)
    }
}
