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

use super::proto::{
    Access, Accessed, AllocUnbound, Attached, Bind, Bound, Call, Claim, Done, Fields, Hello, Map,
    Mapped, MappedPage, Op, Ping, ProtoError, Refusal, Reply, Request, Revoke, Share, Shared,
    Table, TableOpened, Unbind, Xenstore,
};
use super::sys;
use super::table;
use hypervisor::evtchn::Port;
use hypervisor::grant::{GntStatus, GrantRef, SharedMem, PAGE_SIZE};
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
    /// Domains attached now (a domain is forgotten, grant table and all, when its last
    /// connection closes).
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

/// The most grant allocations (`share` calls) a domain may hold at once. Each holds one
/// descriptor in the hypervisor (its memfd), so this bounds what one domain's grants
/// cost the hypervisor's descriptor table; the pages themselves are bounded by the
/// grant table ([`table::CAPACITY`]). netfront holds four per device.
pub const MAX_ALLOCATIONS_PER_DOMAIN: usize = 1024;

/// Most event channel ports a guest domain holds at once (Xen's default
/// `max_event_channels` for a guest, 1023). Each costs the hypervisor two eventfds. The
/// driver domain (dom0), which binds one or two per vif of every guest, is not capped.
pub const MAX_PORTS_PER_GUEST: usize = 1023;

struct Alloc {
    memfd: OwnedFd,
    readonly: bool,
    grefs: Vec<u32>,
    conn: u64,
}

