//! The data-path workers' published CPU time (`Netback::worker_cpu_ns`), as the bench
//! and the operator read it: final within a worker tick (100 ms) after the traffic
//! stops, and left alone while the workers are idle — an idle worker does not read its
//! thread clock (a system call) at every tick.

use std::time::Duration;

use netback::NetbackConfig;
use netfront::NetfrontConfig;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const T: Duration = Duration::from_secs(10);
/// Longer than a worker tick (100 ms), with a margin for a loaded machine.
const SETTLE: Duration = Duration::from_millis(400);

#[test]
fn worker_cpu_time_is_published_after_traffic_and_idle_workers_leave_it_alone() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let cfg = NetbackConfig {
        workers: 2,
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(id);
    nb.wait_connected(&[id], T).unwrap();
    let cpu = || nb.call(|nb| nb.worker_cpu_ns(), T).unwrap();
    let mut seq = 0u32;
    let mut traffic = |guest: &mut Guest, wire: &mut netport::MemPort| {
        for _ in 0..500 {
            send_all(&mut guest.app, &frame(seq, 200));
            seq += 1;
        }
        assert_eq!(recv_n(wire, 500, T).len(), 500, "frames lost");
    };

    traffic(&mut guest, &mut wire);
    std::thread::sleep(SETTLE);
    let after_first = cpu();
    assert!(after_first.iter().sum::<u64>() > 0, "{after_first:?}");
    // Idle: nothing new to publish, and nothing read.
    std::thread::sleep(SETTLE);
    let idle = cpu();
    assert_eq!(idle, after_first, "an idle worker re-read its CPU time");

    // More traffic: its cost is in the figure a tick after it stops.
    traffic(&mut guest, &mut wire);
    std::thread::sleep(SETTLE);
    let after_second = cpu();
    let w = nb
        .call(move |nb| nb.vif_worker(id), T)
        .unwrap()
        .expect("placed");
    assert!(
        after_second[w] > idle[w],
        "worker {w}: the second burst's CPU was not published: {idle:?} -> {after_second:?}"
    );
}
