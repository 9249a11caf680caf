//! A guest scribbling on its credit area cannot raise its budgets (issue 15).
//!
//! The attacker negotiates the version-2 area (TX and RX budgets, netback's counters),
//! then, while flooding both directions — its TX ring as fast as netback answers, and
//! dom0 sending into it as fast as the port takes — rewrites every word of the area over
//! and over: half the time with the values that would help it most (both budgets
//! "unlimited", a valid header and seqlock, counters zeroed), half the time with random
//! words. netback must keep holding it to rate × t + burst in both directions, keep its
//! own budgets (never read back from the page), keep the vif up, and leave a
//! well-behaved guest on the same netback undisturbed.

use std::time::{Duration, Instant};

use allocator::budget::MIN_BURST_BYTES;
use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use hypervisor::xenbus::XenbusState;
use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use netport::{FrameMeta, Port};
use shared_ring::credit::{offsets as off, CREDIT_AREA_BYTES_V2, CREDIT_AREA_OFFSET, CREDIT_MAGIC};
use shared_ring::netif::NetTxFlags;
use shared_ring::{Limit, SharedMem};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

/// Both guests: 2 Mb/s (250 000 B/s) each way.
const SLAS: &str = r#"
[link]
capacity-bps = "100M"
rx-capacity-bps = "100M"
[[vif]]
domid = 1
max-bps = "2M"
rx-max-bps = "2M"
[[vif]]
domid = 2
max-bps = "2M"
rx-max-bps = "2M"
"#;
const RATE_BYTES: u64 = 250_000;
const FRAME: usize = 1000;

fn vif(d: u16) -> VifId {
    VifId::new(DomId(d), 0)
}

/// Rewrites every word of the version-2 area: on even rounds what would raise the
/// guest's budgets if netback believed it, on odd rounds random words.
struct Scribbler {
    x: u32,
    round: u64,
}

impl Scribbler {
    fn scribble(&mut self, area: SharedMem<'_>) {
        self.round += 1;
        if self.round % 2 == 0 {
            let seq = (self.round as u32).wrapping_mul(2);
            area.store(off::MAGIC, CREDIT_MAGIC);
            area.store(
                off::VERSION_AREA_BYTES,
                2 | (CREDIT_AREA_BYTES_V2 as u32) << 16,
            );
            area.store(off::SEQ, seq);
            for o in [
                off::BYTES_PER_SEC,
                off::BYTES_BURST,
                off::PACKETS_PER_SEC,
                off::PACKETS_BURST,
                off::RX_BYTES_PER_SEC,
                off::RX_BYTES_BURST,
                off::RX_PACKETS_PER_SEC,
                off::RX_PACKETS_BURST,
            ] {
                area.store(o, u32::MAX);
                area.store(o + 4, u32::MAX);
            }
            area.store(off::BACK_SEQ, seq);
            for o in (off::TX_SHAPED_BPS_FRAMES..CREDIT_AREA_BYTES_V2).step_by(4) {
                area.store(o, 0);
            }
            // The frontend block: an absurd offered load and applied generation.
            for o in (off::FRONT_VERSION..off::RX_BYTES_PER_SEC).step_by(4) {
                area.store(o, u32::MAX);
            }
            area.store(off::FRONT_SEQ, seq);
        } else {
            for o in (0..CREDIT_AREA_BYTES_V2).step_by(4) {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 17;
                self.x ^= self.x << 5;
                area.store(o, self.x);
            }
        }
    }
}

/// What the attacker achieved.
struct Attack {
    /// Seconds from before netback started to the reading of its counters.
    secs: f64,
    /// RX bytes the attacker found in its buffers.
    rx_got: u64,
    /// TX frames dom0 received from it on the vif's port.
    tx_wire_frames: u64,
    /// Scribbling rounds.
    rounds: u64,
}

/// The attacker's loop for `dur`: TX slots pushed whenever the ring has room, RX
/// buffers reposted, the area rewritten every iteration.
fn attack(rf: &mut RawFrontend, dur: Duration) -> (u64, u64) {
    let gref = rf.data_gref(0);
    let mut s = Scribbler {
        x: 0x9E37_79B9,
        round: 0,
    };
    let (mut id, mut rx_got) = (0u16, 0u64);
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let area = rf
            .tx_ring_mem()
            .slice(CREDIT_AREA_OFFSET, CREDIT_AREA_BYTES_V2)
            .unwrap();
        s.scribble(area);
        rf.take_responses();
        let slots: Vec<TxSlot> = (0..8)
            .map(|k| {
                tx_req(
                    gref,
                    0,
                    FRAME as u16,
                    NetTxFlags::empty(),
                    id.wrapping_add(k),
                )
            })
            .collect();
        if rf.push(&slots, true).is_some() {
            id = id.wrapping_add(8);
        }
        rf.post_rx(64);
        rx_got += rf
            .take_rx_responses()
            .iter()
            .filter(|(_, st)| *st > 0)
            .map(|(_, st)| *st as u64)
            .sum::<u64>();
        std::thread::sleep(Duration::from_micros(200));
    }
    (s.round, rx_got)
}

