//! Multi-queue from netfront's side, against a backend written here the way Linux's
//! xen-netback reads a frontend (`connect()` in its xenbus.c): it offers
//! `multi-queue-max-queues`, reads `multi-queue-num-queues`, then each queue's ring
//! references and event channels from `queue-N/` (or flat for one queue), maps every
//! ring and binds every channel, and serves the rings by hand.
//!
//! * `queues_are_written_as_linux_reads_them_and_each_carries_frames`: 8 asked, 4
//!   offered: 4 queues, keys in `queue-0..3` only, distinct rings, buffers and channels;
//!   a frame sent on each queue arrives on that queue's TX ring, a frame put on each
//!   queue's RX ring is received on that queue.
//! * `without_multi_queue_the_keys_stay_flat`: a backend without the key (stock
//!   backends before 3.16) gets one queue with today's flat keys;
//!   `our_netback_gets_one_queue`: so does netback-rs offering one queue (one worker),
//!   and frames go both ways; `our_netback_fails_a_frontend_asking_for_two_queues`:
//!   a frontend writing `multi-queue-num-queues` = 2 anyway is failed, with the reason in
//!   the vif's `error` node. (netback-rs serving 4 queues: `netback-rs/tests/multiqueue.rs`.)
//! * `queues_share_one_budget`: 4 queue threads flooding together get what one queue
//!   gets from the same credits: the budget plus one burst, counted exactly.
//! * `one_thread_per_queue_moves_each_ports_frames_on_its_own_queue`: `mq::run` with
//!   two ports: each port's frames on its own queue, an RX frame of queue 1 on port 1,
//!   per-queue counters (logged live every 5 s, and returned).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantMap, GrantMapping, GrantRef};
use hypervisor::platform::ring_mem;
use netfront::{Netfront, NetfrontConfig, Sent};
use netport::FrameMeta;
use shared_ring::credit::{CreditArea, CreditPublisher, Credits};
use shared_ring::netif::{NetifRxBackRing, NetifRxResponse, NetifTxBackRing};
use shared_ring::Limit;
use testbed::{add_vif, LocalNetfront};
use xen_ids::DomId;
use xen_local::{LocalHost, LocalPlatform};
use xenstore::{Xenstore, XsTx};

const FE: &str = "/local/domain/1/device/vif/0";
const BE: &str = "/local/domain/0/backend/vif/1/0";
const WAIT: Duration = Duration::from_secs(10);

type Mapping = xen_local::LocalMapping;

