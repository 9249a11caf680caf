//! Faults on the `local` platform: a netfront killed with SIGKILL mid-traffic, netback
//! restarted mid-traffic, a vif destroyed and re-created under the allocator. In every
//! case a well-behaved vif keeps working and the system comes back by itself.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::toolstack::{create_vif, destroy_vif, VifSpec};
use netback::PortFactory;
use netback::{NetbackConfig, VifId};
use netfront::{Netfront, NetfrontConfig};
use netport::{MemPort, MemPortConfig, Port};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

/// Sequence numbers of frames sent by the child process start here.
const CHILD_SEQ: u32 = 1_000_000;

/// Entry point of the child process of [`netfront_killed_mid_traffic`]: a guest domain
/// whose netfront floods until it is killed. Ignored in normal runs; run on purpose it
/// fails with a clear message unless started by that test.
#[test]
#[ignore = "child process of netfront_killed_mid_traffic (started by it, with --ignored)"]
fn child_netfront_flood() {
    let platform = child_platform("child_netfront_flood").expect("the child's domain");
    let mut nf = Netfront::connect(
        platform,
        NetfrontConfig::new(0),
        Box::new(netfront::front::monotonic_ns),
    )
    .expect("netfront connect");
    let (mut app, mut dev) = MemPort::pair(1024, 65536).expect("port");
    std::thread::spawn(move || {
        let mut seq = CHILD_SEQ;
        let mut f = frame(seq, 300);
        loop {
            f.copy_from_slice(&frame(seq, 300));
            match netport::Port::send(&mut app, &f, &netport::FrameMeta::default()) {
                Ok(()) => seq += 1,
                Err(_) => std::thread::sleep(Duration::from_micros(50)),
            }
        }
    });
    let mut out = std::io::stdout();
    writeln!(out, "CHILD-CONNECTED").unwrap();
    out.flush().unwrap();
    netfront::pump::run(&mut nf, &mut dev, || false).expect("pump");
}

/// Starts the child as domain `domid` and waits until its netfront is connected.
fn spawn_child(host: &LocalHost, domid: u16) -> TestChild {
    let spec = ChildSpec {
        test: "child_netfront_flood",
        stdout: true,
        ..ChildSpec::default()
    };
    let mut child = TestChild::spawn(host, DomId(domid), &spec).expect("spawn child domain");
    let connected = child
        .stdout_lines(|line| line.contains("CHILD-CONNECTED").then_some(()))
        .expect("its standard output");
    connected
        .recv_timeout(Duration::from_secs(30))
        .expect("the child's netfront never connected");
    child
}

/// Receives frames until one with sequence number ≥ `min_seq` (checked intact) arrived
/// `n` times; earlier frames (from a previous incarnation) are checked and skipped.
fn recv_from(wire: &mut MemPort, min_seq: u32, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < n && Instant::now() < deadline {
        for f in recv_n(wire, 1, Duration::from_millis(50)) {
            if check_frame(&f) >= min_seq {
                got += 1;
            }
        }
    }
    got
}

