//! `XsClient` against a scripted peer on a socketpair: the behaviours a real xenstored or
//! `/dev/xen/xenbus` may show that the local server never does (replies out of order,
//! watch events interleaved before replies, odd `req_id`s on events, late replies,
//! unknown error names, garbage), checked without Xen.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use xenstore::wire::{encode_strings, XsMessage, XsdSockmsg, XsdSockmsgType, XSD_SOCKMSG_SIZE};
use xenstore::{WatchEvent, Xenstore, XsClient, XsError, XsTx};

const WAIT: Duration = Duration::from_secs(10);

struct Peer(UnixStream);

impl Peer {
    fn recv(&mut self) -> XsMessage {
        let mut h = [0u8; XSD_SOCKMSG_SIZE];
        self.0.read_exact(&mut h).unwrap();
        let header = XsdSockmsg::from_bytes(&h);
        let mut payload = vec![0u8; header.len as usize];
        self.0.read_exact(&mut payload).unwrap();
        XsMessage { header, payload }
    }

    fn send(&mut self, type_: u32, req_id: u32, payload: &[u8]) {
        let m = XsMessage::with_raw_type(type_, req_id, 0, payload.to_vec()).unwrap();
        self.0.write_all(&m.encode()).unwrap();
    }
}

fn pair() -> (XsClient, Peer) {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(WAIT)).unwrap();
    let c = XsClient::new(a).unwrap();
    c.set_request_timeout(Some(WAIT));
    (c, Peer(b))
}

const EVENT: u32 = XsdSockmsgType::WatchEvent as u32;
const READ: u32 = XsdSockmsgType::Read as u32;

#[test]
fn replies_out_of_order_reach_their_callers() {
    let (c, mut peer) = pair();
    let c = std::sync::Arc::new(c);
    let threads: Vec<_> = ["/a", "/b", "/c"]
        .into_iter()
        .map(|p| {
            let c = std::sync::Arc::clone(&c);
            std::thread::spawn(move || (p, c.read(XsTx::NONE, p).unwrap()))
        })
        .collect();
    let reqs: Vec<XsMessage> = (0..3).map(|_| peer.recv()).collect();
    // Answer in reverse order, each with its own path as the value, with watch events
    // (one with a non-zero req_id, as a kernel might send) in between.
    for r in reqs.iter().rev() {
        assert_eq!(r.header.type_, READ);
        peer.send(EVENT, 0xdead, b"/w\0tok\0");
        let path = &r.payload[..r.payload.len() - 1];
        peer.send(READ, r.header.req_id, path);
    }
    for t in threads {
        let (p, v) = t.join().unwrap();
        assert_eq!(v, p.as_bytes());
    }
    let evs: Vec<WatchEvent> = (0..3)
        .map(|_| c.wait_event(Some(WAIT)).unwrap().unwrap())
        .collect();
    assert!(evs.iter().all(|e| e.path == "/w" && e.token == "tok"));
}

#[test]
fn event_before_watch_reply_is_kept() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| c.watch("/x", "t"));
        let r = peer.recv();
        assert_eq!(r.header.type_, XsdSockmsgType::Watch as u32);
        assert_eq!(r.payload, b"/x\0t\0");
        // xenbus may deliver the initial event before the WATCH reply.
        peer.send(EVENT, 0, b"/x\0t\0");
        peer.send(XsdSockmsgType::Watch as u32, r.header.req_id, b"OK\0");
        h.join().unwrap().unwrap();
    });
    assert_eq!(
        c.wait_event(Some(WAIT)).unwrap(),
        Some(WatchEvent {
            path: "/x".into(),
            token: "t".into()
        })
    );
}

#[test]
fn errors_and_unexpected_replies() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            (
                c.read(XsTx::NONE, "/1").unwrap_err(),
                c.read(XsTx::NONE, "/2").unwrap_err(),
                c.read(XsTx::NONE, "/3").unwrap_err(),
                c.read(XsTx::NONE, "/4").unwrap(),
            )
        });
        let r = peer.recv();
        peer.send(XsdSockmsgType::Error as u32, r.header.req_id, b"EAGAIN\0");
        let r = peer.recv();
        peer.send(XsdSockmsgType::Error as u32, r.header.req_id, b"EWEIRD\0");
        let r = peer.recv();
        // A reply of the wrong type, then a stray reply nobody asked for.
        peer.send(XsdSockmsgType::Write as u32, r.header.req_id, b"OK\0");
        peer.send(READ, 999_999, b"stray");
        let r = peer.recv();
        peer.send(READ, r.header.req_id, b"v");
        let (e1, e2, e3, v) = h.join().unwrap();
        assert!(e1.is_eagain());
        assert!(matches!(e2, XsError::UnknownError(ref s) if s == "EWEIRD"));
        assert!(matches!(e3, XsError::Protocol(_)));
        assert_eq!(v, b"v");
    });
    // Malformed watch events are dropped, not fatal.
    peer.send(EVENT, 0, b"no-nul");
    peer.send(EVENT, 0, b"only-path\0");
    peer.send(EVENT, 0, b"/ok\0t\0");
    assert_eq!(c.wait_event(Some(WAIT)).unwrap().unwrap().path, "/ok");
}

