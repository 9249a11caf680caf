//! One run: a local host, three vifs, netback (with the policy's settings) on its own
//! thread feeding the shared NIC model, three guests, then the figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use allocator::LoopConfig;
use netback::toolstack::{create_vif, VifSpec};
use netback::{BackstopPolicy, Netback, NetbackConfig, VifId, VifStatus};
use netfront::{CreditPolicy, NetfrontConfig};
use shared_ring::credit::Credits;
use shared_ring::Limit;
use xen_ids::DomId;
use xen_local::LocalHost;

use crate::clock::{now_ns, sleep_until, thread_cpu_ns};
use crate::guest::{domid, Guest, GuestResult, GuestSpec};
use crate::nic::{Nic, NicConfig};
use crate::port::{NicFactory, Police};
use crate::scenario::{sla_file, Policy, RunSpec, SLA_BPS, SLA_PPS};

/// Width of the throughput-over-time bins.
pub const BIN_NS: u64 = 10_000_000;
/// Window of the static token buckets (`netback-rate`, `tc`): their burst is this much
/// traffic at the limit.
pub const STATIC_BURST_WINDOW: Duration = Duration::from_millis(20);

/// netback on the local platform.
type LocalNetback = Netback<xen_local::LocalPlatform>;
type Command = Box<dyn FnOnce(&mut LocalNetback) + Send>;

/// What the backend thread reports at the end.
#[derive(Debug, Clone, Default)]
pub struct BackendResult {
    /// Vif snapshots.
    pub status: Vec<VifStatus>,
    /// Allocator cost, ns (cumulated over rounds).
    pub allocator_cost_ns: u64,
    /// Allocator rounds.
    pub allocator_rounds: u64,
    /// CPU time of the netback thread, ns.
    pub cpu_ns: u64,
    /// Longest gap between two loop iterations, ns.
    pub max_stall_ns: u64,
}

/// Everything measured in one run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The settings.
    pub spec: RunSpec,
    /// Per VM: the guest's side.
    pub guests: Vec<GuestResult>,
    /// The backend's side.
    pub backend: BackendResult,
    /// The NIC and sink (per-VM sinks inside).
    pub nic: Nic,
    /// Measurement window length, s.
    pub window_s: f64,
    /// Traffic duration, s.
    pub duration_s: f64,
}

/// Static budget of VM `vm`: the SLA rate in bytes, and its packets/s cap if `with_pps`.
fn static_credits(spec: &RunSpec, vm: usize, with_pps: bool) -> Credits {
    let bps = SLA_BPS[vm] / spec.scale;
    let per_sec = bps / 8;
    let burst = (per_sec as u128 * STATIC_BURST_WINDOW.as_nanos() / 1_000_000_000) as u64;
    Credits {
        bytes: Limit::rate(per_sec, burst.max(2 * 1514)),
        packets: if with_pps {
            let pps = sla_pps(spec, vm).max(1);
            let burst = (pps as u128 * STATIC_BURST_WINDOW.as_nanos() / 1_000_000_000) as u64;
            Limit::rate(pps, burst.max(2))
        } else {
            Limit::Unlimited
        },
        period_us: STATIC_BURST_WINDOW.as_micros() as u32,
    }
}

