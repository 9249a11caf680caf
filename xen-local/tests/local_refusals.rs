//! Every kind of refusal the local hypervisor sends, as a domain sees it on the wire:
//! the `GNTST_*` status and the reason (the statuses a `GrantError::Refused` carries;
//! event-channel refusals are `GNTST_general_error` unless about an unknown domain).

use std::os::fd::OwnedFd;

use rustix::net::{RecvFlags, SendFlags};

use hypervisor::evtchn::Port;
use hypervisor::grant::{GntStatus, GrantRef};
use xen_ids::DomId;
use xen_local::proto::{
    Access, Attached, Bind, Call, Claim, Hello, Map, Refusal, Reply, Request, Revoke, Share, Table,
    Unbind, Xenstore,
};
use xen_local::{Domain, LocalHypervisor};

/// Sends `msg` and returns the raw reply (descriptors that came with it are closed).
fn ask_raw(fd: &OwnedFd, msg: &[u8]) -> Vec<u8> {
    let n = rustix::net::send(fd, msg, SendFlags::empty()).unwrap();
    assert_eq!(n, msg.len());
    let mut buf = vec![0u8; 65536];
    let (n, _) = rustix::net::recv(fd, &mut buf[..], RecvFlags::empty()).unwrap();
    assert!(n > 0, "no reply: connection closed");
    buf.truncate(n);
    buf
}

fn ask<C: Call>(fd: &OwnedFd, req: C) -> Reply<C::Reply> {
    let req: Request = req.into();
    Reply::decode(&ask_raw(fd, &req.encode())).expect("a well-formed reply")
}

fn refusal<T: std::fmt::Debug>(r: Reply<T>) -> (GntStatus, String) {
    match r {
        Reply::Refused(Refusal { status, reason }) => (status, reason),
        Reply::Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

fn refused_raw(fd: &OwnedFd, msg: &[u8]) -> (GntStatus, String) {
    refusal(Reply::<Attached>::decode(&ask_raw(fd, msg)).expect("a well-formed reply"))
}

fn general(reason: &str) -> (GntStatus, String) {
    (GntStatus::GENERAL_ERROR, reason.to_string())
}

#[test]
fn each_refusal_has_its_status_and_reason() {
    let hv = LocalHypervisor::new();
    let _dom0 = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let raw = hv.connect(DomId(1)).unwrap();

    let share = || Share {
        peer: DomId(0),
        writable: true,
        pages: 1,
    };
    assert_eq!(refusal(ask(&raw, share())), general("HELLO first"));
    // Before HELLO, any other op code is refused whatever follows it.
    assert_eq!(refused_raw(&raw, &[2, 0, 0]), general("HELLO first"));
    assert_eq!(
        refused_raw(&raw, &999u16.to_le_bytes()),
        general("HELLO first")
    );
    assert_eq!(
        refused_raw(&raw, &[1]),
        general("malformed message: message too short")
    );
    assert_eq!(
        refused_raw(&raw, &[1, 0, 0xFF]),
        general("malformed message: message too short")
    );
    let wrong = Hello {
        claim: Claim::Domain(DomId(5)),
    };
    assert_eq!(
        refusal(ask(&raw, wrong)),
        (
            GntStatus::PERMISSION_DENIED,
            "connection belongs to dom1, not dom5".into()
        )
    );
    let hello = || Hello {
        claim: Claim::Assigned,
    };
    assert_eq!(ask(&raw, hello()), Reply::Ok(Attached { domid: DomId(1) }));
    assert_eq!(refusal(ask(&raw, hello())), general("already attached"));

    // Malformed and unknown requests.
    assert_eq!(
        refused_raw(&raw, &[2, 0, 0]),
        general("malformed message: message too short")
    );
    assert_eq!(
        refused_raw(&raw, &999u16.to_le_bytes()),
        general("unknown operation 999")
    );
    assert_eq!(
        refused_raw(&raw, &[0u8; 100_000]),
        general("message too large")
    );

    // Grants.
    let zero = Share {
        pages: 0,
        ..share()
    };
    assert_eq!(
        refusal(ask(&raw, zero)),
        general("page count 0 not in 1..=4096")
    );
    assert_eq!(
        refusal(ask(&raw, Revoke { alloc: 12345 })),
        (GntStatus::BAD_HANDLE, "no allocation 12345".into())
    );
    let nobody = DomId(77);
    assert_eq!(
        refusal(ask(&raw, Table { peer: nobody })),
        (GntStatus::BAD_DOMAIN, "no such domain dom77".into())
    );
    let outside = Access {
        peer: DomId(0),
        gref: GrantRef(70000),
    };
    assert_eq!(
        refusal(ask(&raw, outside)),
        (
            GntStatus::BAD_GNTREF,
            "reference outside the grant table".into()
        )
    );
    let unused = Access {
        peer: DomId(0),
        gref: GrantRef(8),
    };
    assert_eq!(
        refusal(ask(&raw, unused)),
        general("grant not in use (never granted or revoked)")
    );
    let map = Map {
        peer: DomId(0),
        writable: false,
        refs: vec![GrantRef(9)],
    };
    let (status, reason) = refusal(ask(&raw, map));
    assert_eq!(status, GntStatus::GENERAL_ERROR);
    assert_eq!(
        reason,
        "gref 9: grant not in use (never granted or revoked)"
    );
    assert_eq!(
        Refusal { status, reason }.gref(),
        Some(GrantRef(9)),
        "a MAP refusal names its reference"
    );
    let empty = Map {
        peer: DomId(0),
        writable: false,
        refs: vec![],
    };
    assert_eq!(
        refusal(ask(&raw, empty)),
        general("reference count 0 not in 1..=4096")
    );

    // Event channels: no grant status of their own.
    let bind = |peer, remote| Bind {
        peer,
        remote: Port(remote),
    };
    assert_eq!(
        refusal(ask(&raw, bind(nobody, 1))),
        (GntStatus::BAD_DOMAIN, "no such domain dom77".into())
    );
    assert_eq!(
        refusal(ask(&raw, bind(DomId(0), 9))),
        general("dom0 has no port 9")
    );
    assert_eq!(
        refusal(ask(&raw, Unbind { port: Port(77) })),
        general("dom1 has no port 77")
    );
    assert_eq!(
        refusal(ask(&raw, Xenstore)),
        general("no xenstore server attached to this hypervisor")
    );
}

#[test]
fn bind_refuses_a_port_not_allocated_for_the_caller() {
    let hv = LocalHypervisor::new();
    let d0 = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let e0 = d0.event_channels().unwrap();
    let for_dom2 = hypervisor::evtchn::EventChannels::alloc_unbound(&e0, DomId(2)).unwrap();
    let raw = hv.connect(DomId(1)).unwrap();
    let hello = Hello {
        claim: Claim::Assigned,
    };
    assert!(matches!(ask(&raw, hello), Reply::Ok(_)));
    let bind = Bind {
        peer: DomId(0),
        remote: for_dom2,
    };
    assert_eq!(
        refusal(ask(&raw, bind)),
        general(&format!(
            "dom0 port {} is not an unbound port for dom1",
            for_dom2.0
        ))
    );
}

#[test]
fn the_daemon_refuses_claims_it_cannot_honour() {
    let hv = LocalHypervisor::new();
    let path = std::env::temp_dir().join(format!("local-hv-refusals-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    hv.listen(&path).unwrap();
    let reserved = Domain::attach(&path, DomId(0x7FF0)).unwrap_err();
    assert_eq!(
        reserved.to_string(),
        "GNTST -2 (bad domain): dom32752 is reserved"
    );
    let _ = std::fs::remove_file(&path);
}
