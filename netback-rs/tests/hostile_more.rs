//! More hostile frontends, beside a well-behaved vif, and the leak check: 1 000
//! connect / abuse / disconnect cycles of one hostile guest, rotating through every
//! abuse class below, must leave netback's process with the same descriptors, grants,
//! mappings and (within a small bound) memory, and the good vif's traffic intact.
//!
//! Abuse classes here (hostile.rs has the malformed-slot ones): a slot crossing its
//! page, a wild producer index, an event-channel storm, a scribbled credit area,
//! absurd ring references in xenstore, a read-only grant offered as a ring, a grant
//! that does not exist, a data grant revoked while its request is on the ring,
//! requests rewritten while the backend reads them, and a frontend flipping its state.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::heap_in_use;
use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::NetbackConfig;
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig};
use shared_ring::credit::{CREDIT_AREA_BYTES, CREDIT_AREA_OFFSET};
use shared_ring::netif::{
    NetTxFlags, NetifRxFrontRing, NetifTxFrontRing, NetifTxRequest, NETIF_RSP_ERROR,
};
use shared_ring::ring::layout;
use shared_ring::FrontIndices;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalSharedPages;
use xen_local::{LocalHost, LocalPlatform};
use xenstore::{Xenstore, XsTx};

/// One connection of the hostile guest: rings, a data page, an event channel.
struct Conn {
    tx_ring: LocalSharedPages,
    _rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    evtchn: EvtPort,
    tx_idx: FrontIndices,
}

/// The hostile guest: one domain, reconnecting its device again and again.
struct Hostile {
    plat: LocalPlatform,
    fe: String,
    be: String,
}

impl Hostile {
    fn new(host: &LocalHost, domid: u16, devid: u32) -> Hostile {
        let plat = host.domain(DomId(domid)).unwrap();
        let fe = format!("/local/domain/{domid}/device/vif/{devid}");
        let be = format!("/local/domain/0/backend/vif/{domid}/{devid}");
        Hostile { plat, fe, be }
    }

    fn write(&self, key: &str, v: &str) {
        self.plat
            .xenstore
            .write(XsTx::NONE, &format!("{}/{key}", self.fe), v.as_bytes())
            .unwrap();
    }

    fn be_state(&self) -> XenbusState {
        read_state(&self.plat.xenstore, &format!("{}/state", self.be)).unwrap()
    }

    fn wait_be(&self, want: &[XenbusState]) -> XenbusState {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.be_state();
            if want.contains(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "backend stayed {s:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn error(&self) -> String {
        String::from_utf8(
            self.plat
                .xenstore
                .read(XsTx::NONE, &format!("{}/error", self.be))
                .unwrap_or_default(),
        )
        .unwrap()
    }

    /// Grants rings (the TX ring with `ring_access`) and publishes them as netfront does
    /// (`refs` overrides the ring references written). Returns once the backend answered.
    fn connect(&self, ring_access: Access, refs: Option<(&str, &str)>) -> (Conn, XenbusState) {
        self.write("state", "1");
        self.wait_be(&[XenbusState::InitWait]);
        let g = &self.plat.grants;
        let tx_ring = g.share(DomId(0), 1, ring_access).unwrap();
        let rx_ring = g.share(DomId(0), 1, Access::Writable).unwrap();
        let data = g.share(DomId(0), 1, Access::ReadOnly).unwrap();
        if ring_access == Access::Writable {
            NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
        }
        NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
        let evtchn = self.plat.evtchn.alloc_unbound(DomId(0)).unwrap();
        let (t, r) = (
            tx_ring.grefs()[0].0.to_string(),
            rx_ring.grefs()[0].0.to_string(),
        );
        let (t, r) = refs.unwrap_or((&t, &r));
        self.write("tx-ring-ref", t);
        self.write("rx-ring-ref", r);
        self.write("event-channel", &evtchn.0.to_string());
        self.write("request-rx-copy", "1");
        self.write("state", "4");
        let s = self.wait_be(&[XenbusState::Connected, XenbusState::Closing]);
        let conn = Conn {
            tx_ring,
            _rx_ring: rx_ring,
            data,
            evtchn,
            tx_idx: FrontIndices::default(),
        };
        (conn, s)
    }

    fn push(&self, c: &mut Conn, reqs: &[NetifTxRequest]) {
        let mut r = NetifTxFrontRing::resume(ring_mem(c.tx_ring.mem()), c.tx_idx).unwrap();
        for q in reqs {
            r.put_request(q).unwrap();
        }
        r.push_requests();
        c.tx_idx = r.indices();
        self.plat.evtchn.notify(c.evtchn).unwrap();
    }

    fn responses(&self, c: &mut Conn, n: usize) -> Vec<(u16, i16)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        while out.len() < n {
            let mut r = NetifTxFrontRing::resume(ring_mem(c.tx_ring.mem()), c.tx_idx).unwrap();
            while let Ok(Some(x)) = r.take_response() {
                out.push((x.id, x.status));
            }
            c.tx_idx = r.indices();
            assert!(Instant::now() < deadline, "no response from the backend");
            std::thread::sleep(Duration::from_micros(200));
        }
        out
    }

