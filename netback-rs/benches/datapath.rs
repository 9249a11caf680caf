//! One vif, frontend to backend, on the local platform: frames handed to netfront's
//! `send_at` in the bench thread, through the TX ring, policed, grant-copied by netback
//! (its own thread) and handed to a port that counts and discards them. 64-byte and
//! 1500-byte frames, beside two bounds measured in the same run: a plain `memcpy` of
//! the frame, and the same frames through an in-memory SPSC channel between two
//! threads (`netport::MemPort`), i.e. what moving a frame across cores costs without
//! any Xen protocol.

use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{frame, send_and_wait, CountPort};
use netback::backend::monotonic_ns;
use netback::toolstack::{create_vif, VifSpec};
use netback::{Netback, NetbackConfig, VifId};
use netfront::{Netfront, NetfrontConfig};
use netport::{FrameMeta, MemPort, Port};
use xen_ids::DomId;
use xen_local::LocalHost;

struct Rig {
    nf: Netfront<xen_local::LocalPlatform>,
    forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _host: LocalHost,
}

impl Rig {
    fn new() -> Rig {
        let host = LocalHost::new();
        let dom0 = host.domain(DomId(0)).unwrap();
        create_vif(&dom0.xenstore, &VifSpec::new(DomId(0), DomId(1), 0)).unwrap();
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (forwarded, stop) = (forwarded.clone(), stop.clone());
            move || {
                let factory = move |_id: VifId, _mac: [u8; 6]| -> io::Result<Box<dyn Port>> {
                    // An eventfd that never fires: this port never has frames to receive.
                    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
                    Ok(Box::new(CountPort {
                        frames: forwarded.clone(),
                        fd,
                    }))
                };
                let mut nb = Netback::new(
                    dom0,
                    NetbackConfig::default(),
                    Box::new(factory),
                    Box::new(monotonic_ns),
                )
                .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    nb.run_once(Duration::from_millis(1)).unwrap();
                }
            }
        });
        let nf = Netfront::connect(
            host.domain(DomId(1)).unwrap(),
            NetfrontConfig::new(0),
            Box::new(netfront::front::monotonic_ns),
        )
        .unwrap();
        Rig {
            nf,
            forwarded,
            stop,
            thread: Some(thread),
            _host: host,
        }
    }

    /// Sends `n` frames and waits until netback has forwarded all of them.
    fn run(&mut self, frame: &[u8], n: u64) -> Duration {
        let t0 = Instant::now();
        send_and_wait(&mut self.nf, &self.forwarded, frame, n);
        t0.elapsed()
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

/// Wall time of `n` frames through `f`, best and median of `runs` runs.
fn measure(runs: usize, mut f: impl FnMut() -> Duration) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..runs).map(|_| f()).collect();
    t.sort();
    (t[0], t[runs / 2])
}

fn spsc(frame: &[u8], n: u64) -> Duration {
    let (mut tx, mut rx) = MemPort::pair(1024, 2048).unwrap();
    let consumer = std::thread::spawn(move || {
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
    let t0 = Instant::now();
    let meta = FrameMeta::default();
    let mut sent = 0;
    while sent < n {
        if tx.send(frame, &meta).is_ok() {
            sent += 1;
        } else {
            std::thread::yield_now();
        }
    }
    consumer.join().unwrap();
    t0.elapsed()
}

/// Fixed workloads (criterion's adaptive iteration counts overshoot badly when the
/// machine is loaded): N frames per run, 5 runs, best and median reported.
fn main() {
    // `cargo test --benches` runs bench binaries with `--test`: do one tiny run.
    let quick = std::env::args().any(|a| a == "--test");
    let n: u64 = if quick { 1000 } else { 200_000 };
    let runs = if quick { 1 } else { 5 };
    let mut rig = Rig::new();
    println!("datapath: {n} frames per run, best / median of {runs} runs");
    println!(
        "{:<28} {:>6} {:>12} {:>12} {:>10}",
        "case", "bytes", "best Mpps", "median Mpps", "best Gb/s"
    );
    for len in [64usize, 1500] {
        let f = frame(len);
        let rows: [(&str, (Duration, Duration)); 3] = [
            ("pair (front → back)", measure(runs, || rig.run(&f, n))),
            ("spsc_two_threads (bound)", measure(runs, || spsc(&f, n))),
            (
                "memcpy (bound)",
                measure(runs, || {
                    let mut dst = vec![0u8; len];
                    let t0 = Instant::now();
                    for _ in 0..n {
                        dst.copy_from_slice(black_box(&f));
                        black_box(&dst);
                    }
                    t0.elapsed()
                }),
            ),
        ];
        for (name, (best, median)) in rows {
            let mpps = |d: Duration| n as f64 / d.as_secs_f64() / 1e6;
            println!(
                "{:<28} {:>6} {:>12.2} {:>12.2} {:>10.2}",
                name,
                len,
                mpps(best),
                mpps(median),
                mpps(best) * len as f64 * 8.0 / 1000.0
            );
        }
    }
}
