//! Multi-queue netfront: one thread per queue, each moving frames between its own
//! [`Port`] (a TAP queue) and its own rings, all of them spending one per-vif credit
//! bucket ([`shared_ring::SharedDualBucket`], lock-free; `docs/protocol.md` §2.7).
//!
//! [`Netfront::split`] lends the queues out as [`QueueHandle`]s. [`run`] spawns a thread
//! per handle and keeps the control work on the calling thread: it reads the event
//! channel device (one for the domain), wakes the thread of the queue whose port fired,
//! and watches xenstore; a change of the backend's state stops the queue threads, lets
//! [`Netfront::maintain`] act on it, and starts them again once connected. Queue 0's
//! thread reads the credit area (it lives in queue 0's TX ring page) and publishes the
//! frontend counters, summed over the queues. Every 5 s the control thread logs each
//! queue's frame counts when they changed (`netfront: queue I: tx_packets=.. rx_packets=..`).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hypervisor::clock::Clock;
use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::GrantShare;
use hypervisor::platform::FrontendPlatform;
use hypervisor::poll::Epoll;
use netport::{FrameMeta, Port};
use shared_ring::credit::CreditReaderState;
use xenstore::Xenstore;

use super::lane::{port_to_tx, rx_to_port, Lane};
use crate::error::FrontError;
use crate::front::{front_counters, poll_credits, FrontStats, Netfront, Sent};
use crate::queue::{Queue, TxPolicy};

type Shared<P> = <<P as hypervisor::platform::Platform>::Grants as GrantShare>::Shared;

/// What one queue publishes for the others (queue 0 sums them into the credit area's
/// frontend block): written by the queue's own thread only.
#[derive(Debug, Default)]
pub struct QueueCounters {
    tx_packets: AtomicU64,
    rx_packets: AtomicU64,
    tx_wire_packets: AtomicU64,
    tx_wire_bytes: AtomicU64,
    dropped_frames: AtomicU64,
    dropped_wire_packets: AtomicU64,
    dropped_wire_bytes: AtomicU64,
    held: AtomicU64,
}

impl QueueCounters {
    /// Adds what `s` counted since `last` (the handle's counters start at 0 each time
    /// the queues are lent out; these keep counting for the connection).
    fn publish(&self, s: &FrontStats, last: &mut FrontStats) {
        let add = |a: &AtomicU64, now: u64, before: u64| {
            a.fetch_add(now - before, Ordering::Relaxed);
        };
        add(&self.tx_packets, s.tx_packets, last.tx_packets);
        add(&self.rx_packets, s.rx_packets, last.rx_packets);
        add(
            &self.tx_wire_packets,
            s.tx_wire_packets,
            last.tx_wire_packets,
        );
        add(&self.tx_wire_bytes, s.tx_wire_bytes, last.tx_wire_bytes);
        add(
            &self.dropped_frames,
            s.tx_dropped_credit,
            last.tx_dropped_credit,
        );
        add(
            &self.dropped_wire_packets,
            s.tx_dropped_credit_wire_packets,
            last.tx_dropped_credit_wire_packets,
        );
        add(
            &self.dropped_wire_bytes,
            s.tx_dropped_credit_wire_bytes,
            last.tx_dropped_credit_wire_bytes,
        );
        add(&self.held, s.tx_held, last.tx_held);
        *last = *s;
    }

    /// Frames this queue put on its TX ring and received from its RX ring, as of its
    /// thread's last loop, for the connection.
    pub fn packets(&self) -> (u64, u64) {
        (
            self.tx_packets.load(Ordering::Relaxed),
            self.rx_packets.load(Ordering::Relaxed),
        )
    }

    /// `stats` (a netfront's cumulated counters) without what `all` counted so far in
    /// this connection: adding [`QueueCounters::sum`] later counts nothing twice.
    pub(crate) fn before(stats: &FrontStats, all: &[QueueCounters]) -> FrontStats {
        let c = Self::sum(all);
        FrontStats {
            tx_wire_packets: stats.tx_wire_packets.saturating_sub(c.tx_wire_packets),
            tx_wire_bytes: stats.tx_wire_bytes.saturating_sub(c.tx_wire_bytes),
            tx_dropped_credit: stats.tx_dropped_credit.saturating_sub(c.tx_dropped_credit),
            tx_dropped_credit_wire_packets: stats
                .tx_dropped_credit_wire_packets
                .saturating_sub(c.tx_dropped_credit_wire_packets),
            tx_dropped_credit_wire_bytes: stats
                .tx_dropped_credit_wire_bytes
                .saturating_sub(c.tx_dropped_credit_wire_bytes),
            tx_held: stats.tx_held.saturating_sub(c.tx_held),
            ..*stats
        }
    }

