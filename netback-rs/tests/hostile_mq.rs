//! Multi-queue vifs as the attacker sees them (issue 14): a frontend written from
//! `netif.h` alone ([`RawFrontend`] with `queues` > 1, no netfront, no credits) against a
//! running netback-rs offering 4 queues over 2 workers, beside a well-behaved guest.
//!
//! - Each raw queue carries frames both ways on its own queue, with split and with
//!   shared event channels (`a_raw_four_queue_guest_carries_frames_on_each_queue`).
//! - Flooding all 4 queues while ignoring credits gets, in total, no more than the
//!   vif's budget × time plus one backstop burst; a 1-queue guest flooding beside it
//!   with the same budget gets the same share; the neighbour's frames pass both ways.
//!   Past the budget under policy `drop`, the 4 queues together get one vif's drop
//!   answers a second, not four.
//! - Bad input fails only the vif concerned, with the reason in its `error` node, and
//!   leaves nothing mapped or bound: one event-channel port named by two queues (or
//!   twice in a split queue), a grant reference shared across queues, a ring no grant
//!   backs, keys rewritten under a connected vif, an impossible producer index on
//!   queue 3's TX or RX ring, an event-channel storm on every queue's channels, and a
//!   queue left without RX buffers while frames come for it.
//!   200 refusals, each followed by an honest 4-queue connection, leave no port, grant,
//!   mapping, descriptor or thread behind and the heap as it was.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hypervisor::xenbus::XenbusState;
use netback::vif::{BACKSTOP_MIN_PACKETS, DROP_ANSWERS_PER_SEC};
use netback::{LoopStats, NetbackConfig};
use netport::{MemPort, MemPortConfig};
use shared_ring::credit::Credits;
use shared_ring::netif::{NetTxFlags, NETIF_RSP_OKAY};
use shared_ring::ring::layout;
use shared_ring::Limit;
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

const QUEUES: u32 = 4;

/// netback offering [`QUEUES`] queues over 2 workers with `budget` as every vif's
/// first budget, a well-behaved guest (domain 1) connected and the vifs of `raw`
/// created. One rig at a time in this process.
struct Rig {
    host: LocalHost,
    nb: BackendThread,
    guest: Guest,
    wire: MemPort,
    seq: u32,
    /// The tests of this file run one at a time: they count the process's threads and
    /// descriptors. Dropped last.
    _one: MutexGuard<'static, ()>,
}

impl Rig {
    fn new(raw: &[VifId], budget: Option<Credits>) -> Rig {
        static ONE: Mutex<()> = Mutex::new(());
        let one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let mut cfg = NetbackConfig {
            workers: 2,
            max_queues: Some(QUEUES),
            ..NetbackConfig::default()
        };
        if let Some(b) = budget {
            cfg.initial_budget = b;
        }
        let ports = MemPortConfig::new(256, 65536);
        let opts = BackendOptions::default();
        let HonestNeighbour {
            host,
            nb,
            guest,
            wire,
        } = HonestNeighbour::start(raw, cfg, ports, opts).unwrap();
        Rig {
            host,
            nb,
            guest,
            wire,
            seq: 0,
            _one: one,
        }
    }

