//! The netfront device: the xenbus frontend handshake, the persistent granted buffer
//! pools, credit enforcement and the TX/RX ring paths.
//!
//! Buffers are granted once, at connect time, and reused for every frame (no grant per
//! packet): 256 TX pages (granted read-only) — one per TX ring slot — and 256 RX pages
//! (granted writable), one per RX ring slot, always posted at the slot of the same index
//! (the backend answers each RX request in the slot it consumed, `netif.h`).
//!
//! Credits (`docs/protocol.md` §2): before a frame costs a slot, a buffer, a copy or a
//! notification, its wire cost ([`shared_ring::WireCost`]: a GSO frame costs the
//! segments it becomes and their headers) is charged to the dual token bucket fed by
//! the credit area. Policy
//! `drop` (the paper) discards it and counts it; policy `hold` refuses it with the exact
//! time at which tokens will be there, so the caller stops taking frames until then.

pub(crate) mod lane;
pub mod mq;
pub(crate) mod queue;
pub mod stats;
mod tx_pages;

pub use queue::MAX_PORT_PAGES;

use std::time::{Duration, Instant};

use crate::error::{FrontError, HandshakeError};
use crate::mq::{CreditsRef, QueueCounters, Split};
use crate::queue::{Queue, TxPolicy};
use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{GrantShare, SharedPages};
use hypervisor::platform::{ring_mem, FrontendPlatform};
use hypervisor::xenbus::{self, XenbusState};
use netport::negotiate::{Allowed, Offer};
use netport::FrameMeta;
use shared_ring::credit::{
    BackCounters, CreditArea, CreditReader, CreditReaderState, Credits, FrontCounters,
    CREDIT_VERSION,
};
use shared_ring::{Limit, SharedDualBucket, XEN_PAGE_SIZE};
use xen_ids::DomId;
use xenstore::{with_transaction, Xenstore, XsTx};

/// TX buffer size: one page, so that a 64 KiB GSO frame takes 16 slots (+ its GSO
/// extra), within the 18 slots every backend accepts.
pub const TX_BUF: usize = XEN_PAGE_SIZE;
/// TX buffers (= TX ring slots).
pub const TX_BUFS: usize = 256;
/// RX buffers (= RX ring slots), one page each.
pub const RX_BUFS: usize = 256;
/// Largest frame this frontend sends: `XEN_NETIF_MAX_TX_SIZE` (the first request's
/// `size` is 16 bits).
pub const MAX_TX_FRAME: usize = 65535;
/// Most queues this frontend asks for (and most it believes a backend offers).
pub const MAX_QUEUES: usize = 64;

/// What to do with a frame that exceeds the credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditPolicy {
    /// Drop it and count it (the DBA-VM paper).
    Drop,
    /// Refuse it until tokens return (backpressure: the caller keeps the frame).
    Hold,
}

/// Netfront settings.
#[derive(Debug, Clone)]
pub struct NetfrontConfig {
    /// Device id under `device/vif/`.
    pub devid: u32,
    /// Credit policy.
    pub policy: CreditPolicy,
    /// Ask for the credit area when the backend offers it.
    pub request_credits: bool,
    /// How long to wait for each handshake step.
    pub timeout: Duration,
    /// Enforce the credits (always true in production). `false` negotiates the credit
    /// area but sends regardless: a misbehaving guest, for testing the backend's
    /// backstop.
    pub enforce_credits: bool,
    /// What this frontend takes on RX, written as its feature keys (`feature-sg`,
    /// `feature-no-csum-offload`, `feature-ipv6-csum-offload`, `feature-gso-tcpv4/6`):
    /// the backend sends nothing else. GSO only when the port takes GSO frames (a TAP
    /// with a virtio-net header does; a plain MTU-sized consumer does not).
    pub offer: Offer,
    /// Use split event channels (one for each ring) when the backend offers
    /// `feature-split-event-channels`.
    pub split_event_channels: bool,
    /// Queues to ask for (`multi-queue-num-queues`), capped by the backend's
    /// `multi-queue-max-queues`; 1 (flat keys, as a backend without multi-queue
    /// expects) when the backend does not offer it.
    pub queues: usize,
    /// The highest credit-area layout version to request (`request-dba-credits` is the
    /// smaller of it and the backend's `feature-dba-credits`). Default
    /// [`CREDIT_VERSION`]; 1 behaves as a version-1 frontend.
    pub credit_version: u16,
}

