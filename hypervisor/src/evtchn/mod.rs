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
//! Implementations: [`xen`] and the `xen-local` crate.

use std::fmt;
use std::io;
use std::os::fd::AsFd;

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

    /// Another handle on this domain's event channels, with its own fd: the ports bound
    /// through it fire there only (one handle per thread that waits for events, as a
    /// process opens `/dev/xen/evtchn` once per thread).
    fn reopen(&self) -> Result<Self, EvtchnError>
    where
        Self: Sized;
}
