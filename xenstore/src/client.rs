//! [`XsClient`]: the [`Xenstore`] implementation over a byte stream speaking the wire
//! protocol.
//!
//! The same code serves every transport: xenstored's Unix socket, Linux's
//! `/dev/xen/xenbus` character device (where replies and watch events share the file
//! descriptor) and a connection to the [`local`](super::local) server.
//!
//! # Threading
//!
//! A dedicated **reader thread** owns the receiving side: it waits (epoll) on the
//! stream and on a stop signal, splits the stream into messages, hands each reply to
//! the request waiting for its `req_id`, and queues `XS_WATCH_EVENT`s. Callers send
//! under a mutex (one whole message per `write`) and block on a per-request channel.
//! So any number of threads may issue requests concurrently, replies may arrive in
//! any order, and watch events are never lost while nobody is reading: the reader
//! thread always drains the stream. Cost: one thread handoff per reply.
//!
//! The event queue is FIFO by default; [`Xenstore::set_coalescing`] makes it a set keyed
//! by watch token (bounded by the number of watches).
//!
//! The event queue is signalled through a socketpair "doorbell": its read end
//! ([`Xenstore::event_fd`]) is readable exactly while the queue is non-empty.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use crate::events::EventQueue;
use crate::perms::{encode_perms, parse_perms};
use crate::wire::{
    self, encode_strings, encode_write, split_str_args, FrameDecoder, PathKind, XsMessage,
    XsdError, XsdSockmsgType,
};
use xen_ids::DomId;

use crate::{WatchEvent, Xenstore, XsError, XsPerm, XsResult, XsTx};

/// xenstored's socket (`$XENSTORED_RUNDIR/socket`, default rundir `/var/run/xenstored`).
pub const XENSTORED_SOCKET: &str = "/var/run/xenstored/socket";
/// Linux's xenbus device (works in any domain, including guests).
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

/// Largest request payload through `/dev/xen/xenbus` (Linux buffers header and payload
/// in one `XENSTORE_PAYLOAD_MAX`-byte buffer).
pub const XENBUS_PAYLOAD_MAX: usize = wire::XENSTORE_PAYLOAD_MAX - wire::XSD_SOCKMSG_SIZE;

/// A xenstore connection. See the module documentation for its threading model.
pub struct XsClient {
    shared: Arc<Shared>,
    /// The reader thread, stopped when the last handle on the connection goes.
    reader: Arc<Reader>,
    doorbell: UnixStream,
}

/// The reader thread of one connection and its stop signal.
struct Reader {
    /// An eventfd: written once to stop the reader thread.
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    writer: Mutex<File>,
    pending: Mutex<Pending>,
    next_req_id: AtomicU32,
    events: Mutex<Events>,
    event_cond: Condvar,
    doorbell: UnixStream,
    timeout_ms: AtomicU64,
    /// Largest request payload the transport accepts.
    payload_max: AtomicU32,
}

#[derive(Default)]
struct Pending {
    /// Pending requests by `req_id`: the request type and where to deliver the reply.
    waiting: HashMap<u32, (XsdSockmsgType, SyncSender<XsMessage>)>,
    closed: Option<String>,
}

