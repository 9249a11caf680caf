//! A hostile frontend that floods GSO frames with a tiny MSS (issue 12 E): written from
//! `netif.h` alone, it fills its TX ring with 64 KiB TCP frames and a
//! `XEN_NETIF_EXTRA_TYPE_GSO` extra asking dom0 to cut them into 48-byte segments, as
//! fast as netback answers. Every segment is a packet on the wire with a copy of the
//! frame's headers, so the budgets must hold in wire packets and wire bytes.
//!
//! One vif driven directly over an injected clock (1 ms steps for 2 s): what reaches the
//! port is counted the way the wire sees it — the attacker knows its own headers, and
//! the MSS comes with each frame from the port — and over every window of the run
//! admitted ≤ rate × window + the backstop's burst. netback's own wire counters (what
//! the allocator meters) must agree with that count.

use hypervisor::grant::{Access, GrantMap, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use netback::vif::Vif;
use netport::negotiate::{Allowed, Offer};
use netport::{MemPort, Port};
use shared_ring::credit::Credits;
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetRxFlags, NetTxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxRequest,
    NetifTxFrontRing, NetifTxRequest, XenNetifExtraFlags, NETIF_RSP_DROPPED, NETIF_RSP_NULL,
    NETIF_RSP_OKAY,
};
use shared_ring::{FrontIndices, Limit, XEN_PAGE_SIZE};
use testbed::{tcp_frame, TcpHeaders};
use xen_ids::{DomId, VifId};
use xen_local::{LocalHost, LocalMapping, LocalPlatform, LocalSharedPages};

const MS: u64 = 1_000_000;
/// The run, in 1 ms steps of the injected clock.
const STEPS: u64 = 2000;
/// The allocator's period: budgets carry one period of burst.
const PERIOD_MS: u64 = 20;
/// TX ring slots.
const RING: u32 = 256;

/// The segments and wire bytes a TCP frame of `len` bytes with `hdr` bytes of headers
/// becomes when cut at `mss`, as Linux's GSO cuts it: every segment but the last carries
/// `mss` payload bytes, each a copy of the headers.
fn on_the_wire(len: u64, hdr: u64, mss: u64) -> (u64, u64) {
    let segs = (len - hdr).div_ceil(mss).max(1);
    (segs, len + (segs - 1) * hdr)
}

/// Domain 1's fresh rings and `pages` more pages it grants dom0, netback's vif over
/// the rings, and its port with the far end (`wire`).
struct Setup {
    host: LocalHost,
    back: LocalPlatform,
    front: LocalPlatform,
    tx_ring: LocalSharedPages,
    rx_ring: LocalSharedPages,
    pages: LocalSharedPages,
    vif: Vif<LocalMapping>,
    port: MemPort,
    wire: MemPort,
}

fn setup(pages: usize, access: Access) -> Setup {
    let host = LocalHost::new();
    let back = host.domain(DomId(0)).unwrap();
    let front = host.domain(DomId(1)).unwrap();
    let tx_ring = front.grants.share(DomId(0), 1, Access::Writable).unwrap();
    let rx_ring = front.grants.share(DomId(0), 1, Access::Writable).unwrap();
    let more = front.grants.share(DomId(0), pages, access).unwrap();
    NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
    NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
    let map = |s: &LocalSharedPages| {
        back.grants
            .map(DomId(1), &[s.grefs()[0]], Access::Writable)
            .unwrap()
    };
    let vif = Vif::new(
        VifId::new(DomId(1), 0),
        map(&tx_ring),
        map(&rx_ring),
        None,
        None,
        0,
    )
    .expect("fresh rings attach");
    let (port, wire) = MemPort::pair(64, 65536).unwrap();
    Setup {
        host,
        back,
        front,
        tx_ring,
        rx_ring,
        pages: more,
        vif,
        port,
        wire,
    }
}

