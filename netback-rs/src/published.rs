//! What netback's data-path workers publish for the rest of netback, and what they read
//! of it: each vif's counters and connection ([`VifBoard`], one per vif, written by its
//! one owning worker, read by the manager for [`crate::VifStatus`] and the allocator's
//! meters), each worker's loop counters and CPU time ([`WorkerMeters`], atomics), and
//! the budget a vif starts with ([`InitialPolicy`], written by the manager, read by a
//! worker when it connects a vif).
//!
//! A queue k ≥ 1 of a multi-queue vif may run on another worker than the vif
//! ([`crate::router`]): that worker publishes it on its own [`QueueBoard`], which the
//! vif's board lists; whoever reads the vif ([`VifBoard::read`]) gets every queue
//! summed, or each queue with its worker ([`VifBoard::read_with_queues`], for
//! operators).
//!
//! Nothing here is shared by two workers: a worker publishes a vif (or a queue) after
//! polling it, with `try_lock` (it never waits for the manager; a publication it
//! skipped is retried at its next loop iteration), so there is no lock between workers
//! and no wait on the per-packet path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shared_ring::credit::{Credits, FrontCounters};
use xen_ids::VifId;

use crate::control::{credits_of, initial_rx_of, UNLIMITED};
use crate::meter::VifCounters;
use crate::status::QueueStatus;
use crate::vifconfig::RateCap;

/// One vif as its worker last published it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VifSnapshot {
    /// The sequence number of the current connection (`None`: not connected).
    pub created: Option<u64>,
    /// Whether the current connection uses the credit area.
    pub credits: bool,
    /// Counters of the earlier connections.
    pub past: VifCounters,
    /// Counters of the current connection.
    pub current: VifCounters,
    /// The frontend's counters in its credit area (current connection).
    pub front: Option<FrontCounters>,
    /// The toolstack's `rate` in force.
    pub rate: Option<RateCap>,
}

/// A vif's published snapshot, and the worker that owns the vif (and its queue 0).
#[derive(Debug)]
pub(crate) struct VifBoard {
    /// Index of the owning worker.
    pub worker: usize,
    snap: Mutex<VifSnapshot>,
    /// The boards of its queues 1.. (index k − 1), created by the control thread when
    /// a frontend first connects with that many queues, kept for the vif's life.
    queues: Mutex<Vec<Arc<QueueBoard>>>,
}

impl VifBoard {
    /// The board of a vif placed on `worker`.
    pub(crate) fn new(worker: usize, rate: Option<RateCap>) -> Arc<Self> {
        Arc::new(VifBoard {
            worker,
            snap: Mutex::new(VifSnapshot {
                rate,
                ..VifSnapshot::default()
            }),
            queues: Mutex::new(Vec::new()),
        })
    }

    /// The last published snapshot, the counters of its queues 1.. added: those of the
    /// current connection to `current`, the others to `past`.
    pub(crate) fn read(&self) -> VifSnapshot {
        self.read_queues(|_| {})
    }

    /// [`VifBoard::read`], and each queue the vif has had (queue 0 first), read in the
    /// same pass: the queues' counters sum to the snapshot's `past + current`.
    pub(crate) fn read_with_queues(&self) -> (VifSnapshot, Vec<QueueStatus>) {
        let mut queues = Vec::new();
        let s = self.read_queues(|q| queues.push(q));
        (s, queues)
    }

    /// Reads the vif and its queues, handing each queue to `each`.
    fn read_queues(&self, mut each: impl FnMut(QueueStatus)) -> VifSnapshot {
        let mut s = *self.lock();
        each(QueueStatus {
            index: 0,
            worker: self.worker,
            connected: s.created.is_some(),
            counters: s.past + s.current,
        });
        for (k, board) in (1..).zip(self.queue_boards()) {
            let q = board.read();
            s.past += q.past;
            match q.created {
                Some(c) if s.created == Some(c) => s.current += q.current,
                _ => s.past += q.current,
            }
            // A board made only to fill a gap never served (nor counted) anything.
            if board.worker != usize::MAX {
                each(QueueStatus {
                    index: k,
                    worker: board.worker,
                    connected: s.created.is_some() && q.connected == s.created,
                    counters: q.total(),
                });
            }
        }
        s
    }

    /// The board of queue `k` (1 or more), served by `worker`: the one it had, or a new
    /// one.
    pub(crate) fn queue_board(&self, k: u32, worker: usize) -> Arc<QueueBoard> {
        let mut g = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let i = k as usize - 1;
        while g.len() <= i {
            let worker = if g.len() == i { worker } else { usize::MAX };
            g.push(Arc::new(QueueBoard::new(worker)));
        }
        if g[i].worker != worker {
            // Placed elsewhere now: a new board, the old one's counters kept as past.
            let past = g[i].read().total();
            g[i] = Arc::new(QueueBoard::new(worker));
            g[i].lock().past = past;
        }
        g[i].clone()
    }

    /// The workers serving the vif's queues in its current connection (queue 0 first);
    /// empty while it is not connected.
    pub(crate) fn queue_workers(&self) -> Vec<usize> {
        let Some(created) = self.lock().created else {
            return Vec::new();
        };
        std::iter::once(self.worker)
            .chain(
                self.queue_boards()
                    .iter()
                    .filter(|q| q.read().connected == Some(created))
                    .map(|q| q.worker),
            )
            .collect()
    }

