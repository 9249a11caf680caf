//! netback's control thread: the xenbus backend state machine of every vif, and every
//! xenstore round trip netback makes.
//!
//! It waits on the watch events of its xenstore connection (a handle on the platform's
//! connection, [`xenstore::ShareConnection`]), turns them into paced, budgeted work
//! ([`crate::control_work`]), reads and checks what the toolstack and the frontends
//! wrote, writes the backend's `state`, `error` and feature keys, places each vif on a
//! data-path worker (a multi-queue vif's other queues on the other workers) and orders
//! them about with [`Command`]s ([`crate::router`], [`crate::control_link`]). A worker never waits for xenstore: a stalled xenstored, or a guest keeping the control
//! work busy, delays handshakes, not frames.
//!
//! Handshake (as Linux's `xen-netback/xenbus.c`, plus the credit feature of
//! `docs/protocol.md`):
//!
//! 1. A device directory appears under `/local/domain/<self>/backend/<type>/`: read
//!    `frontend` and `frontend-id`, have the device's port opened, advertise the
//!    features, switch to `InitWait`, watch the frontend's `state`.
//! 2. Frontend `Initialised` or `Connected`: read and check `tx-ring-ref`,
//!    `rx-ring-ref`, `event-channel`, `request-rx-copy` (required), optional
//!    `request-dba-credits`; have both rings mapped and the event channel bound, switch
//!    to `Connected`.
//! 3. Frontend `Closing`/`Closed`/gone: release everything, switch to `Closing` then
//!    `Closed`; a frontend that comes back (`Initialising`) gets `InitWait` again.
//!
//! A device found with both its frontend and backend nodes `Connected` (a previous
//! netback stopped without closing) skips step 1's `InitWait`: the rings of every queue
//! are taken over at their shared indices if they are the ones recorded in
//! `netback-rings`, or the device fails with the reason.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::poll::Epoll;
use hypervisor::xenbus::{self, XenbusError, XenbusState};
use shared_ring::credit::CREDIT_VERSION;
use xen_ids::{DomId, VifId};
use xenstore::{with_transaction, Xenstore, XsError, XsTx};

use crate::control_link::{Command, ConnectError, Doorbell, FrontendSetup, ManagerCommand, Notice};
use crate::control_work::{ControlStats, ControlWork, Work};
use crate::features;
use crate::queues;
use crate::router::Router;
use crate::vifconfig::{self, VifConfig, VifConfigError};

pub(crate) const TOKEN_BACKEND: &str = "be";
const TOKEN_SLA: &str = "sla:";
/// Token of the `@releaseDomain` watch (a domain died).
pub(crate) const TOKEN_RELEASE: &str = "release";

const EV_XS: u64 = 0;
const EV_NOTICE: u64 = 1;
const EV_STOP: u64 = 2;
/// Longest sleep of the control thread with nothing to do (it wakes on events).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The control thread's view of one device.
struct Device {
    backend_path: String,
    frontend_path: String,
    state: XenbusState,
    /// The toolstack's keys, as read at probe (`rate` followed since).
    config: VifConfig,
    /// The sequence number of its current connection, if the rings are connected.
    connection: Option<u64>,
    /// When this netback probed the device, the frontend was already Initialised or
    /// Connected: set up for a previous netback instance, and possibly tearing those
    /// rings down right now. Cleared at the first look at the frontend's state.
    stale_frontend: bool,
    /// When this netback probed the device, both the frontend and the backend node said
    /// `Connected`: a previous netback served this frontend and stopped (SIGTERM, kill -9)
    /// without closing. Its rings are taken over as they are, without a handshake (a
    /// Linux netfront never runs one again). Cleared at the first look at the frontend.
    reattach: bool,
    /// The `multi-queue-max-queues` written for it (netback's, at most what its port
    /// can have).
    max_queues: u32,
}

