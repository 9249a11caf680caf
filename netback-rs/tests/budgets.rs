//! Budgets end to end: the frontend enforces its credits (drop or hold), and the backend
//! holds a frontend that ignores them, or never negotiated them, to its budget.
//!
//! Every assertion on amounts is an upper bound that follows from the token bucket
//! (admitted ≤ rate × elapsed + burst), measured over a window that contains the whole
//! life of the buckets, so a slow machine can only make it easier to satisfy.

use std::time::{Duration, Instant};

use netback::{BackstopPolicy, NetbackConfig};
use netfront::{CreditPolicy, NetfrontConfig};
use shared_ring::credit::Credits;
use shared_ring::Limit;
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const PPS: u64 = 2000;
const PBURST: u64 = 20;
const BPS: u64 = 2_000_000;
const BBURST: u64 = 20_000;
const LEN: usize = 500;

fn budget() -> Credits {
    Credits {
        bytes: Limit::rate(BPS, BBURST),
        packets: Limit::rate(PPS, PBURST),
        period_us: 100_000,
    }
}

fn cfg(policy: BackstopPolicy) -> NetbackConfig {
    NetbackConfig {
        initial_budget: budget(),
        tx_policy: policy,
        ..NetbackConfig::default()
    }
}

/// Upper bound of frames admitted over `secs` with `burst_factor` × burst.
/// With `burst_factor` 2 this is the backstop's depth: twice the burst, and at least
/// `netback::vif::BACKSTOP_MIN_PACKETS` packets.
fn bound(secs: f64, burst_factor: u64) -> u64 {
    let pburst = if burst_factor > 1 {
        (PBURST * burst_factor).max(netback::vif::BACKSTOP_MIN_PACKETS)
    } else {
        PBURST
    };
    let by_pkts = PPS as f64 * secs + pburst as f64;
    let by_bytes = (BPS as f64 * secs + (BBURST * burst_factor) as f64) / LEN as f64;
    by_pkts.min(by_bytes).floor() as u64
}

#[test]
fn frontend_drops_excess_and_backend_never_polices_it() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, cfg(BackstopPolicy::Drop)).expect("netback");
    let t0 = Instant::now();
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(id);
    let sender = std::thread::spawn({
        let mut app = std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0);
        move || flood(&mut app, LEN, Duration::from_millis(600))
    });
    let (n, _) = count_until(&mut wire, Instant::now() + Duration::from_millis(900));
    let elapsed = t0.elapsed().as_secs_f64();
    let offered = sender.join().unwrap();
    let stats = guest.stop().expect("guest");
    let st = nb.vif_status(id).unwrap();
    assert!(n > 0, "nothing delivered");
    assert!(
        n <= bound(elapsed, 1),
        "delivered {n} frames in {elapsed:.3} s, bound {}",
        bound(elapsed, 1)
    );
    assert!(
        stats.tx_dropped_credit > 0,
        "the frontend dropped nothing of {offered} offered"
    );
    assert_eq!(
        st.counters.tx_dropped_police, 0,
        "a conforming frontend was policed by the backend"
    );
    assert_eq!(stats.tx_dropped_back, 0);
}

#[test]
fn frontend_hold_loses_nothing_and_keeps_the_rate() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, cfg(BackstopPolicy::Drop)).expect("netback");
    let mut fc = NetfrontConfig::new(0);
    fc.policy = CreditPolicy::Hold;
    let t0 = Instant::now();
    let mut guest = Guest::start(&host, DomId(1), fc).expect("guest");
    let mut wire = nb.wire(id);
    const N: u32 = 400;
    let sender = std::thread::spawn({
        let mut app = std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0);
        move || {
            for seq in 0..N {
                send_all(&mut app, &frame(seq, LEN));
            }
        }
    });
    let got = recv_n(&mut wire, N as usize, Duration::from_secs(20));
    let elapsed = t0.elapsed().as_secs_f64();
    sender.join().unwrap();
    let stats = guest.stop().expect("guest");
    assert_eq!(got.len(), N as usize, "hold must not lose frames");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), i as u32, "hold must not reorder");
    }
    assert!(
        N as u64 <= bound(elapsed, 1),
        "{N} frames in {elapsed:.3} s exceeds the budget"
    );
    assert_eq!(stats.tx_dropped_credit, 0);
    assert!(stats.tx_held > 0);
    let st = nb.vif_status(id).unwrap();
    assert_eq!(st.counters.tx_dropped_police, 0);
}