impl NetfrontConfig {
    /// Defaults for device `devid`: credits requested, policy `drop`, 10 s timeout.
    pub fn new(devid: u32) -> Self {
        NetfrontConfig {
            devid,
            policy: CreditPolicy::Drop,
            request_credits: true,
            timeout: Duration::from_secs(10),
            enforce_credits: true,
            offer: Offer {
                gso_tcpv4: false,
                gso_tcpv6: false,
                ..Offer::ALL
            },
            split_event_channels: true,
            queues: 1,
            credit_version: CREDIT_VERSION,
        }
    }
}

/// The result of offering a frame for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// On the ring (published at the next [`Netfront::flush`]).
    Queued,
    /// Dropped for lack of credits (policy `drop`, or a frame the budget can never pass).
    Dropped,
    /// Refused until this time (ns, the frontend's clock): policy `hold`. Keep the frame.
    Held(u64),
    /// No free slot or buffer: keep the frame and retry after completions arrive.
    RingFull,
    /// Larger than [`MAX_TX_FRAME`] or empty: dropped.
    TooBig,
}

impl core::fmt::Display for Allowance {
    /// One line: the budgets and what netback shaped, per direction.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fn limit(l: Limit, unit: &str) -> String {
            match l {
                Limit::Unlimited => "unlimited".into(),
                Limit::Rate { per_sec, burst } => format!("{per_sec} {unit}/s (burst {burst})"),
            }
        }
        fn budget(c: Option<Credits>) -> String {
            c.map_or("unknown".into(), |c| {
                format!("{}, {}", limit(c.bytes, "B"), limit(c.packets, "pkt"))
            })
        }
        write!(
            f,
            "allowance (credit area v{}): TX {}; RX {}",
            self.version,
            budget(self.tx),
            budget(self.rx)
        )?;
        if let Some(s) = self.shaped {
            write!(
                f,
                "; shaped by netback: TX {} frames / {} B for bits/s, {} frames for packets/s; \
                 RX {} frames / {} B for bits/s, {} frames for packets/s",
                s.tx_shaped_bps_frames,
                s.tx_shaped_bps_bytes,
                s.tx_shaped_pps_frames,
                s.rx_shaped_bps_frames,
                s.rx_shaped_bps_bytes,
                s.rx_shaped_pps_frames
            )?;
        }
        Ok(())
    }
}

/// Counters of the frontend (published to the backend as hints when credits are on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Frames put on the TX ring.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Wire packets of those frames (a GSO frame: its segments), the unit of the
    /// packets/s budget.
    pub tx_wire_packets: u64,
    /// Their wire bytes (each segment's headers included), the unit of the bits/s
    /// budget.
    pub tx_wire_bytes: u64,
    /// Frames dropped for lack of credits.
    pub tx_dropped_credit: u64,
    /// Their bytes.
    pub tx_dropped_credit_bytes: u64,
    /// Wire packets of those frames.
    pub tx_dropped_credit_wire_packets: u64,
    /// Their wire bytes.
    pub tx_dropped_credit_wire_bytes: u64,
    /// Times a frame was held (policy hold).
    pub tx_held: u64,
    /// TX responses with an error status.
    pub tx_errors: u64,
    /// TX responses `NETIF_RSP_DROPPED` (policed by the backend).
    pub tx_dropped_back: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// RX frames discarded (error status, bad offsets, oversize).
    pub rx_errors: u64,
    /// Frames not sent because the backend did not agree to their offload and software
    /// cannot do it (a GSO type it did not offer, more than one slot without
    /// `feature-sg`): [`Sent::TooBig`].
    pub tx_refused_offload: u64,
    /// Frames sent with their partial checksum completed here (the backend did not
    /// agree to take it partial).
    pub tx_csum_filled: u64,
    /// Credit generations applied.
    pub credit_updates: u64,
    /// Notifications sent to the backend on the TX ring's event channel.
    pub tx_notifies: u64,
    /// Event-channel events taken (each fired port counts once).
    pub events: u64,
    /// Notifications sent to the backend on the RX ring's event channel (buffers
    /// posted past the backend's `req_event`).
    pub rx_notifies: u64,
    /// Times a receive, about to report an empty RX ring, found responses the backend
    /// had published while this side asked for the next one (and took them).
    pub rx_raced: u64,
    /// Waits of the event loop that ended at their timeout with nothing ready.
    pub timeouts: u64,
    /// Of those, the ones after which frames were found waiting on a ring: a
    /// notification the backend did not send (or this side did not ask for) and the
    /// timeout stood in for.
    pub late_wakeups: u64,
}

