//! The grant and event-channel contract and every refusal case, on the `local`
//! implementation (in-process hypervisor, one thread per domain connection).

mod platform_contract;

use hypervisor::evtchn::{EventChannels, EvtchnError, Port};
use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantError, GrantMap, GrantMapping, GrantRef,
    GrantShare, SharedPages, PAGE_SIZE,
};
use platform_contract::*;
use xen_ids::DomId;
use xen_local::{Domain, LocalHypervisor};

const FRONT: DomId = DomId(1);
const BACK: DomId = DomId(0);

fn pair() -> (LocalHypervisor, Domain, Domain) {
    let hv = LocalHypervisor::new();
    let f = Domain::from_fd(hv.connect(FRONT).unwrap()).unwrap();
    let b = Domain::from_fd(hv.connect(BACK).unwrap()).unwrap();
    assert_eq!(f.domid(), FRONT);
    assert_eq!(b.domid(), BACK);
    (hv, f, b)
}

#[test]
fn grant_contract_holds_on_local() {
    let (hv, f, b) = pair();
    grant_contract(&f, FRONT, &b, BACK);
    let s = hv.stats();
    assert_eq!((s.allocations, s.grants), (0, 0));
}

#[test]
fn evtchn_contract_holds_on_local() {
    let (hv, f, b) = pair();
    let fe = f.event_channels().unwrap();
    let be = b.event_channels().unwrap();
    evtchn_contract(&fe, FRONT, &be, BACK);
    assert_eq!(hv.stats().ports, 0);
}

#[test]
fn a_domain_may_grant_to_itself() {
    let hv = LocalHypervisor::new();
    let d = Domain::from_fd(hv.connect(DomId(5)).unwrap()).unwrap();
    grant_contract(&d, DomId(5), &d, DomId(5));
    let e = d.event_channels().unwrap();
    let p = e.alloc_unbound(DomId(5)).unwrap();
    let q = e.bind_interdomain(DomId(5), p).unwrap();
    e.notify(p).unwrap();
    expect_pending(&e, q);
}

