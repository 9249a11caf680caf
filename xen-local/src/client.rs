//! A domain attached to the local hypervisor: implements the grant traits.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::copy_cache::{CopyCache, COPY_SHARDS};
use super::proto::{self, Call, Claim, Hello, Ping, ProtoError, Refusal, Reply, Request, Revoke};
use super::sys;
use super::table;
use hypervisor::grant::{
    Access, CopyDir, CopySegment, GntStatus, GrantCopy, GrantError, GrantMap, GrantMapping,
    GrantRef, GrantShare, SharedMem, SharedPages, PAGE_SIZE,
};
use xen_ids::DomId;

/// Why a call to the local hypervisor failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The socket failed (the hypervisor is gone) or the reply was malformed.
    Io(io::Error),
    /// The hypervisor refused.
    Refused(Refusal),
}

impl CallError {
    fn invalid(why: &str) -> CallError {
        CallError::Io(io::Error::new(io::ErrorKind::InvalidData, why.to_string()))
    }

    /// The grant status a copy reports for this failure.
    fn copy_status(self) -> GntStatus {
        match self {
            CallError::Refused(r) => r.status,
            CallError::Io(_) => GntStatus::GENERAL_ERROR,
        }
    }
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> Self {
        CallError::Io(e)
    }
}

impl From<ProtoError> for CallError {
    fn from(e: ProtoError) -> Self {
        CallError::Io(io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// One connection to the local hypervisor; requests are serialised.
pub(crate) struct Conn {
    sock: Mutex<(OwnedFd, Vec<u8>)>,
}

impl Conn {
    /// Send `req`, wait for its reply and the descriptors that came with it (as many
    /// as the operation promises, [`Call::FDS`]).
    pub(crate) fn call<C: Call>(&self, req: C) -> Result<(C::Reply, Vec<OwnedFd>), CallError> {
        let msg = Request::encode(&req.into());
        let mut g = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let (sock, buf) = &mut *g;
        sys::send_msg(&*sock, &msg, &[])?;
        let r = sys::recv_msg(&*sock, buf)?;
        if r.len == 0 {
            return Err(CallError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the local hypervisor closed the connection",
            )));
        }
        if r.truncated {
            return Err(CallError::invalid("reply too large"));
        }
        match Reply::<C::Reply>::decode(&buf[..r.len])? {
            Reply::Refused(refusal) => Err(CallError::Refused(refusal)),
            Reply::Ok(_) if !C::FDS.contains(&r.fds.len()) => Err(CallError::invalid(
                "wrong number of descriptors in the reply",
            )),
            Reply::Ok(reply) => Ok((reply, r.fds)),
        }
    }

    /// [`call`](Self::call) for an operation whose reply carries one descriptor.
    pub(crate) fn call_with_fd<C: Call>(&self, req: C) -> Result<(C::Reply, OwnedFd), CallError> {
        debug_assert_eq!(C::FDS, 1..=1);
        let (reply, mut fds) = self.call(req)?;
        let fd = fds
            .pop()
            .ok_or_else(|| CallError::invalid("no descriptor in the reply"))?;
        Ok((reply, fd))
    }
}

fn grant_err(op: &'static str, domid: DomId, gref: GrantRef) -> impl Fn(CallError) -> GrantError {
    move |e| match e {
        CallError::Io(e) => GrantError::io(op, e),
        CallError::Refused(r) => GrantError::Refused {
            domid,
            gref,
            status: r.status,
            reason: r.reason,
        },
    }
}

/// A domain attached to a [`LocalHypervisor`](super::LocalHypervisor): shares, maps and
/// grant-copies pages ([`GrantShare`], [`GrantMap`], [`GrantCopy`]) and opens event
/// channel handles ([`Domain::event_channels`]).
///
/// Grant copies run in this process, on mappings of the peer's granted pages obtained
/// once from the hypervisor (which checks the grant) and re-validated on every copy
/// against the peer's grant table, which the hypervisor alone writes and this process
/// maps read-only. Revocation is therefore seen by the very next copy.
pub struct Domain {
    conn: Arc<Conn>,
    domid: DomId,
    /// Copy caches, sharded by thread so that several queue threads copying through one
    /// `Domain` do not serialise on one lock.
    caches: Box<[Mutex<CopyCache>]>,
}

fn shard_of_current_thread() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Threads take shards round-robin, once.
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % COPY_SHARDS;
    }
    SHARD.with(|s| *s)
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("domid", &self.domid)
            .finish()
    }
}

