//! The local hypervisor: owns every domain's grant table, the granted memory (sealed
//! memfds) and the event channels (eventfds), and answers domains over SOCK_SEQPACKET
//! Unix sockets, handing out file descriptors with SCM_RIGHTS.
//!
//! It runs in-process ([`LocalHypervisor::connect`], one thread per connection) or as
//! the `local-hypervisor` daemon ([`LocalHypervisor::listen`]).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use super::proto::*;
use super::sys;
use super::table;
use hypervisor::grant::{GntStatus, SharedMem, PAGE_SIZE};
use xen_ids::DomId;

/// The most pages one `share` call may allocate (16 MiB).
pub const MAX_SHARE_PAGES: u32 = 4096;
/// The most references one `map` call may map.
pub const MAX_MAP_REFS: u32 = 4096;
/// The environment variable through which [`LocalHypervisor::spawn_domain`] tells the
/// child which inherited descriptor is its hypervisor connection.
pub const FD_ENV: &str = "LOCAL_HYPERVISOR_FD";

/// Hands a domain a connection to the xenstore server (e.g. the xenstore module's
/// local server's `connect(domid)`), so that it can travel over the hypervisor socket.
pub type XenstoreConnector = Box<dyn Fn(DomId) -> io::Result<OwnedFd> + Send + Sync>;

/// Counts of live objects, for leak checks and operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Domains that ever attached.
    pub domains: usize,
    /// Live grant allocations (one per `share`).
    pub allocations: usize,
    /// Grant references in use.
    pub grants: usize,
    /// Bound or unbound event channel ports.
    pub ports: usize,
    /// Open connections.
    pub connections: usize,
}

struct Alloc {
    memfd: OwnedFd,
    ro_fd: Option<OwnedFd>,
    readonly: bool,
    grefs: Vec<u32>,
    conn: u64,
}

impl Alloc {
    /// The fd to hand to a peer: read-only unless `writable` is asked and allowed.
    fn fd_for(&mut self, writable: bool) -> io::Result<OwnedFd> {
        if writable && !self.readonly {
            return self.memfd.try_clone();
        }
        if self.ro_fd.is_none() {
            self.ro_fd = Some(sys::reopen_readonly(self.memfd.as_fd())?);
        }
        self.ro_fd.as_ref().expect("just set").try_clone()
    }
}

struct PortState {
    conn: u64,
    remote: DomId,
    /// The remote port when bound (interdomain), `None` while unbound.
    bound: Option<u32>,
    /// Eventfd this port receives on.
    inbox: OwnedFd,
    /// Eventfd the other end receives on (this port sends to it).
    peer_inbox: OwnedFd,
}

struct Dom {
    table_fd: OwnedFd,
    table: SharedMem,
    free_grefs: Vec<u32>,
    next_gref: u32,
    allocs: HashMap<u32, Alloc>,
    /// gref → (allocation, page index).
    grefs: HashMap<u32, (u32, u32)>,
    ports: BTreeMap<u32, PortState>,
    next_port: u32,
    /// Open connections attached as this domain; when the last one closes, the domain
    /// has died (its process exited or was killed) and the death hook runs.
    conns: usize,
}

impl Dom {
    fn new(domid: DomId) -> io::Result<Dom> {
        let name = std::ffi::CString::new(format!("grant-table-dom{}", domid.0)).expect("no NUL");
        let table_fd = sys::sealed_memfd(&name, table::TABLE_BYTES)?;
        let table = sys::mmap_fd(table_fd.as_fd(), table::TABLE_BYTES, 0, true)?;
        Ok(Dom {
            table_fd,
            table,
            free_grefs: Vec::new(),
            next_gref: table::FIRST_GREF,
            allocs: HashMap::new(),
            grefs: HashMap::new(),
            ports: BTreeMap::new(),
            next_port: 1,
            conns: 0,
        })
    }

    fn free_gref_count(&self) -> u32 {
        table::CAPACITY - self.next_gref + self.free_grefs.len() as u32
    }

    fn take_gref(&mut self) -> u32 {
        self.free_grefs.pop().unwrap_or_else(|| {
            let g = self.next_gref;
            self.next_gref += 1;
            g
        })
    }

