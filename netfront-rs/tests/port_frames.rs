//! Frames between netfront's port and its rings without a copy of their own: a frame
//! from the guest's stack is read straight into the granted TX pages
//! (`Netfront::send_from_port`), a received one handed to the port from the reassembly
//! buffer. What the guest's stack and the backend see must not change: every frame
//! read from the port reaches the wire intact and in order, none is read without room
//! to send it, a frame held for credits waits in its pages unchanged, and a received
//! frame the port cannot take yet waits for it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use netback::NetbackConfig;
use netfront::{CreditPolicy, FrontError, Netfront, NetfrontConfig, Sent};
use netport::MemPort;
use shared_ring::credit::Credits;
use shared_ring::Limit;
use testbed::{
    add_vif, check_frame, frame, pump_until, recv_n, send_all, BackendThread, GuestOptions,
    GuestThread, LocalNetfront, Spawner,
};
use xen_ids::DomId;
use xen_local::LocalHost;

/// The guest stack's end and netfront's end of a port of `capacity` frames of up to
/// 64 KiB (a TAP with TSO: a frame may take 16 TX pages).
fn stack(capacity: usize) -> (MemPort, MemPort) {
    MemPort::pair(capacity, 65536).expect("port")
}

/// Offers frames from `dev` until it is empty, publishing and reaping when the ring
/// is full.
fn drain_port(nf: &mut LocalNetfront, dev: &mut MemPort) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = nf.now();
        match nf.send_from_port(now, dev).expect("send") {
            Some(Sent::Queued) => {}
            None => break,
            Some(Sent::RingFull) => {
                assert!(Instant::now() < deadline, "the TX ring stayed full");
                nf.flush().expect("flush");
                std::thread::sleep(Duration::from_micros(200));
                nf.ack_events();
                nf.reap_tx().expect("reap");
            }
            Some(other) => panic!("{other:?}"),
        }
    }
    nf.flush().expect("flush");
}

#[test]
fn a_frame_is_read_only_with_room_for_the_largest_and_none_read_is_lost() {
    let host = LocalHost::new();
    let (id, nb, mut nf) = pair(&host);
    let mut wire = nb.wire(id);
    let (mut app, mut dev) = stack(1024);
    const N: u32 = 600;
    for seq in 0..N {
        send_all(&mut app, &frame(seq, len_of(seq)));
    }
    // Nothing is published, so the backend answers nothing and the ring fills.
    let now = nf.now();
    let mut queued = 0u64;
    let full = loop {
        match nf.send_from_port(now, &mut dev).expect("send") {
            Some(Sent::Queued) => queued += 1,
            other => break other,
        }
    };
    assert_eq!(full, Some(Sent::RingFull));
    // A frame is read only while the ring has slots and pages for a 64 KiB one (16
    // pages and a GSO extra): 256 slots take 240 frames of one page each.
    assert_eq!(queued, 256 - 17 + 1);
    assert_eq!(nf.stats.tx_packets, queued);
    // Every frame read from the port is on the ring; the rest wait in the port.
    assert_eq!(dev.stats().received_frames, queued);
    assert_eq!(dev.rx_pending() as u64, u64::from(N) - queued);
    // Asked again while full: the port is not read.
    assert_eq!(
        nf.send_from_port(now, &mut dev).expect("send"),
        Some(Sent::RingFull)
    );
    assert_eq!(dev.stats().received_frames, queued);
    drain_port(&mut nf, &mut dev);
    let got = recv_n(&mut wire, N as usize, WAIT);
    let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
    let s = nf.stats;
    assert_eq!(s.tx_packets, u64::from(N));
    let bytes: u64 = (0..N).map(|q| len_of(q) as u64).sum();
    assert_eq!(s.tx_bytes, bytes);
    assert_eq!(s.tx_errors + s.tx_dropped_back, 0);
}

#[test]
fn a_port_whose_frames_outgrow_the_tx_pages_is_refused_unread() {
    let host = LocalHost::new();
    let (_id, _nb, mut nf) = pair(&host);
    let max = netfront::front::MAX_PORT_PAGES * 4096 + 1;
    let (mut app, mut dev) = MemPort::pair(4, max).expect("port");
    send_all(&mut app, &frame(0, 100));
    let now = nf.now();
    match nf.send_from_port(now, &mut dev) {
        Err(FrontError::PortFrame { max_frame, .. }) => assert_eq!(max_frame, max),
        other => panic!("{other:?}"),
    }
    assert_eq!(dev.rx_pending(), 1, "the frame stays in the port");
    assert_eq!(nf.stats.tx_packets, 0);
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn injected(&self) -> hypervisor::clock::Clock {
        let c = self.clone();
        Box::new(move || c.now())
    }
}