/// What the backend told this frontend about its allowance (the credit area): the
/// budgets in force and, with layout version 2, the RX budget and the backend's shaping
/// counters (`netfront stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    /// The negotiated credit-area version (0: no credit area).
    pub version: u16,
    /// The TX budget last applied.
    pub tx: Option<Credits>,
    /// The RX budget netback enforces before it copies into this guest (version 2).
    pub rx: Option<Credits>,
    /// Frames (and bytes) netback held or dropped, per direction and budget (version 2).
    pub shaped: Option<BackCounters>,
}

struct Conn<S> {
    /// The queues; queue 0's TX ring page holds the credit area.
    queues: Vec<Queue<S>>,
    /// What may be sent to the backend (its feature keys).
    tx_allowed: Allowed,
    credits: Option<CreditReaderState>,
    /// The negotiated credit-area version (meaningful with `credits`).
    credit_version: u16,
    applied_generation: u32,
    /// Per-queue counters, summed into the credit area's frontend block
    /// ([`crate::mq`]).
    counters: Vec<QueueCounters>,
}

pub use hypervisor::clock::Clock;

pub use hypervisor::clock::monotonic_ns;

/// A netfront device.
pub struct Netfront<P: FrontendPlatform> {
    platform: P,
    cfg: NetfrontConfig,
    fe_path: String,
    be_path: String,
    backend: DomId,
    /// The vif's MAC as the toolstack wrote it in the frontend directory (`mac`).
    mac: Option<[u8; 6]>,
    conn: Option<Conn<<P::Grants as GrantShare>::Shared>>,
    /// The per-vif credit bucket, shared by every queue.
    bucket: SharedDualBucket,
    clock: Clock,
    /// When [`Netfront::maintain`] last restarted the handshake on its own (clock ns).
    last_restart_ns: Option<u64>,
    /// Counters.
    pub stats: FrontStats,
    /// The allowance the backend published.
    pub allowance: Allowance,
    /// The state file for `netfront stats`, when set: the event loops rewrite it
    /// ([`stats::StatsFile::maybe_write`]).
    pub stats_file: Option<stats::StatsFile>,
}

const TOKEN_BE_STATE: &str = "netfront-be-state";

/// Shortest time between two handshakes [`Netfront::maintain`] starts on its own, ns:
/// a backend that keeps failing this frontend is not hammered.
pub const RESTART_INTERVAL_NS: u64 = 200_000_000;

impl<P: FrontendPlatform> Netfront<P> {
    /// Rewrites the state file for `netfront stats`, if set and due (O(1) otherwise).
    pub fn note_stats(&mut self, now: u64) {
        let connected = self.is_connected();
        if let Some(f) = self.stats_file.as_mut() {
            f.maybe_write(now, connected, &self.stats, &self.allowance);
        }
    }

    /// Finds device `cfg.devid` of this domain in xenstore and connects to its backend.
    pub fn connect(platform: P, cfg: NetfrontConfig, clock: Clock) -> Result<Self, FrontError> {
        let fe_path = format!(
            "/local/domain/{}/device/vif/{}",
            platform.domid().0,
            cfg.devid
        );
        let xs = platform.xenstore();
        let be_path = xenbus::read_str(xs, XsTx::NONE, &format!("{fe_path}/backend"), 256)?;
        let backend = xenbus::read_domid(xs, XsTx::NONE, &format!("{fe_path}/backend-id"))?;
        let mac = read_toolstack_mac(xs, &fe_path);
        xs.watch(&format!("{be_path}/state"), TOKEN_BE_STATE)
            .map_err(|source| HandshakeError::Xenstore {
                what: "watch the backend's state",
                source,
            })?;
        let now = clock();
        let mut nf = Netfront {
            platform,
            cfg,
            fe_path,
            be_path,
            backend,
            mac,
            conn: None,
            bucket: SharedDualBucket::unlimited(now),
            clock,
            last_restart_ns: None,
            stats: FrontStats::default(),
            allowance: Allowance::default(),
            stats_file: None,
        };
        nf.handshake()?;
        Ok(nf)
    }

