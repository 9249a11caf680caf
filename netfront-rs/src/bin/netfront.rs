//! `netfront`: the DBA-VM network frontend for a guest, serving a TAP device so that
//! the guest's kernel stack uses the vif.
//!
//! ```text
//! netfront [--platform local --hv-socket PATH --domid N | --platform xen] [--devid N]
//!          [--tap NAME] [--policy drop|hold] [--no-credits] [--no-split-event-channels]
//!          [--queues N] [--offer all|none|sg,csum,ipv6-csum,gso-tcpv4,gso-tcpv6]
//! ```
//!
//! With `--queues N` (N > 1) and a backend offering `multi-queue-max-queues`, the vif
//! gets min(N, that) queues, the TAP as many queues (`IFF_MULTI_QUEUE`, the kernel
//! spreads flows over them), and one thread moves frames for each; at exit each queue's
//! counters are logged (`netfront: queue I: ...`).
//!
//! `--offer` chooses the offloads this frontend offers (its feature keys, what the
//! backend may send it) and also uses toward the backend (the TAP's offloads): a
//! frontend that offers no SG or no checksum offload neither takes nor sends such
//! frames, as stock frontends with fewer features (older Linux, FreeBSD, Windows PV).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use hypervisor::clock;
use hypervisor::platform::{FrontendPlatform, Services};
use netfront::{CreditPolicy, Netfront, NetfrontConfig};
use netport::negotiate::{Allowed, Offer};
use netport::{Port, TapConfig, TapOffload, TapPort};
use xen_ids::DomId;

#[derive(Clone, Copy, ValueEnum)]
enum PlatformKind {
    /// The local emulation (a `local-hypervisor` daemon).
    Local,
    /// Real Xen (/dev/xen/*, xenbus).
    Xen,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// Drop frames that exceed the credits (the DBA-VM paper).
    Drop,
    /// Stop reading the TAP until tokens return (backpressure, no loss).
    Hold,
}

#[derive(Parser)]
#[command(
    version,
    about = "DBA-VM netfront: Xen netif frontend enforcing per-VM credits",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Without a command: serve the vif.
    #[command(subcommand)]
    command: Option<Command>,
    /// Which hypervisor interface to use.
    #[arg(long, value_enum, default_value = "local")]
    platform: PlatformKind,
    /// The local-hypervisor socket (platform local).
    #[arg(long, default_value = "/run/dba-vm/hypervisor.sock")]
    hv_socket: PathBuf,
    /// This guest's domain id (platform local; on Xen it is read from xenstore).
    #[arg(long, default_value = "1")]
    domid: DomId,
    /// Device id under device/vif/.
    #[arg(long, default_value_t = 0)]
    devid: u32,
    /// TAP device the guest's stack uses.
    #[arg(long, default_value = "eth0")]
    tap: String,
    /// MTU of the TAP.
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// What to do with frames beyond the credits.
    #[arg(long, value_enum, default_value = "drop")]
    policy: Policy,
    /// Do not request the credit area.
    #[arg(long)]
    no_credits: bool,
    /// One event channel for both rings even when the backend offers
    /// `feature-split-event-channels`.
    #[arg(long)]
    no_split_event_channels: bool,
    /// Queues to ask for (capped by the backend's `multi-queue-max-queues`; 1 when it
    /// does not offer multi-queue).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// The offloads offered and used: `all`, `none`, or a comma-separated list of
    /// `sg`, `csum` (IPv4 checksum offload), `ipv6-csum`, `gso-tcpv4`, `gso-tcpv6`.
    #[arg(long, default_value = "all", value_parser = parse_offer)]
    offer: Offer,
    /// Where to keep the state file `<tap>.stats` that `netfront stats` reads.
    #[arg(long, default_value = netfront::stats::DEFAULT_STATS_DIR)]
    stats_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Print a running netfront's shaping figures: its budgets, its own TX drops for
    /// credit, and what netback held or dropped for the budgets (per direction).
    Stats {
        /// The guest interface netfront serves (its `--tap`).
        #[arg(default_value = "eth0")]
        iface: String,
        /// The directory of the state files (netfront's `--stats-dir`).
        #[arg(long, default_value = netfront::stats::DEFAULT_STATS_DIR)]
        stats_dir: PathBuf,
        /// One JSON object instead of the human format.
        #[arg(long)]
        json: bool,
    },
}

