//! `report.json` (the schema of issue 7, plus extra fields) and `report.md`.

use serde::{Deserialize, Serialize};

use crate::run::RunOutcome;
use crate::scenario::{sla_pps, LinkBuffer, Policy, Scenario, BIN_NS, SLA_BPS};

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Whether `--quick` was given.
    pub quick: bool,
    /// The machine it ran on.
    pub machine: Machine,
    /// Rates divided by this (1 = the paper's scale).
    pub scale: u64,
    /// `--backend-pps-limit`, if given (an **emulation** of a memory-bound backend).
    pub backend_pps_limit: Option<u64>,
    /// Human-readable label when an emulation is in force.
    pub emulation: Option<String>,
    /// Allocator period used by the `dba-*` runs of the comparison, ms.
    pub dba_period_ms: f64,
    /// The allocator's link capacity B_p (bits/s of frame bytes), Mb/s, unscaled.
    pub allocator_capacity_mbps: f64,
    /// The link buffer the allocator sizes the bursts for (the NIC queue: packets, and
    /// bytes of 1500-byte frames); `null` with `--no-link-buffer`.
    pub allocator_buffer: Option<LinkBuffer>,
    /// Nice value of the guest threads (the backend thread runs at 0).
    pub guest_nice: i32,
    /// netback's backstops kept the tokens of its waits for a CPU (`--credit-cpu-waits`).
    #[serde(default)]
    pub credit_cpu_waits: bool,
    /// One entry per (scenario, policy).
    pub runs: Vec<RunReport>,
    /// The `dba-drop` readjustment-period sweep.
    pub period_sweep: Vec<SweepPoint>,
    /// Measured checks of the "what must hold" list.
    pub checks: Vec<Check>,
}

/// The machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: i64,
    /// `uname -r`.
    pub kernel: String,
    /// 1-minute load average at the start (other work on the machine).
    pub loadavg_start: f64,
}

/// One run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// `1500`, `mixed`, `spare`, `rx-1500` or `rx-mixed`.
    pub scenario: String,
    /// `tx` (the guests send; the NIC model is behind netback) or `rx` (the guests
    /// receive from the NIC model's senders, [`crate::rx`]). Reports written before the
    /// receive scenarios have none: `tx`.
    #[serde(default = "tx")]
    pub direction: String,
    /// `native`, `netback-rate`, `tc`, `dba-drop` or `dba-hold`.
    pub policy: String,
    /// Allocator period (dba only), ms.
    pub period_ms: Option<f64>,
    /// Traffic duration, s.
    pub duration_s: f64,
    /// Measurement window (after warm-up), s.
    pub window_s: f64,
    /// Emulated backend packet rate, if any.
    pub backend_pps_limit: Option<u64>,
    /// CPU time of the netback thread, s.
    pub backend_cpu_s: f64,
    /// CPU time of the three guest threads (traffic generation + netfront), s.
    pub frontend_cpu_s: f64,
    /// Allocator CPU, µs per second of run.
    pub allocator_cpu_us_per_s: f64,
    /// Allocator rounds.
    pub allocator_rounds: u64,
    /// Longest gap between two netback loop iterations, ms (CPU contention shows here).
    pub backend_max_stall_ms: f64,
    /// NIC transmit queue, frames.
    pub nic_queue_frames: i64,
    /// `mem` (in-process generators and NIC model) or `netns` (kernel stacks, iperf3).
    pub traffic: String,
    /// Whether one-way delays were measured (not with `netns`: iperf3 has none).
    pub delay_measured: bool,
    /// `netns` only: frames dropped by the NIC qdisc, all VMs together (per-VM
    /// `dropped_nic` is then 0: the kernel does not say whose frames they were).
    pub nic_dropped_total: Option<i64>,
    /// Per VM.
    pub vms: Vec<VmReport>,
    /// Frame bytes delivered per 10 ms bin, per VM (throughput over time).
    pub timeline_bin_ms: f64,
    /// Per VM, Mb/s per bin.
    pub timeline_mbps: Vec<Vec<f64>>,
    /// `spare` only: how VM1/VM3 used the spare capacity and how fast VM2 got it back.
    pub spare: Option<SpareReport>,
    /// `netns` only: CPU of netback's control thread and of the iperf3 servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsRun>,
}

/// CPU time in a `--traffic netns` run beside what `backend_cpu_s` (netback's data-path
/// thread) and the per-VM [`NetnsVm`] give.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetnsRun {
    /// UDP datagrams the sink's kernel dropped because an iperf3 server's receive
    /// buffer was full (`RcvbufErrors`, all VMs together; `None` if unreadable).
    pub sink_rcvbuf_errors: Option<u64>,
    /// netback's control thread (`netback-control`: xenstore, connections).
    pub cpu_backend_control: crate::proc_cpu::CpuTimes,
    /// The three iperf3 servers in the sink, together.
    pub cpu_iperf3_servers: crate::proc_cpu::CpuTimes,
}

