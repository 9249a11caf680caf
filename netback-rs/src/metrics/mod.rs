//! Netback's figures for operators, in the Prometheus text exposition format (version
//! 0.0.4), served over HTTP on an opt-in address (`netback serve --metrics ADDR`).
//!
//! The event loop never waits for a scraper:
//!
//! * [`Sampler::observe`] runs in the event loop after every iteration. It is O(1) unless
//!   the sampling interval has passed; then it takes a [`Snapshot`] (counters, rates over
//!   the interval from [`crate::meter::Meter`], budgets, SLAs, the allocator's cost).
//! * [`SnapshotCell::publish`] hands the snapshot over with a `try_lock`: if a scraper
//!   holds the lock at that instant, the snapshot waits for the next iteration instead.
//! * [`MetricsServer`] runs on its own threads, clones the latest snapshot (an `Arc`)
//!   and renders it with [`render`]. Requests are bounded in size and time; anything
//!   malformed gets a 4xx answer and a closed connection, never a panic.
//!
//! The metric names are listed in `docs/operations.md`. The client side ([`scrape`],
//! [`parse_exposition`]) is used by `netback top` and `netback sla show`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use hypervisor::platform::BackendPlatform;

use crate::backend::{Netback, VifStatus};
use crate::meter::{Meter, Rates};
use xen_ids::VifId;

/// One vif in a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct VifSample {
    /// The vif's status (counters cumulated over reconnections, budget, front hint).
    pub status: VifStatus,
    /// Rates over the last sampling interval (`None` for the first sample of a vif).
    pub rates: Option<Rates>,
    /// The SLA in force for the vif, when the allocator runs.
    pub sla: Option<allocator::VifSla>,
}

/// The allocator's own figures in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorSample {
    /// Rounds completed since the allocator started.
    pub rounds: u64,
    /// Time spent in rounds, cumulated (ns).
    pub cost_ns: u64,
    /// Time spent in the most recent round (ns), once one was observed.
    pub last_round_cost_ns: Option<u64>,
    /// The last round could not meet every minimum (Σ B^min of demanding vifs > B_p).
    pub overcommitted: bool,
    /// Capacity no vif may use in the last round (bits/s).
    pub unallocated_bps: u64,
}

/// Everything the endpoint exports, as taken by the event loop at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was taken (ns, netback clock).
    pub taken_ns: u64,
    /// Length of the interval the rates cover (ns; 0 for the first snapshot).
    pub interval_ns: u64,
    /// Every vif under the backend directory.
    pub vifs: Vec<VifSample>,
    /// The allocator's figures, when it runs.
    pub allocator: Option<AllocatorSample>,
}

/// Takes snapshots of a [`Netback`] at most once per interval, keeping each vif's
/// [`Meter`] and the allocator's per-round cost between them.
#[derive(Debug)]
pub struct Sampler {
    interval_ns: u64,
    last_ns: Option<u64>,
    meters: HashMap<VifId, Meter>,
    /// (rounds, cumulated cost) at the previous observation.
    rounds_seen: Option<(u64, u64)>,
    last_round_cost_ns: Option<u64>,
}

impl Sampler {
    /// A sampler taking one snapshot per `interval` (rates cover that interval).
    pub fn new(interval: Duration) -> Self {
        Sampler {
            interval_ns: interval.as_nanos().clamp(1, u64::MAX as u128) as u64,
            last_ns: None,
            meters: HashMap::new(),
            rounds_seen: None,
            last_round_cost_ns: None,
        }
    }

