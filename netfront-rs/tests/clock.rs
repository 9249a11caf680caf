//! One clock: a netfront driven by its event loop (`netfront::pump::run`) with an
//! injected clock whose epoch is not the system's still admits exactly its credit
//! budget. The clock starts an hour ahead of `hypervisor::clock::monotonic_ns` and moves
//! only when the test moves it, one step per loop iteration; the guest's stack always
//! has another frame to send. Counting, not timing: over `PERIODS` credit periods the
//! frames put on the ring are one burst plus the rate times the simulated time, to the
//! frame. A loop that read any other clock than the driver's (as `pump` once read the
//! system's for `send_at` and its hold deadlines, while the bucket refilled on the
//! injected one) charges frames "in the past": the bucket never refills and only the
//! first burst passes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::clock::monotonic_ns;
use netback::NetbackConfig;
use netfront::{CreditPolicy, FrontStats, Netfront, NetfrontConfig};
use netport::{FrameMeta, Port};
use shared_ring::credit::Credits;
use shared_ring::Limit;
use testbed::{add_vif, frame, BackendThread, LocalNetfront};
use xen_ids::DomId;
use xen_local::LocalHost;

/// Frame length, bytes.
const LEN: u64 = 1000;
/// Rate of the budget: one frame per step.
const RATE: u64 = 1_000_000;
/// Burst of the budget: ten frames.
const BURST: u64 = 10 * LEN;
/// Simulated time per loop iteration.
const STEP_NS: u64 = 1_000_000;
/// The credit period.
const PERIOD_US: u32 = 20_000;
/// Credit periods simulated.
const PERIODS: u64 = 10;
/// Loop iterations.
const STEPS: u64 = PERIODS * PERIOD_US as u64 * 1000 / STEP_NS;

/// A clock the test moves by hand, starting an hour ahead of the system's.
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn an_hour_ahead() -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(monotonic_ns() + 3_600_000_000_000)))
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
    fn injected(&self) -> hypervisor::clock::Clock {
        let c = self.clone();
        Box::new(move || c.now())
    }
}

/// A guest stack that always has another frame to send (its descriptor stays readable)
/// and takes whatever it is given.
struct Firehose {
    frame: Vec<u8>,
    offered: u64,
    readable: (UnixStream, UnixStream),
}

impl Firehose {
    fn new() -> io::Result<Firehose> {
        let readable = UnixStream::pair()?;
        io::Write::write_all(&mut &readable.1, b"!")?;
        Ok(Firehose {
            frame: frame(0, LEN as usize),
            offered: 0,
            readable,
        })
    }
}

impl Port for Firehose {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        buf[..self.frame.len()].copy_from_slice(&self.frame);
        self.offered += 1;
        Ok(Some((self.frame.len(), FrameMeta::default())))
    }
    fn send(&mut self, _frame: &[u8], _meta: &FrameMeta) -> io::Result<()> {
        Ok(())
    }
    fn rx_fd(&self) -> BorrowedFd<'_> {
        self.readable.0.as_fd()
    }
    fn max_frame(&self) -> usize {
        65536
    }
}

/// netfront (with `policy`) on the manual clock, its budget applied as of the clock's
/// start; then `STEPS` iterations of its event loop. Netfront's counters and the frames
/// offered.
fn pump_for_steps(policy: CreditPolicy) -> (FrontStats, u64) {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let clock = ManualClock::an_hour_ahead();
    let mut cfg = NetfrontConfig::new(0);
    cfg.policy = policy;
    let platform = testbed::domain(&host, DomId(1)).expect("domain");
    let mut nf = Netfront::connect(platform, cfg, clock.injected()).expect("netfront");
    assert!(nf.has_credits());
    let budget = Credits {
        bytes: Limit::rate(RATE, BURST),
        packets: Limit::Unlimited,
        period_us: PERIOD_US,
    };
    let set = nb.call(
        move |nb| nb.set_tx_budget(id, &budget),
        Duration::from_secs(10),
    );
    assert_eq!(set.ok(), Some(true), "netback set the budget");
    await_budget(&mut nf, budget.bytes);
    let mut port = Firehose::new().expect("port");
    let mut steps = 0;
    let stop = || {
        if steps == STEPS {
            return true;
        }
        steps += 1;
        clock.advance(STEP_NS);
        false
    };
    netfront::pump::run(&mut nf, &mut port, stop).expect("pump");
    (nf.stats, port.offered)
}

/// Applies credit generations until netfront's byte limit is `bytes` (the clock stands
/// still meanwhile).
fn await_budget(nf: &mut LocalNetfront, bytes: Limit) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while nf.limits().0 != bytes {
        assert!(Instant::now() < deadline, "netfront never saw its budget");
        nf.maintain();
        nf.ack_events();
        nf.apply_credits();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Frames the budget admits over the simulated time: the burst at the first iteration
/// (the bucket is full then: the step before it earns nothing), then the rate over the
/// `STEPS - 1` steps that follow.
fn budget_frames() -> u64 {
    (BURST + RATE * (STEPS - 1) * STEP_NS / 1_000_000_000) / LEN
}

#[test]
fn drop_policy_admits_exactly_its_budget_on_an_injected_clock() {
    let (s, offered) = pump_for_steps(CreditPolicy::Drop);
    assert_eq!(budget_frames(), 10 + 199);
    assert_eq!(s.tx_packets, budget_frames(), "{s:?}");
    assert_eq!(s.tx_bytes, budget_frames() * LEN);
    // Everything else the stack offered was dropped for lack of credits.
    assert!(offered > 10 * budget_frames(), "offered only {offered}");
    assert_eq!(s.tx_dropped_credit, offered - budget_frames());
}

#[test]
fn hold_policy_admits_exactly_its_budget_on_an_injected_clock() {
    let (s, offered) = pump_for_steps(CreditPolicy::Hold);
    assert_eq!(s.tx_packets, budget_frames(), "{s:?}");
    assert_eq!(s.tx_bytes, budget_frames() * LEN);
    // Held, not dropped: the stack offered what was sent, plus the one frame held at
    // the end.
    assert_eq!(s.tx_dropped_credit, 0);
    assert!(s.tx_held > 0);
    assert_eq!(offered, budget_frames() + 1);
}
