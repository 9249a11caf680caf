//! The DBA-VM allocator inside netback: every readjustment period, read each connected
//! vif's meters, run one allocation round, and apply the budgets to every vif's credit
//! area and backstop — within the same loop iteration, so a budget reaches a frontend
//! within one period.
//!
//! SLAs come from a base set (a TOML file or built in code) overlaid with the per-vif
//! `dba-*` keys of each vif's backend directory (`allocator::xenstore`), re-read when
//! they change. A bad value is logged with the vif and the key, and the vif keeps its
//! previous SLA; a failed round keeps the previous budgets.

use std::time::{Duration, Instant};

use allocator::xenstore::{VifKeyValues, XenstoreSlas, KEYS};
use allocator::{Budget, ControlLoop, Datapath, LoopConfig, SlaSet, VifReading};
use shared_ring::credit::Credits;
use shared_ring::Limit;

use xen_ids::VifId;

/// Converts an allocator budget into credit-area terms (bytes/s, packets/s, bursts).
pub fn credits_of(b: &Budget, period: Duration) -> Credits {
    Credits {
        bytes: Limit::rate(b.bytes_per_sec(), b.burst_bytes),
        packets: match b.pps {
            None => Limit::Unlimited,
            Some(p) => Limit::rate(p, b.burst_packets.unwrap_or(1)),
        },
        period_us: period.as_micros().min(u32::MAX as u128) as u32,
    }
}

/// Allocator state kept by netback.
pub struct Allocation {
    /// The control loop.
    pub loop_: ControlLoop,
    /// SLAs from configuration.
    pub base: SlaSet,
    /// Per-vif SLA keys from xenstore.
    pub keys: XenstoreSlas,
    /// When the last round ran (ns, netback clock).
    pub last_round_ns: Option<u64>,
    /// Origin for converting the netback clock into the loop's `Instant`s.
    pub epoch: Instant,
    /// CPU time spent in allocation rounds (ns) and rounds run, for operators.
    pub cost_ns: u64,
    /// Rounds completed.
    pub rounds: u64,
}

impl Allocation {
    /// A new allocator with `base` SLAs and `config`.
    pub fn new(base: SlaSet, config: LoopConfig) -> Result<Self, allocator::control::ConfigError> {
        Ok(Allocation {
            loop_: ControlLoop::new(config)?,
            base,
            keys: XenstoreSlas::new(),
            last_round_ns: None,
            epoch: Instant::now(),
            cost_ns: 0,
            rounds: 0,
        })
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.loop_.config().period
    }

    /// True when a round is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.last_round_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.period().as_nanos() as u64)
    }

    /// When the next round is due.
    pub fn next_due(&self) -> Option<u64> {
        self.last_round_ns
            .map(|t| t + self.period().as_nanos() as u64)
    }

    /// Re-reads a vif's `dba-*` keys through `read` (key → value); on a bad value the
    /// vif keeps its previous SLA and the error is returned for the log.
    pub fn update_keys(
        &mut self,
        id: VifId,
        mut read: impl FnMut(&str) -> Option<String>,
    ) -> Result<(), allocator::SlaError> {
        let vals: Vec<Option<String>> = KEYS.iter().map(|k| read(k)).collect();
        let get = |k: &str| {
            KEYS.iter()
                .position(|x| *x == k)
                .and_then(|i| vals[i].as_deref())
        };
        let values = VifKeyValues::read_with(get);
        let defaults = self.base.vif(id);
        self.keys.update_vif(id, &values, defaults)
    }

    /// Forgets a removed vif's keys.
    pub fn remove(&mut self, id: VifId) {
        self.keys.remove_vif(id);
    }

    /// Runs a round if one is due: `read` appends meter readings, `write` applies the
    /// budgets (credits, per vif). Returns whether a round ran.
    pub fn maybe_round<D: Datapath>(&mut self, now_ns: u64, dp: &mut D) -> bool {
        if !self.due(now_ns) {
            return false;
        }
        self.last_round_ns = Some(now_ns);
        let started = Instant::now();
        let (slas, problems) = self.keys.overlay(&self.base);
        for p in problems {
            log::warn!("allocator: {p}");
        }
        let at = self.epoch + Duration::from_nanos(now_ns);
        match self.loop_.tick(at, &slas, dp) {
            Ok(_) => self.rounds += 1,
            Err(e) => log::warn!("allocator: round failed, previous budgets stay: {e}"),
        }
        self.cost_ns += started.elapsed().as_nanos() as u64;
        true
    }
}

/// One vif's meter reading for the allocator: wire packets and bytes (a GSO frame: its
/// segments) the backend accepted from the guest since the connection (`created` identifies the connection), plus the
/// frontend's self-reported offered load when it publishes one (an untrusted hint: the
/// allocator uses it only to estimate the demand of a vif pinned at its budget, never
/// above the vif's SLA maximum).
pub fn reading(
    id: VifId,
    created: u64,
    tx_bytes: u64,
    tx_packets: u64,
    front: Option<shared_ring::credit::FrontCounters>,
) -> VifReading {
    VifReading {
        vif: id,
        created,
        bytes: tx_bytes,
        packets: tx_packets,
        offered: front.map(|f| allocator::control::OfferedTotals {
            bytes: f.tx_bytes.saturating_add(f.dropped_bytes),
            packets: f.tx_packets.saturating_add(f.dropped_packets),
        }),
    }
}
