//! A stalled frontend (Linux netback's `rx_stall_timeout`), on netback's injected clock:
//! a guest that connects and never posts RX buffers while frames come for it has its
//! port's carrier turned off once a frame has waited for the timeout, and what comes for
//! it meanwhile is dropped instead of queueing; when it posts buffers the carrier comes
//! back and frames reach it. Its vif stays connected throughout, and a well-behaved
//! guest next to it is not disturbed. A frontend that closes leaves no carrier either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::xenbus::XenbusState;
use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const TIMEOUT: Duration = Duration::from_secs(10);
/// netback's clock moves this much per step of the test.
const STEP: Duration = Duration::from_millis(500);

/// Waits (real time) up to 10 s for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn counters(nb: &BackendThread, id: VifId) -> netback::meter::VifCounters {
    nb.vif_status(id).expect("vif known").counters
}

/// netback with the stall timeout [`TIMEOUT`] on a clock the test moves ahead.
fn backend(host: &LocalHost) -> (BackendThread, Arc<SkewedClock>) {
    let skew = SkewedClock::new();
    let opts = BackendOptions {
        clock: skew.clock(),
        ..BackendOptions::default()
    };
    let cfg = NetbackConfig {
        rx_stall_timeout_ns: Some(TIMEOUT.as_nanos() as u64),
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start_with(host, cfg, MemPortConfig::new(256, 65536), opts).unwrap();
    (nb, skew)
}

#[test]
fn a_frontend_without_rx_buffers_loses_its_carrier_and_gets_it_back() {
    let host = LocalHost::new();
    let stalled = add_vif(&host, DomId(1), 0).unwrap();
    let good = add_vif(&host, DomId(2), 0).unwrap();
    let (nb, skew) = backend(&host);

    // The stock frontend's keys (it says it notifies when it posts buffers), and then
    // it never posts one.
    let mut raw = RawFrontend::new(&host, stalled).unwrap();
    raw.write("feature-rx-notify", "1");
    assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Connected);
    let mut guest = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).unwrap();
    nb.wait_connected(&[stalled, good], Duration::from_secs(10))
        .unwrap();
    let mut wire = nb.wire(stalled);
    let mut good_wire = nb.wire(good);
    assert!(wire.peer_carrier(), "carrier on while connected");

    // A frame for the guest finds no buffer and waits; netback's time runs on.
    send_all(&mut wire, &frame(0, 200));
    let mut advanced = Duration::ZERO;
    while wire.peer_carrier() {
        assert!(
            advanced < TIMEOUT * 2,
            "carrier still on after {advanced:?} of netback's time"
        );
        // Real time for netback to look at the vif at this point of its clock.
        std::thread::sleep(Duration::from_millis(30));
        skew.advance(STEP.as_nanos() as u64);
        advanced += STEP;
    }
    assert!(
        advanced >= TIMEOUT,
        "carrier off after {advanced:?}, before the {TIMEOUT:?} timeout"
    );
    eventually("the stall counted", || {
        counters(&nb, stalled).rx_stalls == 1
    });
    let c = counters(&nb, stalled);
    assert_eq!((c.rx_dropped_stalled, c.rx_packets), (1, 0), "{c:?}");
    assert!(
        nb.vif_status(stalled).unwrap().connected,
        "a stall is no failure"
    );

    // What comes for it now is dropped at once, not queued for it.
    for seq in 1..=300 {
        send_all(&mut wire, &frame(seq, 200));
    }
    eventually("300 frames dropped for the stalled guest", || {
        counters(&nb, stalled).rx_dropped_stalled == 301
    });
    assert!(raw.take_rx_responses().is_empty());

    // The neighbour is not disturbed meanwhile.
    send_all(&mut good_wire, &frame(7, 300));
    let got = recv_n(&mut guest.app, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "the well-behaved guest got its frame");
    assert_eq!(check_frame(&got[0]), 7);

    // It posts buffers: carrier back, frames reach it.
    assert_eq!(raw.post_rx(8), 8);
    eventually("carrier on again", || wire.peer_carrier());
    send_all(&mut wire, &frame(1000, 200));
    let mut rsps = Vec::new();
    eventually("a frame delivered after the stall", || {
        rsps.extend(raw.take_rx_responses());
        !rsps.is_empty()
    });
    assert_eq!(rsps[0].1, 200, "{rsps:?}");
    let c = counters(&nb, stalled);
    assert_eq!(
        (c.rx_packets, c.rx_stalls, c.rx_dropped_stalled),
        (1, 1, 301)
    );
    // A frontend that closes leaves an interface without carrier.
    raw.close();
    eventually("carrier off after the frontend closed", || {
        !wire.peer_carrier()
    });
    guest.stop().unwrap();
}

#[test]
fn a_frontend_that_drains_in_time_never_stalls() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).unwrap();
    let (nb, skew) = backend(&host);
    let mut raw = RawFrontend::new(&host, id).unwrap();
    raw.write("feature-rx-notify", "1");
    assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Connected);
    let mut wire: MemPort = nb.wire(id);
    // Each frame waits for buffers for less than the timeout, then gets one.
    for seq in 0..4u32 {
        send_all(&mut wire, &frame(seq, 200));
        std::thread::sleep(Duration::from_millis(30));
        skew.advance((TIMEOUT - STEP).as_nanos() as u64);
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            wire.peer_carrier(),
            "frame {seq}: carrier off before the timeout"
        );
        assert_eq!(raw.post_rx(1), 1);
        eventually("the frame delivered", || {
            counters(&nb, id).rx_packets == seq as u64 + 1
        });
    }
    let c = counters(&nb, id);
    assert_eq!((c.rx_stalls, c.rx_dropped_stalled), (0, 0), "{c:?}");
}
