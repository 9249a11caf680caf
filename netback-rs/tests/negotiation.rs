//! Feature negotiation, as a stock frontend sees it: a frontend written here on the raw
//! rings (from `netif.h`, not from netback's code) writes one subset of the optional
//! feature keys, posts RX buffers, and looks at exactly what netback puts on its RX ring
//! for frames the port hands netback with every offload: TCP over IPv4 and IPv6 with a
//! partial checksum, TCPv4 and TCPv6 GSO super-frames, a plain 6000-byte frame.
//!
//! Expected, per `netif.h`: no GSO extra of a type the frontend did not offer (and none
//! without SG and the checksum offload of its IP version), no `NETRXF_csum_blank` or
//! `NETRXF_data_validated` for an IP version without checksum offload (the checksum is
//! then complete and correct in the buffer), no frame on more than one slot without
//! `feature-sg`. Half of the cases use split event channels.

use std::time::{Duration, Instant};

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::{NetbackConfig, VifId};
use netport::csum::{fill_partial_checksum, verify_l4_checksum, write_pseudo_header_checksum};
use netport::{FrameMeta, Gso, GsoKind, MemPort, Port};
use shared_ring::netif::extra::{XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6};
use shared_ring::netif::{
    ExtraInfo, NetRxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxRequest, NetifRxResponse,
    NetifTxFrontRing,
};
use shared_ring::FrontIndices;
use testbed::{add_vif, BackendThread};
use xen_ids::DomId;
use xen_local::{LocalHost, LocalPlatform, LocalSharedPages};
use xenstore::{Xenstore, XsTx};

const PAGE: usize = 4096;
/// RX buffers posted.
const BUFS: usize = 64;

/// One frame as the frontend finds it on its RX ring.
#[derive(Debug)]
struct Received {
    /// Its response slots (not counting extra-info slots).
    slots: usize,
    /// Flags of its first response.
    flags: NetRxFlags,
    /// Its GSO extra, if any: (type, size).
    gso: Option<(u8, u16)>,
    data: Vec<u8>,
}

struct RawFront {
    plat: LocalPlatform,
    _tx_ring: LocalSharedPages,
    rx_ring: LocalSharedPages,
    bufs: LocalSharedPages,
    rx_evtchn: EvtPort,
    rx_idx: FrontIndices,
    be: String,
}

impl RawFront {
    /// Connects as a frontend writing `keys` (besides the rings, event channel(s),
    /// `request-rx-copy` and `feature-rx-notify`), with all its RX buffers posted.
    fn connect(host: &LocalHost, domid: u16, keys: &[(&str, &str)], split: bool) -> RawFront {
        let mut keys = keys.to_vec();
        keys.push(("feature-rx-notify", "1"));
        Self::connect_posting(host, domid, &keys, split, BUFS)
    }

