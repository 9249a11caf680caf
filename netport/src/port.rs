//! The [`Port`] trait and the offload metadata carried with each frame.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::BorrowedFd;

use crate::negotiate::Allowed;

/// Offload metadata carried with a frame; maps to the netif `NETTXF_*`/`NETRXF_*` flags and
/// the GSO extra-info slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameMeta {
    /// The L4 (TCP or UDP) checksum is not filled in: the checksum field holds the
    /// pseudo-header sum and the receiver (or the NIC) completes it over the L4 header and
    /// payload ("partial checksum", virtio-net `NEEDS_CSUM`). netif `csum_blank`.
    ///
    /// netif carries no `csum_start`/`csum_offset`: both are derived from the headers
    /// ([`crate::csum::parse_l4`]), so a port only produces `csum_blank` for TCP or UDP over
    /// IPv4/IPv6, where they can be derived.
    pub csum_blank: bool,
    /// The checksum was already validated (or the frame was generated locally and cannot
    /// be corrupt), so the receiver need not verify it. netif `data_validated`. A
    /// [`crate::TapPort`] marks its `csum_blank` frames `data_validated` too, as Linux's
    /// netback marks partial-checksum frames towards a guest; [`crate::MemPort`] passes
    /// metadata through unchanged.
    pub data_validated: bool,
    /// Segmentation offload: `Some` for TCPv4/TCPv6 super-frames (up to 64 KiB) that the
    /// receiver or the NIC cuts into segments of at most `size` payload bytes. netif
    /// `XEN_NETIF_EXTRA_TYPE_GSO`. A GSO frame is always checksum-partial.
    pub gso: Option<Gso>,
}

/// Segmentation offload parameters of a super-frame (netif `netif_extra_info.u.gso`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gso {
    /// Maximum segment size: TCP payload bytes per segment (netif `gso.size`), > 0.
    pub size: u16,
    /// The protocol to segment (netif `gso.type`).
    pub kind: GsoKind,
}

/// The segmentation type (netif `XEN_NETIF_GSO_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4 (`XEN_NETIF_GSO_TYPE_TCPV4` = 1, virtio `GSO_TCPV4`).
    TcpV4,
    /// TCP over IPv6 (`XEN_NETIF_GSO_TYPE_TCPV6` = 2, virtio `GSO_TCPV6`).
    TcpV6,
}

impl GsoKind {
    /// The netif wire value (`XEN_NETIF_GSO_TYPE_TCPV4` = 1, `..._TCPV6` = 2).
    pub fn netif_type(self) -> u8 {
        match self {
            GsoKind::TcpV4 => 1,
            GsoKind::TcpV6 => 2,
        }
    }

    /// The kind for a netif GSO type, `None` for types netif does not define.
    pub fn from_netif_type(t: u8) -> Option<Self> {
        match t {
            1 => Some(GsoKind::TcpV4),
            2 => Some(GsoKind::TcpV6),
            _ => None,
        }
    }
}

/// A source and sink of Ethernet frames on the far side of a driver's rings.
///
/// All calls are **non-blocking**. A driver waits for frames by polling [`Port::rx_fd`] in
/// its epoll loop. Frame lengths follow the project's byte accounting (module docs).
///
/// # Readiness contract (`rx_fd`)
///
/// `rx_fd` is **level-triggered**: while a frame is queued for [`Port::recv`], the fd is
/// readable (or becomes readable within a bounded time, when a sender is in the middle of
/// signalling). It may also be readable when nothing is queued (spurious wake-up): then
/// `recv` returns `Ok(None)`, and that call re-arms the fd so it does not stay readable
/// with nothing queued. So the usual loop works both with level- and edge-triggered epoll
/// registrations, provided the caller drains with `recv` until `Ok(None)` before it waits
/// again when registered edge-triggered; with level-triggered registration the caller may
/// stop draining early (e.g. when its ring is full) and will be woken again.
///
/// The caller must never read from the fd itself.
///
/// # Sending
///
/// [`Port::send`] either queues the whole frame or fails; it never queues part of one.
/// `Err(WouldBlock)` means the port is full right now: the caller keeps the frame and
/// retries later (there is no writability fd; ports drain on their own, and drivers retry
/// on their next event). Ports may instead be configured to drop when full (then `send`
/// returns `Ok` and counts the drop; see [`crate::MemPortConfig`]).
pub trait Port: Send {
    /// Copies the next frame into `buf` and returns its length and metadata; `Ok(None)`
    /// when none is ready.
    ///
    /// `buf` must be at least [`Port::max_frame`] bytes long, otherwise the call fails with
    /// `InvalidInput` without consuming a frame.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>>;

    /// Sends one frame without blocking. `Err(WouldBlock)` when the port is full (the
    /// caller keeps the frame); `Err(InvalidInput)` when the frame is longer than
    /// [`Port::max_frame`] or shorter than an Ethernet header (14 bytes);
    /// `Err(InvalidData)` when `meta` asks for an offload the frame's headers cannot
    /// support (e.g. `csum_blank` on a frame that is not TCP/UDP over IP). Errors other than
    /// `WouldBlock` concern this frame only: the caller drops it and counts it.
    fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> io::Result<()>;

