//! The harness the driver tests and the bench share, on the local platform: a
//! [`BackendThread`] (netback serving dom0 on its own thread, with a command channel, a
//! status snapshot and a wait for connected vifs), [`GuestThread`]s (a netfront connected
//! on its own thread, then driven by a closure: netfront's event loop over a port, a
//! traffic generator…), [`Guest`] (the event loop over a memory port the test holds the
//! other end of), and the toolstack step between them ([`add_vif`]).
//!
//! Threads start where a [`Spawner`] says: a plain thread, or inside a network namespace
//! (`bench paper --traffic netns`, the kernel-stack tests, with the TAPs of [`kernel`]).
//!
//! ```
//! use std::time::Duration;
//! use testbed::{add_vif, BackendThread, Guest};
//! use xen_ids::DomId;
//!
//! let host = xen_local::LocalHost::new();
//! let id = add_vif(&host, DomId(1), 0).unwrap();
//! let nb = BackendThread::start(&host, netback::NetbackConfig::default()).unwrap();
//! let _guest = Guest::start(&host, DomId(1), netfront::NetfrontConfig::new(0)).unwrap();
//! nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod child;
pub mod clock;
pub mod error;
pub mod frames;
pub mod gate;
pub mod guest;
pub mod kernel;
pub mod raw;
pub mod rig;
pub mod spawn;

pub use backend::{
    netback_cpu_ns, BackendExit, BackendOptions, BackendThread, LocalNetback, MemWires,
};
pub use child::{child_platform, tagged_numbers, ChildSpec, TestChild};
pub use clock::SkewedClock;
pub use error::TestbedError;
pub use frames::{check_frame, count_until, flood, frame, recv_n, send_all, tcp_frame, TcpHeaders};
pub use gate::{Gate, GatedPort, OpenOnDrop};
pub use guest::{pump_until, Guest, GuestExit, GuestOptions, GuestThread, LocalNetfront};
pub use kernel::{tap_config, wait_link};
pub use raw::{tx_req, RawConn, RawConnect, RawFrontend, RawQueue, TxSlot};
pub use rig::{HonestNeighbour, HONEST};
pub use spawn::{thread_cpu_ns, Handle, Spawner};

use netback::toolstack::{create_vif, VifSpec};
use xen_ids::{DomId, VifId};
use xen_local::{LocalHost, LocalPlatform};

/// A new connection of domain `domid` to `host`.
pub fn domain(host: &LocalHost, domid: DomId) -> Result<LocalPlatform, TestbedError> {
    host.domain(domid).map_err(|source| TestbedError::Domain {
        domid: domid.0,
        source,
    })
}

/// The toolstack's part: device `devid` of domain `domid`, served by dom0 (its
/// xenstore nodes, written as dom0).
pub fn add_vif(host: &LocalHost, domid: DomId, devid: u32) -> Result<VifId, TestbedError> {
    let id = VifId { domid, devid };
    let dom0 = domain(host, DomId(0))?;
    create_vif(&dom0.xenstore, &VifSpec::new(DomId(0), domid, devid))
        .map_err(|source| TestbedError::CreateVif { id, source })?;
    Ok(id)
}