/// One VM in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmReport {
    /// `VM1`..`VM3`.
    pub name: String,
    /// Frame length (dest MAC .. payload).
    pub packet_bytes: i64,
    /// SLA minimum, Mb/s.
    pub sla_mbps: f64,
    /// SLA packets/s cap, Kp/s.
    pub sla_kpps: f64,
    /// Offered load (frames generated), Mb/s of frame bytes, over the whole run. On RX:
    /// what the NIC model's sender offered to this VM.
    pub offered_mbps: f64,
    /// Delivered by the NIC in the window, Mb/s of frame bytes. On RX: received by the
    /// guest's application (after a `tc` policer, if any).
    pub delivered_mbps: f64,
    /// Delivered, Kp/s.
    pub delivered_kpps: f64,
    /// One-way delay (guest queue → last bit on the wire), median, µs.
    pub delay_p50_us: f64,
    /// 99th percentile, µs.
    pub delay_p99_us: f64,
    /// Mean |Δ delay| of consecutive frames, µs.
    pub jitter_us: f64,
    /// Frames offered but not delivered, % (whole run).
    pub loss_pct: f64,
    /// Bytes grant-copied across the ring (whole run): on TX out of the guest, on RX
    /// into it.
    pub ring_bytes_copied: i64,
    /// Of those, bytes copied for frames that were then dropped (TX: tc, NIC queue; RX:
    /// the `tc` policer after the copy).
    pub copied_then_dropped_bytes: i64,
    /// Dropped in the guest: queue overflow + netfront over budget (TX only).
    pub dropped_front: i64,
    /// Dropped in the backend: backstop + port + `tc` policer (RX: netback's RX drops,
    /// its budget's among them, + the `tc` policer).
    pub dropped_back: i64,
    /// Dropped at the NIC queue (RX: the vif's receive queue in dom0, full).
    pub dropped_nic: i64,
    /// Frames the generator could not produce in time (machine too slow).
    pub generator_skipped: i64,
    /// Delay CDF: (quantile, µs) pairs.
    pub delay_cdf_us: Vec<(f64, f64)>,
    /// The allocator's last budget for this vif, bits/s (dba only; on RX the receive
    /// budget netback told the guest).
    pub budget_bps: Option<u64>,
    /// The allocator's last packets/s budget (dba only).
    pub budget_pps: Option<u64>,
    /// `netns` only: where this VM's frames went and what CPU its parts used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsVm>,
}

/// One VM of a `--traffic netns` run, frame by frame along its path (all counts are
/// frames over the whole iperf3 test) and the CPU time of its parts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetnsVm {
    /// Datagrams the iperf3 client sent (what the guest application offered).
    pub offered: u64,
    /// Dropped by the guest kernel before netfront read them (the TAP's queue was full:
    /// `tx_dropped` of the guest's `eth0`).
    pub dropped_guest_kernel: u64,
    /// Put on the TX ring by netfront (admitted).
    pub admitted_netfront: u64,
    /// Dropped by netfront for lack of credits.
    pub dropped_netfront: u64,
    /// Times netfront held a frame for credits (policy hold).
    pub held_netfront: u64,
    /// Dropped by netback (backstop) or by the `tc` policer after the copy.
    pub dropped_backend: u64,
    /// Written by netback into its TAP and dropped by the backend's kernel there
    /// (`rx_dropped` of `vif<N>.0`).
    pub dropped_backend_tap: u64,
    /// Datagrams the iperf3 server received.
    pub delivered: u64,
    /// Datagrams the iperf3 server counted lost (offered − delivered, as it saw them).
    pub lost: u64,
    /// CPU of the iperf3 client process.
    pub cpu_iperf3: crate::proc_cpu::CpuTimes,
    /// CPU of the netfront thread (its TAP reads and writes are its system time).
    pub cpu_netfront: crate::proc_cpu::CpuTimes,
}

/// Work conservation in the `spare` scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpareReport {
    /// VM2 idle from .. to (s after the start).
    pub vm2_idle_s: (f64, f64),
    /// VM1 and VM3 Mb/s while VM2 was idle (after the first 100 ms).
    pub vm1_vm3_idle_mbps: (f64, f64),
    /// VM2 Mb/s in the last third.
    pub vm2_back_mbps: f64,
    /// Time after VM2's restart until its next 50 ms average reaches ≥ 95 % of its SLA, ms.
    pub vm2_recovery_ms: Option<f64>,
}

/// One point of the period sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Readjustment period, ms.
    pub period_ms: f64,
    /// Allocator CPU, µs per second.
    pub allocator_cpu_us_per_s: f64,
    /// Backend CPU, s.
    pub backend_cpu_s: f64,
    /// Bytes copied across the rings (all VMs).
    pub ring_bytes_copied: i64,
    /// Backend CPU per second of run, ms/s.
    pub backend_cpu_ms_per_s: f64,
    /// Bytes copied per second, MB/s.
    pub ring_mbytes_copied_per_s: f64,
    /// Scenario of the sweep.
    pub scenario: String,
    /// Run duration, s.
    pub duration_s: f64,
    /// Delivered Mb/s per VM.
    pub delivered_mbps: Vec<f64>,
}

