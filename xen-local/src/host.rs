//! The local platform as the drivers see it: a [`LocalPlatform`] per domain (the
//! [`Platform`](hypervisor::platform::Platform) implementation over the emulation), and a
//! whole [`LocalHost`] in one process (hypervisor and xenstored wired together), which
//! the `local-hypervisor` daemon, the tests and the bench all build the same way.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use hypervisor::platform::Services;
use xen_ids::DomId;
use xenstore::XsClient;
use xenstored::Xenstored;

use crate::{Domain, LocalEventChannels, LocalHypervisor};

/// A domain on the local emulation.
pub type LocalPlatform = Services<Domain, LocalEventChannels, XsClient>;

/// Bundles an attached local domain: opens its event channels and its xenstore
/// connection (through the hypervisor, which must have a xenstore attached).
pub fn platform_of(domain: Domain) -> io::Result<LocalPlatform> {
    let evtchn = domain
        .event_channels()
        .map_err(|e| io::Error::other(format!("event channels: {e}")))?;
    let xenstore = XsClient::new(domain.xenstore()?)?;
    Ok(Services {
        domid: domain.domid(),
        grants: domain,
        evtchn,
        xenstore,
    })
}

/// Attaches to a `local-hypervisor` daemon at `socket` as `domid`.
pub fn attach(socket: &Path, domid: DomId) -> io::Result<LocalPlatform> {
    platform_of(Domain::attach(socket, domid)?)
}

/// A whole local host in one process: the hypervisor and a xenstored wired together
/// (the daemon, tests, benchmarks).
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
    /// A fresh host with dom0 introduced: the hypervisor hands each domain a
    /// connection to the xenstored, and a domain's death removes it from xenstore.
    pub fn new() -> Self {
        let hypervisor = LocalHypervisor::new();
        let xenstored = Xenstored::new();
        hypervisor.set_xenstore(Box::new({
            let xs = xenstored.clone();
            move |d| xs.connect(d).map(OwnedFd::from)
        }));
        hypervisor.set_death_hook(Box::new({
            let xs = xenstored.clone();
            move |d| xs.domain_died(d)
        }));
        LocalHost {
            hypervisor,
            xenstored,
        }
    }

    /// A new connection for domain `domid`, as a full platform.
    pub fn domain(&self, domid: DomId) -> io::Result<LocalPlatform> {
        platform_of(Domain::from_fd(self.hypervisor.connect(domid)?)?)
    }
}
