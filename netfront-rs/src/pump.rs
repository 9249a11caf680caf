//! The netfront event loop: frames from a [`Port`] to the TX ring (subject to credits)
//! and from the RX ring to the port, driven by one epoll over the port, the event
//! channel and xenstore.
//!
//! Copies per frame: a frame from the port is read straight into the granted TX pages
//! ([`Netfront::send_from_port`]: the port's own read is its only copy here); a
//! received frame is copied once out of the granted RX pages, into the reassembly
//! buffer (the backend may rewrite those pages at any time, so what the port is given
//! must be a private copy), and handed to the port from there.
//!
//! With the `hold` policy the frame that could not be sent stays in its TX pages and
//! the port is not read until the exact deficit has accrued; when the ring has no room
//! for another frame, the port is not read until TX completions free it: the guest's
//! own queue fills and its stack slows down.

use std::io;
use std::time::Duration;

use hypervisor::platform::FrontendPlatform;
use hypervisor::poll::Epoll;
use netport::{FrameMeta, Port};
use std::os::fd::AsFd;
use xenstore::Xenstore;

use crate::error::FrontError;
use crate::front::lane::{port_to_tx, rx_to_port};
use crate::front::Netfront;

const K_PORT: u64 = 0;
const K_EVTCHN: u64 = 1;
const K_XS: u64 = 2;
/// Frames moved per direction before looking at the other one.
pub use crate::mq::ALLOWANCE_LOG_NS;

/// Moves frames between `port` and `nf` until `stop()` is true; logs the allowance the
/// backend publishes when it changes (at most every [`ALLOWANCE_LOG_NS`]).
pub fn run<F: FrontendPlatform, P: Port + ?Sized>(
    nf: &mut Netfront<F>,
    port: &mut P,
    mut stop: impl FnMut() -> bool,
) -> io::Result<()> {
    let ep = Epoll::new()?;
    ep.add(port.rx_fd(), K_PORT)?;
    ep.add(nf.platform().evtchn().as_fd(), K_EVTCHN)?;
    ep.add(nf.platform().xenstore().event_fd(), K_XS)?;
    // A received frame the port could not take yet (in the reassembly buffer).
    let mut rx_pending: Option<FrameMeta> = None;
    // RX stopped at a batch's end, with frames perhaps left on the ring.
    let mut rx_more = false;
    let mut hold_until: Option<u64> = None;
    let mut port_armed = true;
    let mut keys = [0u64; 8];
    let mut told = crate::mq::AllowanceLog::default();
    while !stop() {
        let now = nf.now();
        nf.note_stats(now);
        let timeout_ms: u16 = match hold_until {
            _ if nf.rx_unarmed() || rx_more => 0,
            _ if rx_pending.is_some() => 1,
            Some(t) => (t.saturating_sub(now).div_ceil(1_000_000)).min(100) as u16,
            None => 100,
        };
        let n = ep.wait(&mut keys, Duration::from_millis(timeout_ms.into()))?;
        // Woken by the idle timeout alone: nothing should be waiting on the rings.
        let idle_timeout = n == 0 && !rx_more && rx_pending.is_none() && hold_until.is_none();
        if idle_timeout {
            nf.stats.timeouts += 1;
        }
        for &key in &keys[..n] {
            match key {
                K_EVTCHN => nf.ack_events(),
                K_XS => {
                    nf.maintain();
                }
                _ => {}
            }
        }
        if !nf.is_connected() {
            // A frame left in the old connection's buffers is gone with them.
            (rx_pending, rx_more, hold_until) = (None, false, None);
            if !nf.maintain() {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        nf.apply_credits();
        told.note(&nf.allowance, now);
        let reaped = nf.reap_tx();
        let found = match reaped.and_then(|t| Ok((t, rx_to_port(nf, port, &mut rx_pending)?))) {
            Ok((t, (r, more))) => {
                rx_more = more;
                t + r
            }
            Err(e) => {
                log::warn!("netfront: {e}; disconnecting");
                nf.disconnect();
                continue;
            }
        };
        if idle_timeout && found > 0 {
            nf.stats.late_wakeups += 1;
        }
        let now = nf.now();
        let blocked = match port_to_tx(nf, port, now, &mut hold_until) {
            Ok(blocked) => blocked,
            Err(FrontError::Port(e)) => return Err(e),
            Err(e @ FrontError::PortFrame { .. }) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            }
            Err(e) => {
                log::warn!("netfront: {e}");
                false
            }
        };
        if let Err(e) = nf.flush() {
            log::debug!("netfront: flush: {e}");
        }
        // While blocked, the port is not read: wake on the event channel (completions)
        // or the hold deadline.
        set_armed(&ep, port, &mut port_armed, !blocked)?;
    }
    Ok(())
}

fn set_armed<P: Port + ?Sized>(
    ep: &Epoll,
    port: &P,
    armed: &mut bool,
    want: bool,
) -> io::Result<()> {
    if *armed != want {
        ep.set(port.rx_fd(), K_PORT, want)?;
        *armed = want;
    }
    Ok(())
}
