//! The DBA-VM allocator inside netback: every readjustment period, read each connected
//! vif's meters, run one allocation round, and apply the budgets to every vif's credit
//! area and backstop — within the same loop iteration, so a budget reaches a frontend
//! within one period.
//!
//! SLAs come from a base set (a TOML file or built in code) overlaid with the per-vif
//! `dba-*` keys of each vif's backend directory (`allocator::xenstore`), re-read when
//! they change. A bad value is logged with the vif and the key, and the vif keeps its
//! previous SLA; a failed round keeps the previous budgets.
//!
//! Both directions run the same allocation, each with its own [`ControlLoop`] on its
//! projection of the SLAs ([`SlaSet::in_direction`]): TX on what the backend accepted
//! from the guests, RX on what was offered to them from dom0 ([`RxDatapath`]). The RX
//! round runs only while some receive setting exists; a vif nothing limits on RX
//! ([`SlaSet::rx_limited`]) gets an unlimited RX budget.

use std::time::{Duration, Instant};

use allocator::xenstore::{VifKeyValues, XenstoreSlas, KEYS};
use allocator::{Budget, ControlLoop, Datapath, Direction, LoopConfig, SlaSet, VifReading};
use shared_ring::credit::Credits;
use shared_ring::Limit;

use xen_ids::VifId;

/// No limit: the RX budget of a vif nothing limits on RX.
pub const UNLIMITED: Credits = Credits {
    bytes: Limit::Unlimited,
    packets: Limit::Unlimited,
    period_us: 0,
};

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

/// The receive side of netback's vifs, for the RX round.
pub trait RxDatapath {
    /// Appends one reading per connected vif: wire bytes and packets delivered into the
    /// guest, and as `offered` those plus the ones dropped for the RX budget (what dom0
    /// offered the vif; measured by the backend, so trusted).
    fn read_rx_meters(&mut self, out: &mut Vec<VifReading>);

    /// Applies the RX budgets; `None` = unlimited.
    fn write_rx_budgets(&mut self, budgets: &[(VifId, Option<Credits>)]);
}

/// The RX side of a datapath as the allocator's [`Datapath`].
struct RxView<'a, D> {
    dp: &'a mut D,
    slas: &'a SlaSet,
    period: Duration,
}

impl<D: RxDatapath> Datapath for RxView<'_, D> {
    type Error = std::convert::Infallible;

    fn read_meters(&mut self, out: &mut Vec<VifReading>) -> Result<(), Self::Error> {
        self.dp.read_rx_meters(out);
        Ok(())
    }

    fn write_budgets(&mut self, budgets: &[(VifId, Budget)]) -> Result<(), Self::Error> {
        let out: Vec<(VifId, Option<Credits>)> = budgets
            .iter()
            .map(|(v, b)| {
                let c = self.slas.rx_limited(*v).then(|| credits_of(b, self.period));
                (*v, c)
            })
            .collect();
        self.dp.write_rx_budgets(&out);
        Ok(())
    }
}

/// One vif's RX meter reading: `delivered` (wire bytes, packets) into the guest and
/// `refused` (the same, of frames dropped for the RX budget) since the connection.
pub fn rx_reading(
    id: VifId,
    created: u64,
    delivered: (u64, u64),
    refused: (u64, u64),
) -> VifReading {
    VifReading {
        vif: id,
        created,
        bytes: delivered.0,
        packets: delivered.1,
        offered: Some(allocator::control::OfferedTotals {
            bytes: delivered.0.saturating_add(refused.0),
            packets: delivered.1.saturating_add(refused.1),
        }),
    }
}

/// Allocator state kept by netback.
pub struct Allocation {
    /// The control loop.
    pub loop_: ControlLoop,
    /// The receive direction's control loop.
    pub rx_loop: ControlLoop,
    /// Whether the last round set RX budgets (a receive setting existed).
    pub rx_active: bool,
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
            rx_loop: ControlLoop::new(config)?,
            rx_active: false,
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

    /// The RX budgets in force, for status and metrics (one overlay of the SLAs).
    pub fn rx_budgets(&self) -> RxBudgets<'_> {
        let slas = self.rx_active.then(|| self.keys.overlay(&self.base).0);
        RxBudgets { alloc: self, slas }
    }

    /// The RX budget a vif starts with: the most its SLA allows on RX when something
    /// limits it there, else `None` (unlimited).
    pub fn initial_rx_credits(&self, id: VifId) -> Option<Credits> {
        let (slas, _) = self.keys.overlay(&self.base);
        initial_rx_of(&slas, id, self.period())
    }

    /// Runs a round if one is due: `read` appends meter readings, `write` applies the
    /// budgets (credits, per vif), for TX then RX. Returns whether a round ran.
    pub fn maybe_round<D: Datapath + RxDatapath>(&mut self, now_ns: u64, dp: &mut D) -> bool {
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
        // The TX allocation reads only the TX fields: no projection needed.
        match self.loop_.tick(at, &slas, dp) {
            Ok(_) => self.rounds += 1,
            Err(e) => log::warn!("allocator: round failed, previous budgets stay: {e}"),
        }
        self.rx_round(at, &slas, dp);
        self.cost_ns += started.elapsed().as_nanos() as u64;
        true
    }

    /// The RX round, while a receive setting exists (and once after the last one went,
    /// to lift the RX budgets).
    fn rx_round<D: RxDatapath>(&mut self, at: Instant, slas: &SlaSet, dp: &mut D) {
        let configured = slas.rx_configured();
        if !configured && !self.rx_active {
            return;
        }
        self.rx_active = configured;
        let mut view = RxView {
            dp,
            slas,
            period: self.period(),
        };
        if let Err(e) = self
            .rx_loop
            .tick(at, &slas.in_direction(Direction::Rx), &mut view)
        {
            log::warn!("allocator: RX round failed, previous budgets stay: {e}");
        }
    }
}

