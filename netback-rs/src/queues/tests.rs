//! The queue keys as a frontend (honest or hostile) writes them, read by dom0.

use super::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const FE: &str = "/local/domain/1/device/vif/0";

/// Reads the queues of a frontend directory holding exactly `keys`, against an offer of
/// `max` queues.
fn read(keys: &[(&str, &str)], max: u32) -> Result<Vec<QueueKeys>, QueueError> {
    let host = LocalHost::new();
    let dom0 = host.domain(DomId(0)).unwrap();
    for (k, v) in keys {
        dom0.xenstore
            .write(XsTx::NONE, &format!("{FE}/{k}"), v.as_bytes())
            .unwrap();
    }
    let n = read_count(&dom0.xenstore, FE, max)?;
    read_queues(&dom0.xenstore, FE, n)
}

/// What Linux's netfront writes for `n` queues (split event channels), grant refs
/// 8 + 2q and 9 + 2q, ports 20 + 2q and 21 + 2q.
fn linux_keys(n: u32) -> Vec<(String, String)> {
    let mut keys = vec![(NUM_QUEUES_KEY.to_string(), n.to_string())];
    for q in 0..n {
        let d = format!("queue-{q}");
        keys.push((format!("{d}/tx-ring-ref"), (8 + 2 * q).to_string()));
        keys.push((format!("{d}/rx-ring-ref"), (9 + 2 * q).to_string()));
        keys.push((format!("{d}/event-channel-tx"), (20 + 2 * q).to_string()));
        keys.push((format!("{d}/event-channel-rx"), (21 + 2 * q).to_string()));
    }
    keys
}

