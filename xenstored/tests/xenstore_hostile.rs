//! Hostile input to the local xenstore server: raw bytes on a socket. Every malformed
//! request gets an error reply (and the connection keeps working) or, for an oversize
//! length, a clean close; the server never panics and other clients are undisturbed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use xenstore::wire::{
    encode_strings, encode_write, XsMessage, XsdError, XsdSockmsg, XsdSockmsgType,
    XENSTORE_ABS_PATH_MAX, XSD_SOCKMSG_SIZE,
};
use xenstore::{Xenstore, XsClient, XsTx};
use xenstored::{Quotas, Xenstored};

const WAIT: Duration = Duration::from_secs(10);

struct Raw {
    s: UnixStream,
    next: u32,
}

impl Raw {
    fn new(xsd: &Xenstored, domid: u16) -> Self {
        let s = xsd.connect(xen_ids::DomId(domid)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        Raw { s, next: 100 }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Sends a message with a raw type and returns its req_id.
    fn send(&mut self, type_: u32, tx_id: u32, payload: &[u8]) -> u32 {
        self.next += 1;
        let m = XsMessage::with_raw_type(type_, self.next, tx_id, payload.to_vec()).unwrap();
        self.send_raw(&m.encode());
        self.next
    }

    /// Reads the next message (watch events included).
    fn recv(&mut self) -> XsMessage {
        let mut h = [0u8; XSD_SOCKMSG_SIZE];
        self.s.read_exact(&mut h).expect("reply header");
        let hdr = XsdSockmsg::from_bytes(&h);
        let mut p = vec![0u8; hdr.len as usize];
        self.s.read_exact(&mut p).expect("reply payload");
        XsMessage {
            header: hdr,
            payload: p,
        }
    }

    /// Sends and returns the reply (skipping watch events).
    fn call(&mut self, type_: u32, tx_id: u32, payload: &[u8]) -> XsMessage {
        let id = self.send(type_, tx_id, payload);
        loop {
            let r = self.recv();
            if r.msg_type() == Some(XsdSockmsgType::WatchEvent) {
                continue;
            }
            assert_eq!(r.header.req_id, id, "reply matches request");
            assert_eq!(r.header.tx_id, tx_id, "tx_id echoed");
            return r;
        }
    }

    fn expect_err(&mut self, type_: u32, tx_id: u32, payload: &[u8], want: XsdError) {
        let r = self.call(type_, tx_id, payload);
        assert_eq!(
            r.msg_type(),
            Some(XsdSockmsgType::Error),
            "type {type_} payload {payload:?}: got {r:?}"
        );
        assert_eq!(
            XsdError::from_payload(&r.payload),
            Some(want),
            "type {type_} payload {:?}",
            String::from_utf8_lossy(payload)
        );
        assert_eq!(r.payload, want.to_payload(), "error string NUL-terminated");
    }

    fn expect_healthy(&mut self) {
        let r = self.call(
            XsdSockmsgType::GetDomainPath as u32,
            0,
            &encode_strings(&["3"]),
        );
        assert_eq!(r.payload, b"/local/domain/3\0");
    }

    fn expect_closed(&mut self) {
        let mut b = [0u8; 64];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return,
                // Replies to earlier requests may still be in flight.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected a clean close, got {e}"),
            }
        }
    }
}

fn healthy_client_works(xsd: &Xenstored) {
    let c = XsClient::new(xsd.connect(xen_ids::DomId(0)).unwrap()).unwrap();
    c.set_request_timeout(Some(WAIT));
    c.write(XsTx::NONE, "/healthy", b"yes").unwrap();
    assert_eq!(c.read(XsTx::NONE, "/healthy").unwrap(), b"yes");
}

const READ: u32 = XsdSockmsgType::Read as u32;
const WRITE: u32 = XsdSockmsgType::Write as u32;

