//! The Prometheus endpoint end to end: an in-process netback on the local platform with
//! the allocator on and a netfront guest; frames in both directions make the scraped
//! counters, rates, budgets and the allocator's figures move; malformed requests get an
//! error answer and leave the endpoint (and netback) running.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use netback::backend::monotonic_ns;
use netback::metrics::{name, MetricsServer, Publisher, SnapshotCell};
use netback::{Netback, NetbackConfig, VifId};
use netback_ops::{scrape, Sample};
use netfront::NetfrontConfig;
use netport::{MemPort, Port};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const SLAS: &str = r#"
[link]
capacity-bps = "100M"
[[vm]]
domid = 1
pps = "50k"
[[vif]]
domid = 1
devid = 0
priority = 1
min-bps = "10M"
max-bps = "40M"
"#;

/// netback on its own thread, publishing snapshots every 50 ms, with the endpoint.
struct Daemon {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    server: MetricsServer,
    wires: mpsc::Receiver<(VifId, MemPort)>,
}

impl Daemon {
    fn start(host: &LocalHost) -> Daemon {
        let dom0 = host.domain(DomId(0)).expect("dom0");
        let cell = SnapshotCell::new();
        let server = MetricsServer::start("127.0.0.1:0", cell.clone()).expect("metrics server");
        let (wtx, wires) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let factory = move |id: VifId, _mac: [u8; 6]| -> std::io::Result<Box<dyn Port>> {
                    let (a, b) = MemPort::pair(1024, 65536)?;
                    let _ = wtx.send((id, b));
                    Ok(Box::new(a))
                };
                let mut nb = Netback::new(
                    dom0,
                    NetbackConfig::default(),
                    Box::new(factory),
                    Box::new(monotonic_ns),
                )
                .expect("netback");
                nb.enable_allocator(
                    parse_sla_file(SLAS).unwrap(),
                    LoopConfig::with_period(Duration::from_millis(10)),
                )
                .unwrap();
                let mut publisher = Publisher::new(Duration::from_millis(50), cell);
                while !stop.load(Ordering::Relaxed) {
                    nb.run_once(Duration::from_millis(5)).expect("run_once");
                    publisher.tick(&nb, monotonic_ns());
                }
            }
        });
        Daemon {
            stop,
            thread: Some(thread),
            server,
            wires,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.server.local_addr())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("netback thread panicked");
        }
    }
}

fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == metric && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
}

const VIF: &[(&str, &str)] = &[("vif", "vif1.0")];

