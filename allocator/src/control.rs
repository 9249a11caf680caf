//! The periodic control loop (the paper's daemon, §V): every readjustment period, read
//! the vifs' meters, estimate demands, allocate, write the budgets.
//!
//! The loop owns no thread, timer or clock: the netback calls [`ControlLoop::tick`] once
//! per period with the current time, the SLAs in force and its [`Datapath`]. Tests drive it
//! with simulated meters and injected time.
//!
//! Failure rule: if reading the meters fails, nothing is written and the previous budgets
//! stay in force; if writing fails, the loop keeps the previous budgets as the ones in
//! force. In both cases `tick` returns the error and the next tick starts afresh.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::allocation::{allocate, VifDemand};
use crate::budget::Budget;
use crate::demand::{estimate, DemandParams, InForce, Measurement, Offered};
use crate::rate::MAX_BPS;
use crate::sla::{SlaSet, VifId};
use crate::step1::{Step1Share, UNBOUNDED};

/// The default readjustment period. A whole round for 1 000 vifs costs 0.3–0.6 ms on the
/// project's loaded 2-core VM (`docs/performance.md`, `## allocator`), so 20 ms costs
/// under 3 % of a core while budgets settle within 40 ms of a demand step
/// (`docs/allocator.md` §8, §9).
pub const DEFAULT_PERIOD: Duration = Duration::from_millis(20);

/// One vif's meter totals, as the netback counts them: cumulative since the vif was
/// connected, L2 frame bytes (destination MAC to end of payload, no FCS) and frames the
/// backend accepted from the guest (TX direction), as they go on the wire: a GSO frame
/// counts the segments it becomes and their headers (`docs/protocol.md` §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifReading {
    /// The vif.
    pub vif: VifId,
    /// Its creation sequence number: strictly increasing over the netback's lifetime; a
    /// new value for the same vif id means it reconnected (meters restarted).
    pub created: u64,
    /// Bytes accepted since connection.
    pub bytes: u64,
    /// Packets accepted since connection.
    pub packets: u64,
    /// Optional, untrusted: the frontend's own cumulative count of frames it was offered
    /// (`tx_* + dropped_*` of its credit-area block, policy `drop`); `None` when it does
    /// not publish them. Lets a pinned vif's demand be estimated exactly
    /// (`docs/allocator.md` §5).
    pub offered: Option<OfferedTotals>,
}

/// A frontend's cumulative offered-load counters (see [`VifReading::offered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfferedTotals {
    /// L2 frame bytes offered since connection (wire bytes).
    pub bytes: u64,
    /// Frames offered since connection (wire packets).
    pub packets: u64,
}

impl VifReading {
    /// A reading without frontend hints.
    pub fn new(vif: VifId, created: u64, bytes: u64, packets: u64) -> Self {
        VifReading {
            vif,
            created,
            bytes,
            packets,
            offered: None,
        }
    }
}

/// What a netback implements for the loop.
pub trait Datapath {
    /// The datapath's error.
    type Error: std::error::Error + 'static;

    /// Appends one reading per connected vif to `out` (which the loop has cleared).
    fn read_meters(&mut self, out: &mut Vec<VifReading>) -> Result<(), Self::Error>;

    /// Applies the budgets: each connected frontend's credit area and the backend's own
    /// backstop buckets. `budgets` lists every vif that was read this round. Should apply
    /// all or none; on `Err` the loop treats the previous budgets as still in force.
    fn write_budgets(&mut self, budgets: &[(VifId, Budget)]) -> Result<(), Self::Error>;
}

/// Loop parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopConfig {
    /// The readjustment period: how often the netback calls [`ControlLoop::tick`].
    pub period: Duration,
    /// Token-bucket depth in time (bursts = rate × window). Default: the period.
    pub burst_window: Duration,
    /// Demand estimation.
    pub demand: DemandParams,
    /// Upper bound of the demand reported for an idle vif. The floor actually used is
    /// `min(idle_floor_bps, B_p / (100 × number of vifs))`, at least 1 b/s, so idle vifs
    /// together never ask for more than 1 % of the link.
    pub idle_floor_bps: u64,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            period: DEFAULT_PERIOD,
            burst_window: DEFAULT_PERIOD,
            demand: DemandParams::default(),
            idle_floor_bps: 1_000_000,
        }
    }
}

