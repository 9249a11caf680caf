//! A worker's side of the control link: the control thread's commands (and the
//! manager's budgets), carried out with local work only (ports, grant maps,
//! event-channel binds). Queue 0 of a vif here; its queues k ≥ 1 in [`super::lanes`].

use std::sync::mpsc::TryRecvError;
use std::sync::Arc;

use hypervisor::grant::{Access, GrantMap, GrantRef};
use hypervisor::platform::BackendPlatform;
use xen_ids::VifId;

use super::{Connection, Device, Mapping, PortSlot, Queue, QueueId, Worker};
use crate::control_link::{Command, ConnectError, Connected, FrontendSetup};
use crate::features::BoundChannels;
use crate::journal::{remove_journal, remove_stale_journals, VifJournal};
use crate::meter::VifCounters;
use crate::published::{VifBoard, WorkerMeters};
use crate::queues::QueueKeys;
use crate::vif::{Backstops, FirstCredits, Vif};
use crate::vifconfig::RateCap;
use crate::vifconfig::VifConfig;

impl<P: BackendPlatform + Sync> Worker<P> {
    /// Carries out the queued commands.
    pub(super) fn take_commands(&mut self) {
        self.link.bell.clear();
        loop {
            match self.link.next() {
                Ok(cmd) => self.command(cmd),
                Err(TryRecvError::Empty) => return,
                // netback is stopping (its stop flag ends the loop).
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        // A reply nobody waits for any more (the control thread stopping) is dropped.
        match cmd {
            Command::Add {
                id,
                config,
                board,
                reply,
            } => {
                let _ = reply.send(self.add_device(id, &config, board));
            }
            Command::Connect { id, setup, reply } => {
                let r = self.connect(id, &setup);
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok {
                    // Frames may already be waiting in either direction.
                    self.poll_queue((id, 0));
                }
            }
            Command::ConnectQueue { id, queue, reply } => {
                let k = queue.index;
                let r = self.connect_lane(id, *queue);
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok {
                    self.poll_queue((id, k));
                }
            }
            Command::Disconnect { id, reply } => {
                self.disconnect(id);
                let _ = reply.send(());
            }
            Command::DropQueues { id, reply } => {
                self.drop_lanes(id);
                let _ = reply.send(());
            }
            Command::Remove { id, reply } => {
                self.remove_device(id);
                let _ = reply.send(());
            }
            Command::Rate { id, rate } => {
                let now = self.now();
                if let Some(d) = self.devices.get_mut(&id) {
                    d.rate = rate;
                    if let Some(c) = d.conn.as_mut() {
                        // On the backstops every queue of the vif charges.
                        c.queue.vif.set_rate_cap(rate, now);
                    }
                }
                self.publish(id);
            }
            Command::Budget {
                id,
                created,
                credits,
            } => {
                self.set_tx_budget(id, Some(created), &credits);
                // Once per allocator round: an idle vif's status (the frontend's
                // counters in its credit area among it) is never older than a period.
                self.publish(id);
            }
            Command::RxBudget {
                id,
                created,
                credits,
            } => {
                self.set_rx_budget(id, created, &credits);
            }
            Command::SetBudget { id, credits, reply } => {
                let _ = reply.send(self.set_tx_budget(id, None, &credits));
            }
        }
    }

    /// Opens the port of a probed device; it is armed once a frontend connects.
    fn add_device(
        &mut self,
        id: VifId,
        config: &VifConfig,
        board: Arc<VifBoard>,
    ) -> std::io::Result<u32> {
        if self.devices.contains_key(&id) {
            self.remove_device(id);
        }
        let (port, queues) = {
            let mut ports = self.shared.ports.lock().unwrap_or_else(|p| p.into_inner());
            let port = ports.open_vif(id, config)?;
            (port, ports.queues(id))
        };
        let slot = self.add_port((id, 0), port)?;
        self.devices.insert(
            id,
            Device {
                id,
                port: slot,
                rate: config.rate,
                conn: None,
                past: VifCounters::default(),
                board,
            },
        );
        WorkerMeters::add(&self.shared.meters.queues, 1);
        self.publish(id);
        Ok(queues)
    }

    /// Puts queue `q`'s `port` in the epoll, not armed: until a frontend connects its
    /// frames have nowhere to go.
    pub(super) fn add_port(
        &mut self,
        q: QueueId,
        port: Box<dyn netport::Port>,
    ) -> std::io::Result<PortSlot> {
        let key = self.next_key;
        self.next_key += 1;
        self.epoll
            .add(port.rx_fd(), key)
            .and_then(|()| self.epoll.set(port.rx_fd(), key, false))?;
        self.port_keys.insert(key, q);
        Ok(PortSlot {
            port,
            key,
            armed: false,
        })
    }

    /// Polls `ch`'s ports in the worker's epoll where the platform has a fd per port
    /// ([`super::own_ports`]).
    fn watch_ports(&mut self, ch: &BoundChannels) -> Result<(), ConnectError> {
        for p in ch.ports() {
            let key = self.next_key;
            let watched = self
                .own_ports
                .watch(&self.evtchn, &self.epoll, p, key)
                .map_err(|source| ConnectError::Bind { port: p.0, source })?;
            if watched {
                self.next_key += 1;
            }
        }
        Ok(())
    }

    /// Takes `ch`'s ports out of the worker's epoll (before they are unbound).
    pub(super) fn unwatch_ports(&mut self, ch: &BoundChannels) {
        for p in ch.ports() {
            self.own_ports.forget(&self.epoll, p);
        }
    }

    /// Maps queue `keys`' rings and binds its event channel(s): queue 0 (`backstops`
    /// `None`) with the credit area's `first` generation, another queue charging
    /// queue 0's `backstops`.
    pub(super) fn connect_queue(
        &mut self,
        id: VifId,
        keys: &QueueKeys,
        backstops: Option<&Backstops>,
        first: Option<FirstCredits>,
        rate_cap: Option<RateCap>,
    ) -> Result<Queue<Mapping<P>>, ConnectError> {
        let grants = self.platform.grants();
        let map = |key: &'static str, gref: u32| {
            grants
                .map(id.domid, &[GrantRef(gref)], Access::Writable)
                .map_err(|source| ConnectError::Map { key, gref, source })
        };
        let tx_map = map("tx-ring-ref", keys.tx_ref)?;
        let rx_map = map("rx-ring-ref", keys.rx_ref)?;
        let evtchn = BoundChannels::bind(&self.evtchn, id, keys.channels)
            .map_err(|(port, source)| ConnectError::Bind { port, source })?;
        if let Err(e) = self.watch_ports(&evtchn) {
            self.unwatch_ports(&evtchn);
            evtchn.unbind(&self.evtchn, id);
            return Err(e);
        }
        let now = self.now();
        let vif = match backstops {
            None => Vif::with_credits(id, tx_map, rx_map, first, rate_cap, now),
            Some(b) => Vif::queue(id, tx_map, rx_map, b, rate_cap),
        };
        match vif {
            Ok(vif) => Ok(Queue { vif, evtchn }),
            Err(e) => {
                self.unwatch_ports(&evtchn);
                evtchn.unbind(&self.evtchn, id);
                Err(ConnectError::Rings(e))
            }
        }
    }

    /// Maps queue 0's rings and binds its event channel(s), as the control thread read
    /// them (the other queues are [`Command::ConnectQueue`]s); returns the connection's
    /// sequence number and the vif's backstops.
    fn connect(&mut self, id: VifId, s: &FrontendSetup) -> Result<Connected, ConnectError> {
        match self.devices.get(&id) {
            None => return Err(ConnectError::NoDevice),
            // The control thread disconnects before connecting again; should it not,
            // the old rings are released rather than leaked.
            Some(d) if d.conn.is_some() => self.disconnect(id),
            Some(_) => {}
        }
        let now = self.now();
        // The first generation already carries the budget (what its SLA allows).
        let initial = self.shared.initial.credits(id, self.cfg.initial_budget);
        // The toolstack's `rate` holds under every budget, the first one included.
        let rate_cap = self.devices.get(&id).and_then(|d| d.rate);
        let initial_rx = self
            .shared
            .initial
            .rx_credits(id, self.cfg.initial_rx_budget);
        let first = s.credits.then_some(FirstCredits {
            version: s.credit_version,
            tx: initial,
            rx: initial_rx,
        });
        let mut queue = self.connect_queue(id, &s.queues[0], None, first, rate_cap)?;
        self.remove_stale_journals(id, s.queues.len() as u32);
        if let Err(e) = self.use_journal(&mut queue.vif, id, 0, &s.queues[0], s.reattach) {
            self.release(id, queue);
            return Err(ConnectError::Rings(e));
        }
        let feat = s.features;
        let allowed = self.set_queue_policies(&mut queue.vif, &feat);
        // Queue 0 sets the budgets in the backstops every queue charges.
        queue.vif.set_rx_budget(&initial_rx, now);
        if !s.credits {
            queue.vif.set_tx_budget(&initial, now);
        }
        let backstops = queue.vif.backstops();
        let d = self.devices.get_mut(&id).expect("checked above");
        if let Err(e) = d.port.port.set_offloads(&allowed) {
            log::warn!("{id}: port offload: {e}");
        }
        // A carrier a stalled earlier connection turned off is on again.
        d.port.set_carrier(true, id);
        for p in queue.evtchn.ports() {
            self.by_evtchn.insert(p, (id, 0));
        }
        if s.reattach {
            // Responses the previous netback pushed may never have been signalled.
            queue.evtchn.notify(&self.evtchn, id, true, true);
        }
        let created = self
            .shared
            .next_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = self.devices.get_mut(&id).expect("checked above");
        d.conn = Some(Connection {
            queue,
            created,
            several: s.queues.len() > 1,
        });
        // Frames for the guest can go somewhere now.
        d.port.arm(&self.epoll, true, id);
        self.publish(id);
        log::info!(
            "{id}: {} ({} queue(s): {}; credits {}, {:?}, rx-notify {})",
            if s.reattach {
                "re-attached"
            } else {
                "connected"
            },
            s.queues.len(),
            crate::queues::record(&s.queues),
            if s.credits { "on" } else { "off" },
            allowed,
            feat.rx_notify,
        );
        Ok(Connected { created, backstops })
    }

    /// Sets what netback's configuration and the frontend's features say on a queue's
    /// `vif`; returns the offloads its port may be asked for. Only what the frontend
    /// agreed to take goes on its RX ring (every frame is checked); the port is asked
    /// for no other offloads, to spare the fallback.
    pub(super) fn set_queue_policies(
        &self,
        vif: &mut Vif<Mapping<P>>,
        feat: &crate::features::FrontendFeatures,
    ) -> netport::negotiate::Allowed {
        let allowed = feat.allowed();
        vif.set_tx_policy(self.cfg.tx_policy);
        vif.set_run_delay(self.cfg.run_delay.clone());
        vif.set_rx_policy(self.cfg.rx_policy);
        vif.set_rx_allowed(allowed);
        vif.set_rx_notify(feat.rx_notify);
        vif.set_rx_stall_timeout(self.cfg.rx_stall_timeout_ns);
        allowed
    }

    /// The journals of queues vif `id` no longer has (it connected with `queues`) are
    /// deleted, if netback keeps journals.
    fn remove_stale_journals(&self, id: VifId, queues: u32) {
        if let Some(dir) = &self.cfg.journal_dir {
            if let Err(e) = remove_stale_journals(dir, id, queues) {
                log::warn!("{id}: stale journals in {}: {e}", dir.display());
            }
        }
    }

    /// Records the responses of `vif`, queue `queue` of vif `id` (its rings: `keys`), in
    /// the queue's own journal, if netback keeps journals, after publishing what a
    /// killed predecessor left there (on a take-over, `reattach`). A journal that cannot
    /// be opened is logged; the queue goes on without one.
    pub(super) fn use_journal(
        &self,
        vif: &mut Vif<Mapping<P>>,
        id: VifId,
        queue: u32,
        keys: &QueueKeys,
        reattach: bool,
    ) -> Result<(), crate::vif::VifFatal> {
        vif.exit_after_responses(
            self.cfg.exit_after_tx_responses,
            self.cfg.exit_after_rx_responses,
        );
        let Some(dir) = &self.cfg.journal_dir else {
            return Ok(());
        };
        match VifJournal::open(dir, id, queue) {
            Ok(j) => vif.set_journal(&j, reattach, (keys.tx_ref, keys.rx_ref)),
            Err(e) => {
                log::error!(
                    "{id}: queue {queue}: {e}; no journal: a netback killed mid-batch may strand it"
                );
                Ok(())
            }
        }
    }

    /// The device is gone: releases its rings and port.
    pub(super) fn remove_device(&mut self, id: VifId) {
        if let Some(dir) = &self.cfg.journal_dir {
            if let Err(e) = remove_journal(dir, id) {
                log::warn!("{id}: journal: {e}");
            }
        }
        self.drop_lanes(id);
        self.disconnect(id);
        self.unpublished.remove(&(id, 0));
        if let Some(d) = self.devices.remove(&id) {
            let _ = self.epoll.del(d.port.port.rx_fd());
            self.port_keys.remove(&d.port.key);
            self.shared
                .meters
                .queues
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            // The vif is gone: its interface goes with the port.
            let mut port = d.port.port;
            if let Err(e) = port.set_persistent(false) {
                log::warn!("{id}: {e}; the interface stays until deleted (ip link del)");
            }
        }
    }
}
