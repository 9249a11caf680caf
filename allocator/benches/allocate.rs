//! One allocation round for 3, 100, 1 000 and 10 000 vifs (`docs/performance.md`,
//! `## allocator`): the pure two-step allocation, and a whole control-loop round (meter
//! deltas, demand estimation, allocation, budgets handed to a datapath that stores them).

// criterion_group!/criterion_main! generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use allocator::sla::Subject;
use allocator::{
    allocate, Budget, ControlLoop, Datapath, Link, LoopConfig, Priority, SlaSet, VifDemand, VifId,
    VifReading, VifSla, VmSla, UNBOUNDED,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// A deterministic pseudo-random sequence (xorshift64*), so every run measures the same
/// input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` vifs, 4 per VM, all 8 classes, minimums summing to about half the link, half the
/// VMs with a packets/s cap; a 10 Gb/s link.
fn host(n: usize) -> (SlaSet, Vec<VifDemand>) {
    let capacity = 10_000_000_000u64;
    let mut slas = SlaSet::new(Link::new(capacity).unwrap());
    let mut rng = Rng(0x0DBA_2012 + n as u64);
    let mut demands = Vec::with_capacity(n);
    for i in 0..n {
        let vif = VifId::new(xen_ids::DomId((i / 4) as u16), (i % 4) as u32);
        let min = rng.below(capacity / n as u64 + 1);
        let max = if rng.below(4) == 0 {
            None
        } else {
            Some(min + rng.below(capacity / 4))
        };
        let p = Priority::new(rng.below(8) as u8).unwrap();
        slas.set_vif(vif, VifSla::new(Subject::Vif(vif), p, min, max).unwrap());
        if i % 4 == 0 && rng.below(2) == 0 {
            let d = vif.domid;
            slas.set_vm(
                d,
                VmSla::new(d, Some(10_000 + rng.below(1_000_000))).unwrap(),
            );
        }
        let demand_bps = match rng.below(3) {
            0 => UNBOUNDED,
            1 => 0,
            _ => rng.below(2 * capacity / n as u64 + 1),
        };
        let demand_pps = if rng.below(2) == 0 {
            UNBOUNDED
        } else {
            rng.below(200_000)
        };
        demands.push(VifDemand {
            vif,
            created: i as u64,
            demand_bps,
            demand_pps,
        });
    }
    (slas, demands)
}

fn bench_allocate(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocate");
    for n in [3usize, 100, 1_000, 10_000] {
        let (slas, demands) = host(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                allocate(
                    black_box(&slas),
                    black_box(&demands),
                    Duration::from_millis(20),
                )
            })
        });
    }
    g.finish();
}

/// Meters that advance by a fixed pattern; budgets are copied out.
struct Meters {
    readings: Vec<VifReading>,
    step: Vec<(u64, u64)>,
    written: Vec<(VifId, Budget)>,
}

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

impl Datapath for Meters {
    type Error = Never;
    fn read_meters(&mut self, out: &mut Vec<VifReading>) -> Result<(), Never> {
        for (r, (db, dp)) in self.readings.iter_mut().zip(&self.step) {
            r.bytes += db;
            r.packets += dp;
        }
        out.extend_from_slice(&self.readings);
        Ok(())
    }
    fn write_budgets(&mut self, budgets: &[(VifId, Budget)]) -> Result<(), Never> {
        self.written.clear();
        self.written.extend_from_slice(budgets);
        Ok(())
    }
}

fn bench_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("control_round");
    for n in [3usize, 100, 1_000, 10_000] {
        let (slas, demands) = host(n);
        let mut rng = Rng(7);
        let mut dp = Meters {
            readings: demands
                .iter()
                .map(|d| VifReading::new(d.vif, d.created, 0, 0))
                .collect(),
            step: (0..n)
                .map(|_| {
                    let b = rng.below(2_000_000);
                    (b, b / (64 + rng.below(1_450)))
                })
                .collect(),
            written: Vec::new(),
        };
        let mut lp = ControlLoop::new(LoopConfig::default()).unwrap();
        let mut t = Instant::now();
        // Two warm-up rounds so that every vif is measured.
        for _ in 0..2 {
            t += Duration::from_millis(20);
            lp.tick(t, &slas, &mut dp).unwrap();
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                t += Duration::from_millis(20);
                lp.tick(t, &slas, &mut dp).map(|r| r.vifs.len()).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the machine is shared.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_allocate, bench_round
}
criterion_main!(benches);
