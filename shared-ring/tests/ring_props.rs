//! Property tests of the ring state machine: wraparound and hostile producer indices.

use proptest::prelude::*;
use shared_ring::netif::{
    NetifTxBackRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse, NetifTxSring,
};
use shared_ring::ring::layout;
use shared_ring::{RingError, SharedPage};

proptest! {
    /// Requests and responses pass through the ring in order, unchanged, from any
    /// starting index (including across the u32 wrap), in random batch sizes.
    #[test]
    fn fifo_across_wraparound(
        start in prop_oneof![Just(u32::MAX - 3), any::<u32>()],
        batches in prop::collection::vec((1u32..300, 1u32..300), 1..60),
    ) {
        let page = SharedPage::new();
        NetifTxSring::new(page.mem()).unwrap().init();
        for off in [layout::REQ_PROD, layout::RSP_PROD] {
            page.mem().store(off, start);
        }
        let mut f = NetifTxFrontRing::attach(page.mem(), start).unwrap();
        let mut b = NetifTxBackRing::attach(page.mem(), start).unwrap();
        let (mut sent, mut got_req, mut got_rsp) = (0u32, 0u32, 0u32);
        for (n_put, n_take) in batches {
            for _ in 0..n_put {
                let q = NetifTxRequest { gref: sent, id: sent as u16, ..Default::default() };
                match f.put_request(&q) {
                    Ok(()) => sent += 1,
                    Err(e) => { prop_assert_eq!(e, RingError::Full); break; }
                }
            }
            f.push_requests_and_check_notify();
            let mut p = b.requests().unwrap();
            let k = p.len().min(n_take);
            for i in 0..k {
                let q: NetifTxRequest = p.copy(i).unwrap();
                prop_assert_eq!(q.gref, got_req);
                got_req += 1;
            }
            prop_assert!(p.copy::<NetifTxRequest>(p.len()).is_none());
            p.consume(k);
            while b.unanswered() > 0 {
                b.put_response(&NetifTxResponse { id: (b.rsp_prod_pvt().wrapping_sub(start)) as u16, status: 0 }).unwrap();
            }
            b.push_responses_and_check_notify();
            while let Some(r) = f.take_response().unwrap() {
                prop_assert_eq!(r.id, got_rsp as u16);
                got_rsp += 1;
            }
            prop_assert!(f.free_requests() <= f.size());
        }
        prop_assert_eq!(got_rsp, got_req);
    }

    /// Any producer index more than a ring ahead of the consumer's reference is an error
    /// (never a count above the ring size), and any other gives a bounded count.
    #[test]
    fn wild_producer_index_is_detected(start in any::<u32>(), wild in any::<u32>()) {
        let page = SharedPage::new();
        NetifTxSring::new(page.mem()).unwrap().init();
        let mut b = NetifTxBackRing::attach(page.mem(), start).unwrap();
        let mut f = NetifTxFrontRing::attach(page.mem(), start).unwrap();
        page.mem().store(layout::REQ_PROD, wild);
        page.mem().store(layout::RSP_PROD, wild);
        let ahead = wild.wrapping_sub(start);
        match b.unconsumed_requests() {
            Ok(n) => { prop_assert!(ahead <= 256); prop_assert_eq!(n, ahead); }
            Err(RingError::ProducerOverflow { prod, .. }) => { prop_assert!(ahead > 256); prop_assert_eq!(prod, wild); }
            Err(e) => prop_assert!(false, "{:?}", e),
        }
        prop_assert_eq!(b.final_check_for_requests().is_err(), ahead > 256);
        // The frontend made no requests: any response is either overflow or unrequested.
        match f.take_response() {
            Ok(None) => prop_assert_eq!(ahead, 0),
            Err(RingError::ProducerOverflow { .. }) => prop_assert!(ahead > 256),
            Err(RingError::UnrequestedResponse { .. }) => prop_assert!(ahead > 0 && ahead <= 256),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

/// Garbage in every slot decodes to *some* request (no panic) and is consumed once.
#[test]
fn garbage_slots_decode_without_panic() {
    let page = SharedPage::new();
    NetifTxSring::new(page.mem()).unwrap().init();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    page.mem()
        .slice(64, 4032)
        .unwrap()
        .copy_from(&garbage[64..]);
    page.mem().store(layout::REQ_PROD, 256);
    let mut b = NetifTxBackRing::attach(page.mem(), 0).unwrap();
    let mut n = 0;
    while let Some(_req) = b.take_request().unwrap() {
        n += 1;
    }
    assert_eq!(n, 256);
    let _ = NetifTxFrontRing::attach(page.mem(), 0)
        .unwrap()
        .sring()
        .copy_slot::<shared_ring::netif::NetifExtraInfo>(3)
        .parse();
}

/// A consumer waiting past requests it cannot use yet asks to be notified of the next
/// push beyond them, and is told not to sleep only when requests beyond them arrived.
#[test]
fn final_check_after_seen_requests_waits_for_the_next_push() {
    let page = SharedPage::new();
    NetifTxSring::new(page.mem()).unwrap().init();
    let mut f = NetifTxFrontRing::attach(page.mem(), 0).unwrap();
    let mut b = NetifTxBackRing::attach(page.mem(), 0).unwrap();
    for _ in 0..3 {
        f.put_request(&NetifTxRequest::default()).unwrap();
    }
    f.push_requests();
    // Three requests seen and not usable: nothing new, sleep; notify on the fourth.
    assert!(!b.final_check_for_requests_after(3).unwrap());
    assert_eq!(b.sring().req_event(), 4);
    // The plain final check would not sleep: the three are unconsumed.
    assert!(b.final_check_for_requests_after(2).unwrap());
    f.put_request(&NetifTxRequest::default()).unwrap();
    assert!(
        f.push_requests_and_check_notify(),
        "the fourth request notifies"
    );
    assert!(b.final_check_for_requests_after(3).unwrap());
}
