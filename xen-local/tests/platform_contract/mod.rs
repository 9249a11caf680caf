//! The contract of the grant and event-channel traits, written once against the traits
//! and run against every implementation a test can instantiate (`local` here; `xen`
//! on the test bed).

#![allow(dead_code)]

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use hypervisor::evtchn::{EventChannels, Port};
use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantMap, GrantMapping, GrantShare, MemError,
    SharedPages, PAGE_SIZE,
};
use xen_ids::DomId;

/// Wait until `fd` is readable, at most `ms` milliseconds; whether it is.
pub fn readable(fd: impl AsFd, ms: i32) -> bool {
    let timeout = std::time::Duration::from_millis(ms.max(0) as u64);
    hypervisor::poll::readable(fd, timeout).unwrap()
}

/// Generous bound for an event that must arrive (never reached when things work).
pub const MUST_ARRIVE_MS: i32 = 10_000;

/// Frontend `front` (domain `front_id`) shares with backend `back` (domain `back_id`).
pub fn grant_contract<F, B>(front: &F, front_id: DomId, back: &B, back_id: DomId)
where
    F: GrantShare,
    B: GrantMap + GrantCopy,
{
    // Share two writable pages; the frontend's view is writable and zeroed.
    let shared = front.share(back_id, 2, Access::Writable).unwrap();
    assert_eq!(shared.grefs().len(), 2);
    assert_ne!(shared.grefs()[0], shared.grefs()[1]);
    assert_eq!(shared.peer(), back_id);
    assert_eq!(shared.access(), Access::Writable);
    let fm = shared.mem();
    assert_eq!(fm.len(), 2 * PAGE_SIZE);
    assert!(fm.is_writable());
    assert_eq!(fm.read_volatile::<u64>(PAGE_SIZE + 8).unwrap(), 0);
    fm.write(PAGE_SIZE + 100, b"from the frontend").unwrap();
    fm.store_u32(0, 7, Ordering::Release).unwrap();

    // Map both pages writable, in order; both sides see each other's writes.
    let g = shared.grefs().to_vec();
    let map = back.map(front_id, &g, Access::Writable).unwrap();
    assert_eq!(map.refs(), &g[..]);
    assert_eq!(map.peer(), front_id);
    let bm = map.mem();
    assert_eq!(bm.len(), 2 * PAGE_SIZE);
    let mut buf = [0u8; 17];
    bm.read(PAGE_SIZE + 100, &mut buf).unwrap();
    assert_eq!(&buf, b"from the frontend");
    assert_eq!(bm.load_u32(0, Ordering::Acquire).unwrap(), 7);
    bm.store_u32(4, 9, Ordering::Release).unwrap();
    assert_eq!(fm.load_u32(4, Ordering::Acquire).unwrap(), 9);
    assert!(bm.write(2 * PAGE_SIZE - 1, &[0, 0]).is_err());

    // A read-only mapping of a writable grant refuses writes without faulting.
    let ro_map = back.map(front_id, &g[1..], Access::ReadOnly).unwrap();
    assert!(!ro_map.mem().is_writable());
    assert_eq!(ro_map.mem().write(0, &[1]), Err(MemError::ReadOnly));
    ro_map.mem().read(100, &mut buf).unwrap();
    assert_eq!(&buf, b"from the frontend");
    ro_map.unmap().unwrap();

    // Batched grant copy, both directions, per-segment status.
    let mut local = vec![0u8; 256];
    local[200..205].copy_from_slice(b"hello");
    let mut segs = [
        CopySegment::from_grant(front_id, g[1], 100, 0, 17),
        CopySegment::to_grant(front_id, g[0], 1000, 200, 5),
        CopySegment::from_grant(front_id, g[0], 4090, 0, 10), // crosses the page
        CopySegment::from_grant(front_id, g[0], 0, 250, 10),  // outside the local buffer
        CopySegment::from_grant(front_id, g[0], 0, 0, 0),     // empty
    ];
    back.copy(&mut local, &mut segs).unwrap();
    assert_eq!(segs[0].status, GntStatus::OKAY);
    assert_eq!(&local[..17], b"from the frontend");
    assert_eq!(segs[1].status, GntStatus::OKAY);
    let mut got = [0u8; 5];
    fm.read(1000, &mut got).unwrap();
    assert_eq!(&got, b"hello");
    assert_eq!(segs[2].status, GntStatus::BAD_COPY_ARG);
    assert_eq!(segs[3].status, GntStatus::BAD_VIRT_ADDR);
    assert_eq!(segs[4].status, GntStatus::OKAY);

    // Read-only grants: read-only map and copies out work; writable map and copies in
    // are refused.
    let ro = front.share(back_id, 1, Access::ReadOnly).unwrap();
    ro.mem().write(0, b"ro data").unwrap();
    let rg = ro.grefs()[0];
    assert!(back.map(front_id, &[rg], Access::Writable).is_err());
    let m = back.map(front_id, &[rg], Access::ReadOnly).unwrap();
    let mut b7 = [0u8; 7];
    m.mem().read(0, &mut b7).unwrap();
    assert_eq!(&b7, b"ro data");
    drop(m);
    let mut segs = [
        CopySegment::from_grant(front_id, rg, 0, 0, 7),
        CopySegment::to_grant(front_id, rg, 0, 0, 7),
    ];
    back.copy(&mut local, &mut segs).unwrap();
    assert_eq!(segs[0].status, GntStatus::OKAY);
    assert_ne!(segs[1].status, GntStatus::OKAY);
    ro.mem().read(0, &mut b7).unwrap();
    assert_eq!(&b7, b"ro data", "a refused copy must not write");

    // Revocation: the next copy and the next map fail; an existing mapping stays valid
    // until unmapped (Xen defers the free).
    ro.revoke().unwrap();
    let mut segs = [CopySegment::from_grant(front_id, rg, 0, 0, 7)];
    back.copy(&mut local, &mut segs).unwrap();
    assert_ne!(segs[0].status, GntStatus::OKAY);
    assert!(back.map(front_id, &[rg], Access::ReadOnly).is_err());

    shared.revoke().unwrap();
    assert_eq!(bm.load_u32(0, Ordering::Acquire).unwrap(), 7);
    let mut segs = [CopySegment::from_grant(front_id, g[0], 0, 0, 4)];
    back.copy(&mut local, &mut segs).unwrap();
    assert_ne!(segs[0].status, GntStatus::OKAY);
    map.unmap().unwrap();
}

