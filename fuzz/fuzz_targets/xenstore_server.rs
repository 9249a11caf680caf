//! The local xenstore server fed raw bytes on a connection, as a hostile guest (or a
//! broken toolstack) would write them: first a privileged dom0 connection (to build a
//! tree with permissions, watches, transactions), then a guest connection.
//!
//! Input: guest domid selector (u8), length of the dom0 stream (u16), the dom0 stream,
//! the guest stream.
//!
//! Checked: no panic in any server thread (libFuzzer aborts on any panic); every byte
//! the server sends back is a well-formed stream of messages; the server closes a
//! connection only after its peer closed or sent an unrecoverable header; afterwards the
//! server still answers (no lock left held, no thread wedged).
#![no_main]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use dba_vm_fuzz::take_u8;
use xenstored::Xenstored;
use xenstore::wire::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, d) = take_u8(data);
    let (lo, d) = take_u8(d);
    let (hi, d) = take_u8(d);
    let split = (u16::from_le_bytes([lo, hi]) as usize).min(d.len());
    let (dom0, guest) = d.split_at(split);
    let server = Xenstored::new();
    converse(&server, 0, dom0);
    converse(&server, 1 + (sel as u16 % 3), guest);
    // Still serving: the state lock is free and the root exists.
    assert!(server.read("/").is_some(), "root node vanished");
    let mut probe = server.connect(xen_ids::DomId(0)).expect("connect");
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // XS_READ (2) of "/local", req_id 7.
    let mut req = Vec::new();
    for w in [2u32, 7, 0, 7] {
        req.extend_from_slice(&w.to_ne_bytes());
    }
    req.extend_from_slice(b"/local\0");
    probe.write_all(&req).unwrap();
    let mut hdr = [0u8; 16];
    probe
        .read_exact(&mut hdr)
        .expect("the server stopped answering");
    assert_eq!(u32::from_ne_bytes(hdr[4..8].try_into().unwrap()), 7);
    server.shutdown();
});

/// Writes `bytes` on a new connection of `domid` (from another thread, so that replies
/// never fill the socket while we write), closes our write side, reads every reply until
/// the server closes, and checks the replies decode.
fn converse(server: &Xenstored, domid: u16, bytes: &[u8]) {
    let mut s = server.connect(xen_ids::DomId(domid)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().expect("clone");
    let mut replies = Vec::new();
    std::thread::scope(|sc| {
        sc.spawn(move || {
            // The server may close first (oversize header): a write error is fine.
            let _ = w.write_all(bytes);
            let _ = w.shutdown(Shutdown::Write);
        });
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => replies.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading replies: {e}"),
            }
        }
    });
    let mut d = FrameDecoder::new();
    d.push(&replies);
    while let Some(m) = d.next_message().expect("the server sent a malformed reply") {
        let _ = m;
    }
    assert_eq!(d.buffered(), 0, "the server sent a truncated reply");
}
