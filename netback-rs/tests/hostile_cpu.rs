//! Hostile guests that try to make netback spin, beside an honest guest (issue 12, A
//! and B): a TX packet left incomplete on the ring, and frames for a vif without a
//! connected frontend. Each must cost netback no CPU: over a window in which the only
//! traffic is the stalled vif, netback's loop sleeps (its iterations are bounded by its
//! poll tick, whatever the machine's speed) and its thread uses at most 5 % of the
//! window. The incomplete packet is failed after the timeout (the clock is injected, so
//! the test does not wait for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::xenbus::XenbusState;
use netback::vif::DROP_ANSWERS_PER_SEC;
use netback::vif::INCOMPLETE_TIMEOUT_NS;
use netback::{LoopStats, NetbackConfig};
use netfront::NetfrontConfig;
use netport::{MemPort, MemPortConfig, Port};
use shared_ring::netif::extra::XEN_NETIF_GSO_TYPE_TCPV4;
use shared_ring::netif::{
    ExtraInfo, NetTxFlags, NetifExtraInfo, XenNetifExtraFlags, NETIF_RSP_OKAY,
};
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

/// netback's longest sleep: an idle loop iterates about once per tick.
const TICK: Duration = Duration::from_millis(100);
/// The measuring window.
const WINDOW: Duration = Duration::from_secs(2);

fn req(gref: u32, size: u16, flags: NetTxFlags, id: u16) -> TxSlot {
    tx_req(gref, 0, size, flags, id)
}

fn gso_extra(flags: XenNetifExtraFlags) -> TxSlot {
    let gso = ExtraInfo::Gso {
        size: 1400,
        r#type: XEN_NETIF_GSO_TYPE_TCPV4,
        features: 0,
    };
    TxSlot::Extra(NetifExtraInfo::new(&gso, flags))
}

/// The backend's answer within 10 s, or a failed test.
fn wait_be(h: &RawFrontend, want: XenbusState) {
    let got = h.wait_be(&[want], Duration::from_secs(10));
    assert_eq!(got, Some(want), "backend never reached {want:?}");
}

/// netback with an injected clock (the system's plus an offset the test advances), a
/// tick of [`TICK`], the honest guest (domain 1) connected.
struct Rig {
    host: LocalHost,
    nb: BackendThread,
    skew: Arc<SkewedClock>,
    guest: Guest,
    wire: MemPort,
    seq: u32,
}

impl Rig {
    fn new(vifs: &[VifId]) -> Rig {
        let skew = SkewedClock::new();
        let opts = BackendOptions {
            poll: TICK,
            clock: skew.clock(),
            ..BackendOptions::default()
        };
        let cfg = NetbackConfig::default();
        let ports = MemPortConfig::new(256, 65536);
        let HonestNeighbour {
            host,
            nb,
            guest,
            wire,
        } = HonestNeighbour::start(vifs, cfg, ports, opts).unwrap();
        Rig {
            host,
            nb,
            skew,
            guest,
            wire,
            seq: 0,
        }
    }

    /// netback's loop counters and its threads' CPU time, read on its thread.
    fn sample(&self) -> (LoopStats, u64) {
        self.nb.loop_sample().unwrap()
    }

    /// What netback does over [`WINDOW`] with no traffic but the hostile vif's: it
    /// must sleep. Asserts the bounds; returns the loop counters of the window.
    fn assert_idle(&self, what: &str) -> LoopStats {
        let (s0, cpu0) = self.sample();
        std::thread::sleep(WINDOW);
        let (s1, cpu1) = self.sample();
        let d = LoopStats {
            iterations: s1.iterations - s0.iterations,
            vif_polls: s1.vif_polls - s0.vif_polls,
            timeouts: s1.timeouts - s0.timeouts,
            events: s1.events - s0.events,
            notifies: s1.notifies - s0.notifies,
        };
        let cpu = cpu1 - cpu0;
        eprintln!("{what}: {d:?}, netback CPU {} ms", cpu / 1_000_000);
        // An idle loop wakes once per tick (20 in the window); allow for the honest
        // guest's and xenstore's occasional events. A spinning loop makes thousands.
        let ticks = (WINDOW.as_millis() / TICK.as_millis()) as u64;
        assert!(d.iterations <= 3 * ticks, "{what}: the loop spins: {d:?}");
        assert!(
            d.vif_polls <= 10,
            "{what}: a vif is polled in a loop: {d:?}"
        );
        let window_ns = WINDOW.as_nanos() as u64;
        assert!(
            cpu * 20 <= window_ns,
            "{what}: netback used {cpu} ns of CPU in {window_ns} ns"
        );
        d
    }

