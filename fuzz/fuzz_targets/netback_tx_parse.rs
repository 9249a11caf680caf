//! netback's TX request-chain parsing and validation (`netback::tx::parse_packet`,
//! `drop_responses`) over a TX ring page the guest filled with anything, with any
//! producer index, driven the way `Vif::tx_poll` drives it.
//!
//! Input: `req_prod - req_cons` (u32, anything: far-ahead indices must be refused),
//! `req_cons` (u32, to exercise wrap-around), the number of unanswered requests
//! (u8), then the bytes of the ring entries starting at `req_cons`'s slot.
//!
//! Checked on every input: no panic; the snapshot never exceeds the ring; a packet
//! never claims more slots than the snapshot holds; every accepted slot lies inside its
//! page; an accepted packet's data adds up to its size; every consumed slot is answered
//! exactly once.
#![no_main]

use dba_vm_fuzz::{take_u32, take_u8, FuzzPage, RING_ENTRIES_AT};
use libfuzzer_sys::fuzz_target;
use netback::tx::{drop_responses, parse_packet, TxError, MAX_SKB_SLOTS};
use shared_ring::netif::{NetifTxBackRing, NetifTxRequest};
use shared_ring::ring::layout;
use shared_ring::{BackIndices, XEN_PAGE_SIZE};

const SLOT: usize = core::mem::size_of::<NetifTxRequest>();
const ENTRIES: usize = 256;

fuzz_target!(|data: &[u8]| {
    let (ahead, d) = take_u32(data);
    let (cons, d) = take_u32(d);
    let (lag, entries) = take_u8(d);
    let page = FuzzPage::zeroed();
    let lo = RING_ENTRIES_AT;
    let hi = lo + SLOT * ENTRIES;
    page.fill_wrapping(entries, lo + SLOT * (cons as usize % ENTRIES), lo, hi);
    page.mem().store(layout::REQ_PROD, cons.wrapping_add(ahead));
    let indices = BackIndices {
        rsp_prod_pvt: cons.wrapping_sub(lag as u32),
        req_cons: cons,
    };
    let mut ring = NetifTxBackRing::resume(page.mem(), indices).expect("a page holds a ring");
    let Ok(mut p) = ring.requests() else {
        // ProducerOverflow: the vif is disconnected; nothing was read.
        return;
    };
    assert!(p.len() <= ENTRIES as u32, "snapshot larger than the ring");
    let mut at = 0u32;
    let mut rounds = 0;
    while at < p.len() {
        rounds += 1;
        assert!(rounds <= ENTRIES, "parsing loops");
        match parse_packet(&p, at) {
            Ok(pkt) => {
                assert!(pkt.ring_slots >= 1 && pkt.ring_slots <= p.len() - at);
                assert!(pkt.nr_slots >= 1 && pkt.nr_slots <= MAX_SKB_SLOTS);
                let mut total = 0usize;
                for s in pkt.data_slots() {
                    assert!(s.offset as usize + s.len as usize <= XEN_PAGE_SIZE);
                    total += s.len as usize;
                }
                assert_eq!(total, pkt.size as usize, "slot lengths do not add up");
                let mut n = 0u32;
                pkt.responses(0, |_| n += 1);
                assert_eq!(n, pkt.ring_slots, "every slot answered once");
                at += pkt.ring_slots;
            }
            Err(TxError::Drop { reason, ring_slots }) => {
                let _ = reason.to_string();
                assert!(ring_slots >= 1 && ring_slots <= p.len() - at);
                let mut n = 0u32;
                drop_responses(&p, at, ring_slots, -1, |_| n += 1);
                assert_eq!(n, ring_slots, "every dropped slot answered once");
                at += ring_slots;
            }
            Err(TxError::Incomplete) => break,
            Err(TxError::Fatal(reason)) => {
                let _ = reason.to_string();
                break;
            }
        }
    }
    p.consume(at);
    assert_eq!(ring.req_cons(), cons.wrapping_add(at));
});