    /// Called after every event-loop iteration with the current time. Records the cost
    /// of an allocation round that just ran (O(1)); returns a snapshot when the interval
    /// has passed since the previous one (or for the first call).
    pub fn observe<P: BackendPlatform>(
        &mut self,
        nb: &Netback<P>,
        now_ns: u64,
    ) -> Option<Snapshot> {
        let report = nb.allocator_report();
        if let Some((_, cost, rounds)) = report {
            self.note_rounds(rounds, cost);
        }
        if self
            .last_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < self.interval_ns)
        {
            return None;
        }
        let allocator = report.map(|(last, cost_ns, rounds)| AllocatorSample {
            rounds,
            cost_ns,
            last_round_cost_ns: self.last_round_cost_ns,
            overcommitted: last.is_some_and(|r| r.overcommitted),
            unallocated_bps: last.map_or(0, |r| r.unallocated_bps),
        });
        let status = nb.status();
        Some(self.sample(now_ns, status, |id| nb.effective_sla(id), allocator))
    }

    /// Records the allocator's round count and cumulated cost: when exactly one round ran
    /// since the previous call, its cost is the difference.
    pub fn note_rounds(&mut self, rounds: u64, cost_ns: u64) {
        if let Some((r0, c0)) = self.rounds_seen {
            if rounds == r0 + 1 {
                self.last_round_cost_ns = Some(cost_ns.saturating_sub(c0));
            } else if rounds > r0 + 1 {
                // Several rounds between two observations: their mean.
                self.last_round_cost_ns = Some(cost_ns.saturating_sub(c0) / (rounds - r0));
            }
        }
        self.rounds_seen = Some((rounds, cost_ns));
    }

    /// Builds a snapshot from a status list (the part of [`Sampler::observe`] that does
    /// not need a running netback).
    pub fn sample(
        &mut self,
        now_ns: u64,
        status: Vec<VifStatus>,
        sla: impl Fn(VifId) -> Option<allocator::VifSla>,
        allocator: Option<AllocatorSample>,
    ) -> Snapshot {
        let interval_ns = self.last_ns.map_or(0, |t| now_ns.saturating_sub(t));
        self.last_ns = Some(now_ns);
        // Keep the meters of present vifs only (a removed vif's meter is dropped).
        let mut old = std::mem::take(&mut self.meters);
        let vifs = status
            .into_iter()
            .map(|s| {
                let meter = self
                    .meters
                    .entry(s.id)
                    .or_insert_with(|| old.remove(&s.id).unwrap_or_default());
                let rates = meter.sample(now_ns, &s.counters);
                VifSample {
                    rates,
                    sla: sla(s.id),
                    status: s,
                }
            })
            .collect();
        Snapshot {
            taken_ns: now_ns,
            interval_ns,
            vifs,
            allocator,
        }
    }
}

/// The latest snapshot, shared between the event loop (writer) and the metrics server
/// (readers).
#[derive(Debug, Clone, Default)]
pub struct SnapshotCell {
    latest: Arc<Mutex<Option<Arc<Snapshot>>>>,
}