/// Runs one experiment. `progress` receives one line every half second.
pub fn run(spec: &RunSpec, progress: &mut dyn FnMut(&str)) -> Result<RunOutcome, String> {
    let host = LocalHost::new();
    let dom0 = host.domain(DomId(0)).map_err(|e| format!("dom0: {e}"))?;
    for vm in 0..3 {
        create_vif(&dom0.xenstore, &VifSpec::new(DomId(0), domid(vm), 0))
            .map_err(|e| format!("create vif for VM{}: {e}", vm + 1))?;
    }
    let nic = Arc::new(Mutex::new(Nic::new(
        NicConfig {
            line_bps: spec.line_bps(),
            queue_frames: spec.nic_queue_frames,
            bin_ns: BIN_NS,
        },
        3,
    )));
    let police: Vec<Option<Police>> = (0..3)
        .map(|vm| {
            (spec.policy == Policy::Tc).then(|| {
                let c = static_credits(spec, vm, false);
                let (rate, burst) = match c.bytes {
                    Limit::Rate { per_sec, burst } => (per_sec * 8, burst),
                    _ => unreachable!("static credits are a rate"),
                };
                Police::new(rate, burst)
            })
        })
        .collect();
    let factory = NicFactory {
        nic: nic.clone(),
        police,
    };
    let (credits, tx_policy) = match spec.policy {
        Policy::Native | Policy::Tc => (false, BackstopPolicy::Drop),
        Policy::NetbackRate => (false, BackstopPolicy::Hold),
        Policy::DbaDrop | Policy::DbaHold => (true, BackstopPolicy::Drop),
    };
    let cfg = NetbackConfig {
        credits,
        tx_policy,
        emulated_backend_pps: spec.backend_pps_limit,
        ..NetbackConfig::default()
    };
    let slas = if spec.policy.is_dba() {
        let text = sla_file(
            spec.scenario,
            spec.capacity_bps(),
            spec.link_buffer(),
            spec.scale,
        );
        Some(allocator::sla_file::parse_sla_file(&text).map_err(|e| format!("SLA file: {e}"))?)
    } else {
        None
    };
    let period = spec.period.unwrap_or(Duration::from_millis(20));

    // The backend thread.
    let stop = Arc::new(AtomicBool::new(false));
    let commands: Arc<Mutex<Vec<Command>>> = Arc::default();
    let status: Arc<Mutex<Vec<VifStatus>>> = Arc::default();
    let (be_err_tx, be_err_rx) = mpsc::channel::<String>();
    let backend = std::thread::Builder::new()
        .name("netback".into())
        .spawn({
            let (stop, commands, status) = (stop.clone(), commands.clone(), status.clone());
            move || -> Result<BackendResult, String> {
                let cpu0 = thread_cpu_ns();
                let mut nb = match Netback::new(dom0, cfg, Box::new(factory), Box::new(now_ns)) {
                    Ok(nb) => nb,
                    Err(e) => {
                        let m = format!("netback: {e}");
                        let _ = be_err_tx.send(m.clone());
                        return Err(m);
                    }
                };
                if let Some(slas) = slas {
                    nb.enable_allocator(slas, LoopConfig::with_period(period))
                        .map_err(|e| format!("allocator: {e:?}"))?;
                }
                let mut last_status = 0u64;
                let mut last_iter = now_ns();
                let mut max_stall_ns = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    nb.run_once(Duration::from_millis(2))
                        .map_err(|e| format!("netback: {e}"))?;
                    let cmds: Vec<Command> = std::mem::take(&mut *commands.lock().unwrap());
                    for c in cmds {
                        c(&mut nb);
                    }
                    let now = now_ns();
                    // Beyond the 2 ms wait of run_once: time the thread could not run.
                    max_stall_ns = max_stall_ns.max((now - last_iter).saturating_sub(2_000_000));
                    last_iter = now;
                    if now - last_status > 50_000_000 {
                        *status.lock().unwrap() = nb.status();
                        last_status = now;
                    }
                }
                let (cost, rounds) = nb
                    .allocator_report()
                    .map(|(_, c, r)| (c, r))
                    .unwrap_or((0, 0));
                Ok(BackendResult {
                    status: nb.status(),
                    allocator_cost_ns: cost,
                    allocator_rounds: rounds,
                    cpu_ns: thread_cpu_ns() - cpu0,
                    max_stall_ns,
                })
            }
        })
        .map_err(|e| format!("spawn netback: {e}"))?;
    let stop_backend = |backend: std::thread::JoinHandle<Result<BackendResult, String>>| {
        stop.store(true, Ordering::Relaxed);
        backend
            .join()
            .map_err(|_| "netback thread panicked".to_string())?
    };
    if let Ok(e) = be_err_rx.recv_timeout(Duration::from_millis(50)) {
        let _ = stop_backend(backend);
        return Err(e);
    }

    // Guests.
    let mut guests = Vec::new();
    for vm in 0..3 {
        let platform = match host.domain(domid(vm)) {
            Ok(p) => p,
            Err(e) => {
                let _ = stop_backend(backend);
                return Err(format!("VM{}: domain: {e}", vm + 1));
            }
        };
        let mut nfc = NetfrontConfig::new(0);
        match spec.policy {
            Policy::Native | Policy::Tc | Policy::NetbackRate => nfc.request_credits = false,
            Policy::DbaDrop => nfc.policy = CreditPolicy::Drop,
            Policy::DbaHold => nfc.policy = CreditPolicy::Hold,
        }
        let gs = GuestSpec {
            vm,
            frame_len: spec.scenario.packet_bytes(vm),
            offered_line_bps: spec.line_bps(),
            queue_frames: spec.guest_queue_frames,
            netfront: nfc,
            active: Vec::new(), // set below, once t0 is chosen
            nice: spec.guest_nice,
        };
        guests.push((gs, platform));
    }
    // Everyone connects, then starts together at t0.
    let dur_ns = spec.duration.as_nanos() as u64;
    let mut running = Vec::new();
    for (mut gs, platform) in guests {
        let vm = gs.vm;
        gs.active = activity(spec, vm, dur_ns);
        match Guest::connect(platform, gs) {
            Ok(g) => running.push(g),
            Err(e) => {
                let _ = stop_backend(backend);
                return Err(e);
            }
        }
    }
    // Wait until netback sees all three connected.
    let deadline = now_ns() + 10_000_000_000;
    loop {
        let ok = {
            let st = status.lock().unwrap();
            st.len() == 3 && st.iter().all(|s| s.connected)
        };
        if ok {
            break;
        }
        if now_ns() > deadline {
            let _ = stop_backend(backend);
            return Err("netback did not connect all three vifs in 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // netback-rate: the static limit. dba-*: the SLA as the budget until the allocator's
    // first round (otherwise a vif is unlimited during the first period and floods the
    // NIC queue).
    if spec.policy == Policy::NetbackRate || spec.policy.is_dba() {
        let with_pps = spec.policy.is_dba();
        let budgets: Vec<(VifId, Credits)> = (0..3)
            .map(|vm| {
                (
                    VifId {
                        domid: domid(vm),
                        devid: 0,
                    },
                    static_credits(spec, vm, with_pps),
                )
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        commands
            .lock()
            .unwrap()
            .push(Box::new(move |nb: &mut LocalNetback| {
                let ok = budgets.iter().all(|(id, c)| nb.set_tx_budget(*id, c));
                let _ = tx.send(ok);
            }));
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(true) => {}
            _ => {
                let _ = stop_backend(backend);
                return Err("could not set the netback-rate budgets".into());
            }
        }
    }
    let t0 = now_ns() + 20_000_000;
    let end = t0 + dur_ns;
    let w0 = t0 + spec.warmup.as_nanos() as u64;
    {
        let mut n = nic.lock().unwrap();
        n.t0_ns = t0;
        n.window = (w0, end);
    }
    for g in &running {
        g.start(t0, end);
    }
    // Progress.
    sleep_until(t0);
    let mut last = (t0, [0u64; 3]);
    while now_ns() < end {
        sleep_until((now_ns() + 500_000_000).min(end));
        let now = now_ns();
        let bytes: [u64; 3] = {
            let n = nic.lock().unwrap();
            [n.sinks[0].bytes, n.sinks[1].bytes, n.sinks[2].bytes]
        };
        let dt = (now - last.0) as f64 / 1e9;
        let rates: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "VM{} {:6.1}",
                    i + 1,
                    (bytes[i] - last.1[i]) as f64 * 8.0 / dt / 1e6
                )
            })
            .collect();
        progress(&format!(
            "{:>4.1}/{:.1} s  Mb/s: {}",
            (now - t0) as f64 / 1e9,
            dur_ns as f64 / 1e9,
            rates.join("  ")
        ));
        last = (now, bytes);
    }
    let mut results = Vec::new();
    let mut fronts = Vec::new();
    let mut err = None;
    for g in running {
        match g.join() {
            Ok((r, nf)) => {
                results.push(r);
                fronts.push(nf);
            }
            Err(e) => err = Some(e),
        }
    }
    // Let what is on the rings reach the NIC.
    std::thread::sleep(Duration::from_millis(100));
    let be = stop_backend(backend)?;
    drop(fronts);
    if let Some(e) = err {
        return Err(e);
    }
    let nic = Arc::try_unwrap(nic)
        .map_err(|_| "NIC still shared".to_string())?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(RunOutcome {
        spec: spec.clone(),
        guests: results,
        backend: be,
        nic,
        window_s: (end - w0) as f64 / 1e9,
        duration_s: dur_ns as f64 / 1e9,
    })
}

/// When VM `vm` offers traffic (ns intervals relative to the start).
fn activity(spec: &RunSpec, vm: usize, dur_ns: u64) -> Vec<(u64, u64)> {
    if spec.scenario.active(vm, 0.5) {
        vec![(0, dur_ns)]
    } else {
        vec![(0, dur_ns / 3), (2 * dur_ns / 3, dur_ns)]
    }
}

/// SLA packets/s cap of VM `vm` after scaling.
pub fn sla_pps(spec: &RunSpec, vm: usize) -> u64 {
    SLA_PPS[vm] / spec.scale
}