#[derive(Default)]
struct Events {
    queue: EventQueue,
    closed: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent
    // (every critical section is a single container operation), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl XsClient {
    /// A client over an already connected stream (a Unix socket to a xenstore server,
    /// or an open `/dev/xen/xenbus`), in blocking mode. Starts the reader thread.
    pub fn new(stream: impl Into<OwnedFd>) -> io::Result<Self> {
        let file = File::from(stream.into());
        let reader_file = file.try_clone()?;
        let (doorbell_rx, doorbell_tx) = UnixStream::pair()?;
        doorbell_rx.set_nonblocking(true)?;
        doorbell_tx.set_nonblocking(true)?;
        let stop = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        let stop_reader = stop.try_clone()?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(file),
            pending: Mutex::new(Pending::default()),
            next_req_id: AtomicU32::new(1),
            events: Mutex::new(Events::default()),
            event_cond: Condvar::new(),
            doorbell: doorbell_tx,
            timeout_ms: AtomicU64::new(0),
            payload_max: AtomicU32::new(wire::XENSTORE_PAYLOAD_MAX as u32),
        });
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(&epoll, &reader_file, EventData::new_u64(0), EventFlags::IN)?;
        epoll::add(&epoll, &stop_reader, EventData::new_u64(1), EventFlags::IN)?;
        let sh = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("xenstore-client".into())
            .spawn(move || reader_loop(&sh, reader_file, &epoll, &stop_reader))?;
        Ok(XsClient {
            shared,
            reader: Arc::new(Reader {
                stop,
                thread: Some(reader),
            }),
            doorbell: doorbell_rx,
        })
    }

    /// Another handle on this same connection, for another thread (e.g. a daemon's
    /// control thread): requests from both are multiplexed on the one connection, and
    /// watch events go to one queue, taken by whichever handle asks. The connection
    /// closes when the last handle is dropped.
    pub fn share(&self) -> io::Result<XsClient> {
        Ok(XsClient {
            shared: Arc::clone(&self.shared),
            reader: Arc::clone(&self.reader),
            doorbell: self.doorbell.try_clone()?,
        })
    }

    /// Connects to a xenstore server's Unix socket.
    pub fn connect_unix(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::new(UnixStream::connect(path)?)
    }

    /// Opens Linux's `/dev/xen/xenbus` device. Its write buffer holds one whole message
    /// of at most `XENSTORE_PAYLOAD_MAX` bytes *including* the header, so requests are
    /// limited to [`XENBUS_PAYLOAD_MAX`] payload bytes there.
    pub fn open_xenbus() -> io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(XENBUS_DEVICE)?;
        let c = Self::new(f)?;
        c.shared
            .payload_max
            .store(XENBUS_PAYLOAD_MAX as u32, Ordering::Relaxed);
        Ok(c)
    }

    /// Opens xenstore the way libxenstore does: the socket named by `$XENSTORED_PATH`
    /// if set, else [`XENSTORED_SOCKET`] (or `/run/xenstored/socket`), else
    /// [`XENBUS_DEVICE`]. Returns the last error if none works.
    pub fn open_default() -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no xenstore transport found");
        let mut sockets = Vec::new();
        if let Some(p) = std::env::var_os("XENSTORED_PATH") {
            sockets.push(std::path::PathBuf::from(p));
        }
        sockets.push(XENSTORED_SOCKET.into());
        sockets.push("/run/xenstored/socket".into());
        for s in sockets {
            match Self::connect_unix(&s) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        match Self::open_xenbus() {
            Ok(c) => Ok(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(last),
            Err(e) => Err(e),
        }
    }

    /// Sets how long a request waits for its reply (`None`: forever, the default, as
    /// libxenstore does). A request that times out fails with [`XsError::Timeout`]; a
    /// late reply is discarded.
    pub fn set_request_timeout(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(0, |t| t.as_millis().clamp(1, u64::MAX as u128) as u64);
        self.shared.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// How many watch events are queued, not yet taken.
    pub fn queued_events(&self) -> usize {
        lock(&self.shared.events).queue.len()
    }

    /// How many watch events were merged into one already queued (coalescing mode),
    /// since the connection opened.
    pub fn coalesced_events(&self) -> u64 {
        lock(&self.shared.events).queue.merged()
    }

    /// Whether the connection is closed (peer hung up, protocol violation, I/O error).
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.pending).closed.is_some()
    }

    /// Sends one request and waits for its reply; returns the reply payload.
    /// `XS_ERROR` replies become [`XsError::Xsd`].
    pub fn request(&self, type_: XsdSockmsgType, tx: XsTx, payload: Vec<u8>) -> XsResult<Vec<u8>> {
        let sh = &*self.shared;
        if payload.len() > sh.payload_max.load(Ordering::Relaxed) as usize {
            return Err(wire::WireError::PayloadTooLong(payload.len()).into());
        }
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let req_id = {
            let mut p = lock(&sh.pending);
            if let Some(why) = &p.closed {
                return Err(XsError::Disconnected(why.clone()));
            }
            let mut id = sh.next_req_id.fetch_add(1, Ordering::Relaxed);
            while id == 0 || p.waiting.contains_key(&id) {
                id = sh.next_req_id.fetch_add(1, Ordering::Relaxed);
            }
            p.waiting.insert(id, (type_, reply_tx));
            id
        };
        let msg = match XsMessage::new(type_, req_id, tx.0, payload) {
            Ok(m) => m,
            Err(e) => {
                lock(&sh.pending).waiting.remove(&req_id);
                return Err(e.into());
            }
        };
        let bytes = msg.encode();
        if let Err(e) = lock(&sh.writer).write_all(&bytes) {
            lock(&sh.pending).waiting.remove(&req_id);
            return Err(match e.kind() {
                io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::NotConnected => XsError::Disconnected(format!("write: {e}")),
                _ => XsError::Io(e),
            });
        }
        let timeout_ms = sh.timeout_ms.load(Ordering::Relaxed);
        let reply = if timeout_ms == 0 {
            reply_rx.recv().map_err(|_| self.disconnected())
        } else {
            match reply_rx.recv_timeout(Duration::from_millis(timeout_ms)) {
                Ok(r) => Ok(r),
                Err(RecvTimeoutError::Timeout) => {
                    lock(&sh.pending).waiting.remove(&req_id);
                    Err(XsError::Timeout)
                }
                Err(RecvTimeoutError::Disconnected) => Err(self.disconnected()),
            }
        }?;
        match reply.msg_type() {
            Some(t) if t == type_ => Ok(reply.payload),
            Some(XsdSockmsgType::Error) => Err(match XsdError::from_payload(&reply.payload) {
                Some(e) => XsError::Xsd(e),
                None => XsError::UnknownError(
                    String::from_utf8_lossy(&reply.payload)
                        .trim_end_matches('\0')
                        .to_owned(),
                ),
            }),
            _ => Err(XsError::Protocol(format!(
                "reply of type {} to a {type_} request",
                reply.header.type_
            ))),
        }
    }

    fn disconnected(&self) -> XsError {
        let why = lock(&self.shared.pending)
            .closed
            .clone()
            .unwrap_or_else(|| "connection closed".into());
        XsError::Disconnected(why)
    }

    fn request_ok(&self, type_: XsdSockmsgType, tx: XsTx, payload: Vec<u8>) -> XsResult<()> {
        self.request(type_, tx, payload).map(|_| ())
    }
}

