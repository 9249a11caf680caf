//! The receive scenarios (`rx-1500`, `rx-mixed`): the paper's set-up mirrored, with the
//! three VMs receiving instead of sending.
//!
//! The NIC model's receive side has one flow per VM (from the remote hosts), each
//! offering frames back to back at line rate ([`crate::pace`]), timestamped like the
//! guests' TX frames; one sender thread at netback's priority drives the three flows. Each flow goes into its vif's queue in dom0 (a bounded queue of
//! [`RunSpec::nic_queue_frames`], tail drop: the NIC's receive ring and the bridge port's
//! queue in one), which netback reads; netback grant-copies what it admits into the
//! guest's posted buffers, and the guest (a real netfront on its own thread) receives it,
//! counting each frame with its one-way delay (sender → guest) in a [`VmSink`].
//!
//! Where each policy acts:
//! * `native`: nothing limits what a guest receives;
//! * `tc`: a bytes-only policer per vif at the SLA ([`tc_police`]) acting **after** the
//!   grant copy: every frame is copied into the guest, then the policer drops what is
//!   over the rate (counted in `dropped_police`). This is where an ingress policer
//!   inside the guest acts; a policer on the vif in dom0 (egress of `vifN.0`) would drop
//!   before netback read the frame. It stands for the "police after the copy" that the
//!   TX `tc` policy shows, so that the copies it wastes are measured;
//! * `dba-drop`: netback's RX budget, from the allocator's receive round on the same SLAs
//!   (`rx-*` keys, [`crate::scenario::sla_file`]), charged **before** the copy: frames
//!   over it are dropped and never copied (`docs/allocator.md` §15).
//!
//! The frames a guest received are the ones netback copied minus the ones a policer
//! dropped after the copy; what netback copied is its `rx_bytes` counter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::clock::monotonic_ns;
use netport::{FrameMeta, MemPort, Port};
use shared_ring::credit::Credits;
use testbed::{GuestOptions, GuestThread, LocalNetfront, Spawner};
use xen_local::LocalHost;

use crate::bed;
use crate::clock::sleep_until;
use crate::frame;
use crate::guest::GuestResult;
use crate::nic::{Nic, NicConfig, VmSink};
use crate::outcome::{show_progress, RunOutcome};
use crate::pace::{add_to_bin, Pacer};
use crate::port::{NicFactory, Police, RxWires};
use crate::scenario::{domid, tc_police, RunSpec, BIN_NS};

/// How long the queues get to drain after the senders stop, before the guests stop
/// counting.
const DRAIN: Duration = Duration::from_millis(200);

/// What one VM's sender offered.
#[derive(Debug, Default)]
struct Offered {
    frames: u64,
    bytes: u64,
    skipped: u64,
    bins: Vec<u64>,
    /// Frames the vif's queue dropped because it was full.
    dropped_queue: u64,
}

/// What one guest received.
struct Received {
    sink: VmSink,
    /// Its RX budget as netback told it (credit area version 2), at the end.
    rx_budget: Option<Credits>,
}

/// The times of a run: start, measurement window.
#[derive(Clone, Copy)]
struct Times {
    t0: u64,
    window: (u64, u64),
}