fn read(xs: &impl Xenstore, path: &str) -> Option<String> {
    xs.try_read(XsTx::NONE, path)
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn write(xs: &impl Xenstore, path: &str, v: &str) {
    xs.write(XsTx::NONE, path, v.as_bytes()).unwrap();
}

/// One queue as the backend holds it.
struct BackQueue {
    tx: Mapping,
    rx: Mapping,
    ports: Vec<EvtPort>,
    refs: [u32; 2],
}

/// The backend's half, as Linux's netback does it.
struct LinuxLikeBackend {
    dom0: LocalPlatform,
}

impl LinuxLikeBackend {
    /// Probe: the feature keys (with `multi-queue-max-queues` when `max_queues` is
    /// given), then InitWait.
    fn probe(host: &LocalHost, max_queues: Option<u32>, credits: bool) -> Self {
        add_vif(host, DomId(1), 0).expect("vif");
        let dom0 = testbed::domain(host, DomId(0)).expect("dom0");
        let xs = &dom0.xenstore;
        for k in [
            "feature-rx-copy",
            "feature-split-event-channels",
            "feature-sg",
        ] {
            write(xs, &format!("{BE}/{k}"), "1");
        }
        if let Some(m) = max_queues {
            write(xs, &format!("{BE}/multi-queue-max-queues"), &m.to_string());
        }
        if credits {
            write(xs, &format!("{BE}/feature-dba-credits"), "1");
        }
        write(xs, &format!("{BE}/state"), "2");
        LinuxLikeBackend { dom0 }
    }

    /// Waits for the frontend's Connected, reads its queues as Linux's `connect()`
    /// does, maps and binds them; publishes `credits` in queue 0's TX page when given;
    /// then Connected.
    fn connect(&self, max_queues: u32, credits: Option<Credits>) -> Vec<BackQueue> {
        let xs = &self.dom0.xenstore;
        let deadline = Instant::now() + WAIT;
        while read(xs, &format!("{FE}/state")).as_deref() != Some("4") {
            assert!(Instant::now() < deadline, "the frontend never connected");
            std::thread::sleep(Duration::from_millis(5));
        }
        let n: u32 = read(xs, &format!("{FE}/multi-queue-num-queues"))
            .map_or(1, |v| v.parse().expect("a number"));
        assert!(
            n >= 1 && n <= max_queues,
            "{n} queues, {max_queues} offered"
        );
        let queues: Vec<BackQueue> = (0..n)
            .map(|i| {
                let dir = if n == 1 {
                    FE.to_owned()
                } else {
                    format!("{FE}/queue-{i}")
                };
                self.map_queue(&dir)
            })
            .collect();
        if let Some(c) = credits {
            assert_eq!(
                read(xs, &format!("{FE}/request-dba-credits")).as_deref(),
                Some("1")
            );
            let area = CreditArea::in_tx_page(ring_mem(queues[0].tx.mem())).unwrap();
            CreditPublisher::new(area).publish(&c);
        }
        write(xs, &format!("{BE}/state"), "4");
        queues
    }

    fn map_queue(&self, dir: &str) -> BackQueue {
        let xs = &self.dom0.xenstore;
        let num = |k: &str| -> Option<u32> {
            read(xs, &format!("{dir}/{k}")).map(|v| v.parse().expect("a number"))
        };
        let refs = [
            num("tx-ring-ref").expect("tx-ring-ref"),
            num("rx-ring-ref").expect("rx"),
        ];
        let ports: Vec<u32> = match num("event-channel-tx") {
            Some(tx) => vec![tx, num("event-channel-rx").expect("event-channel-rx")],
            None => vec![num("event-channel").expect("event-channel")],
        };
        let map = |r: u32| {
            self.dom0
                .grants
                .map(DomId(1), &[GrantRef(r)], Access::Writable)
                .expect("the ring maps")
        };
        let ports = ports
            .into_iter()
            .map(|p| {
                self.dom0
                    .evtchn
                    .bind_interdomain(DomId(1), EvtPort(p))
                    .expect("the channel binds")
            })
            .collect();
        BackQueue {
            tx: map(refs[0]),
            rx: map(refs[1]),
            ports,
            refs,
        }
    }

    /// The frames waiting on `q`'s TX ring (single-slot frames).
    fn take_tx(&self, q: &BackQueue) -> Vec<Vec<u8>> {
        let mut ring = NetifTxBackRing::attach(ring_mem(q.tx.mem()), 0).unwrap();
        let mut frames = Vec::new();
        while let Some(req) = ring.take_request().unwrap() {
            let buf = self
                .dom0
                .grants
                .map(DomId(1), &[GrantRef(req.gref)], Access::ReadOnly)
                .expect("the TX buffer maps");
            let mut f = vec![0u8; req.size as usize];
            buf.mem().read(req.offset as usize, &mut f).unwrap();
            frames.push(f);
        }
        frames
    }

    /// Puts `frame` in the first posted RX buffer of `q` and notifies.
    fn give_rx(&self, q: &BackQueue, frame: &[u8]) {
        let mut ring = NetifRxBackRing::attach(ring_mem(q.rx.mem()), 0).unwrap();
        let req = ring.take_request().unwrap().expect("a posted RX buffer");
        let buf = self
            .dom0
            .grants
            .map(DomId(1), &[GrantRef(req.gref)], Access::Writable)
            .expect("the RX buffer maps");
        buf.mem().write(0, frame).unwrap();
        ring.put_response(&NetifRxResponse {
            id: req.id,
            offset: 0,
            flags: 0,
            status: frame.len() as i16,
        })
        .unwrap();
        ring.push_responses();
        self.dom0.evtchn.notify(*q.ports.last().unwrap()).unwrap();
    }
}

/// The log lines of this test binary (netfront's `log` records).
struct Capture(std::sync::Mutex<Vec<String>>);

impl Capture {
    fn install(&'static self) {
        let _ = log::set_logger(self);
        log::set_max_level(log::LevelFilter::Info);
    }

    fn has(&self, line: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l == line)
    }
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));

fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 100];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f
}

fn connect_frontend(
    host: &LocalHost,
    queues: usize,
    clock: netfront::front::Clock,
) -> std::thread::JoinHandle<LocalNetfront> {
    let platform = testbed::domain(host, DomId(1)).expect("domain");
    let mut cfg = NetfrontConfig::new(0);
    cfg.queues = queues;
    std::thread::spawn(move || Netfront::connect(platform, cfg, clock).expect("netfront connects"))
}

#[test]
fn queues_are_written_as_linux_reads_them_and_each_carries_frames() {
    let host = LocalHost::new();
    let back = LinuxLikeBackend::probe(&host, Some(4), false);
    let fe = connect_frontend(&host, 8, hypervisor::clock::system());
    let queues = back.connect(4, None);
    let mut nf = fe.join().unwrap();
    assert_eq!(
        (queues.len(), nf.num_queues()),
        (4, 4),
        "8 asked, 4 offered"
    );
    let xs = &back.dom0.xenstore;
    for k in [
        "tx-ring-ref",
        "rx-ring-ref",
        "event-channel",
        "event-channel-tx",
    ] {
        assert_eq!(
            read(xs, &format!("{FE}/{k}")),
            None,
            "no flat {k} with several queues"
        );
    }
    assert_eq!(read(xs, &format!("{FE}/queue-4/tx-ring-ref")), None);
    let mut refs: Vec<u32> = queues.iter().flat_map(|q| q.refs).collect();
    let mut ports: Vec<EvtPort> = queues.iter().flat_map(|q| q.ports.clone()).collect();
    refs.sort();
    refs.dedup();
    ports.sort_by_key(|p| p.0);
    ports.dedup();
    assert_eq!(
        (refs.len(), ports.len()),
        (8, 8),
        "split channels, nothing shared"
    );

    // TX: a frame tagged with its queue's index on each queue.
    {
        let mut split = nf.split().expect("connected");
        for h in &mut split.queues {
            let now = h.now();
            let tag = h.index() as u8 + 1;
            assert_eq!(
                h.send_at(now, &frame(tag), &FrameMeta::default()).unwrap(),
                Sent::Queued
            );
            h.flush().unwrap();
        }
    }
    for (i, q) in queues.iter().enumerate() {
        assert_eq!(
            back.take_tx(q),
            vec![frame(i as u8 + 1)],
            "queue {i}'s TX ring"
        );
    }
    // RX: each queue receives what was put on its own ring.
    for (i, q) in queues.iter().enumerate() {
        back.give_rx(q, &frame(0x40 + i as u8));
    }
    let mut split = nf.split().expect("connected");
    let mut buf = vec![0u8; 65536];
    for h in &mut split.queues {
        let (len, _) = h.recv(&mut buf).unwrap().expect("a frame on this queue");
        assert_eq!(&buf[..len], &frame(0x40 + h.index() as u8)[..]);
        assert!(h.recv(&mut buf).unwrap().is_none(), "only its own");
    }
}

