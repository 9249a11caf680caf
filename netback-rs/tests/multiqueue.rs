//! Multi-queue vifs through a running netback-rs (issue 14).
//!
//! A frontend's queue keys as a hostile guest writes them ("Bad input"), against
//! netback-rs offering one queue (its default with one worker): more queues than
//! offered, no queue at all, a garbage count, one grant for both rings. Each time that
//! vif alone fails, the reason in its `error` node, and a well-behaved guest on the same
//! netback keeps its traffic; the hostile guest connects afterwards when it writes
//! honest keys. 200 such refusals, each followed by an honest connection with traffic,
//! over two workers, leave no thread, descriptor, grant, event channel or mapping behind.
//!
//! netback offering 4 queues (2 workers) to our netfront asking for 4: frames of each
//! queue go out on that queue's port and come back on it, intact and in order
//! (`four_queues_carry_frames_both_ways_each_on_its_own_queue`); with TAPs, the vif
//! gets 4 queues of one `IFF_MULTI_QUEUE` TAP
//! (`a_four_queue_vif_gets_four_queues_of_one_multi_queue_tap`); one corrupted queue,
//! on the other worker than the vif's, fails its vif alone, the queue named, every
//! queue released on both workers (`one_corrupted_queue_fails_its_vif_only`);
//! 200 connections of a 4-queue vif leak nothing
//! (`four_queue_connections_leak_nothing`); a restarted netback takes the 4 queues of a
//! frontend that stays connected over, without a new handshake
//! (`a_restarted_netback_takes_every_queue_of_a_connected_frontend_over`; killed with
//! `kill -9` mid-batch: `mq_restart.rs`);
//! a guest that polices nothing flooding its 4 queues gets at most rate × t + one
//! backstop burst in total (`four_flooded_queues_get_one_budget_and_one_backstop_burst`);
//! a persistent TAP created without `IFF_MULTI_QUEUE` gets its vif offered one queue
//! (`a_tap_created_without_multi_queue_offers_its_vif_one_queue`).
//!
//! The queues of one vif spread over the workers (queue k on worker (w0 + k) mod W):
//! both workers poll and spend CPU while one 4-queue vif floods, none while it is idle,
//! and the queues are released on both when it closes
//! (`a_four_queue_vif_runs_on_both_workers_each_queue_polled_alone`); a budget set
//! while connected holds the queues on the other worker too
//! (`a_budget_set_while_connected_holds_the_queues_on_every_worker`); a queue whose
//! ring cannot be mapped fails its vif with the queue named, after every worker
//! released what it had connected, 150 times without a leak
//! (`a_queue_that_cannot_be_mapped_fails_its_vif_on_every_worker_and_leaks_nothing`).

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hypervisor::xenbus::XenbusState;
use netback::NetbackConfig;
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use shared_ring::netif::NetTxFlags;
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::Xenstore;

fn good_roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32) {
    for s in 0..20 {
        send_all(&mut guest.app, &frame(base + s, 300));
    }
    let got = recv_n(wire, 20, Duration::from_secs(10));
    assert_eq!(got.len(), 20, "the well-behaved vif lost traffic");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

/// The hostile guest writes `keys`, then runs the handshake with `how`: refused, with
/// an `error` node containing each of `want`.
fn refused(raw: &mut RawFrontend, keys: &[(&str, &str)], how: &RawConnect, want: &[&str]) {
    for (k, v) in keys {
        raw.write(k, v);
    }
    assert_eq!(raw.connect(how), XenbusState::Closing, "keys {keys:?}");
    let err = raw.error();
    for w in want {
        assert!(
            err.contains(w),
            "keys {keys:?}: error node {err:?} lacks {w:?}"
        );
    }
    raw.close();
}

/// The tests of this file run one at a time (one of them counts the process's threads).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn bad_queue_keys_fail_only_their_vif() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    let bad: VifId = add_vif(&host, DomId(2), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(good);
    good_roundtrip(&mut guest, &mut wire, 0);

    let mut raw = RawFrontend::new(&host, bad).expect("raw frontend");
    let dflt = RawConnect::default();
    // Linux's netfront with 8 vCPUs would ask for 8 (it asks for none when nothing is
    // offered, but a hostile one asks anyway).
    refused(
        &mut raw,
        &[("multi-queue-num-queues", "8")],
        &dflt,
        &["multi-queue-num-queues 8", "1 offered"],
    );
    good_roundtrip(&mut guest, &mut wire, 100);
    refused(
        &mut raw,
        &[("multi-queue-num-queues", "0")],
        &dflt,
        &["at least one queue"],
    );
    good_roundtrip(&mut guest, &mut wire, 200);
    refused(
        &mut raw,
        &[("multi-queue-num-queues", "1x")],
        &dflt,
        &["multi-queue-num-queues"],
    );
    // One page for both rings: refused before anything is mapped.
    raw.write("multi-queue-num-queues", "1");
    let shared = RawConnect {
        refs: Some(("9".into(), "9".into())),
        ..RawConnect::default()
    };
    refused(&mut raw, &[], &shared, &["rx-ring-ref 9", "own page"]);
    good_roundtrip(&mut guest, &mut wire, 300);

    // Honest keys (one queue, said explicitly): the hostile guest is served again.
    assert_eq!(
        raw.connect(&dflt),
        XenbusState::Connected,
        "{}",
        raw.error()
    );
    good_roundtrip(&mut guest, &mut wire, 400);
    let st = nb.vif_status(good).unwrap();
    assert!(st.connected);
    assert_eq!(st.counters.tx_dropped(), 0);
}

/// The process's threads, less the test harness's.
fn threads() -> usize {
    // The tests of this file (libtest names each one's thread after it): one that
    // starts while another counts waits in `one_at_a_time`.
    common::threads_except(&[
        "bad_queue_keys_fail_only_their_vif",
        "refused_queue_keys_leak_nothing",
        "four_queues_carry_frames_both_ways_each_on_its_own_queue",
        "one_corrupted_queue_fails_its_vif_only",
        "four_queue_connections_leak_nothing",
        "a_restarted_netback_takes_every_queue_of_a_connected_frontend_over",
        "a_four_queue_vif_gets_four_queues_of_one_multi_queue_tap",
        "four_flooded_queues_get_one_budget_and_one_backstop_burst",
        "a_tap_created_without_multi_queue_offers_its_vif_one_queue",
        "a_four_queue_vif_runs_on_both_workers_each_queue_polled_alone",
        "a_queue_that_cannot_be_mapped_fails_its_vif_on_every_worker_and_leaks_nothing",
        "a_budget_set_while_connected_holds_the_queues_on_every_worker",
    ])
}

