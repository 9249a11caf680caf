//! Differential tests against Xen's own C xenstored.
//!
//! xenstored needs Xen only to set up dom0's ring and event channel. The C shim below,
//! preloaded, stands in for the few libxenctrl / libxengnttab / libxenevtchn calls and
//! dom0's `/proc/xen/xsd_{port,kva}` (an idle, zeroed ring page), so the unmodified
//! daemon serves its Unix socket on any Linux machine; every socket client is
//! privileged, as on a Xen host. These tests run the `Xenstore` contract through `XsClient` against it, and
//! run the same operation sequences (plain, in transactions, with a watch, and malformed
//! raw requests) on it and on `local::Xenstored`, comparing every answer and every watch
//! event.
//!
//! The binary is taken from `$DBA_XENSTORED`, else `/usr/lib/xen-*/bin/xenstored`, else
//! `/usr/sbin/xenstored`. Without one the tests skip with a printed reason, unless
//! `DBA_REQUIRE_XENSTORED` is set (the `scripts/test.d/20-xenstored` stage sets both,
//! extracting the binary from Debian's `xen-utils-4.17`).

mod xenstore_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use proptest::prelude::*;
use xenstore::wire::{XsMessage, XsdSockmsg, XsdSockmsgType, XSD_SOCKMSG_SIZE};
use xenstore::{WatchEvent, Xenstore, XsClient, XsTx};
use xenstore_common::*;
use xenstored::Xenstored;

fn find_xenstored() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DBA_XENSTORED") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("xen-"))
        .map(|e| e.path().join("bin/xenstored"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .or_else(|| Some(PathBuf::from("/usr/sbin/xenstored")).filter(|p| p.exists()))
}

/// A private xenstored process, killed on drop.
struct RealXenstored {
    child: Child,
    dir: PathBuf,
}

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// Preloaded into xenstored: see the module documentation.
const SHIM: &str = include_str!("xenstore_common/xsd_shim.c");

/// The shim, compiled once per test process.
fn shim() -> &'static PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("xs-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("shim.c");
        let so = dir.join("shim.so");
        std::fs::write(&src, SHIM).unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        assert!(
            out.status.success(),
            "shim did not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        so
    })
}

