//! The Xen services a split network driver needs — grant tables, event channels and
//! xenstore — behind small traits, with two implementations:
//!
//! * `xen`: Linux's userspace interfaces (`/dev/xen/gntalloc`, `/dev/xen/gntdev`,
//!   `/dev/xen/evtchn`, the xenstore wire protocol);
//! * `local`: an emulation for any Linux host (memfd-backed grants checked like Xen checks
//!   them, eventfd event channels, a xenstore server speaking the real wire protocol).
//!
//! Drivers never touch `/dev/xen` directly; they speak to these traits.

pub mod evtchn;
pub mod grant;
pub mod local;
pub mod platform;
pub mod xenbus;
pub mod xenstore;