    fn sum(all: &[QueueCounters]) -> FrontStats {
        let mut s = FrontStats::default();
        for c in all {
            s.tx_wire_packets += c.tx_wire_packets.load(Ordering::Relaxed);
            s.tx_wire_bytes += c.tx_wire_bytes.load(Ordering::Relaxed);
            s.tx_dropped_credit += c.dropped_frames.load(Ordering::Relaxed);
            s.tx_dropped_credit_wire_packets += c.dropped_wire_packets.load(Ordering::Relaxed);
            s.tx_dropped_credit_wire_bytes += c.dropped_wire_bytes.load(Ordering::Relaxed);
            s.tx_held += c.held.load(Ordering::Relaxed);
        }
        s
    }
}

/// Queue 0's hold on the credit area's reader state.
pub(crate) struct CreditsRef<'a> {
    pub state: &'a mut CreditReaderState,
    pub applied_generation: &'a mut u32,
    /// The negotiated credit-area layout version.
    pub version: u16,
    /// What the backend told about the allowance ([`Netfront::allowance`]).
    pub allowance: &'a mut crate::front::Allowance,
    /// The allowance as last logged.
    pub told: AllowanceLog,
    /// The state file for `netfront stats` (multi-queue: queue 0 rewrites it) and the
    /// counters not in the queues' [`QueueCounters`] ([`QueueCounters::before`]).
    pub stats_file: Option<(&'a mut super::stats::StatsFile, FrontStats)>,
}

/// One queue lent out by [`Netfront::split`], to be driven by one thread.
pub struct QueueHandle<'a, P: FrontendPlatform> {
    index: usize,
    queue: &'a mut Queue<Shared<P>>,
    evtchn: &'a P::Evtchn,
    policy: TxPolicy<'a>,
    clock: &'a Clock,
    credits: Option<CreditsRef<'a>>,
    counters: &'a [QueueCounters],
    /// `stats` as last published in `counters`.
    published: FrontStats,
    /// This queue's counters since the handle was made.
    pub stats: FrontStats,
}

/// The queues of a connected [`Netfront`], lent out, and what the control thread needs
/// meanwhile.
pub struct Split<'a, P: FrontendPlatform> {
    /// One handle per queue, in queue order.
    pub queues: Vec<QueueHandle<'a, P>>,
    /// The domain's event channel device (its fd fires for every queue's ports).
    pub evtchn: &'a P::Evtchn,
    /// Xenstore (its event fd fires on the backend's state watch).
    pub xenstore: &'a P::Xenstore,
    /// Every event channel port with the queue it belongs to.
    pub ports: Vec<(EvtPort, usize)>,
    /// Each queue's counters for the connection (live: updated by the queue threads).
    pub counters: &'a [QueueCounters],
}

impl<'a, P: FrontendPlatform> Split<'a, P> {
    pub(crate) fn new(
        evtchn: &'a P::Evtchn,
        xenstore: &'a P::Xenstore,
        queues: &'a mut [Queue<Shared<P>>],
        policy: TxPolicy<'a>,
        clock: &'a Clock,
        mut credits: Option<CreditsRef<'a>>,
        counters: &'a [QueueCounters],
    ) -> Self {
        let mut ports = Vec::new();
        let handles = queues
            .iter_mut()
            .enumerate()
            .map(|(index, queue)| {
                ports.push((queue.tx_evtchn, index));
                if queue.rx_evtchn != queue.tx_evtchn {
                    ports.push((queue.rx_evtchn, index));
                }
                QueueHandle {
                    index,
                    queue,
                    evtchn,
                    policy,
                    clock,
                    credits: if index == 0 { credits.take() } else { None },
                    counters,
                    published: FrontStats::default(),
                    stats: FrontStats::default(),
                }
            })
            .collect();
        Split {
            queues: handles,
            evtchn,
            xenstore,
            ports,
            counters,
        }
    }
}

