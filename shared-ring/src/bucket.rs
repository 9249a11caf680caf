//! The dual token bucket: one bucket for bytes, one for packets, charged together.
//!
//! Integer arithmetic only; time comes in as nanoseconds from the caller (no clock in
//! here), so the event loop reads its clock once per batch and tests inject time.
//!
//! Semantics, chosen against the pitfalls of the token buckets in Firecracker and
//! cloud-hypervisor (see `docs/protocol.md`, "Token buckets"):
//!
//! * Refill is continuous: `rate × elapsed / 1 s`, with the sub-token remainder carried
//!   over, so any refill period delivers exactly the rate (no rounding loss, no fixed
//!   cool-down).
//! * A bucket never holds more than `burst` tokens; for every window of length `w`,
//!   admitted ≤ `rate × w + burst`.
//! * Charging a [`DualTokenBucket`] is all-or-nothing: if either bucket lacks tokens,
//!   neither is charged, and the denial says exactly how long until both have enough,
//!   so the caller can arm a timer for that deficit.
//! * Changing a limit keeps the tokens already banked, clamped to the new burst; it
//!   never refills the bucket (a periodic reallocation must not hand out free bursts).
//! * A rate of zero means *closed*. *Unlimited* is explicit ([`Limit::Unlimited`]).
//! * Nothing overflows: products are computed in `u128` when they do not fit in `u64`.

/// Nanoseconds per second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The limit of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// No limit: every charge succeeds and nothing is counted.
    Unlimited,
    /// At most `per_sec` tokens per second on average, and at most `burst` banked.
    /// `per_sec == 0` is closed: banked tokens may still be spent, none are added.
    Rate {
        /// Refill rate, tokens per second.
        per_sec: u64,
        /// Bucket capacity, tokens.
        burst: u64,
    },
}

impl Limit {
    /// A closed bucket: nothing passes.
    pub const CLOSED: Limit = Limit::Rate {
        per_sec: 0,
        burst: 0,
    };

