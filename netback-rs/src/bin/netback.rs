//! `netback`: the DBA-VM network backend daemon, and the toolstack commands of the
//! `local` platform.
//!
//! ```text
//! netback serve    [--platform local --hv-socket PATH | --platform xen] [--sla FILE]
//!                  [--metrics ADDR] ...
//! netback vif-add  --hv-socket PATH --frontend DOMID [--devid N] [--mac MAC]
//! netback vif-rm   --hv-socket PATH --frontend DOMID [--devid N]
//! netback sla set  --frontend DOMID [--devid N] [--priority C] [--min-bps R] [--max-bps R] [--vm-pps P]
//! netback sla show [--frontend DOMID [--devid N]] [--metrics URL]
//! netback sla rm   --frontend DOMID [--devid N] [--field KEY]...
//! netback top      [--metrics URL] [--interval 1s] [--once]
//! netback status   [--metrics URL] [--json]
//! ```
//!
//! Operator documentation: `docs/operations.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use hypervisor::clock;
use hypervisor::platform::{BackendPlatform, Services};
use netback::backend::PortFactory;
use netback::metrics::{MetricsServer, Publisher, SnapshotCell};
use netback::tapvif::TapFactory;
use netback::toolstack::{create_vif, destroy_vif, VifSpec};
use netback::{BackstopPolicy, Netback, NetbackConfig, VifId};
use netback_ops::interval::parse_interval;
use netback_ops::sla::{self, SlaUpdate, VifDir};
use netback_ops::{scrape, status, top};
use xen_ids::DomId;
use xenstore::XsClient;

#[derive(Parser)]
#[command(
    version,
    about = "DBA-VM netback: Xen netif backend with per-vif credits"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlatformKind {
    /// The local emulation (a `local-hypervisor` daemon).
    Local,
    /// Real Xen (/dev/xen/*, xenstored).
    Xen,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// Answer excess frames with NETIF_RSP_DROPPED, uncopied.
    Drop,
    /// Leave excess requests on the ring until tokens return.
    Hold,
}

impl From<Policy> for BackstopPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Drop => BackstopPolicy::Drop,
            Policy::Hold => BackstopPolicy::Hold,
        }
    }
}

#[derive(clap::Args)]
struct PlatformArgs {
    /// Which hypervisor interface to use.
    #[arg(long, value_enum, default_value = "local")]
    platform: PlatformKind,
    /// The local-hypervisor socket (platform local).
    #[arg(long, default_value = "/run/dba-vm/hypervisor.sock")]
    hv_socket: PathBuf,
    /// This domain's id (platform local; on Xen it is read from xenstore).
    #[arg(long, default_value = "0")]
    domid: DomId,
}

/// Which vif: `vif<frontend>.<devid>` under `backend/<backend-type>/`.
#[derive(clap::Args)]
struct VifArgs {
    /// The guest domain.
    #[arg(long)]
    frontend: DomId,
    /// Device id.
    #[arg(long, default_value_t = 0)]
    devid: u32,
    /// Backend device type directory.
    #[arg(long, default_value = "vif")]
    backend_type: String,
}

/// The toolstack keys `vif-add` writes as libxl would (docs/operations.md §2.1.1).
#[derive(clap::Args)]
struct VifKeyArgs {
    /// MTU (`mtu` key; default 1500).
    #[arg(long)]
    mtu: Option<String>,
    /// TX cap as libxl writes it: `<bytes>,<usec>` (`rate` key; `6250,50000` is xl's
    /// `rate=1Mb/s`).
    #[arg(long)]
    rate: Option<String>,
    /// Name of netback's interface for the vif (`vifname` key).
    #[arg(long)]
    vifname: Option<String>,
    /// The guest's addresses, space-separated (`ip` key).
    #[arg(long)]
    ip: Option<String>,
}

impl VifKeyArgs {
    /// Checks each value as netback will and sets it in `spec`; a bad value is an error
    /// and nothing is written.
    fn apply(self, spec: &mut VifSpec) -> Result<(), String> {
        use netback::vifconfig as vc;
        if let Some(m) = self.mtu {
            spec.mtu = vc::parse_mtu(m.as_bytes()).map_err(|e| e.to_string())?;
        }
        if let Some(r) = self.rate {
            let r = vc::parse_rate(r.as_bytes()).map_err(|e| e.to_string())?;
            let usec = u32::try_from(r.usec)
                .map_err(|_| format!("rate: interval {} µs is above libxl's", r.usec))?;
            spec.rate = Some((r.bytes, usec));
        }
        if let Some(n) = self.vifname {
            spec.vifname = Some(vc::parse_vifname(n.as_bytes()).map_err(|e| e.to_string())?);
        }
        if let Some(ip) = self.ip {
            vc::parse_ip(ip.as_bytes()).map_err(|e| e.to_string())?;
            spec.ip = Some(ip);
        }
        Ok(())
    }
}