/// The attacker: a frontend driving the raw rings, and netback's vif over them.
struct Attack {
    _host: LocalHost,
    back: LocalPlatform,
    _front: LocalPlatform,
    tx_ring: LocalSharedPages,
    _rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    tx_idx: FrontIndices,
    /// Ring slots it has in flight (requests not answered yet).
    in_flight: u32,
    vif: Vif<LocalMapping>,
    port: MemPort,
    wire: MemPort,
    /// The frame it sends, its headers and the MSS it asks for.
    frame: Vec<u8>,
    headers: TcpHeaders,
    mss: u16,
}

impl Attack {
    fn new(len: usize, headers: TcpHeaders, mss: u16, credits: Credits) -> Attack {
        let pages = len.div_ceil(XEN_PAGE_SIZE);
        let Setup {
            host,
            back,
            front,
            tx_ring,
            rx_ring,
            pages: data,
            mut vif,
            port,
            wire,
        } = setup(pages, Access::ReadOnly);
        let frame = tcp_frame(len, headers);
        data.mem().write(0, &frame).unwrap();
        vif.set_tx_budget(&credits, 0);
        Attack {
            _host: host,
            back,
            _front: front,
            tx_ring,
            _rx_ring: rx_ring,
            data,
            tx_idx: FrontIndices::default(),
            in_flight: 0,
            vif,
            port,
            wire,
            frame,
            headers,
            mss,
        }
    }

    fn slots_per_frame(&self) -> u32 {
        self.frame.len().div_ceil(XEN_PAGE_SIZE) as u32 + 1
    }

    /// Fills the free ring slots with GSO frames: the first request (whole size,
    /// `extra_info`), the GSO extra, then one continuation per page.
    fn fill(&mut self) {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        let per = self.slots_per_frame();
        let gso_type = match self.headers {
            TcpHeaders::V4 { .. } => XEN_NETIF_GSO_TYPE_TCPV4,
            TcpHeaders::V6 { .. } => XEN_NETIF_GSO_TYPE_TCPV6,
        };
        let grefs = self.data.grefs();
        let pages = per as usize - 1;
        while self.in_flight + per <= RING {
            for (k, gref) in grefs.iter().enumerate().take(pages) {
                let mut flags = if k == 0 {
                    NetTxFlags::EXTRA_INFO
                } else {
                    NetTxFlags::empty()
                };
                if k + 1 < pages {
                    flags |= NetTxFlags::MORE_DATA;
                }
                let chunk = (self.frame.len() - k * XEN_PAGE_SIZE).min(XEN_PAGE_SIZE);
                r.put_request(&NetifTxRequest {
                    gref: gref.0,
                    offset: 0,
                    flags: flags.bits(),
                    id: k as u16,
                    size: if k == 0 {
                        self.frame.len() as u16
                    } else {
                        chunk as u16
                    },
                })
                .unwrap();
                if k == 0 {
                    let gso = ExtraInfo::Gso {
                        size: self.mss,
                        r#type: gso_type,
                        features: 0,
                    };
                    r.put_request_as(&NetifExtraInfo::new(&gso, XenNetifExtraFlags::empty()))
                        .unwrap();
                }
            }
            self.in_flight += per;
        }
        r.push_requests();
        self.tx_idx = r.indices();
    }

    /// Takes the responses: (frames answered OKAY, frames answered DROPPED).
    fn reap(&mut self) -> (u64, u64) {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        let (mut ok, mut dropped, mut first) = (0, 0, true);
        let per = self.slots_per_frame();
        let mut n = 0;
        while let Ok(Some(x)) = r.take_response() {
            n += 1;
            if first {
                match x.status {
                    NETIF_RSP_OKAY => ok += 1,
                    NETIF_RSP_DROPPED => dropped += 1,
                    s => panic!("frame answered {s}"),
                }
            } else {
                assert!(
                    x.status == NETIF_RSP_NULL
                        || x.status == NETIF_RSP_OKAY
                        || x.status == NETIF_RSP_DROPPED
                );
            }
            first = n % per == 0;
        }
        assert_eq!(n % per, 0, "whole frames answered");
        self.in_flight -= n;
        self.tx_idx = r.indices();
        (ok, dropped)
    }

