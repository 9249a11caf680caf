//! The DBA-VM allocator running inside netback, end to end: SLAs (a scaled-down paper
//! test bed) → budgets in every frontend's credit area → frames held to them; an SLA
//! change written in xenstore is picked up live; a bad SLA value keeps the old SLA.

use std::time::{Duration, Instant};

use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;
use xenstore::{Xenstore, XsTx};

/// The paper's SLAs divided by 100: a 10 Mb/s link, VM2 7 Mb/s, VM1/VM3 1.5 Mb/s, VM
/// packet caps 200/600/600 p/s.
const SLAS: &str = r#"
[link]
capacity-bps = "10M"
[defaults]
priority = 7
min-bps = 0
[[vm]]
domid = 1
pps = 200
[[vm]]
domid = 2
pps = 600
[[vm]]
domid = 3
pps = 600
[[vif]]
domid = 1
devid = 0
priority = 1
min-bps = "1500k"
max-bps = "1500k"
[[vif]]
domid = 2
devid = 0
priority = 0
min-bps = "7M"
max-bps = "7M"
[[vif]]
domid = 3
devid = 0
priority = 1
min-bps = "1500k"
max-bps = "1500k"
"#;

fn vif(d: u16) -> VifId {
    VifId {
        domid: DomId(d),
        devid: 0,
    }
}

#[test]
fn budgets_follow_the_slas_and_live_changes() {
    let host = LocalHost::new();
    for d in 1..=3 {
        add_vif(&host, DomId(d), 0).expect("vif");
    }
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    nb.command(|nb| {
        nb.enable_allocator(
            parse_sla_file(SLAS).unwrap(),
            LoopConfig::with_period(Duration::from_millis(10)),
        )
        .unwrap();
    });
    let mut guests: Vec<Guest> = (1..=3)
        .map(|d| Guest::start(&host, DomId(d), NetfrontConfig::new(0)).expect("guest"))
        .collect();
    let mut wires: Vec<_> = (1..=3).map(|d| nb.wire(vif(d))).collect();

    // Everyone floods 1000-byte frames for 1.5 s.
    let t0 = Instant::now();
    let senders: Vec<_> = guests
        .iter_mut()
        .map(|g| {
            let mut app = std::mem::replace(&mut g.app, netport::MemPort::pair(1, 64).unwrap().0);
            std::thread::spawn(move || {
                flood(&mut app, 1000, Duration::from_millis(1500));
                app
            })
        })
        .collect();
    let counters: Vec<_> = wires
        .iter_mut()
        .map(|w| {
            let mut w = std::mem::replace(w, netport::MemPort::pair(1, 64).unwrap().0);
            std::thread::spawn(move || {
                let r = count_until(&mut w, Instant::now() + Duration::from_millis(1700));
                (r, w)
            })
        })
        .collect();
    for (g, s) in guests.iter_mut().zip(senders) {
        g.app = s.join().unwrap();
    }
    let mut got: Vec<(u64, u64)> = Vec::new();
    for (w, c) in wires.iter_mut().zip(counters) {
        let (r, port) = c.join().unwrap();
        got.push(r);
        *w = port;
    }
    let secs = t0.elapsed().as_secs_f64();
    let budgets: Vec<allocator::Budget> = (1..=3)
        .map(|d| nb.vif_status(vif(d)).unwrap().budget.unwrap())
        .collect();
    // The paper's step 1 at 1/100 scale (bits/s of frame bytes).
    assert_eq!(
        budgets.iter().map(|b| b.bps).collect::<Vec<_>>(),
        vec![1_500_000, 7_000_000, 1_500_000]
    );
    // Step 2: the VM caps (one vif per VM).
    assert_eq!(
        budgets.iter().map(|b| b.pps).collect::<Vec<_>>(),
        vec![Some(200), Some(600), Some(600)]
    );
    // Delivered ≤ budget × time + burst, per VM (upper bounds: immune to a slow machine).
    // Before the first round (one period) a vif is unlimited: allow one period of line
    // rate, i.e. what the flood could push in 10 ms, on top.
    for (k, (frames, _bytes)) in got.iter().enumerate() {
        let b = budgets[k];
        let by_pps = b.pps.unwrap() as f64 * secs + b.burst_packets.unwrap() as f64 * 2.0;
        let by_bps = (b.bps as f64 / 8.0 * secs + b.burst_bytes as f64 * 2.0) / 1000.0;
        let first_period = 2000.0; // frames the unlimited first 10 ms could carry, generously
        let bound = by_pps.min(by_bps) + first_period;
        assert!(
            (*frames as f64) <= bound,
            "VM{} delivered {frames} frames in {secs:.2} s, bound {bound:.0}",
            k + 1
        );
        assert!(*frames > 0);
    }

    // A live SLA change in xenstore while VM1 keeps sending: it may now use 3 Mb/s.
    let mut app1 = std::mem::replace(&mut guests[0].app, netport::MemPort::pair(1, 64).unwrap().0);
    let mut wire1 = std::mem::replace(&mut wires[0], netport::MemPort::pair(1, 64).unwrap().0);
    let flood1 = std::thread::spawn(move || flood(&mut app1, 1000, Duration::from_millis(2500)));
    let drain1 = std::thread::spawn(move || {
        count_until(&mut wire1, Instant::now() + Duration::from_millis(2600))
    });
    let dom0 = host.domain(DomId(0)).unwrap();
    let be = "/local/domain/0/backend/vif/1/0";
    dom0.xenstore
        .write(XsTx::NONE, &format!("{be}/dba-min-bps"), b"3M")
        .unwrap();
    dom0.xenstore
        .write(XsTx::NONE, &format!("{be}/dba-max-bps"), b"3M")
        .unwrap();
    // The change is picked up through the watch: the SLA in force becomes 3 Mb/s (the
    // budget itself then follows VM1's demand, capped by its 200 p/s VM limit).
    let sla_of = |nb: &BackendThread| {
        let (tx, rx) = std::sync::mpsc::channel();
        nb.command(move |nb| tx.send(nb.effective_sla(vif(1))).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while sla_of(&nb).min_bps() != 3_000_000 {
        assert!(
            Instant::now() < deadline,
            "the xenstore SLA change never took effect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Within a period or two the budget follows: above the old 1.5 Mb/s maximum.
    let deadline = Instant::now() + Duration::from_secs(5);
    while nb.vif_status(vif(1)).unwrap().budget.map_or(0, |b| b.bps) <= 1_500_000 {
        assert!(
            Instant::now() < deadline,
            "the budget never moved past the old maximum"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A hostile value keeps the previous SLA.
    dom0.xenstore
        .write(XsTx::NONE, &format!("{be}/dba-min-bps"), b"-5 lots")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sla = sla_of(&nb);
    assert_eq!((sla.min_bps(), sla.max_bps()), (3_000_000, Some(3_000_000)));
    flood1.join().unwrap();
    drain1.join().unwrap();
    for g in &mut guests {
        g.stop().expect("guest");
    }
}
