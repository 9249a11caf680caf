//! The grant-copy cache: the peers' granted pages a domain keeps mapped so that a copy
//! costs a grant-table load and a `memcpy`, not a round trip to the hypervisor.
//!
//! Bounded: each cache keeps at most [`COPY_CACHE_PAGES_PER_PEER`] pages of one peer
//! and [`COPY_CACHE_PAGES`] pages in all, one page per mapping. When a bound is reached
//! the oldest page goes first (second chance: a page used since it was cached goes to
//! the back of the queue once), taken from the inserting peer for the per-peer bound
//! and from the peer with the most pages for the global one, so that a guest that
//! grants many pages only ever evicts its own while others stay within their share.
//! Copies beyond the bound keep working: an evicted page is fetched again on its next
//! use. [`CopyCache::forget_peer`] drops everything of a peer at once (its domain
//! died, or its last device closed), so nothing of it stays mapped.
//!
//! A page is found by its grant reference through a [`GrefSlots`] index (one entry per
//! reference of the peer's table, no hashing): a guest cannot make a lookup slower or
//! the index larger by its choice of references, and a reference finds only its own
//! page.

use std::collections::VecDeque;

use crate::gref_slots::GrefSlots;
use crate::table;

use hypervisor::grant::{GntStatus, SharedMem};
use xen_ids::DomId;

/// The most granted pages one copy cache keeps mapped for one peer domain (8 MiB).
/// A domain has [`COPY_SHARDS`] caches (one per copying thread, round-robin), so one
/// process keeps at most `COPY_SHARDS ×` this many pages of one peer.
pub const COPY_CACHE_PAGES_PER_PEER: usize = 2048;
/// The most granted pages one copy cache keeps mapped for all peers together
/// (32 MiB, as many mappings); `COPY_SHARDS ×` this many per process.
pub const COPY_CACHE_PAGES: usize = 8192;
/// Copy caches per domain: threads copying through one `Domain` take them round-robin,
/// so that several queue threads do not serialise on one lock.
pub const COPY_SHARDS: usize = 4;

/// One cached page of a peer's allocation, mapped alone.
struct CachedGrant {
    alloc: u32,
    mem: SharedMem,
    /// Used since it was (re)queued: spared once by eviction.
    used: bool,
    /// Matches its live entry in [`PeerGrants::order`]; older entries are stale.
    seq: u64,
}

/// What a cache knows about one peer: its grant table (read-only) and its pages mapped.
struct PeerGrants {
    domid: DomId,
    table: SharedMem,
    grants: GrefSlots<CachedGrant>,
    /// Eviction order, oldest first: `(gref, seq)`; entries whose `seq` no longer
    /// matches the cached page are stale and skipped.
    order: VecDeque<(u32, u64)>,
}

impl PeerGrants {
    /// Evicts the oldest page not used since it was queued. False when empty.
    fn evict_one(&mut self, next_seq: &mut u64) -> bool {
        while let Some((gref, seq)) = self.order.pop_front() {
            let Some(g) = self.grants.get_mut(gref) else {
                continue;
            };
            if g.seq != seq {
                continue;
            }
            if g.used {
                g.used = false;
                g.seq = *next_seq;
                *next_seq += 1;
                self.order.push_back((gref, g.seq));
                continue;
            }
            self.grants.remove(gref); // unmaps
            return true;
        }
        false
    }

    /// Drops stale order entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.grants.len() + 64 {
            let grants = &self.grants;
            self.order
                .retain(|(g, s)| grants.get(*g).is_some_and(|c| c.seq == *s));
        }
    }
}

/// One shard of a domain's copy cache (see the module documentation).
#[derive(Default)]
pub(crate) struct CopyCache {
    peers: Vec<PeerGrants>,
    /// Pages mapped, all peers.
    pages: usize,
    next_seq: u64,
}

// Every page a peer may keep fits its index's slab.
const _: () = assert!(COPY_CACHE_PAGES_PER_PEER <= GrefSlots::<CachedGrant>::MAX);

impl CopyCache {
    /// The index of `domid`'s entry; on first use, its grant table is mapped by
    /// `open_table`.
    pub(crate) fn peer(
        &mut self,
        domid: DomId,
        open_table: impl FnOnce(DomId) -> Result<SharedMem, GntStatus>,
    ) -> Result<usize, GntStatus> {
        if let Some(i) = self.peers.iter().position(|p| p.domid == domid) {
            return Ok(i);
        }
        let table = open_table(domid)?;
        self.peers.push(PeerGrants {
            domid,
            table,
            grants: GrefSlots::default(),
            order: VecDeque::new(),
        });
        Ok(self.peers.len() - 1)
    }