fn refused(r: Result<impl std::fmt::Debug, GrantError>) -> (GntStatus, String) {
    match r {
        Err(GrantError::Refused { status, reason, .. }) => (status, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn copy_status(b: &Domain, seg: CopySegment) -> GntStatus {
    let mut local = vec![0u8; PAGE_SIZE];
    let mut segs = [seg];
    b.copy(&mut local, &mut segs).unwrap();
    segs[0].status
}

#[test]
fn every_grant_refusal_case_is_an_error_not_a_crash() {
    let hv = LocalHypervisor::new();
    let f = Domain::from_fd(hv.connect(FRONT).unwrap()).unwrap();
    let b = Domain::from_fd(hv.connect(BACK).unwrap()).unwrap();
    let other = Domain::from_fd(hv.connect(DomId(2)).unwrap()).unwrap();
    let rw = f.share(BACK, 1, Access::Writable).unwrap();
    let ro = f.share(BACK, 1, Access::ReadOnly).unwrap();
    let g = rw.grefs()[0];
    let rg = ro.grefs()[0];

    // Wrong domain: dom2 uses grants made for dom0.
    let (st, why) = refused(other.map(FRONT, &[g], Access::ReadOnly));
    assert_eq!(st, GntStatus::GENERAL_ERROR);
    assert!(why.contains("another domain"), "{why}");
    assert_eq!(
        copy_status(&other, CopySegment::from_grant(FRONT, g, 0, 0, 8)),
        GntStatus::GENERAL_ERROR
    );

    // Unknown reference (in range, never granted) and one outside the table.
    let (st, why) = refused(b.map(FRONT, &[GrantRef(60000)], Access::ReadOnly));
    assert_eq!(st, GntStatus::GENERAL_ERROR);
    assert!(why.contains("not in use"), "{why}");
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(FRONT, GrantRef(60000), 0, 0, 8)),
        GntStatus::GENERAL_ERROR
    );
    assert_eq!(
        refused(b.map(FRONT, &[GrantRef(1 << 20)], Access::ReadOnly)).0,
        GntStatus::BAD_GNTREF
    );
    assert_eq!(
        copy_status(
            &b,
            CopySegment::from_grant(FRONT, GrantRef(u32::MAX), 0, 0, 8)
        ),
        GntStatus::BAD_GNTREF
    );

    // Unknown domain.
    assert_eq!(
        refused(b.map(DomId(77), &[g], Access::ReadOnly)).0,
        GntStatus::BAD_DOMAIN
    );
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(DomId(77), g, 0, 0, 8)),
        GntStatus::BAD_DOMAIN
    );

    // Write to a read-only grant: writable map and copy into it.
    let (st, why) = refused(b.map(FRONT, &[rg], Access::Writable));
    assert_eq!(st, GntStatus::GENERAL_ERROR);
    assert!(why.contains("read-only"), "{why}");
    assert_eq!(
        copy_status(&b, CopySegment::to_grant(FRONT, rg, 0, 0, 8)),
        GntStatus::GENERAL_ERROR
    );
    // One bad reference refuses the whole map, naming it.
    match b.map(FRONT, &[g, rg], Access::Writable) {
        Err(GrantError::Refused { gref, .. }) => assert_eq!(gref, rg),
        other => panic!("{other:?}"),
    }

    // Offset + length outside the page, and outside the local buffer.
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(FRONT, g, 4000, 0, 97)),
        GntStatus::BAD_COPY_ARG
    );
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(FRONT, g, u16::MAX, 0, 1)),
        GntStatus::BAD_COPY_ARG
    );
    assert_eq!(
        copy_status(&b, CopySegment::to_grant(FRONT, g, 0, PAGE_SIZE - 1, 2)),
        GntStatus::BAD_VIRT_ADDR
    );
    assert_eq!(
        copy_status(&b, CopySegment::to_grant(FRONT, g, 0, usize::MAX, 2)),
        GntStatus::BAD_VIRT_ADDR
    );

    // Revoked grant, including after the copy path cached it and after the reference
    // was reused for a grant to another domain.
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(FRONT, g, 0, 0, 8)),
        GntStatus::OKAY
    );
    rw.revoke().unwrap();
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(FRONT, g, 0, 0, 8)),
        GntStatus::GENERAL_ERROR
    );
    assert_eq!(
        refused(b.map(FRONT, &[g], Access::ReadOnly)).0,
        GntStatus::GENERAL_ERROR
    );
    let reuse = f.share(DomId(2), 1, Access::Writable).unwrap();
    assert_eq!(reuse.grefs()[0], g, "the freed reference is reused");
    assert_eq!(
        copy_status(&b, CopySegment::from_grant(FRONT, g, 0, 0, 8)),
        GntStatus::GENERAL_ERROR
    );
    // ... and the new grantee gets the new page, not the old one.
    reuse.mem().write(0, b"new page").unwrap();
    let mut local = vec![0u8; 8];
    let mut segs = [CopySegment::from_grant(FRONT, g, 0, 0, 8)];
    other.copy(&mut local, &mut segs).unwrap();
    assert_eq!(segs[0].status, GntStatus::OKAY);
    assert_eq!(&local, b"new page");

    // Bad arguments.
    assert!(matches!(
        f.share(BACK, 0, Access::Writable),
        Err(GrantError::InvalidArgument(_))
    ));
    assert!(matches!(
        f.share(BACK, 1 << 20, Access::Writable),
        Err(GrantError::InvalidArgument(_))
    ));
    assert!(matches!(
        b.map(FRONT, &[], Access::Writable),
        Err(GrantError::InvalidArgument(_))
    ));
    drop(ro);
}

#[test]
fn a_mixed_batch_fails_segment_by_segment() {
    let (_hv, f, b) = pair();
    let s = f.share(BACK, 4, Access::Writable).unwrap();
    for (i, g) in s.grefs().iter().enumerate() {
        s.mem().fill(i * PAGE_SIZE, PAGE_SIZE, i as u8 + 1).unwrap();
        let _ = g;
    }
    let g = s.grefs();
    let mut local = vec![0u8; 32 * 64];
    let mut segs: Vec<CopySegment> = (0..32)
        .map(|i| CopySegment::from_grant(FRONT, g[i % 4], (i * 64) as u16, i * 64, 64))
        .collect();
    segs[5].gref = GrantRef(9999);
    segs[6].domid = DomId(3);
    segs[7].offset = 4095;
    b.copy(&mut local, &mut segs).unwrap();
    for (i, seg) in segs.iter().enumerate() {
        match i {
            5 | 6 => assert_ne!(seg.status, GntStatus::OKAY),
            7 => assert_eq!(seg.status, GntStatus::BAD_COPY_ARG),
            _ => {
                assert_eq!(seg.status, GntStatus::OKAY, "segment {i}");
                assert!(local[i * 64..(i + 1) * 64]
                    .iter()
                    .all(|&x| x == (i % 4) as u8 + 1));
            }
        }
    }
}

