//! What a guest's grants can cost the domain that copies from them, and the hypervisor:
//! a guest granting far more pages than the copy cache holds, and having each copied
//! once, leaves the copier with at most the documented number of mappings; forgetting
//! the guest (its domain died, its last device closed) releases them all; and
//! read-only grants cost the hypervisor no second descriptor.
//!
//! The tests count the whole process's mappings and descriptors: they run one at a time.

use std::sync::Mutex;

use hypervisor::grant::{
    Access, CopySegment, GntStatus, GrantCopy, GrantShare, SharedPages, PAGE_SIZE,
};
use xen_ids::DomId;
use xen_local::{
    open_fd_count, Domain, LocalHypervisor, LocalSharedPages, COPY_CACHE_PAGES,
    COPY_CACHE_PAGES_PER_PEER, MAX_ALLOCATIONS_PER_DOMAIN, MAX_SHARE_PAGES,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Mappings of memory granted by `dom` in this process (the granter's own and the
/// copier's).
fn mappings_of(dom: u16) -> usize {
    let tag = format!("/memfd:grant-dom{dom}-");
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&tag))
        .count()
}

/// A guest granting `allocs` allocations of `pages` pages each to dom0, every page
/// marked with its own number in its first 4 bytes.
fn grant_marked(g: &Domain, allocs: usize, pages: usize, access: Access) -> Vec<LocalSharedPages> {
    let mut n: u32 = 0;
    (0..allocs)
        .map(|_| {
            let s = g.share(DomId(0), pages, access).unwrap();
            for p in 0..pages {
                s.mem().write(p * PAGE_SIZE, &n.to_le_bytes()).unwrap();
                n += 1;
            }
            s
        })
        .collect()
}

/// dom0 copies the first 4 bytes of every page of `shares` once, in batches, and checks
/// each page's mark.
fn copy_each_once(b: &Domain, peer: DomId, shares: &[LocalSharedPages]) {
    let grefs: Vec<_> = shares.iter().flat_map(|s| s.grefs().to_vec()).collect();
    let mut local = vec![0u8; 4 * 256];
    for (batch, chunk) in grefs.chunks(256).enumerate() {
        let mut segs: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, &g)| CopySegment::from_grant(peer, g, 0, 4 * i, 4))
            .collect();
        b.copy(&mut local, &mut segs).unwrap();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.status, GntStatus::OKAY, "page {}", batch * 256 + i);
            let mark = u32::from_le_bytes(local[4 * i..4 * i + 4].try_into().unwrap());
            assert_eq!(mark as usize, batch * 256 + i, "wrong page copied");
        }
    }
}

#[test]
fn a_guest_granting_many_pages_gets_a_bounded_cache_and_nothing_after_it_is_forgotten() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let hv = LocalHypervisor::new();
    let b = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let g = Domain::from_fd(hv.connect(DomId(5)).unwrap()).unwrap();
    let maps0 = mappings_of(5);
    // Three times what one cache keeps of a peer, in whole-size allocations.
    let allocs = 3 * COPY_CACHE_PAGES_PER_PEER / MAX_SHARE_PAGES as usize + 1;
    let shares = grant_marked(&g, allocs, MAX_SHARE_PAGES as usize, Access::ReadOnly);
    let own = mappings_of(5) - maps0;
    assert_eq!(own, allocs, "the guest maps each of its allocations once");
    for round in 0..3 {
        copy_each_once(&b, DomId(5), &shares);
        let cached = b.copy_cache_pages(Some(DomId(5)));
        assert!(
            cached <= COPY_CACHE_PAGES_PER_PEER,
            "round {round}: {cached} pages cached"
        );
        assert!(
            cached > 0,
            "nothing cached: the bound is not what is measured"
        );
        let maps = mappings_of(5) - maps0 - own;
        assert!(
            maps <= COPY_CACHE_PAGES_PER_PEER,
            "round {round}: the copier maps {maps} of the guest's pages"
        );
    }
    b.forget_peer(DomId(5));
    assert_eq!(b.copy_cache_pages(None), 0);
    assert_eq!(
        mappings_of(5) - maps0,
        own,
        "mappings left after forget_peer"
    );
    // Copies keep working after the guest was forgotten.
    copy_each_once(&b, DomId(5), &shares[..1]);
    drop(shares);
    b.forget_peer(DomId(5));
    assert_eq!(mappings_of(5), maps0, "the guest's memory stays mapped");
}

