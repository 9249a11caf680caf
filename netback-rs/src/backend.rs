//! The netback daemon's data path: one event loop driving every connected vif's rings,
//! event channels and port, with local work only (grant maps and copies, event-channel
//! binds, ports). The xenbus backend state machine and every xenstore round trip run on
//! netback's control thread ([`crate::control_thread`]), which orders this loop about
//! through [`crate::control_link`]: the loop never waits for xenstore.
//!
//! A frontend that breaks the protocol on its rings is disconnected here with one log
//! line that says why, and the control thread writes the reason to its `error` node;
//! only that vif is affected.

mod commands;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{GrantCopy, GrantMap};
use hypervisor::platform::BackendPlatform;
use hypervisor::poll::Epoll;
use hypervisor::xenbus::XenbusState;
use netport::Port;
use shared_ring::credit::Credits;
use shared_ring::Limit;
use xen_ids::{DomId, VifId};
use xenstore::{ShareConnection, Xenstore, XsError};

use crate::control::{credits_of, reading, rx_reading, Allocation, RxDatapath};
use crate::control_link::{self, DataEnd, Doorbell, Notice};
use crate::control_thread::{self, ControlSetup, TOKEN_BACKEND, TOKEN_RELEASE};
use crate::control_work::ControlStats;
use crate::emulation::EmulatedBackendRate;
use crate::evtchn_backoff::SpuriousBackoff;
use crate::features::BoundChannels;
use crate::meter::VifCounters;
use crate::vif::{BackstopPolicy, Poll, Vif, VifFatal, TX_BATCH};
use crate::vifconfig::{RateCap, VifConfig};

/// Opens the port a vif's frames go to and come from (a TAP, a memory channel…).
pub trait PortFactory {
    /// A port for vif `id` with the guest's MAC.
    fn open(&mut self, id: VifId, mac: [u8; 6]) -> io::Result<Box<dyn Port>>;

    /// A port for vif `id` set up as its toolstack keys say (interface name, MTU; see
    /// [`crate::vifconfig`]). By default [`PortFactory::open`] with the guest's MAC (a
    /// fixed one when the toolstack wrote none): for ports that are not interfaces.
    fn open_vif(&mut self, id: VifId, cfg: &VifConfig) -> io::Result<Box<dyn Port>> {
        self.open(id, cfg.mac.unwrap_or(DEFAULT_GUEST_MAC))
    }
}

/// The guest MAC a port is opened with when the toolstack wrote no `mac`.
pub const DEFAULT_GUEST_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0];

impl<F: FnMut(VifId, [u8; 6]) -> io::Result<Box<dyn Port>>> PortFactory for F {
    fn open(&mut self, id: VifId, mac: [u8; 6]) -> io::Result<Box<dyn Port>> {
        self(id, mac)
    }
}

/// Netback settings.
#[derive(Debug, Clone)]
pub struct NetbackConfig {
    /// Backend device type directory (`vif` as libxl writes it).
    pub backend_type: String,
    /// What the backstop does with excess TX frames.
    pub tx_policy: BackstopPolicy,
    /// What the RX budget does with frames over it: drop them (counted, never copied)
    /// or hold the vif's port until tokens return.
    pub rx_policy: BackstopPolicy,
    /// The RX budget a vif starts with when the allocator is off (a static receive SLA);
    /// unlimited by default. With the allocator on, the most its RX SLA allows.
    pub initial_rx_budget: Credits,
    /// Advertise `feature-dba-credits`.
    pub credits: bool,
    /// The credit-area layout version advertised (default
    /// [`shared_ring::credit::CREDIT_VERSION`]; 1 behaves as a version-1 backend: no RX
    /// budget or counters in the area).
    pub credit_version: u16,
    /// The budget a vif starts with when the allocator is off. With the allocator on, a
    /// vif starts with the most its SLA allows until the next round counts it in.
    pub initial_budget: Credits,
    /// **Emulation** for benchmarks: the most TX packets per second the whole backend
    /// processes (all vifs together), like the paper's memory-bound dom0 (190 Kp/s).
    /// `None` in production.
    pub emulated_backend_pps: Option<u64>,
    /// How long a frame may wait for a frontend's RX buffers before the frontend counts
    /// as stalled and its port's carrier goes off (Linux's `rx_stall_timeout`; ns on
    /// netback's clock; `None`: never). Default [`crate::vif::RX_STALL_TIMEOUT_NS`].
    pub rx_stall_timeout_ns: Option<u64>,
}

