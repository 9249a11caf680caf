//! The paper's set-up (§III-C, §V): three VMs, their SLAs and packet sizes per scenario,
//! the policies compared, and the static budgets of the policies that have one.

use std::fmt;
use std::time::Duration;

use shared_ring::credit::Credits;
use shared_ring::Limit;
use xen_ids::{DomId, VifId};

use crate::nic::frame_capacity_bps;
use crate::port::Police;

/// Line rate of the NIC and of each guest's offered load (the paper: 1 Gb/s).
pub const LINE_BPS: u64 = 1_000_000_000;
/// SLA minimum (and, except in `spare`, maximum), bits/s of frame bytes: VM1, VM2, VM3.
pub const SLA_BPS: [u64; 3] = [150_000_000, 700_000_000, 150_000_000];
/// SLA packets/s caps (§V): VM1, VM2, VM3.
pub const SLA_PPS: [u64; 3] = [20_000, 60_000, 60_000];
/// Width of the throughput-over-time bins.
pub const BIN_NS: u64 = 10_000_000;
/// Window of the static token buckets (`netback-rate`, `tc`, and the budget `dba-*` start
/// with): their burst is this much traffic at the limit.
pub const STATIC_BURST_WINDOW: Duration = Duration::from_millis(20);

/// SLA priority classes (the paper gives none; VM2 is the more important one, as in
/// `allocator/examples/paper.toml`).
pub const SLA_PRIORITY: [u8; 3] = [1, 0, 1];

/// A traffic scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// All VMs send 1500-byte frames.
    S1500,
    /// VM1 and VM3 send 64-byte frames, VM2 1500-byte frames.
    Mixed,
    /// 1500-byte frames; VM2 is idle during the middle third of the run, and VM1/VM3 have
    /// no SLA maximum, so a work-conserving policy lets them take the spare capacity.
    Spare,
    /// Receive direction ([`crate::rx`]): `1500` mirrored, every VM receives 1500-byte
    /// frames from the NIC model at line rate, the SLAs on what each VM receives.
    Rx1500,
    /// Receive direction: `mixed` mirrored (VM1 and VM3 receive 64-byte frames, VM2
    /// 1500-byte frames).
    RxMixed,
}

