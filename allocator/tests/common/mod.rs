//! A simulated datapath for the control-loop tests: fluid sources that each offer a rate
//! of fixed-size frames and send `min(offered, bits/s budget, packets/s budget × frame)`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use allocator::{Budget, Datapath, OfferedTotals, VifId, VifReading};

/// One guest's traffic source on one vif.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub vif: VifId,
    pub created: u64,
    /// Offered load, bits/s of L2 frame bytes.
    pub offered_bps: u64,
    /// L2 frame size.
    pub frame_bytes: u64,
}

#[derive(Debug, Default)]
pub struct SimDatapath {
    pub sources: Vec<Source>,
    /// Budgets in force (written by the loop).
    pub budgets: BTreeMap<VifId, Budget>,
    /// Cumulative (bytes, packets) per vif, in whole frames.
    pub totals: BTreeMap<VifId, (u64, u64)>,
    /// Cumulative fluid bytes per vif (the part of a frame not yet complete is not
    /// counted by the meters).
    pub fluid: BTreeMap<VifId, u128>,
    /// Meters count fluid bytes (and whole frames of them) instead of whole frames only:
    /// no quantisation of the bits/s meter, for the convergence properties.
    pub exact: bool,
    /// Report the sources' offered load as the frontend hint (`VifReading::offered`).
    pub report_offered: bool,
    /// Cumulative offered bits × 1e9 per vif (fluid).
    pub offered_fluid: BTreeMap<VifId, u128>,
    pub fail_read: bool,
    pub fail_write: bool,
    pub duplicate: bool,
    pub writes: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("simulated datapath failure")]
pub struct SimError;

impl SimDatapath {
    pub fn new(sources: Vec<Source>) -> Self {
        SimDatapath {
            sources,
            ..Default::default()
        }
    }

    /// The rate each source achieves under the budgets in force (bits/s).
    pub fn achieved_bps(&self, s: &Source) -> u64 {
        let mut r = s.offered_bps;
        if let Some(b) = self.budgets.get(&s.vif) {
            r = r.min(b.bps);
            if let Some(p) = b.pps {
                r = r.min((p as u128 * s.frame_bytes as u128 * 8).min(u64::MAX as u128) as u64);
            }
        }
        r
    }

    /// Lets `dt` pass.
    pub fn run(&mut self, dt: Duration) {
        let ns = dt.as_nanos();
        for s in self.sources.clone() {
            *self.offered_fluid.entry(s.vif).or_insert(0) += s.offered_bps as u128 * ns;
            let bps = self.achieved_bps(&s);
            let f = self.fluid.entry(s.vif).or_insert(0);
            *f += bps as u128 * ns; // bit-nanoseconds: bytes × 8e9
                                    // Meters count whole frames (of this source's fixed size).
            let frames = (*f / (8_000_000_000 * s.frame_bytes as u128)) as u64;
            let t = self.totals.entry(s.vif).or_insert((0, 0));
            if self.exact {
                *t = ((*f / 8_000_000_000) as u64, frames);
            } else {
                let new = frames.saturating_sub(t.1);
                t.0 += new * s.frame_bytes;
                t.1 += new;
            }
        }
    }

    pub fn set_offered(&mut self, vif: VifId, bps: u64) {
        for s in &mut self.sources {
            if s.vif == vif {
                s.offered_bps = bps;
            }
        }
    }
}

impl Datapath for SimDatapath {
    type Error = SimError;

    fn read_meters(&mut self, out: &mut Vec<VifReading>) -> Result<(), SimError> {
        if self.fail_read {
            return Err(SimError);
        }
        for s in &self.sources {
            let (bytes, packets) = self.totals.get(&s.vif).copied().unwrap_or((0, 0));
            let offered = self.report_offered.then(|| {
                let f = self.offered_fluid.get(&s.vif).copied().unwrap_or(0);
                OfferedTotals {
                    bytes: (f / 8_000_000_000) as u64,
                    packets: (f / (8_000_000_000 * s.frame_bytes as u128)) as u64,
                }
            });
            out.push(VifReading {
                vif: s.vif,
                created: s.created,
                bytes,
                packets,
                offered,
            });
            if self.duplicate {
                out.push(*out.last().unwrap());
            }
        }
        Ok(())
    }

    fn write_budgets(&mut self, budgets: &[(VifId, Budget)]) -> Result<(), SimError> {
        if self.fail_write {
            return Err(SimError);
        }
        self.writes += 1;
        for (v, b) in budgets {
            self.budgets.insert(*v, *b);
        }
        Ok(())
    }
}

pub const M: u64 = 1_000_000;
pub const G: u64 = 1_000_000_000;