    /// A limit of `per_sec` with the given `burst`.
    pub const fn rate(per_sec: u64, burst: u64) -> Self {
        Limit::Rate { per_sec, burst }
    }
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denied {
    /// Enough tokens will be banked after exactly `ns` nanoseconds (with the current
    /// limits and no other charges): retry then.
    Wait {
        /// Nanoseconds until the charge would succeed.
        ns: u64,
    },
    /// No amount of waiting helps under the current limits: the bucket is closed, or
    /// the cost exceeds its burst.
    Never,
}

impl Denied {
    /// The later of two denials (a dual charge waits for the slower bucket).
    pub(crate) fn max(self, other: Denied) -> Denied {
        match (self, other) {
            (Denied::Never, _) | (_, Denied::Never) => Denied::Never,
            (Denied::Wait { ns: a }, Denied::Wait { ns: b }) => Denied::Wait { ns: a.max(b) },
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    limit: Limit,
    /// Whole tokens banked (≤ burst).
    tokens: u64,
    /// Fraction of the next token, in units of 1/`NANOS_PER_SEC` token
    /// (`0 ≤ frac < NANOS_PER_SEC`; 0 whenever the bucket is full).
    frac: u64,
    /// Time of the last refill, ns.
    last_ns: u64,
}

impl TokenBucket {
    /// A bucket with `limit`, full, as of `now_ns`.
    pub fn new(limit: Limit, now_ns: u64) -> Self {
        TokenBucket {
            limit,
            tokens: match limit {
                Limit::Unlimited => 0,
                Limit::Rate { burst, .. } => burst,
            },
            frac: 0,
            last_ns: now_ns,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Whole tokens banked as of `now_ns` (`u64::MAX` when unlimited).
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        match self.limit {
            Limit::Unlimited => u64::MAX,
            Limit::Rate { .. } => self.tokens,
        }
    }

    /// Adds the tokens earned since the last refill. Time that runs backwards is
    /// ignored (no tokens are added, none are lost).
    #[inline]
    pub fn refill(&mut self, now_ns: u64) {
        let elapsed = match now_ns.checked_sub(self.last_ns) {
            Some(0) | None => return,
            Some(e) => e,
        };
        self.last_ns = now_ns;
        let (per_sec, burst) = match self.limit {
            Limit::Unlimited => return,
            Limit::Rate { per_sec, burst } => (per_sec, burst),
        };
        if self.tokens >= burst || per_sec == 0 {
            return;
        }
        // Fast path in u64 (the common case: rate × elapsed < 1.8e19), else u128.
        let (whole, frac) = match per_sec
            .checked_mul(elapsed)
            .and_then(|p| p.checked_add(self.frac))
        {
            Some(num) => (num / NANOS_PER_SEC, num % NANOS_PER_SEC),
            None => {
                let num = per_sec as u128 * elapsed as u128 + self.frac as u128;
                let whole = num / NANOS_PER_SEC as u128;
                let frac = (num % NANOS_PER_SEC as u128) as u64;
                (whole.min(u64::MAX as u128) as u64, frac)
            }
        };
        let room = burst - self.tokens;
        if whole >= room {
            self.tokens = burst;
            self.frac = 0;
        } else {
            self.tokens += whole;
            self.frac = frac;
        }
    }

    /// Nanoseconds until `cost` tokens are banked, assuming a refill was just done.
    fn deficit(&self, cost: u64) -> Result<(), Denied> {
        let (per_sec, burst) = match self.limit {
            Limit::Unlimited => return Ok(()),
            Limit::Rate { per_sec, burst } => (per_sec, burst),
        };
        if cost <= self.tokens {
            return Ok(());
        }
        if cost > burst || per_sec == 0 {
            return Err(Denied::Never);
        }
        let need = (cost - self.tokens) as u128 * NANOS_PER_SEC as u128 - self.frac as u128;
        let ns = need.div_ceil(per_sec as u128);
        Err(Denied::Wait {
            ns: ns.min(u64::MAX as u128) as u64,
        })
    }

    /// Takes `cost` tokens if they are banked as of `now_ns`; otherwise takes nothing
    /// and says how long to wait.
    #[inline]
    pub fn charge(&mut self, now_ns: u64, cost: u64) -> Result<(), Denied> {
        self.refill(now_ns);
        self.deficit(cost)?;
        self.debit(cost);
        Ok(())
    }

    /// Gives back `tokens` charged earlier and not used (a charge made on an upper
    /// bound of the cost, settled once the exact cost is known). The bank never exceeds
    /// the burst, so for every window admitted ≤ `rate × w + burst` still holds for the
    /// net charges.
    pub fn refund(&mut self, tokens: u64) {
        if let Limit::Rate { burst, .. } = self.limit {
            self.tokens = self.tokens.saturating_add(tokens);
            if self.tokens >= burst {
                self.tokens = burst;
                self.frac = 0;
            }
        }
    }

    #[inline(always)]
    fn debit(&mut self, cost: u64) {
        if let Limit::Rate { .. } = self.limit {
            self.tokens -= cost;
        }
    }

    /// Changes the limit as of `now_ns`: tokens earned under the old limit up to now are
    /// added first, then the bank is clamped to the new burst. It is never refilled:
    /// the one exception is leaving [`Limit::Unlimited`], after which the bucket starts
    /// full, as a new bucket does.
    pub fn set_limit(&mut self, limit: Limit, now_ns: u64) {
        self.refill(now_ns);
        if now_ns > self.last_ns {
            self.last_ns = now_ns;
        }
        match (self.limit, limit) {
            (_, Limit::Unlimited) => {
                self.tokens = 0;
                self.frac = 0;
            }
            (Limit::Unlimited, Limit::Rate { burst, .. }) => {
                self.tokens = burst;
                self.frac = 0;
            }
            (Limit::Rate { .. }, Limit::Rate { burst, .. }) => {
                if self.tokens >= burst {
                    self.tokens = burst;
                    self.frac = 0;
                }
            }
        }
        self.limit = limit;
    }
}

/// Two buckets charged together: bytes and packets (DBA-VM's bits/s and packets/s
/// budgets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualTokenBucket {
    /// The bytes bucket.
    pub bytes: TokenBucket,
    /// The packets bucket.
    pub packets: TokenBucket,
}

impl DualTokenBucket {
    /// Both buckets full as of `now_ns`.
    pub fn new(bytes: Limit, packets: Limit, now_ns: u64) -> Self {
        DualTokenBucket {
            bytes: TokenBucket::new(bytes, now_ns),
            packets: TokenBucket::new(packets, now_ns),
        }
    }

    /// Both buckets unlimited.
    pub fn unlimited(now_ns: u64) -> Self {
        Self::new(Limit::Unlimited, Limit::Unlimited, now_ns)
    }

    /// Charges `bytes` and `packets` together: both or neither. On denial, the wait is
    /// the time until *both* buckets hold enough.
    #[inline]
    pub fn charge(&mut self, now_ns: u64, bytes: u64, packets: u64) -> Result<(), Denied> {
        self.bytes.refill(now_ns);
        self.packets.refill(now_ns);
        match (self.bytes.deficit(bytes), self.packets.deficit(packets)) {
            (Ok(()), Ok(())) => {
                self.bytes.debit(bytes);
                self.packets.debit(packets);
                Ok(())
            }
            (Err(d), Ok(())) | (Ok(()), Err(d)) => Err(d),
            (Err(a), Err(b)) => Err(a.max(b)),
        }
    }

    /// Charges the wire cost of a frame ([`crate::wire::WireCost`]).
    #[inline]
    pub fn charge_wire(&mut self, now_ns: u64, cost: &crate::wire::WireCost) -> Result<(), Denied> {
        self.charge(now_ns, cost.bytes, cost.packets)
    }

    /// Gives back a part of an earlier charge (see [`TokenBucket::refund`]).
    pub fn refund(&mut self, cost: &crate::wire::WireCost) {
        self.bytes.refund(cost.bytes);
        self.packets.refund(cost.packets);
    }

    /// Charges one packet of `frame_bytes`.
    #[inline]
    pub fn charge_packet(&mut self, now_ns: u64, frame_bytes: u64) -> Result<(), Denied> {
        self.charge(now_ns, frame_bytes, 1)
    }

    /// Changes both limits (see [`TokenBucket::set_limit`]).
    pub fn set_limits(&mut self, bytes: Limit, packets: Limit, now_ns: u64) {
        self.bytes.set_limit(bytes, now_ns);
        self.packets.set_limit(packets, now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn starts_full_and_refills_at_rate() {
        let mut b = TokenBucket::new(Limit::rate(1000, 100), 0);
        assert_eq!(b.charge(0, 100), Ok(()));
        assert_eq!(b.charge(0, 1), Err(Denied::Wait { ns: MS }));
        assert_eq!(b.available(10 * MS), 10);
        assert_eq!(b.available(1_000 * MS), 100); // capped at burst
    }

    #[test]
    fn fractional_refill_is_carried_over() {
        // 3 tokens/s polled every 100 ms: 0.3 tokens each time, never rounded away.
        let mut b = TokenBucket::new(Limit::rate(3, 10), 0);
        b.charge(0, 10).unwrap();
        let mut got = 0;
        for i in 1..=100u64 {
            if b.charge(i * 100 * MS, 1).is_ok() {
                got += 1;
            }
        }
        assert_eq!(got, 30); // 10 s at 3/s
    }

    #[test]
    fn denial_wait_is_exact() {
        let mut b = TokenBucket::new(Limit::rate(7, 10), 0);
        b.charge(0, 10).unwrap();
        let Err(Denied::Wait { ns }) = b.charge(0, 3) else {
            panic!("expected a wait")
        };
        assert_eq!(ns, (3 * NANOS_PER_SEC).div_ceil(7));
        let mut early = b.clone();
        assert!(early.charge(ns - 1, 3).is_err());
        assert_eq!(b.charge(ns, 3), Ok(()));
    }

    #[test]
    fn closed_and_oversized_are_never() {
        let mut closed = TokenBucket::new(Limit::CLOSED, 0);
        assert_eq!(closed.charge(u64::MAX, 1), Err(Denied::Never));
        assert_eq!(closed.charge(5, 0), Ok(()));
        let mut b = TokenBucket::new(Limit::rate(1000, 100), 0);
        assert_eq!(b.charge(0, 101), Err(Denied::Never));
        assert_eq!(b.available(0), 100, "a refused charge takes nothing");
    }

    #[test]
    fn unlimited_is_explicit() {
        let mut b = TokenBucket::new(Limit::Unlimited, 0);
        assert_eq!(b.charge(0, u64::MAX), Ok(()));
        assert_eq!(b.available(0), u64::MAX);
    }

    #[test]
    fn rate_change_keeps_tokens_and_never_refills() {
        let mut b = TokenBucket::new(Limit::rate(1000, 1000), 0);
        b.charge(0, 900).unwrap(); // 100 left
        b.set_limit(Limit::rate(1_000_000, 1_000_000), 0);
        assert_eq!(b.available(0), 100, "no free burst on a rate change");
        b.set_limit(Limit::rate(10, 50), 0);
        assert_eq!(b.available(0), 50, "clamped to the new burst");
        // Tokens earned before the change are credited at the old rate.
        let mut c = TokenBucket::new(Limit::rate(1000, 1000), 0);
        c.charge(0, 1000).unwrap();
        c.set_limit(Limit::rate(1, 1000), 500 * MS);
        assert_eq!(c.available(500 * MS), 500);
    }

    #[test]
    fn leaving_unlimited_starts_full() {
        let mut b = TokenBucket::new(Limit::Unlimited, 0);
        b.set_limit(Limit::rate(10, 20), 0);
        assert_eq!(b.available(0), 20);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut b = TokenBucket::new(Limit::rate(u64::MAX, u64::MAX), 0);
        b.charge(0, u64::MAX).unwrap();
        assert_eq!(b.available(u64::MAX), u64::MAX);
        let mut c = TokenBucket::new(Limit::rate(1, u64::MAX), 0);
        c.charge(0, u64::MAX).unwrap();
        assert_eq!(c.charge(0, u64::MAX), Err(Denied::Wait { ns: u64::MAX }));
        assert_eq!(c.available(u64::MAX), 18_446_744_073); // floor(1 × (2^64-1) ns)
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(Limit::rate(1000, 1000), 10 * MS);
        b.charge(10 * MS, 1000).unwrap();
        assert_eq!(b.available(5 * MS), 0);
        assert_eq!(b.available(11 * MS), 1);
    }

    #[test]
    fn refund_returns_tokens_up_to_the_burst() {
        let mut b = TokenBucket::new(Limit::rate(1000, 100), 0);
        b.charge(0, 80).unwrap();
        b.refund(30);
        assert_eq!(b.available(0), 50);
        b.refund(u64::MAX);
        assert_eq!(b.available(0), 100, "never above the burst");
        let mut u = TokenBucket::new(Limit::Unlimited, 0);
        u.refund(5);
        assert_eq!(u.available(0), u64::MAX);
    }

    #[test]
    fn dual_is_all_or_nothing() {
        let mut d = DualTokenBucket::new(Limit::rate(10_000, 3000), Limit::rate(10, 2), 0);
        d.charge_packet(0, 1500).unwrap();
        d.charge_packet(0, 1000).unwrap();
        // Bytes: 500 left; packets: 0 left. A 100-byte packet is refused by the packet
        // bucket and the byte bucket is not charged.
        assert_eq!(d.charge_packet(0, 100), Err(Denied::Wait { ns: 100 * MS }));
        assert_eq!(d.bytes.available(0), 500);
        // Both short: wait for the slower.
        assert_eq!(d.charge_packet(0, 1500), Err(Denied::Wait { ns: 100 * MS }));
        let Err(Denied::Wait { ns }) = d.charge_packet(0, 2500) else {
            panic!()
        };
        assert_eq!(ns, 200 * MS); // bytes need 2000 more at 10 000/s
        assert_eq!(d.charge_packet(ns, 2500), Ok(()));
    }
}
