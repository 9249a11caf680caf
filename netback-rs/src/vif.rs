//! One connected vif: its two mapped rings, its backstop buckets and the TX/RX data
//! path between the guest's grants and a [`Port`].
//!
//! TX (guest → port), per batch: one read of `req_prod`; for each packet, copy-once
//! parse and validate its slot chain ([`crate::tx`]), charge the backstop bucket
//! **before** any copy (refused frames are answered `NETIF_RSP_DROPPED` or, with the
//! hold policy, left on the ring until the exact deficit has accrued), then one batched
//! grant copy for all admitted packets, hand each frame to the port, and answer every
//! slot in ring order. Notifications only when the ring asks for them.
//!
//! RX (port → guest), per batch: police first, then place each frame into the guest's
//! posted buffers (multi-slot when larger than a page), one batched grant copy, and the
//! responses in the slots of the requests they answer.

use hypervisor::grant::{CopySegment, GntStatus, GrantCopy, GrantMapping, GrantRef};
use hypervisor::platform::ring_mem;
use netport::{FrameMeta, Gso as PortGso, GsoKind, Port};
use shared_ring::credit::{CreditArea, CreditPublisher, Credits};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetRxFlags, NetTxFlags, NetifExtraInfo, NetifRxBackRing, NetifRxRequest,
    NetifRxResponse, NetifTxBackRing, NetifTxResponse, XenNetifExtraFlags, NETIF_RSP_DROPPED,
    NETIF_RSP_ERROR, NETIF_RSP_OKAY,
};
use shared_ring::{BackIndices, Denied, DualTokenBucket, Limit, RingError, XEN_PAGE_SIZE};
use xen_ids::VifId;

use crate::meter::VifCounters;
use crate::tx::{drop_responses, parse_packet, FatalReason, TxError, TxPacket};

/// Packets handled per TX batch (one grant-copy call).
pub const TX_BATCH: usize = 64;
/// Frames handled per RX batch.
pub const RX_BATCH: usize = 64;
/// Largest frame delivered to a guest: a 64 KiB GSO frame spans 17 pages.
pub const MAX_RX_SLOTS: usize = 17;
const TX_ARENA: usize = 256 * 1024;
/// The backstop's smallest packet burst: frames a conforming frontend may have put on the
/// ring while this backend was not running (a quarter of the ring).
pub const BACKSTOP_MIN_PACKETS: u64 = 64;
/// How soon to retry a port that was full.
const PORT_RETRY_NS: u64 = 200_000;
const RX_ARENA: usize = RX_BATCH * 2048 + MAX_RX_SLOTS * XEN_PAGE_SIZE;

/// What the backstop does with a TX frame that exceeds the vif's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackstopPolicy {
    /// Answer `NETIF_RSP_DROPPED` without copying (the guest loses the frame).
    Drop,
    /// Leave the request on the ring until tokens return (backpressure, like Linux
    /// netback's `rate`): the guest's queue fills and it slows down.
    Hold,
}

/// Why a vif must be disconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VifFatal {
    /// A TX protocol violation.
    Tx(FatalReason),
    /// An impossible producer index on the TX or RX ring.
    Ring(&'static str, RingError),
}

impl core::fmt::Display for VifFatal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VifFatal::Tx(r) => write!(f, "{r}"),
            VifFatal::Ring(which, e) => write!(f, "{which} ring: {e}"),
        }
    }
}

/// The outcome of a poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    /// The frontend asked to be notified of new responses.
    pub notify: bool,
    /// Work is left (batch limit reached, or the final check found more): poll again.
    pub more: bool,
    /// TX is held until this time (ns) by the backstop; arm a timer.
    pub hold_until: Option<u64>,
}

/// One RX response to write, in ring order.
#[derive(Clone, Copy)]
enum RxOut {
    /// The first data slot of a frame: its length, and the GSO extra that follows it.
    First {
        rsp: NetifRxResponse,
        len: usize,
        extra: Option<NetifExtraInfo>,
    },
    /// A continuation data slot.
    More(NetifRxResponse),
}

