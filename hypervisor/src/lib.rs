//! The platform boundary of the drivers: the Xen services a split network driver needs —
//! grant tables, event channels and xenstore — behind small traits, Linux's userspace
//! implementation of each (`/dev/xen/gntalloc`, `/dev/xen/gntdev`, `/dev/xen/evtchn`,
//! the xenstore wire protocol), xenbus helpers, the [`platform::Platform`] trait that
//! bundles one domain's services so that each driver has a single type parameter, and
//! [`poll::Epoll`], the readiness wait of the drivers' event loops. System calls go
//! through `rustix`.
//!
//! The identifiers come from `xen-ids`, the xenstore client and trait from `xenstore`.
//! The emulation of all of this on any Linux host is the `xen-local` crate, which sits
//! above this one: a production build for Xen links none of it.

pub mod clock;
pub mod cpu_wait;
pub mod evtchn;
pub mod grant;
mod ioctl;
pub mod platform;
pub mod poll;
pub mod xenbus;
