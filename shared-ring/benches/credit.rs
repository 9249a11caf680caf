//! Per-packet and per-batch costs of the credit machinery: reading the credit area
//! (unchanged: one word; changed: a full seqlock snapshot) and charging the dual bucket.

#![allow(missing_docs)] // criterion_group! generates undocumented public items

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shared_ring::credit::{CreditArea, CreditPublisher, CreditReader, Credits};
use shared_ring::{DualTokenBucket, Limit, SharedPage};

fn credit(c: &mut Criterion) {
    let page = Box::new(SharedPage::new());
    let area = CreditArea::in_tx_page(page.mem()).unwrap();
    let mut p = CreditPublisher::new(area);
    p.publish(&Credits {
        bytes: Limit::rate(87_500_000, 875_000),
        packets: Limit::rate(60_000, 600),
        period_us: 100_000,
    });
    let mut r = CreditReader::new(area);
    r.poll().unwrap();
    c.bench_function("credit_poll_unchanged", |b| b.iter(|| black_box(r.poll())));
    c.bench_function("credit_snapshot", |b| b.iter(|| black_box(r.snapshot())));
    c.bench_function("credit_publish", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            p.publish(&Credits {
                bytes: Limit::rate(n, n),
                packets: Limit::rate(n, n),
                period_us: 1,
            })
        })
    });
}

fn bucket(c: &mut Criterion) {
    // Plenty of tokens: the steady-state admit path, time advancing 100 ns per packet, at
    // rates a 100 Gb/s link could use (20 GB/s, 20 Mp/s: refills stay on the u64 path).
    c.bench_function("bucket_charge_admit", |b| {
        let mut d = DualTokenBucket::new(
            Limit::rate(20_000_000_000, 1 << 40),
            Limit::rate(20_000_000, 1 << 30),
            0,
        );
        let mut t = 0u64;
        b.iter(|| {
            t += 100;
            black_box(d.charge_packet(black_box(t), 1500))
        })
    });
    // The same with rates so large that rate × elapsed overflows 64 bits (the u128
    // refill path; no real link gets there).
    c.bench_function("bucket_charge_admit_u128_refill", |b| {
        let mut d = DualTokenBucket::new(
            Limit::rate(u64::MAX / 4, u64::MAX / 4),
            Limit::rate(u64::MAX / 4, u64::MAX / 4),
            0,
        );
        let mut t = 0u64;
        b.iter(|| {
            t += 100;
            black_box(d.charge_packet(black_box(t), 1500))
        })
    });
    // Same timestamp for a batch (the caller reads the clock once per batch).
    c.bench_function("bucket_charge_same_time", |b| {
        let mut d = DualTokenBucket::new(
            Limit::rate(u64::MAX / 4, u64::MAX / 4),
            Limit::rate(u64::MAX / 4, u64::MAX / 4),
            0,
        );
        b.iter(|| black_box(d.charge_packet(black_box(1), 64)))
    });
    // Saturated: every charge is refused and computes the exact wait.
    c.bench_function("bucket_charge_deny", |b| {
        let mut d = DualTokenBucket::new(Limit::rate(1_000_000, 1500), Limit::rate(1000, 1), 0);
        d.charge_packet(0, 1500).unwrap();
        let mut t = 0u64;
        b.iter(|| {
            t += 1;
            black_box(d.charge_packet(black_box(t), 1500))
        })
    });
}

criterion_group!(benches, credit, bucket);
criterion_main!(benches);