#[test]
fn timeout_then_late_reply_is_discarded() {
    let (c, mut peer) = pair();
    c.set_request_timeout(Some(Duration::from_millis(50)));
    assert!(matches!(c.read(XsTx::NONE, "/slow"), Err(XsError::Timeout)));
    let late = peer.recv();
    peer.send(READ, late.header.req_id, b"late");
    c.set_request_timeout(Some(WAIT));
    std::thread::scope(|s| {
        let h = s.spawn(|| c.read(XsTx::NONE, "/next"));
        let r = peer.recv();
        assert_ne!(r.header.req_id, late.header.req_id);
        peer.send(READ, r.header.req_id, b"fresh");
        assert_eq!(h.join().unwrap().unwrap(), b"fresh");
    });
}

#[test]
fn transaction_start_reply_must_be_a_number() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| (c.transaction_start(), c.transaction_start()));
        let r = peer.recv();
        assert_eq!(r.payload, b"\0");
        peer.send(r.header.type_, r.header.req_id, &encode_strings(&["42"]));
        let r = peer.recv();
        peer.send(r.header.type_, r.header.req_id, b"x\0");
        let (ok, bad) = h.join().unwrap();
        assert_eq!(ok.unwrap(), XsTx(42));
        assert!(matches!(bad, Err(XsError::Protocol(_))));
    });
}

#[test]
fn garbage_from_the_peer_closes_the_client_cleanly() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| c.read(XsTx::NONE, "/a"));
        let _ = peer.recv();
        // A header announcing more than XENSTORE_PAYLOAD_MAX.
        let bad = XsdSockmsg {
            type_: READ,
            req_id: 1,
            tx_id: 0,
            len: 100_000,
        };
        peer.0.write_all(&bad.to_bytes()).unwrap();
        assert!(matches!(h.join().unwrap(), Err(XsError::Disconnected(_))));
    });
    assert!(c.is_closed());
    assert!(matches!(
        c.read(XsTx::NONE, "/b"),
        Err(XsError::Disconnected(_))
    ));
    assert!(matches!(
        c.wait_event(Some(WAIT)),
        Err(XsError::Disconnected(_))
    ));
}

#[test]
fn peer_hangup_fails_pending_requests() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| c.mkdir(XsTx::NONE, "/a"));
        let _ = peer.recv();
        drop(peer);
        assert!(matches!(h.join().unwrap(), Err(XsError::Disconnected(_))));
    });
}

#[test]
fn requests_are_encoded_as_the_spec_says() {
    let (c, mut peer) = pair();
    let t = XsTx(7);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            c.write(t, "/p", b"v\0x").unwrap();
            c.set_perms(
                t,
                "/p",
                &[
                    xenstore::XsPerm::new(xen_ids::DomId(1), xenstore::XsAccess::None),
                    xenstore::XsPerm::new(xen_ids::DomId(2), xenstore::XsAccess::Both),
                ],
            )
            .unwrap();
            c.transaction_end(t, true).unwrap();
            c.get_domain_path(xen_ids::DomId(12)).unwrap()
        });
        let expect: [(XsdSockmsgType, &[u8], u32); 4] = [
            (XsdSockmsgType::Write, b"/p\0v\0x", 7),
            (XsdSockmsgType::SetPerms, b"/p\0n1\0b2\0", 7),
            (XsdSockmsgType::TransactionEnd, b"T\0", 7),
            (XsdSockmsgType::GetDomainPath, b"12\0", 0),
        ];
        for (ty, payload, tx) in expect {
            let r = peer.recv();
            assert_eq!(r.msg_type(), Some(ty));
            assert_eq!(r.payload, payload, "{ty}");
            assert_eq!(r.header.tx_id, tx, "{ty}");
            assert_eq!(r.header.len as usize, payload.len());
            let reply: &[u8] = if ty == XsdSockmsgType::GetDomainPath {
                b"/local/domain/12\0"
            } else {
                b"OK\0"
            };
            peer.send(ty as u32, r.header.req_id, reply);
        }
        assert_eq!(h.join().unwrap(), "/local/domain/12");
    });
}

#[test]
fn watch_reply_without_req_id_from_old_xenbus_is_accepted() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| c.watch("/x", "t"));
        let r = peer.recv();
        assert_eq!(r.header.type_, XsdSockmsgType::Watch as u32);
        peer.send(XsdSockmsgType::Watch as u32, 0, b"OK\0");
        h.join().unwrap().unwrap();
    });
}

#[test]
fn oversize_requests_are_refused_before_the_wire() {
    let (c, _peer) = pair();
    let big = vec![b'x'; 5000];
    assert!(matches!(
        c.write(XsTx::NONE, "/p", &big),
        Err(XsError::Wire(_))
    ));
}

