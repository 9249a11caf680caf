//! A netback data-path worker: one thread, one epoll, its own event-channel handle,
//! and the vifs placed on it (each with its queue 0), plus the queues k ≥ 1 of any vif
//! placed on it ([`crate::router`] spreads a vif's queues over the workers), driven
//! with local work only (grant maps and copies, event-channel binds, ports). netback
//! runs [`NetbackConfig::workers`] of them; the control thread places each vif on the
//! least-loaded one for the vif's life and sends its commands there
//! ([`crate::control_link`]). A worker never waits for xenstore, for the manager or
//! for another worker: what the rest of netback needs to know it publishes
//! ([`crate::published`]). An event polls the one queue it is for.
//!
//! A frontend that breaks the protocol on its rings is disconnected here with one log
//! line that says why, and the control thread writes the reason to its `error` node
//! (and has the other workers release the vif's other queues); only that vif is
//! affected.

mod commands;
mod lanes;
mod own_ports;

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
use crate::published::{
    InitialPolicy, QueueBoard, VifBoard, VifSnapshot, WorkerMeters, CPU_PUBLISH_EVERY,
};
use crate::vif::{Vif, VifFatal, TX_BATCH};
use crate::vifconfig::RateCap;

type Mapping<P> = <<P as hypervisor::platform::Platform>::Grants as GrantMap>::Mapping;

/// A queue of a vif: the vif and the queue's number (0: the one with the credit area).
type QueueId = (VifId, u32);

/// One queue of a connection: its rings (a [`Vif`]) and event channel(s).
struct Queue<M> {
    vif: Vif<M>,
    /// The frontend's event channel(s) of this queue, bound.
    evtchn: BoundChannels,
}

/// A vif's connection as its worker holds it: queue 0 (the credit area, and the
/// vif's backstops, which its other queues charge: `Vif::queue`).
struct Connection<M> {
    queue: Queue<M>,
    /// Connection sequence number (meters restart with each connection).
    created: u64,
    /// The frontend set up several queues (a failure names queue 0 then).
    several: bool,
}

/// Queue k ≥ 1 of a vif, served by this worker (which may not be the vif's):
/// its rings, its port (queue k of the vif's interface), its board.
struct Lane<M> {
    queue: Queue<M>,
    port: PortSlot,
    /// The connection it is part of.
    created: u64,
    board: Arc<QueueBoard>,
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

    /// Turns the port's carrier on or off.
    fn set_carrier(&mut self, on: bool, id: VifId) {
        if let Err(e) = self.port.set_carrier(on) {
            log::warn!("{id}: port carrier: {e}");
        }
    }
}

struct Device<M> {
    id: VifId,
    /// Queue 0's port, opened at probe (the ports of the other queues are their
    /// [`Lane`]s', opened at connect, closed at disconnect).
    port: PortSlot,
    /// The toolstack's `rate`, as the control thread read it.
    rate: Option<RateCap>,
    conn: Option<Connection<M>>,
    /// Counters of earlier connections of queue 0 (kept across reconnects).
    past: VifCounters,
    /// Where this vif is published for the manager.
    board: Arc<VifBoard>,
}

impl<M: hypervisor::grant::GrantMapping> Device<M> {
    fn snapshot(&self) -> VifSnapshot {
        let c = self.conn.as_ref();
        VifSnapshot {
            created: c.map(|c| c.created),
            credits: c.is_some_and(|c| c.queue.vif.has_credits()),
            past: self.past,
            current: c.map(|c| c.queue.vif.counters()).unwrap_or_default(),
            front: c.and_then(|c| c.queue.vif.front_counters()),
            rate: self.rate,
        }
    }
}

/// What a poll of one queue needs besides the queue.
struct PollCx<'a, G: ?Sized, E: ?Sized> {
    id: VifId,
    grants: &'a G,
    evtchn: &'a E,
    clock: &'a dyn Fn() -> u64,
    meters: &'a WorkerMeters,
    rate: Option<&'a mut EmulatedBackendRate>,
}