/// Check that exactly `want` is pending on `e` (waiting for it if needed).
pub fn expect_pending<E: EventChannels>(e: &E, want: Port) {
    assert!(readable(e, MUST_ARRIVE_MS), "{want} never fired");
    let mut out = [Port(0); 8];
    let n = e.pending(&mut out).unwrap();
    assert_eq!(&out[..n], &[want]);
}

/// Check that nothing is pending on `e` right now.
pub fn expect_quiet<E: EventChannels>(e: &E) {
    assert!(!readable(e, 0), "unexpectedly readable");
    let mut out = [Port(0); 8];
    assert_eq!(e.pending(&mut out).unwrap(), 0);
}

/// Frontend handle `a` (domain `a_id`) and backend handle `b` (domain `b_id`).
pub fn evtchn_contract<A, B>(a: &A, a_id: DomId, b: &B, b_id: DomId)
where
    A: EventChannels,
    B: EventChannels,
{
    let pa = a.alloc_unbound(b_id).unwrap();
    // Only the named peer may bind, and only once.
    let pb = b.bind_interdomain(a_id, pa).unwrap();
    assert!(b.bind_interdomain(a_id, pa).is_err(), "port bound twice");
    expect_quiet(a);
    expect_quiet(b);

    // a → b; the port then stays masked: more notifications are not reported...
    a.notify(pa).unwrap();
    expect_pending(b, pb);
    a.notify(pa).unwrap();
    a.notify(pa).unwrap();
    expect_quiet(b);
    // ...until unmasked, when the remembered notification fires once.
    b.unmask(pb).unwrap();
    expect_pending(b, pb);
    b.unmask(pb).unwrap();
    expect_quiet(b);

    // b → a.
    b.notify(pb).unwrap();
    expect_pending(a, pa);
    a.unmask(pa).unwrap();
    expect_quiet(a);

    // A second channel is reported separately.
    let pa2 = a.alloc_unbound(b_id).unwrap();
    let pb2 = b.bind_interdomain(a_id, pa2).unwrap();
    a.notify(pa2).unwrap();
    expect_pending(b, pb2);
    b.unmask(pb2).unwrap();

    // Unbinding: the peer's notifications are dropped, the port is gone.
    b.unbind(pb).unwrap();
    a.notify(pa).unwrap();
    expect_quiet(b);
    assert!(b.notify(pb).is_err());
    assert!(b.unmask(pb).is_err());
    assert!(b.unbind(pb).is_err());
    a.unbind(pa).unwrap();
    a.unbind(pa2).unwrap();
    b.unbind(pb2).unwrap();
}