/// Runs one receive experiment (`spec.scenario` is an RX scenario).
pub fn run_rx(spec: &RunSpec, progress: &mut dyn FnMut(&str)) -> Result<RunOutcome, String> {
    let host = LocalHost::new();
    bed::add_vifs(&host)?;
    let nic_cfg = NicConfig {
        line_bps: spec.line_bps(),
        queue_frames: spec.nic_queue_frames,
        bin_ns: BIN_NS,
    };
    let wires = RxWires::new(spec.nic_queue_frames);
    let factory = NicFactory {
        nic: Arc::new(Mutex::new(Nic::new(nic_cfg, 3))),
        police: vec![None; 3],
        rx: Some(wires.clone()),
    };
    let mut backend = bed::start_backend(spec, &host, Spawner::Thread, factory)?;
    let live: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let traffic = (|| {
        let guests = connect_receivers(spec, &host, &live)?;
        bed::connect_and_budget(&backend, spec)?;
        let ends = (0..3)
            .map(|vm| wires.take(vm, Duration::from_secs(10)))
            .collect::<Result<Vec<_>, _>>()?;
        drive(spec, guests, ends, &live, progress)
    })();
    let stopped = backend.stop().map_err(|e| e.to_string());
    let (offered, received, window_ns) = traffic?;
    let be = stopped?;
    let mut nic = Nic::new(nic_cfg, 3);
    let mut guests = Vec::new();
    for (vm, (o, (r, cpu_ns, front))) in offered.into_iter().zip(received).enumerate() {
        nic.sinks[vm] = r.sink;
        nic.sinks[vm].dropped_nic = o.dropped_queue;
        guests.push(GuestResult {
            offered_frames: o.frames,
            offered_bytes: o.bytes,
            skipped_frames: o.skipped,
            front,
            cpu_ns,
            offered_bins: o.bins,
            rx_budget: r.rx_budget,
            ..GuestResult::default()
        });
    }
    Ok(RunOutcome {
        spec: spec.clone(),
        guests,
        backend: be,
        nic,
        window_s: window_ns as f64 / 1e9,
        duration_s: spec.duration.as_nanos() as f64 / 1e9,
    })
}

type Receiver = GuestThread<Result<Received, String>>;
type ReceiverExit = (Received, u64, netfront::FrontStats);

/// The three guests, connected, each waiting for the run's times to start counting.
fn connect_receivers(
    spec: &RunSpec,
    host: &LocalHost,
    live: &Arc<[AtomicU64; 3]>,
) -> Result<Vec<(mpsc::Sender<Times>, Receiver)>, String> {
    (0..3)
        .map(|vm| {
            let platform =
                testbed::domain(host, domid(vm)).map_err(|e| format!("VM{}: {e}", vm + 1))?;
            let (tx, rx) = mpsc::channel::<Times>();
            let police = tc_police(spec, vm);
            let nice = spec.guest_nice;
            let live = live.clone();
            let opts = GuestOptions {
                name: format!("guest-vm{}-rx", vm + 1),
                ..GuestOptions::default()
            };
            let t = GuestThread::spawn(
                Spawner::Thread,
                platform,
                bed::netfront_config(spec),
                opts,
                move |nf, stop| {
                    if nice != 0 {
                        crate::guest::set_thread_nice(nice);
                    }
                    let times = rx.recv().map_err(|_| "run aborted before start")?;
                    receive(nf, stop, times, police, &live[vm])
                },
            )
            .map_err(|e| format!("VM{}: {e}", vm + 1))?;
            Ok((tx, t))
        })
        .collect()
}

/// Starts the guests' counting and the senders together, reports progress, and once
/// the senders are done and the queues drained, stops the guests.
fn drive(
    spec: &RunSpec,
    guests: Vec<(mpsc::Sender<Times>, Receiver)>,
    ends: Vec<MemPort>,
    live: &[AtomicU64; 3],
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<Offered>, Vec<ReceiverExit>, u64), String> {
    let t0 = monotonic_ns() + 20_000_000;
    let end = t0 + spec.duration.as_nanos() as u64;
    let w0 = t0 + spec.warmup.as_nanos() as u64;
    let times = Times {
        t0,
        window: (w0, end),
    };
    for (start, _) in &guests {
        let _ = start.send(times);
    }
    let flows: Vec<Flow> = ends
        .into_iter()
        .enumerate()
        .map(|(vm, wire)| {
            Flow::new(
                wire,
                vm,
                spec.scenario.packet_bytes(vm),
                spec.line_bps(),
                t0,
            )
        })
        .collect();
    let sender = std::thread::Builder::new()
        .name("nic-rx".into())
        .spawn(move || send_flows(flows, t0, end))
        .map_err(|e| format!("sender thread: {e}"))?;
    let read = || [0, 1, 2].map(|i| live[i].load(Ordering::Relaxed));
    show_progress(&read, t0, end, progress);
    let flows = sender
        .join()
        .map_err(|_| "the sender thread panicked".to_string())??;
    std::thread::sleep(DRAIN);
    let mut received = Vec::new();
    for (_, g) in guests {
        let exit = g.finish().map_err(|e| e.to_string())?;
        received.push((exit.value?, exit.cpu_ns, exit.netfront.stats));
    }
    let offered = flows.into_iter().map(Flow::finish).collect();
    Ok((offered, received, end - w0))
}

