//! TX chain parsing against a frontend written in the test: well-formed packets of
//! every shape, and every malformed class.

use netback::tx::{
    drop_responses, parse_packet, parse_packet_into, DropReason, FatalReason, TxError, TxPacket,
    FATAL_SKB_SLOTS, MAX_SKB_SLOTS,
};
use shared_ring::netif::extra::XEN_NETIF_GSO_TYPE_TCPV4;
use shared_ring::netif::{
    ExtraInfo, NetTxFlags, NetifExtraInfo, NetifTxBackRing, NetifTxFrontRing, NetifTxRequest,
    NetifTxSring, XenNetifExtraFlags, NETIF_RSP_ERROR, NETIF_RSP_NULL,
};
use shared_ring::SharedPage;

/// What a test frontend puts in one slot.
enum Slot {
    Req(NetifTxRequest),
    Extra(NetifExtraInfo),
}

fn req(id: u16, gref: u32, offset: u16, size: u16, flags: NetTxFlags) -> Slot {
    Slot::Req(NetifTxRequest {
        gref,
        offset,
        flags: flags.bits(),
        id,
        size,
    })
}

fn gso(size: u16, t: u8, more: bool) -> Slot {
    let f = if more {
        XenNetifExtraFlags::MORE
    } else {
        XenNetifExtraFlags::empty()
    };
    Slot::Extra(NetifExtraInfo::new(
        &ExtraInfo::Gso {
            size,
            r#type: t,
            features: 0,
        },
        f,
    ))
}

/// Runs `f` on a backend snapshot of `slots` as pushed by a frontend.
fn with_ring<R>(slots: &[Slot], f: impl FnOnce(&mut NetifTxBackRing<'_>) -> R) -> R {
    let page = Box::new(SharedPage::new());
    NetifTxSring::new(page.mem()).unwrap().init();
    let mut front = NetifTxFrontRing::attach(page.mem(), 0).unwrap();
    for s in slots {
        match s {
            Slot::Req(r) => front.put_request(r).unwrap(),
            Slot::Extra(e) => front.put_request_as(e).unwrap(),
        }
    }
    front.push_requests();
    let mut back = NetifTxBackRing::attach(page.mem(), 0).unwrap();
    f(&mut back)
}

fn parse(slots: &[Slot]) -> Result<netback::tx::TxPacket, TxError> {
    with_ring(slots, |b| {
        let p = b.requests().unwrap();
        parse_packet(&p, 0)
    })
}

const MORE: NetTxFlags = NetTxFlags::MORE_DATA;
const NONE: NetTxFlags = NetTxFlags::empty();

#[test]
fn single_slot_packet() {
    let p = parse(&[req(7, 100, 64, 1500, NetTxFlags::CSUM_BLANK)]).unwrap();
    assert_eq!(p.size, 1500);
    assert_eq!(p.nr_slots, 1);
    assert_eq!(p.ring_slots, 1);
    assert_eq!(p.data_slots()[0].len, 1500);
    assert!(p.flags.contains(NetTxFlags::CSUM_BLANK));
}

#[test]
fn multi_slot_packet_first_slot_gets_the_remainder() {
    let p = parse(&[
        req(1, 10, 0, 9000, MORE),
        req(2, 11, 0, 4096, MORE),
        req(3, 12, 100, 904, NONE),
    ])
    .unwrap();
    assert_eq!(p.nr_slots, 3);
    let lens: Vec<u16> = p.data_slots().iter().map(|s| s.len).collect();
    assert_eq!(lens, vec![4000, 4096, 904]);
    assert_eq!(p.ring_slots, 3);
}

#[test]
fn gso_extra_between_first_and_continuations() {
    let p = parse(&[
        req(1, 10, 0, 3000, NetTxFlags::EXTRA_INFO | MORE),
        gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, false),
        req(2, 11, 0, 1000, NONE),
    ])
    .unwrap();
    assert_eq!(p.nr_extras, 1);
    assert_eq!(p.gso.unwrap().size, 1448);
    assert_eq!(p.ring_slots, 3);
    let mut rsps = Vec::new();
    p.responses(0, |r| rsps.push(r));
    assert_eq!(
        rsps.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        vec![(1, 0), (0, NETIF_RSP_NULL), (2, 0)]
    );
}

#[test]
fn incomplete_chain_consumes_nothing() {
    assert_eq!(
        parse(&[req(1, 10, 0, 3000, MORE)]),
        Err(TxError::Incomplete)
    );
    assert_eq!(
        parse(&[req(1, 10, 0, 3000, NetTxFlags::EXTRA_INFO)]),
        Err(TxError::Incomplete)
    );
    assert_eq!(parse(&[]), Err(TxError::Incomplete));
}