/// A loop parameter out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allocator loop configuration: `{field}`: {problem}")]
pub struct ConfigError {
    /// The parameter.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl LoopConfig {
    /// A configuration with `period` (burst window = period) and default estimator.
    pub fn with_period(period: Duration) -> Self {
        LoopConfig {
            period,
            burst_window: period,
            ..LoopConfig::default()
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, problem: String| Err(ConfigError { field, problem });
        let range = Duration::from_micros(100)..=Duration::from_secs(60);
        if !range.contains(&self.period) {
            return err(
                "period",
                format!("{:?} is outside 100 µs ..= 60 s", self.period),
            );
        }
        if !range.contains(&self.burst_window) {
            return err(
                "burst-window",
                format!("{:?} is outside 100 µs ..= 60 s", self.burst_window),
            );
        }
        let pct = self.demand.pin_threshold_pct;
        if pct == 0 || pct > 100 {
            return err("pin-threshold", format!("{pct} % is outside 1..=100"));
        }
        if self.demand.headroom_pct as u32 * pct as u32 <= 10_000 {
            return err(
                "headroom",
                format!(
                    "{} % × pin threshold {} % must exceed 100 % (else a steady vif is pinned)",
                    self.demand.headroom_pct, pct
                ),
            );
        }
        if self.demand.headroom_pct > 1000 {
            return err(
                "headroom",
                format!("{} % is above 1000 %", self.demand.headroom_pct),
            );
        }
        if self.idle_floor_bps > MAX_BPS {
            return err(
                "idle-floor",
                format!("{} b/s is above {MAX_BPS}", self.idle_floor_bps),
            );
        }
        Ok(())
    }
}

/// Why a round did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LoopError<E: std::error::Error + 'static> {
    /// Reading the meters failed; nothing was written.
    #[error("reading the vif meters failed: {0}")]
    ReadMeters(#[source] E),
    /// Writing the budgets failed; the previous budgets stay in force.
    #[error("writing the budgets failed: {0}")]
    WriteBudgets(#[source] E),
    /// The datapath reported the same vif twice; nothing was written.
    #[error("{0}: reported twice by the datapath's meters")]
    DuplicateVif(VifId),
    /// `now` is not after the previous round; nothing was done.
    #[error("no time elapsed since the previous round")]
    NoTimeElapsed,
}

/// One vif's round, for operators (`top`, metrics) and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifRound {
    /// The vif.
    pub vif: VifId,
    /// The rates over the last period (`None`: new or reconnected vif).
    pub measured: Option<Measurement>,
    /// Measured ≥ threshold of the bits/s budget in force.
    pub pinned_bps: bool,
    /// Measured ≥ threshold of the packets/s budget in force.
    pub pinned_pps: bool,
    /// Estimated demand, bits/s.
    pub demand_bps: u64,
    /// Estimated demand, packets/s.
    pub demand_pps: u64,
    /// Step 1's details.
    pub share: Step1Share,
    /// The new budget.
    pub budget: Budget,
}

/// A completed round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// The time passed to [`ControlLoop::tick`].
    pub at: Instant,
    /// Per vif, in the order the datapath reported them.
    pub vifs: Vec<VifRound>,
    /// Some minimum guarantees could not be met (Σ B^min of demanding vifs > B_p).
    pub overcommitted: bool,
    /// Capacity no vif may use.
    pub unallocated_bps: u64,
}

impl RoundReport {
    /// The round of one vif.
    pub fn vif(&self, vif: VifId) -> Option<&VifRound> {
        self.vifs.iter().find(|r| r.vif == vif)
    }
}

#[derive(Debug, Clone, Copy)]
struct VifState {
    created: u64,
    bytes: u64,
    packets: u64,
    offered: Option<OfferedTotals>,
    at: Instant,
    budget: Option<Budget>,
    /// The demands estimated when `budget` was computed, and the pinning seen then.
    demand_bps: u64,
    demand_pps: u64,
    pinned_bps: bool,
    pinned_pps: bool,
}

