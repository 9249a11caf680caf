//! What both runners (`run`, `kernel_traffic`) build from a [`RunSpec`]: the three
//! vifs, netback with the policy's settings on its own thread, the policy's netfront
//! settings, and the static budgets once every vif is connected.

use std::time::Duration;

use netback::{BackstopPolicy, NetbackConfig, PortFactory};
use netfront::{CreditPolicy, NetfrontConfig};
use testbed::{add_vif, BackendOptions, BackendThread, Spawner};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

use crate::scenario::{domid, sla_file, static_credits, vif_id, Policy, RunSpec};

/// How long netback may take to see the three vifs connected.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the three vifs (VM `vm` is domain `vm + 1`, device 0).
pub fn add_vifs(host: &LocalHost) -> Result<Vec<VifId>, String> {
    (0..3)
        .map(|vm| add_vif(host, domid(vm), 0).map_err(|e| format!("VM{}: {e}", vm + 1)))
        .collect()
}

/// netback's settings for the policy: credits for `dba-*`, the backstop holding for
/// `netback-rate`, and the emulated backend rate, if any.
pub fn netback_config(spec: &RunSpec) -> NetbackConfig {
    let (credits, tx_policy) = match spec.policy {
        Policy::Native | Policy::Tc => (false, BackstopPolicy::Drop),
        Policy::NetbackRate => (false, BackstopPolicy::Hold),
        Policy::DbaDrop | Policy::DbaHold => (true, BackstopPolicy::Drop),
    };
    NetbackConfig {
        credits,
        tx_policy,
        emulated_backend_pps: spec.backend_pps_limit,
        run_delay: spec
            .credit_cpu_waits
            .then(hypervisor::cpu_wait::RunDelay::system),
        ..NetbackConfig::default()
    }
}

/// netfront's settings for the policy: credits requested only under `dba-*`, with its
/// over-budget policy.
pub fn netfront_config(spec: &RunSpec) -> NetfrontConfig {
    let mut nfc = NetfrontConfig::new(0);
    match spec.policy {
        Policy::Native | Policy::Tc | Policy::NetbackRate => nfc.request_credits = false,
        Policy::DbaDrop => nfc.policy = CreditPolicy::Drop,
        Policy::DbaHold => nfc.policy = CreditPolicy::Hold,
    }
    nfc
}

/// Starts netback for `host`'s dom0 (on a thread placed by `spawner`), the allocator on
/// under `dba-*`; the status snapshot is refreshed every 50 ms.
pub fn start_backend(
    spec: &RunSpec,
    host: &LocalHost,
    spawner: Spawner<'_>,
    ports: impl PortFactory + Send + 'static,
) -> Result<BackendThread, String> {
    let allocator = if spec.policy.is_dba() {
        let text = sla_file(
            spec.scenario,
            spec.capacity_bps(),
            spec.link_buffer(),
            spec.scale,
        );
        let slas =
            allocator::sla_file::parse_sla_file(&text).map_err(|e| format!("SLA file: {e}"))?;
        let period = spec.period.unwrap_or(Duration::from_millis(20));
        Some((slas, allocator::LoopConfig::with_period(period)))
    } else {
        None
    };
    let opts = BackendOptions {
        poll: Duration::from_millis(2),
        status_every: Duration::from_millis(50),
        allocator,
        ..BackendOptions::default()
    };
    let dom0 = testbed::domain(host, DomId(0)).map_err(|e| e.to_string())?;
    BackendThread::spawn(spawner, dom0, netback_config(spec), ports, opts)
        .map_err(|e| e.to_string())
}

/// Waits until netback has the three vifs connected, then gives them their static
/// budgets: `netback-rate` its limit; `dba-*` the SLA until the allocator's first round
/// (otherwise a vif is unlimited during the first period and floods the NIC queue).
pub fn connect_and_budget(backend: &BackendThread, spec: &RunSpec) -> Result<(), String> {
    let vifs: Vec<VifId> = (0..3).map(vif_id).collect();
    backend
        .wait_connected(&vifs, CONNECT_TIMEOUT)
        .map_err(|e| format!("the three vifs: {e}"))?;
    if spec.policy != Policy::NetbackRate && !spec.policy.is_dba() {
        return Ok(());
    }
    let with_pps = spec.policy.is_dba();
    let budgets: Vec<_> = (0..3)
        .map(|vm| (vif_id(vm), static_credits(spec, vm, with_pps)))
        .collect();
    let set = move |nb: &mut testbed::LocalNetback| {
        budgets.iter().all(|(id, c)| nb.set_tx_budget(*id, c))
    };
    match backend.call(set, Duration::from_secs(5)) {
        Ok(true) => Ok(()),
        Ok(false) => Err("a vif was not connected when its static budget was set".into()),
        Err(e) => Err(format!("static budgets: {e}")),
    }
}
