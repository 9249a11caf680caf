//! Event channels: doorbells between domains.
//!
//! The frontend allocates an unbound port for its peer ([`EventChannels::alloc_unbound`])
//! and publishes its number in xenstore; the backend binds to it
//! ([`EventChannels::bind_interdomain`]). Either side rings the other with
//! [`EventChannels::notify`].
//!
//! Receiving follows Linux's `/dev/xen/evtchn` contract, in both implementations:
//! the handle is a pollable file descriptor ([`AsFd`]) that becomes readable when a
//! port fired; [`EventChannels::pending`] returns the fired ports; **a port that fired
//! stays masked** (further notifications are remembered but not reported) until the
//! driver hands it back with [`EventChannels::unmask`]. The usual loop is: wake up,
//! `pending`, process the rings of those ports, `unmask` them, re-check the rings.
//!
//! An implementation with one fd per port (the `xen-local` emulator's eventfds) may
//! also hand a port's own fd to the caller's poll loop ([`EventChannels::detach`]):
//! the caller then learns which port fired from its own poll, without asking the
//! handle, and takes the notification with one [`EventChannels::ack`]. On Xen (one
//! fd for all ports) `detach` answers `None` and nothing changes.
//!
//! Implementations: [`xen`] and the `xen-local` crate.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use xen_ids::DomId;

pub mod uapi;
pub mod xen;

/// An event channel port number, local to the domain that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Port(pub u32);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// Event channel errors.
#[derive(Debug, thiserror::Error)]
pub enum EvtchnError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The port is not bound through this handle.
    #[error("{0} is not bound through this handle")]
    UnknownPort(Port),
    /// The hypervisor refused the operation (wrong peer, port not unbound, no such
    /// domain...).
    #[error("refused: {0}")]
    Refused(String),
    /// [`EventChannels::ack`] of a port that is not detached.
    #[error("{0} is not detached")]
    NotDetached(Port),
    /// The kernel's ring of pending ports overflowed and was reset: some notifications
    /// were lost. Re-check every ring, then carry on.
    #[error("pending-event ring overflowed; events were lost")]
    Overflow,
}

/// A handle on this domain's event channels (`/dev/xen/evtchn`): several ports, one
/// pollable fd. Readable (`POLLIN`) when at least one port fired and is not masked.
pub trait EventChannels: AsFd + Send + Sync {
    /// Allocate a port that `peer` may bind to (`EVTCHNOP_alloc_unbound`).
    fn alloc_unbound(&self, peer: DomId) -> Result<Port, EvtchnError>;

    /// Bind a new local port to `peer`'s unbound port `remote`
    /// (`EVTCHNOP_bind_interdomain`). Fails unless `remote` was allocated for this
    /// domain and is still unbound.
    fn bind_interdomain(&self, peer: DomId, remote: Port) -> Result<Port, EvtchnError>;

    /// Ring the peer's end of `port`'s channel. A notification on a channel whose other
    /// end is not bound (yet, or any more) is silently dropped, as on Xen.
    fn notify(&self, port: Port) -> Result<(), EvtchnError>;

    /// Close `port`. The peer's end becomes unbound.
    fn unbind(&self, port: Port) -> Result<(), EvtchnError>;

    /// Non-blocking: store the ports that fired since the last call (each at most once)
    /// into `out` and return how many. Every returned port is now masked until
    /// [`unmask`](Self::unmask). Returns 0 when nothing is pending.
    fn pending(&self, out: &mut [Port]) -> Result<usize, EvtchnError>;

    /// Unmask `port` after processing it. If it was notified while masked it fires again
    /// at once.
    fn unmask(&self, port: Port) -> Result<(), EvtchnError>;

    /// Takes `port` out of the handle's fd and returns a fd of its own, for a caller
    /// that polls each port itself; `None` (the default) when the implementation has no
    /// fd per port (Xen's `/dev/xen/evtchn`), and then nothing changed.
    ///
    /// A detached port is no longer reported by [`pending`](Self::pending) and has no
    /// mask: its fd is readable (level) from a notification until [`ack`](Self::ack)
    /// takes it, and a notification that arrived before the detach is not lost (the fd
    /// is readable). [`unmask`](Self::unmask) of a detached port does nothing; to keep
    /// it masked the caller stops polling the fd (notifications meanwhile keep it
    /// readable). The caller removes the fd from its poll set before it unbinds the
    /// port.
    fn detach(&self, port: Port) -> Result<Option<OwnedFd>, EvtchnError> {
        let _ = port;
        Ok(None)
    }

    /// Takes the notifications of detached `port`: its fd is not readable again until
    /// the next one. Whether there was one. (The default: no port is detached.)
    fn ack(&self, port: Port) -> Result<bool, EvtchnError> {
        Err(EvtchnError::UnknownPort(port))
    }

    /// Another handle on this domain's event channels, with its own fd: the ports bound
    /// through it fire there only (one handle per thread that waits for events, as a
    /// process opens `/dev/xen/evtchn` once per thread).
    fn reopen(&self) -> Result<Self, EvtchnError>
    where
        Self: Sized;
}