impl XsClient {
    /// `XS_DIRECTORY_PART` paging: collects the children list chunk by chunk and starts
    /// over when the node's generation count changes between chunks.
    fn directory_part(&self, tx: XsTx, path: &str) -> XsResult<Vec<String>> {
        const ATTEMPTS: usize = 16;
        'restart: for _ in 0..ATTEMPTS {
            let mut names: Vec<String> = Vec::new();
            let mut off = 0usize;
            let mut gen0: Option<Vec<u8>> = None;
            loop {
                let payload = encode_strings(&[path.to_owned(), off.to_string()]);
                let p = self.request(XsdSockmsgType::DirectoryPart, tx, payload)?;
                let bad = || XsError::Protocol("malformed DIRECTORY_PART reply".into());
                let nul = p.iter().position(|b| *b == 0).ok_or_else(bad)?;
                let (gen, rest) = (&p[..nul], &p[nul + 1..]);
                match &gen0 {
                    Some(g) if g.as_slice() != gen => continue 'restart,
                    Some(_) => {}
                    None => gen0 = Some(gen.to_vec()),
                }
                // The last chunk carries an extra NUL (an empty string) at its end.
                let (chunk, last) = match rest.strip_suffix(b"\0\0") {
                    Some(c) => (c, true),
                    None if rest == b"\0" => (&rest[..0], true),
                    None => (rest, false),
                };
                if last && !chunk.is_empty() {
                    // The final name lost its terminator to the strip above.
                    let mut c = chunk.to_vec();
                    c.push(0);
                    names.extend(reply_strings(&c)?);
                } else if !last {
                    names.extend(reply_strings(chunk)?);
                }
                if last {
                    return Ok(names);
                }
                if rest.is_empty() || !rest.ends_with(b"\0") {
                    return Err(bad());
                }
                off += rest.len();
            }
        }
        Err(XsError::Xsd(XsdError::EAGAIN))
    }
}

