//! [`BackRing::attach_shared`]: a backend that takes over a ring another backend served.

use super::*;
use crate::netif::{NetifTxBackRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse};
use crate::page::SharedPage;
use std::vec::Vec;

fn request(n: u32) -> NetifTxRequest {
    NetifTxRequest {
        gref: n,
        id: n as u16,
        ..Default::default()
    }
}

/// A front ring starting at `start` with `answered` requests taken and answered by a
/// first backend, then `consumed` taken and not answered, then `posted` never read.
fn ring_served_by_a_first_backend(
    page: &SharedPage,
    start: u32,
    answered: u32,
    consumed: u32,
    posted: u32,
) -> NetifTxFrontRing<'_> {
    let _ = NetifTxFrontRing::init(page.mem()).unwrap();
    for off in [layout::REQ_PROD, layout::RSP_PROD] {
        page.mem().store(off, start);
    }
    let mut f = NetifTxFrontRing::attach(page.mem(), start).unwrap();
    let mut b = NetifTxBackRing::attach(page.mem(), start).unwrap();
    for n in 0..answered + consumed + posted {
        f.put_request(&request(n)).unwrap();
    }
    f.push_requests();
    for _ in 0..answered + consumed {
        b.take_request().unwrap().unwrap();
    }
    for _ in 0..answered {
        b.put_response(&NetifTxResponse { id: 0, status: 0 })
            .unwrap();
    }
    b.push_responses();
    f
}

#[test]
fn attaches_at_the_shared_response_index() {
    for start in [0, 1000, u32::MAX - 5] {
        let page = SharedPage::new();
        let _f = ring_served_by_a_first_backend(&page, start, 7, 3, 4);
        let mut b = NetifTxBackRing::attach_shared(page.mem()).unwrap();
        let at = start.wrapping_add(7);
        assert_eq!((b.rsp_prod_pvt(), b.req_cons()), (at, at));
        // The consumed-but-unanswered requests and the posted ones, once each, in order.
        let mut got = Vec::new();
        while let Some(q) = b.take_request().unwrap() {
            got.push(q.gref);
        }
        assert_eq!(got, (7..14).collect::<Vec<_>>());
        assert_eq!(b.unanswered(), 7);
    }
}

#[test]
fn a_fresh_ring_attaches_at_zero() {
    let page = SharedPage::new();
    let _f = NetifTxFrontRing::init(page.mem()).unwrap();
    let b = NetifTxBackRing::attach_shared(page.mem()).unwrap();
    assert_eq!(b.indices(), BackIndices::default());
}

#[test]
fn responses_go_after_the_previous_backend_s() {
    let page = SharedPage::new();
    let mut f = ring_served_by_a_first_backend(&page, 0, 5, 2, 0);
    for _ in 0..5 {
        assert!(f.take_response().unwrap().is_some());
    }
    let mut b = NetifTxBackRing::attach_shared(page.mem()).unwrap();
    while b.take_request().unwrap().is_some() {}
    for id in [5, 6] {
        b.put_response(&NetifTxResponse { id, status: 0 }).unwrap();
    }
    b.push_responses();
    let ids: Vec<u16> = std::iter::from_fn(|| f.take_response().unwrap())
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [5, 6]);
    assert_eq!(f.free_requests(), f.size());
}

#[test]
fn a_request_index_more_than_a_ring_ahead_is_refused() {
    let page = SharedPage::new();
    let _f = ring_served_by_a_first_backend(&page, 40, 3, 0, 0);
    let size = NetifTxBackRing::attach_shared(page.mem()).unwrap().size();
    // Exactly a full ring past rsp_prod is allowed; one more is not.
    page.mem().store(layout::REQ_PROD, 43 + size);
    assert!(NetifTxBackRing::attach_shared(page.mem()).is_ok());
    for wild in [43 + size + 1, 42, u32::MAX] {
        page.mem().store(layout::REQ_PROD, wild);
        assert_eq!(
            NetifTxBackRing::attach_shared(page.mem()).err(),
            Some(RingError::ProducerOverflow {
                prod: wild,
                base: 43,
                size
            }),
            "req_prod {wild}"
        );
    }
}

#[test]
fn too_small_memory_is_refused() {
    let page = SharedPage::new();
    let mem = page.mem().slice(0, 64).unwrap();
    assert!(matches!(
        NetifTxBackRing::attach_shared(mem),
        Err(RingError::TooSmall { .. })
    ));
}
