//! One queue of the hostile frontend ([`super::RawFrontend`]): its TX and RX rings, the
//! pages it grants for payloads and RX buffers, its event channel(s) and the private
//! ring indices — everything `netif.h` gives a queue, and the xenstore keys that name
//! them (in the frontend directory for one queue, in `queue-N/` for several).

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use shared_ring::netif::{NetifRxFrontRing, NetifRxRequest, NetifTxFrontRing};
use shared_ring::FrontIndices;
use xen_ids::DomId;
use xen_local::{LocalPlatform, LocalSharedPages};

use super::{RawConnect, TxSlot};

/// Writable pages granted to dom0 as one queue's RX buffers
/// ([`super::RawFrontend::post_rx_on`]).
pub const RX_PAGES: usize = 4;

/// One queue as the attacker set it up.
#[derive(Debug)]
pub struct RawQueue {
    tx_ring: LocalSharedPages,
    rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    rx_pages: LocalSharedPages,
    /// The port notified of TX requests (the only one when not split).
    tx_port: EvtPort,
    /// The port notified of RX buffers (`tx_port` when not split).
    rx_port: EvtPort,
    tx_idx: FrontIndices,
    rx_idx: FrontIndices,
    /// RX requests posted so far (their ids).
    rx_posted: u32,
}

impl RawQueue {
    /// Grants a queue's rings and pages to dom0 and allocates its event channel(s), as
    /// `how` says.
    ///
    /// # Panics
    /// If a grant or an event channel is refused.
    pub(super) fn new(plat: &LocalPlatform, how: &RawConnect) -> RawQueue {
        let share = |n, access| {
            plat.grants
                .share(DomId(0), n, access)
                .unwrap_or_else(|e| panic!("grant {n} pages: {e}"))
        };
        let tx_ring = share(1, how.ring_access);
        let rx_ring = share(1, Access::Writable);
        let data = share(how.data_pages.max(1), Access::ReadOnly);
        let rx_pages = share(RX_PAGES, Access::Writable);
        if how.ring_access == Access::Writable {
            NetifTxFrontRing::init(ring_mem(tx_ring.mem())).expect("TX ring init");
        }
        NetifRxFrontRing::init(ring_mem(rx_ring.mem())).expect("RX ring init");
        let port = || {
            plat.evtchn
                .alloc_unbound(DomId(0))
                .unwrap_or_else(|e| panic!("event channel: {e}"))
        };
        let tx_port = port();
        let rx_port = if how.split { port() } else { tx_port };
        RawQueue {
            tx_ring,
            rx_ring,
            data,
            rx_pages,
            tx_port,
            rx_port,
            tx_idx: FrontIndices::default(),
            rx_idx: FrontIndices::default(),
            rx_posted: 0,
        }
    }

