//! Property tests of the allocation's invariants for random SLAs and demands
//! (`docs/allocator.md` §3, §4 and §13).

use std::collections::BTreeMap;
use std::time::Duration;

use allocator::sla::Subject;
use allocator::step1::{allocate_bps, Step1Input};
use allocator::{allocate, Link, Priority, SlaSet, VifDemand, VifId, VifSla, VmSla, UNBOUNDED};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    capacity: u64,
    vifs: Vec<Step1Input>,
    caps: BTreeMap<u16, Option<u64>>,
}

/// Rates on a coarse grid (so that ties, equal minimums and exact fits happen often) or
/// anywhere.
fn rate(cap: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..=10).prop_map(move |k| cap / 10 * k),
        0u64..=cap.saturating_mul(2),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        Just(1u64),
        1u64..1000,
        Just(1_000_000_000u64),
        1u64..=10_000_000_000
    ]
    .prop_flat_map(|capacity| {
        let vif = (
            0u16..4,
            0u32..3,
            0u8..=7,
            rate(capacity),
            prop::option::weighted(0.7, rate(capacity)),
            prop_oneof![Just(UNBOUNDED), Just(0u64), rate(capacity)],
            0u64..4,
        );
        (
            Just(capacity),
            prop::collection::vec(vif, 0..12),
            prop::collection::btree_map(0u16..4, prop::option::of(0u64..100_000), 0..4),
        )
    })
    .prop_map(|(capacity, raw, caps)| {
        let mut seen = std::collections::BTreeSet::new();
        let vifs = raw
            .into_iter()
            .filter(|(d, dev, ..)| seen.insert((*d, *dev)))
            .map(|(d, dev, p, a, b, demand, created)| {
                let (min, max) = match b {
                    Some(b) => (a.min(b), Some(a.max(b))),
                    None => (a, None),
                };
                Step1Input {
                    vif: VifId::new(xen_ids::DomId(d), dev),
                    created,
                    sla: VifSla::new(Subject::Defaults, Priority::new(p).unwrap(), min, max)
                        .unwrap(),
                    demand_bps: demand,
                }
            })
            .collect();
        Case {
            capacity,
            vifs,
            caps,
        }
    })
}

fn slas(c: &Case) -> SlaSet {
    let mut s = SlaSet::new(Link::new(c.capacity).unwrap());
    for v in &c.vifs {
        s.set_vif(v.vif, v.sla);
    }
    for (d, p) in &c.caps {
        s.set_vm(
            xen_ids::DomId(*d),
            VmSla::new(xen_ids::DomId(*d), *p).unwrap(),
        );
    }
    s
}

