//! One guest: a thread playing "iperf + the guest kernel's qdisc + netfront". It offers
//! frames at a fixed line rate (timestamped at their scheduled time), keeps them in a
//! bounded guest queue (like `txqueuelen`), and moves them onto the netfront TX ring as
//! the ring and the credits allow: `drop` loses what is over budget at once, `hold` and a
//! full ring leave frames in the queue, which overflows (guest drops) when full.
//!
//! If the machine cannot keep up with the schedule (more than [`MAX_LAG_NS`] behind), the
//! frames it could not even generate are counted as `skipped`, not as offered.

use std::collections::VecDeque;
use std::sync::mpsc;

use hypervisor::clock::monotonic_ns;
use netfront::{FrontStats, NetfrontConfig, Sent};
use netport::FrameMeta;
use testbed::{thread_cpu_ns, GuestOptions, GuestThread, LocalNetfront, Spawner};
use xen_local::LocalPlatform;

use crate::clock::sleep_until;
use crate::frame;
use crate::pace::{add_to_bin, Pacer};
use crate::scenario::BIN_NS;

pub use crate::pace::MAX_LAG_NS;

/// One guest's traffic.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// VM index (0-based; domid = vm + 1).
    pub vm: usize,
    /// Frame length.
    pub frame_len: usize,
    /// Offered line rate, bits/s on the wire (frames back to back at this rate).
    pub offered_line_bps: u64,
    /// Guest queue length, frames.
    pub queue_frames: usize,
    /// netfront settings.
    pub netfront: NetfrontConfig,
    /// Intervals (ns after the start) during which the guest offers traffic.
    pub active: Vec<(u64, u64)>,
    /// Nice value of the guest thread ([`RunSpec::guest_nice`](crate::scenario::RunSpec)).
    pub nice: i32,
}

/// What a guest did.
#[derive(Debug, Clone, Default)]
pub struct GuestResult {
    /// Frames the generator offered (scheduled and generated).
    pub offered_frames: u64,
    /// Their bytes.
    pub offered_bytes: u64,
    /// Frames the generator could not produce in time (machine too slow; not offered).
    pub skipped_frames: u64,
    /// Frames dropped because the guest queue was full.
    pub dropped_queue: u64,
    /// Frames left in the guest queue at the end.
    pub left_in_queue: u64,
    /// netfront counters.
    pub front: FrontStats,
    /// CPU time of the guest thread while it generated traffic, ns.
    pub cpu_ns: u64,
    /// Offered frames per bin (same bins as the NIC's).
    pub offered_bins: Vec<u64>,
    /// Receive scenarios: the RX budget netback told the guest (credit area version 2)
    /// at the end of the run; `None` on TX or without a credit area.
    pub rx_budget: Option<shared_ring::credit::Credits>,
}

/// A running guest thread.
pub struct Guest {
    // Declared first, dropped first: a guest waiting for its start sees the run abort.
    start_tx: mpsc::Sender<(u64, u64)>,
    thread: GuestThread<Result<GuestResult, String>>,
}

impl Guest {
    /// Connects netfront in domain `vm + 1` (on its own thread) and waits for the
    /// handshake; the thread then waits for [`Guest::start`].
    pub fn connect(platform: LocalPlatform, spec: GuestSpec) -> Result<Guest, String> {
        let (start_tx, start_rx) = mpsc::channel::<(u64, u64)>();
        let vm = spec.vm;
        let opts = GuestOptions {
            name: format!("guest-vm{}", vm + 1),
            ..GuestOptions::default()
        };
        let cfg = spec.netfront.clone();
        let thread = GuestThread::spawn(Spawner::Thread, platform, cfg, opts, move |nf, _| {
            if spec.nice != 0 {
                set_thread_nice(spec.nice);
            }
            let (t0, end) = start_rx
                .recv()
                .map_err(|_| "run aborted before start".to_string())?;
            generate(nf, &spec, t0, end)
        })
        .map_err(|e| format!("VM{}: {e}", vm + 1))?;
        Ok(Guest { start_tx, thread })
    }

    /// Starts offering traffic at `t0_ns` until `end_ns`.
    pub fn start(&self, t0_ns: u64, end_ns: u64) {
        let _ = self.start_tx.send((t0_ns, end_ns));
    }

