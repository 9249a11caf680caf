//! Malformed requests to the local hypervisor get an error reply; the connection stays
//! usable and other domains are not disturbed.

use std::os::fd::OwnedFd;

use rustix::net::{RecvFlags, SendFlags};

use hypervisor::grant::{Access, GrantShare, SharedPages};
use xen_ids::DomId;
use xen_local::{Domain, LocalHypervisor};

fn send(fd: &OwnedFd, msg: &[u8]) {
    let n = rustix::net::send(fd, msg, SendFlags::empty()).unwrap();
    assert_eq!(n, msg.len());
}

/// Send `msg`, return the reply's tag byte (0 ok, 1 error) and text.
fn ask(fd: &OwnedFd, msg: &[u8]) -> (u8, String) {
    send(fd, msg);
    let mut buf = vec![0u8; 65536];
    let (n, _) = rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()).unwrap();
    assert!(n > 0, "no reply: connection closed");
    let text = if buf[0] == 1 {
        String::from_utf8_lossy(&buf[3..n]).into_owned()
    } else {
        String::new()
    };
    (buf[0], text)
}

fn le(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn malformed_requests_get_errors_and_the_connection_survives() {
    let hv = LocalHypervisor::new();
    let good = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let raw = hv.connect(DomId(1)).unwrap();

    // Anything before HELLO.
    let (tag, why) = ask(
        &raw,
        &le(&[
            &2u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[1],
            &1u32.to_le_bytes(),
        ]),
    );
    assert_eq!(tag, 1);
    assert!(why.contains("HELLO"), "{why}");
    // HELLO claiming a domid the connection was not made for.
    let (tag, why) = ask(&raw, &le(&[&1u16.to_le_bytes(), &5u16.to_le_bytes()]));
    assert_eq!(tag, 1);
    assert!(why.contains("belongs to dom1"), "{why}");
    // HELLO for the assigned domain.
    assert_eq!(
        ask(&raw, &le(&[&1u16.to_le_bytes(), &0xFFFFu16.to_le_bytes()])).0,
        0
    );

    let bad: Vec<Vec<u8>> = vec![
        vec![7],                                         // shorter than an op
        le(&[&999u16.to_le_bytes()]),                    // unknown op
        le(&[&2u16.to_le_bytes(), &0u16.to_le_bytes()]), // SHARE cut short
        le(&[
            &2u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[7],
            &1u32.to_le_bytes(),
        ]), // bad bool
        le(&[
            &2u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[1],
            &0u32.to_le_bytes(),
        ]), // zero pages
        le(&[
            &2u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[1],
            &u32::MAX.to_le_bytes(),
        ]), // huge
        le(&[
            &2u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[1],
            &1u32.to_le_bytes(),
            &[0],
        ]), // trailing
        le(&[
            &6u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[0],
            &4000u32.to_le_bytes(),
            &8u32.to_le_bytes(),
        ]), // MAP count lies
        le(&[&3u16.to_le_bytes(), &12345u32.to_le_bytes()]), // REVOKE unknown allocation
        le(&[&9u16.to_le_bytes(), &77u32.to_le_bytes()]), // UNBIND unknown port
        le(&[
            &8u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &1u32.to_le_bytes(),
        ]), // BIND: no such port
        le(&[&1u16.to_le_bytes(), &0xFFFFu16.to_le_bytes()]), // second HELLO
        le(&[&10u16.to_le_bytes()]),                     // XENSTORE without a server
        vec![0u8; 100_000],                              // larger than any message
    ];
    for msg in &bad {
        let (tag, why) = ask(&raw, msg);
        assert_eq!(tag, 1, "accepted {:?}", &msg[..msg.len().min(16)]);
        assert!(!why.is_empty());
    }
    // Still healthy: a valid SHARE works on the same connection...
    let (tag, _) = ask(
        &raw,
        &le(&[
            &2u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &[1],
            &1u32.to_le_bytes(),
        ]),
    );
    assert_eq!(tag, 0);
    // ...and the other domain was not disturbed.
    let s = good.share(DomId(1), 1, Access::Writable).unwrap();
    s.revoke().unwrap();
    good.ping().unwrap();
    // Closing the raw connection releases what it created.
    drop(raw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hv.stats().allocations != 0 || hv.stats().connections != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "connection state not released: {:?}",
            hv.stats()
        );
        std::thread::yield_now();
    }
}

#[test]
fn the_daemon_socket_refuses_reserved_domids_and_bad_paths() {
    let hv = LocalHypervisor::new();
    let path = std::env::temp_dir().join(format!("local-hv-bad-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    hv.listen(&path).unwrap();
    assert!(Domain::attach(&path, DomId(0x7FF0)).is_err());
    assert!(Domain::attach(&path, DomId(0xFFFF)).is_err());
    let d = Domain::attach(&path, DomId(3)).unwrap();
    assert_eq!(d.domid(), DomId(3));
    assert!(hv.connect(DomId(0x7FF5)).is_err());
    let long = std::path::PathBuf::from("/tmp/".to_string() + &"x".repeat(200));
    assert!(Domain::attach(&long, DomId(1)).is_err());
    assert!(Domain::attach(std::path::Path::new("/nonexistent/hv.sock"), DomId(1)).is_err());
    let _ = std::fs::remove_file(&path);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn op_and_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Mostly well-known ops with random bodies, sometimes anything at all.
        prop_oneof![
            (1u16..12, proptest::collection::vec(any::<u8>(), 0..24)).prop_map(|(op, body)| {
                let mut m = op.to_le_bytes().to_vec();
                m.extend(body);
                m
            }),
            proptest::collection::vec(any::<u8>(), 1..64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn random_requests_always_get_a_reply_and_never_hurt_others(
            msgs in proptest::collection::vec(op_and_bytes(), 1..8)
        ) {
            let hv = LocalHypervisor::new();
            let good = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
            let raw = hv.connect(DomId(1)).unwrap();
            ask(&raw, &le(&[&1u16.to_le_bytes(), &0xFFFFu16.to_le_bytes()]));
            for m in &msgs {
                let (tag, _) = ask(&raw, m);
                prop_assert!(tag <= 1);
            }
            good.ping().unwrap();
            let s = good.share(DomId(1), 1, Access::Writable).unwrap();
            s.revoke().unwrap();
        }
    }
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let path = std::env::temp_dir().join(format!("local-hv-stale-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let hv = LocalHypervisor::new();
    hv.listen(&path).unwrap();
    let d = Domain::attach(&path, DomId(1)).unwrap();
    d.ping().unwrap();
    // A second server on the live socket is refused, and the first keeps serving.
    let err = LocalHypervisor::new().listen(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    d.ping().unwrap();
    let _ = std::fs::remove_file(&path);
}