    /// The vif's MAC address as the toolstack assigned it (the `mac` key of the frontend
    /// directory, libxl's `mac=`), for the guest's interface; `None` when the key is
    /// missing or malformed (logged).
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The time on this driver's clock (the one injected at [`Netfront::connect`]): the
    /// time every caller must pass to [`Netfront::send_at`] and use for deadlines.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// True when connected to the backend.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Whether the credit area was negotiated.
    pub fn has_credits(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.credits.is_some())
    }

    /// The current credit limits (bytes, packets).
    pub fn limits(&self) -> (Limit, Limit) {
        self.bucket.limits()
    }

    fn backend_state(&self) -> Result<XenbusState, FrontError> {
        let path = format!("{}/state", self.be_path);
        Ok(xenbus::read_state(self.platform.xenstore(), &path)?)
    }

    fn wait_backend(&mut self, want: &[XenbusState]) -> Result<XenbusState, FrontError> {
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let s = self.backend_state()?;
            if want.contains(&s) {
                return Ok(s);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeError::Timeout {
                    backend: self.be_path.clone(),
                    state: s,
                    expected: want.to_vec(),
                }
                .into());
            }
            let _ = self
                .platform
                .xenstore()
                .wait_event(Some(left.min(Duration::from_millis(100))));
        }
    }

    fn set_state(&self, s: XenbusState) -> Result<(), FrontError> {
        self.platform
            .xenstore()
            .write(
                XsTx::NONE,
                &format!("{}/state", self.fe_path),
                s.as_str().as_bytes(),
            )
            .map_err(|source| {
                HandshakeError::Xenstore {
                    what: "write state",
                    source,
                }
                .into()
            })
    }

    /// The frontend half of the xenbus handshake (as Linux's `talk_to_netback`).
    fn handshake(&mut self) -> Result<(), FrontError> {
        self.set_state(XenbusState::Initialising)?;
        // Only InitWait is an answer to *this* handshake: a backend still `Connected` is
        // serving a previous instance of this frontend (one that died without closing);
        // it drops those rings when it sees `Initialising` and answers `InitWait`.
        // Racing ahead would leave it serving the dead rings.
        self.wait_backend(&[XenbusState::InitWait])?;
        let xs = self.platform.xenstore();
        let be = &self.be_path;
        let feat =
            |k: &str| xenbus::read_u64_or(xs, XsTx::NONE, &format!("{be}/{k}"), u16::MAX as u64, 0);
        if feat("feature-rx-copy")? != 1 {
            return Err(HandshakeError::MissingFeature("feature-rx-copy").into());
        }
        let credits_offered = feat("feature-dba-credits")?;
        let backend_offer = read_offer(xs, be)?;
        let split = self.cfg.split_event_channels && feat("feature-split-event-channels")? == 1;
        let credits = self.cfg.request_credits && credits_offered >= 1;
        let credit_version = CREDIT_VERSION
            .min(self.cfg.credit_version)
            .min(credits_offered.min(u16::MAX as u64) as u16)
            .max(1);

        let max_queues = read_max_queues(xs, be)?;
        let nq = self.cfg.queues.clamp(1, max_queues.unwrap_or(1));

        let queues = self.setup_queues(nq, split)?;
        let fe = self.fe_path.clone();
        let offer = self.cfg.offer;
        let published = with_transaction(xs, |tx| {
            let w = |k: &str, v: String| xs.write(tx, &format!("{fe}/{k}"), v.as_bytes());
            let rm = |k: &str| remove(xs, tx, &format!("{fe}/{k}"));
            // As Linux's netfront: the count only to a backend that offers multi-queue,
            // a single queue's keys flat in the device directory, several queues' each
            // in its `queue-N`. Keys of another layout left by an earlier connection go.
            if max_queues.is_some() {
                w("multi-queue-num-queues", nq.to_string())?;
            } else {
                rm("multi-queue-num-queues")?;
            }
            if nq == 1 {
                queues[0].write_keys(xs, tx, &fe)?;
            } else {
                for k in ["tx-ring-ref", "rx-ring-ref", "event-channel"] {
                    rm(k)?;
                }
                rm("event-channel-tx")?;
                rm("event-channel-rx")?;
                for (i, q) in queues.iter().enumerate() {
                    q.write_keys(xs, tx, &format!("{fe}/queue-{i}"))?;
                }
            }
            for i in (if nq == 1 { 0 } else { nq })..max_queues.unwrap_or(0).max(nq) {
                rm(&format!("queue-{i}"))?;
            }
            w("request-rx-copy", "1".into())?;
            w("feature-rx-notify", "1".into())?;
            for (k, v) in offer.keys() {
                w(k, v.into())?;
            }
            if credits {
                w("request-dba-credits", credit_version.to_string())?;
            } else {
                rm("request-dba-credits")?;
            }
            w("state", XenbusState::Connected.as_str().into())
        });
        if let Err(source) = published {
            for q in queues {
                q.release(self.platform.evtchn(), &self.fe_path);
            }
            return Err(HandshakeError::Xenstore {
                what: "publish ring details",
                source,
            }
            .into());
        }
        let now = (self.clock)();
        self.conn = Some(Conn {
            queues,
            tx_allowed: Allowed::toward(&backend_offer),
            credits: credits.then(CreditReaderState::default),
            credit_version,
            applied_generation: 0,
            counters: (0..nq).map(|_| QueueCounters::default()).collect(),
        });
        self.bucket = SharedDualBucket::unlimited(now);
        self.wait_backend(&[XenbusState::Connected])?;
        // Publish the posted RX buffers and tell the backend.
        let c = self.conn.as_mut().expect("just set");
        for q in &mut c.queues {
            q.publish_rx(self.platform.evtchn())?;
        }
        self.apply_credits();
        log::info!(
            "netfront {}: connected to {} ({nq} queue(s), credits {}, split event channels {split}, may send {:?})",
            self.fe_path,
            self.be_path,
            if credits { "on" } else { "off" },
            Allowed::toward(&backend_offer),
        );
        Ok(())
    }

    /// Grants and posts `n` queues; on failure, releases the ones already set up.
    fn setup_queues(
        &self,
        n: usize,
        split: bool,
    ) -> Result<Vec<Queue<<P::Grants as GrantShare>::Shared>>, HandshakeError> {
        let mut queues = Vec::with_capacity(n);
        for _ in 0..n {
            match Queue::setup(
                self.platform.grants(),
                self.platform.evtchn(),
                self.backend,
                split,
            ) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    for q in queues {
                        q.release(self.platform.evtchn(), &self.fe_path);
                    }
                    return Err(e);
                }
            }
        }
        Ok(queues)
    }

    /// Releases the rings, buffers and event channels of every queue (grants are
    /// revoked).
    pub fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            for q in c.queues {
                q.release(self.platform.evtchn(), &self.fe_path);
            }
        }
    }

    /// Handles xenstore events: follows the backend's state, disconnecting when it goes
    /// away and reconnecting when it is back (`InitWait`). Returns true when connected.
    pub fn maintain(&mut self) -> bool {
        let events = self.platform.xenstore().drain_events();
        if events.is_empty() && self.conn.is_some() {
            return true;
        }
        let s = self.backend_state().unwrap_or(XenbusState::Unknown);
        use XenbusState::*;
        match s {
            Closing | Closed | Unknown if self.conn.is_some() => {
                log::info!(
                    "netfront {}: backend is {:?}, disconnecting",
                    self.fe_path,
                    s
                );
                self.disconnect();
                let _ = self.set_state(Closing);
                let _ = self.set_state(Closed);
            }
            InitWait if self.conn.is_some() => {
                // The backend restarted under us.
                self.disconnect();
            }
            _ => {}
        }
        if self.conn.is_none() {
            let restart = match self.backend_state() {
                Ok(InitWait) => true,
                // Not connected, yet the backend is past InitWait: it serves rings this
                // frontend abandoned (it dropped them after a protocol error, or the
                // backend restarted and took up the refs of the previous connection) or
                // it failed this frontend. Start over from Initialising, which every
                // backend state answers with InitWait; at most every
                // RESTART_INTERVAL_NS.
                Ok(s @ (Initialised | Connected | Closing | Closed)) => {
                    let now = (self.clock)();
                    let due = self
                        .last_restart_ns
                        .is_none_or(|t| now.saturating_sub(t) >= RESTART_INTERVAL_NS);
                    if due {
                        self.last_restart_ns = Some(now);
                        log::info!(
                            "netfront {}: not connected, backend is {s:?}: restarting the handshake",
                            self.fe_path
                        );
                    }
                    due
                }
                _ => false,
            };
            if restart {
                if let Err(e) = self.handshake() {
                    log::warn!("netfront {}: reconnect: {e}", self.fe_path);
                }
            }
        }
        self.conn.is_some()
    }

    /// Reads the credit area and applies a new generation, if any.
    pub fn apply_credits(&mut self) {
        let now = (self.clock)();
        let counters = front_counters(&self.stats);
        let Some(c) = self.conn.as_mut() else { return };
        let Some(state) = c.credits.as_mut() else {
            return;
        };
        let mut credits = CreditsRef {
            state,
            applied_generation: &mut c.applied_generation,
            version: c.credit_version,
            allowance: &mut self.allowance,
            told: Default::default(),
            stats_file: None,
        };
        if poll_credits(
            &c.queues[0],
            &mut credits,
            &self.bucket,
            now,
            counters,
            &self.fe_path,
        ) {
            self.stats.credit_updates += 1;
        }
    }

    /// Lends the queues out, one [`crate::mq::QueueHandle`] each, to be driven by one
    /// thread each ([`crate::mq::run`]); `None` when not connected.
    pub fn split(&mut self) -> Option<Split<'_, P>> {
        let c = self.conn.as_mut()?;
        let policy = tx_policy(&self.bucket, &self.cfg, c.tx_allowed, &self.fe_path);
        let credits = c.credits.as_mut().map(|state| CreditsRef {
            state,
            applied_generation: &mut c.applied_generation,
            version: c.credit_version,
            allowance: &mut self.allowance,
            told: Default::default(),
            stats_file: self.stats_file.as_mut().map(|f| {
                (
                    f,
                    crate::mq::QueueCounters::before(&self.stats, &c.counters),
                )
            }),
        });
        Some(Split::new(
            self.platform.evtchn(),
            self.platform.xenstore(),
            &mut c.queues,
            policy,
            &self.clock,
            credits,
            &c.counters,
        ))
    }

    /// Offers one frame on queue 0: charged to the credits, then copied into granted
    /// buffers and put on the TX ring (published by [`Netfront::flush`]).
    pub fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> Result<Sent, FrontError> {
        let now = (self.clock)();
        self.send_at(now, frame, meta)
    }

    /// [`Netfront::send`] with the time given (one clock read per batch).
    pub fn send_at(
        &mut self,
        now: u64,
        frame: &[u8],
        meta: &FrameMeta,
    ) -> Result<Sent, FrontError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(FrontError::NotConnected);
        };
        let p = tx_policy(&self.bucket, &self.cfg, conn.tx_allowed, &self.fe_path);
        conn.queues[0].send_at(&p, &mut self.stats, now, frame, meta)
    }

    /// Offers the next frame of `port` on queue 0, read straight into granted TX pages
    /// (no copy in this process): room on the ring and pages for
    /// [`netport::Port::max_frame`] bytes are found before the port is read
    /// (`Sent::RingFull` when there is none: the port is not read); then the frame is
    /// checked and charged as [`Netfront::send_at`] does. A frame held for credits
    /// stays in its pages and is offered again, before the port is read, by the next
    /// call. `Ok(None)` when the port had no frame; [`FrontError::Port`] when it
    /// failed, [`FrontError::PortFrame`] when its frames may be longer than
    /// [`MAX_PORT_PAGES`] pages.
    pub fn send_from_port<T: netport::Port + ?Sized>(
        &mut self,
        now: u64,
        port: &mut T,
    ) -> Result<Option<Sent>, FrontError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(FrontError::NotConnected);
        };
        let p = tx_policy(&self.bucket, &self.cfg, conn.tx_allowed, &self.fe_path);
        conn.queues[0].send_from_port(&p, &mut self.stats, now, port)
    }

    /// Publishes queued TX requests of queue 0 and notifies the backend if it asked to
    /// be.
    pub fn flush(&mut self) -> Result<(), FrontError> {
        let c = self.conn.as_mut().ok_or(FrontError::NotConnected)?;
        c.queues[0].flush(self.platform.evtchn(), &mut self.stats)
    }

    /// Collects queue 0's TX responses and frees their buffers; returns how many frames
    /// completed. A backend that answers an id it was never given is disconnected.
    pub fn reap_tx(&mut self) -> Result<usize, FrontError> {
        let c = self.conn.as_mut().ok_or(FrontError::NotConnected)?;
        c.queues[0].reap_tx(&mut self.stats)
    }

    /// Receives the next frame of queue 0 into `buf` (which must hold 64 KiB to be
    /// safe), reposting the buffers it used. `Ok(None)` when no complete frame is
    /// waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(usize, FrameMeta)>, FrontError> {
        let c = self.conn.as_mut().ok_or(FrontError::NotConnected)?;
        c.queues[0].recv(self.platform.evtchn(), &mut self.stats, buf)
    }

    /// [`Netfront::recv`] without the copy into a caller's buffer: the frame stays in
    /// queue 0's reassembly buffer, [`Netfront::rx_frame`], until the next receive.
    pub fn recv_frame(&mut self) -> Result<Option<FrameMeta>, FrontError> {
        let c = self.conn.as_mut().ok_or(FrontError::NotConnected)?;
        c.queues[0].recv_frame(self.platform.evtchn(), &mut self.stats)
    }

    /// The frame the last [`Netfront::recv_frame`] returned, valid until the next
    /// receive (empty when not connected).
    pub fn rx_frame(&self) -> &[u8] {
        self.conn.as_ref().map_or(&[], |c| c.queues[0].rx_frame())
    }

    /// Whether responses are waiting on queue 0's RX ring that the backend will not
    /// notify of (the last [`Netfront::recv`] gave up after `RECV_PASSES` looks that each
    /// found more): the caller must call `recv` again without waiting for an event.
    pub fn rx_unarmed(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.queues[0].rx_unarmed())
    }

    /// The number of queues of the connection (0 when not connected).
    pub fn num_queues(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.queues.len())
    }

    /// Acknowledges fired event channels (call when the event fd is readable).
    pub fn ack_events(&mut self) {
        let mut ports = [EvtPort(0); 16];
        if let Ok(n) = self.platform.evtchn().pending(&mut ports) {
            self.stats.events += n as u64;
            for p in &ports[..n] {
                let _ = self.platform.evtchn().unmask(*p);
            }
        }
    }

    /// Whether the backend accepts GSO frames of both TCP versions: a port feeding
    /// this device may then produce any segmentation-offload frame up to 64 KiB. For the
    /// exact set, [`Netfront::tx_allowed`].
    pub fn backend_gso(&self) -> bool {
        self.tx_allowed().is_some_and(|a| a.gso_v4 && a.gso_v6)
    }

    /// What may be sent to the backend (its feature keys, [`Allowed::toward`]), while
    /// connected: a port feeding this device is best asked for exactly these offloads
    /// ([`netport::Port::set_offloads`]); frames beyond them are completed in software
    /// (checksums) or refused (GSO, multi-slot).
    pub fn tx_allowed(&self) -> Option<Allowed> {
        self.conn.as_ref().map(|c| c.tx_allowed)
    }

    /// Whether the rings use split event channels.
    pub fn split_event_channels(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.queues[0].tx_evtchn != c.queues[0].rx_evtchn)
    }
}

