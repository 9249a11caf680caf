//! netback on its own thread: a command channel to run closures on it between loop
//! iterations, a status snapshot the caller can read, a wait for connected vifs, and
//! what the thread measured when it stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hypervisor::clock::{monotonic_ns, Clock};
use netback::{Netback, NetbackConfig, PortFactory, VifStatus};
use netport::{MemPort, MemPortConfig, Port};
use xen_ids::{DomId, VifId};
use xen_local::{LocalHost, LocalPlatform};

use crate::spawn::{thread_cpu_ns, Handle, Spawner};
use crate::TestbedError;

/// netback on the local platform.
pub type LocalNetback = Netback<LocalPlatform>;
/// A closure run on the netback thread.
type Command = Box<dyn FnOnce(&mut LocalNetback) + Send>;

/// How the netback thread runs.
pub struct BackendOptions {
    /// The thread's name.
    pub name: String,
    /// The longest wait of one [`Netback::run_once`].
    pub poll: Duration,
    /// How often the status snapshot is refreshed ([`Duration::ZERO`]: every iteration).
    pub status_every: Duration,
    /// The allocator, enabled before netback serves: base SLAs and loop settings.
    pub allocator: Option<(allocator::SlaSet, allocator::LoopConfig)>,
    /// netback's clock.
    pub clock: Clock,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            name: "netback".into(),
            poll: Duration::from_millis(5),
            status_every: Duration::ZERO,
            allocator: None,
            clock: hypervisor::clock::system(),
        }
    }
}

/// What the netback thread reports when it stops.
#[derive(Debug, Clone, Default)]
pub struct BackendExit {
    /// Every vif, as netback last saw it.
    pub status: Vec<VifStatus>,
    /// The allocator's cumulated cost, ns (0 without the allocator).
    pub allocator_cost_ns: u64,
    /// The allocator's rounds.
    pub allocator_rounds: u64,
    /// CPU time of netback's manager thread (the one running the loop) and of its
    /// data-path workers, ns.
    pub cpu_ns: u64,
    /// Longest gap between two loop iterations beyond the poll wait, ns: time the thread
    /// could not run.
    pub max_stall_ns: u64,
}

/// What the caller and the netback thread share.
struct Shared {
    stop: AtomicBool,
    status: Mutex<Vec<VifStatus>>,
}

/// netback serving dom0 on its own thread.
pub struct BackendThread {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    wires: Option<MemWires>,
    thread: Option<Handle<Result<BackendExit, TestbedError>>>,
}