impl RealXenstored {
    fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts xenstored with extra command-line arguments (e.g. quotas).
    fn start_with(extra: &[&str]) -> Option<Self> {
        let required = std::env::var_os("DBA_REQUIRE_XENSTORED").is_some();
        let Some(bin) = find_xenstored() else {
            assert!(
                !required,
                "DBA_REQUIRE_XENSTORED is set but no xenstored found"
            );
            eprintln!(
                "SKIP: no xenstored binary (set DBA_XENSTORED, install xen-utils-4.17, or run scripts/test.d/20-xenstored)"
            );
            return None;
        };
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xs-real-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        let so = shim();
        mkfifo(&dir.join("evtchn"));
        // -N: stay in the foreground; -P: print the pid once the socket accepts
        // connections.
        let mut child = Command::new(&bin)
            .args(["-N", "-P"])
            .args(extra)
            .env("LD_PRELOAD", so)
            .env("XS_SHIM_DIR", &dir)
            .env("XENSTORED_RUNDIR", &dir)
            .env("XENSTORED_ROOTDIR", dir.join("lib"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("xenstored pid line");
        assert!(
            line.trim().parse::<u32>().is_ok(),
            "xenstored did not start: {line:?}"
        );
        Some(RealXenstored { child, dir })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("socket")
    }

    fn client(&self) -> XsClient {
        let c = XsClient::connect_unix(self.socket()).expect("connect to xenstored");
        c.set_request_timeout(Some(WAIT));
        c
    }
}

impl Drop for RealXenstored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mkfifo(path: &std::path::Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Offsets in `struct xenstore_domain_interface` (io/xs_wire.h).
const REQ: usize = 0;
const RSP: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;
const RING: u32 = 1024;

/// The guest side of an emulated xenstore ring page shared with xenstored.
struct RingPage {
    base: *mut u8,
}

// SAFETY: the page is process-shared memory accessed only through atomics and
// byte copies bounded by the ring indexes; the pointer stays valid until drop.
unsafe impl Send for RingPage {}

impl RingPage {
    fn map(file: &std::fs::File) -> Self {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: mapping 4096 bytes of a file we sized to 4096 bytes, shared, at an
        // address of the kernel's choice; the result is checked.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                4096,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                file,
                0,
            )
        }
        .expect("mmap ring");
        RingPage { base: p.cast() }
    }

    fn idx(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: `off` is one of the 4-byte aligned index fields inside the page.
        unsafe { &*(self.base.add(off) as *const std::sync::atomic::AtomicU32) }
    }

    /// Copies as much of `data` as fits into the request ring; returns the count.
    fn push(&self, data: &[u8]) -> usize {
        let cons = self.idx(REQ_CONS).load(Ordering::SeqCst);
        let prod = self.idx(REQ_PROD).load(Ordering::SeqCst);
        let mut n = 0;
        while n < data.len() && prod.wrapping_add(n as u32).wrapping_sub(cons) < RING {
            let at = (prod.wrapping_add(n as u32) % RING) as usize;
            // SAFETY: `at` < 1024, inside the request ring.
            unsafe { self.base.add(REQ + at).write_volatile(data[n]) };
            n += 1;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        self.idx(REQ_PROD)
            .store(prod.wrapping_add(n as u32), Ordering::SeqCst);
        n
    }

    /// Takes everything in the response ring.
    fn pull(&self) -> Vec<u8> {
        let cons = self.idx(RSP_CONS).load(Ordering::SeqCst);
        let prod = self.idx(RSP_PROD).load(Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let len = prod.wrapping_sub(cons).min(RING);
        let out = (0..len)
            .map(|i| {
                let at = (cons.wrapping_add(i) % RING) as usize;
                // SAFETY: `at` < 1024, inside the response ring.
                unsafe { self.base.add(RSP + at).read_volatile() }
            })
            .collect();
        std::sync::atomic::fence(Ordering::SeqCst);
        self.idx(RSP_CONS)
            .store(cons.wrapping_add(len), Ordering::SeqCst);
        out
    }
}

impl Drop for RingPage {
    fn drop(&mut self) {
        // SAFETY: unmapping the page mapped in `map`, no references outlive `self`.
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), 4096) };
    }
}

impl RealXenstored {
    /// Introduces domain `domid` to xenstored over an emulated ring (see the shim) after
    /// giving it its home `/local/domain/<domid>` (owner `domid`, as the local server
    /// does), and returns a client speaking through that ring: an unprivileged guest.
    fn guest(&self, dom0: &XsClient, domid: u16) -> XsClient {
        use std::os::unix::fs::OpenOptionsExt;
        let ring_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(format!("ring-{domid}")))
            .unwrap();
        ring_file.set_len(4096).unwrap();
        let notify_path = self.dir.join(format!("notify-{domid}"));
        mkfifo(&notify_path);
        let notify = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&notify_path)
            .unwrap();
        let evtchn = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(self.dir.join("evtchn"))
            .unwrap();
        let ring = RingPage::map(&ring_file);
        let home = format!("/local/domain/{domid}");
        dom0.mkdir(XsTx::NONE, &home).unwrap();
        dom0.set_perms(
            XsTx::NONE,
            &home,
            &[xenstore::XsPerm::new(
                xen_ids::DomId(domid),
                xenstore::XsAccess::None,
            )],
        )
        .unwrap();
        dom0.request(
            XsdSockmsgType::Introduce,
            XsTx::NONE,
            // <domid>|<gfn>|<evtchn>|: the shim ignores the gfn and evtchn.
            format!("{domid}\0{}\0{}\0", 1, 1).into_bytes(),
        )
        .unwrap();
        let (ours, pumped) = UnixStream::pair().unwrap();
        let port = (100 + u32::from(domid)).to_ne_bytes();
        std::thread::spawn(move || pump(ring, pumped, notify, evtchn, port));
        let c = XsClient::new(ours).unwrap();
        c.set_request_timeout(Some(WAIT));
        c
    }
}

