//! Xenstore round trips against the local server (`local::Xenstored`) over a Unix
//! socketpair, through the real client (`XsClient`: caller → socket → server reader
//! thread → socket → client reader thread → caller), and a raw synchronous exchange
//! on the same server for comparison (no client thread handoff).
//!
//! With `DBA_XENSTORED` pointing at Xen's C xenstored (see `scripts/test.d/20-xenstored`),
//! the same client read is also measured against it (run without Xen through the
//! preloaded shim of `tests/xenstore_common/xsd_shim.c`), for reference.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion};
use xenstore::wire::{encode_strings, XsMessage, XsdSockmsgType, XSD_SOCKMSG_SIZE};
use xenstore::{Xenstore, XsClient, XsTx};
use xenstored::Xenstored;

fn bench_xenstore(c: &mut Criterion) {
    let xsd = Xenstored::new();
    let dom0 = XsClient::new(xsd.connect(xen_ids::DomId(0)).expect("connect")).expect("client");
    let guest = XsClient::new(xsd.connect(xen_ids::DomId(1)).expect("connect")).expect("client");
    dom0.write(XsTx::NONE, "/local/domain/1/device/vif/0/state", b"4")
        .expect("write");
    dom0.set_perms(
        XsTx::NONE,
        "/local/domain/1/device/vif/0/state",
        &[xenstore::XsPerm::new(
            xen_ids::DomId(1),
            xenstore::XsAccess::None,
        )],
    )
    .expect("perms");

    let mut g = c.benchmark_group("xenstore");
    g.bench_function("read_roundtrip_dom0", |b| {
        b.iter(|| {
            black_box(
                dom0.read(XsTx::NONE, "/local/domain/1/device/vif/0/state")
                    .expect("read"),
            )
        })
    });
    g.bench_function("read_roundtrip_guest_relative", |b| {
        b.iter(|| black_box(guest.read(XsTx::NONE, "device/vif/0/state").expect("read")))
    });
    g.bench_function("write_roundtrip_guest", |b| {
        b.iter(|| {
            guest
                .write(XsTx::NONE, "device/vif/0/tx-ring-ref", b"8")
                .expect("write")
        })
    });
    g.bench_function("transaction_start_write_commit", |b| {
        b.iter(|| {
            let tx = guest.transaction_start().expect("start");
            guest
                .write(tx, "device/vif/0/event-channel", b"9")
                .expect("write");
            guest.transaction_end(tx, true).expect("commit");
        })
    });

    // The same READ exchanged synchronously on a raw socket: the server's share.
    let mut raw = xsd.connect(xen_ids::DomId(0)).expect("connect");
    let req = XsMessage::new(
        XsdSockmsgType::Read,
        1,
        0,
        encode_strings(&["/local/domain/1/device/vif/0/state"]),
    )
    .expect("msg")
    .encode();
    let mut reply = [0u8; XSD_SOCKMSG_SIZE + 1];
    g.bench_function("read_roundtrip_raw_socket", |b| {
        b.iter(|| {
            raw.write_all(&req).expect("send");
            raw.read_exact(&mut reply).expect("reply");
            black_box(&reply);
        })
    });
    if let Some(mut real) = RealXenstored::start() {
        let xs = XsClient::connect_unix(real.dir.join("socket")).expect("connect xenstored");
        xs.write(XsTx::NONE, "/local/domain/1/device/vif/0/state", b"4")
            .expect("write");
        g.bench_function("read_roundtrip_c_xenstored", |b| {
            b.iter(|| {
                black_box(
                    xs.read(XsTx::NONE, "/local/domain/1/device/vif/0/state")
                        .expect("read"),
                )
            })
        });
        drop(xs);
        real.stop();
    }
    g.finish();
    drop((dom0, guest, raw));
    xsd.shutdown();
}

/// Xen's C xenstored, run without Xen (see the module documentation).
struct RealXenstored {
    child: Child,
    dir: PathBuf,
}

impl RealXenstored {
    fn start() -> Option<Self> {
        let bin = std::env::var_os("DBA_XENSTORED")?;
        let dir = std::env::temp_dir().join(format!("xs-bench-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).ok()?;
        let src = dir.join("shim.c");
        let so = dir.join("shim.so");
        std::fs::write(&src, include_str!("../tests/xenstore_common/xsd_shim.c")).ok()?;
        let ok = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl")
            .status()
            .ok()?
            .success();
        if !ok {
            eprintln!("xenstore bench: cannot build the xenstored shim; skipping");
            return None;
        }
        let mut child = Command::new(bin)
            .args(["-N", "-P"])
            .env("LD_PRELOAD", &so)
            .env("XENSTORED_RUNDIR", &dir)
            .env("XENSTORED_ROOTDIR", dir.join("lib"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        Some(RealXenstored { child, dir })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

criterion_group!(benches, bench_xenstore);
criterion_main!(benches);
