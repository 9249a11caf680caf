//! The TX data path of one vif (guest → port), in the three steps of Linux's
//! `xenvif_tx_action`:
//!
//! 1. **build** ([`TxPath::build`], as `xenvif_tx_build_gops`): one read of `req_prod`;
//!    each request chain is parsed and validated copy-once ([`crate::tx`]), charged to
//!    the backstop before any copy — its wire cost ([`WireCost`]: a GSO frame costs its
//!    segments), bounded over every header it may have — and planned in the batch —
//!    grant-copy segments into the arena, or responses decided now for a chain refused
//!    whole;
//! 2. **copy** ([`TxPath::copy`], as `gnttab_batch_copy`): one call for every
//!    admitted packet of the batch;
//! 3. **submit** ([`TxPath::submit`], as `xenvif_tx_submit`): each copied frame's
//!    charge is settled to its exact wire cost (its headers are read now: the unused
//!    part of the bound is refunded, or, for headers longer than the bound, the excess
//!    charged or the frame dropped), the frame goes to the port, every slot is answered
//!    in ring order.
//!
//! A full port keeps the copied frames (the stash) and the ring is not read again until
//! the port has taken them: backpressure reaches the guest as a full TX ring.

use core::ops::Range;
use std::sync::Arc;

use hypervisor::grant::{CopySegment, GrantCopy, GrantRef};
use netport::cost::frame_cost;
use netport::{FrameMeta, Gso, GsoKind, Port};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    NetTxFlags, NetifTxBackRing, NetifTxRequest, NetifTxResponse, NETIF_RSP_DROPPED,
    NETIF_RSP_ERROR, NETIF_RSP_OKAY,
};
use shared_ring::ring::Pending;
use shared_ring::shared_bucket::{SharedDualBucket, SharedTokenBucket};
use shared_ring::{BackIndices, Denied, Limit, RingIdx, SharedMem, WireCost};
use xen_ids::{DomId, VifId};

use super::{
    grant_copy, BackstopPolicy, Poll, VifFatal, INCOMPLETE_TIMEOUT_NS, PORT_RETRY_NS, TX_BATCH,
};
use crate::journal::Responder;
use crate::meter::VifCounters;
use crate::tx::{drop_responses, parse_packet_into, TxError, TxPacket};

/// Bytes one batch may copy out of the guest.
const TX_ARENA: usize = 256 * 1024;
/// Most requests a vif's backstop answers `NETIF_RSP_DROPPED` per second (policy
/// `drop`); see [`TxPath::drops`].
pub const DROP_ANSWERS_PER_SEC: u64 = 20_000;
/// Depth of the drop allowance: a full ring.
const DROP_ANSWERS_BURST: u64 = 256;
/// Retry of a ring held when no bucket says when it will have room.
const DROP_RETRY_NS: u64 = 1_000_000;

/// A vif's drop allowance ([`TxPath::drops`]), full as of `now_ns`.
pub(super) fn drop_allowance(now_ns: u64) -> SharedTokenBucket {
    SharedTokenBucket::new(
        Limit::rate(DROP_ANSWERS_PER_SEC, DROP_ANSWERS_BURST),
        now_ns,
    )
}

type TxPending<'r, 'a> = Pending<'r, 'a, NetifTxRequest, NetifTxResponse>;

/// What the batch does with one request chain taken from the ring.
enum Planned {
    /// Admitted: packet `pkt` of the batch ([`TxBatch::pkts`]); `segs` copy it to
    /// `arena[at..at + size]`; settled against what was `charged`, sent, then answered.
    Copy {
        pkt: usize,
        at: usize,
        segs: Range<usize>,
        charged: WireCost,
    },
    /// Refused before any copy: answered with these responses of the batch.
    Answered(Range<usize>),
}

/// Why build stopped taking chains.
#[derive(Clone, Copy)]
enum BuildEnd {
    /// The snapshot is used up, or ends inside a chain: check the ring once more.
    Drained,
    /// The budget or the arena ran out with chains left: poll again.
    Limit,
    /// The backstop holds the next chain until its deficit has accrued (policy hold).
    Held,
    /// The snapshot ends inside a chain of this many slots: wait for the rest.
    Incomplete(u32),
}

