//! The per-vif bucket shared by a multi-queue frontend's threads: N threads spending
//! concurrently never get more than `rate × t + burst` (bytes and packets), counted
//! exactly, and an honest spender is not starved of what it earned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

use proptest::prelude::*;
use shared_ring::bucket::NANOS_PER_SEC;
use shared_ring::{Limit, SharedDualBucket, TokenBucket};

/// A small deterministic generator per thread (no shared state between threads).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn bound(per_sec: u64, burst: u64, t_ns: u64) -> u128 {
    per_sec as u128 * t_ns as u128 / NANOS_PER_SEC as u128 + burst as u128
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Threads read a clock that they themselves move forward (each charge may come
    /// with a stale reading, as on a real machine) and spend as fast as they can.
    #[test]
    fn threads_racing_never_exceed_rate_times_time_plus_burst(
        threads in 2usize..5,
        bps in 1_000u64..2_000_000_000,
        bburst in 1_500u64..200_000,
        pps in 100u64..2_000_000,
        pburst in 1u64..200,
        seed in any::<u64>(),
    ) {
        let bucket = SharedDualBucket::new(Limit::rate(bps, bburst), Limit::rate(pps, pburst), 0);
        let clock = AtomicU64::new(0);
        let (bytes, packets) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            for t in 0..threads {
                let (bucket, clock, bytes, packets) = (&bucket, &clock, &bytes, &packets);
                s.spawn(move || {
                    let mut rng = Lcg(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9));
                    for _ in 0..4000 {
                        let now = clock.fetch_add(rng.next(20_000), Ordering::AcqRel);
                        let (b, p) = (1 + rng.next(1500), 1 + rng.next(3));
                        if bucket.charge(now, b, p).is_ok() {
                            bytes.fetch_add(b, Ordering::Relaxed);
                            packets.fetch_add(p, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let t = clock.load(Ordering::Acquire);
        prop_assert!(bytes.load(Ordering::Relaxed) as u128 <= bound(bps, bburst, t));
        prop_assert!(packets.load(Ordering::Relaxed) as u128 <= bound(pps, pburst, t));
    }

    /// Rounds: the clock is set, then every thread spends until refused. After each
    /// round the total spent is within the bound, and short of it by less than one
    /// frame (nothing earned is lost to the race).
    #[test]
    fn rounds_spend_exactly_what_was_earned(
        threads in 2usize..5,
        bps in 100_000u64..1_000_000_000,
        bburst in 1_500u64..100_000,
        seed in any::<u64>(),
    ) {
        let bucket = SharedDualBucket::new(Limit::rate(bps, bburst), Limit::Unlimited, 0);
        let clock = AtomicU64::new(0);
        let spent = AtomicU64::new(0);
        let barrier = Barrier::new(threads + 1);
        let rounds = 40;
        let max_cost = 1500u64;
        // (time, spent, left in the bank) after each round, checked once every thread is done (a
        // failed check inside the rounds would leave the threads at the barrier).
        let mut seen = Vec::with_capacity(rounds);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (bucket, clock, spent, barrier) = (&bucket, &clock, &spent, &barrier);
                s.spawn(move || {
                    let mut rng = Lcg(seed ^ (t as u64 + 7));
                    for _ in 0..rounds {
                        barrier.wait();
                        let now = clock.load(Ordering::Acquire);
                        let mut refused = 0;
                        while refused < 8 {
                            let b = 1 + rng.next(max_cost);
                            if bucket.charge(now, b, 1).is_ok() {
                                spent.fetch_add(b, Ordering::Relaxed);
                            } else {
                                refused += 1;
                            }
                        }
                        barrier.wait();
                    }
                });
            }
            let mut rng = Lcg(seed);
            for _ in 0..rounds {
                clock.fetch_add(rng.next(5_000_000), Ordering::AcqRel);
                barrier.wait();
                barrier.wait();
                let t = clock.load(Ordering::Acquire);
                // The clock stands still until the next round: no refill in between.
                let left = bucket.bytes.available(t);
                seen.push((t, spent.load(Ordering::Relaxed), left));
            }
        });
        // A single-threaded reference bucket (exact fractions) fed the same rounds: what
        // the threads spent plus what is left equals what it had, less the sub-token
        // rounding of one refill per round.
        let mut reference = TokenBucket::new(Limit::rate(bps, bburst), 0);
        let mut before = 0;
        for (r, &(t, total, left)) in seen.iter().enumerate() {
            prop_assert!(total as u128 <= bound(bps, bburst, t), "round {r}: over the bound");
            let had = reference.available(t);
            let spent = total - before;
            before = total;
            // At most one token more than the reference: a reference that reaches its
            // burst drops its fraction of a token, where the shared bucket, one token short
            // of the burst (its carried time loses under a nanosecond per refill), keeps
            // it and credits it a round later. The bound above holds either way.
            prop_assert!(spent + left <= had + 1, "round {r}: {spent} + {left} > {had} + 1");
            prop_assert!(spent + left + r as u64 + 1 >= had, "round {r}: {spent} + {left} << {had}");
            prop_assert!(left < max_cost, "round {r}: {left} left unspent");
            reference.charge(t, had - left).expect("the reference had it");
        }
    }

    /// Refills that keep a stall's tokens beyond the burst, with stalls of any length
    /// (even longer than the time that passed): the bucket never hands out more than its
    /// first bank plus `rate × time`.
    #[test]
    fn stalls_never_add_tokens_beyond_rate_times_time(
        per_sec in 1_000u64..2_000_000_000,
        burst in 1u64..200_000,
        seed in any::<u64>(),
    ) {
        let bucket = SharedDualBucket::new(Limit::rate(per_sec, burst), Limit::Unlimited, 0);
        let mut rng = Lcg(seed);
        let (mut now, mut spent) = (0u64, 0u128);
        for _ in 0..4000 {
            now += rng.next(5_000_000);
            if rng.next(4) == 0 {
                bucket.refill_stalled(now, rng.next(20_000_000));
            }
            let cost = 1 + rng.next(burst.max(2));
            while bucket.charge(now, cost, 1).is_ok() {
                spent += cost as u128;
            }
            prop_assert!(spent <= bound(per_sec, burst, now), "spent {spent} by {now} ns");
        }
    }
}
