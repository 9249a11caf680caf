//! The local hypervisor's wire protocol (`xen_local::proto`): every request and every
//! reply decodes back to itself, and decoding any bytes at all returns a value or an
//! error, never a panic; what decodes re-encodes to exactly the bytes it came from.

use hypervisor::evtchn::Port;
use hypervisor::grant::{GntStatus, GrantRef};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use xen_ids::DomId;
use xen_local::proto::{
    Access, Accessed, AllocUnbound, Attached, Bind, Bound, Claim, Done, Fields, Hello, Map, Mapped,
    MappedPage, Op, Ping, Refusal, Reply, Request, Revoke, Share, Shared, Table, TableOpened,
    Unbind, Xenstore,
};

fn dom() -> impl Strategy<Value = DomId> {
    any::<u16>().prop_map(DomId)
}

fn gref() -> impl Strategy<Value = GrantRef> {
    any::<u32>().prop_map(GrantRef)
}

fn port() -> impl Strategy<Value = Port> {
    any::<u32>().prop_map(Port)
}

/// Every claim the wire can carry (a `u16`, `0xFFFF` meaning the assigned domain).
fn claim() -> impl Strategy<Value = Claim> {
    any::<u16>().prop_map(|c| match c {
        Claim::ASSIGNED => Claim::Assigned,
        c => Claim::Domain(DomId(c)),
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        claim().prop_map(|claim| Hello { claim }.into()),
        (dom(), any::<bool>(), any::<u32>()).prop_map(|(peer, writable, pages)| Share {
            peer,
            writable,
            pages
        }
        .into()),
        any::<u32>().prop_map(|alloc| Revoke { alloc }.into()),
        dom().prop_map(|peer| Table { peer }.into()),
        (dom(), gref()).prop_map(|(peer, gref)| Access { peer, gref }.into()),
        (
            dom(),
            any::<bool>(),
            proptest::collection::vec(gref(), 0..64)
        )
            .prop_map(|(peer, writable, refs)| Map {
                peer,
                writable,
                refs
            }
            .into()),
        dom().prop_map(|peer| AllocUnbound { peer }.into()),
        (dom(), port()).prop_map(|(peer, remote)| Bind { peer, remote }.into()),
        port().prop_map(|port| Unbind { port }.into()),
        Just(Xenstore.into()),
        Just(Ping.into()),
    ]
}

fn refusal() -> impl Strategy<Value = Refusal> {
    (any::<i16>(), any::<String>()).prop_map(|(s, reason)| Refusal {
        status: GntStatus(s),
        reason,
    })
}

/// A successful reply made of `ok`, or a refusal.
fn reply<T: std::fmt::Debug>(ok: impl Strategy<Value = T>) -> impl Strategy<Value = Reply<T>> {
    prop_oneof![ok.prop_map(Reply::Ok), refusal().prop_map(Reply::Refused)]
}

fn round_trip<T: Fields + PartialEq + std::fmt::Debug>(r: &Reply<T>) -> Result<(), TestCaseError> {
    prop_assert_eq!(&Reply::<T>::decode(&r.encode()).unwrap(), r);
    Ok(())
}

/// Decodes `bytes` as a reply of type `T`; what decodes must re-encode to `bytes`
/// (except a refusal whose reason is not UTF-8, which is read lossily).
fn any_reply<T: Fields + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(r) = Reply::<T>::decode(bytes) {
        let again = r.encode();
        let lossy = matches!(&r, Reply::Refused(_)) && std::str::from_utf8(&bytes[3..]).is_err();
        if !lossy {
            prop_assert_eq!(again.as_slice(), bytes);
        }
        prop_assert_eq!(Reply::<T>::decode(&again).unwrap(), r);
    }
    Ok(())
}

