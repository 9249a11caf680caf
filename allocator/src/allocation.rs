//! One allocation round as a pure function: SLAs + demands → budgets (step 1, step 2,
//! bursts). No I/O, no clock; the same input always gives the same output.

use std::time::Duration;

use crate::budget::Budget;
use crate::sla::{SlaSet, VifId};
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
}

/// Computes every vif's budget. `burst_window` sizes the token buckets (normally the
/// readjustment period).
pub fn allocate(slas: &SlaSet, vifs: &[VifDemand], burst_window: Duration) -> Allocation {
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
    let vifs = vifs
        .iter()
        .zip(step1.shares)
        .zip(pps)
        .map(|((v, share), pps)| VifAllocation {
            vif: v.vif,
            share,
            budget: Budget::with_bursts(share.budget_bps, pps, burst_window),
        })
        .collect();
    Allocation {
        vifs,
        overcommitted: step1.overcommitted,
        unallocated_bps: step1.unallocated_bps,
    }
}
