//! Cost of the header work a port does per frame: locating the L4 checksum
//! (`csum::parse_l4`, done for every `csum_blank` frame sent into a TAP), mapping a
//! virtio-net header both ways, and completing a partial checksum in software (for a peer
//! without checksum offload), for a 64 B and a 1500 B TCP/IPv4 frame.
//!
//! Run: `cargo bench -p netport --bench csum`. Results: docs/performance.md, `## netport`.

#![allow(missing_docs)] // criterion_group! generates undocumented public items

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netport::{csum, vnet, FrameMeta};

/// A TCP/IPv4 frame of `len` bytes (>= 54) with a partial checksum.
fn tcp_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[46] = 0x50;
    for (i, b) in f.iter_mut().enumerate().skip(54) {
        *b = i as u8;
    }
    csum::write_pseudo_header_checksum(&mut f).unwrap();
    f
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("csum");
    g.throughput(Throughput::Elements(1));
    for len in [64usize, 1500] {
        let f = tcp_frame(len);
        let blank = FrameMeta {
            csum_blank: true,
            ..FrameMeta::default()
        };
        g.bench_with_input(BenchmarkId::new("parse_l4", len), &len, |b, _| {
            b.iter(|| black_box(csum::parse_l4(black_box(&f)).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("hdr_for_send", len), &len, |b, _| {
            b.iter(|| black_box(vnet::hdr_for_send(&blank, black_box(&f)).unwrap()))
        });
        let hdr = vnet::hdr_for_send(&blank, &f).unwrap();
        g.bench_with_input(BenchmarkId::new("meta_from_recv", len), &len, |b, _| {
            let mut g = f.clone();
            b.iter(|| black_box(vnet::meta_from_recv(&hdr, black_box(&mut g)).unwrap()))
        });
        g.bench_with_input(
            BenchmarkId::new("fill_partial_checksum", len),
            &len,
            |b, _| {
                let mut g = f.clone();
                b.iter(|| {
                    g[50..52].copy_from_slice(&f[50..52]);
                    black_box(csum::fill_partial_checksum(black_box(&mut g)).unwrap())
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
