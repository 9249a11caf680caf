//! Queues k ≥ 1 of a vif on a worker ([`super::Lane`]): the worker serving queue k
//! ([`crate::router`] places it) maps its rings, binds its event channel(s) on its own
//! event-channel handle, opens queue k of the vif's port, and polls it when its event
//! or its port fires. The queue charges the vif's backstops (shared with queue 0,
//! lock-free) and publishes its counters on its own board. A queue that breaks the
//! protocol is released here and reported; the control thread then releases the rest
//! of the vif on every worker.

use hypervisor::platform::BackendPlatform;
use xen_ids::VifId;

use super::{Lane, QueueId, Worker};
use crate::control_link::{ConnectError, Notice, QueueSetup};
use crate::published::WorkerMeters;

impl<P: BackendPlatform + Sync> Worker<P> {
    /// Connects queue `s.index` of vif `id` here; on a failure nothing of it is kept.
    pub(super) fn connect_lane(&mut self, id: VifId, s: QueueSetup) -> Result<(), ConnectError> {
        let q: QueueId = (id, s.index);
        // The control thread releases a connection before making another; should it
        // not, the old queue is released rather than leaked.
        self.release_lane(q);
        let mut queue = self.connect_queue(id, &s.keys, Some(&s.backstops), None, s.rate)?;
        if let Err(e) = self.use_journal(&mut queue.vif, id, s.index, &s.keys, s.reattach) {
            self.release(id, queue);
            return Err(ConnectError::Rings(e));
        }
        let allowed = self.set_queue_policies(&mut queue.vif, &s.features);
        let opened = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open_queue(id, s.index);
        let mut port = match opened.and_then(|port| self.add_port(q, port)) {
            Ok(slot) => slot,
            Err(source) => {
                self.release(id, queue);
                return Err(ConnectError::QueuePort {
                    queue: s.index,
                    source,
                });
            }
        };
        if let Err(e) = port.port.set_offloads(&allowed) {
            log::warn!("{id}: queue {}: port offload: {e}", s.index);
        }
        port.set_carrier(true, id);
        for p in queue.evtchn.ports() {
            self.by_evtchn.insert(p, q);
        }
        if s.reattach {
            // Responses the previous netback pushed may never have been signalled.
            queue.evtchn.notify(&self.evtchn, id, true, true);
        }
        port.arm(&self.epoll, true, id);
        s.board.begin(s.created);
        WorkerMeters::add(&self.shared.meters.queues, 1);
        self.lanes.insert(
            q,
            Lane {
                queue,
                port,
                created: s.created,
                board: s.board,
            },
        );
        log::debug!("{id}: queue {} connected", s.index);
        Ok(())
    }

    /// Releases queue `q` (rings, event channels, port), if it is served here.
    pub(super) fn release_lane(&mut self, q: QueueId) {
        let Some(l) = self.lanes.remove(&q) else {
            return;
        };
        self.busy.remove(&q);
        self.unpublished.remove(&q);
        let _ = self.epoll.del(l.port.port.rx_fd());
        self.port_keys.remove(&l.port.key);
        l.board.end(l.queue.vif.counters());
        self.release(q.0, l.queue);
        self.shared
            .meters
            .queues
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.forget_unconnected_peer(q.0.domid);
    }

    /// Releases every queue of vif `id` served here.
    pub(super) fn drop_lanes(&mut self, id: VifId) {
        let mine: Vec<QueueId> = self
            .lanes
            .range((id, 1)..=(id, u32::MAX))
            .map(|(q, _)| *q)
            .collect();
        for q in mine {
            self.release_lane(q);
        }
    }

    /// Releases queue `q`, which broke the protocol, and tells the control thread: it
    /// fails the whole vif (its other queues released on every worker) with `why`.
    pub(super) fn fail_lane(&mut self, q: QueueId, why: &str) {
        let Some(created) = self.lanes.get(&q).map(|l| l.created) else {
            return;
        };
        self.release_lane(q);
        self.link.notify(Notice::Failed {
            id: q.0,
            created,
            reason: why.to_string(),
        });
    }
}