/// The RX budgets of an [`Allocation`] ([`Allocation::rx_budgets`]).
pub struct RxBudgets<'a> {
    alloc: &'a Allocation,
    /// The SLAs in force while the RX round runs (`None`: every RX budget unlimited).
    slas: Option<SlaSet>,
}

impl RxBudgets<'_> {
    /// The RX budget of vif `id` when something limits what it receives (the RX
    /// round's last budget for it), else `None`: unlimited (what netback applies).
    pub fn get(&self, id: VifId) -> Option<Budget> {
        let slas = self.slas.as_ref()?;
        if !slas.rx_limited(id) {
            return None;
        }
        self.alloc.rx_loop.budget(id)
    }
}

/// The RX budget vif `id` starts with under `slas` (the SLAs in force) and the
/// allocator's `period`: the most its SLA allows on RX when something limits it there,
/// else `None` (unlimited).
pub fn initial_rx_of(slas: &SlaSet, id: VifId, period: Duration) -> Option<Credits> {
    if !slas.rx_limited(id) {
        return None;
    }
    let rx = slas.in_direction(Direction::Rx);
    let budget = Budget::with_bursts(
        rx.vif(id).max_bps_on(rx.link()),
        rx.vm(id.domid).pps(),
        period,
    );
    Some(credits_of(&budget, period))
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

#[cfg(test)]
mod tests {
    use super::*;
    use allocator::sla_file::parse_sla_file;
    use xen_ids::DomId;

    /// Two vifs: meters grow by what the test says, budgets are recorded.
    #[derive(Default)]
    struct Fake {
        /// Per vif: (delivered, refused) wire bytes, frames of 1000 bytes.
        rx: [(u64, u64); 2],
        rx_written: Vec<Vec<(VifId, Option<Credits>)>>,
    }

    fn vif(d: u16) -> VifId {
        VifId::new(DomId(d), 0)
    }

    impl Datapath for Fake {
        type Error = std::convert::Infallible;
        fn read_meters(&mut self, out: &mut Vec<VifReading>) -> Result<(), Self::Error> {
            out.extend((1..=2).map(|d| VifReading::new(vif(d), 0, 0, 0)));
            Ok(())
        }
        fn write_budgets(&mut self, _: &[(VifId, Budget)]) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    impl RxDatapath for Fake {
        fn read_rx_meters(&mut self, out: &mut Vec<VifReading>) {
            for (k, (d, r)) in self.rx.iter().enumerate() {
                out.push(rx_reading(
                    vif(k as u16 + 1),
                    0,
                    (*d, d / 1000),
                    (*r, r / 1000),
                ));
            }
        }
        fn write_rx_budgets(&mut self, budgets: &[(VifId, Option<Credits>)]) {
            self.rx_written.push(budgets.to_vec());
        }
    }

    fn bytes_per_sec(c: &Option<Credits>) -> Option<u64> {
        match c.as_ref()?.bytes {
            Limit::Rate { per_sec, .. } => Some(per_sec),
            Limit::Unlimited => None,
        }
    }

    #[test]
    fn rx_round_sees_refused_demand_and_leaves_tx_only_vifs_unlimited() {
        // vif1 may receive at most 8 Mb/s; vif2's SLA names only TX.
        let slas = parse_sla_file(
            "[link]\ncapacity-bps = \"1G\"\n[[vif]]\ndomid = 1\nrx-max-bps = \"8M\"\n\
             [[vif]]\ndomid = 2\nmax-bps = \"1M\"\n",
        )
        .unwrap();
        let mut a =
            Allocation::new(slas, LoopConfig::with_period(Duration::from_millis(10))).unwrap();
        let mut dp = Fake::default();
        let ms = 1_000_000;
        assert!(a.maybe_round(0, &mut dp));
        // 10 ms: vif1 got 8 Mb/s worth (10 000 B) and 30 000 B were refused for the budget.
        dp.rx = [(10_000, 30_000), (5_000, 0)];
        assert!(a.maybe_round(10 * ms, &mut dp));
        let last = dp.rx_written.last().unwrap();
        assert_eq!(
            bytes_per_sec(&last[0].1),
            Some(1_000_000),
            "8 Mb/s: its maximum"
        );
        assert_eq!(last[1].1, None, "vif2 is not limited on RX");
        assert_eq!(a.initial_rx_credits(vif(2)), None);
        assert_eq!(
            bytes_per_sec(&a.initial_rx_credits(vif(1))),
            Some(1_000_000)
        );
        // The RX demand includes what was refused (delivered + refused, x 1.2): the
        // allocator's report for vif1 shows it above the budget.
        let report = a.rx_loop.last_report().unwrap().vif(vif(1)).unwrap();
        assert!(report.pinned_bps);
        assert_eq!(report.demand_bps, 38_400_000);
        // The receive settings go: one more round lifts the budgets, then no RX rounds.
        a.base = parse_sla_file("[link]\ncapacity-bps = \"1G\"\n").unwrap();
        let n = dp.rx_written.len();
        assert!(a.maybe_round(20 * ms, &mut dp));
        assert_eq!(dp.rx_written.len(), n + 1);
        assert!(dp.rx_written[n].iter().all(|(_, c)| c.is_none()));
        assert!(a.maybe_round(30 * ms, &mut dp));
        assert_eq!(dp.rx_written.len(), n + 1);
    }
}
