//! Helpers shared by the xenstore integration tests: the `Xenstore` contract and small
//! event and error utilities.

#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use xenstore::{with_transaction, WatchEvent, Xenstore, XsClient, XsError, XsTx, XsdError};
use xenstored::Xenstored;

pub const WAIT: Duration = Duration::from_secs(10);
pub const QUIET: Duration = Duration::from_millis(100);

pub fn client(xsd: &Xenstored, domid: u16) -> XsClient {
    let c = XsClient::new(xsd.connect(xen_ids::DomId(domid)).expect("connect")).expect("client");
    c.set_request_timeout(Some(WAIT));
    c
}

pub fn next_event(xs: &dyn Xenstore) -> WatchEvent {
    xs.wait_event(Some(WAIT))
        .expect("connection alive")
        .expect("a watch event within the timeout")
}

pub fn ev(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.into(),
        token: token.into(),
    }
}

/// Asserts that no event arrives. Watch events are produced before the reply to the
/// request that caused them is sent, so after a round trip on the same server any
/// event due is already queued; the short wait only covers thread scheduling.
pub fn assert_no_event(xs: &dyn Xenstore) {
    xs.read(XsTx::NONE, "/local/domain").ok();
    assert_eq!(xs.wait_event(Some(QUIET)).expect("alive"), None);
}

pub fn xsd_err(r: Result<impl std::fmt::Debug, XsError>) -> XsdError {
    match r {
        Err(XsError::Xsd(e)) => e,
        other => panic!("expected a xenstore error, got {other:?}"),
    }
}

/// The contract every `Xenstore` implementation meets, run in `base` (a directory the
/// caller may create nodes in).
pub fn contract(xs: &dyn Xenstore, base: &str) {
    let t = XsTx::NONE;
    let p = |s: &str| format!("{base}/{s}");
    // write creates parents; read returns bytes verbatim (binary allowed).
    xs.write(t, &p("c/a/b"), b"v\0\xff").unwrap();
    assert_eq!(xs.read(t, &p("c/a/b")).unwrap(), b"v\0\xff");
    assert_eq!(xs.read(t, &p("c/a")).unwrap(), b"");
    assert_eq!(xs.read_string(t, &p("c/a")).unwrap(), "");
    // missing node
    assert!(xs.read(t, &p("c/nope")).unwrap_err().is_enoent());
    assert_eq!(xs.try_read(t, &p("c/nope")).unwrap(), None);
    // mkdir keeps an existing value
    xs.mkdir(t, &p("c/a/b")).unwrap();
    assert_eq!(xs.read(t, &p("c/a/b")).unwrap(), b"v\0\xff");
    xs.mkdir(t, &p("c/d")).unwrap();
    let mut dir = xs.directory(t, &p("c")).unwrap();
    dir.sort();
    assert_eq!(dir, vec!["a", "d"]);
    assert_eq!(xs.directory(t, &p("c/d")).unwrap(), Vec::<String>::new());
    // empty value, overwrite
    xs.write(t, &p("c/d"), b"").unwrap();
    xs.write(t, &p("c/d"), b"2").unwrap();
    assert_eq!(xs.read(t, &p("c/d")).unwrap(), b"2");
    // rm removes the subtree; rm of a missing node under an existing parent is fine
    xs.rm(t, &p("c/a")).unwrap();
    assert!(xs.read(t, &p("c/a/b")).unwrap_err().is_enoent());
    xs.rm(t, &p("c/a")).unwrap();
    assert!(xs.rm(t, &p("c/a/b")).unwrap_err().is_enoent());
    // permissions round trip
    let perms = xs.get_perms(t, &p("c/d")).unwrap();
    assert!(!perms.is_empty());
    xs.set_perms(t, &p("c/d"), &perms).unwrap();
    assert_eq!(xs.get_perms(t, &p("c/d")).unwrap(), perms);
    // domain path
    assert_eq!(
        xs.get_domain_path(xen_ids::DomId(3)).unwrap(),
        "/local/domain/3"
    );
    // transactions: isolated until commit, discarded on abort
    let tx = xs.transaction_start().unwrap();
    assert_ne!(tx, XsTx::NONE);
    xs.write(tx, &p("c/t"), b"in-tx").unwrap();
    assert_eq!(xs.read(tx, &p("c/t")).unwrap(), b"in-tx");
    assert!(xs.read(t, &p("c/t")).unwrap_err().is_enoent());
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(xs.read(t, &p("c/t")).unwrap(), b"in-tx");
    let tx = xs.transaction_start().unwrap();
    xs.rm(tx, &p("c/t")).unwrap();
    xs.transaction_end(tx, false).unwrap();
    assert_eq!(xs.read(t, &p("c/t")).unwrap(), b"in-tx");
    // an ended transaction is gone
    assert_eq!(xsd_err(xs.read(tx, &p("c/t"))), XsdError::ENOENT);
    // with_transaction
    let got = with_transaction(xs, |tx| {
        xs.write(tx, &p("c/w"), b"1")?;
        xs.read(tx, &p("c/w"))
    })
    .unwrap();
    assert_eq!(got, b"1");
    // watches: initial event, then one per change below the path
    xs.watch(&p("c"), "tok").unwrap();
    assert_eq!(next_event(xs), ev(&p("c"), "tok"));
    xs.write(t, &p("c/d"), b"3").unwrap();
    assert_eq!(next_event(xs), ev(&p("c/d"), "tok"));
    xs.unwatch(&p("c"), "tok").unwrap();
    xs.write(t, &p("c/d"), b"4").unwrap();
    assert_no_event(xs);
    assert_eq!(xsd_err(xs.unwatch(&p("c"), "tok")), XsdError::ENOENT);
    xs.rm(t, &p("c")).unwrap();
    // client-side validation: bad paths never reach the wire
    assert!(matches!(xs.read(t, "/a//b"), Err(XsError::Wire(_))));
    assert!(matches!(xs.write(t, "/a/", b""), Err(XsError::Wire(_))));
}
