//! Why netfront failed: in the handshake with the backend, or because the backend broke
//! the ring protocol.

use hypervisor::evtchn::EvtchnError;
use hypervisor::grant::{GrantError, MemError};
use hypervisor::xenbus::{XenbusError, XenbusState};
use shared_ring::RingError;
use xenstore::XsError;

/// Why netfront failed.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// A handshake step failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The backend broke the ring protocol: the device must be disconnected.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// Not connected.
    #[error("not connected")]
    NotConnected,
    /// The port frames are read from failed ([`netport::Port::recv`]).
    #[error("port: {0}")]
    Port(#[source] std::io::Error),
    /// The port's frames may be longer than a run of TX pages takes
    /// ([`crate::Netfront::send_from_port`]).
    #[error("port max_frame {max_frame} is longer than the {max_pages} TX pages a frame may take")]
    PortFrame {
        /// The port's largest frame, bytes.
        max_frame: usize,
        /// The most TX pages one frame may take.
        max_pages: usize,
    },
}

/// A failed step of the xenbus handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// A key the backend or toolstack writes is missing or invalid.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// A xenstore request failed.
    #[error("{what}: {source}")]
    Xenstore {
        /// What the request was for.
        what: &'static str,
        /// The failure.
        source: XsError,
    },
    /// The backend does not offer a feature this frontend requires.
    #[error("backend does not offer {0}")]
    MissingFeature(&'static str),
    /// A feature key of the backend holds something else than 0 or 1.
    #[error("backend {0}")]
    BadFeature(#[source] netport::negotiate::BadFeature),
    /// The backend did not reach an expected state in time.
    #[error("backend {backend} stayed in state {state:?}, expected {expected:?}")]
    Timeout {
        /// The backend's directory.
        backend: String,
        /// Its last state.
        state: XenbusState,
        /// The states waited for.
        expected: Vec<XenbusState>,
    },
    /// Pages could not be granted to the backend.
    #[error("grant {what}: {source}")]
    Grant {
        /// Which pages.
        what: &'static str,
        /// The failure.
        source: GrantError,
    },
    /// A ring could not be set up.
    #[error("{what}: {source}")]
    Ring {
        /// Which ring operation.
        what: &'static str,
        /// The failure.
        source: RingError,
    },
    /// The event channel could not be allocated.
    #[error("event channel: {0}")]
    EventChannel(#[source] EvtchnError),
}

/// A ring protocol violation by the backend (or a ring this frontend can no longer use).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An impossible index on a ring.
    #[error("{which} ring: {source}")]
    Ring {
        /// `TX` or `RX`.
        which: &'static str,
        /// The failure.
        source: RingError,
    },
    /// A granted buffer could not be read or written.
    #[error("{which} buffer: {source}")]
    Buffer {
        /// `TX` or `RX`.
        which: &'static str,
        /// The failure.
        source: MemError,
    },
    /// A TX response names a request id that is not in flight.
    #[error("TX response for id {0} not in flight")]
    UnknownTxId(usize),
}

/// Every xenstore key netfront reads is part of the handshake.
impl From<XenbusError> for FrontError {
    fn from(e: XenbusError) -> Self {
        HandshakeError::Xenbus(e).into()
    }
}

impl BackendError {
    /// A TX ring failure.
    pub(crate) fn tx_ring(source: RingError) -> FrontError {
        BackendError::Ring {
            which: "TX",
            source,
        }
        .into()
    }

    /// An RX ring failure.
    pub(crate) fn rx_ring(source: RingError) -> FrontError {
        BackendError::Ring {
            which: "RX",
            source,
        }
        .into()
    }
}