    fn set_entry(&self, gref: u32, e: u64) {
        self.table
            .store_u64(gref as usize * 8, e, Ordering::Release)
            .expect("gref < CAPACITY");
    }

    fn entry(&self, gref: u32) -> u64 {
        self.table
            .load_u64(gref as usize * 8, Ordering::Acquire)
            .expect("gref < CAPACITY")
    }

    fn revoke(&mut self, alloc: u32) -> Option<Alloc> {
        let a = self.allocs.remove(&alloc)?;
        for &g in &a.grefs {
            self.set_entry(g, 0);
            self.grefs.remove(&g);
            self.free_grefs.push(g);
        }
        Some(a)
    }
}

#[derive(Default)]
struct State {
    domains: HashMap<DomId, Dom>,
    next_alloc: u32,
    next_conn: u64,
    connections: usize,
}

type Refusal = (GntStatus, String);

fn refuse<T>(status: GntStatus, msg: impl Into<String>) -> Result<T, Refusal> {
    Err((status, msg.into()))
}

fn io_refusal(e: io::Error) -> Refusal {
    (GntStatus::GENERAL_ERROR, format!("local hypervisor: {e}"))
}

impl State {
    fn dom(&mut self, d: DomId) -> Result<&mut Dom, Refusal> {
        match self.domains.get_mut(&d) {
            Some(x) => Ok(x),
            None => refuse(GntStatus::BAD_DOMAIN, format!("no such domain dom{d}")),
        }
    }

    /// Tear down what one connection created.
    fn close_conn(&mut self, me: DomId, conn: u64) {
        let Some(dom) = self.domains.get_mut(&me) else {
            return;
        };
        let allocs: Vec<u32> = dom
            .allocs
            .iter()
            .filter(|(_, a)| a.conn == conn)
            .map(|(k, _)| *k)
            .collect();
        for a in allocs {
            dom.revoke(a);
        }
        let ports: Vec<u32> = dom
            .ports
            .iter()
            .filter(|(_, p)| p.conn == conn)
            .map(|(k, _)| *k)
            .collect();
        for p in ports {
            self.unbind(me, p);
        }
    }

    fn unbind(&mut self, me: DomId, port: u32) -> Option<()> {
        let p = self.domains.get_mut(&me)?.ports.remove(&port)?;
        if let Some(rp) = p.bound {
            if let Some(r) = self
                .domains
                .get_mut(&p.remote)
                .and_then(|d| d.ports.get_mut(&rp))
            {
                r.bound = None; // the other end becomes unbound, as in Xen
            }
        }
        Some(())
    }
}

struct Inner {
    state: Mutex<State>,
    xenstore: Mutex<Option<XenstoreConnector>>,
    on_death: Mutex<Option<DeathHook>>,
}

/// Called with a domain's id when its last connection closed (the domain died).
pub type DeathHook = Box<dyn Fn(DomId) + Send + Sync>;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The local hypervisor (see the module documentation). Cloning shares it.
#[derive(Clone)]
pub struct LocalHypervisor {
    inner: Arc<Inner>,
}

impl Default for LocalHypervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LocalHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHypervisor")
            .field("stats", &self.stats())
            .finish()
    }
}

