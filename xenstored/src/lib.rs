//! A xenstore server: an in-process xenstored speaking the real wire protocol,
//! so that the very `xenstore::XsClient` used on Xen is exercised in tests and
//! on the `local` platform.
//!
//! Semantics follow Xen's C xenstored (`tools/xenstored/`):
//!
//! * a tree of nodes with per-node permissions (owner + ACL, `n`/`r`/`w`/`b`); dom0 is
//!   privileged; a domain's home `/local/domain/<domid>` is created owned by that
//!   domain when it is introduced, so a guest may write its own subtree and nodes it
//!   was granted (the toolstack, as dom0, creates the frontend's device directory and
//!   gives it to the guest with `SET_PERMS`);
//! * `WRITE` and `MKDIR` create missing parents (inheriting the parent's permissions,
//!   owned by an unprivileged creator); `RM` removes a subtree;
//! * watches fire on a change of the watched node or anything below it, and once
//!   straight after registration; events respect read permissions;
//! * transactions are overlays on the live tree, each node frozen at its first access;
//!   the commit fails with `EAGAIN` when any node the transaction read or wrote changed
//!   meanwhile (xenstored's generation check); watch events of a transaction fire at
//!   commit, once per node;
//! * quotas per unprivileged domain, with xenstored's defaults ([`Quotas`]);
//! * malformed input gets an error reply (`EINVAL`, `ENOSYS` for unknown or
//!   unsupported types, `E2BIG`…); a header announcing more than
//!   `XENSTORE_PAYLOAD_MAX` closes that connection, as xenstored does. Nothing a client
//!   sends can make the server panic or disturb other connections.
//!
//! Not implemented (answered with `ENOSYS`): `CONTROL`, `INTRODUCE` (domains are
//! introduced through [`Xenstored::connect`]/[`Xenstored::introduce`], there is no ring
//! page to map), `RESUME`, `SET_TARGET`, `GET/SET_FEATURE`, `GET/SET_QUOTA`.
//!
//! ```
//! use xenstore::{Xenstore, XsClient, XsTx};
//! use xenstored::Xenstored;
//! use xen_ids::DomId;
//! let xsd = Xenstored::new();
//! let dom0 = XsClient::new(xsd.connect(DomId(0)).unwrap()).unwrap();
//! let guest = XsClient::new(xsd.connect(DomId(7)).unwrap()).unwrap();
//! guest.write(XsTx::NONE, "data/x", b"1").unwrap();
//! assert_eq!(dom0.read(XsTx::NONE, "/local/domain/7/data/x").unwrap(), b"1");
//! ```
#![forbid(unsafe_code)]

mod conn;
mod store;
mod tree;
mod watch;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use conn::Outbox;
use store::State;
use xen_ids::DomId;
use xenstore::wire::{self, XsMessage, XsdError, XsdSockmsgType, XENSTORE_REL_PATH_MAX};

type ConnId = u64;

/// Per-domain limits for unprivileged domains; the defaults are xenstored's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own (`nodes`, default 1000).
    pub nodes: u32,
    /// Watches a domain may have, over all its connections (`watches`, default 128).
    pub watches: u32,
    /// Open transactions of a domain (`transactions`, default 10).
    pub transactions: u32,
    /// Largest value a domain may write (`node-size`, default 2048 bytes).
    pub node_size: usize,
    /// Most permission entries a domain may set on a node (`node-permissions`, 5).
    pub perms: usize,
    /// Longest path below the domain's home (`path-max`, default
    /// `XENSTORE_REL_PATH_MAX`).
    pub path_max: usize,
    /// Output a connection may leave unread (replies and watch events) before it is
    /// disconnected, in bytes (default 1 MiB).
    pub outbox_bytes: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            nodes: 1000,
            watches: 128,
            transactions: 10,
            node_size: 2048,
            perms: 5,
            path_max: XENSTORE_REL_PATH_MAX,
            outbox_bytes: 1 << 20,
        }
    }
}

/// The local xenstore server. Cheap to clone (a handle on shared state); connections
/// are served by threads that live until the peer closes or [`Xenstored::shutdown`].
#[derive(Clone)]
pub struct Xenstored {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    next_conn: AtomicU64,
    quotas: Quotas,
    listeners: Mutex<Vec<(PathBuf, Arc<AtomicBool>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every request runs to completion under this lock without panicking paths; if a
    // thread ever panicked, the state is still structurally valid, so keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Xenstored {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Xenstored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xenstored")
            .field("quotas", &self.inner.quotas)
            .finish_non_exhaustive()
    }
}

impl Xenstored {
    /// A server with xenstored's default quotas and the initial tree (`/`,
    /// `/local/domain`).
    pub fn new() -> Self {
        Self::with_quotas(Quotas::default())
    }

