//! Demand estimation: what a vif would send if it were not limited, from what it sent
//! under the budget that was in force. Both a bits/s demand (for step 1) and a packets/s
//! demand (for step 2).
//!
//! A vif's true demand is only observable while it is below its budget. Rules
//! (`docs/allocator.md` §5), with `grown(x) = ⌈x × headroom⌉` (headroom 120 %):
//!
//! * **Not measured** (new vif, reconnected vif, counters reset): both demands
//!   [`UNBOUNDED`]. Without evidence the vif is assumed to want all it may get; the next
//!   round measures.
//! * **Budget 0**, bits/s or packets/s (blocked, starved by more important classes, or a
//!   VM cap smaller than its number of vifs): it could not show its demand, so the previous round's estimates are kept (unless it sent anyway,
//!   which counts as pinned).
//! * **Pinned** (measured ≥ 95 % of the bits/s budget, or of the packets/s budget; within
//!   one frame of meter resolution if it sent anything, two frames if it was pinned last
//!   round, so that one frame of meter noise at the threshold does not make it flip): packets/s demand [`UNBOUNDED`];
//!   bits/s demand [`UNBOUNDED`] if its VM has no packets/s cap, else `grown(carry)` with
//!   `carry = pps^VM × measured bits/s ÷ measured packets/s`, what the VM's whole cap
//!   carries at the frame size just observed: the most it could use whatever packet
//!   share step 2 gives it (larger frames show up as more measured bits next period).
//!   A vif pinned on packets/s only keeps at most the bits/s demand it had last round
//!   (it was not short of bits), bounded by `grown(carry)` and at least `grown(measured)`.
//!   The allocator then gives it its fair share in one step (not a multiplicative probe),
//!   which is what makes budgets settle within two periods after a demand step.
//!   Exception: a vif pinned at a budget *below the (bounded) demand estimated for it last
//!   round* was cut by another vif's claim, not by its own growth; it keeps that estimate
//!   (for either unit), so that one vif's step does not cascade into the others.
//! * **Otherwise**: bits/s demand `max(grown(measured bits/s), idle floor)`, packets/s
//!   demand `max(grown(measured packets/s), 1)`. A vif steady at its estimate uses
//!   `1/1.2 = 83 %` of it, safely under the 95 % threshold even with the ±12 %
//!   quantisation of a 20 ms meter at 10 Mb/s of full-size frames. The idle floor gives an
//!   idle vif a small non-zero budget so that when it starts sending it shows up as pinned.

use crate::step1::UNBOUNDED;

/// The rates measured over the last period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measurement {
    /// Bits/s of L2 frame bytes accepted from the vif.
    pub bps: u64,
    /// Packets/s accepted from the vif.
    pub pps: u64,
    /// The load the frontend says it was offered (sent + dropped by its own policer), if
    /// it publishes it: an untrusted hint, see [`estimate`].
    pub offered: Option<Offered>,
}

/// An offered load reported by the frontend (untrusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offered {
    /// Bits/s of L2 frame bytes.
    pub bps: u64,
    /// Packets/s.
    pub pps: u64,
}

/// Parameters of the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandParams {
    /// A vif using at least this percentage of a budget is pinned on it (1..=100).
    pub pin_threshold_pct: u8,
    /// Unpinned demand = measured × this percentage (must satisfy
    /// `headroom_pct × pin_threshold_pct > 10 000`, so a steady vif is not pinned).
    pub headroom_pct: u16,
}

impl Default for DemandParams {
    fn default() -> Self {
        DemandParams {
            pin_threshold_pct: 95,
            headroom_pct: 120,
        }
    }
}

/// The estimator's verdict for one vif.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandEstimate {
    /// Estimated bits/s demand ([`UNBOUNDED`] = all it may get).
    pub demand_bps: u64,
    /// Estimated packets/s demand ([`UNBOUNDED`] = all it may get).
    pub demand_pps: u64,
    /// The vif used ≥ the threshold of its bits/s budget.
    pub pinned_bps: bool,
    /// The vif used ≥ the threshold of its packets/s budget.
    pub pinned_pps: bool,
}