    /// The neighbour sends 20 frames and receives 20: all delivered, in order, intact.
    fn neighbour_roundtrip(&mut self) {
        let base = self.seq;
        self.seq += 20;
        for s in 0..20 {
            send_all(&mut self.guest.app, &frame(base + s, 300));
        }
        let got = recv_n(&mut self.wire, 20, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        assert_eq!(seqs, (base..base + 20).collect::<Vec<_>>(), "neighbour TX");
        for s in 0..20 {
            send_all(&mut self.wire, &frame(base + s, 400));
        }
        let got = recv_n(&mut self.guest.app, 20, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        assert_eq!(seqs, (base..base + 20).collect::<Vec<_>>(), "neighbour RX");
        let st = self.nb.vif_status(HONEST).unwrap();
        assert!(st.connected, "{st:?}");
    }

    /// netback's wire ends of vif `id`'s queues: queue 0's (the device's port, taken
    /// once per vif: `q0`), and those netback opened for queues 1.. when the frontend
    /// connected.
    fn wires(&self, id: VifId, q0: MemPort) -> Vec<MemPort> {
        std::iter::once(q0)
            .chain((1..QUEUES).map(|k| self.nb.wire_queue(id, k)))
            .collect()
    }

    /// What a leak would grow: ports bound or unbound on the host, grants in use,
    /// mappings of the attacker's memory, this process's descriptors.
    fn usage(&self, attacker: DomId) -> [usize; 4] {
        let s = self.host.hypervisor.stats();
        let tag = format!("/memfd:grant-dom{}-", attacker.0);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        [
            s.ports,
            s.grants,
            maps.lines().filter(|l| l.contains(&tag)).count(),
            xen_local::open_fd_count().unwrap(),
        ]
    }

    /// netback's loop counters (every worker's) and CPU time (every thread's).
    fn sample(&self) -> (LoopStats, u64) {
        self.nb.loop_sample().unwrap()
    }
}

/// The attacker's vif.
const BAD: VifId = VifId::new(DomId(2), 0);

/// The attacker ([`BAD`]) beside the neighbour, connected with `how`: the rig, its
/// frontend, and netback's ports of its queues.
fn attacker(how: &RawConnect, budget: Option<Credits>) -> (Rig, RawFrontend, Vec<MemPort>) {
    let rig = Rig::new(&[BAD], budget);
    let q0 = rig.nb.wire(BAD);
    let mut raw = RawFrontend::new(&rig.host, BAD).unwrap();
    assert_eq!(raw.connect(how), XenbusState::Connected, "{}", raw.error());
    let wires = rig.wires(BAD, q0);
    (rig, raw, wires)
}

/// Queue `q` sends `n` frames of `len` bytes (sequence `base + i`) from its data page,
/// notifying as the ring asks; all are answered OKAY.
fn raw_send(raw: &mut RawFrontend, q: usize, base: u32, n: u32, len: u16) {
    // The payloads: one frame per 2 KiB of the data pages.
    assert!(n <= 2, "two frames per data page");
    let g = raw.queue(q).data_gref(0);
    let mut slots = Vec::new();
    for i in 0..n {
        let f = frame(base + i, len as usize);
        raw.queue(q).write_data(0, 2048 * i as usize, &f);
        slots.push(tx_req(
            g,
            2048 * i as u16,
            len,
            NetTxFlags::empty(),
            i as u16,
        ));
    }
    for s in &slots {
        raw.push_on(q, std::slice::from_ref(s), false)
            .expect("room on the ring");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n as usize && Instant::now() < deadline {
        got.extend(raw.queue_mut(q).take_responses());
        std::thread::sleep(Duration::from_micros(200));
    }
    let want: Vec<(u16, i16)> = (0..n as u16).map(|i| (i, NETIF_RSP_OKAY)).collect();
    assert_eq!(got, want, "queue {q}: TX responses");
}

/// Queue `q` posts `n` buffers, netback's port `wire` sends `n` frames: each comes
/// back intact on that queue's RX ring.
fn raw_receive(raw: &mut RawFrontend, q: usize, wire: &mut MemPort, base: u32, n: u32) {
    assert!(n as usize <= testbed::raw::RX_PAGES, "one page per buffer");
    assert_eq!(raw.post_rx_on(q, n as usize), n as usize);
    for i in 0..n {
        send_all(wire, &frame(base + i, 250 + 10 * q));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n as usize && Instant::now() < deadline {
        got.extend(raw.queue_mut(q).take_rx_frames());
        std::thread::sleep(Duration::from_micros(200));
    }
    let seqs: Vec<u32> = got
        .iter()
        .map(|f| {
            let f = f
                .as_ref()
                .unwrap_or_else(|s| panic!("queue {q}: status {s}"));
            assert_eq!(f.len(), 250 + 10 * q, "queue {q}: frame length");
            check_frame(f)
        })
        .collect();
    assert_eq!(seqs, (base..base + n).collect::<Vec<_>>(), "queue {q}: RX");
}

/// Every queue of `raw` carries 2 frames out (each on its own port of `wires`) and
/// 4 frames in (each on its own RX ring).
fn each_queue_both_ways(raw: &mut RawFrontend, wires: &mut [MemPort], base: u32) {
    for (q, w) in wires.iter_mut().enumerate() {
        let b = base + 100 * q as u32;
        raw_send(raw, q, b, 2, 200 + 20 * q as u16);
        let got = recv_n(w, 2, Duration::from_secs(10));
        let seqs: Vec<u32> = got.iter().map(|f| check_frame(f)).collect();
        assert_eq!(seqs, vec![b, b + 1], "queue {q}: frames on its own port");
        raw_receive(raw, q, w, b + 50, 4);
    }
    // Nothing crossed to another queue's port.
    for (q, w) in wires.iter_mut().enumerate() {
        assert!(
            recv_n(w, 1, Duration::from_millis(20)).is_empty(),
            "queue {q}'s port got another queue's frame"
        );
    }
}

#[test]
fn a_raw_four_queue_guest_carries_frames_on_each_queue() {
    let bad = BAD;
    let mut rig = Rig::new(&[bad], None);
    let mut q0 = rig.nb.wire(bad);
    let mut raw = RawFrontend::new(&rig.host, bad).unwrap();
    for (round, split) in [false, true, false].into_iter().enumerate() {
        let how = RawConnect {
            split,
            ..RawConnect::queues(QUEUES)
        };
        assert_eq!(raw.connect(&how), XenbusState::Connected, "{}", raw.error());
        assert_eq!(raw.num_queues(), QUEUES as usize);
        assert_eq!(raw.queue(3).is_split(), split);
        let mut wires = rig.wires(bad, q0);
        each_queue_both_ways(&mut raw, &mut wires, 1000 * round as u32);
        rig.neighbour_roundtrip();
        raw.close();
        q0 = wires.swap_remove(0);
    }
    // The one-queue API is queue 0 of a one-queue connection, as before (the count
    // the 4-queue connections wrote goes, as a one-queue frontend writes none).
    raw.remove("multi-queue-num-queues");
    assert_eq!(
        raw.connect(&RawConnect::default()),
        XenbusState::Connected,
        "{}",
        raw.error()
    );
    assert_eq!(raw.num_queues(), 1);
    each_queue_both_ways(&mut raw, std::slice::from_mut(&mut q0), 5000);
    let st = rig.nb.vif_status(bad).unwrap();
    assert!(st.connected);
    assert_eq!(st.counters.tx_dropped(), 0, "{:?}", st.counters);
}

/// The flood tests' budget: 2000 packets/s, a burst of 50, bytes unlimited.
const PPS: u64 = 2000;
const BURST: u64 = 50;

fn budget() -> Credits {
    Credits {
        bytes: Limit::Unlimited,
        packets: Limit::rate(PPS, BURST),
        period_us: 0,
    }
}

/// The backstop's burst: twice the budget's, at least [`BACKSTOP_MIN_PACKETS`].
fn backstop_burst() -> u64 {
    (2 * BURST).max(BACKSTOP_MIN_PACKETS)
}

/// What a guest may get through in `t`: the budget's rate × `t` plus one backstop burst.
fn bound(t: Duration) -> u64 {
    PPS * t.as_millis() as u64 / 1000 + backstop_burst()
}

/// Keeps every TX ring of `raw` full of 60-byte requests until `end`, ignoring every
/// credit (there is no credit area), notifying as the rings ask; the OKAY answers it
/// got, per queue.
fn flood_all(raw: &mut RawFrontend, end: Instant) -> Vec<u64> {
    let mut okay = vec![0u64; raw.num_queues()];
    let mut id = 0u16;
    while Instant::now() < end {
        let mut pushed = 0;
        for (q, okay) in okay.iter_mut().enumerate() {
            let answers = raw.queue_mut(q).take_responses();
            *okay += answers.iter().filter(|a| a.1 == NETIF_RSP_OKAY).count() as u64;
            let free = raw.queue(q).tx_free() as usize;
            if free == 0 {
                continue;
            }
            let g = raw.queue(q).data_gref(0);
            let slots: Vec<TxSlot> = (0..free)
                .map(|i| tx_req(g, 0, 60, NetTxFlags::empty(), id.wrapping_add(i as u16)))
                .collect();
            id = id.wrapping_add(free as u16);
            raw.push_on(q, &slots, false).expect("free slots");
            pushed += free;
        }
        if pushed == 0 {
            // Every ring full: the attacker has nothing more to add until netback answers.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    okay
}

/// Counts the frames reaching each of `wires` until `until`.
fn count_all<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    wires: &'s mut [MemPort],
    until: Instant,
) -> Vec<std::thread::ScopedJoinHandle<'s, u64>> {
    wires
        .iter_mut()
        .map(|w| s.spawn(move || count_until(w, until).0))
        .collect()
}

#[test]
fn a_raw_four_queue_flood_gets_one_budget_and_one_burst_in_total() {
    let (mut rig, mut raw, mut wires) = attacker(&RawConnect::queues(QUEUES), Some(budget()));
    let flood_for = Duration::from_millis(800);
    let t0 = Instant::now();
    let until = t0 + flood_for + Duration::from_millis(300);
    let (per_queue, okay) = std::thread::scope(|s| {
        let counters = count_all(s, &mut wires, until);
        let raw = &mut raw;
        let flood = s.spawn(move || flood_all(raw, t0 + flood_for));
        // The neighbour's frames pass both ways during the flood.
        rig.neighbour_roundtrip();
        let okay = flood.join().unwrap();
        let per_queue: Vec<u64> = counters.into_iter().map(|h| h.join().unwrap()).collect();
        (per_queue, okay)
    });
    let t = t0.elapsed();
    let total: u64 = per_queue.iter().sum();
    eprintln!(
        "4 queues flooded {flood_for:?} (counted {t:?}): {per_queue:?} = {total}, \
         OKAY answers {okay:?} (bound {})",
        bound(t)
    );
    assert!(
        total <= bound(t),
        "{total} > rate × t + one backstop burst = {}",
        bound(t)
    );
    assert!(
        okay.iter().sum::<u64>() <= bound(t),
        "OKAY answers {okay:?}"
    );
    // The budget is served (half of it at least, for a loaded machine), on every queue.
    let floor = PPS * flood_for.as_millis() as u64 / 2000;
    assert!(total >= floor, "{total} < {floor}");
    // One budget, shared fairly by the queues (each polled alone on its worker, the
    // held ones in round robin): none gets less than a quarter of an equal share. (When
    // an event on any queue polled all of them, queue 0 first, the split was
    // 1 650 / 60 / 10 / 8.)
    let fair = total / per_queue.len() as u64;
    assert!(
        per_queue.iter().all(|&n| n >= fair / 4),
        "{per_queue:?}: a queue got less than a quarter of {fair}"
    );
    // The status catches up with what the ports counted (workers publish after polls).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut st = rig.nb.vif_status(BAD).unwrap();
    while st.counters.tx_packets != total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        st = rig.nb.vif_status(BAD).unwrap();
    }
    assert!(st.connected, "{}", raw.error());
    assert_eq!(st.counters.tx_packets, total, "{:?}", st.counters);
    rig.neighbour_roundtrip();
}

#[test]
fn one_queue_and_four_queue_raw_floods_get_the_same_share() {
    let four = BAD;
    let one = VifId::new(DomId(3), 0);
    let mut rig = Rig::new(&[four, one], Some(budget()));
    let q0 = rig.nb.wire(four);
    let mut one_wire = [rig.nb.wire(one)];
    let mut raw4 = RawFrontend::new(&rig.host, four).unwrap();
    let mut raw1 = RawFrontend::new(&rig.host, one).unwrap();
    assert_eq!(
        raw4.connect(&RawConnect::queues(QUEUES)),
        XenbusState::Connected
    );
    assert_eq!(raw1.connect(&RawConnect::default()), XenbusState::Connected);
    let mut wires = rig.wires(four, q0);
    let flood_for = Duration::from_millis(1000);
    let t0 = Instant::now();
    let until = t0 + flood_for + Duration::from_millis(300);
    let (got4, got1) = std::thread::scope(|s| {
        let c4 = count_all(s, &mut wires, until);
        let c1 = count_all(s, &mut one_wire, until);
        let (r4, r1) = (&mut raw4, &mut raw1);
        let f4 = s.spawn(move || flood_all(r4, t0 + flood_for));
        let f1 = s.spawn(move || flood_all(r1, t0 + flood_for));
        rig.neighbour_roundtrip();
        f4.join().unwrap();
        f1.join().unwrap();
        let sum = |c: Vec<std::thread::ScopedJoinHandle<'_, u64>>| -> u64 {
            c.into_iter().map(|h| h.join().unwrap()).sum()
        };
        (sum(c4), sum(c1))
    });
    let t = t0.elapsed();
    eprintln!(
        "flooding {flood_for:?} at once: 4 queues {got4}, 1 queue {got1} (bound {})",
        bound(t)
    );
    for (what, got) in [("4 queues", got4), ("1 queue", got1)] {
        assert!(got <= bound(t), "{what}: {got} > {}", bound(t));
        let floor = PPS * flood_for.as_millis() as u64 / 2000;
        assert!(got >= floor, "{what}: {got} < {floor}");
    }
    // The same budget, the same share: within one backstop burst of each other.
    assert!(
        got4.abs_diff(got1) <= backstop_burst(),
        "4 queues {got4}, 1 queue {got1}: more than a burst ({}) apart",
        backstop_burst()
    );
    rig.neighbour_roundtrip();
}

/// What the attacker does after [`RawFrontend::prepare`] (rewrites or removes keys,
/// from what its queues hold); returns what the `error` node must say.
type Tamper<'a> = &'a dyn Fn(&RawFrontend) -> Vec<String>;

/// A named bad key set: what the attacker connects with, and its [`Tamper`].
type Case = (&'static str, RawConnect, fn(&RawFrontend) -> Vec<String>);

/// The attacker prepares `how`, tampers, announces: netback refuses (Closing) with
/// every expected part in the `error` node, and holds nothing of the attacker's (no
/// mapping of its memory, no bound port, no descriptor more than before the announce).
fn refused(rig: &Rig, raw: &mut RawFrontend, what: &str, how: &RawConnect, tamper: Tamper) {
    raw.prepare(how);
    let want = tamper(raw);
    let before = rig.usage(DomId(2));
    assert_eq!(raw.announce(), XenbusState::Closing, "{what}: not refused");
    let err = raw.error();
    eprintln!("{what}: {err}");
    for w in &want {
        assert!(err.contains(w.as_str()), "{what}: {err:?} lacks {w:?}");
    }
    // netback released what it had mapped or bound before it found the fault. (The
    // ports of queues it connected before the faulty one were opened and closed again;
    // their wire ends are the harness's, dropped here.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = rig.usage(DomId(2));
    while after != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        for k in 1..QUEUES {
            drop(rig.nb.try_wire_queue(BAD, k));
        }
        after = rig.usage(DomId(2));
    }
    assert_eq!(
        after, before,
        "{what}: [ports, grants, mappings, fds] after the refusal"
    );
    raw.close();
}

fn port(raw: &RawFrontend, q: usize, rx: bool) -> String {
    let (t, r) = raw.queue(q).ports();
    if rx { r } else { t }.0.to_string()
}

fn split4() -> RawConnect {
    RawConnect {
        split: true,
        ..RawConnect::queues(QUEUES)
    }
}

#[test]
fn bad_queue_keys_fail_only_their_vif_and_leave_nothing_bound_or_mapped() {
    let bad = BAD;
    let mut rig = Rig::new(&[bad], None);
    let mut raw = RawFrontend::new(&rig.host, bad).unwrap();
    let cases: Vec<Case> = vec![
        (
            "one port for queue 3's RX and queue 1's TX",
            split4(),
            |r| {
                let p = port(r, 1, false);
                r.write("queue-3/event-channel-rx", &p);
                vec![
                    format!("queue 3 event-channel-rx {p}"),
                    "queue 1's event-channel-tx".into(),
                ]
            },
        ),
        (
            "one port for two unsplit queues",
            RawConnect::queues(QUEUES),
            |r| {
                let p = port(r, 0, false);
                r.write("queue-2/event-channel", &p);
                vec![format!(
                    "queue 2 event-channel {p} is also queue 0's event-channel"
                )]
            },
        ),
        ("one port for both rings of a split queue", split4(), |r| {
            let p = port(r, 1, false);
            r.write("queue-1/event-channel-rx", &p);
            vec![format!(
                "queue 1 event-channel-rx {p} is also queue 1's event-channel-tx"
            )]
        }),
        ("queue 3's RX ring on queue 1's TX page", split4(), |r| {
            let g = r.queue(1).tx_gref().to_string();
            r.write("queue-3/rx-ring-ref", &g);
            vec![format!(
                "queue 3 rx-ring-ref {g} is also queue 1's tx-ring-ref"
            )]
        }),
        (
            "queue 2's TX ring on queue 0's RX page",
            RawConnect::queues(QUEUES),
            |r| {
                let g = r.queue(0).rx_gref().to_string();
                r.write("queue-2/tx-ring-ref", &g);
                vec![format!(
                    "queue 2 tx-ring-ref {g} is also queue 0's rx-ring-ref"
                )]
            },
        ),
        ("queue 3's TX ring on a page never granted", split4(), |r| {
            r.write("queue-3/tx-ring-ref", "60000");
            vec!["queue 3: map tx-ring-ref 60000".into()]
        }),
        (
            "queue 3's TX ring on a read-only data page",
            split4(),
            |r| {
                let g = r.queue(3).data_gref(0).to_string();
                r.write("queue-3/tx-ring-ref", &g);
                vec![format!("queue 3: map tx-ring-ref {g}"), "read-only".into()]
            },
        ),
        (
            "queue 2 names a port it never allocated",
            RawConnect::queues(QUEUES),
            |r| {
                r.write("queue-2/event-channel", "4000");
                vec!["queue 2: bind event-channel 4000".into()]
            },
        ),
        (
            "queue 3 names a port offered to another domain",
            split4(),
            |r| {
                use hypervisor::evtchn::EventChannels;
                let p = r.platform().evtchn.alloc_unbound(DomId(7)).unwrap().0;
                r.write("queue-3/event-channel-rx", &p.to_string());
                vec![format!("queue 3: bind event-channel {p}")]
            },
        ),
        (
            "queue 2's directory removed",
            RawConnect::queues(QUEUES),
            |r| {
                r.remove("queue-2");
                vec!["queue-2/tx-ring-ref".into()]
            },
        ),
        (
            "queue 1's tx-ring-ref empty",
            RawConnect::queues(QUEUES),
            |r| {
                r.write("queue-1/tx-ring-ref", "");
                vec!["queue-1/tx-ring-ref: invalid value \"\"".into()]
            },
        ),
    ];
    for (what, how, tamper) in cases {
        refused(&rig, &mut raw, what, &how, &tamper);
        rig.neighbour_roundtrip();
    }
    // Counts a C `%u` would read as 4, or 0, past the offer, or none.
    let counts = [
        ("4 ", "multi-queue-num-queues: invalid value \"4 \""),
        ("0x2", "multi-queue-num-queues: invalid value \"0x2\""),
        (
            "18446744073709551616",
            "multi-queue-num-queues: invalid value",
        ),
        (
            "4294967298",
            "multi-queue-num-queues 4294967298: more queues than the 4 offered",
        ),
        (
            "5",
            "multi-queue-num-queues 5: more queues than the 4 offered",
        ),
        ("0", "multi-queue-num-queues is 0"),
    ];
    for (count, want) in counts {
        let tamper = |r: &RawFrontend| {
            r.write("multi-queue-num-queues", count);
            vec![want.to_string()]
        };
        refused(&rig, &mut raw, count, &RawConnect::queues(QUEUES), &tamper);
    }
    // Honest keys again: the attacker's vif is served on all 4 queues.
    let q0 = rig.nb.wire(bad);
    assert_eq!(
        raw.connect(&split4()),
        XenbusState::Connected,
        "{}",
        raw.error()
    );
    let mut wires = rig.wires(bad, q0);
    each_queue_both_ways(&mut raw, &mut wires, 0);
    rig.neighbour_roundtrip();
}

#[test]
fn queue_keys_rewritten_under_a_connected_vif_change_nothing_until_a_new_handshake() {
    let (mut rig, mut raw, mut wires) = attacker(&split4(), None);
    each_queue_both_ways(&mut raw, &mut wires, 0);
    let usage = rig.usage(DomId(2));
    // The attacker rewrites its queue keys: queue 1's TX ring onto queue 0's, queue 2's
    // channels onto queue 0's port, queue 3 removed, a count past the offer; then says
    // Connected again (a state netback already follows) and Initialised.
    let g0 = raw.queue(0).tx_gref().to_string();
    let p0 = port(&raw, 0, false);
    raw.write("queue-1/tx-ring-ref", &g0);
    raw.write("queue-2/event-channel-tx", &p0);
    raw.write("queue-2/event-channel-rx", &p0);
    raw.remove("queue-3");
    raw.write("multi-queue-num-queues", "9");
    raw.write("state", "4");
    raw.write("state", "3");
    raw.write("state", "4");
    std::thread::sleep(Duration::from_millis(200));
    // netback read the keys once, when the vif connected: the rings it mapped then
    // still carry every queue's frames, nothing was mapped or bound anew.
    assert_eq!(raw.be_state(), XenbusState::Connected, "{}", raw.error());
    assert_eq!(raw.error(), "");
    each_queue_both_ways(&mut raw, &mut wires, 1000);
    assert_eq!(rig.usage(DomId(2)), usage, "[ports, grants, mappings, fds]");
    rig.neighbour_roundtrip();
    // A new handshake (on the keys as they are now) reads them: refused, the reason
    // named — the count, and once that is honest again, the queue removed.
    let rehandshake = |raw: &mut RawFrontend, want: &str| {
        raw.write("state", "1");
        let answer = raw.wait_be(&[XenbusState::InitWait], Duration::from_secs(10));
        assert_eq!(answer, Some(XenbusState::InitWait));
        assert_eq!(raw.announce(), XenbusState::Closing);
        let err = raw.error();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    };
    rehandshake(
        &mut raw,
        "multi-queue-num-queues 9: more queues than the 4 offered",
    );
    raw.write("multi-queue-num-queues", "4");
    rehandshake(&mut raw, "queue-3/tx-ring-ref");
    rig.neighbour_roundtrip();
    raw.close();
    let st = rig.nb.vif_status(VifId::new(DomId(1), 0)).unwrap();
    assert_eq!(st.counters.tx_dropped(), 0);
}

/// Queue 3's `ring` (TX or RX) gets an impossible request producer; the attacker then
/// notifies queue 3 (and sends on queue 0): the vif fails, naming queue 3 and the index,
/// and the neighbour is served throughout.
fn kill_queue_3(rx: bool) {
    let (mut rig, mut raw, mut wires) = attacker(&split4(), None);
    each_queue_both_ways(&mut raw, &mut wires, 0);
    let mem = if rx {
        raw.queue(3).rx_ring_mem()
    } else {
        raw.queue(3).tx_ring_mem()
    };
    mem.store(layout::REQ_PROD, 100_000);
    raw.notify_queue(3);
    // A frame toward queue 3 makes netback look at its RX ring.
    send_all(&mut wires[3], &frame(7, 100));
    assert_eq!(
        raw.wait_be(&[XenbusState::Closing], Duration::from_secs(10)),
        Some(XenbusState::Closing),
        "the ring is broken and the vif still connected"
    );
    let err = raw.error();
    eprintln!("{}: {err}", if rx { "RX" } else { "TX" });
    let ring = if rx { "RX ring" } else { "TX ring" };
    assert!(
        err.contains(&format!("queue 3: {ring}")) && err.contains("100000"),
        "{err}"
    );
    rig.neighbour_roundtrip();
    raw.close();
    // Its rings released, the attacker connects again and is served.
    let usage = rig.usage(DomId(2));
    assert_eq!(
        raw.connect(&split4()),
        XenbusState::Connected,
        "{}",
        raw.error()
    );
    let q0 = wires.swap_remove(0);
    drop(wires);
    let mut wires = rig.wires(BAD, q0);
    each_queue_both_ways(&mut raw, &mut wires, 100);
    raw.close();
    assert!(
        rig.usage(DomId(2))[2] <= usage[2],
        "mappings of the attacker's memory"
    );
    rig.neighbour_roundtrip();
}

#[test]
fn an_impossible_tx_producer_on_queue_3_fails_only_its_vif() {
    kill_queue_3(false);
}

#[test]
fn an_impossible_rx_producer_on_queue_3_fails_only_its_vif() {
    kill_queue_3(true);
}

/// The storm's window.
const WINDOW: Duration = Duration::from_secs(2);

#[test]
fn an_event_storm_on_every_queue_costs_bounded_cpu_and_loses_no_work() {
    let (mut rig, mut raw, mut wires) = attacker(&split4(), None);
    let stop = AtomicBool::new(false);
    let (s0, cpu0) = rig.sample();
    let notified = std::thread::scope(|s| {
        let raw = &raw;
        let stop = &stop;
        let storm = s.spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Every queue's TX and RX channel, nothing published.
                for q in 0..QUEUES as usize {
                    raw.notify_queue(q);
                }
                n += 8;
            }
            n
        });
        std::thread::sleep(WINDOW);
        stop.store(true, Ordering::Relaxed);
        storm.join().unwrap()
    });
    let (s1, cpu1) = rig.sample();
    let polls = s1.vif_polls - s0.vif_polls;
    let cpu = cpu1 - cpu0;
    eprintln!(
        "{notified} notifications on 8 ports in {WINDOW:?}: {polls} vif polls, {} events, \
         {} loop iterations, netback CPU {} ms",
        s1.events - s0.events,
        s1.iterations - s0.iterations,
        cpu / 1_000_000
    );
    assert!(notified > 20_000, "the storm did not storm: {notified}");
    // Per port: one free event, then delays of 1, 2, … 512 ms, then one a second
    // (about 13 in the window, doubled by the unmask polls): 8 ports, 40 each.
    assert!(
        polls <= 8 * 40,
        "{polls} polls for {notified} spurious notifications"
    );
    assert!(
        cpu * 20 <= WINDOW.as_nanos() as u64,
        "netback used {cpu} ns of CPU in the {WINDOW:?} storm"
    );
    // The stormed queues' real work is still taken (within the longest delay), and
    // the neighbour was never disturbed.
    each_queue_both_ways(&mut raw, &mut wires, 0);
    assert_eq!(raw.be_state(), XenbusState::Connected);
    rig.neighbour_roundtrip();
    raw.close();
}

