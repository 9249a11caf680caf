//! The netback daemon: its threads, and the part that runs on the caller's thread.
//!
//! [`Netback::new`] starts the **control thread** ([`crate::control_thread`]: the
//! xenbus backend state machine, every xenstore round trip) and prepares
//! [`NetbackConfig::workers`] **data-path workers** ([`crate::worker`]: each one
//! thread, one epoll, its own event-channel handle, the vifs placed on it; started by
//! the first [`Netback::run_once`]). The thread that runs [`Netback::run_once`] is the
//! **manager**: it runs the DBA-VM allocator (it reads the meters the workers publish
//! and sends each worker its vifs' budgets as commands) and keeps what
//! [`Netback::status`] shows. No thread on the data path waits for xenstore, for the
//! allocator or for another worker.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::TryRecvError;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hypervisor::platform::BackendPlatform;
use hypervisor::poll::Epoll;
use hypervisor::xenbus::XenbusState;
use shared_ring::credit::Credits;
use xen_ids::VifId;
use xenstore::{ShareConnection, Xenstore, XsError};

use crate::control::{credits_of, reading, rx_reading, Allocation, RxDatapath};
use crate::control_link::{self, Command, ControlEnd, DataEnd, Doorbell, ManagerCommand, Notices};
use crate::control_thread::{self, ControlSetup, TOKEN_BACKEND, TOKEN_RELEASE};
use crate::control_work::ControlStats;
use crate::meter::VifCounters;
use crate::published::{InitialPolicy, VifBoard, WorkerMeters};
use crate::router::Router;
use crate::vifconfig::RateCap;
use crate::worker::{Worker, WorkerShared};

pub use crate::config::{NetbackConfig, PortFactory, DEFAULT_GUEST_MAC};

pub use hypervisor::clock::Clock;

pub use hypervisor::clock::monotonic_ns;

/// What netback's data-path workers did since they started, all workers together:
/// counts that show whether they sleep when there is nothing to do (a loop that spins
/// shows here, whatever the machine's speed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Iterations of the workers' event loops.
    pub iterations: u64,
    /// Polls of a connected vif's rings and port.
    pub vif_polls: u64,
    /// Waits that ended at their timeout with nothing ready.
    pub timeouts: u64,
    /// Event-channel ports found pending (each fired port counts once).
    pub events: u64,
    /// Notifications sent to frontends (one per ring's channel that asked for it).
    pub notifies: u64,
}

/// Why netback's event loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Waiting for events failed.
    #[error("event loop: {0}")]
    Poll(#[from] io::Error),
    /// The xenstore connection is gone: netback can no longer follow any frontend or
    /// the toolstack. It stops (rather than spin on a dead connection); its supervisor
    /// restarts it, and the new netback takes the connected frontends' rings over.
    #[error(
        "xenstore connection lost: {0}; exiting so that a restarted netback takes the vifs over"
    )]
    XenstoreLost(#[source] XsError),
    /// The control thread is gone (it panicked): nobody follows the frontends.
    #[error("netback's control thread stopped")]
    ControlStopped,
    /// A data-path worker is gone (it panicked): its vifs are not served.
    #[error("netback's data-path worker {0} stopped")]
    WorkerStopped(usize),
}

/// Snapshot of one vif for meters, the allocator and operators.
#[derive(Debug, Clone)]
pub struct VifStatus {
    /// The vif.
    pub id: VifId,
    /// Backend xenbus state.
    pub state: XenbusState,
    /// Whether the rings are connected.
    pub connected: bool,
    /// Whether the frontend negotiated credits.
    pub credits: bool,
    /// Counters, cumulated over reconnections.
    pub counters: VifCounters,
    /// The allocator's budget in force, if the allocator runs.
    pub budget: Option<allocator::Budget>,
    /// The allocator's RX budget in force, when something limits what the vif receives
    /// (`None`: unlimited, or the allocator does not run).
    pub rx_budget: Option<allocator::Budget>,
    /// Frames the frontend says it dropped for lack of tokens, in the current connection
    /// (from its credit area). An **untrusted hint** written by the guest: for operators'
    /// eyes only, never for accounting or policing. `None` when not published.
    pub front_dropped_packets: Option<u64>,
    /// The toolstack's static TX cap (the backend's `rate` key) in force, if any.
    pub rate: Option<RateCap>,
    /// Each queue the vif has had (queue 0 first, listed from the vif's placement on a
    /// worker), with its worker and counters; their counters sum to `counters`.
    pub queues: Vec<crate::QueueStatus>,
}

