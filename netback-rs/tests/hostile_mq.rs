//! Multi-queue vifs as the attacker sees them (issue 14): a frontend written from
//! `netif.h` alone ([`RawFrontend`] with `queues` > 1, no netfront, no credits) against a
//! running netback-rs offering 4 queues over 2 workers, beside a well-behaved guest.
//!
//! - Each raw queue carries frames both ways on its own queue, with split and with
//!   shared event channels (`a_raw_four_queue_guest_carries_frames_on_each_queue`).
//! - Flooding all 4 queues while ignoring credits gets, in total, no more than the
//!   vif's budget × time plus one backstop burst; a 1-queue guest flooding beside it
//!   with the same budget gets the same share; the neighbour's frames pass both ways.
//! - Bad input fails only the vif concerned, with the reason in its `error` node, and
//!   leaves nothing mapped or bound: one event-channel port named by two queues (or
//!   twice in a split queue), a grant reference shared across queues, a ring no grant
//!   backs, keys rewritten under a connected vif, an impossible producer index on
//!   queue 3's TX or RX ring, and an event-channel storm on every queue's channels.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hypervisor::xenbus::XenbusState;
use netback::vif::BACKSTOP_MIN_PACKETS;
use netback::{LoopStats, NetbackConfig};
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use shared_ring::credit::Credits;
use shared_ring::netif::{NetTxFlags, NETIF_RSP_OKAY};
use shared_ring::ring::layout;
use shared_ring::Limit;
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

const QUEUES: u32 = 4;

/// netback offering [`QUEUES`] queues over 2 workers with `budget` as every vif's
/// first budget, a well-behaved guest (domain 1) connected and the vifs of `raw`
/// created.
struct Rig {
    host: LocalHost,
    nb: BackendThread,
    guest: Guest,
    wire: MemPort,
    seq: u32,
}

impl Rig {
    fn new(raw: &[VifId], budget: Option<Credits>) -> Rig {
        let host = LocalHost::new();
        let good = add_vif(&host, DomId(1), 0).unwrap();
        for id in raw {
            add_vif(&host, id.domid, id.devid).unwrap();
        }
        let mut cfg = NetbackConfig {
            workers: 2,
            max_queues: Some(QUEUES),
            ..NetbackConfig::default()
        };
        if let Some(b) = budget {
            cfg.initial_budget = b;
        }
        let ports = MemPortConfig::new(256, 65536);
        let nb = BackendThread::start_with_ports(&host, cfg, ports).unwrap();
        let guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
        let wire = nb.wire(good);
        nb.wait_connected(&[good], Duration::from_secs(10)).unwrap();
        Rig {
            host,
            nb,
            guest,
            wire,
            seq: 0,
        }
    }