impl LocalHypervisor {
    /// An empty hypervisor: no domains yet (a domain comes into being when it first
    /// attaches).
    pub fn new() -> Self {
        LocalHypervisor {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_alloc: 1,
                    ..State::default()
                }),
                xenstore: Mutex::new(None),
                on_death: Mutex::new(None),
            }),
        }
    }

    /// Runs `hook` whenever a domain dies: its last connection to this hypervisor closed
    /// (the process exited or was killed, or a test dropped its last handle). What the
    /// domain granted is revoked and its event channels are closed before the hook runs.
    /// The platforms use it to tell xenstore (`@releaseDomain`), as Xen does when a
    /// domain is destroyed.
    pub fn set_death_hook(&self, hook: DeathHook) {
        *self
            .inner
            .on_death
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Let domains ask for a xenstore connection (`Domain::xenstore`).
    pub fn set_xenstore(&self, connector: XenstoreConnector) {
        *self
            .inner
            .xenstore
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(connector);
    }

    /// A new connection for domain `domid`, served by a new thread: the returned socket
    /// is handed to `Domain::from_fd` (in this process or, inherited, in a child).
    pub fn connect(&self, domid: DomId) -> io::Result<OwnedFd> {
        if domid.0 >= DomId::FIRST_RESERVED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("dom{domid} is reserved"),
            ));
        }
        let (ours, theirs) = sys::seqpacket_pair()?;
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name(format!("local-hv-{}", domid.0))
            .spawn(move || serve(inner, ours, Some(domid)))?;
        Ok(theirs)
    }

    /// Start `cmd` as domain `domid`: the child inherits a connection made by
    /// [`connect`](Self::connect), named by the environment variable [`FD_ENV`], and
    /// picks it up with [`Domain::from_env`](super::Domain::from_env). Unlike a domain
    /// attaching to the daemon's socket, the child cannot claim another domid: the
    /// connection was made for `domid`. Use a fresh `Command` for every call.
    pub fn spawn_domain(
        &self,
        domid: DomId,
        cmd: &mut std::process::Command,
    ) -> io::Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let fd = self.connect(domid)?;
        let raw = fd.as_raw_fd();
        cmd.env(FD_ENV, raw.to_string());
        // SAFETY: the closure runs between fork and exec and only calls fcntl, which is
        // async-signal-safe; `raw` stays open in the parent until spawn returns, so the
        // child has it open while the closure borrows it.
        unsafe {
            cmd.pre_exec(move || {
                let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
                let flags = rustix::io::fcntl_getfd(fd)?;
                rustix::io::fcntl_setfd(fd, flags - rustix::io::FdFlags::CLOEXEC)?;
                Ok(())
            });
        }
        let child = cmd.spawn();
        drop(fd); // the parent's copy; the child has its own
        child
    }

    /// Accept domains on a Unix socket at `path` (the daemon mode), each connection in
    /// its own thread. A connecting domain claims its domid in its first message: in
    /// the emulation, anyone who can open the socket can claim any domid (the socket's
    /// file permissions are the access control).
    pub fn listen(&self, path: &Path) -> io::Result<std::thread::JoinHandle<()>> {
        let listener = sys::seqpacket_listen(path)?;
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("local-hv-accept".into())
            .spawn(move || loop {
                match sys::accept(&listener) {
                    Ok(sock) => {
                        let inner = inner.clone();
                        if let Err(e) = std::thread::Builder::new()
                            .name("local-hv-conn".into())
                            .spawn(move || serve(inner, sock, None))
                        {
                            log::error!("local hypervisor: cannot spawn a connection thread: {e}");
                        }
                    }
                    Err(e) => {
                        log::error!("local hypervisor: accept: {e}");
                        if e.raw_os_error() == Some(rustix::io::Errno::BADF.raw_os_error())
                            || e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                        {
                            return;
                        }
                    }
                }
            })
    }

    /// Counts of live objects.
    pub fn stats(&self) -> Stats {
        let s = self.inner.lock();
        Stats {
            domains: s.domains.len(),
            allocations: s.domains.values().map(|d| d.allocs.len()).sum(),
            grants: s.domains.values().map(|d| d.grefs.len()).sum(),
            ports: s.domains.values().map(|d| d.ports.len()).sum(),
            connections: s.connections,
        }
    }
}