    /// The keys naming this queue (relative to the directory they go in): ring
    /// references, then `event-channel`, or `event-channel-tx` and `event-channel-rx`.
    pub(super) fn keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = vec![
            ("tx-ring-ref", self.tx_gref().to_string()),
            ("rx-ring-ref", self.rx_gref().to_string()),
        ];
        if self.is_split() {
            keys.push(("event-channel-tx", self.tx_port.0.to_string()));
            keys.push(("event-channel-rx", self.rx_port.0.to_string()));
        } else {
            keys.push(("event-channel", self.tx_port.0.to_string()));
        }
        keys
    }

    /// The TX ring's grant reference.
    pub fn tx_gref(&self) -> u32 {
        self.tx_ring.grefs()[0].0
    }

    /// The RX ring's grant reference.
    pub fn rx_gref(&self) -> u32 {
        self.rx_ring.grefs()[0].0
    }

    /// Whether the queue has one event channel per ring.
    pub fn is_split(&self) -> bool {
        self.tx_port != self.rx_port
    }

    /// Its ports: TX's, then RX's (the same port twice when not split).
    pub fn ports(&self) -> (EvtPort, EvtPort) {
        (self.tx_port, self.rx_port)
    }

    /// Grant reference of data page `i`.
    pub fn data_gref(&self, i: usize) -> u32 {
        self.data.grefs()[i].0
    }

    /// Writes `bytes` at `offset` of data page `page` (a payload to send).
    ///
    /// # Panics
    /// If they do not fit in the page.
    pub fn write_data(&self, page: usize, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= 4096, "within one page");
        self.data
            .mem()
            .write(page * 4096 + offset, bytes)
            .expect("data page");
    }

    /// The TX ring's shared page, for writes no ring API would make.
    pub fn tx_ring_mem(&self) -> shared_ring::SharedMem<'_> {
        ring_mem(self.tx_ring.mem())
    }

    /// The RX ring's shared page, for writes no ring API would make.
    pub fn rx_ring_mem(&self) -> shared_ring::SharedMem<'_> {
        ring_mem(self.rx_ring.mem())
    }

    /// The TX ring as a front ring at the attacker's private indices.
    fn tx_ring(&self) -> NetifTxFrontRing<'_> {
        NetifTxFrontRing::resume(self.tx_ring_mem(), self.tx_idx).expect("TX ring")
    }

    /// The RX ring as a front ring at the guest's private indices.
    fn rx_ring(&self) -> NetifRxFrontRing<'_> {
        NetifRxFrontRing::resume(self.rx_ring_mem(), self.rx_idx).expect("RX ring")
    }

    /// Puts `slots` on the TX ring and pushes them, all or none; `None` when they did
    /// not fit, else whether the backend asked to be notified.
    pub(super) fn push(&mut self, slots: &[TxSlot]) -> Option<bool> {
        let mut r = self.tx_ring();
        if (r.free_requests() as usize) < slots.len() {
            return None;
        }
        for s in slots {
            let put = match s {
                TxSlot::Req(q) => r.put_request(q),
                TxSlot::Extra(e) => r.put_request_as(e),
            };
            put.expect("free slots checked");
        }
        let asked = r.push_requests_and_check_notify();
        self.tx_idx = r.indices();
        Some(asked)
    }

    /// The TX ring's free request slots (at the attacker's private indices).
    pub fn tx_free(&self) -> u32 {
        self.tx_ring().free_requests()
    }

    /// Posts up to `n` RX buffers (the queue's writable pages, in turn): how many
    /// fitted, and whether the backend asked to be notified.
    pub(super) fn post_rx(&mut self, n: usize) -> (usize, bool) {
        let grefs: Vec<u32> = self.rx_pages.grefs().iter().map(|g| g.0).collect();
        let mut id = self.rx_posted;
        let mut r = self.rx_ring();
        let mut put = 0;
        while put < n && r.free_requests() > 0 {
            let req = NetifRxRequest {
                id: (id % 256) as u16,
                pad: 0,
                gref: grefs[id as usize % grefs.len()],
            };
            r.put_request(&req).expect("free slot checked");
            id = id.wrapping_add(1);
            put += 1;
        }
        let asked = r.push_requests_and_check_notify();
        self.rx_idx = r.indices();
        self.rx_posted = id;
        (put, asked)
    }

    /// RX responses the backend has written so far: `(id, status)`; a positive status
    /// is the bytes delivered in that buffer.
    pub fn take_rx_responses(&mut self) -> Vec<(u16, i16)> {
        let mut r = self.rx_ring();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            out.push((x.id, x.status));
        }
        self.rx_idx = r.indices();
        out
    }

    /// The frames delivered so far, one per RX response: the bytes of its buffer
    /// (`status` of them, at the response's offset), or the status when it is not a
    /// length. Read before the buffer's page is posted again: post at most
    /// [`RX_PAGES`] buffers between two calls.
    pub fn take_rx_frames(&mut self) -> Vec<Result<Vec<u8>, i16>> {
        let mut r = self.rx_ring();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            if x.status <= 0 {
                out.push(Err(x.status));
                continue;
            }
            let at = usize::from(x.id) % RX_PAGES * 4096 + usize::from(x.offset);
            let mut buf = vec![0u8; x.status as usize];
            let read = self.rx_pages.mem().read(at, &mut buf);
            out.push(read.map(|()| buf).map_err(|_| x.status));
        }
        self.rx_idx = r.indices();
        out
    }

    /// TX responses the backend has written so far: `(id, status)`.
    pub fn take_responses(&mut self) -> Vec<(u16, i16)> {
        let mut r = self.tx_ring();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            out.push((x.id, x.status));
        }
        self.tx_idx = r.indices();
        out
    }

    /// The TX ring's `req_event`.
    pub fn tx_req_event(&self) -> u32 {
        self.tx_ring().sring().req_event()
    }

    /// Unbinds its event channel(s) (the grants go when it is dropped).
    pub(super) fn release(self, plat: &LocalPlatform) {
        let _ = plat.evtchn.unbind(self.tx_port);
        if self.is_split() {
            let _ = plat.evtchn.unbind(self.rx_port);
        }
    }
}