/// Moves bytes between the client's socket and the ring until the client hangs up.
fn pump(
    ring: RingPage,
    mut sock: UnixStream,
    mut notify: std::fs::File,
    mut evtchn: std::fs::File,
    port: [u8; 4],
) {
    use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
    let epoll = epoll::create(CreateFlags::CLOEXEC).unwrap();
    epoll::add(&epoll, &sock, EventData::new_u64(0), EventFlags::IN).unwrap();
    epoll::add(&epoll, &notify, EventData::new_u64(1), EventFlags::IN).unwrap();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let none = Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(0),
    };
    let mut evs = [none; 2];
    loop {
        let mut kick = false;
        if !pending.is_empty() {
            let n = ring.push(&pending);
            pending.drain(..n);
            kick |= n > 0;
        }
        let out = ring.pull();
        if !out.is_empty() {
            if sock.write_all(&out).is_err() {
                return;
            }
            kick = true;
        }
        if kick {
            // The FIFO's reader is xenstored; a full FIFO already wakes it.
            let _ = evtchn.write(&port);
        }
        let n = match epoll::wait(&epoll, &mut evs[..], None) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        };
        for e in &evs[..n] {
            if e.data.u64() == 0 {
                match sock.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => pending.extend_from_slice(&buf[..k]),
                }
            } else {
                while matches!(notify.read(&mut buf), Ok(k) if k > 0) {}
            }
        }
    }
}

#[test]
fn contract_holds_on_real_xenstored() {
    let Some(real) = RealXenstored::start() else {
        return;
    };
    let xs = real.client();
    contract(&xs, "/contract");
}

/// Runs `f` on a client of the real xenstored and on a dom0 client of the local server.
fn both(real: &RealXenstored) -> (XsClient, XsClient, Xenstored) {
    let xsd = Xenstored::new();
    let local = client(&xsd, 0);
    (real.client(), local, xsd)
}

#[derive(Clone, Debug)]
enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    Read(String),
    Directory(String),
    GetPerms(String),
}

fn op(base: &'static str) -> impl Strategy<Value = Op> {
    let path = proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 0..4)
        .prop_map(move |parts| {
            if parts.is_empty() {
                base.to_owned()
            } else {
                format!("{base}/{}", parts.join("/"))
            }
        });
    prop_oneof![
        3 => (path.clone(), proptest::collection::vec(any::<u8>(), 0..5)).prop_map(|(p, v)| Op::Write(p, v)),
        1 => path.clone().prop_map(Op::Mkdir),
        2 => path.clone().prop_map(Op::Rm),
        2 => path.clone().prop_map(Op::Read),
        1 => path.clone().prop_map(Op::Directory),
        1 => path.prop_map(Op::GetPerms),
    ]
}

/// The answer to an op, in a form comparable across servers.
fn run(xs: &XsClient, tx: XsTx, op: &Op) -> String {
    let r = match op {
        Op::Write(p, v) => xs.write(tx, p, v).map(|_| "OK".to_string()),
        Op::Mkdir(p) => xs.mkdir(tx, p).map(|_| "OK".to_string()),
        Op::Rm(p) => xs.rm(tx, p).map(|_| "OK".to_string()),
        Op::Read(p) => xs.read(tx, p).map(|v| format!("{v:?}")),
        Op::Directory(p) => xs.directory(tx, p).map(|mut d| {
            d.sort();
            format!("{d:?}")
        }),
        Op::GetPerms(p) => xs.get_perms(tx, p).map(|v| format!("{v:?}")),
    };
    r.unwrap_or_else(|e| match e.xsd() {
        Some(x) => x.to_string(),
        None => panic!("transport error {e:?}"),
    })
}

fn events(xs: &XsClient) -> Vec<WatchEvent> {
    let mut v = xs.drain_events();
    v.sort_by(|a, b| (&a.path, &a.token).cmp(&(&b.path, &b.token)));
    v
}

