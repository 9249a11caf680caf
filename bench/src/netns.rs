//! `--traffic netns`: the same set-up with real kernel stacks and iperf3, as the paper.
//!
//! Each guest is a network namespace whose `eth0` TAP is served by a real netfront
//! (`netfront::pump`); netback runs in a backend namespace where each vif's port is a TAP
//! (`vif<domid>.0`) on a bridge `br0`; the bridge's uplink is a veth whose egress is the
//! 1 Gb/s NIC (`tc qdisc ... stab overhead 24 mpu 84 tbf rate 1gbit`: line rate counting
//! preamble, FCS and gap, and a tail-drop queue of 1000 full-size frames) to a sink
//! namespace running the `iperf3` servers. Guests run `iperf3 -u -b 1G -l <payload>`
//! (payload = frame − 42). `tc` is the bench's policer ([`crate::port::PolicedPort`], the
//! token bucket of `tc police`) around each vif's TAP in netback, after the grant copy:
//! kernels without `act_police` (like this project's VM) cannot run the real one. Throughput, loss and jitter come from the iperf3 servers; iperf3 measures
//! no one-way delay, so the delay fields are 0 and `delay_measured` is false.
//!
//! Needs root, /dev/net/tun, `ip`, `tc` and `iperf3`; says why when it cannot run.

use std::io;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allocator::LoopConfig;
use netback::toolstack::{create_vif, VifSpec};
use netback::{BackstopPolicy, Netback, NetbackConfig, VifId, VifStatus};
use netfront::{CreditPolicy, Netfront, NetfrontConfig};
use netport::netns::{root_with_tun_unavailable, NetNs, VethPair};
use netport::{Port, TapConfig, TapOffload, TapPort};
use shared_ring::credit::Credits;
use shared_ring::Limit;
use xen_ids::DomId;
use xen_local::LocalHost;

use crate::clock::{now_ns, thread_cpu_ns};
use crate::guest::domid;
use crate::port::{Police, PolicedPort};
use crate::report::VmReport;
use crate::run::{sla_pps, STATIC_BURST_WINDOW};
use crate::scenario::{sla_file, Policy, RunSpec, SLA_BPS};

/// Why netns mode cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if let Some(r) = root_with_tun_unavailable() {
        return Some(r);
    }
    for tool in ["ip", "tc", "iperf3"] {
        let ok = std::process::Command::new(tool)
            .arg(if tool == "iperf3" { "--version" } else { "-V" })
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("`{tool}` is not available"));
        }
    }
    None
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn tap_cfg(name: &str) -> TapConfig {
    let mut c = TapConfig::new(name);
    c.offload = TapOffload {
        csum: true,
        tso: false,
    };
    c.mtu = Some(1500);
    c
}