/// One of four bad 4-queue key sets in turn (a port named twice, a grant named twice,
/// queue 3's ring never granted, queue 2's port never allocated): refused; then honest
/// keys, one frame out on every queue, closed.
fn refusal_cycle(raw: &mut RawFrontend, q0: MemPort, rig: &Rig, i: u32) -> MemPort {
    let bad: [fn(&RawFrontend); 4] = [
        |r| r.write("queue-3/event-channel-rx", &port(r, 1, false)),
        |r| r.write("queue-2/tx-ring-ref", &r.queue(0).rx_gref().to_string()),
        |r| r.write("queue-3/tx-ring-ref", "60000"),
        |r| r.write("queue-2/event-channel-tx", "4000"),
    ];
    raw.prepare(&split4());
    bad[i as usize % bad.len()](raw);
    assert_eq!(raw.announce(), XenbusState::Closing, "cycle {i}");
    raw.close();
    assert_eq!(raw.connect(&split4()), XenbusState::Connected, "cycle {i}");
    let mut wires = rig.wires(BAD, q0);
    for (q, w) in wires.iter_mut().enumerate() {
        let g = raw.queue(q).data_gref(0);
        raw.push_on(q, &[tx_req(g, 0, 60, NetTxFlags::empty(), 1)], true)
            .expect("room on the ring");
        assert_eq!(
            recv_n(w, 1, Duration::from_secs(10)).len(),
            1,
            "cycle {i} queue {q}"
        );
    }
    raw.close();
    wires.swap_remove(0)
}