/// A valid message: a request or one of the replies with fields.
fn valid() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        request().prop_map(|r| r.encode()),
        reply(
            (any::<u32>(), proptest::collection::vec(gref(), 0..8))
                .prop_map(|(alloc, grefs)| Shared { alloc, grefs })
        )
        .prop_map(|r| r.encode()),
        reply(
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
                |(alloc, pages, page, writable)| Accessed {
                    alloc,
                    pages,
                    page,
                    writable
                }
            )
        )
        .prop_map(|r| r.encode()),
    ]
}

/// Bytes that mostly are a valid message with one byte changed, or cut short, or
/// grown; sometimes anything.
fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            valid(),
            any::<prop::sample::Index>(),
            prop_oneof![0u8..3, any::<u8>()]
        )
            .prop_map(|(mut m, at, b)| {
                let i = at.index(m.len());
                m[i] = b;
                m
            }),
        (valid(), any::<prop::sample::Index>()).prop_map(|(mut m, at)| {
            m.truncate(at.index(m.len() + 1));
            m
        }),
        (valid(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(mut m, tail)| {
            m.extend(tail);
            m
        }),
        proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

proptest! {
    #[test]
    fn every_request_round_trips(req in request()) {
        let bytes = req.encode();
        prop_assert_eq!(&bytes[..2], &(req.op() as u16).to_le_bytes());
        prop_assert_eq!(Request::decode(&bytes).unwrap(), req);
    }

    #[test]
    fn every_reply_round_trips(
        attached in reply(dom().prop_map(|domid| Attached { domid })),
        shared in reply((any::<u32>(), proptest::collection::vec(gref(), 0..64))
            .prop_map(|(alloc, grefs)| Shared { alloc, grefs })),
        done in reply(Just(Done)),
        table in reply(any::<u32>().prop_map(|capacity| TableOpened { capacity })),
        accessed in reply((any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>())
            .prop_map(|(alloc, pages, page, writable)| Accessed { alloc, pages, page, writable })),
        mapped in reply(proptest::collection::vec(
            (any::<u32>(), any::<u32>()).prop_map(|(fd_index, page)| MappedPage { fd_index, page }),
            0..64,
        ).prop_map(|pages| Mapped { pages })),
        bound in reply(port().prop_map(|port| Bound { port })),
    ) {
        round_trip(&attached)?;
        round_trip(&shared)?;
        round_trip(&done)?;
        round_trip(&table)?;
        round_trip(&accessed)?;
        round_trip(&mapped)?;
        round_trip(&bound)?;
    }
}

proptest! {
    // Many cases: a changed byte must land on the one field that matters.
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decoding_any_bytes_never_panics_and_is_exact(bytes in message()) {
        if let Ok(req) = Request::decode(&bytes) {
            prop_assert_eq!(req.encode(), bytes.clone());
        }
        any_reply::<Attached>(&bytes)?;
        any_reply::<Shared>(&bytes)?;
        any_reply::<Done>(&bytes)?;
        any_reply::<TableOpened>(&bytes)?;
        any_reply::<Accessed>(&bytes)?;
        any_reply::<Mapped>(&bytes)?;
        any_reply::<Bound>(&bytes)?;
    }
}

#[test]
fn every_op_code_is_generated() {
    // The request strategy covers every operation (a new one must be added there).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let req = request().new_tree(&mut runner).unwrap().current();
        seen.insert(req.op());
    }
    assert_eq!(seen.len(), Op::ALL.len());
}

#[test]
fn a_lying_count_allocates_nothing_and_is_an_error() {
    // MAP claiming 2^32-1 references in a 13-byte message; SHARE's reply claiming as
    // many grant references.
    let mut map = vec![6, 0, 0, 0, 1];
    map.extend(u32::MAX.to_le_bytes());
    map.extend(7u32.to_le_bytes());
    assert!(Request::decode(&map).is_err());
    let mut shared = vec![0];
    shared.extend(1u32.to_le_bytes());
    shared.extend(u32::MAX.to_le_bytes());
    assert!(Reply::<Shared>::decode(&shared).is_err());
}
