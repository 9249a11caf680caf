//! Sampling: the event loop's side of the metrics. [`Sampler::observe`] runs after every
//! iteration; it is O(1) unless the sampling interval has passed, and then takes a
//! [`Snapshot`]: counters, rates over the interval from [`crate::meter::Meter`], budgets,
//! SLAs, the allocator's cost.

use std::collections::HashMap;
use std::time::Duration;

use hypervisor::platform::BackendPlatform;

use crate::backend::{Netback, VifStatus};
use crate::meter::{Meter, Rates};
use xen_ids::VifId;

/// One vif in a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct VifSample {
    /// The vif's status (counters cumulated over reconnections, budget, front hint).
    pub status: VifStatus,
    /// Rates over the last sampling interval (`None` for the first sample of a vif).
    pub rates: Option<Rates>,
    /// The SLA in force for the vif, when the allocator runs.
    pub sla: Option<allocator::VifSla>,
}

/// The allocator's own figures in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorSample {
    /// Rounds completed since the allocator started.
    pub rounds: u64,
    /// Time spent in rounds, cumulated (ns).
    pub cost_ns: u64,
    /// Time spent in the most recent round (ns), once one was observed.
    pub last_round_cost_ns: Option<u64>,
    /// The last round could not meet every minimum (Σ B^min of demanding vifs > B_p).
    pub overcommitted: bool,
    /// Capacity no vif may use in the last round (bits/s).
    pub unallocated_bps: u64,
}

/// One data-path worker in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSample {
    /// Worker index (from 0), as in [`crate::QueueStatus::worker`].
    pub index: usize,
    /// Vif queues placed on it (a vif's device counts as its queue 0 from its placement).
    pub queues: u64,
    /// Its thread's CPU time so far (ns).
    pub cpu_ns: u64,
    /// Frames it carried per second, both ways, over the last sampling interval: the
    /// sum over the queues it serves (`None` for the first sample).
    pub packets_per_second: Option<f64>,
    /// CPU time it used per second of the last sampling interval (1: one core busy;
    /// `None` for the first sample).
    pub cpu_utilization: Option<f64>,
}

/// Everything the endpoint exports, as taken by the event loop at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was taken (ns, netback clock).
    pub taken_ns: u64,
    /// Length of the interval the rates cover (ns; 0 for the first snapshot).
    pub interval_ns: u64,
    /// Every vif under the backend directory.
    pub vifs: Vec<VifSample>,
    /// The allocator's figures, when it runs.
    pub allocator: Option<AllocatorSample>,
    /// The data-path workers (empty when the snapshot was built without a netback).
    pub workers: Vec<WorkerSample>,
}

/// A queue between two snapshots: (vif, queue index, worker).
type QueueKey = (VifId, u32, usize);

/// Takes snapshots of a [`Netback`] at most once per interval, keeping each vif's
/// [`Meter`] and the allocator's per-round cost between them.
#[derive(Debug)]
pub struct Sampler {
    interval_ns: u64,
    last_ns: Option<u64>,
    meters: HashMap<VifId, Meter>,
    /// (rounds, cumulated cost) at the previous observation.
    rounds_seen: Option<(u64, u64)>,
    last_round_cost_ns: Option<u64>,
    /// Frames (both ways) of each queue, and each worker's CPU time (ns), at the
    /// previous [`Sampler::sample_workers`].
    queues_seen: HashMap<QueueKey, u64>,
    cpu_seen: Vec<u64>,
}

impl Sampler {
    /// A sampler taking one snapshot per `interval` (rates cover that interval).
    pub fn new(interval: Duration) -> Self {
        Sampler {
            interval_ns: interval.as_nanos().clamp(1, u64::MAX as u128) as u64,
            last_ns: None,
            meters: HashMap::new(),
            rounds_seen: None,
            last_round_cost_ns: None,
            queues_seen: HashMap::new(),
            cpu_seen: Vec::new(),
        }
    }

