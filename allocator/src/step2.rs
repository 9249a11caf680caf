//! Step 2 (paper §IV-b): the packets/s budget of every vif.
//!
//! The paper splits a VM's cap pps^VM_j among its vifs in proportion to their bandwidth,
//! `pps^vf_i = pps^VM_j × B_i / BT^VM_j`, `BT^VM_j = Σ_{i ∈ VM_j} B_i`. Any split whose
//! weights are bits/s allocations feeds back on itself: a vif held back by its packet
//! share measures (and so is allocated) fewer bits, which shrinks its share again; with
//! measured rates small-frame vifs starve, and with allocated rates the shares oscillate
//! when a vif's packet need sits near its share (both found by the property tests). Made
//! precise and stable (`docs/allocator.md` §4):
//!
//! * Every vif with a non-zero bits/s budget first gets 1 packet/s (when the cap allows one
//!   each), so that no allowed vif is frozen at zero packets.
//! * The packets are shared **max-min fairly on the vifs' packets/s demands** (estimated
//!   like bits/s demands: 120 % of the measured rate, or unbounded when pinned): nobody
//!   gets more than it needs while another is short, and vifs that all want more get
//!   equal shares.
//! * The packets nobody needs (headroom) are split by the paper's ratio `B_i / BT^VM_j`,
//!   with `B_i` the step-1 bits/s budget; equal split when `BT^VM_j = 0`.
//!
//! `Σ pps^vf_i = pps^VM_j` exactly. Integer arithmetic, remainders by largest remainder
//! with ties in browse order: deterministic. A VM without a cap gives its vifs no
//! packets/s limit (`None`).

use std::collections::BTreeMap;

use crate::sla::{DomId, VifId};
use crate::step1::{browse_order, UNBOUNDED};

/// One vif's input to step 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step2Input {
    /// The vif; its `domid` is the VM.
    pub vif: VifId,
    /// Class number (browse order only).
    pub priority: u8,
    /// Creation sequence number (browse order only).
    pub created: u64,
    /// Its step-1 budget B_i, bits/s: its weight for headroom; a vif with a zero budget is
    /// not guaranteed a packet.
    pub budget_bps: u64,
    /// Its estimated packets/s demand ([`UNBOUNDED`] = as many as it may get).
    pub demand_pps: u64,
    /// The cap pps^VM_j of its VM (`None` = uncapped). Vifs of one VM must agree; the
    /// first one in browse order is used.
    pub vm_pps: Option<u64>,
}

/// Runs step 2: the packets/s budget of every vif, in input order. Pure.
pub fn split_pps(vifs: &[Step2Input]) -> Vec<Option<u64>> {
    let order = browse_order(vifs, |v| (v.priority, v.created, v.vif));
    let mut by_vm: BTreeMap<DomId, Vec<usize>> = BTreeMap::new();
    for &i in &order {
        by_vm.entry(vifs[i].vif.domid).or_default().push(i);
    }
    let mut out = vec![None; vifs.len()];
    for members in by_vm.values() {
        let Some(cap) = vifs[members[0]].vm_pps else {
            continue;
        };
        let m: Vec<&Step2Input> = members.iter().map(|&i| &vifs[i]).collect();
        for (k, share) in split_cap(cap, &m).into_iter().enumerate() {
            out[members[k]] = Some(share);
        }
    }
    out
}

/// Splits one VM's cap among its vifs (given in browse order).
fn split_cap(cap: u64, vifs: &[&Step2Input]) -> Vec<u64> {
    let n = vifs.len();
    let mut out = vec![0u64; n];
    let allowed: Vec<usize> = (0..n).filter(|&k| vifs[k].budget_bps > 0).collect();
    let mut rest = cap as u128;
    if !allowed.is_empty() && rest >= allowed.len() as u128 {
        for &k in &allowed {
            out[k] = 1;
        }
        rest -= allowed.len() as u128;
    }
    // Max-min fair up to the demands (vifs with a zero bits/s budget take no part).
    let takers: Vec<usize> = if allowed.is_empty() {
        (0..n).collect()
    } else {
        allowed
    };
    let ceil: Vec<u128> = takers
        .iter()
        .map(|&k| match vifs[k].demand_pps {
            UNBOUNDED => u128::MAX,
            d => (d as u128).max(out[k] as u128),
        })
        .collect();
    let mut have: Vec<u128> = takers.iter().map(|&k| out[k] as u128).collect();
    let need: u128 = ceil
        .iter()
        .zip(&have)
        .map(|(c, h)| c.saturating_sub(*h))
        .fold(0u128, |a, b| a.saturating_add(b));
    if need <= rest {
        for (j, h) in have.iter_mut().enumerate() {
            rest -= ceil[j] - *h;
            *h = ceil[j];
        }
    } else {
        // Water level: the largest L with Σ max(have, min(L, ceil)) ≤ have + rest.
        let target: u128 = have.iter().sum::<u128>() + rest;
        let level_sum = |l: u128| -> u128 {
            have.iter()
                .zip(&ceil)
                .map(|(h, c)| (*h).max(l.min(*c)))
                .sum()
        };
        let (mut lo, mut hi) = (0u128, target + 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if level_sum(mid) <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        for (j, h) in have.iter_mut().enumerate() {
            *h = (*h).max(lo.min(ceil[j]));
        }
        let mut left = target - have.iter().sum::<u128>();
        for (j, h) in have.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            if *h == lo && ceil[j] > lo {
                *h += 1;
                left -= 1;
            }
        }
        rest = 0;
    }
    for (j, &k) in takers.iter().enumerate() {
        out[k] = have[j] as u64;
    }
    // Packets nobody needs: headroom, by the paper's ratio B_i / BT (equal if BT = 0).
    if rest > 0 {
        let all_zero = vifs.iter().all(|v| v.budget_bps == 0);
        let weights: Vec<u128> = vifs
            .iter()
            .map(|v| if all_zero { 1 } else { v.budget_bps as u128 })
            .collect();
        for (k, g) in apportion(rest, &weights).into_iter().enumerate() {
            out[k] += g as u64;
        }
    }
    out
}

