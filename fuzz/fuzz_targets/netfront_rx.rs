//! netfront's RX reassembly (`netfront::rx::RxAssembler`, what `Netfront::recv` runs on
//! every response it copies out of the ring) over any sequence of slots a backend can
//! write: responses with any flags, offsets and statuses, and extra-info slots of any
//! type, in the order the assembler asks for them.
//!
//! Input: 8-byte slots. The assembler decides whether the next slot is read as a
//! `netif_rx_response` or a `netif_extra_info` (as `recv` does). Each response's buffer
//! is a page whose bytes are the slot index, so the frame's bytes can be checked.
//!
//! Checked: no panic; a completed frame has 1..=65 535 bytes, and every byte came from
//! an in-page fragment of its own responses; a read is only ever asked inside the page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netfront::rx::{RxAssembler, RxEvent, MAX_FRAME};
use shared_ring::netif::{NetRxFlags, NetifExtraInfo, NetifRxResponse};
use shared_ring::XEN_PAGE_SIZE;

fuzz_target!(|data: &[u8]| {
    let mut a = RxAssembler::new();
    let mut frame_bytes = 0usize;
    // The slot of the frame's last fragment that carried bytes.
    let mut last_data: Option<u8> = None;
    for (k, s) in data.chunks_exact(8).enumerate() {
        if a.expects_extra() {
            let e = NetifExtraInfo {
                r#type: s[0],
                flags: s[1],
                u: [s[2], s[3], s[4], s[5], s[6], s[7]],
            };
            let _ = a.extra(&e);
            continue;
        }
        let r = NetifRxResponse {
            id: u16::from_le_bytes([s[0], s[1]]),
            offset: u16::from_le_bytes([s[2], s[3]]),
            flags: u16::from_le_bytes([s[4], s[5]]),
            status: i16::from_le_bytes([s[6], s[7]]),
        };
        // Every 61st slot's buffer cannot be read (a grant gone): the error comes back.
        let fail = k % 61 == 60;
        let res = a.response(&r, |offset, dst: &mut [u8]| {
            assert!(offset + dst.len() <= XEN_PAGE_SIZE, "read outside the page");
            if fail {
                return Err(());
            }
            dst.fill(k as u8);
            Ok(())
        });
        let in_page =
            r.status >= 0 && r.offset as usize + r.status.max(0) as usize <= XEN_PAGE_SIZE;
        if in_page {
            frame_bytes += r.status as usize;
            if r.status > 0 {
                last_data = Some(k as u8);
            }
        }
        match res {
            Err(()) => assert!(fail),
            Ok(RxEvent::Frame(_)) => {
                let f = a.frame();
                assert!(!f.is_empty() && f.len() <= MAX_FRAME);
                assert!(
                    f.len() <= frame_bytes,
                    "more bytes than the fragments carried"
                );
                assert_eq!(f.last().copied(), last_data, "the last fragment is last");
            }
            Ok(RxEvent::Dropped) | Ok(RxEvent::Pending) => {}
        }
        if !r.rx_flags().contains(NetRxFlags::MORE_DATA) {
            frame_bytes = 0;
            last_data = None;
        }
    }
});
