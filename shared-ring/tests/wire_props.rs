//! Property tests of the wire cost of a frame ([`shared_ring::WireCost`]).

use proptest::prelude::*;
use shared_ring::wire::{MAX_HEADER, MIN_HEADER};
use shared_ring::WireCost;

fn mss() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![
        Just(None),
        any::<u16>().prop_map(Some),
        (0u16..64).prop_map(Some)
    ]
}

fn header() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        (0u64..300).prop_map(Some),
        any::<u64>().prop_map(Some)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever a guest puts in a frame, it costs at least one packet and its bytes.
    #[test]
    fn never_below_one_packet_of_the_frame(len in 0u64..200_000, m in mss(), h in header()) {
        let c = WireCost::of(len, m, h);
        prop_assert!(c.packets >= 1);
        prop_assert!(c.bytes >= len);
    }

    /// A longer frame never costs less; a smaller MSS never costs less.
    #[test]
    fn monotone_in_length_and_mss(
        len in 0u64..70_000,
        more in 0u64..70_000,
        m in 0u16..9000,
        smaller in 0u16..9000,
        h in header(),
    ) {
        let a = WireCost::of(len, Some(m), h);
        let b = WireCost::of(len + more, Some(m), h);
        prop_assert!(b.packets >= a.packets && b.bytes >= a.bytes);
        let s = WireCost::of(len, Some(m.saturating_sub(smaller)), h);
        prop_assert!(s.packets >= a.packets && s.bytes >= a.bytes);
    }

    /// The segments cover the payload and no segment is empty; the bytes are the frame
    /// plus one header per extra segment.
    #[test]
    fn segments_are_exact(len in 0u64..70_000, m in 1u16..9000, h in 0u64..300) {
        let c = WireCost::of(len, Some(m), Some(h));
        let payload = len.saturating_sub(h);
        prop_assert!(c.packets * u64::from(m) >= payload);
        prop_assert!(c.packets == 1 || (c.packets - 1) * u64::from(m) < payload);
        prop_assert_eq!(c.bytes, len + (c.packets - 1) * h.min(len));
    }

    /// With the headers unknown, the cost bounds every header length up to
    /// `MAX_HEADER`: settling it later only ever refunds.
    #[test]
    fn unknown_header_bounds_every_known_one(
        len in 0u64..70_000,
        m in 0u16..9000,
        h in MIN_HEADER..=MAX_HEADER,
    ) {
        let bound = WireCost::of(len, Some(m), None);
        let exact = WireCost::of(len, Some(m), Some(h));
        prop_assert!(exact.excess_over(&bound).is_zero());
    }
}