/// One "what must hold" item, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What is checked.
    pub what: String,
    /// Whether it held.
    pub holds: bool,
    /// The measured values.
    pub measured: String,
}

/// Quantiles kept for the delay CDFs.
pub const CDF_QUANTILES: [f64; 16] = [
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0,
];

fn tx() -> String {
    "tx".into()
}

/// A per-second rate of a limit, if it has one.
fn per_sec(l: shared_ring::Limit) -> Option<u64> {
    match l {
        shared_ring::Limit::Rate { per_sec, .. } => Some(per_sec),
        shared_ring::Limit::Unlimited => None,
    }
}

/// What netback did for one VM in the run's direction: bytes copied across the ring,
/// frames it dropped, and the allocator's last budget (bits/s, packets/s).
fn backend_side(o: &RunOutcome, vm: usize) -> (u64, u64, Option<(u64, Option<u64>)>) {
    let st = o
        .backend
        .status
        .iter()
        .find(|v| v.id.domid.0 as usize == vm + 1);
    let Some(v) = st else {
        return (0, 0, None);
    };
    if o.spec.scenario.is_rx() {
        let budget = o.guests[vm].rx_budget.and_then(|c| {
            let bps = per_sec(c.bytes)? * 8;
            Some((bps, per_sec(c.packets)))
        });
        (v.counters.rx_bytes, v.counters.rx_dropped(), budget)
    } else {
        let budget = v.budget.map(|b| (b.bps, b.pps));
        (v.counters.tx_bytes_copied, v.counters.tx_dropped(), budget)
    }
}

fn mbps(bytes: u64, s: f64) -> f64 {
    if s > 0.0 {
        bytes as f64 * 8.0 / s / 1e6
    } else {
        0.0
    }
}

/// Builds the report of one run.
pub fn run_report(o: &RunOutcome) -> RunReport {
    let spec = &o.spec;
    let mut vms = Vec::new();
    #[allow(clippy::needless_range_loop)] // vm indexes several parallel tables
    for vm in 0..3 {
        let g = &o.guests[vm];
        let s = &o.nic.sinks[vm];
        let (copied, back, budget) = backend_side(o, vm);
        let delivered_frames_total = s.frames;
        let offered = g.offered_frames;
        let loss = if offered > 0 {
            (offered.saturating_sub(delivered_frames_total)) as f64 / offered as f64 * 100.0
        } else {
            0.0
        };
        let q = |p: f64| {
            if s.delay_us.is_empty() {
                0.0
            } else {
                s.delay_us.value_at_quantile(p) as f64
            }
        };
        vms.push(VmReport {
            name: format!("VM{}", vm + 1),
            packet_bytes: spec.scenario.packet_bytes(vm) as i64,
            sla_mbps: (SLA_BPS[vm] / spec.scale) as f64 / 1e6,
            sla_kpps: sla_pps(spec, vm) as f64 / 1e3,
            offered_mbps: mbps(g.offered_bytes, o.duration_s),
            delivered_mbps: mbps(s.window_bytes, o.window_s),
            delivered_kpps: s.window_frames as f64 / o.window_s / 1e3,
            delay_p50_us: q(0.5),
            delay_p99_us: q(0.99),
            jitter_us: s.jitter_us(),
            loss_pct: loss,
            ring_bytes_copied: copied as i64,
            copied_then_dropped_bytes: copied.saturating_sub(s.bytes) as i64,
            dropped_front: (g.dropped_queue + g.front.tx_dropped_credit) as i64,
            dropped_back: (back + s.dropped_police) as i64,
            dropped_nic: s.dropped_nic as i64,
            generator_skipped: g.skipped_frames as i64,
            delay_cdf_us: CDF_QUANTILES.iter().map(|&p| (p, q(p))).collect(),
            budget_bps: budget.map(|b| b.0),
            budget_pps: budget.and_then(|b| b.1),
            netns: None,
        });
    }
    let bin_s = BIN_NS as f64 / 1e9;
    let timeline_mbps: Vec<Vec<f64>> = o
        .nic
        .sinks
        .iter()
        .map(|s| {
            let n = (o.duration_s / bin_s).round() as usize;
            (0..n)
                .map(|b| mbps(s.bins_bytes.get(b).copied().unwrap_or(0), bin_s))
                .collect()
        })
        .collect();
    let spare = (spec.scenario == Scenario::Spare).then(|| spare_report(o, &timeline_mbps));
    RunReport {
        scenario: spec.scenario.name().into(),
        direction: if spec.scenario.is_rx() { "rx" } else { "tx" }.into(),
        policy: spec.policy.name().into(),
        period_ms: spec
            .policy
            .is_dba()
            .then(|| spec.period.map_or(20.0, |p| p.as_secs_f64() * 1e3)),
        duration_s: o.duration_s,
        window_s: o.window_s,
        backend_pps_limit: spec.backend_pps_limit,
        backend_cpu_s: o.backend.cpu_ns as f64 / 1e9,
        frontend_cpu_s: o.guests.iter().map(|g| g.cpu_ns).sum::<u64>() as f64 / 1e9,
        allocator_cpu_us_per_s: o.backend.allocator_cost_ns as f64 / 1e3 / o.duration_s,
        allocator_rounds: o.backend.allocator_rounds,
        backend_max_stall_ms: o.backend.max_stall_ns as f64 / 1e6,
        nic_queue_frames: spec.nic_queue_frames as i64,
        traffic: "mem".into(),
        delay_measured: true,
        nic_dropped_total: None,
        vms,
        timeline_bin_ms: bin_s * 1e3,
        timeline_mbps,
        spare,
        netns: None,
    }
}

