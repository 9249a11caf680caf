//! Feature negotiation from netfront's side, against netback on the local platform:
//! netfront offers what its configuration says (down to nothing optional) and gets
//! nothing else; it sends the backend only what the backend's keys allow (the keys are
//! rewritten here, as dom0, to those of an older backend before netfront reads them);
//! split event channels are used when offered and configured, not otherwise.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::NetbackConfig;
use netfront::{Netfront, NetfrontConfig, Sent};
use netport::csum::{fill_partial_checksum, verify_l4_checksum, write_pseudo_header_checksum};
use netport::negotiate::Offer;
use netport::{FrameMeta, Gso, GsoKind, MemPort, Port};
use testbed::{add_vif, BackendThread, LocalNetfront};
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

const FE: &str = "/local/domain/1/device/vif/0";
const BE: &str = "/local/domain/0/backend/vif/1/0";

/// A TCP frame over IPv4 or IPv6, `len` bytes in all, with a partial checksum.
fn tcp(v6: bool, len: usize, seed: u8) -> Vec<u8> {
    let l3 = if v6 { 40 } else { 20 };
    let mut f = vec![0u8; len];
    if v6 {
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((len - 54) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[37] = 1;
        f[53] = 2;
    } else {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    }
    f[14 + l3 + 12] = 0x50;
    for (i, b) in f.iter_mut().enumerate().skip(14 + l3 + 20) {
        *b = (i as u8).wrapping_mul(13).wrapping_add(seed);
    }
    write_pseudo_header_checksum(&mut f).unwrap();
    f
}

const BLANK: FrameMeta = FrameMeta {
    csum_blank: true,
    data_validated: true,
    gso: None,
};

fn gso(kind: GsoKind) -> FrameMeta {
    FrameMeta {
        gso: Some(Gso { size: 1400, kind }),
        ..BLANK
    }
}

fn connect_with(host: &LocalHost, cfg: NetfrontConfig) -> LocalNetfront {
    let platform = testbed::domain(host, DomId(1)).expect("domain");
    Netfront::connect(platform, cfg, hypervisor::clock::system()).expect("netfront connects")
}

fn fe_key(nf: &LocalNetfront, k: &str) -> Option<String> {
    nf.platform()
        .xenstore
        .try_read(XsTx::NONE, &format!("{FE}/{k}"))
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

/// Receives frames with their metadata until `n` arrived.
fn recv_meta(nf: &mut LocalNetfront, n: usize) -> Vec<(Vec<u8>, FrameMeta)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} frames",
            out.len()
        );
        nf.ack_events();
        match nf.recv(&mut buf).expect("recv") {
            Some((len, meta)) => out.push((buf[..len].to_vec(), meta)),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    out
}

