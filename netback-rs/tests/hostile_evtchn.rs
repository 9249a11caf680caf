//! An event-channel storm: a hostile guest notifies its port in a tight loop without
//! publishing anything. Each spurious event keeps the port masked longer (1 ms, 2 ms, …
//! up to 1 s, `netback::evtchn_backoff`), so netback polls the vif a bounded number of
//! times whatever the guest's speed, spends at most 5 % of the window, and still serves
//! the guest's real requests (within the longest delay) and the honest guest beside it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hypervisor::xenbus::XenbusState;
use netback::evtchn_backoff::MAX_DELAY_NS;
use netback::{LoopStats, NetbackConfig};
use netfront::NetfrontConfig;
use netport::MemPortConfig;
use shared_ring::netif::{NetTxFlags, NETIF_RSP_ERROR};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const WINDOW: Duration = Duration::from_secs(2);

fn sample(nb: &BackendThread) -> (LoopStats, u64) {
    nb.loop_sample().unwrap()
}

#[test]
fn an_event_channel_storm_costs_bounded_cpu_and_loses_no_work() {
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).unwrap();
    let bad = add_vif(&host, DomId(2), 0).unwrap();
    let nb = BackendThread::start_with_ports(
        &host,
        NetbackConfig::default(),
        MemPortConfig::new(256, 65536),
    )
    .unwrap();
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut wire = nb.wire(good);
    nb.wait_connected(&[good], Duration::from_secs(10)).unwrap();
    let mut raw = RawFrontend::new(&host, bad).unwrap();
    assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Connected);

    let stop = AtomicBool::new(false);
    let (s0, cpu0) = sample(&nb);
    let notified = std::thread::scope(|s| {
        let storm = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                raw.notify();
                n += 1;
            }
            n
        });
        std::thread::sleep(WINDOW);
        stop.store(true, Ordering::Relaxed);
        storm.join().unwrap()
    });
    let (s1, cpu1) = sample(&nb);
    let polls = s1.vif_polls - s0.vif_polls;
    let cpu = cpu1 - cpu0;
    eprintln!(
        "{notified} notifications in {WINDOW:?}: {polls} vif polls, {} loop iterations, netback CPU {} ms",
        s1.iterations - s0.iterations,
        cpu / 1_000_000
    );
    assert!(notified > 10_000, "the storm did not storm: {notified}");
    // 1 free event, then delays of 1, 2, 4 … 512 ms (10 events, ~1 s), then one event a
    // second: about 13 in the window; the unmask polls double it.
    assert!(
        polls <= 40,
        "{polls} polls for {notified} spurious notifications"
    );
    assert!(
        cpu * 20 <= WINDOW.as_nanos() as u64,
        "netback used {cpu} ns of CPU in the {WINDOW:?} storm"
    );

    // The storming guest's real work is still taken: within the longest delay.
    let t = Instant::now();
    assert!(raw
        .push(&[tx_req(0xFFFF_FF00, 0, 100, NetTxFlags::empty(), 9)], true)
        .is_some());
    let r = raw.responses(1, Duration::from_nanos(2 * MAX_DELAY_NS));
    assert_eq!(r, vec![(9, NETIF_RSP_ERROR)], "after {:?}", t.elapsed());
    assert_eq!(raw.be_state(), XenbusState::Connected);

    // And the honest guest was never disturbed.
    for seq in 0..50 {
        send_all(&mut guest.app, &frame(seq, 300));
    }
    let got = recv_n(&mut wire, 50, Duration::from_secs(10));
    assert_eq!(got.len(), 50);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), i as u32);
    }
    raw.close();
}
