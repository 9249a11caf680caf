//! Ring throughput: push + consume per entry, single-threaded in batches, and across
//! two cores (frontend and backend threads on one page).

#![allow(missing_docs)] // criterion_group! generates undocumented public items

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared_ring::netif::{
    NetifTxBackRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse, NetifTxSring,
};
use shared_ring::SharedPage;

/// One round trip of `batch` entries: front puts and pushes, back copies, answers and
/// pushes, front consumes the answers.
fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_single_thread");
    for batch in [1u32, 8, 32, 128] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |bch, &batch| {
            let page = Box::new(SharedPage::new());
            NetifTxSring::new(page.mem()).unwrap().init();
            let mut f = NetifTxFrontRing::attach(page.mem(), 0).unwrap();
            let mut b = NetifTxBackRing::attach(page.mem(), 0).unwrap();
            let mut seq = 0u32;
            bch.iter(|| {
                for _ in 0..batch {
                    f.put_request(&NetifTxRequest {
                        gref: seq,
                        size: 64,
                        ..Default::default()
                    })
                    .unwrap();
                    seq = seq.wrapping_add(1);
                }
                black_box(f.push_requests_and_check_notify());
                let mut p = b.requests().unwrap();
                let n = p.len();
                let mut sum = 0u32;
                for i in 0..n {
                    let q: NetifTxRequest = p.copy(i).unwrap();
                    sum = sum.wrapping_add(q.gref);
                }
                p.consume(n);
                for i in 0..n {
                    b.put_response(&NetifTxResponse {
                        id: i as u16,
                        status: 0,
                    })
                    .unwrap();
                }
                black_box(b.push_responses_and_check_notify());
                let mut r = f.responses().unwrap();
                let m = r.len();
                for i in 0..m {
                    let x: NetifTxResponse = r.copy(i).unwrap();
                    sum = sum.wrapping_add(x.id as u32);
                }
                r.consume(m);
                black_box(sum)
            })
        });
    }
    g.finish();
}

/// Entries per second with the frontend and the backend on two threads, busy-polling.
fn run_two_threads(n: u32, batch: u32) -> Duration {
    let page: &'static SharedPage = Box::leak(Box::new(SharedPage::new()));
    NetifTxSring::new(page.mem()).unwrap().init();
    let start = Instant::now();
    let back = thread::spawn(move || {
        let mut b = NetifTxBackRing::attach(page.mem(), 0).unwrap();
        let mut got = 0u32;
        while got < n {
            let mut p = b.requests().unwrap();
            let k = p.len();
            for i in 0..k {
                black_box(p.copy::<NetifTxRequest>(i));
            }
            p.consume(k);
            for _ in 0..k {
                b.put_response(&NetifTxResponse::default()).unwrap();
            }
            if k > 0 {
                b.push_responses();
            } else {
                std::hint::spin_loop();
            }
            got += k;
        }
    });
    let mut f = NetifTxFrontRing::attach(page.mem(), 0).unwrap();
    let (mut sent, mut done) = (0u32, 0u32);
    while done < n {
        let mut k = 0;
        while sent < n && k < batch && !f.is_full() {
            f.put_request(&NetifTxRequest {
                gref: sent,
                size: 64,
                ..Default::default()
            })
            .unwrap();
            sent += 1;
            k += 1;
        }
        if k > 0 {
            f.push_requests();
        }
        let mut r = f.responses().unwrap();
        let m = r.len();
        r.consume(m);
        done += m;
        if m == 0 && k == 0 {
            std::hint::spin_loop();
        }
    }
    back.join().unwrap();
    let e = start.elapsed();
    // The page is leaked on purpose (a 'static page shared with the thread); 4 KiB per run.
    e
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_two_threads");
    const N: u32 = 1_000_000;
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for batch in [32u32, 128] {
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |bch, &batch| {
            bch.iter_custom(|iters| (0..iters).map(|_| run_two_threads(N, batch)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, single_thread, two_threads);
criterion_main!(benches);
