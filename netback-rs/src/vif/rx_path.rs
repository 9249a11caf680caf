//! The RX data path of one vif (port → guest), in the same three steps as TX:
//!
//! 1. **build** ([`RxPath::build`]): frames are read from the port straight into the
//!    arena, policed at their wire cost ([`WireCost`]: a GSO frame costs its segments),
//!    and placed in the guest's posted buffers — one copy segment and
//!    one response per page of the frame (multi-slot above a page), with a GSO
//!    extra-info slot after the first when the frame carries segmentation offload;
//! 2. **copy** ([`RxPath::copy`]): one call for the batch;
//! 3. **respond** ([`RxPath::respond`]): the responses, in the slots of the requests
//!    they answer; a frame with any failed segment is an error in all of its slots.
//!
//! A frame that finds too few posted buffers waits in the stash (one frame) and the
//! frontend is asked to notify when it posts more; one that waits too long stalls the
//! frontend ([`super::stall`]).
//!
//! The vif's RX budget is charged before a frame is placed, so a frame over it is never
//! grant-copied. Policy `drop`: it is counted and dropped. Policy `hold`: it waits in the
//! stash and the port is not read until the exact deficit has accrued
//! ([`RxPath::held_until`]; netback disarms the port's readiness meanwhile), so dom0's
//! queueing discipline holds and drops, and local senders see backpressure. A budget of
//! zero drops under either policy (nothing would ever return). Each refusal is counted
//! for the guest: for the bits/s budget (frames, wire bytes) when the byte bucket lacked
//! tokens, else for the packets/s budget.

use core::ops::{ControlFlow, Range};
use std::sync::Arc;

use hypervisor::grant::{CopySegment, GrantCopy, GrantRef};
use netport::cost::frame_cost;
use netport::negotiate::{Allowed, Offer};
use netport::{FrameMeta, GsoKind, Port};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetRxFlags, NetifExtraInfo, NetifRxBackRing, NetifRxRequest, NetifRxResponse,
    XenNetifExtraFlags, NETIF_RSP_ERROR,
};
use shared_ring::ring::Pending;
use shared_ring::shared_bucket::SharedDualBucket;
use shared_ring::{BackIndices, SharedMem, WireCost, XEN_PAGE_SIZE};
use xen_ids::VifId;

use super::stall::{RxStall, RX_STALL_TIMEOUT_NS};
use super::{grant_copy, BackstopPolicy, Poll, VifFatal, MAX_RX_SLOTS, RX_BATCH};
use crate::journal::Responder;
use crate::meter::VifCounters;
use shared_ring::Denied;

/// Bytes one batch may copy into the guest: the batch's frames, and room for one more
/// of the largest.
const RX_ARENA: usize = RX_BATCH * 2048 + MAX_RX_SLOTS * XEN_PAGE_SIZE;
/// The largest frame, in bytes.
const MAX_RX_FRAME: usize = MAX_RX_SLOTS * XEN_PAGE_SIZE;

type RxPending<'r, 'a> = Pending<'r, 'a, NetifRxRequest, NetifRxResponse>;

/// One frame placed in the guest's buffers.
struct Placed {
    /// Frame bytes.
    len: usize,
    /// Its wire cost (what the backstop was charged).
    cost: WireCost,
    /// The GSO extra that follows its first response.
    extra: Option<NetifExtraInfo>,
    /// Its data slots: the same range of the batch's segments and responses.
    slots: Range<usize>,
}

/// Why build stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BuildEnd {
    /// The batch or the arena is full: poll again.
    Limit,
    /// The port has nothing more.
    PortEmpty,
    /// The next frame waits for posted buffers: this many are posted, too few for it.
    Starved(u32),
    /// The next frame waits for the RX budget (policy hold, [`RxPath::held_until`]).
    Held,
}

/// The RX half of a vif.
pub(super) struct RxPath {
    id: VifId,
    pub(super) idx: BackIndices,
    /// Writes the responses (recorded in the vif's journal first).
    pub(super) responder: Responder,
    /// Port → guest policing (before the grant copy into the guest).
    pub(super) backstop: Arc<SharedDualBucket>,
    /// The vif's shaping counters, over all its queues.
    shaped: Arc<super::SharedShaped>,
    /// What the frontend agreed to take (its feature keys): GSO types, partial
    /// checksums, multi-slot frames.
    pub(super) allowed: Allowed,
    /// The frontend notifies when it posts RX buffers (`feature-rx-notify`): only then
    /// may a frame wait for buffers; without it, a frame that finds too few is dropped.
    pub(super) rx_notify: bool,
    /// RX counters (the `rx_*` fields).
    pub(super) counters: VifCounters,
    /// The batch's frames, each at a 64-byte aligned offset.
    arena: Vec<u8>,
    /// Arena bytes used.
    used: usize,
    frames: Vec<Placed>,
    /// One segment and one response per data slot, in ring order.
    segs: Vec<CopySegment>,
    rsps: Vec<NetifRxResponse>,
    /// A frame read from the port that found too few posted buffers.
    stash: Option<(usize, FrameMeta)>,
    stash_buf: Vec<u8>,
    /// Whether the frontend has stalled (carrier off), and since when a frame waits.
    pub(super) stall: RxStall,
    /// What a frame over the budget meets: dropped, or held in the stash.
    pub(super) policy: BackstopPolicy,
    /// The stashed frame waits for the budget until this time (ns); the port is not
    /// read before.
    held_until: Option<u64>,
    /// The polling thread's waits for a CPU, kept in the backstop (as on TX).
    pub(super) cpu_wait: hypervisor::cpu_wait::CpuWait,
}

