//! The first credit generation a frontend can read carries its vif's SLA budget (issue
//! 12, "Smaller"): a frontend that reads the credit area from the moment it asks to
//! connect until it sees `Connected` never sees "unlimited", and what it sees at
//! `Connected` is generation 1 with what the SLA allows — not an unlimited generation 1
//! followed by the budget.

use std::time::{Duration, Instant};

use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use hypervisor::evtchn::EventChannels;
use hypervisor::grant::{Access, GrantShare, SharedPages};
use hypervisor::platform::ring_mem;
use hypervisor::xenbus::{read_state, XenbusState};
use netback::NetbackConfig;
use shared_ring::credit::{CreditArea, CreditReader, CreditSnapshot, CREDIT_VERSION};
use shared_ring::netif::{NetifRxFrontRing, NetifTxFrontRing};
use shared_ring::Limit;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

/// A 10 Mb/s link; dom1's vif at most 1.5 Mb/s, dom1 at most 200 packets/s.
const SLAS: &str = r#"
[link]
capacity-bps = "10M"
[defaults]
priority = 7
min-bps = 0
[[vm]]
domid = 1
pps = 200
[[vif]]
domid = 1
devid = 0
priority = 1
min-bps = "1500k"
max-bps = "1500k"
"#;

#[test]
fn the_first_generation_a_frontend_reads_is_its_sla_budget() {
    let host = LocalHost::new();
    add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    // A long period, and the first round over before the frontend comes: no round runs
    // between the connection and the check, so what the frontend reads is what netback
    // published when it connected.
    nb.call(
        |nb| {
            nb.enable_allocator(
                parse_sla_file(SLAS).unwrap(),
                LoopConfig::with_period(Duration::from_secs(30)),
            )
        },
        Duration::from_secs(10),
    )
    .unwrap()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nb
        .call(
            |nb| nb.allocator_report().map_or(0, |(_, _, rounds)| rounds),
            Duration::from_secs(10),
        )
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "the allocator never ran a round");
        std::thread::sleep(Duration::from_millis(5));
    }

    // The frontend, as a stock one with the credit extension acts.
    let plat = host.domain(DomId(1)).unwrap();
    let fe = "/local/domain/1/device/vif/0";
    let be = "/local/domain/0/backend/vif/1/0";
    let w = |k: &str, v: &str| {
        plat.xenstore
            .write(XsTx::NONE, &format!("{fe}/{k}"), v.as_bytes())
            .unwrap()
    };
    let state = || read_state(&plat.xenstore, &format!("{be}/state")).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state() != Some(XenbusState::InitWait) {
        assert!(Instant::now() < deadline, "no InitWait");
        std::thread::sleep(Duration::from_millis(1));
    }
    let tx = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
    let rx = plat.grants.share(DomId(0), 1, Access::Writable).unwrap();
    NetifTxFrontRing::init(ring_mem(tx.mem())).unwrap();
    NetifRxFrontRing::init(ring_mem(rx.mem())).unwrap();
    let ev = plat.evtchn.alloc_unbound(DomId(0)).unwrap();
    w("tx-ring-ref", &tx.grefs()[0].0.to_string());
    w("rx-ring-ref", &rx.grefs()[0].0.to_string());
    w("event-channel", &ev.0.to_string());
    w("request-rx-copy", "1");
    w("request-dba-credits", &CREDIT_VERSION.to_string());
    w("state", "4");

    let read = || -> Option<CreditSnapshot> {
        // The version requested: netback writes that layout.
        let area = CreditArea::in_tx_page_version(ring_mem(tx.mem()), CREDIT_VERSION).ok()?;
        CreditReader::new(area).snapshot().ok()
    };
    // Every generation seen on the way, then the one seen at Connected.
    let mut seen = Vec::new();
    let at_connected = loop {
        let connected = state() == Some(XenbusState::Connected);
        if let Some(s) = read() {
            if s.generation > 0 && seen.last() != Some(&s) {
                seen.push(s);
            }
        }
        if connected {
            break read().expect("a credit snapshot once Connected");
        }
        assert!(Instant::now() < deadline, "no Connected");
        std::thread::yield_now();
    };
    for s in &seen {
        assert_ne!(
            s.credits.bytes,
            Limit::Unlimited,
            "generation {} says unlimited bytes",
            s.generation
        );
        assert_ne!(
            s.credits.packets,
            Limit::Unlimited,
            "generation {} says unlimited packets",
            s.generation
        );
    }
    assert_eq!(at_connected.generation, 1, "seen: {seen:?}");
    let Limit::Rate { per_sec: bps, .. } = at_connected.credits.bytes else {
        panic!("unlimited bytes at Connected: {at_connected:?}");
    };
    let Limit::Rate { per_sec: pps, .. } = at_connected.credits.packets else {
        panic!("unlimited packets at Connected: {at_connected:?}");
    };
    assert_eq!(bps, 1_500_000 / 8, "bytes/s of the SLA's max-bps");
    assert_eq!(pps, 200, "the VM's packets/s cap");
}
