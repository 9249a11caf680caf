//! One queue of a vif: its two rings, their persistent granted buffers, its event
//! channel(s), and the TX and RX paths over them.
//!
//! A vif has one queue, or `multi-queue-num-queues` of them (`docs/protocol.md` §1.4),
//! each driven by one thread ([`crate::mq`]). Everything here belongs to one queue; what
//! the queues share — the per-vif credit bucket, what the backend agreed to take — comes
//! in as a [`TxPolicy`].

use crate::error::{BackendError, FrontError, HandshakeError};
use crate::front::tx_pages::TxPages;
use crate::front::{CreditPolicy, FrontStats, Sent, MAX_TX_FRAME, RX_BUFS, TX_BUF, TX_BUFS};
use crate::rx::{RxAssembler, RxEvent};
use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use netport::cost::frame_cost;
use netport::negotiate::{Allowed, Refused};
use netport::{csum, FrameMeta, GsoKind, Port};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetTxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxRequest, NetifRxResponse,
    NetifTxFrontRing, NetifTxRequest, NetifTxResponse, XenNetifExtraFlags, NETIF_RSP_DROPPED,
    NETIF_RSP_NULL, NETIF_RSP_OKAY,
};
use shared_ring::{Denied, FrontIndices, SharedDualBucket, WireCost, XEN_PAGE_SIZE};
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
    /// Which TX pages are free (a page's index is the id of its request).
    tx_pages: TxPages,
    /// A frame read from the port into TX pages and refused until credits return
    /// (policy `hold`): offered again before the port is read.
    tx_staged: Option<Staged>,
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
            tx_pages: TxPages::new(TX_BUFS),
            tx_staged: None,
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
        let Some(checked) = agreed(p, stats, p.allowed.check(frame, meta)) else {
            return Ok(Sent::TooBig);
        };
        let meta = &checked.meta;
        let nbufs = frame.len().div_ceil(TX_BUF);
        let Some(first) = self.room(nbufs + meta.gso.is_some() as usize, nbufs)? else {
            return Ok(Sent::RingFull);
        };
        if !checked.csum_filled {
            return self.copy_frame(p, stats, now, first, frame, meta);
        }
        let mut scratch = std::mem::take(&mut self.tx_scratch);
        scratch.clear();
        scratch.extend_from_slice(frame);
        let sent = match csum::fill_partial_checksum(&mut scratch) {
            Ok(_) => {
                stats.tx_csum_filled += 1;
                self.copy_frame(p, stats, now, first, &scratch, meta)
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

    /// Offers the next frame of `port`, read straight into free granted TX pages: the
    /// port's `readv` is the frame's only copy in this process. A run of pages for
    /// [`Port::max_frame`] bytes and ring slots for their requests (and a GSO extra)
    /// are found before the port is read, so a frame read always has its room;
    /// `Sent::RingFull` when there is none (the port is not read). The frame is then
    /// checked, completed and charged as [`Queue::send_at`] does, in its pages: a
    /// frame dropped for credits or refused never reaches the ring and its pages stay
    /// free; one held for credits (policy `hold`) stays in its pages and the next call
    /// offers it again before reading the port. `Ok(None)` when the port had no frame.
    pub fn send_from_port<T: Port + ?Sized>(
        &mut self,
        p: &TxPolicy<'_>,
        stats: &mut FrontStats,
        now: u64,
        port: &mut T,
    ) -> Result<Option<Sent>, FrontError> {
        if let Some(st) = self.tx_staged.take() {
            return self.offer(p, stats, now, st).map(Some);
        }
        let max = port.max_frame();
        let pages = max.div_ceil(TX_BUF);
        if pages > MAX_PORT_PAGES {
            return Err(FrontError::PortFrame {
                max_frame: max,
                max_pages: MAX_PORT_PAGES,
            });
        }
        let Some(first) = self.room(pages + 1, pages)? else {
            return Ok(Some(Sent::RingFull));
        };
        let buf = self
            .tx_bufs
            .private_mut(first * TX_BUF, pages * TX_BUF)
            .map_err(tx_buffer)?;
        let Some((len, meta)) = port.recv(buf).map_err(FrontError::Port)? else {
            return Ok(None);
        };
        let frame = &mut buf[..len.min(pages * TX_BUF)];
        if frame.is_empty() || len > MAX_TX_FRAME {
            return Ok(Some(Sent::TooBig));
        }
        let Some(c) = agreed(p, stats, p.allowed.conform(frame, &meta)) else {
            return Ok(Some(Sent::TooBig));
        };
        if c.csum_filled {
            stats.tx_csum_filled += 1;
        }
        let st = Staged {
            first,
            len,
            meta: c.meta,
            cost: frame_cost(frame, &c.meta),
        };
        self.tx_pages.take(first, st.pages());
        self.offer(p, stats, now, st).map(Some)
    }

    /// Ring room for `slots` requests and a run of `pages` free TX pages: the run's
    /// first page, `None` when either is missing.
    fn room(&self, slots: usize, pages: usize) -> Result<Option<usize>, FrontError> {
        let ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
            .map_err(BackendError::tx_ring)?;
        if (ring.free_requests() as usize) < slots {
            return Ok(None);
        }
        Ok(self.tx_pages.find_run(pages))
    }

    /// Charges a checked frame and copies it into the free pages from `first` (room
    /// checked), then puts it on the ring.
    fn copy_frame(
        &mut self,
        p: &TxPolicy<'_>,
        stats: &mut FrontStats,
        now: u64,
        first: usize,
        frame: &[u8],
        meta: &FrameMeta,
    ) -> Result<Sent, FrontError> {
        let cost = frame_cost(frame, meta);
        if let Some(refused) = charge(p, stats, now, frame.len(), &cost) {
            return Ok(refused);
        }
        for (k, chunk) in frame.chunks(TX_BUF).enumerate() {
            self.tx_bufs
                .mem()
                .write((first + k) * TX_BUF, chunk)
                .map_err(tx_buffer)?;
        }
        let st = Staged {
            first,
            len: frame.len(),
            meta: *meta,
            cost,
        };
        self.tx_pages.take(first, st.pages());
        self.put_frame(stats, &st)
    }

    /// Charges a frame that is in its (taken) pages and puts it on the ring. Held for
    /// credits: it stays in its pages, staged; dropped: its pages are free again.
    fn offer(
        &mut self,
        p: &TxPolicy<'_>,
        stats: &mut FrontStats,
        now: u64,
        st: Staged,
    ) -> Result<Sent, FrontError> {
        let ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
            .map_err(BackendError::tx_ring)?;
        if (ring.free_requests() as usize) < st.slots() {
            self.tx_staged = Some(st);
            return Ok(Sent::RingFull);
        }
        match charge(p, stats, now, st.len, &st.cost) {
            None => self.put_frame(stats, &st),
            Some(held @ Sent::Held(_)) => {
                self.tx_staged = Some(st);
                Ok(held)
            }
            Some(refused) => {
                self.tx_pages.release(st.first, st.pages());
                Ok(refused)
            }
        }
    }

    /// Puts a charged frame that is in its (taken) pages on the ring (room checked).
    fn put_frame(&mut self, stats: &mut FrontStats, st: &Staged) -> Result<Sent, FrontError> {
        let mut ring = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx)
            .map_err(BackendError::tx_ring)?;
        let nbufs = st.pages();
        let grefs = self.tx_bufs.grefs();
        let meta = &st.meta;
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
            let page = st.first + k;
            self.tx_pages.send(page);
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
                id: page as u16,
                size: if k == 0 {
                    st.len as u16
                } else {
                    (st.len - k * TX_BUF).min(TX_BUF) as u16
                },
            };
            ring.put_request(&req).map_err(BackendError::tx_ring)?;
            if let (0, Some(g)) = (k, meta.gso) {
                ring.put_request_as(&gso_extra(g.size, g.kind))
                    .map_err(BackendError::tx_ring)?;
            }
        }
        self.tx_idx = ring.indices();
        self.unpushed = true;
        stats.tx_packets += 1;
        stats.tx_bytes += st.len as u64;
        stats.tx_wire_packets += st.cost.packets;
        stats.tx_wire_bytes += st.cost.bytes;
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
                if !self.tx_pages.complete(id) {
                    self.tx_idx = ring.indices();
                    return Err(BackendError::UnknownTxId(id).into());
                }
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
        let Some(meta) = self.recv_within(evtchn, stats, buf.len())? else {
            return Ok(None);
        };
        let frame = self.rx.frame();
        buf[..frame.len()].copy_from_slice(frame);
        Ok(Some((frame.len(), meta)))
    }

    /// [`Queue::recv`] without the copy: the frame stays in the reassembly buffer,
    /// [`Queue::rx_frame`], until the next receive. (Its one copy out of the granted
    /// pages, which the backend may rewrite at any time, was made on reassembly.)
    pub fn recv_frame<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
        stats: &mut FrontStats,
    ) -> Result<Option<FrameMeta>, FrontError> {
        self.recv_within(evtchn, stats, usize::MAX)
    }

    /// The frame the last [`Queue::recv_frame`] returned (valid until the next receive).
    pub fn rx_frame(&self) -> &[u8] {
        self.rx.frame()
    }

    /// The next frame of at most `max` bytes (longer ones are counted as errors and
    /// skipped), left in the reassembly buffer.
    fn recv_within<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
        stats: &mut FrontStats,
        max: usize,
    ) -> Result<Option<FrameMeta>, FrontError> {
        self.rx_unarmed = false;
        for _ in 0..RECV_PASSES {
            match self.recv_pass(evtchn, stats, max)? {
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
        max: usize,
    ) -> Result<RxPass, FrontError> {
        let mut ring = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx)
            .map_err(BackendError::rx_ring)?;
        let mut out: Option<FrameMeta> = None;
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
                    if let (Some(m), Some(meta)) = (self.rx.extra(&e), &mut out) {
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
                        let len = self.rx.frame().len();
                        if len > max {
                            stats.rx_errors += 1;
                        } else {
                            stats.rx_packets += 1;
                            stats.rx_bytes += len as u64;
                            out = Some(meta);
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
    /// A complete frame (in the reassembly buffer), its metadata.
    Frame(FrameMeta),
    /// Nothing complete; the backend notifies at its next response.
    Armed,
    /// Nothing complete, and responses were published meanwhile.
    Raced,
}

/// Most TX pages a port's frame may need ([`Queue::send_from_port`] reads a frame into
/// one run of them): 32 pages (128 KiB), twice netif's largest frame.
pub const MAX_PORT_PAGES: usize = 32;

/// A frame in its TX pages, checked and with its wire cost, not on the ring yet.
#[derive(Debug)]
struct Staged {
    /// Its first page (the rest follow).
    first: usize,
    len: usize,
    /// Metadata as sent (after [`Allowed::conform`]).
    meta: FrameMeta,
    cost: WireCost,
}

impl Staged {
    /// Pages (and data requests) of the frame.
    fn pages(&self) -> usize {
        self.len.div_ceil(TX_BUF)
    }

    /// Ring slots of the frame: its requests and a GSO extra.
    fn slots(&self) -> usize {
        self.pages() + self.meta.gso.is_some() as usize
    }
}

/// `checked` when the backend agreed to the frame's offloads; `None` (counted,
/// logged) when not: the frame is not sent.
fn agreed<T>(p: &TxPolicy<'_>, stats: &mut FrontStats, checked: Result<T, Refused>) -> Option<T> {
    match checked {
        Ok(c) => Some(c),
        Err(e) => {
            log::debug!("netfront {}: frame not sent: {e}", p.name);
            stats.tx_refused_offload += 1;
            None
        }
    }
}

/// Charges a frame's wire cost to the shared credits: `None` when it may be sent,
/// else what became of it (held until a time, or dropped and counted).
fn charge(
    p: &TxPolicy<'_>,
    stats: &mut FrontStats,
    now: u64,
    len: usize,
    cost: &WireCost,
) -> Option<Sent> {
    match p.bucket.charge_wire(now, cost) {
        Ok(()) => None,
        Err(_) if !p.enforce => None,
        Err(Denied::Wait { ns }) if p.policy == CreditPolicy::Hold => {
            stats.tx_held += 1;
            Some(Sent::Held(now.saturating_add(ns)))
        }
        Err(_) => {
            stats.tx_dropped_credit += 1;
            stats.tx_dropped_credit_bytes += len as u64;
            stats.tx_dropped_credit_wire_packets += cost.packets;
            stats.tx_dropped_credit_wire_bytes += cost.bytes;
            Some(Sent::Dropped)
        }
    }
}

/// The GSO extra-info slot of a TCP super-frame.
fn gso_extra(size: u16, kind: GsoKind) -> NetifExtraInfo {
    let t = match kind {
        GsoKind::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
        GsoKind::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
    };
    NetifExtraInfo::new(
        &ExtraInfo::Gso {
            size,
            r#type: t,
            features: 0,
        },
        XenNetifExtraFlags::empty(),
    )
}

/// A TX buffer access failed.
fn tx_buffer(source: hypervisor::grant::MemError) -> FrontError {
    BackendError::Buffer {
        which: "TX",
        source,
    }
    .into()
}
