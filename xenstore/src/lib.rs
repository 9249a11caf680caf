//! Xenstore: the configuration tree with watches and transactions that split drivers
//! use for their handshake (`docs/misc/xenstore.txt`, `io/xs_wire.h`).
//!
//! * [`Xenstore`] is the interface drivers use.
//! * [`XsClient`] implements it over any byte stream speaking the wire protocol:
//!   xenstored's Unix socket (`/var/run/xenstored/socket`), Linux's `/dev/xen/xenbus`,
//!   or a connection to the in-process server of the `xenstored` crate.
//! * [`wire`] is the pure protocol layer (header, types, errors, payloads).
//!
//! ```no_run
//! use xenstore::{with_transaction, Xenstore, XsClient, XsTx};
//! # fn main() -> Result<(), xenstore::XsError> {
//! let xs = XsClient::open_default()?;
//! xs.watch("/local/domain/0/backend/vif", "vif")?;
//! with_transaction(&xs, |tx| {
//!     xs.write(tx, "/local/domain/1/device/vif/0/state", b"4")
//! })?;
//! let ev = xs.wait_event(None)?;
//! # let _ = (ev, XsTx::NONE); Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod client;
mod events;
pub mod perms;
pub mod wire;

use std::os::fd::BorrowedFd;
use std::time::Duration;

pub use client::XsClient;
pub use perms::{XsAccess, XsPerm};
pub use wire::XsdError;

use xen_ids::DomId;

/// A transaction handle (`tx_id` on the wire). [`XsTx::NONE`] (0) means "outside any
/// transaction".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct XsTx(pub u32);

impl XsTx {
    /// No transaction.
    pub const NONE: XsTx = XsTx(0);
}

/// A watch event: `path` changed (created, written, removed, permissions changed), and
/// it matched the watch registered with `token`. Registering a watch also produces one
/// event for the watched path itself, straight away, as xenstored does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// The path that changed (relative if the watch path was relative).
    pub path: String,
    /// The token given to [`Xenstore::watch`].
    pub token: String,
}

/// A xenstore failure.
#[derive(Debug, thiserror::Error)]
pub enum XsError {
    /// The server answered `XS_ERROR` with this error (e.g. `ENOENT`, `EACCES`,
    /// `EAGAIN` for a conflicting transaction).
    #[error("xenstore error {0}")]
    Xsd(XsdError),
    /// The server answered `XS_ERROR` with a name outside `xsd_errors`.
    #[error("xenstore error {0:?} (not in xsd_errors)")]
    UnknownError(String),
    /// The request is invalid before it reaches the wire (bad path, oversize payload).
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The server sent something the protocol does not allow.
    #[error("xenstore protocol violation: {0}")]
    Protocol(String),
    /// The connection is closed (or failed); every later request fails with this.
    #[error("xenstore connection closed: {0}")]
    Disconnected(String),
    /// No reply within the client's request timeout.
    #[error("xenstore request timed out")]
    Timeout,
    /// An I/O error while opening or using the transport.
    #[error("xenstore I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl XsError {
    /// The xenstore error name, if the server answered one.
    pub fn xsd(&self) -> Option<XsdError> {
        match self {
            XsError::Xsd(e) => Some(*e),
            _ => None,
        }
    }

    /// Whether this is `EAGAIN` (a transaction conflict: retry the transaction).
    pub fn is_eagain(&self) -> bool {
        self.xsd() == Some(XsdError::EAGAIN)
    }

    /// Whether this is `ENOENT` (no such node).
    pub fn is_enoent(&self) -> bool {
        self.xsd() == Some(XsdError::ENOENT)
    }
}

/// Result of a xenstore operation.
pub type XsResult<T> = Result<T, XsError>;

/// A connection that can hand out another handle on itself (see [`XsClient::share`]):
/// a daemon's thread doing the xenstore work over the connection its platform opened.
pub trait ShareConnection: Xenstore + Sized + 'static {
    /// Another handle on this connection.
    fn share(&self) -> std::io::Result<Self>;
}

impl ShareConnection for XsClient {
    fn share(&self) -> std::io::Result<Self> {
        XsClient::share(self)
    }
}