fn path_arg(path: &str, kind: PathKind) -> XsResult<Vec<u8>> {
    wire::validate_path(path, kind)?;
    Ok(encode_strings(&[path]))
}

fn reply_strings(payload: &[u8]) -> XsResult<Vec<String>> {
    let strings = split_str_args(payload).map_err(|e| XsError::Protocol(e.to_string()))?;
    Ok(strings.into_iter().map(str::to_owned).collect())
}

impl Xenstore for XsClient {
    fn read(&self, tx: XsTx, path: &str) -> XsResult<Vec<u8>> {
        self.request(XsdSockmsgType::Read, tx, path_arg(path, PathKind::Node)?)
    }

    fn write(&self, tx: XsTx, path: &str, value: &[u8]) -> XsResult<()> {
        wire::validate_path(path, PathKind::Node)?;
        self.request_ok(XsdSockmsgType::Write, tx, encode_write(path, value))
    }

    fn mkdir(&self, tx: XsTx, path: &str) -> XsResult<()> {
        self.request_ok(XsdSockmsgType::Mkdir, tx, path_arg(path, PathKind::Node)?)
    }

    fn rm(&self, tx: XsTx, path: &str) -> XsResult<()> {
        self.request_ok(XsdSockmsgType::Rm, tx, path_arg(path, PathKind::Node)?)
    }

    fn directory(&self, tx: XsTx, path: &str) -> XsResult<Vec<String>> {
        match self.request(
            XsdSockmsgType::Directory,
            tx,
            path_arg(path, PathKind::Node)?,
        ) {
            Ok(p) => reply_strings(&p),
            // The list does not fit one payload: page through it, as libxenstore does.
            Err(XsError::Xsd(XsdError::E2BIG)) => self.directory_part(tx, path),
            Err(e) => Err(e),
        }
    }

    fn get_perms(&self, tx: XsTx, path: &str) -> XsResult<Vec<XsPerm>> {
        let p = self.request(
            XsdSockmsgType::GetPerms,
            tx,
            path_arg(path, PathKind::Node)?,
        )?;
        let strings = reply_strings(&p)?;
        parse_perms(&strings).map_err(|e| XsError::Protocol(e.to_string()))
    }

    fn set_perms(&self, tx: XsTx, path: &str, perms: &[XsPerm]) -> XsResult<()> {
        if perms.is_empty() {
            return Err(wire::WireError::WrongArgCount {
                got: 0,
                expected: "at least 1 permission",
            }
            .into());
        }
        let mut payload = path_arg(path, PathKind::Node)?;
        payload.extend(encode_perms(perms));
        self.request_ok(XsdSockmsgType::SetPerms, tx, payload)
    }

    fn get_domain_path(&self, domid: DomId) -> XsResult<String> {
        let p = self.request(
            XsdSockmsgType::GetDomainPath,
            XsTx::NONE,
            encode_strings(&[domid.to_string()]),
        )?;
        let s = reply_strings(&p)?;
        s.into_iter()
            .next()
            .ok_or_else(|| XsError::Protocol("empty GET_DOMAIN_PATH reply".into()))
    }

