//! A driver's view of its hypervisor: its domain id plus the three services, as one type.
//!
//! [`Platform`] names the services by associated types, so the drivers are
//! `Netfront<P>` and `Netback<P>` with one parameter; [`FrontendPlatform`] and
//! [`BackendPlatform`] add what each side needs of the grant service (sharing pages for
//! a frontend, mapping and copying a peer's grants for a backend). [`Services`] is the
//! one implementation: a plain bundle of the three values, built by
//! [`Services::xen_frontend`] / [`Services::xen_backend`] on Xen or by the `xen-local`
//! crate on the emulation.

use xen_ids::DomId;
use xenstore::{Xenstore, XsClient, XsTx};

use crate::evtchn::xen::XenEventChannels;
use crate::evtchn::{EventChannels, EvtchnError};
use crate::grant::xen::{Gntalloc, Gntdev};
use crate::grant::{GrantCopy, GrantError, GrantMap, GrantShare};
use crate::xenbus;

/// The services one domain uses.
pub trait Platform: Send + 'static {
    /// Grant tables (sharing for a frontend, mapping and copying for a backend).
    type Grants: Send + Sync + 'static;
    /// Event channels.
    type Evtchn: EventChannels + 'static;
    /// Xenstore.
    type Xenstore: Xenstore + 'static;
    /// This domain's id.
    fn domid(&self) -> DomId;
    /// Grant tables.
    fn grants(&self) -> &Self::Grants;
    /// Event channels.
    fn evtchn(&self) -> &Self::Evtchn;
    /// Xenstore.
    fn xenstore(&self) -> &Self::Xenstore;
}

/// A platform a frontend can run on: its grant service shares pages.
pub trait FrontendPlatform: Platform<Grants: GrantShare> {}
impl<P: Platform<Grants: GrantShare>> FrontendPlatform for P {}

/// A platform a backend can run on: its grant service maps and copies a peer's grants.
pub trait BackendPlatform: Platform<Grants: GrantMap + GrantCopy> {}
impl<P: Platform<Grants: GrantMap + GrantCopy>> BackendPlatform for P {}

/// The services of one domain, bundled: the implementation of [`Platform`].
#[derive(Debug)]
pub struct Services<G, E, X> {
    /// This domain's id.
    pub domid: DomId,
    /// Grant tables.
    pub grants: G,
    /// Event channels.
    pub evtchn: E,
    /// Xenstore.
    pub xenstore: X,
}

impl<G, E, X> Platform for Services<G, E, X>
where
    G: Send + Sync + 'static,
    E: EventChannels + 'static,
    X: Xenstore + 'static,
{
    type Grants = G;
    type Evtchn = E;
    type Xenstore = X;
    fn domid(&self) -> DomId {
        self.domid
    }
    fn grants(&self) -> &G {
        &self.grants
    }
    fn evtchn(&self) -> &E {
        &self.evtchn
    }
    fn xenstore(&self) -> &X {
        &self.xenstore
    }
}

/// A frontend on Xen: `gntalloc`, `evtchn`, xenstore.
pub type XenFrontend = Services<Gntalloc, XenEventChannels, XsClient>;
/// A backend on Xen: `gntdev`, `evtchn`, xenstore.
pub type XenBackend = Services<Gntdev, XenEventChannels, XsClient>;

/// Why the Xen platform could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The xenstore connection.
    #[error("xenstore: {0}")]
    Xenstore(#[source] std::io::Error),
    /// Our own domain id (the `domid` key of our xenstore home).
    #[error("our domain id: {0}")]
    DomId(#[source] xenbus::XenbusError),
    /// `/dev/xen/gntalloc` or `/dev/xen/gntdev`.
    #[error("grant device: {0}")]
    Grants(#[source] GrantError),
    /// `/dev/xen/evtchn`.
    #[error("event channels: {0}")]
    Evtchn(#[source] EvtchnError),
}

impl XenFrontend {
    /// Opens the Xen services of this (guest) domain.
    pub fn xen_frontend() -> Result<Self, OpenError> {
        let xenstore = XsClient::open_default().map_err(OpenError::Xenstore)?;
        let domid = own_domid(&xenstore).map_err(OpenError::DomId)?;
        Ok(Services {
            domid,
            grants: Gntalloc::open().map_err(OpenError::Grants)?,
            evtchn: XenEventChannels::open().map_err(OpenError::Evtchn)?,
            xenstore,
        })
    }
}

impl XenBackend {
    /// Opens the Xen services of this (driver) domain ([`driver_domid`]).
    pub fn xen_backend() -> Result<Self, OpenError> {
        let xenstore = XsClient::open_default().map_err(OpenError::Xenstore)?;
        let domid = driver_domid(&xenstore).map_err(OpenError::DomId)?;
        Ok(Services {
            domid,
            grants: Gntdev::open().map_err(OpenError::Grants)?,
            evtchn: XenEventChannels::open().map_err(OpenError::Evtchn)?,
            xenstore,
        })
    }
}

/// Our domain id on Xen: the `domid` key of our own xenstore home.
pub fn own_domid<X: Xenstore + ?Sized>(xs: &X) -> Result<DomId, xenbus::XenbusError> {
    xenbus::read_domid(xs, XsTx::NONE, "domid")
}

/// A driver domain's id: [`own_domid`], except that a missing `domid` key means dom0
/// (the toolstack writes none for dom0). Any other failure — xenstore unreachable, a
/// value that is not a domain id — is an error, not a silent dom0.
pub fn driver_domid<X: Xenstore + ?Sized>(xs: &X) -> Result<DomId, xenbus::XenbusError> {
    match own_domid(xs) {
        Err(xenbus::XenbusError::Xs { source, .. }) if source.is_enoent() => Ok(DomId::DOM0),
        r => r,
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

#[cfg(test)]
mod tests {
    use super::*;
    use xenstored::Xenstored;

    #[test]
    fn driver_domid_is_dom0_only_when_the_key_is_missing() {
        let xsd = Xenstored::new();
        let dom0 = XsClient::new(xsd.connect(DomId::DOM0).unwrap()).unwrap();
        let me = XsClient::new(xsd.connect(DomId(3)).unwrap()).unwrap();
        assert_eq!(driver_domid(&me).unwrap(), DomId::DOM0);
        let key = "/local/domain/3/domid";
        dom0.write(XsTx::NONE, key, b"3").unwrap();
        assert_eq!(driver_domid(&me).unwrap(), DomId(3));
        assert_eq!(own_domid(&me).unwrap(), DomId(3));
        for bad in [&b"65535"[..], b"32752", b"x", b""] {
            dom0.write(XsTx::NONE, key, bad).unwrap();
            assert!(driver_domid(&me).is_err(), "{bad:?} is not silently dom0");
        }
    }
}