fn spare_report(o: &RunOutcome, tl: &[Vec<f64>]) -> SpareReport {
    let d = o.duration_s;
    let bin_s = BIN_NS as f64 / 1e9;
    let (a, b) = (d / 3.0, 2.0 * d / 3.0);
    let avg = |vm: usize, from: f64, to: f64| {
        let (i, j) = (
            (from / bin_s) as usize,
            ((to / bin_s) as usize).min(tl[vm].len()),
        );
        if j > i {
            tl[vm][i..j].iter().sum::<f64>() / (j - i) as f64
        } else {
            0.0
        }
    };
    let sla2 = (SLA_BPS[1] / o.spec.scale) as f64 / 1e6;
    let start = (b / bin_s).ceil() as usize;
    let hold_bins = 5;
    let rec = (start..tl[1].len().saturating_sub(hold_bins))
        .find(|&i| tl[1][i..i + hold_bins].iter().sum::<f64>() / hold_bins as f64 >= 0.95 * sla2)
        .map(|i| (i - start) as f64 * bin_s * 1e3);
    SpareReport {
        vm2_idle_s: (a, b),
        vm1_vm3_idle_mbps: (avg(0, a + 0.1, b), avg(2, a + 0.1, b)),
        vm2_back_mbps: avg(1, b + 0.1, d),
        vm2_recovery_ms: rec,
    }
}

/// The paper's published numbers (from its text; the figures themselves are not in our
/// copy). `None` where the paper gives no number.
pub fn paper_mbps(scenario: &str, policy: &str, vm: usize) -> Option<&'static str> {
    match (scenario, policy, vm) {
        ("1500", "native", _) => Some("330"),
        ("1500", "tc", 0 | 2) => Some("≈150"),
        ("1500", "tc", 1) => Some("≈700"),
        ("1500", "dba-drop", 0 | 2) => Some("150"),
        ("1500", "dba-drop", 1) => Some("700"),
        ("mixed", "native", 0 | 2) => Some("50"),
        ("mixed", "native", 1) => Some("520"),
        ("mixed", "tc", _) => Some("< native"),
        ("mixed", "dba-drop", 0) => Some("9.1"),
        ("mixed", "dba-drop", 2) => Some("22"),
        ("mixed", "dba-drop", 1) => Some("slightly < 700"),
        _ => None,
    }
}

/// The paper's packet-rate statements.
pub fn paper_kpps(scenario: &str, policy: &str, vm: usize) -> Option<&'static str> {
    match (scenario, policy, vm) {
        ("mixed", "native" | "tc", _) => Some("Σ 190"),
        ("mixed", "dba-drop", 0) => Some("≤ 20"),
        ("mixed", "dba-drop", 2) => Some("≤ 60"),
        _ => None,
    }
}

/// The paper's delay statements (Fig. 6).
pub fn paper_delay(policy: &str, vm: usize) -> Option<&'static str> {
    match (policy, vm) {
        ("native" | "tc", 0) => Some("4 ms"),
        ("native" | "tc", 1) => Some("3 ms"),
        ("native" | "tc", 2) => Some("4 ms"),
        ("dba-drop", 0) => Some("6 ms"),
        ("dba-drop", 1) => Some("< 1 ms (jitter ≈ 0.5 ms)"),
        ("dba-drop", 2) => Some("1.6 ms"),
        _ => None,
    }
}

