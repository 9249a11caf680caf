//! Event-channel ports the worker polls itself: where the platform has a fd per port
//! (`local`: an eventfd), each port of the worker's queues is
//! [detached](hypervisor::evtchn::EventChannels::detach) from its event-channel handle
//! and its fd sits in the worker's epoll under a key of its own. A wake-up then names
//! the port, and taking it costs one `read` ([`EventChannels::ack`]) instead of the
//! handle's `epoll_wait`, `read` and `epoll_ctl` re-arm. Masking such a port (a
//! spurious-event backoff) is disabling its fd in the epoll. On Xen no port detaches and
//! the handle's fd reports them all, as before.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use hypervisor::evtchn::{EventChannels, EvtchnError, Port as EvtPort};
use hypervisor::poll::Epoll;

/// A detached port's fd and its place in the worker's epoll.
struct OwnPort {
    fd: OwnedFd,
    key: u64,
    /// Enabled in the epoll (not kept masked).
    polled: bool,
}

/// The worker's detached ports, by port and by epoll key.
#[derive(Default)]
pub(super) struct OwnPorts {
    by_port: HashMap<EvtPort, OwnPort>,
    by_key: HashMap<u64, EvtPort>,
}

impl OwnPorts {
    /// Detaches `port` from `evtchn` and polls its fd in `epoll` under `key`; false
    /// (and `key` unused) when the platform has no fd per port. On failure the port
    /// may be detached but is not polled: the caller unbinds it.
    pub(super) fn watch<E: EventChannels + ?Sized>(
        &mut self,
        evtchn: &E,
        epoll: &Epoll,
        port: EvtPort,
        key: u64,
    ) -> Result<bool, EvtchnError> {
        let Some(fd) = evtchn.detach(port)? else {
            return Ok(false);
        };
        epoll.add(&fd, key).map_err(|source| EvtchnError::Io {
            op: "epoll_ctl add",
            source,
        })?;
        self.by_key.insert(key, port);
        self.by_port.insert(
            port,
            OwnPort {
                fd,
                key,
                polled: true,
            },
        );
        Ok(true)
    }

    /// The port polled under `key`.
    pub(super) fn port_of(&self, key: u64) -> Option<EvtPort> {
        self.by_key.get(&key).copied()
    }

    /// Whether `port` is polled here (rather than through the handle's fd).
    pub(super) fn contains(&self, port: EvtPort) -> bool {
        self.by_port.contains_key(&port)
    }

    /// Enables (unmask) or disables (keep masked) `port`'s fd in `epoll`.
    pub(super) fn set_polled(&mut self, epoll: &Epoll, port: EvtPort, on: bool) {
        let Some(p) = self.by_port.get_mut(&port) else {
            return;
        };
        if p.polled == on {
            return;
        }
        match epoll.set(&p.fd, p.key, on) {
            Ok(()) => p.polled = on,
            Err(e) => log::warn!("netback: epoll {port}: {e}"),
        }
    }

    /// Takes `port`'s fd out of `epoll` (before the port is unbound) and closes it.
    pub(super) fn forget(&mut self, epoll: &Epoll, port: EvtPort) {
        if let Some(p) = self.by_port.remove(&port) {
            self.by_key.remove(&p.key);
            if let Err(e) = epoll.del(&p.fd) {
                log::warn!("netback: epoll del {port}: {e}");
            }
        }
    }
}