#[test]
fn a_frame_held_for_credits_waits_in_its_pages_and_goes_intact() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let clock = ManualClock(Arc::new(AtomicU64::new(hypervisor::clock::monotonic_ns())));
    let mut cfg = NetfrontConfig::new(0);
    cfg.policy = CreditPolicy::Hold;
    let platform = testbed::domain(&host, DomId(1)).expect("domain");
    let mut nf = Netfront::connect(platform, cfg, clock.injected()).expect("netfront");
    nb.wait_connected(&[id], WAIT).expect("connected");
    // Three frames of 1000 bytes in the burst, then one per millisecond.
    let budget = Credits {
        bytes: Limit::rate(1_000_000, 3000),
        packets: Limit::Unlimited,
        period_us: 20_000,
    };
    let set = nb.call(move |nb| nb.set_tx_budget(id, &budget), WAIT);
    assert_eq!(set.ok(), Some(true), "netback set the budget");
    let deadline = Instant::now() + WAIT;
    while nf.limits().0 != budget.bytes {
        assert!(Instant::now() < deadline, "netfront never saw its budget");
        nf.maintain();
        nf.ack_events();
        nf.apply_credits();
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut wire = nb.wire(id);
    let (mut app, mut dev) = stack(16);
    for seq in 0..5 {
        send_all(&mut app, &frame(seq, 1000));
    }
    let now = clock.now();
    for _ in 0..3 {
        assert_eq!(
            nf.send_from_port(now, &mut dev).unwrap(),
            Some(Sent::Queued)
        );
    }
    let Some(Sent::Held(until)) = nf.send_from_port(now, &mut dev).unwrap() else {
        panic!("the fourth frame is held");
    };
    assert!(until > now);
    // Offered again before its time: still held, and the port is not read.
    assert_eq!(
        nf.send_from_port(now, &mut dev).unwrap(),
        Some(Sent::Held(until))
    );
    assert_eq!(dev.rx_pending(), 1);
    assert_eq!(dev.stats().received_frames, 4);
    clock.0.store(until, Ordering::Relaxed);
    assert_eq!(
        nf.send_from_port(until, &mut dev).unwrap(),
        Some(Sent::Queued)
    );
    assert_eq!(dev.rx_pending(), 1, "the fifth frame is still the stack's");
    nf.flush().expect("flush");
    let got = recv_n(&mut wire, 4, WAIT);
    let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    let s = nf.stats;
    assert_eq!((s.tx_packets, s.tx_held, s.tx_dropped_credit), (4, 2, 0));
}

#[test]
fn a_received_frame_waits_in_the_reassembly_buffer_while_the_port_is_full() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    // The guest's stack takes two frames and then reads nothing for a while.
    let (mut app, mut dev) = MemPort::pair(2, 65536).expect("port");
    let platform = testbed::domain(&host, DomId(1)).expect("domain");
    let guest = GuestThread::spawn(
        Spawner::Thread,
        platform,
        NetfrontConfig::new(0),
        GuestOptions::default(),
        move |nf, stop| pump_until(nf, &mut dev, stop),
    )
    .expect("guest");
    nb.wait_connected(&[id], WAIT).expect("connected");
    let mut wire = nb.wire(id);
    const N: u32 = 200;
    for seq in 0..N {
        send_all(&mut wire, &frame(seq, len_of(seq)));
    }
    // The stack's queue fills; netfront keeps the next frame and the ring the rest.
    let deadline = Instant::now() + WAIT;
    while app.rx_pending() < 2 {
        assert!(Instant::now() < deadline, "the stack's queue never filled");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let got = recv_n(&mut app, N as usize, WAIT);
    let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
    let exit = guest.finish().expect("guest");
    exit.value.expect("pump");
    let s = exit.netfront.stats;
    assert_eq!((s.rx_packets, s.rx_errors), (u64::from(N), 0));
    let bytes: u64 = (0..N).map(|q| len_of(q) as u64).sum();
    assert_eq!(s.rx_bytes, bytes);
}
