//! netback restarted under a netfront that stays `Connected` and never runs its
//! handshake again (as a Linux netfront): the new netback takes the rings over at the
//! indices in the shared pages. TX requests queued while no netback ran reach the wire
//! exactly once, none answered before is sent again, RX resumes on the buffers still
//! posted. Graceful (netback dropped, as on SIGTERM) and abrupt (a netback process killed
//! with SIGKILL).

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hypervisor::xenbus::{read_state, read_str, XenbusState};
use netback::{Netback, NetbackConfig};
use netport::{MemPort, MemPortConfig};
use testbed::{
    add_vif, check_frame, child_platform, frame, recv_n, send_all, tagged_numbers, BackendThread,
    ChildSpec, LocalNetfront, MemWires, TestChild,
};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

/// The child netback's journal directory (none without).
const CHILD_JOURNAL: &str = "DBA_RESTART_JOURNAL";
/// The child netback exits, as if killed, after writing this many TX responses.
const CHILD_EXIT_TX: &str = "DBA_RESTART_EXIT_TX";
/// The same for RX responses.
const CHILD_EXIT_RX: &str = "DBA_RESTART_EXIT_RX";
/// The child netback puts frames 0..n on its port for the guest.
const CHILD_RX_FRAMES: &str = "DBA_RESTART_RX_FRAMES";
const FE: &str = "/local/domain/1/device/vif/0";
const BE: &str = "/local/domain/0/backend/vif/1/0";

/// The frames `seqs` arrive on `wire`, each exactly once, intact, in order, and nothing
/// else follows.
fn expect_exactly(wire: &mut MemPort, seqs: std::ops::Range<u32>) {
    let n = seqs.len();
    let got = recv_n(wire, n, WAIT);
    let got: Vec<(u32, usize)> = got.iter().map(|f| (check_frame(f), f.len())).collect();
    let want: Vec<(u32, usize)> = seqs.map(|s| (s, len_of(s))).collect();
    assert_eq!(got, want, "frames on the wire after the restart");
    let extra = recv_n(wire, usize::MAX, Duration::from_millis(100));
    let extra: Vec<u32> = extra.iter().map(|f| check_frame(f)).collect();
    assert!(extra.is_empty(), "frames sent twice: {extra:?}");
}

/// Wire → netfront: frames `seqs` arrive intact and in order.
fn expect_rx(nf: &mut LocalNetfront, wire: &mut MemPort, seqs: std::ops::Range<u32>) {
    for seq in seqs.clone() {
        send_all(wire, &frame(seq, len_of(seq)));
    }
    let got = recv_frames(nf, seqs.len());
    let got: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(
        got,
        seqs.collect::<Vec<_>>(),
        "wire → netfront after the restart"
    );
}

/// netfront still uses the rings of `rings` and is `Connected`: it ran no handshake.
fn same_connection(nf: &mut LocalNetfront, rings: &str) {
    let xs = &nf.platform().xenstore;
    assert_eq!(
        read_state(xs, &format!("{FE}/state")).ok(),
        Some(XenbusState::Connected)
    );
    assert!(nf.maintain(), "netfront stays connected");
    assert_eq!(tx_ring_ref(nf), rings, "netfront kept its rings");
}

#[test]
fn a_stopped_backend_s_successor_sends_what_was_queued_once() {
    let host = LocalHost::new();
    let (id, mut nb, mut nf) = pair(&host);
    let mut wire = nb.wire(id);
    roundtrip(&mut nf, &mut wire, 0, 40);
    let rings = tx_ring_ref(&nf);
    // netback stops cleanly (SIGTERM): dropped, its nodes still say Connected.
    nb.stop().expect("netback");
    drop(nb);
    // Requests queued while no netback runs (netfront does not look at xenstore).
    let reaped = send_frames(&mut nf, 100..200);
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes the rings over");
    let mut wire = nb.wire(id);
    expect_exactly(&mut wire, 100..200);
    reap_all(&mut nf, reaped, 100);
    expect_rx(&mut nf, &mut wire, 300..340);
    same_connection(&mut nf, &rings);
    assert_eq!((nf.stats.tx_packets, nf.stats.rx_packets), (140, 80));
    assert_eq!(nf.stats.tx_errors + nf.stats.tx_dropped_back, 0);
}

