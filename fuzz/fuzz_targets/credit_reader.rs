//! The frontend's credit-area reader (`CreditReader::snapshot` / `poll`) over a TX ring
//! page tail the backend (or anyone who can write the page) filled with anything, and
//! the dual token bucket fed with whatever it yields, as netfront's `apply_credits`
//! feeds it. Also the backend's reading of the frontend block
//! (`CreditPublisher::front_counters`, an untrusted hint).
//!
//! Input: 128 bytes of credit area, then charges of 4 bytes each (µs elapsed as u16,
//! frame bytes as u16).
//!
//! Checked: no panic, no hang (the seqlock gives up after `SEQLOCK_RETRIES`); a snapshot
//! is only returned with the right magic and version; a second `poll` of unchanged
//! memory reports nothing new; a refused charge's `Wait { ns }` is exact: the same charge
//! succeeds `ns` later.
#![no_main]

use dba_vm_fuzz::FuzzPage;
use libfuzzer_sys::fuzz_target;
use shared_ring::credit::{CREDIT_AREA_BYTES, CREDIT_AREA_OFFSET, CREDIT_MAGIC};
use shared_ring::{
    CreditArea, CreditError, CreditPublisher, CreditReader, Denied, DualTokenBucket,
};

fuzz_target!(|data: &[u8]| {
    let n = data.len().min(CREDIT_AREA_BYTES);
    let (area_bytes, charges) = data.split_at(n);
    let page = FuzzPage::zeroed();
    let mut tail = [0u8; CREDIT_AREA_BYTES];
    tail[..n].copy_from_slice(area_bytes);
    page.mem()
        .slice(CREDIT_AREA_OFFSET, CREDIT_AREA_BYTES)
        .expect("the area fits in the page")
        .copy_from(&tail);
    let area = CreditArea::in_tx_page(page.mem()).expect("a TX page holds the area");

    // The backend's view of the frontend block: a hint, any value is acceptable.
    let _ = CreditPublisher::resume(area, 0).front_counters();

    let mut reader = CreditReader::new(area);
    let first = reader.poll();
    match first {
        Ok(Some(s)) => {
            assert_eq!(page.mem().load(CREDIT_AREA_OFFSET), CREDIT_MAGIC);
            assert_eq!(
                page.mem().load(CREDIT_AREA_OFFSET + 4) as u16,
                area.version()
            );
            assert_eq!(reader.poll(), Ok(None), "unchanged area polled as new");
            assert_eq!(reader.snapshot(), Ok(s));
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
            assert!(matches!(
                e,
                CreditError::NotPublished
                    | CreditError::BadMagic(_)
                    | CreditError::UnsupportedVersion(_)
                    | CreditError::Busy
            ));
        }
    }

    // What netfront does with it: before the first valid snapshot, no limit of its own.
    let mut now = 1_000_000u64;
    let mut bucket = DualTokenBucket::unlimited(now);
    if let Ok(Some(s)) = first {
        bucket.set_limits(s.credits.bytes, s.credits.packets, now);
    }
    for c in charges.chunks_exact(4) {
        let dt_us = u16::from_le_bytes([c[0], c[1]]) as u64;
        let bytes = u16::from_le_bytes([c[2], c[3]]) as u64;
        now += dt_us * 1000;
        let before = bucket.clone();
        match bucket.charge_packet(now, bytes) {
            Ok(()) => {}
            Err(Denied::Wait { ns }) => {
                assert_eq!(bucket, {
                    let mut b = before.clone();
                    b.bytes.refill(now);
                    b.packets.refill(now);
                    b
                });
                if let Some(later) = now.checked_add(ns) {
                    let mut b = bucket.clone();
                    assert_eq!(
                        b.charge_packet(later, bytes),
                        Ok(()),
                        "a charge refused with Wait {{ ns: {ns} }} still fails {ns} ns later"
                    );
                }
            }
            Err(Denied::Never) => {}
        }
    }
});