/// Epoll key of the doorbell the control thread rings with commands.
const EV_COMMANDS: u64 = 0;

/// A vif as the manager knows it.
struct ManagedVif {
    /// The backend's xenbus state, as the control thread wrote it.
    state: XenbusState,
    /// What its worker publishes.
    board: Arc<VifBoard>,
}

/// The data-path workers, as the manager sees them.
struct Workers<P: BackendPlatform> {
    /// Their command queues (for budgets).
    queues: Vec<ControlEnd<Command>>,
    meters: Vec<Arc<WorkerMeters>>,
    /// Built by [`Netback::new`], started by the first [`Netback::run_once`].
    unstarted: Vec<Worker<P>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// The netback daemon.
pub struct Netback<P: BackendPlatform> {
    platform: Arc<P>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    vifs: BTreeMap<VifId, ManagedVif>,
    epoll: Epoll,
    alloc: Option<Allocation>,
    /// The SLAs a new connection's first budget comes from (shared with the workers).
    initial: Arc<InitialPolicy>,
    /// The vifs' `dba-*` keys as the control thread last read them (`KEYS` order).
    sla_keys: BTreeMap<VifId, Vec<Option<String>>>,
    /// This thread's end of the link from the control thread (`None` once stopping).
    link: Option<DataEnd<ManagerCommand>>,
    workers: Workers<P>,
    /// The control thread, its stop flag and bell.
    control: Option<JoinHandle<()>>,
    control_stop: Arc<AtomicBool>,
    control_bell: Doorbell,
    /// What the control thread's xenstore work cost so far (it publishes it here).
    control_stats: Arc<Mutex<ControlStats>>,
}

/// The allocator's view of netback's vifs for one round: the meters the workers
/// published, and their queues for the budgets.
struct Dp<'a> {
    vifs: &'a BTreeMap<VifId, ManagedVif>,
    queues: &'a [ControlEnd<Command>],
    period: Duration,
}

impl allocator::Datapath for Dp<'_> {
    type Error = std::convert::Infallible;

    fn read_meters(&mut self, out: &mut Vec<allocator::VifReading>) -> Result<(), Self::Error> {
        for (id, v) in self.vifs {
            let s = v.board.read();
            if let Some(created) = s.created {
                out.push(reading(
                    *id,
                    created,
                    s.current.tx_wire_bytes,
                    s.current.tx_wire_packets,
                    s.front,
                ));
            }
        }
        Ok(())
    }

    fn write_budgets(&mut self, budgets: &[(VifId, allocator::Budget)]) -> Result<(), Self::Error> {
        for (id, b) in budgets {
            let Some(v) = self.vifs.get(id) else {
                continue;
            };
            let Some(created) = v.board.read().created else {
                continue;
            };
            // A worker whose queue is full gets this vif's budget at the next round.
            self.queues[v.board.worker].try_send(Command::Budget {
                id: *id,
                created,
                credits: credits_of(b, self.period),
            });
        }
        Ok(())
    }
}

impl RxDatapath for Dp<'_> {
    fn read_rx_meters(&mut self, out: &mut Vec<allocator::VifReading>) {
        for (id, v) in self.vifs {
            let s = v.board.read();
            if let Some(created) = s.created {
                let k = &s.current;
                out.push(rx_reading(
                    *id,
                    created,
                    (k.rx_wire_bytes, k.rx_wire_packets),
                    (k.rx_police_wire_bytes, k.rx_police_wire_packets),
                ));
            }
        }
    }

    fn write_rx_budgets(&mut self, budgets: &[(VifId, Option<Credits>)]) {
        for (id, b) in budgets {
            let Some(v) = self.vifs.get(id) else {
                continue;
            };
            let Some(created) = v.board.read().created else {
                continue;
            };
            // A worker whose queue is full gets this vif's budget at the next round.
            self.queues[v.board.worker].try_send(Command::RxBudget {
                id: *id,
                created,
                credits: b.unwrap_or(crate::control::UNLIMITED),
            });
        }
    }
}