impl RxPath {
    /// The path of a ring attached at `idx` ([`shared_ring::BackRing::attach_shared`]).
    pub(super) fn new(id: VifId, idx: BackIndices, backstops: &super::Backstops) -> Self {
        RxPath {
            id,
            idx,
            responder: Responder::default(),
            backstop: backstops.rx.clone(),
            shaped: backstops.shaped.clone(),
            cpu_wait: Default::default(),
            allowed: Allowed::toward(&Offer::DEFAULTS),
            rx_notify: true,
            counters: VifCounters::default(),
            arena: vec![0; RX_ARENA],
            used: 0,
            frames: Vec::with_capacity(RX_BATCH),
            segs: Vec::with_capacity(RX_BATCH * 4),
            rsps: Vec::with_capacity(256),
            stash: None,
            stash_buf: vec![0; MAX_RX_FRAME],
            stall: RxStall::new(Some(RX_STALL_TIMEOUT_NS)),
            policy: BackstopPolicy::Drop,
            held_until: None,
        }
    }

    /// True when a frame waits in the stash: for RX buffers from the guest, or for the
    /// budget (policy hold). The port need not be read meanwhile.
    pub(super) fn starved(&self) -> bool {
        self.stash.is_some()
    }

    /// When a frame held for the budget may go (ns): poll the vif then.
    pub(super) fn held_until(&self) -> Option<u64> {
        self.held_until
    }