fn demands(c: &Case) -> Vec<VifDemand> {
    c.vifs
        .iter()
        .map(|v| VifDemand {
            vif: v.vif,
            created: v.created,
            demand_bps: v.demand_bps,
            demand_pps: UNBOUNDED,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn step1_invariants(c in case()) {
        let link = Link::new(c.capacity).unwrap();
        let out = allocate_bps(&link, &c.vifs);
        let cap = c.capacity as u128;
        let sum: u128 = out.shares.iter().map(|s| s.budget_bps as u128).sum();
        let served: u128 = out.shares.iter().map(|s| s.served_bps as u128).sum();
        let max_sum: u128 = c.vifs.iter().map(|v| v.sla.max_bps_on(&link) as u128).sum();
        let g_sum: u128 = c.vifs.iter().zip(&out.shares)
            .map(|(v, s)| v.sla.min_bps().min(s.want_bps) as u128).sum();
        let min_sum: u128 = c.vifs.iter().map(|v| v.sla.min_bps() as u128).sum();

        // Σ budgets ≤ capacity, and exactly min(capacity, Σ maximums): no idle capacity
        // while some vif is below its maximum.
        prop_assert!(sum <= cap);
        prop_assert_eq!(sum, cap.min(max_sum));
        prop_assert_eq!(out.unallocated_bps as u128, cap - sum);
        prop_assert_eq!(out.overcommitted, g_sum > cap);

        for (v, s) in c.vifs.iter().zip(&out.shares) {
            // budget ≤ B_max (and the link); served ≤ want ≤ demand.
            prop_assert!(s.budget_bps <= v.sla.max_bps_on(&link));
            if let Some(m) = v.sla.max_bps() { prop_assert!(s.budget_bps <= m); }
            prop_assert!(s.served_bps <= s.want_bps && s.want_bps <= v.demand_bps);
            prop_assert!(s.guaranteed_bps <= s.served_bps && s.served_bps <= s.budget_bps);
            // Minimums met whenever Σ B_min ≤ capacity and the vif asks for it.
            if min_sum <= cap && v.demand_bps >= v.sla.min_bps() && v.sla.min_bps() <= c.capacity {
                prop_assert!(s.budget_bps >= v.sla.min_bps(), "{} below its minimum", v.vif);
                prop_assert!(s.served_bps >= v.sla.min_bps());
            }
        }

        // Work conservation: a limited vif means the link is fully served.
        if out.shares.iter().any(|s| s.limited()) {
            prop_assert_eq!(served, cap);
        }

        for (i, (vi, si)) in c.vifs.iter().zip(&out.shares).enumerate() {
            if !si.limited() { continue; }
            for (j, (vj, sj)) in c.vifs.iter().zip(&out.shares).enumerate() {
                if i == j { continue; }
                // Strict priority: a limited vif means every less important vif gets no
                // more than its guarantee.
                if vj.sla.priority() > vi.sla.priority() {
                    prop_assert_eq!(sj.served_bps, sj.guaranteed_bps);
                }
                // Max-min fair inside a class: nobody has more than a limited vif (+1 b/s
                // of remainder) unless it is held at its own guarantee.
                if vj.sla.priority() == vi.sla.priority() && sj.served_bps > si.served_bps + 1 {
                    prop_assert_eq!(sj.served_bps, sj.guaranteed_bps);
                }
            }
        }

        // Deterministic and independent of the input order.
        prop_assert_eq!(&allocate_bps(&link, &c.vifs), &out);
        let mut rev = c.vifs.clone();
        rev.reverse();
        let out_rev = allocate_bps(&link, &rev);
        let by_vif = |o: &allocator::step1::Step1Output, v: &[Step1Input]| -> BTreeMap<VifId, u64> {
            v.iter().zip(&o.shares).map(|(v, s)| (v.vif, s.budget_bps)).collect()
        };
        prop_assert_eq!(by_vif(&out, &c.vifs), by_vif(&out_rev, &rev));
    }

    #[test]
    fn step2_invariants(c in case()) {
        let s = slas(&c);
        let a = allocate(&s, &demands(&c), Duration::from_millis(20));
        let mut per_vm: BTreeMap<u16, (u64, usize)> = BTreeMap::new();
        for v in &a.vifs {
            match s.vm(v.vif.domid).pps() {
                None => prop_assert_eq!(v.budget.pps, None),
                Some(cap) => {
                    let p = v.budget.pps.unwrap();
                    prop_assert!(p <= cap);
                    let e = per_vm.entry(v.vif.domid.0).or_insert((0, 0));
                    e.0 += p;
                    e.1 += 1;
                    // An allowed vif is never frozen at 0 packets/s while the cap allows
                    // one per vif.
                    let n = a.vifs.iter().filter(|w| w.vif.domid == v.vif.domid).count() as u64;
                    if v.budget.bps > 0 && cap >= n { prop_assert!(p >= 1); }
                }
            }
            // Bursts follow the rates.
            prop_assert_eq!(v.budget.burst_bytes == 0, v.budget.bps == 0);
            prop_assert_eq!(v.budget.burst_packets.map(|b| b == 0), v.budget.pps.map(|p| p == 0));
        }
        // Σ pps^vf_i = pps^VM_j exactly.
        for (d, (sum, _)) in per_vm {
            prop_assert_eq!(Some(sum), s.vm(xen_ids::DomId(d)).pps());
        }
        prop_assert_eq!(allocate(&s, &demands(&c), Duration::from_millis(20)), a);
    }
}

/// The case's SLAs as RECEIVE SLAs (TX best effort on a 1 Gb/s link, no TX caps), the
/// receive capacity the case's capacity.
fn rx_slas(c: &Case) -> SlaSet {
    let link = Link::new(1_000_000_000)
        .unwrap()
        .with_rx_capacity(c.capacity)
        .unwrap();
    let mut s = SlaSet::new(link);
    for v in &c.vifs {
        let tx = VifSla::new(Subject::Defaults, v.sla.priority(), 0, None).unwrap();
        let sla = tx
            .with_rx(Subject::Defaults, v.sla.min_bps(), v.sla.max_bps())
            .unwrap();
        s.set_vif(v.vif, sla);
    }
    for (d, p) in &c.caps {
        let domid = xen_ids::DomId(*d);
        let vm = VmSla::new(domid, None)
            .unwrap()
            .with_rx_pps(domid, *p)
            .unwrap();
        s.set_vm(domid, vm);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The receive direction runs the same two steps on its own SLAs: its allocation is
    /// the one the TX properties above check for the same values, and a receive SLA
    /// changes nothing on TX.
    #[test]
    fn rx_direction_invariants(c in case()) {
        let both = rx_slas(&c);
        let d = demands(&c);
        let w = Duration::from_millis(20);
        let rx = allocate(&both.in_direction(allocator::Direction::Rx), &d, w);
        prop_assert_eq!(&rx, &allocate(&slas(&c), &d, w));
        let link = Link::new(c.capacity).unwrap();
        let sum: u128 = rx.vifs.iter().map(|v| v.budget.bps as u128).sum();
        prop_assert!(sum <= c.capacity as u128);
        let mut per_vm: BTreeMap<u16, u64> = BTreeMap::new();
        for (v, a) in c.vifs.iter().zip(&rx.vifs) {
            let sla = both.vif(v.vif);
            prop_assert!(a.budget.bps <= sla.rx_max_bps().unwrap_or(u64::MAX));
            prop_assert!(a.budget.bps <= link.capacity_bps());
            if let Some(p) = a.budget.pps {
                *per_vm.entry(v.vif.domid.0).or_default() += p;
            }
            prop_assert!(both.rx_limited(v.vif));
        }
        for (dom, sum) in per_vm {
            prop_assert_eq!(Some(sum), both.vm(xen_ids::DomId(dom)).rx_pps());
        }
        // TX: as if no receive SLA existed.
        let mut tx_only = SlaSet::new(Link::new(1_000_000_000).unwrap());
        for v in &c.vifs {
            let sla = VifSla::new(Subject::Defaults, v.sla.priority(), 0, None).unwrap();
            tx_only.set_vif(v.vif, sla);
        }
        for d in c.caps.keys() {
            let domid = xen_ids::DomId(*d);
            tx_only.set_vm(domid, VmSla::new(domid, None).unwrap());
        }
        prop_assert_eq!(allocate(&both, &d, w), allocate(&tx_only, &d, w));
    }
}
