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
    }
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

/// Whether a family has one sample per vif (labelled `vif`).
fn per_vif(f: &Family) -> bool {
    !matches!(f.read, Read::Daemon(_))
}

/// The rows `| `name` | type | meaning |` of `docs/operations.md` §4 as (name, type,
/// per vif), the per-vif table being the one after "Per vif".
fn documented() -> Vec<(String, String, bool)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let doc = std::fs::read_to_string(path).expect("docs/operations.md");
    let start = doc.find("\n## 4. Metrics").expect("a section 4. Metrics");
    let end = start + doc[start..].find("\n## 5.").expect("a section after it");
    let mut per_vif = false;
    let mut rows = Vec::new();
    for line in doc[start..end].lines() {
        if line.starts_with("Per vif") {
            per_vif = true;
        } else if line.starts_with("Daemon-wide") {
            per_vif = false;
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, name, kind, _meaning, _] = cols[..] {
            if let Some(name) = name.strip_prefix("`dbavm_") {
                let name = format!("dbavm_{}", name.trim_end_matches('`'));
                rows.push((name, kind.to_string(), per_vif));
            }
        }
    }
    rows
}

#[test]
fn every_family_is_documented_and_every_documented_metric_exported() {
    let mut doc = documented();
    let mut table: Vec<(String, String, bool)> = FAMILIES
        .iter()
        .map(|f| {
            let name = match f.read {
                Read::VifByReason(_) => format!("{}{{reason}}", f.name),
                _ => f.name.to_string(),
            };
            (name, f.kind.as_str().to_string(), per_vif(f))
        })
        .collect();
    assert_eq!(doc.len(), FAMILIES.len(), "{doc:#?}");
    doc.sort();
    table.sort();
    assert_eq!(
        doc, table,
        "docs/operations.md §4 (name, type, per vif) vs FAMILIES"
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
    use netback_ops::metric::{READ_DAEMON, READ_PER_VIF};
    let read = READ_PER_VIF.iter().map(|n| (n, true));
    for (n, vif) in read.chain(READ_DAEMON.iter().map(|n| (n, false))) {
        let f = FAMILIES
            .iter()
            .find(|f| f.name == *n)
            .unwrap_or_else(|| panic!("netback-ops reads {n}, which netback does not export"));
        assert_eq!(per_vif(f), vif, "{n}");
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