    /// A server with the given quotas.
    pub fn with_quotas(quotas: Quotas) -> Self {
        Xenstored {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new()),
                next_conn: AtomicU64::new(1),
                quotas,
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A new connection for domain `domid` (introducing the domain first if needed):
    /// returns the client end of a socketpair whose server end knows the domid.
    /// Domain 0 is privileged. The returned stream can be handed to another process
    /// (SCM_RIGHTS) or wrapped in an [`XsClient`](super::XsClient).
    pub fn connect(&self, domid: DomId) -> io::Result<UnixStream> {
        self.introduce(domid);
        let (client, server) = UnixStream::pair()?;
        self.serve(server, domid)?;
        Ok(client)
    }

    /// Serves an already connected stream as domain `domid` (introducing it if
    /// needed).
    pub fn serve(&self, stream: UnixStream, domid: DomId) -> io::Result<()> {
        self.introduce(domid);
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let out = Arc::new(Outbox::new(
            stream.try_clone()?,
            self.inner.quotas.outbox_bytes,
        ));
        lock(&self.inner.state).add_conn(id, domid, Arc::clone(&out));
        let w = Arc::clone(&out);
        let spawned = std::thread::Builder::new()
            .name(format!("xenstored-w{id}"))
            .spawn(move || w.writer_loop())
            .and_then(|_| {
                let inner = Arc::clone(&self.inner);
                let o = Arc::clone(&out);
                std::thread::Builder::new()
                    .name(format!("xenstored-r{id}"))
                    .spawn(move || conn::reader_loop(inner, id, stream, o))
            });
        if let Err(e) = spawned {
            out.close();
            self.inner.disconnect(id);
            return Err(e);
        }
        Ok(())
    }

    /// Listens on a Unix socket path, like xenstored's socket: every connection is
    /// domain 0 (privileged). A stale socket file at `path` is replaced. The listener
    /// runs on its own thread until [`Xenstored::shutdown`].
    pub fn listen(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        lock(&self.inner.listeners).push((path, Arc::clone(&stop)));
        let server = self.clone();
        std::thread::Builder::new()
            .name("xenstored-listen".into())
            .spawn(move || {
                for s in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    match s {
                        Ok(s) => {
                            if let Err(e) = server.serve(s, DomId::DOM0) {
                                log::warn!("xenstored(local): cannot serve connection: {e}");
                            }
                        }
                        Err(e) => log::warn!("xenstored(local): accept: {e}"),
                    }
                }
            })?;
        Ok(())
    }

    /// Introduces a domain (idempotent): creates its home `/local/domain/<domid>`
    /// owned by it (others: no access) if missing, and fires `@introduceDomain`.
    pub fn introduce(&self, domid: DomId) {
        lock(&self.inner.state).introduce(domid);
    }

    /// Releases a domain (as xenstored does on `RELEASE` or domain destruction):
    /// closes its connections, aborts their transactions, removes every node it owns
    /// (with their subtrees) and fires `@releaseDomain`. Dom0 cannot be released.
    pub fn release(&self, domid: DomId) {
        if domid == DomId::DOM0 {
            return;
        }
        let outboxes = lock(&self.inner.state).release(domid);
        for o in outboxes {
            o.close();
        }
    }

    /// Domain `domid` died (the local hypervisor's death hook): it is no longer
    /// introduced (`XS_IS_DOMAIN_INTRODUCED` answers `F`) and `@releaseDomain` fires, as
    /// on Xen when a domain is destroyed; its nodes stay for the toolstack to remove. A
    /// new connection for the same id introduces it again. Dom0 never dies.
    pub fn domain_died(&self, domid: DomId) {
        lock(&self.inner.state).domain_died(domid);
    }

    /// Stops the listeners and closes every connection.
    pub fn shutdown(&self) {
        for (path, stop) in lock(&self.inner.listeners).drain(..) {
            stop.store(true, Ordering::Release);
            // Wake the accept loop; it sees the flag and exits.
            let _ = UnixStream::connect(&path);
            let _ = std::fs::remove_file(&path);
        }
        let outboxes = lock(&self.inner.state).outboxes();
        for o in outboxes {
            o.close();
        }
    }

    /// The value at an absolute path, read with dom0's rights (for tests and the
    /// platform daemon's diagnostics).
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.inner.state)
            .tree()
            .raw(path)
            .map(|n| n.value.clone())
    }

    /// Number of nodes in the tree.
    pub fn node_count(&self) -> usize {
        lock(&self.inner.state).tree().len()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.state).conn_count()
    }

    /// A sorted dump of the whole tree, `path → value`.
    pub fn dump(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.inner.state).tree().dump()
    }
}

impl Inner {
    /// Processes one request of connection `id` and queues the reply (and any watch
    /// events) on the outboxes.
    pub(crate) fn process(&self, id: ConnId, msg: &XsMessage) {
        let mut st = lock(&self.state);
        let Some((domid, out)) = st.conn(id) else {
            return;
        };
        let mut after = Vec::new();
        let result = st.handle(&self.quotas, id, domid, msg, &mut after);
        let reply = match result {
            Ok(payload) => XsMessage::with_raw_type(
                msg.header.type_,
                msg.header.req_id,
                msg.header.tx_id,
                payload,
            ),
            Err(e) => XsMessage::new(
                XsdSockmsgType::Error,
                msg.header.req_id,
                msg.header.tx_id,
                e.to_payload(),
            ),
        };
        let reply = reply.unwrap_or_else(|_| {
            // A reply above XENSTORE_PAYLOAD_MAX (a huge DIRECTORY): E2BIG instead.
            XsMessage {
                header: wire::XsdSockmsg {
                    type_: XsdSockmsgType::Error as u32,
                    req_id: msg.header.req_id,
                    tx_id: msg.header.tx_id,
                    len: 0,
                },
                payload: XsdError::E2BIG.to_payload(),
            }
        });
        out.push(conn::encode(&reply));
        for ev in after {
            out.push(ev);
        }
    }

    /// Forgets connection `id`: its watches, its transactions.
    pub(crate) fn disconnect(&self, id: ConnId) {
        let mut st = lock(&self.state);
        st.drop_conn(id);
    }
}
