//! netfront's event loop against netback on the local platform, counted: every frame
//! must be delivered because the peer notified, never because a loop's idle timeout
//! came round. A side that misses a notification (reads the ring, asks for the next
//! event, and drops what arrived in between) shows as a `late_wakeup`: on Xen, where
//! both drivers are processes sharing one CPU, each one cost a 100 ms wait.

mod common;

use std::time::{Duration, Instant};

use common::*;
use netback::NetbackConfig;
use netfront::NetfrontConfig;
use netport::{MemPort, Port};
use testbed::{add_vif, check_frame, frame, recv_n, send_all, BackendThread, Guest};
use xen_ids::DomId;
use xen_local::LocalHost;

/// Frames of the dom0 → guest stream.
const STREAM: u32 = 20_000;
/// Round trips dom0 → guest → dom0.
const ROUND_TRIPS: u32 = 500;

/// Sends `n` frames from dom0 in bursts of 1 to 8 with a short pause between bursts,
/// so that netback often publishes while netfront is between reading the ring and
/// asking for the next notification.
fn stream(wire: &mut MemPort, first: u32, n: u32) {
    let mut seq = first;
    while seq < first + n {
        let burst = 1 + seq % 8;
        for _ in 0..burst.min(first + n - seq) {
            send_all(wire, &frame(seq, len_of(seq)));
            seq += 1;
        }
        std::thread::yield_now();
    }
}

/// Receives exactly the frames `first..first + n`, in order.
fn receive_in_order(app: &mut MemPort, first: u32, n: u32) {
    let mut buf = vec![0u8; 65536];
    let mut next = first;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < first + n {
        assert!(
            Instant::now() < deadline,
            "frame {next} of {first}..{} never arrived",
            first + n
        );
        match app.recv(&mut buf).expect("app recv") {
            Some((len, _)) => {
                assert_eq!(check_frame(&buf[..len]), next);
                next += 1;
            }
            None => std::thread::sleep(Duration::from_micros(50)),
        }
    }
}

#[test]
fn frames_arrive_on_notifications_not_on_the_idle_timeout() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    nb.wait_connected(&[id], WAIT).expect("netback connects");
    let mut wire = nb.wire(id);

    // dom0 → guest, bursty.
    let sender = std::thread::spawn(move || {
        stream(&mut wire, 0, STREAM);
        wire
    });
    receive_in_order(&mut guest.app, 0, STREAM);
    let mut wire = sender.join().expect("sender");

    // Ping-pong: each frame answered before the next is sent.
    for q in 0..ROUND_TRIPS {
        let seq = STREAM + q;
        send_all(&mut wire, &frame(seq, len_of(seq)));
        let got = recv_n(&mut guest.app, 1, WAIT);
        assert_eq!(got.len(), 1, "round trip {q}: the guest got nothing");
        assert_eq!(check_frame(&got[0]), seq);
        send_all(&mut guest.app, &got[0]);
        let back = recv_n(&mut wire, 1, WAIT);
        assert_eq!(back.len(), 1, "round trip {q}: dom0 got nothing back");
        assert_eq!(check_frame(&back[0]), seq);
    }

    let nb_stats = nb
        .call(|nb| nb.loop_stats(), WAIT)
        .expect("netback's counters");
    let s = guest.stop().expect("guest");
    eprintln!("netfront: {s:?}\nnetback: {nb_stats:?}");
    assert_eq!(s.rx_packets, u64::from(STREAM + ROUND_TRIPS));
    assert_eq!(s.tx_packets, u64::from(ROUND_TRIPS));
    assert!(s.events > 0, "netfront took no event at all: {s:?}");
    // Each side is woken by the other's notifications: none sent means none needed,
    // and an event is never taken without a notification behind it.
    assert!(nb_stats.events > 0 && nb_stats.notifies > 0, "{nb_stats:?}");
    assert!(
        s.events <= nb_stats.notifies,
        "netfront took {} events, netback sent {} notifications",
        s.events,
        nb_stats.notifies
    );
    assert_eq!(
        s.late_wakeups, 0,
        "frames waited for netfront's idle timeout instead of a notification: {s:?}"
    );
}