    /// Waits for the end of the traffic; returns the results and the (still connected)
    /// netfront, to be dropped once the backend has stopped.
    pub fn join(self) -> Result<(GuestResult, LocalNetfront), String> {
        let exit = self.thread.join().map_err(|e| e.to_string())?;
        Ok((exit.value?, exit.netfront))
    }
}

/// Sets the calling thread's nice value (Linux: per thread). Raising it needs no
/// privilege; a failure (e.g. a negative value without CAP_SYS_NICE) is reported and the
/// run goes on at the inherited priority.
pub(crate) fn set_thread_nice(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        eprintln!("bench: cannot set the guest threads' nice to {nice}: {e}");
    }
}

fn generate(
    nf: &mut LocalNetfront,
    spec: &GuestSpec,
    t0: u64,
    end: u64,
) -> Result<GuestResult, String> {
    let cpu0 = thread_cpu_ns();
    let active_abs: Vec<(u64, u64)> = spec.active.iter().map(|&(a, b)| (t0 + a, t0 + b)).collect();
    let mut r = GuestResult::default();
    let mut q: VecDeque<u64> = VecDeque::with_capacity(spec.queue_frames);
    let mut buf = frame::template(spec.vm as u8, spec.frame_len);
    let meta = FrameMeta::default();
    let vm = spec.vm as u8;
    let mut seq = 0u64;
    sleep_until(t0);
    let mut pacer = Pacer::new(t0, spec.frame_len, spec.offered_line_bps);
    let mut hold_until: Option<u64> = None;
    let mut iter = 0u64;
    loop {
        let now = monotonic_ns();
        if now >= end {
            break;
        }
        iter += 1;
        if iter % 64 == 0 {
            nf.maintain();
            nf.ack_events();
        }
        nf.apply_credits();
        nf.reap_tx().map_err(|e| format!("VM{}: {e}", vm + 1))?;
        // Offer what is due.
        let active = active_abs.iter().any(|&(a, b)| now >= a && now < b);
        let due = if active { pacer.due(now) } else { 0 };
        if !active {
            pacer.pause(now);
        } else if due > 0 {
            let room = (spec.queue_frames - q.len()) as u64;
            let take = due.min(room);
            // Timestamped when generated (like iperf's send time): time spent behind
            // schedule because the machine was busy is not counted as network delay.
            for _ in 0..take {
                q.push_back(now);
            }
            r.dropped_queue += due - take;
            r.offered_frames += due;
            r.offered_bytes += due * spec.frame_len as u64;
            add_to_bin(&mut r.offered_bins, t0, now, BIN_NS, due);
        }
        // Queue → ring.
        let mut ring_full = false;
        if hold_until.is_some_and(|t| now < t) {
            // Still held.
        } else {
            hold_until = None;
            let mut since_flush = 0;
            while let Some(&ts) = q.front() {
                frame::encode(&mut buf, vm, seq, ts);
                match nf.send_at(now, &buf, &meta) {
                    Ok(Sent::Queued) => {
                        q.pop_front();
                        seq += 1;
                        since_flush += 1;
                        if since_flush >= 32 {
                            let _ = nf.flush();
                            since_flush = 0;
                        }
                    }
                    Ok(Sent::Dropped) | Ok(Sent::TooBig) => {
                        q.pop_front();
                        seq += 1;
                    }
                    Ok(Sent::Held(t)) => {
                        hold_until = Some(t);
                        break;
                    }
                    Ok(Sent::RingFull) => {
                        ring_full = true;
                        break;
                    }
                    Err(e) => return Err(format!("VM{}: send: {e}", vm + 1)),
                }
            }
            let _ = nf.flush();
        }
        // Sleep until there is something to do.
        let now = monotonic_ns();
        let mut wake = end;
        if active {
            wake = wake.min(pacer.next_ns());
        } else if let Some(&(a, _)) = active_abs.iter().find(|&&(a, _)| a > now) {
            wake = wake.min(a);
        }
        if let Some(t) = hold_until {
            wake = wake.min(t);
        }
        if ring_full {
            wake = wake.min(now + 20_000);
        }
        if wake > now + 20_000 {
            sleep_until(wake.min(now + 1_000_000));
        } else if wake > now {
            std::thread::yield_now();
        }
    }
    r.skipped_frames = pacer.skipped;
    r.left_in_queue = q.len() as u64;
    r.front = nf.stats;
    r.cpu_ns = thread_cpu_ns() - cpu0;
    Ok(r)
}