/// The backend's `multi-queue-max-queues`: `None` when it does not offer multi-queue;
/// 0 counts as 1.
fn read_max_queues<X: Xenstore + ?Sized>(
    xs: &X,
    be: &str,
) -> Result<Option<usize>, HandshakeError> {
    let path = format!("{be}/multi-queue-max-queues");
    let present = xs
        .try_read(XsTx::NONE, &path)
        .map_err(|source| HandshakeError::Xenstore {
            what: "read the backend's multi-queue-max-queues",
            source,
        })?
        .is_some();
    if !present {
        return Ok(None);
    }
    let max = xenbus::read_u64_or(xs, XsTx::NONE, &path, MAX_QUEUES as u64, 1)?;
    Ok(Some((max as usize).max(1)))
}

fn remove<X: Xenstore + ?Sized>(xs: &X, tx: XsTx, path: &str) -> Result<(), xenstore::XsError> {
    match xs.rm(tx, path) {
        Err(e) if !e.is_enoent() => Err(e),
        _ => Ok(()),
    }
}

/// The hints published in the credit area's frontend block.
pub(crate) fn front_counters(s: &FrontStats) -> FrontCounters {
    FrontCounters {
        front_version: CREDIT_VERSION as u32,
        applied_generation: 0,
        tx_packets: s.tx_wire_packets,
        tx_bytes: s.tx_wire_bytes,
        dropped_packets: s.tx_dropped_credit_wire_packets,
        dropped_bytes: s.tx_dropped_credit_wire_bytes,
        held: s.tx_held,
    }
}