    /// The guest closes its device and frees everything it granted.
    fn close(&self, c: Option<Conn>) {
        self.write("state", "6");
        self.wait_be(&[XenbusState::Closed]);
        if let Some(c) = c {
            let _ = self.plat.evtchn.unbind(c.evtchn);
            drop(c); // revokes the grants
        }
    }
}

fn req(gref: u32, offset: u16, size: u16, id: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref,
        offset,
        flags: NetTxFlags::empty().bits(),
        id,
        size,
    }
}

/// The abuse classes, by cycle number.
const CLASSES: usize = 10;

/// One connect / abuse / disconnect cycle of class `k`.
fn cycle(h: &Hostile, k: usize, round: u32) {
    match k {
        // A slot that runs past its page: disconnected, reason in xenstore.
        0 => {
            let (mut c, _) = h.connect(Access::Writable, None);
            let g = c.data.grefs()[0].0;
            h.push(&mut c, &[req(g, 4000, 200, 1)]);
            h.wait_be(&[XenbusState::Closing]);
            assert!(h.error().contains("crosses its page"), "{}", h.error());
            h.close(Some(c));
        }
        // A producer index far ahead.
        1 => {
            let (c, _) = h.connect(Access::Writable, None);
            ring_mem(c.tx_ring.mem()).store(layout::REQ_PROD, 0x8000_0000 ^ round);
            h.plat.evtchn.notify(c.evtchn).unwrap();
            h.wait_be(&[XenbusState::Closing]);
            assert!(h.error().contains("TX ring"), "{}", h.error());
            h.close(Some(c));
        }
        // An event-channel storm with nothing on the rings: tolerated, no harm.
        2 => {
            let (mut c, _) = h.connect(Access::Writable, None);
            for _ in 0..2000 {
                h.plat.evtchn.notify(c.evtchn).unwrap();
            }
            // Still serving this vif afterwards: a bad grant gets its error answer.
            h.push(&mut c, &[req(0xFFFF_FF00, 0, 100, 9)]);
            assert_eq!(h.responses(&mut c, 1), vec![(9, NETIF_RSP_ERROR)]);
            assert_eq!(h.be_state(), XenbusState::Connected);
            h.close(Some(c));
        }
        // The credit area scribbled with wild values (both blocks), then traffic.
        3 => {
            let (mut c, _) = h.connect(Access::Writable, None);
            let area = ring_mem(c.tx_ring.mem())
                .slice(CREDIT_AREA_OFFSET, CREDIT_AREA_BYTES)
                .unwrap();
            let mut x = 0x9E37_79B9u32.wrapping_mul(round + 1);
            for w in 0..CREDIT_AREA_BYTES / 4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                area.store(w * 4, x);
            }
            let g = c.data.grefs()[0].0;
            h.push(&mut c, &[req(g, 0, 100, 3)]);
            assert_eq!(h.responses(&mut c, 1)[0].0, 3);
            assert_eq!(h.be_state(), XenbusState::Connected);
            h.close(Some(c));
        }
        // Absurd ring references in xenstore: refused with a reason, never mapped.
        4 => {
            let refs = [
                ("99999999999999999999999", "1"),
                ("-1", "2"),
                ("4294967295", "4294967295"),
                ("0x10", "16"),
                ("", ""),
            ];
            let (t, r) = refs[round as usize % refs.len()];
            let (c, s) = h.connect(Access::Writable, Some((t, r)));
            assert_eq!(s, XenbusState::Closing);
            assert!(!h.error().is_empty());
            h.close(Some(c));
        }
        // A read-only grant offered as the TX ring: the writable map is refused.
        5 => {
            let (c, s) = h.connect(Access::ReadOnly, None);
            assert_eq!(s, XenbusState::Closing);
            assert!(h.error().contains("map tx-ring-ref"), "{}", h.error());
            h.close(Some(c));
        }
        // A grant that does not exist, and one of another domain's numbers.
        6 => {
            let (mut c, _) = h.connect(Access::Writable, None);
            h.push(&mut c, &[req(123_456, 0, 100, 7), req(1, 0, 100, 8)]);
            let r = h.responses(&mut c, 2);
            assert_eq!(r[0], (7, NETIF_RSP_ERROR));
            assert_eq!(h.be_state(), XenbusState::Connected);
            h.close(Some(c));
        }
        // The data grant revoked while its request sits on the ring.
        7 => {
            let (mut c, _) = h.connect(Access::Writable, None);
            let g = c.data.grefs()[0].0;
            let data = std::mem::replace(
                &mut c.data,
                h.plat.grants.share(DomId(0), 1, Access::ReadOnly).unwrap(),
            );
            data.revoke().unwrap();
            h.push(&mut c, &[req(g, 0, 100, 5)]);
            assert_eq!(h.responses(&mut c, 1), vec![(5, NETIF_RSP_ERROR)]);
            assert_eq!(h.be_state(), XenbusState::Connected);
            h.close(Some(c));
        }
        // Requests rewritten while the backend reads them (double fetch): a thread
        // keeps flipping the size and offset of published slots.
        8 => {
            let (c, _) = h.connect(Access::Writable, None);
            let g = c.data.grefs()[0].0;
            let stop = Arc::new(AtomicBool::new(false));
            let mem = ring_mem(c.tx_ring.mem());
            let mut idx = c.tx_idx;
            /// Stops the scribbler even when an assertion below panics (a scope waits
            /// for its threads before it unwinds).
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            std::thread::scope(|s| {
                let _stop = StopOnDrop(&stop);
                s.spawn(|| {
                    let mut v = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        v = v.wrapping_add(0x0101_0101);
                        // Word 1 of every slot: offset (low half), flags (high half);
                        // word 2: id and size.
                        for slot in 0..16 {
                            let at = 64 + slot * 12;
                            mem.store(at + 4, v & 0x0004_FFFF);
                            mem.store(at + 8, (v & 0xFFF) << 16 | slot as u32);
                        }
                    }
                });
                for _ in 0..4 {
                    let mut r = NetifTxFrontRing::resume(mem, idx).unwrap();
                    r.put_request(&req(g, 0, 100, 1)).unwrap();
                    r.put_request(&req(g, 0, 60, 2)).unwrap();
                    r.push_requests();
                    idx = r.indices();
                    h.plat.evtchn.notify(c.evtchn).unwrap();
                }
                // Whatever the backend saw: answers, a disconnect, or (a chain the
                // scribbler left open with more_data) waiting for the rest, which only
                // stalls this vif. Give it a moment under fire, then stop.
                let deadline = Instant::now() + Duration::from_millis(50);
                while Instant::now() < deadline
                    && mem.load(layout::RSP_PROD) != idx.req_prod_pvt
                    && h.be_state() != XenbusState::Closing
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            h.close(Some(c));
        }
        // The frontend flips its state in a loop.
        _ => {
            let (c, _) = h.connect(Access::Writable, None);
            for i in 0..30 {
                h.write("state", ["1", "4", "5", "3", "6", "2", "7", "x"][i % 8]);
            }
            h.close(Some(c));
        }
    }
}

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

