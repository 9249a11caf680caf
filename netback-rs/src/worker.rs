//! A netback data-path worker: one thread, one epoll, its own event-channel handle,
//! and the vifs placed on it (every queue of each), driven with local work
//! only (grant maps and copies, event-channel binds, ports). netback runs
//! [`NetbackConfig::workers`] of them; the control thread places each vif on the
//! least-loaded one for the vif's life and sends its commands there
//! ([`crate::control_link`]). A worker never waits for xenstore, for the manager or
//! for another worker: what the rest of netback needs to know it publishes
//! ([`crate::published`]).
//!
//! A frontend that breaks the protocol on its rings is disconnected here with one log
//! line that says why, and the control thread writes the reason to its `error` node;
//! only that vif is affected.

mod commands;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{GrantCopy, GrantMap};
use hypervisor::platform::BackendPlatform;
use hypervisor::poll::Epoll;
use netport::Port;
use shared_ring::credit::Credits;
use xen_ids::{DomId, VifId};

use crate::config::{NetbackConfig, PortFactory};
use crate::control_link::{Command, DataEnd, Notice};
use crate::emulation::EmulatedBackendRate;
use crate::evtchn_backoff::SpuriousBackoff;
use crate::features::BoundChannels;
use crate::meter::VifCounters;
use crate::published::{InitialPolicy, VifBoard, VifSnapshot, WorkerMeters, CPU_PUBLISH_EVERY};
use crate::vif::{Poll, Vif, VifFatal, TX_BATCH};
use crate::vifconfig::RateCap;

type Mapping<P> = <<P as hypervisor::platform::Platform>::Grants as GrantMap>::Mapping;

/// One queue of a connection: its rings (a [`Vif`]) and event channel(s).
struct Queue<M> {
    vif: Vif<M>,
    /// The frontend's event channel(s) of this queue, bound.
    evtchn: BoundChannels,
}

struct Connection<M> {
    /// The vif's queues, queue 0 first (it holds the credit area and the vif's
    /// backstops, which the others charge: `Vif::queue`). Queue k moves frames between
    /// ring pair k and port k ([`Device::ports`]).
    queues: Vec<Queue<M>>,
    /// Connection sequence number (meters restart with each connection).
    created: u64,
}

impl<M: hypervisor::grant::GrantMapping> Connection<M> {
    /// Queue 0 (the credit area, the budgets).
    fn first(&self) -> &Vif<M> {
        &self.queues[0].vif
    }

    /// The counters of all its queues, summed.
    fn counters(&self) -> VifCounters {
        self.queues.iter().fold(VifCounters::default(), |mut t, q| {
            t += q.vif.counters();
            t
        })
    }

    /// The earliest time one of its queues wants to be polled.
    fn wake_at(&self) -> Option<u64> {
        self.queues.iter().filter_map(|q| q.vif.wake_at()).min()
    }
}

/// A port of a vif (one per queue) and its place in the worker's epoll.
struct PortSlot {
    port: Box<dyn Port>,
    /// Epoll key of the port's rx fd, and whether it is armed: only while frames can go
    /// somewhere — a connection whose guest has RX buffers — so that a level-triggered
    /// port does not spin the loop.
    key: u64,
    armed: bool,
}

impl PortSlot {
    /// Arms or disarms the port's rx fd in `epoll`.
    fn arm(&mut self, epoll: &Epoll, want: bool, id: VifId) {
        if want == self.armed {
            return;
        }
        match epoll.set(self.port.rx_fd(), self.key, want) {
            Ok(()) => self.armed = want,
            Err(e) => log::warn!("{id}: epoll: {e}"),
        }
    }
}

struct Device<M> {
    id: VifId,
    /// Its ports: queue 0's, opened at probe, then those of the other queues of the
    /// current connection (opened at connect, closed at disconnect).
    ports: Vec<PortSlot>,
    /// The toolstack's `rate`, as the control thread read it.
    rate: Option<RateCap>,
    conn: Option<Connection<M>>,
    /// Counters of earlier connections of this device (kept across reconnects).
    past: VifCounters,
    /// Where this vif is published for the manager.
    board: Arc<VifBoard>,
}

