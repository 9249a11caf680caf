//! A hostile guest's xenstore writes, and a lost xenstore connection (issue 12, C).
//!
//! - A guest rewriting its own frontend `state` (and creating children under it) as
//!   fast as xenstored takes it, from several connections, beside an honest guest:
//!   every honest frame is delivered, netback's watch-event queue stays bounded by its
//!   watches, its heap does not grow with the writes, and netback re-reads that
//!   frontend a number of times bounded by time (paced), not by the writes. The last
//!   state the guest writes is still followed.
//! - netback's xenstore connection closed under it: its loop stops at once with
//!   [`RunError::XenstoreLost`] (no spinning, no warning loop), and a restarted netback
//!   takes the connected guest's rings over.
//! - xenstored stalled (netback's requests held back 2 s by a relay) while a guest
//!   storms its frontend `state`: netback's control thread waits in its round trip, the
//!   honest guest's frames keep reaching the wire one by one with a bounded latency.

mod common;

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::heap_in_use;
use hypervisor::clock::monotonic_ns;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::control_work::{GLOBAL_INTERVAL_NS, MIN_INTERVAL_NS};
use netback::{Netback, NetbackConfig, RunError};
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::{Xenstore, XsClient, XsTx};

const TICK: Duration = Duration::from_millis(100);

fn fe_path(id: VifId) -> String {
    format!("/local/domain/{}/device/vif/{}", id.domid.0, id.devid)
}

fn be_path(id: VifId) -> String {
    format!("/local/domain/0/backend/vif/{}/{}", id.domid.0, id.devid)
}

