//! Helpers of netfront's tests on the local platform: a hand-driven `Netfront` (no event
//! loop) against netback on its own thread, frames in numbered, checked patterns.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::{Duration, Instant};

use netback::NetbackConfig;
use netfront::{Netfront, NetfrontConfig, Sent};
use netport::{FrameMeta, MemPort};
use testbed::{add_vif, check_frame, frame, recv_n, send_all, BackendThread, LocalNetfront};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::XsTx;

pub const WAIT: Duration = Duration::from_secs(10);

/// A length that varies with `seq`, from a minimal frame to a full one.
pub fn len_of(seq: u32) -> usize {
    60 + (seq as usize * 37) % 1440
}

pub fn connect(host: &LocalHost, domid: DomId) -> LocalNetfront {
    let platform = testbed::domain(host, domid).expect("domain");
    Netfront::connect(
        platform,
        NetfrontConfig::new(0),
        hypervisor::clock::system(),
    )
    .expect("netfront connects")
}

/// Queues frames `seqs` on the TX ring (reaping completions when it is full) and
/// publishes them; returns how many completions were reaped meanwhile.
pub fn send_frames(nf: &mut LocalNetfront, seqs: std::ops::Range<u32>) -> usize {
    let mut reaped = 0;
    for seq in seqs {
        let f = frame(seq, len_of(seq));
        let deadline = Instant::now() + WAIT;
        loop {
            match nf.send(&f, &FrameMeta::default()).expect("send") {
                Sent::Queued => break,
                Sent::RingFull => {
                    assert!(Instant::now() < deadline, "the TX ring stayed full");
                    nf.flush().expect("flush");
                    std::thread::sleep(Duration::from_micros(200));
                    nf.ack_events();
                    reaped += nf.reap_tx().expect("reap");
                }
                other => panic!("frame {seq}: {other:?}"),
            }
        }
    }
    nf.flush().expect("flush");
    reaped
}

/// Reaps TX completions until `n` frames completed, `done` of them already.
pub fn reap_all(nf: &mut LocalNetfront, mut done: usize, n: usize) {
    let deadline = Instant::now() + WAIT;
    while done < n {
        assert!(
            Instant::now() < deadline,
            "only {done} of {n} TX completions"
        );
        nf.ack_events();
        done += nf.reap_tx().expect("reap");
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(done, n);
}

/// Receives `n` frames from the RX ring.
pub fn recv_frames(nf: &mut LocalNetfront, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} frames",
            out.len()
        );
        nf.ack_events();
        match nf.recv(&mut buf).expect("recv") {
            Some((len, _)) => out.push(buf[..len].to_vec()),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    out
}

/// Frames `base..base + n` both ways: netfront → wire, then wire → netfront, in order
/// and intact.
pub fn roundtrip(nf: &mut LocalNetfront, wire: &mut MemPort, base: u32, n: u32) {
    let reaped = send_frames(nf, base..base + n);
    let got = recv_n(wire, n as usize, WAIT);
    let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(
        seqs,
        (base..base + n).collect::<Vec<_>>(),
        "netfront → wire"
    );
    reap_all(nf, reaped, n as usize);
    for seq in base..base + n {
        send_all(wire, &frame(seq, len_of(seq)));
    }
    let got = recv_frames(nf, n as usize);
    let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(
        seqs,
        (base..base + n).collect::<Vec<_>>(),
        "wire → netfront"
    );
}

pub fn pair(host: &LocalHost) -> (VifId, BackendThread, LocalNetfront) {
    let id = add_vif(host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(host, NetbackConfig::default()).expect("netback");
    let nf = connect(host, DomId(1));
    nb.wait_connected(&[id], WAIT)
        .expect("netback connects the vif");
    (id, nb, nf)
}

/// The TX ring grant netfront last published.
pub fn tx_ring_ref(nf: &LocalNetfront) -> String {
    let path = "/local/domain/1/device/vif/0/tx-ring-ref";
    hypervisor::xenbus::read_str(&nf.platform().xenstore, XsTx::NONE, path, 32)
        .expect("tx-ring-ref")
}