/// `netfront stats`: the state file of `iface`, printed.
fn stats(iface: &str, dir: &std::path::Path, json: bool) -> Result<(), String> {
    let path = netfront::stats::stats_path(dir, iface);
    let r = netfront::stats::StatsReport::read(&path).map_err(|e| e.to_string())?;
    if json {
        println!("{}", r.to_json());
    } else {
        print!("{r}");
    }
    if !std::path::Path::new(&format!("/proc/{}", r.pid)).exists() {
        eprintln!(
            "netfront stats: pid {} is not running: these are its last figures",
            r.pid
        );
    }
    Ok(())
}

/// Parses `--offer`: `all`, `none`, or a list of feature names (each at most once).
fn parse_offer(s: &str) -> Result<Offer, String> {
    match s {
        "all" => return Ok(Offer::ALL),
        "none" => return Ok(Offer::NOTHING),
        _ => {}
    }
    let mut o = Offer::NOTHING;
    for name in s.split(',') {
        let flag = match name.trim() {
            "sg" => &mut o.sg,
            "csum" => &mut o.ipv4_csum,
            "ipv6-csum" => &mut o.ipv6_csum,
            "gso-tcpv4" => &mut o.gso_tcpv4,
            "gso-tcpv6" => &mut o.gso_tcpv6,
            other => {
                return Err(format!(
                "unknown feature {other:?} (all, none, or sg,csum,ipv6-csum,gso-tcpv4,gso-tcpv6)"
            ))
            }
        };
        if std::mem::replace(flag, true) {
            return Err(format!("feature {name:?} given twice"));
        }
    }
    Ok(o)
}

