//! `hv-platform-check`: the two halves of the test bed's `platform` scenario, written
//! once against the `hypervisor` traits and run on real Xen (`/dev/xen/*`, xenstore) or,
//! with `--local SOCKET`, on a `local-hypervisor` daemon.
//!
//! ```text
//! hv-platform-check guest [--backend-domid D] [--local SOCKET --domid N]
//! hv-platform-check dom0 --guest-domid N [--local SOCKET]
//! ```
//!
//! * **guest**: grants two writable pages and one read-only page to the backend
//!   (gntalloc), allocates an unbound event channel for it, and publishes the three
//!   references and the port under `data/platform/` in its xenstore home, in one
//!   transaction. It then waits for the backend's doorbell, checks what the backend
//!   wrote (a mapped write and a grant copy) and that the read-only page is untouched,
//!   rings back, waits for the final doorbell and revokes everything.
//! * **dom0**: watches the guest's `data/platform/port`, maps the first page (gntdev),
//!   checks and answers the greeting, grant-copies out of and into the second page,
//!   checks that the read-only grant refuses writable maps and copies in, binds the
//!   port, rings, waits for the guest's answer, and rings once more.
//!
//! Each side prints `PLATFORM-GUEST-OK` / `PLATFORM-DOM0-OK` and exits 0 on success;
//! on failure it prints `PLATFORM-GUEST-FAIL: why` / `PLATFORM-DOM0-FAIL: why` and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hypervisor::evtchn::xen::XenEventChannels;
use hypervisor::evtchn::{EventChannels, Port};
use hypervisor::grant::xen::{Gntalloc, Gntdev};
use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantMap, GrantMapping, GrantRef, GrantShare,
    SharedPages, PAGE_SIZE,
};
use xen_ids::DomId;
use xen_local::Domain;
use xenstore::{with_transaction, Xenstore, XsClient, XsTx};

const USAGE: &str = "usage: hv-platform-check guest [--backend-domid D] [--local SOCKET --domid N]\n       hv-platform-check dom0 --guest-domid N [--local SOCKET]";
const TIMEOUT: Duration = Duration::from_secs(60);
const GREETING: &[u8] = b"platform: hello from the guest";
const ANSWER: &[u8] = b"platform: hello from dom0";
const RO_TEXT: &[u8] = b"platform: read-only page";
const COPY_LEN: u16 = 1500;
const GUEST_MARK: u32 = 0x6a75_7374;

type Res<T> = Result<T, String>;

