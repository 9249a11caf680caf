//! One backstop per vif whatever its number of queues (`docs/protocol.md` §2.7): a
//! frontend that ignores its credits and floods every queue of a vif gets, over all its
//! queues together, no more than its budget × time plus one backstop burst — the same as
//! a one-queue vif with the same budget. The queues are driven directly (no event
//! loop, an injected time), from one thread and from one thread per queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hypervisor::grant::{Access, GrantMap, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use netback::vif::{Backstops, Vif, BACKSTOP_MIN_PACKETS, TX_BATCH};
use netport::{MemPort, Port};
use shared_ring::credit::Credits;
use shared_ring::netif::{NetTxFlags, NetifRxFrontRing, NetifTxFrontRing, NetifTxRequest};
use shared_ring::{FrontIndices, Limit};
use xen_ids::{DomId, VifId};
use xen_local::{LocalHost, LocalMapping, LocalPlatform, LocalSharedPages};

const FRAME: u16 = 60;
const MS: u64 = 1_000_000;
/// The vif's budget: 2000 packets/s, a burst of 20 (the backstop: 2 × 20, at least
/// [`BACKSTOP_MIN_PACKETS`]).
const PPS: u64 = 2000;
const BURST: u64 = 20;

fn budget() -> Credits {
    Credits {
        bytes: Limit::Unlimited,
        packets: Limit::rate(PPS, BURST),
        period_us: 10_000,
    }
}

/// A conforming frontend's frames after netback's worker was kept off the CPU, and a
/// hostile one's when it was not (`docs/protocol.md` §2.4, "stalls").
mod cpu_waits {
    use super::*;
    use hypervisor::cpu_wait::RunDelay;

    /// Posts `n` requests on the queue's TX ring (fewer if the ring is full).
    fn post(q: &mut Queue, n: usize) {
        let mut r = NetifTxFrontRing::resume(ring_mem(q.tx_ring.mem()), q.tx_idx).unwrap();
        while let Ok(Some(_)) = r.take_response() {
            q.answered += 1;
        }
        for id in 0..n as u16 {
            let req = NetifTxRequest {
                gref: q.data.grefs()[0].0,
                offset: 0,
                flags: NetTxFlags::empty().bits(),
                id,
                size: FRAME,
            };
            if r.put_request(&req).is_err() {
                break;
            }
        }
        r.push_requests();
        q.tx_idx = r.indices();
    }

    /// A one-queue vif whose polling thread's run delay is `delay` (ns, moved by the test).
    fn vif_with_delay(host: &Host) -> (Queue, Arc<AtomicU64>) {
        let mut q = host.vif(1).pop().unwrap();
        let delay = Arc::new(AtomicU64::new(0));
        let d = delay.clone();
        q.vif
            .set_run_delay(Some(RunDelay::from_fn(move || d.load(Ordering::Relaxed))));
        q.poll(&host.back, 0);
        (q, delay)
    }

    /// Polls as the worker does after a wake-up: batch after batch at one instant, until
    /// the ring has nothing more to give.
    fn poll_all(q: &mut Queue, back: &LocalPlatform, now: u64) {
        for _ in 0..8 {
            q.poll(back, now);
        }
    }

    #[test]
    fn frames_a_conforming_frontend_queued_while_netback_waited_for_a_cpu_all_pass() {
        let host = Host::new();
        let (mut q, delay) = vif_with_delay(&host);
        // Every 100 ms the frontend queues what its budget allows (200 frames at
        // 2000/s), while netback's worker waits for a CPU the whole time.
        for round in 1..=5u64 {
            post(&mut q, (PPS / 10) as usize);
            delay.fetch_add(100 * MS, Ordering::Relaxed);
            poll_all(&mut q, &host.back, round * 100 * MS);
        }
        assert_eq!(q.sent, 5 * PPS / 10, "no frame of the budget refused");
        assert_eq!(q.vif.counters().tx_dropped_police, 0);
        assert_eq!(q.vif.counters().tx_held, 0);
    }

