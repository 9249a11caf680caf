//! The two directions one queue's event loop moves frames in, shared by netfront's own
//! loop ([`crate::pump::run`], queue 0) and each thread of a multi-queue netfront
//! ([`super::mq`]): RX ring → port and port → TX ring, in batches.

use std::io;

use hypervisor::platform::FrontendPlatform;
use netport::{FrameMeta, Port};

use super::{Netfront, Sent};
use crate::error::FrontError;

/// Frames one direction moves before the loop looks at the other.
pub(crate) const BATCH: usize = 64;

/// A queue the event loops move frames through: [`Netfront`]'s queue 0
/// ([`crate::pump::run`]) or one lent to a thread ([`crate::mq::QueueHandle`]).
pub(crate) trait Lane {
    /// [`Netfront::send_from_port`].
    fn send_from_port<T: Port + ?Sized>(
        &mut self,
        now: u64,
        port: &mut T,
    ) -> Result<Option<Sent>, FrontError>;
    /// [`Netfront::recv_frame`].
    fn recv_frame(&mut self) -> Result<Option<FrameMeta>, FrontError>;
    /// [`Netfront::rx_frame`].
    fn rx_frame(&self) -> &[u8];
}

impl<F: FrontendPlatform> Lane for Netfront<F> {
    fn send_from_port<T: Port + ?Sized>(
        &mut self,
        now: u64,
        port: &mut T,
    ) -> Result<Option<Sent>, FrontError> {
        Netfront::send_from_port(self, now, port)
    }
    fn recv_frame(&mut self) -> Result<Option<FrameMeta>, FrontError> {
        Netfront::recv_frame(self)
    }
    fn rx_frame(&self) -> &[u8] {
        Netfront::rx_frame(self)
    }
}

/// RX: ring → port. Sends the frame left `pending` (received, not taken by the port
/// yet), then receives up to [`BATCH`] more and sends each from the reassembly buffer,
/// the one copy out of the granted pages. A full port stops it: the frame stays
/// pending, in the reassembly buffer, and the ring is not read (backpressure reaches
/// the backend as missing RX buffers). Returns the frames received, and whether it
/// stopped at the batch's end: the ring may hold more, and the backend was not asked to
/// notify them, so the caller must come back without waiting.
pub(crate) fn rx_to_port<L: Lane, T: Port + ?Sized>(
    lane: &mut L,
    port: &mut T,
    pending: &mut Option<FrameMeta>,
) -> Result<(usize, bool), FrontError> {
    let mut n = 0;
    loop {
        // A frame is never empty: an empty one was left in the buffers of a connection
        // that went away (and came back) meanwhile, and is gone with them.
        if pending.is_some() && lane.rx_frame().is_empty() {
            *pending = None;
        }
        if let Some(meta) = *pending {
            match port.send(lane.rx_frame(), &meta) {
                Ok(()) => *pending = None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((n, false)),
                Err(e) => {
                    log::debug!("netfront: port send: {e}");
                    *pending = None;
                }
            }
        }
        if n == BATCH {
            return Ok((n, true));
        }
        match lane.recv_frame()? {
            Some(meta) => {
                n += 1;
                *pending = Some(meta);
            }
            None => return Ok((n, false)),
        }
    }
}

/// TX: port → ring, up to [`BATCH`] frames, each read straight into granted pages,
/// unless held: returns whether blocked (held for credits until `hold_until`, or no
/// room on the ring), when the port is not to be read until woken.
pub(crate) fn port_to_tx<L: Lane, T: Port + ?Sized>(
    lane: &mut L,
    port: &mut T,
    now: u64,
    hold_until: &mut Option<u64>,
) -> Result<bool, FrontError> {
    if hold_until.is_some_and(|t| now < t) {
        return Ok(true);
    }
    *hold_until = None;
    for _ in 0..BATCH {
        match lane.send_from_port(now, port)? {
            None => return Ok(false),
            Some(Sent::Queued | Sent::Dropped | Sent::TooBig) => {}
            Some(Sent::Held(t)) => {
                *hold_until = Some(t);
                return Ok(true);
            }
            Some(Sent::RingFull) => return Ok(true),
        }
    }
    Ok(false)
}
