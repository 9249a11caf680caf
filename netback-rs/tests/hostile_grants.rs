//! A hostile guest's grants must not pile up in netback (issue 12 D): the guest grants
//! far more pages than netback's copy cache keeps and has netback copy every one of
//! them once (TX requests, each with its own grant reference), beside an honest guest.
//! While it is alive, netback keeps at most the documented number of its pages mapped;
//! once its vif closes or its domain dies, netback keeps none, its mappings and RSS come
//! back to where they were, and the next guest in that domain connects and passes
//! traffic.

use std::time::{Duration, Instant};

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::NetbackConfig;
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use shared_ring::netif::{
    NetTxFlags, NetifRxFrontRing, NetifTxFrontRing, NetifTxRequest, NETIF_RSP_OKAY,
};
use shared_ring::FrontIndices;
use testbed::*;
use xen_ids::DomId;
use xen_local::{
    table, LocalHost, LocalPlatform, LocalSharedPages, COPY_CACHE_PAGES_PER_PEER, MAX_SHARE_PAGES,
};
use xenstore::{Xenstore, XsTx};

const HOSTILE: u16 = 2;

/// Mappings of memory granted by `dom`, in this process (netback, the guests and the
/// hypervisor all run in it).
fn mappings_of(dom: u16) -> usize {
    let tag = format!("/memfd:grant-dom{dom}-");
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&tag))
        .count()
}

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

