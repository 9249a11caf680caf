//! `netback top`: a per-vif table of rates, budgets and drops, and a line per data-path
//! worker (queues served, frames/s, CPU) so that an imbalance between workers shows,
//! built from a scrape of the metrics endpoint ([`crate::scrape()`]). Plain text; the
//! CLI clears the screen with ANSI codes between frames.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::metric as name;
use crate::Sample;

/// One vif's line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Label `vif` (`vif1.0`).
    pub vif: String,
    /// Rings connected.
    pub connected: bool,
    /// Guest → port bits/s over the daemon's last sampling interval.
    pub tx_bps: Option<f64>,
    /// Guest → port packets/s.
    pub tx_pps: Option<f64>,
    /// Port → guest bits/s.
    pub rx_bps: Option<f64>,
    /// Port → guest packets/s.
    pub rx_pps: Option<f64>,
    /// Budget, bits/s.
    pub budget_bps: Option<f64>,
    /// Budget, packets/s.
    pub budget_pps: Option<f64>,
    /// Frames dropped in the backend, guest → port (all reasons).
    pub back_tx_dropped: f64,
    /// Frames dropped in the backend, port → guest (all reasons).
    pub back_rx_dropped: f64,
    /// Frames the frontend says it dropped (untrusted hint).
    pub front_dropped: Option<f64>,
}

/// The allocator's line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AllocatorLine {
    /// Rounds completed.
    pub rounds: f64,
    /// Cumulated cost, seconds.
    pub cost_s: f64,
    /// Last round's cost, seconds.
    pub last_s: Option<f64>,
    /// Minimums could not all be met in the last round.
    pub overcommitted: bool,
}

/// One data-path worker's line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerLine {
    /// Worker index.
    pub worker: u32,
    /// Vif queues placed on it.
    pub queues: Option<f64>,
    /// Frames per second its queues carried, both ways.
    pub pps: Option<f64>,
    /// CPU seconds per second it used (1: one core).
    pub cpu: Option<f64>,
}

/// One frame of the view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Per vif, sorted by domain then device id.
    pub rows: Vec<Row>,
    /// The allocator, when it runs.
    pub allocator: Option<AllocatorLine>,
    /// Per data-path worker, by index.
    pub workers: Vec<WorkerLine>,
}

/// Sort key of `vif<domid>.<devid>` (unparsable names sort last, by text).
pub(crate) fn vif_key(v: &str) -> (u64, u64, String) {
    let parsed = v.strip_prefix("vif").and_then(|r| {
        let (d, i) = r.split_once('.')?;
        Some((d.parse().ok()?, i.parse().ok()?))
    });
    match parsed {
        Some((d, i)) => (d, i, String::new()),
        None => (u64::MAX, u64::MAX, v.to_string()),
    }
}

/// Builds a frame from scraped samples.
pub fn frame(samples: &[Sample]) -> Frame {
    let mut rows: BTreeMap<(u64, u64, String), Row> = BTreeMap::new();
    let mut alloc: Option<AllocatorLine> = None;
    let mut workers: BTreeMap<u32, WorkerLine> = BTreeMap::new();
    for s in samples {
        if let Some(v) = s.label(name::LABEL_VIF) {
            let r = rows.entry(vif_key(v)).or_insert_with(|| Row {
                vif: v.to_string(),
                ..Row::default()
            });
            let x = s.value;
            match s.name.as_str() {
                name::VIF_CONNECTED => r.connected = x != 0.0,
                name::VIF_TX_BPS => r.tx_bps = Some(x),
                name::VIF_TX_PPS => r.tx_pps = Some(x),
                name::VIF_RX_BPS => r.rx_bps = Some(x),
                name::VIF_RX_PPS => r.rx_pps = Some(x),
                name::VIF_BUDGET_BPS => r.budget_bps = Some(x),
                name::VIF_BUDGET_PPS => r.budget_pps = Some(x),
                name::VIF_TX_DROPPED => r.back_tx_dropped += x,
                name::VIF_RX_DROPPED => r.back_rx_dropped += x,
                name::VIF_FRONT_DROPPED => r.front_dropped = Some(x),
                _ => {}
            }
            continue;
        }
        if let Some(w) = s.label(name::LABEL_WORKER).and_then(|w| w.parse().ok()) {
            let line = workers.entry(w).or_insert(WorkerLine {
                worker: w,
                ..WorkerLine::default()
            });
            match s.name.as_str() {
                name::WORKER_QUEUES => line.queues = Some(s.value),
                name::WORKER_PPS => line.pps = Some(s.value),
                name::WORKER_CPU_UTILIZATION => line.cpu = Some(s.value),
                _ => {}
            }
            continue;
        }
        let a = || AllocatorLine::default();
        match s.name.as_str() {
            name::ALLOC_ROUNDS => alloc.get_or_insert_with(a).rounds = s.value,
            name::ALLOC_COST => alloc.get_or_insert_with(a).cost_s = s.value,
            name::ALLOC_LAST_COST => alloc.get_or_insert_with(a).last_s = Some(s.value),
            name::ALLOC_OVERCOMMITTED => alloc.get_or_insert_with(a).overcommitted = s.value != 0.0,
            _ => {}
        }
    }
    Frame {
        rows: rows.into_values().collect(),
        allocator: alloc,
        workers: workers.into_values().collect(),
    }
}