impl Domain {
    /// Attach to a `local-hypervisor` daemon listening at `path`, as domain `domid`.
    pub fn attach(path: &Path, domid: DomId) -> io::Result<Domain> {
        let fd = sys::seqpacket_connect(path)?;
        Self::hello(fd, Claim::Domain(domid))
    }

    /// Use a connection made by [`LocalHypervisor::connect`](super::LocalHypervisor::connect).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Domain> {
        Self::hello(fd, Claim::Assigned)
    }

    /// In a process started by
    /// [`LocalHypervisor::spawn_domain`](super::LocalHypervisor::spawn_domain): take the
    /// inherited connection named by [`FD_ENV`](super::FD_ENV). It is checked to be a
    /// `SOCK_SEQPACKET` Unix socket, and can be taken once per process.
    pub fn from_env() -> io::Result<Domain> {
        use std::sync::atomic::AtomicBool;
        static TAKEN: AtomicBool = AtomicBool::new(false);
        let var = std::env::var(super::FD_ENV).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not set", super::FD_ENV),
            )
        })?;
        let raw: std::os::fd::RawFd = var.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}={var:?} is not a descriptor", super::FD_ENV),
            )
        })?;
        if raw < 0 || !sys::is_seqpacket_unix_socket(raw) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}={raw} is not a SOCK_SEQPACKET Unix socket",
                    super::FD_ENV
                ),
            ));
        }
        if TAKEN.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the inherited connection was already taken",
            ));
        }
        // SAFETY: the descriptor is open (checked above), was inherited for this purpose
        // only, and `TAKEN` makes sure it is owned once.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        // Do not leak it into our own children.
        let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
        Self::from_fd(fd)
    }

    fn hello(fd: OwnedFd, claim: Claim) -> io::Result<Domain> {
        let conn = Arc::new(Conn {
            sock: Mutex::new((fd, vec![0u8; sys::MAX_MSG])),
        });
        let (attached, _) = conn
            .call(Hello { claim })
            .map_err(io_err(io::ErrorKind::PermissionDenied))?;
        let domid = attached.domid;
        Ok(Domain {
            conn,
            domid,
            caches: (0..COPY_SHARDS)
                .map(|_| Mutex::new(CopyCache::default()))
                .collect(),
        })
    }

    /// This domain's id.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// A round trip to the hypervisor that does nothing (measures the daemon's cost).
    pub fn ping(&self) -> io::Result<()> {
        self.conn
            .call(Ping)
            .map(drop)
            .map_err(io_err(io::ErrorKind::Other))
    }

    /// A connection to the xenstore server attached to the hypervisor, speaking the
    /// xenstore wire protocol as this domain.
    pub fn xenstore(&self) -> io::Result<UnixStream> {
        let (_, fd) = self
            .conn
            .call_with_fd(proto::Xenstore)
            .map_err(io_err(io::ErrorKind::NotFound))?;
        Ok(UnixStream::from(fd))
    }
}

/// An I/O error for a failed call; a refusal becomes one of `kind`.
fn io_err(kind: io::ErrorKind) -> impl Fn(CallError) -> io::Error {
    move |e| match e {
        CallError::Io(e) => e,
        CallError::Refused(r) => io::Error::new(kind, format!("{}: {}", r.status, r.reason)),
    }
}

/// Pages this domain granted through the local hypervisor.
#[derive(Debug)]
pub struct LocalSharedPages {
    conn: Arc<Conn>,
    alloc: u32,
    grefs: Vec<GrantRef>,
    mem: Option<SharedMem>,
    peer: DomId,
    access: Access,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl LocalSharedPages {
    fn release(&mut self) -> Result<(), GrantError> {
        if self.mem.take().is_none() {
            return Ok(());
        }
        let first = self.grefs.first().copied().unwrap_or(GrantRef(0));
        self.conn
            .call(Revoke { alloc: self.alloc })
            .map(drop)
            .map_err(grant_err("revoke", self.peer, first))
    }
}

impl SharedPages for LocalSharedPages {
    fn grefs(&self) -> &[GrantRef] {
        &self.grefs
    }
    fn peer(&self) -> DomId {
        self.peer
    }
    fn access(&self) -> Access {
        self.access
    }
    fn mem(&self) -> &SharedMem {
        self.mem.as_ref().expect("mapping present until revoke")
    }
    fn revoke(mut self) -> Result<(), GrantError> {
        self.release()
    }
}

impl Drop for LocalSharedPages {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            log::warn!("revoking local grants: {e}");
        }
    }
}