    /// Connects as a frontend writing `keys` (besides the rings, event channel(s) and
    /// `request-rx-copy`), with its first `posted` RX buffers posted.
    fn connect_posting(
        host: &LocalHost,
        domid: u16,
        keys: &[(&str, &str)],
        split: bool,
        posted: usize,
    ) -> RawFront {
        let plat = host.domain(DomId(domid)).unwrap();
        let fe = format!("/local/domain/{domid}/device/vif/0");
        let be = String::from_utf8(
            plat.xenstore
                .read(XsTx::NONE, &format!("{fe}/backend"))
                .unwrap(),
        )
        .unwrap();
        wait_state(&plat, &format!("{be}/state"), XenbusState::InitWait);
        let offered = |k: &str| {
            plat.xenstore
                .read(XsTx::NONE, &format!("{be}/{k}"))
                .unwrap_or_default()
        };
        assert_eq!(offered("feature-split-event-channels"), b"1");
        let tx_ring = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
        let rx_ring = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
        let bufs = plat.grants.share(DomId(0), BUFS, Access::Writable).unwrap();
        NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
        let mut rx = NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
        for i in 0..posted {
            rx.put_request(&NetifRxRequest {
                id: i as u16,
                pad: 0,
                gref: bufs.grefs()[i].0,
            })
            .unwrap();
        }
        let w = |k: &str, v: &str| {
            plat.xenstore
                .write(XsTx::NONE, &format!("{fe}/{k}"), v.as_bytes())
                .unwrap()
        };
        let tx_evtchn = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
        let rx_evtchn = if split {
            let rx_evtchn = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
            w("event-channel-tx", &tx_evtchn.0.to_string());
            w("event-channel-rx", &rx_evtchn.0.to_string());
            rx_evtchn
        } else {
            w("event-channel", &tx_evtchn.0.to_string());
            tx_evtchn
        };
        w("tx-ring-ref", &tx_ring.grefs()[0].0.to_string());
        w("rx-ring-ref", &rx_ring.grefs()[0].0.to_string());
        w("request-rx-copy", "1");
        for (k, v) in keys {
            w(k, v);
        }
        w("state", "4");
        wait_state(&plat, &format!("{be}/state"), XenbusState::Connected);
        rx.push_requests();
        plat.evtchn.notify(rx_evtchn).unwrap();
        RawFront {
            rx_idx: rx.indices(),
            plat,
            _tx_ring: tx_ring,
            rx_ring,
            bufs,
            rx_evtchn,
            be,
        }
    }

    /// Posts RX buffers `ids` (never posted before) and notifies.
    fn post(&mut self, ids: std::ops::Range<usize>) {
        let mut r = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx).unwrap();
        for i in ids {
            r.put_request(&NetifRxRequest {
                id: i as u16,
                pad: 0,
                gref: self.bufs.grefs()[i].0,
            })
            .unwrap();
        }
        r.push_requests();
        self.rx_idx = r.indices();
        self.plat.evtchn.notify(self.rx_evtchn).unwrap();
    }

    /// Every frame on the RX ring now (complete frames only).
    fn take(&mut self) -> Vec<Received> {
        let mut r = NetifRxFrontRing::resume(ring_mem(self.rx_ring.mem()), self.rx_idx).unwrap();
        let mut out = Vec::new();
        let mut p = r.responses().unwrap();
        let (n, mut i) = (p.len(), 0);
        let mut cur: Option<Received> = None;
        let mut used = 0;
        while i < n {
            let rsp: NetifRxResponse = p.copy(i).unwrap();
            i += 1;
            let flags = NetRxFlags::from_bits_retain(rsp.flags);
            assert!(rsp.status > 0, "response status {}", rsp.status);
            let f = cur.get_or_insert(Received {
                slots: 0,
                flags,
                gso: None,
                data: Vec::new(),
            });
            f.slots += 1;
            let mut chunk = vec![0; rsp.status as usize];
            self.bufs
                .mem()
                .read(rsp.id as usize * PAGE + rsp.offset as usize, &mut chunk)
                .unwrap();
            f.data.extend_from_slice(&chunk);
            if flags.contains(NetRxFlags::EXTRA_INFO) {
                let x: NetifExtraInfo = p.copy(i).unwrap();
                i += 1;
                match x.parse().unwrap() {
                    ExtraInfo::Gso { size, r#type, .. } => f.gso = Some((r#type, size)),
                    other => panic!("unexpected extra {other:?}"),
                }
            }
            if !flags.contains(NetRxFlags::MORE_DATA) {
                out.push(cur.take().unwrap());
                used = i;
            }
        }
        p.consume(used);
        self.rx_idx = r.indices();
        out
    }

    /// Whether the RX ring's event channel fired (and only that one, when split).
    fn rx_notified(&self) -> bool {
        let mut ports = [EvtPort(0); 8];
        let n = self.plat.evtchn.pending(&mut ports).unwrap();
        for p in &ports[..n] {
            self.plat.evtchn.unmask(*p).unwrap();
        }
        ports[..n].contains(&self.rx_evtchn)
    }

    fn error_node(&self) -> String {
        String::from_utf8(
            self.plat
                .xenstore
                .read(XsTx::NONE, &format!("{}/error", self.be))
                .unwrap_or_default(),
        )
        .unwrap()
    }
}