    /// Called after every event-loop iteration with the current time. Records the cost
    /// of an allocation round that just ran (O(1)); returns a snapshot when the interval
    /// has passed since the previous one (or for the first call).
    pub fn observe<P: BackendPlatform>(
        &mut self,
        nb: &Netback<P>,
        now_ns: u64,
    ) -> Option<Snapshot> {
        let report = nb.allocator_report();
        if let Some((_, cost, rounds)) = report {
            self.note_rounds(rounds, cost);
        }
        if self
            .last_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < self.interval_ns)
        {
            return None;
        }
        let allocator = report.map(|(last, cost_ns, rounds)| AllocatorSample {
            rounds,
            cost_ns,
            last_round_cost_ns: self.last_round_cost_ns,
            overcommitted: last.is_some_and(|r| r.overcommitted),
            unallocated_bps: last.map_or(0, |r| r.unallocated_bps),
        });
        let status = nb.status();
        let mut snap = self.sample(now_ns, status, |id| nb.effective_sla(id), allocator);
        self.sample_workers(&mut snap, &nb.worker_cpu_ns(), &nb.worker_queues());
        Some(snap)
    }

    /// Fills `snap.workers` from each worker's CPU time (`cpu_ns`, ns) and queue count,
    /// and its rates over `snap`'s interval from the counters of the queues it serves
    /// (a queue counts from its second sample on).
    pub fn sample_workers(&mut self, snap: &mut Snapshot, cpu_ns: &[u64], queues: &[u64]) {
        let n = cpu_ns.len();
        let mut frames = vec![0u64; n];
        let mut seen = HashMap::new();
        for v in &snap.vifs {
            for q in &v.status.queues {
                let c = &q.counters;
                let now = c.tx_packets + c.rx_packets;
                let key = (v.status.id, q.index, q.worker);
                if let (Some(before), Some(f)) =
                    (self.queues_seen.get(&key), frames.get_mut(q.worker))
                {
                    *f += now.saturating_sub(*before);
                }
                seen.insert(key, now);
            }
        }
        let secs = snap.interval_ns as f64 / 1e9;
        let rate = |x: u64| (snap.interval_ns > 0).then(|| x as f64 / secs);
        snap.workers = (0..n)
            .map(|w| {
                let cpu_before = self.cpu_seen.get(w).copied();
                WorkerSample {
                    index: w,
                    queues: queues.get(w).copied().unwrap_or(0),
                    cpu_ns: cpu_ns[w],
                    packets_per_second: rate(frames[w]),
                    cpu_utilization: cpu_before
                        .and_then(|b| rate(cpu_ns[w].saturating_sub(b)))
                        .map(|ns_per_s| ns_per_s / 1e9),
                }
            })
            .collect();
        self.queues_seen = seen;
        self.cpu_seen = cpu_ns.to_vec();
    }

    /// Records the allocator's round count and cumulated cost: when exactly one round ran
    /// since the previous call, its cost is the difference.
    pub fn note_rounds(&mut self, rounds: u64, cost_ns: u64) {
        if let Some((r0, c0)) = self.rounds_seen {
            if rounds == r0 + 1 {
                self.last_round_cost_ns = Some(cost_ns.saturating_sub(c0));
            } else if rounds > r0 + 1 {
                // Several rounds between two observations: their mean.
                self.last_round_cost_ns = Some(cost_ns.saturating_sub(c0) / (rounds - r0));
            }
        }
        self.rounds_seen = Some((rounds, cost_ns));
    }

    /// Builds a snapshot from a status list (the part of [`Sampler::observe`] that does
    /// not need a running netback).
    pub fn sample(
        &mut self,
        now_ns: u64,
        status: Vec<VifStatus>,
        sla: impl Fn(VifId) -> Option<allocator::VifSla>,
        allocator: Option<AllocatorSample>,
    ) -> Snapshot {
        let interval_ns = self.last_ns.map_or(0, |t| now_ns.saturating_sub(t));
        self.last_ns = Some(now_ns);
        // Keep the meters of present vifs only (a removed vif's meter is dropped).
        let mut old = std::mem::take(&mut self.meters);
        let vifs = status
            .into_iter()
            .map(|s| {
                let meter = self
                    .meters
                    .entry(s.id)
                    .or_insert_with(|| old.remove(&s.id).unwrap_or_default());
                let rates = meter.sample(now_ns, &s.counters);
                VifSample {
                    rates,
                    sla: sla(s.id),
                    status: s,
                }
            })
            .collect();
        Snapshot {
            taken_ns: now_ns,
            interval_ns,
            vifs,
            allocator,
            workers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::VifCounters;
    use crate::metrics::{name, render};
    use hypervisor::xenbus::XenbusState;
    use netback_ops::parse_exposition;
    use xen_ids::DomId;

    fn status(domid: u16, tx_bytes: u64) -> VifStatus {
        VifStatus {
            id: VifId {
                domid: DomId(domid),
                devid: 0,
            },
            state: XenbusState::Connected,
            connected: true,
            credits: true,
            counters: VifCounters {
                tx_bytes,
                tx_packets: tx_bytes / 1000,
                tx_wire_bytes: tx_bytes,
                tx_wire_packets: tx_bytes / 1000,
                tx_dropped_police: 3,
                ..Default::default()
            },
            budget: Some(allocator::Budget::with_bursts(
                8_000_000,
                Some(1000),
                Duration::from_millis(20),
            )),
            rx_budget: None,
            front_dropped_packets: Some(7),
            rate: None,
            queues: Vec::new(),
        }
    }

    /// `status(domid, 0)` with two queues: queue 0 on worker 0, queue 1 on worker 1,
    /// with these frames (both ways).
    fn two_queues(domid: u16, q0: u64, q1: u64) -> VifStatus {
        let queue = |index: u32, worker, frames| crate::QueueStatus {
            index,
            worker,
            connected: true,
            counters: VifCounters {
                tx_packets: frames / 2,
                rx_packets: frames - frames / 2,
                ..Default::default()
            },
        };
        VifStatus {
            queues: vec![queue(0, 0, q0), queue(1, 1, q1)],
            ..status(domid, 0)
        }
    }

    #[test]
    fn each_worker_gets_the_frames_of_its_queues_and_its_cpu_share() {
        let mut sm = Sampler::new(Duration::from_secs(1));
        let mut s0 = sm.sample(0, vec![two_queues(1, 100, 10)], |_| None, None);
        sm.sample_workers(&mut s0, &[1_000, 2_000], &[1, 1]);
        assert_eq!(s0.workers.len(), 2);
        assert_eq!(s0.workers[0].packets_per_second, None, "first sample");
        assert_eq!(s0.workers[0].cpu_utilization, None);
        // Half a second later: queue 0 carried 500 more frames, queue 1 none; a second
        // vif appears (its queues count from their next sample).
        let later = vec![two_queues(1, 600, 10), two_queues(2, 50, 50)];
        let mut s1 = sm.sample(500_000_000, later, |_| None, None);
        sm.sample_workers(&mut s1, &[250_001_000, 2_000], &[2, 2]);
        let w: Vec<(usize, u64, Option<f64>, Option<f64>)> = s1
            .workers
            .iter()
            .map(|w| (w.index, w.queues, w.packets_per_second, w.cpu_utilization))
            .collect();
        assert_eq!(
            w,
            [
                (0, 2, Some(1000.0), Some(0.5)),
                (1, 2, Some(0.0), Some(0.0))
            ]
        );
        let text = render(&s1);
        assert!(
            text.lines()
                .any(|l| l == "dbavm_worker_packets_per_second{worker=\"0\"} 1000"),
            "{text}"
        );
        assert!(text.lines().any(
            |l| l == "dbavm_queue_tx_packets_total{vif=\"vif2.0\",queue=\"1\",worker=\"1\"} 25"
        ));
    }

    #[test]
    fn render_and_parse_round_trip() {
        let mut sm = Sampler::new(Duration::from_secs(1));
        let s0 = sm.sample(0, vec![status(1, 0)], |_| None, None);
        assert!(s0.vifs[0].rates.is_none());
        sm.note_rounds(10, 1000);
        sm.note_rounds(11, 1500);
        let alloc = AllocatorSample {
            rounds: 11,
            cost_ns: 1500,
            last_round_cost_ns: sm.last_round_cost_ns,
            overcommitted: false,
            unallocated_bps: 5,
        };
        let s1 = sm.sample(
            1_000_000_000,
            vec![status(1, 125_000)],
            |_| Some(allocator::VifSla::BEST_EFFORT),
            Some(alloc),
        );
        let text = render(&s1);
        let samples = parse_exposition(&text).unwrap();
        let get = |n: &str, extra: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|s| s.name == n && extra.is_none_or(|(k, v)| s.label(k) == Some(v)))
                .unwrap_or_else(|| panic!("{n} missing in\n{text}"))
                .value
        };
        assert_eq!(get(name::VIF_TX_BITS, None), 1_000_000.0);
        assert_eq!(get(name::VIF_TX_BPS, None), 1_000_000.0);
        assert_eq!(get(name::VIF_TX_PPS, None), 125.0);
        assert_eq!(get(name::VIF_BUDGET_BPS, None), 8e6);
        assert_eq!(get(name::VIF_BUDGET_PPS, None), 1000.0);
        assert_eq!(get(name::VIF_TX_DROPPED, Some(("reason", "police"))), 3.0);
        assert_eq!(get(name::VIF_FRONT_DROPPED, None), 7.0);
        assert_eq!(get(name::ALLOC_ROUNDS, None), 11.0);
        assert_eq!(get(name::ALLOC_LAST_COST, None), 500e-9);
        assert_eq!(get(name::SAMPLE_INTERVAL, None), 1.0);
        assert_eq!(get(name::VIF_XENBUS_STATE, None), 4.0);
        assert_eq!(get(name::VIF_SLA_PRIORITY, None), 7.0);
        assert!(samples
            .iter()
            .filter(|s| s.name.starts_with("dbavm_vif_tx_bits"))
            .all(|s| s.label("vif") == Some("vif1.0")));
    }
}