#[test]
fn a_guest_scribbling_on_its_credit_area_stays_held_to_its_budgets() {
    let host = LocalHost::new();
    for d in 1..=2 {
        add_vif(&host, DomId(d), 0).expect("vif");
    }
    let t0 = Instant::now();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    nb.command(|nb| {
        nb.enable_allocator(
            parse_sla_file(SLAS).unwrap(),
            LoopConfig::with_period(Duration::from_millis(10)),
        )
        .unwrap();
    });
    // The well-behaved neighbour.
    let mut good = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    // The attacker: version 2 of the area, RX notifications, its own ring handling.
    let mut rf = RawFrontend::new(&host, vif(1)).expect("raw");
    rf.write("request-dba-credits", "2");
    rf.write("feature-rx-notify", "1");
    assert_eq!(rf.connect(&RawConnect::default()), XenbusState::Connected);
    nb.wait_connected(&[vif(1), vif(2)], Duration::from_secs(10))
        .expect("connected");
    let dur = Duration::from_millis(1500);
    let drain_end = Instant::now() + dur + Duration::from_millis(300);
    // dom0 floods the attacker and counts what it sends out; the neighbour exchanges a
    // modest 100 frames each way (0.5 Mb/s: within its budget).
    let mut wire1 = nb.wire(vif(1));
    let dom0_1 = std::thread::spawn(move || {
        let sent = flood(&mut wire1, FRAME, dur);
        (sent, count_until(&mut wire1, drain_end))
    });
    let mut wire2 = nb.wire(vif(2));
    let mut app2 = std::mem::replace(&mut good.app, netport::MemPort::pair(1, 64).unwrap().0);
    let neighbour = std::thread::spawn(move || {
        let f = frame(7, FRAME);
        for _ in 0..100 {
            wire2.send(&f, &FrameMeta::default()).unwrap();
            app2.send(&f, &FrameMeta::default()).unwrap();
            std::thread::sleep(Duration::from_millis(12));
        }
        // Within a generous deadline (a loaded machine delays, never loses them).
        let got_in = recv_n(&mut app2, 100, Duration::from_secs(10)).len();
        let got_out = recv_n(&mut wire2, 100, Duration::from_secs(10)).len();
        (got_in, got_out, app2)
    });
    let (rounds, rx_got) = attack(&mut rf, dur);
    let (rx_sent, (tx_wire_frames, _)) = dom0_1.join().unwrap();
    let (got_in, got_out, app2) = neighbour.join().unwrap();
    good.app = app2;
    let s1 = nb.vif_status(vif(1)).unwrap();
    let s2 = nb.vif_status(vif(2)).unwrap();
    let a = Attack {
        secs: t0.elapsed().as_secs_f64(),
        rx_got,
        tx_wire_frames,
        rounds,
    };
    let c = s1.counters;
    eprintln!(
        "{:.2} s, {} scribbles: RX {} B delivered of {rx_sent} frames sent ({} dropped), \
         TX {} B forwarded ({} dropped)",
        a.secs,
        a.rounds,
        c.rx_wire_bytes,
        c.rx_dropped_police,
        c.tx_wire_bytes,
        c.tx_dropped_police
    );
    assert!(a.rounds > 100, "the area was rewritten {} times", a.rounds);
    // RX: netback charged every frame against its own budget before the copy.
    let rx_bound = RATE_BYTES as f64 * a.secs + MIN_BURST_BYTES as f64;
    assert!(
        (c.rx_wire_bytes as f64) <= rx_bound,
        "RX: {} B delivered in {:.2} s, bound {rx_bound:.0} ({c:?})",
        c.rx_wire_bytes,
        a.secs
    );
    assert!(
        a.rx_got <= c.rx_bytes,
        "the attacker got only what netback copied"
    );
    assert!(
        c.rx_dropped_police > 0 && rx_sent > c.rx_packets * 2,
        "{c:?}, sent {rx_sent}"
    );
    // TX: the backstop (the budget with twice its burst) held, whatever the page said.
    let tx_bound = RATE_BYTES as f64 * a.secs + 2.0 * MIN_BURST_BYTES as f64;
    assert!(
        (c.tx_wire_bytes as f64) <= tx_bound,
        "TX: {} B forwarded in {:.2} s, bound {tx_bound:.0} ({c:?})",
        c.tx_wire_bytes,
        a.secs
    );
    assert!(a.tx_wire_frames * FRAME as u64 <= c.tx_wire_bytes);
    assert!(c.tx_dropped_police > 0, "{c:?}");
    // netback's budgets are its own, never the page's.
    let tx = s1.budget.expect("TX budget");
    let rx = s1.rx_budget.expect("RX budget");
    assert_eq!((tx.bps, rx.bps), (2_000_000, 2_000_000));
    // Scribbling is no protocol error: the vif stays up.
    assert_eq!(rf.be_state(), XenbusState::Connected);
    assert_eq!(rf.error(), "");
    // The neighbour: everything through both ways, nothing shaped, and the allowance it
    // reads in its own area is its budget.
    assert_eq!((got_in, got_out), (100, 100), "{:?}", s2.counters);
    let c2 = s2.counters;
    assert_eq!(
        (c2.rx_dropped_police, c2.tx_dropped_police, c2.shaped()),
        (0, 0, Default::default())
    );
    good.stop().unwrap();
    let nf = good.stopped_netfront().unwrap();
    nf.apply_credits();
    let per_sec = |l: Limit| match l {
        Limit::Rate { per_sec, .. } => Some(per_sec),
        Limit::Unlimited => None,
    };
    let al = nf.allowance;
    assert_eq!(per_sec(al.tx.unwrap().bytes), Some(RATE_BYTES));
    assert_eq!(per_sec(al.rx.unwrap().bytes), Some(RATE_BYTES));
    rf.close();
}