#[test]
fn hostile_peers_fill_the_cache_but_cannot_evict_a_small_peer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let hv = LocalHypervisor::new();
    let b = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let honest = Domain::from_fd(hv.connect(DomId(9)).unwrap()).unwrap();
    let honest_shares = grant_marked(&honest, 1, 64, Access::Writable);
    copy_each_once(&b, DomId(9), &honest_shares);
    // Enough hostile peers, each at its own bound, to pass the global bound.
    let peers = COPY_CACHE_PAGES / COPY_CACHE_PAGES_PER_PEER + 2;
    let per = COPY_CACHE_PAGES_PER_PEER / MAX_SHARE_PAGES as usize + 1;
    let mut keep = Vec::new();
    for k in 0..peers {
        let id = DomId(20 + k as u16);
        let h = Domain::from_fd(hv.connect(id).unwrap()).unwrap();
        let shares = grant_marked(&h, per, MAX_SHARE_PAGES as usize, Access::ReadOnly);
        copy_each_once(&b, id, &shares);
        keep.push((h, shares));
    }
    let total = b.copy_cache_pages(None);
    assert!(total <= COPY_CACHE_PAGES, "{total} pages cached in all");
    assert!(total > COPY_CACHE_PAGES - COPY_CACHE_PAGES_PER_PEER);
    assert_eq!(
        b.copy_cache_pages(Some(DomId(9))),
        64,
        "the small peer lost its cached pages to the hostile ones"
    );
    for k in 0..peers {
        b.forget_peer(DomId(20 + k as u16));
    }
    assert_eq!(b.copy_cache_pages(None), 64);
}

#[test]
fn read_only_grants_cost_the_hypervisor_one_descriptor_each_and_are_capped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let hv = LocalHypervisor::new();
    let b = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let g = Domain::from_fd(hv.connect(DomId(6)).unwrap()).unwrap();
    let fds0 = open_fd_count().unwrap();
    let n = 200;
    let shares = grant_marked(&g, n, 1, Access::ReadOnly);
    let after_share = open_fd_count().unwrap();
    // The hypervisor keeps one memfd per allocation (the guest closed its copy).
    assert!(
        after_share - fds0 <= n + 2,
        "{} descriptors for {n} allocations",
        after_share - fds0
    );
    copy_each_once(&b, DomId(6), &shares);
    let after_copy = open_fd_count().unwrap();
    assert!(
        after_copy <= after_share + 2,
        "copying {n} read-only grants opened {} more descriptors",
        after_copy - after_share
    );
    // The allocation cap: a guest cannot hold more than the documented number.
    let mut more = Vec::new();
    let refused = loop {
        match g.share(DomId(0), 1, Access::ReadOnly) {
            Ok(s) => more.push(s),
            Err(e) => break e,
        }
        assert!(
            n + more.len() <= MAX_ALLOCATIONS_PER_DOMAIN,
            "no allocation cap"
        );
    };
    assert_eq!(n + more.len(), MAX_ALLOCATIONS_PER_DOMAIN);
    assert!(
        refused.to_string().contains("too many grant allocations"),
        "{refused}"
    );
    // Another domain is not affected by this one's cap.
    let other = Domain::from_fd(hv.connect(DomId(7)).unwrap()).unwrap();
    drop(other.share(DomId(0), 1, Access::ReadOnly).unwrap());
    drop(other);
    drop(more);
    drop(shares);
    b.forget_peer(DomId(6));
    assert!(
        open_fd_count().unwrap() <= fds0 + 4,
        "descriptors left behind"
    );
}