/// What the control thread is started with.
pub(crate) struct ControlSetup<X> {
    /// Its xenstore handle (the watches are already set on the connection).
    pub xs: X,
    /// The backend directory (`/local/domain/<self>/backend/<type>`).
    pub root: String,
    /// Advertise `feature-dba-credits`.
    pub credits: bool,
    /// The `multi-queue-max-queues` offered (at least 1).
    pub max_queues: u32,
    /// The credit-area version advertised (1..=`CREDIT_VERSION`).
    pub credit_version: u16,
    /// netback's clock.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Its links to the manager and the data-path workers.
    pub link: Router,
    /// Where it publishes what its work cost.
    pub stats: Arc<Mutex<ControlStats>>,
    /// Set (and the bell rung) when netback stops.
    pub stop: Arc<AtomicBool>,
    pub stop_bell: Doorbell,
}

/// The control thread's state.
pub(crate) struct Control<X> {
    xs: X,
    root: String,
    credits: bool,
    max_queues: u32,
    credit_version: u16,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    link: Router,
    stats: Arc<Mutex<ControlStats>>,
    stop: Arc<AtomicBool>,
    stop_bell: Doorbell,
    devices: BTreeMap<VifId, Device>,
    /// Devices refused at probe for malformed toolstack keys: not probed again until
    /// one of those keys changes or the device goes away.
    rejected: BTreeMap<VifId, Vec<Option<Vec<u8>>>>,
    /// Xenstore work owed for watch events: coalesced, paced and budgeted.
    work: ControlWork,
}

/// Starts the control thread; it scans the backend directory first.
pub(crate) fn spawn<X: Xenstore + 'static>(
    s: ControlSetup<X>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let epoll = Epoll::new()?;
    epoll.add(s.xs.event_fd(), EV_XS)?;
    epoll.add(&s.link.notices.bell, EV_NOTICE)?;
    epoll.add(&s.stop_bell, EV_STOP)?;
    let mut c = Control {
        xs: s.xs,
        root: s.root,
        credits: s.credits,
        max_queues: s.max_queues,
        credit_version: s.credit_version,
        clock: s.clock,
        link: s.link,
        stats: s.stats,
        stop: s.stop,
        stop_bell: s.stop_bell,
        devices: BTreeMap::new(),
        rejected: BTreeMap::new(),
        work: ControlWork::default(),
    };
    std::thread::Builder::new()
        .name("netback-control".into())
        .spawn(move || c.run(&epoll))
}

impl<X: Xenstore> Control<X> {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The loop: events, notices, due work; until netback stops or xenstore is lost.
    fn run(&mut self, epoll: &Epoll) {
        self.scan_devices();
        let mut keys = [0u64; 4];
        while !self.stopping() {
            let now = self.now();
            let wait = self
                .work
                .next_due()
                .map_or(IDLE_WAIT, |t| Duration::from_nanos(t.saturating_sub(now)))
                .min(IDLE_WAIT);
            if let Err(e) = epoll.wait(&mut keys, wait) {
                log::error!("netback control: epoll: {e}");
                self.link
                    .manager()
                    .send(ManagerCommand::Lost(XsError::Io(e)));
                return;
            }
            self.stop_bell.clear();
            if let Err(e) = self.take_xenstore_events() {
                log::error!("netback control: xenstore connection lost: {e}");
                self.link.manager().send(ManagerCommand::Lost(e));
                return;
            }
            self.take_notices();
            if let Err(e) = self.run_control_work() {
                self.link.manager().send(ManagerCommand::Lost(e));
                return;
            }
            *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.work.stats();
        }
    }