#[derive(Clone, Debug)]
enum Step {
    Plain(Op),
    /// Ops in a transaction, each optionally followed by an op of another connection
    /// outside the transaction; then commit (`true`) or abort.
    Tx(Vec<(Op, Option<Op>)>, bool),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => op("/d").prop_map(Step::Plain),
        2 => (
            proptest::collection::vec((op("/d"), proptest::option::of(op("/d"))), 1..4),
            any::<bool>(),
        )
            .prop_map(|(o, c)| Step::Tx(o, c)),
    ];
    proptest::collection::vec(step, 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Same ops, same answers, same watch events (on the op's own connection, where
    /// xenstored queues events before the reply, so they are all there when the call
    /// returns). Transactions see other connections' changes made meanwhile exactly as
    /// xenstored's do, and conflict (EAGAIN) in the same cases.
    #[test]
    fn local_server_answers_like_xenstored(steps in steps()) {
        let Some(real) = RealXenstored::start() else { return Ok(()); };
        let (a, b, xsd) = both(&real);
        // Second connections, outside the transactions.
        let (a2, b2) = (real.client(), client(&xsd, 0));
        for xs in [&a, &b] {
            xs.write(XsTx::NONE, "/d", b"").unwrap();
            xs.watch("/d", "w").unwrap();
            xs.watch("/d/a/b", "exact").unwrap();
        }
        // Initial events (and the write's, if the watch was set first: not here).
        let _ = a.wait_event(Some(WAIT));
        let _ = b.wait_event(Some(WAIT));
        let _ = a.wait_event(Some(WAIT));
        let _ = b.wait_event(Some(WAIT));
        prop_assert_eq!(events(&a), events(&b));
        for s in &steps {
            match s {
                Step::Plain(op) => {
                    prop_assert_eq!(run(&a, XsTx::NONE, op), run(&b, XsTx::NONE, op), "{:?}", op);
                    prop_assert_eq!(events(&a), events(&b), "events after {:?}", op);
                }
                Step::Tx(ops, commit) => {
                    let ta = a.transaction_start().unwrap();
                    let tb = b.transaction_start().unwrap();
                    for (op, other) in ops {
                        prop_assert_eq!(run(&a, ta, op), run(&b, tb, op), "in tx: {:?}", op);
                        if let Some(o) = other {
                            prop_assert_eq!(run(&a2, XsTx::NONE, o), run(&b2, XsTx::NONE, o), "beside tx: {:?}", o);
                            // Events the other connection caused reach `a`/`b` before
                            // the reply to a later request of theirs.
                            a.get_domain_path(xen_ids::DomId(0)).unwrap();
                            b.get_domain_path(xen_ids::DomId(0)).unwrap();
                        }
                    }
                    prop_assert_eq!(events(&a), events(&b), "events inside tx {:?}", ops);
                    let ra = a.transaction_end(ta, *commit).map_err(|e| e.to_string());
                    let rb = b.transaction_end(tb, *commit).map_err(|e| e.to_string());
                    prop_assert_eq!(ra, rb);
                    prop_assert_eq!(events(&a), events(&b), "events at commit of {:?}", ops);
                }
            }
        }
    }
}

#[test]
fn transaction_conflicts_match_xenstored() {
    let Some(real) = RealXenstored::start() else {
        return;
    };
    let xsd = Xenstored::new();
    let pairs = [
        (real.client(), real.client()),
        (client(&xsd, 0), client(&xsd, 0)),
    ];
    let mut outcomes: Vec<Vec<String>> = Vec::new();
    for (x, y) in &pairs {
        let t = XsTx::NONE;
        let mut out = Vec::new();
        let mut rec = |r: Result<(), xenstore::XsError>| {
            out.push(r.map_or_else(|e| e.to_string(), |_| "OK".into()))
        };
        x.write(t, "/cf/k", b"0").unwrap();
        x.write(t, "/cf/j", b"0").unwrap();
        // 1. read, then someone else writes what was read.
        let tx = x.transaction_start().unwrap();
        x.read(tx, "/cf/k").unwrap();
        y.write(t, "/cf/k", b"1").unwrap();
        x.write(tx, "/cf/other", b"1").unwrap();
        rec(x.transaction_end(tx, true));
        // 2. two transactions creating siblings.
        let t1 = x.transaction_start().unwrap();
        let t2 = y.transaction_start().unwrap();
        x.write(t1, "/cf/s1", b"1").unwrap();
        y.write(t2, "/cf/s2", b"1").unwrap();
        rec(x.transaction_end(t1, true));
        rec(y.transaction_end(t2, true));
        // 3. disjoint existing nodes.
        let t1 = x.transaction_start().unwrap();
        let t2 = y.transaction_start().unwrap();
        x.write(t1, "/cf/k", b"2").unwrap();
        y.write(t2, "/cf/j", b"2").unwrap();
        rec(x.transaction_end(t1, true));
        rec(y.transaction_end(t2, true));
        // 4. both write the same node.
        let t1 = x.transaction_start().unwrap();
        let t2 = y.transaction_start().unwrap();
        x.write(t1, "/cf/k", b"3").unwrap();
        y.write(t2, "/cf/k", b"4").unwrap();
        rec(x.transaction_end(t1, true));
        rec(y.transaction_end(t2, true));
        // 5. a transaction reading a node that did not exist, created meanwhile.
        let t1 = x.transaction_start().unwrap();
        assert!(x.read(t1, "/cf/new").unwrap_err().is_enoent());
        y.write(t, "/cf/new", b"1").unwrap();
        x.write(t1, "/cf/k", b"5").unwrap();
        rec(x.transaction_end(t1, true));
        // 6. removal under a reader.
        let t1 = x.transaction_start().unwrap();
        x.directory(t1, "/cf").unwrap();
        y.rm(t, "/cf/new").unwrap();
        x.write(t1, "/cf/j", b"6").unwrap();
        rec(x.transaction_end(t1, true));
        out.push(format!("{:?}", x.read(t, "/cf/k").unwrap()));
        outcomes.push(out);
    }
    assert_eq!(outcomes[0], outcomes[1], "xenstored vs local");
}

/// Raw request → (reply type, payload).
fn raw_call(s: &mut UnixStream, type_: u32, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let m = XsMessage::with_raw_type(type_, 77, tx, payload.to_vec()).unwrap();
    s.write_all(&m.encode()).unwrap();
    loop {
        let mut h = [0u8; XSD_SOCKMSG_SIZE];
        s.read_exact(&mut h).unwrap();
        let h = XsdSockmsg::from_bytes(&h);
        let mut p = vec![0u8; h.len as usize];
        s.read_exact(&mut p).unwrap();
        if h.type_ != XsdSockmsgType::WatchEvent as u32 {
            return (h.type_, p);
        }
    }
}

#[test]
fn malformed_requests_get_the_same_errors_as_xenstored() {
    let Some(real) = RealXenstored::start() else {
        return;
    };
    let xsd = Xenstored::new();
    let mut a = UnixStream::connect(real.socket()).unwrap();
    let mut b = xsd.connect(xen_ids::DomId(0)).unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    use XsdSockmsgType as T;
    let long = format!("/{}\0", "a".repeat(3100));
    let cases: Vec<(u32, u32, Vec<u8>)> = vec![
        (99, 0, b"".to_vec()),
        (20, 0, b"".to_vec()),
        (T::WatchEvent as u32, 0, b"/a\0t\0".to_vec()),
        (T::Error as u32, 0, b"EINVAL\0".to_vec()),
        (T::Read as u32, 0, b"/nope\0".to_vec()),
        (T::Read as u32, 0, b"data".to_vec()),
        (T::Read as u32, 0, b"".to_vec()),
        (T::Read as u32, 0, b"a\0b\0".to_vec()),
        (T::Read as u32, 0, b"/a b\0".to_vec()),
        (T::Read as u32, 0, b"/a//b\0".to_vec()),
        (T::Read as u32, 0, b"/a/\0".to_vec()),
        (T::Read as u32, 0, b"@releaseDomain\0".to_vec()),
        (T::Read as u32, 0, long.into_bytes()),
        (T::Read as u32, 12345, b"/\0".to_vec()),
        (T::Write as u32, 0, b"no-nul".to_vec()),
        (T::Mkdir as u32, 0, b"x".to_vec()),
        (T::Rm as u32, 0, b"/\0".to_vec()),
        (T::Rm as u32, 0, b"/no/such/parent\0".to_vec()),
        (T::Watch as u32, 0, b"path\0".to_vec()),
        (T::Unwatch as u32, 0, b"/a\0t\0".to_vec()),
        (T::Unwatch as u32, 0, b"p\0".to_vec()),
        (T::SetPerms as u32, 0, b"/\0".to_vec()),
        (T::GetDomainPath as u32, 0, b"7\0".to_vec()),
        (T::TransactionEnd as u32, 0, b"T\0".to_vec()),
        (T::Directory as u32, 0, b"/nope\0".to_vec()),
        (T::ResetWatches as u32, 0, b"".to_vec()),
        (T::IsDomainIntroduced as u32, 0, b"0\0".to_vec()),
        (T::IsDomainIntroduced as u32, 0, b"5\0".to_vec()),
        (T::GetDomainPath as u32, 0, b"abc\0".to_vec()),
        (T::GetDomainPath as u32, 0, b"70000\0".to_vec()),
        (T::Watch as u32, 0, b"/w\0t\0".to_vec()),
        (T::Watch as u32, 0, b"/w\0t\0".to_vec()),
        (T::Unwatch as u32, 0, b"/w\0t\0".to_vec()),
        (T::Watch as u32, 0, b"@releaseDomain\0r\0".to_vec()),
        (T::Watch as u32, 0, b"/w\0t\0\x31\0".to_vec()),
        (T::TransactionStart as u32, 4242, b"\0".to_vec()),
        (T::SetPerms as u32, 0, b"/\0b0\0".to_vec()),
        (T::SetPerms as u32, 0, b"/\0x0\0".to_vec()),
        (T::GetPerms as u32, 0, b"/\0".to_vec()),
        (T::Mkdir as u32, 0, b"/m/n\0".to_vec()),
        (T::Read as u32, 0, b"/m\0".to_vec()),
        (T::Rm as u32, 0, b"/m\0".to_vec()),
        (T::Write as u32, 0, b"/v\0with\0nul".to_vec()),
        (T::Read as u32, 0, b"/v\0".to_vec()),
        (T::Introduce as u32, 0, b"x\0".to_vec()),
        (T::Control as u32, 0, b"print\0hi\0".to_vec()),
    ];
    let mut diffs = Vec::new();
    for (t, tx, p) in &cases {
        let ra = raw_call(&mut a, *t, *tx, p);
        let rb = raw_call(&mut b, *t, *tx, p);
        // Xen 4.17's xenstored answers a READ whose payload is not exactly one string
        // with whatever errno was left over (ENOENT here); current xenstored and the
        // local server answer EINVAL. Both must refuse it.
        let one_string = p.last() == Some(&0) && p.iter().filter(|b| **b == 0).count() == 1;
        if *t == T::Read as u32 && !one_string {
            let err = T::Error as u32;
            assert_eq!((ra.0, rb.0), (err, err), "{:?}", String::from_utf8_lossy(p));
            assert_eq!(rb.1, b"EINVAL\0");
            continue;
        }
        // Deliberate differences, each checked on both sides:
        // - 4.17 parses GET_DOMAIN_PATH's domid with atoi (garbage → 0, no range check);
        //   the local server, like current xenstored, refuses it;
        // - 4.17 lacks XENSTORE_SERVER_FEATURE_WATCHDEPTH and refuses a <depth>; the
        //   local server honours it (docs/misc/xenstore.txt);
        // - INTRODUCE and CONTROL are not implemented by the local server (ENOSYS).
        let deliberate: Option<(&[u8], &[u8])> = match (*t, p.as_slice()) {
            (10, b"abc\0") => Some((b"/local/domain/0\0", b"EINVAL\0")),
            (10, b"70000\0") => Some((b"/local/domain/70000\0", b"EINVAL\0")),
            (4, b"/w\0t\0\x31\0") => Some((b"EINVAL\0", b"OK\0")),
            (8, b"x\0") => Some((b"EINVAL\0", b"ENOSYS\0")),
            (0, b"print\0hi\0") => Some((b"OK\0", b"ENOSYS\0")),
            _ => None,
        };
        if let Some((real_says, local_says)) = deliberate {
            assert_eq!(
                ra.1,
                real_says,
                "xenstored on {:?}",
                String::from_utf8_lossy(p)
            );
            assert_eq!(
                rb.1,
                local_says,
                "local on {:?}",
                String::from_utf8_lossy(p)
            );
            continue;
        }
        if ra != rb {
            diffs.push(format!(
                "type {t} payload {:?}: xenstored {:?} {:?}, local {:?} {:?}",
                String::from_utf8_lossy(p),
                ra.0,
                String::from_utf8_lossy(&ra.1),
                rb.0,
                String::from_utf8_lossy(&rb.1)
            ));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}

#[test]
fn guest_over_an_emulated_ring_meets_the_contract() {
    let Some(real) = RealXenstored::start() else {
        return;
    };
    let dom0 = real.client();
    let g = real.guest(&dom0, 3);
    contract(&g, "/local/domain/3/data");
    // Relative paths, and the guest is confined to its home.
    g.write(XsTx::NONE, "device/x", b"1").unwrap();
    assert_eq!(
        dom0.read(XsTx::NONE, "/local/domain/3/device/x").unwrap(),
        b"1"
    );
    assert_eq!(
        g.write(XsTx::NONE, "/elsewhere", b"1").unwrap_err().xsd(),
        Some(xenstore::XsdError::EACCES)
    );
}

#[derive(Clone, Debug)]
enum GOp {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    Read(String),
    Directory(String),
    GetPerms(String),
    SetPerms(String, Vec<(u16, char)>),
}

fn gpath() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("/local/domain/1"),
            Just("/local/domain/2"),
            Just("/shared")
        ],
        proptest::collection::vec(prop_oneof![Just("a"), Just("b")], 0..3),
    )
        .prop_map(|(root, parts)| {
            let mut p = root.to_string();
            for c in parts {
                p.push('/');
                p.push_str(c);
            }
            p
        })
}

