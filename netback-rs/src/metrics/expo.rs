//! Exposition: a [`Snapshot`] in the Prometheus text format (version 0.0.4).
//!
//! Every exported metric family is one row of [`FAMILIES`]: its name, type, help text
//! and how to read its samples from a snapshot. [`render`] is a loop over the table.
//! Each help text exists once, here; it is also the documentation of the family's name in
//! [`name`]. `docs/operations.md` §4 lists the same families (a test checks it).

use std::fmt::Write as _;

use super::sample::{Snapshot, VifSample, WorkerSample};
use crate::meter::VifCounters;
use crate::status::QueueStatus;

/// A family's metric type (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at 0 with the daemon).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// As written after `# TYPE <name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A per-vif counter broken down by a `reason` label: (reason, how to read it).
pub type Reason = (&'static str, fn(&VifCounters) -> u64);

/// How a family's samples are read from a [`Snapshot`].
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// One unlabelled sample. `None` leaves the whole family out (HELP and TYPE too): the
    /// allocator's families when it does not run.
    Daemon(fn(&Snapshot) -> Option<f64>),
    /// One sample per vif, label `vif`; the vifs for which it is `None` are left out.
    Vif(fn(&VifSample) -> Option<f64>),
    /// One sample per vif and reason, labels `vif` and `reason`.
    VifByReason(&'static [Reason]),
    /// One sample per queue of each vif, labels `vif`, `queue` and `worker` (at most
    /// `--max-queues` queues a vif).
    Queue(fn(&QueueStatus) -> Option<f64>),
    /// One sample per data-path worker, label `worker`.
    Worker(fn(&WorkerSample) -> Option<f64>),
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// Metric type.
    pub kind: Kind,
    /// `# HELP` text.
    pub help: &'static str,
    /// How to read the samples.
    pub read: Read,
}

/// Declares the [`name`] constants and [`FAMILIES`] from one table: each row is
/// `CONST: "metric_name", Kind, read, "help";`. The help text documents the constant.
macro_rules! families {
    ($($id:ident: $name:literal, $kind:ident, $read:expr, $help:literal;)+) => {
        /// Metric names, as exported (each documented by its `# HELP` text).
        pub mod name {
            $(#[doc = $help] pub const $id: &str = $name;)+
        }

        /// Every family netback exports, in exposition order.
        pub const FAMILIES: &[Family] = &[
            $(Family { name: name::$id, kind: Kind::$kind, help: $help, read: $read },)+
        ];
    };
}

fn flag(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// Guest → port drops by reason.
const TX_DROPS: &[Reason] = &[
    ("police", |c| c.tx_dropped_police),
    ("error", |c| c.tx_dropped_error),
    ("copy_error", |c| c.tx_copy_errors),
    ("port", |c| c.tx_dropped_port),
];

/// Port → guest drops by reason.
const RX_DROPS: &[Reason] = &[
    ("police", |c| c.rx_dropped_police),
    ("oversize", |c| c.rx_dropped_oversize),
    ("copy_error", |c| c.rx_copy_errors),
    ("offload", |c| c.rx_dropped_offload),
    ("no_buffers", |c| c.rx_dropped_no_buffers),
    ("stalled", |c| c.rx_dropped_stalled),
];

/// Guest → port frames the backend held or dropped, by the budget that shaped them.
const TX_SHAPED: &[Reason] = &[
    ("bps", |c| c.tx_shaped_bps_frames),
    ("pps", |c| c.tx_shaped_pps_frames),
];

/// Port → guest frames the backend held or dropped, by the budget that shaped them.
const RX_SHAPED: &[Reason] = &[
    ("bps", |c| c.rx_shaped_bps_frames),
    ("pps", |c| c.rx_shaped_pps_frames),
];

families! {
    VIFS: "dbavm_vifs", Gauge,
        Read::Daemon(|s| Some(s.vifs.len() as f64)),
        "Vifs under netback's backend directory.";
    SAMPLE_INTERVAL: "dbavm_sample_interval_seconds", Gauge,
        Read::Daemon(|s| Some(s.interval_ns as f64 / 1e9)),
        "Length of the interval the per-second rates cover.";
    VIF_CONNECTED: "dbavm_vif_connected", Gauge,
        Read::Vif(|v| Some(flag(v.status.connected))),
        "1 when the vif's rings are connected.";
    VIF_CREDITS: "dbavm_vif_credits", Gauge,
        Read::Vif(|v| Some(flag(v.status.credits))),
        "1 when the frontend negotiated the credit area.";
    VIF_XENBUS_STATE: "dbavm_vif_xenbus_state", Gauge,
        Read::Vif(|v| Some(v.status.state as u8 as f64)),
        "The backend's xenbus state (2 InitWait, 4 Connected, 5 Closing, 6 Closed).";
    VIF_TX_BITS: "dbavm_vif_tx_bits_total", Counter,
        Read::Vif(|v| Some(v.status.counters.tx_bytes as f64 * 8.0)),
        "Guest to port: frame bits forwarded (L2 frame bytes x 8).";
    VIF_TX_PACKETS: "dbavm_vif_tx_packets_total", Counter,
        Read::Vif(|v| Some(v.status.counters.tx_packets as f64)),
        "Guest to port: frames forwarded.";
    VIF_RX_BITS: "dbavm_vif_rx_bits_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_bytes as f64 * 8.0)),
        "Port to guest: frame bits delivered (L2 frame bytes x 8).";
    VIF_RX_PACKETS: "dbavm_vif_rx_packets_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_packets as f64)),
        "Port to guest: frames delivered.";
    VIF_TX_WIRE_BITS: "dbavm_vif_tx_wire_bits_total", Counter,
        Read::Vif(|v| Some(v.status.counters.tx_wire_bytes as f64 * 8.0)),
        "Guest to port: wire bits forwarded (a GSO frame's segments, headers included).";
    VIF_TX_WIRE_PACKETS: "dbavm_vif_tx_wire_packets_total", Counter,
        Read::Vif(|v| Some(v.status.counters.tx_wire_packets as f64)),
        "Guest to port: wire packets forwarded (a GSO frame counts its segments).";
    VIF_RX_WIRE_BITS: "dbavm_vif_rx_wire_bits_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_wire_bytes as f64 * 8.0)),
        "Port to guest: wire bits delivered (a GSO frame's segments, headers included).";
    VIF_RX_WIRE_PACKETS: "dbavm_vif_rx_wire_packets_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_wire_packets as f64)),
        "Port to guest: wire packets delivered (a GSO frame counts its segments).";
    VIF_TX_BPS: "dbavm_vif_tx_bits_per_second", Gauge,
        Read::Vif(|v| v.rates.map(|r| r.tx_bps)),
        "Guest to port wire bits/s over the last sampling interval.";
    VIF_TX_PPS: "dbavm_vif_tx_packets_per_second", Gauge,
        Read::Vif(|v| v.rates.map(|r| r.tx_pps)),
        "Guest to port wire packets/s over the last sampling interval.";
    VIF_RX_BPS: "dbavm_vif_rx_bits_per_second", Gauge,
        Read::Vif(|v| v.rates.map(|r| r.rx_bps)),
        "Port to guest wire bits/s over the last sampling interval.";
    VIF_RX_PPS: "dbavm_vif_rx_packets_per_second", Gauge,
        Read::Vif(|v| v.rates.map(|r| r.rx_pps)),
        "Port to guest wire packets/s over the last sampling interval.";
    VIF_BUDGET_BPS: "dbavm_vif_budget_bits_per_second", Gauge,
        Read::Vif(|v| v.status.budget.map(|b| b.bps as f64)),
        "The allocator's bits/s budget for the vif.";
    VIF_BUDGET_PPS: "dbavm_vif_budget_packets_per_second", Gauge,
        Read::Vif(|v| v.status.budget.and_then(|b| b.pps).map(|p| p as f64)),
        "The allocator's packets/s budget for the vif (absent: no packets/s limit).";
    VIF_BUDGET_BURST_BYTES: "dbavm_vif_budget_burst_bytes", Gauge,
        Read::Vif(|v| v.status.budget.map(|b| b.burst_bytes as f64)),
        "Byte bucket depth of the vif's budget.";
    VIF_BUDGET_BURST_PACKETS: "dbavm_vif_budget_burst_packets", Gauge,
        Read::Vif(|v| v.status.budget.and_then(|b| b.burst_packets).map(|p| p as f64)),
        "Packet bucket depth of the vif's budget.";
    VIF_RX_BUDGET_BPS: "dbavm_vif_rx_budget_bits_per_second", Gauge,
        Read::Vif(|v| v.status.rx_budget.map(|b| b.bps as f64)),
        "The allocator's receive bits/s budget for the vif, charged before the copy into \
         the guest (absent: unlimited).";
    VIF_RX_BUDGET_PPS: "dbavm_vif_rx_budget_packets_per_second", Gauge,
        Read::Vif(|v| v.status.rx_budget.and_then(|b| b.pps).map(|p| p as f64)),
        "The allocator's receive packets/s budget for the vif (absent: no packets/s limit).";
    VIF_RX_BUDGET_BURST_BYTES: "dbavm_vif_rx_budget_burst_bytes", Gauge,
        Read::Vif(|v| v.status.rx_budget.map(|b| b.burst_bytes as f64)),
        "Byte bucket depth of the vif's receive budget.";
    VIF_RX_BUDGET_BURST_PACKETS: "dbavm_vif_rx_budget_burst_packets", Gauge,
        Read::Vif(|v| v.status.rx_budget.and_then(|b| b.burst_packets).map(|p| p as f64)),
        "Packet bucket depth of the vif's receive budget.";
    VIF_RATE_CAP_BPS: "dbavm_vif_rate_cap_bits_per_second", Gauge,
        Read::Vif(|v| v.status.rate.map(|r| r.bytes_per_sec() as f64 * 8.0)),
        "The toolstack's static TX cap (backend key rate) for the vif (absent: none).";
    VIF_RATE_CAP_BURST_BYTES: "dbavm_vif_rate_cap_burst_bytes", Gauge,
        Read::Vif(|v| v.status.rate.map(|r| r.burst_bytes() as f64)),
        "Byte bucket depth of the vif's static TX cap.";
    VIF_TX_DROPPED: "dbavm_vif_tx_dropped_packets_total", Counter,
        Read::VifByReason(TX_DROPS),
        "Guest to port frames dropped in the backend, by reason.";
    VIF_TX_HELD: "dbavm_vif_tx_held_total", Counter,
        Read::Vif(|v| Some(v.status.counters.tx_held as f64)),
        "Times the hold policy stopped reading the vif's TX ring until tokens returned.";
    VIF_RX_HELD: "dbavm_vif_rx_held_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_held as f64)),
        "Times the RX hold policy stopped reading the vif's port until tokens returned.";
    VIF_RX_DROPPED: "dbavm_vif_rx_dropped_packets_total", Counter,
        Read::VifByReason(RX_DROPS),
        "Port to guest frames dropped in the backend, by reason.";
    VIF_TX_SHAPED_FRAMES: "dbavm_vif_tx_shaped_frames_total", Counter,
        Read::VifByReason(TX_SHAPED),
        "Guest to port frames the backend held or dropped for the vif's budget, by \
         budget (bps: bits/s, pps: packets/s), as told to the guest in its credit area.";
    VIF_TX_SHAPED_BITS: "dbavm_vif_tx_shaped_bits_total", Counter,
        Read::Vif(|v| Some(v.status.counters.tx_shaped_bps_bytes as f64 * 8.0)),
        "Wire bits of the guest to port frames held or dropped for the bits/s budget.";
    VIF_RX_SHAPED_FRAMES: "dbavm_vif_rx_shaped_frames_total", Counter,
        Read::VifByReason(RX_SHAPED),
        "Port to guest frames the backend held or dropped for the vif's receive budget \
         (never copied), by budget (bps: bits/s, pps: packets/s), as told to the guest.";
    VIF_RX_SHAPED_BITS: "dbavm_vif_rx_shaped_bits_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_shaped_bps_bytes as f64 * 8.0)),
        "Wire bits of the port to guest frames held or dropped for the receive bits/s \
         budget.";
    VIF_RX_STALLS: "dbavm_vif_rx_stalls_total", Counter,
        Read::Vif(|v| Some(v.status.counters.rx_stalls as f64)),
        "Times the frontend stalled: left a frame without RX buffers for the stall \
         timeout (its interface's carrier turned off until it posted more).";
    VIF_FRONT_DROPPED: "dbavm_vif_front_dropped_packets_total", Counter,
        Read::Vif(|v| v.status.front_dropped_packets.map(|n| n as f64)),
        "Frames the frontend reports it dropped for lack of tokens, this connection \
         (untrusted guest hint).";
    VIF_SLA_PRIORITY: "dbavm_vif_sla_priority", Gauge,
        Read::Vif(|v| v.sla.map(|s| s.priority().get() as f64)),
        "SLA in force: priority class (0 = highest).";
    VIF_SLA_MIN_BPS: "dbavm_vif_sla_min_bits_per_second", Gauge,
        Read::Vif(|v| v.sla.map(|s| s.min_bps() as f64)),
        "SLA in force: guaranteed minimum bits/s.";
    VIF_SLA_MAX_BPS: "dbavm_vif_sla_max_bits_per_second", Gauge,
        Read::Vif(|v| v.sla.and_then(|s| s.max_bps()).map(|m| m as f64)),
        "SLA in force: maximum bits/s (absent: unlimited).";
    VIF_SLA_RX_MIN_BPS: "dbavm_vif_sla_rx_min_bits_per_second", Gauge,
        Read::Vif(|v| v.sla.map(|s| s.rx_min_bps() as f64)),
        "SLA in force: guaranteed minimum receive bits/s.";
    VIF_SLA_RX_MAX_BPS: "dbavm_vif_sla_rx_max_bits_per_second", Gauge,
        Read::Vif(|v| v.sla.and_then(|s| s.rx_max_bps()).map(|m| m as f64)),
        "SLA in force: maximum receive bits/s (absent: limited by the receive link only).";
    ALLOC_ROUNDS: "dbavm_allocator_rounds_total", Counter,
        Read::Daemon(|s| s.allocator.map(|a| a.rounds as f64)),
        "Allocation rounds completed.";
    ALLOC_COST: "dbavm_allocator_cost_seconds_total", Counter,
        Read::Daemon(|s| s.allocator.map(|a| a.cost_ns as f64 / 1e9)),
        "Time spent in allocation rounds (wall clock in the event loop).";
    ALLOC_LAST_COST: "dbavm_allocator_last_round_seconds", Gauge,
        Read::Daemon(|s| s.allocator?.last_round_cost_ns.map(|l| l as f64 / 1e9)),
        "Time spent in the most recent allocation round.";
    ALLOC_OVERCOMMITTED: "dbavm_allocator_overcommitted", Gauge,
        Read::Daemon(|s| s.allocator.map(|a| flag(a.overcommitted))),
        "1 when the last round could not meet every minimum.";
    ALLOC_UNALLOCATED_BPS: "dbavm_allocator_unallocated_bits_per_second", Gauge,
        Read::Daemon(|s| s.allocator.map(|a| a.unallocated_bps as f64)),
        "Capacity no vif may use in the last round.";
    QUEUE_CONNECTED: "dbavm_queue_connected", Gauge,
        Read::Queue(|q| Some(flag(q.connected))),
        "1 when the queue is part of its vif's current connection.";
    QUEUE_TX_BITS: "dbavm_queue_tx_bits_total", Counter,
        Read::Queue(|q| Some(q.counters.tx_bytes as f64 * 8.0)),
        "Guest to port: frame bits forwarded on this queue (its vif's are the sum).";
    QUEUE_TX_PACKETS: "dbavm_queue_tx_packets_total", Counter,
        Read::Queue(|q| Some(q.counters.tx_packets as f64)),
        "Guest to port: frames forwarded on this queue.";
    QUEUE_RX_BITS: "dbavm_queue_rx_bits_total", Counter,
        Read::Queue(|q| Some(q.counters.rx_bytes as f64 * 8.0)),
        "Port to guest: frame bits delivered on this queue (its vif's are the sum).";
    QUEUE_RX_PACKETS: "dbavm_queue_rx_packets_total", Counter,
        Read::Queue(|q| Some(q.counters.rx_packets as f64)),
        "Port to guest: frames delivered on this queue.";
    WORKER_QUEUES: "dbavm_worker_queues", Gauge,
        Read::Worker(|w| Some(w.queues as f64)),
        "Vif queues placed on the data-path worker (a vif's device counts as its queue 0).";
    WORKER_CPU: "dbavm_worker_cpu_seconds_total", Counter,
        Read::Worker(|w| Some(w.cpu_ns as f64 / 1e9)),
        "CPU time of the data-path worker's thread.";
    WORKER_CPU_UTILIZATION: "dbavm_worker_cpu_utilization", Gauge,
        Read::Worker(|w| w.cpu_utilization),
        "CPU seconds the worker used per second of the last sampling interval (1: a core).";
    WORKER_PPS: "dbavm_worker_packets_per_second", Gauge,
        Read::Worker(|w| w.packets_per_second),
        "Frames the worker's queues carried per second, both ways, over the last interval.";
}

impl Family {
    /// Appends the family (HELP, TYPE, samples) to `out`, or nothing for a daemon-wide
    /// family without a value.
    fn write(&self, s: &Snapshot, out: &mut String) {
        match self.read {
            Read::Daemon(get) => {
                if let Some(x) = get(s) {
                    self.head(out);
                    self.sample(out, "", x);
                }
            }
            Read::Vif(get) => {
                self.head(out);
                for v in &s.vifs {
                    if let Some(x) = get(v) {
                        self.sample(out, &vif_label(v), x);
                    }
                }
            }
            Read::VifByReason(reasons) => {
                self.head(out);
                for v in &s.vifs {
                    for (reason, get) in reasons {
                        let labels = format!("{},reason=\"{reason}\"", vif_label(v));
                        self.sample(out, &labels, get(&v.status.counters) as f64);
                    }
                }
            }
            Read::Queue(get) => {
                self.head(out);
                for v in &s.vifs {
                    for q in &v.status.queues {
                        if let Some(x) = get(q) {
                            let labels = format!(
                                "{},queue=\"{}\",worker=\"{}\"",
                                vif_label(v),
                                q.index,
                                q.worker
                            );
                            self.sample(out, &labels, x);
                        }
                    }
                }
            }
            Read::Worker(get) => {
                self.head(out);
                for w in &s.workers {
                    if let Some(x) = get(w) {
                        self.sample(out, &format!("worker=\"{}\"", w.index), x);
                    }
                }
            }
        }
    }

    fn head(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
    }

    fn sample(&self, out: &mut String, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(out, "{} {}", self.name, fmt_value(v));
        } else {
            let _ = writeln!(out, "{}{{{labels}}} {}", self.name, fmt_value(v));
        }
    }
}

/// `vif="vif<domid>.<devid>"`.
fn vif_label(v: &VifSample) -> String {
    format!("vif=\"{}\"", escape(&v.status.id.to_string()))
}

/// A value as the text format writes it: integers without a fraction, `NaN`, `±Inf`.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders a snapshot in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(512 + s.vifs.len() * 2048);
    for f in FAMILIES {
        f.write(s, &mut out);
    }
    out
}