#[test]
fn without_multi_queue_the_keys_stay_flat() {
    let host = LocalHost::new();
    let back = LinuxLikeBackend::probe(&host, None, false);
    let fe = connect_frontend(&host, 4, hypervisor::clock::system());
    let queues = back.connect(1, None);
    let mut nf = fe.join().unwrap();
    assert_eq!(nf.num_queues(), 1);
    let xs = &back.dom0.xenstore;
    assert_eq!(read(xs, &format!("{FE}/multi-queue-num-queues")), None);
    assert_eq!(read(xs, &format!("{FE}/queue-0/tx-ring-ref")), None);
    assert_eq!(
        nf.send(&frame(7), &FrameMeta::default()).unwrap(),
        Sent::Queued
    );
    nf.flush().unwrap();
    assert_eq!(back.take_tx(&queues[0]), vec![frame(7)]);
}

/// Frames admitted when `queues` threads flood together through rounds of a clock
/// they do not move: every thread sends until refused, then the clock advances 100 ms.
fn admitted_by(queues: usize) -> (u64, u64) {
    const ROUNDS: u64 = 20;
    const STEP: u64 = 100_000_000; // 100 ms
    let host = LocalHost::new();
    let back = LinuxLikeBackend::probe(&host, Some(4), true);
    let t = Arc::new(AtomicU64::new(1));
    let t2 = t.clone();
    let fe = connect_frontend(&host, queues, Box::new(move || t2.load(Ordering::Acquire)));
    // 100 packets/s, burst 10.
    let credits = Credits {
        bytes: Limit::Unlimited,
        packets: Limit::rate(100, 10),
        period_us: 20_000,
    };
    let _rings = back.connect(4, Some(credits));
    let mut nf = fe.join().unwrap();
    assert_eq!(nf.num_queues(), queues);
    let mut split = nf.split().expect("connected");
    let barrier = Barrier::new(queues + 1);
    let sent = AtomicU64::new(0);
    std::thread::scope(|s| {
        for h in split.queues.iter_mut() {
            let (barrier, sent) = (&barrier, &sent);
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    barrier.wait();
                    h.apply_credits();
                    let now = h.now();
                    while h.send_at(now, &frame(1), &FrameMeta::default()).unwrap() == Sent::Queued
                    {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    barrier.wait();
                }
            });
        }
        for r in 0..ROUNDS {
            if r > 0 {
                t.fetch_add(STEP, Ordering::AcqRel);
            }
            barrier.wait();
            barrier.wait();
        }
    });
    let dropped: u64 = split.queues.iter().map(|h| h.stats.tx_dropped_credit).sum();
    assert!(
        dropped >= ROUNDS * queues as u64,
        "every thread was refused every round"
    );
    // The burst, then 100 packets/s over the time the clock moved.
    (
        sent.load(Ordering::Relaxed),
        100 * (ROUNDS - 1) * STEP / 1_000_000_000 + 10,
    )
}

#[test]
fn queues_share_one_budget() {
    let (one, bound) = admitted_by(1);
    let (four, _) = admitted_by(4);
    assert!(
        four <= bound,
        "4 queues: {four} frames > budget + burst {bound}"
    );
    assert_eq!(
        four, one,
        "4 queues get what 1 queue gets from the same credits"
    );
    assert!(
        one + 1 >= bound,
        "1 queue: {one} of {bound}: the budget is not starved"
    );
}

