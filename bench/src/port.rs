//! The backend side of the wire: a [`netport::Port`] per vif onto the one shared
//! [`Nic`], optionally behind a `tc`-like policer, and the [`PortFactory`] that hands
//! them to netback. In the receive scenarios each port also reads the frames the NIC
//! model's sender queued for its VM ([`RxWires`]).
//!
//! Netback grant-copies a frame out of the guest and then sends it to its vif's port; so
//! the policer here drops **after** the copy, exactly where `tc` in dom0 acts.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use netback::{PortFactory, VifId};
use netport::{FrameMeta, FullPolicy, MemPort, MemPortConfig, Port};

use crate::nic::Nic;
use hypervisor::clock::monotonic_ns;

/// A bytes-only token bucket like `tc ... police rate R burst B drop`.
#[derive(Debug, Clone)]
pub struct Police {
    rate_bytes_per_s: u64,
    burst_bytes: u64,
    tokens_nano: u128,
    last_ns: Option<u64>,
}

impl Police {
    /// A policer at `rate_bps` bits/s of frame bytes with a `burst_bytes` bucket (full at start).
    pub fn new(rate_bps: u64, burst_bytes: u64) -> Police {
        Police {
            rate_bytes_per_s: rate_bps / 8,
            burst_bytes,
            tokens_nano: burst_bytes as u128 * 1_000_000_000,
            last_ns: None,
        }
    }

    /// Whether a frame of `len` bytes at `now_ns` conforms (and takes its tokens).
    pub fn conform(&mut self, now_ns: u64, len: u64) -> bool {
        let cap = self.burst_bytes as u128 * 1_000_000_000;
        if let Some(last) = self.last_ns {
            let dt = now_ns.saturating_sub(last) as u128;
            self.tokens_nano = (self.tokens_nano + dt * self.rate_bytes_per_s as u128).min(cap);
        }
        self.last_ns = Some(now_ns);
        let need = len as u128 * 1_000_000_000;
        if self.tokens_nano >= need {
            self.tokens_nano -= need;
            true
        } else {
            false
        }
    }
}

/// One vif's handle onto the shared NIC.
pub struct NicPort {
    nic: Arc<Mutex<Nic>>,
    vm: usize,
    police: Option<Police>,
    /// Receive scenarios: the vif's queue of frames from the NIC model ([`crate::rx`]).
    rx: Option<MemPort>,
    /// Never readable: nothing comes back from the sink.
    idle_fd: OwnedFd,
}

impl NicPort {
    /// A port for VM `vm` (sink index), policed if `police` is set.
    pub fn new(nic: Arc<Mutex<Nic>>, vm: usize, police: Option<Police>) -> io::Result<NicPort> {
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        let idle_fd = rustix::event::eventfd(0, flags)?;
        Ok(NicPort {
            nic,
            vm,
            police,
            rx: None,
            idle_fd,
        })
    }

    /// Frames from the NIC model to the guest come from `queue` (receive scenarios).
    pub fn with_rx(mut self, queue: MemPort) -> NicPort {
        self.rx = Some(queue);
        self
    }
}

impl Port for NicPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        match &mut self.rx {
            Some(q) => q.recv(buf),
            None => Ok(None),
        }
    }

    fn send(&mut self, frame: &[u8], _meta: &FrameMeta) -> io::Result<()> {
        let now = monotonic_ns();
        let mut nic = self.nic.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &mut self.police {
            if !p.conform(now, frame.len() as u64) {
                if let Some(s) = nic.sinks.get_mut(self.vm) {
                    s.dropped_police += 1;
                }
                return Ok(());
            }
        }
        // A full NIC queue drops the frame (counted in the sink), like a tail-drop qdisc.
        nic.transmit(now, self.vm, frame);
        Ok(())
    }

    fn rx_fd(&self) -> BorrowedFd<'_> {
        match &self.rx {
            Some(q) => q.rx_fd(),
            None => self.idle_fd.as_fd(),
        }
    }

    fn max_frame(&self) -> usize {
        65536
    }
}