fn pattern(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

fn ensure(cond: bool, what: &str) -> Res<()> {
    if cond {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

/// Wait for `port` to fire (at most [`TIMEOUT`]), then unmask it.
fn wait_event(ev: &impl EventChannels, port: Port) -> Res<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut out = [Port(0); 16];
        let n = ev.pending(&mut out).map_err(|e| format!("pending: {e}"))?;
        if out[..n].contains(&port) {
            ev.unmask(port).map_err(|e| format!("unmask: {e}"))?;
            return Ok(());
        }
        for p in &out[..n] {
            ev.unmask(*p).map_err(|e| format!("unmask: {e}"))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no event on {port} within {TIMEOUT:?}"));
        }
        hypervisor::poll::readable(ev.as_fd(), left).map_err(|e| format!("poll: {e}"))?;
    }
}

fn guest<G: GrantShare, E: EventChannels>(g: &G, ev: &E, xs: &XsClient, backend: DomId) -> Res<()> {
    let pages = g
        .share(backend, 2, Access::Writable)
        .map_err(|e| format!("share: {e}"))?;
    let ro = g
        .share(backend, 1, Access::ReadOnly)
        .map_err(|e| format!("share read-only: {e}"))?;
    let m = pages.mem();
    let w = |r: Result<(), hypervisor::grant::MemError>| r.map_err(|e| e.to_string());
    w(m.write(16, GREETING))?;
    for i in 0..PAGE_SIZE {
        w(m.write_volatile(PAGE_SIZE + i, pattern(i)))?;
    }
    w(ro.mem().write(0, RO_TEXT))?;
    let port = ev
        .alloc_unbound(backend)
        .map_err(|e| format!("alloc_unbound: {e}"))?;
    let (g0, g1, gro) = (pages.grefs()[0], pages.grefs()[1], ro.grefs()[0]);
    println!("guest: granted {g0} {g1} (writable), {gro} (read-only), {port}");
    with_transaction(xs, |tx| {
        xs.write(tx, "data/platform/gref0", g0.0.to_string().as_bytes())?;
        xs.write(tx, "data/platform/gref1", g1.0.to_string().as_bytes())?;
        xs.write(tx, "data/platform/gref-ro", gro.0.to_string().as_bytes())?;
        xs.write(tx, "data/platform/port", port.0.to_string().as_bytes())
    })
    .map_err(|e| format!("xenstore publish: {e}"))?;

    wait_event(ev, port)?;
    let mut buf = vec![0u8; ANSWER.len()];
    w(m.read(64, &mut buf))?;
    ensure(buf == ANSWER, "dom0's mapped write is not visible")?;
    for i in 0..usize::from(COPY_LEN) {
        let v: u8 = m
            .read_volatile(PAGE_SIZE + 100 + i)
            .map_err(|e| e.to_string())?;
        ensure(
            v == pattern(usize::from(COPY_LEN) - 1 - i),
            "dom0's grant copy into page 1 is wrong",
        )?;
    }
    let mut rb = vec![0u8; RO_TEXT.len()];
    w(ro.mem().read(0, &mut rb))?;
    ensure(rb == RO_TEXT, "the read-only page was modified")?;
    w(m.store_u32(4, GUEST_MARK, Ordering::Release))?;
    ev.notify(port).map_err(|e| format!("notify: {e}"))?;
    wait_event(ev, port)?;
    pages.revoke().map_err(|e| format!("revoke: {e}"))?;
    ro.revoke().map_err(|e| format!("revoke: {e}"))?;
    ev.unbind(port).map_err(|e| format!("unbind: {e}"))?;
    Ok(())
}

fn read_num(xs: &XsClient, path: &str) -> Res<u32> {
    let s = xs
        .read_string(XsTx::NONE, path)
        .map_err(|e| format!("read {path}: {e}"))?;
    s.trim()
        .parse()
        .map_err(|_| format!("{path}: not a number: {s:?}"))
}

fn dom0<B: GrantMap + GrantCopy, E: EventChannels>(
    b: &B,
    ev: &E,
    xs: &XsClient,
    guest: DomId,
) -> Res<()> {
    let base = format!("/local/domain/{}/data/platform", guest.0);
    let port_path = format!("{base}/port");
    xs.watch(&port_path, "platform")
        .map_err(|e| format!("watch: {e}"))?;
    let deadline = Instant::now() + TIMEOUT;
    while xs
        .try_read(XsTx::NONE, &port_path)
        .map_err(|e| format!("read: {e}"))?
        .is_none()
    {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{port_path} never appeared"));
        }
        xs.wait_event(Some(left))
            .map_err(|e| format!("watch: {e}"))?;
    }
    let g0 = GrantRef(read_num(xs, &format!("{base}/gref0"))?);
    let g1 = GrantRef(read_num(xs, &format!("{base}/gref1"))?);
    let gro = GrantRef(read_num(xs, &format!("{base}/gref-ro"))?);
    let rport = Port(read_num(xs, &port_path)?);
    println!("dom0: guest granted {g0} {g1}, {gro} (read-only), {rport}");

    // Mapped access.
    let map = b
        .map(guest, &[g0], Access::Writable)
        .map_err(|e| format!("map: {e}"))?;
    let mut buf = vec![0u8; GREETING.len()];
    map.mem().read(16, &mut buf).map_err(|e| e.to_string())?;
    ensure(
        buf == GREETING,
        "the guest's greeting is not in the mapped page",
    )?;
    map.mem().write(64, ANSWER).map_err(|e| e.to_string())?;

    // Grant copy out of and into page 1, both in one batch after a first read.
    let n = usize::from(COPY_LEN);
    let mut local = vec![0u8; 2 * n];
    let mut segs = [CopySegment::from_grant(guest, g1, 0, 0, COPY_LEN)];
    b.copy(&mut local, &mut segs)
        .map_err(|e| format!("grant copy: {e}"))?;
    ensure(
        segs[0].status == GntStatus::OKAY,
        &format!("grant copy from the guest: {}", segs[0].status),
    )?;
    ensure(
        (0..n).all(|i| local[i] == pattern(i)),
        "grant copy from the guest returned wrong bytes",
    )?;
    for i in 0..n {
        local[n + i] = pattern(n - 1 - i);
    }
    let mut segs = [
        CopySegment::to_grant(guest, g1, 100, n, COPY_LEN),
        CopySegment::from_grant(guest, gro, 0, 0, RO_TEXT.len() as u16),
        CopySegment::to_grant(guest, gro, 0, 0, 8),
        CopySegment::from_grant(guest, g1, 4000, 0, 200),
    ];
    b.copy(&mut local, &mut segs)
        .map_err(|e| format!("grant copy: {e}"))?;
    ensure(
        segs[0].status == GntStatus::OKAY,
        &format!("grant copy into the guest: {}", segs[0].status),
    )?;
    ensure(
        segs[1].status == GntStatus::OKAY,
        &format!("grant copy from the read-only grant: {}", segs[1].status),
    )?;
    ensure(
        &local[..RO_TEXT.len()] == RO_TEXT,
        "read-only grant content",
    )?;
    ensure(
        segs[2].status != GntStatus::OKAY,
        "a copy into a read-only grant succeeded",
    )?;
    ensure(
        segs[3].status == GntStatus::BAD_COPY_ARG,
        &format!("a copy crossing the page: {}", segs[3].status),
    )?;
    ensure(
        b.map(guest, &[gro], Access::Writable).is_err(),
        "a writable map of a read-only grant succeeded",
    )?;
    let rmap = b
        .map(guest, &[gro], Access::ReadOnly)
        .map_err(|e| format!("read-only map: {e}"))?;
    let mut rb = vec![0u8; RO_TEXT.len()];
    rmap.mem().read(0, &mut rb).map_err(|e| e.to_string())?;
    ensure(rb == RO_TEXT, "read-only mapping content")?;
    rmap.unmap().map_err(|e| format!("unmap: {e}"))?;

    // Doorbells both ways.
    let lport = ev
        .bind_interdomain(guest, rport)
        .map_err(|e| format!("bind_interdomain: {e}"))?;
    ev.notify(lport).map_err(|e| format!("notify: {e}"))?;
    // Xen marks a freshly bound interdomain port pending ("we may have lost
    // notifications on the remote unbound port"): an event may come before the guest
    // rang. Wait until the guest's mark is there, event by event.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        wait_event(ev, lport)?;
        let mark = map
            .mem()
            .load_u32(4, Ordering::Acquire)
            .map_err(|e| e.to_string())?;
        if mark == GUEST_MARK {
            break;
        }
        ensure(
            Instant::now() < deadline,
            "the guest rang back without writing its mark",
        )?;
    }
    map.unmap().map_err(|e| format!("unmap: {e}"))?;
    ev.notify(lport).map_err(|e| format!("notify: {e}"))?;
    ev.unbind(lport).map_err(|e| format!("unbind: {e}"))?;
    Ok(())
}

