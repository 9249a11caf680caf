//! Leak checks for the local platform: descriptors and mappings are released after
//! revoke, unmap and unbind. A test binary of its own with a single test, because it
//! counts the whole process's open descriptors.

use hypervisor::evtchn::EventChannels;
use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantMap, GrantMapping, GrantShare, SharedPages,
    PAGE_SIZE,
};
use xen_ids::DomId;
use xen_local::{open_fd_count, Domain, LocalHypervisor};

fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("/memfd:grant-dom1-"))
        .count()
}

#[test]
fn descriptors_and_mappings_are_released() {
    let hv = LocalHypervisor::new();
    let f = Domain::from_fd(hv.connect(DomId(1)).unwrap()).unwrap();
    let b = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let fe = f.event_channels().unwrap();
    let be = b.event_channels().unwrap();
    let fds = open_fd_count().unwrap();
    let maps = memfd_mappings();
    for round in 0..20 {
        let s = f.share(DomId(0), 4, Access::Writable).unwrap();
        let ro = f.share(DomId(0), 1, Access::ReadOnly).unwrap();
        let m = b.map(DomId(1), s.grefs(), Access::Writable).unwrap();
        let mr = b.map(DomId(1), ro.grefs(), Access::ReadOnly).unwrap();
        let mut local = vec![0u8; PAGE_SIZE];
        let mut segs = [
            CopySegment::from_grant(DomId(1), s.grefs()[round % 4], 0, 0, 64),
            CopySegment::from_grant(DomId(1), ro.grefs()[0], 0, 64, 64),
        ];
        b.copy(&mut local, &mut segs).unwrap();
        assert_eq!([segs[0].status, segs[1].status], [GntStatus::OKAY; 2]);
        assert!(
            memfd_mappings() > maps,
            "the check must see the mappings it counts"
        );
        let p = fe.alloc_unbound(DomId(0)).unwrap();
        let q = be.bind_interdomain(DomId(1), p).unwrap();
        fe.notify(p).unwrap();
        be.notify(q).unwrap();
        m.unmap().unwrap();
        drop(mr);
        s.revoke().unwrap();
        drop(ro); // revokes too
                  // The copy path notices the revocation and drops its cached mapping.
        b.copy(&mut local, &mut segs).unwrap();
        assert_ne!(segs[0].status, GntStatus::OKAY);
        assert_ne!(segs[1].status, GntStatus::OKAY);
        be.unbind(q).unwrap();
        fe.unbind(p).unwrap();
    }
    assert_eq!(open_fd_count().unwrap(), fds, "descriptors leaked");
    assert_eq!(memfd_mappings(), maps, "mappings of granted memory leaked");
    let st = hv.stats();
    assert_eq!((st.allocations, st.grants, st.ports), (0, 0, 0));
}