// Entries live in a reused Vec; boxing the packet would allocate per packet.
#[allow(clippy::large_enum_variant)]
enum PlannedTx {
    Copy {
        pkt: TxPacket,
        arena_off: usize,
        segs: core::ops::Range<usize>,
    },
    Answered(core::ops::Range<usize>),
}

/// A connected vif. `M` is the grant mapping type of the platform.
pub struct Vif<M> {
    id: VifId,
    tx_map: M,
    rx_map: M,
    tx_idx: BackIndices,
    rx_idx: BackIndices,
    credits_generation: Option<u32>,
    /// Guest → port backstop (charged before the grant copy).
    pub tx_backstop: DualTokenBucket,
    /// What the TX backstop does with excess frames.
    pub tx_policy: BackstopPolicy,
    /// Port → guest policing (before the grant copy into the guest).
    pub rx_backstop: DualTokenBucket,
    /// Counters.
    pub counters: VifCounters,
    hold_until: Option<u64>,
    arena: Vec<u8>,
    segs: Vec<CopySegment>,
    plan: Vec<PlannedTx>,
    rsps: Vec<NetifTxResponse>,
    rx_arena: Vec<u8>,
    rx_rsps: Vec<RxOut>,
    /// The frontend takes GSO frames on RX (`feature-gso-tcpv4` in its directory).
    rx_gso: bool,
    rx_stash: Option<(usize, FrameMeta)>,
    rx_stash_buf: Vec<u8>,
    /// Copied TX frames the port could not take yet (offset and length in `arena`), in
    /// order, from `tx_stash_at`: the ring is not read again until they are sent.
    tx_stash: Vec<(usize, usize, FrameMeta)>,
    tx_stash_at: usize,
}

impl<M: GrantMapping> Vif<M> {
    /// A vif over its mapped TX and RX ring pages (each one page, writable). With
    /// `credits`, the credit area is published before the vif is used.
    pub fn new(id: VifId, tx_map: M, rx_map: M, credits: Option<&Credits>, now_ns: u64) -> Self {
        let mut v = Vif {
            id,
            tx_map,
            rx_map,
            tx_idx: BackIndices::default(),
            rx_idx: BackIndices::default(),
            credits_generation: None,
            tx_backstop: DualTokenBucket::unlimited(now_ns),
            tx_policy: BackstopPolicy::Drop,
            rx_backstop: DualTokenBucket::unlimited(now_ns),
            counters: VifCounters::default(),
            hold_until: None,
            arena: vec![0; TX_ARENA],
            segs: Vec::with_capacity(TX_BATCH * 4),
            plan: Vec::with_capacity(TX_BATCH),
            rsps: Vec::with_capacity(256),
            rx_arena: vec![0; RX_ARENA],
            rx_rsps: Vec::with_capacity(256),
            rx_gso: false,
            rx_stash: None,
            rx_stash_buf: vec![0; MAX_RX_SLOTS * XEN_PAGE_SIZE],
            tx_stash: Vec::with_capacity(TX_BATCH),
            tx_stash_at: 0,
        };
        if let Some(c) = credits {
            v.credits_generation = Some(0);
            v.set_tx_budget(c, now_ns);
        }
        v
    }

    /// The vif's id.
    pub fn id(&self) -> VifId {
        self.id
    }

    /// True when the frontend negotiated the credit area.
    pub fn has_credits(&self) -> bool {
        self.credits_generation.is_some()
    }

    /// Applies a TX budget: the backstop takes the same rates with more depth — twice
    /// the burst, and at least [`BACKSTOP_MIN_PACKETS`] packets — so that a conforming
    /// frontend is never policed here even when this backend is descheduled and finds
    /// frames on the ring that the frontend admitted over that time (`docs/protocol.md`
    /// §2.4); the budget is published in the credit area when negotiated.
    pub fn set_tx_budget(&mut self, c: &Credits, now_ns: u64) {
        let slack = |l: Limit, min: u64| match l {
            Limit::Unlimited => Limit::Unlimited,
            Limit::Rate { per_sec, burst } => Limit::Rate {
                per_sec,
                burst: burst
                    .saturating_mul(2)
                    .max(if per_sec == 0 { 0 } else { min }),
            },
        };
        self.tx_backstop.set_limits(
            slack(c.bytes, 0),
            slack(c.packets, BACKSTOP_MIN_PACKETS),
            now_ns,
        );
        if let Some(generation) = self.credits_generation {
            let mem = ring_mem(self.tx_map.mem());
            if let Ok(area) = CreditArea::in_tx_page(mem) {
                let mut p = CreditPublisher::resume(area, generation);
                p.publish(c);
                self.credits_generation = Some(p.generation());
            }
        }
    }