#[test]
fn slot_crossing_its_page_is_fatal() {
    assert_eq!(
        parse(&[req(1, 10, 4000, 200, NONE)]),
        Err(TxError::Fatal(FatalReason::CrossesPage {
            offset: 4000,
            len: 200
        }))
    );
    assert!(matches!(
        parse(&[req(1, 10, 0, 5000, MORE), req(2, 11, 4095, 2, NONE)]),
        Err(TxError::Fatal(FatalReason::CrossesPage { .. }))
    ));
    // First slot's own share crossing the page (size - continuations > 4096 - offset).
    assert!(matches!(
        parse(&[req(1, 10, 100, 9000, MORE), req(2, 11, 0, 10, NONE)]),
        Err(TxError::Fatal(FatalReason::CrossesPage { .. }))
    ));
}

#[test]
fn fragments_larger_than_the_packet_are_fatal() {
    assert_eq!(
        parse(&[req(1, 10, 0, 100, MORE), req(2, 11, 0, 200, NONE)]),
        Err(TxError::Fatal(FatalReason::FragmentsExceedPacket {
            size: 100
        }))
    );
}

#[test]
fn chain_lengths_drop_then_fatal() {
    let chain = |n: usize| -> Vec<Slot> {
        (0..n)
            .map(|i| {
                req(
                    i as u16,
                    i as u32,
                    0,
                    if i == 0 { 60 + n as u16 } else { 1 },
                    if i + 1 < n { MORE } else { NONE },
                )
            })
            .collect()
    };
    assert!(parse(&chain(MAX_SKB_SLOTS)).is_ok());
    assert_eq!(
        parse(&chain(MAX_SKB_SLOTS + 1)),
        Err(TxError::Drop {
            reason: DropReason::TooManySlots {
                slots: MAX_SKB_SLOTS + 1
            },
            ring_slots: MAX_SKB_SLOTS as u32 + 1
        })
    );
    assert_eq!(
        parse(&chain(FATAL_SKB_SLOTS + 1)),
        Err(TxError::Fatal(FatalReason::ChainTooLong))
    );
    // A chain that never ends within the ring: fatal once past the limit, never a loop.
    let endless: Vec<Slot> = (0..256).map(|i| req(i, i as u32, 0, 0, MORE)).collect();
    assert_eq!(
        parse(&endless),
        Err(TxError::Fatal(FatalReason::ChainTooLong))
    );
}

#[test]
fn runt_is_dropped_with_error_responses() {
    let slots = [req(9, 10, 0, 10, NONE)];
    with_ring(&slots, |b| {
        let p = b.requests().unwrap();
        let e = parse_packet(&p, 0);
        assert_eq!(
            e,
            Err(TxError::Drop {
                reason: DropReason::Runt { size: 10 },
                ring_slots: 1
            })
        );
        let mut rsps = Vec::new();
        drop_responses(&p, 0, 1, NETIF_RSP_ERROR, |r| rsps.push(r));
        assert_eq!(rsps.len(), 1);
        assert_eq!((rsps[0].id, rsps[0].status), (9, NETIF_RSP_ERROR));
    });
}