impl Alloc {
    /// The fd to hand to a peer: read-only unless `writable` is asked and allowed. A
    /// read-only one is opened for this reply only (the caller closes it once sent), so
    /// an allocation holds one descriptor here whatever its peers ask.
    fn fd_for(&self, writable: bool) -> io::Result<OwnedFd> {
        if writable && !self.readonly {
            self.memfd.try_clone()
        } else {
            sys::reopen_readonly(self.memfd.as_fd())
        }
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

    /// Xen's checks on reference `gref` for `me` (in the table, granted to `me`, writable
    /// if `write`): its allocation, page index and whether the grant is read-only.
    fn granted(&self, gref: u32, me: DomId, write: bool) -> Result<(u32, u32, bool), Verdict> {
        table::check_gref(gref)?;
        let c = table::check(self.entry(gref), me, write)?;
        let &(alloc, page) = self.grefs.get(&gref).ok_or(NOT_IN_USE)?;
        debug_assert_eq!(alloc, c.alloc);
        Ok((alloc, page, c.readonly))
    }

    /// Adds a port of domain `me`, returning its number; a guest past
    /// [`MAX_PORTS_PER_GUEST`] is refused.
    fn add_port(&mut self, me: DomId, p: PortState) -> Result<u32, Denied> {
        if me != DomId::DOM0 && self.ports.len() >= MAX_PORTS_PER_GUEST {
            return Err(Denied::PortLimit);
        }
        let port = self.next_port;
        self.next_port += 1;
        self.ports.insert(port, p);
        Ok(port)
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

/// A grant-table verdict: Xen's status and why.
type Verdict = (GntStatus, &'static str);

/// Why the hypervisor refuses a request. The wire's `GNTST_*` status of each is chosen
/// in one place, [`Denied::status`]: grant-table verdicts carry their own, the rest map
/// to `GNTST_general_error` unless Xen has a closer code.
#[derive(Debug, thiserror::Error)]
enum Denied {
    #[error("malformed message: {0}")]
    Malformed(ProtoError),
    #[error("unknown operation {0}")]
    UnknownOp(u16),
    #[error("message too large")]
    TooLarge,
    #[error("HELLO first")]
    NotAttached,
    #[error("already attached")]
    AlreadyAttached,
    #[error("connection belongs to dom{owner}, not dom{claimed}")]
    NotYours { owner: DomId, claimed: DomId },
    #[error("claim a domain id")]
    NoClaim,
    #[error("dom{0} is reserved")]
    Reserved(DomId),
    #[error("no such domain dom{0}")]
    NoDomain(DomId),
    #[error("page count {0} not in 1..={MAX_SHARE_PAGES}")]
    PageCount(u32),
    #[error("grant table full")]
    TableFull,
    #[error("too many grant allocations (at most {MAX_ALLOCATIONS_PER_DOMAIN} per domain)")]
    AllocationLimit,
    #[error("too many event channels (at most {MAX_PORTS_PER_GUEST} per guest)")]
    PortLimit,
    #[error("allocation ids exhausted")]
    AllocIdsExhausted,
    #[error("no allocation {0}")]
    NoAllocation(u32),
    /// The grant table's verdict on the one reference of an `ACCESS`.
    #[error("{}", .0.1)]
    Grant(Verdict),
    /// The grant table's verdict on one reference of a `MAP`.
    #[error("{}", Refusal::about_gref(*.0, .1.1))]
    MapRef(GrantRef, Verdict),
    #[error("reference count {0} not in 1..={MAX_MAP_REFS}")]
    RefCount(usize),
    #[error("references span too many allocations; map fewer at a time")]
    TooManyAllocations,
    #[error("dom{peer} has no port {port}")]
    NoPort { peer: DomId, port: u32 },
    #[error("dom{peer} port {port} is not an unbound port for dom{me}")]
    NotUnbound { peer: DomId, port: u32, me: DomId },
    #[error("no xenstore server attached to this hypervisor")]
    NoXenstore,
    #[error("local hypervisor: {0}")]
    Io(#[from] io::Error),
}

impl Denied {
    /// The status the refusal carries on the wire.
    fn status(&self) -> GntStatus {
        match self {
            Denied::Grant((st, _)) | Denied::MapRef(_, (st, _)) => *st,
            Denied::NotYours { .. } => GntStatus::PERMISSION_DENIED,
            Denied::NoClaim | Denied::Reserved(_) | Denied::NoDomain(_) => GntStatus::BAD_DOMAIN,
            Denied::NoAllocation(_) => GntStatus::BAD_HANDLE,
            Denied::Malformed(_)
            | Denied::UnknownOp(_)
            | Denied::TooLarge
            | Denied::NotAttached
            | Denied::AlreadyAttached
            | Denied::PageCount(_)
            | Denied::TableFull
            | Denied::AllocationLimit
            | Denied::PortLimit
            | Denied::AllocIdsExhausted
            | Denied::RefCount(_)
            | Denied::TooManyAllocations
            | Denied::NoPort { .. }
            | Denied::NotUnbound { .. }
            | Denied::NoXenstore
            | Denied::Io(_) => GntStatus::GENERAL_ERROR,
        }
    }
}

impl From<ProtoError> for Denied {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::UnknownOp(op) => Denied::UnknownOp(op),
            e => Denied::Malformed(e),
        }
    }
}

impl From<Denied> for Refusal {
    fn from(d: Denied) -> Self {
        Refusal {
            status: d.status(),
            reason: d.to_string(),
        }
    }
}

/// A grant-table verdict for a reference that is in the table but not in use.
const NOT_IN_USE: Verdict = (GntStatus::GENERAL_ERROR, "grant not in use");

impl State {
    fn dom(&mut self, d: DomId) -> Result<&mut Dom, Denied> {
        self.domains.get_mut(&d).ok_or(Denied::NoDomain(d))
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
        let (reply, fds) = if r.truncated {
            refused(Denied::TooLarge)
        } else {
            handle(&inner, &mut me, assigned, conn, &buf[..r.len])
        };
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = sys::send_msg(&sock, &reply, &borrowed) {
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
                // Its allocations and ports went with its connections: what is left is
                // its grant table, freed as Xen frees a destroyed domain's (a new
                // domain with this id starts with an empty one).
                s.domains.remove(&me);
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

/// An encoded reply and the descriptors that travel with it.
type Message = (Vec<u8>, Vec<OwnedFd>);

/// What a handler answers: the reply and its descriptors, or a refusal.
type Answer<T> = Result<(T, Vec<OwnedFd>), Denied>;

fn refused(d: Denied) -> Message {
    (Refusal::from(d).encode(), Vec::new())
}

fn answer<T: Fields>(a: Answer<T>) -> Message {
    match a {
        Ok((v, fds)) => (Reply::Ok(v).encode(), fds),
        Err(d) => refused(d),
    }
}

/// One request: decode, run its operation's handler, encode the reply.
fn handle(
    inner: &Inner,
    me: &mut Option<DomId>,
    assigned: Option<DomId>,
    conn: u64,
    msg: &[u8],
) -> Message {
    // Before HELLO, any other operation is refused whatever its fields.
    if me.is_none() && Request::code(msg).is_ok_and(|c| c != Op::Hello as u16) {
        return refused(Denied::NotAttached);
    }
    let req = match Request::decode(msg) {
        Ok(r) => r,
        Err(e) => return refused(e.into()),
    };
    match (req, *me) {
        (Request::Hello(h), _) => answer(hello(inner, me, assigned, h)),
        (_, None) => refused(Denied::NotAttached),
        (req, Some(id)) => Caller {
            inner,
            me: id,
            conn,
        }
        .dispatch(req),
    }
}

/// `HELLO`: attach the connection as the domain it claims (or was made for).
fn hello(
    inner: &Inner,
    me: &mut Option<DomId>,
    assigned: Option<DomId>,
    req: Hello,
) -> Answer<Attached> {
    let d = match (assigned, req.claim) {
        (Some(a), Claim::Assigned) => a,
        (Some(a), Claim::Domain(c)) if a == c => a,
        (Some(owner), Claim::Domain(claimed)) => return Err(Denied::NotYours { owner, claimed }),
        (None, Claim::Assigned) => return Err(Denied::NoClaim),
        (None, Claim::Domain(c)) if !c.is_valid() => return Err(Denied::Reserved(c)),
        (None, Claim::Domain(c)) => c,
    };
    if me.is_some() {
        return Err(Denied::AlreadyAttached);
    }
    let mut s = inner.lock();
    if let std::collections::hash_map::Entry::Vacant(v) = s.domains.entry(d) {
        v.insert(Dom::new(d)?);
    }
    s.domains.get_mut(&d).expect("just inserted").conns += 1;
    *me = Some(d);
    Ok((Attached { domid: d }, Vec::new()))
}

/// The attached domain a request comes from, and its connection.
struct Caller<'a> {
    inner: &'a Inner,
    me: DomId,
    conn: u64,
}

impl Caller<'_> {
    /// One operation's handler, its reply encoded.
    fn dispatch(&self, req: Request) -> Message {
        match req {
            Request::Hello(_) => refused(Denied::AlreadyAttached),
            Request::Share(r) => self.run(r, Caller::share),
            Request::Revoke(r) => self.run(r, Caller::revoke),
            Request::Table(r) => self.run(r, Caller::table),
            Request::Access(r) => self.run(r, Caller::access),
            Request::Map(r) => self.run(r, Caller::map),
            Request::AllocUnbound(r) => self.run(r, Caller::alloc_unbound),
            Request::Bind(r) => self.run(r, Caller::bind),
            Request::Unbind(r) => self.run(r, Caller::unbind),
            Request::Xenstore(r) => self.run(r, Caller::xenstore),
            Request::Ping(r) => self.run(r, Caller::ping),
        }
    }

    /// Runs the handler of request `C` and encodes its reply.
    fn run<C: Call>(&self, req: C, handler: fn(&Self, C) -> Answer<C::Reply>) -> Message {
        let a = handler(self, req);
        if let Ok((_, fds)) = &a {
            debug_assert!(C::FDS.contains(&fds.len()), "{:?} descriptors", C::OP);
        }
        answer(a)
    }

    fn ping(&self, _: Ping) -> Answer<Done> {
        Ok((Done, Vec::new()))
    }

    fn share(&self, req: Share) -> Answer<Shared> {
        let Share {
            peer,
            writable,
            pages,
        } = req;
        if pages == 0 || pages > MAX_SHARE_PAGES {
            return Err(Denied::PageCount(pages));
        }
        let mut s = self.inner.lock();
        let alloc = s.next_alloc;
        let dom = s.dom(self.me)?;
        if dom.free_gref_count() < pages {
            return Err(Denied::TableFull);
        }
        if dom.allocs.len() >= MAX_ALLOCATIONS_PER_DOMAIN {
            return Err(Denied::AllocationLimit);
        }
        let name =
            std::ffi::CString::new(format!("grant-dom{}-{alloc}", self.me.0)).expect("no NUL");
        let memfd = sys::sealed_memfd(&name, pages as usize * PAGE_SIZE)?;
        let client_fd = memfd.try_clone()?;
        let mut grefs = Vec::with_capacity(pages as usize);
        for page in 0..pages {
            let g = dom.take_gref();
            dom.set_entry(g, table::entry(peer, alloc, !writable));
            dom.grefs.insert(g, (alloc, page));
            grefs.push(g);
        }
        let reply = Shared {
            alloc,
            grefs: grefs.iter().map(|&g| GrantRef(g)).collect(),
        };
        dom.allocs.insert(
            alloc,
            Alloc {
                memfd,
                readonly: !writable,
                grefs,
                conn: self.conn,
            },
        );
        s.next_alloc = s
            .next_alloc
            .checked_add(1)
            .ok_or(Denied::AllocIdsExhausted)?;
        Ok((reply, vec![client_fd]))
    }

    fn revoke(&self, req: Revoke) -> Answer<Done> {
        let gone = self.inner.lock().dom(self.me)?.revoke(req.alloc);
        match gone {
            Some(_) => Ok((Done, Vec::new())),
            None => Err(Denied::NoAllocation(req.alloc)),
        }
    }

    fn table(&self, req: Table) -> Answer<TableOpened> {
        let mut s = self.inner.lock();
        let fd = sys::reopen_readonly(s.dom(req.peer)?.table_fd.as_fd())?;
        let reply = TableOpened {
            capacity: table::CAPACITY,
        };
        Ok((reply, vec![fd]))
    }

    fn access(&self, req: Access) -> Answer<Accessed> {
        let mut s = self.inner.lock();
        let dom = s.dom(req.peer)?;
        let (alloc, page, readonly) = dom
            .granted(req.gref.0, self.me, false)
            .map_err(Denied::Grant)?;
        let a = dom.allocs.get(&alloc).ok_or(Denied::Grant(NOT_IN_USE))?;
        let fd = a.fd_for(true)?;
        let reply = Accessed {
            alloc,
            pages: a.grefs.len() as u32,
            page,
            writable: !readonly,
        };
        Ok((reply, vec![fd]))
    }

    fn map(&self, req: Map) -> Answer<Mapped> {
        let n = req.refs.len();
        if n == 0 || n > MAX_MAP_REFS as usize {
            return Err(Denied::RefCount(n));
        }
        let mut s = self.inner.lock();
        let dom = s.dom(req.peer)?;
        let mut allocs: Vec<u32> = Vec::new(); // distinct allocations, in order
        let mut pages = Vec::with_capacity(n);
        for &g in &req.refs {
            let (alloc, page, _) = dom
                .granted(g.0, self.me, req.writable)
                .map_err(|v| Denied::MapRef(g, v))?;
            let fd_index = match allocs.iter().position(|&a| a == alloc) {
                Some(i) => i,
                None if allocs.len() == sys::MAX_FDS => return Err(Denied::TooManyAllocations),
                None => {
                    allocs.push(alloc);
                    allocs.len() - 1
                }
            };
            pages.push(MappedPage {
                fd_index: fd_index as u32,
                page,
            });
        }
        let mut fds = Vec::with_capacity(allocs.len());
        for a in &allocs {
            let a = dom.allocs.get(a).expect("allocation of a live grant");
            fds.push(a.fd_for(req.writable)?);
        }
        Ok((Mapped { pages }, fds))
    }

    fn alloc_unbound(&self, req: AllocUnbound) -> Answer<Bound> {
        let inbox = sys::eventfd()?;
        let peer_inbox = sys::eventfd()?;
        let fds = vec![inbox.try_clone()?, peer_inbox.try_clone()?];
        let mut s = self.inner.lock();
        let me = self.me;
        let port = s.dom(me)?.add_port(
            me,
            PortState {
                conn: self.conn,
                remote: req.peer,
                bound: None,
                inbox,
                peer_inbox,
            },
        )?;
        Ok((Bound { port: Port(port) }, fds))
    }

    fn bind(&self, req: Bind) -> Answer<Bound> {
        let (peer, rport) = (req.peer, req.remote.0);
        let mut s = self.inner.lock();
        let rp = s
            .dom(peer)?
            .ports
            .get(&rport)
            .ok_or(Denied::NoPort { peer, port: rport })?;
        if rp.remote != self.me || rp.bound.is_some() {
            return Err(Denied::NotUnbound {
                peer,
                port: rport,
                me: self.me,
            });
        }
        let inbox = rp.peer_inbox.try_clone()?;
        let peer_inbox = rp.inbox.try_clone()?;
        // Notifications sent before anyone was bound are dropped, as on Xen.
        sys::eventfd_drain(&inbox)?;
        let fds = vec![inbox.try_clone()?, peer_inbox.try_clone()?];
        let me = self.me;
        let port = s.dom(me)?.add_port(
            me,
            PortState {
                conn: self.conn,
                remote: peer,
                bound: Some(rport),
                inbox,
                peer_inbox,
            },
        )?;
        s.dom(peer)?
            .ports
            .get_mut(&rport)
            .expect("checked above")
            .bound = Some(port);
        Ok((Bound { port: Port(port) }, fds))
    }

    fn unbind(&self, req: Unbind) -> Answer<Done> {
        match self.inner.lock().unbind(self.me, req.port.0) {
            Some(()) => Ok((Done, Vec::new())),
            None => Err(Denied::NoPort {
                peer: self.me,
                port: req.port.0,
            }),
        }
    }

    fn xenstore(&self, _: Xenstore) -> Answer<Done> {
        let x = self
            .inner
            .xenstore
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let connect = x.as_ref().ok_or(Denied::NoXenstore)?;
        Ok((Done, vec![connect(self.me)?]))
    }
}