/// A chain the frontend left incomplete at the head of the ring.
#[derive(Clone, Copy)]
struct Incomplete {
    /// Ring index of its first slot.
    at: RingIdx,
    /// When it was first seen incomplete (ns).
    since_ns: u64,
}

/// What build made of one chain.
enum Take {
    /// Planned; it occupied this many ring slots.
    Took(u32),
    /// Not taken: the batch ends here.
    Stop(BuildEnd),
}

/// One batch's plan: written by build, executed by the copy, answered by submit.
struct TxBatch {
    /// Every chain taken, in ring order.
    items: Vec<Planned>,
    /// The admitted packets, `pkts[..npkts]`: parsed in place, never moved (a packet
    /// with its slot array is a few hundred bytes). [`TX_BATCH`] of them, reused.
    pkts: Box<[TxPacket]>,
    npkts: usize,
    /// Grant-copy segments of the admitted packets.
    segs: Vec<CopySegment>,
    /// Responses of the chains refused whole.
    rsps: Vec<NetifTxResponse>,
    /// Arena bytes the admitted packets take, from 0.
    used: usize,
}

impl TxBatch {
    fn clear(&mut self) {
        self.items.clear();
        self.npkts = 0;
        self.segs.clear();
        self.rsps.clear();
        self.used = 0;
    }

    /// Where the next chain is parsed (`pkts[npkts]`; there is room: the batch takes
    /// at most [`TX_BATCH`] chains).
    fn next_pkt(&mut self) -> &mut TxPacket {
        &mut self.pkts[self.npkts]
    }

    /// Plans the admitted packet just parsed ([`TxBatch::next_pkt`]): one segment per
    /// data slot, to the next arena bytes.
    fn copy(&mut self, charged: WireCost, front: DomId) {
        let (at, first, pkt) = (self.used, self.segs.len(), self.npkts);
        self.npkts += 1;
        for s in self.pkts[pkt].data_slots() {
            self.segs.push(CopySegment::from_grant(
                front,
                GrantRef(s.gref),
                s.offset,
                self.used,
                s.len,
            ));
            self.used += s.len as usize;
        }
        let segs = first..self.segs.len();
        self.items.push(Planned::Copy {
            pkt,
            at,
            segs,
            charged,
        });
    }

    /// Plans the packet just parsed, refused whole: its slots answered with `status`.
    fn refuse(&mut self, status: i16) {
        let first = self.rsps.len();
        let rsps = &mut self.rsps;
        self.pkts[self.npkts].responses(status, |x| rsps.push(x));
        self.items.push(Planned::Answered(first..self.rsps.len()));
    }

    /// Plans a chain refused whole, answered with the responses `write` adds.
    fn answer(&mut self, write: impl FnOnce(&mut Vec<NetifTxResponse>)) {
        let first = self.rsps.len();
        write(&mut self.rsps);
        self.items.push(Planned::Answered(first..self.rsps.len()));
    }
}

/// The TX half of a vif.
pub(super) struct TxPath {
    id: VifId,
    pub(super) idx: BackIndices,
    /// Writes the responses (recorded in the vif's journal first).
    pub(super) responder: Responder,
    /// Guest → port backstop (charged before the grant copy).
    pub(super) backstop: Arc<SharedDualBucket>,
    /// What the backstop does with excess frames.
    pub(super) policy: BackstopPolicy,
    /// The ring is not read before this time (ns).
    pub(super) hold_until: Option<u64>,
    /// TX counters (the `tx_*` fields).
    pub(super) counters: VifCounters,
    /// Where the batch's admitted packets are copied, back to back.
    arena: Vec<u8>,
    batch: TxBatch,
    /// Copied frames the port could not take yet (offset and length in `arena`), in
    /// order, from `stash_at`: the ring is not read again until they are sent.
    stash: Vec<Copied>,
    stash_at: usize,
    /// The chain at the head of the ring is incomplete: since when.
    incomplete: Option<Incomplete>,
    /// Requests the backstop may refuse with `NETIF_RSP_DROPPED` (policy `drop`): each
    /// costs a parse and a response, so a guest flooding past its budget is answered
    /// at most [`DROP_ANSWERS_PER_SEC`] times a second, over all the vif's queues (one
    /// allowance per vif, like the backstop, [`super::Backstops`]); past that its
    /// requests wait on the ring, as under policy `hold`.
    pub(super) drops: Arc<SharedTokenBucket>,
    /// The vif's shaping counters, over all its queues.
    pub(super) shaped: Arc<super::SharedShaped>,
    /// The polling thread's waits for a CPU, kept in the backstop.
    pub(super) cpu_wait: hypervisor::cpu_wait::CpuWait,
}