impl VifArgs {
    fn vif(&self) -> VifId {
        VifId::new(self.frontend, self.devid)
    }

    /// The vif's backend directory under `backend`.
    fn dir(&self, backend: DomId) -> VifDir {
        VifDir::new(backend, self.backend_type.as_str(), self.vif())
    }

    /// What `vif-add` / `vif-rm` write or remove, with `backend` as the backend.
    fn spec(&self, backend: DomId) -> VifSpec {
        let mut spec = VifSpec::new(backend, self.frontend, self.devid);
        spec.backend_type = self.backend_type.clone();
        spec
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve every vif under this domain's backend directory.
    Serve {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Backend device type directory (`vif`, or another type a kernel netback ignores).
        #[arg(long, default_value = "vif")]
        backend_type: String,
        /// What the backstop does with excess guest frames.
        #[arg(long, value_enum, default_value = "drop")]
        policy: Policy,
        /// What the RX budget does with frames over it: `drop` (counted, never copied
        /// into the guest) or `hold` (the vif's TAP is not read until tokens return).
        #[arg(long, value_enum, default_value = "drop")]
        rx_policy: Policy,
        /// Do not offer the credit area (`feature-dba-credits`).
        #[arg(long)]
        no_credits: bool,
        /// TAP name for each vif without a `vifname` key; `{domid}` and `{devid}` are
        /// replaced.
        #[arg(long, default_value = "vif{domid}.{devid}")]
        tap_name: String,
        /// Bridge to attach each TAP to.
        #[arg(long)]
        bridge: Option<String>,
        /// MTU of the TAPs of vifs without an `mtu` key.
        #[arg(long, default_value_t = 1500)]
        mtu: u32,
        /// Run the DBA-VM allocator with the SLAs of this TOML file (docs/allocator.md);
        /// per-vif `dba-*` keys in xenstore override it live.
        #[arg(long)]
        sla: Option<PathBuf>,
        /// The allocator's readjustment period, ms.
        #[arg(long, default_value_t = 20)]
        period_ms: u64,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9101; off by default).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// The interval the metrics' per-second rates cover.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        metrics_interval: Duration,
        /// How long a frame may wait for a guest's RX buffers before the guest counts as
        /// stalled and its interface's carrier goes off until it posts more (Linux
        /// netback's `rx_stall_timeout`); `never`: a guest never counts as stalled.
        #[arg(long, default_value = "60s", value_parser = parse_stall_timeout)]
        rx_stall_timeout: StallTimeout,
        /// The backstops keep the tokens of the time a worker waited for a CPU (the
        /// kernel's run delay), instead of refusing frames a conforming frontend queued
        /// meanwhile. Off by default: after a long wait on a full link the NIC may then
        /// drop frames already copied (docs/protocol.md §2.4, "Stalls").
        #[arg(long)]
        credit_cpu_waits: bool,
        /// Data-path worker threads (each with its own epoll, serving the vifs placed
        /// on it). Default: the CPUs netback may run on (its affinity mask).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
        /// The most queues a guest's vif may have (`multi-queue-max-queues`, written for
        /// every vif; 1: one queue per vif). Default: the CPUs netback may run on (its
        /// affinity mask), as Linux's netback offers the driver domain's CPUs. Queue k of
        /// a vif is served by worker (w0 + k) mod --workers, w0 the vif's. A restarted
        /// netback takes every queue of a still-connected frontend over.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_queues: Option<u32>,
        /// Directory of the vifs' response journals (one small file per queue, kept in
        /// memory: use a tmpfs such as /run): what a netback killed in the middle of a
        /// batch leaves for the next one to take its guests over.
        #[arg(long, value_name = "DIR", default_value = "/run/netback")]
        journal_dir: PathBuf,
    },
    /// Set, show or remove a vif's SLA (its `dba-*` keys in xenstore; run as dom0).
    Sla {
        #[command(subcommand)]
        cmd: SlaCmd,
    },
    /// Live per-vif view of rates, budgets and drops, from the metrics endpoint.
    Top {
        /// The daemon's metrics endpoint.
        #[arg(long, default_value = DEFAULT_METRICS_URL)]
        metrics: String,
        /// Refresh interval (e.g. 1s, 500ms).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// Print one frame and exit (no screen clearing).
        #[arg(long)]
        once: bool,
    },
    /// Each vif's queues: the worker serving each and its frames and bytes both ways,
    /// from the metrics endpoint.
    Status {
        /// The daemon's metrics endpoint.
        #[arg(long, default_value = DEFAULT_METRICS_URL)]
        metrics: String,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Create a vif in xenstore, as a toolstack does (platform local, run as dom0).
    VifAdd {
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        vif: VifArgs,
        /// Guest MAC (default 00:16:3e:<domid>:<devid>).
        #[arg(long)]
        mac: Option<String>,
        #[command(flatten)]
        keys: VifKeyArgs,
    },
    /// Remove a vif from xenstore.
    VifRm {
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        vif: VifArgs,
    },
}

/// Where `top` and `sla show` look for the daemon's metrics by default.
const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:9101/metrics";

/// One of a vif's SLA keys, by its field name.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SlaField {
    /// `dba-priority`.
    Priority,
    /// `dba-min-bps`.
    MinBps,
    /// `dba-max-bps`.
    MaxBps,
    /// `dba-vm-pps`.
    VmPps,
    /// `dba-rx-min-bps`.
    RxMinBps,
    /// `dba-rx-max-bps`.
    RxMaxBps,
    /// `dba-rx-vm-pps`.
    RxVmPps,
}

