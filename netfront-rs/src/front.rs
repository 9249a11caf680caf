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

use std::time::{Duration, Instant};

use crate::error::{BackendError, FrontError, HandshakeError};
use crate::rx::{RxAssembler, RxEvent};
use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::{ring_mem, FrontendPlatform};
use hypervisor::xenbus::{self, XenbusState};
use netport::cost::frame_cost;
use netport::negotiate::{Allowed, Offer};
use netport::{csum, FrameMeta, GsoKind};
use shared_ring::credit::{
    BackCounters, CreditArea, CreditReader, CreditReaderState, Credits, FrontCounters,
    CREDIT_VERSION,
};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetTxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxRequest, NetifRxResponse,
    NetifTxFrontRing, NetifTxRequest, NetifTxResponse, XenNetifExtraFlags, NETIF_RSP_DROPPED,
    NETIF_RSP_NULL, NETIF_RSP_OKAY,
};
use shared_ring::{Denied, DualTokenBucket, FrontIndices, Limit, XEN_PAGE_SIZE};
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
    tx_ring: S,
    rx_ring: S,
    tx_bufs: S,
    rx_bufs: S,
    /// Event channel of the TX ring, and of the RX ring (the same one unless split).
    tx_evtchn: EvtPort,
    rx_evtchn: EvtPort,
    tx_idx: FrontIndices,
    rx_idx: FrontIndices,
    tx_free: Vec<u16>,
    tx_in_flight: Vec<bool>,
    /// What may be sent to the backend (its feature keys).
    tx_allowed: Allowed,
    credits: Option<CreditReaderState>,
    /// The negotiated credit-area version (meaningful with `credits`).
    credit_version: u16,
    applied_generation: u32,
    unpushed: bool,
    rx: RxAssembler,
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
    conn: Option<Conn<<P::Grants as GrantShare>::Shared>>,
    bucket: DualTokenBucket,
    clock: Clock,
    /// When [`Netfront::maintain`] last restarted the handshake on its own (clock ns).
    last_restart_ns: Option<u64>,
    /// A frame whose partial checksum is completed before it is sent.
    tx_scratch: Vec<u8>,
    /// Counters.
    pub stats: FrontStats,
    /// The allowance the backend published.
    pub allowance: Allowance,
}

const TOKEN_BE_STATE: &str = "netfront-be-state";

/// Shortest time between two handshakes [`Netfront::maintain`] starts on its own, ns:
/// a backend that keeps failing this frontend is not hammered.
pub const RESTART_INTERVAL_NS: u64 = 200_000_000;