#[test]
fn two_hundred_multi_queue_refusals_leak_nothing() {
    let rig = Rig::new(&[BAD], None);
    let mut q0 = rig.nb.wire(BAD);
    let mut raw = RawFrontend::new(&rig.host, BAD).unwrap();
    // The other tests of this file wait for the rig on their own threads (libtest
    // names each after its test) and may start meanwhile.
    let threads = || {
        common::threads_except(&[
            "a_raw_four_queue_guest_carries_frames_on_each_queue",
            "a_raw_four_queue_flood_gets_one_budget_and_one_burst_in_total",
            "one_queue_and_four_queue_raw_floods_get_the_same_share",
            "bad_queue_keys_fail_only_their_vif_and_leave_nothing_bound_or_mapped",
            "queue_keys_rewritten_under_a_connected_vif_change_nothing_until_a_new_handshake",
            "an_impossible_tx_producer_on_queue_3_fails_only_its_vif",
            "an_impossible_rx_producer_on_queue_3_fails_only_its_vif",
            "an_event_storm_on_every_queue_costs_bounded_cpu_and_loses_no_work",
            "two_hundred_multi_queue_refusals_leak_nothing",
            "a_queue_left_without_rx_buffers_costs_no_cpu_and_holds_up_no_other_queue",
            "a_four_queue_flood_gets_one_vif_s_drop_answers_not_four",
        ])
    };
    for i in 0..8 {
        q0 = refusal_cycle(&mut raw, q0, &rig, i);
    }
    let (base, threads0, heap) = (rig.usage(BAD.domid), threads(), common::heap_in_use());
    for i in 8..208 {
        q0 = refusal_cycle(&mut raw, q0, &rig, i);
    }
    let (end, threads1, heap_end) = (rig.usage(BAD.domid), threads(), common::heap_in_use());
    eprintln!(
        "200 refusals + 200 4-queue connections: [ports, grants, mappings, fds] \
         {base:?} -> {end:?}, threads {threads0} -> {threads1}, heap {heap} -> {heap_end}"
    );
    assert_eq!(
        end, base,
        "[ports, grants, mappings of the attacker's memory, fds]"
    );
    assert!(threads1 <= threads0, "threads {threads0} -> {threads1}");
    assert!(heap_end < heap + (1 << 20), "heap {heap} -> {heap_end}");
}

