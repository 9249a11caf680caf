//! The netback daemon: the xenbus backend state machine for every vif under its backend
//! directory, and one event loop driving all of their data paths.
//!
//! Handshake (as Linux's `xen-netback/xenbus.c`, plus the credit feature of
//! `docs/protocol.md`):
//!
//! 1. A device directory appears under `/local/domain/<self>/backend/<type>/`: read
//!    `frontend` and `frontend-id`, open the device's port, advertise the features,
//!    switch to `InitWait`, watch the frontend's `state`.
//! 2. Frontend `Initialised` or `Connected`: read and check `tx-ring-ref`,
//!    `rx-ring-ref`, `event-channel`, `request-rx-copy` (required), optional
//!    `request-dba-credits`; map both rings, bind the event channel, publish the first
//!    credits, switch to `Connected`.
//! 3. Frontend `Closing`/`Closed`/gone: release everything, switch to `Closing` then
//!    `Closed`; a frontend that comes back (`Initialising`) gets `InitWait` again.
//!
//! A device found with both its frontend and backend nodes `Connected` (a previous
//! netback stopped without closing) skips step 1's `InitWait`: the rings are taken over
//! at their shared indices if they are the ones recorded in `netback-rings`, or the
//! device fails with the reason.
//!
//! A frontend that breaks the protocol — on the rings or in xenstore — is disconnected
//! with one log line that says why; only that vif is affected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use hypervisor::evtchn::{EventChannels, EvtchnError, Port as EvtPort};
use hypervisor::grant::{Access, GrantCopy, GrantError, GrantMap, GrantRef};
use hypervisor::platform::BackendPlatform;
use hypervisor::poll::Epoll;
use hypervisor::xenbus::{self, XenbusError, XenbusState};
use netport::Port;
use shared_ring::credit::{Credits, CREDIT_VERSION};
use shared_ring::Limit;
use xen_ids::{DomId, VifId};
use xenstore::{with_transaction, Xenstore, XsError, XsTx};

use crate::control::{credits_of, reading, Allocation};
use crate::control_work::{ControlStats, ControlWork, Work};
use crate::emulation::EmulatedBackendRate;
use crate::evtchn_backoff::SpuriousBackoff;
use crate::features::{self, BoundChannels, FeatureError};
use crate::meter::VifCounters;
use crate::vif::{BackstopPolicy, Poll, Vif, VifFatal, TX_BATCH};
use crate::vifconfig::{self, RateCap, VifConfig, VifConfigError};

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
    /// Advertise `feature-dba-credits`.
    pub credits: bool,
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
            credits: true,
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
    backend_path: String,
    frontend_path: String,
    state: XenbusState,
    port: Box<dyn Port>,
    /// The toolstack's keys, as read at probe (`rate` followed since).
    config: VifConfig,
    /// Epoll key of the port's rx fd, and whether it is armed: only while frames can go
    /// somewhere — a connection whose guest has RX buffers — so that a level-triggered
    /// port does not spin the loop.
    port_key: u64,
    port_armed: bool,
    conn: Option<Connection<M>>,
    /// Counters of earlier connections of this device (kept across reconnects).
    past: VifCounters,
    /// When this netback probed the device, the frontend was already Initialised or
    /// Connected: set up for a previous netback instance, and possibly tearing those
    /// rings down right now. Cleared at the first look at the frontend's state.
    stale_frontend: bool,
    /// When this netback probed the device, both the frontend and the backend node said
    /// `Connected`: a previous netback served this frontend and stopped (SIGTERM, kill -9)
    /// without closing. Its rings are taken over as they are, without a handshake (a
    /// Linux netfront never runs one again). Cleared at the first look at the frontend.
    reattach: bool,
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

const TOKEN_BACKEND: &str = "be";
const TOKEN_SLA: &str = "sla:";
/// Token of the `@releaseDomain` watch (a domain died).
const TOKEN_RELEASE: &str = "release";
const EV_XS: u64 = 0;
const EV_EVTCHN: u64 = 1;
const EV_PORT_BASE: u64 = 2;

