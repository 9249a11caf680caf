//! netback's data-path workers (issue 14): vifs are spread over the workers and each
//! is served by its own; a vif whose worker is stuck, or whose frontend breaks its
//! ring, does not hold up a vif on another worker; hundreds of connected vifs cost no
//! CPU while idle; connect / disconnect cycles leave no thread, descriptor, grant or
//! heap behind.

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::heap_in_use;
use hypervisor::xenbus::XenbusState;
use netback::{LoopStats, NetbackConfig};
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig, Port};
use shared_ring::netif::NetTxFlags;
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

const T: Duration = Duration::from_secs(10);

fn workers(n: usize) -> NetbackConfig {
    NetbackConfig {
        workers: n,
        ..NetbackConfig::default()
    }
}

/// `n` frames from the guest to the wire and `n` from the wire to the guest, each
/// checked (sequence numbers from `base`).
fn roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32, n: u32) {
    for s in 0..n {
        send_all(&mut guest.app, &frame(base + s, 300));
    }
    let got = recv_n(wire, n as usize, T);
    assert_eq!(got.len(), n as usize, "guest → wire lost frames");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
    for s in 0..n {
        send_all(wire, &frame(base + s, 300));
    }
    let got = recv_n(&mut guest.app, n as usize, T);
    assert_eq!(got.len(), n as usize, "wire → guest lost frames");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

/// Some tests measure the whole process (threads, descriptors, CPU): the tests of this
/// file run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn worker_stats(nb: &BackendThread) -> Vec<LoopStats> {
    nb.call(|nb| nb.worker_stats(), T).unwrap()
}

#[test]
fn two_vifs_land_on_different_workers_and_both_carry_traffic() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let a = add_vif(&host, DomId(1), 0).unwrap();
    let b = add_vif(&host, DomId(2), 0).unwrap();
    let nb =
        BackendThread::start_with_ports(&host, workers(2), MemPortConfig::new(256, 65536)).unwrap();
    let mut ga = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut gb = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).unwrap();
    let (mut wa, mut wb) = (nb.wire(a), nb.wire(b));
    nb.wait_connected(&[a, b], T).unwrap();
    let (on_a, on_b, queues) = nb
        .call(
            move |nb| (nb.vif_worker(a), nb.vif_worker(b), nb.worker_queues()),
            T,
        )
        .unwrap();
    let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
    assert_ne!(on_a, on_b, "both vifs on worker {on_a}");
    assert_eq!(queues, vec![1, 1]);

    let before = worker_stats(&nb);
    roundtrip(&mut ga, &mut wa, 0, 200);
    roundtrip(&mut gb, &mut wb, 1000, 200);
    let after = worker_stats(&nb);
    // Each worker polled its vif: the traffic of both went through both workers.
    for w in 0..2 {
        assert!(
            after[w].vif_polls > before[w].vif_polls,
            "worker {w} polled nothing: {before:?} -> {after:?}"
        );
    }
    for id in [a, b] {
        let st = nb.vif_status(id).unwrap();
        assert!(st.counters.tx_packets >= 200, "{id}: {:?}", st.counters);
        assert!(st.counters.rx_packets >= 200, "{id}: {:?}", st.counters);
    }
}