    /// Whether GSO frames may be delivered to the frontend (its `feature-gso-tcpv4`).
    pub fn set_rx_gso(&mut self, on: bool) {
        self.rx_gso = on;
    }

    /// The frontend's self-reported counters, if it publishes them (untrusted hints).
    pub fn front_counters(&self) -> Option<shared_ring::credit::FrontCounters> {
        let generation = self.credits_generation?;
        let area = CreditArea::in_tx_page(ring_mem(self.tx_map.mem())).ok()?;
        CreditPublisher::resume(area, generation)
            .front_counters()
            .ok()
    }

    /// Releases the mappings.
    pub fn into_mappings(self) -> (M, M) {
        (self.tx_map, self.rx_map)
    }

    /// Guest → port: processes TX requests.
    pub fn tx_poll<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        now_ns: u64,
        grants: &G,
        port: &mut P,
    ) -> Result<Poll, VifFatal> {
        self.tx_poll_limited(now_ns, grants, port, None)
    }

    /// [`Vif::tx_poll`] with a backend-wide packet budget: every request chain read from
    /// the ring costs one token, whatever becomes of it; when it runs out, TX stops until
    /// it refills. An **emulation** of a backend that cannot process more than a given
    /// packet rate (the paper's memory-bound 190 Kp/s dom0), for the benchmark.
    pub fn tx_poll_limited<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        now_ns: u64,
        grants: &G,
        port: &mut P,
        mut work: Option<&mut shared_ring::TokenBucket>,
    ) -> Result<Poll, VifFatal> {
        let mut out = Poll::default();
        if let Some(t) = self.hold_until {
            if now_ns < t {
                out.hold_until = Some(t);
                return Ok(out);
            }
            self.hold_until = None;
        }
        if !self.flush_tx_stash(port) {
            self.hold_until = Some(now_ns + PORT_RETRY_NS);
            out.hold_until = self.hold_until;
            return Ok(out);
        }
        let front = self.id.domid;
        let mem = ring_mem(self.tx_map.mem());
        let mut ring =
            NetifTxBackRing::resume(mem, self.tx_idx).map_err(|e| VifFatal::Ring("TX", e))?;
        self.plan.clear();
        self.segs.clear();
        self.rsps.clear();
        let mut arena_used = 0usize;
        let mut held = false;
        let mut complete = true; // nothing left in the snapshot
        {
            let mut p = ring.requests().map_err(|e| VifFatal::Ring("TX", e))?;
            let mut at = 0u32;
            while at < p.len() {
                if self.plan.len() >= TX_BATCH {
                    complete = false;
                    break;
                }
                if let Some(w) = work.as_deref_mut() {
                    if let Err(d) = w.charge(now_ns, 1) {
                        let ns = match d {
                            Denied::Wait { ns } => ns,
                            Denied::Never => PORT_RETRY_NS,
                        };
                        self.hold_until = Some(now_ns.saturating_add(ns));
                        held = true;
                        break;
                    }
                }
                match parse_packet(&p, at) {
                    Ok(pkt) => {
                        if arena_used + pkt.size as usize > self.arena.len() {
                            complete = false;
                            break;
                        }
                        match self.tx_backstop.charge(now_ns, pkt.size as u64, 1) {
                            Ok(()) => {
                                let first = self.segs.len();
                                let mut off = arena_used;
                                for s in pkt.data_slots() {
                                    self.segs.push(CopySegment::from_grant(
                                        front,
                                        GrantRef(s.gref),
                                        s.offset,
                                        off,
                                        s.len,
                                    ));
                                    off += s.len as usize;
                                }
                                at += pkt.ring_slots;
                                self.plan.push(PlannedTx::Copy {
                                    arena_off: arena_used,
                                    segs: first..self.segs.len(),
                                    pkt,
                                });
                                arena_used = off;
                            }
                            Err(Denied::Wait { ns }) if self.tx_policy == BackstopPolicy::Hold => {
                                self.hold_until = Some(now_ns.saturating_add(ns));
                                self.counters.tx_held += 1;
                                held = true;
                                break;
                            }
                            Err(_) => {
                                self.counters.tx_dropped_police += 1;
                                let r0 = self.rsps.len();
                                pkt.responses(NETIF_RSP_DROPPED, |r| self.rsps.push(r));
                                self.plan.push(PlannedTx::Answered(r0..self.rsps.len()));
                                at += pkt.ring_slots;
                            }
                        }
                    }
                    Err(TxError::Drop { reason, ring_slots }) => {
                        log::debug!("{}: TX packet dropped: {reason}", self.id);
                        self.counters.tx_dropped_error += 1;
                        let r0 = self.rsps.len();
                        drop_responses(&p, at, ring_slots, NETIF_RSP_ERROR, |r| self.rsps.push(r));
                        self.plan.push(PlannedTx::Answered(r0..self.rsps.len()));
                        at += ring_slots;
                    }
                    Err(TxError::Incomplete) => break,
                    Err(TxError::Fatal(r)) => return Err(VifFatal::Tx(r)),
                }
            }
            p.consume(at);
        }

        if !self.segs.is_empty() {
            if let Err(e) = grants.copy(&mut self.arena[..arena_used], &mut self.segs) {
                log::warn!("{}: TX grant copy failed as a whole: {e}", self.id);
                for s in &mut self.segs {
                    s.status = GntStatus::GENERAL_ERROR;
                }
            }
        }

        for item in &self.plan {
            match item {
                PlannedTx::Copy {
                    pkt,
                    arena_off,
                    segs,
                } => {
                    let ok = self.segs[segs.clone()].iter().all(|s| s.status.is_ok());
                    let status = if ok {
                        self.counters.tx_bytes_copied += pkt.size as u64;
                        let len = pkt.size as usize;
                        let meta = tx_meta(pkt);
                        if !self.tx_stash.is_empty() {
                            self.tx_stash.push((*arena_off, len, meta));
                        } else {
                            match port.send(&self.arena[*arena_off..*arena_off + len], &meta) {
                                Ok(()) => {
                                    self.counters.tx_packets += 1;
                                    self.counters.tx_bytes += len as u64;
                                }
                                // The port is full: keep the frame (backpressure, the
                                // ring is not read again until it is sent).
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    self.tx_stash.push((*arena_off, len, meta));
                                }
                                Err(e) => {
                                    log::debug!("{}: port send: {e}", self.id);
                                    self.counters.tx_dropped_port += 1;
                                }
                            }
                        }
                        NETIF_RSP_OKAY
                    } else {
                        self.counters.tx_copy_errors += 1;
                        NETIF_RSP_ERROR
                    };
                    pkt.responses(status, |r| {
                        // Cannot fail: every consumed slot is answered exactly once.
                        let _ = ring.put_response(&r);
                    });
                }
                PlannedTx::Answered(range) => {
                    for r in &self.rsps[range.clone()] {
                        let _ = ring.put_response(r);
                    }
                }
            }
        }
        if !self.plan.is_empty() {
            out.notify = ring.push_responses_and_check_notify();
        }
        if !self.tx_stash.is_empty() {
            self.hold_until = Some(now_ns + PORT_RETRY_NS);
            out.hold_until = self.hold_until;
        } else if held {
            out.hold_until = self.hold_until;
        } else if !complete {
            out.more = true;
        } else {
            out.more = ring
                .final_check_for_requests()
                .map_err(|e| VifFatal::Ring("TX", e))?;
        }
        self.tx_idx = ring.indices();
        Ok(out)
    }

    /// Port → guest: moves frames from the port into the guest's posted RX buffers.
    pub fn rx_poll<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        now_ns: u64,
        grants: &G,
        port: &mut P,
    ) -> Result<Poll, VifFatal> {
        let mut out = Poll::default();
        let front = self.id.domid;
        let mem = ring_mem(self.rx_map.mem());
        let mut ring =
            NetifRxBackRing::resume(mem, self.rx_idx).map_err(|e| VifFatal::Ring("RX", e))?;
        self.segs.clear();
        self.rx_rsps.clear();
        let mut arena_used = 0usize;
        let mut frames = 0usize;
        let mut starved = false;
        let mut port_empty = false;
        {
            let mut p = ring.requests().map_err(|e| VifFatal::Ring("RX", e))?;
            let mut used = 0u32;
            while frames < RX_BATCH {
                // The next frame: the one stashed for lack of buffers, or a new one
                // read straight into the arena.
                let room = &mut self.rx_arena[arena_used..];
                if room.len() < MAX_RX_SLOTS * XEN_PAGE_SIZE {
                    break;
                }
                let (len, meta) = match self.rx_stash.take() {
                    Some((len, meta)) => {
                        room[..len].copy_from_slice(&self.rx_stash_buf[..len]);
                        (len, meta)
                    }
                    None => match port.recv(room) {
                        Ok(Some(x)) => x,
                        Ok(None) => {
                            port_empty = true;
                            break;
                        }
                        Err(e) => {
                            log::debug!("{}: port recv: {e}", self.id);
                            port_empty = true;
                            break;
                        }
                    },
                };
                if len > MAX_RX_SLOTS * XEN_PAGE_SIZE || len == 0 {
                    self.counters.rx_dropped_oversize += 1;
                    continue;
                }
                // A GSO frame needs a frontend that takes them; it travels with a GSO
                // extra-info slot right after its first data slot.
                let gso = match meta.gso {
                    Some(_) if !self.rx_gso => {
                        self.counters.rx_dropped_oversize += 1;
                        continue;
                    }
                    Some(g) => Some(NetifExtraInfo::new(
                        &ExtraInfo::Gso {
                            size: g.size,
                            r#type: match g.kind {
                                GsoKind::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
                                GsoKind::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
                            },
                            features: 0,
                        },
                        XenNetifExtraFlags::empty(),
                    )),
                    None => None,
                };
                let data_slots = len.div_ceil(XEN_PAGE_SIZE) as u32;
                let slots = data_slots + gso.is_some() as u32;
                if p.len() - used < slots {
                    // Not enough posted buffers: keep the frame for the next poll.
                    self.rx_stash_buf[..len]
                        .copy_from_slice(&self.rx_arena[arena_used..arena_used + len]);
                    self.rx_stash = Some((len, meta));
                    starved = true;
                    break;
                }
                if self.rx_backstop.charge(now_ns, len as u64, 1).is_err() {
                    self.counters.rx_dropped_police += 1;
                    continue;
                }
                let mut flags = rx_flags(&meta);
                if gso.is_some() {
                    flags |= NetRxFlags::EXTRA_INFO;
                }
                let mut req_at = used;
                for k in 0..data_slots {
                    let req: NetifRxRequest = p.copy(req_at).expect("within the snapshot");
                    req_at += 1;
                    let off = k as usize * XEN_PAGE_SIZE;
                    let chunk = (len - off).min(XEN_PAGE_SIZE);
                    self.segs.push(CopySegment::to_grant(
                        front,
                        GrantRef(req.gref),
                        0,
                        arena_used + off,
                        chunk as u16,
                    ));
                    let mut f = if k == 0 { flags } else { NetRxFlags::empty() };
                    if k + 1 < data_slots {
                        f |= NetRxFlags::MORE_DATA;
                    }
                    let rsp = NetifRxResponse {
                        id: req.id,
                        offset: 0,
                        flags: f.bits(),
                        status: chunk as i16,
                    };
                    if k == 0 {
                        self.rx_rsps.push(RxOut::First {
                            rsp,
                            len,
                            extra: gso,
                        });
                        // The extra answers the next request; its buffer stays unused.
                        req_at += gso.is_some() as u32;
                    } else {
                        self.rx_rsps.push(RxOut::More(rsp));
                    }
                }
                used += slots;
                arena_used += len.next_multiple_of(64);
                frames += 1;
            }
            p.consume(used);
        }
        if !self.segs.is_empty() {
            if let Err(e) = grants.copy(&mut self.rx_arena[..arena_used.max(1)], &mut self.segs) {
                log::warn!("{}: RX grant copy failed as a whole: {e}", self.id);
                for s in &mut self.segs {
                    s.status = GntStatus::GENERAL_ERROR;
                }
            }
            // Answer frame by frame: a frame with any failed segment is an error in all
            // of its data slots (its extra slot is still answered, so slots line up).
            let fail = |mut r: NetifRxResponse, ok: bool| {
                if !ok {
                    r.status = NETIF_RSP_ERROR;
                    r.flags &= !NetRxFlags::MORE_DATA.bits();
                }
                r
            };
            let (mut i, mut seg) = (0, 0);
            while i < self.rx_rsps.len() {
                let RxOut::First { rsp, len, extra } = self.rx_rsps[i] else {
                    i += 1; // unreachable: every frame starts with its first slot
                    continue;
                };
                let n = len.div_ceil(XEN_PAGE_SIZE).max(1);
                let ok = self.segs[seg..seg + n].iter().all(|s| s.status.is_ok());
                if ok {
                    self.counters.rx_packets += 1;
                    self.counters.rx_bytes += len as u64;
                } else {
                    self.counters.rx_copy_errors += 1;
                }
                let _ = ring.put_response(&fail(rsp, ok));
                if let Some(x) = extra {
                    let _ = ring.put_response_as(&x);
                }
                for out in &self.rx_rsps[i + 1..i + n] {
                    if let RxOut::More(r) = *out {
                        let _ = ring.put_response(&fail(r, ok));
                    }
                }
                i += n;
                seg += n;
            }
            out.notify = ring.push_responses_and_check_notify();
        }
        if starved {
            // Ask the frontend to tell us when it posts buffers; if it already did, go on.
            out.more = ring
                .final_check_for_requests()
                .map_err(|e| VifFatal::Ring("RX", e))?;
        } else if !port_empty {
            out.more = true;
        }
        self.rx_idx = ring.indices();
        Ok(out)
    }

    /// Sends stashed TX frames; true when none is left.
    fn flush_tx_stash<P: Port + ?Sized>(&mut self, port: &mut P) -> bool {
        while self.tx_stash_at < self.tx_stash.len() {
            let (off, len, meta) = self.tx_stash[self.tx_stash_at];
            match port.send(&self.arena[off..off + len], &meta) {
                Ok(()) => {
                    self.counters.tx_packets += 1;
                    self.counters.tx_bytes += len as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    log::debug!("{}: port send: {e}", self.id);
                    self.counters.tx_dropped_port += 1;
                }
            }
            self.tx_stash_at += 1;
        }
        self.tx_stash.clear();
        self.tx_stash_at = 0;
        true
    }

    /// When TX is held by the backstop, the time (ns) the deficit will have accrued.
    pub fn hold_until(&self) -> Option<u64> {
        self.hold_until
    }

    /// True when a frame waits for RX buffers from the guest.
    pub fn rx_starved(&self) -> bool {
        self.rx_stash.is_some()
    }
}

fn tx_meta(pkt: &TxPacket) -> FrameMeta {
    FrameMeta {
        csum_blank: pkt.flags.contains(NetTxFlags::CSUM_BLANK),
        data_validated: pkt.flags.contains(NetTxFlags::DATA_VALIDATED),
        gso: pkt.gso.and_then(|g| {
            let kind = match g.r#type {
                XEN_NETIF_GSO_TYPE_TCPV4 => GsoKind::TcpV4,
                XEN_NETIF_GSO_TYPE_TCPV6 => GsoKind::TcpV6,
                _ => return None,
            };
            Some(PortGso { size: g.size, kind })
        }),
    }
}

/// RX flags for a frame from the port. A frame whose checksum is still to be filled in
/// (`csum_blank`) is also marked validated, as Linux netback does.
fn rx_flags(meta: &FrameMeta) -> NetRxFlags {
    let mut f = NetRxFlags::empty();
    if meta.csum_blank {
        f |= NetRxFlags::CSUM_BLANK | NetRxFlags::DATA_VALIDATED;
    } else if meta.data_validated {
        f |= NetRxFlags::DATA_VALIDATED;
    }
    f
}
