//! The `paper` command: every scenario × policy, the period sweep, and the outputs.

use std::path::Path;
use std::time::Duration;

use crate::report::{checks, markdown, run_report, Machine, Report, SweepPoint};
use crate::run::run;
use crate::scenario::{Policy, RunSpec, Scenario};

/// Default nice value of the guest threads: the backend runs ahead of them
/// ([`RunSpec::guest_nice`]).
pub const DEFAULT_GUEST_NICE: i32 = 5;

/// Options of the `paper` command.
#[derive(Debug, Clone)]
pub struct PaperOptions {
    /// Short runs.
    pub quick: bool,
    /// Rates divided by this.
    pub scale: u64,
    /// Emulated backend packet rate.
    pub backend_pps_limit: Option<u64>,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Policies to run.
    pub policies: Vec<Policy>,
    /// Allocator period of the comparison runs.
    pub period: Duration,
    /// Periods of the sweep (empty: no sweep).
    pub sweep: Vec<Duration>,
    /// NIC transmit queue, frames.
    pub nic_queue_frames: usize,
    /// Kernel stacks and iperf3 in network namespaces instead of in-process generators.
    pub netns: bool,
    /// Allocator link capacity override, bits/s (unscaled).
    pub allocator_capacity_bps: Option<u64>,
    /// Tell the allocator the NIC queue's size ([`RunSpec::link_buffer`]).
    pub link_buffer: bool,
    /// netback keeps the tokens of its waits for a CPU ([`RunSpec::credit_cpu_waits`]).
    pub credit_cpu_waits: bool,
    /// Nice value of the guest threads ([`RunSpec::guest_nice`]).
    pub guest_nice: i32,
    /// Traffic duration of each comparison run (`None`: 4 s, 1 s with `quick`; `spare` ×1.5).
    pub duration: Option<Duration>,
}

impl PaperOptions {
    /// The defaults (`quick` shortens runs and the sweep).
    pub fn new(quick: bool) -> PaperOptions {
        let ms = Duration::from_millis;
        PaperOptions {
            quick,
            scale: 1,
            backend_pps_limit: None,
            scenarios: Scenario::ALL.to_vec(),
            policies: Policy::ALL.to_vec(),
            period: ms(20),
            sweep: if quick {
                vec![ms(10), ms(50), ms(250)]
            } else {
                vec![ms(10), ms(20), ms(50), ms(100), ms(300), ms(1000)]
            },
            duration: None,
            nic_queue_frames: 1000,
            allocator_capacity_bps: None,
            link_buffer: true,
            credit_cpu_waits: false,
            guest_nice: DEFAULT_GUEST_NICE,
            netns: false,
        }
    }

    /// The spec of one comparison run.
    pub fn spec(&self, scenario: Scenario, policy: Policy) -> RunSpec {
        let base = self.duration.unwrap_or(if self.quick {
            Duration::from_millis(1000)
        } else {
            Duration::from_secs(4)
        });
        let duration = if scenario == Scenario::Spare {
            base * 3 / 2
        } else {
            base
        };
        RunSpec {
            scenario,
            policy,
            period: policy.is_dba().then_some(self.period),
            duration,
            warmup: (duration / 4).min(Duration::from_secs(1)),
            scale: self.scale,
            backend_pps_limit: self.backend_pps_limit,
            nic_queue_frames: self.nic_queue_frames,
            guest_queue_frames: 1000,
            allocator_capacity_bps: self.allocator_capacity_bps,
            link_buffer: self.link_buffer,
            guest_nice: self.guest_nice,
            credit_cpu_waits: self.credit_cpu_waits,
        }
    }
}

fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get() as i64);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let loadavg_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpus,
        kernel,
        loadavg_start,
    }
}

