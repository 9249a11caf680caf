//! Step 1 (paper §IV-a): the bits/s budget B_i of every vif sharing one physical link.
//!
//! Precise rules (`docs/allocator.md` §3 has the derivation and the paper's text beside):
//!
//! * `want_i = min(demand_i, B_i^max, B_p)`: what vf_i can use this period.
//! * **Phase A, guarantees.** `g_i = min(B_i^min, want_i)`. When `Σ g_i ≤ B_p` every vif
//!   gets `g_i`; this is the paper's "pull lower classes down to their minimums, lowest
//!   class first": nobody above its minimum keeps anything a minimum needs. When
//!   `Σ g_i > B_p` (an over-committed host) the guarantees are granted class by class in
//!   priority order; the class where the link runs out shares what is left max-min fairly
//!   (each of its vifs gets `min(g_i, L)` for one level L), and less important classes get
//!   no guarantee.
//! * **Phase B, demand.** The capacity left over goes to the classes in priority order;
//!   inside a class it is shared max-min fairly (water-filling on the vifs' totals, with
//!   `g_i` as floors and `want_i` as ceilings). A class gets nothing until every more
//!   important class is satisfied.
//! * **Phase C, headroom.** If capacity is still left (every demand is met), it is
//!   handed out the same way with `min(B_i^max, B_p)` as ceilings, so a vif whose demand
//!   grows can use the idle link at once instead of waiting a period. Hence
//!   `Σ B_i = min(B_p, Σ min(B_i^max, B_p))`: no capacity is withheld from a vif below
//!   its maximum.
//!
//! Integer arithmetic only; the result depends only on the input (not on its order, as
//! long as vif ids are unique), so two runs on the same input give the same budgets.

use crate::sla::{Link, VifId, VifSla};

/// The demand value meaning "as much as it is allowed" (a vif pinned at its budget, or a
/// vif not measured yet).
pub const UNBOUNDED: u64 = u64::MAX;

/// One vif's input to step 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step1Input {
    /// The vif (tie-break of last resort in the browse order).
    pub vif: VifId,
    /// Creation sequence number: smaller = created earlier (the paper's order inside a
    /// class).
    pub created: u64,
    /// Its SLA.
    pub sla: VifSla,
    /// Its estimated demand in bits/s ([`UNBOUNDED`] = wants all it may get).
    pub demand_bps: u64,
}

/// One vif's result of step 1. All values bits/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step1Share {
    /// `min(demand, B^max, B_p)`.
    pub want_bps: u64,
    /// What phase A granted (`min(B^min, want)` unless over-committed).
    pub guaranteed_bps: u64,
    /// After phase B: the part of `want` that is served (`≤ want`).
    pub served_bps: u64,
    /// After phase C: the budget B_i (`served + headroom`, `≤ min(B^max, B_p)`).
    pub budget_bps: u64,
}

impl Step1Share {
    /// The vif is limited: it wants more than it is served.
    pub fn limited(&self) -> bool {
        self.served_bps < self.want_bps
    }
}

/// The result of step 1 for all vifs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step1Output {
    /// Per vif, in the order of the input.
    pub shares: Vec<Step1Share>,
    /// `Σ min(B^min, want) > B_p`: some guarantee could not be met.
    pub overcommitted: bool,
    /// `B_p − Σ budgets`: capacity nobody may use (only non-zero when every vif is at its
    /// maximum).
    pub unallocated_bps: u64,
}

/// The browse order: class, then creation, then vif id, then input position.
pub(crate) fn browse_order<T>(items: &[T], key: impl Fn(&T) -> (u8, u64, VifId)) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| {
        let (p, c, v) = key(&items[i]);
        (p, c, v, i)
    });
    order
}

