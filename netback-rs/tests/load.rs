//! Load: 64 vifs on one netback (the `local` platform), every guest offering twice its
//! SLA for a bounded time. Every vif must be served (none starves), every vif must be
//! held to its budget, and memory must stay flat while the load runs.

mod common;

use std::time::{Duration, Instant};

use allocator::sla_file::parse_sla_file;
use allocator::LoopConfig;
use common::heap_in_use;
use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use netport::{FrameMeta, MemPort, Port};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const VIFS: u16 = 64;
/// Every vif's SLA: exactly 1 Mb/s (min = max), on a 1 Gb/s link.
const SLAS: &str = r#"
[link]
capacity-bps = "1G"
[defaults]
min-bps = "1M"
max-bps = "1M"
"#;
const BUDGET_BPS: u64 = 1_000_000;
const FRAME: usize = 1000;
/// Offered per vif: 250 frames/s of 1000 B = 2 Mb/s, twice the SLA.
const OFFER_EVERY: Duration = Duration::from_millis(4);
const RUN: Duration = Duration::from_secs(8);
/// Budgets are in force after the first allocator rounds; measure after this.
const WARMUP: Duration = Duration::from_secs(2);

#[test]
fn sixty_four_vifs_all_served_all_held() {
    let host = LocalHost::new();
    let ids: Vec<VifId> = (1..=VIFS)
        .map(|d| add_vif(&host, DomId(d), 0).expect("vif"))
        .collect();
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    nb.command(|nb| {
        nb.enable_allocator(
            parse_sla_file(SLAS).unwrap(),
            LoopConfig::with_period(Duration::from_millis(100)),
        )
        .unwrap();
    });
    let mut guests: Vec<Guest> = (1..=VIFS)
        .map(|d| Guest::start(&host, DomId(d), NetfrontConfig::new(0)).expect("guest"))
        .collect();
    let mut wires: Vec<MemPort> = ids.iter().map(|id| nb.wire(*id)).collect();
    let apps: Vec<MemPort> = guests
        .iter_mut()
        .map(|g| std::mem::replace(&mut g.app, MemPort::pair(1, 64).unwrap().0))
        .collect();

    // One paced sender for all 64 guests (64 spinning threads would measure the
    // scheduler, not netback).
    let t0 = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut apps = apps;
        let f = frame(0, FRAME);
        let mut next = Instant::now();
        let mut offered = vec![0u64; apps.len()];
        while t0.elapsed() < RUN {
            for (k, a) in apps.iter_mut().enumerate() {
                // A full port is the guest's problem (its qdisc would drop): skip.
                if a.send(&f, &FrameMeta::default()).is_ok() {
                    offered[k] += 1;
                }
            }
            next += OFFER_EVERY;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        (apps, offered)
    });

    // Receive everything; count what arrives inside the measurement window.
    let mut buf = vec![0u8; 65536];
    let mut bytes = vec![0u64; wires.len()];
    let mut heap_at_start = None;
    let (mut m0, mut m1) = (None, None);
    while t0.elapsed() < RUN + Duration::from_millis(200) {
        let el = t0.elapsed();
        let measuring = el >= WARMUP && el < RUN;
        if measuring && m0.is_none() {
            m0 = Some(Instant::now());
            heap_at_start = Some(heap_in_use());
        }
        if !measuring && m0.is_some() && m1.is_none() {
            m1 = Some(Instant::now());
        }
        let mut idle = true;
        for (k, w) in wires.iter_mut().enumerate() {
            while let Some((len, _)) = w.recv(&mut buf).unwrap() {
                idle = false;
                if measuring {
                    bytes[k] += len as u64;
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let window = m1.unwrap().duration_since(m0.unwrap()).as_secs_f64();
    let heap_end = heap_in_use();
    let (apps, offered) = sender.join().unwrap();
    for (g, a) in guests.iter_mut().zip(apps) {
        g.app = a;
    }

    let budgets: Vec<_> = ids
        .iter()
        .map(|id| nb.vif_status(*id).unwrap().budget.expect("a budget"))
        .collect();
    let expect = BUDGET_BPS as f64 / 8.0 * window;
    let (min, max) = (*bytes.iter().min().unwrap(), *bytes.iter().max().unwrap());
    eprintln!(
        "{VIFS} vifs, {window:.2} s window: per-vif bytes min {min} max {max} (budget {expect:.0}); \
         offered frames {}..{}; heap {} → {} KiB",
        offered.iter().min().unwrap(),
        offered.iter().max().unwrap(),
        heap_at_start.unwrap() >> 10,
        heap_end >> 10
    );
    for (k, b) in budgets.iter().enumerate() {
        assert_eq!(b.bps, BUDGET_BPS, "{}: budget", ids[k]);
        // Held: rate × window plus the backstop's burst (twice the published one).
        let bound = expect + 2.0 * b.burst_bytes as f64 + FRAME as f64;
        assert!(
            (bytes[k] as f64) <= bound,
            "{} got {} B in {window:.2} s, bound {bound:.0}",
            ids[k],
            bytes[k]
        );
        // Served: offered twice its budget, it gets at least a quarter of the budget
        // even on a loaded machine (no vif starves).
        assert!(
            (bytes[k] as f64) >= expect / 4.0,
            "{} starved: {} B in {window:.2} s, budget {expect:.0}",
            ids[k],
            bytes[k]
        );
    }
    // (Heap, not RSS: RSS grows as the pre-sized memory ports and granted buffers are
    // touched for the first time, which is not growth of netback's state.)
    assert!(
        heap_end <= heap_at_start.unwrap() + (4 << 20),
        "memory grew under load: {} → {} KiB",
        heap_at_start.unwrap() >> 10,
        heap_end >> 10
    );
    // Nothing but policing dropped: no copy errors, no malformed packets.
    for id in &ids {
        let c = nb.vif_status(*id).unwrap().counters;
        assert_eq!((c.tx_copy_errors, c.tx_dropped_error), (0, 0), "{id}");
    }
}
