//! A port netback's worker can be made to wait in: [`GatedPort`] blocks `send` and
//! `set_carrier` while its [`Gate`] is closed. A test closes the gate to stall the
//! worker that serves the vif (a wedged interface), or to hold netback's handshakes
//! (the control thread waits for that worker's replies).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use netport::{FrameMeta, Port};

/// Open or closed; threads that reach it closed wait until it opens.
#[derive(Debug, Default)]
pub struct Gate {
    closed: Mutex<bool>,
    cv: Condvar,
    waited: AtomicBool,
}

impl Gate {
    /// Closes (`true`) or opens the gate.
    pub fn set(&self, closed: bool) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = closed;
        self.cv.notify_all();
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a thread ever waited at it.
    pub fn waited(&self) -> bool {
        self.waited.load(Ordering::SeqCst)
    }

    /// Waits while the gate is closed.
    pub fn pass(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        while *closed {
            self.waited.store(true, Ordering::SeqCst);
            closed = self.cv.wait(closed).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Opens its gate when dropped: a failing test does not leave a worker stuck (netback
/// joins its workers when it stops).
#[derive(Debug)]
pub struct OpenOnDrop(pub Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// A port whose `send` and `set_carrier` pass its gate first.
pub struct GatedPort {
    inner: Box<dyn Port>,
    gate: Arc<Gate>,
}

impl GatedPort {
    /// `inner` behind `gate`.
    pub fn new(inner: Box<dyn Port>, gate: Arc<Gate>) -> Self {
        GatedPort { inner, gate }
    }
}

impl Port for GatedPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        self.inner.recv(buf)
    }

    fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> io::Result<()> {
        self.gate.pass();
        self.inner.send(frame, meta)
    }

    fn rx_fd(&self) -> BorrowedFd<'_> {
        self.inner.rx_fd()
    }

    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }

    fn set_carrier(&mut self, on: bool) -> io::Result<()> {
        self.gate.pass();
        self.inner.set_carrier(on)
    }
}