fn serve(inner: Arc<Inner>, sock: OwnedFd, assigned: Option<DomId>) {
    let conn = {
        let mut s = inner.lock();
        s.next_conn += 1;
        s.connections += 1;
        s.next_conn
    };
    let mut me: Option<DomId> = None;
    let mut buf = vec![0u8; sys::MAX_MSG];
    loop {
        let r = match sys::recv_msg(&sock, &mut buf) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("local hypervisor: receive: {e}");
                break;
            }
        };
        if r.len == 0 && r.fds.is_empty() {
            break; // peer closed
        }
        drop(r.fds); // domains never send descriptors; close any that came
        let result = if r.truncated {
            refuse(GntStatus::GENERAL_ERROR, "message too large")
        } else {
            handle(&inner, &mut me, assigned, conn, &buf[..r.len])
        };
        let (w, fds) = match result {
            Ok(x) => x,
            Err((st, msg)) => (Writer::err(st, &msg), Vec::new()),
        };
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = sys::send_msg(&sock, &w.buf, &borrowed) {
            log::warn!("local hypervisor: send: {e}");
            break;
        }
    }
    // The domain died when this was its last connection.
    let died = {
        let mut s = inner.lock();
        s.connections -= 1;
        let mut died = None;
        if let Some(me) = me {
            s.close_conn(me, conn);
            let d = s
                .domains
                .get_mut(&me)
                .expect("an attached domain stays known");
            d.conns -= 1;
            if d.conns == 0 {
                died = Some(me);
            }
        }
        died
    };
    if let Some(d) = died {
        let hook = inner.on_death.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hook.as_ref() {
            h(d);
        }
    }
}

type Reply = (Writer, Vec<OwnedFd>);