impl Default for NetbackConfig {
    fn default() -> Self {
        NetbackConfig {
            backend_type: "vif".into(),
            tx_policy: BackstopPolicy::Drop,
            rx_policy: BackstopPolicy::Drop,
            initial_rx_budget: crate::control::UNLIMITED,
            credits: true,
            credit_version: shared_ring::credit::CREDIT_VERSION,
            initial_budget: Credits {
                bytes: Limit::Unlimited,
                packets: Limit::Unlimited,
                period_us: 0,
            },
            emulated_backend_pps: None,
            rx_stall_timeout_ns: Some(crate::vif::RX_STALL_TIMEOUT_NS),
        }
    }
}

pub use hypervisor::clock::Clock;

pub use hypervisor::clock::monotonic_ns;

struct Connection<M> {
    vif: Vif<M>,
    /// The frontend's event channel(s), bound.
    evtchn: BoundChannels,
    /// Connection sequence number (meters restart with each connection).
    created: u64,
}

struct Device<M> {
    id: VifId,
    /// The backend's xenbus state, as the control thread wrote it.
    state: XenbusState,
    port: Box<dyn Port>,
    /// The toolstack's `rate`, as the control thread read it.
    rate: Option<RateCap>,
    /// Epoll key of the port's rx fd, and whether it is armed: only while frames can go
    /// somewhere — a connection whose guest has RX buffers — so that a level-triggered
    /// port does not spin the loop.
    port_key: u64,
    port_armed: bool,
    conn: Option<Connection<M>>,
    /// Counters of earlier connections of this device (kept across reconnects).
    past: VifCounters,
}

impl<M> Device<M> {
    /// Arms or disarms the port's rx fd in `epoll`.
    fn arm_port(&mut self, epoll: &Epoll, want: bool) {
        if want == self.port_armed {
            return;
        }
        match epoll.set(self.port.rx_fd(), self.port_key, want) {
            Ok(()) => self.port_armed = want,
            Err(e) => log::warn!("{}: epoll: {e}", self.id),
        }
    }
}

/// What netback's event loop did since it started: counts that show whether it sleeps
/// when there is nothing to do (a loop that spins shows here, whatever the machine's
/// speed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Iterations of [`Netback::run_once`].
    pub iterations: u64,
    /// Polls of a connected vif's rings and port.
    pub vif_polls: u64,
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
    /// Frames the frontend says it dropped for lack of tokens, in the current connection
    /// (from its credit area). An **untrusted hint** written by the guest: for operators'
    /// eyes only, never for accounting or policing. `None` when not published.
    pub front_dropped_packets: Option<u64>,
    /// The toolstack's static TX cap (the backend's `rate` key) in force, if any.
    pub rate: Option<RateCap>,
}

/// Epoll key of the doorbell the control thread rings with commands.
const EV_COMMANDS: u64 = 0;
const EV_EVTCHN: u64 = 1;
const EV_PORT_BASE: u64 = 2;