impl Scenario {
    /// The transmit scenarios of the paper, in report order (the default of `bench paper`).
    pub const ALL: [Scenario; 3] = [Scenario::S1500, Scenario::Mixed, Scenario::Spare];
    /// The receive scenarios (`--scenarios rx-1500,rx-mixed`).
    pub const RX: [Scenario; 2] = [Scenario::Rx1500, Scenario::RxMixed];
    /// Every scenario, in report order.
    pub const EVERY: [Scenario; 5] = [
        Scenario::S1500,
        Scenario::Mixed,
        Scenario::Spare,
        Scenario::Rx1500,
        Scenario::RxMixed,
    ];

    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::S1500 => "1500",
            Scenario::Mixed => "mixed",
            Scenario::Spare => "spare",
            Scenario::Rx1500 => "rx-1500",
            Scenario::RxMixed => "rx-mixed",
        }
    }

    /// Parses [`Scenario::name`].
    pub fn parse(s: &str) -> Result<Scenario, String> {
        Scenario::EVERY
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!("unknown scenario {s:?} (expected 1500, mixed, spare, rx-1500 or rx-mixed)")
            })
    }

    /// Whether the VMs receive (traffic from the NIC model to the guests) instead of
    /// sending.
    pub fn is_rx(self) -> bool {
        matches!(self, Scenario::Rx1500 | Scenario::RxMixed)
    }

    /// Frame length (dest MAC .. payload) VM `vm` sends (or, on RX, receives).
    pub fn packet_bytes(self, vm: usize) -> usize {
        match (self, vm) {
            (Scenario::Mixed | Scenario::RxMixed, 0 | 2) => 64,
            _ => 1500,
        }
    }

    /// Whether VM `vm` is offering traffic at `frac` (0..1) of the run.
    pub fn active(self, vm: usize, frac: f64) -> bool {
        !(self == Scenario::Spare && vm == 1 && (1.0 / 3.0..2.0 / 3.0).contains(&frac))
    }

    /// SLA maximum of VM `vm`, bits/s (`None` = up to the link).
    pub fn sla_max_bps(self, vm: usize, scale: u64) -> Option<u64> {
        match (self, vm) {
            (Scenario::Spare, 0 | 2) => None,
            _ => Some(SLA_BPS[vm] / scale),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shaping policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No shaping: credits off, unlimited; the backend serves vifs round robin.
    Native,
    /// Linux netback's `rate=`: a static bytes-only limit (the SLA) that leaves requests
    /// on the ring (backstop `Hold`), no credits, no packets/s limit.
    NetbackRate,
    /// `tc` police in dom0: a bytes-only token bucket per vif after the grant copy.
    Tc,
    /// DBA-VM allocator, frontends drop over budget (the paper).
    DbaDrop,
    /// DBA-VM allocator, frontends hold over budget (backpressure).
    DbaHold,
}

impl Policy {
    /// All policies, in report order.
    pub const ALL: [Policy; 5] = [
        Policy::Native,
        Policy::NetbackRate,
        Policy::Tc,
        Policy::DbaDrop,
        Policy::DbaHold,
    ];

    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Native => "native",
            Policy::NetbackRate => "netback-rate",
            Policy::Tc => "tc",
            Policy::DbaDrop => "dba-drop",
            Policy::DbaHold => "dba-hold",
        }
    }

    /// Parses [`Policy::name`].
    pub fn parse(s: &str) -> Result<Policy, String> {
        Policy::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!("unknown policy {s:?} (expected native, netback-rate, tc, dba-drop or dba-hold)")
            })
    }

    /// Whether the DBA-VM allocator runs.
    pub fn is_dba(self) -> bool {
        matches!(self, Policy::DbaDrop | Policy::DbaHold)
    }

    /// Whether the policy is compared in `scenario`: every policy on TX; on RX
    /// `native`, `tc` (a policer after the copy into the guest) and `dba-drop`
    /// (netback's RX budget, drop before the copy).
    pub fn applies_to(self, scenario: Scenario) -> bool {
        !scenario.is_rx() || matches!(self, Policy::Native | Policy::Tc | Policy::DbaDrop)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The link capacity the allocator hands out: bits/s of frame bytes the NIC carries with
/// full-size frames (`Link::ethernet`), so that budgets summing to it fit the wire.
pub fn allocator_capacity_bps(line_bps: u64) -> u64 {
    frame_capacity_bps(1500, line_bps)
}

/// The NIC queue as the allocator is told about it (`[link] buffer-bytes`,
/// `buffer-packets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkBuffer {
    /// Bytes: the queue's frames × [`FULL_FRAME_BYTES`].
    pub bytes: u64,
    /// Packets: the queue's frames.
    pub packets: u64,
}

/// The largest frame of the scenarios, bytes (the unit of the NIC queue's byte size).
pub const FULL_FRAME_BYTES: u64 = 1500;