/// The honest guest sends `n` frames numbered from `base`: all delivered, in order.
fn honest_roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32, n: u32) {
    for s in 0..n {
        send_all(&mut guest.app, &frame(base + s, 300));
    }
    let got = recv_n(wire, n as usize, Duration::from_secs(20));
    assert_eq!(got.len(), n as usize, "the honest guest lost frames");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

fn wait_be_state(xs: &XsClient, id: VifId, want: XenbusState, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let path = format!("{}/state", be_path(id));
    loop {
        let s = read_state(xs, &path).ok();
        if s == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: backend state {s:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One attacker connection: writes its frontend's `state` (every value, in a cycle) and
/// children under it as fast as xenstored answers, until `stop`. Returns the writes
/// xenstored accepted.
fn attacker(
    host: &LocalHost,
    id: VifId,
    k: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let xs = XsClient::new(host.xenstored.connect(id.domid).unwrap()).unwrap();
    let state = format!("{}/state", fe_path(id));
    std::thread::spawn(move || {
        let mut ok = 0u64;
        let mut i = k;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let (path, v) = if i % 4 == 0 {
                (format!("{state}/junk{}", i % 64), b"x".to_vec())
            } else {
                (state.clone(), ((i % 7).to_string()).into_bytes())
            };
            if xs.write(XsTx::NONE, &path, &v).is_ok() {
                ok += 1;
            }
        }
        ok
    })
}

#[test]
fn a_guest_rewriting_its_state_cannot_starve_another_or_grow_netback() {
    let _ = env_logger::builder().is_test(true).try_init();
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).unwrap();
    let bad = add_vif(&host, DomId(2), 0).unwrap();
    let opts = BackendOptions {
        poll: TICK,
        ..BackendOptions::default()
    };
    let ports = MemPortConfig::new(256, 65536);
    let nb = BackendThread::start_with(&host, NetbackConfig::default(), ports, opts).unwrap();
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut wire = nb.wire(good);
    let _bad_wire = nb.wire(bad);
    nb.wait_connected(&[good], Duration::from_secs(10)).unwrap();
    honest_roundtrip(&mut guest, &mut wire, 0, 20);
    let t = Duration::from_secs(10);
    let stats = || nb.call(|nb| nb.control_stats(), t).unwrap();
    let queued = || {
        nb.call(|nb| nb.platform().xenstore.queued_events(), t)
            .unwrap()
    };

    let window_start = Instant::now();
    let s0 = stats();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let attackers: Vec<_> = (0..4)
        .map(|k| attacker(&host, bad, k * 1000, stop.clone()))
        .collect();
    // A guest that arrives during the attack: its device is found and its handshake
    // runs while the attacker keeps netback's xenstore work busy.
    let late = add_vif(&host, DomId(3), 0).unwrap();
    let arrived = Instant::now();
    let mut late_guest = Guest::start(&host, DomId(3), NetfrontConfig::new(0)).unwrap();
    let mut late_wire = nb.wire(late);
    nb.wait_connected(&[late], Duration::from_secs(10)).unwrap();
    honest_roundtrip(&mut late_guest, &mut late_wire, 0, 20);
    let handshake = arrived.elapsed();
    // Warm-up: the attacker's nodes reach their quota, xenstored's buffers their size.
    std::thread::sleep(Duration::from_millis(500).saturating_sub(started.elapsed()));
    let heap0 = heap_in_use();
    // Meanwhile the honest guest keeps sending; netback's event queue is sampled.
    let mut seq = 1000;
    let mut max_queued = 0;
    while started.elapsed() < Duration::from_secs(3) {
        honest_roundtrip(&mut guest, &mut wire, seq, 50);
        seq += 50;
        max_queued = max_queued.max(queued());
    }
    let heap1 = heap_in_use();
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = attackers.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = started.elapsed();
    let s1 = stats();
    // The window the counters cover (a little longer than the attack).
    let window = window_start.elapsed();
    let reads = s1.frontend_reads - s0.frontend_reads;
    let scans = s1.scans - s0.scans;
    let heap_growth = heap1.saturating_sub(heap0);
    eprintln!(
        "{writes} hostile writes in {elapsed:?}; netback: {} events, {reads} frontend re-reads, \
         {} control runs, {scans} scans, event queue at most {max_queued}; heap +{heap_growth} B; \
         {} honest frames delivered; a new guest connected and served in {handshake:?}",
        s1.events - s0.events,
        s1.runs - s0.runs,
        seq - 1000
    );
    assert!(writes >= 1000, "the attack did not run ({writes} writes)");
    // Two watches per vif (3 vifs), two global ones: the queue cannot hold more.
    assert!(
        max_queued <= 8,
        "netback's event queue held {max_queued} events"
    );
    // Re-reads are paced per vif: bounded by time, whatever the writes.
    let paced = 2 * (window.as_nanos() as u64 / MIN_INTERVAL_NS + 10);
    assert!(
        reads <= paced,
        "{reads} frontend re-reads in {window:?} (bound {paced})"
    );
    // netback's own state writes fire its backend-directory watch: the listings of
    // every domain's devices they call for are paced too.
    let scan_bound = window.as_nanos() as u64 / GLOBAL_INTERVAL_NS + 5;
    assert!(
        scans <= scan_bound,
        "{scans} backend-directory scans in {window:?} (bound {scan_bound})"
    );
    assert!(
        reads * 10 <= writes,
        "{reads} frontend re-reads for {writes} writes"
    );
    assert!(
        heap_growth < 4 << 20,
        "the heap grew by {heap_growth} B under the attack"
    );

    // The attacker's last word is followed: it says Closing, netback closes its side.
    let xs = XsClient::new(host.xenstored.connect(bad.domid).unwrap()).unwrap();
    xs.write(XsTx::NONE, &format!("{}/state", fe_path(bad)), b"5")
        .unwrap();
    let dom0 = XsClient::new(host.xenstored.connect(DomId(0)).unwrap()).unwrap();
    wait_be_state(&dom0, bad, XenbusState::Closing, Duration::from_secs(5));
    // And the honest guests are still served.
    honest_roundtrip(&mut guest, &mut wire, seq, 50);
    honest_roundtrip(&mut late_guest, &mut late_wire, 100, 50);
    assert_eq!(
        nb.vif_status(good).map(|s| s.connected),
        Some(true),
        "the honest vif lost its connection"
    );
}

/// What the netback loop thread saw after its xenstore connection was cut.
struct LoopEnd {
    error: RunError,
    /// Iterations from the one that first saw the cut flag to the error, included.
    iterations: u64,
    /// Thread CPU time over those iterations, ns.
    cpu_ns: u64,
}

#[test]
fn a_lost_xenstore_connection_stops_netback_and_a_restart_takes_over() {
    let _ = env_logger::builder().is_test(true).try_init();
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).unwrap();
    // netback's xenstore connection, with a handle on the server's end to cut it.
    let (client, server) = UnixStream::pair().unwrap();
    let cut = server.try_clone().unwrap();
    host.xenstored.serve(server, DomId(0)).unwrap();
    let mut dom0 = domain(&host, DomId(0)).unwrap();
    dom0.xenstore = XsClient::new(client).unwrap();
    let wires = MemWires::new(MemPortConfig::new(256, 65536));
    let factory = wires.factory();
    let cutting = Arc::new(AtomicBool::new(false));
    let (end_tx, end_rx) = mpsc::channel();
    let flag = cutting.clone();
    let _loop = std::thread::spawn(move || {
        let clock = Box::new(monotonic_ns);
        let mut nb = Netback::new(dom0, NetbackConfig::default(), Box::new(factory), clock)
            .expect("netback");
        let mut since: Option<(u64, u64)> = None;
        let mut it = 0u64;
        let error = loop {
            if since.is_none() && flag.load(Ordering::SeqCst) {
                since = Some((it, netback_cpu_ns(&nb)));
            }
            it += 1;
            if let Err(e) = nb.run_once(TICK) {
                break e;
            }
        };
        let (it0, cpu0) = since.unwrap_or((0, 0));
        let _ = end_tx.send(LoopEnd {
            error,
            iterations: it - it0,
            cpu_ns: netback_cpu_ns(&nb) - cpu0,
        });
    });
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut wire = wires.take(id, Duration::from_secs(10)).expect("port");
    let admin = XsClient::new(host.xenstored.connect(DomId(0)).unwrap()).unwrap();
    wait_be_state(&admin, id, XenbusState::Connected, Duration::from_secs(10));
    honest_roundtrip(&mut guest, &mut wire, 0, 20);

    cutting.store(true, Ordering::SeqCst);
    cut.shutdown(std::net::Shutdown::Both).unwrap();
    let end = end_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("netback's loop kept running without xenstore");
    eprintln!(
        "netback stopped after {} iterations, {} µs of CPU: {}",
        end.iterations,
        end.cpu_ns / 1000,
        end.error
    );
    assert!(
        matches!(end.error, RunError::XenstoreLost(_)),
        "{:?}",
        end.error
    );
    // A few iterations may still serve the guest's last notifications and paced work
    // before the client sees the end of the stream; a loop spinning on the dead
    // connection makes thousands (and never stops).
    assert!(
        end.iterations <= 50,
        "{} iterations after the cut",
        end.iterations
    );
    assert!(
        end.cpu_ns < 50_000_000,
        "{} ns of CPU after the cut",
        end.cpu_ns
    );

    // The supervisor restarts netback: the still-connected guest's rings are taken over
    // and its traffic flows again.
    let nb = BackendThread::start(&host, NetbackConfig::default()).unwrap();
    let mut wire = nb.wire(id);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    honest_roundtrip(&mut guest, &mut wire, 100, 20);
}

/// A relay between netback's xenstore connection and xenstored that can hold back
/// what netback sends (a stalled xenstored: its replies do not come), while the
/// server's side (watch events) keeps flowing.
struct StallingRelay {
    hold: Arc<AtomicBool>,
    /// Bytes of netback's requests held back while `hold` is set.
    held: Arc<std::sync::atomic::AtomicU64>,
}

impl StallingRelay {
    /// netback's end of a connection to `host`'s xenstored as dom0, through the relay.
    fn start(host: &LocalHost) -> (StallingRelay, UnixStream) {
        use std::io::{Read, Write};
        let (client, mut from_nb) = UnixStream::pair().unwrap();
        let (mut to_xsd, server) = UnixStream::pair().unwrap();
        host.xenstored.serve(server, DomId(0)).unwrap();
        let mut to_nb = from_nb.try_clone().unwrap();
        let mut from_xsd = to_xsd.try_clone().unwrap();
        let relay = StallingRelay {
            hold: Arc::new(AtomicBool::new(false)),
            held: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let (hold, held) = (relay.hold.clone(), relay.held.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from_nb.read(&mut buf) {
                if hold.load(Ordering::SeqCst) {
                    held.fetch_add(n as u64, Ordering::SeqCst);
                    while hold.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                if to_xsd.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from_xsd.read(&mut buf) {
                if to_nb.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        (relay, client)
    }
}

/// Frames of the honest guest sent one at a time during `window`; returns how many
/// went through and the longest time one took to reach the wire.
fn timed_roundtrips(
    guest: &mut Guest,
    wire: &mut MemPort,
    base: u32,
    window: Duration,
) -> (u32, Duration) {
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while start.elapsed() < window {
        let sent = Instant::now();
        send_all(&mut guest.app, &frame(base + n, 300));
        let got = recv_n(wire, 1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "frame {} lost", base + n);
        assert_eq!(check_frame(&got[0]), base + n);
        worst = worst.max(sent.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    (n, worst)
}

#[test]
fn a_stalled_xenstore_does_not_stall_honest_frames() {
    let _ = env_logger::builder().is_test(true).try_init();
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).unwrap();
    let bad = add_vif(&host, DomId(2), 0).unwrap();
    let (relay, client) = StallingRelay::start(&host);
    let mut dom0 = domain(&host, DomId(0)).unwrap();
    dom0.xenstore = XsClient::new(client).unwrap();
    let wires = MemWires::new(MemPortConfig::new(256, 65536));
    let factory = wires.factory();
    let stop_loop = Arc::new(AtomicBool::new(false));
    let stopping = stop_loop.clone();
    let data_thread = std::thread::spawn(move || {
        let mut nb = Netback::new(
            dom0,
            NetbackConfig::default(),
            Box::new(factory),
            Box::new(monotonic_ns),
        )
        .expect("netback");
        while !stopping.load(Ordering::SeqCst) {
            nb.run_once(TICK).expect("netback's loop");
        }
    });
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    let mut wire = wires.take(good, Duration::from_secs(10)).expect("port");
    let _bad_wire = wires.take(bad, Duration::from_secs(10)).expect("port");
    let admin = XsClient::new(host.xenstored.connect(DomId(0)).unwrap()).unwrap();
    wait_be_state(
        &admin,
        good,
        XenbusState::Connected,
        Duration::from_secs(10),
    );
    let (_, calm) = timed_roundtrips(&mut guest, &mut wire, 0, Duration::from_millis(300));

    // xenstored stops answering netback, and a guest storms its frontend's state: the
    // watch events still reach netback, whose re-read of that state then waits.
    relay.hold.store(true, Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..2)
        .map(|k| attacker(&host, bad, k * 1000, stop.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.held.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "netback sent no xenstore request for the attacker's events"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // For 2 s netback's xenstore work is stuck in a round trip: honest frames flow.
    let (n, worst) = timed_roundtrips(&mut guest, &mut wire, 1000, Duration::from_secs(2));
    let still_held = relay.hold.load(Ordering::SeqCst) && relay.held.load(Ordering::SeqCst) > 0;
    eprintln!(
        "xenstore stalled 2 s ({} request bytes held): {n} honest frames, worst {worst:?} \
         (calm: worst {calm:?})",
        relay.held.load(Ordering::SeqCst)
    );
    assert!(still_held);
    assert!(n >= 50, "only {n} honest frames in 2 s of xenstore stall");
    assert!(
        worst < Duration::from_millis(500),
        "an honest frame took {worst:?} while xenstore stalled"
    );

    // xenstored answers again: the attacker's last word is followed, the guest served.
    relay.hold.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let xs = XsClient::new(host.xenstored.connect(bad.domid).unwrap()).unwrap();
    xs.write(XsTx::NONE, &format!("{}/state", fe_path(bad)), b"5")
        .unwrap();
    wait_be_state(&admin, bad, XenbusState::Closing, Duration::from_secs(5));
    honest_roundtrip(&mut guest, &mut wire, 5000, 50);
    stop_loop.store(true, Ordering::SeqCst);
    data_thread.join().unwrap();
}
