//! A hostile frontend, written here against the raw ring, next to a well-behaved vif:
//! every malformed-request class disconnects (or, for packet-level faults, answers an
//! error to) the offender only, with the reason in xenstore, while the other vif's
//! traffic keeps flowing.

use std::time::{Duration, Instant};

use hypervisor::evtchn::{EventChannels, Port as EvtPort};
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use shared_ring::netif::{
    NetTxFlags, NetifExtraInfo, NetifRxFrontRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse,
};
use shared_ring::ring::layout;
use shared_ring::FrontIndices;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalSharedPages;
use xen_local::{LocalHost, LocalPlatform};
use xenstore::{Xenstore, XsTx};

struct RawFront {
    plat: LocalPlatform,
    tx_ring: LocalSharedPages,
    _rx_ring: LocalSharedPages,
    data: LocalSharedPages,
    evtchn: EvtPort,
    tx_idx: FrontIndices,
    be_state: String,
}

impl RawFront {
    fn connect(host: &LocalHost, domid: u16, devid: u32) -> RawFront {
        let plat = host.domain(DomId(domid)).unwrap();
        let fe = format!("/local/domain/{domid}/device/vif/{devid}");
        let be = String::from_utf8(
            plat.xenstore
                .read(XsTx::NONE, &format!("{fe}/backend"))
                .unwrap(),
        )
        .unwrap();
        let be_state = format!("{be}/state");
        wait_state(&plat, &be_state, XenbusState::InitWait);
        let tx_ring = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
        let rx_ring = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
        let data = plat.grants.share(DomId(0), 1, Access::ReadOnly).unwrap();
        NetifTxFrontRing::init(ring_mem(tx_ring.mem())).unwrap();
        NetifRxFrontRing::init(ring_mem(rx_ring.mem())).unwrap();
        let evtchn = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
        let w = |k: &str, v: String| {
            plat.xenstore
                .write(XsTx::NONE, &format!("{fe}/{k}"), v.as_bytes())
                .unwrap()
        };
        w("tx-ring-ref", tx_ring.grefs()[0].0.to_string());
        w("rx-ring-ref", rx_ring.grefs()[0].0.to_string());
        w("event-channel", evtchn.0.to_string());
        w("request-rx-copy", "1".into());
        w("state", "4".into());
        wait_state(&plat, &be_state, XenbusState::Connected);
        RawFront {
            plat,
            tx_ring,
            _rx_ring: rx_ring,
            data,
            evtchn,
            tx_idx: FrontIndices::default(),
            be_state,
        }
    }

    fn data_gref(&self) -> u32 {
        self.data.grefs()[0].0
    }

    /// Puts raw slots on the TX ring, pushes and notifies.
    fn push(&mut self, slots: &[Result<NetifTxRequest, NetifExtraInfo>]) {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        for s in slots {
            match s {
                Ok(q) => r.put_request(q).unwrap(),
                Err(e) => r.put_request_as(e).unwrap(),
            }
        }
        r.push_requests();
        self.tx_idx = r.indices();
        self.plat.evtchn.notify(self.evtchn).unwrap();
    }

    fn responses(&mut self) -> Vec<NetifTxResponse> {
        let mut r = NetifTxFrontRing::resume(ring_mem(self.tx_ring.mem()), self.tx_idx).unwrap();
        let mut out = Vec::new();
        while let Ok(Some(x)) = r.take_response() {
            out.push(x);
        }
        self.tx_idx = r.indices();
        out
    }

    fn backend_state(&self) -> XenbusState {
        read_state(&self.plat.xenstore, &self.be_state).unwrap()
    }
}

