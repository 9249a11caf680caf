//! Our netfront under GSO (issue 12 E): the guest's stack offers 64 KiB TCP frames
//! asking for a tiny MSS (48 bytes: 1364 segments each on the wire) as fast as netfront
//! takes them, under a 10 000 packets/s and a 100 Mb/s budget. netfront's bucket must
//! refuse them as the wire would count them: over every window of an injected clock,
//! the wire packets and bytes of the frames it puts on the ring stay within the rate
//! plus one burst. The attacker knows its own headers; the segments are counted the way
//! Linux's GSO cuts a frame, not read from netfront. An honest stack (MSS 1448) under
//! the same budget still gets the budget's worth through: a frame is not overcharged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netback::NetbackConfig;
use netfront::{CreditPolicy, Netfront, NetfrontConfig, Sent};
use netport::{FrameMeta, Gso, GsoKind};
use shared_ring::credit::Credits;
use shared_ring::Limit;
use testbed::{add_vif, tcp_frame, BackendThread, LocalNetfront, TcpHeaders};
use xen_ids::DomId;
use xen_local::LocalHost;

const MS: u64 = 1_000_000;
/// Simulated run: 1 ms steps.
const STEPS: u64 = 2000;
/// The credit period (one period of burst).
const PERIOD_US: u32 = 20_000;
/// 10 000 packets/s, 200 of burst.
const PPS: u64 = 10_000;
/// 100 Mb/s, 250 000 bytes of burst.
const BPS: u64 = 12_500_000;
const HEADERS: TcpHeaders = TcpHeaders::V4 {
    ip_options: 0,
    tcp_options: 12,
};

fn burst(per_sec: u64) -> u64 {
    per_sec * u64::from(PERIOD_US) / 1_000_000
}