impl From<SlaField> for sla::SlaField {
    fn from(f: SlaField) -> Self {
        match f {
            SlaField::Priority => sla::SlaField::Priority,
            SlaField::MinBps => sla::SlaField::MinBps,
            SlaField::MaxBps => sla::SlaField::MaxBps,
            SlaField::VmPps => sla::SlaField::VmPps,
            SlaField::RxMinBps => sla::SlaField::RxMinBps,
            SlaField::RxMaxBps => sla::SlaField::RxMaxBps,
            SlaField::RxVmPps => sla::SlaField::RxVmPps,
        }
    }
}

#[derive(Subcommand)]
enum SlaCmd {
    /// Write SLA keys of a vif (validated first: a bad value writes nothing).
    Set {
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        vif: VifArgs,
        /// Priority class C_i: 0 (highest) to 7 (lowest).
        #[arg(long, value_name = "CLASS", allow_hyphen_values = true)]
        priority: Option<String>,
        /// Guaranteed minimum B_i^min, bits/s of L2 frames (e.g. 150M).
        #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
        min_bps: Option<String>,
        /// Maximum B_i^max, bits/s of L2 frames (e.g. 700M).
        #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
        max_bps: Option<String>,
        /// Packets/s cap of the vif's VM (e.g. 20k); write the same on every vif of the VM.
        #[arg(long, value_name = "PPS", allow_hyphen_values = true)]
        vm_pps: Option<String>,
        /// Guaranteed receive minimum, bits/s of L2 frames delivered to the guest.
        #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
        rx_min_bps: Option<String>,
        /// Receive maximum, bits/s of L2 frames delivered to the guest.
        #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
        rx_max_bps: Option<String>,
        /// Receive packets/s cap of the vif's VM; write the same on every vif of the VM.
        #[arg(long, value_name = "PPS", allow_hyphen_values = true)]
        rx_vm_pps: Option<String>,
    },
    /// Print the SLA keys of vifs and, if the metrics endpoint answers, the live budget.
    Show {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Only the vifs of this guest domain.
        #[arg(long)]
        frontend: Option<DomId>,
        /// Only this device id (with --frontend).
        #[arg(long, requires = "frontend")]
        devid: Option<u32>,
        /// Backend device type directory.
        #[arg(long, default_value = "vif")]
        backend_type: String,
        /// The daemon's metrics endpoint, for live budgets (`none` to skip).
        #[arg(long, default_value = DEFAULT_METRICS_URL)]
        metrics: String,
    },
    /// Remove SLA keys of a vif (all of them unless --field is given).
    Rm {
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        vif: VifArgs,
        /// Only these keys (repeatable).
        #[arg(long, value_enum)]
        field: Vec<SlaField>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netback: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "local")]
fn local(p: &PlatformArgs) -> Result<xen_local::LocalPlatform, String> {
    xen_local::attach(&p.hv_socket, p.domid).map_err(|e| {
        format!(
            "attach to {} as domain {}: {e}",
            p.hv_socket.display(),
            p.domid
        )
    })
}