/// Per mapping of `/proc/self/smaps` ("start-end name"), its resident kB: to find which
/// mapping grows (DBA_LEAK_TRACE).
fn smaps_rss() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let mut cur = String::new();
    for line in std::fs::read_to_string("/proc/self/smaps").unwrap().lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let f: Vec<&str> = line.split_whitespace().collect();
            cur = format!("{} {}", f[0], f.get(5).copied().unwrap_or("[anon]"));
        } else if let Some(kb) = line.strip_prefix("Rss:") {
            let kb = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            out.insert(cur.clone(), kb);
        }
    }
    out
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[derive(Debug)]
struct Usage {
    fds: usize,
    grants: usize,
    allocations: usize,
    ports: usize,
    maps: usize,
    rss: u64,
    heap: u64,
    /// Free bytes the allocator keeps (fragmentation shows here, not in `heap`).
    heap_free: u64,
}

fn usage(host: &LocalHost) -> Usage {
    let s = host.hypervisor.stats();
    Usage {
        fds: xen_local::open_fd_count().unwrap(),
        grants: s.grants,
        allocations: s.allocations,
        ports: s.ports,
        maps: maps(),
        rss: rss(),
        heap: heap_in_use(),
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        heap_free: unsafe { libc::mallinfo2() }.fordblks as u64,
    }
}

fn good_roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32) {
    for s in 0..20 {
        send_all(&mut guest.app, &frame(base + s, 300));
    }
    let got = recv_n(wire, 20, Duration::from_secs(10));
    assert_eq!(got.len(), 20, "the well-behaved vif lost traffic");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

/// The leak check measures the whole process: the tests of this file run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_abuse_class_once_beside_a_good_vif() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    add_vif(&host, DomId(2), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(good);
    let h = Hostile::new(&host, 2, 0);
    for k in 0..CLASSES {
        cycle(&h, k, k as u32);
        good_roundtrip(&mut guest, &mut wire, 100 * k as u32);
    }
    let st = nb.vif_status(good).unwrap();
    assert_eq!(st.counters.tx_dropped(), 0);
    assert!(st.connected);
}