/// Entry point of the child process of [`a_killed_backend_s_successor_sends_what_was_queued_once`]:
/// netback for dom0, printing every frame that reaches vif 1.0's port.
#[test]
#[ignore = "child process of a_killed_backend_s_successor_sends_what_was_queued_once"]
fn child_netback() {
    let platform = child_platform("child_netback")
        .expect("the child of a_killed_backend_s_successor_sends_what_was_queued_once");
    let wires = MemWires::new(MemPortConfig::new(1024, 65536));
    let env = |k: &str| std::env::var(k).ok();
    let num = |k: &str| env(k).map(|v| v.parse::<u64>().expect(k));
    let cfg = NetbackConfig {
        journal_dir: env(CHILD_JOURNAL).map(Into::into),
        exit_after_tx_responses: num(CHILD_EXIT_TX),
        exit_after_rx_responses: num(CHILD_EXIT_RX),
        ..NetbackConfig::default()
    };
    let rx_frames = num(CHILD_RX_FRAMES).unwrap_or(0) as u32;
    let mut nb = Netback::new(
        platform,
        cfg,
        Box::new(wires.factory()),
        hypervisor::clock::system(),
    )
    .expect("netback");
    let id = VifId::new(DomId(1), 0);
    std::thread::spawn(move || {
        let mut wire = wires.take(id, WAIT).expect("netback opens the port");
        for seq in 0..rx_frames {
            send_all(&mut wire, &frame(seq, len_of(seq)));
        }
        let mut out = std::io::stdout();
        loop {
            for f in recv_n(&mut wire, usize::MAX, Duration::from_millis(5)) {
                writeln!(out, "FRAME {} {}", check_frame(&f), f.len()).unwrap();
            }
            out.flush().unwrap();
        }
    });
    loop {
        nb.run_once(Duration::from_millis(5)).expect("netback");
    }
}

/// Starts [`child_netback`] as dom0 (killed with SIGKILL and reaped when dropped); the
/// frames it sends to the port, as (seq, len).
fn spawn_child_netback(host: &LocalHost) -> (TestChild, mpsc::Receiver<(u32, usize)>) {
    spawn_child_netback_with(host, &[])
}

/// [`spawn_child_netback`] with extra environment variables.
fn spawn_child_netback_with(
    host: &LocalHost,
    env: &[(&str, String)],
) -> (TestChild, mpsc::Receiver<(u32, usize)>) {
    let spec = ChildSpec {
        test: "child_netback",
        env: env.to_vec(),
        stdout: true,
        ..ChildSpec::default()
    };
    let mut child = TestChild::spawn(host, DomId(0), &spec).expect("spawn the netback process");
    // (The first line follows the harness's "test child_netback ... ".)
    let rx = child
        .stdout_lines(|line| match tagged_numbers(line, "FRAME ")?[..] {
            [seq, len] => Some((seq as u32, len as usize)),
            _ => None,
        })
        .expect("its standard output");
    (child, rx)
}

#[test]
fn a_killed_backend_s_successor_sends_what_was_queued_once() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let (child, sent) = spawn_child_netback(&host);
    let mut nf = connect(&host, DomId(1));
    let reaped = send_frames(&mut nf, 0..40);
    let first: Vec<(u32, usize)> = (0..40)
        .map(|_| sent.recv_timeout(WAIT).expect("the netback process sends"))
        .collect();
    assert_eq!(first, (0..40).map(|s| (s, len_of(s))).collect::<Vec<_>>());
    reap_all(&mut nf, reaped, 40);
    let rings = tx_ring_ref(&nf);
    // The process stops taking requests, netfront queues more, the process dies as
    // with kill -9 (no destructor runs; the system closes its connections).
    child.signal("-STOP").expect("kill -STOP");
    let reaped = send_frames(&mut nf, 100..200);
    drop(child);
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes the rings over");
    let mut wire = nb.wire(id);
    expect_exactly(&mut wire, 100..200);
    assert_eq!(
        sent.try_recv().ok(),
        None,
        "the stopped process sent a frame"
    );
    reap_all(&mut nf, reaped, 100);
    expect_rx(&mut nf, &mut wire, 300..340);
    same_connection(&mut nf, &rings);
    assert_eq!((nf.stats.tx_packets, nf.stats.rx_packets), (140, 40));
}