fn gop() -> impl Strategy<Value = (u16, GOp)> {
    let perm = (
        0u16..3,
        prop_oneof![Just('n'), Just('r'), Just('w'), Just('b')],
    );
    let op = prop_oneof![
        3 => (gpath(), proptest::collection::vec(any::<u8>(), 0..3)).prop_map(|(p, v)| GOp::Write(p, v)),
        1 => gpath().prop_map(GOp::Mkdir),
        1 => gpath().prop_map(GOp::Rm),
        2 => gpath().prop_map(GOp::Read),
        1 => gpath().prop_map(GOp::Directory),
        1 => gpath().prop_map(GOp::GetPerms),
        2 => (gpath(), proptest::collection::vec(perm, 1..4)).prop_map(|(p, v)| GOp::SetPerms(p, v)),
    ];
    (0u16..3, op)
}

/// One actor's step: an operation, or several in a transaction ended with commit
/// (`true`) or abort.
#[derive(Clone, Debug)]
enum GStep {
    One(GOp),
    Tx(Vec<GOp>, bool),
}

fn gstep() -> impl Strategy<Value = (u16, GStep)> {
    prop_oneof![
        5 => gop().prop_map(|(w, o)| (w, GStep::One(o))),
        1 => (0u16..3, proptest::collection::vec(gop(), 1..4), any::<bool>())
            .prop_map(|(w, ops, c)| (w, GStep::Tx(ops.into_iter().map(|(_, o)| o).collect(), c))),
    ]
}