fn refs(keys: &[(String, String)]) -> Vec<(&str, &str)> {
    keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn without(keys: &[(String, String)], prefix: &str) -> Vec<(String, String)> {
    keys.iter()
        .filter(|(k, _)| !k.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn one_queue_without_the_count_key_uses_the_flat_keys() {
    let q = read(
        &[
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("event-channel", "5"),
            // A stale queue directory of an earlier multi-queue connection is not read.
            ("queue-0/tx-ring-ref", "100"),
        ],
        4,
    )
    .unwrap();
    assert_eq!(
        q,
        vec![QueueKeys {
            tx_ref: 8,
            rx_ref: 9,
            channels: ChannelKeys::Single(5)
        }]
    );
    assert_eq!(record(&q), "8 9 5");
}

#[test]
fn four_queues_are_read_from_their_directories_only() {
    let mut keys = linux_keys(4);
    // Flat keys left over from a single-queue connection are ignored.
    keys.push(("tx-ring-ref".into(), "1".into()));
    let q = read(&refs(&keys), 4).unwrap();
    assert_eq!(q.len(), 4);
    for (i, k) in q.iter().enumerate() {
        let i = i as u32;
        assert_eq!(k.tx_ref, 8 + 2 * i);
        assert_eq!(k.rx_ref, 9 + 2 * i);
        assert_eq!(
            k.channels,
            ChannelKeys::Split {
                tx: 20 + 2 * i,
                rx: 21 + 2 * i
            }
        );
    }
    assert_eq!(
        record(&q),
        "8 9 20/21, 10 11 22/23, 12 13 24/25, 14 15 26/27"
    );
}

#[test]
fn more_queues_than_offered_are_refused_with_both_numbers() {
    let e = read(&refs(&linux_keys(8)), 4).unwrap_err();
    assert!(matches!(e, QueueError::TooMany { asked: 8, max: 4 }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("multi-queue-num-queues 8") && msg.contains("4 offered"),
        "{msg}"
    );
    // Without an offer (one queue), two are too many as well.
    let e = read(&refs(&linux_keys(2)), 1).unwrap_err();
    assert!(matches!(e, QueueError::TooMany { asked: 2, max: 1 }), "{e}");
}

#[test]
fn zero_queues_and_garbage_counts_are_refused() {
    let e = read(&[(NUM_QUEUES_KEY, "0")], 4).unwrap_err();
    assert!(matches!(e, QueueError::NoQueue), "{e}");
    for bad in ["-1", "two", "", "99999999999999999999999"] {
        let e = read(&[(NUM_QUEUES_KEY, bad)], 4).unwrap_err();
        assert!(matches!(e, QueueError::Xenbus(_)), "{bad:?}: {e}");
        assert!(e.to_string().contains(NUM_QUEUES_KEY), "{bad:?}: {e}");
    }
}

#[test]
fn a_missing_queue_directory_names_the_key_it_lacks() {
    // queue-0, queue-2 and queue-3 of 4: a gap at queue-1.
    let keys = without(&linux_keys(4), "queue-1/");
    let e = read(&refs(&keys), 4).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("queue-1/tx-ring-ref"), "{msg}");
    // The last queue missing.
    let keys = without(&linux_keys(3), "queue-2/");
    let e = read(&refs(&keys), 4).unwrap_err();
    assert!(e.to_string().contains("queue-2/tx-ring-ref"), "{e}");
}

#[test]
fn a_queue_without_its_event_channel_or_half_split_is_refused() {
    let keys = without(&linux_keys(2), "queue-1/event-channel");
    let e = read(&refs(&keys), 2).unwrap_err();
    assert!(e.to_string().contains("queue-1/event-channel"), "{e}");
    let keys = without(&linux_keys(2), "queue-1/event-channel-rx");
    let e = read(&refs(&keys), 2).unwrap_err();
    assert!(
        matches!(
            &e,
            QueueError::Channels {
                source: FeatureError::HalfSplit,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("queue-1"), "{e}");
}

#[test]
fn one_grant_in_two_queues_is_refused() {
    let mut keys = linux_keys(4);
    // queue-3's RX ring on queue-1's TX page.
    for (k, v) in &mut keys {
        if k == "queue-3/rx-ring-ref" {
            *v = "10".into();
        }
    }
    let e = read(&refs(&keys), 4).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::SharedRef {
                queue: 3,
                key: "rx-ring-ref",
                gref: 10,
                other: 1,
                other_key: "tx-ring-ref"
            }
        ),
        "{e}"
    );
    // A queue's two rings on one page.
    let e = read(
        &[
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "8"),
            ("event-channel", "5"),
        ],
        1,
    )
    .unwrap_err();
    assert!(matches!(e, QueueError::SharedRef { queue: 0, .. }), "{e}");
}

/// `linux_keys(n)` with `key` set to `value`.
fn with(n: u32, key: &str, value: &str) -> Vec<(String, String)> {
    let mut keys = linux_keys(n);
    for (k, v) in &mut keys {
        if k == key {
            *v = value.into();
        }
    }
    keys
}

#[test]
fn one_port_in_two_queues_is_refused_naming_both_keys() {
    // queue-2's RX channel is queue-0's TX channel (port 20).
    let e = read(&refs(&with(4, "queue-2/event-channel-rx", "20")), 4).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::SharedPort {
                queue: 2,
                key: "event-channel-rx",
                port: 20,
                other: 0,
                other_key: "event-channel-tx"
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("queue 2 event-channel-rx 20"), "{msg}");
    // A split queue's two rings on one port.
    let e = read(&refs(&with(2, "queue-1/event-channel-rx", "22")), 2).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::SharedPort {
                queue: 1,
                other: 1,
                port: 22,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn one_port_shared_by_unsplit_queues_is_refused() {
    let mut keys = vec![(NUM_QUEUES_KEY.to_string(), "3".to_string())];
    for q in 0..3u32 {
        keys.push((format!("queue-{q}/tx-ring-ref"), (8 + 2 * q).to_string()));
        keys.push((format!("queue-{q}/rx-ring-ref"), (9 + 2 * q).to_string()));
        // Queues 0 and 2 on port 30, queue 1 on 31.
        let port = if q == 1 { 31 } else { 30 };
        keys.push((format!("queue-{q}/event-channel"), port.to_string()));
    }
    let e = read(&refs(&keys), 4).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::SharedPort {
                queue: 2,
                key: "event-channel",
                port: 30,
                other: 0,
                other_key: "event-channel"
            }
        ),
        "{e}"
    );
    // Distinct ports, one queue split and the others not: accepted.
    let keys = with(3, "queue-2/event-channel", "32");
    assert_eq!(read(&refs(&keys), 4).unwrap().len(), 3);
}

#[test]
fn a_count_that_is_not_plain_decimal_is_refused() {
    // What a C `%u` would read as 2 (or as 0), and values past any offer.
    for bad in [
        "2 ",
        " 2",
        "0x2",
        "+2",
        "2.0",
        "2\n2",
        "18446744073709551616",
    ] {
        let e = read(&refs(&with(2, NUM_QUEUES_KEY, bad)), 4).unwrap_err();
        assert!(matches!(e, QueueError::Xenbus(_)), "{bad:?}: {e}");
        assert!(e.to_string().contains(NUM_QUEUES_KEY), "{bad:?}: {e}");
    }
    for huge in ["4294967298", "18446744073709551615"] {
        let e = read(&refs(&with(2, NUM_QUEUES_KEY, huge)), 4).unwrap_err();
        assert!(
            matches!(e, QueueError::TooMany { max: 4, .. }),
            "{huge:?}: {e}"
        );
    }
}