/// Pages of `dom` netback keeps mapped for copies, asked on its own thread.
fn cached(nb: &BackendThread, dom: u16) -> usize {
    nb.call(
        move |nb| nb.platform().grants.copy_cache_pages(Some(DomId(dom))),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// The hostile guest, written from `netif.h`: rings, an event channel, and many
/// read-only data pages.
struct Hostile {
    plat: LocalPlatform,
    fe: String,
    be: String,
    tx_ring: LocalSharedPages,
    _rx_ring: LocalSharedPages,
    data: Vec<LocalSharedPages>,
    evtchn: EvtPort,
    tx_idx: FrontIndices,
}

impl Hostile {
    /// Connects, granting `allocs` allocations of the largest size.
    fn connect(host: &LocalHost, allocs: usize) -> Hostile {
        let plat = host.domain(DomId(HOSTILE)).unwrap();
        let fe = format!("/local/domain/{HOSTILE}/device/vif/0");
        let be = format!("/local/domain/0/backend/vif/{HOSTILE}/0");
        let w = |k: &str, v: &str| {
            plat.xenstore
                .write(XsTx::NONE, &format!("{fe}/{k}"), v.as_bytes())
                .unwrap()
        };
        w("state", "1");
        wait_state(&plat, &be, XenbusState::InitWait);
        let g = &plat.grants;
        let tx_ring = g.share(DomId(0), 1, Access::Writable).unwrap();
        let rx_ring = g.share(DomId(0), 1, Access::Writable).unwrap();
        NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
        NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
        let data = (0..allocs)
            .map(|_| {
                g.share(DomId(0), MAX_SHARE_PAGES as usize, Access::ReadOnly)
                    .unwrap()
            })
            .collect();
        let evtchn = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
        w("tx-ring-ref", &tx_ring.grefs()[0].0.to_string());
        w("rx-ring-ref", &rx_ring.grefs()[0].0.to_string());
        w("event-channel", &evtchn.0.to_string());
        w("request-rx-copy", "1");
        w("state", "4");
        wait_state(&plat, &be, XenbusState::Connected);
        Hostile {
            plat,
            fe,
            be,
            tx_ring,
            _rx_ring: rx_ring,
            data,
            evtchn,
            tx_idx: FrontIndices::default(),
        }
    }

    /// Sends one 60-byte frame from every data page, 128 requests at a time; every
    /// request must succeed and every frame reach the wire.
    fn copy_every_page(&mut self, wire: &mut MemPort) {
        let grefs: Vec<u32> = self
            .data
            .iter()
            .flat_map(|s| s.grefs().iter().map(|g| g.0))
            .collect();
        for chunk in grefs.chunks(128) {
            let mut r =
                NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
            for (i, &gref) in chunk.iter().enumerate() {
                let q = NetifTxRequest {
                    gref,
                    offset: 0,
                    flags: NetTxFlags::empty().bits(),
                    id: i as u16,
                    size: 60,
                };
                r.put_request(&q).unwrap();
            }
            r.push_requests();
            self.tx_idx = r.indices();
            self.plat.evtchn.notify(self.evtchn).unwrap();
            let mut ok = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while ok < chunk.len() {
                let mut r =
                    NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
                while let Ok(Some(x)) = r.take_response() {
                    assert_eq!(x.status, NETIF_RSP_OKAY, "request {} refused", x.id);
                    ok += 1;
                }
                self.tx_idx = r.indices();
                assert!(Instant::now() < deadline, "netback stopped answering");
                std::thread::sleep(Duration::from_micros(200));
            }
            let got = recv_n(wire, chunk.len(), Duration::from_secs(10));
            assert_eq!(got.len(), chunk.len(), "frames lost");
        }
    }

    /// Closes the vif as a guest does (state Closed), then frees its grants.
    fn close(self) {
        self.plat
            .xenstore
            .write(XsTx::NONE, &format!("{}/state", self.fe), b"6")
            .unwrap();
        wait_state(&self.plat, &self.be, XenbusState::Closed);
        let _ = self.plat.evtchn.unbind(self.evtchn);
    }
}

fn wait_state(plat: &LocalPlatform, be: &str, want: XenbusState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = read_state(&plat.xenstore, &format!("{be}/state")).ok();
        if s == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend stayed {s:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn good_roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32) {
    for s in 0..20 {
        send_all(&mut guest.app, &frame(base + s, 300));
    }
    let got = recv_n(wire, 20, Duration::from_secs(10));
    assert_eq!(got.len(), 20, "the honest vif lost traffic");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

#[test]
fn a_guest_granting_many_pages_leaves_nothing_mapped_after_it_goes() {
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    let bad = add_vif(&host, DomId(HOSTILE), 0).expect("vif");
    // Ports resident from the start: their slots would otherwise be first touched one by
    // one as frames pass, growth that is not the guest's (hostile_more.rs).
    let ports = MemPortConfig {
        prefault: true,
        ..MemPortConfig::new(256, 65536)
    };
    let nb =
        BackendThread::start_with_ports(&host, NetbackConfig::default(), ports).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut good_wire = nb.wire(good);
    let mut bad_wire = nb.wire(bad);
    // Every slot of the honest guest's ports touched once (1 024 frames each way), so
    // that RSS measures growth, not first touches.
    for k in 0..52 {
        good_roundtrip(&mut guest, &mut good_wire, 20 * k);
    }
    // The first cycle is the attack at full scale, as many pages as the guest's grant
    // table holds (15 × 4 096 = 61 440); it also warms up what is not the guest's
    // (netback's buffers, the wire). The others grant at least three times what
    // netback's cache keeps of one peer.
    let full = (table::CAPACITY / MAX_SHARE_PAGES - 1) as usize;
    let small = (3 * COPY_CACHE_PAGES_PER_PEER).div_ceil(MAX_SHARE_PAGES as usize);
    let mut base = None;
    for cycle in 0..4u32 {
        let allocs = if cycle == 0 { full } else { small };
        let pages = allocs * MAX_SHARE_PAGES as usize;
        let mut h = Hostile::connect(&host, allocs);
        let own = mappings_of(HOSTILE); // the guest's, and netback's of its rings
        h.copy_every_page(&mut bad_wire);
        // Alive: at most the bound of its pages mapped in netback.
        let n = cached(&nb, HOSTILE);
        assert!(
            (1..=COPY_CACHE_PAGES_PER_PEER).contains(&n),
            "cycle {cycle}: netback keeps {n} of {pages} pages"
        );
        let maps = mappings_of(HOSTILE) - own;
        assert!(
            maps <= COPY_CACHE_PAGES_PER_PEER,
            "cycle {cycle}: netback maps {maps} of the guest's pages"
        );
        let rss_alive = rss();
        good_roundtrip(&mut guest, &mut good_wire, 1000 * (cycle + 1));
        // Gone: the vif closes (even cycles) or the domain dies (odd ones).
        if cycle % 2 == 0 {
            h.close();
        } else {
            drop(h); // its last connection closes: @releaseDomain
            wait_until("netback lets go of the dead guest", || {
                nb.vif_status(bad).is_some_and(|s| !s.connected)
            });
        }
        wait_until("the guest's grants are gone", || {
            host.hypervisor.stats().allocations == 4
        });
        assert_eq!(cached(&nb, HOSTILE), 0, "cycle {cycle}: pages still cached");
        assert_eq!(
            mappings_of(HOSTILE),
            0,
            "cycle {cycle}: the gone guest's memory is still mapped"
        );
        good_roundtrip(&mut guest, &mut good_wire, 1000 * (cycle + 1) + 500);
        let now = rss();
        eprintln!(
            "cycle {cycle}: {pages} pages copied; alive: {n} cached, {maps} mappings, RSS \
             {} KiB; gone: 0 cached, 0 mappings, RSS {} KiB",
            rss_alive >> 10,
            now >> 10
        );
        match base {
            None => base = Some(now),
            // Allocator arenas move RSS by up to ~1 MiB between cycles under load; one
            // leaked cache would be 8 MiB (2 048 pages), the attack's pages 240 MiB.
            Some(b) => assert!(
                now <= b + (4 << 20),
                "cycle {cycle}: RSS {now} after the guest went, {b} after the first"
            ),
        }
    }
    // The next guest in that domain connects and passes traffic both ways.
    let mut next = Guest::start(&host, DomId(HOSTILE), NetfrontConfig::new(0)).expect("guest");
    good_roundtrip(&mut next, &mut bad_wire, 90_000);
    send_all(&mut bad_wire, &frame(77, 400));
    let got = recv_n(&mut next.app, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "RX to the next guest");
    assert_eq!(check_frame(&got[0]), 77);
    good_roundtrip(&mut guest, &mut good_wire, 99_000);
    assert!(nb.vif_status(good).unwrap().connected);
}
