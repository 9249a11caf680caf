//! Differential test: random sequences of ring operations run on Xen's C macros and on
//! `shared-ring`, each on its own page; after every step the two pages must be identical
//! byte for byte, and so must every return value (notify decisions, final checks,
//! unconsumed counts, copied entries, overflow verdicts) and every private index.
//! Indices start anywhere, including just below `u32::MAX`, so wraparound is exercised.

use proptest::prelude::*;
use shared_ring::netif::{NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse};
use shared_ring::ring::layout;
use shared_ring::{BackRing, FrontRing, RingError, SharedPage, Sring, XEN_PAGE_SIZE};

/// One step of the sequence.
#[derive(Debug, Clone)]
enum Op {
    /// Front: put up to n requests (stopping when full).
    Put(u16, u64),
    /// Front: RING_PUSH_REQUESTS_AND_CHECK_NOTIFY.
    PushRequestsNotify,
    /// Front: RING_PUSH_REQUESTS.
    PushRequests,
    /// Back: copy and consume up to n unconsumed requests.
    Take(u16),
    /// Back: answer up to n consumed requests.
    Respond(u16, u64),
    /// Back: RING_PUSH_RESPONSES_AND_CHECK_NOTIFY.
    PushResponsesNotify,
    /// Back: RING_PUSH_RESPONSES.
    PushResponses,
    /// Back: RING_FINAL_CHECK_FOR_REQUESTS.
    FinalCheckRequests,
    /// Front: copy and consume up to n responses.
    TakeResponses(u16),
    /// Front: RING_FINAL_CHECK_FOR_RESPONSES.
    FinalCheckResponses,
    /// A hostile frontend writes `req_prod = base + delta` (then it is restored).
    WildReqProd(u32),
    /// A hostile backend writes `rsp_prod = base + delta` (then it is restored).
    WildRspProd(u32),
    /// The backend restarts: a new one attaches at the shared `rsp_prod`
    /// (`BACK_RING_ATTACH(r, s, s->rsp_prod)`, as Linux's backends do), after checking
    /// `req_prod` against it (`RING_REQUEST_PROD_OVERFLOW`).
    ReattachBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..300, any::<u64>()).prop_map(|(n, s)| Op::Put(n, s)),
        3 => Just(Op::PushRequestsNotify),
        1 => Just(Op::PushRequests),
        4 => (0u16..300).prop_map(Op::Take),
        4 => (0u16..300, any::<u64>()).prop_map(|(n, s)| Op::Respond(n, s)),
        3 => Just(Op::PushResponsesNotify),
        1 => Just(Op::PushResponses),
        2 => Just(Op::FinalCheckRequests),
        4 => (0u16..300).prop_map(Op::TakeResponses),
        2 => Just(Op::FinalCheckResponses),
        1 => prop_oneof![0u32..600, any::<u32>()].prop_map(Op::WildReqProd),
        1 => prop_oneof![0u32..600, any::<u32>()].prop_map(Op::WildRspProd),
        1 => Just(Op::ReattachBack),
    ]
}

fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), (u32::MAX - 600)..=u32::MAX, any::<u32>()]
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

trait Gen {
    fn gen(x: u64) -> Self;
}
impl Gen for NetifTxRequest {
    fn gen(x: u64) -> Self {
        let y = splitmix(x);
        NetifTxRequest {
            gref: x as u32,
            offset: (x >> 32) as u16,
            flags: (x >> 48) as u16,
            id: y as u16,
            size: (y >> 16) as u16,
        }
    }
}
impl Gen for NetifTxResponse {
    fn gen(x: u64) -> Self {
        NetifTxResponse {
            id: x as u16,
            status: (x >> 16) as i16,
        }
    }
}
impl Gen for NetifRxRequest {
    fn gen(x: u64) -> Self {
        NetifRxRequest {
            id: x as u16,
            pad: (x >> 16) as u16,
            gref: (x >> 32) as u32,
        }
    }
}
impl Gen for NetifRxResponse {
    fn gen(x: u64) -> Self {
        NetifRxResponse {
            id: x as u16,
            offset: (x >> 16) as u16,
            flags: (x >> 32) as u16,
            status: (x >> 48) as i16,
        }
    }
}

fn bytes(p: &SharedPage) -> Vec<u8> {
    let mut v = vec![0u8; XEN_PAGE_SIZE];
    p.mem().copy_to(&mut v);
    v
}

fn set_header(p: &SharedPage, start: u32) {
    let m = p.mem();
    m.store(layout::REQ_PROD, start);
    m.store(layout::RSP_PROD, start);
    m.store(layout::REQ_EVENT, start.wrapping_add(1));
    m.store(layout::RSP_EVENT, start.wrapping_add(1));
}