fn gstep_run(xs: &XsClient, step: &GStep) -> Vec<String> {
    match step {
        GStep::One(op) => vec![grun(xs, XsTx::NONE, op)],
        GStep::Tx(ops, commit) => {
            let tx = xs.transaction_start().unwrap();
            let mut out: Vec<String> = ops.iter().map(|op| grun(xs, tx, op)).collect();
            out.push(
                xs.transaction_end(tx, *commit)
                    .map_or_else(|e| e.to_string(), |_| "OK".into()),
            );
            out
        }
    }
}

fn grun(xs: &XsClient, t: XsTx, op: &GOp) -> String {
    use xenstore::{XsAccess, XsPerm};
    let r = match op {
        GOp::Write(p, v) => xs.write(t, p, v).map(|_| "OK".to_string()),
        GOp::Mkdir(p) => xs.mkdir(t, p).map(|_| "OK".to_string()),
        GOp::Rm(p) => xs.rm(t, p).map(|_| "OK".to_string()),
        GOp::Read(p) => xs.read(t, p).map(|v| format!("{v:?}")),
        GOp::Directory(p) => xs.directory(t, p).map(|mut d| {
            d.sort();
            format!("{d:?}")
        }),
        GOp::GetPerms(p) => xs.get_perms(t, p).map(|v| format!("{v:?}")),
        GOp::SetPerms(p, v) => {
            let perms: Vec<XsPerm> = v
                .iter()
                .map(|(d, c)| XsPerm::new(xen_ids::DomId(*d), XsAccess::from_letter(*c).unwrap()))
                .collect();
            xs.set_perms(t, p, &perms).map(|_| "OK".to_string())
        }
    };
    r.unwrap_or_else(|e| match e.xsd() {
        Some(x) => x.to_string(),
        None => panic!("transport error {e:?}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// dom0 and two unprivileged guests (over emulated rings on xenstored, socketpairs on
    /// the local server) run the same random operations, including permission changes
    /// and transactions:
    /// every answer, and every watch event each of them receives, must agree.
    #[test]
    fn permissions_and_watches_match_xenstored_for_guests(
        steps in proptest::collection::vec(gstep(), 1..30),
    ) {
        let Some(real) = RealXenstored::start() else { return Ok(()); };
        let r0 = real.client();
        let r1 = real.guest(&r0, 1);
        let r2 = real.guest(&r0, 2);
        r0.mkdir(XsTx::NONE, "/shared").unwrap();
        let xsd = Xenstored::new();
        let l0 = client(&xsd, 0);
        let l1 = client(&xsd, 1);
        let l2 = client(&xsd, 2);
        l0.mkdir(XsTx::NONE, "/shared").unwrap();
        let real_c = [&r0, &r1, &r2];
        let local_c = [&l0, &l1, &l2];
        let sync_and_drain = |cs: [&XsClient; 3]| -> Vec<Vec<WatchEvent>> {
            cs.iter()
                .map(|c| {
                    // A round trip: events queued for this connection before it are in.
                    c.get_domain_path(xen_ids::DomId(0)).unwrap();
                    events(c)
                })
                .collect()
        };
        for cs in [real_c, local_c] {
            for c in cs {
                for root in ["/local/domain/1", "/local/domain/2", "/shared"] {
                    c.watch(root, root).unwrap();
                }
            }
        }
        prop_assert_eq!(sync_and_drain(real_c), sync_and_drain(local_c), "initial events");
        for (who, op) in &steps {
            let i = usize::from(*who);
            let ra = gstep_run(real_c[i], op);
            let la = gstep_run(local_c[i], op);
            prop_assert_eq!(ra, la, "dom{} {:?}", who, op);
            prop_assert_eq!(
                sync_and_drain(real_c),
                sync_and_drain(local_c),
                "events after dom{} {:?}", who, op
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same with small quotas on both sides for nodes per domain and permission
    /// entries per node: ENOSPC in the same places. (Watches and transactions are left
    /// at their defaults: Xen 4.17 lets a domain exceed those quotas by one and answers
    /// E2BIG for watches; the local server enforces them exactly with ENOSPC, as
    /// current xenstored does. The contract tests cover those limits. Only plain
    /// operations: inside a transaction 4.17 defers the node quota to the commit, where
    /// it also demands one node less; the local server checks each creation.)
    #[test]
    fn quotas_match_xenstored_for_guests(
        steps in proptest::collection::vec(gop(), 1..40),
    ) {
        let Some(real) =
            RealXenstored::start_with(&["-E", "6", "-A", "2"])
        else {
            return Ok(());
        };
        let r0 = real.client();
        let r1 = real.guest(&r0, 1);
        let r2 = real.guest(&r0, 2);
        r0.mkdir(XsTx::NONE, "/shared").unwrap();
        let xsd = Xenstored::with_quotas(xenstored::Quotas {
            nodes: 6,
            perms: 2,
            ..Default::default()
        });
        let l0 = client(&xsd, 0);
        let l1 = client(&xsd, 1);
        let l2 = client(&xsd, 2);
        l0.mkdir(XsTx::NONE, "/shared").unwrap();
        let real_c = [&r0, &r1, &r2];
        let local_c = [&l0, &l1, &l2];
        for (who, op) in &steps {
            let i = usize::from(*who);
            let ra = grun(real_c[i], XsTx::NONE, op);
            let la = grun(local_c[i], XsTx::NONE, op);
            prop_assert_eq!(ra, la, "dom{} {:?}", who, op);
        }
    }
}