#[test]
fn a_queue_left_without_rx_buffers_costs_no_cpu_and_holds_up_no_other_queue() {
    let mut rig = Rig::new(&[BAD], None);
    let q0 = rig.nb.wire(BAD);
    let mut raw = RawFrontend::new(&rig.host, BAD).unwrap();
    // It promises to notify when it posts RX buffers, so frames wait for them; it then
    // never posts any on queue 3 while frames keep coming for it.
    raw.write("feature-rx-notify", "1");
    assert_eq!(raw.connect(&split4()), XenbusState::Connected);
    let mut wires = rig.wires(BAD, q0);
    for s in 0..30 {
        send_all(&mut wires[3], &frame(s, 300));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (s0, cpu0) = rig.sample();
    std::thread::sleep(WINDOW);
    let (s1, cpu1) = rig.sample();
    let (polls, cpu) = (s1.vif_polls - s0.vif_polls, cpu1 - cpu0);
    eprintln!(
        "queue 3 without buffers for {WINDOW:?}: {polls} vif polls, {} loop iterations, \
         netback CPU {} ms",
        s1.iterations - s0.iterations,
        cpu / 1_000_000
    );
    assert!(polls <= 10, "a vif is polled in a loop: {polls}");
    assert!(
        cpu * 20 <= WINDOW.as_nanos() as u64,
        "netback used {cpu} ns of CPU in {WINDOW:?}"
    );
    // The vif's other queues receive, and send, meanwhile.
    for (q, w) in wires.iter_mut().enumerate().take(3) {
        raw_receive(&mut raw, q, w, 1000 * q as u32, 4);
        raw_send(&mut raw, q, 100 * q as u32, 2, 200);
        assert_eq!(recv_n(w, 2, Duration::from_secs(10)).len(), 2, "queue {q}");
    }
    rig.neighbour_roundtrip();
    // Buffers on queue 3 at last: the frames that waited come first, in order.
    assert_eq!(raw.post_rx_on(3, 4), 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < 4 && Instant::now() < deadline {
        got.extend(raw.queue_mut(3).take_rx_frames());
        std::thread::sleep(Duration::from_micros(200));
    }
    let seqs: Vec<u32> = got
        .iter()
        .map(|f| check_frame(f.as_ref().expect("a frame")))
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3], "queue 3's waiting frames");
    assert_eq!(raw.be_state(), XenbusState::Connected);
}

