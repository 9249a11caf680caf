//! What the netback benches share: a port that counts and discards frames, the frames,
//! and one frontend sending a batch through netback.

use std::hint::black_box;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use netback::backend::monotonic_ns;
use netfront::mq::QueueHandle;
use netfront::{FrontError, Netfront, Sent};
use netport::{FrameMeta, Port};
use xen_local::LocalPlatform;

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

/// What a bench sends through: a whole (one-queue) frontend, or one queue of a
/// multi-queue frontend driven by its own thread.
pub trait Front {
    /// Offers one frame (`Netfront::send_at`).
    fn send_at(&mut self, now: u64, frame: &[u8], meta: &FrameMeta) -> Result<Sent, FrontError>;
    /// Publishes the requests (`Netfront::flush`).
    fn flush(&mut self) -> Result<(), FrontError>;
    /// Collects responses (`Netfront::reap_tx`).
    fn reap_tx(&mut self) -> Result<usize, FrontError>;
    /// Acknowledges fired event channels (a queue handle leaves that to its owner).
    fn ack_events(&mut self) {}
}

impl Front for Netfront<LocalPlatform> {
    fn send_at(&mut self, now: u64, frame: &[u8], meta: &FrameMeta) -> Result<Sent, FrontError> {
        Netfront::send_at(self, now, frame, meta)
    }
    fn flush(&mut self) -> Result<(), FrontError> {
        Netfront::flush(self)
    }
    fn reap_tx(&mut self) -> Result<usize, FrontError> {
        Netfront::reap_tx(self)
    }
    fn ack_events(&mut self) {
        Netfront::ack_events(self)
    }
}

impl Front for QueueHandle<'_, LocalPlatform> {
    fn send_at(&mut self, now: u64, frame: &[u8], meta: &FrameMeta) -> Result<Sent, FrontError> {
        QueueHandle::send_at(self, now, frame, meta)
    }
    fn flush(&mut self) -> Result<(), FrontError> {
        QueueHandle::flush(self)
    }
    fn reap_tx(&mut self) -> Result<usize, FrontError> {
        QueueHandle::reap_tx(self)
    }
}

/// One frontend's (or queue's) share of a run: `n` frames, then until its port counted
/// them all.
pub fn send_and_wait(nf: &mut impl Front, forwarded: &AtomicU64, frame: &[u8], n: u64) {
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
