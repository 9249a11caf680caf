//! The exposition against golden files captured from the renderer before it became a
//! loop over [`FAMILIES`], the table against `docs/operations.md`, and the names the
//! operator side (`netback-ops`) reads against the table.

use std::time::Duration;

use super::*;
use crate::backend::VifStatus;
use crate::meter::{Rates, VifCounters};
use hypervisor::xenbus::XenbusState;
use xen_ids::{DomId, VifId};

/// xl's `rate=1Mb/s` as libxl writes it ("6250,50000").
fn netback_rate() -> crate::vifconfig::RateCap {
    crate::vifconfig::RateCap {
        bytes: 6250,
        usec: 50_000,
    }
}

/// Three vifs (connected with everything, waiting with a budget without packets/s, closed
/// with nothing) and the allocator with every figure.
fn fixture() -> Snapshot {
    let vif = |domid, devid| VifId {
        domid: DomId(domid),
        devid,
    };
    let counters = VifCounters {
        tx_packets: 1234,
        tx_bytes: 1_500_001,
        tx_wire_packets: 2345,
        tx_wire_bytes: 1_560_001,
        tx_dropped_police: 3,
        tx_dropped_error: 1,
        tx_copy_errors: 2,
        tx_dropped_port: 4,
        tx_held: 5,
        rx_packets: 777,
        rx_bytes: 654_321,
        rx_wire_packets: 888,
        rx_wire_bytes: 660_321,
        rx_dropped_police: 6,
        rx_dropped_oversize: 7,
        rx_copy_errors: 8,
        rx_dropped_offload: 9,
        rx_dropped_no_buffers: 10,
        tx_shaped_bps_frames: 12,
        tx_shaped_bps_bytes: 13_000,
        tx_shaped_pps_frames: 14,
        rx_shaped_bps_frames: 15,
        rx_shaped_bps_bytes: 16_000,
        rx_shaped_pps_frames: 17,
        ..VifCounters::default()
    };
    let connected = VifSample {
        status: VifStatus {
            id: vif(1, 0),
            state: XenbusState::Connected,
            connected: true,
            credits: true,
            counters,
            budget: Some(allocator::Budget::with_bursts(
                150_000_000,
                Some(20_000),
                Duration::from_millis(20),
            )),
            rx_budget: Some(allocator::Budget::with_bursts(
                300_000_000,
                Some(40_000),
                Duration::from_millis(20),
            )),
            front_dropped_packets: Some(11),
            rate: Some(netback_rate()),
            queues: split_in_two(counters),
        },
        rates: Some(Rates {
            tx_bps: 1.5e8,
            tx_pps: 18_750.5,
            rx_bps: 0.125,
            rx_pps: 1e16,
        }),
        sla: Some(
            allocator::VifSla::new(
                allocator::sla::Subject::Defaults,
                allocator::Priority::parse("1").unwrap(),
                150_000_000,
                Some(700_000_000),
            )
            .and_then(|s| {
                s.with_rx(
                    allocator::sla::Subject::Defaults,
                    50_000_000,
                    Some(300_000_000),
                )
            })
            .unwrap(),
        ),
    };
    let waiting = VifSample {
        status: VifStatus {
            id: vif(12, 3),
            state: XenbusState::InitWait,
            connected: false,
            credits: false,
            counters: VifCounters::default(),
            budget: Some(allocator::Budget::with_bursts(
                8_000_000,
                None,
                Duration::from_millis(20),
            )),
            rx_budget: None,
            front_dropped_packets: None,
            rate: None,
            queues: Vec::new(),
        },
        rates: None,
        sla: Some(allocator::VifSla::BEST_EFFORT),
    };
    let bare = VifSample {
        status: VifStatus {
            id: vif(2, 1),
            state: XenbusState::Closed,
            connected: false,
            credits: false,
            counters: VifCounters::default(),
            budget: None,
            rx_budget: None,
            front_dropped_packets: None,
            rate: None,
            queues: Vec::new(),
        },
        rates: Some(Rates::default()),
        sla: None,
    };
    Snapshot {
        taken_ns: 5_000_000_000,
        interval_ns: 1_000_000_123,
        vifs: vec![connected, waiting, bare],
        allocator: Some(AllocatorSample {
            rounds: 3120,
            cost_ns: 61_776_001,
            last_round_cost_ns: Some(21_400),
            overcommitted: true,
            unallocated_bps: 12_345,
        }),
        workers: vec![
            WorkerSample {
                index: 0,
                queues: 2,
                cpu_ns: 1_500_000_001,
                packets_per_second: Some(18_750.5),
                cpu_utilization: Some(0.25),
            },
            WorkerSample {
                index: 1,
                queues: 1,
                cpu_ns: 7,
                packets_per_second: None,
                cpu_utilization: None,
            },
        ],
    }
}

