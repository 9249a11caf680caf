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
//! ```
//!
//! Operator documentation: `docs/operations.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use allocator::rate::RateText;
use allocator::xenstore::{
    parse_vif_keys, VifKeyValues, KEYS, KEY_MAX_BPS, KEY_MIN_BPS, KEY_PRIORITY, KEY_VM_PPS,
};
use clap::{Parser, Subcommand, ValueEnum};
use hypervisor::clock;
use hypervisor::platform::{BackendPlatform, Services};
use netback::backend::PortFactory;
use netback::metrics::{self, MetricsServer, Publisher, Sample, SnapshotCell};
use netback::toolstack::{create_vif, destroy_vif, VifSpec};
use netback::{BackstopPolicy, Netback, NetbackConfig, VifId};
use netport::{Port, TapConfig, TapOffload, TapPort};
use xen_ids::DomId;
use xenstore::{with_transaction, Xenstore, XsClient, XsTx};

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
        /// Do not offer the credit area (`feature-dba-credits`).
        #[arg(long)]
        no_credits: bool,
        /// TAP name for each vif; `{domid}` and `{devid}` are replaced.
        #[arg(long, default_value = "vif{domid}.{devid}")]
        tap_name: String,
        /// Bridge to attach each TAP to.
        #[arg(long)]
        bridge: Option<String>,
        /// MTU of the TAPs.
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
        #[arg(long, default_value = "1s", value_parser = netback::top::parse_interval)]
        metrics_interval: Duration,
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
        #[arg(long, default_value = "1s", value_parser = netback::top::parse_interval)]
        interval: Duration,
        /// Print one frame and exit (no screen clearing).
        #[arg(long)]
        once: bool,
    },
    /// Create a vif in xenstore, as a toolstack does (platform local, run as dom0).
    VifAdd {
        #[command(flatten)]
        platform: PlatformArgs,
        /// The guest domain.
        #[arg(long)]
        frontend: u16,
        /// Device id.
        #[arg(long, default_value_t = 0)]
        devid: u32,
        /// Guest MAC (default 00:16:3e:<domid>:<devid>).
        #[arg(long)]
        mac: Option<String>,
        /// Backend device type directory.
        #[arg(long, default_value = "vif")]
        backend_type: String,
    },
    /// Remove a vif from xenstore.
    VifRm {
        #[command(flatten)]
        platform: PlatformArgs,
        /// The guest domain.
        #[arg(long)]
        frontend: u16,
        /// Device id.
        #[arg(long, default_value_t = 0)]
        devid: u32,
        /// Backend device type directory.
        #[arg(long, default_value = "vif")]
        backend_type: String,
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
}

impl SlaField {
    fn key(self) -> &'static str {
        match self {
            SlaField::Priority => KEY_PRIORITY,
            SlaField::MinBps => KEY_MIN_BPS,
            SlaField::MaxBps => KEY_MAX_BPS,
            SlaField::VmPps => KEY_VM_PPS,
        }
    }
}

#[derive(Subcommand)]
enum SlaCmd {
    /// Write SLA keys of a vif (validated first: a bad value writes nothing).
    Set {
        #[command(flatten)]
        platform: PlatformArgs,
        /// The guest domain.
        #[arg(long)]
        frontend: u16,
        /// Device id.
        #[arg(long, default_value_t = 0)]
        devid: u32,
        /// Backend device type directory.
        #[arg(long, default_value = "vif")]
        backend_type: String,
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
    },
    /// Print the SLA keys of vifs and, if the metrics endpoint answers, the live budget.
    Show {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Only the vifs of this guest domain.
        #[arg(long)]
        frontend: Option<u16>,
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
        /// The guest domain.
        #[arg(long)]
        frontend: u16,
        /// Device id.
        #[arg(long, default_value_t = 0)]
        devid: u32,
        /// Backend device type directory.
        #[arg(long, default_value = "vif")]
        backend_type: String,
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
            frontend,
            devid,
            mac,
            backend_type,
        } => {
            let p = local(&platform)?;
            let mut spec = VifSpec::new(platform.domid, DomId(frontend), devid);
            spec.backend_type = backend_type;
            if let Some(m) = mac {
                spec.mac = hypervisor::xenbus::parse_mac(&m).ok_or(format!("bad MAC {m:?}"))?;
            }
            create_vif(&p.xenstore, &spec).map_err(|e| format!("create vif: {e}"))?;
            println!("{}", spec.backend_path());
            Ok(())
        }
        Cmd::VifRm {
            platform,
            frontend,
            devid,
            backend_type,
        } => {
            let p = local(&platform)?;
            let mut spec = VifSpec::new(platform.domid, DomId(frontend), devid);
            spec.backend_type = backend_type;
            destroy_vif(&p.xenstore, &spec).map_err(|e| format!("remove vif: {e}"))
        }
        Cmd::Serve {
            platform,
            backend_type,
            policy,
            no_credits,
            tap_name,
            bridge,
            mtu,
            sla,
            period_ms,
            metrics,
            metrics_interval,
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
                tx_policy: match policy {
                    Policy::Drop => BackstopPolicy::Drop,
                    Policy::Hold => BackstopPolicy::Hold,
                },
                credits: !no_credits,
                ..NetbackConfig::default()
            };
            let ports = tap_factory(tap_name, bridge, mtu);
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
        Cmd::Sla { cmd } => sla(cmd),
        Cmd::Top {
            metrics,
            interval,
            once,
        } => top(&metrics, interval, once),
    }
}