struct Args {
    role: String,
    local: Option<PathBuf>,
    domid: Option<u16>,
    backend: u16,
    guest: Option<u16>,
}

fn parse() -> Res<Args> {
    let mut it = std::env::args().skip(1);
    let role = it.next().ok_or("missing role")?;
    let mut a = Args {
        role,
        local: None,
        domid: None,
        backend: 0,
        guest: None,
    };
    let num = |v: Option<String>, what: &str| -> Res<u16> {
        v.ok_or(format!("{what} needs a value"))?
            .parse()
            .map_err(|_| format!("{what}: not a domain id"))
    };
    while let Some(k) = it.next() {
        match k.as_str() {
            "--local" => a.local = Some(it.next().ok_or("--local needs a path")?.into()),
            "--domid" => a.domid = Some(num(it.next(), "--domid")?),
            "--backend-domid" => a.backend = num(it.next(), "--backend-domid")?,
            "--guest-domid" => a.guest = Some(num(it.next(), "--guest-domid")?),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(a)
}

fn run(a: Args) -> Res<()> {
    match (a.role.as_str(), &a.local) {
        ("guest", None) => {
            let g = Gntalloc::open().map_err(|e| e.to_string())?;
            let ev = XenEventChannels::open().map_err(|e| e.to_string())?;
            let xs = XsClient::open_default().map_err(|e| format!("xenstore: {e}"))?;
            guest(&g, &ev, &xs, DomId(a.backend))
        }
        ("guest", Some(sock)) => {
            let me = a.domid.ok_or("--local needs --domid for the guest")?;
            let d = Domain::attach(sock, DomId(me)).map_err(|e| format!("attach: {e}"))?;
            let ev = d.event_channels().map_err(|e| e.to_string())?;
            let xs = XsClient::new(d.xenstore().map_err(|e| format!("xenstore: {e}"))?)
                .map_err(|e| format!("xenstore: {e}"))?;
            guest(&d, &ev, &xs, DomId(a.backend))
        }
        ("dom0", local) => {
            let gid = DomId(a.guest.ok_or("dom0 needs --guest-domid")?);
            match local {
                None => {
                    let b = Gntdev::open().map_err(|e| e.to_string())?;
                    let ev = XenEventChannels::open().map_err(|e| e.to_string())?;
                    let xs = XsClient::open_default().map_err(|e| format!("xenstore: {e}"))?;
                    dom0(&b, &ev, &xs, gid)
                }
                Some(sock) => {
                    let d = Domain::attach(sock, DomId(a.domid.unwrap_or(0)))
                        .map_err(|e| format!("attach: {e}"))?;
                    let ev = d.event_channels().map_err(|e| e.to_string())?;
                    let xs = XsClient::new(d.xenstore().map_err(|e| format!("xenstore: {e}"))?)
                        .map_err(|e| format!("xenstore: {e}"))?;
                    dom0(&d, &ev, &xs, gid)
                }
            }
        }
        (other, _) => Err(format!("unknown role {other:?}")),
    }
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hv-platform-check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let tag = if a.role == "guest" { "GUEST" } else { "DOM0" };
    match run(a) {
        Ok(()) => {
            println!("PLATFORM-{tag}-OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("PLATFORM-{tag}-FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