/// Takes every frame queued on `port` right now.
fn drain(port: &mut MemPort) {
    let mut buf = vec![0u8; 65536];
    while netport::Port::recv(port, &mut buf).unwrap().is_some() {}
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a rebooting guest's xenbus does before its netfront connects again (Linux's
/// `xenbus_reset_state`): frontend `Closed`, then wait for the backend to close. netback
/// releases the dead connection's rings and event channel here.
fn reset_frontend(host: &LocalHost, nb: &BackendThread, id: VifId) {
    let plat = host.domain(id.domid).unwrap();
    let fe = format!("/local/domain/{}/device/vif/{}", id.domid.0, id.devid);
    let be = format!("/local/domain/0/backend/vif/{}/{}", id.domid.0, id.devid);
    plat.xenstore
        .write(XsTx::NONE, &format!("{fe}/state"), b"6")
        .unwrap();
    wait_until("the backend closes", Duration::from_secs(10), || {
        read_state(&plat.xenstore, &format!("{be}/state")).ok() == Some(XenbusState::Closed)
    });
    wait_until(
        "netback releases the dead connection",
        Duration::from_secs(10),
        || nb.vif_status(id).is_some_and(|s| !s.connected),
    );
}

fn good_roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32) {
    for s in 0..20 {
        send_all(&mut guest.app, &frame(base + s, 200));
    }
    let got = recv_n(wire, 20, Duration::from_secs(10));
    assert_eq!(got.len(), 20, "the well-behaved vif lost traffic");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

#[test]
fn netfront_killed_mid_traffic() {
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    let victim = add_vif(&host, DomId(2), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut good_wire = nb.wire(good);
    let mut wire = nb.wire(victim);
    good_roundtrip(&mut guest, &mut good_wire, 0);
    let before = host.hypervisor.stats();

    let mut fds_after_first = None;
    for round in 0..3u32 {
        if round > 0 {
            reset_frontend(&host, &nb, victim);
        }
        let child = spawn_child(&host, 2);
        // The child's traffic reaches the wire.
        assert_eq!(
            recv_from(&mut wire, CHILD_SEQ, 50, Duration::from_secs(10)),
            50,
            "round {round}: the child's frames never arrived"
        );
        let with_child = host.hypervisor.stats();
        assert!(with_child.grants > before.grants);
        // kill -9 in the middle of the flood (and reaped).
        drop(child);
        // What the dead netfront had already handed over is delivered, then nothing.
        std::thread::sleep(Duration::from_millis(100));
        drain(&mut wire);
        // The hypervisor revokes everything the dead domain granted.
        wait_until(
            "the dead netfront's grants are released",
            Duration::from_secs(10),
            || host.hypervisor.stats().grants == before.grants,
        );
        // netback notices the death by itself (@releaseDomain) and lets go of the rings.
        wait_until(
            "netback releases the dead frontend's rings",
            Duration::from_secs(10),
            || nb.vif_status(victim).is_some_and(|s| !s.connected),
        );
        // The other vif never notices.
        good_roundtrip(&mut guest, &mut good_wire, 100 * (round + 1));
        // Whatever netback does with the dead vif, it never panics and keeps serving.
        assert!(nb.vif_status(victim).is_some());
        let fds = xen_local::open_fd_count().unwrap();
        match fds_after_first {
            None => fds_after_first = Some(fds),
            // The child's descriptors and netback's mappings of its rings are gone.
            Some(f) => assert!(
                fds <= f + 2,
                "round {round}: {fds} fds open, {f} after the first kill"
            ),
        }
    }

    // The netfront process comes back (the same domain and device) without any reset
    // of the device: its handshake moves netback off the dead rings onto the new ones.
    let mut back = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    for s in 0..50 {
        send_all(&mut back.app, &frame(5_000_000 + s, 300));
    }
    assert_eq!(
        recv_from(&mut wire, 5_000_000, 50, Duration::from_secs(10)),
        50,
        "the reconnected guest's frames never arrived; {:?}",
        nb.vif_status(victim)
    );
    // (The status snapshot is taken after each loop iteration: it may lag the frames.)
    wait_until(
        "netback reports the reconnected vif",
        Duration::from_secs(5),
        || nb.vif_status(victim).is_some_and(|s| s.connected),
    );
    // RX towards the reconnected guest works too.
    send_all(&mut wire, &frame(77, 400));
    let got = recv_n(&mut back.app, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "RX to the reconnected guest");
    assert_eq!(check_frame(&got[0]), 77);
    good_roundtrip(&mut guest, &mut good_wire, 9000);
}

/// The SLAs of the restart and vanish tests: a 10 Mb/s link, two vifs.
const SLAS: &str = r#"
[link]
capacity-bps = "10M"
[[vif]]
domid = 1
min-bps = "2M"
max-bps = "2M"
[[vif]]
domid = 2
min-bps = "1M"
"#;

fn vif(d: u16) -> VifId {
    VifId {
        domid: DomId(d),
        devid: 0,
    }
}

const PERIOD: Duration = Duration::from_millis(20);

fn start_with_allocator(host: &LocalHost) -> BackendThread {
    let nb = BackendThread::start(host, NetbackConfig::default()).expect("netback");
    nb.command(|nb| {
        nb.enable_allocator(
            parse_sla_file(SLAS).unwrap(),
            LoopConfig::with_period(PERIOD),
        )
        .unwrap();
    });
    nb
}

/// Floods from a guest's app port on a thread for `dur`; returns the port when done.
fn flood_thread(g: &mut Guest, dur: Duration) -> std::thread::JoinHandle<MemPort> {
    let mut app = std::mem::replace(&mut g.app, MemPort::pair(1, 64).unwrap().0);
    std::thread::spawn(move || {
        flood(&mut app, 1000, dur);
        app
    })
}

#[test]
fn netback_restarted_mid_traffic() {
    let _ = env_logger::builder().is_test(true).try_init();
    let host = LocalHost::new();
    add_vif(&host, DomId(1), 0).expect("vif");
    add_vif(&host, DomId(2), 0).expect("vif");
    let mut nb = start_with_allocator(&host);
    let mut g1 = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut g2 = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    let mut w1 = nb.wire(vif(1));
    let mut w2 = nb.wire(vif(2));
    let f1 = flood_thread(&mut g1, Duration::from_millis(4000));
    let f2 = flood_thread(&mut g2, Duration::from_millis(4000));
    let (n1, _) = count_until(&mut w1, Instant::now() + Duration::from_millis(300));
    let (n2, _) = count_until(&mut w2, Instant::now() + Duration::from_millis(10));
    assert!(n1 > 0, "no traffic before the restart");
    let _ = n2;

    // netback dies (no clean shutdown: its xenstore nodes still say Connected) and a new
    // one starts on the same host while the guests keep sending.
    nb.stop().expect("netback");
    drop(nb);
    let restarted = Instant::now();
    let nb = start_with_allocator(&host);
    let mut w1 = nb.wire(vif(1));
    let mut w2 = nb.wire(vif(2));
    // Both frontends reconnect by themselves and traffic resumes.
    for (d, w) in [(1u16, &mut w1), (2, &mut w2)] {
        // (Flood frames carry a sequence number only, not the checked pattern.)
        let got = recv_n(w, 10, Duration::from_secs(10));
        assert_eq!(got.len(), 10, "vif{d}.0's traffic never resumed");
    }
    let resumed = restarted.elapsed();
    assert!(
        resumed < Duration::from_secs(10),
        "traffic took {resumed:?} to resume"
    );
    // Budgets are re-applied: the allocator of the new netback publishes vif1's SLA
    // (2 Mb/s) within a period or two of the reconnection.
    // (The first rounds after the reconnection may see little demand yet, and a vif
    // that asks for less than its minimum is given what it asks for: under load the
    // SLA's figure can take a few more periods.)
    wait_until(
        "vif1.0's SLA budget (2 Mb/s) from the new netback",
        Duration::from_secs(5),
        || {
            nb.vif_status(vif(1))
                .and_then(|s| s.budget)
                .is_some_and(|b| b.bps == 2_000_000)
        },
    );
    let b1 = nb.vif_status(vif(1)).unwrap().budget.unwrap();
    // And it is held: over the next second vif1 gets no more than its budget plus
    // twice the burst (the backstop) plus one unlimited first period, generously.
    // (Frames the unlimited first period queued on the wire port are drained first.)
    drain(&mut w1);
    let t0 = Instant::now();
    let (_, bytes) = count_until(&mut w1, t0 + Duration::from_millis(1000));
    let secs = t0.elapsed().as_secs_f64();
    let bound = b1.bps as f64 / 8.0 * secs + 2.0 * b1.burst_bytes as f64 + 200_000.0;
    assert!(
        (bytes as f64) <= bound,
        "vif1.0 got {bytes} B in {secs:.2} s after the restart, bound {bound:.0}; {:?}",
        nb.vif_status(vif(1))
    );
    assert!(bytes > 0, "vif1.0 starved after the restart");
    let (n2, _) = count_until(&mut w2, Instant::now() + Duration::from_millis(200));
    assert!(n2 > 0, "vif2.0 starved after the restart");
    eprintln!("traffic resumed {resumed:?} after the restart");
    g1.app = f1.join().unwrap();
    g2.app = f2.join().unwrap();
}

#[test]
fn allocator_sees_a_vif_vanish_and_reappear() {
    let _ = env_logger::builder().is_test(true).try_init();
    let host = LocalHost::new();
    add_vif(&host, DomId(1), 0).expect("vif");
    add_vif(&host, DomId(2), 0).expect("vif");
    let nb = start_with_allocator(&host);
    let mut g1 = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut g2 = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    let mut w1 = nb.wire(vif(1));
    let mut w2 = nb.wire(vif(2));
    let round_has = |nb: &BackendThread, d: u16| {
        let (tx, rx) = std::sync::mpsc::channel();
        nb.command(move |nb| {
            let r = nb
                .allocator_report()
                .and_then(|(r, _, _)| r.cloned())
                .map(|r| r.vif(xen_ids::VifId::new(xen_ids::DomId(d), 0)).is_some());
            tx.send(r).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    let f1 = flood_thread(&mut g1, Duration::from_millis(3000));
    let f2 = flood_thread(&mut g2, Duration::from_millis(600));
    let d1 = std::thread::spawn(move || {
        count_until(&mut w1, Instant::now() + Duration::from_millis(3100));
        w1
    });
    let _ = count_until(&mut w2, Instant::now() + Duration::from_millis(500));
    wait_until(
        "both vifs in an allocator round",
        Duration::from_secs(5),
        || round_has(&nb, 1) == Some(true) && round_has(&nb, 2) == Some(true),
    );

    // The toolstack destroys vif2.0 (e.g. the guest shut down).
    g2.app = f2.join().unwrap();
    g2.stop().expect("guest");
    let dom0 = host.domain(DomId(0)).unwrap();
    let spec = VifSpec::new(DomId(0), DomId(2), 0);
    destroy_vif(&dom0.xenstore, &spec).unwrap();
    wait_until("netback forgets vif2.0", Duration::from_secs(5), || {
        nb.vif_status(vif(2)).is_none()
    });
    wait_until(
        "an allocator round without vif2.0",
        Duration::from_secs(5),
        || round_has(&nb, 2) == Some(false) && round_has(&nb, 1) == Some(true),
    );

    // It comes back: a new device, a new netfront, traffic, a budget.
    create_vif(&dom0.xenstore, &spec).unwrap();
    let mut g2 = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    let mut w2 = nb.wire(vif(2));
    for s in 0..20 {
        send_all(&mut g2.app, &frame(s, 500));
    }
    let got = recv_n(&mut w2, 20, Duration::from_secs(10));
    assert_eq!(got.len(), 20, "the re-created vif carries no traffic");
    wait_until(
        "an allocator round with vif2.0 again",
        Duration::from_secs(5),
        || round_has(&nb, 2) == Some(true),
    );
    wait_until(
        "a budget for the re-created vif",
        Duration::from_secs(5),
        || nb.vif_status(vif(2)).and_then(|s| s.budget).is_some(),
    );
    g1.app = f1.join().unwrap();
    let _ = d1.join().unwrap();
}

/// A guest whose netfront died without closing leaves the backend `Connected` on rings
/// nobody serves. The next netfront must not take that stale `Connected` for an answer
/// to its own handshake: netback only drops the dead rings once it sees the frontend go
/// back to `Initialising`, and a frontend that races ahead (`Initialising` then
/// `Connected` before netback looked) leaves netback on the dead rings forever.
/// netback is paused while the new netfront connects, so that a frontend that took the
/// stale `Connected` for an answer would get as far as writing `Connected`. Failed about
/// one run in five before netfront waited for `InitWait` only (fc4bfb3).
#[test]
fn netfront_reconnects_over_a_stale_connected_backend() {
    let host = LocalHost::new();
    let victim = add_vif(&host, DomId(2), 0).expect("vif");
    // The vif's port can hold netback's worker (see below).
    let gate = Arc::new(Gate::default());
    let wires = MemWires::new(MemPortConfig::new(1024, 65536));
    let factory = {
        let (gate, mut mem) = (gate.clone(), wires.factory());
        move |id: VifId, mac: [u8; 6]| -> std::io::Result<Box<dyn Port>> {
            let port = mem.open(id, mac)?;
            Ok(Box::new(GatedPort::new(port, gate.clone())))
        }
    };
    let dom0 = testbed::domain(&host, DomId(0)).expect("dom0");
    let opts = BackendOptions::default();
    let nb = BackendThread::spawn(
        Spawner::Thread,
        dom0,
        NetbackConfig::default(),
        factory,
        opts,
    )
    .expect("netback");
    let _open = OpenOnDrop(gate.clone());
    let mut first = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    let mut wire = wires.take(victim, Duration::from_secs(10)).expect("port");
    good_roundtrip(&mut first, &mut wire, 0);
    // The netfront dies without a clean disconnect while its domain lives on (another
    // connection of domain 2 keeps it: no @releaseDomain): the backend stays Connected.
    let _domain_lives = testbed::domain(&host, DomId(2)).expect("domain");
    first.stop().expect("guest");
    drop(first);
    assert!(nb.vif_status(victim).unwrap().connected);

    // Pause netback: its worker waits in the vif's port as soon as it releases the
    // stale rings (the port's carrier goes off), and the control thread waits for that
    // worker's reply before it answers the new netfront. Let the new netfront get as
    // far as it goes on its own.
    gate.set(true);
    let h = std::thread::spawn({
        let host = host.clone();
        move || Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest")
    });
    let plat = host.domain(DomId(2)).unwrap();
    // The dead netfront left `Connected` in the frontend's state: first see the new one
    // start its handshake, then give it time to race ahead.
    let fe_state = || read_state(&plat.xenstore, "/local/domain/2/device/vif/0/state").ok();
    wait_until(
        "the new netfront starts its handshake",
        Duration::from_secs(10),
        || fe_state() == Some(XenbusState::Initialising),
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && fe_state() != Some(XenbusState::Connected) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The fixed contract: a new handshake waits for the backend's `InitWait`.
    let raced = fe_state() == Some(XenbusState::Connected);
    gate.set(false);
    let mut second = h.join().unwrap();
    assert!(
        !raced,
        "the new netfront took the stale Connected backend for an answer"
    );
    for s in 0..20 {
        send_all(&mut second.app, &frame(500 + s, 200));
    }
    assert_eq!(
        recv_from(&mut wire, 500, 20, Duration::from_secs(10)),
        20,
        "netback still serves the dead netfront's rings: {:?}",
        nb.vif_status(victim)
    );
}
