//! A frontend written from `netif.h` alone, driving the rings byte by byte, as a hostile
//! guest would: it grants its rings, writes its xenstore keys and puts whatever it likes
//! on the TX ring, with no netfront in between. The hostile tests and `bench hostile`
//! attack netback with it.
//!
//! Like [`crate::frames`], these are assertions: a step the attacker needs (a grant, a
//! xenstore write, an event channel) that fails panics with a message.

use std::time::{Duration, Instant};

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use hypervisor::xenbus::{read_state, XenbusState};
use shared_ring::netif::{
    NetTxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxRequest, NetifTxFrontRing, NetifTxRequest,
};
use shared_ring::FrontIndices;
use xen_ids::{DomId, VifId};
use xen_local::{LocalHost, LocalPlatform, LocalSharedPages};
use xenstore::{Xenstore, XsTx};

use crate::TestbedError;

/// How long the attacker waits for netback to answer a step of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One slot the attacker puts on the TX ring: a request, or an extra-info slot.
#[derive(Debug, Clone, Copy)]
pub enum TxSlot {
    /// A `netif_tx_request`.
    Req(NetifTxRequest),
    /// A `netif_extra_info` in a request slot.
    Extra(NetifExtraInfo),
}

/// A TX request slot: `size` bytes of grant `gref` at `offset`.
pub fn tx_req(gref: u32, offset: u16, size: u16, flags: NetTxFlags, id: u16) -> TxSlot {
    TxSlot::Req(NetifTxRequest {
        gref,
        offset,
        flags: flags.bits(),
        id,
        size,
    })
}

/// How the attacker connects.
#[derive(Debug, Clone)]
pub struct RawConnect {
    /// Access of the TX ring grant (netback needs `Writable`; `ReadOnly` is an attack).
    pub ring_access: Access,
    /// `tx-ring-ref` / `rx-ring-ref` to write instead of the real ones.
    pub refs: Option<(String, String)>,
    /// Read-only data pages granted to dom0 for packet payloads.
    pub data_pages: usize,
}

impl Default for RawConnect {
    fn default() -> Self {
        RawConnect {
            ring_access: Access::Writable,
            refs: None,
            data_pages: 1,
        }
    }
}

/// Writable pages granted to dom0 as RX buffers ([`RawFrontend::post_rx`]).
const RX_PAGES: usize = 4;

/// What one connection holds: rings, data pages, the event channel, the private indices.
#[derive(Debug)]
pub struct RawConn {
    tx_ring: LocalSharedPages,
    rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    rx_pages: LocalSharedPages,
    evtchn: EvtPort,
    tx_idx: FrontIndices,
    rx_idx: FrontIndices,
    /// RX requests posted so far (their ids).
    rx_posted: u32,
}

/// A hostile guest's device: one domain's connection to the local host, one vif.
#[derive(Debug)]
pub struct RawFrontend {
    plat: LocalPlatform,
    fe: String,
    be: String,
    conn: Option<RawConn>,
}

impl RawFrontend {
    /// Device `id`, whose vif the toolstack created (see [`crate::add_vif`]).
    pub fn new(host: &LocalHost, id: VifId) -> Result<RawFrontend, TestbedError> {
        Ok(RawFrontend {
            plat: crate::domain(host, id.domid)?,
            fe: format!("/local/domain/{}/device/vif/{}", id.domid.0, id.devid),
            be: format!("/local/domain/0/backend/vif/{}/{}", id.domid.0, id.devid),
            conn: None,
        })
    }

    /// The guest's connection to the hypervisor and xenstore.
    pub fn platform(&self) -> &LocalPlatform {
        &self.plat
    }

    /// The frontend directory (`/local/domain/<d>/device/vif/<n>`).
    pub fn frontend_path(&self) -> &str {
        &self.fe
    }

    /// Writes `key` under the frontend directory.
    ///
    /// # Panics
    /// If xenstore refuses.
    pub fn write(&self, key: &str, v: &str) {
        let path = format!("{}/{key}", self.fe);
        if let Err(e) = self.plat.xenstore.write(XsTx::NONE, &path, v.as_bytes()) {
            panic!("write {path}: {e}");
        }
    }

    /// The backend's state (`Unknown` when it cannot be read).
    pub fn be_state(&self) -> XenbusState {
        read_state(&self.plat.xenstore, &format!("{}/state", self.be))
            .unwrap_or(XenbusState::Unknown)
    }

    /// Waits until the backend is in one of `want`; which one, or `None` after `timeout`.
    pub fn wait_be(&self, want: &[XenbusState], timeout: Duration) -> Option<XenbusState> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.be_state();
            if want.contains(&s) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The backend's `error` node (empty when there is none).
    pub fn error(&self) -> String {
        let path = format!("{}/error", self.be);
        let e = self
            .plat
            .xenstore
            .read(XsTx::NONE, &path)
            .unwrap_or_default();
        String::from_utf8_lossy(&e).into_owned()
    }