/// What [`usage`] item `k` may grow by without a leak: none, but for mappings a few
/// (the allocator maps a new arena or heap segment when a thread of a test running
/// beside this one first allocates; bounded, where a leak of one mapping per
/// connection would add hundreds).
fn slack(k: usize) -> usize {
    if k == 4 {
        8
    } else {
        0
    }
}

/// Fails unless `end` (see [`usage`]) is within [`slack`] of `base` and the heap grew by
/// less than 1 MiB.
fn assert_no_growth(base: &[usize], end: &[usize], heap: u64, heap_end: u64) {
    let names = [
        "threads",
        "descriptors",
        "grants",
        "event channels",
        "mappings",
    ];
    for k in 0..5 {
        assert!(
            end[k] <= base[k] + slack(k),
            "{}: {} -> {}",
            names[k],
            base[k],
            end[k]
        );
    }
    assert!(heap_end < heap + (1 << 20), "heap {heap} -> {heap_end}");
}

/// What a leak would grow: threads, descriptors, grants, event channels, mappings.
fn usage(host: &LocalHost) -> [usize; 5] {
    let s = host.hypervisor.stats();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    [
        threads(),
        xen_local::open_fd_count().unwrap(),
        s.grants,
        s.ports,
        maps.lines().count(),
    ]
}

/// Each of the bad key sets in turn, then an honest connection carrying one frame.
fn refusal_cycles(raw: &mut RawFrontend, wire: &mut MemPort, n: usize) {
    let bad: [(&str, Option<(&str, &str)>); 4] = [
        ("8", None),
        ("0", None),
        ("two", None),
        ("1", Some(("9", "9"))),
    ];
    for i in 0..n {
        let (count, refs) = bad[i % bad.len()];
        raw.write("multi-queue-num-queues", count);
        let how = RawConnect {
            refs: refs.map(|(t, r)| (t.to_string(), r.to_string())),
            ..RawConnect::default()
        };
        assert_eq!(raw.connect(&how), XenbusState::Closing, "cycle {i}");
        raw.close();
        raw.write("multi-queue-num-queues", "1");
        assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Connected);
        let g = raw.data_gref(0);
        raw.push(&[tx_req(g, 0, 60, NetTxFlags::empty(), i as u16)], true)
            .unwrap();
        assert_eq!(
            recv_n(wire, 1, Duration::from_secs(10)).len(),
            1,
            "cycle {i}"
        );
        raw.close();
    }
}

#[test]
fn refused_queue_keys_leak_nothing() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let ids = [
        add_vif(&host, DomId(1), 0).unwrap(),
        add_vif(&host, DomId(2), 0).unwrap(),
    ];
    let cfg = NetbackConfig {
        workers: 2,
        ..NetbackConfig::default()
    };
    let ports = MemPortConfig {
        prefault: true,
        ..MemPortConfig::new(64, 4096)
    };
    let nb = BackendThread::start_with_ports(&host, cfg, ports).unwrap();
    let mut raws: Vec<(RawFrontend, MemPort)> = ids
        .iter()
        .map(|id| (RawFrontend::new(&host, *id).unwrap(), nb.wire(*id)))
        .collect();
    let run = |raws: &mut Vec<(RawFrontend, MemPort)>, n: usize| {
        std::thread::scope(|s| {
            for (raw, wire) in raws.iter_mut() {
                s.spawn(move || refusal_cycles(raw, wire, n));
            }
        });
    };
    run(&mut raws, 8);
    let base = usage(&host);
    let heap = common::heap_in_use();
    run(&mut raws, 100);
    let end = usage(&host);
    let heap_end = common::heap_in_use();
    eprintln!("200 refusals + 200 connections: {base:?} -> {end:?}, heap {heap} -> {heap_end}");
    assert_no_growth(&base, &end, heap, heap_end);
    let placed = nb
        .call(
            move |nb| (nb.vif_worker(ids[0]), nb.vif_worker(ids[1])),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_ne!(placed.0, placed.1, "the two vifs are on both workers");
}

/// netback offering `queues` queues over `workers` workers, on memory ports.
fn mq_netback(host: &LocalHost, workers: usize, queues: u32) -> BackendThread {
    let cfg = NetbackConfig {
        workers,
        max_queues: Some(queues),
        ..NetbackConfig::default()
    };
    BackendThread::start(host, cfg).expect("netback")
}

/// Our netfront for domain `dom` asking for `queues` queues, connected.
fn mq_netfront(
    host: &LocalHost,
    dom: DomId,
    queues: usize,
    credits: bool,
) -> testbed::LocalNetfront {
    let platform = testbed::domain(host, dom).expect("domain");
    let mut cfg = NetfrontConfig::new(0);
    cfg.queues = queues;
    cfg.request_credits = credits;
    netfront::Netfront::connect(platform, cfg, hypervisor::clock::system())
        .expect("netfront connects")
}

/// A connected multi-queue guest: its netfront runs `mq::run` on its own threads
/// over one memory port per queue, whose other ends (`apps`) the test drives.
struct MqGuest {
    apps: Vec<MemPort>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Vec<netfront::FrontStats>, netfront::Allowance)>>,
}

impl MqGuest {
    fn start(host: &LocalHost, dom: DomId, queues: usize) -> MqGuest {
        Self::start_with(host, dom, queues, true)
    }

    /// `credits`: whether its netfront asks for the credit area (without it, it polices
    /// nothing itself: only netback's backstop holds it to its budget).
    fn start_with(host: &LocalHost, dom: DomId, queues: usize, credits: bool) -> MqGuest {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut nf = mq_netfront(host, dom, queues, credits);
        assert_eq!(nf.num_queues(), queues, "queues negotiated");
        let (mut ports, apps): (Vec<MemPort>, Vec<MemPort>) = (0..queues)
            .map(|_| MemPort::pair(256, 4096).expect("pair"))
            .unzip();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let stats = netfront::mq::run(&mut nf, &mut ports, || flag.load(Ordering::Relaxed))
                .expect("mq::run");
            // What the credit area says last (budgets, netback's shaping counters).
            nf.apply_credits();
            let allowance = nf.allowance;
            nf.disconnect();
            (stats, allowance)
        });
        MqGuest {
            apps,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the queue threads, closes the frontend; its per-queue counters.
    fn stop(self) -> Vec<netfront::FrontStats> {
        self.stop_with_allowance().0
    }

    /// [`MqGuest::stop`], and the allowance the frontend read last in its credit area.
    fn stop_with_allowance(mut self) -> (Vec<netfront::FrontStats>, netfront::Allowance) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("guest thread")
    }
}