/// `c` as two queues' counters: queue 0 on worker 0 (a third of the frames, connected),
/// queue 1 on worker 1 (the rest, of an earlier connection).
fn split_in_two(c: VifCounters) -> Vec<crate::QueueStatus> {
    let third = VifCounters {
        tx_packets: c.tx_packets / 3,
        tx_bytes: c.tx_bytes / 3,
        rx_packets: c.rx_packets / 3,
        rx_bytes: c.rx_bytes / 3,
        ..VifCounters::default()
    };
    let rest = VifCounters {
        tx_packets: c.tx_packets - third.tx_packets,
        tx_bytes: c.tx_bytes - third.tx_bytes,
        rx_packets: c.rx_packets - third.rx_packets,
        rx_bytes: c.rx_bytes - third.rx_bytes,
        ..VifCounters::default()
    };
    vec![
        crate::QueueStatus {
            index: 0,
            worker: 0,
            connected: true,
            counters: third,
        },
        crate::QueueStatus {
            index: 1,
            worker: 1,
            connected: false,
            counters: rest,
        },
    ]
}

#[test]
fn exposition_is_byte_identical_to_the_golden_files() {
    let mut s = fixture();
    assert_eq!(render(&s), include_str!("golden/full.prom"));
    s.allocator.as_mut().unwrap().last_round_cost_ns = None;
    assert_eq!(render(&s), include_str!("golden/no-last-round.prom"));
    assert_eq!(
        render(&Snapshot::default()),
        include_str!("golden/empty.prom")
    );
}

/// Whose samples a family has: "vif" (labelled `vif`), "queue" (labelled `vif`, `queue`,
/// `worker`), "worker" (labelled `worker`) or "daemon" (unlabelled).
fn subject(f: &Family) -> &'static str {
    match f.read {
        Read::Daemon(_) => "daemon",
        Read::Vif(_) | Read::VifByReason(_) => "vif",
        Read::Queue(_) => "queue",
        Read::Worker(_) => "worker",
    }
}

/// The rows `| `name` | type | meaning |` of `docs/operations.md` §4 as (name, type,
/// subject), the subject from the paragraph before the table: "Per vif", "Per queue",
/// "Per worker" or "Daemon-wide".
fn documented() -> Vec<(String, String, &'static str)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let doc = std::fs::read_to_string(path).expect("docs/operations.md");
    let start = doc.find("\n## 4. Metrics").expect("a section 4. Metrics");
    let end = start + doc[start..].find("\n## 5.").expect("a section after it");
    let mut subject = "none";
    let mut rows = Vec::new();
    for line in doc[start..end].lines() {
        for (head, s) in [
            ("Per vif", "vif"),
            ("Per queue", "queue"),
            ("Per worker", "worker"),
            ("Daemon-wide", "daemon"),
        ] {
            if line.starts_with(head) {
                subject = s;
            }
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, name, kind, _meaning, _] = cols[..] {
            if let Some(name) = name.strip_prefix("`dbavm_") {
                let name = format!("dbavm_{}", name.trim_end_matches('`'));
                rows.push((name, kind.to_string(), subject));
            }
        }
    }
    rows
}

