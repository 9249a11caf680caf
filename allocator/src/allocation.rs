//! One allocation round as a pure function: SLAs + demands → budgets (step 1, step 2,
//! bursts). No I/O, no clock; the same input always gives the same output.

use std::time::Duration;

use crate::budget::Budget;
use crate::sla::{Link, SlaSet, VifId};
use crate::step1::{allocate_bps, Step1Input, Step1Share};
use crate::step2::{split_pps, Step2Input};

/// One vif's input to a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifDemand {
    /// The vif (unique within a round).
    pub vif: VifId,
    /// Creation sequence number (smaller = older), the paper's order inside a class.
    pub created: u64,
    /// Estimated demand in bits/s ([`crate::UNBOUNDED`] = all it may get).
    pub demand_bps: u64,
    /// Estimated demand in packets/s ([`crate::UNBOUNDED`] = all it may get); only used
    /// to split a VM's packets/s cap among its vifs.
    pub demand_pps: u64,
}

/// One vif's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifAllocation {
    /// The vif.
    pub vif: VifId,
    /// Step 1's details (want, guaranteed, served, budget in bits/s).
    pub share: Step1Share,
    /// The budget to enforce.
    pub budget: Budget,
}

/// The result of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Per vif, in input order.
    pub vifs: Vec<VifAllocation>,
    /// Σ min(B^min, want) exceeded the link: some guarantees were cut.
    pub overcommitted: bool,
    /// Link capacity no vif may use (every vif is at its maximum).
    pub unallocated_bps: u64,
    /// The burst window the bursts were sized with: the one asked for, or shorter when
    /// the link's buffer bounds the sum of the bursts ([`burst_window`]).
    pub burst_window: Duration,
}

/// The burst window of a round: `asked`, shortened where the link has a buffer so that
/// the vifs' bursts together fill at most half of it: Σ B_i × window / 8 ≤ buffer_bytes
/// / 2, and Σ pps_i × window ≤ buffer_packets / 2 (over the vifs with a packets/s
/// budget; the others have no packet bucket). With Σ B_i ≤ B_p, token-bucket traffic
/// never queues more than Σ bursts at the link (the network-calculus backlog bound), and
/// the other half absorbs what the buckets cannot bound: the backend draining rings
/// after it was descheduled. Never below 1 µs (the per-vif minimum bursts of
/// [`Budget::with_bursts`] still apply).
pub fn burst_window(
    link: &Link,
    budgets: impl IntoIterator<Item = (u64, Option<u64>)>,
    asked: Duration,
) -> Duration {
    let (mut total_bps, mut total_pps) = (0u128, 0u128);
    for (bps, pps) in budgets {
        total_bps += u128::from(bps);
        total_pps += u128::from(pps.unwrap_or(0));
    }
    let mut w = asked;
    // (buffer / 2) bytes × 8 bits / total bits/s, in ns.
    if let (Some(buffer), true) = (link.buffer_bytes(), total_bps > 0) {
        let ns = u128::from(buffer) * 4 * 1_000_000_000 / total_bps;
        w = w.min(Duration::from_nanos(ns.min(u64::MAX as u128) as u64));
    }
    // (buffer / 2) packets / total packets/s, in ns.
    if let (Some(buffer), true) = (link.buffer_packets(), total_pps > 0) {
        let ns = u128::from(buffer) * 500_000_000 / total_pps;
        w = w.min(Duration::from_nanos(ns.min(u64::MAX as u128) as u64));
    }
    w.max(Duration::from_micros(1))
}