/// Sends `n` frames (sequence `base + k·1000 + i`) on each of `from`, and checks that
/// each port of `to` receives exactly its own queue's, intact and in order.
fn each_queue_carries(from: &mut [MemPort], to: &mut [MemPort], base: u32, n: u32) {
    for (k, p) in from.iter_mut().enumerate() {
        for i in 0..n {
            send_all(p, &frame(base + k as u32 * 1000 + i, 200 + 60 * k));
        }
    }
    for (k, p) in to.iter_mut().enumerate() {
        let got = recv_n(p, n as usize, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        let want: Vec<u32> = (0..n).map(|i| base + k as u32 * 1000 + i).collect();
        assert_eq!(seqs, want, "queue {k}: frames of its own queue, in order");
        for f in &got {
            assert_eq!(f.len(), 200 + 60 * k, "queue {k}: frame length");
        }
    }
}

/// The wire ends of the `queues` ports netback opened for vif `id`.
fn wires(nb: &BackendThread, id: VifId, queues: u32) -> Vec<MemPort> {
    std::iter::once(nb.wire(id))
        .chain((1..queues).map(|k| nb.wire_queue(id, k)))
        .collect()
}

#[test]
fn four_queues_carry_frames_both_ways_each_on_its_own_queue() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = mq_netback(&host, 2, 4);
    let xs = &host.domain(DomId(0)).expect("dom0").xenstore;
    let be = "/local/domain/0/backend/vif/1/0";
    let mut guest = MqGuest::start(&host, DomId(1), 4);
    let offered = xs
        .try_read(
            xenstore::XsTx::NONE,
            &format!("{be}/multi-queue-max-queues"),
        )
        .unwrap();
    assert_eq!(
        offered.as_deref(),
        Some(&b"4"[..]),
        "offered as Linux writes it"
    );
    let mut wire = wires(&nb, id, 4);
    // Guest → netback: the frames of netfront's queue k leave on netback's port k.
    each_queue_carries(&mut guest.apps, &mut wire, 0, 25);
    // netback → guest: a frame on port k (TAP queue k) reaches the guest on queue k.
    each_queue_carries(&mut wire, &mut guest.apps, 50_000, 25);
    let st = nb.vif_status(id).expect("status");
    assert!(st.connected);
    let stats = guest.stop();
    for (k, s) in stats.iter().enumerate() {
        assert_eq!(
            (s.tx_packets, s.rx_packets),
            (25, 25),
            "queue {k}'s counters"
        );
    }
    // netback's counters are the vif's, every queue summed.
    assert_eq!(st.counters.tx_packets, 100, "{:?}", st.counters);
    assert_eq!(st.counters.rx_packets, 100, "{:?}", st.counters);
}

