//! The xenstore work netback's control thread owes, and when it may do it.
//!
//! A watch event only says *which* watch fired (its token): the work it calls for —
//! list the backend directory, re-read a frontend's state, re-read a vif's SLA keys,
//! look for dead domains — is a xenstore round trip on the control thread. A guest can
//! fire its own watches as fast as xenstored takes its writes, so that work is
//! bounded three ways, whatever the guest writes:
//!
//! - **coalesced**: pending work is a set; a burst of events for one token is one item
//!   (the xenstore client coalesces its queue the same way);
//! - **paced per item**: a vif's item runs at most once per [`MIN_INTERVAL_NS`], a
//!   global one once per [`GLOBAL_INTERVAL_NS`]; an event that comes sooner waits for
//!   the rest of the interval (the loop wakes for it);
//! - **budgeted per iteration**: at most [`BUDGET`] items per iteration of the control
//!   thread, so its events and the data thread's notices are looked at between them.
//!
//! The first event of a quiet item runs at once: a handshake is not slowed down.

use std::collections::{HashMap, HashSet, VecDeque};

use xen_ids::VifId;

/// Shortest time between two runs of the same per-vif item, ns.
pub const MIN_INTERVAL_NS: u64 = 10_000_000;
/// Shortest time between two runs of a global item ([`Work::Scan`], [`Work::Release`]),
/// ns. These cost a round trip per domain; the backend directory changes with every
/// state netback writes, so a guest flipping its state would otherwise make netback
/// list every domain's devices at the per-vif pace.
pub const GLOBAL_INTERVAL_NS: u64 = 50_000_000;
/// Most items run per loop iteration.
pub const BUDGET: usize = 4;

/// One piece of xenstore work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Work {
    /// List the backend directory (devices appeared or vanished).
    Scan,
    /// `@releaseDomain`: look for connected devices whose domain died.
    Release,
    /// Re-read a vif's SLA keys.
    Sla(VifId),
    /// Re-read a frontend's state and follow it.
    Frontend(VifId),
}

impl Work {
    /// Shortest time between two runs of this item, ns.
    pub(crate) fn interval(self) -> u64 {
        match self {
            Work::Sla(_) | Work::Frontend(_) => MIN_INTERVAL_NS,
            Work::Scan | Work::Release => GLOBAL_INTERVAL_NS,
        }
    }

    /// The vif the item concerns, if one.
    pub(crate) fn vif(self) -> Option<VifId> {
        match self {
            Work::Sla(id) | Work::Frontend(id) => Some(id),
            Work::Scan | Work::Release => None,
        }
    }
}

/// What the control work cost so far: counts that show it is bounded by time, not by
/// what guests write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// Watch events taken from the xenstore connection.
    pub events: u64,
    /// Events that found their item already pending (no extra work).
    pub coalesced: u64,
    /// Items run (each a few xenstore round trips).
    pub runs: u64,
    /// Re-reads of a frontend's state ([`Work::Frontend`] runs).
    pub frontend_reads: u64,
    /// Listings of the backend directory ([`Work::Scan`] runs).
    pub scans: u64,
}

/// Pending xenstore work (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct ControlWork {
    /// Pending items, in the order their first event came.
    queue: VecDeque<Work>,
    pending: HashSet<Work>,
    /// When each recently run item ran (pruned after its interval).
    last_run: HashMap<Work, u64>,
    stats: ControlStats,
}

impl ControlWork {
    /// Notes that `work` is needed.
    pub(crate) fn push(&mut self, work: Work) {
        self.stats.events += 1;
        if self.pending.insert(work) {
            self.queue.push_back(work);
        } else {
            self.stats.coalesced += 1;
        }
    }

    /// Forgets pending work for a vif that is gone.
    pub(crate) fn forget(&mut self, id: VifId) {
        self.queue.retain(|w| w.vif() != Some(id));
        self.pending.retain(|w| w.vif() != Some(id));
        self.last_run.retain(|w, _| w.vif() != Some(id));
    }

    /// When `work` may run next.
    fn not_before(&self, work: Work) -> u64 {
        self.last_run
            .get(&work)
            .map_or(0, |t| t.saturating_add(work.interval()))
    }