impl SnapshotCell {
    /// An empty cell (the server answers 503 until the first snapshot).
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `snap` without waiting: if a reader holds the lock right now, `snap` is
    /// handed back so the caller can retry on its next iteration.
    pub fn publish(&self, snap: Snapshot) -> Result<(), Snapshot> {
        match self.latest.try_lock() {
            Ok(mut g) => {
                *g = Some(Arc::new(snap));
                Ok(())
            }
            // A panicked reader cannot leave the Option half-written: replace it.
            Err(TryLockError::Poisoned(p)) => {
                *p.into_inner() = Some(Arc::new(snap));
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(snap),
        }
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        match self.latest.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Connects a [`Sampler`] to a [`SnapshotCell`] for the event loop: call
/// [`Publisher::tick`] after every iteration.
#[derive(Debug)]
pub struct Publisher {
    sampler: Sampler,
    cell: SnapshotCell,
    pending: Option<Snapshot>,
}

impl Publisher {
    /// Samples every `interval` into `cell`.
    pub fn new(interval: Duration, cell: SnapshotCell) -> Self {
        Publisher {
            sampler: Sampler::new(interval),
            cell,
            pending: None,
        }
    }

    /// Samples if due and publishes without blocking (a snapshot that met a busy reader
    /// is published on a later call, unless a newer one replaces it).
    pub fn tick<P: BackendPlatform>(&mut self, nb: &Netback<P>, now_ns: u64) {
        if let Some(s) = self.sampler.observe(nb, now_ns) {
            self.pending = Some(s);
        }
        if let Some(s) = self.pending.take() {
            if let Err(s) = self.cell.publish(s) {
                self.pending = Some(s);
            }
        }
    }
}

/// Metric names, as exported.
pub mod name {
    /// 1 when the vif's rings are connected, else 0.
    pub const VIF_CONNECTED: &str = "dbavm_vif_connected";
    /// 1 when the frontend negotiated the credit area.
    pub const VIF_CREDITS: &str = "dbavm_vif_credits";
    /// The backend's xenbus state (`enum xenbus_state`: 2 InitWait, 4 Connected, 6 Closed…).
    pub const VIF_XENBUS_STATE: &str = "dbavm_vif_xenbus_state";
    /// Guest → port frame bits forwarded.
    pub const VIF_TX_BITS: &str = "dbavm_vif_tx_bits_total";
    /// Guest → port frames forwarded.
    pub const VIF_TX_PACKETS: &str = "dbavm_vif_tx_packets_total";
    /// Port → guest frame bits delivered.
    pub const VIF_RX_BITS: &str = "dbavm_vif_rx_bits_total";
    /// Port → guest frames delivered.
    pub const VIF_RX_PACKETS: &str = "dbavm_vif_rx_packets_total";
    /// Guest → port bits/s over the last sampling interval.
    pub const VIF_TX_BPS: &str = "dbavm_vif_tx_bits_per_second";
    /// Guest → port packets/s over the last sampling interval.
    pub const VIF_TX_PPS: &str = "dbavm_vif_tx_packets_per_second";
    /// Port → guest bits/s over the last sampling interval.
    pub const VIF_RX_BPS: &str = "dbavm_vif_rx_bits_per_second";
    /// Port → guest packets/s over the last sampling interval.
    pub const VIF_RX_PPS: &str = "dbavm_vif_rx_packets_per_second";
    /// The allocator's bits/s budget.
    pub const VIF_BUDGET_BPS: &str = "dbavm_vif_budget_bits_per_second";
    /// The allocator's packets/s budget (absent: no packets/s limit).
    pub const VIF_BUDGET_PPS: &str = "dbavm_vif_budget_packets_per_second";
    /// Byte bucket depth of the budget.
    pub const VIF_BUDGET_BURST_BYTES: &str = "dbavm_vif_budget_burst_bytes";
    /// Packet bucket depth of the budget.
    pub const VIF_BUDGET_BURST_PACKETS: &str = "dbavm_vif_budget_burst_packets";
    /// Guest → port frames dropped in the backend, label `reason`.
    pub const VIF_TX_DROPPED: &str = "dbavm_vif_tx_dropped_packets_total";
    /// Times the hold policy stopped reading the TX ring.
    pub const VIF_TX_HELD: &str = "dbavm_vif_tx_held_total";
    /// Port → guest frames dropped in the backend, label `reason`.
    pub const VIF_RX_DROPPED: &str = "dbavm_vif_rx_dropped_packets_total";
    /// Frames the frontend reports it dropped (untrusted hint; per connection).
    pub const VIF_FRONT_DROPPED: &str = "dbavm_vif_front_dropped_packets_total";
    /// SLA in force: priority class.
    pub const VIF_SLA_PRIORITY: &str = "dbavm_vif_sla_priority";
    /// SLA in force: B^min.
    pub const VIF_SLA_MIN_BPS: &str = "dbavm_vif_sla_min_bits_per_second";
    /// SLA in force: B^max (absent: unlimited).
    pub const VIF_SLA_MAX_BPS: &str = "dbavm_vif_sla_max_bits_per_second";
    /// Number of vifs under the backend directory.
    pub const VIFS: &str = "dbavm_vifs";
    /// Allocation rounds completed.
    pub const ALLOC_ROUNDS: &str = "dbavm_allocator_rounds_total";
    /// Time spent in allocation rounds.
    pub const ALLOC_COST: &str = "dbavm_allocator_cost_seconds_total";
    /// Time spent in the most recent round.
    pub const ALLOC_LAST_COST: &str = "dbavm_allocator_last_round_seconds";
    /// 1 when the last round could not meet every minimum.
    pub const ALLOC_OVERCOMMITTED: &str = "dbavm_allocator_overcommitted";
    /// Capacity no vif may use in the last round.
    pub const ALLOC_UNALLOCATED_BPS: &str = "dbavm_allocator_unallocated_bits_per_second";
    /// Length of the interval the rates cover.
    pub const SAMPLE_INTERVAL: &str = "dbavm_sample_interval_seconds";
}

/// Writes one metric family: HELP, TYPE, then a sample per `(labels, value)`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {}", fmt_value(*v));
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {}", fmt_value(*v));
        }
    }
}

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
    use name::*;
    let mut out = String::with_capacity(512 + s.vifs.len() * 2048);
    let vl = |v: &VifSample| format!("vif=\"{}\"", escape(&v.status.id.to_string()));
    let per_vif = |f: &dyn Fn(&VifSample) -> Option<f64>| -> Vec<(String, f64)> {
        s.vifs
            .iter()
            .filter_map(|v| f(v).map(|x| (vl(v), x)))
            .collect()
    };
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    family(
        &mut out,
        VIFS,
        "gauge",
        "Vifs under netback's backend directory.",
        &[(String::new(), s.vifs.len() as f64)],
    );
    family(
        &mut out,
        SAMPLE_INTERVAL,
        "gauge",
        "Length of the interval the per-second rates cover.",
        &[(String::new(), s.interval_ns as f64 / 1e9)],
    );
    family(
        &mut out,
        VIF_CONNECTED,
        "gauge",
        "1 when the vif's rings are connected.",
        &per_vif(&|v| Some(b(v.status.connected))),
    );
    family(
        &mut out,
        VIF_CREDITS,
        "gauge",
        "1 when the frontend negotiated the credit area.",
        &per_vif(&|v| Some(b(v.status.credits))),
    );
    family(
        &mut out,
        VIF_XENBUS_STATE,
        "gauge",
        "The backend's xenbus state (2 InitWait, 4 Connected, 5 Closing, 6 Closed).",
        &per_vif(&|v| Some(v.status.state as u8 as f64)),
    );
    let c = |v: &VifSample| v.status.counters;
    family(
        &mut out,
        VIF_TX_BITS,
        "counter",
        "Guest to port: frame bits forwarded (L2 frame bytes x 8).",
        &per_vif(&|v| Some(c(v).tx_bytes as f64 * 8.0)),
    );
    family(
        &mut out,
        VIF_TX_PACKETS,
        "counter",
        "Guest to port: frames forwarded.",
        &per_vif(&|v| Some(c(v).tx_packets as f64)),
    );
    family(
        &mut out,
        VIF_RX_BITS,
        "counter",
        "Port to guest: frame bits delivered (L2 frame bytes x 8).",
        &per_vif(&|v| Some(c(v).rx_bytes as f64 * 8.0)),
    );
    family(
        &mut out,
        VIF_RX_PACKETS,
        "counter",
        "Port to guest: frames delivered.",
        &per_vif(&|v| Some(c(v).rx_packets as f64)),
    );
    family(
        &mut out,
        VIF_TX_BPS,
        "gauge",
        "Guest to port bits/s over the last sampling interval.",
        &per_vif(&|v| v.rates.map(|r| r.tx_bps)),
    );
    family(
        &mut out,
        VIF_TX_PPS,
        "gauge",
        "Guest to port packets/s over the last sampling interval.",
        &per_vif(&|v| v.rates.map(|r| r.tx_pps)),
    );
    family(
        &mut out,
        VIF_RX_BPS,
        "gauge",
        "Port to guest bits/s over the last sampling interval.",
        &per_vif(&|v| v.rates.map(|r| r.rx_bps)),
    );
    family(
        &mut out,
        VIF_RX_PPS,
        "gauge",
        "Port to guest packets/s over the last sampling interval.",
        &per_vif(&|v| v.rates.map(|r| r.rx_pps)),
    );
    family(
        &mut out,
        VIF_BUDGET_BPS,
        "gauge",
        "The allocator's bits/s budget for the vif.",
        &per_vif(&|v| v.status.budget.map(|b| b.bps as f64)),
    );
    family(
        &mut out,
        VIF_BUDGET_PPS,
        "gauge",
        "The allocator's packets/s budget for the vif (absent: no packets/s limit).",
        &per_vif(&|v| v.status.budget.and_then(|b| b.pps).map(|p| p as f64)),
    );
    family(
        &mut out,
        VIF_BUDGET_BURST_BYTES,
        "gauge",
        "Byte bucket depth of the vif's budget.",
        &per_vif(&|v| v.status.budget.map(|b| b.burst_bytes as f64)),
    );
    family(
        &mut out,
        VIF_BUDGET_BURST_PACKETS,
        "gauge",
        "Packet bucket depth of the vif's budget.",
        &per_vif(&|v| {
            v.status
                .budget
                .and_then(|b| b.burst_packets)
                .map(|p| p as f64)
        }),
    );
    let mut tx_drops = Vec::new();
    let mut rx_drops = Vec::new();
    for v in &s.vifs {
        let k = c(v);
        for (reason, n) in [
            ("police", k.tx_dropped_police),
            ("error", k.tx_dropped_error),
            ("copy_error", k.tx_copy_errors),
            ("port", k.tx_dropped_port),
        ] {
            tx_drops.push((format!("{},reason=\"{reason}\"", vl(v)), n as f64));
        }
        for (reason, n) in [
            ("police", k.rx_dropped_police),
            ("oversize", k.rx_dropped_oversize),
            ("copy_error", k.rx_copy_errors),
        ] {
            rx_drops.push((format!("{},reason=\"{reason}\"", vl(v)), n as f64));
        }
    }
    family(
        &mut out,
        VIF_TX_DROPPED,
        "counter",
        "Guest to port frames dropped in the backend, by reason.",
        &tx_drops,
    );
    family(
        &mut out,
        VIF_TX_HELD,
        "counter",
        "Times the hold policy stopped reading the vif's TX ring until tokens returned.",
        &per_vif(&|v| Some(c(v).tx_held as f64)),
    );
    family(
        &mut out,
        VIF_RX_DROPPED,
        "counter",
        "Port to guest frames dropped in the backend, by reason.",
        &rx_drops,
    );
    family(
        &mut out,
        VIF_FRONT_DROPPED,
        "counter",
        "Frames the frontend reports it dropped for lack of tokens, this connection (untrusted guest hint).",
        &per_vif(&|v| v.status.front_dropped_packets.map(|n| n as f64)),
    );
    family(
        &mut out,
        VIF_SLA_PRIORITY,
        "gauge",
        "SLA in force: priority class (0 = highest).",
        &per_vif(&|v| v.sla.map(|s| s.priority().get() as f64)),
    );
    family(
        &mut out,
        VIF_SLA_MIN_BPS,
        "gauge",
        "SLA in force: guaranteed minimum bits/s.",
        &per_vif(&|v| v.sla.map(|s| s.min_bps() as f64)),
    );
    family(
        &mut out,
        VIF_SLA_MAX_BPS,
        "gauge",
        "SLA in force: maximum bits/s (absent: unlimited).",
        &per_vif(&|v| v.sla.and_then(|s| s.max_bps()).map(|m| m as f64)),
    );
    if let Some(a) = &s.allocator {
        family(
            &mut out,
            ALLOC_ROUNDS,
            "counter",
            "Allocation rounds completed.",
            &[(String::new(), a.rounds as f64)],
        );
        family(
            &mut out,
            ALLOC_COST,
            "counter",
            "Time spent in allocation rounds (wall clock in the event loop).",
            &[(String::new(), a.cost_ns as f64 / 1e9)],
        );
        if let Some(l) = a.last_round_cost_ns {
            family(
                &mut out,
                ALLOC_LAST_COST,
                "gauge",
                "Time spent in the most recent allocation round.",
                &[(String::new(), l as f64 / 1e9)],
            );
        }
        family(
            &mut out,
            ALLOC_OVERCOMMITTED,
            "gauge",
            "1 when the last round could not meet every minimum.",
            &[(String::new(), b(a.overcommitted))],
        );
        family(
            &mut out,
            ALLOC_UNALLOCATED_BPS,
            "gauge",
            "Capacity no vif may use in the last round.",
            &[(String::new(), a.unallocated_bps as f64)],
        );
    }
    out
}