/// Our domain id on Xen: the `domid` key of our own xenstore home (dom0 has none).
fn own_domid<X: Xenstore>(xs: &X) -> DomId {
    hypervisor::platform::own_domid(xs).unwrap_or(DomId::DOM0)
}

fn tap_factory(template: String, bridge: Option<String>, mtu: u32) -> Box<dyn PortFactory> {
    Box::new(
        move |id: VifId, _mac: [u8; 6]| -> std::io::Result<Box<dyn Port>> {
            let name = template
                .replace("{domid}", &id.domid.0.to_string())
                .replace("{devid}", &id.devid.to_string());
            let mut cfg = TapConfig::new(&name);
            cfg.mtu = Some(mtu);
            cfg.bridge = bridge.clone();
            cfg.offload = TapOffload {
                csum: true,
                tso: false,
            };
            let tap = TapPort::open(&cfg)?;
            log::info!("{id}: port {}", tap.name());
            Ok(Box::new(tap))
        },
    )
}

/// What `serve` runs besides the data path.
struct ServeOpts {
    alloc: Option<(allocator::SlaSet, allocator::LoopConfig)>,
    /// The SLA file, re-read on SIGHUP.
    sla_path: Option<PathBuf>,
    metrics: Option<String>,
    metrics_interval: Duration,
}

fn serve<P: BackendPlatform>(
    p: P,
    cfg: NetbackConfig,
    ports: Box<dyn PortFactory>,
    opts: ServeOpts,
) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(|e| format!("signal: {e}"))?;
    let mut nb = Netback::new(p, cfg, ports, clock::system()).map_err(|e| format!("start: {e}"))?;
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
    .map_err(|e| format!("event loop: {e}"))?;
    log::info!("netback: stopping");
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
            let d = own_domid(&xs);
            Ok((xs, d))
        }
    }
}

/// A vif's backend directory, checked to exist.
fn vif_dir(
    xs: &XsClient,
    backend: u16,
    backend_type: &str,
    frontend: u16,
    devid: u32,
) -> Result<String, String> {
    let dir = format!("/local/domain/{backend}/backend/{backend_type}/{frontend}/{devid}");
    match xs.try_read(XsTx::NONE, &format!("{dir}/frontend-id")) {
        Ok(Some(_)) => Ok(dir),
        Ok(None) => Err(format!(
            "no vif{frontend}.{devid}: {dir} does not exist (create the vif first: `netback vif-add` or the toolstack)"
        )),
        Err(e) => Err(format!("read {dir}: {e}")),
    }
}