    fn queue_boards(&self) -> Vec<Arc<QueueBoard>> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes `s` unless the reader holds the board right now (false then: the
    /// caller retries later).
    pub(crate) fn try_publish(&self, s: &VifSnapshot) -> bool {
        match self.snap.try_lock() {
            Ok(mut g) => {
                *g = *s;
                true
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                *p.into_inner() = *s;
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Publishes `s`, waiting for the reader (a few loads) if needed: for connection
    /// changes, which must not be lost.
    pub(crate) fn publish(&self, s: &VifSnapshot) {
        *self.lock() = *s;
    }

    fn lock(&self) -> MutexGuard<'_, VifSnapshot> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One queue k ≥ 1 of a vif as the worker serving it last published it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueueSnapshot {
    /// The connection `current` counts (kept after the queue is released, until the
    /// next connection begins).
    pub created: Option<u64>,
    /// The connection it is connected in now (`None`: released).
    pub connected: Option<u64>,
    /// Counters of connection `created`.
    pub current: VifCounters,
    /// Counters of the earlier connections.
    pub past: VifCounters,
}

impl QueueSnapshot {
    fn total(&self) -> VifCounters {
        self.past + self.current
    }
}

/// Where the worker serving queue k ≥ 1 of a vif publishes it (read by the manager
/// through the vif's [`VifBoard`]).
#[derive(Debug)]
pub(crate) struct QueueBoard {
    /// Index of the worker serving the queue.
    pub worker: usize,
    snap: Mutex<QueueSnapshot>,
}

impl QueueBoard {
    fn new(worker: usize) -> Self {
        QueueBoard {
            worker,
            snap: Mutex::new(QueueSnapshot::default()),
        }
    }

    /// The last published snapshot.
    pub(crate) fn read(&self) -> QueueSnapshot {
        *self.lock()
    }

    /// Connection `created` begins: the previous one's counters go to `past`.
    pub(crate) fn begin(&self, created: u64) {
        let mut g = self.lock();
        let was = g.current;
        g.past += was;
        g.current = VifCounters::default();
        g.created = Some(created);
        g.connected = Some(created);
    }

    /// The queue is released: its last counters stay, as the connection's.
    pub(crate) fn end(&self, counters: VifCounters) {
        let mut g = self.lock();
        g.current = counters;
        g.connected = None;
    }

    /// Publishes the current connection's counters unless the reader holds the board
    /// right now (false then: the caller retries later).
    pub(crate) fn try_publish(&self, counters: VifCounters) -> bool {
        match self.snap.try_lock() {
            Ok(mut g) => {
                g.current = counters;
                true
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                p.into_inner().current = counters;
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueSnapshot> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One worker's loop counters and CPU time (written by the worker, relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct WorkerMeters {
    /// Loop iterations.
    pub iterations: AtomicU64,
    /// Polls of a connected vif.
    pub vif_polls: AtomicU64,
    /// Waits that ended at their timeout with nothing ready.
    pub timeouts: AtomicU64,
    /// Event-channel ports found pending.
    pub events: AtomicU64,
    /// Notifications sent to frontends.
    pub notifies: AtomicU64,
    /// The worker thread's CPU time, ns, as of its last publication: after the first
    /// wait that ended with nothing to do (at most a [`WORKER_TICK`] after it went
    /// idle), every [`CPU_PUBLISH_EVERY`] iterations while busy, and when it stops; an
    /// idle worker does not read its clock.
    ///
    /// [`WORKER_TICK`]: crate::worker::WORKER_TICK
    pub cpu_ns: AtomicU64,
    /// Vif queues placed on this worker.
    pub queues: AtomicU64,
}

/// A busy worker publishes its CPU time at least every this many iterations.
pub(crate) const CPU_PUBLISH_EVERY: u64 = 64;

impl WorkerMeters {
    pub(crate) fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub(crate) fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// Publishes the calling thread's CPU time.
    pub(crate) fn publish_cpu(&self) {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let ns = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
        self.cpu_ns.store(ns, Ordering::Relaxed);
    }
}

/// What a vif's first credit generation is computed from: the SLAs in force (the base
/// set overlaid with the vif keys) and the allocator's period, or `None` without the
/// allocator (then the configured initial budget).
#[derive(Debug, Default)]
pub(crate) struct InitialPolicy(Mutex<Option<(allocator::SlaSet, Duration)>>);

impl InitialPolicy {
    /// Replaces the SLAs in force.
    pub(crate) fn set(&self, p: Option<(allocator::SlaSet, Duration)>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = p;
    }

    /// The budget vif `id` starts with: with the allocator, the most its SLA allows (B^max
    /// bounded by the link, its VM's packets/s cap) until the next round counts it in —
    /// otherwise it would send unlimited for up to a period; without, `default`.
    pub(crate) fn credits(&self, id: VifId, default: Credits) -> Credits {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some((slas, period)) = &*g else {
            return default;
        };
        let sla = slas.vif(id);
        let budget = allocator::Budget::with_bursts(
            sla.max_bps_on(slas.link()),
            slas.vm(id.domid).pps(),
            *period,
        );
        credits_of(&budget, *period)
    }

    /// The RX budget vif `id` starts with: with the allocator, the most its RX SLA
    /// allows (unlimited when nothing limits it on RX); without, `default`.
    pub(crate) fn rx_credits(&self, id: VifId, default: Credits) -> Credits {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some((slas, period)) => initial_rx_of(slas, id, *period).unwrap_or(UNLIMITED),
            None => default,
        }
    }
}