/// Evaluates the "what must hold" list on the runs (thresholds as in issue 7,
/// relative to the SLAs, so they follow `--scale`).
pub fn checks(runs: &[RunReport]) -> Vec<Check> {
    let find = |sc: &str, p: &str| runs.iter().find(|r| r.scenario == sc && r.policy == p);
    let mut out = Vec::new();
    for p in ["dba-drop", "dba-hold"] {
        if let Some(r) = find("1500", p) {
            let v = &r.vms;
            let nic: i64 = r
                .nic_dropped_total
                .unwrap_or_else(|| v.iter().map(|x| x.dropped_nic).sum());
            out.push(Check {
                what: format!(
                    "{p}, 1500: VM2 ≥ 98 % of its SLA (686 Mb/s), VM1 and VM3 ≥ 140/150 of theirs, no NIC drops"
                ),
                holds: v[1].delivered_mbps >= 0.98 * v[1].sla_mbps
                    && v[0].delivered_mbps >= 140.0 / 150.0 * v[0].sla_mbps
                    && v[2].delivered_mbps >= 140.0 / 150.0 * v[2].sla_mbps
                    && nic == 0,
                measured: format!(
                    "VM1 {:.1}, VM2 {:.1}, VM3 {:.1} Mb/s; NIC drops {nic}",
                    v[0].delivered_mbps, v[1].delivered_mbps, v[2].delivered_mbps
                ),
            });
        }
        if let Some(r) = find("mixed", p) {
            let v = &r.vms;
            out.push(Check {
                what: format!(
                    "{p}, mixed: VM1 and VM3 ≤ their Kp/s caps + 1 % (20.2, 60.6), VM2 ≥ 98 % of its SLA"
                ),
                holds: v[0].delivered_kpps <= 1.01 * v[0].sla_kpps
                    && v[2].delivered_kpps <= 1.01 * v[2].sla_kpps
                    && v[1].delivered_mbps >= 0.98 * v[1].sla_mbps,
                measured: format!(
                    "VM1 {:.2} Kp/s, VM3 {:.2} Kp/s, VM2 {:.1} Mb/s",
                    v[0].delivered_kpps, v[2].delivered_kpps, v[1].delivered_mbps
                ),
            });
        }
    }
    for sc in ["1500", "mixed", "spare"] {
        if let Some(r) = find(sc, "dba-drop") {
            let b: i64 = r.vms.iter().map(|x| x.copied_then_dropped_bytes).sum();
            out.push(Check {
                what: format!("dba-drop, {sc}: bytes copied then dropped = 0"),
                holds: b == 0,
                measured: format!("{b} bytes"),
            });
        }
        if let Some(r) = find(sc, "tc") {
            let dropped: i64 = r.vms.iter().map(|x| x.dropped_back).sum();
            let b: i64 = r.vms.iter().map(|x| x.copied_then_dropped_bytes).sum();
            out.push(Check {
                what: format!("tc, {sc}: every policed frame was copied first"),
                holds: dropped == 0 || b > 0,
                measured: format!("{dropped} frames policed, {b} bytes copied then dropped"),
            });
        }
    }
    out.extend(rx_checks(runs));
    out
}

/// One number of a VM's report.
type Metric = fn(&VmReport) -> f64;

/// The receive scenarios' checks (issue 15): `dba-drop` holds VM1 and VM3 to their
/// receive caps (bits/s in `rx-1500`, packets/s in `rx-mixed`, + 1 %) and gives VM2
/// ≥ 98 % of its minimum, copying nothing it drops; `tc` copies what it then drops.
pub fn rx_checks(runs: &[RunReport]) -> Vec<Check> {
    let find = |sc: &str, p: &str| runs.iter().find(|r| r.scenario == sc && r.policy == p);
    let mut out = Vec::new();
    let caps = [
        ("rx-1500", false, "≤ 101 % of their caps (151.5 Mb/s)"),
        ("rx-mixed", true, "≤ their Kp/s caps + 1 % (20.2, 60.6)"),
    ];
    for (sc, kpps, caps) in caps {
        let Some(r) = find(sc, "dba-drop") else {
            continue;
        };
        let v = &r.vms;
        let (unit, got, cap): (_, Metric, Metric) = if kpps {
            ("Kp/s", |x| x.delivered_kpps, |x| x.sla_kpps)
        } else {
            ("Mb/s", |x| x.delivered_mbps, |x| x.sla_mbps)
        };
        out.push(Check {
            what: format!(
                "dba-drop, {sc}: VM1 and VM3 receive {caps}, VM2 ≥ 98 % of its minimum (686 Mb/s)"
            ),
            holds: got(&v[0]) <= 1.01 * cap(&v[0])
                && got(&v[2]) <= 1.01 * cap(&v[2])
                && v[1].delivered_mbps >= 0.98 * v[1].sla_mbps,
            measured: format!(
                "VM1 {:.2} {unit}, VM3 {:.2} {unit}, VM2 {:.1} Mb/s",
                got(&v[0]),
                got(&v[2]),
                v[1].delivered_mbps
            ),
        });
    }
    let copies = [
        (
            "dba-drop",
            "netback dropped frames over the RX budget, 0 bytes copied for them",
            "frames dropped by netback",
        ),
        (
            "tc",
            "the policer after the copy dropped frames, all copied first (bytes copied > bytes delivered)",
            "frames policed",
        ),
    ];
    for sc in ["rx-1500", "rx-mixed"] {
        for (p, what, dropped_by) in copies {
            let Some(r) = find(sc, p) else {
                continue;
            };
            let b: i64 = r.vms.iter().map(|x| x.copied_then_dropped_bytes).sum();
            let dropped: i64 = r.vms.iter().map(|x| x.dropped_back).sum();
            out.push(Check {
                what: format!("{p}, {sc}: {what}"),
                holds: dropped > 0 && (b > 0) == (p == "tc"),
                measured: format!("{dropped} {dropped_by}, {b} bytes copied then dropped"),
            });
        }
    }
    out
}