/// The xenstore operations a split driver uses.
///
/// Paths are absolute (`/local/domain/1/device/vif/0`) or relative to the caller's
/// domain home (`device/vif/0` from domain 1 is `/local/domain/1/device/vif/0`).
/// Every data operation takes a transaction handle; pass [`XsTx::NONE`] outside
/// transactions. Implementations are thread-safe: one handle may be shared by every
/// thread of a driver.
///
/// Watch events are delivered asynchronously into a queue owned by the handle:
/// [`Xenstore::event_fd`] becomes readable whenever the queue is non-empty (register
/// it with epoll, level-triggered), [`Xenstore::try_event`] takes one event without
/// blocking, [`Xenstore::wait_event`] blocks for one.
pub trait Xenstore: Send + Sync {
    /// `XS_READ`: the value of `path` (`ENOENT` if it does not exist).
    fn read(&self, tx: XsTx, path: &str) -> XsResult<Vec<u8>>;
    /// `XS_WRITE`: sets the value of `path`, creating it and missing parents.
    fn write(&self, tx: XsTx, path: &str, value: &[u8]) -> XsResult<()>;
    /// `XS_MKDIR`: makes sure `path` exists (an existing value is kept).
    fn mkdir(&self, tx: XsTx, path: &str) -> XsResult<()>;
    /// `XS_RM`: removes `path` and its subtree; not an error if it does not exist
    /// but its parent does.
    fn rm(&self, tx: XsTx, path: &str) -> XsResult<()>;
    /// `XS_DIRECTORY`: the names (last components) of the children of `path`.
    fn directory(&self, tx: XsTx, path: &str) -> XsResult<Vec<String>>;
    /// `XS_GET_PERMS`: the permission entries of `path` (owner first).
    fn get_perms(&self, tx: XsTx, path: &str) -> XsResult<Vec<XsPerm>>;
    /// `XS_SET_PERMS`: replaces the permission entries of `path` (owner first). Only
    /// the owner or dom0 may; only dom0 may change the owner.
    fn set_perms(&self, tx: XsTx, path: &str, perms: &[XsPerm]) -> XsResult<()>;
    /// `XS_GET_DOMAIN_PATH`: the home of `domid` (`/local/domain/<domid>`).
    fn get_domain_path(&self, domid: DomId) -> XsResult<String>;
    /// `XS_IS_DOMAIN_INTRODUCED` (dom0 only): whether `domid` is alive as far as
    /// xenstored knows (introduced and not yet released or destroyed).
    fn is_domain_introduced(&self, domid: DomId) -> XsResult<bool>;
    /// `XS_WATCH`: watch `path` and its subtree; events carry `token`. One event for
    /// `path` itself is queued straight away.
    fn watch(&self, path: &str, token: &str) -> XsResult<()>;
    /// `XS_UNWATCH`: removes the watch registered with exactly `path` and `token`.
    /// Events already queued stay in the queue.
    fn unwatch(&self, path: &str, token: &str) -> XsResult<()>;
    /// `XS_TRANSACTION_START`: a new transaction. Its writes stay private until
    /// [`Xenstore::transaction_end`]; it sees each node as it was when the transaction
    /// first accessed it (xenstored's semantics).
    fn transaction_start(&self) -> XsResult<XsTx>;
    /// `XS_TRANSACTION_END`: commits (`commit = true`) or aborts. A commit fails with
    /// `EAGAIN` when a node the transaction used was changed meanwhile: run the whole
    /// transaction again ([`with_transaction`] does).
    fn transaction_end(&self, tx: XsTx, commit: bool) -> XsResult<()>;
    /// A file descriptor that is readable while watch events are queued (an eventfd;
    /// use it level-triggered and drain with [`Xenstore::try_event`]).
    fn event_fd(&self) -> BorrowedFd<'_>;
    /// Takes the oldest queued watch event, if any, without blocking.
    fn try_event(&self) -> Option<WatchEvent>;
    /// Waits for a watch event, at most `timeout` (`None`: forever). `Ok(None)` on
    /// timeout; `Err(Disconnected)` if the connection closed with no event queued.
    fn wait_event(&self, timeout: Option<Duration>) -> XsResult<Option<WatchEvent>>;

    /// Asks for **coalesced** watch events (`true`): at most one pending event per
    /// token, with the latest path, so the queue is bounded by the number of watches
    /// whatever is written under them; `false`: every event in order (the default).
    /// Returns whether the implementation honours the request (the default
    /// implementation does not coalesce, and returns `!on`).
    fn set_coalescing(&self, on: bool) -> bool {
        !on
    }

