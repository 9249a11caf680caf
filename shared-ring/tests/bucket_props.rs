//! Property tests of the dual token bucket.

use proptest::prelude::*;
use shared_ring::bucket::NANOS_PER_SEC;
use shared_ring::{Denied, DualTokenBucket, Limit, TokenBucket, WireCost};

/// (time step ns, bytes, packets) of one attempted charge.
fn attempts() -> impl Strategy<Value = Vec<(u64, u64, u64)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0u64..2_000_000, 0u64..200_000_000],
            1u64..9000,
            1u64..3,
        ),
        1..300,
    )
}

/// Over every window [t_i, t_j] of the `(t, bytes, packets)` admitted: admitted ≤ rate ×
/// (t_j − t_i) + burst, for bytes and for packets (exact integer arithmetic, scaled by
/// 1e9).
fn check_windows(
    admitted: &[(u64, u64, u64)],
    (bps, bburst): (u64, u64),
    (pps, pburst): (u64, u64),
) -> Result<(), TestCaseError> {
    let ns = NANOS_PER_SEC as u128;
    for i in 0..admitted.len() {
        let (mut b, mut p) = (0u128, 0u128);
        for a in &admitted[i..] {
            b += a.1 as u128;
            p += a.2 as u128;
            let w = (a.0 - admitted[i].0) as u128;
            prop_assert!(
                b * ns <= bps as u128 * w + bburst as u128 * ns,
                "bytes {} in window {} ns > rate {} burst {}",
                b,
                w,
                bps,
                bburst
            );
            prop_assert!(
                p * ns <= pps as u128 * w + pburst as u128 * ns,
                "packets {} in window {} ns > rate {} burst {}",
                p,
                w,
                pps,
                pburst
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Over every window [t_i, t_j]: admitted ≤ rate × (t_j − t_i) + burst, for bytes
    /// and for packets (exact integer arithmetic, scaled by 1e9).
    #[test]
    fn admitted_never_exceeds_rate_times_window_plus_burst(
        bps in 1u64..2_000_000_000,
        bburst in 1u64..1_000_000,
        pps in 1u64..2_000_000,
        pburst in 1u64..1000,
        steps in attempts(),
    ) {
        let mut d = DualTokenBucket::new(Limit::rate(bps, bburst), Limit::rate(pps, pburst), 0);
        let mut t = 0u64;
        let mut admitted: Vec<(u64, u64, u64)> = Vec::new(); // (t, bytes, packets)
        for (dt, bytes, packets) in steps {
            t += dt;
            if d.charge(t, bytes, packets).is_ok() {
                admitted.push((t, bytes, packets));
            }
        }
        check_windows(&admitted, (bps, bburst), (pps, pburst))?;
    }

    /// Charging an upper bound of each cost and refunding the difference later at the
    /// same instant (netback's backstop: a batch charged before its headers are read,
    /// settled after the copy) still admits ≤ rate × window + burst of the exact costs.
    #[test]
    fn charge_bound_then_refund_keeps_the_window_bound(
        bps in 1u64..2_000_000_000,
        bburst in 1u64..1_000_000,
        pps in 1u64..2_000_000,
        pburst in 1u64..1000,
        steps in attempts(),
        over in prop::collection::vec((0u64..20_000, 0u64..4), 1..300),
    ) {
        let mut d = DualTokenBucket::new(Limit::rate(bps, bburst), Limit::rate(pps, pburst), 0);
        let mut t = 0u64;
        let mut admitted: Vec<(u64, u64, u64)> = Vec::new();
        let mut pending: Vec<WireCost> = Vec::new();
        for (k, (dt, bytes, packets)) in steps.into_iter().enumerate() {
            if dt > 0 {
                // A new batch: the previous one is settled first, at its own time.
                for r in pending.drain(..) {
                    d.refund(&r);
                }
            }
            t += dt;
            let (xb, xp) = over[k % over.len()];
            let bound = WireCost { bytes: bytes + xb, packets: packets + xp };
            if d.charge_wire(t, &bound).is_ok() {
                admitted.push((t, bytes, packets));
                pending.push(WireCost { bytes: xb, packets: xp });
            }
        }
        check_windows(&admitted, (bps, bburst), (pps, pburst))?;
    }

    /// A denial's wait is exact: one nanosecond earlier still fails, at the wait it
    /// succeeds (absent other charges).
    #[test]
    fn denial_wait_is_exact(
        bps in 1u64..10_000_000_000,
        bburst in 1u64..100_000,
        pps in 1u64..10_000_000,
        pburst in 1u64..100,
        steps in attempts(),
        bytes in 1u64..100_000,
        packets in 1u64..100,
    ) {
        let mut d = DualTokenBucket::new(Limit::rate(bps, bburst), Limit::rate(pps, pburst), 0);
        let mut t = 0;
        for (dt, b, p) in steps {
            t += dt;
            let _ = d.charge(t, b, p);
        }
        let before = d.clone();
        match d.charge(t, bytes, packets) {
            Ok(()) => {}
            Err(Denied::Never) => {
                prop_assert!(bytes > bburst || packets > pburst);
                prop_assert_eq!(&d, &before, "a refused charge changes nothing");
            }
            Err(Denied::Wait { ns }) => {
                prop_assert!(ns > 0);
                prop_assert_eq!(&d, &before, "a refused charge changes nothing");
                let mut early = d.clone();
                prop_assert!(early.charge(t + ns - 1, bytes, packets).is_err());
                prop_assert_eq!(d.charge(t + ns, bytes, packets), Ok(()));
            }
        }
    }

    /// A limit change never adds tokens beyond what time earned.
    #[test]
    fn rate_change_never_refills(
        r1 in 1u64..1_000_000, b1 in 1u64..1_000_000,
        r2 in 0u64..u64::MAX, b2 in 0u64..u64::MAX,
        spend in 0u64..1_000_000,
        at in 0u64..10_000_000_000,
    ) {
        let mut a = TokenBucket::new(Limit::rate(r1, b1), 0);
        let _ = a.charge(0, spend.min(b1));
        let before = a.available(at);
        a.set_limit(Limit::rate(r2, b2), at);
        prop_assert_eq!(a.available(at), before.min(b2));
    }

    /// Nothing overflows or panics, whatever the numbers and the clock do.
    #[test]
    fn no_overflow_or_panic(
        rate in any::<u64>(), burst in any::<u64>(),
        times in prop::collection::vec(any::<u64>(), 1..50),
        costs in prop::collection::vec(any::<u64>(), 1..50),
    ) {
        let mut b = TokenBucket::new(Limit::rate(rate, burst), 0);
        for (t, c) in times.iter().zip(costs.iter().cycle()) {
            let _ = b.charge(*t, *c);
            prop_assert!(b.available(*t) <= burst);
        }
    }
}