    fn is_domain_introduced(&self, domid: DomId) -> XsResult<bool> {
        let p = self.request(
            XsdSockmsgType::IsDomainIntroduced,
            XsTx::NONE,
            encode_strings(&[domid.to_string()]),
        )?;
        match reply_strings(&p)?.first().map(String::as_str) {
            Some("T") => Ok(true),
            Some("F") => Ok(false),
            other => Err(XsError::Protocol(format!(
                "IS_DOMAIN_INTRODUCED reply {other:?} is neither T nor F"
            ))),
        }
    }

    fn watch(&self, path: &str, token: &str) -> XsResult<()> {
        wire::validate_path(path, PathKind::Watch)?;
        check_token(token)?;
        self.request_ok(
            XsdSockmsgType::Watch,
            XsTx::NONE,
            encode_strings(&[path, token]),
        )
    }

    fn unwatch(&self, path: &str, token: &str) -> XsResult<()> {
        wire::validate_path(path, PathKind::Watch)?;
        check_token(token)?;
        self.request_ok(
            XsdSockmsgType::Unwatch,
            XsTx::NONE,
            encode_strings(&[path, token]),
        )
    }

    fn transaction_start(&self) -> XsResult<XsTx> {
        let p = self.request(XsdSockmsgType::TransactionStart, XsTx::NONE, vec![0])?;
        let s = reply_strings(&p)?;
        let id = s
            .first()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|id| *id != 0)
            .ok_or_else(|| XsError::Protocol(format!("bad TRANSACTION_START reply {s:?}")))?;
        Ok(XsTx(id))
    }

    fn transaction_end(&self, tx: XsTx, commit: bool) -> XsResult<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request_ok(XsdSockmsgType::TransactionEnd, tx, arg.to_vec())
    }

    fn event_fd(&self) -> BorrowedFd<'_> {
        self.doorbell.as_fd()
    }

    /// Coalescing is supported: the queue becomes a set keyed by token (see
    /// [`Xenstore::set_coalescing`]). Events already queued are kept, merged per token
    /// when switching on.
    fn set_coalescing(&self, on: bool) -> bool {
        lock(&self.shared.events).queue.set_coalescing(on);
        true
    }

    fn try_event(&self) -> Option<WatchEvent> {
        let mut ev = lock(&self.shared.events);
        let out = ev.queue.pop();
        if ev.queue.is_empty() && ev.closed.is_none() {
            drain_doorbell(&self.doorbell);
        }
        out
    }

    fn wait_event(&self, timeout: Option<Duration>) -> XsResult<Option<WatchEvent>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut ev = lock(&self.shared.events);
        loop {
            if let Some(e) = ev.queue.pop() {
                if ev.queue.is_empty() && ev.closed.is_none() {
                    drain_doorbell(&self.doorbell);
                }
                return Ok(Some(e));
            }
            if let Some(why) = &ev.closed {
                return Err(XsError::Disconnected(why.clone()));
            }
            ev = match deadline {
                None => self
                    .shared
                    .event_cond
                    .wait(ev)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    self.shared
                        .event_cond
                        .wait_timeout(ev, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

fn check_token(token: &str) -> XsResult<()> {
    if token.as_bytes().contains(&0) {
        return Err(XsError::Wire(wire::WireError::InvalidPath(
            "NUL byte in watch token",
        )));
    }
    Ok(())
}

fn drain_doorbell(mut doorbell: &UnixStream) {
    let mut buf = [0u8; 16];
    // Non-blocking: stops at WouldBlock once the doorbell is empty.
    while matches!(doorbell.read(&mut buf), Ok(n) if n > 0) {}
}

impl Drop for Reader {
    fn drop(&mut self) {
        // The reader thread wakes on the stop eventfd; if writing it failed the
        // thread is left to exit when the stream closes (the fds close below).
        if rustix::io::write(&self.stop, &1u64.to_ne_bytes()).is_ok() {
            if let Some(h) = self.thread.take() {
                let _ = h.join();
            }
        }
    }
}

impl std::fmt::Debug for XsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XsClient")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

fn reader_loop(sh: &Shared, mut stream: File, epoll: &OwnedFd, stop: &OwnedFd) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let none = Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(0),
    };
    let mut ready = [none; 2];
    let reason = 'outer: loop {
        let n = match epoll::wait(epoll, &mut ready[..], None) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => break format!("epoll: {e}"),
        };
        if ready[..n].iter().any(|e| e.data.u64() == 1) {
            let _ = rustix::io::read(stop, &mut [0u8; 8]);
            break "client dropped".to_string();
        }
        let got = match stream.read(&mut buf) {
            Ok(0) => break "end of stream".to_string(),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => break format!("read: {e}"),
        };
        decoder.push(&buf[..got]);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => dispatch(sh, msg),
                Ok(None) => break,
                Err(e) => break 'outer format!("undecodable stream from server: {e}"),
            }
        }
    };
    close(sh, reason);
}