/// Gives every vif a [`NicPort`] onto the same NIC; VM index = domid − 1.
pub struct NicFactory {
    /// The shared NIC.
    pub nic: Arc<Mutex<Nic>>,
    /// Per VM (index): the policer to put in front of the NIC, if any (`tc`).
    pub police: Vec<Option<Police>>,
    /// Receive scenarios: each port reads its frames from a new queue of these.
    pub rx: Option<RxWires>,
}

impl PortFactory for NicFactory {
    fn open(&mut self, id: VifId, _mac: [u8; 6]) -> io::Result<Box<dyn Port>> {
        let vm = (id.domid.0 as usize).checked_sub(1).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{id}: not a guest"))
        })?;
        let police = self.police.get(vm).cloned().flatten();
        let port = NicPort::new(self.nic.clone(), vm, police)?;
        Ok(Box::new(match &self.rx {
            Some(w) => port.with_rx(w.open(vm)?),
            None => port,
        }))
    }
}

/// Any port behind a [`Police`] (the `tc` policy with real TAPs, `--traffic netns`: this
/// kernel may lack `act_police`, and the policer is the same either way): frames over the
/// rate are dropped after netback's grant copy and counted in `dropped`.
pub struct PolicedPort<P: Port> {
    /// The port frames go to when they conform.
    pub inner: P,
    police: Police,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl<P: Port> PolicedPort<P> {
    /// Wraps `inner`; drops are added to `dropped`.
    pub fn new(inner: P, police: Police, dropped: Arc<std::sync::atomic::AtomicU64>) -> Self {
        PolicedPort {
            inner,
            police,
            dropped,
        }
    }
}

impl<P: Port> Port for PolicedPort<P> {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        self.inner.recv(buf)
    }

    fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> io::Result<()> {
        if self.police.conform(monotonic_ns(), frame.len() as u64) {
            self.inner.send(frame, meta)
        } else {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    fn rx_fd(&self) -> BorrowedFd<'_> {
        self.inner.rx_fd()
    }

    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn police_passes_rate_plus_burst() {
        // 8 Mb/s = 1 MB/s, burst 3000 bytes: over 1 s, 1500-byte frames every 100 µs
        // (15 MB/s offered) → at most (1 MB + 3000) / 1500 = 668 pass.
        let mut p = Police::new(8_000_000, 3000);
        let mut passed = 0;
        for i in 0..10_000u64 {
            if p.conform(i * 100_000, 1500) {
                passed += 1;
            }
        }
        assert!((666..=668).contains(&passed), "{passed}");
    }
}

/// Largest frame of the receive queues (the scenarios' frames are at most 1500 bytes).
const RX_MAX_FRAME: usize = 2048;

/// The vifs' receive queues in dom0: netback's port reads one end, the NIC model's
/// sender for that VM writes the other.
#[derive(Clone)]
pub struct RxWires {
    nic_ends: Arc<Mutex<Vec<Option<MemPort>>>>,
    cfg: MemPortConfig,
}

impl RxWires {
    /// Queues of `queue_frames` frames (rounded up to a power of two), dropping what
    /// arrives when full.
    pub fn new(queue_frames: usize) -> RxWires {
        let mut cfg = MemPortConfig::new(queue_frames, RX_MAX_FRAME);
        cfg.full_policy = FullPolicy::Drop;
        RxWires {
            nic_ends: Arc::new(Mutex::new((0..3).map(|_| None).collect())),
            cfg,
        }
    }

    /// A new queue for VM `vm`: returns netback's end, keeps the NIC's.
    pub fn open(&self, vm: usize) -> io::Result<MemPort> {
        let (nic, port) = MemPort::pair_with(self.cfg)?;
        let mut ends = self.nic_ends.lock().unwrap_or_else(|e| e.into_inner());
        match ends.get_mut(vm) {
            Some(slot) => *slot = Some(nic),
            None => return Err(io::Error::other(format!("VM{}: no such VM", vm + 1))),
        }
        Ok(port)
    }

    /// The NIC's end of VM `vm`'s queue, once netback opened it (within `timeout`).
    pub(crate) fn take(&self, vm: usize, timeout: Duration) -> Result<MemPort, String> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(w) = self.nic_ends.lock().unwrap_or_else(|e| e.into_inner())[vm].take() {
                return Ok(w);
            }
            if Instant::now() > until {
                return Err(format!("VM{}: netback never opened its port", vm + 1));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