/// Reads `path` (empty if absent) as dom0.
fn read_key(host: &LocalHost, path: &str) -> String {
    let xs = &host.domain(DomId(0)).expect("dom0").xenstore;
    xs.try_read(xenstore::XsTx::NONE, path)
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Waits until `path` satisfies `ok` (10 s at most); its last value.
fn wait_key(host: &LocalHost, path: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = read_key(host, path);
        if ok(&v) || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The guest closes its vif as a frontend does (its rings already released):
/// `Closed`, and netback follows.
fn close_frontend(host: &LocalHost, dom: DomId) {
    let xs = &host.domain(DomId(0)).expect("dom0").xenstore;
    let fe = format!("/local/domain/{}/device/vif/0", dom.0);
    xs.write(xenstore::XsTx::NONE, &format!("{fe}/state"), b"6")
        .unwrap();
    let be = format!("/local/domain/0/backend/vif/{}/0/state", dom.0);
    let st = wait_key(host, &be, |s| s == "6");
    assert_eq!(st, "6", "netback follows the frontend to Closed");
}

#[test]
fn one_corrupted_queue_fails_its_vif_only() {
    use hypervisor::grant::{Access, GrantMap, GrantMapping, GrantRef};
    use hypervisor::platform::{ring_mem, Platform};
    use shared_ring::ring::layout;
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let hostile = add_vif(&host, DomId(1), 0).expect("vif");
    let good = add_vif(&host, DomId(2), 0).expect("vif");
    let nb = mq_netback(&host, 2, 4);
    let mut neighbour = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    let mut good_wire = nb.wire(good);
    good_roundtrip(&mut neighbour, &mut good_wire, 0);
    let mut guest = MqGuest::start(&host, DomId(1), 4);
    let mut wire = wires(&nb, hostile, 4);
    each_queue_carries(&mut guest.apps, &mut wire, 0, 5);
    // Queue 3 runs on the other worker than queue 0 (the vif's).
    let on = nb
        .call(
            move |nb| nb.vif_queue_workers(hostile),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_ne!(on[3], on[0], "queues on {on:?}");
    // The guest writes a request producer far past anything queue 3's TX ring can
    // hold (as the kernel it controls can), then sends a frame on queue 0.
    let fe = "/local/domain/1/device/vif/0";
    let gref: u32 = read_key(&host, &format!("{fe}/queue-3/tx-ring-ref"))
        .parse()
        .expect("queue-3/tx-ring-ref");
    let dom0 = testbed::domain(&host, DomId(0)).expect("dom0");
    let page = dom0
        .grants()
        .map(DomId(1), &[GrantRef(gref)], Access::Writable)
        .expect("map queue 3's TX ring");
    ring_mem(page.mem()).store(layout::REQ_PROD, 100_000);
    // A frame for the guest arrives on queue 3 (its TAP queue): netback polls that
    // queue, both rings (an event on another queue polls only that one).
    send_all(&mut wire[3], &frame(77, 100));
    let be = "/local/domain/0/backend/vif/1/0";
    let err = wait_key(&host, &format!("{be}/error"), |e| !e.is_empty());
    eprintln!("error node: {err}");
    assert!(
        err.contains("queue 3: TX ring") && err.contains("100000"),
        "the reason, and which queue: {err:?}"
    );
    drop(page);
    // The neighbour's traffic goes on, on the same netback.
    good_roundtrip(&mut neighbour, &mut good_wire, 100);
    let st = nb.vif_status(good).expect("status");
    assert!(st.connected && st.state == XenbusState::Connected);
    // Every queue of the failed vif is released, on both workers: what stays are the
    // two devices (their queue 0's port) and the neighbour's connection.
    let (queues, on) = nb
        .call(
            move |nb| (nb.worker_queues(), nb.vif_queue_workers(hostile)),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(queues.iter().sum::<u64>(), 2, "queues left: {queues:?}");
    assert!(on.is_empty(), "the failed vif still has queues on {on:?}");
    assert!(!nb.vif_status(hostile).expect("status").connected);
    let _ = guest.stop();
}

#[test]
fn four_queue_connections_leak_nothing() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = mq_netback(&host, 2, 4);
    let mut w0 = Some(nb.wire(id));
    let mut cycle = |i: u32| {
        let mut guest = MqGuest::start(&host, DomId(1), 4);
        let mut wire: Vec<MemPort> = w0.take().into_iter().collect();
        wire.extend((1..4).map(|k| nb.wire_queue(id, k)));
        each_queue_carries(&mut guest.apps, &mut wire, i * 10_000, 1);
        each_queue_carries(&mut wire, &mut guest.apps, i * 10_000 + 5000, 1);
        let _ = guest.stop();
        close_frontend(&host, DomId(1));
        w0 = Some(wire.swap_remove(0));
    };
    for i in 0..5 {
        cycle(i);
    }
    let base = usage(&host);
    let heap = common::heap_in_use();
    for i in 5..205 {
        cycle(i);
    }
    // The last guest's xenstore connection and threads end asynchronously (a leak
    // does not go away with waiting).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut end = usage(&host);
    while (0..5).any(|k| end[k] > base[k]) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        end = usage(&host);
    }
    let heap_end = common::heap_in_use();
    eprintln!("200 4-queue connections: {base:?} -> {end:?}, heap {heap} -> {heap_end}");
    assert_no_growth(&base, &end, heap, heap_end);
}

#[test]
fn a_restarted_netback_takes_every_queue_of_a_connected_frontend_over() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let mut nb = mq_netback(&host, 2, 4);
    let mut guest = MqGuest::start(&host, DomId(1), 4);
    let mut wire = wires(&nb, id, 4);
    each_queue_carries(&mut guest.apps, &mut wire, 0, 3);
    let fe = "/local/domain/1/device/vif/0";
    let rings = |host: &LocalHost| -> Vec<String> {
        (0..4)
            .flat_map(|q| ["tx-ring-ref", "rx-ring-ref"].map(|k| format!("{fe}/queue-{q}/{k}")))
            .map(|p| read_key(host, &p))
            .collect()
    };
    let before = rings(&host);
    // netback stops (SIGTERM): its nodes keep saying Connected, the guest's queues too.
    nb.stop().expect("netback");
    drop((nb, wire));
    let nb = mq_netback(&host, 2, 4);
    nb.wait_connected(&[id], Duration::from_secs(10))
        .expect("the 4 queues are taken over");
    let mut wire = wires(&nb, id, 4);
    each_queue_carries(&mut guest.apps, &mut wire, 100, 3);
    each_queue_carries(&mut wire, &mut guest.apps, 200, 3);
    // Taken over, not reconnected: the same rings, no error, no state change.
    assert_eq!(rings(&host), before, "the frontend kept its rings");
    assert_eq!(read_key(&host, "/local/domain/0/backend/vif/1/0/error"), "");
    assert_eq!(read_key(&host, &format!("{fe}/state")), "4");
    let stats = guest.stop();
    for (k, s) in stats.iter().enumerate() {
        assert_eq!((s.tx_packets, s.rx_packets), (6, 3), "queue {k}'s counters");
    }
}

/// The RX packet count of interface `ifname` in `ns` (frames written into the TAP).
fn link_rx_packets(ns: &netport::netns::NetNs, ifname: &str) -> u64 {
    let out = ns
        .exec("ip", &["-s", "-o", "link", "show", ifname])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "... RX: bytes packets errors ... \    <bytes> <packets> ..."
    let rx = text.split("RX:").nth(1).expect("RX counters");
    let line = rx.split('\\').nth(1).expect("RX values");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RX packets in {text:?}"))
}

#[test]
fn a_four_queue_vif_gets_four_queues_of_one_multi_queue_tap() {
    use netback::tapvif::TapFactory;
    use netport::netns::{skip_unless_root_with_tun, NetNs};
    if skip_unless_root_with_tun("a_four_queue_vif_gets_four_queues_of_one_multi_queue_tap") {
        return;
    }
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let ns = NetNs::new("mqt").unwrap();
    let factory = TapFactory {
        multi_queue: true,
        ..TapFactory::default()
    };
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(4),
        ..NetbackConfig::default()
    };
    let dom0 = host.domain(DomId(0)).unwrap();
    let nb = BackendThread::spawn(
        Spawner::Netns(&ns),
        dom0,
        cfg,
        factory,
        BackendOptions::default(),
    )
    .unwrap();
    wait_link(&ns, "vif1.0", Duration::from_secs(10)).unwrap();
    // Connecting means netback attached 3 more queues to the TAP (a refusal fails the vif).
    let mut guest = MqGuest::start(&host, DomId(1), 4);
    let before = link_rx_packets(&ns, "vif1.0");
    for (k, app) in guest.apps.iter_mut().enumerate() {
        for i in 0..5 {
            send_all(app, &frame(k as u32 * 100 + i, 300));
        }
    }
    // Every queue's frames reach the interface (written into its TAP queue's fd).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = 0;
    while got < before + 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        got = link_rx_packets(&ns, "vif1.0");
    }
    assert_eq!(got - before, 20, "frames of the 4 queues on the interface");
    let st = nb.vif_status(id).expect("status");
    assert!(st.connected, "{st:?}");
    assert_eq!(st.counters.tx_packets, 20, "netback's sum over the queues");
    let stats = guest.stop();
    for (k, s) in stats.iter().enumerate() {
        assert_eq!(s.tx_packets, 5, "queue {k}");
    }
}

