//! netback's data-path workers (issue 14, item 7) on the local platform: guest → port
//! traffic on one or two busy vifs, or one vif with four queues, served by one or two
//! workers. For each case and
//! frame size (64 B, 1500 B) it reports
//!
//! * **netback CPU per packet**: the workers' thread CPU time (their own
//!   `CLOCK_THREAD_CPUTIME_ID` meters) over the packets forwarded — policing, the grant
//!   copy and the ring work included, the frontends' threads excluded; with two workers
//!   it should stay within 10 % of one worker (no contention between workers);
//! * **aggregate packets/s** of the busy vifs together (wall time);
//!
//! beside the cross-core bound measured in the same run: frames through an in-memory
//! SPSC channel between two threads (`netport::MemPort`) — one pair per busy vif, at
//! once. Each frontend (or each queue of a 4-queue frontend) runs on its own thread
//! (`Netfront::send_at`, `QueueHandle::send_at`), so with two vifs two frontend threads
//! and up to two workers share the machine's cores (four queue threads with four
//! queues): on a 2-core machine the aggregate figures measure contention as much as
//! netback.
//!
//! Fixed workloads (criterion's adaptive iteration counts overshoot when the machine is
//! loaded, as in `datapath`): N frames per vif and run, 5 runs, median and spread.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{frame, send_and_wait, CountPort};
use netback::backend::{monotonic_ns, PortFactory};
use netback::toolstack::{create_vif, VifSpec};
use netback::{Netback, NetbackConfig, VifId};
use netfront::{Netfront, NetfrontConfig};
use netport::{FrameMeta, MemPort, Port};
use xen_ids::DomId;
use xen_local::LocalHost;

/// How long the workers' published CPU time takes to be final once they are idle: their
/// 100 ms tick, with a margin for a loaded machine.
const SETTLE: Duration = Duration::from_millis(300);

/// One counting port per queue of every vif: vif `d`'s queue `q` counts into
/// `forwarded[(d - 1) * queues + q]`.
struct CountPorts {
    forwarded: Vec<Arc<AtomicU64>>,
    queues: u32,
}

impl CountPorts {
    fn port(&self, id: VifId, queue: u32) -> io::Result<Box<dyn Port>> {
        // An eventfd that never fires: this port never has frames to receive.
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
        let at = (usize::from(id.domid.0) - 1) * self.queues as usize + queue as usize;
        Ok(Box::new(CountPort {
            frames: self.forwarded[at].clone(),
            fd,
        }))
    }
}

impl PortFactory for CountPorts {
    fn open(&mut self, id: VifId, _mac: [u8; 6]) -> io::Result<Box<dyn Port>> {
        self.port(id, 0)
    }
    fn queues(&self, _id: VifId) -> u32 {
        self.queues
    }
    fn open_queue(&mut self, id: VifId, queue: u32) -> io::Result<Box<dyn Port>> {
        self.port(id, queue)
    }
}

/// netback with `workers` workers on its own thread, and `vifs` connected frontends of
/// `queues` queues each.
struct Rig {
    fronts: Vec<Netfront<xen_local::LocalPlatform>>,
    queues: u32,
    /// Frames each queue's port received (vif-major).
    forwarded: Vec<Arc<AtomicU64>>,
    /// The workers' CPU time (ns), as netback last published it.
    worker_cpu: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _host: LocalHost,
}

