//! DBA-VM netback: the driver-domain half of the Xen netif driver pair.
//!
//! Modules follow the data path:
//!
//! * [`tx`]: reading and validating a guest's TX slot chains (copy-once, bounded);
//! * [`vif`]: one connected vif — backstop policing before the grant copy, batched
//!   grant copies, responses, RX into the guest's posted buffers;
//! * [`meter`]: per-vif counters and per-period rates;
//! * [`backend`]: the daemon — its threads, and the manager (allocator, status) on the
//!   caller's thread;
//! * [`worker`]: a data-path worker — one thread, one epoll, the vif queues placed on
//!   it (rings, event channels, ports; no xenstore);
//! * [`control_thread`]: the control thread — the xenbus backend state machine and every
//!   xenstore round trip; [`router`] places vifs on workers and routes its commands;
//! * [`control_link`]: the commands and notices between the threads; [`published`]:
//!   what workers publish (meters, CPU) without locks between them;
//! * [`evtchn_backoff`]: ports kept masked a while after events that bring no work
//!   (event-channel storms, as Xen's lateeoi);
//! * [`control_work`]: the xenstore work watch events call for — coalesced, paced
//!   per item and budgeted per loop iteration, so that guests' writes cannot starve the
//!   data path;
//! * [`emulation`]: a backend packet-rate limit for the benchmark, applied around the
//!   TX poll (never in production);
//! * [`toolstack`]: what a toolstack writes in xenstore to create a vif;
//! * [`vifconfig`]: the toolstack's settings of a vif (`mac`, `mtu`, `rate`, `vifname`,
//!   `ip`), parsed and checked;
//! * [`tapvif`]: each vif's TAP set up as Xen's hotplug scripts set up an interface;
//! * [`status`]: what operators see of a vif's queues (worker, counters);
//! * [`metrics`]: the Prometheus text endpoint for operators (sampling, exposition, HTTP);
//!   the client side, `netback top` and SLA administration are the `netback-ops` crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod control;
pub(crate) mod control_link;
pub(crate) mod control_thread;
pub mod control_work;
pub mod emulation;
pub mod evtchn_backoff;
pub mod features;
pub mod journal;
pub mod meter;
pub mod metrics;
pub(crate) mod published;
pub mod queues;
pub(crate) mod router;
pub mod status;
pub mod tapvif;
pub mod toolstack;
pub mod tx;
pub mod vif;
pub mod vifconfig;
pub(crate) mod worker;

pub use backend::{LoopStats, Netback, NetbackConfig, PortFactory, RunError, VifStatus};
pub use control_work::ControlStats;
pub use status::QueueStatus;
pub use vif::BackstopPolicy;
pub use xen_ids::{DomId, VifId};