    /// Takes the items that may run at `now`, at most [`BUDGET`], oldest first; the
    /// others stay pending, in order.
    pub(crate) fn take_due(&mut self, now: u64) -> Vec<Work> {
        self.last_run
            .retain(|w, t| now < t.saturating_add(w.interval()));
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for w in self.queue.drain(..) {
            if out.len() < BUDGET && !self.last_run.contains_key(&w) {
                out.push(w);
            } else {
                kept.push_back(w);
            }
        }
        self.queue = kept;
        for w in &out {
            self.pending.remove(w);
            self.last_run.insert(*w, now);
            self.stats.runs += 1;
            match w {
                Work::Frontend(_) => self.stats.frontend_reads += 1,
                Work::Scan => self.stats.scans += 1,
                Work::Sla(_) | Work::Release => {}
            }
        }
        out
    }

    /// When the loop must wake for pending work (`None`: nothing pending).
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.queue.iter().map(|w| self.not_before(*w)).min()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> ControlStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_ids::DomId;

    const MS: u64 = 1_000_000;

    fn fe(d: u16) -> Work {
        Work::Frontend(VifId::new(DomId(d), 0))
    }

    #[test]
    fn a_burst_is_one_run_then_paced() {
        let mut c = ControlWork::default();
        let t0 = 1_000 * MS;
        for _ in 0..10_000 {
            c.push(fe(1));
        }
        assert_eq!(c.take_due(t0), [fe(1)]);
        assert_eq!(c.next_due(), None);
        // More writes right after the re-read: one item, not before the interval.
        for _ in 0..10_000 {
            c.push(fe(1));
        }
        assert_eq!(c.take_due(t0 + MS), []);
        assert_eq!(c.next_due(), Some(t0 + MIN_INTERVAL_NS));
        assert_eq!(c.take_due(t0 + MIN_INTERVAL_NS), [fe(1)]);
        let s = c.stats();
        assert_eq!((s.events, s.runs, s.frontend_reads), (20_000, 2, 2));
        assert_eq!(s.coalesced, 20_000 - 2);
    }

    #[test]
    fn a_busy_item_does_not_delay_another() {
        let mut c = ControlWork::default();
        let t0 = 1_000 * MS;
        c.push(fe(1));
        assert_eq!(c.take_due(t0), [fe(1)]);
        c.push(fe(1));
        c.push(fe(2));
        assert_eq!(c.take_due(t0 + MS), [fe(2)], "vif 2 is served at once");
        assert_eq!(c.take_due(t0 + MIN_INTERVAL_NS), [fe(1)]);
    }

    #[test]
    fn global_items_are_paced_longer() {
        let mut c = ControlWork::default();
        let t0 = 1_000 * MS;
        c.push(Work::Scan);
        assert_eq!(c.take_due(t0), [Work::Scan]);
        c.push(Work::Scan);
        assert_eq!(c.take_due(t0 + MIN_INTERVAL_NS), []);
        assert_eq!(c.next_due(), Some(t0 + GLOBAL_INTERVAL_NS));
        assert_eq!(c.take_due(t0 + GLOBAL_INTERVAL_NS), [Work::Scan]);
    }

    #[test]
    fn at_most_budget_items_per_iteration_oldest_first() {
        let mut c = ControlWork::default();
        let n = BUDGET as u16 * 2 + 1;
        for d in 1..=n {
            c.push(fe(d));
        }
        let t0 = 1_000 * MS;
        let first = c.take_due(t0);
        assert_eq!(first, (1..=BUDGET as u16).map(fe).collect::<Vec<_>>());
        assert_eq!(c.next_due(), Some(0), "the rest is due at once");
        assert_eq!(c.take_due(t0).len(), BUDGET);
        assert_eq!(c.take_due(t0), [fe(n)]);
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn memory_is_bounded_by_the_items_not_the_events() {
        let mut c = ControlWork::default();
        let mut now = 1_000 * MS;
        for round in 0..1_000u64 {
            for d in 1..=8 {
                c.push(fe(d));
                c.push(Work::Sla(VifId::new(DomId(d), 0)));
            }
            c.push(Work::Scan);
            assert!(c.queue.len() <= 17 && c.pending.len() <= 17);
            now += MS * (round % 3);
            c.take_due(now);
            assert!(c.last_run.len() <= 17);
        }
    }

    #[test]
    fn a_forgotten_vif_leaves_nothing_behind() {
        let mut c = ControlWork::default();
        let id = VifId::new(DomId(3), 0);
        c.push(Work::Frontend(id));
        c.take_due(MS);
        c.push(Work::Frontend(id));
        c.push(Work::Sla(id));
        c.push(Work::Scan);
        c.forget(id);
        assert_eq!(c.take_due(2 * MS), [Work::Scan]);
        assert!(c.last_run.keys().all(|w| w.vif() != Some(id)));
    }
}