fn wait_link(ns: &NetNs, name: &str) -> Result<(), String> {
    let deadline = now_ns() + 10_000_000_000;
    while ns.ip(&["link", "show", name]).is_err() {
        if now_ns() > deadline {
            return Err(format!("{name} never appeared in {}", ns.name()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The result of one netns run.
#[derive(Debug)]
pub struct NetnsOutcome {
    /// Per VM.
    pub vms: Vec<VmReport>,
    /// netback thread CPU, s.
    pub backend_cpu_s: f64,
    /// netfront threads CPU, s (the iperf3 processes are not counted).
    pub frontend_cpu_s: f64,
    /// Allocator cost and rounds.
    pub allocator: (u64, u64),
    /// Frames the NIC qdisc dropped (all VMs together: the kernel does not say whose).
    pub nic_dropped_total: Option<i64>,
}

fn static_credits(spec: &RunSpec, vm: usize, with_pps: bool) -> Credits {
    let per_sec = SLA_BPS[vm] / spec.scale / 8;
    let burst = (per_sec as u128 * STATIC_BURST_WINDOW.as_nanos() / 1_000_000_000) as u64;
    Credits {
        bytes: Limit::rate(per_sec, burst.max(2 * 1514)),
        packets: if with_pps {
            let pps = sla_pps(spec, vm).max(1);
            Limit::rate(pps, (pps / 50).max(2))
        } else {
            Limit::Unlimited
        },
        period_us: STATIC_BURST_WINDOW.as_micros() as u32,
    }
}

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs one experiment with kernel stacks and iperf3.
pub fn run_netns(spec: &RunSpec) -> Result<NetnsOutcome, String> {
    if let Some(why) = unavailable() {
        return Err(format!("--traffic netns cannot run here: {why}"));
    }
    let host = LocalHost::new();
    let dom0 = host.domain(DomId(0)).map_err(|e| io_err("dom0", e))?;
    for vm in 0..3 {
        create_vif(&dom0.xenstore, &VifSpec::new(DomId(0), domid(vm), 0))
            .map_err(|e| io_err("create vif", e))?;
    }
    let back = NetNs::new("dbabk").map_err(|e| io_err("netns", e))?;
    let sink = NetNs::new("dbask").map_err(|e| io_err("netns", e))?;
    let guests: Vec<NetNs> = (0..3)
        .map(|_| NetNs::new("dbagu"))
        .collect::<io::Result<_>>()
        .map_err(|e| io_err("netns", e))?;
    // Bridge and the NIC: veth br0 side in `back`, sink side in `sink`.
    back.ip(&["link", "add", "br0", "type", "bridge"])
        .map_err(|e| io_err("bridge", e))?;
    back.ip(&["link", "set", "br0", "up"])
        .map_err(|e| io_err("bridge", e))?;
    let names = (
        netport::netns::unique_name("dbn"),
        netport::netns::unique_name("dbs"),
    );
    let veth = VethPair::new(&names.0, &names.1).map_err(|e| io_err("veth", e))?;
    back.move_link(&veth.a).map_err(|e| io_err("veth", e))?;
    sink.move_link(&veth.b).map_err(|e| io_err("veth", e))?;
    back.ip(&["link", "set", &veth.a, "master", "br0", "up"])
        .map_err(|e| io_err("veth", e))?;
    sink.addr_up(&veth.b, "10.99.0.100/24")
        .map_err(|e| io_err("sink addr", e))?;
    let rate = format!("{}bit", spec.line_bps());
    // The NIC: a token bucket at line rate counting the Ethernet overhead (size table:
    // +24 bytes per frame, 84 minimum) in front of a tail-drop queue of `nic_queue_frames`
    // full-size frames.
    let limit = (spec.nic_queue_frames * 1514).to_string();
    back.exec(
        "tc",
        &[
            "qdisc", "replace", "dev", &veth.a, "root", "stab", "overhead", "24", "mpu", "84",
            "tbf", "rate", &rate, "burst", "15k", "limit", &limit,
        ],
    )
    .map_err(|e| io_err("tc tbf (the NIC)", e))?;

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
        Some(
            allocator::sla_file::parse_sla_file(&sla_file(
                spec.scenario,
                spec.capacity_bps(),
                spec.link_buffer(),
                spec.scale,
            ))
            .map_err(|e| io_err("SLA file", e))?,
        )
    } else {
        None
    };
    let period = spec.period.unwrap_or(Duration::from_millis(20));
    let stop = Arc::new(AtomicBool::new(false));
    let status: Arc<Mutex<Vec<VifStatus>>> = Arc::default();
    type Cmd = Box<dyn FnOnce(&mut netback_local::Nb) + Send>;
    let commands: Arc<Mutex<Vec<Cmd>>> = Arc::default();
    // `tc`: a bytes-only policer per vif after the copy (the same token bucket as
    // `tc police rate R burst B drop`; this kernel may not have act_police).
    let police: Vec<Option<Police>> = (0..3)
        .map(|vm| {
            (spec.policy == Policy::Tc).then(|| {
                let bps = SLA_BPS[vm] / spec.scale;
                let burst =
                    (bps as u128 / 8 * STATIC_BURST_WINDOW.as_nanos() / 1_000_000_000) as u64;
                Police::new(bps, burst.max(2 * 1514))
            })
        })
        .collect();
    let police_drops: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
    let nb = back
        .spawn_thread({
            let police_drops = police_drops.clone();
            let (stop, status, commands) = (stop.clone(), status.clone(), commands.clone());
            move || {
                let cpu0 = thread_cpu_ns();
                let factory = move |id: VifId, _mac: [u8; 6]| -> io::Result<Box<dyn Port>> {
                    let mut c = tap_cfg(&format!("vif{}.{}", id.domid.0, id.devid));
                    c.bridge = Some("br0".into());
                    let tap = TapPort::open(&c)?;
                    let vm = (id.domid.0 as usize).saturating_sub(1).min(2);
                    Ok(match &police[vm] {
                        Some(p) => {
                            Box::new(PolicedPort::new(tap, p.clone(), police_drops[vm].clone()))
                        }
                        None => Box::new(tap),
                    })
                };
                let mut nb = Netback::new(dom0, cfg, Box::new(factory), Box::new(now_ns))?;
                if let Some(slas) = slas {
                    nb.enable_allocator(slas, LoopConfig::with_period(period))
                        .map_err(|e| io::Error::other(format!("{e:?}")))?;
                }
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    nb.run_once(Duration::from_millis(2))?;
                    let cmds: Vec<Cmd> = std::mem::take(&mut *commands.lock().unwrap());
                    for c in cmds {
                        c(&mut nb);
                    }
                    if now_ns() - last > 50_000_000 {
                        *status.lock().unwrap() = nb.status();
                        last = now_ns();
                    }
                }
                let alloc = nb.allocator_report().map_or((0, 0), |(_, c, r)| (c, r));
                Ok((nb.status(), alloc, thread_cpu_ns() - cpu0))
            }
        })
        .map_err(|e| io_err("netback thread", e))?;
    let mut fronts = Vec::new();
    for (vm, g) in guests.iter().enumerate() {
        let platform = host.domain(domid(vm)).map_err(|e| io_err("domain", e))?;
        let mut nfc = NetfrontConfig::new(0);
        match spec.policy {
            Policy::Native | Policy::Tc | Policy::NetbackRate => nfc.request_credits = false,
            Policy::DbaDrop => nfc.policy = CreditPolicy::Drop,
            Policy::DbaHold => nfc.policy = CreditPolicy::Hold,
        }
        let stop = stop.clone();
        fronts.push(
            g.spawn_thread(move || {
                let cpu0 = thread_cpu_ns();
                let mut nf =
                    Netfront::connect(platform, nfc, Box::new(now_ns)).map_err(io::Error::other)?;
                let mut tap = TapPort::open(&tap_cfg("eth0"))?;
                netfront::pump::run(&mut nf, &mut tap, || stop.load(Ordering::Relaxed))?;
                Ok((nf.stats, thread_cpu_ns() - cpu0))
            })
            .map_err(|e| io_err("netfront thread", e))?,
        );
    }
    let finish = |stop: &AtomicBool| stop.store(true, Ordering::Relaxed);
    let setup = (|| -> Result<(), String> {
        for (vm, g) in guests.iter().enumerate() {
            wait_link(&back, &format!("vif{}.0", vm + 1))?;
            wait_link(g, "eth0")?;
            g.addr_up("eth0", &format!("10.99.0.{}/24", vm + 1))
                .map_err(|e| io_err("guest addr", e))?;
        }
        let deadline = now_ns() + 10_000_000_000;
        while !{
            let st = status.lock().unwrap();
            st.len() == 3 && st.iter().all(|s| s.connected)
        } {
            if now_ns() > deadline {
                return Err("netback did not connect all three vifs".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
            commands
                .lock()
                .unwrap()
                .push(Box::new(move |nb: &mut netback_local::Nb| {
                    for (id, c) in &budgets {
                        nb.set_tx_budget(*id, c);
                    }
                }));
        }
        Ok(())
    })();
    if let Err(e) = setup {
        finish(&stop);
        return Err(e);
    }
    // iperf3: one server per VM in the sink, one UDP client per guest.
    let secs = spec.duration.as_secs_f64().max(1.0).round() as u64;
    let mut servers = Kill(Vec::new());
    for vm in 0..3 {
        let port = (5201 + vm).to_string();
        servers.0.push(
            sink.spawn("iperf3", &["-s", "-1", "-J", "-p", &port])
                .map_err(|e| io_err("iperf3 server", e))?,
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut clients = Kill(Vec::new());
    for (vm, g) in guests.iter().enumerate() {
        let port = (5201 + vm).to_string();
        let payload = (spec.scenario.packet_bytes(vm) - 42).to_string();
        let bw = format!("{}", spec.line_bps());
        clients.0.push(
            g.spawn(
                "iperf3",
                &[
                    "-c",
                    "10.99.0.100",
                    "-p",
                    &port,
                    "-u",
                    "-b",
                    &bw,
                    "-l",
                    &payload,
                    "-t",
                    &secs.to_string(),
                    "-J",
                    "--connect-timeout",
                    "5000",
                ],
            )
            .map_err(|e| io_err("iperf3 client", e))?,
        );
    }
    let mut client_out = Vec::new();
    for c in clients.0.drain(..) {
        client_out.push(
            c.wait_with_output()
                .map_err(|e| io_err("iperf3 client", e))?,
        );
    }
    // A server whose client never connected would wait forever: give them 5 s.
    let deadline = now_ns() + 5_000_000_000;
    while now_ns() < deadline
        && servers
            .0
            .iter_mut()
            .any(|s| s.try_wait().map_or(true, |st| st.is_none()))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut server_out = Vec::new();
    for (vm, mut s) in servers.0.drain(..).enumerate() {
        if s.try_wait().map_or(true, |st| st.is_none()) {
            let _ = s.kill();
            let _ = s.wait();
            finish(&stop);
            let said = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            return Err(format!(
                "VM{}: the iperf3 server got no complete test; client: {}{}",
                vm + 1,
                said(&client_out[vm].stderr),
                said(&client_out[vm].stdout)
                    .lines()
                    .filter(|l| l.contains("\"error\""))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        server_out.push(
            s.wait_with_output()
                .map_err(|e| io_err("iperf3 server", e))?,
        );
    }
    let nic_dropped_total = back
        .exec("tc", &["-s", "qdisc", "show", "dev", &veth.a])
        .ok()
        .and_then(|o| {
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            let i = t.find("dropped ")? + "dropped ".len();
            t[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        });
    finish(&stop);
    let (status, alloc, nb_cpu) = nb
        .join()
        .map_err(|_| "netback thread panicked".to_string())?
        .map_err(|e| io_err("netback", e))?;
    let mut front_cpu = 0;
    let mut front_stats = Vec::new();
    for f in fronts {
        let (st, cpu) = f
            .join()
            .map_err(|_| "netfront thread panicked".to_string())?
            .map_err(|e| io_err("netfront", e))?;
        front_cpu += cpu;
        front_stats.push(st);
    }
    let mut vms = Vec::new();
    for vm in 0..3 {
        let parse = |o: &std::process::Output, who: &str| -> Result<serde_json::Value, String> {
            serde_json::from_slice(&o.stdout).map_err(|e| {
                format!(
                    "VM{} iperf3 {who} output: {e}: {}",
                    vm + 1,
                    String::from_utf8_lossy(&o.stderr)
                )
            })
        };
        let srv = parse(&server_out[vm], "server")?;
        let cli = parse(&client_out[vm], "client")?;
        let sum = &srv["end"]["sum"];
        let csum = &cli["end"]["sum"];
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let frame = spec.scenario.packet_bytes(vm) as f64;
        let secs_s = f(&sum["seconds"]).max(1e-9);
        let rx_packets = f(&sum["packets"]) - f(&sum["lost_packets"]);
        let st = status.iter().find(|s| s.id.domid == domid(vm));
        let fs = &front_stats[vm];
        vms.push(VmReport {
            name: format!("VM{}", vm + 1),
            packet_bytes: frame as i64,
            sla_mbps: (SLA_BPS[vm] / spec.scale) as f64 / 1e6,
            sla_kpps: sla_pps(spec, vm) as f64 / 1e3,
            offered_mbps: f(&csum["packets"]) * frame * 8.0 / f(&csum["seconds"]).max(1e-9) / 1e6,
            delivered_mbps: rx_packets * frame * 8.0 / secs_s / 1e6,
            delivered_kpps: rx_packets / secs_s / 1e3,
            delay_p50_us: 0.0,
            delay_p99_us: 0.0,
            jitter_us: f(&sum["jitter_ms"]) * 1e3,
            loss_pct: f(&sum["lost_percent"]),
            ring_bytes_copied: st.map_or(0, |s| s.counters.tx_bytes_copied) as i64,
            // What the policer dropped had been copied (NIC drops are not attributable).
            copied_then_dropped_bytes: (police_drops[vm].load(Ordering::Relaxed) as f64 * frame)
                as i64,
            dropped_front: fs.tx_dropped_credit as i64,
            dropped_back: (st.map_or(0, |s| s.counters.tx_dropped())
                + police_drops[vm].load(Ordering::Relaxed)) as i64,
            dropped_nic: 0,
            generator_skipped: 0,
            delay_cdf_us: Vec::new(),
            budget_bps: st.and_then(|s| s.budget.map(|b| b.bps)),
            budget_pps: st.and_then(|s| s.budget.and_then(|b| b.pps)),
        });
    }
    drop(veth);
    Ok(NetnsOutcome {
        vms,
        backend_cpu_s: nb_cpu as f64 / 1e9,
        frontend_cpu_s: front_cpu as f64 / 1e9,
        allocator: alloc,
        nic_dropped_total,
    })
}

mod netback_local {
    /// netback on the local platform.
    pub type Nb = netback::Netback<xen_local::LocalPlatform>;
}
