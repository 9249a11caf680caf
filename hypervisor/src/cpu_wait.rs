//! Tokens a driver's bucket must not lose while the driver's own thread waited for a CPU.
//!
//! A frontend that honours its credits puts frames on its ring at its budget's pace. If
//! the thread serving the ring (netback's worker) is kept off the CPU (runnable, not
//! running: an overcommitted driver domain), it finds them all at once when it runs
//! again, and the backstop — a token bucket whose bank stops at its burst — would have
//! lost the tokens of the wait and refuse frames the frontend was entitled to. Before charging a batch,
//! if the backstop is about to lose tokens at its burst, the queue asks how long its
//! thread waited for a CPU since it last looked ([`RunDelay`]) and keeps that much of
//! the earned tokens beyond the burst for this batch
//! ([`SharedDualBucket::refill_stalled`]). Only time that passed is credited, so a
//! frontend still gets no more than its budget × time plus the burst over any run;
//! time the worker slept (nothing to do) is not run delay and is clamped as before.
//!
//! The run delay is read (one `pread`) only when tokens are about to be lost, and
//! otherwise at most every [`MARK_EVERY_NS`] while the queue is polled under a limit,
//! so that the wait measured is the recent one.

use shared_ring::bucket::Limit;
use shared_ring::shared_bucket::SharedDualBucket;

/// How long the calling thread has waited for a CPU while runnable, in nanoseconds,
/// cumulative (it only grows): the time the drivers' buckets must not count against a
/// guest when work waited on a ring while the driver's thread was kept off the CPU
/// (`shared_ring::SharedDualBucket::refill_stalled`). Injected like the [`crate::clock::Clock`];
/// `Clone` so that every worker thread gets one (each reads its own thread's delay).
#[derive(Clone)]
pub struct RunDelay(std::sync::Arc<dyn Fn() -> u64 + Send + Sync>);

impl RunDelay {
    /// The kernel's count for the calling thread ([`thread_run_delay_ns`]).
    pub fn system() -> Self {
        RunDelay(std::sync::Arc::new(thread_run_delay_ns))
    }

    /// A source of the caller's choosing (tests: a counter they move).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        RunDelay(std::sync::Arc::new(f))
    }

    /// The calling thread's cumulative run delay, ns.
    pub fn read(&self) -> u64 {
        (self.0)()
    }
}

impl Default for RunDelay {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for RunDelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunDelay")
    }
}