    /// What reached the port, counted as the wire sees it: (segments, wire bytes).
    fn drain_wire(&mut self) -> (u64, u64) {
        let mut buf = vec![0u8; 65536];
        let (mut segs, mut bytes) = (0, 0);
        while let Some((len, meta)) = self.wire.recv(&mut buf).unwrap() {
            assert_eq!(&buf[..len], &self.frame[..], "the frame arrives whole");
            let mss = meta.gso.expect("sent as GSO").size;
            let (s, b) = on_the_wire(len as u64, self.headers.len() as u64, u64::from(mss));
            segs += s;
            bytes += b;
        }
        (segs, bytes)
    }
}

/// What the run admitted.
struct Run {
    /// (time ns, cumulative wire packets, cumulative wire bytes) after each step.
    samples: Vec<(u64, u64, u64)>,
    frames_ok: u64,
    frames_dropped: u64,
}

/// The attacker at it for [`STEPS`] ms: the ring kept full, netback polled every ms.
fn run(a: &mut Attack) -> Run {
    let mut out = Run {
        samples: vec![(0, 0, 0)],
        frames_ok: 0,
        frames_dropped: 0,
    };
    let (mut pkts, mut bytes) = (0, 0);
    for step in 1..=STEPS {
        let now = step * MS;
        a.fill();
        loop {
            let p = a
                .vif
                .tx_poll(&|| now, &a.back.grants, &mut a.port, usize::MAX)
                .expect("the vif stays up: a GSO flood is not a protocol violation");
            let (s, b) = a.drain_wire();
            pkts += s;
            bytes += b;
            let (ok, dropped) = a.reap();
            out.frames_ok += ok;
            out.frames_dropped += dropped;
            if !p.more || p.packets == 0 {
                break;
            }
            a.fill();
        }
        out.samples.push((now, pkts, bytes));
    }
    out
}

/// netback's wire counters (what the allocator meters) are what the wire carried.
fn assert_meters(a: &Attack, r: &Run) {
    let &(_, pkts, bytes) = r.samples.last().unwrap();
    let c = a.vif.counters();
    assert_eq!((c.tx_wire_packets, c.tx_wire_bytes), (pkts, bytes));
    assert_eq!(c.tx_packets, r.frames_ok);
}

/// Over every window [t_i, t_j] of the run: admitted ≤ rate × (t_j − t_i) + burst.
fn assert_windows(samples: &[(u64, u64, u64)], pick: fn(&(u64, u64, u64)) -> u64, limit: Limit) {
    let Limit::Rate { per_sec, burst } = limit else {
        return;
    };
    for (i, a) in samples.iter().enumerate() {
        for b in &samples[i + 1..] {
            let admitted = pick(b) - pick(a);
            let allowed = per_sec as u128 * (b.0 - a.0) as u128 / 1_000_000_000 + burst as u128;
            assert!(
                admitted as u128 <= allowed,
                "{admitted} admitted in [{} ms, {} ms], allowed {allowed}",
                a.0 / MS,
                b.0 / MS
            );
        }
    }
}

/// A budget of `per_sec` with one period of burst, and the backstop netback derives
/// from it (twice the burst, at least 64 packets: `Vif::set_tx_budget`).
fn budget(per_sec: u64, min_burst: u64) -> (Limit, Limit) {
    let burst = per_sec * PERIOD_MS / 1000;
    (
        Limit::rate(per_sec, burst),
        Limit::rate(per_sec, (2 * burst).max(min_burst)),
    )
}

fn credits(bytes: Limit, packets: Limit) -> Credits {
    Credits {
        bytes,
        packets,
        period_us: (PERIOD_MS * 1000) as u32,
    }
}

const SMALL_V4: TcpHeaders = TcpHeaders::V4 {
    ip_options: 0,
    tcp_options: 0,
};

