//! The `Xenstore` trait's contract and xenstore semantics, exercised through the real
//! client (`XsClient`) against the local server (`local::Xenstored`) over sockets.

mod xenstore_common;

use std::sync::Arc;

use xenstore::{
    with_transaction, WatchEvent, Xenstore, XsAccess, XsClient, XsError, XsPerm, XsTx, XsdError,
};
use xenstore_common::*;
use xenstored::{Quotas, Xenstored};

#[test]
fn contract_holds_for_dom0_and_for_a_guest() {
    let xsd = Xenstored::new();
    let dom0 = client(&xsd, 0);
    contract(&dom0, "/test");
    let guest = client(&xsd, 4);
    contract(&guest, "/local/domain/4/data");
    // Through an Arc<dyn Xenstore> too (what drivers hold).
    let shared: Arc<dyn Xenstore> = Arc::new(client(&xsd, 5));
    contract(&shared, "/local/domain/5");
}

#[test]
fn contract_holds_over_a_listening_socket() {
    let dir = std::env::temp_dir().join(format!("xs-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("socket");
    let xsd = Xenstored::new();
    xsd.listen(&sock).unwrap();
    let xs = XsClient::connect_unix(&sock).unwrap();
    contract(&xs, "/tool");
    // The socket is dom0: it may write anywhere.
    xs.write(XsTx::NONE, "/local/domain/9/device/vif/0/state", b"1")
        .unwrap();
    drop(xs);
    xsd.shutdown();
    assert!(!sock.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn relative_paths_resolve_to_the_domain_home() {
    let xsd = Xenstored::new();
    let guest = client(&xsd, 7);
    let dom0 = client(&xsd, 0);
    guest.write(XsTx::NONE, "device/vif/0/state", b"1").unwrap();
    assert_eq!(
        dom0.read(XsTx::NONE, "/local/domain/7/device/vif/0/state")
            .unwrap(),
        b"1"
    );
    // A relative watch reports relative paths.
    guest.watch("device", "rel").unwrap();
    assert_eq!(next_event(&guest), ev("device", "rel"));
    dom0.write(XsTx::NONE, "/local/domain/7/device/vif/0/state", b"2")
        .unwrap();
    assert_eq!(next_event(&guest), ev("device/vif/0/state", "rel"));
    // dom0's relative paths are under /local/domain/0.
    dom0.write(XsTx::NONE, "x", b"y").unwrap();
    assert_eq!(xsd.read("/local/domain/0/x").unwrap(), b"y");
}

#[test]
fn watches_fire_on_write_subtree_change_and_removal() {
    let xsd = Xenstored::new();
    let front = client(&xsd, 1);
    let back = client(&xsd, 0);
    let t = XsTx::NONE;
    back.write(t, "/local/domain/0/backend/vif/1/0/state", b"1")
        .unwrap();
    back.watch("/local/domain/0/backend/vif/1/0", "be").unwrap();
    back.watch("/local/domain/0/backend/vif/1/0/state", "st")
        .unwrap();
    let mut initial = vec![next_event(&back), next_event(&back)];
    initial.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(
        initial,
        vec![
            ev("/local/domain/0/backend/vif/1/0", "be"),
            ev("/local/domain/0/backend/vif/1/0/state", "st")
        ]
    );
    // Write of the node itself: both watches (the node and its ancestor) fire.
    back.write(t, "/local/domain/0/backend/vif/1/0/state", b"2")
        .unwrap();
    let mut got = vec![next_event(&back), next_event(&back)];
    got.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(
        got,
        vec![
            ev("/local/domain/0/backend/vif/1/0/state", "be"),
            ev("/local/domain/0/backend/vif/1/0/state", "st")
        ]
    );
    // A new key deeper in the subtree: only the ancestor watch.
    back.write(t, "/local/domain/0/backend/vif/1/0/q/x", b"1")
        .unwrap();
    assert_eq!(
        next_event(&back),
        ev("/local/domain/0/backend/vif/1/0/q/x", "be")
    );
    assert_no_event(&back);
    // Removal of the directory: the exact watch on a removed child fires too.
    back.rm(t, "/local/domain/0/backend/vif/1/0").unwrap();
    let mut got: Vec<WatchEvent> = (0..2).map(|_| next_event(&back)).collect();
    got.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(
        got,
        vec![
            ev("/local/domain/0/backend/vif/1/0", "be"),
            ev("/local/domain/0/backend/vif/1/0/state", "st")
        ]
    );
    // The frontend watches its own device directory; dom0 (toolstack) writes there.
    front.watch("/local/domain/1/device", "fe").unwrap();
    assert_eq!(next_event(&front), ev("/local/domain/1/device", "fe"));
    back.write(t, "/local/domain/1/device/vif/0/backend-id", b"0")
        .unwrap();
    assert_eq!(
        next_event(&front),
        ev("/local/domain/1/device/vif/0/backend-id", "fe")
    );
    // A guest sees no events for nodes it cannot read.
    front.watch("/local/domain/0", "other").unwrap();
    assert_eq!(next_event(&front), ev("/local/domain/0", "other"));
    back.write(t, "/local/domain/0/secret", b"s").unwrap();
    assert_no_event(&front);
}

#[test]
fn event_fd_is_readable_exactly_while_events_are_queued() {
    let xsd = Xenstored::new();
    let xs = client(&xsd, 0);
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    // Whether the event fd becomes readable within `secs` seconds.
    let readable = |secs: i64| {
        let fd = xs.event_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&timeout)).unwrap() == 1
    };
    assert!(!readable(0));
    xs.watch("/w", "t").unwrap();
    // The event is queued by the reader thread; block until the fd says so.
    assert!(readable(10));
    xs.write(XsTx::NONE, "/w", b"1").unwrap();
    // Drain both (initial + write), then the fd is quiet.
    let mut got = Vec::new();
    while got.len() < 2 {
        assert!(readable(10));
        got.extend(xs.drain_events());
    }
    assert_eq!(got, vec![ev("/w", "t"), ev("/w", "t")]);
    assert!(!readable(0));
    assert_eq!(xs.try_event(), None);
}

#[test]
fn transaction_conflict_gives_eagain_and_retry_succeeds() {
    let xsd = Xenstored::new();
    let a = client(&xsd, 0);
    let b = client(&xsd, 0);
    let t = XsTx::NONE;
    a.write(t, "/cfg/counter", b"0").unwrap();
    // A transaction reads a node that someone else then changes: commit fails.
    let tx = a.transaction_start().unwrap();
    let v = a.read(tx, "/cfg/counter").unwrap();
    b.write(t, "/cfg/counter", b"10").unwrap();
    a.write(tx, "/cfg/other", &v).unwrap();
    let e = a.transaction_end(tx, true).unwrap_err();
    assert!(e.is_eagain(), "{e:?}");
    assert!(a.read(t, "/cfg/other").unwrap_err().is_enoent());
    // with_transaction retries: interfere on the first attempt only.
    let mut attempts = 0;
    with_transaction(&a, |tx| {
        attempts += 1;
        let n: u32 = a.read_string(tx, "/cfg/counter")?.parse().unwrap();
        if attempts == 1 {
            b.write(t, "/cfg/counter", b"20").unwrap();
        }
        a.write(tx, "/cfg/counter", (n + 1).to_string().as_bytes())
    })
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(a.read(t, "/cfg/counter").unwrap(), b"21");
    // Two transactions creating siblings both change the parent's child list: the
    // second commit conflicts, as in xenstored.
    let t1 = a.transaction_start().unwrap();
    let t2 = b.transaction_start().unwrap();
    a.write(t1, "/cfg/x1", b"1").unwrap();
    b.write(t2, "/cfg/x2", b"2").unwrap();
    a.transaction_end(t1, true).unwrap();
    let r = b.transaction_end(t2, true);
    assert!(r.as_ref().is_err_and(|e| e.is_eagain()), "{r:?}");
    // Transactions on disjoint existing nodes both commit.
    let t3 = a.transaction_start().unwrap();
    let t4 = b.transaction_start().unwrap();
    a.write(t3, "/cfg/x1", b"3").unwrap();
    b.write(t4, "/cfg/counter", b"4").unwrap();
    a.transaction_end(t3, true).unwrap();
    b.transaction_end(t4, true).unwrap();
    assert_eq!(a.read(t, "/cfg/x1").unwrap(), b"3");
    assert_eq!(a.read(t, "/cfg/counter").unwrap(), b"4");
    // A transaction id belongs to its connection.
    let t5 = a.transaction_start().unwrap();
    assert_eq!(xsd_err(b.read(t5, "/cfg/x1")), XsdError::ENOENT);
    a.transaction_end(t5, false).unwrap();
}

#[test]
fn transaction_watch_events_fire_at_commit_only() {
    let xsd = Xenstored::new();
    let xs = client(&xsd, 0);
    let watcher = client(&xsd, 0);
    watcher.watch("/dev", "d").unwrap();
    assert_eq!(next_event(&watcher), ev("/dev", "d"));
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/dev/a", b"1").unwrap();
    assert_no_event(&watcher);
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(next_event(&watcher), ev("/dev/a", "d"));
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/dev/b", b"1").unwrap();
    xs.transaction_end(tx, false).unwrap();
    assert_no_event(&watcher);
}

#[test]
fn permissions_follow_xenstored() {
    let xsd = Xenstored::new();
    let dom0 = client(&xsd, 0);
    let g1 = client(&xsd, 1);
    let g2 = client(&xsd, 2);
    let t = XsTx::NONE;
    // Toolstack: backend dir owned by dom0, readable by the frontend domain.
    let be = "/local/domain/0/backend/vif/1/0";
    dom0.write(t, &format!("{be}/state"), b"2").unwrap();
    dom0.set_perms(
        t,
        be,
        &[
            XsPerm::new(xen_ids::DomId(0), XsAccess::None),
            XsPerm::new(xen_ids::DomId(1), XsAccess::Read),
        ],
    )
    .unwrap();
    dom0.set_perms(
        t,
        &format!("{be}/state"),
        &[
            XsPerm::new(xen_ids::DomId(0), XsAccess::None),
            XsPerm::new(xen_ids::DomId(1), XsAccess::Read),
        ],
    )
    .unwrap();
    assert_eq!(g1.read(t, &format!("{be}/state")).unwrap(), b"2");
    assert_eq!(
        xsd_err(g1.write(t, &format!("{be}/state"), b"4")),
        XsdError::EACCES
    );
    assert_eq!(
        xsd_err(g1.write(t, &format!("{be}/new"), b"4")),
        XsdError::EACCES
    );
    assert_eq!(
        xsd_err(g2.read(t, &format!("{be}/state"))),
        XsdError::EACCES
    );
    // A guest cannot touch another guest's home, nor learn what exists there.
    g2.write(t, "/local/domain/2/secret", b"x").unwrap();
    assert_eq!(
        xsd_err(g1.read(t, "/local/domain/2/secret")),
        XsdError::EACCES
    );
    assert_eq!(
        xsd_err(g1.read(t, "/local/domain/2/none")),
        XsdError::EACCES
    );
    assert_eq!(
        xsd_err(g1.write(t, "/local/domain/2/x", b"")),
        XsdError::EACCES
    );
    assert_eq!(
        xsd_err(g1.rm(t, "/local/domain/2/secret")),
        XsdError::EACCES
    );
    assert_eq!(xsd_err(g1.write(t, "/outside", b"")), XsdError::EACCES);
    assert_eq!(xsd_err(g1.mkdir(t, "/local/domain/0/x")), XsdError::EACCES);
    // The owner may grant, but not give the node away.
    assert_eq!(
        xsd_err(g2.set_perms(
            t,
            "/local/domain/2/secret",
            &[XsPerm::new(xen_ids::DomId(1), XsAccess::None)]
        )),
        XsdError::EPERM
    );
    g2.set_perms(
        t,
        "/local/domain/2/secret",
        &[
            XsPerm::new(xen_ids::DomId(2), XsAccess::None),
            XsPerm::new(xen_ids::DomId(1), XsAccess::Both),
        ],
    )
    .unwrap();
    assert_eq!(g1.read(t, "/local/domain/2/secret").unwrap(), b"x");
    g1.write(t, "/local/domain/2/secret", b"y").unwrap();
    assert_eq!(
        xsd_err(g1.set_perms(
            t,
            "/local/domain/2/secret",
            &[XsPerm::new(xen_ids::DomId(2), XsAccess::Both)]
        )),
        XsdError::EACCES
    );
    // Nodes a guest creates under a granted directory belong to it and inherit the ACL.
    dom0.mkdir(t, "/shared").unwrap();
    dom0.set_perms(
        t,
        "/shared",
        &[
            XsPerm::new(xen_ids::DomId(0), XsAccess::None),
            XsPerm::new(xen_ids::DomId(1), XsAccess::Both),
        ],
    )
    .unwrap();
    g1.write(t, "/shared/a/b", b"1").unwrap();
    assert_eq!(
        g1.get_perms(t, "/shared/a/b").unwrap(),
        vec![
            XsPerm::new(xen_ids::DomId(1), XsAccess::None),
            XsPerm::new(xen_ids::DomId(1), XsAccess::Both)
        ]
    );
    // A guest cannot take its home away from itself either (owner change).
    assert_eq!(
        xsd_err(g1.set_perms(
            t,
            "/local/domain/1",
            &[XsPerm::new(xen_ids::DomId(0), XsAccess::Read)]
        )),
        XsdError::EPERM
    );
}

#[test]
fn quotas_limit_unprivileged_domains() {
    let quotas = Quotas {
        nodes: 6,
        watches: 2,
        transactions: 2,
        node_size: 16,
        ..Quotas::default()
    };
    let xsd = Xenstored::with_quotas(quotas);
    let g = client(&xsd, 3);
    let dom0 = client(&xsd, 0);
    let t = XsTx::NONE;
    // Home counts as one node.
    for i in 0..5 {
        g.write(t, &format!("n{i}"), b"").unwrap();
    }
    assert_eq!(xsd_err(g.write(t, "n5", b"")), XsdError::ENOSPC);
    g.rm(t, "n0").unwrap();
    g.write(t, "n5", b"").unwrap();
    assert_eq!(xsd_err(g.write(t, "n1", &[b'x'; 17])), XsdError::ENOSPC);
    g.write(t, "n1", &[b'x'; 16]).unwrap();
    g.watch("n1", "a").unwrap();
    g.watch("n2", "a").unwrap();
    assert_eq!(xsd_err(g.watch("n3", "a")), XsdError::ENOSPC);
    assert_eq!(xsd_err(g.watch("n1", "a")), XsdError::EEXIST);
    g.unwatch("n2", "a").unwrap();
    g.watch("n3", "a").unwrap();
    let t1 = g.transaction_start().unwrap();
    let _t2 = g.transaction_start().unwrap();
    assert_eq!(xsd_err(g.transaction_start()), XsdError::ENOSPC);
    g.transaction_end(t1, false).unwrap();
    g.transaction_start().unwrap();
    // dom0 is not limited.
    for i in 0..10 {
        dom0.watch(&format!("/q{i}"), "t").unwrap();
        dom0.write(t, &format!("/q{i}"), &[b'y'; 100]).unwrap();
    }
}

#[test]
fn concurrent_requests_on_one_client_are_matched_by_req_id() {
    let xsd = Xenstored::new();
    let xs = Arc::new(client(&xsd, 0));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let xs = Arc::clone(&xs);
            std::thread::spawn(move || {
                for j in 0..100 {
                    let p = format!("/c/{i}/{j}");
                    xs.write(XsTx::NONE, &p, p.as_bytes()).unwrap();
                    assert_eq!(xs.read(XsTx::NONE, &p).unwrap(), p.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(xs.directory(XsTx::NONE, "/c").unwrap().len(), 4);
}

#[test]
fn release_closes_the_domain_and_fires_release_domain() {
    let xsd = Xenstored::new();
    let dom0 = client(&xsd, 0);
    let g = client(&xsd, 6);
    g.write(XsTx::NONE, "data/x", b"1").unwrap();
    dom0.watch("@releaseDomain", "rel").unwrap();
    dom0.watch("@introduceDomain", "intro").unwrap();
    assert_eq!(next_event(&dom0), ev("@releaseDomain", "rel"));
    assert_eq!(next_event(&dom0), ev("@introduceDomain", "intro"));
    let _g7 = client(&xsd, 7);
    assert_eq!(next_event(&dom0), ev("@introduceDomain", "intro"));
    xsd.release(xen_ids::DomId(6));
    assert_eq!(next_event(&dom0), ev("@releaseDomain", "rel"));
    assert!(dom0
        .read(XsTx::NONE, "/local/domain/6/data/x")
        .unwrap_err()
        .is_enoent());
    assert!(matches!(
        g.read(XsTx::NONE, "data/x"),
        Err(XsError::Disconnected(_))
    ));
    assert!(matches!(
        g.wait_event(Some(WAIT)),
        Err(XsError::Disconnected(_))
    ));
    assert!(g.is_closed());
}

#[test]
fn dropping_a_client_releases_its_watches_and_transactions() {
    let quotas = Quotas {
        watches: 1,
        transactions: 1,
        ..Quotas::default()
    };
    let xsd = Xenstored::with_quotas(quotas);
    {
        let g = client(&xsd, 8);
        g.watch("a", "t").unwrap();
        g.transaction_start().unwrap();
    }
    // The server notices the closed connection asynchronously.
    let deadline = std::time::Instant::now() + WAIT;
    while xsd.connection_count() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connection not reaped"
        );
        std::thread::yield_now();
    }
    let g = client(&xsd, 8);
    g.watch("a", "t").unwrap();
    g.transaction_start().unwrap();
}

#[test]
fn directory_larger_than_one_payload_is_paged() {
    let xsd = Xenstored::new();
    let xs = client(&xsd, 0);
    let mut want: Vec<String> = (0..700)
        .map(|i| format!("child-with-long-name-{i:04}"))
        .collect();
    with_transaction(&xs, |tx| {
        for n in &want {
            xs.write(tx, &format!("/big/{n}"), b"")?;
        }
        Ok(())
    })
    .unwrap();
    let mut got = xs.directory(XsTx::NONE, "/big").unwrap();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "children listed differ");
}