/// A frontend that names other rings while no netback runs, without a handshake, is
/// not followed into them: the vif fails with the reason in its `error` node.
#[test]
fn rings_changed_without_a_handshake_are_refused() {
    let host = LocalHost::new();
    let (id, mut nb, mut nf) = pair(&host);
    let mut wire = nb.wire(id);
    roundtrip(&mut nf, &mut wire, 0, 10);
    nb.stop().expect("netback");
    drop(nb);
    let other: u32 = tx_ring_ref(&nf).parse::<u32>().unwrap() + 1000;
    let xs = &nf.platform().xenstore;
    xs.write(
        XsTx::NONE,
        &format!("{FE}/tx-ring-ref"),
        other.to_string().as_bytes(),
    )
    .unwrap();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let dom0 = host.domain(DomId(0)).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while read_state(&dom0.xenstore, &format!("{BE}/state")).ok() != Some(XenbusState::Closing) {
        assert!(
            std::time::Instant::now() < deadline,
            "the vif was not failed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = read_str(&dom0.xenstore, XsTx::NONE, &format!("{BE}/error"), 512).unwrap();
    assert!(
        error.contains("changed its rings without a new handshake"),
        "{error}"
    );
    assert!(nb.vif_status(id).is_some_and(|s| !s.connected));
}

/// A fresh directory for the journals of one test.
fn journal_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netback-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The responses a netback wrote into the ring before it was killed (`kill -9` in the
/// middle of a batch: written, not published) do not strand the guest: the next netback
/// publishes them from its journal and reads none of those slots as a request. Every
/// TX request is answered exactly once and its frame goes out exactly once.
#[test]
fn a_backend_killed_mid_tx_batch_strands_nothing() {
    const K: u32 = 10;
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let dir = journal_dir("tx");
    let env = [
        (CHILD_JOURNAL, dir.display().to_string()),
        (CHILD_EXIT_TX, K.to_string()),
    ];
    let (mut child, _sent) = spawn_child_netback_with(&host, &env);
    let mut nf = connect(&host, DomId(1));
    let rings = tx_ring_ref(&nf);
    // Frames 0..=K reach the child's port; it writes K responses, records the next
    // and is killed before writing it and before publishing any.
    let reaped = send_frames(&mut nf, 0..40);
    child
        .wait_exit(WAIT)
        .expect("the netback process reaches its fault point");
    drop(child);
    let cfg = NetbackConfig {
        journal_dir: Some(dir.clone()),
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes the rings over");
    let mut wire = nb.wire(id);
    expect_exactly(&mut wire, K + 1..40);
    reap_all(&mut nf, reaped, 40);
    std::thread::sleep(Duration::from_millis(100));
    nf.ack_events();
    assert_eq!(nf.reap_tx().expect("reap"), 0, "a request answered twice");
    assert_eq!(nf.stats.tx_errors + nf.stats.tx_dropped_back, 0);
    assert_eq!(nf.stats.tx_packets, 40);
    expect_rx(&mut nf, &mut wire, 300..340);
    same_connection(&mut nf, &rings);
    assert!(nb.vif_status(id).is_some_and(|s| s.connected));
    // The toolstack removes the vif: its journal goes with it.
    let journal = dir.join("1.0.journal");
    assert!(journal.exists(), "{}", journal.display());
    let dom0 = host.domain(DomId(0)).unwrap();
    let spec = netback::toolstack::VifSpec::new(DomId(0), DomId(1), 0);
    netback::toolstack::destroy_vif(&dom0.xenstore, &spec).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while nb.vif_status(id).is_some() || journal.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed vif's journal stays"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same on the RX ring: the frames a killed netback placed in the guest's buffers
/// and answered without publishing reach the guest once, intact; the buffers it did
/// not use are used by the next netback.
#[test]
fn a_backend_killed_mid_rx_batch_strands_nothing() {
    const K: u32 = 10;
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let dir = journal_dir("rx");
    let env = [
        (CHILD_JOURNAL, dir.display().to_string()),
        (CHILD_EXIT_RX, K.to_string()),
        (CHILD_RX_FRAMES, "40".to_string()),
    ];
    let (mut child, _sent) = spawn_child_netback_with(&host, &env);
    let mut nf = connect(&host, DomId(1));
    let rings = tx_ring_ref(&nf);
    // The child answers K RX requests, records the next and is killed.
    child
        .wait_exit_doing(WAIT, || {
            nf.maintain();
        })
        .expect("the netback process reaches its fault point");
    drop(child);
    let cfg = NetbackConfig {
        journal_dir: Some(dir.clone()),
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    nb.wait_connected(&[id], WAIT)
        .expect("netback takes the rings over");
    let mut wire = nb.wire(id);
    let got: Vec<u32> = recv_frames(&mut nf, K as usize + 1)
        .iter()
        .map(|f| check_frame(f))
        .collect();
    assert_eq!(
        got,
        (0..=K).collect::<Vec<_>>(),
        "the killed netback's frames"
    );
    expect_rx(&mut nf, &mut wire, 300..340);
    same_connection(&mut nf, &rings);
    assert_eq!(nf.stats.rx_packets, u64::from(K) + 41);
    assert!(nb.vif_status(id).is_some_and(|s| s.connected));
    let _ = std::fs::remove_dir_all(&dir);
}