/// The flood: 64 KiB frames at MSS 48 against 10 000 packets/s. One frame is
/// 1365 wire packets, more than the backstop's whole burst: none may pass (the old
/// backstop charged 1 packet each and let ~232 000 packets/s through).
#[test]
fn a_64k_mss_48_flood_passes_no_frame_under_10k_packets_per_s() {
    let (pps, backstop) = budget(10_000, 64);
    let mut a = Attack::new(65_535, SMALL_V4, 48, credits(Limit::Unlimited, pps));
    let r = run(&mut a);
    assert_windows(&r.samples, |s| s.1, backstop);
    assert_eq!(r.frames_ok, 0);
    assert!(
        r.frames_dropped > 1000,
        "the flood was policed: {}",
        r.frames_dropped
    );
    assert_eq!(
        a.vif.counters().tx_bytes_copied,
        0,
        "refused before any copy"
    );
    assert_meters(&a, &r);
}

/// The attacker sizes its frames to fit the burst (16 KiB at MSS 48: 340 segments):
/// the cap holds in wire packets over every window, and the frames the cap allows do
/// pass.
#[test]
fn frames_that_fit_the_burst_are_held_to_the_cap_in_wire_packets() {
    let (pps, backstop) = budget(10_000, 64);
    let mut a = Attack::new(16_374, SMALL_V4, 48, credits(Limit::Unlimited, pps));
    let r = run(&mut a);
    assert_windows(&r.samples, |s| s.1, backstop);
    let total = r.samples.last().unwrap().1;
    let secs = STEPS / 1000;
    assert!(total > 10_000 * secs / 2, "the cap's worth passes: {total}");
    assert!(r.frames_dropped > 0);
    assert_meters(&a, &r);
}

/// The bytes cap (100 Mb/s) holds in wire bytes: each 48-byte segment carries 54 bytes
/// of headers, so a 64 KiB frame is 139 KB on the wire (the old backstop let 139 Mb/s
/// through a 100 Mb/s cap). And no more than that is charged: netback charges the
/// bound for headers it has not read yet, then refunds the difference, so the cap's
/// worth still passes.
#[test]
fn the_bytes_cap_holds_in_wire_bytes() {
    let (bps, backstop) = budget(12_500_000, 0);
    let mut a = Attack::new(65_535, SMALL_V4, 48, credits(bps, Limit::Unlimited));
    let r = run(&mut a);
    assert_windows(&r.samples, |s| s.2, backstop);
    let total = r.samples.last().unwrap().2;
    assert!(
        total > 12_500_000 * STEPS / 1000 * 9 / 10,
        "the cap's worth passes: {total}"
    );
    assert_meters(&a, &r);
}

/// Long headers do not buy anything: with 134 bytes of IPv4 and TCP options (refunds
/// after the copy) or a 256-byte IPv6 hop-by-hop header (more than netback assumes
/// before it reads the headers: the excess is charged after the copy), both caps hold
/// on the wire.
#[test]
fn long_headers_are_charged_as_the_wire_carries_them() {
    for headers in [
        TcpHeaders::V4 {
            ip_options: 40,
            tcp_options: 40,
        },
        TcpHeaders::V6 {
            hop_by_hop: 256,
            tcp_options: 20,
        },
    ] {
        let (bps, bytes_backstop) = budget(12_500_000, 0);
        let (pps, pkts_backstop) = budget(50_000, 64);
        let mut a = Attack::new(65_535, headers, 1000, credits(bps, pps));
        let r = run(&mut a);
        assert_windows(&r.samples, |s| s.2, bytes_backstop);
        assert_windows(&r.samples, |s| s.1, pkts_backstop);
        assert!(r.frames_ok > 0, "{headers:?}: frames within the caps pass");
        assert_meters(&a, &r);
    }
}

