//! The `local` platform's per-packet costs: grant copy of 64 B and 1500 B segments in
//! batches of 32 (both directions) next to a plain `memcpy` of the same sizes, an event
//! channel notify round trip between two threads, and a round trip to the local
//! hypervisor (what a copy would cost if the daemon did it).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hypervisor::evtchn::{EventChannels, Port};
use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantShare, SharedPages, PAGE_SIZE,
};
use xen_ids::DomId;
use xen_local::{Domain, LocalEventChannels, LocalHypervisor};

const BATCH: usize = 32;
const FRONT: DomId = DomId(1);
const BACK: DomId = DomId(0);

fn bench_grant_copy(c: &mut Criterion) {
    let hv = LocalHypervisor::new();
    let f = Domain::from_fd(hv.connect(FRONT).unwrap()).unwrap();
    let b = Domain::from_fd(hv.connect(BACK).unwrap()).unwrap();
    // One page per packet buffer, as netfront's persistent grant pool does.
    let pool = f.share(BACK, BATCH, Access::Writable).unwrap();
    pool.mem().fill(0, BATCH * PAGE_SIZE, 0xab).unwrap();
    let grefs = pool.grefs().to_vec();
    let mut g = c.benchmark_group("grant_copy_batch32");
    for size in [64u16, 1500] {
        let mut local = vec![0u8; BATCH * 2048];
        let from: Vec<CopySegment> = (0..BATCH)
            .map(|i| CopySegment::from_grant(FRONT, grefs[i], 0, i * 2048, size))
            .collect();
        let to: Vec<CopySegment> = (0..BATCH)
            .map(|i| CopySegment::to_grant(FRONT, grefs[i], 0, i * 2048, size))
            .collect();
        g.throughput(Throughput::Elements(BATCH as u64));
        let mut segs = from.clone();
        b.copy(&mut local, &mut segs).unwrap(); // warm the mapping cache
        assert!(segs.iter().all(|s| s.status == GntStatus::OKAY));
        g.bench_function(format!("local_from_grant_{size}B"), |bch| {
            bch.iter(|| {
                segs.copy_from_slice(&from);
                b.copy(black_box(&mut local), &mut segs).unwrap();
            })
        });
        let mut segs = to.clone();
        g.bench_function(format!("local_to_grant_{size}B"), |bch| {
            bch.iter(|| {
                segs.copy_from_slice(&to);
                b.copy(black_box(&mut local), &mut segs).unwrap();
            })
        });
        // The floor: the same 32 copies as plain memcpy between private buffers.
        let src = vec![0xabu8; BATCH * PAGE_SIZE];
        g.bench_function(format!("memcpy_{size}B"), |bch| {
            bch.iter(|| {
                for i in 0..BATCH {
                    let n = size as usize;
                    local[i * 2048..i * 2048 + n]
                        .copy_from_slice(black_box(&src[i * PAGE_SIZE..i * PAGE_SIZE + n]));
                }
                black_box(&mut local);
            })
        });
    }
    g.finish();
    drop(pool);
}

fn wait(e: &LocalEventChannels, port: Port) {
    loop {
        hypervisor::poll::readable(e.as_fd(), Duration::from_secs(10)).unwrap();
        let mut out = [Port(0); 4];
        if e.pending(&mut out).unwrap() > 0 {
            assert_eq!(out[0], port);
            e.unmask(port).unwrap();
            return;
        }
    }
}

fn bench_evtchn(c: &mut Criterion) {
    let hv = LocalHypervisor::new();
    let f = Domain::from_fd(hv.connect(FRONT).unwrap()).unwrap();
    let b = Domain::from_fd(hv.connect(BACK).unwrap()).unwrap();
    let fe = f.event_channels().unwrap();
    let be = b.event_channels().unwrap();
    let p = fe.alloc_unbound(BACK).unwrap();
    let q = be.bind_interdomain(FRONT, p).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let echo = std::thread::spawn({
        let stop = stop.clone();
        move || {
            // Echo every notification back until told to stop.
            while !stop.load(Ordering::Relaxed) {
                wait(&be, q);
                be.notify(q).unwrap();
            }
        }
    });
    c.bench_function("evtchn_notify_round_trip_two_threads", |bch| {
        bch.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                fe.notify(p).unwrap();
                wait(&fe, p);
            }
            t.elapsed()
        })
    });
    stop.store(true, Ordering::Relaxed);
    fe.notify(p).unwrap();
    echo.join().unwrap();
}

fn bench_daemon_round_trip(c: &mut Criterion) {
    let hv = LocalHypervisor::new();
    let d = Domain::from_fd(hv.connect(BACK).unwrap()).unwrap();
    c.bench_function("local_hypervisor_request_round_trip", |bch| {
        bch.iter(|| d.ping().unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_grant_copy, bench_evtchn, bench_daemon_round_trip
}
criterion_main!(benches);