macro_rules! differential {
    ($name:ident, $c:ident, $req:ty, $rsp:ty) => {
        mod $name {
            use super::*;
            use shared_ring_oracle::$c as c;

            pub fn run(start: u32, ops: &[Op]) -> Result<(), TestCaseError> {
                let rp = Box::new(SharedPage::new());
                let cp = Box::new(SharedPage::new());
                // Fill both pages with the same garbage first: init must clear what it
                // clears and leave the rest, identically.
                let junk: Vec<u8> = (0..XEN_PAGE_SIZE as u64)
                    .map(|i| splitmix(i) as u8)
                    .collect();
                rp.mem().copy_from(&junk);
                cp.mem().copy_from(&junk);
                Sring::<$req, $rsp>::new(rp.mem()).unwrap().init();
                let _ = c::Front::init(&cp);
                prop_assert_eq!(bytes(&rp), bytes(&cp), "after init");
                set_header(&rp, start);
                set_header(&cp, start);
                let mut rf = FrontRing::<$req, $rsp>::attach(rp.mem(), start).unwrap();
                let mut rb = BackRing::<$req, $rsp>::attach(rp.mem(), start).unwrap();
                let mut cf = c::Front::attach(&cp, start);
                let mut cb = c::Back::attach(&cp, start);

                for (step, op) in ops.iter().enumerate() {
                    match *op {
                        Op::Put(n, seed) => {
                            for i in 0..n as u64 {
                                prop_assert_eq!(rf.is_full(), cf.full());
                                prop_assert_eq!(rf.free_requests(), cf.free_requests());
                                if cf.full() {
                                    prop_assert_eq!(
                                        rf.put_request(&<$req>::gen(0)),
                                        Err(RingError::Full)
                                    );
                                    break;
                                }
                                let q = <$req>::gen(seed.wrapping_add(i));
                                rf.put_request(&q).unwrap();
                                cf.put_request(&q);
                            }
                        }
                        Op::PushRequestsNotify => {
                            prop_assert_eq!(
                                rf.push_requests_and_check_notify(),
                                cf.push_requests_and_check_notify(),
                                "notify at step {}",
                                step
                            );
                        }
                        Op::PushRequests => {
                            rf.push_requests();
                            cf.push_requests();
                        }
                        Op::Take(n) => {
                            let avail = cb.unconsumed_requests();
                            prop_assert_eq!(rb.unconsumed_requests(), Ok(avail));
                            for _ in 0..(n as u32).min(avail) {
                                prop_assert_eq!(
                                    rb.take_request().unwrap(),
                                    Some(cb.take_request())
                                );
                            }
                        }
                        Op::Respond(n, seed) => {
                            let (rsp_prod_pvt, req_cons) = cb.pvt();
                            let unanswered = req_cons.wrapping_sub(rsp_prod_pvt);
                            prop_assert_eq!(rb.unanswered(), unanswered);
                            for i in 0..(n as u32).min(unanswered) {
                                let p = <$rsp>::gen(seed.wrapping_add(i as u64));
                                rb.put_response(&p).unwrap();
                                cb.put_response(&p);
                            }
                            if (n as u32) > unanswered {
                                prop_assert_eq!(
                                    rb.put_response(&<$rsp>::gen(0)),
                                    Err(RingError::Full)
                                );
                            }
                        }
                        Op::PushResponsesNotify => {
                            prop_assert_eq!(
                                rb.push_responses_and_check_notify(),
                                cb.push_responses_and_check_notify(),
                                "notify at step {}",
                                step
                            );
                        }
                        Op::PushResponses => {
                            rb.push_responses();
                            cb.push_responses();
                        }
                        Op::FinalCheckRequests => {
                            prop_assert_eq!(
                                rb.final_check_for_requests(),
                                Ok(cb.final_check_for_requests())
                            );
                        }
                        Op::TakeResponses(n) => {
                            let avail = cf.unconsumed_responses();
                            prop_assert_eq!(rf.unconsumed_responses(), Ok(avail));
                            for _ in 0..(n as u32).min(avail) {
                                prop_assert_eq!(
                                    rf.take_response().unwrap(),
                                    Some(cf.take_response())
                                );
                            }
                        }
                        Op::FinalCheckResponses => {
                            prop_assert_eq!(
                                rf.final_check_for_responses(),
                                Ok(cf.final_check_for_responses())
                            );
                        }
                        Op::WildReqProd(delta) => {
                            let saved = rp.mem().load(layout::REQ_PROD);
                            prop_assert_eq!(saved, cp.mem().load(layout::REQ_PROD));
                            let wild = cb.pvt().0.wrapping_add(delta);
                            rp.mem().store(layout::REQ_PROD, wild);
                            cp.mem().store(layout::REQ_PROD, wild);
                            let c_overflow = cb.request_prod_overflow(wild);
                            match rb.unconsumed_requests() {
                                Err(RingError::ProducerOverflow { prod, .. }) => {
                                    prop_assert!(c_overflow);
                                    prop_assert_eq!(prod, wild);
                                }
                                Ok(n) => {
                                    prop_assert!(!c_overflow);
                                    prop_assert_eq!(n, cb.unconsumed_requests());
                                }
                                Err(e) => prop_assert!(false, "unexpected {:?}", e),
                            }
                            prop_assert_eq!(rb.requests().is_err(), c_overflow);
                            rp.mem().store(layout::REQ_PROD, saved);
                            cp.mem().store(layout::REQ_PROD, saved);
                        }
                        Op::WildRspProd(delta) => {
                            let saved = rp.mem().load(layout::RSP_PROD);
                            let wild = cf.pvt().1.wrapping_add(delta);
                            rp.mem().store(layout::RSP_PROD, wild);
                            cp.mem().store(layout::RSP_PROD, wild);
                            let c_overflow = cf.response_prod_overflow(wild);
                            let (req_prod_pvt, rsp_cons) = cf.pvt();
                            match rf.unconsumed_responses() {
                                Err(RingError::ProducerOverflow { prod, .. }) => {
                                    prop_assert!(c_overflow);
                                    prop_assert_eq!(prod, wild);
                                }
                                // Stricter than C: more responses than requests outstanding.
                                Err(RingError::UnrequestedResponse { .. }) => {
                                    prop_assert!(!c_overflow);
                                    prop_assert!(delta > req_prod_pvt.wrapping_sub(rsp_cons));
                                }
                                Ok(n) => {
                                    prop_assert!(!c_overflow);
                                    prop_assert_eq!(n, cf.unconsumed_responses());
                                }
                                Err(e) => prop_assert!(false, "unexpected {:?}", e),
                            }
                            rp.mem().store(layout::RSP_PROD, saved);
                            cp.mem().store(layout::RSP_PROD, saved);
                        }
                        Op::ReattachBack => {
                            let rsp_prod = cp.mem().load(layout::RSP_PROD);
                            cb = c::Back::attach(&cp, rsp_prod);
                            let req_prod = cp.mem().load(layout::REQ_PROD);
                            prop_assert!(!cb.request_prod_overflow(req_prod));
                            rb = BackRing::<$req, $rsp>::attach_shared(rp.mem()).unwrap();
                        }
                    }
                    prop_assert_eq!(rf.req_prod_pvt(), cf.pvt().0, "req_prod_pvt after {:?}", op);
                    prop_assert_eq!(rf.rsp_cons(), cf.pvt().1, "rsp_cons after {:?}", op);
                    prop_assert_eq!(rb.rsp_prod_pvt(), cb.pvt().0, "rsp_prod_pvt after {:?}", op);
                    prop_assert_eq!(rb.req_cons(), cb.pvt().1, "req_cons after {:?}", op);
                    let (a, b) = (bytes(&rp), bytes(&cp));
                    if a != b {
                        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
                        prop_assert!(
                            false,
                            "pages differ at byte {} after step {} {:?}",
                            first,
                            step,
                            op
                        );
                    }
                }
                Ok(())
            }
        }
    };
}