impl<M: hypervisor::grant::GrantMapping> Device<M> {
    /// Arms or disarms every port's rx fd in `epoll`.
    fn arm_ports(&mut self, epoll: &Epoll, want: bool) {
        for slot in &mut self.ports {
            slot.arm(epoll, want, self.id);
        }
    }

    /// Turns every port's carrier on or off.
    fn set_carrier(&mut self, on: bool) {
        for slot in &mut self.ports {
            if let Err(e) = slot.port.set_carrier(on) {
                log::warn!("{}: port carrier: {e}", self.id);
            }
        }
    }

    fn snapshot(&self) -> VifSnapshot {
        let c = self.conn.as_ref();
        VifSnapshot {
            created: c.map(|c| c.created),
            credits: c.is_some_and(|c| c.first().has_credits()),
            past: self.past,
            current: c.map(Connection::counters).unwrap_or_default(),
            front: c.and_then(|c| c.first().front_counters()),
            rate: self.rate,
        }
    }
}

/// Epoll key of the doorbell of the worker's command queue.
const EV_COMMANDS: u64 = 0;
const EV_EVTCHN: u64 = 1;
const EV_PORT_BASE: u64 = 2;

/// The longest a worker sleeps with nothing due: it re-reads netback's clock (an
/// injected clock may jump) and its stop flag this often.
pub(crate) const WORKER_TICK: Duration = Duration::from_millis(100);

/// What a worker shares with the rest of netback.
pub(crate) struct WorkerShared {
    /// Opens the vifs' ports (on `Add`, off the per-packet path).
    pub ports: Arc<Mutex<Box<dyn PortFactory + Send>>>,
    /// netback's clock.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Connection sequence numbers, unique across workers.
    pub next_created: Arc<AtomicU64>,
    /// The budget a connection starts with.
    pub initial: Arc<InitialPolicy>,
    /// Its loop counters and CPU time.
    pub meters: Arc<WorkerMeters>,
    /// Set (and the command bell rung) when netback stops.
    pub stop: Arc<AtomicBool>,
}

/// One data-path worker.
pub(crate) struct Worker<P: BackendPlatform> {
    platform: Arc<P>,
    /// This worker's own event-channel handle: the ports of its vifs fire here only.
    evtchn: P::Evtchn,
    cfg: NetbackConfig,
    shared: WorkerShared,
    devices: BTreeMap<VifId, Device<Mapping<P>>>,
    by_evtchn: HashMap<EvtPort, VifId>,
    epoll: Epoll,
    port_keys: HashMap<u64, VifId>,
    next_key: u64,
    pending: Vec<EvtPort>,
    /// The emulated backend packet rate ([`NetbackConfig::emulated_backend_pps`]), per
    /// worker.
    rate: Option<EmulatedBackendRate>,
    rr: usize,
    /// Vifs that still had work when `poll_vif` stopped after its round limit: they are
    /// polled again in the next iteration, which then does not sleep. (Their rings were
    /// not re-armed, so no notification would wake us for them.) Only vifs with work
    /// they can do: one waiting for the rest of a packet or for RX buffers sleeps until
    /// its event channel wakes it.
    busy: BTreeSet<VifId>,
    /// Vifs whose publication was skipped (the manager was reading): retried.
    unpublished: BTreeSet<VifId>,
    /// Ports kept masked a while after spurious events (event-channel storms).
    backoff: SpuriousBackoff,
    /// Scratch list of ports due to be unmasked.
    due_ports: Vec<EvtPort>,
    /// Its end of the command queue.
    link: DataEnd<Command>,
}

