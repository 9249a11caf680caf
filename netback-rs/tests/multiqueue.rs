//! A frontend's queue keys as a hostile guest writes them (issue 14, "Bad input"),
//! against netback-rs, which serves one queue per vif and offers no
//! `multi-queue-max-queues`: more queues than offered, no queue at all, a garbage
//! count, one grant for both rings. Each time that vif alone fails, the reason in its
//! `error` node, and a well-behaved guest on the same netback keeps its traffic; the
//! hostile guest connects afterwards when it writes honest keys.

use std::time::Duration;

use hypervisor::xenbus::XenbusState;
use netback::NetbackConfig;
use netfront::NetfrontConfig;
use netport::MemPort;
use testbed::*;
use xen_ids::{DomId, VifId};
use xen_local::LocalHost;

fn good_roundtrip(guest: &mut Guest, wire: &mut MemPort, base: u32) {
    for s in 0..20 {
        send_all(&mut guest.app, &frame(base + s, 300));
    }
    let got = recv_n(wire, 20, Duration::from_secs(10));
    assert_eq!(got.len(), 20, "the well-behaved vif lost traffic");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(check_frame(f), base + i as u32);
    }
}

/// The hostile guest writes `keys`, then runs the handshake with `how`: refused, with
/// an `error` node containing each of `want`.
fn refused(raw: &mut RawFrontend, keys: &[(&str, &str)], how: &RawConnect, want: &[&str]) {
    for (k, v) in keys {
        raw.write(k, v);
    }
    assert_eq!(raw.connect(how), XenbusState::Closing, "keys {keys:?}");
    let err = raw.error();
    for w in want {
        assert!(
            err.contains(w),
            "keys {keys:?}: error node {err:?} lacks {w:?}"
        );
    }
    raw.close();
}

#[test]
fn bad_queue_keys_fail_only_their_vif() {
    let host = LocalHost::new();
    let good = add_vif(&host, DomId(1), 0).expect("vif");
    let bad: VifId = add_vif(&host, DomId(2), 0).expect("vif");
    let nb = BackendThread::start(&host, NetbackConfig::default()).expect("netback");
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).expect("guest");
    let mut wire = nb.wire(good);
    good_roundtrip(&mut guest, &mut wire, 0);

    let mut raw = RawFrontend::new(&host, bad).expect("raw frontend");
    let dflt = RawConnect::default();
    // Linux's netfront with 8 vCPUs would ask for 8 (it asks for none when nothing is
    // offered, but a hostile one asks anyway).
    refused(
        &mut raw,
        &[("multi-queue-num-queues", "8")],
        &dflt,
        &["multi-queue-num-queues 8", "1 offered"],
    );
    good_roundtrip(&mut guest, &mut wire, 100);
    refused(
        &mut raw,
        &[("multi-queue-num-queues", "0")],
        &dflt,
        &["at least one queue"],
    );
    good_roundtrip(&mut guest, &mut wire, 200);
    refused(
        &mut raw,
        &[("multi-queue-num-queues", "1x")],
        &dflt,
        &["multi-queue-num-queues"],
    );
    // One page for both rings: refused before anything is mapped.
    raw.write("multi-queue-num-queues", "1");
    let shared = RawConnect {
        refs: Some(("9".into(), "9".into())),
        ..RawConnect::default()
    };
    refused(&mut raw, &[], &shared, &["rx-ring-ref 9", "own page"]);
    good_roundtrip(&mut guest, &mut wire, 300);

    // Honest keys (one queue, said explicitly): the hostile guest is served again.
    assert_eq!(
        raw.connect(&dflt),
        XenbusState::Connected,
        "{}",
        raw.error()
    );
    good_roundtrip(&mut guest, &mut wire, 400);
    let st = nb.vif_status(good).unwrap();
    assert!(st.connected);
    assert_eq!(st.counters.tx_dropped(), 0);
}