#[test]
fn a_mapping_survives_revocation_until_unmapped_and_maps_only_granted_pages() {
    let (_hv, f, b) = pair();
    let s = f.share(BACK, 3, Access::Writable).unwrap();
    s.mem().write(2 * PAGE_SIZE, b"third").unwrap();
    // Map the third page alone: the mapping is exactly one page.
    let m = b.map(FRONT, &s.grefs()[2..], Access::Writable).unwrap();
    assert_eq!(m.mem().len(), PAGE_SIZE);
    let mut buf = [0u8; 5];
    m.mem().read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"third");
    s.revoke().unwrap();
    m.mem().read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"third");
    m.unmap().unwrap();
}

#[test]
fn event_channel_refusals() {
    let hv = LocalHypervisor::new();
    let f = Domain::from_fd(hv.connect(FRONT).unwrap()).unwrap();
    let b = Domain::from_fd(hv.connect(BACK).unwrap()).unwrap();
    let o = Domain::from_fd(hv.connect(DomId(2)).unwrap()).unwrap();
    let (fe, be, oe) = (
        f.event_channels().unwrap(),
        b.event_channels().unwrap(),
        o.event_channels().unwrap(),
    );
    let p = fe.alloc_unbound(BACK).unwrap();
    // Another domain may not bind a port allocated for dom0.
    assert!(matches!(
        oe.bind_interdomain(FRONT, p),
        Err(EvtchnError::Refused(_))
    ));
    // No such port / no such domain.
    assert!(matches!(
        be.bind_interdomain(FRONT, Port(999)),
        Err(EvtchnError::Refused(_))
    ));
    assert!(matches!(
        be.bind_interdomain(DomId(50), p),
        Err(EvtchnError::Refused(_))
    ));
    // Ports this handle does not hold.
    assert!(matches!(be.notify(p), Err(EvtchnError::UnknownPort(_))));
    assert!(matches!(
        be.unmask(Port(0)),
        Err(EvtchnError::UnknownPort(_))
    ));
    // Notifying before the peer binds is dropped; the binding starts quiet.
    fe.notify(p).unwrap();
    let q = be.bind_interdomain(FRONT, p).unwrap();
    expect_quiet(&be);
    fe.notify(p).unwrap();
    expect_pending(&be, q);
    // After the backend unbinds, the frontend's port is unbound again and can be
    // re-bound (by the domain it was allocated for).
    be.unbind(q).unwrap();
    let q2 = be.bind_interdomain(FRONT, p).unwrap();
    fe.notify(p).unwrap();
    expect_pending(&be, q2);
    // Dropping a handle unbinds its ports.
    drop(be);
    assert_eq!(hv.stats().ports, 1);
    drop(fe);
    assert_eq!(hv.stats().ports, 0);
}

#[test]
fn the_pollable_fd_works_in_one_epoll_loop_with_other_fds() {
    let (_hv, f, b) = pair();
    let fe = f.event_channels().unwrap();
    let be = b.event_channels().unwrap();
    let p = fe.alloc_unbound(BACK).unwrap();
    let q = be.bind_interdomain(FRONT, p).unwrap();
    let ep = hypervisor::poll::Epoll::new().unwrap();
    use std::os::fd::AsFd;
    use std::time::Duration;
    ep.add(be.as_fd(), 42).unwrap();
    let mut keys = [0u64; 4];
    assert_eq!(ep.wait(&mut keys, Duration::ZERO).unwrap(), 0);
    fe.notify(p).unwrap();
    let must_arrive = Duration::from_millis(MUST_ARRIVE_MS as u64);
    let n = ep.wait(&mut keys, must_arrive).unwrap();
    assert_eq!(n, 1);
    assert_eq!(keys[0], 42);
    expect_pending(&be, q);
    assert_eq!(
        ep.wait(&mut keys, Duration::ZERO).unwrap(),
        0,
        "masked port keeps the loop quiet"
    );
}