#[test]
fn a_stuck_or_failing_vif_on_one_worker_does_not_stall_another_worker() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).unwrap();
    let bad = add_vif(&host, DomId(2), 0).unwrap();
    let gate = Arc::new(Gate::default());
    let wires: Arc<Mutex<HashMap<VifId, MemPort>>> = Arc::default();
    let factory = {
        let (gate, wires) = (gate.clone(), wires.clone());
        move |id: VifId, _mac: [u8; 6]| -> io::Result<Box<dyn Port>> {
            let (port, wire) = MemPort::pair_with(MemPortConfig::new(256, 65536))?;
            wires.lock().unwrap().insert(id, wire);
            if id.domid == DomId(2) {
                return Ok(Box::new(GatedPort::new(Box::new(port), gate.clone())));
            }
            Ok(Box::new(port))
        }
    };
    let dom0 = domain(&host, DomId(0)).unwrap();
    let opts = BackendOptions::default();
    // DBA_WORKERS=1 shows what this test guards against: one worker, and the good vif
    // waits behind the stuck one (the round trip fails).
    let n = std::env::var("DBA_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let nb = BackendThread::spawn(Spawner::Thread, dom0, workers(n), factory, opts).unwrap();
    // Whatever happens, the gate opens before netback stops (it joins its workers).
    let _open = OpenOnDrop(gate.clone());
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut raw = RawFrontend::new(&host, bad).unwrap();
    assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Connected);
    nb.wait_connected(&[good, bad], T).unwrap();
    let placed = nb
        .call(move |nb| (nb.vif_worker(good), nb.vif_worker(bad)), T)
        .unwrap();
    if n > 1 {
        assert_ne!(placed.0, placed.1, "both vifs on one worker");
    }
    let mut wire = wires.lock().unwrap().remove(&good).unwrap();

    // The bad vif's worker gets stuck handing its frame to the port.
    gate.set(true);
    let g = raw.data_gref(0);
    raw.push(&[tx_req(g, 0, 60, NetTxFlags::empty(), 1)], true)
        .unwrap();
    let t0 = Instant::now();
    while !gate.waited() {
        assert!(
            t0.elapsed() < T,
            "the bad vif's frame never reached its port"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Meanwhile the good vif, on the other worker, carries all its traffic (with one
    // worker, nothing would pass until the gate opens).
    roundtrip(&mut guest, &mut wire, 0, 200);
    assert!(gate.is_closed(), "the bad vif's worker was released early");
    gate.set(false);
    let mut bad_wire = wires.lock().unwrap().remove(&bad).unwrap();
    assert_eq!(recv_n(&mut bad_wire, 1, T).len(), 1);

    // Then its frontend breaks the protocol (a slot running past its page): that vif
    // fails with the reason, the good one carries on.
    raw.push(&[tx_req(g, 4000, 200, NetTxFlags::empty(), 2)], true)
        .unwrap();
    assert_eq!(
        raw.wait_be(&[XenbusState::Closing], T),
        Some(XenbusState::Closing)
    );
    assert!(raw.error().contains("crosses its page"), "{}", raw.error());
    roundtrip(&mut guest, &mut wire, 1000, 200);
    let st = nb.vif_status(good).unwrap();
    assert!(st.connected);
    assert_eq!(st.counters.tx_dropped(), 0);
}

/// Threads of this process.
/// The threads of this process, less the test harness's: the harness starts a thread
/// per test (named after it) whenever one finishes, and those wait on
/// [`one_at_a_time`] while another test measures.
fn threads() -> usize {
    const TESTS: [&str; 5] = [
        "two_vifs_land_on_different_workers_and_both_carry_traffic",
        "a_stuck_or_failing_vif_on_one_worker_does_not_stall_another_worker",
        "a_worker_that_dies_stops_netback",
        "two_hundred_fifty_six_idle_vifs_cost_no_cpu",
        "a_thousand_connect_cycles_over_two_workers_leak_nothing",
    ];
    common::threads_except(&TESTS)
}

/// 256 vifs connected at once (32 guests with 8 vifs each: a domain's grants stay
/// within the emulator's 1 024 allocations per domain), traffic on a few, then
/// nothing: netback sleeps — its threads' CPU time over a second is ~0, however many
/// vifs it serves.
#[test]
fn two_hundred_fifty_six_idle_vifs_cost_no_cpu() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let ids: Vec<VifId> = (1..=32u16)
        .flat_map(|d| (0..8).map(move |v| VifId::new(DomId(d), v)))
        .collect();
    for id in &ids {
        add_vif(&host, id.domid, id.devid).unwrap();
    }
    let opts = BackendOptions {
        poll: Duration::from_millis(100),
        status_every: Duration::from_secs(1),
        ..BackendOptions::default()
    };
    let ports = MemPortConfig::new(16, 2048);
    let nb = BackendThread::start_with(&host, workers(2), ports, opts).unwrap();
    let mut raws: Vec<RawFrontend> = ids
        .iter()
        .map(|id| {
            let mut r = RawFrontend::new(&host, *id).unwrap();
            assert_eq!(r.connect(&RawConnect::default()), XenbusState::Connected);
            r
        })
        .collect();
    nb.wait_connected(&ids, Duration::from_secs(60)).unwrap();
    let queues = nb.call(|nb| nb.worker_queues(), T).unwrap();
    assert_eq!(queues, vec![128, 128], "vifs not spread evenly");

    // Traffic on a few.
    for (k, r) in raws.iter_mut().enumerate().step_by(64) {
        let mut wire = nb.wire(ids[k]);
        let g = r.data_gref(0);
        for i in 0..20 {
            r.push(&[tx_req(g, 0, 60, NetTxFlags::empty(), i)], false)
                .unwrap();
        }
        r.notify();
        assert_eq!(recv_n(&mut wire, 20, T).len(), 20, "{}", ids[k]);
        assert_eq!(r.responses(20, T).len(), 20);
    }

    // Then everything idle: what netback's threads do over one second.
    std::thread::sleep(Duration::from_millis(200));
    let sample = || nb.loop_sample().unwrap();
    let (s0, cpu0) = sample();
    std::thread::sleep(Duration::from_secs(1));
    let (s1, cpu1) = sample();
    let cpu = cpu1 - cpu0;
    let iterations = s1.iterations - s0.iterations;
    let polls = s1.vif_polls - s0.vif_polls;
    eprintln!(
        "256 idle vifs on 2 workers: {} µs of netback CPU in 1 s, {iterations} worker \
         iterations, {polls} vif polls",
        cpu / 1000
    );
    assert!(cpu < 20_000_000, "{cpu} ns of CPU over 1 s idle");
    // Each worker wakes once per tick (100 ms) with nothing to do: no polling of idle
    // vifs.
    assert!(iterations <= 2 * 3 * 10, "{iterations} iterations");
    assert_eq!(polls, 0, "idle vifs were polled");
    drop(raws);
}

/// Process-wide usage that a leak would grow.
#[derive(Debug, Clone, Copy)]
struct Usage {
    threads: usize,
    fds: usize,
    grants: usize,
    ports: usize,
    /// Memory mappings (rings, grant copies, ports).
    maps: usize,
    heap: u64,
}

fn usage(host: &LocalHost) -> Usage {
    let s = host.hypervisor.stats();
    Usage {
        threads: threads(),
        fds: xen_local::open_fd_count().unwrap(),
        grants: s.grants,
        ports: s.ports,
        maps: std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count(),
        heap: heap_in_use(),
    }
}

/// 1 000 connect / traffic / disconnect cycles of 4-queue vifs, half on each of two
/// vifs placed on two workers (two frontends cycling at once; each vif's queues on both
/// workers, a frame on queue 0 and one on queue 3 each cycle): afterwards netback holds
/// the same threads, descriptors, grants and event channels, at most a few more memory
/// mappings (not one per cycle), and its heap grew by less than 1 MiB.
#[test]
fn a_thousand_connect_cycles_over_two_workers_leak_nothing() {
    let _one = one_at_a_time();
    let cycles: usize = std::env::var("DBA_LEAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let host = LocalHost::new();
    let ids = [
        add_vif(&host, DomId(1), 0).unwrap(),
        add_vif(&host, DomId(2), 0).unwrap(),
    ];
    let ports = MemPortConfig {
        prefault: true,
        ..MemPortConfig::new(64, 4096)
    };
    let cfg = NetbackConfig {
        max_queues: Some(4),
        ..workers(2)
    };
    let nb = BackendThread::start_with_ports(&host, cfg, ports).unwrap();
    let mut raws: Vec<(RawFrontend, MemPort)> = ids
        .iter()
        .map(|id| (RawFrontend::new(&host, *id).unwrap(), nb.wire(*id)))
        .collect();
    let run = |raws: &mut Vec<(RawFrontend, MemPort)>, n: usize| {
        std::thread::scope(|s| {
            for ((r, wire), &id) in raws.iter_mut().zip(&ids) {
                let nb = &nb;
                s.spawn(move || {
                    for i in 0..n {
                        assert_eq!(r.connect(&RawConnect::queues(4)), XenbusState::Connected);
                        for q in [0, 3] {
                            let g = r.queue(q).data_gref(0);
                            r.push_on(q, &[tx_req(g, 0, 60, NetTxFlags::empty(), i as u16)], true)
                                .unwrap();
                        }
                        assert_eq!(recv_n(wire, 1, T).len(), 1, "cycle {i}");
                        // Queue 3's frame reached its port (on the other worker).
                        let mut w3 = nb.wire_queue(id, 3);
                        assert_eq!(recv_n(&mut w3, 1, T).len(), 1, "cycle {i}, queue 3");
                        r.close();
                    }
                });
            }
        });
    };
    // Warm up: caches and the allocator's arenas reach their size.
    run(&mut raws, 20);
    let base = usage(&host);
    let t0 = Instant::now();
    run(&mut raws, cycles / 2);
    let end = usage(&host);
    eprintln!("{cycles} cycles in {:?}: {base:?} -> {end:?}", t0.elapsed());
    let placed = nb
        .call(move |nb| (nb.vif_worker(ids[0]), nb.vif_worker(ids[1])), T)
        .unwrap();
    assert_ne!(placed.0, placed.1);
    // No growth (the threads and mappings of an earlier test of this binary may still
    // be going away at the first sample).
    assert!(end.threads <= base.threads, "threads {base:?} -> {end:?}");
    assert!(end.fds <= base.fds, "descriptors {base:?} -> {end:?}");
    assert_eq!(end.grants, base.grants, "grants");
    assert_eq!(end.ports, base.ports, "event channels");
    // A leaked connection would leave its two rings' mappings per cycle (hundreds);
    // a few may come from the allocator's arenas of the harness's threads.
    assert!(
        end.maps <= base.maps + 8,
        "memory mappings {base:?} -> {end:?}"
    );
    assert!(
        end.heap < base.heap + (1 << 20),
        "heap {} -> {}",
        base.heap,
        end.heap
    );
}

/// A port that panics when netback hands it a frame: a bug in the data path.
struct PanickingPort(MemPort);

impl Port for PanickingPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, netport::FrameMeta)>> {
        self.0.recv(buf)
    }

    fn send(&mut self, _frame: &[u8], _meta: &netport::FrameMeta) -> io::Result<()> {
        panic!("a data-path bug");
    }

    fn rx_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.rx_fd()
    }

    fn max_frame(&self) -> usize {
        self.0.max_frame()
    }
}