impl<P: BackendPlatform + Sync> Worker<P> {
    /// A worker with its own epoll and event-channel handle, serving `link`'s commands.
    pub(crate) fn new(
        platform: Arc<P>,
        cfg: NetbackConfig,
        shared: WorkerShared,
        link: DataEnd<Command>,
    ) -> io::Result<Self> {
        let evtchn = platform.evtchn().reopen().map_err(io::Error::other)?;
        let epoll = Epoll::new()?;
        epoll.add(&link.bell, EV_COMMANDS)?;
        epoll.add(evtchn.as_fd(), EV_EVTCHN)?;
        let rate = cfg
            .emulated_backend_pps
            .map(|pps| EmulatedBackendRate::new(pps, (shared.clock)()));
        Ok(Worker {
            platform,
            evtchn,
            cfg,
            shared,
            devices: BTreeMap::new(),
            by_evtchn: HashMap::new(),
            epoll,
            port_keys: HashMap::new(),
            next_key: EV_PORT_BASE,
            pending: vec![EvtPort(0); 64],
            rate,
            rr: 0,
            busy: BTreeSet::new(),
            unpublished: BTreeSet::new(),
            backoff: SpuriousBackoff::new(),
            due_ports: Vec::new(),
            link,
        })
    }

    /// The worker's loop, until netback stops.
    pub(crate) fn run(mut self) {
        while !self.shared.stop.load(Ordering::Acquire) {
            if let Err(e) = self.run_once(WORKER_TICK) {
                log::error!("netback worker: {e}");
                break;
            }
        }
        // The last word on every vif: what status shows from now on.
        for d in self.devices.values() {
            d.board.publish(&d.snapshot());
        }
        // Dropping the devices releases their rings, channels and ports (the interfaces
        // stay, for the next netback).
        self.shared.meters.publish_cpu();
    }

    fn now(&self) -> u64 {
        (self.shared.clock)()
    }

    /// Waits for events (at most `timeout`, less if a vif is held) and handles them.
    fn run_once(&mut self, timeout: Duration) -> io::Result<()> {
        let meters = self.shared.meters.clone();
        let it = meters.iterations.fetch_add(1, Ordering::Relaxed);
        let wait = self.wait(timeout);
        if wait > Duration::ZERO || it % CPU_PUBLISH_EVERY == 0 {
            meters.publish_cpu();
        }
        let mut events = [0u64; 32];
        let n = self.epoll.wait(&mut events, wait)?;
        if n == 0 && !wait.is_zero() {
            WorkerMeters::add(&meters.timeouts, 1);
        }
        for &key in &events[..n] {
            match key {
                EV_COMMANDS => self.take_commands(),
                EV_EVTCHN => self.handle_evtchn(),
                k => {
                    if let Some(&id) = self.port_keys.get(&k) {
                        self.poll_vif(id);
                    }
                }
            }
        }
        // Vifs cut short by the round limit last time (and not polled above since).
        for id in std::mem::take(&mut self.busy) {
            self.poll_vif(id);
        }
        self.poll_held();
        self.unmask_due(self.now());
        for id in std::mem::take(&mut self.unpublished) {
            self.publish(id);
        }
        Ok(())
    }

    /// How long the next wait may be: until the earliest held vif's or masked port's
    /// deadline, at most `timeout`; not at all when vifs are left with work or
    /// publications are owed (1 ms).
    fn wait(&self, timeout: Duration) -> Duration {
        if !self.busy.is_empty() {
            return Duration::ZERO;
        }
        let now = self.now();
        let until = |t: u64| Duration::from_nanos(t.saturating_sub(now));
        let wait = self
            .devices
            .values()
            .filter_map(|d| d.conn.as_ref()?.wake_at())
            .chain(self.backoff.next_due())
            .map(until)
            .fold(timeout, Duration::min);
        if self.unpublished.is_empty() {
            wait
        } else {
            wait.min(Duration::from_millis(1))
        }
    }

    /// Polls the held vifs whose deficit has accrued, and incomplete packets' timeouts.
    fn poll_held(&mut self) {
        let now = self.now();
        let due: Vec<VifId> = self
            .devices
            .values()
            .filter(|d| {
                d.conn
                    .as_ref()
                    .and_then(Connection::wake_at)
                    .is_some_and(|t| t <= now)
            })
            .map(|d| d.id)
            .collect();
        // Round robin over the held vifs: when they share a budget (the emulated backend
        // packet rate), the first one polled would otherwise take every refill.
        if !due.is_empty() {
            self.rr = self.rr.wrapping_add(1);
            let k = self.rr % due.len();
            for id in due[k..].iter().chain(&due[..k]) {
                self.poll_vif(*id);
            }
        }
    }