#[test]
fn a_detached_port_fires_on_its_own_fd_until_acknowledged_and_loses_nothing() {
    use std::time::Duration;
    let (hv, f, b) = pair();
    let fe = f.event_channels().unwrap();
    let be = b.event_channels().unwrap();
    let (p, p2) = (
        fe.alloc_unbound(BACK).unwrap(),
        fe.alloc_unbound(BACK).unwrap(),
    );
    let (q, q2) = (
        be.bind_interdomain(FRONT, p).unwrap(),
        be.bind_interdomain(FRONT, p2).unwrap(),
    );
    let must_arrive = MUST_ARRIVE_MS;
    // A notification sent before the detach is not lost: the port's own fd has it,
    // the handle's fd no longer reports the port.
    fe.notify(p).unwrap();
    let fd = be.detach(q).unwrap().expect("local ports have a fd each");
    assert!(
        readable(&fd, must_arrive),
        "the early notification was lost"
    );
    expect_quiet(&be);
    // Level-triggered until acknowledged; one acknowledgement takes several
    // notifications; then quiet until the next one.
    fe.notify(p).unwrap();
    assert!(readable(&fd, 0));
    assert!(be.ack(q).unwrap());
    assert!(!readable(&fd, 0));
    assert!(!be.ack(q).unwrap());
    for _ in 0..3 {
        fe.notify(p).unwrap();
        assert!(readable(&fd, must_arrive), "a notification was lost");
        assert!(be.ack(q).unwrap());
    }
    // No mask: unmask does nothing, and a notification while the caller does not look
    // stays until it does.
    be.unmask(q).unwrap();
    fe.notify(p).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert!(readable(&fd, 0));
    assert!(be.ack(q).unwrap());
    // The other port still fires on the handle's fd, with its mask.
    fe.notify(p2).unwrap();
    expect_pending(&be, q2);
    fe.notify(p2).unwrap();
    expect_quiet(&be);
    assert!(!readable(&fd, 0), "another port fired on this fd");
    assert!(matches!(be.ack(q2), Err(EvtchnError::NotDetached(_))));
    // Detaching twice hands out another fd of the same port.
    let again = be.detach(q).unwrap().unwrap();
    fe.notify(p).unwrap();
    assert!(readable(&again, must_arrive) && readable(&fd, 0));
    // Unbinding: the port is gone.
    be.unbind(q).unwrap();
    assert!(matches!(be.ack(q), Err(EvtchnError::UnknownPort(_))));
    assert!(matches!(be.detach(q), Err(EvtchnError::UnknownPort(_))));
    drop((fe, be));
    assert_eq!(hv.stats().ports, 0);
}

#[test]
fn threads_with_separate_domids_share_a_page_and_ring_each_other() {
    let (_hv, f, b) = pair();
    let fe = f.event_channels().unwrap();
    let s = f.share(BACK, 1, Access::Writable).unwrap();
    let p = fe.alloc_unbound(BACK).unwrap();
    let gref = s.grefs()[0];
    const ROUNDS: u32 = 1000;
    let back = std::thread::spawn(move || {
        let be = b.event_channels().unwrap();
        let q = be.bind_interdomain(FRONT, p).unwrap();
        let m = b.map(FRONT, &[gref], Access::Writable).unwrap();
        be.notify(q).unwrap(); // "connected"
        for i in 1..=ROUNDS {
            expect_pending(&be, q);
            be.unmask(q).unwrap();
            let v = m
                .mem()
                .load_u32(0, std::sync::atomic::Ordering::Acquire)
                .unwrap();
            assert_eq!(v, 2 * i - 1);
            m.mem()
                .store_u32(0, 2 * i, std::sync::atomic::Ordering::Release)
                .unwrap();
            be.notify(q).unwrap();
        }
    });
    expect_pending(&fe, p);
    fe.unmask(p).unwrap();
    for i in 1..=ROUNDS {
        s.mem()
            .store_u32(0, 2 * i - 1, std::sync::atomic::Ordering::Release)
            .unwrap();
        fe.notify(p).unwrap();
        expect_pending(&fe, p);
        fe.unmask(p).unwrap();
        assert_eq!(
            s.mem()
                .load_u32(0, std::sync::atomic::Ordering::Acquire)
                .unwrap(),
            2 * i
        );
    }
    back.join().unwrap();
}