/// Waits until netback accounted for `n` frames towards the guest.
fn wait_rx_accounted(nb: &BackendThread, id: VifId, n: u64) -> netback::meter::VifCounters {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(c) = nb.vif_status(id).map(|s| s.counters) {
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

#[test]
fn a_frontend_offering_nothing_optional_gets_complete_checksums_at_mtu_1500() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut cfg = NetfrontConfig::new(0);
    cfg.offer = Offer::NOTHING;
    let mut nf = connect_with(&host, cfg);
    nb.wait_connected(&[id], WAIT).expect("connected");
    // What it wrote: no SG, no checksum offload of either IP version, no GSO.
    for (k, v) in [
        ("feature-sg", "0"),
        ("feature-no-csum-offload", "1"),
        ("feature-ipv6-csum-offload", "0"),
        ("feature-gso-tcpv4", "0"),
        ("feature-gso-tcpv6", "0"),
        ("feature-rx-notify", "1"),
    ] {
        assert_eq!(fe_key(&nf, k).as_deref(), Some(v), "{k}");
    }
    // netback offers split event channels; this netfront uses them by default.
    assert!(nf.split_event_channels());
    assert!(fe_key(&nf, "event-channel-tx").is_some() && fe_key(&nf, "event-channel").is_none());
    let mut wire: MemPort = nb.wire(id);
    // The dom0 side hands netback frames with every offload, as a TAP with offloads does.
    let sent = [
        (tcp(false, 1514, 1), BLANK),
        (tcp(true, 1514, 2), BLANK),
        (tcp(false, 30_000, 3), gso(GsoKind::TcpV4)),
        (tcp(true, 30_000, 4), gso(GsoKind::TcpV6)),
    ];
    for (f, m) in &sent {
        wire.send(f, m).unwrap();
    }
    let c = wait_rx_accounted(&nb, id, sent.len() as u64);
    assert_eq!((c.rx_packets, c.rx_dropped_offload), (2, 2), "{c:?}");
    let got = recv_meta(&mut nf, 2);
    for ((f, meta), (want, _)) in got.iter().zip(&sent) {
        assert_eq!(*meta, FrameMeta::default(), "no checksum flag, no GSO");
        assert!(
            verify_l4_checksum(f).unwrap(),
            "checksum complete and right"
        );
        let mut w = want.clone();
        fill_partial_checksum(&mut w).unwrap();
        assert_eq!(f, &w);
    }
    // And the other way: frames from this guest reach the wire.
    roundtrip(&mut nf, &mut wire, 0, 50);
}

#[test]
fn netfront_sends_an_older_backend_only_what_it_offered() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let dom0 = testbed::domain(&host, DomId(0)).unwrap();
    let deadline = Instant::now() + WAIT;
    while read_state(&dom0.xenstore, &format!("{BE}/state")).ok() != Some(XenbusState::InitWait) {
        assert!(Instant::now() < deadline, "netback never probed the vif");
        std::thread::sleep(Duration::from_millis(2));
    }
    // An older backend's keys: TCPv4 GSO, no IPv6 offloads, one event channel.
    for (k, v) in [
        ("feature-gso-tcpv6", "0"),
        ("feature-ipv6-csum-offload", "0"),
        ("feature-split-event-channels", "0"),
    ] {
        dom0.xenstore
            .write(XsTx::NONE, &format!("{BE}/{k}"), v.as_bytes())
            .unwrap();
    }
    let mut nf = connect_with(&host, NetfrontConfig::new(0));
    nb.wait_connected(&[id], WAIT).expect("connected");
    assert!(!nf.split_event_channels());
    assert!(fe_key(&nf, "event-channel").is_some() && fe_key(&nf, "event-channel-tx").is_none());
    let a = nf.tx_allowed().unwrap();
    assert!(a.gso_v4 && !a.gso_v6 && a.csum_v4 && !a.csum_v6 && a.multi_slot);
    let mut wire: MemPort = nb.wire(id);
    let v6_gso = tcp(true, 30_000, 1);
    assert_eq!(
        nf.send(&v6_gso, &gso(GsoKind::TcpV6)).unwrap(),
        Sent::TooBig
    );
    assert_eq!(nf.stats.tx_refused_offload, 1);
    let v4_gso = tcp(false, 30_000, 2);
    let v6 = tcp(true, 1514, 3);
    let v4 = tcp(false, 1514, 4);
    for (f, m) in [(&v4_gso, gso(GsoKind::TcpV4)), (&v6, BLANK), (&v4, BLANK)] {
        assert_eq!(nf.send(f, &m).unwrap(), Sent::Queued);
    }
    nf.flush().unwrap();
    let mut got = Vec::new();
    let mut metas = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    while got.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} frames on the wire",
            got.len()
        );
        match wire.recv(&mut buf).unwrap() {
            Some((len, meta)) => {
                got.push(buf[..len].to_vec());
                metas.push(meta);
            }
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    assert_eq!(metas[0].gso.map(|g| g.kind), Some(GsoKind::TcpV4));
    assert!(
        !metas[1].csum_blank && !metas[1].data_validated,
        "{:?}",
        metas[1]
    );
    assert!(metas[2].csum_blank, "{:?}", metas[2]);
    // Nothing more: the refused TCPv6 super-frame never reached the ring.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(wire.recv(&mut vec![0; 65536]).unwrap(), None);
    assert_eq!(got[0].len(), v4_gso.len());
    // The IPv6 frame went with its checksum completed by netfront, the IPv4 one partial.
    assert_eq!(nf.stats.tx_csum_filled, 1);
    assert!(verify_l4_checksum(&got[1]).unwrap());
    let mut v6_done = v6.clone();
    fill_partial_checksum(&mut v6_done).unwrap();
    assert_eq!(got[1], v6_done);
    assert_eq!(
        got[2], v4,
        "an agreed partial checksum is left to the backend"
    );
}

#[test]
fn split_event_channels_can_be_turned_off_in_netfront() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut cfg = NetfrontConfig::new(0);
    cfg.split_event_channels = false;
    let mut nf = connect_with(&host, cfg);
    nb.wait_connected(&[id], WAIT).expect("connected");
    assert!(!nf.split_event_channels());
    let mut wire = nb.wire(id);
    roundtrip(&mut nf, &mut wire, 0, 100);
}

/// The guest's interface gets the toolstack's MAC (the frontend directory's `mac`, as
/// libxl writes it and the kernel netfront uses it); a malformed value is not taken.
#[test]
fn netfront_takes_the_toolstack_mac_and_refuses_a_malformed_one() {
    let host = LocalHost::new();
    let _id = add_vif(&host, DomId(1), 0).expect("vif");
    let _nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let nf = connect_with(&host, NetfrontConfig::new(0));
    assert_eq!(nf.mac(), Some([0x00, 0x16, 0x3e, 0x00, 0x01, 0x00]));
    drop(nf);

    let host = LocalHost::new();
    let _id = add_vif(&host, DomId(1), 0).expect("vif");
    let dom0 = testbed::domain(&host, DomId(0)).expect("dom0");
    dom0.xenstore
        .write(XsTx::NONE, &format!("{FE}/mac"), b"00:16:3e:zz:01:00")
        .expect("toolstack writes a bad mac");
    let _nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let nf = connect_with(&host, NetfrontConfig::new(0));
    assert_eq!(nf.mac(), None, "a malformed mac is not used");
}