fn wait_state(plat: &LocalPlatform, path: &str, want: XenbusState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_state(&plat.xenstore, path).ok() != Some(want) {
        assert!(Instant::now() < deadline, "{path} never reached {want:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A TCP frame over IPv4 or IPv6, `len` bytes in all, with a partial checksum (the
/// checksum field holds the pseudo-header sum), as a stack with offloads hands it over.
fn tcp(v6: bool, len: usize, seed: u8) -> Vec<u8> {
    let l3 = if v6 { 40 } else { 20 };
    let mut f = vec![0u8; len];
    let ip_len = len - 14;
    if v6 {
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[37] = 1;
        f[53] = 2;
    } else {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    }
    f[14 + l3 + 12] = 0x50;
    for (i, b) in f.iter_mut().enumerate().skip(14 + l3 + 20) {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    write_pseudo_header_checksum(&mut f).unwrap();
    f
}

const BLANK: FrameMeta = FrameMeta {
    csum_blank: true,
    data_validated: true,
    gso: None,
};

/// What a frontend offers, as the keys it writes.
#[derive(Debug, Clone, Copy)]
struct Subset {
    name: &'static str,
    sg: bool,
    csum4: bool,
    gso4: bool,
    gso6: bool,
    csum6: bool,
}

impl Subset {
    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        let b = |on| if on { "1" } else { "0" };
        vec![
            ("feature-sg", b(self.sg)),
            ("feature-no-csum-offload", b(!self.csum4)),
            ("feature-gso-tcpv4", b(self.gso4)),
            ("feature-gso-tcpv6", b(self.gso6)),
            ("feature-ipv6-csum-offload", b(self.csum6)),
        ]
    }
}

const SUBSETS: [Subset; 6] = [
    Subset {
        name: "none",
        sg: false,
        csum4: false,
        gso4: false,
        gso6: false,
        csum6: false,
    },
    Subset {
        name: "SG only",
        sg: true,
        csum4: false,
        gso4: false,
        gso6: false,
        csum6: false,
    },
    Subset {
        name: "SG+csum",
        sg: true,
        csum4: true,
        gso4: false,
        gso6: false,
        csum6: false,
    },
    Subset {
        name: "+GSO v4",
        sg: true,
        csum4: true,
        gso4: true,
        gso6: false,
        csum6: false,
    },
    Subset {
        name: "+GSO v6",
        sg: true,
        csum4: true,
        gso4: true,
        gso6: true,
        csum6: false,
    },
    Subset {
        name: "+ipv6-csum",
        sg: true,
        csum4: true,
        gso4: true,
        gso6: true,
        csum6: true,
    },
];

/// The frames the port hands netback, told apart by length.
const V4_LEN: usize = 1514;
const V6_LEN: usize = 1494;
const GSO4_LEN: usize = 20_054;
const GSO6_LEN: usize = 19_074;
const JUMBO_LEN: usize = 6000;

fn offered_frames() -> Vec<(Vec<u8>, FrameMeta)> {
    let gso = |kind, size| FrameMeta {
        gso: Some(Gso { size, kind }),
        ..BLANK
    };
    let mut jumbo = tcp(false, JUMBO_LEN, 5);
    fill_partial_checksum(&mut jumbo).unwrap();
    vec![
        (tcp(false, V4_LEN, 1), BLANK),
        (tcp(true, V6_LEN, 2), BLANK),
        (tcp(false, GSO4_LEN, 3), gso(GsoKind::TcpV4, 1448)),
        (tcp(true, GSO6_LEN, 4), gso(GsoKind::TcpV6, 1428)),
        (jumbo, FrameMeta::default()),
    ]
}

/// Waits until netback accounted for `n` frames of vif `id` (delivered or dropped).
fn wait_accounted(nb: &BackendThread, id: VifId, n: u64) -> netback::meter::VifCounters {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = nb.vif_status(id) {
            let c = s.counters;
            if c.rx_packets + c.rx_dropped() >= n {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "netback never handled {n} frames"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Checks one delivered frame against what the subset allows; `sent` is the frame the
/// port handed netback.
fn check_delivered(s: &Subset, r: &Received, sent: &[u8]) {
    let name = s.name;
    let v6 = sent[12..14] == [0x86, 0xdd];
    let csum_ok = if v6 { s.csum6 } else { s.csum4 };
    assert!(r.slots == 1 || s.sg, "{name}: {} slots without SG", r.slots);
    let blank = r.flags.contains(NetRxFlags::CSUM_BLANK);
    let validated = r.flags.contains(NetRxFlags::DATA_VALIDATED);
    if !csum_ok {
        assert!(!blank && !validated, "{name}: checksum flags {:?}", r.flags);
    }
    let mut data = r.data.clone();
    if blank {
        // The frontend completes it, as netif.h says it must.
        fill_partial_checksum(&mut data).unwrap();
    }
    assert!(
        verify_l4_checksum(&data).unwrap(),
        "{name}: a {}-byte frame arrived with a wrong checksum",
        sent.len()
    );
    // Same bytes as sent, apart from the checksum field.
    let ck = if v6 { 14 + 40 + 16 } else { 14 + 20 + 16 };
    assert_eq!(data[..ck], sent[..ck], "{name}");
    assert_eq!(data[ck + 2..], sent[ck + 2..], "{name}");
    match r.gso {
        Some((t, _)) => {
            let want = if v6 {
                XEN_NETIF_GSO_TYPE_TCPV6
            } else {
                XEN_NETIF_GSO_TYPE_TCPV4
            };
            assert_eq!(t, want, "{name}");
            let agreed = if v6 {
                s.gso6 && s.csum6
            } else {
                s.gso4 && s.csum4
            };
            assert!(agreed && s.sg, "{name}: GSO type {t} not agreed");
        }
        None => assert!(sent.len() <= V4_LEN || sent.len() == JUMBO_LEN, "{name}"),
    }
}

#[test]
fn netback_sends_each_frontend_only_what_it_offered() {
    let host = LocalHost::new();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    for (k, s) in SUBSETS.iter().enumerate() {
        let domid = 1 + k as u16;
        let id = add_vif(&host, DomId(domid), 0).unwrap();
        let mut wire: MemPort = nb.wire(id);
        let mut front = RawFront::connect(&host, domid, &s.keys(), k % 2 == 1);
        let frames = offered_frames();
        for (f, m) in &frames {
            wire.send(f, m).unwrap();
        }
        let c = wait_accounted(&nb, id, frames.len() as u64);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while (got.len() as u64) < c.rx_packets {
            got.extend(front.take());
            assert!(Instant::now() < deadline, "{}: frames missing", s.name);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Which frames a stock frontend with these keys may receive.
        let expect_len = |len: usize| match len {
            V4_LEN | V6_LEN => true,
            GSO4_LEN => s.sg && s.csum4 && s.gso4,
            GSO6_LEN => s.sg && s.csum6 && s.gso6,
            JUMBO_LEN => s.sg,
            _ => unreachable!(),
        };
        let want: Vec<usize> = frames
            .iter()
            .map(|(f, _)| f.len())
            .filter(|&l| expect_len(l))
            .collect();
        let lens: Vec<usize> = got.iter().map(|r| r.data.len()).collect();
        assert_eq!(lens, want, "{}: delivered frames", s.name);
        assert_eq!(
            c.rx_dropped_offload,
            (frames.len() - want.len()) as u64,
            "{}: refused frames are counted",
            s.name
        );
        for r in &got {
            let (sent, _) = frames
                .iter()
                .find(|(f, _)| f.len() == r.data.len())
                .unwrap();
            check_delivered(s, r, sent);
        }
        // A partial checksum the frontend did not agree to was completed by netback.
        let filled = u64::from(!s.csum4) + u64::from(!s.csum6);
        assert_eq!(c.rx_csum_filled, filled, "{}", s.name);
        if s.csum4 && s.csum6 {
            assert!(got
                .iter()
                .filter(|r| r.data.len() <= V4_LEN)
                .all(|r| r.flags.contains(NetRxFlags::CSUM_BLANK)));
        }
        assert!(
            front.rx_notified(),
            "{}: RX responses without a notification on the RX channel",
            s.name
        );
        assert_eq!(front.error_node(), "", "{}", s.name);
    }
}

#[test]
fn page_flipping_frontend_is_refused_with_the_reason_in_its_error_node() {
    let host = LocalHost::new();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let id = add_vif(&host, DomId(1), 0).unwrap();
    let plat = host.domain(DomId(1)).unwrap();
    let fe = "/local/domain/1/device/vif/0";
    let be = "/local/domain/0/backend/vif/1/0";
    wait_state(&plat, &format!("{be}/state"), XenbusState::InitWait);
    assert_eq!(
        plat.xenstore
            .read(XsTx::NONE, &format!("{be}/feature-rx-flip"))
            .unwrap(),
        b"0"
    );
    let tx_ring = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
    let rx_ring = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
    let ev = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
    for (k, v) in [
        ("tx-ring-ref", tx_ring.grefs()[0].0.to_string()),
        ("rx-ring-ref", rx_ring.grefs()[0].0.to_string()),
        ("event-channel", ev.0.to_string()),
        ("request-rx-copy", "0".into()),
        ("feature-rx-flip", "1".into()),
        ("state", "4".into()),
    ] {
        plat.xenstore
            .write(XsTx::NONE, &format!("{fe}/{k}"), v.as_bytes())
            .unwrap();
    }
    wait_state(&plat, &format!("{be}/state"), XenbusState::Closing);
    let err = String::from_utf8(
        plat.xenstore
            .read(XsTx::NONE, &format!("{be}/error"))
            .unwrap(),
    )
    .unwrap();
    assert!(err.contains("page flipping"), "{err}");
    assert!(!nb.vif_status(id).unwrap().connected);
}

/// `feature-rx-notify` decides whether a frame may wait for RX buffers: a frontend that
/// writes it is notified-on and gets every frame once it posts more; one that does not
/// would never say it posted more, so frames that find no buffer are dropped and
/// counted, and none waits.
#[test]
fn only_a_frontend_with_rx_notify_has_frames_wait_for_its_buffers() {
    let host = LocalHost::new();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    for (domid, notify) in [(1u16, true), (2, false)] {
        let id = add_vif(&host, DomId(domid), 0).unwrap();
        let mut wire: MemPort = nb.wire(id);
        let keys: &[(&str, &str)] = if notify {
            &[("feature-rx-notify", "1")]
        } else {
            &[]
        };
        let mut front = RawFront::connect_posting(&host, domid, keys, false, 2);
        let frames: Vec<Vec<u8>> = (0..5).map(|k| tcp(false, 200 + k, k as u8)).collect();
        for f in &frames {
            wire.send(f, &FrameMeta::default()).unwrap();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 2 {
            got.extend(front.take());
            assert!(
                Instant::now() < deadline,
                "rx-notify {notify}: frames missing"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if notify {
            // The other three wait for buffers; none is dropped.
            std::thread::sleep(Duration::from_millis(50));
            let c = nb.vif_status(id).unwrap().counters;
            assert_eq!((c.rx_packets, c.rx_dropped()), (2, 0), "{c:?}");
            front.post(2..BUFS);
            while got.len() < 5 {
                got.extend(front.take());
                assert!(Instant::now() < deadline, "waiting frames never delivered");
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            let c = wait_accounted(&nb, id, 5);
            assert_eq!((c.rx_packets, c.rx_dropped_no_buffers), (2, 3), "{c:?}");
            assert_eq!(c.rx_dropped(), 3, "{c:?}");
        }
        let lens: Vec<usize> = got.iter().map(|r| r.data.len()).collect();
        let want: Vec<usize> = frames.iter().map(Vec::len).take(got.len()).collect();
        assert_eq!(lens, want, "rx-notify {notify}");
    }
}
