//! The metric names and labels the operator side reads. The daemon's table of families
//! (`netback::metrics::FAMILIES`, with each family's help text) is the authority; a test
//! in `netback` checks that every name in [`READ_PER_VIF`], [`READ_PER_QUEUE`],
//! [`READ_PER_WORKER`] and [`READ_DAEMON`] is exported there, with the labels listed.

/// Label naming the vif of a per-vif sample (`vif1.0`).
pub const LABEL_VIF: &str = "vif";

/// Rings connected (1) or not (0).
pub const VIF_CONNECTED: &str = "dbavm_vif_connected";
/// Guest → port bits/s over the daemon's sampling interval.
pub const VIF_TX_BPS: &str = "dbavm_vif_tx_bits_per_second";
/// Guest → port packets/s.
pub const VIF_TX_PPS: &str = "dbavm_vif_tx_packets_per_second";
/// Port → guest bits/s.
pub const VIF_RX_BPS: &str = "dbavm_vif_rx_bits_per_second";
/// Port → guest packets/s.
pub const VIF_RX_PPS: &str = "dbavm_vif_rx_packets_per_second";
/// Budget, bits/s.
pub const VIF_BUDGET_BPS: &str = "dbavm_vif_budget_bits_per_second";
/// Budget, packets/s.
pub const VIF_BUDGET_PPS: &str = "dbavm_vif_budget_packets_per_second";
/// Budget, byte bucket depth.
pub const VIF_BUDGET_BURST_BYTES: &str = "dbavm_vif_budget_burst_bytes";
/// Budget, packet bucket depth.
pub const VIF_BUDGET_BURST_PACKETS: &str = "dbavm_vif_budget_burst_packets";
/// Receive budget, bits/s (absent: unlimited).
pub const VIF_RX_BUDGET_BPS: &str = "dbavm_vif_rx_budget_bits_per_second";
/// Receive budget, packets/s.
pub const VIF_RX_BUDGET_PPS: &str = "dbavm_vif_rx_budget_packets_per_second";
/// Receive budget, byte bucket depth.
pub const VIF_RX_BUDGET_BURST_BYTES: &str = "dbavm_vif_rx_budget_burst_bytes";
/// Receive budget, packet bucket depth.
pub const VIF_RX_BUDGET_BURST_PACKETS: &str = "dbavm_vif_rx_budget_burst_packets";
/// Guest → port frames shaped by netback, one sample per budget (`reason` `bps`/`pps`).
pub const VIF_TX_SHAPED_FRAMES: &str = "dbavm_vif_tx_shaped_frames_total";
/// Their wire bits (bits/s budget).
pub const VIF_TX_SHAPED_BITS: &str = "dbavm_vif_tx_shaped_bits_total";
/// Port → guest frames shaped by netback, one sample per budget.
pub const VIF_RX_SHAPED_FRAMES: &str = "dbavm_vif_rx_shaped_frames_total";
/// Their wire bits (receive bits/s budget).
pub const VIF_RX_SHAPED_BITS: &str = "dbavm_vif_rx_shaped_bits_total";
/// SLA in force: receive minimum bits/s.
pub const VIF_SLA_RX_MIN_BPS: &str = "dbavm_vif_sla_rx_min_bits_per_second";
/// SLA in force: receive maximum bits/s.
pub const VIF_SLA_RX_MAX_BPS: &str = "dbavm_vif_sla_rx_max_bits_per_second";
/// Label naming the budget of a shaped-frames sample (`bps` or `pps`).
pub const LABEL_REASON: &str = "reason";
/// The toolstack's static TX cap (backend key `rate`), bits/s.
pub const VIF_RATE_CAP_BPS: &str = "dbavm_vif_rate_cap_bits_per_second";
/// That cap's byte bucket depth.
pub const VIF_RATE_CAP_BURST_BYTES: &str = "dbavm_vif_rate_cap_burst_bytes";
/// Guest → port drops in the backend, one sample per reason.
pub const VIF_TX_DROPPED: &str = "dbavm_vif_tx_dropped_packets_total";
/// Port → guest drops in the backend, one sample per reason.
pub const VIF_RX_DROPPED: &str = "dbavm_vif_rx_dropped_packets_total";
/// Drops the frontend reports (untrusted hint).
pub const VIF_FRONT_DROPPED: &str = "dbavm_vif_front_dropped_packets_total";
/// SLA in force: priority class.
pub const VIF_SLA_PRIORITY: &str = "dbavm_vif_sla_priority";
/// SLA in force: minimum bits/s.
pub const VIF_SLA_MIN_BPS: &str = "dbavm_vif_sla_min_bits_per_second";
/// SLA in force: maximum bits/s.
pub const VIF_SLA_MAX_BPS: &str = "dbavm_vif_sla_max_bits_per_second";
/// Allocation rounds completed.
pub const ALLOC_ROUNDS: &str = "dbavm_allocator_rounds_total";
/// Time spent in allocation rounds, seconds.
pub const ALLOC_COST: &str = "dbavm_allocator_cost_seconds_total";
/// Time spent in the most recent round, seconds.
pub const ALLOC_LAST_COST: &str = "dbavm_allocator_last_round_seconds";
/// The last round could not meet every minimum.
pub const ALLOC_OVERCOMMITTED: &str = "dbavm_allocator_overcommitted";