impl GrantShare for Domain {
    type Shared = LocalSharedPages;

    fn share(
        &self,
        peer: DomId,
        pages: usize,
        access: Access,
    ) -> Result<LocalSharedPages, GrantError> {
        let n = u32::try_from(pages)
            .ok()
            .filter(|&n| n > 0 && n <= super::server::MAX_SHARE_PAGES)
            .ok_or_else(|| {
                GrantError::InvalidArgument(format!(
                    "page count {pages} not in 1..={}",
                    super::server::MAX_SHARE_PAGES
                ))
            })?;
        let req = proto::Share {
            peer,
            writable: access.is_writable(),
            pages: n,
        };
        let (proto::Shared { alloc, grefs }, fd) = self
            .conn
            .call_with_fd(req)
            .map_err(grant_err("share", self.domid, GrantRef(0)))?;
        let count = grefs.len();
        let mut shared = LocalSharedPages {
            conn: self.conn.clone(),
            alloc,
            grefs,
            mem: None,
            peer,
            access,
        };
        if count != pages {
            return Err(GrantError::io(
                "share",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "wrong number of grant references",
                ),
            ));
        }
        // On failure, dropping `shared` (mem None) would skip the revoke: do it here.
        match sys::mmap_fd(fd.as_fd(), pages * PAGE_SIZE, 0, true) {
            Ok(mem) => {
                shared.mem = Some(mem);
                Ok(shared)
            }
            Err(e) => {
                let _ = self.conn.call(Revoke { alloc });
                Err(GrantError::io("mmap of shared pages", e))
            }
        }
    }
}

/// A peer's pages mapped through the local hypervisor: each page is mapped from the
/// peer's memfd at exactly that page's offset, read-only unless writable access was
/// asked for and granted.
#[derive(Debug)]
pub struct LocalMapping {
    mem: SharedMem,
    refs: Vec<GrantRef>,
    peer: DomId,
}

impl GrantMapping for LocalMapping {
    fn peer(&self) -> DomId {
        self.peer
    }
    fn refs(&self) -> &[GrantRef] {
        &self.refs
    }
    fn mem(&self) -> &SharedMem {
        &self.mem
    }
    fn unmap(self) -> Result<(), GrantError> {
        drop(self); // munmap in SharedMem's drop
        Ok(())
    }
}

impl GrantMap for Domain {
    type Mapping = LocalMapping;

    fn map(
        &self,
        peer: DomId,
        refs: &[GrantRef],
        access: Access,
    ) -> Result<LocalMapping, GrantError> {
        if refs.is_empty() || refs.len() > super::server::MAX_MAP_REFS as usize {
            return Err(GrantError::InvalidArgument(format!(
                "reference count {} not in 1..={}",
                refs.len(),
                super::server::MAX_MAP_REFS
            )));
        }
        let req = proto::Map {
            peer,
            writable: access.is_writable(),
            refs: refs.to_vec(),
        };
        let (mapped, fds) = self.conn.call(req).map_err(|e| match e {
            CallError::Io(e) => GrantError::io("map", e),
            CallError::Refused(r) => GrantError::Refused {
                domid: peer,
                gref: r.gref().unwrap_or(refs[0]),
                status: r.status,
                reason: r.reason,
            },
        })?;
        let bad = |m: &str| {
            GrantError::io(
                "map",
                io::Error::new(io::ErrorKind::InvalidData, m.to_string()),
            )
        };
        if mapped.pages.len() != refs.len() {
            return Err(bad("wrong number of pages in reply"));
        }
        let mut pieces = Vec::with_capacity(refs.len());
        for p in &mapped.pages {
            let fd = fds
                .get(p.fd_index as usize)
                .ok_or_else(|| bad("descriptor index out of range"))?;
            pieces.push((fd.as_fd(), u64::from(p.page) * PAGE_SIZE as u64));
        }
        let mem = sys::mmap_pieces(&pieces, PAGE_SIZE, access.is_writable())
            .map_err(|e| GrantError::io("mmap of granted pages", e))?;
        drop(pieces);
        drop(fds); // the mappings keep the pages; the descriptors are not kept
        Ok(LocalMapping {
            mem,
            refs: refs.to_vec(),
            peer,
        })
    }
}

