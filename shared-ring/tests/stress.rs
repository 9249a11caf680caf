//! Two threads, one page: the frontend produces millions of requests, the backend
//! consumes them and answers, the frontend consumes the answers. Nothing may be lost,
//! duplicated or reordered. Both sides sleep-free: they spin on the final checks, which
//! exercises the notify/event protocol under real concurrency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use shared_ring::netif::{
    NetifTxBackRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse, NetifTxSring,
};
use shared_ring::SharedPage;

const N: u32 = 4_000_000;

#[test]
fn two_threads_millions_of_entries() {
    let page: &'static SharedPage = Box::leak(Box::new(SharedPage::new()));
    NetifTxSring::new(page.mem()).unwrap().init();
    let done = Arc::new(AtomicBool::new(false));

    let back = {
        let done = done.clone();
        thread::spawn(move || {
            let mut b = NetifTxBackRing::attach(page.mem(), 0).unwrap();
            let mut expect = 0u32;
            let mut notifies = 0u64;
            while expect < N {
                let mut p = b.requests().expect("producer index sane");
                let n = p.len();
                for i in 0..n {
                    let q: NetifTxRequest = p.copy(i).unwrap();
                    assert_eq!(q.gref, expect, "request lost, duplicated or reordered");
                    assert_eq!(q.size, (expect % 1500) as u16);
                    expect += 1;
                }
                p.consume(n);
                for _ in 0..n {
                    let id = b.rsp_prod_pvt() as u16;
                    b.put_response(&NetifTxResponse { id, status: 0 }).unwrap();
                }
                if n > 0 && b.push_responses_and_check_notify() {
                    notifies += 1;
                }
                if n == 0 && !b.final_check_for_requests().unwrap() {
                    std::hint::spin_loop();
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::yield_now();
                }
            }
            (expect, notifies)
        })
    };

    let mut f = NetifTxFrontRing::attach(page.mem(), 0).unwrap();
    let (mut sent, mut answered) = (0u32, 0u32);
    while answered < N {
        while sent < N && !f.is_full() {
            f.put_request(&NetifTxRequest {
                gref: sent,
                size: (sent % 1500) as u16,
                ..Default::default()
            })
            .unwrap();
            sent += 1;
            if sent % 64 == 0 {
                break;
            }
        }
        f.push_requests_and_check_notify();
        let mut p = f.responses().expect("response index sane");
        let n = p.len();
        for i in 0..n {
            let r: NetifTxResponse = p.copy(i).unwrap();
            assert_eq!(
                r.id, answered as u16,
                "response lost, duplicated or reordered"
            );
            answered += 1;
        }
        p.consume(n);
        if n == 0 && sent == N && !f.final_check_for_responses().unwrap() {
            thread::yield_now();
        }
    }
    done.store(true, Ordering::Relaxed);
    let (consumed, _notifies) = back.join().unwrap();
    assert_eq!(consumed, N);
    assert_eq!(answered, N);
    assert_eq!(f.take_response().unwrap(), None);
}
