//! netfront ↔ netback end to end on the local platform.

use std::time::Duration;

use netback::NetbackConfig;
use netfront::NetfrontConfig;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

#[test]
fn handshake_and_frames_both_ways() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let _nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = _nb.wire(id);

    // Guest → wire.
    for seq in 0..100u32 {
        send_all(&mut guest.app, &frame(seq, 60 + (seq as usize * 37) % 1440));
    }
    let got = recv_n(&mut wire, 100, Duration::from_secs(10));
    assert_eq!(got.len(), 100);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), i as u32);
    }
    // Wire → guest.
    for seq in 0..100u32 {
        send_all(&mut wire, &frame(seq, 60 + (seq as usize * 53) % 1440));
    }
    let got = recv_n(&mut guest.app, 100, Duration::from_secs(10));
    assert_eq!(got.len(), 100);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), i as u32);
    }
    let st = _nb.vif_status(id).unwrap();
    assert!(st.connected && st.credits);
}

#[test]
fn hundred_thousand_frames_each_way_with_payload_checks() {
    let _ = env_logger::builder().is_test(true).try_init();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(id);
    const N: u32 = 100_000;
    for (from_guest, label) in [(true, "guest → wire"), (false, "wire → guest")] {
        let (mut src, mut dst) = if from_guest {
            (
                std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0),
                std::mem::replace(&mut wire, netport::MemPort::pair(1, 64).unwrap().0),
            )
        } else {
            (
                std::mem::replace(&mut wire, netport::MemPort::pair(1, 64).unwrap().0),
                std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0),
            )
        };
        let sender = std::thread::spawn(move || {
            for seq in 0..N {
                send_all(&mut src, &frame(seq, 60 + (seq as usize * 7919) % 1455));
            }
            src
        });
        let mut buf = vec![0u8; 65536];
        let mut next = 0u32;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while next < N {
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: only {next} of {N} frames arrived; netback: {:?}",
                nb.vif_status(id)
            );
            match netport::Port::recv(&mut dst, &mut buf).unwrap() {
                Some((len, _)) => {
                    let seq = check_frame(&buf[..len]);
                    if seq != next {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "{label}: got {seq}, expected {next}: {:?}",
                            nb.vif_status(id)
                        );
                    }
                    assert_eq!(len, 60 + (next as usize * 7919) % 1455);
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        let src = sender.join().unwrap();
        if from_guest {
            guest.app = src;
            wire = dst;
        } else {
            wire = src;
            guest.app = dst;
        }
    }
    let st = nb.vif_status(id).unwrap();
    assert_eq!(st.counters.tx_packets, N as u64);
    assert_eq!(st.counters.rx_packets, N as u64);
    assert_eq!(st.counters.tx_dropped() + st.counters.rx_dropped(), 0);
}

#[test]
fn multi_slot_frames_both_ways() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(id);
    // TX buffers are 2 KiB, RX buffers 4 KiB: these sizes need 1..=18 TX slots and
    // 1..=9 RX slots, crossing every boundary.
    let sizes: Vec<usize> = vec![2047, 2048, 2049, 4095, 4096, 4097, 9000, 16384, 36864];
    for (seq, &len) in sizes.iter().enumerate() {
        send_all(&mut guest.app, &frame(seq as u32, len));
    }
    let got = recv_n(&mut wire, sizes.len(), Duration::from_secs(10));
    assert_eq!(got.iter().map(|f| f.len()).collect::<Vec<_>>(), sizes);
    got.iter().for_each(|f| {
        check_frame(f);
    });
    for (seq, &len) in sizes.iter().enumerate() {
        send_all(&mut wire, &frame(seq as u32, len));
    }
    let got = recv_n(&mut guest.app, sizes.len(), Duration::from_secs(10));
    assert_eq!(got.iter().map(|f| f.len()).collect::<Vec<_>>(), sizes);
    got.iter().for_each(|f| {
        check_frame(f);
    });
}

#[test]
fn frontend_restart_reconnects() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut wire = nb.wire(id);
    for round in 0..3u32 {
        let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
        for seq in 0..50u32 {
            send_all(&mut guest.app, &frame(round * 1000 + seq, 100));
        }
        let got = recv_n(&mut wire, 50, Duration::from_secs(10));
        assert_eq!(got.len(), 50, "round {round}");
        assert_eq!(check_frame(&got[0]), round * 1000);
        guest.stop().expect("guest");
    }
    // The status snapshot follows netback's loop (refreshed after each iteration): the
    // last frames can reach the wire before the snapshot that counts them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut st = nb.vif_status(id).unwrap();
    while st.counters.tx_packets < 150 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        st = nb.vif_status(id).unwrap();
    }
    assert_eq!(
        st.counters.tx_packets, 150,
        "counters survive reconnections"
    );
}

#[test]
fn backend_restart_reconnects() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let mut nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(id);
    send_all(&mut guest.app, &frame(1, 100));
    assert_eq!(recv_n(&mut wire, 1, Duration::from_secs(10)).len(), 1);
    nb.stop().expect("netback");
    drop(nb);
    let nb2 = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut wire2 = nb2.wire(id);
    // The new backend takes over the still-Connected frontend's rings (re-attach at the
    // shared indices, no new handshake), and traffic resumes.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seq = 2;
    loop {
        send_all(&mut guest.app, &frame(seq, 100));
        seq += 1;
        if !recv_n(&mut wire2, 1, Duration::from_millis(100)).is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no traffic after the backend restarted"
        );
    }
    // The status snapshot is taken after each loop iteration: the frame may reach the
    // wire before the first snapshot that lists the vif, so wait for it.
    nb2.wait_connected(&[id], Duration::from_secs(5))
        .expect("the vif is connected after the take-over");
}