#[test]
fn directory_falls_back_to_directory_part_and_restarts_on_change() {
    let (c, mut peer) = pair();
    std::thread::scope(|s| {
        let h = s.spawn(|| c.directory(XsTx::NONE, "/d"));
        let r = peer.recv();
        assert_eq!(r.header.type_, XsdSockmsgType::Directory as u32);
        peer.send(XsdSockmsgType::Error as u32, r.header.req_id, b"E2BIG\0");
        let part = XsdSockmsgType::DirectoryPart as u32;
        let expect_req = |peer: &mut Peer, off: &str, reply: &[u8]| {
            let r = peer.recv();
            assert_eq!(r.header.type_, part);
            assert_eq!(r.payload, format!("/d\0{off}\0").as_bytes());
            peer.send(part, r.header.req_id, reply);
        };
        // First chunk at generation 1, then the node changes (generation 2): start over.
        expect_req(&mut peer, "0", b"1\0a\0b\0");
        expect_req(&mut peer, "4", b"2\0c\0");
        expect_req(&mut peer, "0", b"2\0a\0");
        expect_req(&mut peer, "2", b"2\0c\0\0");
        assert_eq!(h.join().unwrap().unwrap(), vec!["a", "c"]);
    });
}

/// Sends `n` events for each of `tokens`, then answers one read: once the read returns,
/// the client's reader thread has dispatched every event before it.
fn burst_then_sync(c: &XsClient, peer: &mut Peer, tokens: &[&str], n: usize) {
    std::thread::scope(|s| {
        let h = s.spawn(|| c.read(XsTx::NONE, "/sync").unwrap());
        let r = peer.recv();
        let mut burst = Vec::new();
        for i in 0..n {
            for t in tokens {
                let payload = format!("/local/domain/7/device/vif/0/state/{i}\0{t}\0");
                let m = XsMessage::with_raw_type(EVENT, 0, 0, payload.into_bytes()).unwrap();
                burst.extend(m.encode());
            }
        }
        peer.0.write_all(&burst).unwrap();
        peer.send(READ, r.header.req_id, b"ok");
        assert_eq!(h.join().unwrap(), b"ok");
    });
}

#[test]
fn coalescing_client_keeps_one_event_per_token_whatever_the_burst() {
    let (c, mut peer) = pair();
    assert!(c.set_coalescing(true));
    burst_then_sync(&c, &mut peer, &["fe:7:0", "sla:7:0"], 20_000);
    assert_eq!(c.queued_events(), 2, "the queue is bounded by the watches");
    assert_eq!(c.coalesced_events(), 2 * 20_000 - 2);
    let evs = c.drain_events();
    assert_eq!(
        evs,
        [
            WatchEvent {
                path: "/local/domain/7/device/vif/0/state/19999".into(),
                token: "fe:7:0".into()
            },
            WatchEvent {
                path: "/local/domain/7/device/vif/0/state/19999".into(),
                token: "sla:7:0".into()
            },
        ]
    );
    // The event fd is quiet once the queue is drained; the next write fires again.
    assert!(c.try_event().is_none());
    burst_then_sync(&c, &mut peer, &["fe:7:0"], 3);
    assert_eq!(c.drain_events().len(), 1);
}

#[test]
fn a_client_that_does_not_coalesce_keeps_every_event() {
    let (c, mut peer) = pair();
    burst_then_sync(&c, &mut peer, &["a", "b"], 500);
    assert_eq!(c.queued_events(), 1000);
    assert_eq!(c.coalesced_events(), 0);
    let evs = c.drain_events();
    assert_eq!(evs.len(), 1000);
    assert_eq!(evs[0].token, "a");
    assert_eq!(evs[1].token, "b");
    assert!(evs[998].path.ends_with("/499"));
}

#[test]
fn a_shared_handle_uses_the_same_connection_and_outlives_the_first() {
    let (c, mut peer) = pair();
    let shared = c.share().unwrap();
    // A request through the shared handle goes out on the one connection.
    let t = std::thread::spawn(move || {
        let v = shared.read(XsTx::NONE, "/x").unwrap();
        (shared, v)
    });
    let r = peer.recv();
    assert_eq!(r.header.type_, READ);
    peer.send(READ, r.header.req_id, b"1");
    let (shared, v) = t.join().unwrap();
    assert_eq!(v, b"1");
    // An event is taken once, by whichever handle asks; its doorbell is the same.
    peer.send(EVENT, 0, b"/w\0tok\0");
    assert!(doorbell_rings(&shared));
    let ev = c.wait_event(Some(WAIT)).unwrap().unwrap();
    assert_eq!(ev.token, "tok");
    assert_eq!(shared.wait_event(Some(Duration::ZERO)).unwrap(), None);
    // The first handle dropped: the connection stays for the shared one.
    drop(c);
    let t = std::thread::spawn(move || shared.read(XsTx::NONE, "/y"));
    let r = peer.recv();
    peer.send(READ, r.header.req_id, b"2");
    assert_eq!(t.join().unwrap().unwrap(), b"2");
    // The last handle dropped: the connection closes.
    let mut buf = [0u8; 1];
    assert_eq!(peer.0.read(&mut buf).unwrap(), 0);
}

/// Whether `c`'s event doorbell becomes readable within [`WAIT`].
fn doorbell_rings(c: &XsClient) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let fd = c.event_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: WAIT.as_secs() as i64,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&ts)).unwrap() == 1
}