impl<P: BackendPlatform + Sync> Netback<P>
where
    P::Xenstore: ShareConnection,
{
    /// Starts serving the backend directory of `platform`'s domain: sets the watches,
    /// starts the control thread (on a handle of the platform's xenstore connection),
    /// which finds the devices already there, and prepares the data-path workers (they
    /// start at the first [`Netback::run_once`]).
    pub fn new(
        platform: P,
        cfg: NetbackConfig,
        ports: Box<dyn PortFactory + Send>,
        clock: Clock,
    ) -> io::Result<Self> {
        let root = format!(
            "/local/domain/{}/backend/{}",
            platform.domid().0,
            cfg.backend_type
        );
        let xs = platform.xenstore();
        // Only which watch fired matters (the work re-reads what it names): a guest
        // writing its nodes in a loop must not grow the event queue.
        if !xs.set_coalescing(true) {
            log::warn!("netback: this xenstore connection does not coalesce watch events");
        }
        xs.watch(&root, TOKEN_BACKEND)
            .map_err(|e| io::Error::other(format!("watch {root}: {e}")))?;
        // A frontend domain that dies without closing its device (crash, kill -9) is
        // noticed here, not only when the toolstack removes the device.
        if let Err(e) = xs.watch("@releaseDomain", TOKEN_RELEASE) {
            log::warn!("watch @releaseDomain: {e}; dead frontends are noticed only when their devices are removed");
        }
        let ctl_xs = xs.share()?;
        let platform = Arc::new(platform);
        let clock: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::from(clock);
        let notices = Notices::new()?;
        let (to_manager, manager_end) = control_link::link(&notices)?;
        let initial = Arc::new(InitialPolicy::default());
        let (workers, to_workers) =
            Workers::new(&platform, &cfg, ports, &clock, &initial, &notices)?;
        let epoll = Epoll::new()?;
        epoll.add(&manager_end.bell, EV_COMMANDS)?;
        let control_stop = Arc::new(AtomicBool::new(false));
        let control_bell = Doorbell::new()?;
        let control_stats = Arc::new(Mutex::new(ControlStats::default()));
        let control = control_thread::spawn(ControlSetup {
            xs: ctl_xs,
            root,
            credits: cfg.credits,
            max_queues: cfg.offered_queues(),
            credit_version: cfg
                .credit_version
                .clamp(1, shared_ring::credit::CREDIT_VERSION),
            clock: clock.clone(),
            link: Router::new(to_manager, to_workers, notices),
            stats: control_stats.clone(),
            stop: control_stop.clone(),
            stop_bell: control_bell.clone(),
        })?;
        Ok(Netback {
            platform,
            clock,
            vifs: BTreeMap::new(),
            epoll,
            alloc: None,
            initial,
            sla_keys: BTreeMap::new(),
            link: Some(manager_end),
            workers,
            control: Some(control),
            control_stop,
            control_bell,
            control_stats,
        })
    }
}