/// The SLA file (`allocator/src/sla_file.rs` syntax) for a scenario, rates divided by
/// `scale`; the link capacity B_p is `capacity_bps` (already scaled), its buffer
/// `buffer` (bytes, packets). A receive scenario gets the same SLAs on the receive
/// direction too (`rx-*` keys, `docs/allocator.md` §15).
pub fn sla_file(
    scenario: Scenario,
    capacity_bps: u64,
    buffer: Option<LinkBuffer>,
    scale: u64,
) -> String {
    let rx = scenario.is_rx();
    let mut s = format!("[link]\ncapacity-bps = {capacity_bps}\n");
    if rx {
        s += &format!("rx-capacity-bps = {capacity_bps}\n");
    }
    if let Some(b) = buffer {
        s += &format!(
            "buffer-bytes = {}\nbuffer-packets = {}\n",
            b.bytes, b.packets
        );
        if rx {
            s += &format!(
                "rx-buffer-bytes = {}\nrx-buffer-packets = {}\n",
                b.bytes, b.packets
            );
        }
    }
    s += "[defaults]\npriority = 7\nmin-bps = 0\n";
    #[allow(clippy::needless_range_loop)] // vm indexes several parallel tables
    for vm in 0..3 {
        let pps = (SLA_PPS[vm] / scale).max(1);
        s += &format!("[[vm]]\ndomid = {}\npps = {pps}\n", vm + 1);
        if rx {
            s += &format!("rx-pps = {pps}\n");
        }
    }
    for vm in 0..3 {
        let min = SLA_BPS[vm] / scale;
        s += &format!(
            "[[vif]]\ndomid = {}\ndevid = 0\npriority = {}\nmin-bps = {min}\n",
            vm + 1,
            SLA_PRIORITY[vm],
        );
        if rx {
            s += &format!("rx-min-bps = {min}\n");
        }
        if let Some(m) = scenario.sla_max_bps(vm, scale) {
            s += &format!("max-bps = {m}\n");
            if rx {
                s += &format!("rx-max-bps = {m}\n");
            }
        }
    }
    s
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Traffic scenario.
    pub scenario: Scenario,
    /// Shaping policy.
    pub policy: Policy,
    /// Allocator readjustment period (`dba-*` only).
    pub period: Option<Duration>,
    /// Traffic duration.
    pub duration: Duration,
    /// Start of the measurement window (throughput, delays) after traffic starts.
    pub warmup: Duration,
    /// Every rate (line, offered, SLAs, caps) is divided by this (1 = the paper).
    pub scale: u64,
    /// `--backend-pps-limit`: **emulated** memory-bound backend (all vifs share it).
    pub backend_pps_limit: Option<u64>,
    /// NIC transmit queue, frames.
    pub nic_queue_frames: usize,
    /// Guest transmit queue (qdisc), frames.
    pub guest_queue_frames: usize,
    /// The allocator's link capacity B_p, bits/s of frame bytes, before scaling (`None`:
    /// what the NIC carries with 1500-byte frames, [`allocator_capacity_bps`]).
    pub allocator_capacity_bps: Option<u64>,
    /// Give the allocator the NIC queue's size as the link buffer
    /// ([`RunSpec::link_buffer`]), so that the vifs' bursts together fit in it.
    pub link_buffer: bool,
    /// Nice value of the guest threads (0 = as the backend). The paper's dom0 had cores
    /// of its own; on a machine with fewer cores than threads, a positive value lets the
    /// backend thread run ahead of the guests, as a Xen host does by weighting dom0 above
    /// guests or pinning it to its own cores.
    pub guest_nice: i32,
    /// netback's backstops keep the tokens of its worker's waits for a CPU
    /// (`netback serve --credit-cpu-waits`, `docs/protocol.md` §2.4 "Stalls").
    pub credit_cpu_waits: bool,
}

impl RunSpec {
    /// Line rate after scaling.
    pub fn line_bps(&self) -> u64 {
        LINE_BPS / self.scale
    }

    /// The link buffer the allocator is told: the NIC queue, in packets and in bytes of
    /// full-size (1500-byte) frames; `None` when [`RunSpec::link_buffer`] is off.
    pub fn link_buffer(&self) -> Option<LinkBuffer> {
        self.link_buffer.then_some(LinkBuffer {
            bytes: self.nic_queue_frames as u64 * FULL_FRAME_BYTES,
            packets: self.nic_queue_frames as u64,
        })
    }

    /// B_p after scaling.
    pub fn capacity_bps(&self) -> u64 {
        self.allocator_capacity_bps.map_or_else(
            || allocator_capacity_bps(self.line_bps()),
            |c| c / self.scale,
        )
    }
}

/// Ties a domain to its VM index (domid = vm + 1).
pub fn domid(vm: usize) -> DomId {
    DomId(vm as u16 + 1)
}

/// The one vif of VM `vm`.
pub fn vif_id(vm: usize) -> VifId {
    VifId {
        domid: domid(vm),
        devid: 0,
    }
}

/// SLA packets/s cap of VM `vm` after scaling.
pub fn sla_pps(spec: &RunSpec, vm: usize) -> u64 {
    SLA_PPS[vm] / spec.scale
}

/// `n` per second over [`STATIC_BURST_WINDOW`].
fn per_window(per_sec: u64) -> u64 {
    (per_sec as u128 * STATIC_BURST_WINDOW.as_nanos() / 1_000_000_000) as u64
}