/// `report.md`'s section for `--traffic netns` runs: each VM's frames along their path
/// and the CPU time of its parts (empty without such runs).
fn netns_accounting(runs: &[RunReport]) -> String {
    let with: Vec<&RunReport> = runs.iter().filter(|x| x.netns.is_some()).collect();
    if with.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Where the frames went (`--traffic netns`)\n\n\
         Frames over the whole iperf3 test. offered: the iperf3 client sent; guest kernel: \
         dropped before netfront read them (the TAP queue was full); admitted: put on the \
         ring by netfront; netfront: dropped for lack of credits (held: times a frame waited \
         for credits); backend: backstop or `tc` policer; backend TAP: written by netback, \
         dropped by the backend's kernel; NIC: the qdisc's drops, all VMs together; sink \
         rcvbuf: datagrams dropped at a full iperf3 server socket, all VMs together; \
         delivered and lost: the iperf3 server's counts. CPU s: user / system.\n\n\
         | scenario | policy | VM | offered | dropped guest kernel | admitted netfront | dropped netfront | held | dropped backend | dropped backend TAP | NIC (run) | sink rcvbuf (run) | delivered | lost | CPU iperf3 usr/sys | CPU netfront usr/sys | CPU netback / control / iperf3 servers |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in with {
        for (i, v) in run.vms.iter().enumerate() {
            let Some(n) = &v.netns else { continue };
            let first = i == 0;
            let pick = |x: String| if first { x } else { String::new() };
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} |\n",
                pick(run.scenario.clone()),
                pick(run.policy.clone()),
                v.name,
                n.offered,
                n.dropped_guest_kernel,
                n.admitted_netfront,
                n.dropped_netfront,
                n.held_netfront,
                n.dropped_backend,
                n.dropped_backend_tap,
                pick(run.nic_dropped_total.map_or("?".into(), |d| d.to_string())),
                pick(run.netns.as_ref().and_then(|c| c.sink_rcvbuf_errors).map_or("?".into(), |d| d.to_string())),
                n.delivered,
                n.lost,
                n.cpu_iperf3.user_s,
                n.cpu_iperf3.sys_s,
                n.cpu_netfront.user_s,
                n.cpu_netfront.sys_s,
                pick(run.netns.as_ref().map_or(String::new(), |c| format!(
                    "{:.2} / {:.2} / {:.2}",
                    run.backend_cpu_s,
                    c.cpu_backend_control.total_s(),
                    c.cpu_iperf3_servers.total_s()
                ))),
            );
        }
    }
    s + "\n"
}

/// The receive scenarios' reading guide in `report.md`.
const RX_NOTE: &str = "Receive direction: the NIC model's sender offers each VM frames at \
     line rate into its vif's queue in dom0 (tail drop: `drops … NIC`); netback copies them \
     into the guest, which counts what it received (delay: sender → guest). The same SLAs \
     as on TX, on what each VM receives. `tc`: a policer after the copy (the guest got the \
     frame, then it is dropped: `copied then dropped`); `dba-drop`: netback's RX budget \
     from the allocator, charged before the copy (`drops back`, never copied). The paper \
     has no receive experiment: no paper values.\n\n";