#[test]
fn malformed_requests_get_error_replies_and_the_connection_stays_healthy() {
    let xsd = Xenstored::new();
    let mut g = Raw::new(&xsd, 5);
    // Unknown, removed, reply-only and unsupported types.
    for t in [99, 20, 23, 0xffff, 0xdead_beef] {
        g.expect_err(t, 0, b"", XsdError::ENOSYS);
    }
    g.expect_err(
        XsdSockmsgType::WatchEvent as u32,
        0,
        b"/a\0t\0",
        XsdError::ENOSYS,
    );
    g.expect_err(
        XsdSockmsgType::Error as u32,
        0,
        b"EINVAL\0",
        XsdError::ENOSYS,
    );
    g.expect_err(
        XsdSockmsgType::Introduce as u32,
        0,
        b"5\0",
        XsdError::ENOSYS,
    );
    // Privileged-only operations from a guest.
    g.expect_err(XsdSockmsgType::Release as u32, 0, b"5\0", XsdError::EACCES);
    g.expect_err(
        XsdSockmsgType::IsDomainIntroduced as u32,
        0,
        b"5\0",
        XsdError::EACCES,
    );
    // Missing NUL, extra strings, empty payloads.
    g.expect_err(READ, 0, b"data", XsdError::EINVAL);
    g.expect_err(READ, 0, b"", XsdError::EINVAL);
    g.expect_err(READ, 0, b"a\0b\0", XsdError::EINVAL);
    g.expect_err(READ, 0, b"\0", XsdError::EINVAL);
    g.expect_err(WRITE, 0, b"no-nul-at-all", XsdError::EINVAL);
    g.expect_err(XsdSockmsgType::Mkdir as u32, 0, b"x", XsdError::EINVAL);
    g.expect_err(XsdSockmsgType::Watch as u32, 0, b"path\0", XsdError::EINVAL);
    g.expect_err(XsdSockmsgType::Watch as u32, 0, b"p\0t", XsdError::EINVAL);
    g.expect_err(
        XsdSockmsgType::Watch as u32,
        0,
        b"p\0t\0-1\0",
        XsdError::EINVAL,
    );
    g.expect_err(XsdSockmsgType::Unwatch as u32, 0, b"p\0", XsdError::EINVAL);
    g.expect_err(
        XsdSockmsgType::SetPerms as u32,
        0,
        b"data\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::SetPerms as u32,
        0,
        b"data\0q5\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::SetPerms as u32,
        0,
        b"data\0b99999\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::GetDomainPath as u32,
        0,
        b"x\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::GetDomainPath as u32,
        0,
        b"70000\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::DirectoryPart as u32,
        0,
        b"data\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::DirectoryPart as u32,
        0,
        b"data\0zz\0",
        XsdError::EINVAL,
    );
    // Bad paths: characters, slashes, non-UTF-8, special paths outside watches.
    for p in [
        &b"/a b\0"[..],
        b"/a//b\0",
        b"/a/\0",
        b"/a\xff\0",
        b"@releaseDomain\0",
        b"/a/../b\0",
    ] {
        g.expect_err(READ, 0, p, XsdError::EINVAL);
    }
    // Oversize path (fits the payload, exceeds XENSTORE_ABS_PATH_MAX) and a relative
    // path over the domain's path-max.
    let long = format!("/{}\0", "a".repeat(XENSTORE_ABS_PATH_MAX));
    g.expect_err(READ, 0, long.as_bytes(), XsdError::EINVAL);
    let rel = format!("{}\0", "b".repeat(2049));
    g.expect_err(WRITE, 0, rel.as_bytes(), XsdError::EINVAL);
    // Oversize value for a guest.
    g.expect_err(
        WRITE,
        0,
        &encode_write("v", &[b'x'; 2049]),
        XsdError::ENOSPC,
    );
    // Transactions: unknown id, bad end argument, start inside a transaction.
    g.expect_err(READ, 77, b"data\0", XsdError::ENOENT);
    let r = g.call(XsdSockmsgType::TransactionStart as u32, 0, b"\0");
    assert_eq!(r.msg_type(), Some(XsdSockmsgType::TransactionStart));
    let tx: u32 = std::str::from_utf8(&r.payload[..r.payload.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    g.expect_err(
        XsdSockmsgType::TransactionEnd as u32,
        tx,
        b"X\0",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::TransactionEnd as u32,
        tx,
        b"T",
        XsdError::EINVAL,
    );
    g.expect_err(
        XsdSockmsgType::TransactionStart as u32,
        tx,
        b"\0",
        XsdError::EBUSY,
    );
    g.expect_err(
        XsdSockmsgType::TransactionEnd as u32,
        0,
        b"T\0",
        XsdError::ENOENT,
    );
    let r = g.call(XsdSockmsgType::TransactionEnd as u32, tx, b"F\0");
    assert_eq!(r.payload, b"OK\0");
    g.expect_err(
        XsdSockmsgType::TransactionEnd as u32,
        tx,
        b"F\0",
        XsdError::ENOENT,
    );
    // After all that, the same connection still works, and so does everyone else.
    g.expect_healthy();
    let r = g.call(WRITE, 0, &encode_write("data/ok", b"1"));
    assert_eq!(r.payload, b"OK\0");
    healthy_client_works(&xsd);
}

#[test]
fn oversize_length_closes_only_that_connection() {
    let xsd = Xenstored::new();
    let mut other = Raw::new(&xsd, 0);
    let mut bad = Raw::new(&xsd, 5);
    let h = XsdSockmsg {
        type_: READ,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    };
    bad.send_raw(&h.to_bytes());
    bad.expect_closed();
    let h = XsdSockmsg {
        type_: READ,
        req_id: 1,
        tx_id: 0,
        len: u32::MAX,
    };
    let mut bad2 = Raw::new(&xsd, 0);
    bad2.send_raw(&h.to_bytes());
    bad2.expect_closed();
    other.expect_healthy();
    healthy_client_works(&xsd);
}

#[test]
fn truncated_message_then_hangup_is_cleaned_up() {
    let xsd = Xenstored::new();
    let before = xsd.connection_count();
    {
        let mut bad = Raw::new(&xsd, 6);
        bad.send(XsdSockmsgType::Watch as u32, 0, b"data\0t\0");
        let m = XsMessage::new(XsdSockmsgType::Write, 9, 0, encode_write("data/x", b"abc"))
            .unwrap()
            .encode();
        bad.send_raw(&m[..m.len() - 2]);
    }
    let deadline = std::time::Instant::now() + WAIT;
    while xsd.connection_count() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "connection not reaped"
        );
        std::thread::yield_now();
    }
    // The partial write was not applied.
    assert_eq!(xsd.read("/local/domain/6/data/x"), None);
    healthy_client_works(&xsd);
}