/// Segments and wire bytes of a TCP frame of `len` bytes with `hdr` bytes of headers,
/// cut at `mss` as Linux's GSO cuts it.
fn on_the_wire(len: u64, hdr: u64, mss: u64) -> (u64, u64) {
    let segs = (len - hdr).div_ceil(mss).max(1);
    (segs, len + (segs - 1) * hdr)
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a stack offering `mss`-segmented 64 KiB frames got onto the ring.
struct Run {
    /// (time, cumulative wire packets, cumulative wire bytes) after each step.
    samples: Vec<(u64, u64, u64)>,
    queued: u64,
    dropped: u64,
    stats: netfront::FrontStats,
}

fn connect(
    host: &LocalHost,
    nb: &BackendThread,
    clock: &ManualClock,
    budget: Credits,
) -> LocalNetfront {
    let mut cfg = NetfrontConfig::new(0);
    cfg.policy = CreditPolicy::Drop;
    let platform = testbed::domain(host, DomId(1)).expect("domain");
    let c = clock.clone();
    let mut nf = Netfront::connect(platform, cfg, Box::new(move || c.now())).expect("netfront");
    assert!(nf.has_credits() && nf.backend_gso());
    let id = xen_ids::VifId::new(DomId(1), 0);
    let set = nb.call(
        move |nb| nb.set_tx_budget(id, &budget),
        Duration::from_secs(10),
    );
    assert_eq!(set.ok(), Some(true), "netback set the budget");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nf.limits() != (budget.bytes, budget.packets) {
        assert!(Instant::now() < deadline, "netfront never saw its budget");
        nf.maintain();
        nf.ack_events();
        nf.apply_credits();
        std::thread::sleep(Duration::from_millis(1));
    }
    nf
}

/// The stack offers frames every step until netfront refuses one; the ring is drained
/// by netback (in real time) whenever it fills.
fn offer(mss: u16) -> Run {
    let host = LocalHost::new();
    add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let clock = ManualClock(Arc::new(AtomicU64::new(1_000 * MS)));
    let budget = Credits {
        bytes: Limit::rate(BPS, burst(BPS)),
        packets: Limit::rate(PPS, burst(PPS)),
        period_us: PERIOD_US,
    };
    let mut nf = connect(&host, &nb, &clock, budget);
    let frame = tcp_frame(65_535, HEADERS);
    let meta = FrameMeta {
        csum_blank: true,
        data_validated: true,
        gso: Some(Gso {
            size: mss,
            kind: GsoKind::TcpV4,
        }),
    };
    let (segs, wire_bytes) = on_the_wire(65_535, HEADERS.len() as u64, u64::from(mss));
    let start = clock.now();
    let mut run = Run {
        samples: vec![(start, 0, 0)],
        queued: 0,
        dropped: 0,
        stats: nf.stats,
    };
    for _ in 0..STEPS {
        clock.0.fetch_add(MS, Ordering::Relaxed);
        loop {
            match nf.send(&frame, &meta).expect("send") {
                Sent::Queued => run.queued += 1,
                Sent::Dropped => {
                    run.dropped += 1;
                    break;
                }
                Sent::RingFull => wait_for_room(&mut nf),
                other => panic!("{other:?}"),
            }
        }
        nf.flush().expect("flush");
        nf.reap_tx().expect("reap");
        run.samples
            .push((clock.now(), run.queued * segs, run.queued * wire_bytes));
    }
    run.stats = nf.stats;
    run
}

/// Publishes what is queued and takes completions until a frame fits again.
fn wait_for_room(nf: &mut LocalNetfront) {
    let deadline = Instant::now() + Duration::from_secs(10);
    nf.flush().expect("flush");
    while nf.reap_tx().expect("reap") == 0 {
        assert!(Instant::now() < deadline, "netback never answered");
        nf.ack_events();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Over every window [t_i, t_j]: admitted ≤ rate × (t_j − t_i) + burst.
fn assert_windows(samples: &[(u64, u64, u64)], pick: fn(&(u64, u64, u64)) -> u64, rate: u64) {
    for (i, a) in samples.iter().enumerate() {
        for b in &samples[i + 1..] {
            let admitted = pick(b) - pick(a);
            let allowed = rate * (b.0 - a.0) / 1_000_000_000 + burst(rate);
            assert!(
                admitted <= allowed,
                "{admitted} admitted in a window of {} ms, allowed {allowed}",
                (b.0 - a.0) / MS
            );
        }
    }
}

#[test]
fn a_tiny_mss_flood_is_refused_at_the_wire_cost() {
    let r = offer(48);
    assert_windows(&r.samples, |s| s.1, PPS);
    assert_windows(&r.samples, |s| s.2, BPS);
    // 1364 segments: more than the whole packet burst, so no such frame ever fits.
    let (segs, _) = on_the_wire(65_535, HEADERS.len() as u64, 48);
    assert_eq!(segs, 1364);
    assert_eq!(r.queued, 0);
    assert_eq!(r.dropped, STEPS);
    assert_eq!(r.stats.tx_dropped_credit_wire_packets, STEPS * segs);
}

#[test]
fn an_honest_stack_gets_the_budgets_worth_in_wire_packets() {
    let r = offer(1448);
    assert_windows(&r.samples, |s| s.1, PPS);
    assert_windows(&r.samples, |s| s.2, BPS);
    let &(_, pkts, bytes) = r.samples.last().unwrap();
    // The tighter of the two budgets is (nearly) used up: each frame is charged its
    // own wire cost, no more.
    let secs = STEPS / 1000;
    let (segs, wire) = on_the_wire(65_535, HEADERS.len() as u64, 1448);
    let frames_by_pps = (PPS * secs + burst(PPS)) / segs;
    let frames_by_bps = (BPS * secs + burst(BPS)) / wire;
    assert_eq!(r.queued, frames_by_pps.min(frames_by_bps));
    assert_eq!(
        (r.stats.tx_wire_packets, r.stats.tx_wire_bytes),
        (pkts, bytes),
        "netfront's published counters are wire counts"
    );
}

/// The smallest budget the allocator hands out (its burst floors) still passes one
/// full-size TSO frame of an honest guest on a 1500-byte MTU — 64 KiB over IPv6 with TCP
/// timestamps, MSS 1428, 46 segments — through netfront and through netback's backstop;
/// the next one waits for the rate.
#[test]
fn the_smallest_budget_passes_one_full_size_tso_frame() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let clock = ManualClock(Arc::new(AtomicU64::new(1_000 * MS)));
    let b = allocator::Budget::with_bursts(1_000, Some(1), Duration::from_micros(PERIOD_US.into()));
    let budget = Credits {
        bytes: Limit::rate(b.bytes_per_sec(), b.burst_bytes),
        packets: Limit::rate(1, b.burst_packets.unwrap()),
        period_us: PERIOD_US,
    };
    let mut nf = connect(&host, &nb, &clock, budget);
    let headers = TcpHeaders::V6 {
        hop_by_hop: 0,
        tcp_options: 12,
    };
    let frame = tcp_frame(65_535, headers);
    let (segs, _) = on_the_wire(65_535, headers.len() as u64, 1428);
    assert_eq!(segs, 46);
    let meta = FrameMeta {
        csum_blank: true,
        data_validated: true,
        gso: Some(Gso {
            size: 1428,
            kind: GsoKind::TcpV6,
        }),
    };
    assert_eq!(nf.send(&frame, &meta).expect("send"), Sent::Queued);
    assert_eq!(nf.send(&frame, &meta).expect("send"), Sent::Dropped);
    nf.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = nb.vif_status(id).expect("vif").counters;
        if c.tx_packets == 1 {
            assert_eq!(c.tx_dropped_police, 0, "netback's backstop let it through");
            assert_eq!(c.tx_wire_packets, 46);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "netback never forwarded it: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