impl TxPath {
    /// The path of a ring attached at `idx` ([`shared_ring::BackRing::attach_shared`]).
    pub(super) fn new(id: VifId, idx: BackIndices, backstops: &super::Backstops) -> Self {
        TxPath {
            id,
            idx,
            responder: Responder::default(),
            backstop: backstops.tx.clone(),
            shaped: backstops.shaped.clone(),
            policy: BackstopPolicy::Drop,
            hold_until: None,
            counters: VifCounters::default(),
            arena: vec![0; TX_ARENA],
            batch: TxBatch {
                items: Vec::with_capacity(TX_BATCH),
                pkts: vec![TxPacket::EMPTY; TX_BATCH].into_boxed_slice(),
                npkts: 0,
                segs: Vec::with_capacity(TX_BATCH * 4),
                rsps: Vec::with_capacity(256),
                used: 0,
            },
            stash: Vec::with_capacity(TX_BATCH),
            stash_at: 0,
            incomplete: None,
            drops: backstops.tx_drops.clone(),
            cpu_wait: Default::default(),
        }
    }

    /// One batch from the TX ring in `page`: build → copy → submit.
    pub(super) fn poll<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        page: SharedMem<'_>,
        clock: &dyn Fn() -> u64,
        grants: &G,
        port: &mut P,
        budget: usize,
    ) -> Result<Poll, VifFatal> {
        if let Some(t) = self.blocked(clock(), port) {
            return Ok(Poll::held(t));
        }
        let mut ring = NetifTxBackRing::resume(page, self.idx).map_err(VifFatal::tx_ring)?;
        let (end, now_ns) = self.build(&mut ring, clock, budget)?;
        self.copy(grants);
        let notify = self.submit(&mut ring, now_ns, port);
        let out = self.next_step(&mut ring, now_ns, end)?;
        self.idx = ring.indices();
        Ok(Poll {
            notify,
            packets: self.batch.items.len(),
            ..out
        })
    }

    /// When the ring may not be read now: held until a time, or a full port still
    /// refuses frames copied earlier.
    fn blocked<P: Port + ?Sized>(&mut self, now_ns: u64, port: &mut P) -> Option<u64> {
        if let Some(t) = self.hold_until {
            if now_ns < t {
                return Some(t);
            }
            self.hold_until = None;
        }
        if !self.flush_stash(port) {
            self.hold_until = Some(now_ns + PORT_RETRY_NS);
            return self.hold_until;
        }
        None
    }

    /// Build: plans up to `budget` (at most [`TX_BATCH`]) chains of one snapshot of the
    /// ring, and consumes them. Returns how it ended and the time it charged at.
    fn build(
        &mut self,
        ring: &mut NetifTxBackRing<'_>,
        clock: &dyn Fn() -> u64,
        budget: usize,
    ) -> Result<(BuildEnd, u64), VifFatal> {
        self.batch.clear();
        let limit = budget.min(TX_BATCH);
        let mut p = ring.requests().map_err(VifFatal::tx_ring)?;
        // The clock is read after the snapshot: a frontend that honours its credits
        // charged every request in it before this instant, so the backstop (the same
        // rates, deeper) has the tokens for them however long this thread was
        // descheduled between an earlier clock read and the snapshot.
        let now_ns = clock();
        if !p.is_empty() {
            self.cpu_wait.credit(&self.backstop, now_ns);
        }
        let mut at = 0u32;
        let end = loop {
            if at >= p.len() {
                break BuildEnd::Drained;
            }
            if self.batch.items.len() >= limit {
                break BuildEnd::Limit;
            }
            match self.take(&p, at, now_ns)? {
                Take::Took(slots) => at += slots,
                Take::Stop(end) => break end,
            }
        };
        p.consume(at);
        Ok((end, now_ns))
    }

    /// Plans the chain at entry `at` of the snapshot: parsed, checked against the
    /// arena, charged to the backstop.
    fn take(&mut self, p: &TxPending<'_, '_>, at: u32, now_ns: u64) -> Result<Take, VifFatal> {
        match parse_packet_into(p, at, self.batch.next_pkt()) {
            Ok(()) => {}
            Err(TxError::Drop { reason, ring_slots }) => {
                log::debug!("{}: TX packet dropped: {reason}", self.id);
                self.counters.tx_dropped_error += 1;
                self.batch.answer(|r| {
                    drop_responses(p, at, ring_slots, NETIF_RSP_ERROR, |x| r.push(x));
                });
                return Ok(Take::Took(ring_slots));
            }
            Err(TxError::Incomplete) => return Ok(Take::Stop(BuildEnd::Incomplete(p.len() - at))),
            Err(TxError::Fatal(r)) => return Err(VifFatal::Tx(r)),
        };
        let pkt = self.batch.next_pkt();
        let (size, gso, slots) = (pkt.size, pkt.gso, pkt.ring_slots);
        if self.batch.used + size as usize > self.arena.len() {
            return Ok(Take::Stop(BuildEnd::Limit));
        }
        // The headers are not read yet: charge the bound, settled after the copy.
        let bound = WireCost::of(u64::from(size), gso.map(|g| g.size), None);
        let charged = self.backstop.charge_wire(now_ns, &bound);
        if charged.is_err() {
            self.shaped(now_ns, &bound);
        }
        match charged {
            Ok(()) => self.batch.copy(bound, self.id.domid),
            Err(Denied::Wait { ns }) if self.policy == BackstopPolicy::Hold => {
                self.hold_until = Some(now_ns.saturating_add(ns));
                self.counters.tx_held += 1;
                return Ok(Take::Stop(BuildEnd::Held));
            }
            Err(denied) => {
                if let Err(paced) = self.drops.charge(now_ns, 1) {
                    // Drop answers used up: the rest waits on the ring until either
                    // bucket has room (a closed budget: the drop allowance's refill).
                    let wait = [denied, paced]
                        .iter()
                        .filter_map(|d| match d {
                            Denied::Wait { ns } => Some(*ns),
                            Denied::Never => None,
                        })
                        .min()
                        .unwrap_or(DROP_RETRY_NS);
                    self.hold_until = Some(now_ns.saturating_add(wait));
                    self.counters.tx_held += 1;
                    return Ok(Take::Stop(BuildEnd::Held));
                }
                self.counters.tx_dropped_police += 1;
                self.batch.refuse(NETIF_RSP_DROPPED);
            }
        }
        Ok(Take::Took(slots))
    }

    /// Counts a frame of `cost` the backstop refused, for the guest: against the
    /// bits/s budget when the byte bucket lacked the tokens, else the packets/s budget.
    fn shaped(&mut self, now_ns: u64, cost: &WireCost) {
        let bps = super::short_of_bytes(&self.backstop, now_ns, cost);
        if bps {
            self.counters.tx_shaped_bps_frames += 1;
            self.counters.tx_shaped_bps_bytes += cost.bytes;
        } else {
            self.counters.tx_shaped_pps_frames += 1;
        }
        self.shaped.add_tx(bps, cost.bytes);
    }

    /// Copy: one batched grant copy of every admitted packet into the arena.
    fn copy<G: GrantCopy + ?Sized>(&mut self, grants: &G) {
        let b = &mut self.batch;
        grant_copy(
            grants,
            &mut self.arena[..b.used],
            &mut b.segs,
            self.id,
            "TX",
        );
    }

    /// Submit: settles each copied frame's charge and sends it to the port (or stashes
    /// it while the port is full), and answers every chain of the batch in ring order.
    /// Returns whether the frontend asked to be notified.
    fn submit<P: Port + ?Sized>(
        &mut self,
        ring: &mut NetifTxBackRing<'_>,
        now_ns: u64,
        port: &mut P,
    ) -> bool {
        // Taken out for the loop, as the items below.
        let mut responder = core::mem::take(&mut self.responder);
        let mut put = |r: &NetifTxResponse| responder.put(ring, r);
        // Taken out for the loop (and put back: the batch's buffers are reused).
        let items = core::mem::take(&mut self.batch.items);
        let pkts = core::mem::take(&mut self.batch.pkts);
        for item in &items {
            match item {
                Planned::Copy {
                    pkt,
                    at,
                    segs,
                    charged,
                } => {
                    let copied = self.batch.segs[segs.clone()]
                        .iter()
                        .all(|s| s.status.is_ok());
                    let pkt = &pkts[*pkt];
                    let status = self.deliver(pkt, *at, copied, charged, now_ns, port);
                    pkt.responses(status, |r| put(&r));
                }
                Planned::Answered(range) => {
                    self.batch.rsps[range.clone()].iter().for_each(&mut put)
                }
            }
        }
        self.batch.items = items;
        self.batch.pkts = pkts;
        self.responder = responder;
        !self.batch.items.is_empty() && self.responder.push(ring)
    }

    /// One admitted packet after the copy: its charge settled to the exact wire cost,
    /// then sent (or stashed). Returns the status to answer it with.
    fn deliver<P: Port + ?Sized>(
        &mut self,
        pkt: &TxPacket,
        at: usize,
        copied: bool,
        charged: &WireCost,
        now_ns: u64,
        port: &mut P,
    ) -> i16 {
        let TxPath {
            id,
            backstop,
            counters,
            arena,
            stash,
            ..
        } = self;
        if !copied {
            counters.tx_copy_errors += 1;
            return NETIF_RSP_ERROR;
        }
        let len = pkt.size as usize;
        let meta = tx_meta(pkt);
        counters.tx_bytes_copied += len as u64;
        let frame = &arena[at..at + len];
        let Some(cost) = settle(backstop, now_ns, charged, frame, &meta) else {
            counters.tx_dropped_police += 1;
            return NETIF_RSP_DROPPED;
        };
        let c = Copied {
            at,
            len,
            meta,
            cost,
        };
        if !stash.is_empty() || !send_frame(port, frame, &c, counters, *id) {
            stash.push(c);
        }
        NETIF_RSP_OKAY
    }

    /// After a batch: hold while frames wait for the port or the backstop holds the
    /// next chain; poll again at once when the batch stopped at a limit; otherwise ask
    /// the frontend for a notification (and go on if requests raced in).
    fn next_step(
        &mut self,
        ring: &mut NetifTxBackRing<'_>,
        now_ns: u64,
        end: BuildEnd,
    ) -> Result<Poll, VifFatal> {
        let mut out = Poll::default();
        if !self.stash.is_empty() {
            self.hold_until = Some(now_ns + PORT_RETRY_NS);
            out.hold_until = self.hold_until;
            return Ok(out);
        }
        let waiting = self.incomplete.take();
        match end {
            BuildEnd::Incomplete(seen) => return self.wait_for_rest(ring, now_ns, seen, waiting),
            BuildEnd::Held => out.hold_until = self.hold_until,
            BuildEnd::Limit => out.more = true,
            BuildEnd::Drained => {
                out.more = ring.final_check_for_requests().map_err(VifFatal::tx_ring)?
            }
        }
        Ok(out)
    }

    /// The ring ends inside a chain of `seen` slots (`waiting`: the incomplete chain of
    /// the previous poll, if any): asks the frontend to notify when it
    /// pushes past them and sleeps (no busy polling: `more` only when it already did).
    /// A chain left incomplete for [`INCOMPLETE_TIMEOUT_NS`] is a malformed ring.
    fn wait_for_rest(
        &mut self,
        ring: &mut NetifTxBackRing<'_>,
        now_ns: u64,
        seen: u32,
        waiting: Option<Incomplete>,
    ) -> Result<Poll, VifFatal> {
        let at = ring.req_cons();
        let since_ns = match waiting {
            Some(w) if w.at == at => w.since_ns,
            _ => now_ns,
        };
        let waited = now_ns.saturating_sub(since_ns);
        if waited >= INCOMPLETE_TIMEOUT_NS {
            return Err(VifFatal::Incomplete {
                slots: seen,
                waited_ms: waited / 1_000_000,
            });
        }
        self.incomplete = Some(Incomplete { at, since_ns });
        let more = ring
            .final_check_for_requests_after(seen)
            .map_err(VifFatal::tx_ring)?;
        Ok(Poll {
            more,
            ..Poll::default()
        })
    }

    /// When the chain left incomplete at the head of the ring becomes a protocol
    /// violation (ns): the vif must be polled then even if nothing wakes it.
    pub(super) fn incomplete_deadline(&self) -> Option<u64> {
        self.incomplete
            .map(|w| w.since_ns.saturating_add(INCOMPLETE_TIMEOUT_NS))
    }

    /// Sends stashed frames; true when none is left.
    fn flush_stash<P: Port + ?Sized>(&mut self, port: &mut P) -> bool {
        while let Some(c) = self.stash.get(self.stash_at) {
            let frame = &self.arena[c.at..c.at + c.len];
            if !send_frame(port, frame, c, &mut self.counters, self.id) {
                return false;
            }
            self.stash_at += 1;
        }
        self.stash.clear();
        self.stash_at = 0;
        true
    }
}