    #[test]
    fn without_the_wait_the_same_frames_are_policed_to_one_burst() {
        // The same frames, but netback slept (no run delay): the frontend sent them all
        // at once after an idle gap, a burst deeper than the backstop's.
        let host = Host::new();
        let (mut q, _delay) = vif_with_delay(&host);
        let backstop_burst = (2 * BURST).max(BACKSTOP_MIN_PACKETS);
        post(&mut q, (PPS / 10) as usize);
        poll_all(&mut q, &host.back, 100 * MS);
        assert_eq!(q.sent, backstop_burst, "one backstop burst after the gap");
        let c = q.vif.counters();
        assert!(c.tx_dropped_police + c.tx_held > 0, "{c:?}");
    }

    #[test]
    fn a_flood_gets_no_more_than_budget_times_time_whatever_the_waits() {
        // A frontend that ignores its credits keeps its ring full while netback is
        // reported waiting for a CPU all the time (even more than the time that passes):
        // over the run it still gets at most the budget × time + one backstop burst.
        let host = Host::new();
        let (mut q, delay) = vif_with_delay(&host);
        let ms = 1000;
        for t in (10..=ms).step_by(10) {
            q.flood();
            delay.fetch_add(50 * MS, Ordering::Relaxed);
            q.poll(&host.back, t * MS);
        }
        assert!(q.sent <= bound(ms), "sent {} > {}", q.sent, bound(ms));
        assert!(q.sent >= PPS * ms / 1000, "sent only {}", q.sent);
    }
}

/// A raw frontend's queue (its own TX ring, RX ring and data page) and dom0's `Vif` over it.
struct Queue {
    tx_ring: LocalSharedPages,
    _rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    tx_idx: FrontIndices,
    vif: Vif<LocalMapping>,
    wire: MemPort,
    port: MemPort,
    /// Frames that reached the port from this queue.
    sent: u64,
    /// Requests answered (any status).
    answered: u64,
}

/// The frontend domain and dom0.
struct Host {
    _host: LocalHost,
    back: LocalPlatform,
    front: LocalPlatform,
}

impl Host {
    fn new() -> Host {
        let host = LocalHost::new();
        let back = host.domain(DomId(0)).unwrap();
        let front = host.domain(DomId(1)).unwrap();
        Host {
            _host: host,
            back,
            front,
        }
    }

    /// Queue 0 of a vif (`backstops`: `None`) or one more queue of it.
    fn queue(&self, backstops: Option<&Backstops>) -> Queue {
        let share = |a| self.front.grants.share(DomId(0), 1, a).unwrap();
        let (tx_ring, rx_ring) = (share(Access::Writable), share(Access::Writable));
        let data = share(Access::ReadOnly);
        NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
        NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
        let map = |s: &LocalSharedPages| {
            self.back
                .grants
                .map(DomId(1), &[s.grefs()[0]], Access::Writable)
                .unwrap()
        };
        let id = VifId::new(DomId(1), 0);
        let vif = match backstops {
            None => Vif::new(id, map(&tx_ring), map(&rx_ring), None, None, 0),
            Some(b) => Vif::queue(id, map(&tx_ring), map(&rx_ring), b, None),
        }
        .expect("fresh rings attach");
        let (port, wire) = MemPort::pair(256, 2048).unwrap();
        Queue {
            tx_ring,
            _rx_ring: rx_ring,
            data,
            tx_idx: FrontIndices::default(),
            vif,
            wire,
            port,
            sent: 0,
            answered: 0,
        }
    }

    /// A vif of `n` queues with the budget applied (to queue 0, as the manager does).
    fn vif(&self, n: usize) -> Vec<Queue> {
        let mut q0 = self.queue(None);
        q0.vif.set_tx_budget(&budget(), 0);
        let b = q0.vif.backstops();
        let mut qs = vec![q0];
        qs.extend((1..n).map(|_| self.queue(Some(&b))));
        qs
    }
}