/// The netback daemon.
pub struct Netback<P: BackendPlatform> {
    platform: P,
    cfg: NetbackConfig,
    ports: Box<dyn PortFactory>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    devices: BTreeMap<VifId, Device<<P::Grants as GrantMap>::Mapping>>,
    by_evtchn: HashMap<EvtPort, VifId>,
    epoll: Epoll,
    port_keys: HashMap<u64, VifId>,
    next_key: u64,
    pending: Vec<EvtPort>,
    next_created: u64,
    alloc: Option<Allocation>,
    /// The emulated backend packet rate ([`NetbackConfig::emulated_backend_pps`]).
    rate: Option<EmulatedBackendRate>,
    rr: usize,
    /// Vifs that still had work when `poll_vif` stopped after its round limit: they are
    /// polled again in the next `run_once`, which then does not sleep. (Their rings were
    /// not re-armed, so no notification would wake us for them.) Only vifs with work
    /// they can do: one waiting for the rest of a packet or for RX buffers sleeps until
    /// its event channel wakes it.
    busy: BTreeSet<VifId>,
    /// Ports kept masked a while after spurious events (event-channel storms).
    backoff: SpuriousBackoff,
    /// Scratch list of ports due to be unmasked.
    due_ports: Vec<EvtPort>,
    stats: LoopStats,
    /// The vifs' `dba-*` keys as the control thread last read them (`KEYS` order).
    sla_keys: BTreeMap<VifId, Vec<Option<String>>>,
    /// This thread's end of the link to the control thread (`None` once stopping).
    link: Option<DataEnd>,
    /// The control thread, its stop flag and bell.
    control: Option<JoinHandle<()>>,
    control_stop: Arc<AtomicBool>,
    control_bell: Doorbell,
    /// What the control thread's xenstore work cost so far (it publishes it here).
    control_stats: Arc<Mutex<ControlStats>>,
}

/// The allocator's view of netback's vifs for one round.
struct Dp<'a, M> {
    devices: &'a mut BTreeMap<VifId, Device<M>>,
    now_ns: u64,
    period: Duration,
}

impl<M: hypervisor::grant::GrantMapping> allocator::Datapath for Dp<'_, M> {
    type Error = std::convert::Infallible;

    fn read_meters(&mut self, out: &mut Vec<allocator::VifReading>) -> Result<(), Self::Error> {
        for d in self.devices.values() {
            if let Some(c) = &d.conn {
                out.push(reading(
                    d.id,
                    c.created,
                    c.vif.counters().tx_wire_bytes,
                    c.vif.counters().tx_wire_packets,
                    c.vif.front_counters(),
                ));
            }
        }
        Ok(())
    }

    fn write_budgets(&mut self, budgets: &[(VifId, allocator::Budget)]) -> Result<(), Self::Error> {
        for (v, b) in budgets {
            if let Some(c) = self.devices.get_mut(v).and_then(|d| d.conn.as_mut()) {
                c.vif
                    .set_tx_budget(&credits_of(b, self.period), self.now_ns);
            }
        }
        Ok(())
    }
}

impl<M: hypervisor::grant::GrantMapping> RxDatapath for Dp<'_, M> {
    fn read_rx_meters(&mut self, out: &mut Vec<allocator::VifReading>) {
        for d in self.devices.values() {
            if let Some(c) = &d.conn {
                let k = c.vif.counters();
                out.push(rx_reading(
                    d.id,
                    c.created,
                    (k.rx_wire_bytes, k.rx_wire_packets),
                    (k.rx_police_wire_bytes, k.rx_police_wire_packets),
                ));
            }
        }
    }

    fn write_rx_budgets(&mut self, budgets: &[(VifId, Option<Credits>)]) {
        for (v, b) in budgets {
            if let Some(c) = self.devices.get_mut(v).and_then(|d| d.conn.as_mut()) {
                let unlimited = crate::control::UNLIMITED;
                c.vif
                    .set_rx_budget(b.as_ref().unwrap_or(&unlimited), self.now_ns);
            }
        }
    }
}