/// A worker that dies (a panic on the data path) stops netback's loop with the reason,
/// for its supervisor to restart it, rather than leave that worker's vifs unserved.
#[test]
fn a_worker_that_dies_stops_netback() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).unwrap();
    let wires: Arc<Mutex<Vec<MemPort>>> = Arc::default();
    let factory = {
        let wires = wires.clone();
        move |_id: VifId, _mac: [u8; 6]| -> io::Result<Box<dyn Port>> {
            let (port, wire) = MemPort::pair_with(MemPortConfig::new(16, 2048))?;
            wires.lock().unwrap().push(wire);
            Ok(Box::new(PanickingPort(port)))
        }
    };
    let dom0 = domain(&host, DomId(0)).unwrap();
    let opts = BackendOptions::default();
    let mut nb = BackendThread::spawn(Spawner::Thread, dom0, workers(2), factory, opts).unwrap();
    let mut raw = RawFrontend::new(&host, id).unwrap();
    assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Connected);
    let g = raw.data_gref(0);
    raw.push(&[tx_req(g, 0, 60, NetTxFlags::empty(), 1)], true)
        .unwrap();
    // The loop ends by itself: the thread stops answering.
    let t0 = Instant::now();
    while !matches!(
        nb.call(|_| (), Duration::from_millis(200)),
        Err(TestbedError::BackendGone)
    ) {
        assert!(t0.elapsed() < T, "netback kept running without its worker");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = match nb.stop() {
        Err(TestbedError::Loop(e)) => e.to_string(),
        other => panic!("netback's loop ended with {other:?}"),
    };
    assert!(err.contains("data-path worker"), "{err}");
}