#[test]
fn bad_extras_are_fatal() {
    let bad_type = Slot::Extra(NetifExtraInfo {
        r#type: 0,
        flags: 0,
        u: [0; 6],
    });
    assert_eq!(
        parse(&[req(1, 1, 0, 100, NetTxFlags::EXTRA_INFO), bad_type]),
        Err(TxError::Fatal(FatalReason::InvalidExtraType(0)))
    );
    let unknown = Slot::Extra(NetifExtraInfo {
        r#type: 77,
        flags: 0,
        u: [0; 6],
    });
    assert_eq!(
        parse(&[req(1, 1, 0, 100, NetTxFlags::EXTRA_INFO), unknown]),
        Err(TxError::Fatal(FatalReason::InvalidExtraType(77)))
    );
    assert_eq!(
        parse(&[
            req(1, 1, 0, 100, NetTxFlags::EXTRA_INFO),
            gso(1448, 1, true),
            gso(1448, 1, false)
        ]),
        Err(TxError::Fatal(FatalReason::DuplicateExtra(1)))
    );
    assert_eq!(
        parse(&[req(1, 1, 0, 100, NetTxFlags::EXTRA_INFO), gso(0, 1, false)]),
        Err(TxError::Fatal(FatalReason::BadGso { size: 0, r#type: 1 }))
    );
    assert_eq!(
        parse(&[
            req(1, 1, 0, 100, NetTxFlags::EXTRA_INFO),
            gso(1448, 9, false)
        ]),
        Err(TxError::Fatal(FatalReason::BadGso {
            size: 1448,
            r#type: 9
        }))
    );
    // Extras chained with MORE forever: bounded by the number of types.
    let mut s = vec![req(1, 1, 0, 100, NetTxFlags::EXTRA_INFO)];
    for t in [1u8, 2, 3, 4, 5, 1] {
        let mut e = NetifExtraInfo::new(&ExtraInfo::Xdp { headroom: 0 }, XenNetifExtraFlags::MORE);
        e.r#type = t;
        if t == 1 {
            e = match gso(1448, 1, true) {
                Slot::Extra(e) => e,
                _ => unreachable!(),
            };
        }
        s.push(Slot::Extra(e));
    }
    assert!(matches!(parse(&s), Err(TxError::Fatal(_))));
}

/// A TX ring whose frontend pushed `words.len() / 3` slots of `words` (any bytes).
fn garbage_ring(words: &[u32]) -> Box<SharedPage> {
    let page = Box::new(SharedPage::new());
    NetifTxSring::new(page.mem()).unwrap().init();
    for (i, w) in words.chunks_exact(3).enumerate() {
        for (k, v) in w.iter().enumerate() {
            page.mem().store(64 + i * 12 + k * 4, *v);
        }
    }
    page.mem().store(0, (words.len() / 3) as u32);
    page
}

proptest::proptest! {
    /// Any bytes in any number of slots: parsing returns, never panics, never claims more
    /// slots than the snapshot holds, and accepted packets respect every bound.
    #[test]
    fn garbage_never_panics(words in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..(256 * 3))) {
        let page = garbage_ring(&words);
        let mut back = NetifTxBackRing::attach(page.mem(), 0).unwrap();
        let p = back.requests().unwrap();
        let mut start = 0;
        while start < p.len() {
            match parse_packet(&p, start) {
                Ok(pkt) => {
                    proptest::prop_assert!(pkt.ring_slots >= 1 && start + pkt.ring_slots <= p.len());
                    proptest::prop_assert!(pkt.nr_slots <= MAX_SKB_SLOTS);
                    let sum: u32 = pkt.data_slots().iter().map(|s| s.len as u32).sum();
                    proptest::prop_assert_eq!(sum, pkt.size as u32);
                    for s in pkt.data_slots() {
                        proptest::prop_assert!(s.offset as usize + s.len as usize <= 4096);
                    }
                    start += pkt.ring_slots;
                }
                Err(TxError::Drop { ring_slots, .. }) => {
                    proptest::prop_assert!(ring_slots >= 1 && start + ring_slots <= p.len());
                    start += ring_slots;
                }
                Err(TxError::Incomplete) | Err(TxError::Fatal(_)) => break,
            }
        }
    }
}

proptest::proptest! {
    /// The data path parses every chain into one reused packet (`parse_packet_into`):
    /// whatever an earlier chain (or a refused one) left in it, the result is the one
    /// a fresh parse gives — the same verdict, the same fields and data slots.
    #[test]
    fn a_reused_packet_parses_as_a_fresh_one(words in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..(64 * 3)), dirt in proptest::prelude::any::<u16>()) {
        let page = garbage_ring(&words);
        let mut back = NetifTxBackRing::attach(page.mem(), 0).unwrap();
        let p = back.requests().unwrap();
        // Left over from "earlier chains": every field and slot set to junk.
        let mut reused = TxPacket::EMPTY;
        for s in reused.slots.iter_mut() {
            (s.id, s.gref, s.offset, s.len) = (dirt, u32::from(dirt), dirt, dirt);
        }
        (reused.size, reused.nr_slots, reused.nr_extras, reused.ring_slots) =
            (dirt, MAX_SKB_SLOTS, 3, u32::from(dirt));
        let mut start = 0;
        while start < p.len() {
            let fresh = parse_packet(&p, start);
            let again = parse_packet_into(&p, start, &mut reused);
            match (&fresh, again) {
                (Ok(f), Ok(())) => {
                    proptest::prop_assert_eq!(f.data_slots(), reused.data_slots());
                    proptest::prop_assert_eq!(
                        (f.size, f.flags, f.nr_slots, f.nr_extras, f.gso, f.mcast, f.ring_slots),
                        (reused.size, reused.flags, reused.nr_slots, reused.nr_extras, reused.gso, reused.mcast, reused.ring_slots)
                    );
                    start += f.ring_slots;
                }
                (Err(TxError::Drop { ring_slots, .. }), Err(e)) => {
                    proptest::prop_assert_eq!(fresh.clone().unwrap_err(), e);
                    start += *ring_slots;
                }
                (Err(f), Err(e)) => {
                    proptest::prop_assert_eq!(*f, e);
                    break;
                }
                (f, a) => proptest::prop_assert!(false, "fresh {:?}, reused {:?}", f, a),
            }
        }
    }
}

#[test]
fn tiny_gso_segments_are_dropped_not_amplified() {
    let p = parse(&[
        req(1, 10, 0, 3000, NetTxFlags::EXTRA_INFO | MORE),
        gso(1, XEN_NETIF_GSO_TYPE_TCPV4, false),
        req(2, 11, 0, 1000, NONE),
    ]);
    assert_eq!(
        p,
        Err(TxError::Drop {
            reason: DropReason::GsoTooSmall { size: 1 },
            ring_slots: 3
        })
    );
}