fn handle(
    inner: &Inner,
    me: &mut Option<DomId>,
    assigned: Option<DomId>,
    conn: u64,
    msg: &[u8],
) -> Result<Reply, Refusal> {
    let mut r = Reader::new(msg);
    let bad = |e: Malformed| (GntStatus::GENERAL_ERROR, e.to_string());
    let op = r.u16().map_err(bad)?;
    if op == OP_HELLO {
        let claimed = r.u16().map_err(bad)?;
        r.end().map_err(bad)?;
        let d = match (assigned, claimed) {
            (Some(a), DOMID_ASSIGNED) => a,
            (Some(a), c) if a.0 == c => a,
            (Some(a), c) => {
                return refuse(
                    GntStatus::PERMISSION_DENIED,
                    format!("connection belongs to dom{a}, not dom{c}"),
                )
            }
            (None, DOMID_ASSIGNED) => return refuse(GntStatus::BAD_DOMAIN, "claim a domain id"),
            (None, c) if c >= DomId::FIRST_RESERVED => {
                return refuse(GntStatus::BAD_DOMAIN, format!("dom{c} is reserved"))
            }
            (None, c) => DomId(c),
        };
        if me.is_some() {
            return refuse(GntStatus::GENERAL_ERROR, "already attached");
        }
        let mut s = inner.lock();
        if let std::collections::hash_map::Entry::Vacant(v) = s.domains.entry(d) {
            v.insert(Dom::new(d).map_err(io_refusal)?);
        }
        s.domains.get_mut(&d).expect("just inserted").conns += 1;
        *me = Some(d);
        let mut w = Writer::ok();
        w.u16(d.0);
        return Ok((w, Vec::new()));
    }
    let Some(me) = *me else {
        return refuse(GntStatus::GENERAL_ERROR, "HELLO first");
    };
    match op {
        OP_PING => {
            r.end().map_err(bad)?;
            Ok((Writer::ok(), Vec::new()))
        }
        OP_SHARE => {
            let peer = DomId(r.u16().map_err(bad)?);
            let writable = r.bool().map_err(bad)?;
            let pages = r.u32().map_err(bad)?;
            r.end().map_err(bad)?;
            if pages == 0 || pages > MAX_SHARE_PAGES {
                return refuse(
                    GntStatus::GENERAL_ERROR,
                    format!("page count {pages} not in 1..={MAX_SHARE_PAGES}"),
                );
            }
            let mut s = inner.lock();
            let alloc = s.next_alloc;
            let dom = s.dom(me)?;
            if dom.free_gref_count() < pages {
                return refuse(GntStatus::GENERAL_ERROR, "grant table full");
            }
            let name =
                std::ffi::CString::new(format!("grant-dom{}-{alloc}", me.0)).expect("no NUL");
            let memfd = sys::sealed_memfd(&name, pages as usize * PAGE_SIZE).map_err(io_refusal)?;
            let client_fd = memfd.try_clone().map_err(io_refusal)?;
            let mut grefs = Vec::with_capacity(pages as usize);
            for page in 0..pages {
                let g = dom.take_gref();
                dom.set_entry(g, table::entry(peer, alloc, !writable));
                dom.grefs.insert(g, (alloc, page));
                grefs.push(g);
            }
            let mut w = Writer::ok();
            w.u32(alloc).u32(pages);
            for g in &grefs {
                w.u32(*g);
            }
            dom.allocs.insert(
                alloc,
                Alloc {
                    memfd,
                    ro_fd: None,
                    readonly: !writable,
                    grefs,
                    conn,
                },
            );
            s.next_alloc = s.next_alloc.checked_add(1).ok_or((
                GntStatus::GENERAL_ERROR,
                "allocation ids exhausted".to_string(),
            ))?;
            Ok((w, vec![client_fd]))
        }
        OP_REVOKE => {
            let alloc = r.u32().map_err(bad)?;
            r.end().map_err(bad)?;
            let mut s = inner.lock();
            let gone = s.dom(me)?.revoke(alloc);
            drop(s);
            match gone {
                Some(_) => Ok((Writer::ok(), Vec::new())),
                None => refuse(GntStatus::BAD_HANDLE, format!("no allocation {alloc}")),
            }
        }
        OP_TABLE => {
            let peer = DomId(r.u16().map_err(bad)?);
            r.end().map_err(bad)?;
            let mut s = inner.lock();
            let dom = s.dom(peer)?;
            let fd = sys::reopen_readonly(dom.table_fd.as_fd()).map_err(io_refusal)?;
            let mut w = Writer::ok();
            w.u32(table::CAPACITY);
            Ok((w, vec![fd]))
        }
        OP_ACCESS => {
            let peer = DomId(r.u16().map_err(bad)?);
            let gref = r.u32().map_err(bad)?;
            r.end().map_err(bad)?;
            let mut s = inner.lock();
            let dom = s.dom(peer)?;
            table::check_gref(gref).map_err(|(st, m)| (st, m.to_string()))?;
            let c =
                table::check(dom.entry(gref), me, false).map_err(|(st, m)| (st, m.to_string()))?;
            let (alloc, page) = *dom
                .grefs
                .get(&gref)
                .ok_or((GntStatus::GENERAL_ERROR, "grant not in use".to_string()))?;
            debug_assert_eq!(alloc, c.alloc);
            let a = dom
                .allocs
                .get_mut(&alloc)
                .ok_or((GntStatus::GENERAL_ERROR, "grant not in use".to_string()))?;
            let fd = a.fd_for(true).map_err(io_refusal)?;
            let mut w = Writer::ok();
            w.u32(alloc)
                .u32(a.grefs.len() as u32)
                .u32(page)
                .u8(u8::from(!c.readonly));
            Ok((w, vec![fd]))
        }
        OP_MAP => {
            let peer = DomId(r.u16().map_err(bad)?);
            let writable = r.bool().map_err(bad)?;
            let n = r.u32().map_err(bad)?;
            if n == 0 || n > MAX_MAP_REFS {
                return refuse(
                    GntStatus::GENERAL_ERROR,
                    format!("reference count {n} not in 1..={MAX_MAP_REFS}"),
                );
            }
            let refs = r.u32s(n).map_err(bad)?;
            r.end().map_err(bad)?;
            let mut s = inner.lock();
            let dom = s.dom(peer)?;
            let mut fd_index: Vec<u32> = Vec::new(); // distinct allocations, in order
            let mut out = Vec::with_capacity(refs.len());
            for &g in &refs {
                let fail = |(st, m): (GntStatus, &str)| (st, format!("gref {g}: {m}"));
                table::check_gref(g).map_err(fail)?;
                let c = table::check(dom.entry(g), me, writable).map_err(fail)?;
                let &(alloc, page) = dom
                    .grefs
                    .get(&g)
                    .ok_or_else(|| fail((GntStatus::GENERAL_ERROR, "grant not in use")))?;
                debug_assert_eq!(alloc, c.alloc);
                let idx = match fd_index.iter().position(|&a| a == alloc) {
                    Some(i) => i,
                    None => {
                        if fd_index.len() == sys::MAX_FDS {
                            return refuse(
                                GntStatus::GENERAL_ERROR,
                                "references span too many allocations; map fewer at a time",
                            );
                        }
                        fd_index.push(alloc);
                        fd_index.len() - 1
                    }
                };
                out.push((idx as u32, page));
            }
            let mut fds = Vec::with_capacity(fd_index.len());
            for a in &fd_index {
                let a = dom.allocs.get_mut(a).expect("allocation of a live grant");
                fds.push(a.fd_for(writable).map_err(io_refusal)?);
            }
            let mut w = Writer::ok();
            w.u32(out.len() as u32);
            for (i, p) in out {
                w.u32(i).u32(p);
            }
            Ok((w, fds))
        }
        OP_ALLOC_UNBOUND => {
            let peer = DomId(r.u16().map_err(bad)?);
            r.end().map_err(bad)?;
            let inbox = sys::eventfd().map_err(io_refusal)?;
            let peer_inbox = sys::eventfd().map_err(io_refusal)?;
            let fds = vec![
                inbox.try_clone().map_err(io_refusal)?,
                peer_inbox.try_clone().map_err(io_refusal)?,
            ];
            let mut s = inner.lock();
            let dom = s.dom(me)?;
            let port = dom.next_port;
            dom.next_port += 1;
            dom.ports.insert(
                port,
                PortState {
                    conn,
                    remote: peer,
                    bound: None,
                    inbox,
                    peer_inbox,
                },
            );
            let mut w = Writer::ok();
            w.u32(port);
            Ok((w, fds))
        }
        OP_BIND => {
            let peer = DomId(r.u16().map_err(bad)?);
            let rport = r.u32().map_err(bad)?;
            r.end().map_err(bad)?;
            let mut s = inner.lock();
            let remote = s.dom(peer)?;
            let Some(rp) = remote.ports.get(&rport) else {
                return refuse(
                    GntStatus::GENERAL_ERROR,
                    format!("dom{peer} has no port {rport}"),
                );
            };
            if rp.remote != me || rp.bound.is_some() {
                return refuse(
                    GntStatus::GENERAL_ERROR,
                    format!("dom{peer} port {rport} is not an unbound port for dom{me}"),
                );
            }
            let inbox = rp.peer_inbox.try_clone().map_err(io_refusal)?;
            let peer_inbox = rp.inbox.try_clone().map_err(io_refusal)?;
            // Notifications sent before anyone was bound are dropped, as on Xen.
            sys::eventfd_drain(&inbox).map_err(io_refusal)?;
            let fds = vec![
                inbox.try_clone().map_err(io_refusal)?,
                peer_inbox.try_clone().map_err(io_refusal)?,
            ];
            let dom = s.dom(me)?;
            let port = dom.next_port;
            dom.next_port += 1;
            dom.ports.insert(
                port,
                PortState {
                    conn,
                    remote: peer,
                    bound: Some(rport),
                    inbox,
                    peer_inbox,
                },
            );
            s.dom(peer)?
                .ports
                .get_mut(&rport)
                .expect("checked above")
                .bound = Some(port);
            let mut w = Writer::ok();
            w.u32(port);
            Ok((w, fds))
        }
        OP_UNBIND => {
            let port = r.u32().map_err(bad)?;
            r.end().map_err(bad)?;
            let mut s = inner.lock();
            match s.unbind(me, port) {
                Some(()) => Ok((Writer::ok(), Vec::new())),
                None => refuse(
                    GntStatus::GENERAL_ERROR,
                    format!("dom{me} has no port {port}"),
                ),
            }
        }
        OP_XENSTORE => {
            r.end().map_err(bad)?;
            let x = inner.xenstore.lock().unwrap_or_else(|p| p.into_inner());
            let Some(connect) = x.as_ref() else {
                return refuse(
                    GntStatus::GENERAL_ERROR,
                    "no xenstore server attached to this hypervisor",
                );
            };
            let fd = connect(me).map_err(io_refusal)?;
            Ok((Writer::ok(), vec![fd]))
        }
        other => refuse(
            GntStatus::GENERAL_ERROR,
            format!("unknown operation {other}"),
        ),
    }
}