impl BackendThread {
    /// Starts netback for `dom0` on a thread placed by `spawner`, its vifs' ports from
    /// `ports`; returns once netback (and the allocator, if any) is set up.
    pub fn spawn(
        spawner: Spawner<'_>,
        dom0: LocalPlatform,
        cfg: NetbackConfig,
        ports: impl PortFactory + Send + 'static,
        opts: BackendOptions,
    ) -> Result<BackendThread, TestbedError> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            status: Mutex::default(),
        });
        let (commands, queue) = mpsc::channel::<Command>();
        let (ready_tx, ready) = mpsc::channel();
        let name = opts.name.clone();
        let thread = spawner.spawn(&name, {
            let shared = shared.clone();
            move || {
                let cpu0 = thread_cpu_ns();
                let (poll, status_every) = (opts.poll, opts.status_every);
                let mut nb = match start(dom0, cfg, Box::new(ports), opts) {
                    Ok(nb) => nb,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Err(TestbedError::BackendGone);
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let max_stall_ns = serve(&mut nb, &shared, &queue, poll, status_every)?;
                // The workers' last publication: the status counts every frame.
                nb.stop_workers();
                let (cost, rounds) = nb.allocator_report().map_or((0, 0), |(_, c, r)| (c, r));
                Ok(BackendExit {
                    status: nb.status(),
                    allocator_cost_ns: cost,
                    allocator_rounds: rounds,
                    cpu_ns: netback_cpu_ns(&nb) - cpu0,
                    max_stall_ns,
                })
            }
        })?;
        match ready.recv() {
            Ok(Ok(())) => Ok(BackendThread {
                shared,
                commands,
                wires: None,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(thread.join().err().unwrap_or(TestbedError::BackendGone)),
        }
    }

    /// netback for `host`'s dom0 on a plain thread, every vif's port a [`MemPort`] pair
    /// (1024 frames of up to 64 KiB) whose wire end [`BackendThread::wire`] hands out.
    pub fn start(host: &LocalHost, cfg: NetbackConfig) -> Result<BackendThread, TestbedError> {
        Self::start_with_ports(host, cfg, MemPortConfig::new(1024, 65536))
    }

    /// As [`BackendThread::start`], every vif's port a [`MemPort`] pair made with `ports`.
    pub fn start_with_ports(
        host: &LocalHost,
        cfg: NetbackConfig,
        ports: MemPortConfig,
    ) -> Result<BackendThread, TestbedError> {
        Self::start_with(host, cfg, ports, BackendOptions::default())
    }

    /// As [`BackendThread::start_with_ports`], the thread run as `opts` says (e.g. an
    /// injected clock).
    pub fn start_with(
        host: &LocalHost,
        cfg: NetbackConfig,
        ports: MemPortConfig,
        opts: BackendOptions,
    ) -> Result<BackendThread, TestbedError> {
        let wires = MemWires::new(ports);
        let mut nb = Self::spawn(
            Spawner::Thread,
            crate::domain(host, DomId(0))?,
            cfg,
            wires.factory(),
            opts,
        )?;
        nb.wires = Some(wires);
        Ok(nb)
    }

    /// The wire end of vif `id`'s memory port (waits up to 10 s for netback to open it).
    ///
    /// # Panics
    /// A test assertion: panics if the ports are not memory ports or if netback never
    /// opened one for `id`.
    pub fn wire(&self, id: VifId) -> MemPort {
        self.wires
            .as_ref()
            .expect("BackendThread::wire needs memory ports (BackendThread::start)")
            .take(id, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("netback never opened a port for {id}"))
    }

    /// The wire end of the memory port of queue `queue` (1 or more) of vif `id`,
    /// opened when its frontend connected with several queues (waits up to 10 s).
    ///
    /// # Panics
    /// As [`BackendThread::wire`].
    pub fn wire_queue(&self, id: VifId, queue: u32) -> MemPort {
        self.wires
            .as_ref()
            .expect("BackendThread::wire_queue needs memory ports (BackendThread::start)")
            .take_queue(id, queue, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("netback never opened a port for {id} queue {queue}"))
    }

    /// The wire end of the memory port of queue `queue` of vif `id`, if netback opened
    /// one nobody took (no wait). A test that counts descriptors drops the ends of
    /// ports netback opened and closed again (a refused connection): they are the
    /// harness's, not netback's.
    pub fn try_wire_queue(&self, id: VifId, queue: u32) -> Option<MemPort> {
        self.wires
            .as_ref()
            .expect("BackendThread::try_wire_queue needs memory ports (BackendThread::start)")
            .take_queue(id, queue, Duration::ZERO)
    }

    /// Runs `f` on the netback thread, between two loop iterations (dropped if the thread
    /// is gone).
    pub fn command(&self, f: impl FnOnce(&mut LocalNetback) + Send + 'static) {
        let _ = self.commands.send(Box::new(f));
    }

    /// Runs `f` on the netback thread and returns its result (waits at most `timeout`).
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LocalNetback) -> R + Send + 'static,
        timeout: Duration,
    ) -> Result<R, TestbedError> {
        let (tx, rx) = mpsc::channel();
        self.command(move |nb| {
            let _ = tx.send(f(nb));
        });
        rx.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => {
                timeout_err("a command on the netback thread", timeout)
            }
            mpsc::RecvTimeoutError::Disconnected => TestbedError::BackendGone,
        })
    }

    /// Every vif, as of the last status refresh.
    pub fn status(&self) -> Vec<VifStatus> {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Vif `id` now: read on the netback thread between two iterations, from what the
    /// vif's worker published at the end of its last poll (so it counts every frame
    /// netback handed on before that poll ended; the snapshot of [`Self::status`] is
    /// refreshed only after an iteration, and a test can see a frame before it). The
    /// last snapshot when the thread does not answer within 10 s.
    pub fn vif_status(&self, id: VifId) -> Option<VifStatus> {
        let fresh = self.call(
            move |nb| nb.status().into_iter().find(|s| s.id == id),
            Duration::from_secs(10),
        );
        match fresh {
            Ok(st) => st,
            Err(_) => self.status().into_iter().find(|s| s.id == id),
        }
    }

    /// Waits until netback has every vif of `ids` connected.
    pub fn wait_connected(&self, ids: &[VifId], timeout: Duration) -> Result<(), TestbedError> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            let connected = |id: &VifId| st.iter().any(|s| s.id == *id && s.connected);
            if ids.iter().all(connected) {
                return Ok(());
            }
            if self.thread.as_ref().is_none_or(Handle::is_finished) {
                return Err(TestbedError::BackendGone);
            }
            if Instant::now() > deadline {
                return Err(timeout_err(&format!("netback to connect {ids:?}"), timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the loop and joins the thread: what it measured, or why it failed.
    pub fn stop(&mut self) -> Result<BackendExit, TestbedError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .ok_or(TestbedError::BackendGone)?
            .join()?
    }
}

impl Drop for BackendThread {
    /// Stops netback if [`BackendThread::stop`] was not called; a netback that failed
    /// fails the test (unless it is already failing).
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.stop() {
                if !std::thread::panicking() {
                    panic!("netback thread: {e}");
                }
            }
        }
    }
}