/// Runs step 1. Pure: no I/O, no clock.
pub fn allocate_bps(link: &Link, vifs: &[Step1Input]) -> Step1Output {
    let capacity = link.capacity_bps();
    let n = vifs.len();
    let order = browse_order(vifs, |v| (v.sla.priority().get(), v.created, v.vif));
    let ceil_max: Vec<u64> = vifs.iter().map(|v| v.sla.max_bps_on(link)).collect();
    let want: Vec<u64> = vifs
        .iter()
        .zip(&ceil_max)
        .map(|(v, &m)| v.demand_bps.min(m))
        .collect();
    let guarantee: Vec<u64> = vifs
        .iter()
        .zip(&want)
        .map(|(v, &w)| v.sla.min_bps().min(w))
        .collect();

    // The classes, as runs of `order` with equal priority.
    let mut classes: Vec<&[usize]> = Vec::new();
    let mut start = 0;
    for k in 1..=order.len() {
        if k == order.len() || vifs[order[k]].sla.priority() != vifs[order[start]].sla.priority() {
            classes.push(&order[start..k]);
            start = k;
        }
    }

    // Phase A: guarantees, class by class in priority order; inside the class where the
    // link runs out, the guarantees are shared max-min fairly (water-filling with the
    // guarantees as ceilings), so equals give way equally.
    let mut alloc = vec![0u64; n];
    let mut remaining = capacity as u128;
    for class in &classes {
        water_fill(class, &mut alloc, &guarantee, &mut remaining);
    }
    let overcommitted = alloc.iter().zip(&guarantee).any(|(a, g)| a < g);
    let granted = alloc.clone();

    // Phase B: demand, class by class, max-min fair inside a class.
    for class in &classes {
        if remaining == 0 {
            break;
        }
        water_fill(class, &mut alloc, &want, &mut remaining);
    }
    let served = alloc.clone();

    // Phase C: headroom up to the maximums, same rule.
    for class in &classes {
        if remaining == 0 {
            break;
        }
        water_fill(class, &mut alloc, &ceil_max, &mut remaining);
    }

    let shares = (0..n)
        .map(|i| Step1Share {
            want_bps: want[i],
            guaranteed_bps: granted[i],
            served_bps: served[i],
            budget_bps: alloc[i],
        })
        .collect();
    Step1Output {
        shares,
        overcommitted,
        unallocated_bps: remaining as u64,
    }
}