/// Port → guest: netback's RX policing charges the same wire cost. A sender on the
/// port floods 64 KiB GSO frames with MSS 48 towards a guest whose RX is limited to
/// 10 000 packets/s; frames of 16 KiB at MSS 48 (340 segments) fit the burst. The
/// frames the guest receives, counted from its RX ring as segments, stay within the
/// cap over every window.
#[test]
fn rx_policing_charges_wire_packets_too() {
    for (len, passes) in [(65_535usize, false), (16_374, true)] {
        let mut g = RxGuest::new();
        let pps = Limit::rate(10_000, 400);
        g.vif.set_rx_limits(Limit::Unlimited, pps, 0);
        let frame = tcp_frame(len, SMALL_V4);
        let meta = netport::FrameMeta {
            csum_blank: true,
            data_validated: true,
            gso: Some(netport::Gso {
                size: 48,
                kind: netport::GsoKind::TcpV4,
            }),
        };
        let (segs, _) = on_the_wire(len as u64, SMALL_V4.len() as u64, 48);
        let mut samples = vec![(0, 0, 0)];
        let mut frames = 0;
        for step in 1..=STEPS {
            let now = step * MS;
            // The sender keeps the port full.
            while g.wire.send(&frame, &meta).is_ok() {}
            loop {
                let p = g
                    .vif
                    .rx_poll(now, &g.back.grants, &mut g.port)
                    .expect("rx poll");
                frames += g.reap(len);
                if !p.more {
                    break;
                }
            }
            samples.push((now, frames * segs, 0));
        }
        assert_windows(&samples, |s| s.1, pps);
        assert_eq!(frames > 0, passes, "{len}-byte frames: {frames} delivered");
        let c = g.vif.counters();
        assert!(c.rx_dropped_police > 0);
        assert_eq!(c.rx_wire_packets, frames * segs);
    }
}

/// A guest that keeps its RX ring full of posted buffers (one page each).
struct RxGuest {
    _host: LocalHost,
    back: LocalPlatform,
    _front: LocalPlatform,
    _tx_ring: LocalSharedPages,
    rx_ring: LocalSharedPages,
    bufs: LocalSharedPages,
    rx_idx: FrontIndices,
    vif: Vif<LocalMapping>,
    port: MemPort,
    wire: MemPort,
}

impl RxGuest {
    fn new() -> RxGuest {
        let Setup {
            host,
            back,
            front,
            tx_ring,
            rx_ring,
            pages: bufs,
            mut vif,
            port,
            wire,
        } = setup(RING as usize, Access::Writable);
        vif.set_rx_allowed(Allowed::toward(&Offer::ALL));
        let mut g = RxGuest {
            _host: host,
            back,
            _front: front,
            _tx_ring: tx_ring,
            rx_ring,
            bufs,
            rx_idx: FrontIndices::default(),
            vif,
            port,
            wire,
        };
        g.post(RING);
        g
    }

    /// Posts `n` buffers, each request at the slot of its index (as netfront does).
    fn post(&mut self, n: u32) {
        let mut r = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx).unwrap();
        for _ in 0..n {
            let i = (r.req_prod_pvt() % RING) as usize;
            r.put_request(&NetifRxRequest {
                id: i as u16,
                pad: 0,
                gref: self.bufs.grefs()[i].0,
            })
            .unwrap();
        }
        r.push_requests();
        self.rx_idx = r.indices();
    }

    /// Takes the responses, re-posts their buffers, and returns the whole frames of
    /// `len` bytes received (data slots without `more_data` end a frame; the slot after
    /// an `extra_info` response is the extra).
    fn reap(&mut self, len: usize) -> u64 {
        let mut r = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx).unwrap();
        let (mut slots, mut frames, mut got, mut extra_next) = (0, 0, 0usize, false);
        while let Ok(Some(x)) = r.take_response() {
            slots += 1;
            if core::mem::take(&mut extra_next) {
                continue;
            }
            assert!(x.status > 0, "delivered, not failed: {}", x.status);
            got += x.status as usize;
            let f = x.rx_flags();
            extra_next = f.contains(NetRxFlags::EXTRA_INFO);
            if !f.contains(NetRxFlags::MORE_DATA) {
                assert_eq!(got, len, "a whole frame");
                frames += 1;
                got = 0;
            }
        }
        self.rx_idx = r.indices();
        self.post(slots);
        frames
    }
}
