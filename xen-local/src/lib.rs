//! `local`: the grant-table and event-channel services of Xen, emulated on one Linux
//! host, so that the drivers run (and are tested and benchmarked) without Xen.
//!
//! # Model
//!
//! * A **domain** is a process (or, in tests, a [`Domain`] handle in a thread) with a
//!   domain id, attached to a [`LocalHypervisor`] over a `SOCK_SEQPACKET` Unix socket.
//!   The hypervisor runs in-process ([`LocalHypervisor::connect`], or
//!   [`LocalHypervisor::spawn_domain`] for a child process) or as the
//!   `local-hypervisor` daemon ([`LocalHypervisor::listen`]); file descriptors travel
//!   with SCM_RIGHTS.
//! * **Granted memory** lives in memfds created by the hypervisor, one per
//!   [`share`](hypervisor::grant::GrantShare::share) call (all its pages go to one peer with
//!   one access mode), sealed against shrinking and growing so that no peer mapping can
//!   ever fault with SIGBUS.
//! * Each domain's **grant table** is a sealed memfd (see [`table`]) written only by the
//!   hypervisor: per reference, the grantee domain, permit and read-only flags, and the
//!   allocation the page belongs to.
//! * **Mapping** ([`GrantMap`](hypervisor::grant::GrantMap)): the hypervisor checks every
//!   reference as Xen does (wrong domain, revoked or unknown reference, write access to
//!   a read-only grant, reference outside the table, unknown domain) and sends the
//!   allocation's memfd — a read-only open of it unless a writable mapping was asked
//!   for and granted — and the page index; the backend maps exactly those pages and
//!   closes the descriptors.
//! * **Grant copy** ([`GrantCopy`](hypervisor::grant::GrantCopy)) runs in the copying
//!   process: the first copy touching a reference asks the hypervisor (same checks) for
//!   the page and caches its mapping, a bounded number per peer (oldest evicted first,
//!   everything of a peer dropped by `forget_peer`); every copy, cached or not, re-reads the
//!   peer's grant-table entry (mapped read-only) and applies Xen's checks, then does a
//!   `memcpy`. A revoked grant therefore fails the very next copy, and a per-segment
//!   copy costs a table load and a few comparisons, not a round trip to the daemon
//!   (which costs microseconds: see `docs/performance.md`).
//! * **Event channels** are eventfds (notify = one `write`), see [`LocalEventChannels`].
//!
//! # Trust gap (honest statement)
//!
//! On Xen, the hypervisor enforces grants on every access. Here the kernel enforces
//! what it can: a backend only ever receives descriptors of allocations that were
//! granted **to it**, and read-only descriptors for read-only grants (the kernel
//! refuses writable mappings of those). What the emulation cannot enforce is the
//! *time* dimension: a process that received an allocation's memfd could keep the
//! descriptor (this crate closes it at once) and map its pages again after the grant
//! was revoked, and it can reach every page of that allocation, not only the references
//! it asked for (all of which were granted to it with the same access). Copies made
//! through this crate honour revocation because they check the grant table every time;
//! a malicious process that bypasses the crate is not stopped. Likewise a domain
//! attaching to the daemon's socket claims its domain id: the socket's file
//! permissions are the access control (a child started with
//! [`LocalHypervisor::spawn_domain`] cannot: its connection was made for its domid). The emulation is for testing and benchmarking
//! the drivers, not for isolating mutually hostile processes.
//!
//! One more divergence: Xen refuses `gnttab_end_foreign_access` while a copy holds the
//! grant pinned and the kernel defers freeing; here a copy that checked the entry just
//! before a revoke may still complete. As on Xen, the frontend no longer sees the page
//! once `revoke` returned, so the late copy is harmless.

mod client;
mod copy_cache;
mod evtchn;
mod gref_slots;
pub mod host;
pub mod proto;
mod server;
mod sys;
pub mod table;

pub use host::{attach, LocalHost, LocalPlatform};

pub use client::{Domain, LocalMapping, LocalSharedPages};
pub use copy_cache::{COPY_CACHE_PAGES, COPY_CACHE_PAGES_PER_PEER, COPY_SHARDS};
pub use evtchn::LocalEventChannels;
pub use server::{
    DeathHook, LocalHypervisor, Stats, XenstoreConnector, FD_ENV, MAX_ALLOCATIONS_PER_DOMAIN,
    MAX_MAP_REFS, MAX_PORTS_PER_GUEST, MAX_SHARE_PAGES,
};
pub use sys::open_fd_count;
