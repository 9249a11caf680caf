//! Frame ports shared by `netfront`, `netback` and the bench.
//!
//! A **port** is where a driver's Ethernet frames come from and go to, on the far side of
//! the netif rings:
//!
//! * [`TapPort`]: a Linux TAP device with virtio-net headers (the guest's kernel stack on
//!   the netfront side; the wire or a bridge on the netback side), with checksum and TCP
//!   segmentation offloads mapped to the netif flags through [`FrameMeta`];
//! * [`MemPort`]: an in-memory, lock-free, bounded channel pair (tests, benchmarks,
//!   in-process traffic generators).
//!
//! Both implement [`Port`]: non-blocking `recv`/`send` of one frame at a time (plus the
//! batched [`Port::recv_batch`]/[`Port::send_batch`]), and an fd to wait on in the driver's
//! epoll loop.
//!
//! **Byte accounting** (`docs/protocol.md` §2.6): a frame is the Ethernet frame from the
//! destination MAC to the end of the payload, VLAN tag included, without preamble, FCS or
//! inter-frame gap: exactly what a TAP reads and writes. Every length in this crate is a
//! frame length in that sense.
//!
//! Modules: [`port`] (the trait and frame metadata), [`cost`] (a frame's wire cost), [`mem`] ([`MemPort`]), [`vnet`] (the
//! virtio-net header and its mapping), [`csum`] (bounds-checked header parsing and the
//! Internet checksum), [`tap`] ([`TapPort`]), [`link`] (interface configuration by ioctl and
//! rtnetlink), [`netns`] (network-namespace helpers for
//! tests).

pub mod cost;
pub mod csum;
pub mod link;
pub mod mem;
pub mod negotiate;
pub mod netns;
pub mod port;
pub mod tap;
pub mod vnet;

pub use mem::{FullPolicy, MemPort, MemPortConfig, MemPortStats};
pub use port::{FrameMeta, Gso, GsoKind, Port};
pub use tap::{TapConfig, TapOffload, TapPort, TapStats};