/// Splits `total` in proportion to `weights` (all > 0): floors, then one more each by
/// largest remainder, ties to the earlier position. Exact: the result sums to `total`.
fn apportion(total: u128, weights: &[u128]) -> Vec<u128> {
    let wsum: u128 = weights.iter().sum();
    if weights.is_empty() || wsum == 0 {
        return vec![0; weights.len()];
    }
    let mut out = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given = 0u128;
    for (j, &w) in weights.iter().enumerate() {
        // total ≤ u64::MAX and w ≤ u64::MAX: the product fits in u128.
        let num = total * w;
        out.push(num / wsum);
        given += num / wsum;
        rems.push((num % wsum, j));
    }
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = total - given;
    for (_, j) in rems {
        if left == 0 {
            break;
        }
        out[j] += 1;
        left -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inp(domid: u16, devid: u32, budget: u64, demand: u64, cap: Option<u64>) -> Step2Input {
        Step2Input {
            vif: VifId::new(xen_ids::DomId(domid), devid),
            priority: 0,
            created: devid as u64,
            budget_bps: budget,
            demand_pps: demand,
            vm_pps: cap,
        }
    }

    const U: u64 = UNBOUNDED;

    #[test]
    fn one_vif_per_vm_gets_the_cap() {
        let v = [
            inp(1, 0, 150, U, Some(20_000)),
            inp(2, 0, 700, 10, Some(60_000)),
            inp(3, 0, 5, U, None),
        ];
        assert_eq!(split_pps(&v), vec![Some(20_000), Some(60_000), None]);
    }

    #[test]
    fn max_min_on_needs_then_headroom_by_bits() {
        // vif 1.1 needs 4 000: it gets them; 1.0 (unbounded) gets the rest.
        let v = [
            inp(1, 0, 300, U, Some(60_000)),
            inp(1, 1, 100, 4_000, Some(60_000)),
        ];
        assert_eq!(split_pps(&v), vec![Some(56_000), Some(4_000)]);
        // Both want more than half: equal shares.
        let v = [
            inp(1, 0, 300, U, Some(60_000)),
            inp(1, 1, 100, 40_000, Some(60_000)),
        ];
        assert_eq!(split_pps(&v), vec![Some(30_000), Some(30_000)]);
        // Nobody needs the cap: the spare is split by B_i / BT on top of the needs.
        let v = [
            inp(1, 0, 300, 1_000, Some(10_000)),
            inp(1, 1, 100, 1_000, Some(10_000)),
        ];
        assert_eq!(split_pps(&v), vec![Some(7_000), Some(3_000)]);
    }

    #[test]
    fn equal_split_when_idle() {
        let v = [
            inp(1, 0, 0, U, Some(10)),
            inp(1, 1, 0, U, Some(10)),
            inp(1, 2, 0, U, Some(10)),
        ];
        assert_eq!(split_pps(&v), vec![Some(4), Some(3), Some(3)]);
        let v = [inp(1, 0, 5, 1, Some(9)), inp(1, 1, 5, 1, Some(9))];
        assert_eq!(split_pps(&v), vec![Some(5), Some(4)]);
    }

    #[test]
    fn every_allowed_vif_gets_a_packet() {
        let v = [
            inp(1, 0, 1_000_000_000, U, Some(1000)),
            inp(1, 1, 1, 0, Some(1000)),
        ];
        assert_eq!(split_pps(&v), vec![Some(999), Some(1)]);
        // A vif with budget 0 gets no packets when the others have budget.
        let v = [inp(1, 0, 10, U, Some(1000)), inp(1, 1, 0, U, Some(1000))];
        assert_eq!(split_pps(&v), vec![Some(1000), Some(0)]);
    }

    #[test]
    fn exact_sum_with_remainders() {
        let w = [7u128, 11, 13, 1];
        for total in [0u128, 1, 2, 3, 4, 5, 17, 1000, 999_999] {
            let a = apportion(total, &w);
            assert_eq!(a.iter().sum::<u128>(), total, "{total}");
        }
    }
}
