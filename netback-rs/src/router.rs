//! The control thread's side of netback's threads: it places each vif on a data-path
//! worker (the least loaded, counted in vif queues; sticky for the vif's life) and
//! sends each command to the worker that owns the vif, and what the manager needs to
//! know (placements, states, SLA keys) to the manager.
//!
//! Queues: a vif's queue 0 (its credit area, its budgets) runs on the vif's worker w₀;
//! queue k ≥ 1 of a connection runs on worker (w₀ + k) mod W of the W workers — the
//! queues of one vif spread over every worker, and each queue k of the vif lands on
//! the same worker at every connection. A connection is all or nothing: a queue that
//! cannot be connected releases what the other workers connected, and the vif fails
//! with that queue's reason.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use xen_ids::VifId;

use crate::control_link::{
    Command, ConnectError, ControlEnd, FrontendSetup, ManagerCommand, Notices, QueueSetup,
};
use crate::published::VifBoard;
use crate::vifconfig::{RateCap, VifConfig};

/// Load a vif adds to its worker when placed: a vif is placed at probe, before its
/// frontend says how many queues it has; each further queue adds one to the load of
/// the worker that serves it while connected.
const QUEUES_PER_VIF: usize = 1;

/// A placed vif.
struct Placed {
    /// The worker of the device and its queue 0.
    worker: usize,
    board: Arc<VifBoard>,
    /// The workers serving its queues 1.. in the current connection (one entry a
    /// queue).
    queues: Vec<usize>,
}

/// The control thread's links to the manager and the workers.
pub(crate) struct Router {
    manager: ControlEnd<ManagerCommand>,
    workers: Vec<ControlEnd<Command>>,
    /// Where the workers' notices arrive.
    pub(crate) notices: Notices,
    /// The placed vifs.
    owner: HashMap<VifId, Placed>,
    /// Queues placed on each worker.
    load: Vec<usize>,
}

impl Router {
    /// Links to the manager and to each worker (at least one).
    pub(crate) fn new(
        manager: ControlEnd<ManagerCommand>,
        workers: Vec<ControlEnd<Command>>,
        notices: Notices,
    ) -> Self {
        assert!(!workers.is_empty(), "netback needs a worker");
        let load = vec![0; workers.len()];
        Router {
            manager,
            workers,
            notices,
            owner: HashMap::new(),
            load,
        }
    }

    /// The least loaded worker (the first of equals).
    fn least_loaded(&self) -> usize {
        (0..self.load.len())
            .min_by_key(|&w| self.load[w])
            .unwrap_or(0)
    }

    /// Places vif `id` on a worker, which opens its port; the most queues that port
    /// can have. `None`: netback is stopping.
    pub(crate) fn place(&mut self, id: VifId, config: &VifConfig) -> Option<io::Result<u32>> {
        if self.owner.contains_key(&id) {
            self.remove(id);
        }
        let w = self.least_loaded();
        let board = VifBoard::new(w, config.rate);
        let r = self.workers[w].call(|reply| Command::Add {
            id,
            config: config.clone(),
            board: board.clone(),
            reply,
        })?;
        if r.is_ok() {
            let placed = Placed {
                worker: w,
                board: board.clone(),
                queues: Vec::new(),
            };
            self.owner.insert(id, placed);
            self.load[w] += QUEUES_PER_VIF;
            self.manager.send(ManagerCommand::Placed { id, board });
        }
        Some(r)
    }

    /// Sends the command `make` builds to the worker of vif `id` and waits for its
    /// reply. `None`: the vif is not placed, or netback is stopping.
    pub(crate) fn call<T>(
        &self,
        id: VifId,
        make: impl FnOnce(SyncSender<T>) -> Command,
    ) -> Option<T> {
        let w = self.owner.get(&id)?.worker;
        self.workers[w].call(make)
    }

    /// Queues `cmd` for the worker of vif `id` (nothing if it is not placed).
    pub(crate) fn send(&self, id: VifId, cmd: Command) {
        if let Some(p) = self.owner.get(&id) {
            self.workers[p.worker].send(cmd);
        }
    }

    /// The device is gone: its worker releases everything of it, the manager forgets it.
    pub(crate) fn remove(&mut self, id: VifId) {
        self.drop_queues(id);
        let Some(p) = self.owner.remove(&id) else {
            return;
        };
        let w = p.worker;
        self.workers[w].call(|reply| Command::Remove { id, reply });
        self.load[w] -= QUEUES_PER_VIF;
        self.manager.send(ManagerCommand::Removed { id });
    }

    /// The worker of queue `k` of vif `id` (placed on `w0`).
    fn queue_worker(&self, w0: usize, k: u32) -> usize {
        (w0 + k as usize) % self.workers.len()
    }

    /// Connects every queue `setup` names: queue 0 on the vif's worker, queue k ≥ 1 on
    /// its own ([`Router::queue_worker`]); all or nothing (what was connected is
    /// released when a queue fails). The connection's sequence number; `None`: the vif
    /// is not placed.
    pub(crate) fn connect(
        &mut self,
        id: VifId,
        setup: FrontendSetup,
        rate: Option<RateCap>,
    ) -> Option<Result<u64, ConnectError>> {
        let p = self.owner.get(&id)?;
        let (w0, board) = (p.worker, p.board.clone());
        let rest: Vec<_> = setup.queues[1..].to_vec();
        let (features, reattach) = (setup.features, setup.reattach);
        let c = match self.workers[w0].call(|reply| Command::Connect { id, setup, reply })? {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        for (k, keys) in (1..).zip(rest) {
            let w = self.queue_worker(w0, k);
            let queue = Box::new(QueueSetup {
                index: k,
                keys,
                features,
                reattach,
                created: c.created,
                backstops: c.backstops.clone(),
                rate,
                board: board.queue_board(k, w),
            });
            let r = self.workers[w].call(|reply| Command::ConnectQueue { id, queue, reply });
            if let Some(p) = self.owner.get_mut(&id) {
                p.queues.push(w);
                self.load[w] += 1;
            }
            match r {
                Some(Ok(())) => {}
                failed => {
                    self.disconnect(id);
                    return Some(Err(match failed {
                        Some(Err(e @ ConnectError::QueuePort { .. })) => e,
                        Some(Err(e)) => ConnectError::Queue {
                            queue: k,
                            source: Box::new(e),
                        },
                        _ => ConnectError::Stopping,
                    }));
                }
            }
        }
        if let Some(p) = self.owner.get(&id).filter(|p| !p.queues.is_empty()) {
            log::info!("{id}: queue 0 on worker {w0}, queues 1.. on {:?}", p.queues);
        }
        Some(Ok(c.created))
    }

    /// Releases the vif's connection on every worker serving one of its queues.
    pub(crate) fn disconnect(&mut self, id: VifId) {
        self.drop_queues(id);
        self.call(id, |reply| Command::Disconnect { id, reply });
    }

    /// Has the workers serving queues 1.. of vif `id` release them.
    fn drop_queues(&mut self, id: VifId) {
        let Some(p) = self.owner.get_mut(&id) else {
            return;
        };
        let queues = std::mem::take(&mut p.queues);
        for &w in &queues {
            self.load[w] -= 1;
        }
        let mut workers = queues;
        workers.sort_unstable();
        workers.dedup();
        for w in workers {
            self.workers[w].call(|reply| Command::DropQueues { id, reply });
        }
    }

    /// The manager's queue.
    pub(crate) fn manager(&self) -> &ControlEnd<ManagerCommand> {
        &self.manager
    }
}