fn backstop_case(fc: NetfrontConfig, expect_credits: bool) {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, cfg(BackstopPolicy::Drop)).expect("netback");
    let t0 = Instant::now();
    let mut guest = Guest::start(&host, DomId(1), fc).expect("guest");
    let mut wire = nb.wire(id);
    let sender = std::thread::spawn({
        let mut app = std::mem::replace(&mut guest.app, netport::MemPort::pair(1, 64).unwrap().0);
        move || flood(&mut app, LEN, Duration::from_millis(600))
    });
    let (n, _) = count_until(&mut wire, Instant::now() + Duration::from_millis(900));
    let elapsed = t0.elapsed().as_secs_f64();
    sender.join().unwrap();
    let stats = guest.stop().expect("guest");
    let st = nb.vif_status(id).unwrap();
    assert_eq!(st.credits, expect_credits);
    assert!(n > 0);
    assert!(
        n <= bound(elapsed, 2),
        "backstop let {n} frames through in {elapsed:.3} s"
    );
    assert!(
        st.counters.tx_dropped_police > 0,
        "the backend policed nothing"
    );
    // The frontend sees those drops as NETIF_RSP_DROPPED (all of them once it has
    // reaped every response; the last batch may still be in flight at shutdown).
    assert!(stats.tx_dropped_back > 0 && stats.tx_dropped_back <= st.counters.tx_dropped_police);
    assert_eq!(
        st.counters.tx_bytes_copied, st.counters.tx_bytes,
        "policed frames must not be copied"
    );
}

#[test]
fn backend_holds_a_frontend_that_ignores_its_credits() {
    let mut fc = NetfrontConfig::new(0);
    fc.enforce_credits = false;
    backstop_case(fc, true);
}

#[test]
fn legacy_frontend_without_credits_is_policed_by_the_backend_alone() {
    let mut fc = NetfrontConfig::new(0);
    fc.request_credits = false;
    backstop_case(fc, false);
}

#[test]
fn budget_change_reaches_the_frontend() {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(id);
    // Unlimited at first: 200 frames pass.
    for seq in 0..200u32 {
        send_all(&mut guest.app, &frame(seq, LEN));
    }
    assert_eq!(recv_n(&mut wire, 200, Duration::from_secs(10)).len(), 200);
    // Close the vif: nothing passes any more, and the frontend drops (not the backend).
    nb.command(|nb| {
        nb.set_tx_budget(
            netback::VifId {
                domid: xen_ids::DomId(1),
                devid: 0,
            },
            &Credits {
                bytes: Limit::CLOSED,
                packets: Limit::CLOSED,
                period_us: 1000,
            },
        );
    });
    std::thread::sleep(Duration::from_millis(100));
    for seq in 0..50u32 {
        send_all(&mut guest.app, &frame(seq, LEN));
    }
    assert!(recv_n(&mut wire, 1, Duration::from_millis(300)).is_empty());
    let stats = guest.stop().expect("guest");
    assert_eq!(stats.tx_dropped_credit, 50);
    let st = nb.vif_status(id).unwrap();
    assert_eq!(st.counters.tx_dropped_police, 0);
}

#[test]
fn emulated_backend_packet_rate_caps_all_vifs_together() {
    let host = LocalHost::new();
    let a = add_vif(&host, DomId(1), 0).expect("vif");
    let b = add_vif(&host, DomId(2), 0).expect("vif");
    let cfg = NetbackConfig {
        emulated_backend_pps: Some(3000),
        ..NetbackConfig::default()
    };
    let nb = BackendThread::start(&host, cfg).expect("netback");
    let t0 = Instant::now();
    let mut g1 = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut g2 = Guest::start(&host, DomId(2), NetfrontConfig::new(0)).expect("guest");
    let (mut w1, mut w2) = (nb.wire(a), nb.wire(b));
    let s: Vec<_> = [&mut g1, &mut g2]
        .into_iter()
        .map(|g| {
            let mut app = std::mem::replace(&mut g.app, netport::MemPort::pair(1, 64).unwrap().0);
            std::thread::spawn(move || flood(&mut app, 100, Duration::from_millis(500)))
        })
        .collect();
    let c2 = std::thread::spawn(move || {
        count_until(&mut w2, Instant::now() + Duration::from_millis(700))
    });
    let (n1, _) = count_until(&mut w1, Instant::now() + Duration::from_millis(700));
    let (n2, _) = c2.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    s.into_iter().for_each(|t| {
        t.join().unwrap();
    });
    let bound = 3000.0 * secs + 3.0;
    assert!(n1 > 0 && n2 > 0, "both vifs get served ({n1}, {n2})");
    assert!(
        (n1 + n2) as f64 <= bound,
        "{} frames in {secs:.2} s > {bound:.0}",
        n1 + n2
    );
}