/// Scrapes until `ok` holds (10 s at most); returns the satisfying scrape.
fn scrape_until(url: &str, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = scrape(url, Duration::from_secs(2));
        if let Ok(s) = &last {
            if ok(s) {
                return last.unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}; last scrape: {last:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(req);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn scraped_figures_follow_the_traffic() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let d = Daemon::start(&host);
    let url = d.url();
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let (wid, mut wire) = d.wires.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(wid, id);

    // netfront publishes its counters in the credit area once connected; netback's
    // status shows them after its next allocator round at the latest.
    let s = scrape_until(&url, "vif1.0 connected with a budget", |s| {
        value(s, name::VIF_CONNECTED, VIF) == Some(1.0)
            && value(s, name::VIF_BUDGET_BPS, VIF).is_some()
            && value(s, name::VIF_FRONT_DROPPED, VIF).is_some()
    });
    assert_eq!(value(&s, name::VIFS, &[]), Some(1.0));
    assert_eq!(value(&s, name::VIF_XENBUS_STATE, VIF), Some(4.0));
    assert_eq!(value(&s, name::VIF_CREDITS, VIF), Some(1.0));
    assert_eq!(value(&s, name::VIF_TX_PACKETS, VIF), Some(0.0));
    assert_eq!(value(&s, name::VIF_SLA_PRIORITY, VIF), Some(1.0));
    assert_eq!(value(&s, name::VIF_SLA_MIN_BPS, VIF), Some(10e6));
    assert_eq!(value(&s, name::VIF_SLA_MAX_BPS, VIF), Some(40e6));
    let budget = value(&s, name::VIF_BUDGET_BPS, VIF).unwrap();
    assert!(
        (10e6..=40e6).contains(&budget),
        "budget {budget} outside the SLA's [min, max]"
    );
    assert_eq!(value(&s, name::VIF_BUDGET_PPS, VIF), Some(50e3));
    assert!(value(&s, name::VIF_BUDGET_BURST_BYTES, VIF).unwrap() > 0.0);
    let rounds0 = value(&s, name::ALLOC_ROUNDS, &[]).expect("allocator rounds");
    assert!(value(&s, name::ALLOC_COST, &[]).unwrap() > 0.0);
    assert_eq!(
        value(&s, name::VIF_FRONT_DROPPED, VIF),
        Some(0.0),
        "netfront publishes its counters in the credit area"
    );

    // Guest → port: 50 frames of 1000 B, within the budget's burst (64 KiB at least).
    for seq in 0..50 {
        send_all(&mut guest.app, &frame(seq, 1000));
    }
    assert_eq!(recv_n(&mut wire, 50, Duration::from_secs(10)).len(), 50);
    // Port → guest: 50 frames of 600 B.
    for seq in 0..50 {
        send_all(&mut wire, &frame(seq, 600));
    }
    assert_eq!(
        recv_n(&mut guest.app, 50, Duration::from_secs(10)).len(),
        50
    );

    let s = scrape_until(&url, "counters of the frames sent", |s| {
        value(s, name::VIF_TX_PACKETS, VIF) == Some(50.0)
            && value(s, name::VIF_RX_PACKETS, VIF) == Some(50.0)
    });
    assert_eq!(value(&s, name::VIF_TX_BITS, VIF), Some(50.0 * 1000.0 * 8.0));
    assert_eq!(value(&s, name::VIF_RX_BITS, VIF), Some(50.0 * 600.0 * 8.0));
    for reason in ["police", "error", "copy_error", "port"] {
        assert_eq!(
            value(
                &s,
                name::VIF_TX_DROPPED,
                &[("vif", "vif1.0"), ("reason", reason)]
            ),
            Some(0.0),
            "tx drops for {reason}"
        );
    }
    assert!(value(&s, name::ALLOC_ROUNDS, &[]).unwrap() > rounds0);
    let last = value(&s, name::ALLOC_LAST_COST, &[]).expect("last round cost");
    assert!(last > 0.0 && last < 1.0, "last round cost {last} s");

    assert_eq!(value(&s, name::VIF_FRONT_DROPPED, VIF), Some(0.0));

    // A burst far above the budget's bucket: the frontend drops the excess, and says so.
    for seq in 0..400 {
        send_all(&mut guest.app, &frame(seq, 1400));
    }
    scrape_until(&url, "frontend-reported drops", |s| {
        value(s, name::VIF_FRONT_DROPPED, VIF).is_some_and(|n| n > 0.0)
    });

    // The rate over one sampling interval covers the frames just sent, then falls back
    // to zero once the traffic stops.
    let interval = value(&s, name::SAMPLE_INTERVAL, &[]).unwrap();
    assert!(interval > 0.0);
    // Keep sending until a snapshot covers sustained traffic.
    let sending = AtomicBool::new(true);
    let draining = AtomicBool::new(true);
    std::thread::scope(|sc| {
        let app = &mut guest.app;
        let (sending, draining) = (&sending, &draining);
        sc.spawn(move || {
            let mut seq = 0;
            while sending.load(Ordering::Relaxed) {
                let _ = app.send(&frame(seq, 500), &netport::FrameMeta::default());
                seq += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let wire = &mut wire;
        sc.spawn(move || {
            let mut buf = vec![0u8; 65536];
            while draining.load(Ordering::Relaxed) {
                if wire.recv(&mut buf).unwrap().is_none() {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        });
        scrape_until(&url, "a non-zero TX rate", |s| {
            value(s, name::VIF_TX_BPS, VIF).is_some_and(|r| r > 0.0)
                && value(s, name::VIF_TX_PPS, VIF).is_some_and(|r| r > 0.0)
        });
        sending.store(false, Ordering::Relaxed);
        scrape_until(&url, "the TX rate back to zero", |s| {
            value(s, name::VIF_TX_BPS, VIF) == Some(0.0)
        });
        draining.store(false, Ordering::Relaxed);
    });

    // The toolstack removes the vif: it leaves the exposition.
    let dom0 = host.domain(DomId(0)).unwrap();
    netback::toolstack::destroy_vif(
        &dom0.xenstore,
        &netback::toolstack::VifSpec::new(DomId(0), DomId(1), 0),
    )
    .unwrap();
    let s = scrape_until(&url, "vif1.0 removed", |s| {
        value(s, name::VIFS, &[]) == Some(0.0)
    });
    assert!(s.iter().all(|x| x.label("vif").is_none()));
    drop(guest);
}

#[test]
fn malformed_requests_get_errors_and_leave_the_endpoint_up() {
    let host = LocalHost::new();
    let d = Daemon::start(&host);
    let addr = d.server.local_addr();
    scrape_until(&d.url(), "first snapshot", |_| true);

    let status = |r: &str| r.lines().next().unwrap_or("").to_string();
    assert!(status(&raw(addr, b"GET /nope HTTP/1.1\r\n\r\n")).contains("404"));
    assert!(status(&raw(addr, b"POST /metrics HTTP/1.1\r\n\r\n")).contains("405"));
    assert!(status(&raw(addr, b"garbage\r\n\r\n")).contains("400"));
    assert!(status(&raw(addr, b"GET /metrics FTP/9\r\n\r\n")).contains("400"));
    assert!(status(&raw(addr, &[0xff; 100])).is_empty());
    let huge = [b'A'; 20_000];
    assert!(status(&raw(addr, &huge)).contains("431"));
    // A connection that sends half a request and hangs up.
    {
        let mut half = TcpStream::connect(addr).unwrap();
        let _ = half.write_all(b"GET /metr");
    }
    let head = raw(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(status(&head).contains("200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD carries no body");
    // Still serving, and netback still runs (the snapshot keeps being refreshed).
    let s = scrape(&d.url(), Duration::from_secs(2)).unwrap();
    assert_eq!(value(&s, name::VIFS, &[]), Some(0.0));
    assert!(value(&s, name::ALLOC_ROUNDS, &[]).is_some());
}
