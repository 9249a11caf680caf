//! A frontend written from `netif.h` alone, driving the rings byte by byte, as a hostile
//! guest would: it grants its rings, writes its xenstore keys and puts whatever it likes
//! on the TX ring, with no netfront in between. The hostile tests and `bench hostile`
//! attack netback with it.
//!
//! It sets up one queue (keys in the frontend directory) or several
//! (`multi-queue-num-queues` and `queue-N/`, each queue with its own rings and one event
//! channel or split ones); the single-queue methods work on queue 0, the `_on`
//! methods on any queue.
//!
//! Like [`crate::frames`], these are assertions: a step the attacker needs (a grant, a
//! xenstore write, an event channel) that fails panics with a message.

use std::time::{Duration, Instant};

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::Access;
use hypervisor::xenbus::{read_state, XenbusState};
use shared_ring::netif::{NetTxFlags, NetifExtraInfo, NetifTxRequest};
use xen_ids::VifId;
use xen_local::{LocalHost, LocalPlatform};
use xenstore::{Xenstore, XsTx};

use crate::TestbedError;

mod queue;

pub use queue::{RawQueue, RX_PAGES};

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
    /// Access of the TX ring grants (netback needs `Writable`; `ReadOnly` is an attack).
    pub ring_access: Access,
    /// `tx-ring-ref` / `rx-ring-ref` to write for queue 0 instead of the real ones.
    pub refs: Option<(String, String)>,
    /// Read-only data pages granted to dom0 for packet payloads, per queue.
    pub data_pages: usize,
    /// Queues to set up: 1 writes the keys in the frontend directory (and no
    /// `multi-queue-num-queues`); 2 or more write `multi-queue-num-queues` and each
    /// queue's keys in `queue-N/`.
    pub queues: u32,
    /// One event channel per ring (`event-channel-tx` / `event-channel-rx`) instead of
    /// one per queue (`event-channel`).
    pub split: bool,
}

impl Default for RawConnect {
    fn default() -> Self {
        RawConnect {
            ring_access: Access::Writable,
            refs: None,
            data_pages: 1,
            queues: 1,
            split: false,
        }
    }
}

impl RawConnect {
    /// `n` queues, otherwise the defaults.
    pub fn queues(n: u32) -> RawConnect {
        RawConnect {
            queues: n,
            ..RawConnect::default()
        }
    }
}

/// What one connection holds: each queue's rings, pages, event channel(s) and indices.
#[derive(Debug)]
pub struct RawConn {
    queues: Vec<RawQueue>,
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