/// The control loop's state: per vif, the last meter totals and the budget in force.
#[derive(Debug)]
pub struct ControlLoop {
    config: LoopConfig,
    /// In the order of the last readings (a datapath that reports its vifs in a stable
    /// order is matched by position, without lookups).
    state: Vec<(VifId, VifState)>,
    last_tick: Option<Instant>,
    readings: Vec<VifReading>,
    last_report: Option<RoundReport>,
}

impl ControlLoop {
    /// A loop with validated `config`.
    pub fn new(config: LoopConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(ControlLoop {
            config,
            state: Vec::new(),
            last_tick: None,
            readings: Vec::new(),
            last_report: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LoopConfig {
        &self.config
    }

    /// The budget the loop believes is in force for `vif`.
    pub fn budget(&self, vif: VifId) -> Option<Budget> {
        self.state
            .iter()
            .find(|(v, _)| *v == vif)
            .and_then(|(_, s)| s.budget)
    }

    /// The last completed round.
    pub fn last_report(&self) -> Option<&RoundReport> {
        self.last_report.as_ref()
    }

    /// Runs one round at time `now` with the SLAs `slas`.
    pub fn tick<D: Datapath>(
        &mut self,
        now: Instant,
        slas: &SlaSet,
        datapath: &mut D,
    ) -> Result<&RoundReport, LoopError<D::Error>> {
        if self.last_tick.is_some_and(|t| now <= t) {
            return Err(LoopError::NoTimeElapsed);
        }
        self.readings.clear();
        datapath
            .read_meters(&mut self.readings)
            .map_err(LoopError::ReadMeters)?;
        // Each reading's previous state: by position when the datapath kept its order
        // (then the ids are unique, as they were last round), else by id.
        let aligned = self.readings.len() == self.state.len()
            && self
                .readings
                .iter()
                .zip(&self.state)
                .all(|(r, (v, _))| r.vif == *v);
        let prev_index: Vec<Option<usize>> = if aligned {
            (0..self.readings.len()).map(Some).collect()
        } else {
            let mut seen = HashSet::with_capacity(self.readings.len());
            for r in &self.readings {
                if !seen.insert(r.vif) {
                    return Err(LoopError::DuplicateVif(r.vif));
                }
            }
            let index: HashMap<VifId, usize> = self
                .state
                .iter()
                .enumerate()
                .map(|(i, (v, _))| (*v, i))
                .collect();
            self.readings
                .iter()
                .map(|r| index.get(&r.vif).copied())
                .collect()
        };

        let n = self.readings.len().max(1) as u64;
        let floor = self
            .config
            .idle_floor_bps
            .min(slas.link().capacity_bps() / (100 * n))
            .max(1);
        let mut demands = Vec::with_capacity(self.readings.len());
        let mut verdicts = Vec::with_capacity(self.readings.len());
        for (r, pi) in self.readings.iter().zip(&prev_index) {
            let prev = pi.map(|i| &self.state[i].1);
            let measured = prev.and_then(|p| measure(p, r, now));
            let in_force = prev.filter(|p| p.created == r.created).and_then(|p| {
                p.budget.map(|b| InForce {
                    budget_bps: b.bps,
                    budget_pps: b.pps,
                    demand_bps: p.demand_bps,
                    demand_pps: p.demand_pps,
                    pinned_bps: p.pinned_bps,
                    pinned_pps: p.pinned_pps,
                })
            });
            let quantum = prev.map_or(Measurement::default(), |p| quantum(p, measured, now));
            let est = estimate(
                &self.config.demand,
                in_force,
                slas.vm(r.vif.domid).pps(),
                measured,
                quantum,
                floor,
            );
            demands.push(VifDemand {
                vif: r.vif,
                created: r.created,
                demand_bps: est.demand_bps,
                demand_pps: est.demand_pps,
            });
            verdicts.push((measured, est));
        }

        let alloc = allocate(slas, &demands, self.config.burst_window);
        let budgets: Vec<(VifId, Budget)> = alloc.vifs.iter().map(|a| (a.vif, a.budget)).collect();
        let written = datapath.write_budgets(&budgets);

        // New meter baselines in any case; new budgets only if they were applied.
        let mut next = Vec::with_capacity(self.readings.len());
        for ((((r, a), d), (_, est)), pi) in self
            .readings
            .iter()
            .zip(&alloc.vifs)
            .zip(&demands)
            .zip(&verdicts)
            .zip(&prev_index)
        {
            let old = pi
                .map(|i| &self.state[i].1)
                .filter(|p| p.created == r.created);
            let (budget, demand_bps, demand_pps, pinned_bps, pinned_pps) = if written.is_ok() {
                (
                    Some(a.budget),
                    d.demand_bps,
                    d.demand_pps,
                    est.pinned_bps,
                    est.pinned_pps,
                )
            } else {
                match old {
                    Some(p) => (
                        p.budget,
                        p.demand_bps,
                        p.demand_pps,
                        p.pinned_bps,
                        p.pinned_pps,
                    ),
                    None => (None, UNBOUNDED, UNBOUNDED, false, false),
                }
            };
            next.push((
                r.vif,
                VifState {
                    created: r.created,
                    bytes: r.bytes,
                    packets: r.packets,
                    offered: r.offered,
                    at: now,
                    budget,
                    demand_bps,
                    demand_pps,
                    pinned_bps,
                    pinned_pps,
                },
            ));
        }
        self.state = next;
        self.last_tick = Some(now);
        written.map_err(LoopError::WriteBudgets)?;

        let vifs = alloc
            .vifs
            .iter()
            .zip(verdicts)
            .map(|(a, (measured, est))| VifRound {
                vif: a.vif,
                measured,
                pinned_bps: est.pinned_bps,
                pinned_pps: est.pinned_pps,
                demand_bps: est.demand_bps,
                demand_pps: est.demand_pps,
                share: a.share,
                budget: a.budget,
            })
            .collect();
        Ok(self.last_report.insert(RoundReport {
            at: now,
            vifs,
            overcommitted: alloc.overcommitted,
            unallocated_bps: alloc.unallocated_bps,
        }))
    }
}

/// Rates between the previous totals and `r`, or `None` if the vif reconnected or its
/// counters went backwards.
fn measure(prev: &VifState, r: &VifReading, now: Instant) -> Option<Measurement> {
    if prev.created != r.created || r.bytes < prev.bytes || r.packets < prev.packets {
        return None;
    }
    let ns = now.checked_duration_since(prev.at)?.as_nanos();
    if ns == 0 {
        return None;
    }
    let rate = |delta: u64, scale: u128| -> u64 {
        (delta as u128 * scale * 1_000_000_000 / ns).min(u64::MAX as u128) as u64
    };
    // The hint only when both ends have it and it did not go backwards.
    let offered = match (prev.offered, r.offered) {
        (Some(p), Some(o)) if o.bytes >= p.bytes && o.packets >= p.packets => Some(Offered {
            bps: rate(o.bytes - p.bytes, 8),
            pps: rate(o.packets - p.packets, 1),
        }),
        _ => None,
    };
    Some(Measurement {
        bps: rate(r.bytes - prev.bytes, 8),
        pps: rate(r.packets - prev.packets, 1),
        offered,
    })
}

/// The meters' resolution over the period since `prev`: one frame per period, in
/// packets/s and (at the measured average frame size) bits/s.
fn quantum(prev: &VifState, measured: Option<Measurement>, now: Instant) -> Measurement {
    let ns = now
        .checked_duration_since(prev.at)
        .map_or(0, |d| d.as_nanos());
    if ns == 0 {
        return Measurement::default();
    }
    let pps = 1_000_000_000u128.div_ceil(ns);
    let bps = match measured {
        Some(m) if m.pps > 0 => (m.bps as u128 * pps).div_ceil(m.pps as u128),
        _ => 0,
    };
    Measurement {
        bps: bps.min(u64::MAX as u128) as u64,
        pps: pps.min(u64::MAX as u128) as u64,
        offered: None,
    }
}