fn wait_state(plat: &LocalPlatform, path: &str, want: XenbusState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_state(&plat.xenstore, path).unwrap() != want {
        assert!(Instant::now() < deadline, "{path} never reached {want:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn req(
    gref: u32,
    offset: u16,
    size: u16,
    flags: NetTxFlags,
    id: u16,
) -> Result<NetifTxRequest, NetifExtraInfo> {
    Ok(NetifTxRequest {
        gref,
        offset,
        flags: flags.bits(),
        id,
        size,
    })
}

/// A well-behaved vif (domain 1) passing traffic; returns frames delivered in `dur`.
fn good_traffic(guest: &mut Guest, wire: &mut netport::MemPort, base: u32, n: u32) {
    for seq in 0..n {
        send_all(&mut guest.app, &frame(base + seq, 200));
    }
    let got = recv_n(wire, n as usize, Duration::from_secs(10));
    assert_eq!(got.len(), n as usize, "the well-behaved vif lost traffic");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

#[test]
fn malformed_requests_disconnect_only_the_offender() {
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    type Case = (
        &'static str,
        fn(&RawFront) -> Vec<Result<NetifTxRequest, NetifExtraInfo>>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "slot crosses its page",
            |f| vec![req(f.data_gref(), 4000, 200, NetTxFlags::empty(), 1)],
            Some("crosses its page"),
        ),
        (
            "chain longer than 20 slots",
            |f| {
                (0..21)
                    .map(|i| {
                        req(
                            f.data_gref(),
                            0,
                            if i == 0 { 100 } else { 1 },
                            NetTxFlags::MORE_DATA,
                            i,
                        )
                    })
                    .collect()
            },
            Some("longer than"),
        ),
        (
            "invalid extra type",
            |f| {
                vec![
                    req(f.data_gref(), 0, 100, NetTxFlags::EXTRA_INFO, 1),
                    Err(NetifExtraInfo {
                        r#type: 99,
                        flags: 0,
                        u: [0; 6],
                    }),
                ]
            },
            Some("invalid extra-info type 99"),
        ),
        (
            "fragments bigger than the packet",
            |f| {
                vec![
                    req(f.data_gref(), 0, 100, NetTxFlags::MORE_DATA, 1),
                    req(f.data_gref(), 0, 200, NetTxFlags::empty(), 2),
                ]
            },
            Some("add up to more"),
        ),
    ];
    let wild_devid = cases.len() as u32;
    let grant_devid = wild_devid + 1;
    let bad: Vec<VifId> = (0..=grant_devid)
        .map(|d| add_vif(&host, DomId(2), d).expect("vif"))
        .collect();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(good);
    good_traffic(&mut guest, &mut wire, 0, 50);

    for (devid, (name, slots, why)) in cases.iter().enumerate() {
        let mut f = RawFront::connect(&host, 2, devid as u32);
        let s = slots(&f);
        f.push(&s);
        wait_state(&f.plat, &f.be_state, XenbusState::Closing);
        let err = String::from_utf8(
            f.plat
                .xenstore
                .read(
                    XsTx::NONE,
                    &format!("{}/error", bad[devid].to_string_path()),
                )
                .unwrap(),
        )
        .unwrap();
        assert!(
            err.contains(why.unwrap()),
            "{name}: error node says {err:?}"
        );
        good_traffic(&mut guest, &mut wire, 1000 * (devid as u32 + 1), 50);
    }

    // A producer index far ahead of anything the ring can hold.
    let f = RawFront::connect(&host, 2, wild_devid);
    ring_mem(f.tx_ring.mem()).store(layout::REQ_PROD, 100_000);
    f.plat.evtchn.notify(f.evtchn).unwrap();
    wait_state(&f.plat, &f.be_state, XenbusState::Closing);
    good_traffic(&mut guest, &mut wire, 9000, 50);

    // Grants the frontend does not own or never granted: packet errors, no disconnect.
    let mut f = RawFront::connect(&host, 2, grant_devid);
    f.push(&[req(123_456, 0, 100, NetTxFlags::empty(), 7)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let rsps = loop {
        let r = f.responses();
        if !r.is_empty() {
            break r;
        }
        assert!(Instant::now() < deadline, "no response to a bad grant");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(
        (rsps[0].id, rsps[0].status),
        (7, shared_ring::netif::NETIF_RSP_ERROR)
    );
    assert_eq!(f.backend_state(), XenbusState::Connected);
    good_traffic(&mut guest, &mut wire, 10_000, 50);
    let st = nb.vif_status(bad[grant_devid as usize]).unwrap();
    assert_eq!(st.counters.tx_copy_errors, 1);
    assert_eq!(nb.vif_status(good).unwrap().counters.tx_dropped(), 0);
}

trait PathOf {
    fn to_string_path(&self) -> String;
}
impl PathOf for VifId {
    fn to_string_path(&self) -> String {
        format!(
            "/local/domain/0/backend/vif/{}/{}",
            self.domid.0, self.devid
        )
    }
}