impl<P: BackendPlatform> Netback<P>
where
    P::Xenstore: ShareConnection,
{
    /// Starts serving the backend directory of `platform`'s domain: sets the watches,
    /// starts the control thread (on a handle of the platform's xenstore connection),
    /// which finds the devices already there.
    pub fn new(
        platform: P,
        cfg: NetbackConfig,
        ports: Box<dyn PortFactory>,
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
        let (ctl_end, data_end) = control_link::link()?;
        let epoll = Epoll::new()?;
        epoll.add(&data_end.bell, EV_COMMANDS)?;
        epoll.add(platform.evtchn().as_fd(), EV_EVTCHN)?;
        let clock: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::from(clock);
        let rate = cfg
            .emulated_backend_pps
            .map(|pps| EmulatedBackendRate::new(pps, clock()));
        let control_stop = Arc::new(AtomicBool::new(false));
        let control_bell = Doorbell::new()?;
        let control_stats = Arc::new(Mutex::new(ControlStats::default()));
        let control = control_thread::spawn(ControlSetup {
            xs: ctl_xs,
            root,
            credits: cfg.credits,
            credit_version: cfg
                .credit_version
                .clamp(1, shared_ring::credit::CREDIT_VERSION),
            clock: clock.clone(),
            link: ctl_end,
            stats: control_stats.clone(),
            stop: control_stop.clone(),
            stop_bell: control_bell.clone(),
        })?;
        Ok(Netback {
            platform,
            cfg,
            ports,
            clock,
            devices: BTreeMap::new(),
            by_evtchn: HashMap::new(),
            epoll,
            port_keys: HashMap::new(),
            next_key: EV_PORT_BASE,
            pending: vec![EvtPort(0); 64],
            next_created: 1,
            alloc: None,
            rate,
            rr: 0,
            busy: BTreeSet::new(),
            backoff: SpuriousBackoff::new(),
            due_ports: Vec::new(),
            stats: LoopStats::default(),
            sla_keys: BTreeMap::new(),
            link: Some(data_end),
            control: Some(control),
            control_stop,
            control_bell,
            control_stats,
        })
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

    /// What the event loop did so far.
    pub fn loop_stats(&self) -> LoopStats {
        self.stats
    }

    /// What the xenstore work for watch events cost so far.
    pub fn control_stats(&self) -> ControlStats {
        *self.control_stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Status of every vif the control thread has taken up.
    pub fn status(&self) -> Vec<VifStatus> {
        // A device shows once the control thread has taken it up (written its state).
        self.devices
            .values()
            .filter(|d| d.state != XenbusState::Initialising)
            .map(|d| VifStatus {
                id: d.id,
                state: d.state,
                connected: d.conn.is_some(),
                credits: d.conn.as_ref().is_some_and(|c| c.vif.has_credits()),
                counters: d
                    .conn
                    .as_ref()
                    .map_or(d.past, |c| d.past + c.vif.counters()),
                budget: self.alloc.as_ref().and_then(|a| a.loop_.budget(d.id)),
                front_dropped_packets: d
                    .conn
                    .as_ref()
                    .and_then(|c| c.vif.front_counters())
                    .filter(|f| f.front_version != 0)
                    .map(|f| f.dropped_packets),
                rate: d.rate,
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
        Ok(())
    }

    /// Replaces the base SLAs (e.g. the SLA file was edited); keys in xenstore still
    /// override them per vif.
    pub fn set_slas(&mut self, base: allocator::SlaSet) {
        if let Some(a) = &mut self.alloc {
            a.base = base;
        }
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

    fn allocator_round(&mut self) {
        let now = (self.clock)();
        if let Some(a) = &mut self.alloc {
            let period = a.period();
            let mut dp = Dp {
                devices: &mut self.devices,
                now_ns: now,
                period,
            };
            a.maybe_round(now, &mut dp);
        }
    }

    /// The budget a vif starts with, published as its first credit generation: with
    /// the allocator on, the most its SLA allows (B^max bounded by the link, its VM's
    /// packets/s cap) until the next round counts it in — otherwise it would send
    /// unlimited for up to a period; without, the configured initial budget.
    fn initial_credits(&self, id: VifId) -> Credits {
        let Some(a) = &self.alloc else {
            return self.cfg.initial_budget;
        };
        let (slas, _) = a.keys.overlay(&a.base);
        let sla = slas.vif(id);
        let budget = allocator::Budget::with_bursts(
            sla.max_bps_on(slas.link()),
            slas.vm(id.domid).pps(),
            a.period(),
        );
        credits_of(&budget, a.period())
    }

    /// The RX budget a vif starts with: with the allocator on, the most its RX SLA
    /// allows (unlimited when nothing limits it on RX); without, the configured one.
    fn initial_rx_credits(&self, id: VifId) -> Credits {
        match &self.alloc {
            Some(a) => a
                .initial_rx_credits(id)
                .unwrap_or(crate::control::UNLIMITED),
            None => self.cfg.initial_rx_budget,
        }
    }

    /// Applies a TX budget to vif `id` (backstop and, if negotiated, its credit area).
    pub fn set_tx_budget(&mut self, id: VifId, c: &Credits) -> bool {
        let now = (self.clock)();
        match self.devices.get_mut(&id).and_then(|d| d.conn.as_mut()) {
            Some(conn) => {
                conn.vif.set_tx_budget(c, now);
                true
            }
            None => false,
        }
    }

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

    /// Waits for events (at most `timeout`, less if a vif is held) and handles them.
    /// Fails when waiting fails or the xenstore connection is lost.
    pub fn run_once(&mut self, timeout: Duration) -> Result<(), RunError> {
        self.stats.iterations += 1;
        let now = (self.clock)();
        let wait = self
            .devices
            .values()
            .filter_map(|d| d.conn.as_ref()?.vif.wake_at())
            .map(|t| Duration::from_nanos(t.saturating_sub(now)))
            .fold(timeout, Duration::min);
        let wait = [
            self.alloc.as_ref().and_then(|a| a.next_due()),
            self.backoff.next_due(),
        ]
        .into_iter()
        .flatten()
        .map(|t| Duration::from_nanos(t.saturating_sub(now)))
        .fold(wait, Duration::min);
        // Vifs left with work by the round limit are polled below: do not sleep.
        let wait = if self.busy.is_empty() {
            wait
        } else {
            Duration::ZERO
        };
        let mut events = [0u64; 32];
        let n = self.epoll.wait(&mut events, wait)?;
        for &key in &events[..n] {
            match key {
                EV_COMMANDS => self.take_commands()?,
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
        // Held vifs whose deficit has accrued, and incomplete packets' timeouts.
        let now = (self.clock)();
        let due: Vec<VifId> = self
            .devices
            .values()
            .filter(|d| {
                d.conn
                    .as_ref()
                    .and_then(|c| c.vif.wake_at())
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
        self.unmask_due(now);
        self.allocator_round();
        Ok(())
    }

    /// Unmasks the ports whose spurious-event delay has passed, and polls their vifs:
    /// what the frontend published while its port was masked is taken now.
    fn unmask_due(&mut self, now: u64) {
        self.backoff.take_due(now, &mut self.due_ports);
        let due = std::mem::take(&mut self.due_ports);
        for &port in &due {
            if let Err(e) = self.platform.evtchn().unmask(port) {
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
        let n = match self.platform.evtchn().pending(&mut self.pending) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("netback: event channel pending: {e}");
                return;
            }
        };
        for i in 0..n {
            let port = self.pending[i];
            if let Some(&id) = self.by_evtchn.get(&port) {
                let worked = self.poll_vif_counted(id) > 0;
                let producers = self.peer_producers(id);
                let now = (self.clock)();
                if let Some(at) = self.backoff.after_event(port, producers, worked, now) {
                    log::debug!("{id}: spurious events: port masked until {at}");
                    continue;
                }
            }
            if let Err(e) = self.platform.evtchn().unmask(port) {
                log::debug!("netback: unmask {port}: {e}");
            }
            // Work that raced with the unmask is caught by the final checks in poll_vif.
        }
    }

    /// The frontend's request producers (TX, RX) of vif `id`, as its pages hold them.
    fn peer_producers(&self, id: VifId) -> (u32, u32) {
        self.devices
            .get(&id)
            .and_then(|d| d.conn.as_ref())
            .map_or((0, 0), |c| c.vif.peer_producers())
    }

    /// Polls one vif's TX and RX until it has no more work this round.
    pub fn poll_vif(&mut self, id: VifId) {
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
        self.stats.vif_polls += 1;
        let grants = self.platform.grants();
        let mut rounds = 0;
        let mut packets = 0;
        // Ok(true): stopped at the round limit with work left.
        let result: Result<bool, VifFatal> = (|| loop {
            rounds += 1;
            let now = (self.clock)();
            let port = dev.port.as_mut();
            let tx: Poll = match self.rate.as_mut() {
                Some(rate) => rate.tx_poll(&mut conn.vif, now, grants, port)?,
                None => conn.vif.tx_poll(now, grants, port, TX_BATCH)?,
            };
            let rx: Poll = conn.vif.rx_poll(now, grants, dev.port.as_mut())?;
            packets += tx.packets + rx.packets;
            conn.evtchn
                .notify(self.platform.evtchn(), id, tx.notify, rx.notify);
            if !(tx.more || rx.more) {
                return Ok(false);
            }
            if rounds >= 64 {
                return Ok(true);
            }
        })();
        let result = result.map(|more| {
            if more {
                self.busy.insert(id);
            } else {
                self.busy.remove(&id);
            }
        });
        if let Err(why) = result {
            log::warn!("{id}: disconnecting the frontend: {why}");
            self.fail_device(id, &why.to_string());
            return packets;
        }
        // Listen to the port only while frames can go somewhere.
        let want = !conn.vif.rx_starved();
        dev.arm_port(&self.epoll, want);
        packets
    }

    /// Releases vif `id`'s connection (rings, event channels, grant-copy mappings of a
    /// domain left without a connected vif); the device stays, waiting for a frontend.
    fn disconnect(&mut self, id: VifId) {
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        // Without a connection the port's frames have nowhere to go: a level-triggered
        // port left armed would wake the loop for them without end.
        d.arm_port(&self.epoll, false);
        self.busy.remove(&id);
        if let Some(conn) = d.conn.take() {
            // No guest behind the interface: no carrier (on again at the next connect).
            if let Err(e) = d.port.set_carrier(false) {
                log::warn!("{id}: port carrier: {e}");
            }
            for p in conn.evtchn.ports() {
                self.by_evtchn.remove(&p);
                self.backoff.forget(p);
            }
            conn.evtchn.unbind(self.platform.evtchn(), id);
            d.past += conn.vif.counters();
            // Dropping the mappings unmaps the rings.
            drop(conn.vif.into_mappings());
            log::info!("{id}: disconnected");
        }
        self.forget_unconnected_peer(id.domid);
    }

    /// Releases what the grant copies keep of `domid` once none of its vifs is connected
    /// (its domain died or its last vif closed): a guest cannot leave mappings behind.
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
        if let (Some(created), Some(link)) = (created, &self.link) {
            link.notify(Notice::Failed {
                id,
                created,
                reason: why.to_string(),
            });
        }
    }
}

impl<P: BackendPlatform> Drop for Netback<P> {
    fn drop(&mut self) {
        // Commands still queued are dropped with their reply channels: a control thread
        // waiting for one of them, or for room in the queue, stops waiting.
        self.control_stop.store(true, Ordering::Release);
        self.link = None;
        self.control_bell.ring();
        if let Some(h) = self.control.take() {
            if h.join().is_err() {
                log::error!("netback: the control thread panicked");
            }
        }
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
