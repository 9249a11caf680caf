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
//! kernels without `act_police` (like this project's VM) cannot run the real one.
//! Throughput, loss and jitter come from the iperf3 servers; iperf3 measures no one-way
//! delay, so the delay fields are 0 and `delay_measured` is false.
//!
//! Needs root, /dev/net/tun, `ip`, `tc` and `iperf3`; says why when it cannot run. The
//! namespace helpers themselves are `netport::netns`.

use std::io;
use std::process::{Child, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hypervisor::clock::monotonic_ns;
use netback::{PortFactory, VifId, VifStatus};
use netfront::FrontStats;
use netport::netns::{root_with_tun_unavailable, NetNs, VethPair};
use netport::{Port, TapPort};
use testbed::{pump_until, tap_config, wait_link, GuestOptions, GuestThread, Spawner};
use xen_local::LocalHost;

use crate::bed;
use crate::port::{Police, PolicedPort};
use crate::proc_cpu::{self, CpuTimes};
use crate::report::{NetnsRun, NetnsVm, RunReport, VmReport};
use crate::scenario::{domid, sla_pps, tc_police, RunSpec, SLA_BPS};

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

/// How long a driver may take to create its TAP.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
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
    /// CPU of netback's control thread and of the iperf3 servers.
    pub cpu: NetnsRun,
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

/// The namespaces and links of a run: the backend's (bridge `br0`, the NIC's veth end
/// with its qdisc), the sink's and the three guests'.
struct Net {
    back: NetNs,
    sink: NetNs,
    guests: Vec<NetNs>,
    veth: VethPair,
}

impl Net {
    fn build(spec: &RunSpec) -> Result<Net, String> {
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
        // +24 bytes per frame, 84 minimum) in front of a tail-drop queue of
        // `nic_queue_frames` full-size frames.
        let limit = (spec.nic_queue_frames * 1514).to_string();
        back.exec(
            "tc",
            &[
                "qdisc", "replace", "dev", &veth.a, "root", "stab", "overhead", "24", "mpu", "84",
                "tbf", "rate", &rate, "burst", "15k", "limit", &limit,
            ],
        )
        .map_err(|e| io_err("tc tbf (the NIC)", e))?;
        Ok(Net {
            back,
            sink,
            guests,
            veth,
        })
    }

    /// Frames the NIC's qdisc dropped.
    fn nic_dropped(&self) -> Option<i64> {
        let o = self
            .back
            .exec("tc", &["-s", "qdisc", "show", "dev", &self.veth.a])
            .ok()?;
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let i = t.find("dropped ")? + "dropped ".len();
        t[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

/// Each vif's port: a TAP `vif<domid>.<devid>` on `br0`, behind VM `vm`'s policer if it
/// has one (`tc`: a bytes-only policer after the copy, the same token bucket as
/// `tc police rate R burst B drop`; this kernel may not have act_police).
fn tap_factory(
    police: Vec<Option<Police>>,
    drops: Vec<Arc<AtomicU64>>,
) -> impl PortFactory + Send + 'static {
    move |id: VifId, _mac: [u8; 6]| -> io::Result<Box<dyn Port>> {
        let mut c = tap_config(&format!("vif{}.{}", id.domid.0, id.devid));
        c.bridge = Some("br0".into());
        let tap = TapPort::open(&c)?;
        let vm = (id.domid.0 as usize).saturating_sub(1).min(2);
        Ok(match &police[vm] {
            Some(p) => Box::new(PolicedPort::new(tap, p.clone(), drops[vm].clone())),
            None => Box::new(tap),
        })
    }
}

/// Runs one experiment with kernel stacks and iperf3.
pub fn run_netns(spec: &RunSpec) -> Result<NetnsOutcome, String> {
    if let Some(why) = unavailable() {
        return Err(format!("--traffic netns cannot run here: {why}"));
    }
    let host = LocalHost::new();
    bed::add_vifs(&host)?;
    let net = Net::build(spec)?;
    let police = (0..3).map(|vm| tc_police(spec, vm)).collect();
    let police_drops: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
    let ports = tap_factory(police, police_drops.clone());
    let mut backend = bed::start_backend(spec, &host, Spawner::Netns(&net.back), ports)?;
    let measured = measure(spec, &host, &net, &backend);
    let exit = backend.stop().map_err(|e| io_err("netback", e));
    let m = measured?;
    let exit = exit?;
    let vms = police_drops
        .iter()
        .enumerate()
        .map(|(vm, drops)| {
            let st = exit.status.iter().find(|s| s.id.domid == domid(vm));
            vm_report(spec, vm, &m, st, drops.load(Ordering::Relaxed))
        })
        .collect::<Result<_, _>>()?;
    drop(net);
    Ok(NetnsOutcome {
        vms,
        backend_cpu_s: exit.cpu_ns as f64 / 1e9,
        frontend_cpu_s: m.front_cpu_ns as f64 / 1e9,
        allocator: (exit.allocator_cost_ns, exit.allocator_rounds),
        nic_dropped_total: m.nic_dropped_total,
        cpu: NetnsRun {
            sink_rcvbuf_errors: m.sink_rcvbuf_errors,
            cpu_backend_control: m.backend_control_cpu,
            cpu_iperf3_servers: m
                .server_cpu
                .iter()
                .fold(CpuTimes::default(), |a, c| CpuTimes {
                    user_s: a.user_s + c.user_s,
                    sys_s: a.sys_s + c.sys_s,
                }),
        },
    })
}

/// What the guests and iperf3 measured.
struct Measured {
    client_out: Vec<Output>,
    server_out: Vec<Output>,
    /// Per VM: the iperf3 client's CPU.
    client_cpu: Vec<CpuTimes>,
    /// Per VM: the iperf3 server's CPU.
    server_cpu: Vec<CpuTimes>,
    front_stats: Vec<FrontStats>,
    /// Per VM: the netfront thread's CPU.
    front_cpu: Vec<CpuTimes>,
    front_cpu_ns: u64,
    /// Per VM: frames the guest kernel dropped before netfront read them.
    guest_dropped: Vec<u64>,
    /// Per VM: frames netback wrote that its TAP's kernel side dropped (`rx_dropped`).
    backend_tap_dropped: Vec<u64>,
    /// UDP datagrams the sink's kernel dropped for full receive buffers (all servers).
    sink_rcvbuf_errors: Option<u64>,
    backend_control_cpu: CpuTimes,
    nic_dropped_total: Option<i64>,
}

/// Guests up, addresses, budgets, then iperf3; the guests are stopped at the end.
fn measure(
    spec: &RunSpec,
    host: &LocalHost,
    net: &Net,
    backend: &testbed::BackendThread,
) -> Result<Measured, String> {
    let mut fronts = Vec::new();
    for (vm, g) in net.guests.iter().enumerate() {
        let platform = testbed::domain(host, domid(vm)).map_err(|e| io_err("domain", e))?;
        let opts = GuestOptions {
            name: format!("netfront-vm{}", vm + 1),
            ..GuestOptions::default()
        };
        let cfg = bed::netfront_config(spec);
        let front = GuestThread::spawn(Spawner::Netns(g), platform, cfg, opts, |nf, stop| {
            let mut tap = TapPort::open(&tap_config("eth0"))?;
            pump_until(nf, &mut tap, stop)?;
            proc_cpu::this_thread()
        })
        .map_err(|e| io_err("netfront", e))?;
        fronts.push(front);
    }
    for (vm, g) in net.guests.iter().enumerate() {
        wait_link(&net.back, &format!("vif{}.0", vm + 1), LINK_TIMEOUT)
            .map_err(|e| io_err("netback TAP", e))?;
        wait_link(g, "eth0", LINK_TIMEOUT).map_err(|e| io_err("netfront TAP", e))?;
        g.addr_up("eth0", &format!("10.99.0.{}/24", vm + 1))
            .map_err(|e| io_err("guest addr", e))?;
    }
    bed::connect_and_budget(backend, spec)?;
    let ((client_out, client_cpu), (server_out, server_cpu)) = iperf(spec, net)?;
    let nic_dropped_total = net.nic_dropped();
    let guest_dropped = net
        .guests
        .iter()
        .map(|g| link_dropped(g, "eth0", "tx"))
        .collect();
    let backend_tap_dropped = (0..3)
        .map(|vm| link_dropped(&net.back, &format!("vif{}.0", vm + 1), "rx"))
        .collect();
    let sink_rcvbuf_errors = udp_rcvbuf_errors(&net.sink);
    let backend_control_cpu =
        proc_cpu::threads_named("netback-control").map_err(|e| io_err("/proc", e))?;
    let mut front_stats = Vec::new();
    let mut front_cpu = Vec::new();
    let mut front_cpu_ns = 0;
    for f in fronts {
        let exit = f.finish().map_err(|e| io_err("netfront", e))?;
        front_cpu.push(exit.value.map_err(|e| io_err("netfront", e))?);
        front_cpu_ns += exit.cpu_ns;
        front_stats.push(exit.netfront.stats);
    }
    Ok(Measured {
        client_out,
        server_out,
        client_cpu,
        server_cpu,
        front_stats,
        front_cpu,
        front_cpu_ns,
        guest_dropped,
        backend_tap_dropped,
        sink_rcvbuf_errors,
        backend_control_cpu,
        nic_dropped_total,
    })
}

/// The `dir` (`tx` or `rx`) drop counter of link `dev` in namespace `ns`: for a guest's
/// `eth0` `tx`, the frames its kernel dropped on their way to netfront (the TAP's queue
/// was full because netfront did not read); for netback's `vif<N>.0` `rx`, the frames
/// netback wrote that the backend's kernel dropped. 0 if it cannot be read.
fn link_dropped(ns: &NetNs, dev: &str, dir: &str) -> u64 {
    let Ok(o) = ns.exec("ip", &["-s", "-j", "link", "show", dev]) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v[0]["stats64"][dir]["dropped"].as_u64().unwrap_or(0)
}

/// `RcvbufErrors` of the `Udp:` lines of `/proc/net/snmp` in namespace `ns`: datagrams
/// dropped because a receiving socket's buffer was full.
fn udp_rcvbuf_errors(ns: &NetNs) -> Option<u64> {
    let o = ns.exec("cat", &["/proc/net/snmp"]).ok()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Outputs of iperf3 processes and their CPU times.
type Outputs = (Vec<Output>, Vec<CpuTimes>);

/// One iperf3 server per VM in the sink, one UDP client per guest; their outputs and
/// CPU times (clients, servers).
fn iperf(spec: &RunSpec, net: &Net) -> Result<(Outputs, Outputs), String> {
    let secs = spec.duration.as_secs_f64().max(1.0).round() as u64;
    let mut servers = Kill(Vec::new());
    for vm in 0..3 {
        let port = (5201 + vm).to_string();
        servers.0.push(
            net.sink
                .spawn("iperf3", &["-s", "-1", "-J", "-p", &port])
                .map_err(|e| io_err("iperf3 server", e))?,
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut clients = Kill(Vec::new());
    for (vm, g) in net.guests.iter().enumerate() {
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
    let mut client_cpu = Vec::new();
    for c in clients.0.drain(..) {
        let (o, cpu) = proc_cpu::wait_with_cpu(c).map_err(|e| io_err("iperf3 client", e))?;
        client_out.push(o);
        client_cpu.push(cpu);
    }
    // A server whose client never connected would wait forever: give them 5 s.
    let deadline = monotonic_ns() + 5_000_000_000;
    while monotonic_ns() < deadline && servers.0.iter().any(|s| !proc_cpu::has_exited(s)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut server_out = Vec::new();
    let mut server_cpu = Vec::new();
    for (vm, mut s) in servers.0.drain(..).enumerate() {
        if !proc_cpu::has_exited(&s) {
            let _ = s.kill();
            let _ = s.wait();
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
        let (o, cpu) = proc_cpu::wait_with_cpu(s).map_err(|e| io_err("iperf3 server", e))?;
        server_out.push(o);
        server_cpu.push(cpu);
    }
    Ok(((client_out, client_cpu), (server_out, server_cpu)))
}

/// VM `vm`'s figures: iperf3's, netback's vif `st`, its netfront's, and the policer's
/// `police_drops`.
fn vm_report(
    spec: &RunSpec,
    vm: usize,
    m: &Measured,
    st: Option<&VifStatus>,
    police_drops: u64,
) -> Result<VmReport, String> {
    let parse = |o: &Output, who: &str| -> Result<serde_json::Value, String> {
        serde_json::from_slice(&o.stdout).map_err(|e| {
            format!(
                "VM{} iperf3 {who} output: {e}: {}",
                vm + 1,
                String::from_utf8_lossy(&o.stderr)
            )
        })
    };
    let srv = parse(&m.server_out[vm], "server")?;
    let cli = parse(&m.client_out[vm], "client")?;
    let sum = &srv["end"]["sum"];
    let csum = &cli["end"]["sum"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let frame = spec.scenario.packet_bytes(vm) as f64;
    let secs_s = f(&sum["seconds"]).max(1e-9);
    let rx_packets = f(&sum["packets"]) - f(&sum["lost_packets"]);
    let fs = &m.front_stats[vm];
    let dropped_backend = st.map_or(0, |s| s.counters.tx_dropped()) + police_drops;
    Ok(VmReport {
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
        copied_then_dropped_bytes: (police_drops as f64 * frame) as i64,
        dropped_front: fs.tx_dropped_credit as i64,
        dropped_back: dropped_backend as i64,
        dropped_nic: 0,
        generator_skipped: 0,
        delay_cdf_us: Vec::new(),
        budget_bps: st.and_then(|s| s.budget.map(|b| b.bps)),
        budget_pps: st.and_then(|s| s.budget.and_then(|b| b.pps)),
        netns: Some(NetnsVm {
            offered: f(&csum["packets"]) as u64,
            dropped_guest_kernel: m.guest_dropped[vm],
            dropped_backend_tap: m.backend_tap_dropped[vm],
            admitted_netfront: fs.tx_packets,
            dropped_netfront: fs.tx_dropped_credit,
            held_netfront: fs.tx_held,
            dropped_backend,
            delivered: rx_packets.max(0.0) as u64,
            lost: f(&sum["lost_packets"]) as u64,
            cpu_iperf3: m.client_cpu[vm],
            cpu_netfront: m.front_cpu[vm],
        }),
    })
}

/// Builds the report of one `--traffic netns` run.
pub fn netns_report(spec: &RunSpec, o: NetnsOutcome) -> RunReport {
    let d = spec.duration.as_secs_f64();
    RunReport {
        scenario: spec.scenario.name().into(),
        direction: "tx".into(),
        policy: spec.policy.name().into(),
        period_ms: spec
            .policy
            .is_dba()
            .then(|| spec.period.map_or(20.0, |p| p.as_secs_f64() * 1e3)),
        duration_s: d,
        window_s: d,
        backend_pps_limit: spec.backend_pps_limit,
        backend_cpu_s: o.backend_cpu_s,
        frontend_cpu_s: o.frontend_cpu_s,
        allocator_cpu_us_per_s: o.allocator.0 as f64 / 1e3 / d,
        allocator_rounds: o.allocator.1,
        backend_max_stall_ms: 0.0,
        nic_queue_frames: spec.nic_queue_frames as i64,
        traffic: "netns".into(),
        delay_measured: false,
        nic_dropped_total: o.nic_dropped_total,
        vms: o.vms,
        timeline_bin_ms: 0.0,
        timeline_mbps: Vec::new(),
        spare: None,
        netns: Some(o.cpu),
    }
}