/// Reads the credit area in queue 0's TX page (layout `c.version`), applies a new
/// generation to the shared bucket (true when it did), keeps what the backend tells in
/// `c.allowance` and publishes `counters`.
pub(crate) fn poll_credits<S: SharedPages>(
    q0: &Queue<S>,
    c: &mut CreditsRef<'_>,
    bucket: &SharedDualBucket,
    now: u64,
    mut counters: FrontCounters,
    name: &str,
) -> bool {
    let page = ring_mem(q0.tx_ring.mem());
    let Ok(area) = CreditArea::in_tx_page_version(page, c.version) else {
        return false;
    };
    let mut r = CreditReader::resume(area, *c.state);
    let mut applied = false;
    match r.poll() {
        Ok(Some(snap)) => {
            bucket.set_limits(snap.credits.bytes, snap.credits.packets, now);
            *c.applied_generation = snap.generation;
            c.allowance.version = c.version;
            c.allowance.tx = Some(snap.credits);
            c.allowance.rx = snap.rx;
            applied = true;
        }
        Ok(None) => {}
        Err(e) => log::debug!("netfront {name}: credit area: {e}"),
    }
    if let Ok(Some(b)) = r.back_counters() {
        c.allowance.shaped = Some(b);
    }
    counters.front_version = c.version as u32;
    counters.applied_generation = *c.applied_generation;
    r.publish_counters(&counters);
    *c.state = r.state();
    applied
}