    /// Reads `path` as UTF-8 text.
    fn read_string(&self, tx: XsTx, path: &str) -> XsResult<String> {
        let v = self.read(tx, path)?;
        String::from_utf8(v).map_err(|_| XsError::Protocol(format!("value of {path} is not UTF-8")))
    }

    /// Reads `path`, `Ok(None)` if it does not exist.
    fn try_read(&self, tx: XsTx, path: &str) -> XsResult<Option<Vec<u8>>> {
        match self.read(tx, path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes every queued watch event without blocking.
    fn drain_events(&self) -> Vec<WatchEvent> {
        std::iter::from_fn(|| self.try_event()).collect()
    }
}

/// How many times [`with_transaction`] runs a transaction that keeps conflicting
/// before it gives up with `EAGAIN`.
pub const TRANSACTION_ATTEMPTS: u32 = 64;

/// Runs `body` inside a transaction and commits it, starting over (at most
/// [`TRANSACTION_ATTEMPTS`] times) when the commit reports `EAGAIN`. If `body`
/// fails, the transaction is aborted and the error returned (a body error of
/// `EAGAIN` also restarts, since xenstored may report conflicts early). `body` must be
/// safe to run more than once: it should only read and write xenstore through `tx`.
pub fn with_transaction<X, T, F>(xs: &X, mut body: F) -> XsResult<T>
where
    X: Xenstore + ?Sized,
    F: FnMut(XsTx) -> XsResult<T>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = xs.transaction_start()?;
        let out = match body(tx) {
            Ok(v) => v,
            Err(e) => {
                // The body's error is what matters; an abort failure is secondary.
                let _ = xs.transaction_end(tx, false);
                if e.is_eagain() && attempt < TRANSACTION_ATTEMPTS {
                    continue;
                }
                return Err(e);
            }
        };
        match xs.transaction_end(tx, true) {
            Ok(()) => return Ok(out),
            Err(e) if e.is_eagain() && attempt < TRANSACTION_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

impl<T: Xenstore + ?Sized> Xenstore for std::sync::Arc<T> {
    fn read(&self, tx: XsTx, path: &str) -> XsResult<Vec<u8>> {
        (**self).read(tx, path)
    }
    fn write(&self, tx: XsTx, path: &str, value: &[u8]) -> XsResult<()> {
        (**self).write(tx, path, value)
    }
    fn mkdir(&self, tx: XsTx, path: &str) -> XsResult<()> {
        (**self).mkdir(tx, path)
    }
    fn rm(&self, tx: XsTx, path: &str) -> XsResult<()> {
        (**self).rm(tx, path)
    }
    fn directory(&self, tx: XsTx, path: &str) -> XsResult<Vec<String>> {
        (**self).directory(tx, path)
    }
    fn get_perms(&self, tx: XsTx, path: &str) -> XsResult<Vec<XsPerm>> {
        (**self).get_perms(tx, path)
    }
    fn set_perms(&self, tx: XsTx, path: &str, perms: &[XsPerm]) -> XsResult<()> {
        (**self).set_perms(tx, path, perms)
    }
    fn get_domain_path(&self, domid: DomId) -> XsResult<String> {
        (**self).get_domain_path(domid)
    }
    fn is_domain_introduced(&self, domid: DomId) -> XsResult<bool> {
        (**self).is_domain_introduced(domid)
    }
    fn watch(&self, path: &str, token: &str) -> XsResult<()> {
        (**self).watch(path, token)
    }
    fn unwatch(&self, path: &str, token: &str) -> XsResult<()> {
        (**self).unwatch(path, token)
    }
    fn transaction_start(&self) -> XsResult<XsTx> {
        (**self).transaction_start()
    }
    fn transaction_end(&self, tx: XsTx, commit: bool) -> XsResult<()> {
        (**self).transaction_end(tx, commit)
    }
    fn event_fd(&self) -> BorrowedFd<'_> {
        (**self).event_fd()
    }
    fn try_event(&self) -> Option<WatchEvent> {
        (**self).try_event()
    }
    fn wait_event(&self, timeout: Option<Duration>) -> XsResult<Option<WatchEvent>> {
        (**self).wait_event(timeout)
    }
    fn set_coalescing(&self, on: bool) -> bool {
        (**self).set_coalescing(on)
    }
}