    /// One batch into the RX ring in `page`: build → copy → respond.
    pub(super) fn poll<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        page: SharedMem<'_>,
        now_ns: u64,
        grants: &G,
        port: &mut P,
    ) -> Result<Poll, VifFatal> {
        if let Some(t) = self.held_until {
            if now_ns < t {
                return Ok(Poll::default());
            }
            self.held_until = None;
        }
        let mut ring = NetifRxBackRing::resume(page, self.idx).map_err(VifFatal::rx_ring)?;
        if let Some(poll) = self.poll_stalled(&mut ring, port)? {
            return Ok(poll);
        }
        let end = self.build(&mut ring, now_ns, port)?;
        self.copy(grants);
        let notify = self.respond(&mut ring);
        let more = match end {
            // Ask the frontend to tell us when it posts more buffers than the frame
            // found (not at once for those: polling them again would spin); if it
            // already did, go on.
            BuildEnd::Starved(seen) => {
                if self.stall.expired(now_ns) {
                    self.stall_now(seen, port);
                }
                ring.final_check_for_requests_after(seen)
                    .map_err(VifFatal::rx_ring)?
            }
            BuildEnd::Limit => true,
            BuildEnd::PortEmpty | BuildEnd::Held => false,
        };
        // A frame held for the budget is not waiting for the guest's buffers.
        self.stall
            .note(self.stash.is_some() && self.held_until.is_none(), now_ns);
        self.idx = ring.indices();
        Ok(Poll {
            notify,
            more,
            hold_until: None,
            packets: self.frames.len(),
        })
    }

    /// A stalled frontend: `None` when it is not (or no longer: it posted more buffers
    /// than it had when it stalled, and the carrier is back on); else drops up to
    /// [`RX_BATCH`] frames the port still hands over and asks the frontend to notify
    /// when it posts more.
    fn poll_stalled<P: Port + ?Sized>(
        &mut self,
        ring: &mut NetifRxBackRing<'_>,
        port: &mut P,
    ) -> Result<Option<Poll>, VifFatal> {
        let Some(had) = self.stall.stalled_with() else {
            return Ok(None);
        };
        let posted = ring.unconsumed_requests().map_err(VifFatal::rx_ring)?;
        if self.stall.recovered(posted) {
            log::info!("{}: frontend posted RX buffers again: carrier on", self.id);
            if let Err(e) = port.set_carrier(true) {
                log::warn!("{}: {e}", self.id);
            }
            return Ok(None);
        }
        let dropped = port
            .recv_batch(RX_BATCH, &mut |_, _| ControlFlow::Continue(()))
            .unwrap_or_else(|e| {
                log::debug!("{}: port recv: {e}", self.id);
                0
            });
        self.counters.rx_dropped_stalled += dropped as u64;
        let more = dropped == RX_BATCH
            || ring
                .final_check_for_requests_after(had)
                .map_err(VifFatal::rx_ring)?;
        self.idx = ring.indices();
        Ok(Some(Poll {
            more,
            ..Poll::default()
        }))
    }

    /// The frontend stalled with `posted` buffers: carrier off, the waiting frame
    /// dropped.
    fn stall_now<P: Port + ?Sized>(&mut self, posted: u32, port: &mut P) {
        log::warn!(
            "{}: frontend left a frame without RX buffers for the stall timeout: carrier off",
            self.id
        );
        self.stall.stall(posted);
        if self.stash.take().is_some() {
            self.counters.rx_dropped_stalled += 1;
        }
        self.counters.rx_stalls += 1;
        if let Err(e) = port.set_carrier(false) {
            log::warn!("{}: {e}", self.id);
        }
    }

    /// Build: places up to [`RX_BATCH`] frames from the port in the posted buffers of
    /// one snapshot of the ring, and consumes those requests.
    fn build<P: Port + ?Sized>(
        &mut self,
        ring: &mut NetifRxBackRing<'_>,
        now_ns: u64,
        port: &mut P,
    ) -> Result<BuildEnd, VifFatal> {
        self.frames.clear();
        self.segs.clear();
        self.rsps.clear();
        self.used = 0;
        // Frames that waited in the port while this thread waited for a CPU keep the
        // tokens of that wait (`hypervisor::cpu_wait`).
        self.cpu_wait.credit(&self.backstop, now_ns);
        let mut p = ring.requests().map_err(VifFatal::rx_ring)?;
        let mut taken = 0u32;
        let end = loop {
            if self.frames.len() >= RX_BATCH || self.arena.len() - self.used < MAX_RX_FRAME {
                break BuildEnd::Limit;
            }
            let Some((len, meta)) = self.next_frame(port) else {
                break BuildEnd::PortEmpty;
            };
            let Some((meta, extra)) = self.admit(len, &meta) else {
                continue;
            };
            let slots = len.div_ceil(XEN_PAGE_SIZE) as u32 + extra.is_some() as u32;
            if p.len() - taken < slots && !self.rx_notify {
                // The frontend would not tell us when it posts more: a frame cannot wait.
                self.counters.rx_dropped_no_buffers += 1;
                continue;
            }
            if p.len() - taken < slots {
                // Not enough posted buffers: keep the frame for the next poll.
                self.stash_frame(len, meta);
                break BuildEnd::Starved(p.len() - taken);
            }
            let cost = frame_cost(&self.arena[self.used..self.used + len], &meta);
            if let Err(denied) = self.backstop.charge_wire(now_ns, &cost) {
                self.shaped(now_ns, &cost);
                match denied {
                    Denied::Wait { ns } if self.policy == BackstopPolicy::Hold => {
                        self.stash_frame(len, meta);
                        self.held_until = Some(now_ns.saturating_add(ns));
                        self.counters.rx_held += 1;
                        break BuildEnd::Held;
                    }
                    _ => {
                        self.counters.rx_dropped_police += 1;
                        self.counters.rx_police_wire_packets += cost.packets;
                        self.counters.rx_police_wire_bytes += cost.bytes;
                        continue;
                    }
                }
            }
            self.place(&p, taken, (len, cost), &meta, extra);
            taken += slots;
        };
        p.consume(taken);
        Ok(end)
    }

    /// Keeps the frame at `arena[used..used + len]` for the next poll.
    fn stash_frame(&mut self, len: usize, meta: FrameMeta) {
        self.stash_buf[..len].copy_from_slice(&self.arena[self.used..self.used + len]);
        self.stash = Some((len, meta));
    }

    /// Counts a frame of `cost` refused by the budget, for the guest: against the
    /// bits/s budget when the byte bucket lacked the tokens, else the packets/s budget.
    fn shaped(&mut self, now_ns: u64, cost: &WireCost) {
        let bps = super::short_of_bytes(&self.backstop, now_ns, cost);
        if bps {
            self.counters.rx_shaped_bps_frames += 1;
            self.counters.rx_shaped_bps_bytes += cost.bytes;
        } else {
            self.counters.rx_shaped_pps_frames += 1;
        }
        self.shaped.add_rx(bps, cost.bytes);
    }

    /// The next frame, read into the arena after the batch's frames: the one stashed
    /// for lack of buffers, else one from the port (`None` when it has none).
    fn next_frame<P: Port + ?Sized>(&mut self, port: &mut P) -> Option<(usize, FrameMeta)> {
        let room = &mut self.arena[self.used..];
        if let Some((len, meta)) = self.stash.take() {
            room[..len].copy_from_slice(&self.stash_buf[..len]);
            return Some((len, meta));
        }
        match port.recv(room) {
            Ok(frame) => frame,
            Err(e) => {
                log::debug!("{}: port recv: {e}", self.id);
                None
            }
        }
    }

    /// Whether the frame at `arena[used..used + len]` can go to this guest, in the
    /// form it agreed to take (a partial checksum it did not agree to is completed
    /// there), with the metadata to send and the GSO extra-info slot that travels with
    /// it (`None`: no extra). `None`: dropped, counted.
    fn admit(
        &mut self,
        len: usize,
        meta: &FrameMeta,
    ) -> Option<(FrameMeta, Option<NetifExtraInfo>)> {
        if len > MAX_RX_FRAME || len == 0 {
            self.counters.rx_dropped_oversize += 1;
            return None;
        }
        let frame = &mut self.arena[self.used..self.used + len];
        let meta = match self.allowed.conform(frame, meta) {
            Ok(c) => {
                self.counters.rx_csum_filled += c.csum_filled as u64;
                c.meta
            }
            Err(e) => {
                log::debug!("{}: RX frame dropped: {e}", self.id);
                self.counters.rx_dropped_offload += 1;
                return None;
            }
        };
        let extra = meta.gso.map(|g| {
            NetifExtraInfo::new(
                &ExtraInfo::Gso {
                    size: g.size,
                    r#type: match g.kind {
                        GsoKind::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
                        GsoKind::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
                    },
                    features: 0,
                },
                XenNetifExtraFlags::empty(),
            )
        });
        Some((meta, extra))
    }

    /// Places the frame at `arena[used..used + len]` (costing `cost` on the wire) in the requests from entry `at` of
    /// the snapshot: one segment and one response per page; the extra, if any, answers
    /// the request after the first (its buffer stays unused).
    fn place(
        &mut self,
        p: &RxPending<'_, '_>,
        at: u32,
        (len, cost): (usize, WireCost),
        meta: &FrameMeta,
        extra: Option<NetifExtraInfo>,
    ) {
        let mut flags = rx_flags(meta);
        if extra.is_some() {
            flags |= NetRxFlags::EXTRA_INFO;
        }
        let first = self.segs.len();
        let data_slots = len.div_ceil(XEN_PAGE_SIZE);
        let mut req_at = at;
        for k in 0..data_slots {
            let req: NetifRxRequest = p.copy(req_at).expect("within the snapshot");
            req_at += if k == 0 {
                1 + extra.is_some() as u32
            } else {
                1
            };
            let off = k * XEN_PAGE_SIZE;
            let chunk = (len - off).min(XEN_PAGE_SIZE);
            self.segs.push(CopySegment::to_grant(
                self.id.domid,
                GrantRef(req.gref),
                0,
                self.used + off,
                chunk as u16,
            ));
            let mut f = if k == 0 { flags } else { NetRxFlags::empty() };
            if k + 1 < data_slots {
                f |= NetRxFlags::MORE_DATA;
            }
            self.rsps.push(NetifRxResponse {
                id: req.id,
                offset: 0,
                flags: f.bits(),
                status: chunk as i16,
            });
        }
        self.frames.push(Placed {
            len,
            cost,
            extra,
            slots: first..self.segs.len(),
        });
        self.used += len.next_multiple_of(64);
    }

    /// Copy: one batched grant copy of every placed frame into the guest's buffers.
    fn copy<G: GrantCopy + ?Sized>(&mut self, grants: &G) {
        let arena = &mut self.arena[..self.used.max(1)];
        grant_copy(grants, arena, &mut self.segs, self.id, "RX");
    }

    /// Respond: every placed frame's responses, in ring order. Returns whether the
    /// frontend asked to be notified.
    fn respond(&mut self, ring: &mut NetifRxBackRing<'_>) -> bool {
        for f in &self.frames {
            let ok = self.segs[f.slots.clone()].iter().all(|s| s.status.is_ok());
            if ok {
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += f.len as u64;
                self.counters.rx_wire_packets += f.cost.packets;
                self.counters.rx_wire_bytes += f.cost.bytes;
            } else {
                self.counters.rx_copy_errors += 1;
            }
            for (k, &r) in self.rsps[f.slots.clone()].iter().enumerate() {
                self.responder.put(ring, &if ok { r } else { failed(r) });
                if let (0, Some(x)) = (k, &f.extra) {
                    self.responder.put(ring, x);
                }
            }
        }
        !self.frames.is_empty() && self.responder.push(ring)
    }
}

/// A response whose frame could not be copied: an error, and the end of the frame.
fn failed(mut r: NetifRxResponse) -> NetifRxResponse {
    r.status = NETIF_RSP_ERROR;
    r.flags &= !NetRxFlags::MORE_DATA.bits();
    r
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