/// The calling thread's cumulative time runnable but not running, ns: the second field
/// of `/proc/thread-self/schedstat` (kernels with `CONFIG_SCHED_INFO`). The file is
/// opened once per thread and read with one `pread`; 0 when the kernel does not keep
/// the count (the drivers then lose a stall's tokens, as a plain bucket does).
pub fn thread_run_delay_ns() -> u64 {
    use std::cell::RefCell;
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    thread_local! {
        static SCHEDSTAT: RefCell<Option<Option<File>>> = const { RefCell::new(None) };
    }
    SCHEDSTAT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let file = cell.get_or_insert_with(|| File::open("/proc/thread-self/schedstat").ok());
        let Some(file) = file else { return 0 };
        let mut buf = [0u8; 96];
        match file.read_at(&mut buf, 0) {
            Ok(n) => parse_schedstat(&buf[..n]).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// The run delay (second field) of a `schedstat` line: `<run ns> <wait ns> <slices>`.
fn parse_schedstat(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line)
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// How often a polled queue re-reads its thread's run delay when nothing is lost: the
/// most a wait measured at a loss can reach back before the previous poll.
pub const MARK_EVERY_NS: u64 = 1_000_000;

/// One queue's view of its thread's waits for a CPU.
#[derive(Debug, Default)]
pub struct CpuWait {
    source: Option<RunDelay>,
    /// The thread's run delay when last read, and when (netback's clock).
    mark: Option<(u64, u64)>,
}

impl CpuWait {
    /// Reads the waits of the polling thread from `source` (`None`: never credited).
    /// Called on that thread (the worker that polls the queue), which it reads at once:
    /// the first batch after a wait already has something to compare with.
    pub fn set_source(&mut self, source: Option<RunDelay>) {
        self.mark = source.as_ref().map(|s| (s.read(), 0));
        self.source = source;
    }

    /// Before a batch is charged to `bucket` at `now_ns`: keeps the tokens of the time
    /// this thread waited for a CPU since its last look, if the bucket would lose them.
    /// Returns the wait credited, ns.
    pub fn credit(&mut self, bucket: &SharedDualBucket, now_ns: u64) -> u64 {
        let Some(source) = &self.source else { return 0 };
        if bucket.limits() == (Limit::Unlimited, Limit::Unlimited) {
            return 0;
        }
        let overflow = bucket.would_overflow(now_ns);
        match self.mark {
            Some((_, at)) if !overflow && now_ns.saturating_sub(at) < MARK_EVERY_NS => 0,
            Some((before, _)) if overflow => {
                let delay = source.read();
                let waited = delay.saturating_sub(before);
                bucket.refill_stalled(now_ns, waited);
                self.mark = Some((delay, now_ns));
                waited
            }
            // The first look (nothing to compare with) and the periodic re-read.
            _ => {
                self.mark = Some((source.read(), now_ns));
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    const MS: u64 = 1_000_000;

    fn manual() -> (Arc<AtomicU64>, RunDelay) {
        let d = Arc::new(AtomicU64::new(0));
        let r = d.clone();
        (d, RunDelay::from_fn(move || r.load(Ordering::Relaxed)))
    }

    #[test]
    fn only_the_wait_since_the_last_look_is_credited_and_only_on_a_loss() {
        // 1000 packets/s, burst 10.
        let b = SharedDualBucket::new(Limit::Unlimited, Limit::rate(1000, 10), 0);
        let (delay, source) = manual();
        let mut w = CpuWait::default();
        w.set_source(Some(source));
        assert_eq!(b.charge(0, 0, 10), Ok(()));
        // 100 ms later, 70 of them spent waiting for a CPU: 10 + 70 tokens.
        delay.store(70 * MS, Ordering::Relaxed);
        assert_eq!(w.credit(&b, 100 * MS), 70 * MS);
        assert_eq!(b.packets.available(100 * MS), 80);
        // Already looked: the same wait is not credited twice.
        assert_eq!(b.charge(100 * MS, 0, 80), Ok(()));
        assert_eq!(w.credit(&b, 200 * MS), 0);
        assert_eq!(b.packets.available(200 * MS), 10);
    }

    #[test]
    fn no_source_or_no_limit_credits_nothing() {
        let b = SharedDualBucket::new(Limit::Unlimited, Limit::rate(1000, 10), 0);
        let mut w = CpuWait::default();
        assert_eq!(w.credit(&b, 100 * MS), 0);
        let (delay, source) = manual();
        let u = SharedDualBucket::unlimited(0);
        w.set_source(Some(source));
        delay.store(50 * MS, Ordering::Relaxed);
        assert_eq!(w.credit(&u, 100 * MS), 0);
        assert_eq!(
            w.mark,
            Some((0, 0)),
            "an unlimited backstop never reads the delay"
        );
    }

    #[test]
    fn schedstat_lines_parse_and_junk_does_not() {
        assert_eq!(parse_schedstat(b"535342 1200 1\n"), Some(1200));
        assert_eq!(parse_schedstat(b"535342"), None);
        assert_eq!(parse_schedstat(b"1 x 2"), None);
        assert_eq!(parse_schedstat(&[0xff, b' ', b'1']), None);
    }

    #[test]
    fn a_thread_that_waits_for_a_cpu_sees_its_run_delay_grow() {
        if std::fs::metadata("/proc/thread-self/schedstat").is_err() {
            eprintln!("skipped: this kernel keeps no /proc/thread-self/schedstat");
            return;
        }
        // More busy threads than CPUs for a while: some of them wait for a CPU.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let delays: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..cpus * 3)
                .map(|_| {
                    s.spawn(|| {
                        let start = thread_run_delay_ns();
                        let t = Instant::now();
                        while t.elapsed() < std::time::Duration::from_millis(200) {
                            std::hint::spin_loop();
                        }
                        thread_run_delay_ns() - start
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(delays.iter().any(|&d| d > 0), "run delays {delays:?}");
    }
}