/// Largest request head the server reads.
const MAX_REQUEST: usize = 8192;
/// Connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 16;
/// Read/write timeout per connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP endpoint: `GET /metrics` (and `HEAD`), one short-lived thread per connection.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (e.g. `127.0.0.1:9101`; port 0 picks a free port) and serves
    /// the latest snapshot of `cell`.
    pub fn start(addr: &str, cell: SnapshotCell) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("metrics-accept".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let stream = match conn {
                            Ok(s) => s,
                            Err(e) => {
                                log::debug!("metrics: accept: {e}");
                                // E.g. EMFILE: do not spin.
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        };
                        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                            active.fetch_sub(1, Ordering::AcqRel);
                            let mut s = stream;
                            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                            let _ = respond(&mut s, 503, "Service Unavailable", "busy\n", false);
                            continue;
                        }
                        let (cell, active2) = (cell.clone(), active.clone());
                        let spawned = std::thread::Builder::new()
                            .name("metrics-conn".into())
                            .spawn(move || {
                                if let Err(e) = handle(stream, &cell) {
                                    log::debug!("metrics: connection: {e}");
                                }
                                active2.fetch_sub(1, Ordering::AcqRel);
                            });
                        if let Err(e) = spawned {
                            active.fetch_sub(1, Ordering::AcqRel);
                            log::warn!("metrics: cannot spawn a connection thread: {e}");
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept call.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    reason: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let ctype = if code == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        msg.push_str(body);
    }
    s.write_all(msg.as_bytes())?;
    s.flush()
}