    /// Peer `pi`'s grant table.
    pub(crate) fn table(&self, pi: usize) -> &SharedMem {
        &self.peers[pi].table
    }

    /// Peer `pi`'s page `gref` of allocation `alloc`: cached, or mapped by `fetch` (which
    /// asks the hypervisor, which checks the grant, and answers the page's allocation
    /// and its mapping) and cached, evicting first if a bound is reached.
    pub(crate) fn page(
        &mut self,
        pi: usize,
        gref: u32,
        alloc: u32,
        fetch: impl FnOnce(DomId, u32) -> Result<(u32, SharedMem), GntStatus>,
    ) -> Result<&SharedMem, GntStatus> {
        if gref >= table::CAPACITY {
            return Err(GntStatus::BAD_GNTREF);
        }
        let hit = matches!(self.peers[pi].grants.get(gref), Some(g) if g.alloc == alloc);
        if !hit {
            let (alloc, mem) = fetch(self.peers[pi].domid, gref)?;
            self.insert(pi, gref, alloc, mem)?;
        }
        let g = self.peers[pi]
            .grants
            .get_mut(gref)
            .ok_or(GntStatus::BAD_GNTREF)?;
        // Only a page used again since it was cached is spared once.
        g.used |= hit;
        Ok(&g.mem)
    }

    /// Drops peer `pi`'s page `gref` (revoked or granted elsewhere).
    pub(crate) fn drop_page(&mut self, pi: usize, gref: u32) {
        if self.peers[pi].grants.remove(gref).is_some() {
            self.pages -= 1;
            self.peers[pi].compact();
        }
    }

    /// Unmaps everything of `domid` (pages and grant table).
    pub(crate) fn forget_peer(&mut self, domid: DomId) {
        if let Some(i) = self.peers.iter().position(|p| p.domid == domid) {
            let p = self.peers.swap_remove(i);
            self.pages -= p.grants.len();
        }
    }

    /// Pages mapped: of `domid`, or of every peer.
    pub(crate) fn pages(&self, domid: Option<DomId>) -> usize {
        match domid {
            None => self.pages,
            Some(d) => self
                .peers
                .iter()
                .find(|p| p.domid == d)
                .map_or(0, |p| p.grants.len()),
        }
    }

    /// Caches `mem`, the mapping of peer `pi`'s page `gref` of allocation `alloc`
    /// (refused, and unmapped, for a reference beyond the grant table).
    fn insert(
        &mut self,
        pi: usize,
        gref: u32,
        alloc: u32,
        mem: SharedMem,
    ) -> Result<(), GntStatus> {
        self.drop_page(pi, gref);
        self.make_room(pi);
        let seq = self.next_seq;
        let page = CachedGrant {
            alloc,
            mem,
            used: false,
            seq,
        };
        let p = &mut self.peers[pi];
        if p.grants.insert(gref, page).is_err() {
            return Err(GntStatus::BAD_GNTREF);
        }
        self.next_seq += 1;
        p.order.push_back((gref, seq));
        self.pages += 1;
        Ok(())
    }

    /// Evicts until peer `pi` and the whole cache have room for one more page.
    fn make_room(&mut self, pi: usize) {
        while self.peers[pi].grants.len() >= COPY_CACHE_PAGES_PER_PEER {
            if !self.evict_from(pi) {
                break;
            }
        }
        while self.pages >= COPY_CACHE_PAGES {
            let largest = (0..self.peers.len())
                .max_by_key(|&i| self.peers[i].grants.len())
                .expect("pages > 0 means a peer");
            if !self.evict_from(largest) {
                break;
            }
        }
    }