/// Polls one queue's TX and RX until it has no more work or 64 rounds passed:
/// the packets taken, and `Ok(true)` when it stopped at the round limit with work left.
fn drive<M, G, E>(
    q: &mut Queue<M>,
    slot: &mut PortSlot,
    cx: &mut PollCx<'_, G, E>,
) -> (usize, Result<bool, VifFatal>)
where
    M: hypervisor::grant::GrantMapping,
    G: GrantCopy + ?Sized,
    E: EventChannels + ?Sized,
{
    let mut packets = 0;
    for _ in 0..64 {
        let now = (cx.clock)();
        let port = slot.port.as_mut();
        let tx = match cx.rate.as_deref_mut() {
            Some(rate) => rate.tx_poll(&mut q.vif, cx.clock, cx.grants, port),
            None => q.vif.tx_poll(cx.clock, cx.grants, port, TX_BATCH),
        };
        let rx = tx.and_then(|tx| Ok((tx, q.vif.rx_poll(now, cx.grants, port)?)));
        let (tx, rx) = match rx {
            Ok(p) => p,
            Err(e) => return (packets, Err(e)),
        };
        packets += tx.packets + rx.packets;
        WorkerMeters::add(&cx.meters.notifies, q.evtchn.count(tx.notify, rx.notify));
        q.evtchn.notify(cx.evtchn, cx.id, tx.notify, rx.notify);
        if !(tx.more || rx.more) {
            return (packets, Ok(false));
        }
    }
    (packets, Ok(true))
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
    /// Queues k ≥ 1 (of its vifs or others') it serves.
    lanes: BTreeMap<QueueId, Lane<Mapping<P>>>,
    by_evtchn: HashMap<EvtPort, QueueId>,
    epoll: Epoll,
    port_keys: HashMap<u64, QueueId>,
    next_key: u64,
    pending: Vec<EvtPort>,
    /// The emulated backend packet rate ([`NetbackConfig::emulated_backend_pps`]), per
    /// worker.
    rate: Option<EmulatedBackendRate>,
    rr: usize,
    /// Queues that still had work when `poll_queue` stopped after its round limit: they
    /// are polled again in the next iteration, which then does not sleep. (Their rings
    /// were not re-armed, so no notification would wake us for them.) Only queues with
    /// work they can do: one waiting for the rest of a packet or for RX buffers sleeps
    /// until its event channel wakes it.
    busy: BTreeSet<QueueId>,
    /// Queues whose publication was skipped (the manager was reading): retried.
    unpublished: BTreeSet<QueueId>,
    /// Ports kept masked a while after spurious events (event-channel storms).
    backoff: SpuriousBackoff,
    /// Scratch list of ports due to be unmasked.
    due_ports: Vec<EvtPort>,
    /// When the vifs' shaping counters are next published (every [`WORKER_TICK`]).
    shaped_due: u64,
    /// Its end of the command queue.
    link: DataEnd<Command>,
    /// Ports polled in `epoll` under keys of their own (a fd per port: `local`).
    own_ports: own_ports::OwnPorts,
    /// It worked since it last published its CPU time.
    cpu_unpublished: bool,
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
            lanes: BTreeMap::new(),
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
            shaped_due: 0,
            link,
            own_ports: own_ports::OwnPorts::default(),
            cpu_unpublished: true,
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
        for l in self.lanes.values() {
            l.board.end(l.queue.vif.counters());
        }
        // Dropping the devices releases their rings, channels and ports (the interfaces
        // stay, for the next netback).
        self.shared.meters.publish_cpu();
    }

    fn now(&self) -> u64 {
        (self.shared.clock)()
    }

    /// Publishes the thread's CPU time (a system call: every [`CPU_PUBLISH_EVERY`]
    /// iterations and after a wait that ended with nothing to do, when it worked since
    /// the last time).
    fn publish_cpu(&mut self) {
        self.shared.meters.publish_cpu();
        self.cpu_unpublished = false;
    }

    /// Waits for events (at most `timeout`, less if a vif is held) and handles them.
    fn run_once(&mut self, timeout: Duration) -> io::Result<()> {
        let meters = self.shared.meters.clone();
        let it = meters.iterations.fetch_add(1, Ordering::Relaxed);
        let wait = self.wait(timeout);
        if it % CPU_PUBLISH_EVERY == 0 && self.cpu_unpublished {
            self.publish_cpu();
        }
        let mut events = [0u64; 32];
        let n = self.epoll.wait(&mut events, wait)?;
        if n == 0 && !wait.is_zero() {
            WorkerMeters::add(&meters.timeouts, 1);
            // A whole wait with nothing to do: what it worked before is published now
            // (once: an idle worker does not read its clock at every tick).
            if self.cpu_unpublished {
                self.publish_cpu();
            }
        }
        let polls = WorkerMeters::load(&meters.vif_polls);
        for &key in &events[..n] {
            match key {
                EV_COMMANDS => self.take_commands(),
                EV_EVTCHN => self.handle_evtchn(),
                k => {
                    if let Some(&q) = self.port_keys.get(&k) {
                        self.poll_queue(q);
                    } else if let Some(p) = self.own_ports.port_of(k) {
                        self.own_port_fired(p);
                    }
                }
            }
        }
        // Queues cut short by the round limit last time (and not polled above since).
        for q in std::mem::take(&mut self.busy) {
            self.poll_queue(q);
        }
        self.poll_held();
        let now = self.now();
        self.unmask_due(now);
        self.publish_shaped_due(now);
        for q in std::mem::take(&mut self.unpublished) {
            self.try_publish(q);
        }
        self.cpu_unpublished |= n > 0 || WorkerMeters::load(&meters.vif_polls) != polls;
        Ok(())
    }

    /// Every [`WORKER_TICK`], each connection's first queue publishes its vif's shaping
    /// counters: the vif's other queues shape frames on their own workers without
    /// polling it (a flood into one queue of a multi-queue guest is shaped there).
    fn publish_shaped_due(&mut self, now: u64) {
        if now < self.shaped_due {
            return;
        }
        self.shaped_due = now + WORKER_TICK.as_nanos() as u64;
        for c in self.devices.values_mut().filter_map(|d| d.conn.as_mut()) {
            c.queue.vif.publish_shaped();
        }
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
            .queues()
            .filter_map(|(_, q)| q.vif.wake_at())
            .chain(self.backoff.next_due())
            .map(until)
            .fold(timeout, Duration::min);
        if self.unpublished.is_empty() {
            wait
        } else {
            wait.min(Duration::from_millis(1))
        }
    }

    /// Every connected queue it serves.
    fn queues(&self) -> impl Iterator<Item = (QueueId, &Queue<Mapping<P>>)> {
        let zeros = self
            .devices
            .values()
            .filter_map(|d| Some(((d.id, 0), &d.conn.as_ref()?.queue)));
        zeros.chain(self.lanes.iter().map(|(k, l)| (*k, &l.queue)))
    }

    /// Polls the held queues whose deficit has accrued, and incomplete packets' timeouts.
    fn poll_held(&mut self) {
        let now = self.now();
        let due: Vec<QueueId> = self
            .queues()
            .filter(|(_, q)| q.vif.wake_at().is_some_and(|t| t <= now))
            .map(|(k, _)| k)
            .collect();
        // Round robin over the held queues: when they share a budget (the emulated
        // backend packet rate), the first one polled would otherwise take every refill.
        if !due.is_empty() {
            self.rr = self.rr.wrapping_add(1);
            let k = self.rr % due.len();
            for q in due[k..].iter().chain(&due[..k]) {
                self.poll_queue(*q);
            }
        }
    }

    /// Unmasks the ports whose spurious-event delay has passed, and polls their queues:
    /// what the frontend published while its port was masked is taken now.
    fn unmask_due(&mut self, now: u64) {
        self.backoff.take_due(now, &mut self.due_ports);
        let due = std::mem::take(&mut self.due_ports);
        for &port in &due {
            self.unmask_port(port);
            if let Some(&q) = self.by_evtchn.get(&port) {
                self.poll_queue(q);
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
            self.port_fired(self.pending[i]);
        }
    }

    /// A port polled in the worker's epoll is readable: takes its notification (one
    /// `read`) and handles it as one `pending` reported.
    fn own_port_fired(&mut self, port: EvtPort) {
        match self.evtchn.ack(port) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log::warn!("netback: event channel {port}: {e}");
                return;
            }
        }
        WorkerMeters::add(&self.shared.meters.events, 1);
        self.port_fired(port);
    }

    /// Port `port` fired (and is masked): polls its queue, then unmasks it — unless it
    /// keeps firing without work (then it stays masked a while: [`SpuriousBackoff`]).
    fn port_fired(&mut self, port: EvtPort) {
        if let Some(&q) = self.by_evtchn.get(&port) {
            let worked = self.poll_queue_counted(q) > 0;
            let producers = self.peer_producers(q);
            let now = self.now();
            if let Some(at) = self.backoff.after_event(port, producers, worked, now) {
                log::debug!(
                    "{}: queue {}: spurious events: port masked until {at}",
                    q.0,
                    q.1
                );
                self.own_ports.set_polled(&self.epoll, port, false);
                return;
            }
        }
        // Work that raced with the unmask is caught by the final checks in the poll.
        self.unmask_port(port);
    }

    /// Unmasks `port`: through the handle, or by polling its own fd again.
    fn unmask_port(&mut self, port: EvtPort) {
        if self.own_ports.contains(port) {
            self.own_ports.set_polled(&self.epoll, port, true);
        } else if let Err(e) = self.evtchn.unmask(port) {
            log::debug!("netback: unmask {port}: {e}");
        }
    }

    /// The frontend's request producers (TX, RX) of queue `q`, as its pages hold them
    /// (a hint that it moved).
    fn peer_producers(&self, q: QueueId) -> (u32, u32) {
        self.queue(q).map_or((0, 0), |q| q.vif.peer_producers())
    }

    /// Connected queue `q`, if it is served here.
    fn queue(&self, q: QueueId) -> Option<&Queue<Mapping<P>>> {
        match q.1 {
            0 => Some(&self.devices.get(&q.0)?.conn.as_ref()?.queue),
            _ => Some(&self.lanes.get(&q)?.queue),
        }
    }

    /// Polls one queue's TX and RX until it has no more work this round.
    fn poll_queue(&mut self, q: QueueId) {
        self.poll_queue_counted(q);
    }

    /// [`Self::poll_queue`]; returns the packets taken (TX chains and RX frames).
    fn poll_queue_counted(&mut self, q: QueueId) -> usize {
        let (queue, slot, several) = match q.1 {
            0 => match self.devices.get_mut(&q.0) {
                Some(Device {
                    conn: Some(c),
                    port,
                    ..
                }) => (&mut c.queue, port, c.several),
                _ => return 0,
            },
            _ => match self.lanes.get_mut(&q) {
                Some(l) => (&mut l.queue, &mut l.port, true),
                None => return 0,
            },
        };
        WorkerMeters::add(&self.shared.meters.vif_polls, 1);
        let mut cx = PollCx {
            id: q.0,
            grants: self.platform.grants(),
            evtchn: &self.evtchn,
            clock: &*self.shared.clock,
            meters: &self.shared.meters,
            rate: self.rate.as_mut(),
        };
        let (packets, result) = drive(queue, slot, &mut cx);
        let more = match result {
            Ok(more) => more,
            Err(why) => {
                // The failing queue's number is in the reason when the vif has several.
                let why = if several {
                    format!("queue {}: {why}", q.1)
                } else {
                    why.to_string()
                };
                log::warn!("{}: disconnecting the frontend: {why}", q.0);
                match q.1 {
                    0 => self.fail_device(q.0, &why),
                    _ => self.fail_lane(q, &why),
                }
                return packets;
            }
        };
        // Listen to the queue's port only while its frames can go somewhere.
        slot.arm(&self.epoll, !queue.vif.rx_starved(), q.0);
        if more {
            self.busy.insert(q);
        } else {
            self.busy.remove(&q);
        }
        self.try_publish(q);
        packets
    }

    /// Publishes queue `q` unless the manager is reading (then later).
    fn try_publish(&mut self, q: QueueId) {
        let done = match q.1 {
            0 => self
                .devices
                .get(&q.0)
                .is_none_or(|d| d.board.try_publish(&d.snapshot())),
            _ => self
                .lanes
                .get(&q)
                .is_none_or(|l| l.board.try_publish(l.queue.vif.counters())),
        };
        if !done {
            self.unpublished.insert(q);
        }
    }

    /// Publishes vif `id` (waiting for the manager if it is reading).
    fn publish(&self, id: VifId) {
        if let Some(d) = self.devices.get(&id) {
            d.board.publish(&d.snapshot());
        }
    }

    /// Releases vif `id`'s connection (queue 0's rings and event channels, grant-copy
    /// mappings of a domain left without a connected queue here); the device stays,
    /// waiting for a frontend.
    fn disconnect(&mut self, id: VifId) {
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        // Without a connection the port's frames have nowhere to go: a level-triggered
        // port left armed would wake the loop for them without end.
        d.port.arm(&self.epoll, false, id);
        self.busy.remove(&(id, 0));
        if let Some(conn) = d.conn.take() {
            // No guest behind the interface: no carrier (on again at the next connect).
            d.port.set_carrier(false, id);
            d.past += conn.queue.vif.counters();
            self.release(id, conn.queue);
            log::info!("{id}: disconnected");
        }
        self.publish(id);
        self.forget_unconnected_peer(id.domid);
    }

    /// Unbinds and unmaps a queue.
    fn release(&mut self, id: VifId, q: Queue<Mapping<P>>) {
        for p in q.evtchn.ports() {
            self.by_evtchn.remove(&p);
            self.backoff.forget(p);
        }
        self.unwatch_ports(&q.evtchn);
        q.evtchn.unbind(&self.evtchn, id);
        // Dropping the mappings unmaps the rings.
        drop(q.vif.into_mappings());
    }

    /// Releases what the grant copies keep of `domid` once none of its queues here is
    /// connected (its domain died or its last vif closed): a guest cannot leave mappings
    /// behind. (A queue of that domain on another worker then maps again what it copies
    /// next.)
    fn forget_unconnected_peer(&self, domid: DomId) {
        let connected = self.queues().any(|((id, _), _)| id.domid == domid);
        if !connected {
            self.platform.grants().forget_peer(domid);
        }
    }

    /// Disconnects a frontend that broke the protocol on queue 0's rings: releases them
    /// here and tells the control thread, which has the other workers release the other
    /// queues and writes the reason in the backend's `error` node, then `Closing`
    /// (xenbus_dev_fatal).
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
                // Queue 0 publishes it and sets the backstop all the queues charge,
                // whichever worker serves them (shared, lock-free).
                conn.queue.vif.set_tx_budget(c, now);
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
                conn.queue.vif.set_rx_budget(c, now);
            }
        }
    }
}