/// One VM's flow from the NIC model: frames of one length back to back at line rate
/// into the vif's queue.
struct Flow {
    wire: MemPort,
    vm: u8,
    frame: Vec<u8>,
    pacer: Pacer,
    offered: Offered,
}

impl Flow {
    fn new(wire: MemPort, vm: usize, len: usize, line_bps: u64, t0: u64) -> Flow {
        Flow {
            wire,
            vm: vm as u8,
            frame: frame::template(vm as u8, len),
            pacer: Pacer::new(t0, len, line_bps),
            offered: Offered::default(),
        }
    }

    /// Sends the frames due at `now` (timestamped `now`).
    fn send_due(&mut self, t0: u64, now: u64) -> Result<(), String> {
        let due = self.pacer.due(now);
        let meta = FrameMeta::default();
        for _ in 0..due {
            frame::encode(&mut self.frame, self.vm, self.offered.frames, now);
            self.wire
                .send(&self.frame, &meta)
                .map_err(|e| format!("VM{}: NIC queue: {e}", self.vm + 1))?;
            self.offered.frames += 1;
        }
        self.offered.bytes += due * self.frame.len() as u64;
        add_to_bin(&mut self.offered.bins, t0, now, BIN_NS, due);
        Ok(())
    }

    /// What the flow offered; its end of the queue closes.
    fn finish(self) -> Offered {
        let mut o = self.offered;
        o.skipped = self.pacer.skipped;
        o.dropped_queue = self.wire.stats().dropped_full;
        o
    }
}

/// The NIC model's senders, one thread for the three flows, from `t0` to `end`. It
/// runs at netback's priority, not the guests' (the senders stand for remote hosts,
/// which do not share this machine's cores; one thread rather than three keeps them
/// from being descheduled, each on its own, while netback runs). Returns the flows,
/// whose ends of the queues stay open until the guests stopped counting.
fn send_flows(mut flows: Vec<Flow>, t0: u64, end: u64) -> Result<Vec<Flow>, String> {
    sleep_until(t0);
    loop {
        let now = monotonic_ns();
        if now >= end {
            break;
        }
        for f in &mut flows {
            f.send_due(t0, now)?;
        }
        let next = flows
            .iter()
            .map(|f| f.pacer.next_ns())
            .min()
            .unwrap_or(end)
            .min(end);
        let now = monotonic_ns();
        if next > now + 20_000 {
            sleep_until(next.min(now + 1_000_000));
        } else {
            std::thread::yield_now();
        }
    }
    Ok(flows)
}

/// The guest: receives every frame netfront hands over, passes it through the policer
/// after the copy (`tc`), and counts what passes. After `stop`, drains what is left.
fn receive(
    nf: &mut LocalNetfront,
    stop: &AtomicBool,
    times: Times,
    mut police: Option<Police>,
    live: &AtomicU64,
) -> Result<Received, String> {
    let mut sink = VmSink::new();
    let mut buf = vec![0u8; 65536];
    let mut idle_after_stop = 0;
    let mut last_maintain = 0u64;
    loop {
        let got = nf
            .recv(&mut buf)
            .map_err(|e| format!("netfront recv: {e}"))?;
        let now = monotonic_ns();
        if let Some((len, _)) = got {
            let frame = &buf[..len];
            if police.as_mut().is_some_and(|p| !p.conform(now, len as u64)) {
                sink.dropped_police += 1;
            } else {
                sink.record(now, frame, times.t0, times.window, BIN_NS);
                live.fetch_add(len as u64, Ordering::Relaxed);
            }
            idle_after_stop = 0;
            continue;
        }
        if nf.rx_unarmed() {
            continue;
        }
        nf.ack_events();
        if now.saturating_sub(last_maintain) > 10_000_000 {
            nf.maintain();
            last_maintain = now;
        }
        if stop.load(Ordering::Relaxed) {
            // Nothing more comes once the queues are empty: three empty looks 5 ms apart.
            idle_after_stop += 1;
            if idle_after_stop >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    nf.apply_credits();
    Ok(Received {
        sink,
        rx_budget: nf.allowance.rx,
    })
}