#[test]
fn four_flooded_queues_get_one_budget_and_one_backstop_burst() {
    use shared_ring::credit::Credits;
    use shared_ring::Limit;
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let (rate, burst) = (2000u64, 50u64);
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(4),
        initial_budget: Credits {
            bytes: Limit::Unlimited,
            packets: Limit::Rate {
                per_sec: rate,
                burst,
            },
            period_us: 0,
        },
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    // A guest that polices nothing (no credit area) floods its 4 queues at once.
    let guest = MqGuest::start_with(&host, DomId(1), 4, false);
    flood_within_budget(&nb, id, guest, rate, burst);
}

/// `guest` (4 queues, no credit area) floods every queue for 600 ms: in total at most
/// `rate` × t + one backstop burst (from `burst`) leave, at least half the rate, and
/// every queue carries some.
fn flood_within_budget(nb: &BackendThread, id: VifId, mut guest: MqGuest, rate: u64, burst: u64) {
    let mut wire = wires(nb, id, 4);
    let t0 = std::time::Instant::now();
    let flood_for = Duration::from_millis(600);
    let until = t0 + flood_for + Duration::from_millis(300);
    let before = nb.vif_status(id).expect("status").counters.tx_packets;
    let per_queue: Vec<u64> = std::thread::scope(|s| {
        for app in guest.apps.iter_mut() {
            s.spawn(move || flood(app, 100, flood_for));
        }
        let counters: Vec<_> = wire
            .iter_mut()
            .map(|w| s.spawn(move || count_until(w, until).0))
            .collect();
        counters.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let t = t0.elapsed();
    let total: u64 = per_queue.iter().sum();
    // The backstop: the budget's rate, twice its burst (at least 64 packets).
    let backstop_burst = (2 * burst).max(netback::vif::BACKSTOP_MIN_PACKETS);
    let bound = rate * t.as_millis() as u64 / 1000 + backstop_burst;
    eprintln!("4 queues flooded {t:?}: {per_queue:?} = {total} (bound {bound})");
    assert!(
        total <= bound,
        "{total} > rate × t + one backstop burst = {bound}"
    );
    // And the budget is served (half of it at least, for a loaded machine).
    let floor = rate * flood_for.as_millis() as u64 / 2000;
    assert!(total >= floor, "{total} < {floor}");
    for (k, n) in per_queue.iter().enumerate() {
        assert!(*n > 0, "queue {k} carried nothing: {per_queue:?}");
    }
    // The status is what the workers last published (after each poll, retried when
    // the reader held it): it catches up with what the ports counted — including
    // requests that waited on the ring past the counting window (on a loaded machine
    // the workers may still forward a few of them), counted as they arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut delivered = total;
    let mut st = nb.vif_status(id).expect("status");
    while st.counters.tx_packets - before != delivered && std::time::Instant::now() < deadline {
        let soon = std::time::Instant::now() + Duration::from_millis(10);
        delivered += wire.iter_mut().map(|w| count_until(w, soon).0).sum::<u64>();
        st = nb.vif_status(id).expect("status");
    }
    assert_eq!(
        st.counters.tx_packets - before,
        delivered,
        "{:?}",
        st.counters
    );
    let _ = guest.stop();
}

/// A flood into queue 1 of a 2-queue guest, on the other worker than queue 0, shaped
/// by the vif's RX budget: the guest is told what netback shaped through its credit
/// area — which is queue 0's, a queue that carried nothing meanwhile.
#[test]
fn frames_shaped_on_another_queue_are_told_through_queue_0() {
    use shared_ring::credit::Credits;
    use shared_ring::Limit;
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let cfg = NetbackConfig {
        workers: 2,
        max_queues: Some(2),
        initial_rx_budget: Credits {
            bytes: Limit::Unlimited,
            packets: Limit::Rate {
                per_sec: 200,
                burst: 20,
            },
            period_us: 0,
        },
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    let guest = MqGuest::start(&host, DomId(1), 2);
    let mut wire = wires(&nb, id, 2);
    let on = nb
        .call(move |nb| nb.vif_queue_workers(id), Duration::from_secs(10))
        .unwrap();
    assert_ne!(on[1], on[0], "queues on {on:?}");
    flood(&mut wire[1], 100, Duration::from_millis(400));
    // netback's counters settle, then a few worker ticks pass.
    let mut c = nb.vif_status(id).expect("status").counters;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = nb.vif_status(id).expect("status").counters;
        if now == c {
            break;
        }
        c = now;
    }
    let (stats, allowance) = guest.stop_with_allowance();
    assert!(c.rx_shaped_pps_frames > 0, "nothing shaped: {c:?}");
    assert_eq!(stats[0].rx_packets, 0, "queue 0 carried nothing");
    let told = allowance.shaped.expect("a version-2 credit area");
    assert_eq!(
        told,
        c.shaped(),
        "what the guest was told, against netback's counters"
    );
}

#[test]
fn a_budget_set_while_connected_holds_the_queues_on_every_worker() {
    use shared_ring::credit::Credits;
    use shared_ring::Limit;
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    // No budget at connect: the backstops start unlimited.
    let nb = mq_netback(&host, 2, 4);
    let guest = MqGuest::start_with(&host, DomId(1), 4, false);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    let on = nb
        .call(move |nb| nb.vif_queue_workers(id), Duration::from_secs(10))
        .unwrap();
    assert_eq!(on.len(), 4);
    assert!(on.contains(&0) && on.contains(&1), "queues on {on:?}");
    // The operator's (or the allocator's) budget reaches the vif's worker, queue 0,
    // which sets the backstops every queue charges, on either worker.
    let (rate, burst) = (2000u64, 50u64);
    let budget = Credits {
        bytes: Limit::Unlimited,
        packets: Limit::Rate {
            per_sec: rate,
            burst,
        },
        period_us: 0,
    };
    let applied = nb
        .call(
            move |nb| nb.set_tx_budget(id, &budget),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(applied);
    flood_within_budget(&nb, id, guest, rate, burst);
}

#[test]
fn a_tap_created_without_multi_queue_offers_its_vif_one_queue() {
    use netback::tapvif::TapFactory;
    use netport::netns::{skip_unless_root_with_tun, NetNs};
    if skip_unless_root_with_tun("a_tap_created_without_multi_queue_offers_its_vif_one_queue") {
        return;
    }
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let old = add_vif(&host, DomId(1), 0).expect("vif");
    let new = add_vif(&host, DomId(2), 0).expect("vif");
    let ns = NetNs::new("mq1").unwrap();
    // An earlier netback's persistent interface, single-queue.
    ns.ip(&["tuntap", "add", "dev", "vif1.0", "mode", "tap", "vnet_hdr"])
        .unwrap();
    let factory = TapFactory {
        multi_queue: true,
        ..TapFactory::default()
    };
    let cfg = NetbackConfig {
        max_queues: Some(4),
        ..NetbackConfig::default()
    };
    let dom0 = host.domain(DomId(0)).unwrap();
    let nb = BackendThread::spawn(
        Spawner::Netns(&ns),
        dom0,
        cfg,
        factory,
        BackendOptions::default(),
    )
    .unwrap();
    let offered = |d: u16| {
        wait_key(
            &host,
            &format!("/local/domain/0/backend/vif/{d}/0/multi-queue-max-queues"),
            |v| !v.is_empty(),
        )
    };
    assert_eq!(offered(1), "1", "its TAP takes no second queue");
    assert_eq!(offered(2), "4");
    // The guest asking for 4 connects with the one offered; the other gets 4.
    let nf = mq_netfront(&host, DomId(1), 4, true);
    assert_eq!(nf.num_queues(), 1);
    let nf2 = mq_netfront(&host, DomId(2), 4, true);
    assert_eq!(nf2.num_queues(), 4);
    nb.wait_connected(&[old, new], Duration::from_secs(10))
        .expect("both connected");
}

/// What each worker did so far (its loop counters).
fn worker_stats(nb: &BackendThread) -> Vec<netback::LoopStats> {
    nb.call(|nb| nb.worker_stats(), Duration::from_secs(10))
        .unwrap()
}

/// vif 1.0 connected with 4 queues (our netfront, [`MqGuest`]) to netback with 2
/// workers: the host, the vif, netback, the guest and netback's ends of the queues.
fn four_queue_vif_on_two_workers() -> (LocalHost, VifId, BackendThread, MqGuest, Vec<MemPort>) {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = mq_netback(&host, 2, 4);
    let guest = MqGuest::start(&host, DomId(1), 4);
    let wire = wires(&nb, id, 4);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    (host, id, nb, guest, wire)
}

#[test]
fn a_four_queue_vif_runs_on_both_workers_each_queue_polled_alone() {
    let _one = one_at_a_time();
    let (host, id, nb, mut guest, mut wire) = four_queue_vif_on_two_workers();
    let (on, queues, w0) = nb
        .call(
            move |nb| {
                (
                    nb.vif_queue_workers(id),
                    nb.worker_queues(),
                    nb.vif_worker(id),
                )
            },
            Duration::from_secs(10),
        )
        .unwrap();
    let w0 = w0.expect("placed");
    // Queue k on worker (w0 + k) mod 2.
    let want: Vec<usize> = (0..4).map(|k| (w0 + k) % 2).collect();
    assert_eq!(on, want, "the worker of each queue");
    assert_eq!(queues, vec![2, 2], "queues per worker");

    // The vif floods its 4 queues both ways: each worker carries its two.
    let cpu = |nb: &BackendThread| {
        nb.call(|nb| nb.worker_cpu_ns(), Duration::from_secs(10))
            .unwrap()
    };
    let (before, cpu0) = (worker_stats(&nb), cpu(&nb));
    for round in 0..8 {
        each_queue_carries(&mut guest.apps, &mut wire, round * 100, 25);
        each_queue_carries(&mut wire, &mut guest.apps, 50_000 + round * 100, 25);
    }
    // A worker publishes its CPU time within a tick (100 ms) of going idle: the last
    // of the traffic is in.
    std::thread::sleep(Duration::from_millis(200));
    let (after, cpu1) = (worker_stats(&nb), cpu(&nb));
    for w in 0..2 {
        let (polls, events) = (
            after[w].vif_polls - before[w].vif_polls,
            after[w].events - before[w].events,
        );
        let us = (cpu1[w] - cpu0[w]) / 1000;
        eprintln!("worker {w}: {polls} queue polls, {events} events, {us} µs of CPU");
        assert!(
            polls > 0 && events > 0 && us > 0,
            "worker {w} idle: {before:?} -> {after:?}, CPU {cpu0:?} -> {cpu1:?}"
        );
    }
    let st = nb.vif_status(id).expect("status");
    assert_eq!(st.counters.tx_packets, 800, "{:?}", st.counters);
    assert_eq!(st.counters.rx_packets, 800, "{:?}", st.counters);

    // An idle vif costs nothing: no queue of it is polled without an event.
    std::thread::sleep(Duration::from_millis(50));
    let quiet = worker_stats(&nb);
    std::thread::sleep(Duration::from_millis(500));
    let later = worker_stats(&nb);
    for w in 0..2 {
        assert_eq!(
            later[w].vif_polls, quiet[w].vif_polls,
            "worker {w} polled an idle vif"
        );
    }

    // Closed: the queues are released on both workers; the counters stay the vif's.
    let stats = guest.stop();
    close_frontend(&host, DomId(1));
    let (on, queues) = nb
        .call(
            move |nb| (nb.vif_queue_workers(id), nb.worker_queues()),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(on.is_empty(), "{on:?}");
    assert_eq!(
        queues.iter().sum::<u64>(),
        1,
        "the device alone: {queues:?}"
    );
    for (k, s) in stats.iter().enumerate() {
        assert_eq!((s.tx_packets, s.rx_packets), (200, 200), "queue {k}");
    }
    let st = nb.vif_status(id).expect("status");
    assert_eq!(
        (st.counters.tx_packets, st.counters.rx_packets),
        (800, 800),
        "counters of a closed connection"
    );
}

/// A frontend written by hand with 4 queues: each queue's rings granted and initialised
/// and an event channel, keys under `queue-N/` as Linux's netfront writes them.
struct HandQueues {
    rings: Vec<(xen_local::LocalSharedPages, xen_local::LocalSharedPages)>,
    ports: Vec<hypervisor::evtchn::Port>,
}

impl HandQueues {
    /// Grants and writes the keys of 4 queues; queue `bad`'s `tx-ring-ref` names a
    /// grant it never made.
    fn write(raw: &RawFrontend, bad: Option<u32>) -> HandQueues {
        use hypervisor::evtchn::EventChannels;
        use hypervisor::grant::{Access, GrantShare, SharedPages};
        use hypervisor::platform::ring_mem;
        use shared_ring::netif::{NetifRxFrontRing, NetifTxFrontRing};
        let plat = raw.platform();
        let mut q = HandQueues {
            rings: Vec::new(),
            ports: Vec::new(),
        };
        raw.write("multi-queue-num-queues", "4");
        raw.write("request-rx-copy", "1");
        for k in 0..4u32 {
            let tx = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
            let rx = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
            NetifTxFrontRing::init(ring_mem(tx.mem())).unwrap();
            NetifRxFrontRing::init(ring_mem(rx.mem())).unwrap();
            let port = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
            let tx_ref = if bad == Some(k) {
                // Not granted: the backend cannot map it.
                "4000".to_string()
            } else {
                tx.grefs()[0].0.to_string()
            };
            raw.write(&format!("queue-{k}/tx-ring-ref"), &tx_ref);
            raw.write(
                &format!("queue-{k}/rx-ring-ref"),
                &rx.grefs()[0].0.to_string(),
            );
            raw.write(&format!("queue-{k}/event-channel"), &port.0.to_string());
            q.rings.push((tx, rx));
            q.ports.push(port);
        }
        q
    }

    /// Initialised → the backend's answer.
    fn connect(raw: &RawFrontend, bad: Option<u32>) -> (HandQueues, XenbusState) {
        raw.write("state", "1");
        assert_eq!(
            raw.wait_be(&[XenbusState::InitWait], Duration::from_secs(10)),
            Some(XenbusState::InitWait)
        );
        let q = Self::write(raw, bad);
        raw.write("state", "4");
        let st = raw.wait_be(
            &[XenbusState::Connected, XenbusState::Closing],
            Duration::from_secs(10),
        );
        (q, st.expect("the backend answers"))
    }

    /// Closed (the backend follows), then frees its grants and channels.
    fn close(self, raw: &RawFrontend) {
        use hypervisor::evtchn::EventChannels;
        raw.write("state", "6");
        let _ = raw.wait_be(&[XenbusState::Closed], Duration::from_secs(10));
        for p in self.ports {
            let _ = raw.platform().evtchn.unbind(p);
        }
    }
}

#[test]
fn a_queue_that_cannot_be_mapped_fails_its_vif_on_every_worker_and_leaks_nothing() {
    let _one = one_at_a_time();
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    let bad = add_vif(&host, DomId(2), 0).expect("vif");
    let nb = mq_netback(&host, 2, 4);
    let mut neighbour = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut good_wire = nb.wire(good);
    good_roundtrip(&mut neighbour, &mut good_wire, 0);
    let raw = RawFrontend::new(&host, bad).expect("raw frontend");
    // Queue k lands on worker (w0 + k) mod 2: a bad queue 1 or 3 fails on the other
    // worker than the vif's, a bad queue 2 on the vif's after queue 1 mapped on the
    // other; each time what was mapped on both is released.
    let cycle = |i: usize| {
        let k = 1 + (i % 3) as u32;
        let (q, st) = HandQueues::connect(&raw, Some(k));
        assert_eq!(
            st,
            XenbusState::Closing,
            "cycle {i}: queue {k} is unmappable"
        );
        let err = raw.error();
        assert!(
            err.contains(&format!("queue {k}: map tx-ring-ref 4000")),
            "cycle {i}: error node {err:?}"
        );
        q.close(&raw);
    };
    for i in 0..6 {
        cycle(i);
    }
    let queues = nb
        .call(|nb| nb.worker_queues(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(queues, vec![1, 1], "only the devices: {queues:?}");
    let base = usage(&host);
    let heap = common::heap_in_use();
    for i in 6..156 {
        cycle(i);
    }
    let end = usage(&host);
    let heap_end = common::heap_in_use();
    eprintln!("150 refused 4-queue connections: {base:?} -> {end:?}, heap {heap} -> {heap_end}");
    assert_no_growth(&base, &end, heap, heap_end);
    good_roundtrip(&mut neighbour, &mut good_wire, 100);

    // Honest keys: the 4 queues connect, over both workers.
    let (q, st) = HandQueues::connect(&raw, None);
    assert_eq!(st, XenbusState::Connected, "{}", raw.error());
    let (on, w0) = nb
        .call(
            move |nb| (nb.vif_queue_workers(bad), nb.vif_worker(bad)),
            Duration::from_secs(10),
        )
        .unwrap();
    let w0 = w0.unwrap();
    assert_eq!(on, (0..4).map(|k| (w0 + k) % 2).collect::<Vec<_>>());
    q.close(&raw);
    good_roundtrip(&mut neighbour, &mut good_wire, 200);
}

/// Frames queue k carries guest → port in
/// `status_and_top_show_which_worker_serves_each_queue`, and their length.
fn status_tx(k: usize) -> (u64, usize) {
    (10 + 5 * k as u64, 200 + 60 * k)
}

/// The same, port → guest.
fn status_rx(k: usize) -> (u64, usize) {
    (3 + 2 * k as u64, 100 + 40 * k)
}

/// Runs the `netback` binary with `args`; its standard output.
fn netback_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netback"))
        .args(args)
        .output()
        .expect("netback runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "netback {args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The operator's view of a 4-queue vif over 2 workers: `netback status` (text and
/// JSON) names the worker of each queue, 0, 1, 0, 1, with each queue's own frames and
/// bytes both ways, summing to the vif's; the metrics endpoint's per-worker series
/// count the frames of each worker's queues; `netback top --once` prints a line per
/// worker with its two queues.
#[test]
fn status_and_top_show_which_worker_serves_each_queue() {
    use netback::backend::monotonic_ns;
    use netback::metrics::{MetricsServer, Sampler, SnapshotCell};
    let _one = one_at_a_time();
    let (_host, id, nb, mut guest, mut wire) = four_queue_vif_on_two_workers();
    assert_eq!(
        nb.call(move |nb| nb.vif_worker(id), Duration::from_secs(10))
            .unwrap(),
        Some(0),
        "the first vif goes to worker 0"
    );
    // The daemon's sampling, on netback's thread: one snapshot before the traffic, one
    // after, as `serve --metrics` takes them.
    let observe = |sm: Sampler| {
        nb.call(
            move |nb| {
                let mut sm = sm;
                let snap = sm.observe(nb, monotonic_ns()).expect("a snapshot");
                (sm, snap)
            },
            Duration::from_secs(10),
        )
        .unwrap()
    };
    let (sm, _) = observe(Sampler::new(Duration::from_nanos(1)));

    // Each queue carries its own number of frames of its own length, both ways.
    for (k, app) in guest.apps.iter_mut().enumerate() {
        let (n, len) = status_tx(k);
        for i in 0..n as u32 {
            send_all(app, &frame(i, len));
        }
    }
    for (k, w) in wire.iter_mut().enumerate() {
        let (n, len) = status_rx(k);
        for i in 0..n as u32 {
            send_all(w, &frame(i, len));
        }
    }
    for (k, (w, app)) in wire.iter_mut().zip(&mut guest.apps).enumerate() {
        let (tx, rx) = (status_tx(k).0, status_rx(k).0);
        let t = Duration::from_secs(10);
        assert_eq!(recv_n(w, tx as usize, t).len() as u64, tx, "queue {k} TX");
        assert_eq!(recv_n(app, rx as usize, t).len() as u64, rx, "queue {k} RX");
    }
    let total = |f: fn(usize) -> (u64, usize)| (0..4).map(|k| f(k).0).sum::<u64>();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = nb.vif_status(id).expect("status").counters;
        if (c.tx_packets, c.rx_packets) == (total(status_tx), total(status_rx)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counters {c:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Workers publish their CPU time before they sleep.
    std::thread::sleep(Duration::from_millis(100));
    let (_, snap) = observe(sm);
    let cell = SnapshotCell::new();
    cell.publish(snap).expect("published");
    let server = MetricsServer::start("127.0.0.1:0", cell).expect("metrics server");
    let url = format!("http://{}/metrics", server.local_addr());

    // `netback status --json`, read with a JSON parser.
    let json: serde_json::Value =
        serde_json::from_str(&netback_cli(&["status", "--json", "--metrics", &url]))
            .expect("status --json is JSON");
    let vifs = json["vifs"].as_array().expect("vifs");
    assert_eq!(vifs.len(), 1, "{json}");
    let vif = &vifs[0];
    assert_eq!(vif["vif"], "vif1.0");
    assert_eq!(vif["connected"], true);
    let queues = vif["queues"].as_array().expect("queues");
    let num = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    let on: Vec<u64> = queues.iter().map(|q| num(q, "worker")).collect();
    assert_eq!(on, [0, 1, 0, 1], "the worker of each queue: {json}");
    let mut sum = [0u64; 4];
    for (k, q) in queues.iter().enumerate() {
        let ((tx, tx_len), (rx, rx_len)) = (status_tx(k), status_rx(k));
        assert_eq!(num(q, "queue"), k as u64);
        assert_eq!(q["connected"], true);
        let got = [
            num(q, "tx_packets"),
            num(q, "tx_bytes"),
            num(q, "rx_packets"),
            num(q, "rx_bytes"),
        ];
        let want = [tx, tx * tx_len as u64, rx, rx * rx_len as u64];
        assert_eq!(got, want, "queue {k}: tx frames, bytes, rx frames, bytes");
        for (s, g) in sum.iter_mut().zip(got) {
            *s += g;
        }
    }
    let whole = [
        num(vif, "tx_packets"),
        num(vif, "tx_bytes"),
        num(vif, "rx_packets"),
        num(vif, "rx_bytes"),
    ];
    assert_eq!(sum, whole, "the queues sum to the vif");

    // The table says the same.
    let text = netback_cli(&["status", "--metrics", &url]);
    eprintln!("{text}");
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with("vif1.0"))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 5, "{text}");
    let mut want = vec![vec![
        "vif1.0".to_string(),
        "all".into(),
        "-".into(),
        "yes".into(),
    ]];
    want[0].extend(whole.iter().map(u64::to_string));
    for (k, q) in queues.iter().enumerate() {
        let mut row = vec![
            "vif1.0".to_string(),
            k.to_string(),
            on[k].to_string(),
            "yes".into(),
        ];
        for f in ["tx_packets", "tx_bytes", "rx_packets", "rx_bytes"] {
            row.push(num(q, f).to_string());
        }
        want.push(row);
    }
    assert_eq!(rows, want, "{text}");

    // Per worker: the frames of its queues over the interval, its CPU, its 2 queues.
    let samples = netback_ops::scrape(&url, Duration::from_secs(5)).expect("scrape");
    let value = |metric: &str, w: &str| {
        samples
            .iter()
            .find(|s| s.name == metric && s.label("worker") == Some(w))
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("{metric} of worker {w}"))
    };
    let secs = samples
        .iter()
        .find(|s| s.name == "dbavm_sample_interval_seconds")
        .expect("interval")
        .value;
    for w in 0..2usize {
        let label = w.to_string();
        let frames: u64 = (0..4)
            .filter(|k| k % 2 == w)
            .map(|k| status_tx(k).0 + status_rx(k).0)
            .sum();
        let pps = value("dbavm_worker_packets_per_second", &label);
        assert!(
            (pps * secs - frames as f64).abs() < 1e-6 * frames as f64,
            "worker {w}: {pps}/s over {secs} s, {frames} frames"
        );
        assert_eq!(value("dbavm_worker_queues", &label), 2.0, "worker {w}");
        assert!(
            value("dbavm_worker_cpu_utilization", &label) > 0.0,
            "worker {w}"
        );
    }

    // `netback top --once`: a line per worker.
    let top = netback_cli(&["top", "--once", "--metrics", &url]);
    eprintln!("{top}");
    let lines: Vec<Vec<&str>> = top
        .lines()
        .skip_while(|l| !l.starts_with("WORKER"))
        .skip(1)
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (w, cols) in lines.iter().enumerate() {
        let label = w.to_string();
        let kpps = format!(
            "{:.2}",
            value("dbavm_worker_packets_per_second", &label) / 1e3
        );
        let cpu = format!(
            "{:.2}",
            value("dbavm_worker_cpu_utilization", &label) * 100.0
        );
        assert_eq!(cols, &[label.as_str(), "2", &kpps, &cpu], "{top}");
    }
    assert_eq!(lines.len(), 2, "{top}");
    guest.stop();
}