impl<P: BackendPlatform + Sync> Workers<P> {
    /// Builds `cfg.workers` workers (at least one); returns them and the control
    /// thread's links to them.
    fn new(
        platform: &Arc<P>,
        cfg: &NetbackConfig,
        ports: Box<dyn PortFactory + Send>,
        clock: &Arc<dyn Fn() -> u64 + Send + Sync>,
        initial: &Arc<InitialPolicy>,
        notices: &Notices,
    ) -> io::Result<(Self, Vec<ControlEnd<Command>>)> {
        let ports = Arc::new(Mutex::new(ports));
        let next_created = Arc::new(AtomicU64::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = Workers {
            queues: Vec::new(),
            meters: Vec::new(),
            unstarted: Vec::new(),
            threads: Vec::new(),
            stop: stop.clone(),
        };
        for _ in 0..cfg.workers.max(1) {
            let (queue, end) = control_link::link(notices)?;
            let meters = Arc::new(WorkerMeters::default());
            let shared = WorkerShared {
                ports: ports.clone(),
                clock: clock.clone(),
                next_created: next_created.clone(),
                initial: initial.clone(),
                meters: meters.clone(),
                stop: stop.clone(),
            };
            w.unstarted
                .push(Worker::new(platform.clone(), cfg.clone(), shared, end)?);
            w.queues.push(queue);
            w.meters.push(meters);
        }
        let to_workers = w.queues.clone();
        Ok((w, to_workers))
    }

    /// Starts the workers not started yet.
    fn start(&mut self) -> io::Result<()> {
        for worker in self.unstarted.drain(..) {
            let name = format!("netback-w{}", self.threads.len());
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run())?;
            self.threads.push(h);
        }
        Ok(())
    }
}

impl<P: BackendPlatform> Workers<P> {
    /// The first worker that stopped, if any.
    fn stopped(&self) -> Option<usize> {
        self.threads.iter().position(JoinHandle::is_finished)
    }

    /// Stops and joins them.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.unstarted.clear();
        for q in &self.queues {
            q.ring();
        }
        for h in self.threads.drain(..) {
            if h.join().is_err() {
                log::error!("netback: a data-path worker panicked");
            }
        }
    }
}

impl<P: BackendPlatform> Netback<P> {
    /// The platform (e.g. for its xenstore connection).
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The time on this driver's clock (the one injected at [`Netback::new`]).
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// What the data-path workers did so far, all together.
    pub fn loop_stats(&self) -> LoopStats {
        self.worker_stats()
            .into_iter()
            .fold(LoopStats::default(), |a, w| LoopStats {
                iterations: a.iterations + w.iterations,
                vif_polls: a.vif_polls + w.vif_polls,
                timeouts: a.timeouts + w.timeouts,
                events: a.events + w.events,
                notifies: a.notifies + w.notifies,
            })
    }

    /// What each data-path worker did so far.
    pub fn worker_stats(&self) -> Vec<LoopStats> {
        let m = &self.workers.meters;
        m.iter()
            .map(|m| LoopStats {
                iterations: WorkerMeters::load(&m.iterations),
                vif_polls: WorkerMeters::load(&m.vif_polls),
                timeouts: WorkerMeters::load(&m.timeouts),
                events: WorkerMeters::load(&m.events),
                notifies: WorkerMeters::load(&m.notifies),
            })
            .collect()
    }

    /// CPU time of each data-path worker thread so far, ns, as each worker last
    /// published it: at most 64 loop iterations ago while it works, and final at most
    /// one worker tick (100 ms) after it went idle.
    pub fn worker_cpu_ns(&self) -> Vec<u64> {
        let m = &self.workers.meters;
        m.iter().map(|m| WorkerMeters::load(&m.cpu_ns)).collect()
    }

    /// Vif queues placed on each data-path worker.
    pub fn worker_queues(&self) -> Vec<u64> {
        let m = &self.workers.meters;
        m.iter().map(|m| WorkerMeters::load(&m.queues)).collect()
    }

    /// The data-path worker serving vif `id` (index from 0), once it is placed.
    pub fn vif_worker(&self, id: VifId) -> Option<usize> {
        self.vifs.get(&id).map(|v| v.board.worker)
    }

    /// The data-path worker serving each queue of vif `id`'s current connection (queue
    /// 0 first; empty while it is not connected): queue k on worker (w₀ + k) mod W.
    pub fn vif_queue_workers(&self, id: VifId) -> Vec<usize> {
        self.vifs
            .get(&id)
            .map(|v| v.board.queue_workers())
            .unwrap_or_default()
    }