/// Without the `local` feature there is no local platform to attach to.
#[cfg(not(feature = "local"))]
fn local(_: &PlatformArgs) -> Result<hypervisor::platform::XenBackend, String> {
    Err(
        "this netback was built without the local platform (cargo feature `local`); \
         use --platform xen"
            .into(),
    )
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::VifAdd {
            platform,
            vif,
            mac,
            keys,
        } => {
            let mut spec = vif.spec(platform.domid);
            if let Some(m) = mac {
                spec.mac =
                    netback::vifconfig::parse_mac(m.as_bytes()).map_err(|e| e.to_string())?;
            }
            keys.apply(&mut spec)?;
            let p = local(&platform)?;
            create_vif(&p.xenstore, &spec).map_err(|e| format!("create vif: {e}"))?;
            println!("{}", spec.backend_path());
            Ok(())
        }
        Cmd::VifRm { platform, vif } => {
            let p = local(&platform)?;
            let spec = vif.spec(platform.domid);
            destroy_vif(&p.xenstore, &spec).map_err(|e| format!("remove vif: {e}"))
        }
        Cmd::Serve {
            platform,
            backend_type,
            policy,
            rx_policy,
            no_credits,
            tap_name,
            bridge,
            mtu,
            sla,
            period_ms,
            metrics,
            metrics_interval,
            rx_stall_timeout,
            credit_cpu_waits,
            workers,
            max_queues,
            journal_dir,
        } => {
            let alloc = match &sla {
                Some(path) => Some((
                    allocator::sla_file::load_sla_file(path)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                    allocator::LoopConfig::with_period(Duration::from_millis(period_ms)),
                )),
                None => None,
            };
            let cfg = NetbackConfig {
                backend_type,
                tx_policy: policy.into(),
                rx_policy: rx_policy.into(),
                credits: !no_credits,
                rx_stall_timeout_ns: rx_stall_timeout.0.map(|d| d.as_nanos() as u64),
                workers: workers.map_or_else(usable_cpus, usize::from),
                max_queues: Some(max_queues.unwrap_or_else(usable_cpus_u32)),
                journal_dir: Some(journal_dir),
                run_delay: credit_cpu_waits.then(hypervisor::cpu_wait::RunDelay::system),
                ..NetbackConfig::default()
            };
            let ports = tap_factory(tap_name, bridge, mtu, cfg.offered_queues() > 1);
            let opts = ServeOpts {
                alloc,
                sla_path: sla,
                metrics,
                metrics_interval,
            };
            match platform.platform {
                PlatformKind::Local => serve(local(&platform)?, cfg, ports, opts),
                PlatformKind::Xen => {
                    let p = Services::xen_backend().map_err(|e| e.to_string())?;
                    serve(p, cfg, ports, opts)
                }
            }
        }
        Cmd::Sla { cmd } => sla_cmd(cmd),
        Cmd::Top {
            metrics,
            interval,
            once,
        } => run_top(&metrics, interval, once),
        Cmd::Status { metrics, json } => {
            let s = scrape::scrape(&metrics, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            let st = status::status(&s);
            if json {
                println!("{}", status::to_json(&st, &metrics));
            } else {
                print!("{}", status::render(&st, &metrics));
            }
            Ok(())
        }
    }
}

/// `--rx-stall-timeout`: an interval, or `never` (`None`).
#[derive(Clone, Copy, Debug)]
struct StallTimeout(Option<Duration>);

fn parse_stall_timeout(text: &str) -> Result<StallTimeout, netback_ops::interval::IntervalError> {
    if text.trim() == "never" {
        return Ok(StallTimeout(None));
    }
    parse_interval(text).map(|d| StallTimeout(Some(d)))
}

/// The CPUs this process may run on (`sched_getaffinity`, as the standard library
/// reads it, bounded by a cgroup CPU quota); 1 if unknown.
fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// [`usable_cpus`] as a queue count.
fn usable_cpus_u32() -> u32 {
    u32::try_from(usable_cpus()).unwrap_or(u32::MAX)
}

fn tap_factory(
    template: String,
    bridge: Option<String>,
    mtu: u32,
    multi_queue: bool,
) -> Box<dyn PortFactory + Send> {
    Box::new(TapFactory {
        template,
        bridge,
        mtu,
        multi_queue,
        ..TapFactory::default()
    })
}