fn dispatch(sh: &Shared, msg: XsMessage) {
    if msg.msg_type() == Some(XsdSockmsgType::WatchEvent) {
        let event = match split_str_args(&msg.payload) {
            Ok(v) if v.len() >= 2 => WatchEvent {
                path: v[wire::XS_WATCH_PATH].to_owned(),
                token: v[wire::XS_WATCH_TOKEN].to_owned(),
            },
            _ => {
                log::warn!("xenstore: malformed XS_WATCH_EVENT ignored");
                return;
            }
        };
        let mut ev = lock(&sh.events);
        if ev.queue.is_empty() {
            ring_doorbell(&sh.doorbell);
        }
        ev.queue.push(event);
        sh.event_cond.notify_all();
        return;
    }
    let waiter = {
        let mut p = lock(&sh.pending);
        match p.waiting.remove(&msg.header.req_id) {
            Some((_, w)) => Some(w),
            None => legacy_watch_reply(&mut p, &msg),
        }
    };
    match waiter {
        // The receiver is gone only if the request timed out meanwhile.
        Some(w) => {
            let _ = w.send(msg);
        }
        None => log::warn!(
            "xenstore: reply with unknown req_id {} (type {}) dropped",
            msg.header.req_id,
            msg.header.type_
        ),
    }
}

/// Older Linux kernels' `/dev/xen/xenbus` answered `XS_WATCH`/`XS_UNWATCH` itself with
/// `req_id` 0 instead of echoing the request's. Such a reply goes to the oldest pending
/// request of that type.
fn legacy_watch_reply(p: &mut Pending, msg: &XsMessage) -> Option<SyncSender<XsMessage>> {
    let t = msg.msg_type()?;
    if msg.header.req_id != 0 || !matches!(t, XsdSockmsgType::Watch | XsdSockmsgType::Unwatch) {
        return None;
    }
    let id = p
        .waiting
        .iter()
        .filter(|(_, (ty, _))| *ty == t)
        .map(|(id, _)| *id)
        .min()?;
    p.waiting.remove(&id).map(|(_, w)| w)
}

fn ring_doorbell(mut doorbell: &UnixStream) {
    // A full doorbell (WouldBlock) is already readable, which is all that matters.
    let _ = doorbell.write(&[1]);
}

fn close(sh: &Shared, reason: String) {
    {
        let mut p = lock(&sh.pending);
        p.closed = Some(reason.clone());
        // Dropping the senders wakes every waiting request with "disconnected".
        p.waiting.clear();
    }
    let mut ev = lock(&sh.events);
    ev.closed = Some(reason);
    // Leave the doorbell readable so an epoll loop notices the closed connection.
    ring_doorbell(&sh.doorbell);
    sh.event_cond.notify_all();
}