#[test]
fn a_thousand_abuse_cycles_leak_nothing() {
    let _ = env_logger::builder().is_test(true).try_init();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let cycles: u32 = std::env::var("DBA_LEAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    let bad = add_vif(&host, DomId(2), 0).expect("vif");
    // The vifs' ports are resident from the start: a port's 1 024 slots are otherwise
    // first touched one by one as frames pass, which grows RSS by up to 4 KiB per slot
    // and direction over the first ~1 500 cycles, then stays flat (measured over 5 000
    // cycles, docs/security.md) — growth that is not a leak but would hide one.
    let ports = MemPortConfig {
        prefault: true,
        ..MemPortConfig::new(256, 65536)
    };
    let nb =
        BackendThread::start_with_ports(&host, NetbackConfig::default(), ports).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(good);
    let h = Hostile::new(&host, 2, 0);
    // Warm up: every class once, so caches and the allocator's arenas reach their size.
    for k in 0..2 * CLASSES {
        cycle(&h, k % CLASSES, k as u32);
    }
    // And every slot of the good vif's pre-sized memory ports touched once (1 024
    // frames each way), so that RSS measures growth, not first touches.
    for k in 0..60 {
        good_roundtrip(&mut guest, &mut wire, 20 * k);
    }
    let base = usage(&host);
    let base_smaps = smaps_rss();
    let t0 = Instant::now();
    // DBA_LEAK_CLASS=k runs only class k (to find which class a growth comes from).
    let only: Option<usize> = std::env::var("DBA_LEAK_CLASS")
        .ok()
        .and_then(|v| v.parse().ok());
    for i in 0..cycles {
        cycle(&h, only.unwrap_or(i as usize % CLASSES), i);
        if i % 100 == 99 {
            good_roundtrip(&mut guest, &mut wire, 1000 + i);
            if std::env::var("DBA_LEAK_TRACE").is_ok() {
                eprintln!(
                    "cycle {i}: {:?} xenstore nodes {}",
                    usage(&host),
                    host.xenstored.node_count()
                );
            }
        }
    }
    let end = usage(&host);
    if std::env::var("DBA_LEAK_TRACE").is_ok() {
        let now = smaps_rss();
        let mut grown: Vec<(i64, &String)> = now
            .iter()
            .map(|(k, v)| (*v as i64 - *base_smaps.get(k).unwrap_or(&0) as i64, k))
            .filter(|(d, _)| *d != 0)
            .collect();
        grown.sort();
        for (d, k) in grown.iter().rev().take(12) {
            eprintln!("smaps: {d:+} kB {k}");
        }
        let gone: i64 = base_smaps
            .iter()
            .filter(|(k, _)| !now.contains_key(*k))
            .map(|(_, v)| *v as i64)
            .sum();
        eprintln!("smaps: {gone} kB in mappings that went away");
    }
    eprintln!(
        "{cycles} cycles in {:?}: before {base:?}, after {end:?}",
        t0.elapsed()
    );
    assert!(end.fds <= base.fds + 2, "fds grew: {base:?} → {end:?}");
    assert_eq!(end.grants, base.grants, "grants leaked");
    assert_eq!(
        end.allocations, base.allocations,
        "grant allocations leaked"
    );
    assert!(end.ports <= base.ports, "event channels leaked");
    assert!(
        end.maps <= base.maps + 16,
        "mappings grew: {base:?} → {end:?}"
    );
    // Heap in use (what a leak of netback's state would grow): 1000 cycles measured
    // about +110 KiB here (allocator bins), RSS +0.5–1 MiB.
    assert!(
        end.heap <= base.heap + (1 << 20),
        "heap grew by {} KiB",
        (end.heap.saturating_sub(base.heap)) >> 10
    );
    assert!(
        end.heap_free <= base.heap_free + (4 << 20),
        "allocator free lists grew by {} KiB (fragmentation)",
        (end.heap_free.saturating_sub(base.heap_free)) >> 10
    );
    assert!(
        end.rss <= base.rss + (4 << 20),
        "memory grew by {} KiB",
        (end.rss.saturating_sub(base.rss)) >> 10
    );
    let st = nb.vif_status(bad).unwrap();
    assert!(!st.connected);
    assert_eq!(nb.vif_status(good).unwrap().counters.tx_dropped(), 0);
}