    /// What the xenstore work for watch events cost so far.
    pub fn control_stats(&self) -> ControlStats {
        *self.control_stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Status of every vif the control thread has taken up.
    pub fn status(&self) -> Vec<VifStatus> {
        // A device shows once the control thread has taken it up (written its state).
        let rx = self
            .alloc
            .as_ref()
            .map(crate::control::Allocation::rx_budgets);
        self.vifs
            .iter()
            .filter(|(_, v)| v.state != XenbusState::Initialising)
            .map(|(id, v)| {
                let (s, queues) = v.board.read_with_queues();
                VifStatus {
                    id: *id,
                    state: v.state,
                    connected: s.created.is_some(),
                    credits: s.credits,
                    counters: s.past + s.current,
                    budget: self.alloc.as_ref().and_then(|a| a.loop_.budget(*id)),
                    rx_budget: rx.as_ref().and_then(|r| r.get(*id)),
                    front_dropped_packets: s
                        .front
                        .filter(|f| f.front_version != 0)
                        .map(|f| f.dropped_packets),
                    rate: s.rate,
                    queues,
                }
            })
            .collect()
    }

    /// Runs the DBA-VM allocator in this daemon: every `config.period`, budgets from
    /// `base` SLAs (overlaid with each vif's `dba-*` xenstore keys) and the measured
    /// rates reach every vif's credit area and backstop.
    pub fn enable_allocator(
        &mut self,
        base: allocator::SlaSet,
        config: allocator::LoopConfig,
    ) -> Result<(), allocator::control::ConfigError> {
        let mut a = Allocation::new(base, config)?;
        for (id, values) in &self.sla_keys {
            apply_sla_keys(&mut a, *id, values);
        }
        self.alloc = Some(a);
        self.publish_initial();
        Ok(())
    }

    /// Replaces the base SLAs (e.g. the SLA file was edited); keys in xenstore still
    /// override them per vif.
    pub fn set_slas(&mut self, base: allocator::SlaSet) {
        if let Some(a) = &mut self.alloc {
            a.base = base;
        }
        self.publish_initial();
    }

    /// The allocator's last round and its cumulated cost (ns, rounds), if it runs.
    pub fn allocator_report(&self) -> Option<(Option<&allocator::RoundReport>, u64, u64)> {
        self.alloc
            .as_ref()
            .map(|a| (a.loop_.last_report(), a.cost_ns, a.rounds))
    }

    /// The SLA in force for vif `id` (the base set overlaid with its xenstore keys).
    pub fn effective_sla(&self, id: VifId) -> Option<allocator::VifSla> {
        let a = self.alloc.as_ref()?;
        let v = id;
        Some(
            a.keys
                .vif(v)
                .and_then(|k| k.sla)
                .unwrap_or_else(|| a.base.vif(v)),
        )
    }

    /// The SLAs a new connection's first budget comes from, for the workers.
    fn publish_initial(&self) {
        let p = self
            .alloc
            .as_ref()
            .map(|a| (a.keys.overlay(&a.base).0, a.period()));
        self.initial.set(p);
    }

    fn allocator_round(&mut self) {
        let now = (self.clock)();
        if let Some(a) = &mut self.alloc {
            let period = a.period();
            let mut dp = Dp {
                vifs: &self.vifs,
                queues: &self.workers.queues,
                period,
            };
            a.maybe_round(now, &mut dp);
        }
    }

    /// Applies a TX budget to vif `id` (backstop and, if negotiated, its credit area),
    /// on its worker; returns whether the vif is connected.
    pub fn set_tx_budget(&mut self, id: VifId, c: &Credits) -> bool {
        let Some(v) = self.vifs.get(&id) else {
            return false;
        };
        self.workers.queues[v.board.worker]
            .call(|reply| Command::SetBudget {
                id,
                credits: *c,
                reply,
            })
            .unwrap_or(false)
    }
}

impl<P: BackendPlatform> Netback<P> {
    /// Stops the data-path workers and waits for them: each publishes its vifs one last
    /// time, so that [`Netback::status`] afterwards counts every frame they handled.
    /// netback serves no frames after this; for a final report before it is dropped.
    pub fn stop_workers(&mut self) {
        self.workers.stop();
    }
}

impl<P: BackendPlatform + Sync> Netback<P> {
    /// Runs until `stop` returns true, waiting at most `tick` between checks.
    pub fn run(
        &mut self,
        tick: Duration,
        mut stop: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), RunError> {
        while !stop(self) {
            self.run_once(tick)?;
        }
        Ok(())
    }

