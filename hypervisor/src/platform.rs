//! A driver's view of its hypervisor: its domain id plus the three services, bundled so
//! that netfront and netback take one value and stay generic over `xen` and `local`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::grant::DomId;
use crate::local::{Domain, LocalEventChannels, LocalHypervisor};
use crate::xenstore::local::Xenstored;
use crate::xenstore::XsClient;

/// The services one domain uses. `G` is the grant service (`GrantShare` for a frontend,
/// `GrantMap + GrantCopy` for a backend; the local `Domain` is both), `E` the event
/// channels, `X` the xenstore connection.
#[derive(Debug)]
pub struct Platform<G, E, X> {
    /// This domain's id.
    pub domid: DomId,
    /// Grant tables.
    pub grants: G,
    /// Event channels.
    pub evtchn: E,
    /// Xenstore.
    pub xenstore: X,
}

/// A domain on the local emulation.
pub type LocalPlatform = Platform<Domain, LocalEventChannels, XsClient>;

impl LocalPlatform {
    /// Bundles an attached local domain: opens its event channels and its xenstore
    /// connection (through the hypervisor, which must have a xenstore attached).
    pub fn from_domain(domain: Domain) -> io::Result<Self> {
        let evtchn = domain
            .event_channels()
            .map_err(|e| io::Error::other(format!("event channels: {e}")))?;
        let xenstore = XsClient::new(domain.xenstore()?)?;
        Ok(Platform {
            domid: domain.domid(),
            grants: domain,
            evtchn,
            xenstore,
        })
    }

    /// Attaches to a `local-hypervisor` daemon at `socket` as `domid`.
    pub fn attach(socket: &Path, domid: DomId) -> io::Result<Self> {
        Self::from_domain(Domain::attach(socket, domid)?)
    }
}

/// A whole local host in one process: the hypervisor and a xenstored wired together
/// (tests, benchmarks, the `local` platform of the bench).
#[derive(Clone)]
pub struct LocalHost {
    /// The grant-table and event-channel emulation.
    pub hypervisor: LocalHypervisor,
    /// The xenstore server.
    pub xenstored: Xenstored,
}

impl Default for LocalHost {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalHost {
    /// A fresh host with dom0 introduced.
    pub fn new() -> Self {
        let hypervisor = LocalHypervisor::new();
        let xenstored = Xenstored::new();
        hypervisor.set_xenstore(Box::new({
            let xs = xenstored.clone();
            move |d| xs.connect(d.0).map(OwnedFd::from)
        }));
        hypervisor.set_death_hook(Box::new({
            let xs = xenstored.clone();
            move |d| xs.domain_died(d.0)
        }));
        LocalHost {
            hypervisor,
            xenstored,
        }
    }

    /// A new connection for domain `domid`, as a full platform.
    pub fn domain(&self, domid: DomId) -> io::Result<LocalPlatform> {
        LocalPlatform::from_domain(Domain::from_fd(self.hypervisor.connect(domid)?)?)
    }
}

/// The ring view of granted or mapped memory: [`shared_ring::SharedMem`] (atomic words),
/// which the ring and credit-area code of the drivers use. Rings are written by both
/// ends, so only a writable mapping has a ring view: a read-only one yields an empty
/// view, on which any ring construction fails cleanly (`RingError::TooSmall`) instead of
/// faulting on the first store.
pub fn ring_mem(mem: &crate::grant::SharedMem) -> shared_ring::SharedMem<'_> {
    if !mem.is_writable() {
        return shared_ring::SharedMem::from_words(&[]);
    }
    // SAFETY: `mem` owns a page-aligned mapping of `mem.len()` bytes that stays mapped
    // while it is borrowed (the returned view borrows it). The drivers access this memory
    // only through the returned atomic view; the peer domain writing it concurrently is
    // exactly what `shared_ring::SharedMem` is designed for.
    unsafe { shared_ring::SharedMem::from_raw(mem.as_ptr(), mem.len()) }
}

/// The system's monotonic clock in nanoseconds since its first use in this process: the
/// drivers' default clock (tests inject their own).
pub fn monotonic_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}
