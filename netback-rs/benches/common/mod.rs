//! What the netback benches share: a port that counts and discards frames, the frames,
//! and one frontend sending a batch through netback.

use std::hint::black_box;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use netback::backend::monotonic_ns;
use netfront::{Netfront, Sent};
use netport::{FrameMeta, Port};

/// A port that counts frames and drops them (the wire is infinitely fast).
pub struct CountPort {
    /// Frames received.
    pub frames: Arc<AtomicU64>,
    /// An eventfd that never fires: the port never has frames to receive.
    pub fd: OwnedFd,
}

impl Port for CountPort {
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        Ok(None)
    }
    fn send(&mut self, frame: &[u8], _meta: &FrameMeta) -> io::Result<()> {
        black_box(frame);
        self.frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn rx_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn max_frame(&self) -> usize {
        65536
    }
}

/// One frontend's share of a run: `n` frames, then until its port counted them all.
pub fn send_and_wait(
    nf: &mut Netfront<xen_local::LocalPlatform>,
    forwarded: &AtomicU64,
    frame: &[u8],
    n: u64,
) {
    let meta = FrameMeta::default();
    let start = forwarded.load(Ordering::Relaxed);
    let mut sent = 0;
    while sent < n {
        let now = monotonic_ns();
        let mut batch = 0;
        while sent < n && batch < 64 {
            match nf.send_at(now, frame, &meta).unwrap() {
                Sent::Queued => {
                    sent += 1;
                    batch += 1;
                }
                Sent::RingFull => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        nf.flush().unwrap();
        if batch == 0 {
            nf.ack_events();
            nf.reap_tx().unwrap();
            std::thread::yield_now();
        }
    }
    while forwarded.load(Ordering::Relaxed) < start + n {
        nf.reap_tx().unwrap();
        std::thread::yield_now();
    }
    nf.ack_events();
    nf.reap_tx().unwrap();
}

/// A frame of `len` bytes.
pub fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}