/// Reads one request head and answers it.
fn handle(mut s: TcpStream, cell: &SnapshotCell) -> io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if buf.len() >= MAX_REQUEST {
            break false;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break false;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !complete {
        if buf.len() >= MAX_REQUEST {
            respond(
                &mut s,
                431,
                "Request Header Fields Too Large",
                "request too large\n",
                false,
            )?;
        }
        return Ok(());
    }
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = String::from_utf8_lossy(&buf[..line_end]);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(
            &mut s,
            400,
            "Bad Request",
            "malformed request line\n",
            false,
        );
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return respond(
            &mut s,
            400,
            "Bad Request",
            "malformed request line\n",
            false,
        );
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut s,
            405,
            "Method Not Allowed",
            "only GET and HEAD\n",
            false,
        );
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => match cell.latest() {
            Some(snap) => respond(&mut s, 200, "OK", &render(&snap), head_only),
            None => respond(
                &mut s,
                503,
                "Service Unavailable",
                "no snapshot yet\n",
                head_only,
            ),
        },
        "/" => respond(
            &mut s,
            200,
            "OK",
            "netback: metrics at /metrics\n",
            head_only,
        ),
        _ => respond(
            &mut s,
            404,
            "Not Found",
            "not found; try /metrics\n",
            head_only,
        ),
    }?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