#[test]
fn every_family_is_documented_and_every_documented_metric_exported() {
    let mut doc = documented();
    let mut table: Vec<(String, String, &'static str)> = FAMILIES
        .iter()
        .map(|f| {
            let name = match f.read {
                Read::VifByReason(_) => format!("{}{{reason}}", f.name),
                _ => f.name.to_string(),
            };
            (name, f.kind.as_str().to_string(), subject(f))
        })
        .collect();
    assert_eq!(doc.len(), FAMILIES.len(), "{doc:#?}");
    doc.sort();
    table.sort();
    assert_eq!(
        doc, table,
        "docs/operations.md §4 (name, type, subject) vs FAMILIES"
    );
}

#[test]
fn each_family_once_with_its_own_help() {
    for (i, f) in FAMILIES.iter().enumerate() {
        assert!(f.name.starts_with("dbavm_"), "{}", f.name);
        assert!(!f.help.is_empty() && !f.help.contains('\n'), "{}", f.name);
        for g in &FAMILIES[i + 1..] {
            assert_ne!(f.name, g.name);
            assert_ne!(f.help, g.help, "{} and {}", f.name, g.name);
        }
        let counter = f.name.ends_with("_total");
        assert_eq!(counter, f.kind == Kind::Counter, "{}", f.name);
    }
}

#[test]
fn the_names_the_operator_side_reads_are_exported() {
    use netback_ops::metric::{READ_DAEMON, READ_PER_QUEUE, READ_PER_VIF, READ_PER_WORKER};
    let read = [
        (READ_PER_VIF, "vif"),
        (READ_PER_QUEUE, "queue"),
        (READ_PER_WORKER, "worker"),
        (READ_DAEMON, "daemon"),
    ];
    for (names, whose) in read {
        for n in names {
            let f = FAMILIES
                .iter()
                .find(|f| f.name == *n)
                .unwrap_or_else(|| panic!("netback-ops reads {n}, which netback does not export"));
            assert_eq!(subject(f), whose, "{n}");
        }
    }
}

#[test]
fn label_values_and_special_numbers() {
    let mut s = fixture();
    s.vifs.truncate(1);
    s.vifs[0].rates = Some(Rates {
        tx_bps: f64::NAN,
        tx_pps: f64::INFINITY,
        rx_bps: f64::NEG_INFINITY,
        rx_pps: -2.5,
    });
    let text = render(&s);
    for line in [
        "dbavm_vif_tx_bits_per_second{vif=\"vif1.0\"} NaN",
        "dbavm_vif_tx_packets_per_second{vif=\"vif1.0\"} +Inf",
        "dbavm_vif_rx_bits_per_second{vif=\"vif1.0\"} -Inf",
        "dbavm_vif_rx_packets_per_second{vif=\"vif1.0\"} -2.5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    let parsed = netback_ops::parse_exposition(&text).expect("parses");
    assert_eq!(
        parsed.len(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
}

#[test]
fn per_queue_and_per_worker_series_parse_and_queues_sum_to_their_vif() {
    let s = fixture();
    let text = render(&s);
    let parsed = netback_ops::parse_exposition(&text).expect("parses");
    let vif = "vif1.0";
    let of = |metric: &str| -> Vec<(String, String, f64)> {
        parsed
            .iter()
            .filter(|p| p.name == metric && p.label("vif") == Some(vif))
            .map(|p| {
                let l = |k| p.label(k).expect("labelled").to_string();
                (l("queue"), l("worker"), p.value)
            })
            .collect()
    };
    for (queue, whole) in [
        (name::QUEUE_TX_PACKETS, name::VIF_TX_PACKETS),
        (name::QUEUE_TX_BITS, name::VIF_TX_BITS),
        (name::QUEUE_RX_PACKETS, name::VIF_RX_PACKETS),
        (name::QUEUE_RX_BITS, name::VIF_RX_BITS),
    ] {
        let qs = of(queue);
        let workers: Vec<(&str, &str)> = qs
            .iter()
            .map(|(q, w, _)| (q.as_str(), w.as_str()))
            .collect();
        assert_eq!(workers, [("0", "0"), ("1", "1")], "{queue}");
        let total = parsed
            .iter()
            .find(|p| p.name == whole && p.label("vif") == Some(vif))
            .expect("the vif's")
            .value;
        assert_eq!(qs.iter().map(|q| q.2).sum::<f64>(), total, "{queue}");
    }
    let connected: Vec<f64> = of(name::QUEUE_CONNECTED).iter().map(|q| q.2).collect();
    assert_eq!(connected, [1.0, 0.0]);
    // Vifs without queues have no per-queue sample; each worker has its own.
    assert!(parsed
        .iter()
        .filter(|p| p.name.starts_with("dbavm_queue_"))
        .all(|p| p.label("vif") == Some(vif)));
    let worker = |metric: &str, w: &str| {
        parsed
            .iter()
            .find(|p| p.name == metric && p.label("worker") == Some(w))
            .map(|p| p.value)
    };
    assert_eq!(worker(name::WORKER_QUEUES, "0"), Some(2.0));
    assert_eq!(worker(name::WORKER_QUEUES, "1"), Some(1.0));
    assert_eq!(worker(name::WORKER_CPU, "0"), Some(1_500_000_001.0 / 1e9));
    assert_eq!(worker(name::WORKER_PPS, "0"), Some(18_750.5));
    assert_eq!(worker(name::WORKER_PPS, "1"), None, "no rate yet");
    assert_eq!(worker(name::WORKER_CPU_UTILIZATION, "0"), Some(0.25));
}
