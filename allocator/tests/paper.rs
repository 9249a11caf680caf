//! The paper's cases (ISCC 2012 §III-C and §V), on the pure allocation and on the control
//! loop with simulated meters and injected time.

mod common;

use std::time::{Duration, Instant};

use allocator::control::DEFAULT_PERIOD;
use allocator::sla::Subject;
use allocator::sla_file::parse_sla_file;
use allocator::{
    allocate, Budget, ControlLoop, LoopConfig, Priority, SlaSet, VifDemand, VifId, VifSla, VmSla,
    UNBOUNDED,
};
use common::{SimDatapath, Source, G, M};

const PAPER_TOML: &str = include_str!("../examples/paper.toml");

fn vif(d: u16) -> VifId {
    VifId::new(xen_ids::DomId(d), 0)
}

fn paper_slas() -> SlaSet {
    parse_sla_file(PAPER_TOML).expect("the example SLA file parses")
}

/// Runs `rounds` periods: traffic for one period, then a tick. Returns each round's
/// budgets for vif1.0, vif2.0, vif3.0.
fn run(
    lp: &mut ControlLoop,
    dp: &mut SimDatapath,
    slas: &SlaSet,
    t: &mut Instant,
    rounds: usize,
) -> Vec<[Budget; 3]> {
    let period = lp.config().period;
    (0..rounds)
        .map(|_| {
            dp.run(period);
            *t += period;
            let r = lp.tick(*t, slas, dp).expect("round");
            [1, 2, 3].map(|d| r.vif(vif(d)).unwrap().budget)
        })
        .collect()
}

fn sources(frames: [u64; 3], offered: [u64; 3]) -> SimDatapath {
    SimDatapath::new(
        (0..3)
            .map(|k| Source {
                vif: vif(k as u16 + 1),
                created: k as u64,
                offered_bps: offered[k],
                frame_bytes: frames[k],
            })
            .collect(),
    )
}

fn bps(b: &[Budget; 3]) -> [u64; 3] {
    b.map(|b| b.bps)
}

fn pps(b: &[Budget; 3]) -> [Option<u64>; 3] {
    b.map(|b| b.pps)
}

#[test]
fn scenario_1_pure_allocation() {
    let slas = paper_slas();
    let demands: Vec<VifDemand> = (1..=3)
        .map(|d| VifDemand {
            vif: vif(d),
            created: d as u64,
            demand_bps: G, // every VM offers 1 Gb/s
            demand_pps: UNBOUNDED,
        })
        .collect();
    let a = allocate(&slas, &demands, DEFAULT_PERIOD);
    let b: Vec<u64> = a.vifs.iter().map(|v| v.budget.bps).collect();
    assert_eq!(b, vec![150 * M, 700 * M, 150 * M]);
    let p: Vec<Option<u64>> = a.vifs.iter().map(|v| v.budget.pps).collect();
    assert_eq!(p, vec![Some(20_000), Some(60_000), Some(60_000)]);
    assert!(!a.overcommitted);
    // Bursts: one period of each rate (20 ms), shortened so that they fit half the
    // link buffer of paper.toml (1.5 MB, 1 000 packets): the packet bound, 500 packets
    // at 140 kp/s, is the tighter one: 3.57 ms.
    let w = Duration::from_nanos(500 * 1_000_000_000 / 140_000);
    assert_eq!(a.burst_window, w);
    assert_eq!(a.vifs[1].budget.burst_bytes, 312_500);
    assert_eq!(a.vifs[1].budget.burst_packets, Some(215));
    let packets: u64 = a.vifs.iter().map(|v| v.budget.burst_packets.unwrap()).sum();
    let bytes: u64 = a.vifs.iter().map(|v| v.budget.burst_bytes).sum();
    assert!(
        packets <= 503 && bytes <= 750_000,
        "{packets} packets, {bytes} bytes"
    );
    // Without the buffer: one period.
    let mut unbuffered = slas.clone();
    unbuffered.set_link(allocator::Link::new(G).unwrap());
    let a = allocate(&unbuffered, &demands, DEFAULT_PERIOD);
    assert_eq!(a.vifs[1].budget.burst_bytes, 700 * M / 8 / 50);
    assert_eq!(a.vifs[1].budget.burst_packets, Some(1_200));
}