/// Raises `alloc[i]` for `i` in `group` towards `ceil[i]` using at most `*remaining`,
/// max-min fairly: every vif ends at `max(alloc_i, min(L, ceil_i))` for one water level
/// `L`, plus one bit/s for the first few (in group order) uncapped vifs so that the whole
/// remainder is used when the ceilings allow. Requires `alloc[i] ≤ ceil[i]`.
fn water_fill(group: &[usize], alloc: &mut [u64], ceil: &[u64], remaining: &mut u128) {
    let need: u128 = group.iter().map(|&i| (ceil[i] - alloc[i]) as u128).sum();
    if need <= *remaining {
        for &i in group {
            alloc[i] = ceil[i];
        }
        *remaining -= need;
        return;
    }
    let base: u128 = group.iter().map(|&i| alloc[i] as u128).sum();
    let target = base + *remaining;
    // f(L) = Σ max(alloc_i, min(L, ceil_i)) is piecewise linear: its slope rises by one at
    // each alloc_i and falls by one at each ceil_i. Sweep the sorted breakpoints to the
    // segment where f crosses `target` and solve there: the largest L with f(L) ≤ target.
    let mut events: Vec<(u64, i64)> = Vec::with_capacity(2 * group.len());
    for &i in group {
        if alloc[i] < ceil[i] {
            events.push((alloc[i], 1));
            events.push((ceil[i], -1));
        }
    }
    events.sort_unstable();
    let (mut at, mut f, mut slope) = (0u64, base, 0i64);
    let mut k = 0;
    let level = loop {
        let next = events.get(k).map(|e| e.0);
        // f on [at, next) is f + slope × (L − at); past the last event it is flat (and
        // above target, since need > remaining).
        let reach = match next {
            Some(p) => f + slope as u128 * (p - at) as u128,
            None => u128::MAX,
        };
        if reach > target {
            // slope > 0 here: f(at) ≤ target < f(next).
            let x = target.saturating_sub(f) / slope.max(1) as u128;
            break at.saturating_add(x.min(u64::MAX as u128) as u64);
        }
        let p = next.unwrap_or(at);
        f = reach;
        at = p;
        while k < events.len() && events[k].0 == p {
            slope += events[k].1;
            k += 1;
        }
    };
    let mut used: u128 = 0;
    for &i in group {
        let old = alloc[i];
        alloc[i] = old.max(level.min(ceil[i]));
        used += (alloc[i] - old) as u128;
    }
    // Vifs that would grow at level + 1 each take one more bit/s until the remainder is
    // gone (fewer of them than of such vifs, by the choice of `level`).
    let mut left = *remaining - used;
    for &i in group {
        if left == 0 {
            break;
        }
        if alloc[i] == level && ceil[i] > level {
            alloc[i] += 1;
            left -= 1;
        }
    }
    *remaining = left;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{Priority, Subject};

    const M: u64 = 1_000_000;

    fn sla(p: u8, min: u64, max: Option<u64>) -> VifSla {
        VifSla::new(Subject::Defaults, Priority::new(p).unwrap(), min, max).unwrap()
    }

    fn input(d: u16, p: u8, min: u64, max: Option<u64>, demand: u64) -> Step1Input {
        Step1Input {
            vif: VifId::new(xen_ids::DomId(d), 0),
            created: d as u64,
            sla: sla(p, min, max),
            demand_bps: demand,
        }
    }

    fn budgets(o: &Step1Output) -> Vec<u64> {
        o.shares.iter().map(|s| s.budget_bps).collect()
    }

    #[test]
    fn max_min_fair_in_class() {
        let link = Link::new(1000 * M).unwrap();
        let v = [
            input(1, 0, 0, None, 100 * M),
            input(2, 0, 0, None, UNBOUNDED),
            input(3, 0, 0, None, UNBOUNDED),
        ];
        let o = allocate_bps(&link, &v);
        assert_eq!(budgets(&o), vec![100 * M, 450 * M, 450 * M]);
        assert!(!o.overcommitted);
        assert_eq!(o.unallocated_bps, 0);
    }

    #[test]
    fn remainder_goes_bit_by_bit_in_browse_order() {
        let link = Link::new(10).unwrap();
        let v = [
            input(1, 0, 0, None, UNBOUNDED),
            input(2, 0, 0, None, UNBOUNDED),
            input(3, 0, 0, None, UNBOUNDED),
        ];
        assert_eq!(budgets(&allocate_bps(&link, &v)), vec![4, 3, 3]);
    }

    #[test]
    fn strict_priority_for_spare() {
        let link = Link::new(1000 * M).unwrap();
        let v = [
            input(1, 1, 100 * M, None, UNBOUNDED),
            input(2, 0, 100 * M, Some(600 * M), UNBOUNDED),
        ];
        // vif 2 (class 0) is served up to its max first; vif 1 keeps its minimum + rest.
        assert_eq!(budgets(&allocate_bps(&link, &v)), vec![400 * M, 600 * M]);
    }

    #[test]
    fn overcommitted_minimums_by_class_then_max_min_fair() {
        let link = Link::new(1000 * M).unwrap();
        let v = [
            input(3, 1, 500 * M, None, UNBOUNDED),
            input(2, 1, 400 * M, None, UNBOUNDED),
            input(1, 0, 300 * M, None, UNBOUNDED),
        ];
        let o = allocate_bps(&link, &v);
        assert!(o.overcommitted);
        // class 0 first (300), then class 1 shares the 700 left max-min fairly.
        assert_eq!(budgets(&o), vec![350 * M, 350 * M, 300 * M]);
        // The paper's SLAs on a real 1 GbE link with 1500-byte frames (984.25 Mb/s of
        // frame bytes): VM2 (class 0) keeps 700, VM1 and VM3 give way equally.
        let link = Link::new(984_251_968).unwrap();
        let v = [
            input(1, 1, 150 * M, Some(150 * M), UNBOUNDED),
            input(2, 0, 700 * M, Some(700 * M), UNBOUNDED),
            input(3, 1, 150 * M, Some(150 * M), UNBOUNDED),
        ];
        let b = budgets(&allocate_bps(&link, &v));
        assert_eq!(b[1], 700 * M);
        assert!(b[0].abs_diff(b[2]) <= 1 && b[0] >= 142 * M, "{b:?}");
        assert_eq!(b.iter().sum::<u64>(), 984_251_968);
    }

    #[test]
    fn headroom_only_after_demand() {
        let link = Link::new(1000 * M).unwrap();
        let v = [
            input(1, 0, 0, Some(500 * M), 10 * M),
            input(2, 1, 0, Some(300 * M), 20 * M),
        ];
        let o = allocate_bps(&link, &v);
        assert_eq!(o.shares[0].served_bps, 10 * M);
        assert_eq!(o.shares[1].served_bps, 20 * M);
        assert_eq!(budgets(&o), vec![500 * M, 300 * M]);
        assert_eq!(o.unallocated_bps, 200 * M);
    }

    #[test]
    fn empty_input() {
        let o = allocate_bps(&Link::new(1).unwrap(), &[]);
        assert!(o.shares.is_empty());
        assert_eq!(o.unallocated_bps, 1);
    }
}