/// One sample of a scraped exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `k`.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A malformed exposition line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

/// Parses the Prometheus text format (comments skipped; timestamps ignored).
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |what: &str| ParseError {
            line: i + 1,
            what: what.to_string(),
        };
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let name_end = l.find(['{', ' ', '\t']).ok_or_else(|| err("no value"))?;
        let name = &l[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(err("bad metric name"));
        }
        let mut rest = &l[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end;
            loop {
                while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                    chars.next();
                }
                match chars.peek() {
                    Some((j, '}')) => {
                        end = *j;
                        break;
                    }
                    None => return Err(err("unterminated labels")),
                    _ => {}
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                let mut val = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => val.push('\n'),
                            Some(c) => val.push(c),
                            None => return Err(err("unterminated label value")),
                        },
                        c => val.push(c),
                    }
                }
                if !closed {
                    return Err(err("unterminated label value"));
                }
                labels.push((key.trim().to_string(), val));
            }
            rest = &r[end + 1..];
        }
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| err("no value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            t => t.parse().map_err(|_| err("value is not a number"))?,
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// Why a scrape failed.
#[derive(Debug)]
pub enum ScrapeError {
    /// The URL is not `[http://]host:port[/path]`.
    Url(String),
    /// Connecting, sending or receiving failed.
    Io {
        /// The URL.
        url: String,
        /// The error.
        source: io::Error,
    },
    /// The server answered something other than 200.
    Status {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
    /// The answer is not an HTTP response or the body not the text format.
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        what: String,
    },
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Url(u) => {
                write!(
                    f,
                    "bad metrics URL {u:?} (expected http://HOST:PORT/metrics)"
                )
            }
            ScrapeError::Io { url, source } => write!(f, "{url}: {source}"),
            ScrapeError::Status { url, status } => write!(f, "{url}: HTTP status {status}"),
            ScrapeError::Malformed { url, what } => write!(f, "{url}: {what}"),
        }
    }
}

