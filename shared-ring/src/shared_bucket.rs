//! A dual token bucket shared, lock-free, by the threads of a multi-queue frontend:
//! one per-vif budget (`docs/protocol.md` §2.7) however many queues spend it.
//!
//! Each bucket is two atomic words — the whole tokens banked and the time up to which
//! tokens have been credited — plus its limit. Whichever thread sees time pass credits
//! the tokens earned: it computes the whole tokens earned since `last_ns`, moves
//! `last_ns` forward by the time those tokens took (rounded up to the nanosecond, so the
//! sub-token remainder stays for the next refill) with a compare-and-swap, and only the
//! winner of that swap adds them. Spending is a compare-and-swap on the bank that never
//! takes it below zero. So every token is credited at most once, for time that passed
//! once, and for every window of length `w` the threads together spend at most
//! `rate × w + burst` (`shared-ring/tests/shared_bucket_props.rs` counts it exactly).
//!
//! Charging the [`SharedDualBucket`] is all-or-nothing: bytes are taken first, then
//! packets; when the packets are refused the bytes go back (capped at the burst: a
//! concurrent refill in between can only make the bucket stricter, never looser).
//!
//! Stalls: a caller that finds work which waited while it was kept off the CPU (its
//! thread runnable but not running) may refill with
//! [`SharedDualBucket::refill_stalled`]: the tokens earned during that time are kept
//! beyond the burst for the batch in hand instead of being lost at the cap. Tokens are
//! still credited only for time that passed, so over any run the bucket hands out at
//! most its initial bank plus `rate × time`; a window that follows a stall of `s` may
//! see `rate × (w + s) + burst`.
//!
//! The limits are changed by one thread (the one that reads the credit area); a charge
//! racing with [`SharedDualBucket::set_limits`] is judged by either the old or the new
//! limit.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::bucket::{Denied, Limit, NANOS_PER_SEC};
use crate::wire::WireCost;

/// `per_sec` and `burst` of an unlimited bucket (a rate of `u64::MAX` tokens per second
/// with a burst of `u64::MAX` is no limit either).
const UNLIMITED: u64 = u64::MAX;

/// One token bucket, shared by threads.
#[derive(Debug)]
pub struct SharedTokenBucket {
    per_sec: AtomicU64,
    burst: AtomicU64,
    /// Whole tokens banked (≤ burst, but for the tokens of a stall until the next
    /// refill: [`SharedTokenBucket::refill_stalled`]).
    tokens: AtomicU64,
    /// Tokens have been credited for the time up to here, ns.
    last_ns: AtomicU64,
}