    fn evict_from(&mut self, pi: usize) -> bool {
        let evicted = self.peers[pi].evict_one(&mut self.next_seq);
        if evicted {
            self.pages -= 1;
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use hypervisor::grant::PAGE_SIZE;
    use std::os::fd::AsFd;

    fn page() -> SharedMem {
        let fd = sys::sealed_memfd(c"copy-cache-test", PAGE_SIZE).unwrap();
        sys::mmap_fd(fd.as_fd(), PAGE_SIZE, 0, false).unwrap()
    }

    fn cached(c: &CopyCache, pi: usize) -> Vec<u32> {
        let mut v: Vec<u32> = c.peers[pi].grants.grefs().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn the_oldest_page_goes_first_and_a_page_used_again_is_spared_once() {
        let mut c = CopyCache::default();
        let pi = c.peer(DomId(3), |_| Ok(page())).unwrap();
        let fetch = |_: DomId, _: u32| Ok((7, page()));
        for g in 0..COPY_CACHE_PAGES_PER_PEER as u32 {
            c.page(pi, g, 7, fetch).unwrap();
        }
        assert_eq!(c.pages(None), COPY_CACHE_PAGES_PER_PEER);
        c.page(pi, 0, 7, |_, _| panic!("page 0 is cached")).unwrap();
        // One more: page 0 was used again and is spared; page 1 is the oldest.
        c.page(pi, 60_000, 7, fetch).unwrap();
        let now = cached(&c, pi);
        assert_eq!(now.len(), COPY_CACHE_PAGES_PER_PEER);
        assert!(now.contains(&0) && !now.contains(&1), "{:?}", &now[..3]);
        // A re-granted reference (another allocation) is fetched again, not reused.
        let mut asked = false;
        c.page(pi, 0, 8, |_, _| {
            asked = true;
            Ok((8, page()))
        })
        .unwrap();
        assert!(asked);
        assert_eq!(c.pages(Some(DomId(3))), COPY_CACHE_PAGES_PER_PEER);
        assert!(c.peers[pi].order.len() <= 2 * COPY_CACHE_PAGES_PER_PEER + 64);
        c.forget_peer(DomId(3));
        assert_eq!(c.pages(None), 0);
        assert!(c.peers.is_empty());
    }

    /// A page holding `gref` in its first 4 bytes.
    fn marked(gref: u32) -> SharedMem {
        let fd = sys::sealed_memfd(c"copy-cache-test", PAGE_SIZE).unwrap();
        let mem = sys::mmap_fd(fd.as_fd(), PAGE_SIZE, 0, true).unwrap();
        mem.write(0, &gref.to_le_bytes()).unwrap();
        mem
    }

    fn mark(mem: &SharedMem) -> u32 {
        let mut b = [0u8; 4];
        mem.read(0, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    #[test]
    fn references_spread_over_the_whole_table_stay_within_the_bound_and_find_their_own_page() {
        // A guest has netback copy from references of its choosing: every 13th of the
        // table, three times round (far more than the per-peer bound).
        let mut c = CopyCache::default();
        let pi = c.peer(DomId(4), |_| Ok(page())).unwrap();
        let grefs: Vec<u32> = (0..table::CAPACITY).step_by(13).collect();
        assert!(grefs.len() > 2 * COPY_CACHE_PAGES_PER_PEER);
        for round in 0..3 {
            for &g in &grefs {
                let mem = c.page(pi, g, round, |_, g| Ok((round, marked(g)))).unwrap();
                assert_eq!(mark(mem), g, "gref {g} found another page");
            }
            assert_eq!(c.pages(Some(DomId(4))), COPY_CACHE_PAGES_PER_PEER);
            // The index's slab never held more than the bound.
            assert_eq!(c.peers[pi].grants.capacity(), COPY_CACHE_PAGES_PER_PEER);
            assert!(c.peers[pi].order.len() <= 2 * COPY_CACHE_PAGES_PER_PEER + 64);
        }
        // What is cached is the last pages copied, each under its own reference.
        let cached = cached(&c, pi);
        let last = &grefs[grefs.len() - COPY_CACHE_PAGES_PER_PEER..];
        assert_eq!(cached, last);
        for &g in last {
            let mem = c.page(pi, g, 2, |_, _| panic!("{g} is cached")).unwrap();
            assert_eq!(mark(mem), g);
        }
        // A reference beyond the table is refused before anything is mapped or evicted.
        let beyond = c.page(pi, table::CAPACITY, 2, |_, _| panic!("fetched"));
        assert_eq!(beyond.err(), Some(GntStatus::BAD_GNTREF));
        assert_eq!(c.pages(None), COPY_CACHE_PAGES_PER_PEER);
        // A revoked reference is dropped: its next copy maps the page again.
        c.drop_page(pi, last[0]);
        assert_eq!(c.pages(None), COPY_CACHE_PAGES_PER_PEER - 1);
        let mut asked = false;
        c.page(pi, last[0], 2, |_, g| {
            asked = true;
            Ok((2, marked(g)))
        })
        .unwrap();
        assert!(asked, "a dropped page was still cached");
    }
}