impl std::error::Error for ScrapeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScrapeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Largest response body [`scrape`] accepts.
const MAX_RESPONSE: u64 = 64 << 20;

/// Splits `[http://]host:port[/path]` into (host:port, path); the path defaults to
/// `/metrics`.
pub fn split_url(url: &str) -> Result<(String, String), ScrapeError> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") || rest.is_empty() {
        return Err(ScrapeError::Url(url.to_string()));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(ScrapeError::Url(url.to_string()));
    }
    Ok((host.to_string(), path.to_string()))
}

/// GETs the exposition at `url` and parses it.
pub fn scrape(url: &str, timeout: Duration) -> Result<Vec<Sample>, ScrapeError> {
    let (host, path) = split_url(url)?;
    let io_err = |source| ScrapeError::Io {
        url: url.to_string(),
        source,
    };
    let addr = host
        .to_socket_addrs()
        .map_err(io_err)?
        .next()
        .ok_or_else(|| ScrapeError::Url(url.to_string()))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io_err)?;
    s.set_read_timeout(Some(timeout)).map_err(io_err)?;
    s.set_write_timeout(Some(timeout)).map_err(io_err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err)?;
    let mut resp = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut resp)
        .map_err(io_err)?;
    let malformed = |what: &str| ScrapeError::Malformed {
        url: url.to_string(),
        what: what.to_string(),
    };
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&resp[..head_end]);
    let status = head.lines().next().unwrap_or("");
    let mut it = status.split(' ');
    if !it.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(malformed("not an HTTP/1 response"));
    }
    if it.next() != Some("200") {
        return Err(ScrapeError::Status {
            url: url.to_string(),
            status: status.to_string(),
        });
    }
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        return Err(malformed("chunked responses are not supported"));
    }
    let body =
        std::str::from_utf8(&resp[head_end + 4..]).map_err(|_| malformed("body is not UTF-8"))?;
    parse_exposition(body).map_err(|e| malformed(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::VifCounters;
    use hypervisor::xenbus::XenbusState;
    use xen_ids::DomId;

    fn status(domid: u16, tx_bytes: u64) -> VifStatus {
        VifStatus {
            id: VifId {
                domid: DomId(domid),
                devid: 0,
            },
            state: XenbusState::Connected,
            connected: true,
            credits: true,
            counters: VifCounters {
                tx_bytes,
                tx_packets: tx_bytes / 1000,
                tx_dropped_police: 3,
                ..Default::default()
            },
            budget: Some(allocator::Budget::with_bursts(
                8_000_000,
                Some(1000),
                Duration::from_millis(20),
            )),
            front_dropped_packets: Some(7),
        }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let mut sm = Sampler::new(Duration::from_secs(1));
        let s0 = sm.sample(0, vec![status(1, 0)], |_| None, None);
        assert!(s0.vifs[0].rates.is_none());
        sm.note_rounds(10, 1000);
        sm.note_rounds(11, 1500);
        let alloc = AllocatorSample {
            rounds: 11,
            cost_ns: 1500,
            last_round_cost_ns: sm.last_round_cost_ns,
            overcommitted: false,
            unallocated_bps: 5,
        };
        let s1 = sm.sample(
            1_000_000_000,
            vec![status(1, 125_000)],
            |_| Some(allocator::VifSla::BEST_EFFORT),
            Some(alloc),
        );
        let text = render(&s1);
        let samples = parse_exposition(&text).unwrap();
        let get = |n: &str, extra: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|s| s.name == n && extra.is_none_or(|(k, v)| s.label(k) == Some(v)))
                .unwrap_or_else(|| panic!("{n} missing in\n{text}"))
                .value
        };
        assert_eq!(get(name::VIF_TX_BITS, None), 1_000_000.0);
        assert_eq!(get(name::VIF_TX_BPS, None), 1_000_000.0);
        assert_eq!(get(name::VIF_TX_PPS, None), 125.0);
        assert_eq!(get(name::VIF_BUDGET_BPS, None), 8e6);
        assert_eq!(get(name::VIF_BUDGET_PPS, None), 1000.0);
        assert_eq!(get(name::VIF_TX_DROPPED, Some(("reason", "police"))), 3.0);
        assert_eq!(get(name::VIF_FRONT_DROPPED, None), 7.0);
        assert_eq!(get(name::ALLOC_ROUNDS, None), 11.0);
        assert_eq!(get(name::ALLOC_LAST_COST, None), 500e-9);
        assert_eq!(get(name::SAMPLE_INTERVAL, None), 1.0);
        assert_eq!(get(name::VIF_XENBUS_STATE, None), 4.0);
        assert_eq!(get(name::VIF_SLA_PRIORITY, None), 7.0);
        assert!(samples
            .iter()
            .filter(|s| s.name.starts_with("dbavm_vif_tx_bits"))
            .all(|s| s.label("vif") == Some("vif1.0")));
    }

    #[test]
    fn parser_handles_escapes_and_rejects_garbage() {
        let s = parse_exposition("# c\nm{a=\"x\\\"y\\\\z\\n\",b=\"\"} 1.5 123\nn 2\n").unwrap();
        assert_eq!(s[0].label("a"), Some("x\"y\\z\n"));
        assert_eq!(s[0].label("b"), Some(""));
        assert_eq!(s[0].value, 1.5);
        assert_eq!(s[1].value, 2.0);
        for bad in [
            "m{a=\"x} 1",
            "m{a=x} 1",
            "m",
            "m abc",
            "m-x 1",
            "m{a=\"1\"",
            "{} 1",
        ] {
            assert!(parse_exposition(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9101/metrics").unwrap(),
            ("127.0.0.1:9101".into(), "/metrics".into())
        );
        assert_eq!(
            split_url("localhost:1").unwrap(),
            ("localhost:1".into(), "/metrics".into())
        );
        for bad in ["https://x:1/", "", "http://", "host/metrics"] {
            assert!(split_url(bad).is_err(), "{bad:?}");
        }
    }
}