/// The netback daemon.
pub struct Netback<P: BackendPlatform> {
    platform: P,
    cfg: NetbackConfig,
    ports: Box<dyn PortFactory>,
    clock: Clock,
    root: String,
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
    /// Devices refused at probe for malformed toolstack keys: not probed again until
    /// one of those keys changes or the device goes away.
    rejected: BTreeMap<VifId, Vec<Option<Vec<u8>>>>,
    stats: LoopStats,
    /// Xenstore work owed for watch events: coalesced, paced and budgeted.
    work: ControlWork,
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

impl<P: BackendPlatform> Netback<P> {
    /// Starts serving the backend directory of `platform`'s domain.
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
        // Only which watch fired matters (the work re-reads what it names): a guest
        // writing its nodes in a loop must not grow the event queue.
        if !platform.xenstore().set_coalescing(true) {
            log::warn!("netback: this xenstore connection does not coalesce watch events");
        }
        platform
            .xenstore()
            .watch(&root, TOKEN_BACKEND)
            .map_err(|e| io::Error::other(format!("watch {root}: {e}")))?;
        // A frontend domain that dies without closing its device (crash, kill -9) is
        // noticed here, not only when the toolstack removes the device.
        if let Err(e) = platform.xenstore().watch("@releaseDomain", TOKEN_RELEASE) {
            log::warn!("watch @releaseDomain: {e}; dead frontends are noticed only when their devices are removed");
        }
        let epoll = Epoll::new()?;
        epoll.add(platform.xenstore().event_fd(), EV_XS)?;
        epoll.add(platform.evtchn().as_fd(), EV_EVTCHN)?;
        let rate = cfg
            .emulated_backend_pps
            .map(|pps| EmulatedBackendRate::new(pps, clock()));
        let mut nb = Netback {
            platform,
            cfg,
            ports,
            clock,
            root,
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
            rejected: BTreeMap::new(),
            stats: LoopStats::default(),
            work: ControlWork::default(),
        };
        nb.scan_devices();
        Ok(nb)
    }

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
        self.work.stats()
    }

    /// Status of every vif.
    pub fn status(&self) -> Vec<VifStatus> {
        self.devices
            .values()
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
                rate: d.config.rate,
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
        for id in self.devices.keys().copied().collect::<Vec<_>>() {
            self.read_sla_keys(&mut a, id);
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

    fn read_sla_keys(&self, a: &mut Allocation, id: VifId) {
        let be = format!("{}/{}/{}", self.root, id.domid.0, id.devid);
        let xs = self.platform.xenstore();
        let r = a.update_keys(id, |k| {
            xs.read(XsTx::NONE, &format!("{be}/{k}"))
                .ok()
                .map(|v| String::from_utf8_lossy(&v[..v.len().min(64)]).into_owned())
        });
        if let Err(e) = r {
            log::warn!("{id}: SLA keys: {e}; keeping the previous SLA");
        }
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
            self.work.next_due(),
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
                EV_XS => self.take_xenstore_events()?,
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
        self.run_control_work()?;
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

    /// Takes the queued watch events as work to do (no xenstore round trip here). A
    /// closed connection stops the loop.
    fn take_xenstore_events(&mut self) -> Result<(), RunError> {
        loop {
            match self.platform.xenstore().wait_event(Some(Duration::ZERO)) {
                Ok(Some(ev)) => {
                    if let Some(w) = work_of(&ev.token) {
                        self.work.push(w);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e @ XsError::Disconnected(_)) => return Err(RunError::XenstoreLost(e)),
                Err(e) => {
                    log::warn!("netback: xenstore events: {e}");
                    return Ok(());
                }
            }
        }
    }

    /// Runs the xenstore work that is due, within the per-iteration budget. (Events
    /// are taken first: a connection closed meanwhile stops the loop before any work
    /// fails on it and fails a vif for it.)
    fn run_control_work(&mut self) -> Result<(), RunError> {
        if self.work.next_due().is_none_or(|t| t > (self.clock)()) {
            return Ok(());
        }
        self.take_xenstore_events()?;
        for w in self.work.take_due((self.clock)()) {
            match w {
                Work::Scan => self.scan_devices(),
                Work::Release => self.domains_released(),
                Work::Sla(id) => {
                    self.follow_rate(id);
                    if let Some(mut a) = self.alloc.take() {
                        if self.devices.contains_key(&id) {
                            self.read_sla_keys(&mut a, id);
                        }
                        self.alloc = Some(a);
                    }
                }
                Work::Frontend(id) => self.frontend_changed(id),
            }
        }
        Ok(())
    }

    /// `@releaseDomain` fired: some domain died. Every connected device whose frontend
    /// domain is no longer introduced loses its rings and mappings at once (Xen keeps a
    /// dead domain's memory alive, as a zombie, while a backend still maps its grants)
    /// and goes to Closed; a new frontend in a domain with that id starts a new
    /// handshake. Devices without a connection hold nothing of the dead domain and are
    /// left as they are (waiting in InitWait for a frontend).
    fn domains_released(&mut self) {
        let mut live: BTreeMap<DomId, bool> = BTreeMap::new();
        let ids: Vec<VifId> = self
            .devices
            .values()
            .filter(|d| d.conn.is_some())
            .map(|d| d.id)
            .collect();
        for id in ids {
            // One query per domain; a failed query counts as alive.
            let xs = self.platform.xenstore();
            let alive = *live.entry(id.domid).or_insert_with(|| {
                xs.is_domain_introduced(id.domid).unwrap_or_else(|e| {
                    log::debug!("{id}: IS_DOMAIN_INTRODUCED: {e}");
                    true
                })
            });
            if !alive {
                log::warn!(
                    "{id}: frontend domain {} is gone (@releaseDomain): releasing its rings",
                    id.domid.0
                );
                self.disconnect(id);
                self.switch_state(id, XenbusState::Closing);
                self.switch_state(id, XenbusState::Closed);
            }
        }
    }

    /// Finds devices that appeared or vanished under the backend directory.
    fn scan_devices(&mut self) {
        let xs = self.platform.xenstore();
        let mut present = Vec::new();
        let domids = match xs.directory(XsTx::NONE, &self.root) {
            Ok(d) => d,
            Err(e) if e.is_enoent() => Vec::new(),
            Err(e) => {
                log::warn!("netback: list {}: {e}", self.root);
                return;
            }
        };
        for d in domids {
            let Some(domid) = xenbus::parse_domid(d.as_bytes()) else {
                continue;
            };
            let devs = xs
                .directory(XsTx::NONE, &format!("{}/{}", self.root, d))
                .unwrap_or_default();
            for v in devs {
                if let Some(devid) = xenbus::parse_u64(v.as_bytes(), u32::MAX as u64) {
                    present.push(VifId::new(domid, devid as u32));
                }
            }
        }
        let gone: Vec<VifId> = self
            .devices
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.remove_device(id);
        }
        self.rejected.retain(|id, _| present.contains(id));
        self.retry_rejected();
        for id in present {
            if !self.devices.contains_key(&id) && !self.rejected.contains_key(&id) {
                if let Err(e) = self.probe(id) {
                    log::warn!("{id}: probe failed: {e}");
                }
            }
        }
    }

    fn probe(&mut self, id: VifId) -> Result<(), ProbeError> {
        let xs = self.platform.xenstore();
        let be = format!("{}/{}/{}", self.root, id.domid.0, id.devid);
        let fe = xenbus::read_str(xs, XsTx::NONE, &format!("{be}/frontend"), 256)?;
        let fe_id = xenbus::read_domid(xs, XsTx::NONE, &format!("{be}/frontend-id"))?;
        if fe_id != id.domid {
            return Err(ProbeError::FrontendId(fe_id));
        }
        let config = match vifconfig::read_config(xs, &be) {
            Ok(c) => c,
            Err(e) => {
                self.reject(id, &be, &e);
                return Err(ProbeError::Config(e));
            }
        };
        let port = self.ports.open_vif(id, &config).map_err(ProbeError::Port)?;
        let key = self.next_key;
        self.next_key += 1;
        // Armed only once a frontend connects: until then its frames have nowhere to go.
        self.epoll
            .add(port.rx_fd(), key)
            .and_then(|()| self.epoll.set(port.rx_fd(), key, false))
            .map_err(ProbeError::Epoll)?;
        self.port_keys.insert(key, id);
        let features = features::backend_keys(self.cfg.credits.then_some(CREDIT_VERSION));
        for (k, v) in &features {
            xs.write(XsTx::NONE, &format!("{be}/{k}"), v.as_bytes())
                .map_err(|source| ProbeError::Write { key: k, source })?;
        }
        let fe_state = xenbus::read_state(xs, &format!("{fe}/state"));
        let stale_frontend = matches!(
            fe_state,
            Ok(XenbusState::Initialised | XenbusState::Connected)
        );
        let reattach = matches!(fe_state, Ok(XenbusState::Connected))
            && matches!(
                xenbus::read_state(xs, &format!("{be}/state")),
                Ok(XenbusState::Connected)
            );
        xs.watch(&format!("{fe}/state"), &fe_token(id))
            .map_err(|source| ProbeError::Watch {
                what: "frontend state",
                source,
            })?;
        // SLA keys (dba-*) live in the backend directory; any change there re-reads them.
        xs.watch(&be, &format!("{TOKEN_SLA}{}:{}", id.domid.0, id.devid))
            .map_err(|source| ProbeError::Watch {
                what: "backend directory",
                source,
            })?;
        self.devices.insert(
            id,
            Device {
                id,
                backend_path: be,
                frontend_path: fe,
                state: XenbusState::Initialising,
                port,
                config,
                port_key: key,
                port_armed: false,
                conn: None,
                past: VifCounters::default(),
                stale_frontend,
                reattach,
            },
        );
        if reattach {
            // The nodes keep saying Connected: the frontend sees no state change.
            if let Some(d) = self.devices.get_mut(&id) {
                d.state = XenbusState::InitWait;
            }
            log::info!("{id}: probed, the frontend is still connected: taking its rings over");
        } else {
            self.switch_state(id, XenbusState::InitWait);
            log::info!("{id}: probed, waiting for the frontend");
        }
        Ok(())
    }

    fn switch_state(&mut self, id: VifId, state: XenbusState) {
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        d.state = state;
        let path = format!("{}/state", d.backend_path);
        if let Err(e) = write_state(self.platform.xenstore(), &path, state) {
            log::warn!("{id}: write {path}: {e}");
        }
    }

    /// Refuses device `id` (backend directory `be`) for malformed toolstack keys, as
    /// Linux's `xenbus_dev_fatal`: the reason in its `error` node and the log, its state
    /// `Closing`; it is not probed again until one of those keys changes.
    /// Devices refused for their toolstack keys whose keys were rewritten since: the
    /// stale `error` goes and they are probed again (a reason that still holds is
    /// written again). Compared by value, since coalesced watch events keep only the
    /// last path written.
    fn retry_rejected(&mut self) {
        let xs = self.platform.xenstore();
        let changed: Vec<VifId> = self
            .rejected
            .iter()
            .filter(|(id, keys)| {
                let be = format!("{}/{}/{}", self.root, id.domid.0, id.devid);
                raw_config_keys(xs, &be) != **keys
            })
            .map(|(id, _)| *id)
            .collect();
        for id in changed {
            self.rejected.remove(&id);
            let error = format!("{}/{}/{}/error", self.root, id.domid.0, id.devid);
            let _ = xs.rm(XsTx::NONE, &error);
        }
    }

    fn reject(&mut self, id: VifId, be: &str, e: &VifConfigError) {
        // The reason is logged by the caller (the probe's error).
        let xs = self.platform.xenstore();
        self.rejected.insert(id, raw_config_keys(xs, be));
        let path = format!("{be}/error");
        if let Err(we) = xs.write(XsTx::NONE, &path, e.to_string().as_bytes()) {
            log::warn!("{id}: write {path}: {we}");
        }
        let path = format!("{be}/state");
        if let Err(we) = write_state(xs, &path, XenbusState::Closing) {
            log::warn!("{id}: write {path}: {we}");
        }
    }

    /// Re-reads vif `id`'s `rate` (its backend directory changed) and applies a new
    /// value to the running vif at once. A malformed new value is logged and the vif
    /// keeps the cap it has.
    fn follow_rate(&mut self, id: VifId) {
        let now = (self.clock)();
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        match vifconfig::read_rate(self.platform.xenstore(), &d.backend_path) {
            Ok(rate) if rate != d.config.rate => {
                log::info!("{id}: rate {:?} -> {:?}", d.config.rate, rate);
                d.config.rate = rate;
                if let Some(c) = d.conn.as_mut() {
                    c.vif.set_rate_cap(rate, now);
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("{id}: {e}; keeping rate {:?}", d.config.rate),
        }
    }

    fn frontend_changed(&mut self, id: VifId) {
        self.frontend_changed_once(id, true);
    }

    /// Follows the frontend's state; `retry`: a connect that fails because the frontend
    /// changed its keys meanwhile is retried once on what it says now.
    fn frontend_changed_once(&mut self, id: VifId, retry: bool) {
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        let stale_frontend = std::mem::take(&mut d.stale_frontend);
        let reattach = std::mem::take(&mut d.reattach);
        let path = format!("{}/state", d.frontend_path);
        let fe_state = match xenbus::read_state(self.platform.xenstore(), &path) {
            Ok(s) => s,
            // Not the frontend's doing: the loop stops at its next look at the events.
            Err(XenbusError::Xs {
                source: XsError::Disconnected(_),
                ..
            }) => return,
            Err(e) => {
                log::warn!("{id}: {e}");
                self.fail_device(id, &e.to_string());
                return;
            }
        };
        let be_state = d.state;
        use XenbusState::*;
        match fe_state {
            Initialising => {
                if matches!(be_state, Closing | Closed | Connected) {
                    self.disconnect(id);
                    self.switch_state(id, InitWait);
                }
            }
            Initialised | Connected => {
                if be_state != Connected {
                    if be_state != InitWait {
                        // A frontend connecting after a failure: restart the handshake.
                        self.switch_state(id, InitWait);
                    }
                    let setup = self.frontend_setup(id);
                    match self.connect(id, reattach) {
                        Ok(()) => {
                            self.switch_state(id, Connected);
                            // Frames may already be waiting in either direction. Polled
                            // only now: a ring that breaks the protocol at once must leave
                            // the device Closing, not be overwritten by `Connected`.
                            self.poll_vif(id);
                        }
                        Err(e) if reattach => self.reattach_failed(id, &setup, e),
                        Err(e) if stale_frontend => {
                            // Rings of a frontend that was connected to a previous netback
                            // (a Linux netfront keeps them and expects us to use them; ours
                            // tears them down and starts over): not a protocol violation.
                            log::info!(
                                "{id}: the rings the frontend set up before this netback \
                                 started are unusable ({e}); waiting for it to reconnect"
                            );
                            self.disconnect(id);
                        }
                        Err(e) if retry && self.frontend_setup(id) != setup => {
                            // The frontend changed its state or keys while we read them
                            // and mapped its rings (it was closing, or starting over): what
                            // failed was its previous set-up, not a protocol violation.
                            // Follow its current state, once.
                            log::info!("{id}: the frontend moved on while connecting ({e})");
                            self.disconnect(id);
                            self.frontend_changed_once(id, false);
                        }
                        Err(e) => {
                            log::warn!("{id}: cannot connect: {e}");
                            self.fail_device(id, &e.to_string());
                        }
                    }
                }
            }
            Closing => {
                self.disconnect(id);
                self.switch_state(id, Closing);
            }
            Closed | Unknown => {
                self.disconnect(id);
                if be_state != Closed {
                    self.switch_state(id, Closing);
                    self.switch_state(id, Closed);
                }
            }
            InitWait | Reconfiguring | Reconfigured => {}
        }
    }

    /// Taking over the rings of a frontend that stayed `Connected` across a netback
    /// restart failed. If its keys are as they were, that is the frontend's doing (rings
    /// changed without a handshake, impossible indices): the device fails with the
    /// reason. If it moved on meanwhile (it is starting a new handshake), it is followed.
    fn reattach_failed(&mut self, id: VifId, setup: &[Option<Vec<u8>>], e: ConnectError) {
        self.disconnect(id);
        if self.frontend_setup(id) == setup {
            log::warn!("{id}: cannot take over the rings after a netback restart: {e}");
            self.fail_device(id, &format!("netback restart: {e}"));
        } else {
            log::info!("{id}: the frontend moved on while its rings were taken over ({e})");
            self.switch_state(id, XenbusState::InitWait);
            self.frontend_changed_once(id, false);
        }
    }

    /// The frontend keys a connection is made from, as they are now (absent keys as
    /// `None`): compared before and after a failed connect.
    fn frontend_setup(&self, id: VifId) -> Vec<Option<Vec<u8>>> {
        let Some(d) = self.devices.get(&id) else {
            return Vec::new();
        };
        [
            "state",
            "tx-ring-ref",
            "rx-ring-ref",
            "event-channel",
            "event-channel-tx",
            "event-channel-rx",
        ]
        .iter()
        .map(|k| {
            self.platform
                .xenstore()
                .try_read(XsTx::NONE, &format!("{}/{k}", d.frontend_path))
                .ok()
                .flatten()
        })
        .collect()
    }

    /// Maps the frontend's rings and binds its event channel. `reattach`: the rings are
    /// taken over from a previous netback (see [`Device::reattach`]); they must be the
    /// ones it recorded.
    fn connect(&mut self, id: VifId, reattach: bool) -> Result<(), ConnectError> {
        let d = self.devices.get(&id).ok_or(ConnectError::NoDevice)?;
        let xs = self.platform.xenstore();
        let fe = d.frontend_path.clone();
        let rd = |k: &str, max: u64| xenbus::read_u64(xs, XsTx::NONE, &format!("{fe}/{k}"), max);
        let rd_or = |k: &str, max: u64, def: u64| {
            xenbus::read_u64_or(xs, XsTx::NONE, &format!("{fe}/{k}"), max, def)
        };
        if rd_or("multi-queue-num-queues", 1, 1)? != 1 {
            return Err(ConnectError::MultiQueue);
        }
        let feat = features::read_frontend(xs, &fe)?;
        let tx_ref = rd("tx-ring-ref", u32::MAX as u64)? as u32;
        let rx_ref = rd("rx-ring-ref", u32::MAX as u64)? as u32;
        let ev = feat.channels.record();
        let credits_req = rd_or("request-dba-credits", u16::MAX as u64, 0)?;
        let credits = self.cfg.credits && credits_req >= 1;
        if credits_req > CREDIT_VERSION as u64 && self.cfg.credits {
            return Err(ConnectError::CreditVersion(credits_req));
        }
        let rings = format!("{tx_ref} {rx_ref} {ev}");
        let record = format!("{}/{RINGS_KEY}", d.backend_path);
        if reattach {
            check_recorded_rings(xs, &record, &rings)?;
        }
        let grants = self.platform.grants();
        let map = |key: &'static str, gref: u32| {
            grants
                .map(id.domid, &[GrantRef(gref)], Access::Writable)
                .map_err(|source| ConnectError::Map { key, gref, source })
        };
        let tx_map = map("tx-ring-ref", tx_ref)?;
        let rx_map = map("rx-ring-ref", rx_ref)?;
        let evtchn = BoundChannels::bind(self.platform.evtchn(), id, feat.channels)
            .map_err(|(port, source)| ConnectError::Bind { port, source })?;
        let now = (self.clock)();
        // The first generation already carries the budget (what its SLA allows).
        let initial = self.initial_credits(id);
        // The toolstack's `rate` holds under every budget, the first one included.
        let rate_cap = self.devices.get(&id).and_then(|d| d.config.rate);
        let vif = Vif::new(
            id,
            tx_map,
            rx_map,
            credits.then_some(&initial),
            rate_cap,
            now,
        );
        let mut vif = match vif {
            Ok(vif) => vif,
            Err(e) => {
                evtchn.unbind(self.platform.evtchn(), id);
                return Err(ConnectError::Rings(e));
            }
        };
        vif.set_tx_policy(self.cfg.tx_policy);
        // Only what the frontend agreed to take goes on its RX ring (every frame is
        // checked); the port is asked for no other offloads, to spare the fallback.
        let allowed = feat.allowed();
        let d = self.devices.get_mut(&id).expect("checked above");
        if let Err(e) = d.port.set_offloads(&allowed) {
            log::warn!("{id}: port offload: {e}");
        }
        vif.set_rx_allowed(allowed);
        vif.set_rx_notify(feat.rx_notify);
        vif.set_rx_stall_timeout(self.cfg.rx_stall_timeout_ns);
        // A carrier a stalled earlier connection turned off is on again.
        if let Err(e) = d.port.set_carrier(true) {
            log::warn!("{id}: port carrier: {e}");
        }
        if !credits {
            vif.set_tx_budget(&initial, now);
        }
        for p in evtchn.ports() {
            self.by_evtchn.insert(p, id);
        }
        let created = self.next_created;
        self.next_created += 1;
        let d = self.devices.get_mut(&id).expect("checked above");
        d.conn = Some(Connection {
            vif,
            evtchn,
            created,
        });
        // Frames for the guest can go somewhere now.
        d.arm_port(&self.epoll, true);
        if let Err(e) = xs.write(XsTx::NONE, &record, rings.as_bytes()) {
            log::warn!("{id}: write {record}: {e}; a restarted netback will not check the rings");
        }
        if reattach {
            // Responses the previous netback pushed may never have been signalled.
            evtchn.notify(self.platform.evtchn(), id, true, true);
        }
        log::info!(
            "{id}: {} (tx-ring-ref {tx_ref}, rx-ring-ref {rx_ref}, event-channel {ev}, credits {}, {:?}, rx-notify {})",
            if reattach { "re-attached" } else { "connected" },
            if credits { "on" } else { "off" },
            allowed,
            feat.rx_notify,
        );
        Ok(())
    }

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

    /// Disconnects a misbehaving frontend: releases its rings and writes the reason in
    /// the backend's `error` node, then `Closing` (xenbus_dev_fatal).
    fn fail_device(&mut self, id: VifId, why: &str) {
        self.disconnect(id);
        if let Some(d) = self.devices.get(&id) {
            let path = format!("{}/error", d.backend_path);
            let _ = self
                .platform
                .xenstore()
                .write(XsTx::NONE, &path, why.as_bytes());
        }
        self.switch_state(id, XenbusState::Closing);
    }

    fn remove_device(&mut self, id: VifId) {
        self.disconnect(id);
        self.work.forget(id);
        if let Some(a) = &mut self.alloc {
            a.remove(id);
        }
        if let Some(d) = self.devices.remove(&id) {
            let _ = self
                .platform
                .xenstore()
                .unwatch(&format!("{}/state", d.frontend_path), &fe_token(id));
            let _ = self.platform.xenstore().unwatch(
                &d.backend_path,
                &format!("{TOKEN_SLA}{}:{}", id.domid.0, id.devid),
            );
            let _ = self.epoll.del(d.port.rx_fd());
            self.port_keys.retain(|_, v| *v != id);
            // The vif is gone: its interface goes with the port.
            let mut port = d.port;
            if let Err(e) = port.set_persistent(false) {
                log::warn!("{id}: {e}; the interface stays until deleted (ip link del)");
            }
            log::info!("{id}: removed");
        }
    }
}

/// Why a device directory could not be taken up.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// A key of the backend directory is missing or invalid.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// A toolstack key (`mac`, `mtu`, `rate`, `vifname`, `ip`) is malformed.
    #[error(transparent)]
    Config(VifConfigError),
    /// `frontend-id` names another domain than the directory does.
    #[error("frontend-id {0} does not match the directory")]
    FrontendId(DomId),
    /// The device's port could not be opened.
    #[error("open port: {0}")]
    Port(#[source] io::Error),
    /// The port could not be added to the event loop.
    #[error("epoll add: {0}")]
    Epoll(#[source] io::Error),
    /// A feature could not be advertised.
    #[error("write {key}: {source}")]
    Write {
        /// The feature key.
        key: &'static str,
        /// The failure.
        source: XsError,
    },
    /// A watch could not be set.
    #[error("watch {what}: {source}")]
    Watch {
        /// What was to be watched.
        what: &'static str,
        /// The failure.
        source: XsError,
    },
}

/// Why the rings of a frontend could not be connected (written to the backend's `error`
/// node).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// The device was removed meanwhile.
    #[error("no such device")]
    NoDevice,
    /// A frontend key is missing or invalid.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// The frontend asks for more than one queue.
    #[error("multi-queue is not supported")]
    MultiQueue,
    /// The frontend's feature keys are refused (page flipping, broken values).
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// `request-dba-credits` asks for a version above the one advertised.
    #[error("request-dba-credits {0} is above the advertised {CREDIT_VERSION}")]
    CreditVersion(u64),
    /// A ring grant could not be mapped.
    #[error("map {key} {gref}: {source}")]
    Map {
        /// The frontend key naming the grant.
        key: &'static str,
        /// The grant reference.
        gref: u32,
        /// The failure.
        source: GrantError,
    },
    /// The frontend's event channel could not be bound.
    #[error("bind event-channel {port}: {source}")]
    Bind {
        /// The frontend's port.
        port: u32,
        /// The failure.
        source: EvtchnError,
    },
    /// The mapped rings cannot be attached (impossible indices).
    #[error(transparent)]
    Rings(VifFatal),
    /// A frontend still `Connected` across a netback restart names other rings than the
    /// previous netback served, without having run a new handshake.
    #[error("the frontend changed its rings without a new handshake: \"{now}\", was \"{was}\" (tx-ring-ref rx-ring-ref event-channel)")]
    RingsChanged {
        /// What the previous netback recorded.
        was: String,
        /// What the frontend names now.
        now: String,
    },
    /// The record of the previous netback's rings could not be read.
    #[error("read {path}: {source}")]
    Record {
        /// The record's path.
        path: String,
        /// The failure.
        source: XsError,
    },
}

/// The backend-directory key where netback records the rings it attached to
/// (`"<tx-ring-ref> <rx-ring-ref> <event-channel>"`), for a restarted netback to check.
const RINGS_KEY: &str = "netback-rings";

/// A restarted netback takes over only the rings the previous one served: the frontend
/// has not run a handshake since, so other refs are memory it may no longer own. No
/// record (a netback that did not write one) is not checked.
fn check_recorded_rings<X: Xenstore + ?Sized>(
    xs: &X,
    path: &str,
    now: &str,
) -> Result<(), ConnectError> {
    let was = xs
        .try_read(XsTx::NONE, path)
        .map_err(|source| ConnectError::Record {
            path: path.to_string(),
            source,
        })?;
    match was {
        Some(was) if was != now.as_bytes() => Err(ConnectError::RingsChanged {
            was: String::from_utf8_lossy(&was[..was.len().min(64)]).into_owned(),
            now: now.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Writes a backend `state` node as Linux's `xenbus_switch_state`: in a transaction, and
/// only while the node exists. A plain write would re-create the backend directory the
/// toolstack has just removed (e.g. a domain that died while its device was being
/// destroyed), and the device would never go away.
fn write_state<X: Xenstore + ?Sized>(
    xs: &X,
    path: &str,
    state: XenbusState,
) -> Result<(), XsError> {
    with_transaction(xs, |tx| match xs.read(tx, path) {
        Ok(cur) if cur == state.as_str().as_bytes() => Ok(()),
        Ok(_) => xs.write(tx, path, state.as_str().as_bytes()),
        Err(e) if e.is_enoent() => Ok(()),
        Err(e) => Err(e),
    })
}

/// The toolstack keys of backend directory `be` as they are (`None`: absent or
/// unreadable), to notice a rewrite.
fn raw_config_keys<X: Xenstore + ?Sized>(xs: &X, be: &str) -> Vec<Option<Vec<u8>>> {
    vifconfig::KEYS
        .iter()
        .map(|k| xs.read(XsTx::NONE, &format!("{be}/{k}")).ok())
        .collect()
}

/// The work a watch event with `token` calls for.
fn work_of(token: &str) -> Option<Work> {
    if token == TOKEN_BACKEND {
        Some(Work::Scan)
    } else if token == TOKEN_RELEASE {
        Some(Work::Release)
    } else if let Some(id) = token.strip_prefix(TOKEN_SLA).and_then(parse_id) {
        Some(Work::Sla(id))
    } else {
        parse_fe_token(token).map(Work::Frontend)
    }
}

fn fe_token(id: VifId) -> String {
    format!("fe:{}:{}", id.domid.0, id.devid)
}

fn parse_fe_token(t: &str) -> Option<VifId> {
    parse_id(t.strip_prefix("fe:")?)
}

fn parse_id(t: &str) -> Option<VifId> {
    let mut it = t.split(':');
    let domid = it.next()?.parse().ok()?;
    let devid = it.next()?.parse().ok()?;
    Some(VifId {
        domid: DomId(domid),
        devid,
    })
}