impl SharedTokenBucket {
    /// A bucket with `limit`, full, as of `now_ns`.
    pub fn new(limit: Limit, now_ns: u64) -> Self {
        let (per_sec, burst) = match limit {
            Limit::Unlimited => (UNLIMITED, UNLIMITED),
            Limit::Rate { per_sec, burst } => (per_sec, burst),
        };
        SharedTokenBucket {
            per_sec: AtomicU64::new(per_sec),
            burst: AtomicU64::new(burst),
            tokens: AtomicU64::new(if per_sec == UNLIMITED { 0 } else { burst }),
            last_ns: AtomicU64::new(now_ns),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> Limit {
        match self.rate() {
            None => Limit::Unlimited,
            Some((per_sec, burst)) => Limit::Rate { per_sec, burst },
        }
    }

    /// `(per_sec, burst)`, or `None` when unlimited.
    fn rate(&self) -> Option<(u64, u64)> {
        let per_sec = self.per_sec.load(Ordering::Acquire);
        let burst = self.burst.load(Ordering::Acquire);
        (per_sec != UNLIMITED || burst != UNLIMITED).then_some((per_sec, burst))
    }

    /// Whole tokens banked as of `now_ns` (`u64::MAX` when unlimited).
    pub fn available(&self, now_ns: u64) -> u64 {
        match self.rate() {
            None => u64::MAX,
            Some(_) => {
                self.refill(now_ns);
                self.tokens.load(Ordering::Acquire)
            }
        }
    }

    /// Credits the tokens earned since the last refill (module docs). Time that runs
    /// backwards (a thread with an older clock reading) credits nothing.
    pub fn refill(&self, now_ns: u64) {
        self.refill_to(now_ns, 0);
    }

    /// Whether a refill as of `now_ns` would lose tokens at the burst: more were earned
    /// since the last refill than the bucket has room for.
    pub fn would_overflow(&self, now_ns: u64) -> bool {
        let Some((per_sec, burst)) = self.rate() else {
            return false;
        };
        let elapsed = now_ns.saturating_sub(self.last_ns.load(Ordering::Acquire));
        let whole = per_sec as u128 * elapsed as u128 / NANOS_PER_SEC as u128;
        whole > burst.saturating_sub(self.tokens.load(Ordering::Acquire)) as u128
    }

    /// Refills as of `now_ns`, letting the bank exceed the burst by the tokens of
    /// `stalled_ns`: time within the refill's span during which the caller had work
    /// waiting but was kept off the CPU (`docs/protocol.md` §2.4, "stalls"). Only tokens
    /// earned over the span are credited, so over any run the bucket still hands out at
    /// most its initial bank plus `rate × time`; the excess over the burst is for the
    /// batch in hand: the next refill that credits a token clamps the bank to the burst.
    pub fn refill_stalled(&self, now_ns: u64, stalled_ns: u64) {
        let extra = match self.rate() {
            Some((per_sec, _)) => (per_sec as u128 * stalled_ns as u128 / NANOS_PER_SEC as u128)
                .min(u64::MAX as u128) as u64,
            None => return,
        };
        self.refill_to(now_ns, extra);
    }

    /// Credits the tokens earned since the last refill, up to the burst plus `extra`.
    fn refill_to(&self, now_ns: u64, extra: u64) {
        loop {
            let last = self.last_ns.load(Ordering::Acquire);
            let elapsed = match now_ns.checked_sub(last) {
                Some(0) | None => return,
                Some(e) => e,
            };
            let Some((per_sec, burst)) = self.rate() else {
                return;
            };
            let whole = per_sec as u128 * elapsed as u128 / NANOS_PER_SEC as u128;
            if per_sec != 0 && whole == 0 {
                return; // less than a token: the time stays to be credited later
            }
            let cap = burst.saturating_add(extra);
            let banked = self.tokens.load(Ordering::Acquire);
            let room = cap.saturating_sub(banked) as u128;
            // Time passes without credit when the bucket is closed, or when what it
            // earned fills it (beyond the burst, tokens are lost anyway).
            let advance = if per_sec == 0 || whole >= room {
                elapsed
            } else {
                let ns = (whole * NANOS_PER_SEC as u128).div_ceil(per_sec as u128);
                (ns as u64).min(elapsed)
            };
            if self
                .last_ns
                .compare_exchange(last, last + advance, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // another thread credited this time; look again
            }
            if per_sec != 0 {
                let add = whole.min(u64::MAX as u128) as u64;
                self.add_capped(add, cap);
            }
            return;
        }
    }

    fn add_capped(&self, add: u64, burst: u64) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(add).min(burst))
            });
    }

    /// Takes `cost` tokens if they are banked as of `now_ns`; otherwise takes nothing
    /// and says how long to wait (with no other thread spending meanwhile).
    pub fn charge(&self, now_ns: u64, cost: u64) -> Result<(), Denied> {
        if self.rate().is_none() {
            return Ok(());
        }
        self.refill(now_ns);
        match self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost))
        {
            Ok(_) => Ok(()),
            Err(banked) => Err(self.deficit(now_ns, banked, cost)),
        }
    }

    /// Whether `cost` tokens are banked as of `now_ns`, without taking them.
    pub fn check(&self, now_ns: u64, cost: u64) -> Result<(), Denied> {
        if self.rate().is_none() {
            return Ok(());
        }
        self.refill(now_ns);
        let banked = self.tokens.load(Ordering::Acquire);
        if banked >= cost {
            Ok(())
        } else {
            Err(self.deficit(now_ns, banked, cost))
        }
    }

    fn deficit(&self, now_ns: u64, banked: u64, cost: u64) -> Denied {
        let Some((per_sec, burst)) = self.rate() else {
            return Denied::Wait { ns: 0 };
        };
        if cost > burst || per_sec == 0 {
            return Denied::Never;
        }
        let since = now_ns.saturating_sub(self.last_ns.load(Ordering::Acquire)) as u128;
        let need = ((cost - banked) as u128 * NANOS_PER_SEC as u128)
            .saturating_sub(since * per_sec as u128);
        let ns = need.div_ceil(per_sec as u128).max(1);
        Denied::Wait {
            ns: ns.min(u64::MAX as u128) as u64,
        }
    }

    /// Gives back `tokens` charged earlier and not used; the bank never exceeds the
    /// burst by a refund (a bank above it, a stall's tokens, is left as it is).
    pub fn refund(&self, tokens: u64) {
        if let Some((_, burst)) = self.rate() {
            let _ = self
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(if t >= burst {
                        t
                    } else {
                        t.saturating_add(tokens).min(burst)
                    })
                });
        }
    }

    /// Changes the limit as of `now_ns`, as [`crate::TokenBucket::set_limit`]: tokens
    /// earned under the old limit are credited first, the bank is clamped to the new
    /// burst and never refilled, except when leaving [`Limit::Unlimited`] (the bucket
    /// then starts full). Called by one thread at a time.
    pub fn set_limit(&self, limit: Limit, now_ns: u64) {
        let was_unlimited = self.rate().is_none();
        self.refill(now_ns);
        let _ = self
            .last_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                (now_ns > l).then_some(now_ns)
            });
        let (per_sec, burst) = match limit {
            Limit::Unlimited => (UNLIMITED, UNLIMITED),
            Limit::Rate { per_sec, burst } => (per_sec, burst),
        };
        // Stricter first: a racing charge sees the smaller of the two banks.
        if !was_unlimited {
            let _ = self
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.min(burst)));
        }
        self.burst.store(burst, Ordering::Release);
        self.per_sec.store(per_sec, Ordering::Release);
        match limit {
            Limit::Unlimited => self.tokens.store(0, Ordering::Release),
            Limit::Rate { .. } if was_unlimited => self.tokens.store(burst, Ordering::Release),
            Limit::Rate { .. } => {}
        }
    }
}