/// The backend's offload keys (`netif.h` defaults for absent keys).
fn read_offer<X: Xenstore + ?Sized>(xs: &X, be: &str) -> Result<Offer, HandshakeError> {
    let mut failed = None;
    let offer = Offer::parse(|k| {
        let path = format!("{be}/{k}");
        xs.try_read(XsTx::NONE, &path).unwrap_or_else(|source| {
            failed.get_or_insert(HandshakeError::Xenstore {
                what: "read the backend's features",
                source,
            });
            None
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    offer.map_err(HandshakeError::BadFeature)
}

/// Reads the toolstack's `mac` key of the frontend directory. A missing key is `None`; a
/// malformed one is logged and `None` (the guest keeps a random address rather than not
/// coming up at all).
/// What every queue applies to the frames it sends, from the driver's fields (so that
/// its connection may be borrowed mutably beside them).
fn tx_policy<'a>(
    bucket: &'a SharedDualBucket,
    cfg: &NetfrontConfig,
    allowed: Allowed,
    name: &'a str,
) -> TxPolicy<'a> {
    TxPolicy {
        bucket,
        policy: cfg.policy,
        enforce: cfg.enforce_credits,
        allowed,
        name,
    }
}

fn read_toolstack_mac<X: Xenstore + ?Sized>(xs: &X, fe_path: &str) -> Option<[u8; 6]> {
    let path = format!("{fe_path}/mac");
    let v = match xenbus::read_str(xs, XsTx::NONE, &path, 32) {
        Ok(v) => v,
        Err(xenbus::XenbusError::Xs { source, .. }) if source.is_enoent() => return None,
        Err(e) => {
            log::warn!("netfront: {e}; the interface keeps a random MAC");
            return None;
        }
    };
    let mac = xenbus::parse_mac(&v);
    if mac.is_none() {
        log::warn!(
            "netfront: {path} = {v:?} is not a MAC address; the interface keeps a random MAC"
        );
    }
    mac
}