    /// Starts the workers the first time; waits for the control thread's commands (at
    /// most `timeout`, less when an allocator round is due) and handles them; runs the
    /// allocator's round when due. Fails when waiting fails, the xenstore connection is
    /// lost, or a thread of netback stopped.
    pub fn run_once(&mut self, timeout: Duration) -> Result<(), RunError> {
        self.workers.start()?;
        if let Some(w) = self.workers.stopped() {
            return Err(RunError::WorkerStopped(w));
        }
        let now = (self.clock)();
        let wait = self
            .alloc
            .as_ref()
            .and_then(|a| a.next_due())
            .map(|t| Duration::from_nanos(t.saturating_sub(now)))
            .map_or(timeout, |w| w.min(timeout));
        let mut events = [0u64; 4];
        let n = self.epoll.wait(&mut events, wait)?;
        if events[..n].contains(&EV_COMMANDS) {
            self.take_commands()?;
        }
        self.allocator_round();
        Ok(())
    }

    /// Carries out the commands the control thread queued. Stops the loop when it
    /// reports the xenstore connection lost, or is gone.
    fn take_commands(&mut self) -> Result<(), RunError> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        link.bell.clear();
        loop {
            let Some(link) = &self.link else {
                return Ok(());
            };
            match link.next() {
                Ok(ManagerCommand::Lost(e)) => return Err(RunError::XenstoreLost(e)),
                Ok(cmd) => self.command(cmd),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(RunError::ControlStopped),
            }
        }
    }

    fn command(&mut self, cmd: ManagerCommand) {
        match cmd {
            ManagerCommand::Placed { id, board } => {
                let state = XenbusState::Initialising;
                self.vifs.insert(id, ManagedVif { state, board });
            }
            ManagerCommand::Removed { id } => {
                self.vifs.remove(&id);
                self.sla_keys.remove(&id);
                if let Some(a) = &mut self.alloc {
                    a.remove(id);
                }
                self.publish_initial();
            }
            ManagerCommand::State { id, state } => {
                if let Some(v) = self.vifs.get_mut(&id) {
                    v.state = state;
                }
            }
            ManagerCommand::SlaKeys { id, values, reply } => {
                if let Some(a) = &mut self.alloc {
                    apply_sla_keys(a, id, &values);
                }
                self.sla_keys.insert(id, values);
                self.publish_initial();
                let _ = reply.send(());
            }
            // Handled by the caller.
            ManagerCommand::Lost(_) => {}
        }
    }
}

impl<P: BackendPlatform> Drop for Netback<P> {
    fn drop(&mut self) {
        // Commands still queued are dropped with their reply channels: a control thread
        // waiting for one of them, or for room in the queue, stops waiting. The workers
        // run until the control thread is gone (it may be waiting for one of them).
        self.control_stop.store(true, Ordering::Release);
        self.link = None;
        self.control_bell.ring();
        self.workers.unstarted.clear();
        if let Some(h) = self.control.take() {
            if h.join().is_err() {
                log::error!("netback: the control thread panicked");
            }
        }
        self.workers.stop();
    }
}
/// Applies a vif's `dba-*` keys (as the control thread read them, in `KEYS` order) to
/// the allocator's SLAs; a bad value keeps the previous SLA.
fn apply_sla_keys(a: &mut Allocation, id: VifId, values: &[Option<String>]) {
    let r = a.update_keys(id, |k| {
        allocator::xenstore::KEYS
            .iter()
            .position(|x| *x == k)
            .and_then(|i| values.get(i).cloned().flatten())
    });
    if let Err(e) = r {
        log::warn!("{id}: SLA keys: {e}; keeping the previous SLA");
    }
}
