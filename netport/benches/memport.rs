//! MemPort cost per frame: send + recv of 64 B and 1500 B frames, single and batched, on
//! one thread and across two threads (producer thread → consumer thread, the consumer
//! polling or sleeping on the eventfd), beside a plain memcpy of the same size (the
//! copy every frame costs anyway).
//!
//! Run: `cargo bench -p netport --bench memport`. Results: docs/performance.md, `## netport`.

#![allow(missing_docs)] // criterion_group! generates undocumented public items

use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netport::{FrameMeta, MemPort, Port};

const SIZES: [usize; 2] = [64, 1500];
const BATCH: usize = 32;
const CAPACITY: usize = 1024;
const MAX_FRAME: usize = 1518;

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("memport/1thread");
    for size in SIZES {
        let frame = vec![0xabu8; size];
        let meta = FrameMeta::default();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |bch, _| {
            let mut dst = vec![0u8; MAX_FRAME];
            bch.iter(|| {
                dst[..size].copy_from_slice(black_box(&frame));
                black_box(&dst);
            })
        });
        g.bench_with_input(BenchmarkId::new("send+recv", size), &size, |bch, _| {
            let (mut a, mut b) = MemPort::pair(CAPACITY, MAX_FRAME).unwrap();
            let mut buf = vec![0u8; MAX_FRAME];
            bch.iter(|| {
                a.send(black_box(&frame), &meta).unwrap();
                black_box(b.recv(&mut buf).unwrap().unwrap());
            })
        });
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("batch32", size), &size, |bch, _| {
            let (mut a, mut b) = MemPort::pair(CAPACITY, MAX_FRAME).unwrap();
            let batch: Vec<(&[u8], FrameMeta)> = (0..BATCH).map(|_| (&frame[..], meta)).collect();
            bch.iter(|| {
                assert_eq!(a.send_batch(black_box(&batch)).unwrap(), BATCH);
                let mut sum = 0usize;
                b.recv_batch(BATCH, &mut |f, _| {
                    sum += f.len() + usize::from(f[size - 1]);
                    ControlFlow::Continue(())
                })
                .unwrap();
                black_box(sum);
            })
        });
    }
    g.finish();
}

/// CPU time consumed by the calling thread so far.
fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A producer thread that sends `n` frames (singly or in batches) per command and replies
/// with the CPU time it spent doing so.
fn producer(
    mut tx: MemPort,
    size: usize,
    batched: bool,
) -> (
    mpsc::Sender<u64>,
    mpsc::Receiver<Duration>,
    std::thread::JoinHandle<()>,
) {
    let (cmd_tx, cmd_rx) = mpsc::channel::<u64>();
    let (cpu_tx, cpu_rx) = mpsc::channel::<Duration>();
    let h = std::thread::spawn(move || {
        let frame = vec![0xcdu8; size];
        let meta = FrameMeta::default();
        let batch: Vec<(&[u8], FrameMeta)> = (0..BATCH).map(|_| (&frame[..], meta)).collect();
        while let Ok(n) = cmd_rx.recv() {
            let cpu0 = thread_cpu();
            let mut left = n;
            while left > 0 {
                let sent = if batched {
                    let k = (left as usize).min(BATCH);
                    tx.send_batch(&batch[..k]).unwrap_or(0) as u64
                } else {
                    u64::from(tx.send(&frame, &meta).is_ok())
                };
                left -= sent;
                if sent == 0 {
                    // Full: let the consumer have the CPU if we share one (on a loaded
                    // machine spinning here burns whole time slices).
                    std::thread::yield_now();
                }
            }
            let _ = cpu_tx.send(thread_cpu() - cpu0);
        }
    });
    (cmd_tx, cpu_rx, h)
}

/// Sleeps in poll(2) until `fd` is readable (the consumer side of a driver's epoll loop).
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let second = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let _ = poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&second));
}

/// Producer thread → consumer (the bench thread); the producer yields the CPU when the
/// queue is full. `yield`: the consumer polls `recv` and yields when it is empty; `poll`:
/// it sleeps in poll(2) on `rx_fd` whenever the queue is empty, as a driver's event loop
/// does (the sender then pays an eventfd write per wake-up). Yielding rather than
/// spinning keeps the numbers meaningful when the two threads share a CPU with other
/// jobs.
///
/// `memport/2threads` reports wall time per frame (throughput); `memport/2threads_cpu`
/// reports the CPU time both threads spent per frame (producer + consumer, from
/// `CLOCK_THREAD_CPUTIME_ID`), which does not count the time either thread waited for a
/// CPU, so it stays meaningful on a loaded machine: 2 cores give 400 CPU-ns per frame at
/// 5 Mpps.
fn two_threads(c: &mut Criterion) {
    two_thread_group(c, false);
    two_thread_group(c, true);
}

fn two_thread_group(c: &mut Criterion, cpu: bool) {
    let mut g = c.benchmark_group(if cpu {
        "memport/2threads_cpu"
    } else {
        "memport/2threads"
    });
    let variants: &[(bool, bool)] = if cpu {
        &[(false, true), (true, true)]
    } else {
        &[(false, false), (false, true), (true, false), (true, true)]
    };
    for size in SIZES {
        for &(batched, sleep) in variants {
            let name = match (batched, sleep) {
                (false, false) => "send+recv/yield",
                (false, true) => "send+recv/poll",
                (true, false) => "batch32/yield",
                (true, true) => "batch32/poll",
            };
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new(name, size), &size, |bch, _| {
                let (a, mut b) = MemPort::pair(CAPACITY, MAX_FRAME).unwrap();
                let (cmd, cpu_rx, h) = producer(a, size, batched);
                let mut buf = vec![0u8; MAX_FRAME];
                bch.iter_custom(|iters| {
                    let t0 = Instant::now();
                    let cpu0 = thread_cpu();
                    cmd.send(iters).unwrap();
                    let mut got = 0u64;
                    while got < iters {
                        let n = if batched {
                            b.recv_batch(BATCH, &mut |f, _| {
                                black_box(f[f.len() - 1]);
                                ControlFlow::Continue(())
                            })
                            .unwrap() as u64
                        } else {
                            u64::from(b.recv(&mut buf).unwrap().is_some())
                        };
                        if n == 0 {
                            if sleep {
                                wait_readable(b.rx_fd());
                            } else {
                                std::thread::yield_now();
                            }
                        }
                        got += n;
                    }
                    let wall = t0.elapsed();
                    let consumer_cpu = thread_cpu() - cpu0;
                    let producer_cpu = cpu_rx.recv().unwrap();
                    if cpu {
                        consumer_cpu + producer_cpu
                    } else {
                        wall
                    }
                });
                drop(cmd);
                h.join().unwrap();
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = single_thread, two_threads
}
criterion_main!(benches);