/// Static budget of VM `vm`: the SLA rate in bytes with a burst of
/// [`STATIC_BURST_WINDOW`] (at least two full frames), and, if `with_pps`, its packets/s
/// cap with a burst of the same window (at least two packets).
pub fn static_credits(spec: &RunSpec, vm: usize, with_pps: bool) -> Credits {
    let per_sec = SLA_BPS[vm] / spec.scale / 8;
    Credits {
        bytes: Limit::rate(per_sec, per_window(per_sec).max(2 * 1514)),
        packets: if with_pps {
            let pps = sla_pps(spec, vm).max(1);
            Limit::rate(pps, per_window(pps).max(2))
        } else {
            Limit::Unlimited
        },
        period_us: STATIC_BURST_WINDOW.as_micros() as u32,
    }
}

/// The `tc` policer of VM `vm` (`tc` policy only): [`static_credits`]' bytes bucket.
pub fn tc_police(spec: &RunSpec, vm: usize) -> Option<Police> {
    (spec.policy == Policy::Tc).then(|| match static_credits(spec, vm, false).bytes {
        Limit::Rate { per_sec, burst } => Police::new(per_sec * 8, burst),
        Limit::Unlimited => unreachable!("static credits are a rate"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_file_parses_and_matches_the_paper() {
        for sc in Scenario::EVERY {
            let text = sla_file(
                sc,
                allocator_capacity_bps(LINE_BPS),
                Some(LinkBuffer {
                    bytes: 1_500_000,
                    packets: 1000,
                }),
                1,
            );
            let set = allocator::sla_file::parse_sla_file(&text).expect("valid SLA file");
            assert_eq!(set.link().capacity_bps(), 984_251_968);
            assert_eq!(set.link().buffer_bytes(), Some(1_500_000));
            assert_eq!(set.link().buffer_packets(), Some(1000));
            // A receive scenario has the same SLAs on RX; a TX scenario none there.
            let rx = set.in_direction(allocator::Direction::Rx);
            assert_eq!(rx.link().capacity_bps() == 984_251_968, sc.is_rx(), "{sc}");
            assert_eq!(rx.link().buffer_packets(), sc.is_rx().then_some(1000));
            let vm2 = rx.vif(vif_id(1));
            let want = sc.is_rx().then_some(700_000_000);
            assert_eq!(vm2.max_bps(), want, "{sc}");
            assert_eq!(vm2.min_bps(), want.unwrap_or(0), "{sc}");
            assert_eq!(rx.vm(domid(0)).pps(), sc.is_rx().then_some(20_000));
            let text = sla_file(sc, allocator_capacity_bps(LINE_BPS), None, 1);
            let set = allocator::sla_file::parse_sla_file(&text).expect("valid SLA file");
            assert_eq!(set.link().buffer_bytes(), None);
        }
    }

    #[test]
    fn static_budgets_burst_one_window() {
        let mut spec = RunSpec {
            scenario: Scenario::S1500,
            policy: Policy::DbaDrop,
            period: None,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            scale: 10,
            backend_pps_limit: None,
            nic_queue_frames: 1000,
            guest_queue_frames: 1000,
            allocator_capacity_bps: None,
            link_buffer: true,
            guest_nice: 0,
            credit_cpu_waits: false,
        };
        let c = static_credits(&spec, 0, true);
        // VM1: 15 Mb/s = 1 875 000 B/s, 2 000 p/s; 20 ms of each.
        assert_eq!(c.bytes, Limit::rate(1_875_000, 37_500));
        assert_eq!(c.packets, Limit::rate(2_000, 40));
        assert_eq!(c.period_us, 20_000);
        assert_eq!(static_credits(&spec, 0, false).packets, Limit::Unlimited);
        assert!(tc_police(&spec, 0).is_none());
        spec.policy = Policy::Tc;
        assert!(tc_police(&spec, 0).is_some());
    }

    #[test]
    fn names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name()), Ok(p));
        }
        for s in Scenario::EVERY {
            assert_eq!(Scenario::parse(s.name()), Ok(s));
            assert_eq!(s.is_rx(), s.name().starts_with("rx-"));
        }
        assert!(Scenario::ALL.iter().all(|s| !s.is_rx()));
        assert!(!Policy::DbaHold.applies_to(Scenario::Rx1500));
        assert!(Policy::Tc.applies_to(Scenario::RxMixed));
        assert!(Policy::ALL.iter().all(|p| p.applies_to(Scenario::Mixed)));
        assert!(Policy::parse("nope").is_err());
    }
}