differential!(tx, tx, NetifTxRequest, NetifTxResponse);
differential!(rx, rx, NetifRxRequest, NetifRxResponse);

fn skip() -> bool {
    if !shared_ring_oracle::AVAILABLE {
        eprintln!("SKIP: {}", shared_ring_oracle::SKIP_REASON);
        return true;
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn tx_ring_matches_c_macros(start in start_index(), ops in prop::collection::vec(op(), 1..400)) {
        if skip() { return Ok(()); }
        tx::run(start, &ops)?;
    }

    #[test]
    fn rx_ring_matches_c_macros(start in start_index(), ops in prop::collection::vec(op(), 1..400)) {
        if skip() { return Ok(()); }
        rx::run(start, &ops)?;
    }
}

/// A long deterministic run that fills and drains the ring many times across the
/// `u32` wrap, so every notify/event path is hit at the boundary.
#[test]
fn long_run_across_wraparound() {
    if skip() {
        return;
    }
    let mut ops = Vec::new();
    for i in 0..3000u64 {
        let n = (splitmix(i) % 300) as u16;
        ops.push(Op::Put(n, i));
        ops.push(if i % 3 == 0 {
            Op::PushRequests
        } else {
            Op::PushRequestsNotify
        });
        ops.push(Op::Take((splitmix(i + 7) % 300) as u16));
        ops.push(Op::FinalCheckRequests);
        ops.push(Op::Respond((splitmix(i + 9) % 300) as u16, i));
        ops.push(Op::PushResponsesNotify);
        ops.push(Op::TakeResponses((splitmix(i + 11) % 300) as u16));
        ops.push(Op::FinalCheckResponses);
    }
    tx::run(u32::MAX - 1000, &ops).unwrap();
    rx::run(u32::MAX - 77, &ops).unwrap();
}