impl<P: FrontendPlatform> Netfront<P> {
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
            conn: None,
            bucket: DualTokenBucket::unlimited(now),
            clock,
            last_restart_ns: None,
            tx_scratch: Vec::new(),
            stats: FrontStats::default(),
            allowance: Allowance::default(),
        };
        nf.handshake()?;
        Ok(nf)
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
        (self.bucket.bytes.limit(), self.bucket.packets.limit())
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
        let grant = |what| move |source| HandshakeError::Grant { what, source };
        let ring = |what| move |source| HandshakeError::Ring { what, source };
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

        let grants = self.platform.grants();
        let peer = self.backend;
        let tx_ring = grants
            .share(peer, 1, Access::Writable)
            .map_err(grant("TX ring"))?;
        let rx_ring = grants
            .share(peer, 1, Access::Writable)
            .map_err(grant("RX ring"))?;
        let tx_bufs = grants
            .share(peer, TX_BUFS * TX_BUF / XEN_PAGE_SIZE, Access::ReadOnly)
            .map_err(grant("TX buffers"))?;
        let rx_bufs = grants
            .share(peer, RX_BUFS, Access::Writable)
            .map_err(grant("RX buffers"))?;
        NetifTxFrontRing::init(ring_mem(tx_ring.mem())).map_err(ring("TX ring"))?;
        let mut rx = NetifRxFrontRing::init(ring_mem(rx_ring.mem())).map_err(ring("RX ring"))?;
        // Post every RX buffer at the slot of its own index.
        for i in 0..RX_BUFS {
            rx.put_request(&NetifRxRequest {
                id: i as u16,
                pad: 0,
                gref: rx_bufs.grefs()[i].0,
            })
            .map_err(ring("post RX buffers"))?;
        }
        let rx_idx = rx.indices();
        let alloc = || {
            self.platform
                .evtchn()
                .alloc_unbound(peer)
                .map_err(HandshakeError::EventChannel)
        };
        let tx_evtchn = alloc()?;
        let rx_evtchn = if split {
            match alloc() {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.platform.evtchn().unbind(tx_evtchn);
                    return Err(e.into());
                }
            }
        } else {
            tx_evtchn
        };
        let tx_ref = tx_ring.grefs()[0].0;
        let rx_ref = rx_ring.grefs()[0].0;
        let fe = self.fe_path.clone();
        let offer = self.cfg.offer;
        with_transaction(xs, |tx| {
            let w = |k: &str, v: String| xs.write(tx, &format!("{fe}/{k}"), v.as_bytes());
            let rm = |k: &str| match xs.rm(tx, &format!("{fe}/{k}")) {
                Err(e) if !e.is_enoent() => Err(e),
                _ => Ok(()),
            };
            w("tx-ring-ref", tx_ref.to_string())?;
            w("rx-ring-ref", rx_ref.to_string())?;
            if split {
                rm("event-channel")?;
                w("event-channel-tx", tx_evtchn.0.to_string())?;
                w("event-channel-rx", rx_evtchn.0.to_string())?;
            } else {
                rm("event-channel-tx")?;
                rm("event-channel-rx")?;
                w("event-channel", tx_evtchn.0.to_string())?;
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
        })
        .map_err(|source| HandshakeError::Xenstore {
            what: "publish ring details",
            source,
        })?;
        let now = (self.clock)();
        self.conn = Some(Conn {
            tx_ring,
            rx_ring,
            tx_bufs,
            rx_bufs,
            tx_evtchn,
            rx_evtchn,
            tx_idx: FrontIndices::default(),
            rx_idx,
            tx_free: (0..TX_BUFS as u16).rev().collect(),
            tx_in_flight: vec![false; TX_BUFS],
            tx_allowed: Allowed::toward(&backend_offer),
            credits: credits.then(CreditReaderState::default),
            credit_version,
            applied_generation: 0,
            unpushed: false,
            rx: RxAssembler::new(),
        });
        self.bucket = DualTokenBucket::unlimited(now);
        self.wait_backend(&[XenbusState::Connected])?;
        // Publish the posted RX buffers and tell the backend.
        {
            let c = self.conn.as_mut().expect("just set");
            let mut rx = NetifRxFrontRing::resume(ring_mem(c.rx_ring.mem()), c.rx_idx)
                .map_err(ring("RX ring"))?;
            if rx.push_requests_and_check_notify() {
                let _ = self.platform.evtchn().notify(c.rx_evtchn);
            }
        }
        self.apply_credits();
        log::info!(
            "netfront {}: connected to {} (credits {}, split event channels {split}, may send {:?})",
            self.fe_path,
            self.be_path,
            if credits { "on" } else { "off" },
            Allowed::toward(&backend_offer),
        );
        Ok(())
    }

    /// Releases the rings, buffers and event channel (grants are revoked).
    pub fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = self.platform.evtchn().unbind(c.tx_evtchn);
            if c.rx_evtchn != c.tx_evtchn {
                let _ = self.platform.evtchn().unbind(c.rx_evtchn);
            }
            for s in [c.tx_ring, c.rx_ring, c.tx_bufs, c.rx_bufs] {
                if let Err(e) = s.revoke() {
                    log::warn!("netfront {}: revoke: {e}", self.fe_path);
                }
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
        let Some(c) = self.conn.as_mut() else { return };
        let Some(state) = c.credits else { return };
        let page = ring_mem(c.tx_ring.mem());
        let area = match CreditArea::in_tx_page_version(page, c.credit_version) {
            Ok(a) => a,
            Err(_) => return,
        };
        let mut r = CreditReader::resume(area, state);
        match r.poll() {
            Ok(Some(snap)) => {
                self.bucket
                    .set_limits(snap.credits.bytes, snap.credits.packets, now);
                c.applied_generation = snap.generation;
                self.stats.credit_updates += 1;
                self.allowance.version = c.credit_version;
                self.allowance.tx = Some(snap.credits);
                self.allowance.rx = snap.rx;
            }
            Ok(None) => {}
            Err(e) => log::debug!("netfront {}: credit area: {e}", self.fe_path),
        }
        if let Ok(Some(b)) = r.back_counters() {
            self.allowance.shaped = Some(b);
        }
        // Publish our counters (hints for the backend's monitoring).
        r.publish_counters(&FrontCounters {
            front_version: c.credit_version as u32,
            applied_generation: c.applied_generation,
            tx_packets: self.stats.tx_wire_packets,
            tx_bytes: self.stats.tx_wire_bytes,
            dropped_packets: self.stats.tx_dropped_credit_wire_packets,
            dropped_bytes: self.stats.tx_dropped_credit_wire_bytes,
            held: self.stats.tx_held,
        });
        c.credits = Some(r.state());
    }

    /// Offers one frame: charged to the credits, then copied into granted buffers and
    /// put on the TX ring (published by [`Netfront::flush`]).
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
        let Some(c) = self.conn.as_mut() else {
            return Err(FrontError::NotConnected);
        };
        if frame.is_empty() || frame.len() > MAX_TX_FRAME {
            return Ok(Sent::TooBig);
        }
        // Only what the backend agreed to take.
        let checked = match c.tx_allowed.check(frame, meta) {
            Ok(checked) => checked,
            Err(e) => {
                log::debug!("netfront {}: frame not sent: {e}", self.fe_path);
                self.stats.tx_refused_offload += 1;
                return Ok(Sent::TooBig);
            }
        };
        let meta = &checked.meta;
        let nbufs = frame.len().div_ceil(TX_BUF);
        let gso = meta.gso;
        let nslots = nbufs + gso.is_some() as usize;
        let mut ring = NetifTxFrontRing::resume(ring_mem(c.tx_ring.mem()), c.tx_idx)
            .map_err(BackendError::tx_ring)?;
        if c.tx_free.len() < nbufs || (ring.free_requests() as usize) < nslots {
            return Ok(Sent::RingFull);
        }
        let frame = if checked.csum_filled {
            self.tx_scratch.clear();
            self.tx_scratch.extend_from_slice(frame);
            if let Err(e) = csum::fill_partial_checksum(&mut self.tx_scratch) {
                log::debug!("netfront {}: frame not sent: {e}", self.fe_path);
                self.stats.tx_refused_offload += 1;
                return Ok(Sent::TooBig);
            }
            self.stats.tx_csum_filled += 1;
            &self.tx_scratch[..]
        } else {
            frame
        };
        let cost = frame_cost(frame, meta);
        match self.bucket.charge_wire(now, &cost) {
            Ok(()) => {}
            Err(_) if !self.cfg.enforce_credits => {}
            Err(Denied::Wait { ns }) if self.cfg.policy == CreditPolicy::Hold => {
                self.stats.tx_held += 1;
                return Ok(Sent::Held(now.saturating_add(ns)));
            }
            Err(_) => {
                self.stats.tx_dropped_credit += 1;
                self.stats.tx_dropped_credit_bytes += frame.len() as u64;
                self.stats.tx_dropped_credit_wire_packets += cost.packets;
                self.stats.tx_dropped_credit_wire_bytes += cost.bytes;
                return Ok(Sent::Dropped);
            }
        }
        let grefs = c.tx_bufs.grefs();
        let mut first_flags = NetTxFlags::empty();
        if meta.csum_blank {
            first_flags |= NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED;
        } else if meta.data_validated {
            first_flags |= NetTxFlags::DATA_VALIDATED;
        }
        if gso.is_some() {
            first_flags |= NetTxFlags::EXTRA_INFO;
        }
        for k in 0..nbufs {
            let id = c.tx_free.pop().expect("counted above");
            c.tx_in_flight[id as usize] = true;
            let off = 0usize;
            let chunk = &frame[k * TX_BUF..frame.len().min((k + 1) * TX_BUF)];
            let page = id as usize;
            c.tx_bufs
                .mem()
                .write(page * XEN_PAGE_SIZE + off, chunk)
                .map_err(|source| BackendError::Buffer {
                    which: "TX",
                    source,
                })?;
            let mut flags = if k == 0 {
                first_flags
            } else {
                NetTxFlags::empty()
            };
            if k + 1 < nbufs {
                flags |= NetTxFlags::MORE_DATA;
            }
            let req = NetifTxRequest {
                gref: grefs[page].0,
                offset: off as u16,
                flags: flags.bits(),
                id,
                size: if k == 0 {
                    frame.len() as u16
                } else {
                    chunk.len() as u16
                },
            };
            ring.put_request(&req).map_err(BackendError::tx_ring)?;
            if k == 0 {
                if let Some(g) = gso {
                    let t = match g.kind {
                        GsoKind::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
                        GsoKind::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
                    };
                    let extra = NetifExtraInfo::new(
                        &ExtraInfo::Gso {
                            size: g.size,
                            r#type: t,
                            features: 0,
                        },
                        XenNetifExtraFlags::empty(),
                    );
                    ring.put_request_as(&extra).map_err(BackendError::tx_ring)?;
                }
            }
        }
        c.tx_idx = ring.indices();
        c.unpushed = true;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += frame.len() as u64;
        self.stats.tx_wire_packets += cost.packets;
        self.stats.tx_wire_bytes += cost.bytes;
        Ok(Sent::Queued)
    }

    /// Publishes queued TX requests and notifies the backend if it asked to be.
    pub fn flush(&mut self) -> Result<(), FrontError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(FrontError::NotConnected);
        };
        if !c.unpushed {
            return Ok(());
        }
        let mut ring = NetifTxFrontRing::resume(ring_mem(c.tx_ring.mem()), c.tx_idx)
            .map_err(BackendError::tx_ring)?;
        c.unpushed = false;
        if ring.push_requests_and_check_notify() {
            let _ = self.platform.evtchn().notify(c.tx_evtchn);
        }
        Ok(())
    }

    /// Collects TX responses and frees their buffers; returns how many frames
    /// completed. A backend that answers an id it was never given is disconnected.
    pub fn reap_tx(&mut self) -> Result<usize, FrontError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(FrontError::NotConnected);
        };
        let mut ring = NetifTxFrontRing::resume(ring_mem(c.tx_ring.mem()), c.tx_idx)
            .map_err(BackendError::tx_ring)?;
        let mut done = 0;
        loop {
            let mut p = ring.responses().map_err(BackendError::tx_ring)?;
            let n = p.len();
            if n == 0 {
                break;
            }
            for i in 0..n {
                let r: NetifTxResponse = p.copy(i).expect("within the snapshot");
                if r.status == NETIF_RSP_NULL {
                    continue;
                }
                let id = r.id as usize;
                if id >= TX_BUFS || !c.tx_in_flight[id] {
                    c.tx_idx = ring.indices();
                    return Err(BackendError::UnknownTxId(id).into());
                }
                c.tx_in_flight[id] = false;
                c.tx_free.push(id as u16);
                match r.status {
                    NETIF_RSP_OKAY => {}
                    NETIF_RSP_DROPPED => self.stats.tx_dropped_back += 1,
                    _ => self.stats.tx_errors += 1,
                }
                done += 1;
            }
            p.consume(n);
            if !ring
                .final_check_for_responses()
                .map_err(BackendError::tx_ring)?
            {
                break;
            }
        }
        c.tx_idx = ring.indices();
        Ok(done)
    }

    /// Receives the next frame into `buf` (which must hold 64 KiB to be safe), reposting
    /// the buffers it used. `Ok(None)` when no complete frame is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(usize, FrameMeta)>, FrontError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(FrontError::NotConnected);
        };
        let mut ring = NetifRxFrontRing::resume(ring_mem(c.rx_ring.mem()), c.rx_idx)
            .map_err(BackendError::rx_ring)?;
        let mut out: Option<(usize, FrameMeta)> = None;
        let mut consumed = 0u32;
        {
            let mut p = ring.responses().map_err(BackendError::rx_ring)?;
            let n = p.len();
            let mut i = 0;
            // Until a frame is complete and no extra-info slot of it is pending.
            while i < n && (out.is_none() || c.rx.expects_extra()) {
                let slot = p.cons().wrapping_add(i);
                let ev = if c.rx.expects_extra() {
                    let e: NetifExtraInfo = p.copy(i).expect("within the snapshot");
                    i += 1;
                    // GSO metadata of the frame already handed out in `out`.
                    if let (Some(m), Some((_, ref mut meta))) = (c.rx.extra(&e), &mut out) {
                        *meta = m;
                    }
                    RxEvent::Pending
                } else {
                    let r: NetifRxResponse = p.copy(i).expect("within the snapshot");
                    i += 1;
                    let page = (slot as usize) & (RX_BUFS - 1);
                    let bufs = &c.rx_bufs;
                    c.rx.response(&r, |offset, dst| {
                        bufs.mem()
                            .read(page * XEN_PAGE_SIZE + offset, dst)
                            .map_err(|source| BackendError::Buffer {
                                which: "RX",
                                source,
                            })
                    })?
                };
                match ev {
                    RxEvent::Pending => {}
                    RxEvent::Dropped => self.stats.rx_errors += 1,
                    RxEvent::Frame(meta) => {
                        let frame = c.rx.frame();
                        if frame.len() > buf.len() {
                            self.stats.rx_errors += 1;
                        } else {
                            buf[..frame.len()].copy_from_slice(frame);
                            self.stats.rx_packets += 1;
                            self.stats.rx_bytes += frame.len() as u64;
                            out = Some((frame.len(), meta));
                        }
                    }
                }
            }
            consumed = consumed.wrapping_add(i);
            p.consume(i);
        }
        // Repost the consumed buffers at their slots.
        if consumed > 0 {
            for _ in 0..consumed {
                let idx = ring.req_prod_pvt();
                let b = (idx as usize) & (RX_BUFS - 1);
                ring.put_request(&NetifRxRequest {
                    id: b as u16,
                    pad: 0,
                    gref: c.rx_bufs.grefs()[b].0,
                })
                .map_err(BackendError::rx_ring)?;
            }
            if ring.push_requests_and_check_notify() {
                let _ = self.platform.evtchn().notify(c.rx_evtchn);
            }
        }
        if out.is_none() {
            // Nothing complete: ask to be notified of the next response.
            let _ = ring
                .final_check_for_responses()
                .map_err(BackendError::rx_ring)?;
        }
        c.rx_idx = ring.indices();
        Ok(out)
    }

    /// Acknowledges fired event channels (call when the event fd is readable).
    pub fn ack_events(&mut self) {
        let mut ports = [EvtPort(0); 16];
        if let Ok(n) = self.platform.evtchn().pending(&mut ports) {
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
            .is_some_and(|c| c.tx_evtchn != c.rx_evtchn)
    }
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