    /// The honest guest sends 50 frames: all delivered, in order, intact.
    fn honest_roundtrip(&mut self) {
        let base = self.seq;
        self.seq += 50;
        for s in 0..50 {
            send_all(&mut self.guest.app, &frame(base + s, 300));
        }
        let got = recv_n(&mut self.wire, 50, Duration::from_secs(10));
        assert_eq!(got.len(), 50, "the honest guest lost frames");
        for (i, f) in got.iter().enumerate() {
            assert_eq!(check_frame(f), base + i as u32);
        }
    }

    /// Advances netback's clock by `ns`.
    fn advance(&self, ns: u64) {
        self.skew.advance(ns);
    }
}

/// A: a packet whose last slot asks for more (`NETTXF_more_data`, or an extra-info slot
/// with `XEN_NETIF_EXTRA_FLAG_MORE`) and nothing after it: netback sleeps while it
/// waits, the honest guest is served, and after the timeout the vif is failed with
/// the reason in `error`.
#[test]
fn an_incomplete_packet_costs_no_cpu_then_fails_the_vif() {
    let bad = VifId::new(DomId(2), 0);
    let mut rig = Rig::new(&[bad]);
    let mut h = RawFrontend::new(&rig.host, bad).unwrap();
    type Case = (&'static str, fn(u32) -> Vec<TxSlot>);
    let cases: [Case; 2] = [
        ("more_data", |g| {
            vec![
                req(g, 300, NetTxFlags::MORE_DATA, 1),
                req(g, 100, NetTxFlags::MORE_DATA, 2),
                req(g, 100, NetTxFlags::MORE_DATA, 3),
            ]
        }),
        ("extra-info more", |g| {
            vec![
                req(g, 200, NetTxFlags::EXTRA_INFO, 1),
                gso_extra(XenNetifExtraFlags::MORE),
            ]
        }),
    ];
    for (what, slots) in cases {
        assert_eq!(h.connect(&RawConnect::default()), XenbusState::Connected);
        // netback never clears `error` (the last case's reason stays): compare.
        let error_before = h.error();
        let slots = slots(h.data_gref(0));
        h.push(&slots, true);
        std::thread::sleep(Duration::from_millis(300));
        rig.assert_idle(what);
        // netback waits for the slot after those it saw.
        let n = slots.len() as u32;
        assert_eq!(h.tx_req_event(), n + 1, "{what}");
        rig.honest_roundtrip();
        assert_eq!(h.be_state(), XenbusState::Connected, "{what}: failed early");
        assert_eq!(h.error(), error_before, "{what}");
        // The timeout, on netback's clock: the ring is malformed, the vif failed.
        rig.advance(INCOMPLETE_TIMEOUT_NS);
        wait_be(&h, XenbusState::Closing);
        let e = h.error();
        assert!(
            e.contains("left incomplete") && e.contains(&format!("({n} slots")),
            "{what}: {e}"
        );
        rig.honest_roundtrip();
        h.close();
    }
    let st = rig.nb.vif_status(VifId::new(DomId(1), 0)).unwrap();
    assert_eq!(st.counters.tx_dropped(), 0);
}

/// A: a frontend that pushes the first slots of a packet, then (later) the rest, and
/// notifies only when the ring asks: netback asked for exactly the slot after what it
/// saw, so the push of the rest notifies, wakes the vif, and the packet is sent.
#[test]
fn the_rest_of_a_packet_wakes_the_vif_by_its_event_channel() {
    let bad = VifId::new(DomId(2), 0);
    let rig = Rig::new(&[bad]);
    let mut wire = rig.nb.wire(bad);
    let mut h = RawFrontend::new(&rig.host, bad).unwrap();
    assert_eq!(h.connect(&RawConnect::default()), XenbusState::Connected);
    let g = h.data_gref(0);
    h.push(&[req(g, 300, NetTxFlags::MORE_DATA, 1)], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.tx_req_event() != 2 {
        assert!(Instant::now() < deadline, "netback never looked");
        std::thread::sleep(Duration::from_millis(1));
    }
    rig.assert_idle("first slot only");
    // Half the timeout later, the rest, notified only because the ring asks for it.
    rig.advance(INCOMPLETE_TIMEOUT_NS / 2);
    assert_eq!(
        h.push(&[req(g, 100, NetTxFlags::empty(), 2)], false),
        Some(true),
        "netback did not ask to be notified of the rest"
    );
    assert_eq!(
        h.responses(2, Duration::from_secs(10)),
        vec![(1, NETIF_RSP_OKAY), (2, NETIF_RSP_OKAY)]
    );
    let got = recv_n(&mut wire, 1, Duration::from_secs(10));
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![300]);
    // Well past the timeout of the packet that was completed: nothing is failed.
    rig.advance(INCOMPLETE_TIMEOUT_NS);
    rig.assert_idle("after the packet");
    assert_eq!(h.be_state(), XenbusState::Connected, "{}", h.error());
}

/// B: frames for a vif whose frontend is not connected — before it ever connects,
/// after it disconnects, after netback failed it — cost no CPU; a frontend that
/// connects gets the frames queued meanwhile and every later one (the port re-armed).
#[test]
fn frames_for_a_vif_without_a_frontend_cost_no_cpu() {
    let late = VifId::new(DomId(3), 0);
    let bad = VifId::new(DomId(2), 0);
    let mut rig = Rig::new(&[late, bad]);
    let mut late_wire = rig.nb.wire(late);
    let mut bad_wire = rig.nb.wire(bad);
    // Probed, no frontend yet.
    for s in 0..10 {
        send_all(&mut late_wire, &frame(s, 200));
    }
    rig.assert_idle("before the frontend connects");
    rig.honest_roundtrip();
    // The frontend connects: the queued frames, then new ones.
    let mut guest = Guest::start(&rig.host, DomId(3), NetfrontConfig::new(0)).unwrap();
    rig.nb
        .wait_connected(&[late], Duration::from_secs(10))
        .unwrap();
    for s in 10..20 {
        send_all(&mut late_wire, &frame(s, 200));
    }
    let got = recv_n(&mut guest.app, 20, Duration::from_secs(10));
    let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
    // The frontend disconnects (closes its device), frames keep coming.
    let mut h = RawFrontend::new(&rig.host, bad).unwrap();
    assert_eq!(h.connect(&RawConnect::default()), XenbusState::Connected);
    h.close();
    for s in 0..10 {
        send_all(&mut bad_wire, &frame(s, 200));
    }
    rig.assert_idle("after a disconnect");
    // A frontend netback fails (a slot crossing its page), frames keep coming.
    assert_eq!(h.connect(&RawConnect::default()), XenbusState::Connected);
    h.push(&[req(h.data_gref(0), 200, NetTxFlags::empty(), 1)], true);
    let crossing = tx_req(h.data_gref(0), 4000, 200, NetTxFlags::empty(), 2);
    h.push(&[crossing], true);
    wait_be(&h, XenbusState::Closing);
    assert!(h.error().contains("crosses its page"), "{}", h.error());
    for s in 10..20 {
        send_all(&mut bad_wire, &frame(s, 200));
    }
    rig.assert_idle("after a failure");
    rig.honest_roundtrip();
    // The late vif was served throughout.
    send_all(&mut late_wire, &frame(99, 200));
    let got = recv_n(&mut guest.app, 1, Duration::from_secs(10));
    assert_eq!(check_frame(&got[0]), 99);
    drop(guest);
}

// The drop allowance stays a small multiple of a busy vif's packet rate: unpaced, a
// debug build answers ~180 000 requests a second here.
const _: () = assert!(DROP_ANSWERS_PER_SEC <= 20_000);

/// A frontend that ignores its credits and floods valid requests under policy `drop`:
/// netback answers at most `DROP_ANSWERS_PER_SEC` of them with `NETIF_RSP_DROPPED` a
/// second (each costs it a parse and a response); past that the requests wait on the
/// ring. What it admits stays within the budget; the honest guest is served.
#[test]
fn a_flood_past_the_budget_gets_a_bounded_number_of_drop_answers() {
    let bad = VifId::new(DomId(2), 0);
    let mut rig = Rig::new(&[bad]);
    let mut wire = rig.nb.wire(bad);
    let mut h = RawFrontend::new(&rig.host, bad).unwrap();
    assert_eq!(h.connect(&RawConnect::default()), XenbusState::Connected);
    const PPS: u64 = 1000;
    let budget = shared_ring::credit::Credits {
        bytes: shared_ring::Limit::Unlimited,
        packets: shared_ring::Limit::rate(PPS, 10),
        period_us: 100_000,
    };
    rig.nb
        .call(
            move |nb| nb.set_tx_budget(bad, &budget),
            Duration::from_secs(10),
        )
        .unwrap();
    let g = h.data_gref(0);
    let (mut okay, mut dropped, mut pushed) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        if h.push(&[req(g, 100, NetTxFlags::empty(), 1)], true)
            .is_some()
        {
            pushed += 1;
        }
        for (_, status) in h.take_responses() {
            match status {
                NETIF_RSP_OKAY => okay += 1,
                _ => dropped += 1,
            }
        }
        while let Ok(Some(_)) = wire.recv(&mut [0u8; 2048]) {}
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("{pushed} pushed in {secs:.2} s: {okay} admitted, {dropped} answered dropped");
    assert!(pushed > 2_000, "the flood did not flood: {pushed}");
    let allowance = DROP_ANSWERS_PER_SEC as f64 * secs * 1.05 + 256.0;
    assert!(
        (dropped as f64) <= allowance,
        "{dropped} drop answers in {secs:.2} s (allowance {allowance:.0})"
    );
    // The backstop: the rate plus twice the burst, at least 64 packets.
    assert!(
        (okay as f64) <= PPS as f64 * secs * 1.05 + 64.0,
        "{okay} admitted"
    );
    assert_eq!(h.be_state(), XenbusState::Connected);
    rig.honest_roundtrip();
}