    /// The neighbour sends 20 frames and receives 20: all delivered, in order, intact.
    fn neighbour_roundtrip(&mut self) {
        let base = self.seq;
        self.seq += 20;
        for s in 0..20 {
            send_all(&mut self.guest.app, &frame(base + s, 300));
        }
        let got = recv_n(&mut self.wire, 20, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        assert_eq!(seqs, (base..base + 20).collect::<Vec<_>>(), "neighbour TX");
        for s in 0..20 {
            send_all(&mut self.wire, &frame(base + s, 400));
        }
        let got = recv_n(&mut self.guest.app, 20, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        assert_eq!(seqs, (base..base + 20).collect::<Vec<_>>(), "neighbour RX");
        let st = self.nb.vif_status(VifId::new(DomId(1), 0)).unwrap();
        assert!(st.connected, "{st:?}");
    }

    /// netback's wire ends of vif `id`'s queues: queue 0's (the device's port, taken
    /// once per vif: `q0`), and those netback opened for queues 1.. when the frontend
    /// connected.
    fn wires(&self, id: VifId, q0: MemPort) -> Vec<MemPort> {
        std::iter::once(q0)
            .chain((1..QUEUES).map(|k| self.nb.wire_queue(id, k)))
            .collect()
    }

    /// What a leak would grow: ports bound or unbound on the host, grants in use,
    /// mappings of the attacker's memory, this process's descriptors.
    fn usage(&self, attacker: DomId) -> [usize; 4] {
        let s = self.host.hypervisor.stats();
        let tag = format!("/memfd:grant-dom{}-", attacker.0);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        [
            s.ports,
            s.grants,
            maps.lines().filter(|l| l.contains(&tag)).count(),
            xen_local::open_fd_count().unwrap(),
        ]
    }

    /// netback's loop counters (every worker's) and CPU time (every thread's).
    fn sample(&self) -> (LoopStats, u64) {
        self.nb
            .call(
                |nb| (nb.loop_stats(), netback_cpu_ns(nb)),
                Duration::from_secs(10),
            )
            .unwrap()
    }
}

/// Queue `q` sends `n` frames of `len` bytes (sequence `base + i`) from its data page,
/// notifying as the ring asks; all are answered OKAY.
fn raw_send(raw: &mut RawFrontend, q: usize, base: u32, n: u32, len: u16) {
    // The payloads: one frame per 2 KiB of the data pages.
    assert!(n <= 2, "two frames per data page");
    let g = raw.queue(q).data_gref(0);
    let mut slots = Vec::new();
    for i in 0..n {
        let f = frame(base + i, len as usize);
        raw.queue(q).write_data(0, 2048 * i as usize, &f);
        slots.push(tx_req(
            g,
            2048 * i as u16,
            len,
            NetTxFlags::empty(),
            i as u16,
        ));
    }
    for s in &slots {
        raw.push_on(q, std::slice::from_ref(s), false)
            .expect("room on the ring");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n as usize && Instant::now() < deadline {
        got.extend(raw.queue_mut(q).take_responses());
        std::thread::sleep(Duration::from_micros(200));
    }
    let want: Vec<(u16, i16)> = (0..n as u16).map(|i| (i, NETIF_RSP_OKAY)).collect();
    assert_eq!(got, want, "queue {q}: TX responses");
}

/// Queue `q` posts `n` buffers, netback's port `wire` sends `n` frames: each comes
/// back intact on that queue's RX ring.
fn raw_receive(raw: &mut RawFrontend, q: usize, wire: &mut MemPort, base: u32, n: u32) {
    assert!(n as usize <= testbed::raw::RX_PAGES, "one page per buffer");
    assert_eq!(raw.post_rx_on(q, n as usize), n as usize);
    for i in 0..n {
        send_all(wire, &frame(base + i, 250 + 10 * q));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n as usize && Instant::now() < deadline {
        got.extend(raw.queue_mut(q).take_rx_frames());
        std::thread::sleep(Duration::from_micros(200));
    }
    let seqs: Vec<u32> = got
        .iter()
        .map(|f| {
            let f = f
                .as_ref()
                .unwrap_or_else(|s| panic!("queue {q}: status {s}"));
            assert_eq!(f.len(), 250 + 10 * q, "queue {q}: frame length");
            check_frame(f)
        })
        .collect();
    assert_eq!(seqs, (base..base + n).collect::<Vec<_>>(), "queue {q}: RX");
}

/// Every queue of `raw` carries 2 frames out (each on its own port of `wires`) and
/// 4 frames in (each on its own RX ring).
fn each_queue_both_ways(raw: &mut RawFrontend, wires: &mut [MemPort], base: u32) {
    for (q, w) in wires.iter_mut().enumerate() {
        let b = base + 100 * q as u32;
        raw_send(raw, q, b, 2, 200 + 20 * q as u16);
        let got = recv_n(w, 2, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        assert_eq!(seqs, vec![b, b + 1], "queue {q}: frames on its own port");
        raw_receive(raw, q, w, b + 50, 4);
    }
    // Nothing crossed to another queue's port.
    for (q, w) in wires.iter_mut().enumerate() {
        assert!(
            recv_n(w, 1, Duration::from_millis(20)).is_empty(),
            "queue {q}'s port got another queue's frame"
        );
    }
}

#[test]
fn a_raw_four_queue_guest_carries_frames_on_each_queue() {
    let bad = VifId::new(DomId(2), 0);
    let mut rig = Rig::new(&[bad], None);
    let mut q0 = rig.nb.wire(bad);
    let mut raw = RawFrontend::new(&rig.host, bad).unwrap();
    for (round, split) in [false, true, false].into_iter().enumerate() {
        let how = RawConnect {
            split,
            ..RawConnect::queues(QUEUES)
        };
        assert_eq!(raw.connect(&how), XenbusState::Connected, "{}", raw.error());
        assert_eq!(raw.num_queues(), QUEUES as usize);
        assert_eq!(raw.queue(3).is_split(), split);
        let mut wires = rig.wires(bad, q0);
        each_queue_both_ways(&mut raw, &mut wires, 1000 * round as u32);
        rig.neighbour_roundtrip();
        raw.close();
        q0 = wires.swap_remove(0);
    }
    // The one-queue API is queue 0 of a one-queue connection, as before (the count
    // the 4-queue connections wrote goes, as a one-queue frontend writes none).
    raw.remove("multi-queue-num-queues");
    assert_eq!(
        raw.connect(&RawConnect::default()),
        XenbusState::Connected,
        "{}",
        raw.error()
    );
    assert_eq!(raw.num_queues(), 1);
    each_queue_both_ways(&mut raw, std::slice::from_mut(&mut q0), 5000);
    let st = rig.nb.vif_status(bad).unwrap();
    assert!(st.connected);
    assert_eq!(st.counters.tx_dropped(), 0, "{:?}", st.counters);
}