    /// The fd that becomes readable when [`Port::recv`] may return a frame; see the
    /// readiness contract in the trait docs.
    fn rx_fd(&self) -> BorrowedFd<'_>;

    /// The largest frame this port may produce or accept: e.g. MTU + 18 (Ethernet header
    /// and one VLAN tag), or 65535 + 18 when the port does segmentation offload.
    fn max_frame(&self) -> usize;

    /// Asks the port to hand over segmentation-offload (GSO) frames from now on (`true`),
    /// or to stop (`false`), e.g. because the driver's peer can or cannot take them.
    /// Returns whether GSO frames will be produced; ports without offload keep this
    /// default and never produce them. [`Port::max_frame`] may change.
    fn set_gso(&mut self, _enable: bool) -> io::Result<bool> {
        Ok(false)
    }

    /// Asks the port to hand over only the offloads the driver's peer agreed to take
    /// ([`crate::negotiate`]): partial checksums, and GSO frames of each TCP version on
    /// their own. A port that cannot tell them apart keeps handing them over; the driver
    /// checks every frame anyway ([`Allowed::conform`]), so this only saves it the
    /// software fallback. The default maps to [`Port::set_gso`] (both GSO types, only
    /// when both are agreed).
    fn set_offloads(&mut self, allowed: &Allowed) -> io::Result<()> {
        self.set_gso(allowed.gso_v4 && allowed.gso_v6).map(|_| ())
    }

    /// Turns the link's carrier on or off, as a NIC whose cable is plugged in or pulled
    /// (a TAP: `TUNSETCARRIER`): with the carrier off, the host's stack stops sending
    /// frames into the port. Ports without a link keep this default, which does nothing.
    fn set_carrier(&mut self, _on: bool) -> io::Result<()> {
        Ok(())
    }

    /// Whether the port's interface outlives the port (a TAP: `TUNSETPERSIST`): a
    /// persistent interface stays, with its addresses, bridge membership and MTU, when
    /// the port is dropped or its process dies, and a later port of the same name
    /// attaches to it; clearing persistence lets it go away with the port. Ports without
    /// an interface keep this default, which does nothing.
    fn set_persistent(&mut self, _on: bool) -> io::Result<()> {
        Ok(())
    }

    /// Receives up to `max` frames, handing each to `on_frame` as a borrowed slice that is
    /// valid during the call only (implementations may pass a pointer into their own
    /// queue, saving a copy). `on_frame` consumes the frame it is given; returning
    /// `ControlFlow::Break(())` stops the batch after it. Returns the number of frames
    /// handed over (0 when none was ready).
    ///
    /// Use this rather than a loop of [`Port::recv`] on hot paths: implementations publish
    /// their queue position once per batch.
    fn recv_batch(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8], &FrameMeta) -> ControlFlow<()>,
    ) -> io::Result<usize> {
        let mut buf = vec![0u8; self.max_frame()];
        let mut n = 0;
        while n < max {
            let Some((len, meta)) = self.recv(&mut buf)? else {
                break;
            };
            n += 1;
            if on_frame(&buf[..len], &meta).is_break() {
                break;
            }
        }
        Ok(n)
    }

    /// Sends the frames in order, without blocking, and returns how many were sent: a
    /// prefix of `frames`. Like `sendmmsg(2)`: if the first frame cannot be sent, its
    /// error is returned (`WouldBlock` when full); if a later one cannot, the count so far
    /// is returned and the next call reports that frame's error.
    fn send_batch(&mut self, frames: &[(&[u8], FrameMeta)]) -> io::Result<usize> {
        for (i, (frame, meta)) in frames.iter().enumerate() {
            if let Err(e) = self.send(frame, meta) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(frames.len())
    }
}

impl<P: Port + ?Sized> Port for Box<P> {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        (**self).recv(buf)
    }
    fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> io::Result<()> {
        (**self).send(frame, meta)
    }
    fn rx_fd(&self) -> BorrowedFd<'_> {
        (**self).rx_fd()
    }
    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }
    fn set_gso(&mut self, enable: bool) -> io::Result<bool> {
        (**self).set_gso(enable)
    }
    fn set_offloads(&mut self, allowed: &Allowed) -> io::Result<()> {
        (**self).set_offloads(allowed)
    }
    fn set_carrier(&mut self, on: bool) -> io::Result<()> {
        (**self).set_carrier(on)
    }
    fn set_persistent(&mut self, on: bool) -> io::Result<()> {
        (**self).set_persistent(on)
    }
    fn recv_batch(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8], &FrameMeta) -> ControlFlow<()>,
    ) -> io::Result<usize> {
        (**self).recv_batch(max, on_frame)
    }
    fn send_batch(&mut self, frames: &[(&[u8], FrameMeta)]) -> io::Result<usize> {
        (**self).send_batch(frames)
    }
}

/// The shortest frame a port accepts: an Ethernet header.
pub const ETH_HLEN: usize = 14;