/// Bytes and packets buckets charged together, shared by threads (module docs).
#[derive(Debug)]
pub struct SharedDualBucket {
    /// The bytes bucket.
    pub bytes: SharedTokenBucket,
    /// The packets bucket.
    pub packets: SharedTokenBucket,
}

impl SharedDualBucket {
    /// Both buckets full as of `now_ns`.
    pub fn new(bytes: Limit, packets: Limit, now_ns: u64) -> Self {
        SharedDualBucket {
            bytes: SharedTokenBucket::new(bytes, now_ns),
            packets: SharedTokenBucket::new(packets, now_ns),
        }
    }

    /// Both buckets unlimited.
    pub fn unlimited(now_ns: u64) -> Self {
        Self::new(Limit::Unlimited, Limit::Unlimited, now_ns)
    }

    /// Charges `bytes` and `packets` together: both or neither. On denial, the wait is
    /// the time until both buckets hold enough.
    pub fn charge(&self, now_ns: u64, bytes: u64, packets: u64) -> Result<(), Denied> {
        match self.bytes.charge(now_ns, bytes) {
            Err(d) => Err(match self.packets.check(now_ns, packets) {
                Ok(()) => d,
                Err(p) => d.max(p),
            }),
            Ok(()) => match self.packets.charge(now_ns, packets) {
                Ok(()) => Ok(()),
                Err(d) => {
                    self.bytes.refund(bytes);
                    Err(d)
                }
            },
        }
    }

    /// Charges the wire cost of a frame ([`WireCost`]).
    pub fn charge_wire(&self, now_ns: u64, cost: &WireCost) -> Result<(), Denied> {
        self.charge(now_ns, cost.bytes, cost.packets)
    }

    /// Whether a refill of either bucket as of `now_ns` would lose tokens at its burst
    /// ([`SharedTokenBucket::would_overflow`]).
    pub fn would_overflow(&self, now_ns: u64) -> bool {
        self.bytes.would_overflow(now_ns) || self.packets.would_overflow(now_ns)
    }

    /// Refills both buckets as of `now_ns`, keeping the tokens of `stalled_ns` beyond
    /// the bursts ([`SharedTokenBucket::refill_stalled`]).
    pub fn refill_stalled(&self, now_ns: u64, stalled_ns: u64) {
        self.bytes.refill_stalled(now_ns, stalled_ns);
        self.packets.refill_stalled(now_ns, stalled_ns);
    }

    /// Changes both limits (see [`SharedTokenBucket::set_limit`]).
    pub fn set_limits(&self, bytes: Limit, packets: Limit, now_ns: u64) {
        self.bytes.set_limit(bytes, now_ns);
        self.packets.set_limit(packets, now_ns);
    }