#[test]
fn handles_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Domain>();
    send_sync::<xen_local::LocalEventChannels>();
    send_sync::<LocalHypervisor>();
    send::<xen_local::LocalSharedPages>();
    send::<xen_local::LocalMapping>();
    send_sync::<hypervisor::grant::xen::Gntalloc>();
    send_sync::<hypervisor::grant::xen::Gntdev>();
    send::<hypervisor::grant::xen::XenSharedPages>();
    send::<hypervisor::grant::xen::XenMapping>();
    send_sync::<hypervisor::evtchn::xen::XenEventChannels>();
    send_sync::<hypervisor::grant::SharedMem>();
}

#[test]
fn several_threads_copy_through_one_domain() {
    let (_hv, f, b) = pair();
    let s = f.share(BACK, 8, Access::Writable).unwrap();
    for i in 0..8 {
        s.mem().fill(i * PAGE_SIZE, PAGE_SIZE, i as u8).unwrap();
    }
    let grefs = s.grefs().to_vec();
    let b = std::sync::Arc::new(b);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (b, grefs) = (b.clone(), grefs.clone());
            std::thread::spawn(move || {
                let mut local = vec![0u8; 8 * 256];
                for round in 0..200 {
                    let mut segs: Vec<CopySegment> = (0..8)
                        .map(|i| {
                            CopySegment::from_grant(
                                FRONT,
                                grefs[i],
                                (round % 16) * 256,
                                i * 256,
                                256,
                            )
                        })
                        .collect();
                    b.copy(&mut local, &mut segs).unwrap();
                    for (i, seg) in segs.iter().enumerate() {
                        assert_eq!(seg.status, GntStatus::OKAY, "thread {t}");
                        assert!(local[i * 256..(i + 1) * 256].iter().all(|&x| x == i as u8));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A domain whose last hypervisor connection closes has died: xenstore fires
/// `@releaseDomain` and no longer counts it as introduced; its nodes stay; connecting
/// again introduces it again.
#[test]
fn a_domain_whose_last_connection_closes_is_released_in_xenstore() {
    use std::time::Duration;
    use xen_local::LocalHost;
    use xenstore::{Xenstore, XsTx};

    let host = LocalHost::new();
    let dom0 = host.domain(DomId(0)).unwrap();
    let xs = &dom0.xenstore;
    xs.watch("@releaseDomain", "rel").unwrap();
    // The registration event.
    let first = xs
        .wait_event(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    assert_eq!(first.path, "@releaseDomain");

    let guest = host.domain(DomId(7)).unwrap();
    let guest2 = host.domain(DomId(7)).unwrap();
    guest
        .xenstore
        .write(XsTx::NONE, "/local/domain/7/data", b"x")
        .unwrap();
    assert!(xs.is_domain_introduced(xen_ids::DomId(7)).unwrap());
    // One of two connections closes: still alive.
    drop(guest);
    std::thread::sleep(Duration::from_millis(50));
    assert!(xs.is_domain_introduced(xen_ids::DomId(7)).unwrap());
    assert!(
        xs.try_event().is_none(),
        "released while a connection is open"
    );
    // The last one: dead.
    drop(guest2);
    let ev = xs.wait_event(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ev.map(|e| e.path).as_deref(), Some("@releaseDomain"));
    assert!(!xs.is_domain_introduced(xen_ids::DomId(7)).unwrap());
    assert!(
        xs.is_domain_introduced(xen_ids::DomId(0)).unwrap(),
        "dom0 never dies"
    );
    // Its nodes are the toolstack's to remove.
    assert_eq!(xs.read(XsTx::NONE, "/local/domain/7/data").unwrap(), b"x");
    // A domain with the same id comes back.
    let _again = host.domain(DomId(7)).unwrap();
    assert!(xs.is_domain_introduced(xen_ids::DomId(7)).unwrap());
}