impl Queue {
    /// Keeps the TX ring full (a flood that ignores every credit).
    fn flood(&mut self) {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        while let Ok(Some(_)) = r.take_response() {
            self.answered += 1;
        }
        let mut id = 0u16;
        while r
            .put_request(&NetifTxRequest {
                gref: self.data.grefs()[0].0,
                offset: 0,
                flags: NetTxFlags::empty().bits(),
                id,
                size: FRAME,
            })
            .is_ok()
        {
            id = id.wrapping_add(1);
        }
        r.push_requests();
        self.tx_idx = r.indices();
    }

    /// One TX poll at `now` on `back`'s grants; counts what reached the port.
    fn poll(&mut self, back: &LocalPlatform, now: u64) {
        self.vif
            .tx_poll(&|| now, &back.grants, &mut self.port, TX_BATCH)
            .unwrap();
        let mut buf = [0u8; 2048];
        while let Some((len, _)) = self.wire.recv(&mut buf).unwrap() {
            assert_eq!(len, FRAME as usize);
            self.sent += 1;
        }
    }
}

/// What the backstop lets through in `ms` milliseconds at most: the budget × time plus
/// the backstop's burst.
fn bound(ms: u64) -> u64 {
    PPS * ms / 1000 + (2 * BURST).max(BACKSTOP_MIN_PACKETS)
}

/// Floods every queue of an `n`-queue vif for `ms` ms, polled in turn every 1 ms from
/// one thread, starting with the next queue each time (whichever queue is polled first
/// takes what the backstop earned); returns the frames each queue got onto the port.
fn flood_in_turn(n: usize, ms: u64) -> Vec<u64> {
    let host = Host::new();
    let mut qs = host.vif(n);
    for t in 0..=ms {
        for k in 0..n {
            let q = &mut qs[(t as usize + k) % n];
            q.flood();
            q.poll(&host.back, t * MS);
        }
    }
    for q in &mut qs {
        q.flood();
        assert!(q.answered > 0, "each queue's requests are answered");
    }
    qs.iter().map(|q| q.sent).collect()
}

#[test]
fn four_flooded_queues_get_one_budget_and_one_burst_in_total() {
    let per_queue = flood_in_turn(4, 500);
    let total: u64 = per_queue.iter().sum();
    assert!(
        total <= bound(500),
        "4 queues sent {total} > {}",
        bound(500)
    );
    // The backstop is the limit, not the polling: it let through at least the budget.
    assert!(total >= PPS * 500 / 1000, "4 queues sent only {total}");
    assert!(
        per_queue.iter().all(|&s| s > 0),
        "every queue gets frames through: {per_queue:?}"
    );
}

#[test]
fn one_queue_and_four_queues_get_the_same_share() {
    let one: u64 = flood_in_turn(1, 500).iter().sum();
    let four: u64 = flood_in_turn(4, 500).iter().sum();
    let burst = (2 * BURST).max(BACKSTOP_MIN_PACKETS);
    assert!(
        one.abs_diff(four) <= burst,
        "1 queue: {one}, 4 queues: {four} (more than a burst apart)"
    );
}

#[test]
fn queues_polled_from_their_own_threads_share_the_backstop() {
    let host = Arc::new(Host::new());
    let qs = host.vif(4);
    // One clock for all: each thread reads it, a stale reading included.
    let clock = Arc::new(AtomicU64::new(0));
    let ms = 300;
    let handles: Vec<_> = qs
        .into_iter()
        .map(|mut q| {
            let host = host.clone();
            let clock = clock.clone();
            std::thread::spawn(move || loop {
                let now = clock.load(Ordering::Acquire);
                q.flood();
                q.poll(&host.back, now);
                if now >= ms * MS {
                    return q.sent;
                }
                std::thread::yield_now();
            })
        })
        .collect();
    for t in 1..=ms {
        std::thread::sleep(std::time::Duration::from_micros(200));
        clock.store(t * MS, Ordering::Release);
    }
    let per_queue: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total: u64 = per_queue.iter().sum();
    assert!(total <= bound(ms), "4 threads sent {total} > {}", bound(ms));
    assert!(total > 0, "{per_queue:?}");
}
