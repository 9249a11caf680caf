//! One run: a local host, three vifs, netback (with the policy's settings) on its own
//! thread feeding the shared NIC model, three guests, then the figures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::clock::monotonic_ns;
use testbed::{LocalNetfront, Spawner};
use xen_local::LocalHost;

use crate::bed;
use crate::guest::{Guest, GuestResult, GuestSpec};
use crate::nic::{Nic, NicConfig};
use crate::port::NicFactory;
use crate::scenario::{domid, tc_police, RunSpec, BIN_NS};

use crate::outcome::show_progress;
pub use crate::outcome::RunOutcome;

/// What the guests did, with their (still connected) netfronts.
struct Traffic {
    guests: Vec<GuestResult>,
    fronts: Vec<LocalNetfront>,
    window_ns: u64,
}

/// Runs one experiment (a receive scenario: [`crate::rx::run_rx`]). `progress` receives
/// one line every half second.
pub fn run(spec: &RunSpec, progress: &mut dyn FnMut(&str)) -> Result<RunOutcome, String> {
    if spec.scenario.is_rx() {
        return crate::rx::run_rx(spec, progress);
    }
    let host = LocalHost::new();
    bed::add_vifs(&host)?;
    let nic = Arc::new(Mutex::new(Nic::new(
        NicConfig {
            line_bps: spec.line_bps(),
            queue_frames: spec.nic_queue_frames,
            bin_ns: BIN_NS,
        },
        3,
    )));
    let factory = NicFactory {
        nic: nic.clone(),
        police: (0..3).map(|vm| tc_police(spec, vm)).collect(),
        rx: None,
    };
    let mut backend = bed::start_backend(spec, &host, Spawner::Thread, factory)?;
    let traffic = (|| {
        let guests = connect_guests(spec, &host)?;
        bed::connect_and_budget(&backend, spec)?;
        drive(spec, guests, &nic, progress)
    })();
    let stopped = backend.stop().map_err(|e| e.to_string());
    let traffic = traffic?;
    let be = stopped?;
    drop(traffic.fronts);
    let nic = Arc::try_unwrap(nic)
        .map_err(|_| "NIC still shared".to_string())?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(RunOutcome {
        spec: spec.clone(),
        guests: traffic.guests,
        backend: be,
        nic,
        window_s: traffic.window_ns as f64 / 1e9,
        duration_s: spec.duration.as_nanos() as f64 / 1e9,
    })
}

/// The three guests, connected and waiting for the start.
fn connect_guests(spec: &RunSpec, host: &LocalHost) -> Result<Vec<Guest>, String> {
    let dur_ns = spec.duration.as_nanos() as u64;
    (0..3)
        .map(|vm| {
            let platform =
                testbed::domain(host, domid(vm)).map_err(|e| format!("VM{}: {e}", vm + 1))?;
            let gs = GuestSpec {
                vm,
                frame_len: spec.scenario.packet_bytes(vm),
                offered_line_bps: spec.line_bps(),
                queue_frames: spec.guest_queue_frames,
                netfront: bed::netfront_config(spec),
                active: activity(spec, vm, dur_ns),
                nice: spec.guest_nice,
            };
            Guest::connect(platform, gs)
        })
        .collect()
}

/// Starts everyone together, reports progress until the end, collects the guests and
/// lets what is on the rings reach the NIC.
fn drive(
    spec: &RunSpec,
    guests: Vec<Guest>,
    nic: &Mutex<Nic>,
    progress: &mut dyn FnMut(&str),
) -> Result<Traffic, String> {
    let dur_ns = spec.duration.as_nanos() as u64;
    let t0 = monotonic_ns() + 20_000_000;
    let end = t0 + dur_ns;
    let w0 = t0 + spec.warmup.as_nanos() as u64;
    {
        let mut n = nic.lock().unwrap();
        n.t0_ns = t0;
        n.window = (w0, end);
    }
    for g in &guests {
        g.start(t0, end);
    }
    let read = || {
        let n = nic.lock().unwrap();
        [n.sinks[0].bytes, n.sinks[1].bytes, n.sinks[2].bytes]
    };
    show_progress(&read, t0, end, progress);
    let mut results = Vec::new();
    let mut fronts = Vec::new();
    let mut err = None;
    for g in guests {
        match g.join() {
            Ok((r, nf)) => {
                results.push(r);
                fronts.push(nf);
            }
            Err(e) => err = Some(e),
        }
    }
    // Let what is on the rings reach the NIC.
    std::thread::sleep(Duration::from_millis(100));
    match err {
        Some(e) => Err(e),
        None => Ok(Traffic {
            guests: results,
            fronts,
            window_ns: end - w0,
        }),
    }
}

/// When VM `vm` offers traffic (ns intervals relative to the start).
fn activity(spec: &RunSpec, vm: usize, dur_ns: u64) -> Vec<(u64, u64)> {
    if spec.scenario.active(vm, 0.5) {
        vec![(0, dur_ns)]
    } else {
        vec![(0, dur_ns / 3), (2 * dur_ns / 3, dur_ns)]
    }
}