/// `mq::run`: one thread per queue between two ports and two queues; the control
/// thread wakes the queue whose event channel fired.
#[test]
fn one_thread_per_queue_moves_each_ports_frames_on_its_own_queue() {
    use netport::{MemPort, Port};
    use std::sync::atomic::AtomicBool;
    let host = LocalHost::new();
    let back = LinuxLikeBackend::probe(&host, Some(2), false);
    let fe = connect_frontend(&host, 2, hypervisor::clock::system());
    let queues = back.connect(2, None);
    let mut nf = fe.join().unwrap();
    CAPTURE.install();
    let (g0, mut w0) = MemPort::pair(64, 2048).unwrap();
    let (g1, mut w1) = MemPort::pair(64, 2048).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let guest = std::thread::spawn(move || {
        let mut ports = [g0, g1];
        let per_queue = netfront::mq::run(&mut nf, &mut ports, || stop2.load(Ordering::Relaxed))
            .expect("mq::run");
        (nf, per_queue)
    });
    for k in 0..3 {
        w0.send(&frame(0x10 + k), &FrameMeta::default()).unwrap();
        w1.send(&frame(0x20 + k), &FrameMeta::default()).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    let (mut on0, mut on1) = (Vec::new(), Vec::new());
    while (on0.len(), on1.len()) != (3, 3) {
        assert!(
            Instant::now() < deadline,
            "TX: {} and {} of 3",
            on0.len(),
            on1.len()
        );
        std::thread::sleep(Duration::from_millis(5));
        on0 = back.take_tx(&queues[0]);
        on1 = back.take_tx(&queues[1]);
    }
    assert_eq!(on0, (0..3).map(|k| frame(0x10 + k)).collect::<Vec<_>>());
    assert_eq!(on1, (0..3).map(|k| frame(0x20 + k)).collect::<Vec<_>>());
    // RX on queue 1 only: it reaches port 1.
    back.give_rx(&queues[1], &frame(0x31));
    let mut buf = vec![0u8; 4096];
    let got = loop {
        assert!(Instant::now() < deadline, "RX frame not delivered");
        if let Some((len, _)) = w1.recv(&mut buf).unwrap() {
            break buf[..len].to_vec();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(got, frame(0x31));
    assert!(w0.recv(&mut buf).unwrap().is_none(), "nothing on port 0");
    // The live per-queue counters the control thread logs every 5 s (what an operator,
    // and the mq-front scenario, read while it runs).
    let want = [
        "netfront: queue 0: tx_packets=3 rx_packets=0",
        "netfront: queue 1: tx_packets=3 rx_packets=1",
    ];
    let deadline = Instant::now() + WAIT;
    while !want.iter().all(|w| CAPTURE.has(w)) {
        assert!(
            Instant::now() < deadline,
            "per-queue counters not logged: {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (nf, per_queue) = guest.join().unwrap();
    let counts: Vec<_> = per_queue
        .iter()
        .map(|s| (s.tx_packets, s.rx_packets))
        .collect();
    assert_eq!(counts, vec![(3, 0), (3, 1)], "per-queue counters");
    assert_eq!((nf.stats.tx_packets, nf.stats.rx_packets), (6, 1));
}

/// netback-rs with one worker offers one queue (`multi-queue-max-queues` = 1, its
/// default: as many as its workers): a netfront asking for 4 queues connects with one,
/// flat keys, and frames go both ways.
#[test]
fn our_netback_gets_one_queue() {
    use netback::NetbackConfig;
    use testbed::BackendThread;
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut nf = connect_frontend(&host, 4, hypervisor::clock::system())
        .join()
        .unwrap();
    nb.wait_connected(&[id], WAIT)
        .expect("netback connects the vif");
    assert_eq!(nf.num_queues(), 1);
    let xs = &nf.platform().xenstore;
    assert_eq!(
        read(xs, &format!("{BE}/multi-queue-max-queues")).as_deref(),
        Some("1")
    );
    assert!(matches!(
        read(xs, &format!("{FE}/multi-queue-num-queues")).as_deref(),
        None | Some("1")
    ));
    assert!(read(xs, &format!("{FE}/tx-ring-ref")).is_some());
    let mut wire = nb.wire(id);
    let sent = frame(9);
    assert_eq!(nf.send(&sent, &FrameMeta::default()).unwrap(), Sent::Queued);
    nf.flush().unwrap();
    assert_eq!(testbed::recv_n(&mut wire, 1, WAIT), vec![sent.clone()]);
    testbed::send_all(&mut wire, &frame(10));
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    let got = loop {
        assert!(Instant::now() < deadline, "no frame from the wire");
        nf.ack_events();
        if let Some((len, _)) = nf.recv(&mut buf).unwrap() {
            break buf[..len].to_vec();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(got, frame(10));
}

/// A frontend asking netback-rs for 2 queues although it offered one is failed, the
/// reason in the `error` node.
#[test]
fn our_netback_fails_a_frontend_asking_for_two_queues() {
    use hypervisor::xenbus::XenbusState;
    use netback::NetbackConfig;
    use testbed::{BackendThread, RawConnect, RawFrontend};
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let _nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut raw = RawFrontend::new(&host, id).expect("raw frontend");
    raw.write("multi-queue-num-queues", "2");
    assert_eq!(raw.connect(&RawConnect::default()), XenbusState::Closing);
    let err = raw.error();
    assert!(err.contains("multi-queue"), "error node: {err:?}");
}

/// `netfront stats` with several queues: while `mq::run` serves two ports under a
/// 1000 B/s budget (burst 300 B), queue 0 keeps the state file current — the frames the
/// queues dropped for credit, summed, and the budget — without waiting for the queue
/// threads to stop.
#[test]
fn the_stats_file_follows_every_queue_while_they_run() {
    use netfront::stats::{StatsFile, StatsReport};
    use netport::{MemPort, Port};
    use std::sync::atomic::AtomicBool;
    let host = LocalHost::new();
    let back = LinuxLikeBackend::probe(&host, Some(2), true);
    let fe = connect_frontend(&host, 2, hypervisor::clock::system());
    let credits = Credits {
        bytes: Limit::rate(1000, 300),
        packets: Limit::Unlimited,
        period_us: 20_000,
    };
    let queues = back.connect(2, Some(credits));
    let mut nf = fe.join().unwrap();
    let dir = std::env::temp_dir().join(format!("nf-mq-stats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    nf.stats_file = Some(StatsFile::new(&dir, "eth0"));
    let (g0, mut w0) = MemPort::pair(64, 2048).unwrap();
    let (g1, mut w1) = MemPort::pair(64, 2048).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let guest = std::thread::spawn(move || {
        let mut ports = [g0, g1];
        netfront::mq::run(&mut nf, &mut ports, || stop2.load(Ordering::Relaxed)).expect("mq::run");
        nf
    });
    for k in 0..10 {
        w0.send(&frame(0x10 + k), &FrameMeta::default()).unwrap();
        w1.send(&frame(0x20 + k), &FrameMeta::default()).unwrap();
    }
    // Every frame either reached the backend or was dropped for credit; the file says
    // how many were dropped, while the queues still run.
    let path = dir.join("eth0.stats");
    let deadline = Instant::now() + WAIT;
    let mut passed;
    let dropped = loop {
        // (Every frame on the rings since the start: nothing answers them here.)
        passed = back.take_tx(&queues[0]).len() + back.take_tx(&queues[1]).len();
        let r = StatsReport::read(&path).ok();
        if let Some(r) = r.filter(|r| r.own.frames as usize + passed == 20) {
            assert_eq!(r.tx_budget.unwrap().bytes_per_sec, Some(1000));
            assert!(r.connected);
            break r.own.frames;
        }
        assert!(
            Instant::now() < deadline,
            "{passed} passed; file: {:?}",
            std::fs::read_to_string(&path)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        dropped >= 10,
        "a 300 B burst passes 3 of 20 100-byte frames, not {passed}"
    );
    stop.store(true, Ordering::Relaxed);
    let nf = guest.join().unwrap();
    assert_eq!(nf.stats.tx_dropped_credit, dropped);
    let _ = (w0.recv(&mut [0u8; 16]), w1.recv(&mut [0u8; 16]));
    std::fs::remove_dir_all(&dir).unwrap();
}
