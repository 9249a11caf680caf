//! The netfront event loop: frames from a [`Port`] to the TX ring (subject to credits)
//! and from the RX ring to the port, driven by one epoll over the port, the event
//! channel and xenstore.
//!
//! With the `hold` policy, or when the ring is full, the frame that could not be sent
//! is kept and the port is not read until the exact deficit has accrued (or TX
//! completions free slots): the guest's own queue fills and its stack slows down.

use std::io;
use std::time::Duration;

use hypervisor::platform::FrontendPlatform;
use hypervisor::poll::Epoll;
use netport::{FrameMeta, Port};
use std::os::fd::AsFd;
use xenstore::Xenstore;

use crate::front::{Netfront, Sent};

const K_PORT: u64 = 0;
const K_EVTCHN: u64 = 1;
const K_XS: u64 = 2;
/// Frames moved per direction before looking at the other one.
const BATCH: usize = 64;

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
    let mut buf = vec![0u8; port.max_frame().max(65536)];
    let mut rx_buf = vec![0u8; 65536];
    // A frame taken from the port but not yet accepted (held or ring full).
    let mut pending: Option<(usize, FrameMeta)> = None;
    let mut hold_until: Option<u64> = None;
    let mut port_armed = true;
    // A received frame the port could not take yet (in `rx_buf`).
    let mut rx_pending: Option<(usize, FrameMeta)> = None;
    let mut keys = [0u64; 8];
    let mut told = crate::mq::AllowanceLog::default();
    while !stop() {
        let now = nf.now();
        nf.note_stats(now);
        let timeout_ms: u16 = match hold_until {
            _ if nf.rx_unarmed() => 0,
            _ if rx_pending.is_some() => 1,
            Some(t) => (t.saturating_sub(now).div_ceil(1_000_000)).min(100) as u16,
            None => 100,
        };
        let n = ep.wait(&mut keys, Duration::from_millis(timeout_ms.into()))?;
        // Woken by the idle timeout alone: nothing should be waiting on the rings.
        let idle_timeout = n == 0 && rx_pending.is_none() && hold_until.is_none();
        if idle_timeout {
            nf.stats.timeouts += 1;
        }
        let mut found = 0;
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
            if !nf.maintain() {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        nf.apply_credits();
        told.note(&nf.allowance, now);
        match nf.reap_tx() {
            Ok(n) => found += n,
            Err(e) => {
                log::warn!("netfront: {e}; disconnecting");
                nf.disconnect();
                continue;
            }
        }
        // RX: ring → port. A full port stops RX (the frame is kept, the ring is not
        // read): backpressure reaches the backend as missing RX buffers.
        for _ in 0..BATCH {
            if let Some((len, meta)) = rx_pending {
                match port.send(&rx_buf[..len], &meta) {
                    Ok(()) => rx_pending = None,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::debug!("netfront: port send: {e}");
                        rx_pending = None;
                    }
                }
            }
            match nf.recv(&mut rx_buf) {
                Ok(Some((len, meta))) => {
                    found += 1;
                    rx_pending = Some((len, meta));
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("netfront: {e}; disconnecting");
                    nf.disconnect();
                    break;
                }
            }
        }
        if idle_timeout && found > 0 {
            nf.stats.late_wakeups += 1;
        }
        // TX: port → ring, unless held.
        let now = nf.now();
        if hold_until.is_some_and(|t| now < t) {
            set_armed(&ep, port, &mut port_armed, false)?;
            continue;
        }
        hold_until = None;
        let mut blocked = false;
        for _ in 0..BATCH {
            let (len, meta) = match pending.take() {
                Some(p) => p,
                None => match port.recv(&mut buf)? {
                    Some(x) => x,
                    None => break,
                },
            };
            match nf.send_at(now, &buf[..len], &meta) {
                Ok(Sent::Queued) | Ok(Sent::Dropped) | Ok(Sent::TooBig) => {}
                Ok(Sent::Held(t)) => {
                    pending = Some((len, meta));
                    hold_until = Some(t);
                    blocked = true;
                    break;
                }
                Ok(Sent::RingFull) => {
                    pending = Some((len, meta));
                    blocked = true;
                    break;
                }
                Err(e) => {
                    log::warn!("netfront: {e}");
                    break;
                }
            }
        }
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