    /// The current limits (bytes, packets).
    pub fn limits(&self) -> (Limit, Limit) {
        (self.bytes.limit(), self.packets.limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn starts_full_refills_at_rate_and_carries_fractions() {
        let b = SharedTokenBucket::new(Limit::rate(1000, 100), 0);
        assert_eq!(b.charge(0, 100), Ok(()));
        assert_eq!(b.charge(0, 1), Err(Denied::Wait { ns: MS }));
        // 1.5 ms: one token, the half carried.
        assert_eq!(b.available(MS + MS / 2), 1);
        assert_eq!(b.available(2 * MS), 2);
        assert_eq!(b.charge(2 * MS, 3), Err(Denied::Wait { ns: MS }));
        // Full after 100 ms; more time adds nothing.
        assert_eq!(b.available(500 * MS), 100);
        assert_eq!(b.charge(500 * MS, 101), Err(Denied::Never));
    }

    #[test]
    fn closed_and_unlimited() {
        let b = SharedTokenBucket::new(Limit::CLOSED, 0);
        assert_eq!(b.charge(10 * MS, 1), Err(Denied::Never));
        let u = SharedTokenBucket::new(Limit::Unlimited, 0);
        assert_eq!(u.charge(0, u64::MAX), Ok(()));
        assert_eq!(u.limit(), Limit::Unlimited);
    }

    #[test]
    fn new_limits_keep_the_bank_clamped_and_never_refill() {
        let b = SharedTokenBucket::new(Limit::rate(1000, 100), 0);
        assert_eq!(b.charge(0, 90), Ok(()));
        b.set_limit(Limit::rate(1000, 50), 0);
        assert_eq!(b.available(0), 10);
        b.set_limit(Limit::rate(1000, 5), 0);
        assert_eq!(b.available(0), 5);
        // Leaving unlimited starts full, as a new bucket.
        b.set_limit(Limit::Unlimited, 0);
        b.set_limit(Limit::rate(1000, 40), MS);
        assert_eq!(b.available(MS), 40);
    }

    #[test]
    fn a_stall_keeps_its_tokens_for_one_batch_only() {
        // 1000 tokens/s, burst 10: 100 ms without a refill earn 100 tokens.
        let b = SharedTokenBucket::new(Limit::rate(1000, 10), 0);
        assert_eq!(b.charge(0, 10), Ok(()));
        assert!(b.would_overflow(100 * MS));
        // 60 ms of it the caller waited for a CPU: the bank keeps 10 + 60 tokens.
        b.refill_stalled(100 * MS, 60 * MS);
        assert_eq!(b.available(100 * MS), 70);
        // A refund leaves a bank above the burst as it is.
        b.refund(3);
        assert_eq!(b.available(100 * MS), 70);
        assert_eq!(b.charge(100 * MS, 65), Ok(()));
        // The next refill that credits a token clamps to the burst again.
        assert_eq!(b.available(101 * MS), 6);
        b.refill_stalled(200 * MS, 0);
        assert_eq!(b.available(200 * MS), 10);
    }

    #[test]
    fn a_stall_credits_no_more_than_the_time_that_passed() {
        let b = SharedTokenBucket::new(Limit::rate(1000, 10), 0);
        assert_eq!(b.charge(0, 10), Ok(()));
        // A stall longer than the span (a stale reading): only the 20 ms that passed.
        b.refill_stalled(20 * MS, 500 * MS);
        assert_eq!(b.available(20 * MS), 20);
        // Room for what 1 ms earns: no overflow; unlimited buckets never overflow.
        assert_eq!(b.charge(20 * MS, 15), Ok(()));
        assert!(!b.would_overflow(21 * MS));
        assert!(b.would_overflow(26 * MS));
        let u = SharedTokenBucket::new(Limit::Unlimited, 0);
        assert!(!u.would_overflow(u64::MAX));
        u.refill_stalled(u64::MAX, u64::MAX);
        assert_eq!(u.charge(u64::MAX, u64::MAX), Ok(()));
    }

    #[test]
    fn dual_charge_is_all_or_nothing() {
        let b = SharedDualBucket::new(Limit::rate(1000, 1000), Limit::rate(10, 1), 0);
        assert_eq!(b.charge(0, 100, 1), Ok(()));
        // Packets refused: the bytes are given back.
        assert_eq!(b.charge(0, 100, 1), Err(Denied::Wait { ns: 100 * MS }));
        assert_eq!(b.bytes.available(0), 900);
        // Bytes refused: the wait is the slower bucket's.
        assert_eq!(b.charge(0, 2000, 1), Err(Denied::Never));
    }
}
