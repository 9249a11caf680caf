//! One queue of a vif: its two rings, their persistent granted buffers, its event
//! channel(s), and the TX and RX paths over them.
//!
//! A vif has one queue, or `multi-queue-num-queues` of them (`docs/protocol.md` §1.4),
//! each driven by one thread ([`crate::mq`]). Everything here belongs to one queue; what
//! the queues share — the per-vif credit bucket, what the backend agreed to take — comes
//! in as a [`TxPolicy`].

use crate::error::{BackendError, FrontError, HandshakeError};
use crate::front::{CreditPolicy, FrontStats, Sent, MAX_TX_FRAME, RX_BUFS, TX_BUF, TX_BUFS};
use crate::rx::{RxAssembler, RxEvent};
use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use netport::cost::frame_cost;
use netport::negotiate::Allowed;
use netport::{csum, FrameMeta, GsoKind};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetTxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxRequest, NetifRxResponse,
    NetifTxFrontRing, NetifTxRequest, NetifTxResponse, XenNetifExtraFlags, NETIF_RSP_DROPPED,
    NETIF_RSP_NULL, NETIF_RSP_OKAY,
};
use shared_ring::{Denied, FrontIndices, SharedDualBucket, XEN_PAGE_SIZE};
use xen_ids::DomId;
use xenstore::{Xenstore, XsError, XsTx};

/// What every queue of a vif applies to the frames it sends.
#[derive(Clone, Copy)]
pub(crate) struct TxPolicy<'a> {
    /// The per-vif credit bucket, shared by all queues.
    pub bucket: &'a SharedDualBucket,
    /// Drop or hold a frame beyond the credits.
    pub policy: CreditPolicy,
    /// Enforce the credits (`NetfrontConfig::enforce_credits`).
    pub enforce: bool,
    /// What the backend agreed to take.
    pub allowed: Allowed,
    /// The frontend's xenstore directory (for logs).
    pub name: &'a str,
}

/// One queue (module docs).
pub(crate) struct Queue<S> {
    pub tx_ring: S,
    rx_ring: S,
    tx_bufs: S,
    rx_bufs: S,
    /// Event channel of the TX ring, and of the RX ring (the same one unless split).
    pub tx_evtchn: EvtPort,
    pub rx_evtchn: EvtPort,
    tx_idx: FrontIndices,
    rx_idx: FrontIndices,
    tx_free: Vec<u16>,
    tx_in_flight: Vec<bool>,
    unpushed: bool,
    rx: RxAssembler,
    /// A frame whose partial checksum is completed before it is sent.
    tx_scratch: Vec<u8>,
    /// The last [`Queue::recv`] returned with responses it was not notified of.
    rx_unarmed: bool,
}

impl<S: SharedPages> Queue<S> {
    /// Grants the rings and buffers, posts every RX buffer (published by
    /// [`Queue::publish_rx`]) and allocates the event channel(s).
    pub fn setup<G, E>(
        grants: &G,
        evtchn: &E,
        peer: DomId,
        split: bool,
    ) -> Result<Self, HandshakeError>
    where
        G: GrantShare<Shared = S>,
        E: EventChannels + ?Sized,
    {
        let grant = |what| move |source| HandshakeError::Grant { what, source };
        let ring = |what| move |source| HandshakeError::Ring { what, source };
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
        let tx_evtchn = evtchn
            .alloc_unbound(peer)
            .map_err(HandshakeError::EventChannel)?;
        let rx_evtchn = if split {
            match evtchn.alloc_unbound(peer) {
                Ok(p) => p,
                Err(e) => {
                    let _ = evtchn.unbind(tx_evtchn);
                    return Err(HandshakeError::EventChannel(e));
                }
            }
        } else {
            tx_evtchn
        };
        Ok(Queue {
            tx_ring,
            rx_ring,
            tx_bufs,
            rx_bufs,
            tx_evtchn,
            rx_evtchn,
            tx_idx: FrontIndices::default(),
            rx_idx,
            rx_unarmed: false,
            tx_free: (0..TX_BUFS as u16).rev().collect(),
            tx_in_flight: vec![false; TX_BUFS],
            unpushed: false,
            rx: RxAssembler::new(),
            tx_scratch: Vec::new(),
        })
    }

