//! The set-up the hostile-guest tests share: netback serving an honest guest (domain
//! 1, vif 1.0, our netfront on a memory port) and the vifs a test's attackers will
//! use, created by the toolstack but not connected ([`HonestNeighbour`]).

use std::time::Duration;

use netback::{LoopStats, NetbackConfig};
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

use crate::backend::{netback_cpu_ns, BackendOptions, BackendThread};
use crate::{add_vif, Guest, TestbedError};

/// The honest guest's vif.
pub const HONEST: VifId = VifId::new(DomId(1), 0);

/// netback with an honest guest connected beside the vifs of a test's attackers.
pub struct HonestNeighbour {
    /// The local host.
    pub host: LocalHost,
    /// netback, on its thread.
    pub nb: BackendThread,
    /// The honest guest ([`HONEST`]), connected.
    pub guest: Guest,
    /// netback's end of the honest vif's port.
    pub wire: MemPort,
}

impl HonestNeighbour {
    /// Creates [`HONEST`] and the vifs `hostile`, starts netback with `cfg`, its ports
    /// made with `ports`, run as `opts` says, then the honest guest; returns once
    /// netback has the honest vif connected (10 s at most).
    pub fn start(
        hostile: &[VifId],
        cfg: NetbackConfig,
        ports: MemPortConfig,
        opts: BackendOptions,
    ) -> Result<HonestNeighbour, TestbedError> {
        let host = LocalHost::new();
        add_vif(&host, HONEST.domid, HONEST.devid)?;
        for id in hostile {
            add_vif(&host, id.domid, id.devid)?;
        }
        let nb = BackendThread::start_with(&host, cfg, ports, opts)?;
        let guest = Guest::start(&host, HONEST.domid, NetfrontConfig::new(0))?;
        let wire = nb.wire(HONEST);
        nb.wait_connected(&[HONEST], Duration::from_secs(10))?;
        Ok(HonestNeighbour {
            host,
            nb,
            guest,
            wire,
        })
    }
}

impl BackendThread {
    /// netback's loop counters (every worker's) and CPU time (its manager thread's and
    /// its workers'), read on its thread (10 s at most).
    pub fn loop_sample(&self) -> Result<(LoopStats, u64), TestbedError> {
        self.call(
            |nb| (nb.loop_stats(), netback_cpu_ns(nb)),
            Duration::from_secs(10),
        )
    }
}