#[test]
fn a_client_that_never_reads_is_cut_off_without_hurting_others() {
    let quotas = Quotas {
        outbox_bytes: 8 * 1024,
        ..Quotas::default()
    };
    let xsd = Xenstored::with_quotas(quotas);
    // The lazy client watches the whole tree and never reads its events.
    let mut lazy = Raw::new(&xsd, 0);
    let r = lazy.call(XsdSockmsgType::Watch as u32, 0, b"/\0all\0");
    assert_eq!(r.payload, b"OK\0");
    let busy = XsClient::new(xsd.connect(xen_ids::DomId(0)).unwrap()).unwrap();
    busy.set_request_timeout(Some(WAIT));
    // Far more event bytes than the socket buffers plus the outbox limit hold.
    let value = vec![b'v'; 1000];
    for i in 0..3000 {
        busy.write(XsTx::NONE, &format!("/spam/{}", i % 50), &value)
            .unwrap();
    }
    lazy.expect_closed();
    healthy_client_works(&xsd);
}

#[test]
fn pipelined_requests_are_answered_in_order_with_their_req_ids() {
    let xsd = Xenstored::new();
    let mut c = Raw::new(&xsd, 0);
    let mut bytes = Vec::new();
    for i in 0..50u32 {
        let m = XsMessage::new(
            XsdSockmsgType::Write,
            1000 + i,
            0,
            encode_write(&format!("/p/{i}"), b"x"),
        )
        .unwrap();
        m.encode_into(&mut bytes);
    }
    // One write carrying 50 requests, split at odd boundaries by the kernel or not.
    c.send_raw(&bytes);
    for i in 0..50u32 {
        let r = c.recv();
        assert_eq!(r.header.req_id, 1000 + i);
        assert_eq!(r.payload, b"OK\0");
    }
}

/// A domain writing its node in a loop while another client watches it with coalescing
/// (as netback does): the watcher's queue holds one event per token, with the last path,
/// whatever the number of writes; a non-coalescing watcher beside it gets every event.
#[test]
fn a_write_loop_is_one_event_for_a_coalescing_watcher() {
    let xsd = Xenstored::new();
    let dom0 = XsClient::new(xsd.connect(xen_ids::DomId(0)).unwrap()).unwrap();
    dom0.write(XsTx::NONE, "/local/domain/5/state", b"1")
        .unwrap();
    dom0.set_perms(
        XsTx::NONE,
        "/local/domain/5/state",
        &[xenstore::XsPerm::new(
            xen_ids::DomId(5),
            xenstore::XsAccess::None,
        )],
    )
    .unwrap();
    let coalescing = XsClient::new(xsd.connect(xen_ids::DomId(0)).unwrap()).unwrap();
    assert!(coalescing.set_coalescing(true));
    let fifo = XsClient::new(xsd.connect(xen_ids::DomId(0)).unwrap()).unwrap();
    for c in [&coalescing, &fifo] {
        c.watch("/local/domain/5/state", "fe:5:0").unwrap();
        c.watch("/local/domain/5", "home").unwrap();
        // The initial events of both watches arrive before the reply to a later request.
        let _ = c.read(XsTx::NONE, "/local/domain/5/state");
        c.drain_events();
    }
    let guest = XsClient::new(xsd.connect(xen_ids::DomId(5)).unwrap()).unwrap();
    const N: usize = 5_000;
    for i in 0..N {
        let v = (i % 7).to_string();
        guest
            .write(XsTx::NONE, "/local/domain/5/state", v.as_bytes())
            .unwrap();
    }
    guest
        .write(XsTx::NONE, "/local/domain/5/state/child", b"x")
        .unwrap();
    // A reply to each watcher comes after the events of every write done before it.
    for c in [&coalescing, &fifo] {
        c.read(XsTx::NONE, "/local/domain/5/state").unwrap();
    }
    assert_eq!(coalescing.queued_events(), 2);
    let evs = coalescing.drain_events();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].token, "fe:5:0");
    assert_eq!(evs[0].path, "/local/domain/5/state/child");
    assert_eq!(evs[1].token, "home");
    assert_eq!(coalescing.coalesced_events(), 2 * (N as u64 + 1) - 2);
    assert_eq!(fifo.drain_events().len(), 2 * (N + 1));
}