/// A 4-queue guest flooding past its budget under policy `drop`: netback answers
/// `NETIF_RSP_DROPPED` at most `DROP_ANSWERS_PER_SEC` times a second for the whole vif
/// (each costs it a parse and a response), not that many per queue.
#[test]
fn a_four_queue_flood_gets_one_vif_s_drop_answers_not_four() {
    let small = Credits {
        bytes: Limit::Unlimited,
        // A burst above the neighbour's 20 frames (it shares this first budget, and its
        // netfront drops what its credits do not cover: policy `drop`).
        packets: Limit::rate(1000, 32),
        period_us: 0,
    };
    let (mut rig, mut raw, mut wires) = attacker(&RawConnect::queues(QUEUES), Some(small));
    let (mut okay, mut dropped) = (0u64, 0u64);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(1);
    std::thread::scope(|s| {
        let _drain: Vec<_> = wires
            .iter_mut()
            .map(|w| s.spawn(move || count_until(w, end + Duration::from_millis(100))))
            .collect();
        let g: Vec<u32> = (0..QUEUES as usize)
            .map(|q| raw.queue(q).data_gref(0))
            .collect();
        while Instant::now() < end {
            for (q, g) in g.iter().enumerate() {
                for (_, status) in raw.queue_mut(q).take_responses() {
                    match status {
                        NETIF_RSP_OKAY => okay += 1,
                        _ => dropped += 1,
                    }
                }
                let free = raw.queue(q).tx_free() as usize;
                let slots: Vec<TxSlot> = (0..free)
                    .map(|i| tx_req(*g, 0, 60, NetTxFlags::empty(), i as u16))
                    .collect();
                if free > 0 {
                    raw.push_on(q, &slots, true).expect("free slots");
                }
            }
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("4 queues flooded {secs:.2} s: {okay} admitted, {dropped} answered dropped");
    // One allowance: the rate over the run, plus its depth (a ring) once.
    let allowance = DROP_ANSWERS_PER_SEC as f64 * secs * 1.05 + 256.0;
    assert!(
        (dropped as f64) <= allowance,
        "{dropped} drop answers in {secs:.2} s (one vif's allowance {allowance:.0})"
    );
    assert!(
        (okay as f64) <= 1000.0 * secs * 1.05 + 64.0,
        "{okay} admitted"
    );
    assert!(dropped > 0, "the flood was never answered dropped");
    assert_eq!(raw.be_state(), XenbusState::Connected);
    rig.neighbour_roundtrip();
}