    /// Removes `key` (and what is under it) from the frontend directory, if present.
    ///
    /// # Panics
    /// If xenstore refuses.
    pub fn remove(&self, key: &str) {
        let path = format!("{}/{key}", self.fe);
        match self.plat.xenstore.rm(XsTx::NONE, &path) {
            Err(e) if !e.is_enoent() => panic!("rm {path}: {e}"),
            _ => {}
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

    /// The handshake as `netif.h` describes it: [`Self::prepare`], then
    /// [`Self::announce`]. Returns the backend's answer (Connected, or Closing when it
    /// refused, with the reason in [`Self::error`]).
    ///
    /// # Panics
    /// If a grant, event channel or xenstore write fails, or netback does not answer.
    pub fn connect(&mut self, how: &RawConnect) -> XenbusState {
        self.prepare(how);
        self.announce()
    }

    /// The handshake up to the keys: Initialising, wait for InitWait, grant each
    /// queue's rings and pages, allocate its event channel(s), write the keys. The
    /// attacker may then rewrite any key ([`Self::write`]) before [`Self::announce`].
    ///
    /// # Panics
    /// If a grant, event channel or xenstore write fails, or netback does not answer.
    pub fn prepare(&mut self, how: &RawConnect) {
        self.write("state", "1");
        self.expect_be(&[XenbusState::InitWait]);
        let n = how.queues.max(1);
        let queues: Vec<RawQueue> = (0..n).map(|_| RawQueue::new(&self.plat, how)).collect();
        if n > 1 {
            self.write("multi-queue-num-queues", &n.to_string());
        }
        for (q, queue) in queues.iter().enumerate() {
            let dir = if n == 1 {
                String::new()
            } else {
                format!("queue-{q}/")
            };
            // The channel keys of an earlier connection (split or not) go.
            for k in ["event-channel", "event-channel-tx", "event-channel-rx"] {
                self.remove(&format!("{dir}{k}"));
            }
            for (k, v) in queue.keys() {
                self.write(&format!("{dir}{k}"), &v);
            }
        }
        if let Some((t, r)) = &how.refs {
            let dir = if n == 1 {
                String::new()
            } else {
                "queue-0/".into()
            };
            self.write(&format!("{dir}tx-ring-ref"), t);
            self.write(&format!("{dir}rx-ring-ref"), r);
        }
        self.write("request-rx-copy", "1");
        self.conn = Some(RawConn { queues });
    }

    /// The end of the handshake: Connected; the backend's answer (Connected, or Closing
    /// when it refused, with the reason in [`Self::error`]).
    ///
    /// # Panics
    /// If netback does not answer.
    pub fn announce(&mut self) -> XenbusState {
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

    /// The number of queues set up.
    pub fn num_queues(&self) -> usize {
        self.conn().queues.len()
    }

    /// Queue `q`.
    ///
    /// # Panics
    /// If there is no such queue.
    pub fn queue(&self, q: usize) -> &RawQueue {
        &self.conn().queues[q]
    }

    /// Queue `q`, to take its responses.
    ///
    /// # Panics
    /// If there is no such queue.
    pub fn queue_mut(&mut self, q: usize) -> &mut RawQueue {
        &mut self.conn.as_mut().expect("not connected").queues[q]
    }

    /// Grant reference of queue 0's data page `i`.
    pub fn data_gref(&self, i: usize) -> u32 {
        self.queue(0).data_gref(i)
    }

    /// Queue 0's TX ring's shared page, for writes no ring API would make.
    pub fn tx_ring_mem(&self) -> shared_ring::SharedMem<'_> {
        self.queue(0).tx_ring_mem()
    }

    /// Puts `slots` on queue 0's TX ring ([`Self::push_on`]).
    pub fn push(&mut self, slots: &[TxSlot], always: bool) -> Option<bool> {
        self.push_on(0, slots, always)
    }

    /// Puts `slots` on queue `q`'s TX ring and pushes them, all or none (a packet is
    /// never cut by a full ring); notifies its TX channel when the backend asked for it
    /// (`req_event`) or when `always`. `None` when they did not fit, else whether the
    /// backend asked.
    pub fn push_on(&mut self, q: usize, slots: &[TxSlot], always: bool) -> Option<bool> {
        let asked = self.queue_mut(q).push(slots)?;
        if asked || always {
            self.signal(self.queue(q).ports().0);
        }
        Some(asked)
    }

    /// Posts `n` RX buffers on queue 0 ([`Self::post_rx_on`]).
    pub fn post_rx(&mut self, n: usize) -> usize {
        self.post_rx_on(0, n)
    }

    /// Posts up to `n` RX buffers on queue `q` (its writable pages, in turn) and
    /// notifies its RX channel when the backend asked for it; how many fitted.
    pub fn post_rx_on(&mut self, q: usize, n: usize) -> usize {
        let (put, asked) = self.queue_mut(q).post_rx(n);
        if asked {
            self.signal(self.queue(q).ports().1);
        }
        put
    }

    /// Queue 0's RX responses so far ([`RawQueue::take_rx_responses`]).
    pub fn take_rx_responses(&mut self) -> Vec<(u16, i16)> {
        self.queue_mut(0).take_rx_responses()
    }

    /// Queue 0's TX ring's `req_event`: the request index at which the backend asked
    /// to be notified next.
    pub fn tx_req_event(&self) -> u32 {
        self.queue(0).tx_req_event()
    }

    /// Queue 0's TX responses so far: `(id, status)`.
    pub fn take_responses(&mut self) -> Vec<(u16, i16)> {
        self.queue_mut(0).take_responses()
    }

    /// Waits up to `timeout` for `n` of queue 0's TX responses; those that came.
    pub fn responses(&mut self, n: usize, timeout: Duration) -> Vec<(u16, i16)> {
        let deadline = Instant::now() + timeout;
        let mut out = self.take_responses();
        while out.len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
            out.extend(self.take_responses());
        }
        out
    }

    /// Signals queue 0's event channel(s).
    ///
    /// # Panics
    /// If the hypervisor refuses.
    pub fn notify(&self) {
        self.notify_queue(0);
    }

    /// Signals queue `q`'s event channel(s) (both when split).
    ///
    /// # Panics
    /// If the hypervisor refuses.
    pub fn notify_queue(&self, q: usize) {
        let (tx, rx) = self.queue(q).ports();
        self.signal(tx);
        if rx != tx {
            self.signal(rx);
        }
    }

    /// Signals local port `port`.
    ///
    /// # Panics
    /// If the hypervisor refuses.
    pub fn signal(&self, port: EvtPort) {
        if let Err(e) = self.plat.evtchn.notify(port) {
            panic!("notify {port:?}: {e}");
        }
    }

    /// Closes the device (Closed, waits for the backend's Closed) and frees everything
    /// it granted and bound.
    pub fn close(&mut self) {
        self.write("state", "6");
        // A backend that already failed the vif may sit in Closing: Closed follows.
        let _ = self.wait_be(&[XenbusState::Closed], HANDSHAKE_TIMEOUT);
        if let Some(c) = self.conn.take() {
            for q in c.queues {
                q.release(&self.plat);
            }
        }
    }
}
