//! The frontend's consumer path over a ring page the backend filled with anything:
//! `FrontRing::responses` (one read of `rsp_prod`, overflow and unrequested-response
//! checks), `take_response` and `final_check_for_responses`, on the RX ring (with
//! netfront's reading of each `netif_rx_response` / `netif_extra_info`) and on the TX
//! ring.
//!
//! netfront's RX reassembly lives inside `Netfront::recv`, which needs a connected
//! frontend; there is no pure function for it to fuzz. This target therefore applies
//! the same per-response checks netfront makes (status sign, offset + status within the
//! page, frame ≤ 65535 bytes, extra-info chains) to each copied response; see
//! `docs/security.md`.
//!
//! Input: a ring selector and private indices (`req_prod_pvt - rsp_cons` as u16,
//! `rsp_cons` as u32), `rsp_prod - rsp_cons` (u32, anything), then the entry bytes from
//! `rsp_cons`'s slot.
#![no_main]

use dba_vm_fuzz::{take_u32, take_u8, FuzzPage, RING_ENTRIES_AT};
use libfuzzer_sys::fuzz_target;
use shared_ring::netif::{
    NetRxFlags, NetifExtraInfo, NetifRxFrontRing, NetifRxResponse, NetifTxFrontRing,
    NetifTxResponse, NETIF_RSP_NULL,
};
use shared_ring::ring::layout;
use shared_ring::{FrontIndices, RingError, XEN_PAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let (which, d) = take_u8(data);
    let (outstanding_lo, d) = take_u8(d);
    let (outstanding_hi, d) = take_u8(d);
    // A frontend never has more requests out than its ring holds.
    let outstanding = u16::from_le_bytes([outstanding_lo, outstanding_hi]) as u32 % 257;
    let (cons, d) = take_u32(d);
    let (ahead, entries) = take_u32(d);
    let page = FuzzPage::zeroed();
    let idx = FrontIndices {
        req_prod_pvt: cons.wrapping_add(outstanding),
        rsp_cons: cons,
    };
    page.mem().store(layout::RSP_PROD, cons.wrapping_add(ahead));
    if which & 1 == 0 {
        rx(&page, idx, entries);
    } else {
        tx(&page, idx, entries);
    }
});

fn check_err(e: RingError, idx: FrontIndices) {
    let _ = e.to_string();
    match e {
        RingError::ProducerOverflow { .. } | RingError::UnrequestedResponse { .. } => {}
        other => panic!("unexpected ring error {other:?} for {idx:?}"),
    }
}

fn rx(page: &FuzzPage, idx: FrontIndices, entries: &[u8]) {
    const SLOT: usize = 8;
    let lo = RING_ENTRIES_AT;
    let hi = lo + SLOT * 256;
    page.fill_wrapping(entries, lo + SLOT * (idx.rsp_cons as usize % 256), lo, hi);
    let mut ring = NetifRxFrontRing::resume(page.mem(), idx).expect("a page holds a ring");
    let size = ring.size();
    let mut p = match ring.responses() {
        Ok(p) => p,
        Err(e) => return check_err(e, idx),
    };
    let n = p.len();
    assert!(n <= size, "more responses than ring slots");
    assert!(
        n <= idx.req_prod_pvt.wrapping_sub(idx.rsp_cons),
        "responses to requests never made were accepted"
    );
    // netfront's reading of each response.
    let mut frame_len = 0usize;
    let mut error = false;
    let mut extra_next = false;
    let mut frames = 0u32;
    for i in 0..n {
        if extra_next {
            let e: NetifExtraInfo = p.copy(i).expect("within the snapshot");
            let _ = e.parse();
            extra_next = e.has_more();
            continue;
        }
        let r: NetifRxResponse = p.copy(i).expect("within the snapshot");
        let flags = r.rx_flags();
        if r.status < 0 || r.offset as usize + r.status.max(0) as usize > XEN_PAGE_SIZE {
            error = true;
        } else if !error {
            let len = r.status as usize;
            if frame_len + len > 65535 {
                error = true;
            } else {
                frame_len += len;
            }
        }
        assert!(frame_len <= 65535);
        extra_next = flags.contains(NetRxFlags::EXTRA_INFO);
        if !flags.contains(NetRxFlags::MORE_DATA) {
            frames += 1;
            frame_len = 0;
            error = false;
        }
    }
    assert!(frames <= n);
    assert!(p.copy::<NetifRxResponse>(n).is_none());
    p.consume(n);
    assert_eq!(ring.rsp_cons(), idx.rsp_cons.wrapping_add(n));
    // The next poll sees the same producer index: nothing new, and asking for an event
    // must not fail.
    assert_eq!(ring.final_check_for_responses(), Ok(false));
}

fn tx(page: &FuzzPage, idx: FrontIndices, entries: &[u8]) {
    const SLOT: usize = 12;
    let lo = RING_ENTRIES_AT;
    let hi = lo + SLOT * 256;
    page.fill_wrapping(entries, lo + SLOT * (idx.rsp_cons as usize % 256), lo, hi);
    let mut ring = NetifTxFrontRing::resume(page.mem(), idx).expect("a page holds a ring");
    let mut taken = 0u32;
    loop {
        match ring.take_response() {
            Ok(Some(r)) => {
                let r: NetifTxResponse = r;
                let _ = r.status == NETIF_RSP_NULL;
                taken += 1;
                assert!(taken <= ring.size(), "take_response loops");
            }
            Ok(None) => break,
            Err(e) => return check_err(e, idx),
        }
    }
    assert!(taken <= idx.req_prod_pvt.wrapping_sub(idx.rsp_cons));
}