/// Renders `report.md`.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    s += "# DBA-VM reproduction report\n\n";
    s += &format!(
        "Machine: {} CPUs, kernel {}, load average {:.2} at the start (shared machine). \
         Quick: {}. Scale: 1/{} of the paper's rates. dba period: {} ms. \
         Allocator link: B_p = {:.2} Mb/s, buffer {}. Guest threads at nice {} \
         (netback at 0). netback keeps the tokens of its waits for a CPU: {}.\n\n",
        r.machine.cpus,
        r.machine.kernel,
        r.machine.loadavg_start,
        r.quick,
        r.scale,
        r.dba_period_ms,
        r.allocator_capacity_mbps,
        r.allocator_buffer.map_or_else(
            || "not given (bursts = rate × period)".to_string(),
            |b| format!(
                "{} packets / {} bytes (Σ bursts ≤ half of it)",
                b.packets, b.bytes
            )
        ),
        r.guest_nice,
        if r.credit_cpu_waits {
            "yes (--credit-cpu-waits)"
        } else {
            "no"
        },
    );
    if let Some(e) = &r.emulation {
        s += &format!("**EMULATION**: {e}\n\n");
    }
    if r.runs.iter().any(|x| x.traffic == "netns") {
        s += "Traffic: **netns** (guests are network namespaces with kernel stacks and iperf3 \
              UDP; the NIC is a `tbf` qdisc at line rate with the Ethernet overhead). \
              One-way delay is not measured (0 in the tables); jitter and loss come from \
              the iperf3 servers; NIC drops are only known per run (`nic_dropped_total` in \
              report.json), per-VM NIC drops show 0.\n\n";
    }
    s += "Rates are bits/s of frame bytes (dest MAC .. payload, `docs/protocol.md` §2.6), \
          delivered by the 1 Gb/s NIC model in the measurement window. Paper values are \
          those stated in its text (§III-C, §V); “—” = the paper gives no number.\n\n";
    for sc in Scenario::EVERY {
        let runs: Vec<&RunReport> = r.runs.iter().filter(|x| x.scenario == sc.name()).collect();
        if runs.is_empty() {
            continue;
        }
        s += &format!("## Scenario `{}`\n\n", sc.name());
        if sc.is_rx() {
            s += RX_NOTE;
        }
        s += "| policy | VM | bytes | Mb/s | paper Mb/s | Kp/s | paper Kp/s | delay p50 / p99 µs | paper delay | jitter µs | loss % | copied MB | copied then dropped MB | drops front / back / NIC | CPU back / front s |\n";
        s += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for run in &runs {
            for (i, v) in run.vms.iter().enumerate() {
                s += &format!(
                    "| {} | {} | {} | {:.1} | {} | {:.2} | {} | {:.0} / {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} / {} / {} | {} |\n",
                    if i == 0 { run.policy.as_str() } else { "" },
                    v.name,
                    v.packet_bytes,
                    v.delivered_mbps,
                    paper_mbps(&run.scenario, &run.policy, i).unwrap_or("—"),
                    v.delivered_kpps,
                    paper_kpps(&run.scenario, &run.policy, i).unwrap_or("—"),
                    v.delay_p50_us,
                    v.delay_p99_us,
                    if run.scenario == "mixed" {
                        paper_delay(&run.policy, i).unwrap_or("—")
                    } else {
                        "—"
                    },
                    v.jitter_us,
                    v.loss_pct,
                    v.ring_bytes_copied as f64 / 1e6,
                    v.copied_then_dropped_bytes as f64 / 1e6,
                    v.dropped_front,
                    v.dropped_back,
                    v.dropped_nic,
                    if i == 0 {
                        format!(
                            "{:.2} / {:.2} (netback stalled ≤ {:.0} ms)",
                            run.backend_cpu_s, run.frontend_cpu_s, run.backend_max_stall_ms
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
        s += "\n";
        if sc == Scenario::Spare {
            s += "Work conservation (VM2 idle during the middle third; VM1/VM3 have no SLA maximum here):\n\n";
            s += "| policy | VM1 / VM3 Mb/s while VM2 idle | VM2 Mb/s after its return | VM2 back to ≥ 95 % of its SLA after |\n|---|---:|---:|---:|\n";
            for run in &runs {
                if let Some(sp) = &run.spare {
                    s += &format!(
                        "| {} | {:.1} / {:.1} | {:.1} | {} |\n",
                        run.policy,
                        sp.vm1_vm3_idle_mbps.0,
                        sp.vm1_vm3_idle_mbps.1,
                        sp.vm2_back_mbps,
                        sp.vm2_recovery_ms
                            .map_or("never".to_string(), |m| format!("{m:.0} ms"))
                    );
                }
            }
            s += "\n";
        }
    }
    s += &netns_accounting(&r.runs);
    if !r.period_sweep.is_empty() {
        s += "## Readjustment-period sweep (`dba-drop`)\n\n";
        s += "Paper (Fig. 7/8): the daemon costs as much CPU as native at a 0.9 s period, and fewer memory transactions than native above 0.3 s.\n\n";
        s += "| period ms | scenario | allocator µs/s | backend CPU ms/s | bytes copied MB/s | delivered Mb/s VM1/VM2/VM3 |\n|---:|---|---:|---:|---:|---|\n";
        for p in &r.period_sweep {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
                p.period_ms,
                p.scenario,
                p.allocator_cpu_us_per_s,
                p.backend_cpu_ms_per_s,
                p.ring_mbytes_copied_per_s,
                p.delivered_mbps
                    .iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        if let Some(n) = r
            .runs
            .iter()
            .find(|x| x.policy == Policy::Native.name() && x.scenario == r.period_sweep[0].scenario)
        {
            let copied: i64 = n.vms.iter().map(|v| v.ring_bytes_copied).sum();
            s += &format!(
                "| native | {} | — | {:.1} | {:.1} | {} |\n",
                n.scenario,
                n.backend_cpu_s / n.duration_s * 1e3,
                copied as f64 / n.duration_s / 1e6,
                n.vms
                    .iter()
                    .map(|v| format!("{:.1}", v.delivered_mbps))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        s += "\n";
    }
    s += "## What must hold (issues 7 and 15), measured\n\n| check | holds | measured |\n|---|---|---|\n";
    for c in &r.checks {
        s += &format!(
            "| {} | {} | {} |\n",
            c.what,
            if c.holds { "yes" } else { "**no**" },
            c.measured
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report with one run, serialized and checked field by field against the schema
    /// of issue 7.
    #[test]
    fn schema_of_report_json() {
        let vm = VmReport {
            name: "VM1".into(),
            packet_bytes: 1500,
            sla_mbps: 150.0,
            sla_kpps: 20.0,
            offered_mbps: 984.0,
            delivered_mbps: 150.0,
            delivered_kpps: 12.5,
            delay_p50_us: 100.0,
            delay_p99_us: 900.0,
            jitter_us: 10.0,
            loss_pct: 84.0,
            ring_bytes_copied: 1_000_000,
            copied_then_dropped_bytes: 0,
            dropped_front: 5,
            dropped_back: 0,
            dropped_nic: 0,
            generator_skipped: 0,
            delay_cdf_us: vec![(0.5, 100.0)],
            budget_bps: Some(150_000_000),
            budget_pps: None,
            netns: None,
        };
        let r = Report {
            quick: true,
            machine: Machine {
                cpus: 2,
                kernel: "6.1".into(),
                loadavg_start: 1.0,
            },
            scale: 1,
            backend_pps_limit: None,
            emulation: None,
            dba_period_ms: 20.0,
            allocator_capacity_mbps: 984.25,
            allocator_buffer: Some(LinkBuffer {
                bytes: 1_500_000,
                packets: 1000,
            }),
            guest_nice: 5,
            credit_cpu_waits: false,
            runs: vec![RunReport {
                scenario: "1500".into(),
                direction: "tx".into(),
                policy: "native".into(),
                period_ms: None,
                duration_s: 1.0,
                window_s: 0.8,
                backend_pps_limit: None,
                backend_cpu_s: 0.5,
                frontend_cpu_s: 0.7,
                allocator_cpu_us_per_s: 0.0,
                allocator_rounds: 0,
                backend_max_stall_ms: 1.0,
                nic_queue_frames: 1000,
                traffic: "mem".into(),
                delay_measured: true,
                nic_dropped_total: None,
                vms: vec![vm],
                timeline_bin_ms: 10.0,
                timeline_mbps: vec![vec![1.0]],
                spare: None,
                netns: None,
            }],
            period_sweep: vec![SweepPoint {
                period_ms: 10.0,
                allocator_cpu_us_per_s: 3.0,
                backend_cpu_s: 0.4,
                ring_bytes_copied: 5,
                backend_cpu_ms_per_s: 400.0,
                ring_mbytes_copied_per_s: 1.0,
                scenario: "1500".into(),
                duration_s: 1.0,
                delivered_mbps: vec![1.0, 2.0, 3.0],
            }],
            checks: checks(&[]),
        };
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(v["quick"].is_boolean());
        assert!(v["machine"]["cpus"].is_i64());
        assert!(v["machine"]["kernel"].is_string());
        let run = &v["runs"][0];
        assert!(["1500", "mixed", "spare"].contains(&run["scenario"].as_str().unwrap()));
        assert!(["native", "netback-rate", "tc", "dba-drop", "dba-hold"]
            .contains(&run["policy"].as_str().unwrap()));
        assert!(run["period_ms"].is_null() || run["period_ms"].is_number());
        assert!(run["backend_pps_limit"].is_null() || run["backend_pps_limit"].is_number());
        for k in ["duration_s", "backend_cpu_s", "frontend_cpu_s"] {
            assert!(run[k].is_number(), "{k}");
        }
        let vm = &run["vms"][0];
        assert!(vm["name"].is_string());
        assert!(vm["packet_bytes"].is_i64());
        for k in [
            "sla_mbps",
            "sla_kpps",
            "offered_mbps",
            "delivered_mbps",
            "delivered_kpps",
            "delay_p50_us",
            "delay_p99_us",
            "jitter_us",
            "loss_pct",
        ] {
            assert!(vm[k].is_number(), "{k}");
        }
        for k in [
            "ring_bytes_copied",
            "dropped_front",
            "dropped_back",
            "dropped_nic",
        ] {
            assert!(vm[k].is_i64(), "{k}");
        }
        let p = &v["period_sweep"][0];
        for k in ["period_ms", "allocator_cpu_us_per_s", "backend_cpu_s"] {
            assert!(p[k].is_number(), "{k}");
        }
        assert!(p["ring_bytes_copied"].is_i64());
        // And markdown renders it.
        assert!(markdown(&r).contains("| native | VM1 |"));
        assert!(!markdown(&r).contains("Where the frames went"));
        let mut r2 = r.clone();
        r2.runs[0].netns = Some(NetnsRun::default());
        r2.runs[0].vms[0].netns = Some(NetnsVm {
            offered: 1000,
            dropped_guest_kernel: 10,
            admitted_netfront: 500,
            dropped_netfront: 490,
            delivered: 480,
            lost: 520,
            ..NetnsVm::default()
        });
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&r2).unwrap()).unwrap();
        assert_eq!(v["runs"][0]["vms"][0]["netns"]["dropped_netfront"], 490);
        assert!(v["runs"][0]["netns"]["cpu_backend_control"]["sys_s"].is_number());
        let md = markdown(&r2);
        assert!(
            md.contains(
                "| 1500 | native | VM1 | 1000 | 10 | 500 | 490 | 0 | 0 | 0 | ? | ? | 480 | 520 |"
            ),
            "{md}"
        );
    }
}