impl DemandEstimate {
    /// Both demands unbounded, not pinned: a vif without evidence.
    pub const UNKNOWN: DemandEstimate = DemandEstimate {
        demand_bps: UNBOUNDED,
        demand_pps: UNBOUNDED,
        pinned_bps: false,
        pinned_pps: false,
    };
}

/// What was in force for a vif during the period just measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    /// Its bits/s budget.
    pub budget_bps: u64,
    /// Its packets/s budget (`None` = no limit).
    pub budget_pps: Option<u64>,
    /// The bits/s demand estimated in the round that set that budget.
    pub demand_bps: u64,
    /// The packets/s demand estimated in that round.
    pub demand_pps: u64,
    /// It was pinned on bits/s in that round.
    pub pinned_bps: bool,
    /// It was pinned on packets/s in that round.
    pub pinned_pps: bool,
}

/// Whether `measured` reaches `pct` % of `budget`.
pub fn reaches(measured: u64, budget: u64, pct: u8) -> bool {
    measured as u128 * 100 >= budget as u128 * pct as u128
}

fn grown(x: u64, headroom_pct: u16) -> u64 {
    let g = (x as u128 * headroom_pct as u128).div_ceil(100);
    g.min(UNBOUNDED as u128 - 1) as u64
}

/// Estimates one vif's demands.
///
/// * `in_force`: the budget under which `measured` was taken (`None`: the vif had none).
/// * `vm_pps`: the cap of the vif's VM now in force.
/// * `measured`: `None` if the vif could not be measured this round.
/// * `quantum`: the meters' resolution over the period (one frame: `1/period` packets/s
///   and one average frame's bits/s). A vif within one frame of the threshold counts as
///   pinned: at a few frames per period the count alone cannot tell.
/// * `idle_floor_bps`: the smallest bits/s demand reported for a measured vif.
///
/// When a pinned vif's frontend reports the load it was offered (`measured.offered`, its
/// sent + dropped counters under the `drop` policy), its demand in that unit is
/// `grown(offered)` instead of unbounded (still at most `grown(carry)` for bits/s). The
/// hint is untrusted but safe: a frontend claiming more than it has gets at most what an
/// unbounded demand would get anyway; claiming less only shrinks its own budget.
pub fn estimate(
    params: &DemandParams,
    in_force: Option<InForce>,
    vm_pps: Option<u64>,
    measured: Option<Measurement>,
    quantum: Measurement,
    idle_floor_bps: u64,
) -> DemandEstimate {
    let (Some(m), Some(f)) = (measured, in_force) else {
        return DemandEstimate::UNKNOWN;
    };
    let pct = params.pin_threshold_pct;
    // Hysteresis of one frame: a vif pinned last round gets two frames of tolerance
    // instead of one, so that one frame of meter noise at the threshold does not flip it.
    let frames = |was: bool| if was { 2 } else { 1 };
    if f.budget_bps == 0 || f.budget_pps == Some(0) {
        // It could not send: nothing new is known. Something sent anyway (tokens left from
        // an older budget) means it wants more; otherwise keep the previous estimates.
        return if m.bps > 0 {
            DemandEstimate {
                pinned_bps: true,
                ..DemandEstimate::UNKNOWN
            }
        } else {
            DemandEstimate {
                demand_bps: f.demand_bps,
                demand_pps: f.demand_pps,
                pinned_bps: false,
                pinned_pps: false,
            }
        };
    }
    // Within one frame of the threshold counts, but only for a vif that sent something.
    let near = |x: u64, q: u64, b: u64, n: u64| {
        x > 0 && reaches(x.saturating_add(q.saturating_mul(n)), b, pct)
    };
    let pinned_bps = near(m.bps, quantum.bps, f.budget_bps, frames(f.pinned_bps));
    let pinned_pps = f
        .budget_pps
        .is_some_and(|p| p > 0 && near(m.pps, quantum.pps, p, frames(f.pinned_pps)));
    let h = params.headroom_pct;
    let bps_from_measure = grown(m.bps, h).max(idle_floor_bps);
    // What the VM's whole packets/s cap carries at the frame size just observed: the most
    // bits/s this vif could use whatever share of the cap step 2 gives it.
    let carry = match vm_pps {
        Some(cap) if m.pps > 0 => {
            let c = cap as u128 * m.bps as u128 / m.pps as u128;
            Some(grown(c.min(UNBOUNDED as u128 - 1) as u64, h).max(bps_from_measure))
        }
        _ => None,
    };
    // Pinned at a budget below the (bounded) demand estimated for it last round: it was cut
    // by another vif's claim, not by its own growth, so that demand still stands.
    let cut_bps = pinned_bps && f.budget_bps < f.demand_bps && f.demand_bps != UNBOUNDED;
    let cut_pps =
        pinned_pps && f.demand_pps != UNBOUNDED && f.budget_pps.is_some_and(|p| p < f.demand_pps);
    let (demand_bps, demand_pps) = if pinned_pps || pinned_bps {
        let hint_bps = m.offered.map(|o| grown(o.bps, h).max(bps_from_measure));
        let hint_pps = m.offered.map(|o| grown(o.pps, h).max(1));
        let bps = if cut_bps {
            f.demand_bps.max(bps_from_measure)
        } else if pinned_bps {
            match (carry, hint_bps) {
                (Some(c), Some(o)) => c.min(o),
                (Some(c), None) => c,
                (None, Some(o)) => o,
                (None, None) => UNBOUNDED,
            }
        } else {
            // Pinned on packets only: its bits/s need is what it asked for last round (it
            // got its bits), at most what the whole cap carries, at least what it sends.
            carry
                .map_or(bps_from_measure, |c| c.min(f.demand_bps))
                .max(bps_from_measure)
        };
        let pps = if cut_pps || (cut_bps && !pinned_pps) {
            // Held by a cut: the packets it showed last round (a bits/s cut also holds
            // its packet rate down).
            f.demand_pps.max(grown(m.pps, h).max(1))
        } else {
            hint_pps.unwrap_or(UNBOUNDED)
        };
        (bps, pps)
    } else {
        (bps_from_measure, grown(m.pps, h).max(1))
    };
    DemandEstimate {
        demand_bps,
        demand_pps,
        pinned_bps,
        pinned_pps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q0: Measurement = Measurement {
        bps: 0,
        pps: 0,
        offered: None,
    };

    fn m(bps: u64) -> Option<Measurement> {
        Some(Measurement {
            bps,
            ..Measurement::default()
        })
    }

    fn mp(bps: u64, pps: u64) -> Option<Measurement> {
        Some(Measurement {
            bps,
            pps,
            offered: None,
        })
    }

    fn f(bps: u64, pps: Option<u64>) -> Option<InForce> {
        Some(InForce {
            budget_bps: bps,
            budget_pps: pps,
            demand_bps: 42,
            demand_pps: 7,
            pinned_bps: false,
            pinned_pps: false,
        })
    }

    #[test]
    fn rules() {
        let p = DemandParams::default();
        let est = |inf, cap, meas, q, floor| estimate(&p, inf, cap, meas, q, floor);
        // not measured / no budget yet
        assert_eq!(est(None, None, m(5), Q0, 1), DemandEstimate::UNKNOWN);
        assert_eq!(
            est(f(100, None), None, None, Q0, 1),
            DemandEstimate::UNKNOWN
        );
        // pinned at ≥ 95 %, no packet cap
        let e = est(f(100, None), None, m(95), Q0, 1);
        assert!(e.pinned_bps);
        assert_eq!((e.demand_bps, e.demand_pps), (UNBOUNDED, UNBOUNDED));
        // below: 120 %
        let e = est(f(100, None), None, m(94), Q0, 1);
        assert!(!e.pinned_bps);
        assert_eq!(e.demand_bps, 113);
        // idle floor
        assert_eq!(est(f(100, None), None, m(0), Q0, 7).demand_bps, 7);
        // zero budget: nothing learnt, previous estimates kept; unless it sent anyway
        let e = est(f(0, None), None, m(0), Q0, 7);
        assert_eq!((e.demand_bps, e.demand_pps, e.pinned_bps), (42, 7, false));
        assert_eq!(est(f(0, None), None, m(8), Q0, 7).demand_bps, UNBOUNDED);
        let e = est(f(100, Some(0)), Some(1), m(0), Q0, 7);
        assert_eq!((e.demand_bps, e.demand_pps), (42, 7));
        // packets/s pinning: bits/s demand = what the VM's cap carries (×120 %)
        let pkt = mp(100, 10);
        let e = est(f(1_000, Some(10)), Some(10), pkt, Q0, 1);
        assert!(e.pinned_pps && !e.pinned_bps);
        assert_eq!((e.demand_bps, e.demand_pps), (120, UNBOUNDED));
        let e = est(f(1_000, Some(10)), Some(30), pkt, Q0, 1);
        assert_eq!((e.demand_bps, e.demand_pps), (120, UNBOUNDED));
        let unknown = Some(InForce {
            demand_bps: UNBOUNDED,
            ..f(1_000, Some(10)).unwrap()
        });
        let e = est(unknown, Some(30), pkt, Q0, 1);
        assert_eq!((e.demand_bps, e.demand_pps), (360, UNBOUNDED));
        // pinned on both
        let both = mp(990, 10);
        let e = est(f(1_000, Some(10)), Some(10), both, Q0, 1);
        assert!(e.pinned_pps && e.pinned_bps);
        assert_eq!((e.demand_bps, e.demand_pps), (1_188, UNBOUNDED));
        // pinned on bits only, under a cap: what the cap carries at its frame size
        let small = mp(1_000, 5);
        let e = est(f(1_000, Some(10)), Some(10), small, Q0, 1);
        assert!(e.pinned_bps && !e.pinned_pps);
        assert_eq!((e.demand_bps, e.demand_pps), (2_400, UNBOUNDED));
        // pinned below its last bounded estimate: keeps the estimate
        let cut = InForce {
            budget_bps: 1_000,
            budget_pps: Some(10),
            demand_bps: 1_500,
            demand_pps: 12,
            pinned_bps: false,
            pinned_pps: false,
        };
        let e = est(Some(cut), None, mp(990, 10), Q0, 1);
        assert!(e.pinned_bps && e.pinned_pps);
        assert_eq!((e.demand_bps, e.demand_pps), (1_500, 12));
        // cut on bits only: its packet demand is held too
        let cut_bits = Some(InForce {
            budget_pps: Some(100),
            ..cut
        });
        let e = est(cut_bits, None, mp(990, 5), Q0, 1);
        assert!(e.pinned_bps && !e.pinned_pps);
        assert_eq!((e.demand_bps, e.demand_pps), (1_500, 12));
        // unpinned: packets/s demand 120 % of measured
        let half = mp(500, 5);
        let e = est(f(1_000, Some(100)), Some(100), half, Q0, 1);
        assert_eq!((e.demand_bps, e.demand_pps), (600, 6));
        // within one frame of the threshold counts as pinned
        let few = mp(100, 9);
        let q = Measurement {
            bps: 10,
            pps: 1,
            offered: None,
        };
        assert!(!est(f(1_000, Some(10)), Some(10), few, Q0, 1).pinned_pps);
        assert!(est(f(1_000, Some(10)), Some(10), few, q, 1).pinned_pps);
        // a pinned vif's offered-load hint bounds its demand
        let hinted = Some(Measurement {
            bps: 1_000,
            pps: 10,
            offered: Some(Offered {
                bps: 1_500,
                pps: 15,
            }),
        });
        let e = est(f(1_000, None), None, hinted, Q0, 1);
        assert!(e.pinned_bps);
        assert_eq!((e.demand_bps, e.demand_pps), (1_800, 18));
        // ... and is ignored for an unpinned vif (its measurement is the truth)
        let e = est(f(10_000, None), None, hinted, Q0, 1);
        assert_eq!((e.demand_bps, e.demand_pps), (1_200, 12));
        // hysteresis: pinned last round, one more frame of tolerance
        let was = Some(InForce {
            pinned_bps: true,
            ..f(1_000, None).unwrap()
        });
        let q = Measurement {
            bps: 10,
            pps: 1,
            offered: None,
        };
        assert!(est(was, None, m(930), q, 1).pinned_bps);
        assert!(!est(was, None, m(929), q, 1).pinned_bps);
        assert!(!est(f(1_000, None), None, m(930), q, 1).pinned_bps);
        assert!(est(f(1_000, None), None, m(940), q, 1).pinned_bps);
        // ... but not a vif that sent nothing
        let none = mp(0, 0);
        assert!(!est(f(1_000, Some(1)), Some(10), none, q, 1).pinned_pps);
    }
}