#[test]
fn scenario_1_control_loop() {
    let slas = paper_slas();
    let mut lp = ControlLoop::new(LoopConfig::default()).unwrap();
    let mut dp = sources([1500; 3], [G; 3]);
    let mut t = Instant::now();
    let rounds = run(&mut lp, &mut dp, &slas, &mut t, 6);
    for r in &rounds {
        assert_eq!(bps(r), [150 * M, 700 * M, 150 * M]);
        assert_eq!(pps(r), [Some(20_000), Some(60_000), Some(60_000)]);
    }
    // What the VMs achieve under those budgets: their SLAs.
    let achieved: Vec<u64> = dp.sources.iter().map(|s| dp.achieved_bps(s)).collect();
    assert_eq!(achieved, vec![150 * M, 700 * M, 150 * M]);
}

#[test]
fn scenario_2_control_loop() {
    let slas = paper_slas();
    let mut lp = ControlLoop::new(LoopConfig::default()).unwrap();
    // VM1 and VM3 send 64-byte frames, VM2 1500-byte frames, all offering 1 Gb/s.
    let mut dp = sources([64, 1500, 64], [G; 3]);
    let mut t = Instant::now();
    let rounds = run(&mut lp, &mut dp, &slas, &mut t, 6);
    for r in &rounds {
        assert_eq!(pps(r), [Some(20_000), Some(60_000), Some(60_000)]);
        assert_eq!(r[1].bps, 700 * M);
    }
    let report = lp.last_report().unwrap();
    let m = |d| report.vif(vif(d)).unwrap().measured.unwrap();
    // VM1 and VM3 are held by their packets/s caps (the paper's Fig. 5b), VM2 gets 700 Mb/s.
    assert_eq!(m(1).pps, 20_000);
    assert_eq!(m(1).bps, 20_000 * 64 * 8);
    assert_eq!(m(3).pps, 60_000);
    // Whole 1500-byte frames per 20 ms period: ±1 frame = ±600 kb/s.
    assert!(m(2).bps.abs_diff(700 * M) <= 600_000, "{:?}", m(2));
    // 58 333 frames/s, counted in whole frames per 20 ms period (±1 frame = ±50 /s).
    assert!(m(2).pps.abs_diff(700 * M / 8 / 1500) <= 50, "{:?}", m(2));
    assert!(report.vif(vif(1)).unwrap().pinned_pps);
    assert!(!report.vif(vif(1)).unwrap().pinned_bps);
}

/// SLAs with maximums above minimums: VM1 class 0 (150 M ..= 500 M), VM2 class 0
/// (700 M ..= 1 G), VM3 class 1 (150 M ..= 1 G); no packets/s caps (VM1's 20 Kp/s would
/// hold it at 240 Mb/s of 1500-byte frames).
fn spare_slas(vm1_max: u64) -> SlaSet {
    let mut s = paper_slas();
    for d in 1..=3 {
        s.set_vm(xen_ids::DomId(d), VmSla::UNCAPPED);
    }
    let p0 = Priority::HIGHEST;
    let p1 = Priority::new(1).unwrap();
    let mk = |d, p, min, max| VifSla::new(Subject::Vif(vif(d)), p, min, Some(max)).unwrap();
    s.set_vif(vif(1), mk(1, p0, 150 * M, vm1_max));
    s.set_vif(vif(2), mk(2, p0, 700 * M, G));
    s.set_vif(vif(3), mk(3, p1, 150 * M, G));
    s
}