/// Computes every vif's budget. `window` sizes the token buckets (normally the
/// readjustment period; shortened by [`burst_window`] when the link has a buffer).
pub fn allocate(slas: &SlaSet, vifs: &[VifDemand], window: Duration) -> Allocation {
    let step1_in: Vec<Step1Input> = vifs
        .iter()
        .map(|v| Step1Input {
            vif: v.vif,
            created: v.created,
            sla: slas.vif(v.vif),
            demand_bps: v.demand_bps,
        })
        .collect();
    let step1 = allocate_bps(slas.link(), &step1_in);
    let step2_in: Vec<Step2Input> = step1_in
        .iter()
        .zip(&step1.shares)
        .zip(vifs)
        .map(|((v, s), d)| Step2Input {
            vif: v.vif,
            priority: v.sla.priority().get(),
            created: v.created,
            budget_bps: s.budget_bps,
            demand_pps: d.demand_pps,
            vm_pps: slas.vm(v.vif.domid).pps(),
        })
        .collect();
    let pps = split_pps(&step2_in);
    let window = burst_window(
        slas.link(),
        step1
            .shares
            .iter()
            .map(|s| s.budget_bps)
            .zip(pps.iter().copied()),
        window,
    );
    let vifs = vifs
        .iter()
        .zip(step1.shares)
        .zip(pps)
        .map(|((v, share), pps)| VifAllocation {
            vif: v.vif,
            share,
            budget: Budget::with_bursts(share.budget_bps, pps, window),
        })
        .collect();
    Allocation {
        vifs,
        overcommitted: step1.overcommitted,
        unallocated_bps: step1.unallocated_bps,
        burst_window: window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{Priority, Subject, VifSla};

    const M: u64 = 1_000_000;

    fn paper(link: Link) -> (SlaSet, Vec<VifDemand>) {
        let mut set = SlaSet::new(link);
        let mut vifs = Vec::new();
        for (i, (class, bps)) in [(1, 150 * M), (0, 700 * M), (1, 150 * M)]
            .iter()
            .enumerate()
        {
            let vif = VifId {
                domid: xen_ids::DomId(i as u16 + 1),
                devid: 0,
            };
            let p = Priority::parse(&class.to_string()).unwrap();
            set.set_vif(
                vif,
                VifSla::new(Subject::Vif(vif), p, *bps, Some(*bps)).unwrap(),
            );
            vifs.push(VifDemand {
                vif,
                created: i as u64,
                demand_bps: crate::UNBOUNDED,
                demand_pps: crate::UNBOUNDED,
            });
        }
        (set, vifs)
    }

    #[test]
    fn without_a_buffer_the_window_is_the_one_asked() {
        let (set, vifs) = paper(Link::new(1000 * M).unwrap());
        let a = allocate(&set, &vifs, Duration::from_millis(20));
        assert_eq!(a.burst_window, Duration::from_millis(20));
        assert_eq!(a.vifs[1].budget.burst_bytes, 700 * M / 8 / 50);
    }

    #[test]
    fn bursts_fit_half_the_link_buffer() {
        // 1000 frames of 1500 bytes; Σ B_i = 1 Gb/s: half the buffer is 6 ms of traffic.
        let link = Link::new(1000 * M).unwrap().with_buffer(1_500_000).unwrap();
        let (set, vifs) = paper(link);
        let a = allocate(&set, &vifs, Duration::from_millis(20));
        assert_eq!(a.burst_window, Duration::from_millis(6));
        let sum: u64 = a.vifs.iter().map(|v| v.budget.burst_bytes).sum();
        assert!(sum <= 750_000, "Σ bursts {sum}");
        assert_eq!(a.vifs[1].budget.burst_bytes, 525_000);
        // Packet bursts use the same window.
        let pps_window = a.vifs[1].budget.pps.map(|p| p * 6 / 1000);
        assert_eq!(a.vifs[1].budget.burst_packets, pps_window);
        // A period shorter than the bound is kept.
        let a = allocate(&set, &vifs, Duration::from_millis(2));
        assert_eq!(a.burst_window, Duration::from_millis(2));
    }

    #[test]
    fn the_bound_follows_what_is_allocated() {
        // A 10 Gb/s link: Σ B_i is the sum of the maximums, not the link.
        let link = Link::new(10_000 * M)
            .unwrap()
            .with_buffer(1_500_000)
            .unwrap();
        let (set, vifs) = paper(link);
        let a = allocate(&set, &vifs, Duration::from_millis(20));
        assert_eq!(a.burst_window, Duration::from_millis(6));
        // Only VM2 (700 Mb/s) on the link: its burst may span more time.
        let a = allocate(&set, &vifs[1..2], Duration::from_millis(20));
        let expect = Duration::from_nanos(750_000 * 8 * 1_000 / 700);
        assert_eq!(a.burst_window, expect);
        assert_eq!(a.vifs[0].budget.burst_bytes, 750_000);
    }

    #[test]
    fn packet_bursts_fit_half_the_link_buffer_too() {
        // txqueuelen 1000; caps 20k + 60k + 60k = 140 kp/s: 500 packets are 3.57 ms.
        let link = Link::new(10_000 * M)
            .unwrap()
            .with_buffer(1_500_000)
            .unwrap()
            .with_buffer_packets(1000)
            .unwrap();
        let (mut set, vifs) = paper(link);
        for (d, pps) in [(1, 20_000), (2, 60_000), (3, 60_000)] {
            set.set_vm(
                xen_ids::DomId(d),
                crate::VmSla::new(xen_ids::DomId(d), Some(pps)).unwrap(),
            );
        }
        let a = allocate(&set, &vifs, Duration::from_millis(20));
        assert_eq!(
            a.burst_window,
            Duration::from_nanos(500 * 1_000_000_000 / 140_000)
        );
        let sum: u64 = a.vifs.iter().map(|v| v.budget.burst_packets.unwrap()).sum();
        assert!(sum <= 503, "Σ packet bursts {sum}");
        // Without packet caps the packet buffer bounds nothing.
        let (set, vifs) = paper(link);
        let a = allocate(&set, &vifs, Duration::from_millis(20));
        assert_eq!(a.burst_window, Duration::from_millis(6));
    }

    #[test]
    fn a_link_buffer_must_be_sane() {
        let l = Link::new(M).unwrap();
        assert!(l.with_buffer(0).is_err());
        assert!(l.with_buffer(crate::sla::MAX_BUFFER_BYTES + 1).is_err());
        assert_eq!(l.with_buffer(4096).unwrap().buffer_bytes(), Some(4096));
        assert!(l.with_buffer_packets(0).is_err());
        assert!(l
            .with_buffer_packets(crate::sla::MAX_BUFFER_PACKETS + 1)
            .is_err());
        assert_eq!(l.with_buffer_packets(9).unwrap().buffer_packets(), Some(9));
    }
}
