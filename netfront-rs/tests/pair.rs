//! netfront ↔ netback on the local platform, from netfront's side: the test drives a
//! `Netfront` by hand (no event loop), netback serves dom0 on its own thread
//! (`testbed::BackendThread`) with a memory port per vif whose wire end the test holds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use netback::NetbackConfig;
use netfront::FrontError;
use netport::FrameMeta;
use testbed::{frame, recv_n, BackendThread, LocalNetfront};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

#[test]
fn connect_send_and_receive() {
    let host = LocalHost::new();
    let (id, nb, mut nf) = pair(&host);
    assert!(nf.is_connected());
    assert!(nf.has_credits(), "netback offers credits by default");
    let mut wire = nb.wire(id);
    roundtrip(&mut nf, &mut wire, 0, 300);
    let s = nf.stats;
    assert_eq!((s.tx_packets, s.rx_packets), (300, 300));
    let bytes: u64 = (0..300).map(|q| len_of(q) as u64).sum();
    assert_eq!((s.tx_bytes, s.rx_bytes), (bytes, bytes));
    assert_eq!(s.tx_errors + s.tx_dropped_back + s.rx_errors, 0);
    // netback counted the same frames (its snapshot may lag one loop iteration).
    let deadline = Instant::now() + WAIT;
    while nb
        .vif_status(id)
        .is_none_or(|st| (st.counters.tx_packets, st.counters.rx_packets) != (300, 300))
    {
        assert!(Instant::now() < deadline, "{:?}", nb.vif_status(id));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn disconnect_then_reconnect() {
    let host = LocalHost::new();
    let (id, nb, mut nf) = pair(&host);
    let mut wire = nb.wire(id);
    roundtrip(&mut nf, &mut wire, 0, 20);

    nf.disconnect();
    assert!(!nf.is_connected());
    assert!(matches!(
        nf.send(&frame(0, 100), &FrameMeta::default()),
        Err(FrontError::NotConnected)
    ));
    // netback still serves the rings netfront abandoned; `maintain` starts a new
    // handshake, which moves netback onto the new ones.
    let deadline = Instant::now() + WAIT;
    while !nf.maintain() {
        assert!(Instant::now() < deadline, "netfront did not reconnect");
        std::thread::sleep(Duration::from_millis(10));
    }
    nb.wait_connected(&[id], WAIT).expect("netback reconnects");
    roundtrip(&mut nf, &mut wire, 1000, 20);
    assert_eq!((nf.stats.tx_packets, nf.stats.rx_packets), (40, 40));
}

/// Stops netback and starts a new one on the same host (the old one does not close its
/// devices: their nodes still say `Connected`); returns once the new netback serves the
/// rings netfront still uses (it takes them over: netfront sees no state change and
/// keeps them).
fn restart_backend(host: &LocalHost, nb: BackendThread, nf: &mut LocalNetfront) -> BackendThread {
    let id = VifId {
        domid: DomId(1),
        devid: 0,
    };
    let old_rings = tx_ring_ref(nf);
    let mut nb = nb;
    nb.stop().expect("netback");
    drop(nb);
    let nb = BackendThread::start(host, NetbackConfig::default()).expect("netback");
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes the rings over");
    assert!(nf.maintain(), "netfront stays connected");
    assert_eq!(tx_ring_ref(nf), old_rings, "netfront kept its rings");
    nb
}

#[test]
fn follows_a_restarted_backend() {
    let host = LocalHost::new();
    let (id, nb, mut nf) = pair(&host);
    let mut wire = nb.wire(id);
    roundtrip(&mut nf, &mut wire, 0, 20);
    let nb = restart_backend(&host, nb, &mut nf);
    let mut wire = nb.wire(id);
    assert!(
        recv_n(&mut wire, usize::MAX, Duration::from_millis(50)).is_empty(),
        "frames already sent reached the wire again"
    );
    roundtrip(&mut nf, &mut wire, 2000, 20);
    assert_eq!(nf.stats.tx_packets, 40);
}

/// A netback that starts while a frontend is still connected to the rings of the
/// previous one takes those rings over (a Linux netfront keeps them). It must not put on
/// the wire what the previous netback already sent: the requests below the rings'
/// response index are answered, and their buffers reused by the frontend. (Failed about
/// one restart in five when `Vif::new` read the TX ring from index 0 instead of attaching
/// at the ring's indices, as Linux's `BACK_RING_ATTACH` does.)
#[test]
fn a_restarted_backend_never_replays_old_requests() {
    let host = LocalHost::new();
    let (id, mut nb, mut nf) = pair(&host);
    let mut wire = nb.wire(id);
    for round in 0..20u32 {
        roundtrip(&mut nf, &mut wire, round * 100, 20);
        nb = restart_backend(&host, nb, &mut nf);
        wire = nb.wire(id);
        let replayed = recv_n(&mut wire, usize::MAX, Duration::from_millis(50));
        let lens: Vec<usize> = replayed.iter().map(Vec::len).collect();
        assert!(
            replayed.is_empty(),
            "restart {round}: {} frames netfront did not send reached the wire ({lens:?})",
            replayed.len()
        );
    }
}