impl Rig {
    fn new(workers: usize, vifs: u16, queues: u32) -> Rig {
        let host = LocalHost::new();
        let dom0 = host.domain(DomId(0)).unwrap();
        let forwarded: Vec<Arc<AtomicU64>> = (0..u32::from(vifs) * queues)
            .map(|_| Arc::default())
            .collect();
        for d in 1..=vifs {
            create_vif(&dom0.xenstore, &VifSpec::new(DomId(0), DomId(d), 0)).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let worker_cpu = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (forwarded, stop, worker_cpu) =
                (forwarded.clone(), stop.clone(), worker_cpu.clone());
            move || {
                let factory = CountPorts { forwarded, queues };
                let cfg = NetbackConfig {
                    workers,
                    max_queues: Some(queues),
                    ..NetbackConfig::default()
                };
                let mut nb =
                    Netback::new(dom0, cfg, Box::new(factory), Box::new(monotonic_ns)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    nb.run_once(Duration::from_millis(1)).unwrap();
                    *worker_cpu.lock().unwrap() = nb.worker_cpu_ns();
                }
            }
        });
        let fronts = (1..=vifs)
            .map(|d| {
                let mut cfg = NetfrontConfig::new(0);
                cfg.queues = queues as usize;
                let nf = Netfront::connect(
                    host.domain(DomId(d)).unwrap(),
                    cfg,
                    Box::new(netfront::front::monotonic_ns),
                )
                .unwrap();
                assert_eq!(nf.num_queues(), queues as usize, "queues negotiated");
                nf
            })
            .collect();
        Rig {
            fronts,
            queues,
            forwarded,
            worker_cpu,
            stop,
            thread: Some(thread),
            _host: host,
        }
    }

    fn worker_cpu_ns(&self) -> u64 {
        self.worker_cpu.lock().unwrap().iter().sum()
    }

    /// Every frontend sends `n` frames (each from its own thread; with several queues,
    /// `n / queues` on each queue from a thread of its own) until netback has forwarded
    /// all of them. Returns the wall time and the workers' CPU time (ns).
    fn run(&mut self, frame: &[u8], n: u64) -> (Duration, u64) {
        // A worker publishes its CPU time after its first wait with nothing to do
        // (one 100 ms tick after it went idle): wait for the figure of the previous
        // run to settle.
        std::thread::sleep(SETTLE);
        let cpu0 = self.worker_cpu_ns();
        let t0 = Instant::now();
        let q = self.queues as usize;
        std::thread::scope(|s| {
            for (nf, fwd) in self.fronts.iter_mut().zip(self.forwarded.chunks(q)) {
                if q == 1 {
                    s.spawn(move || send_and_wait(nf, &fwd[0], frame, n));
                    continue;
                }
                let split = nf.split().expect("connected");
                for (mut h, fwd) in split.queues.into_iter().zip(fwd) {
                    s.spawn(move || send_and_wait(&mut h, fwd, frame, n / q as u64));
                }
            }
        });
        let wall = t0.elapsed();
        std::thread::sleep(SETTLE);
        (wall, self.worker_cpu_ns() - cpu0)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `pairs` SPSC channels, each between two threads, `n` frames each, all at once.
fn spsc(frame: &[u8], n: u64, pairs: usize) -> Duration {
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..pairs {
            let (mut tx, mut rx) = MemPort::pair(1024, 2048).unwrap();
            s.spawn(move || {
                let mut buf = vec![0u8; 2048];
                let mut got = 0;
                while got < n {
                    if rx.recv(&mut buf).unwrap().is_some() {
                        got += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
            s.spawn(move || {
                let meta = FrameMeta::default();
                let mut sent = 0;
                while sent < n {
                    if tx.send(frame, &meta).is_ok() {
                        sent += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
        }
    });
    t0.elapsed()
}

/// Median, minimum and maximum.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`: do one tiny run.
    let quick = std::env::args().any(|a| a == "--test");
    // Other arguments (`cargo bench --bench workers -- '4 queues' 64`): run only the
    // cases whose name contains one of them, the frame sizes named (all by default).
    let picks: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sizes: Vec<usize> = picks.iter().filter_map(|a| a.parse().ok()).collect();
    let names: Vec<&String> = picks
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .collect();
    let picked = |name: &str| names.is_empty() || names.iter().any(|p| name.contains(p.as_str()));
    // `--frames=N`: frames per busy vif and run (for a longer run under a profiler).
    let frames = std::env::args().find_map(|a| a.strip_prefix("--frames=")?.parse().ok());
    let n: u64 = frames.unwrap_or(if quick { 1000 } else { 100_000 });
    let runs = if quick { 1 } else { 5 };
    println!(
        "workers: {n} frames per busy vif and run, {runs} runs, median [min, max]; \
         netback CPU = its workers' thread CPU time / packets forwarded"
    );
    println!(
        "{:<34} {:>5} {:>26} {:>26}",
        "case", "bytes", "netback CPU ns/packet", "aggregate Mpps"
    );
    // (name, workers, vifs, queues per vif)
    let cases: [(&str, usize, u16, u32); 5] = [
        ("1 vif, 1 worker", 1, 1, 1),
        ("2 busy vifs, 1 worker", 1, 2, 1),
        ("2 busy vifs, 2 workers", 2, 2, 1),
        ("1 vif, 4 queues, 1 worker", 1, 1, 4),
        ("1 vif, 4 queues, 2 workers", 2, 1, 4),
    ];
    for len in [64usize, 1500] {
        if !sizes.is_empty() && !sizes.contains(&len) {
            continue;
        }
        let f = frame(len);
        for (name, workers, vifs, queues) in cases {
            if !picked(name) {
                continue;
            }
            let mut rig = Rig::new(workers, vifs, queues);
            let total = n * u64::from(vifs);
            let (mut cpu, mut mpps) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (wall, ns) = rig.run(&f, n);
                cpu.push(ns as f64 / total as f64);
                mpps.push(total as f64 / wall.as_secs_f64() / 1e6);
            }
            let (c, c0, c1) = spread(cpu);
            let (m, m0, m1) = spread(mpps);
            println!(
                "{name:<34} {len:>5} {:>26} {:>26}",
                format!("{c:.0} [{c0:.0}, {c1:.0}]"),
                format!("{m:.3} [{m0:.3}, {m1:.3}]")
            );
        }
        for pairs in [1usize, 2] {
            if !picked("spsc bound") {
                continue;
            }
            let mpps: Vec<f64> = (0..runs)
                .map(|_| (n * pairs as u64) as f64 / spsc(&f, n, pairs).as_secs_f64() / 1e6)
                .collect();
            let (m, m0, m1) = spread(mpps);
            println!(
                "{:<34} {len:>5} {:>26} {:>26}",
                format!("spsc bound, {pairs} pair(s) at once"),
                "-",
                format!("{m:.3} [{m0:.3}, {m1:.3}]")
            );
        }
    }
}