impl<P: FrontendPlatform> QueueHandle<'_, P> {
    /// This queue's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The time on the frontend's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Offers one frame on this queue (see [`Netfront::send_at`]): charged to the
    /// vif's shared credits.
    pub fn send_at(
        &mut self,
        now: u64,
        frame: &[u8],
        meta: &FrameMeta,
    ) -> Result<Sent, FrontError> {
        self.queue
            .send_at(&self.policy, &mut self.stats, now, frame, meta)
    }

    /// Offers the next frame of `port` on this queue, read straight into its granted
    /// TX pages (see [`Netfront::send_from_port`]).
    pub fn send_from_port<T: Port + ?Sized>(
        &mut self,
        now: u64,
        port: &mut T,
    ) -> Result<Option<Sent>, FrontError> {
        self.queue
            .send_from_port(&self.policy, &mut self.stats, now, port)
    }

    /// Receives the next frame of this queue into its reassembly buffer (see
    /// [`Netfront::recv_frame`]).
    pub fn recv_frame(&mut self) -> Result<Option<FrameMeta>, FrontError> {
        self.queue.recv_frame(self.evtchn, &mut self.stats)
    }

    /// The frame the last [`QueueHandle::recv_frame`] returned.
    pub fn rx_frame(&self) -> &[u8] {
        self.queue.rx_frame()
    }

    /// Publishes this queue's TX requests (see [`Netfront::flush`]).
    pub fn flush(&mut self) -> Result<(), FrontError> {
        self.queue.flush(self.evtchn, &mut self.stats)
    }

    /// Collects this queue's TX responses (see [`Netfront::reap_tx`]).
    pub fn reap_tx(&mut self) -> Result<usize, FrontError> {
        self.queue.reap_tx(&mut self.stats)
    }

    /// Receives the next frame of this queue (see [`Netfront::recv`]).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(usize, FrameMeta)>, FrontError> {
        self.queue.recv(self.evtchn, &mut self.stats, buf)
    }

    /// Queue 0: reads the credit area and applies a new generation to the shared
    /// bucket; publishes every queue's counters, summed. Other queues: nothing.
    pub fn apply_credits(&mut self) {
        self.counters[self.index].publish(&self.stats, &mut self.published);
        let Some(c) = self.credits.as_mut() else {
            return;
        };
        let now = (self.clock)();
        let current = QueueCounters::sum(self.counters);
        let sum = front_counters(&current);
        if poll_credits(
            self.queue,
            c,
            self.policy.bucket,
            now,
            sum,
            self.policy.name,
        ) {
            self.stats.credit_updates += 1;
        }
        c.told.note(c.allowance, now);
        if let Some((file, before)) = c.stats_file.as_mut() {
            let mut total = *before;
            add_stats(&mut total, &current);
            file.maybe_write(now, true, &total, c.allowance);
        }
    }
}

const K_PORT: u64 = 0;
const K_WAKE: u64 = 1;
const K_EVTCHN: u64 = 0;
const K_XS: u64 = 1;
/// How often the control thread logs the queues' counters (when they changed).
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Why [`run`] returned.
#[derive(Debug, thiserror::Error)]
pub enum MqError {
    /// An epoll, a socket pair or a port failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The connection has a different number of queues than ports were given (a
    /// reconnection to a backend that offers fewer queues): restart with as many ports.
    #[error("connected with {queues} queues, but {ports} ports were given")]
    QueueCount {
        /// Queues of the connection.
        queues: usize,
        /// Ports given.
        ports: usize,
    },
}