/// The SLA keys present in `dir`.
fn read_keys(xs: &XsClient, dir: &str) -> Result<Vec<(&'static str, String)>, String> {
    let mut out = Vec::new();
    for k in KEYS {
        let path = format!("{dir}/{k}");
        if let Some(v) = xs
            .try_read(XsTx::NONE, &path)
            .map_err(|e| format!("read {path}: {e}"))?
        {
            out.push((k, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    Ok(out)
}

fn lookup<'a>(kv: &'a [(&'static str, String)]) -> impl FnMut(&str) -> Option<&'a str> {
    move |k| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
}

fn sla(cmd: SlaCmd) -> Result<(), String> {
    match cmd {
        SlaCmd::Set {
            platform,
            frontend,
            devid,
            backend_type,
            priority,
            min_bps,
            max_bps,
            vm_pps,
        } => {
            let new: Vec<(&'static str, String)> = [
                (KEY_PRIORITY, priority),
                (KEY_MIN_BPS, min_bps),
                (KEY_MAX_BPS, max_bps),
                (KEY_VM_PPS, vm_pps),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?.trim().to_string())))
            .collect();
            if new.is_empty() {
                return Err(
                    "sla set: give at least one of --priority, --min-bps, --max-bps, --vm-pps"
                        .into(),
                );
            }
            let vif = allocator::VifId::new(xen_ids::DomId(frontend), devid);
            // The values given, alone: an error names the field the operator typed.
            parse_vif_keys(
                vif,
                &VifKeyValues::read_with(lookup(&new)),
                allocator::VifSla::BEST_EFFORT,
            )
            .map_err(|e| format!("sla set: {e}; nothing written"))?;
            let (xs, backend) = toolstack_xs(&platform)?;
            let dir = vif_dir(&xs, backend.0, &backend_type, frontend, devid)?;
            // Combined with the keys already there (e.g. a new minimum above the maximum).
            let mut merged = read_keys(&xs, &dir)?;
            merged.retain(|(k, _)| !new.iter().any(|(n, _)| n == k));
            merged.extend(new.iter().cloned());
            parse_vif_keys(
                vif,
                &VifKeyValues::read_with(lookup(&merged)),
                allocator::VifSla::BEST_EFFORT,
            )
            .map_err(|e| {
                format!("sla set: with the keys already in {dir}: {e}; nothing written")
            })?;
            with_transaction(&xs, |tx| {
                for (k, v) in &new {
                    xs.write(tx, &format!("{dir}/{k}"), v.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|e| format!("sla set: write {dir}: {e}"))?;
            for (k, v) in &new {
                println!("{dir}/{k} = {v}");
            }
            if let Some((_, pps)) = new.iter().find(|(k, _)| *k == KEY_VM_PPS) {
                warn_vm_pps_siblings(&xs, &dir, frontend, devid, pps);
            }
            Ok(())
        }
        SlaCmd::Rm {
            platform,
            frontend,
            devid,
            backend_type,
            field,
        } => {
            let keys: Vec<&str> = if field.is_empty() {
                KEYS.to_vec()
            } else {
                field.iter().map(|f| f.key()).collect()
            };
            let (xs, backend) = toolstack_xs(&platform)?;
            let dir = vif_dir(&xs, backend.0, &backend_type, frontend, devid)?;
            let removed = with_transaction(&xs, |tx| {
                let mut removed = Vec::new();
                for k in &keys {
                    let path = format!("{dir}/{k}");
                    if xs.try_read(tx, &path)?.is_some() {
                        xs.rm(tx, &path)?;
                        removed.push(path);
                    }
                }
                Ok(removed)
            })
            .map_err(|e| format!("sla rm: {dir}: {e}"))?;
            if removed.is_empty() {
                println!("{dir}: no such SLA key; nothing removed");
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
            let root = format!("/local/domain/{backend}/backend/{backend_type}");
            let list = |path: &str| -> Result<Vec<String>, String> {
                match xs.directory(XsTx::NONE, path) {
                    Ok(d) => Ok(d),
                    Err(e) if e.is_enoent() => Ok(Vec::new()),
                    Err(e) => Err(format!("list {path}: {e}")),
                }
            };
            let mut vifs: Vec<(u16, u32)> = Vec::new();
            let domids: Vec<u16> = match frontend {
                Some(d) => vec![d],
                None => list(&root)?.iter().filter_map(|d| d.parse().ok()).collect(),
            };
            for d in domids {
                match devid {
                    Some(i) => vifs.push((d, i)),
                    None => vifs.extend(
                        list(&format!("{root}/{d}"))?
                            .iter()
                            .filter_map(|i| i.parse().ok())
                            .map(|i| (d, i)),
                    ),
                }
            }
            vifs.sort_unstable();
            if vifs.is_empty() {
                println!("no vif under {root}");
                return Ok(());
            }
            let live = if metrics == "none" {
                None
            } else {
                match metrics::scrape(&metrics, Duration::from_secs(2)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        println!("(live budgets unavailable: {e})");
                        None
                    }
                }
            };
            for (d, i) in vifs {
                let dir = vif_dir(&xs, backend.0, &backend_type, d, i)?;
                print!("{}", show_vif(&xs, &dir, d, i, live.as_deref())?);
            }
            Ok(())
        }
    }
}

/// The VM cap is per VM but written per vif: warns about the domain's other vifs whose
/// `dba-vm-pps` differs from `pps` (the daemon applies the smallest).
fn warn_vm_pps_siblings(xs: &XsClient, dir: &str, frontend: u16, devid: u32, pps: &str) {
    let Some(parent) = dir.rsplit_once('/').map(|(p, _)| p) else {
        return;
    };
    let Ok(siblings) = xs.directory(XsTx::NONE, parent) else {
        return;
    };
    let ours = allocator::rate::parse_rate(pps, allocator::rate::MAX_PPS).ok();
    for d in siblings.iter().filter(|d| **d != devid.to_string()) {
        let path = format!("{parent}/{d}/{KEY_VM_PPS}");
        let theirs = match xs.try_read(XsTx::NONE, &path) {
            Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
            Ok(None) => "(absent)".to_string(),
            Err(_) => continue,
        };
        if allocator::rate::parse_rate(&theirs, allocator::rate::MAX_PPS).ok() != ours {
            eprintln!(
                "netback: warning: vif{frontend}.{d} has {KEY_VM_PPS} = {theirs}; a VM's cap \
                 should be the same on all its vifs (the smallest applies)"
            );
        }
    }
}

/// One vif's block of `sla show`.
fn show_vif(
    xs: &XsClient,
    dir: &str,
    domid: u16,
    devid: u32,
    live: Option<&[Sample]>,
) -> Result<String, String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = format!("vif{domid}.{devid}");
    let _ = writeln!(out, "{name}  ({dir})");
    let keys = read_keys(xs, dir)?;
    if keys.is_empty() {
        let _ = writeln!(
            out,
            "  no dba-* keys: the daemon's SLA file / default SLA applies"
        );
    }
    for (k, v) in &keys {
        let _ = writeln!(out, "  {k:<13} {v}");
    }
    if let Err(e) = parse_vif_keys(
        allocator::VifId::new(xen_ids::DomId(domid), devid),
        &VifKeyValues::read_with(lookup(&keys)),
        allocator::VifSla::BEST_EFFORT,
    ) {
        let _ = writeln!(
            out,
            "  INVALID: {e} (the daemon keeps the vif's previous SLA)"
        );
    }
    if let Some(samples) = live {
        let get = |n: &str| {
            samples
                .iter()
                .find(|s| s.name == n && s.label("vif") == Some(name.as_str()))
                .map(|s| s.value)
        };
        let rate = |v: Option<f64>, unit: &str| match v {
            Some(x) if x.is_finite() && x >= 0.0 => format!("{}{unit}", RateText(x as u64)),
            _ => "unlimited".into(),
        };
        use metrics::name as m;
        if get(m::VIF_CONNECTED).is_none() {
            let _ = writeln!(out, "  live: not known to the daemon");
        } else if get(m::VIF_BUDGET_BPS).is_none() {
            let _ = writeln!(
                out,
                "  live: no budget (allocator off, or the vif is not connected yet)"
            );
        } else {
            let _ = writeln!(
                out,
                "  live budget: {}, {} (burst {} B, {} packets)",
                rate(get(m::VIF_BUDGET_BPS), " b/s"),
                rate(get(m::VIF_BUDGET_PPS), " p/s"),
                get(m::VIF_BUDGET_BURST_BYTES).unwrap_or(0.0),
                get(m::VIF_BUDGET_BURST_PACKETS).map_or("unlimited".into(), |x| x.to_string()),
            );
        }
        if let Some(p) = get(m::VIF_SLA_PRIORITY) {
            let _ = writeln!(
                out,
                "  SLA in force: class {p}, min {}, max {}",
                rate(get(m::VIF_SLA_MIN_BPS), " b/s"),
                rate(get(m::VIF_SLA_MAX_BPS), " b/s"),
            );
        }
    }
    Ok(out)
}

/// `netback top`.
fn top(url: &str, interval: Duration, once: bool) -> Result<(), String> {
    use std::io::Write as _;
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    if once {
        let s = metrics::scrape(url, timeout).map_err(|e| e.to_string())?;
        print!("{}", netback::top::render(&netback::top::frame(&s), url));
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let mut stdout = std::io::stdout();
    while !stop.load(Ordering::Relaxed) {
        let body = match metrics::scrape(url, timeout) {
            Ok(s) => netback::top::render(&netback::top::frame(&s), url),
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
