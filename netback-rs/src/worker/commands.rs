//! A worker's side of the control link: the control thread's commands (and the
//! manager's budgets), carried out with local work only (ports, grant maps,
//! event-channel binds).

use std::sync::mpsc::TryRecvError;
use std::sync::Arc;

use hypervisor::grant::{Access, GrantMap, GrantRef};
use hypervisor::platform::BackendPlatform;
use xen_ids::VifId;

use super::{Connection, Device, Mapping, PortSlot, Queue, Worker};
use crate::control_link::{Command, ConnectError, FrontendSetup};
use crate::features::BoundChannels;
use crate::journal::{remove_journal, VifJournal};
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
                    self.poll_vif(id);
                }
            }
            Command::Disconnect { id, reply } => {
                self.disconnect(id);
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
                        c.queues[0].vif.set_rate_cap(rate, now);
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
        let slot = self.add_port(id, port)?;
        self.devices.insert(
            id,
            Device {
                id,
                ports: vec![slot],
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

    /// Puts vif `id`'s `port` in the epoll, not armed: until a frontend connects its
    /// frames have nowhere to go.
    fn add_port(&mut self, id: VifId, port: Box<dyn netport::Port>) -> std::io::Result<PortSlot> {
        let key = self.next_key;
        self.next_key += 1;
        self.epoll
            .add(port.rx_fd(), key)
            .and_then(|()| self.epoll.set(port.rx_fd(), key, false))?;
        self.port_keys.insert(key, id);
        Ok(PortSlot {
            port,
            key,
            armed: false,
        })
    }

    /// Maps queue `keys`' rings and binds its event channel(s): queue 0 (`backstops`
    /// `None`) with the credit area's `first` generation, another queue charging
    /// queue 0's `backstops`.
    fn connect_queue(
        &self,
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
        let now = self.now();
        let vif = match backstops {
            None => Vif::with_credits(id, tx_map, rx_map, first, rate_cap, now),
            Some(b) => Vif::queue(id, tx_map, rx_map, b, rate_cap),
        };
        match vif {
            Ok(vif) => Ok(Queue { vif, evtchn }),
            Err(e) => {
                evtchn.unbind(&self.evtchn, id);
                Err(ConnectError::Rings(e))
            }
        }
    }

    /// Connects every queue the frontend set up (queue 0 first); on a failure, what
    /// was connected is released.
    fn connect_queues(
        &mut self,
        id: VifId,
        s: &FrontendSetup,
        first: Option<FirstCredits>,
        rate_cap: Option<RateCap>,
    ) -> Result<Vec<Queue<Mapping<P>>>, ConnectError> {
        let mut queues: Vec<Queue<Mapping<P>>> = Vec::with_capacity(s.queues.len());
        for keys in &s.queues {
            let backstops = queues.first().map(|q| q.vif.backstops());
            let first = first.filter(|_| queues.is_empty());
            match self.connect_queue(id, keys, backstops.as_ref(), first, rate_cap) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    let queue = queues.len();
                    self.release_queues(id, queues);
                    // With several queues, the reason names the queue.
                    return Err(match s.queues.len() {
                        1 => e,
                        _ => ConnectError::InQueue {
                            queue,
                            source: Box::new(e),
                        },
                    });
                }
            }
        }
        Ok(queues)
    }

    /// Unbinds and unmaps queues that were not put in a connection.
    fn release_queues(&self, id: VifId, queues: Vec<Queue<Mapping<P>>>) {
        for q in queues {
            q.evtchn.unbind(&self.evtchn, id);
            drop(q.vif.into_mappings());
        }
    }

    /// Opens the ports of queues 1.. of vif `id` (queue 0's is the device's).
    fn open_queue_ports(&mut self, id: VifId, count: usize) -> Result<(), ConnectError> {
        for k in 1..count as u32 {
            let opened = self
                .shared
                .ports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open_queue(id, k);
            let port = opened
                .and_then(|port| self.add_port(id, port))
                .map_err(|source| ConnectError::QueuePort { queue: k, source });
            match port {
                Ok(slot) => self.devices.get_mut(&id).expect("device").ports.push(slot),
                Err(e) => {
                    self.close_queue_ports(id);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Closes the ports of queues 1.. of vif `id`.
    fn close_queue_ports(&mut self, id: VifId) {
        if let Some(d) = self.devices.get_mut(&id) {
            for slot in d.ports.drain(1..) {
                let _ = self.epoll.del(slot.port.rx_fd());
                self.port_keys.remove(&slot.key);
            }
        }
    }

    /// Maps the frontend's rings and binds its event channel(s), every queue's, as the
    /// control thread read them; returns the connection's sequence number.
    fn connect(&mut self, id: VifId, s: &FrontendSetup) -> Result<u64, ConnectError> {
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
        let mut queues = self.connect_queues(id, s, first, rate_cap)?;
        if let Err(e) = self.use_journal(&mut queues[0].vif, id, s) {
            self.release_queues(id, queues);
            return Err(ConnectError::Rings(e));
        }
        if let Err(e) = self.open_queue_ports(id, queues.len()) {
            self.release_queues(id, queues);
            return Err(e);
        }
        let feat = s.features;
        // Only what the frontend agreed to take goes on its RX ring (every frame is
        // checked); the port is asked for no other offloads, to spare the fallback.
        let allowed = feat.allowed();
        for q in &mut queues {
            let vif = &mut q.vif;
            vif.set_tx_policy(self.cfg.tx_policy);
            vif.set_rx_policy(self.cfg.rx_policy);
            vif.set_rx_allowed(allowed);
            vif.set_rx_notify(feat.rx_notify);
            vif.set_rx_stall_timeout(self.cfg.rx_stall_timeout_ns);
        }
        // Queue 0 sets the budgets in the backstops every queue charges.
        queues[0].vif.set_rx_budget(&initial_rx, now);
        if !s.credits {
            queues[0].vif.set_tx_budget(&initial, now);
        }
        let d = self.devices.get_mut(&id).expect("checked above");
        for slot in &mut d.ports {
            if let Err(e) = slot.port.set_offloads(&allowed) {
                log::warn!("{id}: port offload: {e}");
            }
        }
        // A carrier a stalled earlier connection turned off is on again.
        d.set_carrier(true);
        for q in &queues {
            for p in q.evtchn.ports() {
                self.by_evtchn.insert(p, id);
            }
            if s.reattach {
                // Responses the previous netback pushed may never have been signalled.
                q.evtchn.notify(&self.evtchn, id, true, true);
            }
        }
        let created = self
            .shared
            .next_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = self.devices.get_mut(&id).expect("checked above");
        d.conn = Some(Connection { queues, created });
        // Frames for the guest can go somewhere now.
        d.arm_ports(&self.epoll, true);
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
        Ok(created)
    }
    /// Records `vif`'s responses in its journal, if netback keeps journals, after
    /// publishing what a killed predecessor left there (on a take-over). A journal that
    /// cannot be opened is logged; the vif goes on without one.
    fn use_journal(
        &self,
        vif: &mut Vif<Mapping<P>>,
        id: VifId,
        s: &FrontendSetup,
    ) -> Result<(), crate::vif::VifFatal> {
        vif.exit_after_responses(
            self.cfg.exit_after_tx_responses,
            self.cfg.exit_after_rx_responses,
        );
        let Some(dir) = &self.cfg.journal_dir else {
            return Ok(());
        };
        if s.queues.len() > 1 {
            // The journal is per vif: a multi-queue vif is not taken over after a
            // restart (the control thread has it run a new handshake), so it keeps none.
            return Ok(());
        }
        let q0 = &s.queues[0];
        match VifJournal::open(dir, id) {
            Ok(j) => vif.set_journal(&j, s.reattach, (q0.tx_ref, q0.rx_ref)),
            Err(e) => {
                log::error!("{id}: {e}; no journal: a netback killed mid-batch may strand it");
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
        self.disconnect(id);
        self.unpublished.remove(&id);
        if let Some(d) = self.devices.remove(&id) {
            for slot in &d.ports {
                let _ = self.epoll.del(slot.port.rx_fd());
            }
            self.port_keys.retain(|_, v| *v != id);
            self.shared
                .meters
                .queues
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            // The vif is gone: its interface goes with the port.
            let mut port = d.ports.into_iter().next().expect("queue 0's port").port;
            if let Err(e) = port.set_persistent(false) {
                log::warn!("{id}: {e}; the interface stays until deleted (ip link del)");
            }
        }
    }
}