/// A copied frame, settled, on its way to the port.
#[derive(Clone, Copy)]
struct Copied {
    /// Where it is in the arena.
    at: usize,
    /// Its length.
    len: usize,
    /// Its offloads.
    meta: FrameMeta,
    /// Its exact wire cost (what the backstop was charged for it).
    cost: WireCost,
}

/// Settles the charge of a copied frame, made on `charged` (an upper bound of its cost
/// for any header up to [`shared_ring::wire::MAX_HEADER`]), to its exact wire cost now
/// that its headers can be read: the unused part is refunded; a cost above the bound
/// (longer headers) is charged too. Returns the exact cost, or `None` when the excess is
/// refused: the frame must be dropped (no part of it reaches the wire uncharged).
fn settle(
    backstop: &SharedDualBucket,
    now_ns: u64,
    charged: &WireCost,
    frame: &[u8],
    meta: &FrameMeta,
) -> Option<WireCost> {
    let exact = frame_cost(frame, meta);
    super::refund(backstop, &charged.excess_over(&exact));
    let more = exact.excess_over(charged);
    if !more.is_zero() && backstop.charge_wire(now_ns, &more).is_err() {
        return None;
    }
    Some(exact)
}

/// Hands one frame to the port and counts it (sent, or dropped by a port error).
/// False when the port is full: the frame was not taken and must be kept.
fn send_frame<P: Port + ?Sized>(
    port: &mut P,
    frame: &[u8],
    c: &Copied,
    counters: &mut VifCounters,
    id: VifId,
) -> bool {
    match port.send(frame, &c.meta) {
        Ok(()) => {
            counters.tx_packets += 1;
            counters.tx_bytes += frame.len() as u64;
            counters.tx_wire_packets += c.cost.packets;
            counters.tx_wire_bytes += c.cost.bytes;
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
        Err(e) => {
            log::debug!("{id}: port send: {e}");
            counters.tx_dropped_port += 1;
        }
    }
    true
}

/// The port's view of a TX packet's offloads.
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
            Some(Gso { size: g.size, kind })
        }),
    }
}