/// What `serve` runs besides the data path.
struct ServeOpts {
    alloc: Option<(allocator::SlaSet, allocator::LoopConfig)>,
    /// The SLA file, re-read on SIGHUP.
    sla_path: Option<PathBuf>,
    metrics: Option<String>,
    metrics_interval: Duration,
}

fn serve<P: BackendPlatform + Sync>(
    p: P,
    cfg: NetbackConfig,
    ports: Box<dyn PortFactory + Send>,
    opts: ServeOpts,
) -> Result<(), String>
where
    P::Xenstore: xenstore::ShareConnection,
{
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(|e| format!("signal: {e}"))?;
    let (workers, queues) = (cfg.workers, cfg.offered_queues());
    let mut nb = Netback::new(p, cfg, ports, clock::system()).map_err(|e| format!("start: {e}"))?;
    log::info!("netback: {workers} data-path workers, up to {queues} queues per vif");
    if let Some((slas, lc)) = opts.alloc {
        nb.enable_allocator(slas, lc).map_err(|e| e.to_string())?;
        log::info!("netback: allocator on, period {:?}", lc.period);
    }
    // The server thread only reads snapshots; it lives until the daemon exits.
    let mut publisher = None;
    let _server = match &opts.metrics {
        Some(addr) => {
            let cell = SnapshotCell::new();
            let server = MetricsServer::start(addr, cell.clone())
                .map_err(|e| format!("metrics on {addr}: {e}"))?;
            // Tests and scripts read this line to learn the port when ADDR ends in :0.
            log::info!("netback: metrics on http://{}/metrics", server.local_addr());
            publisher = Some(Publisher::new(opts.metrics_interval, cell));
            Some(server)
        }
        None => None,
    };
    log::info!("netback: serving");
    nb.run(Duration::from_millis(100), |nb| {
        if reload.swap(false, Ordering::Relaxed) {
            reload_slas(nb, opts.sla_path.as_deref());
        }
        if let Some(p) = &mut publisher {
            p.tick(nb, nb.now());
        }
        stop.load(Ordering::Relaxed)
    })
    .map_err(|e| e.to_string())?;
    log::info!("netback: stopping; {:?}", nb.loop_stats());
    Ok(())
}

/// SIGHUP: re-reads the SLA file; on any error the SLAs in force stay.
fn reload_slas<P: BackendPlatform>(nb: &mut Netback<P>, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        log::warn!("netback: SIGHUP: no --sla file to reload");
        return;
    };
    match allocator::sla_file::load_sla_file(path) {
        Ok(set) => {
            nb.set_slas(set);
            log::info!("netback: SIGHUP: reloaded SLAs from {}", path.display());
        }
        Err(e) => log::error!(
            "netback: SIGHUP: {}: {e}; keeping the SLAs in force",
            path.display()
        ),
    }
}

/// A xenstore connection as the toolstack domain, and that domain's id.
fn toolstack_xs(p: &PlatformArgs) -> Result<(XsClient, DomId), String> {
    match p.platform {
        PlatformKind::Local => Ok((local(p)?.xenstore, p.domid)),
        PlatformKind::Xen => {
            let xs = XsClient::open_default().map_err(|e| format!("xenstore: {e}"))?;
            let d = hypervisor::platform::driver_domid(&xs)
                .map_err(|e| format!("our domain id: {e}"))?;
            Ok((xs, d))
        }
    }
}

fn sla_cmd(cmd: SlaCmd) -> Result<(), String> {
    match cmd {
        SlaCmd::Set {
            platform,
            vif,
            priority,
            min_bps,
            max_bps,
            vm_pps,
            rx_min_bps,
            rx_max_bps,
            rx_vm_pps,
        } => {
            let update = SlaUpdate {
                priority,
                min_bps,
                max_bps,
                vm_pps,
                rx_min_bps,
                rx_max_bps,
                rx_vm_pps,
            };
            let fail = |e: sla::SlaError| format!("sla set: {e}");
            // Before connecting: a bad value is reported as such wherever this runs.
            update.check(vif.vif()).map_err(fail)?;
            let (xs, backend) = toolstack_xs(&platform)?;
            let report = sla::set(&xs, &vif.dir(backend), &update).map_err(fail)?;
            for (k, v) in &report.written {
                println!("{}/{k} = {v}", report.dir);
            }
            for m in &report.vm_cap_mismatches {
                eprintln!("netback: warning: {m}");
            }
            Ok(())
        }
        SlaCmd::Rm {
            platform,
            vif,
            field,
        } => {
            let (xs, backend) = toolstack_xs(&platform)?;
            let at = vif.dir(backend);
            let fields: Vec<sla::SlaField> = field.into_iter().map(Into::into).collect();
            let removed = sla::remove(&xs, &at, &fields).map_err(|e| format!("sla rm: {e}"))?;
            if removed.is_empty() {
                println!("{}: no such SLA key; nothing removed", at.path());
            }
            for p in removed {
                println!("removed {p}");
            }
            Ok(())
        }
        SlaCmd::Show {
            platform,
            frontend,
            devid,
            backend_type,
            metrics,
        } => {
            let (xs, backend) = toolstack_xs(&platform)?;
            let fail = |e: sla::SlaError| format!("sla show: {e}");
            let vifs = sla::list(&xs, backend, &backend_type, frontend, devid).map_err(fail)?;
            if vifs.is_empty() {
                println!("no vif under {}", sla::type_dir(backend, &backend_type));
                return Ok(());
            }
            let live = live_samples(&metrics);
            for at in vifs {
                print!("{}", sla::show(&xs, &at, live.as_deref()).map_err(fail)?);
            }
            Ok(())
        }
    }
}