/// CPU time of netback so far, ns, read on its manager thread (the one running its
/// loop): that thread's and its data-path workers'.
pub fn netback_cpu_ns(nb: &LocalNetback) -> u64 {
    thread_cpu_ns() + nb.worker_cpu_ns().iter().sum::<u64>()
}

/// Creates netback and enables the allocator (on the netback thread).
fn start(
    dom0: LocalPlatform,
    cfg: NetbackConfig,
    ports: Box<dyn PortFactory + Send>,
    opts: BackendOptions,
) -> Result<LocalNetback, TestbedError> {
    let mut nb = Netback::new(dom0, cfg, ports, opts.clock).map_err(TestbedError::Netback)?;
    if let Some((slas, config)) = opts.allocator {
        nb.enable_allocator(slas, config)?;
    }
    Ok(nb)
}

/// The loop: events, then commands, then (when due) the status snapshot. Returns the
/// longest stall.
fn serve(
    nb: &mut LocalNetback,
    shared: &Shared,
    commands: &mpsc::Receiver<Command>,
    poll: Duration,
    status_every: Duration,
) -> Result<u64, TestbedError> {
    let poll_ns = poll.as_nanos() as u64;
    let every_ns = status_every.as_nanos() as u64;
    let mut last_status: Option<u64> = None;
    let mut last_iter = monotonic_ns();
    let mut max_stall_ns = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        nb.run_once(poll).map_err(TestbedError::Loop)?;
        while let Ok(c) = commands.try_recv() {
            c(nb);
        }
        let now = monotonic_ns();
        max_stall_ns = max_stall_ns.max((now - last_iter).saturating_sub(poll_ns));
        last_iter = now;
        if last_status.is_none_or(|t| now - t >= every_ns) {
            *shared.status.lock().unwrap_or_else(|e| e.into_inner()) = nb.status();
            last_status = Some(now);
        }
    }
    Ok(max_stall_ns)
}

pub(crate) fn timeout_err(what: &str, timeout: Duration) -> TestbedError {
    TestbedError::Timeout {
        what: what.to_string(),
        timeout_ms: timeout.as_millis(),
    }
}

/// Memory ports for netback's vifs: netback gets one end of each pair, the other (the
/// "wire") waits here until the test takes it.
#[derive(Clone)]
pub struct MemWires {
    config: MemPortConfig,
    /// The wire ends not taken yet, by vif and queue.
    ends: Arc<Mutex<Vec<(QueueOf, MemPort)>>>,
}

/// A vif and one of its queues.
type QueueOf = (VifId, u32);

/// The factory of [`MemWires`]: a pair per vif, and per other queue of a multi-queue
/// vif.
struct MemWiresFactory(MemWires);

impl MemWires {
    /// A new pair for queue `queue` of vif `id`: its wire end is kept (replacing one
    /// of an earlier connection not taken).
    fn open(&self, id: VifId, queue: u32) -> std::io::Result<Box<dyn Port>> {
        let (a, b) = MemPort::pair_with(self.config)?;
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        // The end of an earlier connection's port for that queue, not taken: stale.
        ends.retain(|(k, _)| *k != (id, queue));
        ends.push(((id, queue), b));
        Ok(Box::new(a))
    }
}

impl PortFactory for MemWiresFactory {
    fn open(&mut self, id: VifId, _mac: [u8; 6]) -> std::io::Result<Box<dyn Port>> {
        self.0.open(id, 0)
    }

    fn queues(&self, _id: VifId) -> u32 {
        u32::MAX
    }

    fn open_queue(&mut self, id: VifId, queue: u32) -> std::io::Result<Box<dyn Port>> {
        self.0.open(id, queue)
    }
}

impl MemWires {
    /// Pairs made with `config`.
    pub fn new(config: MemPortConfig) -> MemWires {
        MemWires {
            config,
            ends: Arc::default(),
        }
    }

    /// The port factory to give netback.
    pub fn factory(&self) -> impl PortFactory + Send + 'static {
        MemWiresFactory(self.clone())
    }

    /// Takes the wire end of vif `id`'s port, waiting at most `timeout` for netback to
    /// open it.
    pub fn take(&self, id: VifId, timeout: Duration) -> Option<MemPort> {
        self.take_queue(id, 0, timeout)
    }

    /// Takes the wire end of the port of queue `queue` of vif `id` (0: the one opened
    /// at probe), waiting at most `timeout` for netback to open it.
    pub fn take_queue(&self, id: VifId, queue: u32, timeout: Duration) -> Option<MemPort> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut w = self.ends.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = w.iter().position(|(k, _)| *k == (id, queue)) {
                    return Some(w.remove(i).1);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