/// The per-vif names above (samples labelled [`LABEL_VIF`]).
pub const READ_PER_VIF: &[&str] = &[
    VIF_CONNECTED,
    VIF_TX_PACKETS,
    VIF_TX_BITS,
    VIF_RX_PACKETS,
    VIF_RX_BITS,
    VIF_TX_BPS,
    VIF_TX_PPS,
    VIF_RX_BPS,
    VIF_RX_PPS,
    VIF_BUDGET_BPS,
    VIF_BUDGET_PPS,
    VIF_BUDGET_BURST_BYTES,
    VIF_BUDGET_BURST_PACKETS,
    VIF_RATE_CAP_BPS,
    VIF_RATE_CAP_BURST_BYTES,
    VIF_TX_DROPPED,
    VIF_RX_DROPPED,
    VIF_FRONT_DROPPED,
    VIF_SLA_PRIORITY,
    VIF_SLA_MIN_BPS,
    VIF_SLA_MAX_BPS,
    VIF_RX_BUDGET_BPS,
    VIF_RX_BUDGET_PPS,
    VIF_RX_BUDGET_BURST_BYTES,
    VIF_RX_BUDGET_BURST_PACKETS,
    VIF_TX_SHAPED_FRAMES,
    VIF_TX_SHAPED_BITS,
    VIF_RX_SHAPED_FRAMES,
    VIF_RX_SHAPED_BITS,
    VIF_SLA_RX_MIN_BPS,
    VIF_SLA_RX_MAX_BPS,
];

/// Label naming the queue of a per-queue sample (`0`, `1`, …).
pub const LABEL_QUEUE: &str = "queue";
/// Label naming the data-path worker of a per-queue or per-worker sample (`0`, `1`, …).
pub const LABEL_WORKER: &str = "worker";

/// Guest → port frames forwarded, cumulated (per vif).
pub const VIF_TX_PACKETS: &str = "dbavm_vif_tx_packets_total";
/// Guest → port frame bits forwarded, cumulated (per vif).
pub const VIF_TX_BITS: &str = "dbavm_vif_tx_bits_total";
/// Port → guest frames delivered, cumulated (per vif).
pub const VIF_RX_PACKETS: &str = "dbavm_vif_rx_packets_total";
/// Port → guest frame bits delivered, cumulated (per vif).
pub const VIF_RX_BITS: &str = "dbavm_vif_rx_bits_total";

/// The queue is part of its vif's current connection (1) or not (0).
pub const QUEUE_CONNECTED: &str = "dbavm_queue_connected";
/// Guest → port frames forwarded on the queue.
pub const QUEUE_TX_PACKETS: &str = "dbavm_queue_tx_packets_total";
/// Guest → port frame bits forwarded on the queue.
pub const QUEUE_TX_BITS: &str = "dbavm_queue_tx_bits_total";
/// Port → guest frames delivered on the queue.
pub const QUEUE_RX_PACKETS: &str = "dbavm_queue_rx_packets_total";
/// Port → guest frame bits delivered on the queue.
pub const QUEUE_RX_BITS: &str = "dbavm_queue_rx_bits_total";

/// Vif queues placed on the worker.
pub const WORKER_QUEUES: &str = "dbavm_worker_queues";
/// CPU seconds per second the worker used over the daemon's sampling interval.
pub const WORKER_CPU_UTILIZATION: &str = "dbavm_worker_cpu_utilization";
/// Frames per second (both ways) the worker's queues carried over that interval.
pub const WORKER_PPS: &str = "dbavm_worker_packets_per_second";

/// The per-queue names above (samples labelled [`LABEL_VIF`], [`LABEL_QUEUE`] and
/// [`LABEL_WORKER`]).
pub const READ_PER_QUEUE: &[&str] = &[
    QUEUE_CONNECTED,
    QUEUE_TX_PACKETS,
    QUEUE_TX_BITS,
    QUEUE_RX_PACKETS,
    QUEUE_RX_BITS,
];

/// The per-worker names above (samples labelled [`LABEL_WORKER`]).
pub const READ_PER_WORKER: &[&str] = &[WORKER_QUEUES, WORKER_CPU_UTILIZATION, WORKER_PPS];

/// The daemon-wide names above (unlabelled samples).
pub const READ_DAEMON: &[&str] = &[
    ALLOC_ROUNDS,
    ALLOC_COST,
    ALLOC_LAST_COST,
    ALLOC_OVERCOMMITTED,
];

/// The value of `metric` for vif `vif` (`vif1.0`) in a scrape.
pub fn vif_value(samples: &[crate::Sample], metric: &str, vif: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == metric && s.label(LABEL_VIF) == Some(vif))
        .map(|s| s.value)
}

/// The value of `metric` for vif `vif` and `reason` in a scrape.
pub fn vif_reason_value(
    samples: &[crate::Sample],
    metric: &str,
    vif: &str,
    reason: &str,
) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == metric
                && s.label(LABEL_VIF) == Some(vif)
                && s.label(LABEL_REASON) == Some(reason)
        })
        .map(|s| s.value)
}