fn opt(v: Option<f64>, scale: f64) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:.2}", x / scale),
        _ => "-".into(),
    }
}

/// Renders a frame as a text table (no terminal control codes).
pub fn render(f: &Frame, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "netback top — {source}");
    match &f.allocator {
        Some(a) => {
            let mean = if a.rounds > 0.0 {
                format!("{:.1} µs", a.cost_s / a.rounds * 1e6)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "allocator: {} rounds, last {}, mean {mean}, total {:.3} s{}",
                a.rounds,
                a.last_s
                    .map_or("-".into(), |s| format!("{:.1} µs", s * 1e6)),
                a.cost_s,
                if a.overcommitted {
                    ", OVERCOMMITTED (minimums exceed the link)"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(out, "allocator: off");
        }
    }
    let _ = writeln!(
        out,
        "{:<12} {:>4} {:>9} {:>8} {:>9} {:>8} {:>10} {:>9} {:>10} {:>10} {:>10}",
        "VIF",
        "CONN",
        "TX Mb/s",
        "TX Kp/s",
        "RX Mb/s",
        "RX Kp/s",
        "BUDG Mb/s",
        "BUDG Kp/s",
        "DROP-BK-TX",
        "DROP-BK-RX",
        "DROP-FE*"
    );
    for r in &f.rows {
        let _ = writeln!(
            out,
            "{:<12} {:>4} {:>9} {:>8} {:>9} {:>8} {:>10} {:>9} {:>10} {:>10} {:>10}",
            r.vif,
            if r.connected { "yes" } else { "no" },
            opt(r.tx_bps, 1e6),
            opt(r.tx_pps, 1e3),
            opt(r.rx_bps, 1e6),
            opt(r.rx_pps, 1e3),
            opt(r.budget_bps, 1e6),
            opt(r.budget_pps, 1e3),
            r.back_tx_dropped,
            r.back_rx_dropped,
            r.front_dropped.map_or("-".into(), |x| x.to_string()),
        );
    }
    if f.rows.is_empty() {
        let _ = writeln!(out, "(no vifs)");
    }
    if !f.workers.is_empty() {
        let _ = writeln!(
            out,
            "{:<6} {:>6} {:>8} {:>6}",
            "WORKER", "QUEUES", "Kp/s", "CPU %"
        );
    }
    for w in &f.workers {
        let _ = writeln!(
            out,
            "{:<6} {:>6} {:>8} {:>6}",
            w.worker,
            w.queues.map_or("-".into(), |q| q.to_string()),
            opt(w.pps, 1e3),
            opt(w.cpu, 0.01),
        );
    }
    let _ = writeln!(
        out,
        "TX = guest to port. Drops are totals. * reported by the guest's frontend (untrusted hint)."
    );
    if !f.workers.is_empty() {
        let _ = writeln!(
            out,
            "Workers: frames both ways of the queues each serves; CPU % of one core."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_exposition;

    #[test]
    fn frame_from_samples() {
        let text = "\
dbavm_vif_connected{vif=\"vif10.0\"} 1
dbavm_vif_connected{vif=\"vif2.0\"} 0
dbavm_vif_tx_bits_per_second{vif=\"vif2.0\"} 150000000
dbavm_vif_tx_packets_per_second{vif=\"vif2.0\"} 20000
dbavm_vif_budget_bits_per_second{vif=\"vif2.0\"} 700000000
dbavm_vif_tx_dropped_packets_total{vif=\"vif2.0\",reason=\"police\"} 4
dbavm_vif_tx_dropped_packets_total{vif=\"vif2.0\",reason=\"port\"} 1
dbavm_vif_front_dropped_packets_total{vif=\"vif2.0\"} 9
dbavm_allocator_rounds_total 10
dbavm_allocator_cost_seconds_total 0.001
dbavm_worker_queues{worker=\"1\"} 1
dbavm_worker_queues{worker=\"0\"} 3
dbavm_worker_packets_per_second{worker=\"0\"} 30000
dbavm_worker_cpu_utilization{worker=\"0\"} 0.125
dbavm_worker_cpu_utilization{worker=\"1\"} 0.005
dbavm_queue_tx_packets_total{vif=\"vif2.0\",queue=\"1\",worker=\"1\"} 8
";
        let f = frame(&parse_exposition(text).unwrap());
        assert_eq!(f.rows.len(), 2);
        assert_eq!(f.rows[0].vif, "vif2.0");
        assert_eq!(f.rows[0].back_tx_dropped, 5.0);
        assert_eq!(f.rows[0].front_dropped, Some(9.0));
        assert!(f.rows[1].connected);
        let out = render(&f, "test");
        let line = out.lines().find(|l| l.starts_with("vif2.0")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            ["vif2.0", "no", "150.00", "20.00", "-", "-", "700.00", "-", "5", "0", "9"]
        );
        assert!(out.contains("10 rounds"));
        assert!(out.contains("mean 100.0 µs"));
        // A line per worker, by index: queues, Kp/s, CPU % ("-": not sampled yet).
        for line in [
            "0           3    30.00  12.50",
            "1           1        -   0.50",
        ] {
            assert!(out.lines().any(|l| l == line), "{line:?} missing in\n{out}");
        }
        assert_eq!(f.rows.len(), 2, "a per-queue sample adds no vif row");
    }
}