/// Moves frames between `ports[i]` and queue `i` of `nf`, one thread per queue, until
/// `stop()` is true. Each queue's counters are added to `nf.stats`, and returned per
/// queue. A xenstore event (the backend's state changed) stops the queue threads while
/// [`Netfront::maintain`] looks at it: a frame a queue holds for credits stays in its
/// TX pages and is offered again when the threads start again on the same connection
/// (a new connection starts with new pages).
pub fn run<F: FrontendPlatform, T: Port>(
    nf: &mut Netfront<F>,
    ports: &mut [T],
    mut stop: impl FnMut() -> bool,
) -> Result<Vec<FrontStats>, MqError> {
    let mut per_queue = vec![FrontStats::default(); ports.len()];
    while !stop() {
        // The state file at connection changes (while connected with a credit area,
        // queue 0 rewrites it: `QueueHandle::apply_credits`).
        let now = nf.now();
        nf.note_stats(now);
        if !nf.is_connected() {
            if !nf.maintain() {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        if nf.num_queues() != ports.len() {
            return Err(MqError::QueueCount {
                queues: nf.num_queues(),
                ports: ports.len(),
            });
        }
        let (stats, broken) = serve_connected(nf, ports, &mut stop)?;
        for (total, s) in per_queue.iter_mut().zip(&stats) {
            add_stats(total, s);
            add_stats(&mut nf.stats, s);
        }
        if broken {
            nf.disconnect();
        }
        nf.maintain();
    }
    Ok(per_queue)
}

/// Runs the queue threads until xenstore fires, a queue breaks or `stop()`; returns
/// their counters and whether a queue broke (the backend broke the protocol).
fn serve_connected<F: FrontendPlatform, T: Port>(
    nf: &mut Netfront<F>,
    ports: &mut [T],
    stop: &mut impl FnMut() -> bool,
) -> Result<(Vec<FrontStats>, bool), MqError> {
    let split = nf.split().expect("connected");
    let halt = AtomicBool::new(false);
    let broken = AtomicBool::new(false);
    let mut wakes = Vec::new();
    let mut wake_rx = Vec::new();
    for _ in 0..ports.len() {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        wakes.push(tx);
        wake_rx.push(rx);
    }
    let ep = Epoll::new()?;
    ep.add(split.evtchn.as_fd(), K_EVTCHN)?;
    ep.add(split.xenstore.event_fd(), K_XS)?;
    let (evtchn, port_map, counters) = (split.evtchn, split.ports, split.counters);
    let stats = std::thread::scope(|s| -> Result<Vec<FrontStats>, MqError> {
        let threads: Vec<_> = split
            .queues
            .into_iter()
            .zip(ports.iter_mut())
            .zip(wake_rx)
            .map(|((mut h, port), wake)| {
                let (halt, broken) = (&halt, &broken);
                s.spawn(move || {
                    if let Err(e) = queue_loop(&mut h, port, wake, halt) {
                        log::warn!("netfront: queue {}: {e}; disconnecting", h.index);
                        broken.store(true, Ordering::Release);
                    }
                    h.stats
                })
            })
            .collect();
        let res = control_loop(&ep, evtchn, &port_map, &wakes, &broken, counters, stop);
        halt.store(true, Ordering::Release);
        for w in &wakes {
            let _ = (&*w).write(&[1]);
        }
        let stats = threads
            .into_iter()
            .map(|t| t.join().expect("queue thread"))
            .collect();
        res.map(|()| stats)
    })?;
    Ok((stats, broken.load(Ordering::Acquire)))
}

/// The control thread: dispatches event channel notifications to the queue threads;
/// returns when xenstore fires, a queue broke or `stop()`.
fn control_loop<E: EventChannels + ?Sized>(
    ep: &Epoll,
    evtchn: &E,
    port_map: &[(EvtPort, usize)],
    wakes: &[UnixStream],
    broken: &AtomicBool,
    counters: &[QueueCounters],
    stop: &mut impl FnMut() -> bool,
) -> Result<(), MqError> {
    let mut keys = [0u64; 4];
    let mut fired = [EvtPort(0); 64];
    let mut logged = Instant::now();
    let mut last: Vec<(u64, u64)> = counters.iter().map(QueueCounters::packets).collect();
    loop {
        if stop() || broken.load(Ordering::Acquire) {
            return Ok(());
        }
        if logged.elapsed() >= LOG_EVERY {
            logged = Instant::now();
            log_changed(counters, &mut last);
        }
        let n = ep.wait(&mut keys, Duration::from_millis(100))?;
        for &key in &keys[..n] {
            if key == K_XS {
                return Ok(());
            }
            let m = evtchn.pending(&mut fired).unwrap_or(0);
            for p in &fired[..m] {
                for &(_, q) in port_map.iter().filter(|(port, _)| port == p) {
                    let _ = (&wakes[q]).write(&[1]);
                }
                let _ = evtchn.unmask(*p);
            }
        }
    }
}

/// Logs each queue's frame counts when they changed since the last time.
fn log_changed(counters: &[QueueCounters], last: &mut [(u64, u64)]) {
    for (i, (c, l)) in counters.iter().zip(last.iter_mut()).enumerate() {
        let now = c.packets();
        if now != *l {
            *l = now;
            log::info!(
                "netfront: queue {i}: tx_packets={} rx_packets={}",
                now.0,
                now.1
            );
        }
    }
}

/// One queue's thread: the loop of [`crate::pump::run`] over one queue, woken by its
/// port, by the control thread (its event channel fired) or by the hold deadline.
fn queue_loop<P: FrontendPlatform, T: Port>(
    h: &mut QueueHandle<'_, P>,
    port: &mut T,
    mut wake: UnixStream,
    halt: &AtomicBool,
) -> Result<(), QueueFailure> {
    let ep = Epoll::new()?;
    ep.add(port.rx_fd(), K_PORT)?;
    ep.add(wake.as_fd(), K_WAKE)?;
    let mut st = LoopState::default();
    let mut keys = [0u64; 4];
    let mut drain = [0u8; 64];
    while !halt.load(Ordering::Acquire) {
        let now = h.now();
        let timeout_ms: u64 = match st.hold_until {
            // Responses the backend will not notify of may be waiting (Queue::recv,
            // or RX stopped at a batch's end).
            _ if h.queue.rx_unarmed() || st.rx_more => 0,
            _ if st.rx_pending.is_some() => 1,
            Some(t) => t.saturating_sub(now).div_ceil(1_000_000).min(100),
            None => 100,
        };
        let n = ep.wait(&mut keys, Duration::from_millis(timeout_ms))?;
        if keys[..n].contains(&K_WAKE) {
            while matches!(wake.read(&mut drain), Ok(k) if k > 0) {}
        }
        h.apply_credits();
        h.reap_tx()?;
        st.rx_more = rx_to_port(h, port, &mut st.rx_pending)?.1;
        let now = h.now();
        let blocked = port_to_tx(h, port, now, &mut st.hold_until)?;
        h.flush()?;
        if st.port_armed == blocked {
            ep.set(port.rx_fd(), K_PORT, !blocked)?;
            st.port_armed = !blocked;
        }
    }
    h.apply_credits();
    Ok(())
}

/// A queue thread's frames in flight between its port and its rings.
struct LoopState {
    /// Until when the frame in the queue's TX pages is held for credits.
    hold_until: Option<u64>,
    /// A received frame the port could not take yet (in the reassembly buffer).
    rx_pending: Option<FrameMeta>,
    /// RX stopped at a batch's end, with frames perhaps left on the ring.
    rx_more: bool,
    port_armed: bool,
}

impl Default for LoopState {
    fn default() -> Self {
        LoopState {
            hold_until: None,
            rx_more: false,
            rx_pending: None,
            port_armed: true,
        }
    }
}

/// Why a queue thread stopped.
#[derive(Debug, thiserror::Error)]
enum QueueFailure {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Front(#[from] FrontError),
}

impl<P: FrontendPlatform> Lane for QueueHandle<'_, P> {
    fn send_from_port<T: Port + ?Sized>(
        &mut self,
        now: u64,
        port: &mut T,
    ) -> Result<Option<Sent>, FrontError> {
        QueueHandle::send_from_port(self, now, port)
    }
    fn recv_frame(&mut self) -> Result<Option<FrameMeta>, FrontError> {
        QueueHandle::recv_frame(self)
    }
    fn rx_frame(&self) -> &[u8] {
        QueueHandle::rx_frame(self)
    }
}

/// Adds every counter of `s` to `total`.
pub fn add_stats(total: &mut FrontStats, s: &FrontStats) {
    total.tx_packets += s.tx_packets;
    total.tx_bytes += s.tx_bytes;
    total.tx_wire_packets += s.tx_wire_packets;
    total.tx_wire_bytes += s.tx_wire_bytes;
    total.tx_dropped_credit += s.tx_dropped_credit;
    total.tx_dropped_credit_bytes += s.tx_dropped_credit_bytes;
    total.tx_dropped_credit_wire_packets += s.tx_dropped_credit_wire_packets;
    total.tx_dropped_credit_wire_bytes += s.tx_dropped_credit_wire_bytes;
    total.tx_held += s.tx_held;
    total.tx_errors += s.tx_errors;
    total.tx_dropped_back += s.tx_dropped_back;
    total.rx_packets += s.rx_packets;
    total.rx_bytes += s.rx_bytes;
    total.rx_errors += s.rx_errors;
    total.tx_refused_offload += s.tx_refused_offload;
    total.tx_csum_filled += s.tx_csum_filled;
    total.credit_updates += s.credit_updates;
}

/// The allowance last logged, and when: logs a changed one at most every
/// [`ALLOWANCE_LOG_NS`] (the single-queue loop and multi-queue's queue 0).
#[derive(Debug, Default)]
pub(crate) struct AllowanceLog {
    told: crate::Allowance,
    at: u64,
}

impl AllowanceLog {
    /// Logs `a` if it changed since the last line and that line is old enough.
    pub(crate) fn note(&mut self, a: &crate::Allowance, now: u64) {
        if *a != self.told && now.saturating_sub(self.at) >= ALLOWANCE_LOG_NS {
            log::info!("netfront: {a}");
            self.told = *a;
            self.at = now;
        }
    }
}

/// Least time between two log lines of the allowance ([`crate::Allowance`]), ns: its
/// changes (a new budget, frames shaped) are logged at most this often.
pub const ALLOWANCE_LOG_NS: u64 = 10_000_000_000;