/// Maps `peer`'s grant table read-only, for copies.
fn open_table(conn: &Conn, peer: DomId) -> Result<SharedMem, GntStatus> {
    let (opened, fd) = conn
        .call_with_fd(proto::Table { peer })
        .map_err(CallError::copy_status)?;
    if opened.capacity != table::CAPACITY {
        return Err(GntStatus::GENERAL_ERROR);
    }
    sys::mmap_fd(fd.as_fd(), table::TABLE_BYTES, 0, false).map_err(|_| GntStatus::GENERAL_ERROR)
}

/// Asks the hypervisor (which checks the grant) for `peer`'s page `gref` and maps that
/// one page: its allocation and the mapping.
fn map_page(conn: &Conn, peer: DomId, gref: u32) -> Result<(u32, SharedMem), GntStatus> {
    let req = proto::Access {
        peer,
        gref: GrantRef(gref),
    };
    let (a, fd) = conn.call_with_fd(req).map_err(CallError::copy_status)?;
    if a.page >= a.pages {
        return Err(GntStatus::GENERAL_ERROR);
    }
    let offset = u64::from(a.page) * PAGE_SIZE as u64;
    let mem = sys::mmap_fd(fd.as_fd(), PAGE_SIZE, offset, a.writable)
        .map_err(|_| GntStatus::GENERAL_ERROR)?;
    Ok((a.alloc, mem)) // the descriptor closes here; the mapping keeps the page
}

impl Domain {
    fn copy_one(
        &self,
        cache: &mut CopyCache,
        local: &mut [u8],
        seg: &CopySegment,
    ) -> Result<(), GntStatus> {
        seg.check_ranges(local.len())?;
        if seg.len == 0 {
            return Ok(());
        }
        let write = seg.dir == CopyDir::ToGrant;
        let pi = cache.peer(seg.domid, |d| open_table(&self.conn, d))?;
        let gref = seg.gref.0;
        table::check_gref(gref).map_err(|(st, _)| st)?;
        let e = cache
            .table(pi)
            .load_u64(gref as usize * 8, Ordering::Acquire)
            .map_err(|_| GntStatus::BAD_GNTREF)?;
        let c = match table::check(e, self.domid, write) {
            Ok(c) => c,
            Err((st, _)) => {
                // Revoked or re-granted elsewhere: drop the cached page.
                if table::check(e, self.domid, false).is_err() {
                    cache.drop_page(pi, gref);
                }
                return Err(st);
            }
        };
        let page = cache.page(pi, gref, c.alloc, |d, g| map_page(&self.conn, d, g))?;
        let at = usize::from(seg.offset);
        let len = usize::from(seg.len);
        let r = match seg.dir {
            CopyDir::FromGrant => {
                page.read(at, &mut local[seg.local_offset..seg.local_offset + len])
            }
            CopyDir::ToGrant => page.write(at, &local[seg.local_offset..seg.local_offset + len]),
        };
        r.map_err(|_| GntStatus::GENERAL_ERROR)
    }
}

impl GrantCopy for Domain {
    fn copy(&self, local: &mut [u8], segs: &mut [CopySegment]) -> Result<(), GrantError> {
        let shard = &self.caches[shard_of_current_thread()];
        let mut cache = shard.lock().unwrap_or_else(|p| p.into_inner());
        for seg in segs.iter_mut() {
            seg.status = match self.copy_one(&mut cache, local, seg) {
                Ok(()) => GntStatus::OKAY,
                Err(st) => st,
            };
        }
        Ok(())
    }

    fn forget_peer(&self, peer: DomId) {
        for shard in self.caches.iter() {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget_peer(peer);
        }
    }
}

impl Domain {
    /// Granted pages this domain keeps mapped for copies, of `peer` or (`None`) of every
    /// peer, all copy caches together: bounded by
    /// [`COPY_CACHE_PAGES_PER_PEER`](crate::COPY_CACHE_PAGES_PER_PEER) and
    /// [`COPY_CACHE_PAGES`](crate::COPY_CACHE_PAGES) per cache.
    pub fn copy_cache_pages(&self, peer: Option<DomId>) -> usize {
        self.caches
            .iter()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).pages(peer))
            .sum()
    }
}