/// Runs everything and writes `report.json`, `report.md` and the plots into `out`.
pub fn paper(opts: &PaperOptions, out: &Path) -> Result<Report, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let machine = machine();
    let emulation = opts.backend_pps_limit.map(|n| {
        format!(
            "backend packet rate limited to {n} p/s for all vifs together \
             (--backend-pps-limit, an emulation of a memory-bound driver domain such as the \
             paper's 190 Kp/s test bed; not a property of this netback)"
        )
    });
    if let Some(e) = &emulation {
        eprintln!("EMULATION: {e}");
    }
    if opts.netns {
        if let Some(why) = crate::kernel_traffic::unavailable() {
            return Err(format!("--traffic netns cannot run here: {why}"));
        }
        if let Some(sc) = opts.scenarios.iter().find(|s| s.is_rx()) {
            return Err(format!(
                "scenario {sc}: the receive scenarios run with in-process traffic only (drop --traffic netns)"
            ));
        }
    }
    let pairs: Vec<(Scenario, Policy)> = opts
        .scenarios
        .iter()
        .flat_map(|&sc| opts.policies.iter().map(move |&p| (sc, p)))
        .filter(|&(sc, p)| p.applies_to(sc))
        .collect();
    if pairs.is_empty() && !opts.scenarios.is_empty() && !opts.policies.is_empty() {
        return Err("no policy of --policies applies to --scenarios (the receive scenarios compare native, tc and dba-drop)".into());
    }
    let total = pairs.len() + opts.sweep.len();
    let mut k = 0;
    let mut runs = Vec::new();
    for &(sc, p) in &pairs {
        k += 1;
        let spec = opts.spec(sc, p);
        eprintln!(
            "[{k}/{total}] scenario {sc}, policy {p}{} ({:.1} s)",
            spec.period
                .map_or(String::new(), |d| format!(", period {} ms", d.as_millis())),
            spec.duration.as_secs_f64()
        );
        let r = if opts.netns {
            let o = crate::kernel_traffic::run_netns(&spec)
                .map_err(|e| format!("scenario {sc}, policy {p}: {e}"))?;
            crate::kernel_traffic::netns_report(&spec, o)
        } else {
            let o = run(&spec, &mut |l| eprintln!("    {l}"))
                .map_err(|e| format!("scenario {sc}, policy {p}: {e}"))?;
            run_report(&o)
        };
        for v in &r.vms {
            let delay = if r.delay_measured {
                format!(
                    "delay p50 {:.0} µs p99 {:.0} µs",
                    v.delay_p50_us, v.delay_p99_us
                )
            } else {
                format!("jitter {:.0} µs (iperf3)", v.jitter_us)
            };
            eprintln!(
                "    {}: {:.1} Mb/s {:.2} Kp/s, {delay}, loss {:.1} %",
                v.name, v.delivered_mbps, v.delivered_kpps, v.loss_pct
            );
        }
        runs.push(r);
    }
    let mut sweep = Vec::new();
    if opts.netns && !opts.sweep.is_empty() {
        eprintln!(
            "period sweep skipped: it runs with in-process traffic only (drop --traffic netns)"
        );
    }
    for &period in opts.sweep.iter().filter(|_| !opts.netns) {
        k += 1;
        let mut spec = opts.spec(Scenario::S1500, Policy::DbaDrop);
        spec.period = Some(period);
        spec.duration = spec.duration.max(period * 4);
        spec.warmup = (spec.duration / 4).max(period * 2).min(spec.duration / 2);
        eprintln!(
            "[{k}/{total}] period sweep: dba-drop, scenario 1500, period {} ms ({:.1} s)",
            period.as_millis(),
            spec.duration.as_secs_f64()
        );
        let o = run(&spec, &mut |l| eprintln!("    {l}"))
            .map_err(|e| format!("sweep {} ms: {e}", period.as_millis()))?;
        let r = run_report(&o);
        let copied: i64 = r.vms.iter().map(|v| v.ring_bytes_copied).sum();
        sweep.push(SweepPoint {
            period_ms: period.as_secs_f64() * 1e3,
            allocator_cpu_us_per_s: r.allocator_cpu_us_per_s,
            backend_cpu_s: r.backend_cpu_s,
            ring_bytes_copied: copied,
            backend_cpu_ms_per_s: r.backend_cpu_s / r.duration_s * 1e3,
            ring_mbytes_copied_per_s: copied as f64 / r.duration_s / 1e6,
            scenario: r.scenario.clone(),
            duration_s: r.duration_s,
            delivered_mbps: r.vms.iter().map(|v| v.delivered_mbps).collect(),
        });
    }
    let report = Report {
        quick: opts.quick,
        machine,
        scale: opts.scale,
        backend_pps_limit: opts.backend_pps_limit,
        emulation,
        dba_period_ms: opts.period.as_secs_f64() * 1e3,
        allocator_capacity_mbps: opts.spec(Scenario::S1500, Policy::DbaDrop).capacity_bps() as f64
            * opts.scale as f64
            / 1e6,
        allocator_buffer: opts.spec(Scenario::S1500, Policy::DbaDrop).link_buffer(),
        guest_nice: opts.guest_nice,
        credit_cpu_waits: opts.credit_cpu_waits,
        checks: checks(&runs),
        runs,
        period_sweep: sweep,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| format!("report.json: {e}"))?;
    std::fs::write(out.join("report.json"), json).map_err(|e| format!("report.json: {e}"))?;
    std::fs::write(out.join("report.md"), markdown(&report))
        .map_err(|e| format!("report.md: {e}"))?;
    match crate::plots::write_all(&report, out) {
        Ok(files) => eprintln!("plots: {} files", files.len()),
        Err(e) => eprintln!("plots not written: {e}"),
    }
    Ok(report)
}