#[test]
fn spare_capacity_goes_by_priority_pure() {
    // VM2 idle (demand 0): its 700 Mb/s minimum is not reserved, the spare goes to class 0
    // (VM1) up to its maximum before class 1 (VM3) gets more than its minimum.
    let demands = |d2| {
        vec![
            VifDemand {
                vif: vif(1),
                created: 1,
                demand_bps: UNBOUNDED,
                demand_pps: UNBOUNDED,
            },
            VifDemand {
                vif: vif(2),
                created: 2,
                demand_bps: d2,
                demand_pps: UNBOUNDED,
            },
            VifDemand {
                vif: vif(3),
                created: 3,
                demand_bps: UNBOUNDED,
                demand_pps: UNBOUNDED,
            },
        ]
    };
    let b = |s: &SlaSet, d2| -> Vec<u64> {
        allocate(s, &demands(d2), DEFAULT_PERIOD)
            .vifs
            .iter()
            .map(|v| v.share.served_bps)
            .collect()
    };
    assert_eq!(b(&spare_slas(500 * M), 0), vec![500 * M, 0, 500 * M]);
    assert_eq!(b(&spare_slas(G), 0), vec![850 * M, 0, 150 * M]);
    // VM2 asks again: minimums first, lower classes pulled down to theirs.
    assert_eq!(
        b(&spare_slas(G), UNBOUNDED),
        vec![150 * M, 700 * M, 150 * M]
    );
    assert_eq!(b(&spare_slas(G), 300 * M), vec![550 * M, 300 * M, 150 * M]);
}

#[test]
fn spare_capacity_control_loop_and_wake_up() {
    let slas = spare_slas(500 * M);
    let mut lp = ControlLoop::new(LoopConfig::default()).unwrap();
    let mut dp = sources([1500; 3], [G, 0, G]);
    let mut t = Instant::now();
    let rounds = run(&mut lp, &mut dp, &slas, &mut t, 5);
    // Idle floor = min(1 Mb/s, B_p / (100 × 3 vifs)) = 1 Mb/s for the idle VM2.
    assert_eq!(bps(rounds.last().unwrap()), [500 * M, M, 499 * M]);
    // VM2 starts sending 1 Gb/s: its 700 Mb/s minimum within two periods, VM1 and VM3
    // pulled down to their minimums (VM3, the lowest class, first).
    dp.set_offered(vif(2), G);
    let after = run(&mut lp, &mut dp, &slas, &mut t, 5);
    // Period 1 after the step: VM2 is seen pinned at its floor and gets its share at once.
    assert_eq!(bps(&after[0]), [150 * M, 700 * M, 150 * M]);
    for r in &after[1..] {
        assert_eq!(bps(r), [150 * M, 700 * M, 150 * M]);
    }
}

#[test]
fn spare_capacity_with_packet_caps() {
    // With the paper's 20 Kp/s cap VM1 cannot use more than 240 Mb/s of 1500-byte frames:
    // the allocator sees it unpinned at 240 Mb/s, gives it 120 % of that, and the rest of
    // the spare goes to VM3.
    let mut slas = spare_slas(500 * M);
    slas.set_vm(
        xen_ids::DomId(1),
        VmSla::new(xen_ids::DomId(1), Some(20_000)).unwrap(),
    );
    let mut lp = ControlLoop::new(LoopConfig::default()).unwrap();
    let mut dp = sources([1500; 3], [G, 0, G]);
    let mut t = Instant::now();
    let rounds = run(&mut lp, &mut dp, &slas, &mut t, 5);
    assert_eq!(bps(rounds.last().unwrap()), [288 * M, M, 711 * M]);
    assert_eq!(dp.achieved_bps(&dp.sources[0].clone()), 240 * M);
}

#[test]
fn example_file_round_trips_through_the_loop_config() {
    // The example file is the documented schema: it must keep parsing.
    let s = paper_slas();
    assert_eq!(s.link().capacity_bps(), G);
    assert_eq!(s.vm(xen_ids::DomId(2)).pps(), Some(60_000));
    assert_eq!(s.vif(vif(2)).priority(), Priority::HIGHEST);
    assert_eq!(LoopConfig::default().period, Duration::from_millis(20));
}