/// A scrape of the daemon for `sla show` (`none`: not asked; a failure is printed).
fn live_samples(url: &str) -> Option<Vec<netback_ops::Sample>> {
    if url == "none" {
        return None;
    }
    match scrape::scrape(url, Duration::from_secs(2)) {
        Ok(s) => Some(s),
        Err(e) => {
            println!("(live budgets unavailable: {e})");
            None
        }
    }
}

/// `netback top`.
fn run_top(url: &str, interval: Duration, once: bool) -> Result<(), String> {
    use std::io::Write as _;
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    if once {
        let s = scrape::scrape(url, timeout).map_err(|e| e.to_string())?;
        print!("{}", top::render(&top::frame(&s), url));
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let mut stdout = std::io::stdout();
    while !stop.load(Ordering::Relaxed) {
        let body = match scrape::scrape(url, timeout) {
            Ok(s) => top::render(&top::frame(&s), url),
            Err(e) => format!("netback top — {url}\n{e}\n(retrying every {interval:?})\n"),
        };
        // Home, clear screen, frame.
        if write!(stdout, "\x1b[H\x1b[2J{body}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break; // stdout closed
        }
        let until = std::time::Instant::now() + interval;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The values of the `NETBACK_ARGS="..."` assignments in `text`.
    fn netback_args(text: &str) -> Vec<&str> {
        text.split("NETBACK_ARGS=\"")
            .skip(1)
            .filter_map(|rest| rest.split_once('"').map(|(args, _)| args))
            .collect()
    }

    /// What the packaged systemd unit (`ExecStart=netback $NETBACK_ARGS`, split at
    /// whitespace) runs with the flags the docs and the packaged `/etc/default/dba-netback`
    /// give must be a `serve` on Xen that clap accepts; the docs' examples use an SLA file.
    #[test]
    fn the_documented_netback_args_are_a_valid_serve_command_line() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let unit_file = "packaging/xen-dba-netback/dba-netback.service";
        let unit = std::fs::read_to_string(root.join(unit_file)).expect("the systemd unit");
        assert!(unit.contains("ExecStart=/usr/sbin/netback $NETBACK_ARGS\n"));
        assert!(unit.contains("EnvironmentFile=-/etc/default/dba-netback\n"));
        let default_file = "packaging/xen-dba-netback/default";
        for file in ["docs/operations.md", unit_file, default_file] {
            let text = std::fs::read_to_string(root.join(file)).expect(file);
            let found = netback_args(&text);
            assert!(!found.is_empty(), "{file}: no NETBACK_ARGS example");
            for args in found {
                let argv = std::iter::once("netback").chain(args.split_whitespace());
                let cli = Cli::try_parse_from(argv)
                    .unwrap_or_else(|e| panic!("{file}: NETBACK_ARGS=\"{args}\":\n{e}"));
                let Cmd::Serve { platform, sla, .. } = cli.cmd else {
                    panic!("{file}: NETBACK_ARGS=\"{args}\" is not `serve`");
                };
                assert!(matches!(platform.platform, PlatformKind::Xen), "{args}");
                assert!(file == default_file || sla.is_some(), "{args}");
            }
        }
        // The package's default: every vif served as the xl configuration says, rate=
        // as under the kernel's netback.
        let text = std::fs::read_to_string(root.join(default_file)).expect(default_file);
        assert!(text.contains("\nNETBACK_ARGS=\"serve --platform xen --policy hold\"\n"));
    }
}
