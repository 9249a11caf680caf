//! A hostile frontend (`testbed::RawFrontend`, written from netif.h) next to a well-behaved vif:
//! every malformed-request class disconnects (or, for packet-level faults, answers an
//! error to) the offender only, with the reason in xenstore, while the other vif's
//! traffic keeps flowing.

use std::time::Duration;

use hypervisor::xenbus::XenbusState;
use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use shared_ring::netif::{NetTxFlags, NetifExtraInfo};
use shared_ring::ring::layout;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

/// The backend's answer within 10 s, or a failed test.
fn wait_be(f: &RawFrontend, want: XenbusState) {
    let got = f.wait_be(&[want], Duration::from_secs(10));
    assert_eq!(got, Some(want), "backend never reached {want:?}");
}

/// A hostile frontend of domain 2, device `devid`, connected.
fn connect(host: &LocalHost, devid: u32) -> RawFrontend {
    let mut f = RawFrontend::new(host, VifId::new(DomId(2), devid)).expect("domain");
    assert_eq!(f.connect(&RawConnect::default()), XenbusState::Connected);
    f
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
        fn(&RawFrontend) -> Vec<TxSlot>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "slot crosses its page",
            |f| vec![tx_req(f.data_gref(0), 4000, 200, NetTxFlags::empty(), 1)],
            Some("crosses its page"),
        ),
        (
            "chain longer than 20 slots",
            |f| {
                (0..21)
                    .map(|i| {
                        tx_req(
                            f.data_gref(0),
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
                    tx_req(f.data_gref(0), 0, 100, NetTxFlags::EXTRA_INFO, 1),
                    TxSlot::Extra(NetifExtraInfo {
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
                    tx_req(f.data_gref(0), 0, 100, NetTxFlags::MORE_DATA, 1),
                    tx_req(f.data_gref(0), 0, 200, NetTxFlags::empty(), 2),
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
        let mut f = connect(&host, devid as u32);
        let s = slots(&f);
        f.push(&s, true);
        wait_be(&f, XenbusState::Closing);
        let err = f.error();
        assert!(
            err.contains(why.unwrap()),
            "{name}: error node says {err:?}"
        );
        good_traffic(&mut guest, &mut wire, 1000 * (devid as u32 + 1), 50);
    }

    // A producer index far ahead of anything the ring can hold.
    let f = connect(&host, wild_devid);
    f.tx_ring_mem().store(layout::REQ_PROD, 100_000);
    f.notify();
    wait_be(&f, XenbusState::Closing);
    good_traffic(&mut guest, &mut wire, 9000, 50);

    // Grants the frontend does not own or never granted: packet errors, no disconnect.
    let mut f = connect(&host, grant_devid);
    f.push(&[tx_req(123_456, 0, 100, NetTxFlags::empty(), 7)], true);
    let rsps = f.responses(1, Duration::from_secs(5));
    assert_eq!(rsps, vec![(7, shared_ring::netif::NETIF_RSP_ERROR)]);
    assert_eq!(f.be_state(), XenbusState::Connected);
    good_traffic(&mut guest, &mut wire, 10_000, 50);
    let st = nb.vif_status(bad[grant_devid as usize]).unwrap();
    assert_eq!(st.counters.tx_copy_errors, 1);
    assert_eq!(nb.vif_status(good).unwrap().counters.tx_dropped(), 0);
}