    /// Unmasks the ports whose spurious-event delay has passed, and polls their vifs:
    /// what the frontend published while its port was masked is taken now.
    fn unmask_due(&mut self, now: u64) {
        self.backoff.take_due(now, &mut self.due_ports);
        let due = std::mem::take(&mut self.due_ports);
        for &port in &due {
            if let Err(e) = self.evtchn.unmask(port) {
                log::debug!("netback: unmask {port}: {e}");
            }
            if let Some(&id) = self.by_evtchn.get(&port) {
                self.poll_vif(id);
            }
        }
        self.due_ports = due;
        self.due_ports.clear();
    }

    fn handle_evtchn(&mut self) {
        let n = match self.evtchn.pending(&mut self.pending) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("netback: event channel pending: {e}");
                return;
            }
        };
        WorkerMeters::add(&self.shared.meters.events, n as u64);
        for i in 0..n {
            let port = self.pending[i];
            if let Some(&id) = self.by_evtchn.get(&port) {
                let worked = self.poll_vif_counted(id) > 0;
                let producers = self.peer_producers(id);
                let now = self.now();
                if let Some(at) = self.backoff.after_event(port, producers, worked, now) {
                    log::debug!("{id}: spurious events: port masked until {at}");
                    continue;
                }
            }
            if let Err(e) = self.evtchn.unmask(port) {
                log::debug!("netback: unmask {port}: {e}");
            }
            // Work that raced with the unmask is caught by the final checks in poll_vif.
        }
    }

    /// The frontend's request producers (TX, RX) of vif `id`, as its pages hold them
    /// (summed over its queues: a hint that any of them moved).
    fn peer_producers(&self, id: VifId) -> (u32, u32) {
        let Some(c) = self.devices.get(&id).and_then(|d| d.conn.as_ref()) else {
            return (0, 0);
        };
        c.queues.iter().fold((0, 0), |(t, r), q| {
            let (qt, qr) = q.vif.peer_producers();
            (t.wrapping_add(qt), r.wrapping_add(qr))
        })
    }

    /// Polls one vif's TX and RX, every queue of it, until it has no more work this
    /// round.
    fn poll_vif(&mut self, id: VifId) {
        self.poll_vif_counted(id);
    }

    /// [`Self::poll_vif`]; returns the packets taken (TX chains and RX frames).
    fn poll_vif_counted(&mut self, id: VifId) -> usize {
        let Some(dev) = self.devices.get_mut(&id) else {
            return 0;
        };
        let Some(conn) = dev.conn.as_mut() else {
            return 0;
        };
        WorkerMeters::add(&self.shared.meters.vif_polls, 1);
        let grants = self.platform.grants();
        let evtchn = &self.evtchn;
        let clock = &self.shared.clock;
        let meters = &self.shared.meters;
        let mut rounds = 0;
        let mut packets = 0;
        // Ok(true): stopped at the round limit with work left.
        let ports = &mut dev.ports;
        let several = conn.queues.len() > 1;
        // The failing queue's number is in the reason when the vif has several.
        let mut at = 0;
        let result: Result<bool, VifFatal> = (|| loop {
            rounds += 1;
            let mut more = false;
            for (k, (q, slot)) in conn.queues.iter_mut().zip(ports.iter_mut()).enumerate() {
                at = k;
                let now = clock();
                let port = slot.port.as_mut();
                let tx: Poll = match self.rate.as_mut() {
                    Some(rate) => rate.tx_poll(&mut q.vif, &**clock, grants, port)?,
                    None => q.vif.tx_poll(&**clock, grants, port, TX_BATCH)?,
                };
                let rx: Poll = q.vif.rx_poll(now, grants, slot.port.as_mut())?;
                packets += tx.packets + rx.packets;
                WorkerMeters::add(&meters.notifies, q.evtchn.count(tx.notify, rx.notify));
                q.evtchn.notify(evtchn, id, tx.notify, rx.notify);
                more |= tx.more || rx.more;
            }
            if !more {
                return Ok(false);
            }
            if rounds >= 64 {
                return Ok(true);
            }
        })();
        let more = match result {
            Ok(more) => more,
            Err(why) => {
                let why = if several {
                    format!("queue {at}: {why}")
                } else {
                    why.to_string()
                };
                log::warn!("{id}: disconnecting the frontend: {why}");
                self.fail_device(id, &why);
                return packets;
            }
        };
        if more {
            self.busy.insert(id);
        } else {
            self.busy.remove(&id);
        }
        // Listen to a queue's port only while its frames can go somewhere.
        for (q, slot) in conn.queues.iter().zip(dev.ports.iter_mut()) {
            slot.arm(&self.epoll, !q.vif.rx_starved(), id);
        }
        if !dev.board.try_publish(&dev.snapshot()) {
            self.unpublished.insert(id);
        }
        packets
    }

    /// Publishes vif `id` (waiting for the manager if it is reading).
    fn publish(&self, id: VifId) {
        if let Some(d) = self.devices.get(&id) {
            d.board.publish(&d.snapshot());
        }
    }

    /// Releases vif `id`'s connection (rings, event channels, grant-copy mappings of a
    /// domain left without a connected vif); the device stays, waiting for a frontend.
    fn disconnect(&mut self, id: VifId) {
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        // Without a connection the port's frames have nowhere to go: a level-triggered
        // port left armed would wake the loop for them without end.
        d.arm_ports(&self.epoll, false);
        self.busy.remove(&id);
        if let Some(conn) = d.conn.take() {
            // No guest behind the interface: no carrier (on again at the next connect).
            d.set_carrier(false);
            d.past += conn.counters();
            for q in conn.queues {
                for p in q.evtchn.ports() {
                    self.by_evtchn.remove(&p);
                    self.backoff.forget(p);
                }
                q.evtchn.unbind(&self.evtchn, id);
                // Dropping the mappings unmaps the rings.
                drop(q.vif.into_mappings());
            }
            // The other queues' ports were the connection's.
            for slot in d.ports.drain(1..) {
                let _ = self.epoll.del(slot.port.rx_fd());
                self.port_keys.remove(&slot.key);
            }
            log::info!("{id}: disconnected");
        }
        self.publish(id);
        self.forget_unconnected_peer(id.domid);
    }

    /// Releases what the grant copies keep of `domid` once none of its vifs is connected
    /// (its domain died or its last vif closed): a guest cannot leave mappings behind.
    /// (A vif of that domain on another worker then maps again what it copies next.)
    fn forget_unconnected_peer(&self, domid: DomId) {
        let connected = self
            .devices
            .values()
            .any(|d| d.id.domid == domid && d.conn.is_some());
        if !connected {
            self.platform.grants().forget_peer(domid);
        }
    }

    /// Disconnects a frontend that broke the protocol on its rings: releases them here
    /// and tells the control thread, which writes the reason in the backend's `error`
    /// node, then `Closing` (xenbus_dev_fatal).
    fn fail_device(&mut self, id: VifId, why: &str) {
        let created = self
            .devices
            .get(&id)
            .and_then(|d| d.conn.as_ref())
            .map(|c| c.created);
        self.disconnect(id);
        if let Some(created) = created {
            self.link.notify(Notice::Failed {
                id,
                created,
                reason: why.to_string(),
            });
        }
    }

    /// Applies a TX budget to vif `id`'s connection (`created`, if given, must be the
    /// current one). Returns whether it was applied.
    fn set_tx_budget(&mut self, id: VifId, created: Option<u64>, c: &Credits) -> bool {
        let now = self.now();
        match self.devices.get_mut(&id).and_then(|d| d.conn.as_mut()) {
            Some(conn) if created.is_none_or(|k| k == conn.created) => {
                // Queue 0 publishes it and sets the backstop all the queues charge.
                conn.queues[0].vif.set_tx_budget(c, now);
                true
            }
            _ => false,
        }
    }

    /// Applies an RX budget to vif `id`'s connection `created` (ignored for another one).
    fn set_rx_budget(&mut self, id: VifId, created: u64, c: &Credits) {
        let now = self.now();
        if let Some(conn) = self.devices.get_mut(&id).and_then(|d| d.conn.as_mut()) {
            if conn.created == created {
                conn.queues[0].vif.set_rx_budget(c, now);
            }
        }
    }
}