    /// Writes this queue's ring references and event channel(s) in directory `dir`
    /// (the frontend's own for a single queue, its `queue-N` for several), removing the
    /// event-channel keys of the other kind.
    pub fn write_keys<X: Xenstore + ?Sized>(
        &self,
        xs: &X,
        tx: XsTx,
        dir: &str,
    ) -> Result<(), XsError> {
        let w = |k: &str, v: u32| xs.write(tx, &format!("{dir}/{k}"), v.to_string().as_bytes());
        w("tx-ring-ref", self.tx_ring.grefs()[0].0)?;
        w("rx-ring-ref", self.rx_ring.grefs()[0].0)?;
        if self.tx_evtchn != self.rx_evtchn {
            remove(xs, tx, &format!("{dir}/event-channel"))?;
            w("event-channel-tx", self.tx_evtchn.0)?;
            w("event-channel-rx", self.rx_evtchn.0)
        } else {
            remove(xs, tx, &format!("{dir}/event-channel-tx"))?;
            remove(xs, tx, &format!("{dir}/event-channel-rx"))?;
            w("event-channel", self.tx_evtchn.0)
        }
    }

    /// Publishes the posted RX buffers and tells the backend.
    pub fn publish_rx<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
    ) -> Result<(), HandshakeError> {
        let mut rx = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx).map_err(
            |source| HandshakeError::Ring {
                what: "RX ring",
                source,
            },
        )?;
        if rx.push_requests_and_check_notify() {
            let _ = evtchn.notify(self.rx_evtchn);
        }
        Ok(())
    }

    /// Unbinds the event channel(s) and revokes the grants.
    pub fn release<E: EventChannels + ?Sized>(self, evtchn: &E, name: &str) {
        let _ = evtchn.unbind(self.tx_evtchn);
        if self.rx_evtchn != self.tx_evtchn {
            let _ = evtchn.unbind(self.rx_evtchn);
        }
        for s in [self.tx_ring, self.rx_ring, self.tx_bufs, self.rx_bufs] {
            if let Err(e) = s.revoke() {
                log::warn!("netfront {name}: revoke: {e}");
            }
        }
    }

    /// Offers one frame: charged to the shared credits, then copied into granted
    /// buffers and put on the TX ring (published by [`Queue::flush`]).
    pub fn send_at(
        &mut self,
        p: &TxPolicy<'_>,
        stats: &mut FrontStats,
        now: u64,
        frame: &[u8],
        meta: &FrameMeta,
    ) -> Result<Sent, FrontError> {
        if frame.is_empty() || frame.len() > MAX_TX_FRAME {
            return Ok(Sent::TooBig);
        }
        // Only what the backend agreed to take.
        let checked = match p.allowed.check(frame, meta) {
            Ok(checked) => checked,
            Err(e) => {
                log::debug!("netfront {}: frame not sent: {e}", p.name);
                stats.tx_refused_offload += 1;
                return Ok(Sent::TooBig);
            }
        };
        let meta = &checked.meta;
        let nbufs = frame.len().div_ceil(TX_BUF);
        let nslots = nbufs + meta.gso.is_some() as usize;
        let ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
            .map_err(BackendError::tx_ring)?;
        if self.tx_free.len() < nbufs || (ring.free_requests() as usize) < nslots {
            return Ok(Sent::RingFull);
        }
        if !checked.csum_filled {
            return self.put_frame(p, stats, now, frame, meta);
        }
        let mut scratch = std::mem::take(&mut self.tx_scratch);
        scratch.clear();
        scratch.extend_from_slice(frame);
        let sent = match csum::fill_partial_checksum(&mut scratch) {
            Ok(_) => {
                stats.tx_csum_filled += 1;
                self.put_frame(p, stats, now, &scratch, meta)
            }
            Err(e) => {
                log::debug!("netfront {}: frame not sent: {e}", p.name);
                stats.tx_refused_offload += 1;
                Ok(Sent::TooBig)
            }
        };
        self.tx_scratch = scratch;
        sent
    }

    /// Charges a checked frame to the credits and puts it on the ring (room checked).
    fn put_frame(
        &mut self,
        p: &TxPolicy<'_>,
        stats: &mut FrontStats,
        now: u64,
        frame: &[u8],
        meta: &FrameMeta,
    ) -> Result<Sent, FrontError> {
        let cost = frame_cost(frame, meta);
        match p.bucket.charge_wire(now, &cost) {
            Ok(()) => {}
            Err(_) if !p.enforce => {}
            Err(Denied::Wait { ns }) if p.policy == CreditPolicy::Hold => {
                stats.tx_held += 1;
                return Ok(Sent::Held(now.saturating_add(ns)));
            }
            Err(_) => {
                stats.tx_dropped_credit += 1;
                stats.tx_dropped_credit_bytes += frame.len() as u64;
                stats.tx_dropped_credit_wire_packets += cost.packets;
                stats.tx_dropped_credit_wire_bytes += cost.bytes;
                return Ok(Sent::Dropped);
            }
        }
        let mut ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
            .map_err(BackendError::tx_ring)?;
        let nbufs = frame.len().div_ceil(TX_BUF);
        let grefs = self.tx_bufs.grefs();
        let mut first_flags = NetTxFlags::empty();
        if meta.csum_blank {
            first_flags |= NetTxFlags::CSUM_BLANK | NetTxFlags::DATA_VALIDATED;
        } else if meta.data_validated {
            first_flags |= NetTxFlags::DATA_VALIDATED;
        }
        if meta.gso.is_some() {
            first_flags |= NetTxFlags::EXTRA_INFO;
        }
        for k in 0..nbufs {
            let id = self.tx_free.pop().expect("counted by the caller");
            self.tx_in_flight[id as usize] = true;
            let chunk = &frame[k * TX_BUF..frame.len().min((k + 1) * TX_BUF)];
            let page = id as usize;
            self.tx_bufs
                .mem()
                .write(page * XEN_PAGE_SIZE, chunk)
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
                offset: 0,
                flags: flags.bits(),
                id,
                size: if k == 0 {
                    frame.len() as u16
                } else {
                    chunk.len() as u16
                },
            };
            ring.put_request(&req).map_err(BackendError::tx_ring)?;
            if let (0, Some(g)) = (k, meta.gso) {
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
        self.tx_idx = ring.indices();
        self.unpushed = true;
        stats.tx_packets += 1;
        stats.tx_bytes += frame.len() as u64;
        stats.tx_wire_packets += cost.packets;
        stats.tx_wire_bytes += cost.bytes;
        Ok(Sent::Queued)
    }

    /// Publishes queued TX requests and notifies the backend if it asked to be.
    pub fn flush<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
        stats: &mut FrontStats,
    ) -> Result<(), FrontError> {
        if !self.unpushed {
            return Ok(());
        }
        let mut ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
            .map_err(BackendError::tx_ring)?;
        self.unpushed = false;
        if ring.push_requests_and_check_notify() {
            stats.tx_notifies += 1;
            let _ = evtchn.notify(self.tx_evtchn);
        }
        Ok(())
    }

    /// Collects TX responses and frees their buffers; returns how many frames
    /// completed. An id that was never given is an error.
    pub fn reap_tx(&mut self, stats: &mut FrontStats) -> Result<usize, FrontError> {
        let mut ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
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
                if id >= TX_BUFS || !self.tx_in_flight[id] {
                    self.tx_idx = ring.indices();
                    return Err(BackendError::UnknownTxId(id).into());
                }
                self.tx_in_flight[id] = false;
                self.tx_free.push(id as u16);
                match r.status {
                    NETIF_RSP_OKAY => {}
                    NETIF_RSP_DROPPED => stats.tx_dropped_back += 1,
                    _ => stats.tx_errors += 1,
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
        self.tx_idx = ring.indices();
        Ok(done)
    }

    /// Receives the next frame into `buf` (which must hold 64 KiB to be safe), reposting
    /// the buffers it used. `Ok(None)` when no complete frame is waiting; the backend
    /// then notifies at its next response (`rsp_event`), unless [`Queue::rx_unarmed`]
    /// says responses kept arriving faster than this took them.
    pub fn recv<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
        stats: &mut FrontStats,
        buf: &mut [u8],
    ) -> Result<Option<(usize, FrameMeta)>, FrontError> {
        self.rx_unarmed = false;
        for _ in 0..RECV_PASSES {
            match self.recv_pass(evtchn, stats, buf)? {
                RxPass::Frame(f) => return Ok(Some(f)),
                RxPass::Armed => return Ok(None),
                // Responses published while this side asked for the next one: the
                // backend saw the old `rsp_event` and will not notify for them.
                RxPass::Raced => stats.rx_raced += 1,
            }
        }
        self.rx_unarmed = true;
        Ok(None)
    }

    /// Whether responses are waiting on the RX ring that the backend will not notify
    /// of: the last [`Queue::recv`] gave up after [`RECV_PASSES`] checks that each found
    /// more. The caller must call `recv` again without waiting for an event.
    pub fn rx_unarmed(&self) -> bool {
        self.rx_unarmed
    }

    /// One look at the RX ring: a frame, or none with the next response asked for
    /// (`Armed`), or none and responses arrived meanwhile (`Raced`).
    fn recv_pass<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
        stats: &mut FrontStats,
        buf: &mut [u8],
    ) -> Result<RxPass, FrontError> {
        let mut ring = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx)
            .map_err(BackendError::rx_ring)?;
        let mut out: Option<(usize, FrameMeta)> = None;
        let consumed;
        {
            let mut p = ring.responses().map_err(BackendError::rx_ring)?;
            let n = p.len();
            let mut i = 0;
            // Until a frame is complete and no extra-info slot of it is pending.
            while i < n && (out.is_none() || self.rx.expects_extra()) {
                let slot = p.cons().wrapping_add(i);
                let ev = if self.rx.expects_extra() {
                    let e: NetifExtraInfo = p.copy(i).expect("within the snapshot");
                    i += 1;
                    // GSO metadata of the frame already handed out in `out`.
                    if let (Some(m), Some((_, ref mut meta))) = (self.rx.extra(&e), &mut out) {
                        *meta = m;
                    }
                    RxEvent::Pending
                } else {
                    let r: NetifRxResponse = p.copy(i).expect("within the snapshot");
                    i += 1;
                    let page = (slot as usize) & (RX_BUFS - 1);
                    let bufs = &self.rx_bufs;
                    self.rx.response(&r, |offset, dst| {
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
                    RxEvent::Dropped => stats.rx_errors += 1,
                    RxEvent::Frame(meta) => {
                        let frame = self.rx.frame();
                        if frame.len() > buf.len() {
                            stats.rx_errors += 1;
                        } else {
                            buf[..frame.len()].copy_from_slice(frame);
                            stats.rx_packets += 1;
                            stats.rx_bytes += frame.len() as u64;
                            out = Some((frame.len(), meta));
                        }
                    }
                }
            }
            consumed = i;
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
                    gref: self.rx_bufs.grefs()[b].0,
                })
                .map_err(BackendError::rx_ring)?;
            }
            if ring.push_requests_and_check_notify() {
                stats.rx_notifies += 1;
                let _ = evtchn.notify(self.rx_evtchn);
            }
        }
        let pass = match out {
            Some(f) => RxPass::Frame(f),
            // Nothing complete: ask to be notified of the next response; responses that
            // arrived meanwhile were not notified (RING_FINAL_CHECK_FOR_RESPONSES).
            None if ring
                .final_check_for_responses()
                .map_err(BackendError::rx_ring)? =>
            {
                RxPass::Raced
            }
            None => RxPass::Armed,
        };
        self.rx_idx = ring.indices();
        Ok(pass)
    }
}

fn remove<X: Xenstore + ?Sized>(xs: &X, tx: XsTx, path: &str) -> Result<(), XsError> {
    match xs.rm(tx, path) {
        Err(e) if !e.is_enoent() => Err(e),
        _ => Ok(()),
    }
}

/// Looks at the RX ring one [`Queue::recv`] makes at most when responses keep arriving
/// as it asks to be notified of the next one.
pub const RECV_PASSES: usize = 4;

/// What one look at the RX ring found.
enum RxPass {
    /// A complete frame (its length in the caller's buffer, its metadata).
    Frame((usize, FrameMeta)),
    /// Nothing complete; the backend notifies at its next response.
    Armed,
    /// Nothing complete, and responses were published meanwhile.
    Raced,
}
