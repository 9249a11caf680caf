//! The control thread's side of netback's threads: it places each vif on a data-path
//! worker (the least loaded, counted in vif queues; sticky for the vif's life) and
//! sends each command to the worker that owns the vif, and what the manager needs to
//! know (placements, states, SLA keys) to the manager.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::SyncSender;

use xen_ids::VifId;

use crate::control_link::{Command, ControlEnd, ManagerCommand, Notices};
use crate::published::VifBoard;
use crate::vifconfig::VifConfig;

/// Load a vif adds to its worker: a vif is placed at probe, before its frontend says
/// how many queues it has, and all its queues run on its worker (spreading them over
/// workers is to come, `docs/design.md`), so the load counts vifs.
const QUEUES_PER_VIF: usize = 1;

/// The control thread's links to the manager and the workers.
pub(crate) struct Router {
    manager: ControlEnd<ManagerCommand>,
    workers: Vec<ControlEnd<Command>>,
    /// Where the workers' notices arrive.
    pub(crate) notices: Notices,
    /// The worker of each placed vif.
    owner: HashMap<VifId, usize>,
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
            self.owner.insert(id, w);
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
        let w = *self.owner.get(&id)?;
        self.workers[w].call(make)
    }

    /// Queues `cmd` for the worker of vif `id` (nothing if it is not placed).
    pub(crate) fn send(&self, id: VifId, cmd: Command) {
        if let Some(&w) = self.owner.get(&id) {
            self.workers[w].send(cmd);
        }
    }

    /// The device is gone: its worker releases everything of it, the manager forgets it.
    pub(crate) fn remove(&mut self, id: VifId) {
        let Some(w) = self.owner.remove(&id) else {
            return;
        };
        self.workers[w].call(|reply| Command::Remove { id, reply });
        self.load[w] -= QUEUES_PER_VIF;
        self.manager.send(ManagerCommand::Removed { id });
    }

    /// The manager's queue.
    pub(crate) fn manager(&self) -> &ControlEnd<ManagerCommand> {
        &self.manager
    }
}