/// What the TAP may hand netfront: what the backend takes and this frontend uses.
fn tap_offloads(backend: &Allowed, own: &Offer) -> Allowed {
    let own = Allowed::toward(own);
    Allowed {
        multi_slot: backend.multi_slot && own.multi_slot,
        csum_v4: backend.csum_v4 && own.csum_v4,
        csum_v6: backend.csum_v6 && own.csum_v6,
        gso_v4: backend.gso_v4 && own.gso_v4,
        gso_v6: backend.gso_v6 && own.gso_v6,
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netfront: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let Some(Command::Stats {
        iface,
        stats_dir,
        json,
    }) = &cli.command
    {
        return stats(iface, stats_dir, *json);
    }
    let mut cfg = NetfrontConfig::new(cli.devid);
    cfg.policy = match cli.policy {
        Policy::Drop => CreditPolicy::Drop,
        Policy::Hold => CreditPolicy::Hold,
    };
    cfg.request_credits = !cli.no_credits;
    cfg.split_event_channels = !cli.no_split_event_channels;
    cfg.queues = cli.queues.into();
    // The TAP takes GSO frames through its virtio-net header, so everything can be
    // offered (the default); `--offer` narrows it.
    cfg.offer = cli.offer;
    let mut tcfg = TapConfig::new(&cli.tap);
    tcfg.mtu = Some(cli.mtu);
    tcfg.offload = TapOffload {
        csum: true,
        tso: false,
    };
    match cli.platform {
        #[cfg(feature = "local")]
        PlatformKind::Local => {
            let p = xen_local::attach(&cli.hv_socket, cli.domid)
                .map_err(|e| format!("attach to {}: {e}", cli.hv_socket.display()))?;
            serve(p, cfg, &tcfg, &cli.stats_dir)
        }
        #[cfg(not(feature = "local"))]
        PlatformKind::Local => Err("this netfront was built without the local platform \
                                    (cargo feature `local`); use --platform xen"
            .into()),
        PlatformKind::Xen => {
            let p = Services::xen_frontend().map_err(|e| e.to_string())?;
            serve(p, cfg, &tcfg, &cli.stats_dir)
        }
    }
}

fn serve<P: FrontendPlatform>(
    p: P,
    cfg: NetfrontConfig,
    tcfg: &TapConfig,
    stats_dir: &std::path::Path,
) -> Result<(), String> {
    let offer = cfg.offer;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let mut nf = Netfront::connect(p, cfg, clock::system()).map_err(|e| e.to_string())?;
    // The guest's interface carries the vif's MAC, as the kernel netfront's does.
    let mut tcfg = tcfg.clone();
    if tcfg.mac.is_none() {
        tcfg.mac = nf.mac();
    }
    let tcfg = &tcfg;
    nf.stats_file = Some(netfront::stats::StatsFile::new(stats_dir, &tcfg.name));
    // The guest's stack hands the TAP only the offloads the backend agreed to take
    // (its feature keys): segmentation of each TCP version only when the backend takes
    // those GSO frames — then the guest's TCP hands over 64 KiB frames, one ring round
    // trip and one system call each instead of ~45 — and partial checksums (any other
    // frame is completed or refused by netfront itself) — and of those only what this
    // frontend offers itself (`--offer`).
    if nf.num_queues() > 1 {
        return serve_queues(nf, tcfg, &stop, &offer);
    }
    let mut tap = TapPort::open(tcfg).map_err(|e| format!("TAP {}: {e}", tcfg.name))?;
    if let Some(allowed) = nf.tx_allowed() {
        let allowed = tap_offloads(&allowed, &offer);
        log::info!("netfront: TAP offloads {allowed:?}");
        tap.set_offloads(&allowed)
            .map_err(|e| format!("TAP {} offloads: {e}", tcfg.name))?;
    }
    log::info!("netfront: serving {}", tap.name());
    // systemd (Type=notify) starts the guest's network configuration only now.
    if let Err(e) = netfront::ready::notify_ready(&format!("serving {}", tap.name())) {
        log::warn!("netfront: {e}");
    }
    netfront::pump::run(&mut nf, &mut tap, || stop.load(Ordering::Relaxed))
        .map_err(|e| format!("event loop: {e}"))?;
    nf.disconnect();
    final_stats(&mut nf);
    log::info!("netfront: stopped; {:?}", nf.stats);
    Ok(())
}

/// Writes the last figures to the state file (disconnected, final counters).
fn final_stats<P: FrontendPlatform>(nf: &mut Netfront<P>) {
    if let Some(f) = nf.stats_file.as_mut() {
        f.due_now();
    }
    let now = nf.now();
    nf.note_stats(now);
}

/// Several queues: a multi-queue TAP with one queue per ring queue, one thread each.
fn serve_queues<P: FrontendPlatform>(
    mut nf: Netfront<P>,
    tcfg: &TapConfig,
    stop: &AtomicBool,
    offer: &Offer,
) -> Result<(), String> {
    let n = nf.num_queues();
    let mut taps = TapPort::open_queues(tcfg, n)
        .map_err(|e| format!("TAP {} ({n} queues): {e}", tcfg.name))?;
    if let Some(allowed) = nf.tx_allowed() {
        let allowed = tap_offloads(&allowed, offer);
        log::info!("netfront: TAP offloads {allowed:?}");
        for tap in &mut taps {
            tap.set_offloads(&allowed)
                .map_err(|e| format!("TAP {} offloads: {e}", tcfg.name))?;
        }
    }
    log::info!("netfront: serving {} with {n} queues", taps[0].name());
    if let Err(e) = netfront::ready::notify_ready(&format!("serving {}", taps[0].name())) {
        log::warn!("netfront: {e}");
    }
    let per_queue = netfront::mq::run(&mut nf, &mut taps, || stop.load(Ordering::Relaxed))
        .map_err(|e| format!("event loop: {e}"))?;
    nf.disconnect();
    final_stats(&mut nf);
    for (i, s) in per_queue.iter().enumerate() {
        log::info!(
            "netfront: queue {i}: tx_packets={} tx_bytes={} rx_packets={} rx_bytes={} tx_dropped_credit={}",
            s.tx_packets,
            s.tx_bytes,
            s.rx_packets,
            s.rx_bytes,
            s.tx_dropped_credit
        );
    }
    log::info!("netfront: stopped; {:?}", nf.stats);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packaged unit runs `netfront $NETFRONT_ARGS` (split at whitespace) with the
    /// packaged `/etc/default/dba-netfront`: that must be netfront on Xen serving
    /// device/vif/0 as eth0, the name the guest's network configuration uses.
    #[test]
    fn the_packaged_netfront_args_serve_vif_0_as_eth0_on_xen() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let unit =
            std::fs::read_to_string(root.join("packaging/xen-dba-netfront/dba-netfront.service"))
                .expect("the systemd unit");
        assert!(unit.contains("ExecStart=/usr/sbin/netfront $NETFRONT_ARGS\n"));
        assert!(unit.contains("EnvironmentFile=-/etc/default/dba-netfront\n"));
        assert!(unit.contains("Type=notify\n"));
        let default = std::fs::read_to_string(root.join("packaging/xen-dba-netfront/default"))
            .expect("the /etc/default file");
        let args: Vec<&str> = default
            .lines()
            .filter_map(|l| l.strip_prefix("NETFRONT_ARGS=\""))
            .filter_map(|rest| rest.strip_suffix('"'))
            .collect();
        assert_eq!(args.len(), 1, "one NETFRONT_ARGS assignment");
        let argv = std::iter::once("netfront").chain(args[0].split_whitespace());
        let cli = Cli::try_parse_from(argv).expect("NETFRONT_ARGS parses");
        assert!(matches!(cli.platform, PlatformKind::Xen));
        assert_eq!(cli.devid, 0);
        assert_eq!(cli.tap, "eth0");
    }

    #[test]
    fn offer_names_map_to_the_feature_keys() {
        assert_eq!(parse_offer("all"), Ok(Offer::ALL));
        assert_eq!(parse_offer("none"), Ok(Offer::NOTHING));
        let o = parse_offer("sg,csum,gso-tcpv6").unwrap();
        let keys = o.keys();
        assert_eq!(
            keys,
            [
                ("feature-sg", "1"),
                ("feature-no-csum-offload", "0"),
                ("feature-ipv6-csum-offload", "0"),
                ("feature-gso-tcpv4", "0"),
                ("feature-gso-tcpv6", "1"),
            ]
        );
        assert!(parse_offer("sg,tso").is_err());
        assert!(parse_offer("sg,sg").is_err());
        assert!(parse_offer("").is_err());
    }

    #[test]
    fn the_tap_uses_only_what_both_sides_agree_to() {
        let backend = Allowed::toward(&Offer::ALL);
        let own = parse_offer("sg,csum,gso-tcpv4,gso-tcpv6").unwrap();
        let a = tap_offloads(&backend, &own);
        // GSO for TCPv6 needs IPv6 checksum offload, which this frontend does not use.
        assert!(a.multi_slot && a.csum_v4 && a.gso_v4);
        assert!(!a.csum_v6 && !a.gso_v6);
        // A backend without SG limits a frontend offering everything.
        let narrow = Allowed::toward(&Offer::DEFAULTS);
        assert_eq!(tap_offloads(&narrow, &Offer::ALL), narrow);
        assert_eq!(tap_offloads(&backend, &Offer::ALL), backend);
    }
}