    /// Takes the queued watch events as work to do. A closed connection is an error.
    fn take_xenstore_events(&mut self) -> Result<(), XsError> {
        loop {
            match self.xs.wait_event(Some(Duration::ZERO)) {
                Ok(Some(ev)) => {
                    if let Some(w) = work_of(&ev.token) {
                        self.work.push(w);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e @ XsError::Disconnected(_)) => return Err(e),
                Err(e) => {
                    log::warn!("netback: xenstore events: {e}");
                    return Ok(());
                }
            }
        }
    }

    /// What the data-path workers decided alone: frontends that broke the protocol on
    /// their rings (already released there).
    fn take_notices(&mut self) {
        self.link.notices.bell.clear();
        while let Ok(n) = self.link.notices.receiver.try_recv() {
            match n {
                Notice::Failed {
                    id,
                    created,
                    reason,
                } => {
                    let current = self.devices.get(&id).and_then(|d| d.connection);
                    // A notice about an earlier connection (released since) is stale.
                    if current == Some(created) {
                        self.fail_device(id, &reason);
                    }
                }
            }
        }
    }

    /// Runs the xenstore work that is due, within the per-iteration budget. (Events
    /// are taken first: a connection closed meanwhile stops netback before any work
    /// fails on it and fails a vif for it.)
    fn run_control_work(&mut self) -> Result<(), XsError> {
        if self.work.next_due().is_none_or(|t| t > self.now()) {
            return Ok(());
        }
        self.take_xenstore_events()?;
        for w in self.work.take_due(self.now()) {
            if self.stopping() {
                break;
            }
            match w {
                Work::Scan => self.scan_devices(),
                Work::Release => self.domains_released(),
                Work::Sla(id) => {
                    self.follow_rate(id);
                    if self.devices.contains_key(&id) {
                        self.read_sla_keys(id);
                    }
                }
                Work::Frontend(id) => self.frontend_changed(id),
            }
        }
        Ok(())
    }

    /// Reads vif `id`'s `dba-*` keys for the allocator (on the manager).
    fn read_sla_keys(&self, id: VifId) {
        let be = format!("{}/{}/{}", self.root, id.domid.0, id.devid);
        let values = allocator::xenstore::KEYS
            .iter()
            .map(|k| {
                self.xs
                    .read(XsTx::NONE, &format!("{be}/{k}"))
                    .ok()
                    .map(|v| String::from_utf8_lossy(&v[..v.len().min(64)]).into_owned())
            })
            .collect();
        // Waits until the manager has them in force: a connection that follows starts
        // with the budget they allow.
        self.link
            .manager()
            .call(|reply| ManagerCommand::SlaKeys { id, values, reply });
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
            .iter()
            .filter(|(_, d)| d.connection.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            // One query per domain; a failed query counts as alive.
            let xs = &self.xs;
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
        let xs = &self.xs;
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
        let be = format!("{}/{}/{}", self.root, id.domid.0, id.devid);
        let xs = &self.xs;
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
        let port_queues = self
            .link
            .place(id, &config)
            .ok_or(ProbeError::Stopping)?
            .map_err(ProbeError::Port)?;
        // No more queues than the vif's port can have (a TAP an earlier netback created
        // without IFF_MULTI_QUEUE: one).
        let max_queues = self.max_queues.min(port_queues.max(1));
        let r = self.advertise(id, &be, &fe, max_queues);
        let (stale_frontend, reattach) = match r {
            Ok(s) => s,
            Err(e) => {
                self.link.remove(id);
                return Err(e);
            }
        };
        self.devices.insert(
            id,
            Device {
                backend_path: be,
                frontend_path: fe,
                state: XenbusState::Initialising,
                config,
                connection: None,
                stale_frontend,
                reattach,
                max_queues,
            },
        );
        self.read_sla_keys(id);
        if reattach {
            // The nodes keep saying Connected: the frontend sees no state change.
            self.set_state(id, XenbusState::InitWait);
            log::info!("{id}: probed, the frontend is still connected: taking its rings over");
        } else {
            self.switch_state(id, XenbusState::InitWait);
            log::info!("{id}: probed, waiting for the frontend");
        }
        Ok(())
    }

    /// Writes the features, looks at both states and sets the device's watches.
    /// Returns (stale frontend, re-attach).
    fn advertise(
        &self,
        id: VifId,
        be: &str,
        fe: &str,
        max_queues: u32,
    ) -> Result<(bool, bool), ProbeError> {
        let xs = &self.xs;
        let mut features = features::backend_keys(self.credits.then_some(self.credit_version));
        // Written for every vif, as Linux's netback does (1: single queue only).
        features.push((queues::MAX_QUEUES_KEY, max_queues.to_string()));
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
        xs.watch(be, &format!("{TOKEN_SLA}{}:{}", id.domid.0, id.devid))
            .map_err(|source| ProbeError::Watch {
                what: "backend directory",
                source,
            })?;
        Ok((stale_frontend, reattach))
    }

    /// Records the backend state (and tells the manager) without writing it.
    fn set_state(&mut self, id: VifId, state: XenbusState) {
        if let Some(d) = self.devices.get_mut(&id) {
            d.state = state;
            self.link
                .manager()
                .send(ManagerCommand::State { id, state });
        }
    }

    /// Writes the backend's state, then tells the manager (whose status shows
    /// a device once its first state is written).
    fn switch_state(&mut self, id: VifId, state: XenbusState) {
        let Some(d) = self.devices.get(&id) else {
            return;
        };
        let path = format!("{}/state", d.backend_path);
        if let Err(e) = write_state(&self.xs, &path, state) {
            log::warn!("{id}: write {path}: {e}");
        }
        self.set_state(id, state);
    }

    /// Devices refused for their toolstack keys whose keys were rewritten since: the
    /// stale `error` goes and they are probed again (a reason that still holds is
    /// written again). Compared by value, since coalesced watch events keep only the
    /// last path written.
    fn retry_rejected(&mut self) {
        let xs = &self.xs;
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

    /// Refuses device `id` (backend directory `be`) for malformed toolstack keys, as
    /// Linux's `xenbus_dev_fatal`: the reason in its `error` node and the log, its state
    /// `Closing`; it is not probed again until one of those keys changes.
    fn reject(&mut self, id: VifId, be: &str, e: &VifConfigError) {
        // The reason is logged by the caller (the probe's error).
        let xs = &self.xs;
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
        let Some(d) = self.devices.get_mut(&id) else {
            return;
        };
        match vifconfig::read_rate(&self.xs, &d.backend_path) {
            Ok(rate) if rate != d.config.rate => {
                log::info!("{id}: rate {:?} -> {:?}", d.config.rate, rate);
                d.config.rate = rate;
                self.link.send(id, Command::Rate { id, rate });
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
        let be_state = d.state;
        let fe_state = match xenbus::read_state(&self.xs, &path) {
            Ok(s) => s,
            // Not the frontend's doing: netback stops at its next look at the events.
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
                    self.frontend_ready(id, be_state, stale_frontend, reattach, retry);
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

    /// The frontend says `Initialised` or `Connected` and the backend is not connected:
    /// connect its rings.
    fn frontend_ready(
        &mut self,
        id: VifId,
        be_state: XenbusState,
        stale_frontend: bool,
        reattach: bool,
        retry: bool,
    ) {
        use XenbusState::*;
        if be_state != InitWait {
            // A frontend connecting after a failure: restart the handshake.
            self.switch_state(id, InitWait);
        }
        let setup = self.frontend_setup(id);
        match self.connect(id, reattach) {
            // Frames that were already waiting in either direction are taken by the
            // vif's worker as soon as it connected; a ring that breaks the protocol
            // at once leaves the device Closing (its notice is handled after this).
            Ok(()) => self.switch_state(id, Connected),
            // netback is stopping: the device is left as it is, for the next netback.
            Err(ConnectError::Stopping) => {}
            Err(e) if reattach => self.reattach_failed(id, &setup, e),
            Err(e) if stale_frontend => {
                // Rings of a frontend that was connected to a previous netback (a Linux
                // netfront keeps them and expects us to use them; ours tears them down
                // and starts over): not a protocol violation.
                log::info!(
                    "{id}: the rings the frontend set up before this netback \
                     started are unusable ({e}); waiting for it to reconnect"
                );
                self.disconnect(id);
            }
            Err(e) if retry && self.frontend_setup(id) != setup => {
                // The frontend changed its state or keys while we read them and mapped
                // its rings (it was closing, or starting over): what failed was its
                // previous set-up, not a protocol violation. Follow its current state,
                // once.
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
    /// `None`): compared before and after a failed connect. With several queues, each
    /// `queue-N/` directory's keys too (as many queues as `multi-queue-num-queues` says,
    /// at most the number offered).
    fn frontend_setup(&self, id: VifId) -> Vec<Option<Vec<u8>>> {
        let Some(d) = self.devices.get(&id) else {
            return Vec::new();
        };
        let read = |path: String| self.xs.try_read(XsTx::NONE, &path).ok().flatten();
        let fe = &d.frontend_path;
        let mut keys: Vec<Option<Vec<u8>>> = ["state", queues::NUM_QUEUES_KEY]
            .iter()
            .map(|k| read(format!("{fe}/{k}")))
            .collect();
        let count = keys[1]
            .as_deref()
            .and_then(|v| xenbus::parse_u64(v, u64::from(d.max_queues)))
            .unwrap_or(1);
        let dirs: Vec<String> = if count <= 1 {
            vec![fe.clone()]
        } else {
            (0..count as u32)
                .map(|q| queues::queue_dir(fe, count as u32, q))
                .collect()
        };
        for dir in dirs {
            keys.extend(RING_KEYS.iter().map(|k| read(format!("{dir}/{k}"))));
        }
        keys
    }

    /// Reads and checks the frontend's keys, then has the vif's worker map its
    /// rings and bind its event channel. `reattach`: the rings are taken over from a
    /// previous netback (see [`Device::reattach`]); they must be the ones it recorded.
    fn connect(&mut self, id: VifId, reattach: bool) -> Result<(), ConnectError> {
        let d = self.devices.get(&id).ok_or(ConnectError::NoDevice)?;
        let xs = &self.xs;
        let fe = d.frontend_path.clone();
        let rd_or = |k: &str, max: u64, def: u64| {
            xenbus::read_u64_or(xs, XsTx::NONE, &format!("{fe}/{k}"), max, def)
        };
        let count = queues::read_count(xs, &fe, d.max_queues)?;
        let queues = queues::read_queues(xs, &fe, count)?;
        let feat = features::read_frontend_with(xs, &fe, queues[0].channels)?;
        let credits_req = rd_or("request-dba-credits", u16::MAX as u64, 0)?;
        let credits = self.credits && credits_req >= 1;
        if credits_req > self.credit_version as u64 && self.credits {
            return Err(ConnectError::CreditVersion(credits_req));
        }
        let rings = queues::record(&queues);
        let record = format!("{}/{RINGS_KEY}", d.backend_path);
        if reattach {
            check_recorded_rings(xs, &record, &rings)?;
        }
        let setup = FrontendSetup {
            queues,
            features: feat,
            credits,
            credit_version: credits_req.clamp(1, CREDIT_VERSION as u64) as u16,
            reattach,
        };
        let rate = d.config.rate;
        let created = self
            .link
            .connect(id, setup, rate)
            .ok_or(ConnectError::Stopping)??;
        if let Some(d) = self.devices.get_mut(&id) {
            d.connection = Some(created);
        }
        if let Err(e) = self.xs.write(XsTx::NONE, &record, rings.as_bytes()) {
            log::warn!("{id}: write {record}: {e}; a restarted netback will not check the rings");
        }
        Ok(())
    }

    fn disconnect(&mut self, id: VifId) {
        if let Some(d) = self.devices.get_mut(&id) {
            d.connection = None;
            self.link.disconnect(id);
        }
    }

    /// Disconnects a misbehaving frontend: releases its rings and writes the reason in
    /// the backend's `error` node, then `Closing` (xenbus_dev_fatal).
    fn fail_device(&mut self, id: VifId, why: &str) {
        self.disconnect(id);
        if let Some(d) = self.devices.get(&id) {
            let path = format!("{}/error", d.backend_path);
            let _ = self.xs.write(XsTx::NONE, &path, why.as_bytes());
        }
        self.switch_state(id, XenbusState::Closing);
    }

    fn remove_device(&mut self, id: VifId) {
        self.work.forget(id);
        self.link.remove(id);
        if let Some(d) = self.devices.remove(&id) {
            let _ = self
                .xs
                .unwatch(&format!("{}/state", d.frontend_path), &fe_token(id));
            let _ = self.xs.unwatch(
                &d.backend_path,
                &format!("{TOKEN_SLA}{}:{}", id.domid.0, id.devid),
            );
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
    /// The device's port could not be opened or added to the event loop.
    #[error("port: {0}")]
    Port(#[source] io::Error),
    /// The vif's worker is gone (netback is stopping).
    #[error("netback is stopping")]
    Stopping,
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

/// The keys of one queue's rings and event channel(s), compared by
/// [`Control::frontend_setup`].
const RING_KEYS: [&str; 5] = [
    "tx-ring-ref",
    "rx-ring-ref",
    "event-channel",
    "event-channel-tx",
    "event-channel-rx",
];

/// The backend-directory key where netback records the rings it attached to
/// (`"<tx-ring-ref> <rx-ring-ref> <event-channel>"`, every queue's, `", "` between
/// queues: [`queues::record`]), for a restarted netback to check.
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