    /// The handshake as `netif.h` describes it: Initialising, wait for InitWait, grant the
    /// rings, write the keys, Connected. Returns the backend's answer (Connected, or
    /// Closing when it refused, with the reason in [`Self::error`]).
    ///
    /// # Panics
    /// If a grant, event channel or xenstore write fails, or netback does not answer.
    pub fn connect(&mut self, how: &RawConnect) -> XenbusState {
        self.write("state", "1");
        self.expect_be(&[XenbusState::InitWait]);
        let g = &self.plat.grants;
        let share = |n, access| {
            g.share(DomId(0), n, access)
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
        let evtchn = self
            .plat
            .evtchn
            .alloc_unbound(DomId(0))
            .unwrap_or_else(|e| panic!("event channel: {e}"));
        let (t, r) = match &how.refs {
            Some((t, r)) => (t.clone(), r.clone()),
            None => (
                tx_ring.grefs()[0].0.to_string(),
                rx_ring.grefs()[0].0.to_string(),
            ),
        };
        self.write("tx-ring-ref", &t);
        self.write("rx-ring-ref", &r);
        self.write("event-channel", &evtchn.0.to_string());
        self.write("request-rx-copy", "1");
        self.conn = Some(RawConn {
            tx_ring,
            rx_ring,
            data,
            rx_pages,
            evtchn,
            tx_idx: FrontIndices::default(),
            rx_idx: FrontIndices::default(),
            rx_posted: 0,
        });
        self.write("state", "4");
        self.expect_be(&[XenbusState::Connected, XenbusState::Closing])
    }

    fn expect_be(&self, want: &[XenbusState]) -> XenbusState {
        self.wait_be(want, HANDSHAKE_TIMEOUT)
            .unwrap_or_else(|| panic!("{}: backend never reached {want:?}", self.be))
    }

    fn conn(&self) -> &RawConn {
        self.conn.as_ref().expect("not connected")
    }

    /// Grant reference of data page `i`.
    pub fn data_gref(&self, i: usize) -> u32 {
        self.conn().data.grefs()[i].0
    }

    /// The TX ring's shared page, for writes no ring API would make.
    pub fn tx_ring_mem(&self) -> shared_ring::SharedMem<'_> {
        ring_mem(self.conn().tx_ring.mem())
    }

    /// The TX ring as a front ring at the attacker's private indices.
    fn tx_ring(&self) -> NetifTxFrontRing<'_> {
        NetifTxFrontRing::resume(self.tx_ring_mem(), self.conn().tx_idx).expect("TX ring")
    }

    /// Puts `slots` on the TX ring and pushes them, all or none (a packet is never cut
    /// by a full ring); notifies when the backend asked for it (`req_event`) or when
    /// `always`. `None` when they did not fit, else whether the backend asked.
    pub fn push(&mut self, slots: &[TxSlot], always: bool) -> Option<bool> {
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
        let idx = r.indices();
        self.conn.as_mut().expect("not connected").tx_idx = idx;
        if asked || always {
            self.notify();
        }
        Some(asked)
    }

    /// The RX ring as a front ring at the guest's private indices.
    fn rx_ring(&self) -> NetifRxFrontRing<'_> {
        let c = self.conn();
        NetifRxFrontRing::resume(ring_mem(c.rx_ring.mem()), c.rx_idx).expect("RX ring")
    }

    /// Posts `n` RX buffers (the connection's writable pages, in turn) and notifies when
    /// the backend asked for it; how many fitted on the ring.
    pub fn post_rx(&mut self, n: usize) -> usize {
        let c = self.conn();
        let grefs: Vec<u32> = c.rx_pages.grefs().iter().map(|g| g.0).collect();
        let mut id = c.rx_posted;
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
        let idx = r.indices();
        let c = self.conn.as_mut().expect("not connected");
        c.rx_idx = idx;
        c.rx_posted = id;
        if asked {
            self.notify();
        }
        put
    }

    /// RX responses the backend has written so far: `(id, status)`; a positive status
    /// is the bytes delivered in that buffer.
    pub fn take_rx_responses(&mut self) -> Vec<(u16, i16)> {
        let mut r = self.rx_ring();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            out.push((x.id, x.status));
        }
        let idx = r.indices();
        self.conn.as_mut().expect("not connected").rx_idx = idx;
        out
    }

    /// The TX ring's `req_event`: the request index at which the backend asked to be
    /// notified next.
    pub fn tx_req_event(&self) -> u32 {
        self.tx_ring().sring().req_event()
    }

    /// Responses the backend has written so far: `(id, status)`.
    pub fn take_responses(&mut self) -> Vec<(u16, i16)> {
        let mut r = self.tx_ring();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            out.push((x.id, x.status));
        }
        let idx = r.indices();
        self.conn.as_mut().expect("not connected").tx_idx = idx;
        out
    }

    /// Waits up to `timeout` for `n` responses; those that came.
    pub fn responses(&mut self, n: usize, timeout: Duration) -> Vec<(u16, i16)> {
        let deadline = Instant::now() + timeout;
        let mut out = self.take_responses();
        while out.len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
            out.extend(self.take_responses());
        }
        out
    }

    /// Signals the event channel.
    ///
    /// # Panics
    /// If the hypervisor refuses.
    pub fn notify(&self) {
        let port = self.conn().evtchn;
        if let Err(e) = self.plat.evtchn.notify(port) {
            panic!("notify {port:?}: {e}");
        }
    }

    /// Closes the device (Closed, waits for the backend's Closed) and frees everything
    /// it granted.
    pub fn close(&mut self) {
        self.write("state", "6");
        // A backend that already failed the vif may sit in Closing: Closed follows.
        let _ = self.wait_be(&[XenbusState::Closed], HANDSHAKE_TIMEOUT);
        if let Some(c) = self.conn.take() {
            let _ = self.plat.evtchn.unbind(c.evtchn);
        }
    }
}
