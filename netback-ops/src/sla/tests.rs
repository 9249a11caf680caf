//! SLA administration against an in-process xenstored, connected as dom0.

use super::*;
use crate::parse_exposition;
use xenstore::XsClient;
use xenstored::Xenstored;

const DIR: &str = "/local/domain/0/backend/vif/1/0";

/// A xenstored (kept alive by the first field) and dom0's connection to it.
struct Store(#[allow(dead_code)] Xenstored, XsClient);

fn store() -> Store {
    let xsd = Xenstored::new();
    let xs = XsClient::new(xsd.connect(DomId::DOM0).expect("connect")).expect("client");
    Store(xsd, xs)
}

/// Creates the part of vif<domid>.<devid>'s backend directory the module checks.
fn add_vif(xs: &XsClient, backend_type: &str, domid: u16, devid: u32) -> VifDir {
    let at = VifDir::new(DomId::DOM0, backend_type, VifId::new(DomId(domid), devid));
    xs.write(
        XsTx::NONE,
        &format!("{}/frontend-id", at.path()),
        domid.to_string().as_bytes(),
    )
    .unwrap();
    at
}

/// Every node under `dir` with its value, for before/after comparisons.
fn dump(xs: &XsClient, dir: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for k in xs.directory(XsTx::NONE, dir).unwrap_or_default() {
        let p = format!("{dir}/{k}");
        out.push((p.clone(), xs.try_read(XsTx::NONE, &p).unwrap()));
    }
    out
}

fn key(xs: &XsClient, k: &str) -> Option<String> {
    xs.try_read(XsTx::NONE, &format!("{DIR}/{k}"))
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn update(priority: Option<&str>, min: Option<&str>, max: Option<&str>) -> SlaUpdate {
    SlaUpdate {
        priority: priority.map(Into::into),
        min_bps: min.map(Into::into),
        max_bps: max.map(Into::into),
        ..SlaUpdate::default()
    }
}

#[test]
fn set_then_show_round_trip() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    assert_eq!(at.path(), DIR);
    let r = set(
        &xs,
        &at,
        &SlaUpdate {
            priority: Some(" 1".into()),
            min_bps: Some("150M".into()),
            max_bps: Some("150M ".into()),
            vm_pps: Some("20k".into()),
            ..SlaUpdate::default()
        },
    )
    .unwrap();
    let want = [
        ("dba-priority", "1"),
        ("dba-min-bps", "150M"),
        ("dba-max-bps", "150M"),
        ("dba-vm-pps", "20k"),
    ];
    assert_eq!(r.dir, DIR);
    assert_eq!(
        r.written,
        want.map(|(k, v)| (k, v.to_string())),
        "values trimmed, in key order"
    );
    assert!(r.vm_cap_mismatches.is_empty());
    for (k, v) in want {
        assert_eq!(key(&xs, k).as_deref(), Some(v), "{k}");
    }

    let v = show(&xs, &at, None).unwrap();
    assert_eq!(v.keys, r.written);
    assert_eq!(v.invalid, None);
    assert_eq!(
        v.to_string(),
        format!(
            "vif1.0  ({DIR})\n  dba-priority  1\n  dba-min-bps   150M\n  dba-max-bps   150M\n  \
             dba-vm-pps    20k\n"
        )
    );
}

#[test]
fn partial_updates_merge_with_the_keys_there() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    set(&xs, &at, &update(Some("2"), Some("10M"), None)).unwrap();
    let r = set(&xs, &at, &update(None, None, Some("40M"))).unwrap();
    assert_eq!(r.written, [("dba-max-bps", "40M".to_string())]);
    assert_eq!(key(&xs, "dba-priority").as_deref(), Some("2"));
    assert_eq!(key(&xs, "dba-min-bps").as_deref(), Some("10M"));
    assert_eq!(key(&xs, "dba-max-bps").as_deref(), Some("40M"));
    // Replacing one key keeps the others.
    set(&xs, &at, &update(None, Some("20M"), None)).unwrap();
    assert_eq!(
        read_keys(&xs, DIR).unwrap(),
        [
            ("dba-priority", "2".to_string()),
            ("dba-min-bps", "20M".to_string()),
            ("dba-max-bps", "40M".to_string()),
        ]
    );
}

#[test]
fn validation_errors_leave_xenstore_untouched() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    set(&xs, &at, &update(Some("1"), Some("150M"), Some("150M"))).unwrap();
    let before = dump(&xs, DIR);
    assert_eq!(before.len(), 4, "frontend-id and three keys");

    let field = |e: SlaError| match e {
        SlaError::Invalid(e) => ("alone", e.field),
        SlaError::InvalidWithExisting { dir, source } => {
            assert_eq!(dir, DIR);
            ("merged", source.field)
        }
        e => panic!("unexpected {e:?}"),
    };
    for (u, want) in [
        (update(None, Some("lots"), None), ("alone", "dba-min-bps")),
        (update(Some("9"), None, None), ("alone", "dba-priority")),
        (
            update(None, Some("1k"), Some("20T")),
            ("alone", "dba-max-bps"),
        ),
        // Valid alone, but below the minimum already there.
        (update(None, None, Some("100M")), ("merged", "dba-min-bps")),
        (
            SlaUpdate {
                vm_pps: Some("-5".into()),
                ..SlaUpdate::default()
            },
            ("alone", "dba-vm-pps"),
        ),
    ] {
        let e = set(&xs, &at, &u).unwrap_err();
        assert!(e.to_string().ends_with("; nothing written"), "{e}");
        assert!(e.to_string().contains(&format!("`{}`", want.1)), "{e}");
        let got = field(e);
        assert_eq!((got.0, got.1.as_str()), want, "{u:?}");
        assert_eq!(dump(&xs, DIR), before, "{u:?} wrote something");
    }
    assert!(matches!(
        set(&xs, &at, &SlaUpdate::default()),
        Err(SlaError::NothingToSet)
    ));
    assert!(
        set(&xs, &at, &update(Some("   "), None, None)).is_err(),
        "an empty value is not a value"
    );
    assert_eq!(dump(&xs, DIR), before);

    // A key broken behind our back: show flags it, set refuses to build on it.
    xs.write(XsTx::NONE, &format!("{DIR}/dba-max-bps"), b"oops")
        .unwrap();
    let v = show(&xs, &at, None).unwrap();
    assert_eq!(v.invalid.as_ref().unwrap().field, "dba-max-bps");
    assert!(v.to_string().contains(
        "  INVALID: vif1.0: field `dba-max-bps`: `oops` is not a number with an optional \
         k/M/G/T multiplier (the daemon keeps the vif's previous SLA)\n"
    ));
    let before = dump(&xs, DIR);
    let e = set(&xs, &at, &update(Some("2"), None, None)).unwrap_err();
    assert_eq!(field(e), ("merged", "dba-max-bps".to_string()));
    assert_eq!(dump(&xs, DIR), before);
}

#[test]
fn vm_cap_differences_on_sibling_vifs_are_reported() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    let same = add_vif(&xs, "vif", 1, 1);
    let absent = add_vif(&xs, "vif", 1, 2);
    let other = add_vif(&xs, "vif", 1, 3);
    let other_vm = add_vif(&xs, "vif", 2, 0);
    let pps = |v: &str| SlaUpdate {
        vm_pps: Some(v.into()),
        ..SlaUpdate::default()
    };
    set(&xs, &same, &pps("20000")).unwrap();
    set(&xs, &other, &pps("30k")).unwrap();
    set(&xs, &other_vm, &pps("1k")).unwrap();

    let r = set(&xs, &at, &pps("20k")).unwrap();
    assert_eq!(
        r.vm_cap_mismatches,
        [
            VmCapMismatch {
                vif: absent.vif,
                key: "dba-vm-pps",
                value: None
            },
            VmCapMismatch {
                vif: other.vif,
                key: "dba-vm-pps",
                value: Some("30k".into())
            },
        ],
        "20k equals 20000; domain 2 is another VM"
    );
    assert_eq!(
        r.vm_cap_mismatches[0].to_string(),
        "vif1.2 has dba-vm-pps = (absent); a VM's cap should be the same on all its vifs \
         (the smallest applies)"
    );
    // Other keys do not concern the VM cap.
    let r = set(&xs, &at, &update(Some("3"), None, None)).unwrap();
    assert!(r.vm_cap_mismatches.is_empty());
    // Once all agree, nothing is reported.
    set(&xs, &absent, &pps("20k")).unwrap();
    let r = set(&xs, &other, &pps("20k")).unwrap();
    assert!(r.vm_cap_mismatches.is_empty(), "{:?}", r.vm_cap_mismatches);
}

#[test]
fn a_missing_vif_is_an_error_and_nothing_is_created() {
    let Store(_d, xs) = store();
    add_vif(&xs, "vif", 1, 0);
    let missing = VifDir::new(DomId::DOM0, "vif", VifId::new(DomId(7), 0));
    let msg = "no vif7.0: /local/domain/0/backend/vif/7/0 does not exist (create the vif \
               first: `netback vif-add` or the toolstack)";
    let e = set(&xs, &missing, &update(None, Some("1M"), None)).unwrap_err();
    assert_eq!(e.to_string(), msg);
    assert!(matches!(e, SlaError::NoVif { vif, .. } if vif == missing.vif));
    let e = remove(&xs, &missing, &[]).unwrap_err();
    assert_eq!(e.to_string(), msg);
    let e = show(&xs, &missing, None).unwrap_err();
    assert_eq!(e.to_string(), msg);
    assert!(xs
        .try_read(XsTx::NONE, "/local/domain/0/backend/vif/7")
        .unwrap()
        .is_none());
    // The right vif under another backend type is missing too.
    let elsewhere = VifDir::new(DomId::DOM0, "vif-dba", VifId::new(DomId(1), 0));
    assert!(matches!(
        set(&xs, &elsewhere, &update(Some("1"), None, None)),
        Err(SlaError::NoVif { .. })
    ));
}

#[test]
fn remove_some_then_all_keys() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    set(&xs, &at, &update(Some("1"), Some("150M"), Some("150M"))).unwrap();
    assert_eq!(
        remove(&xs, &at, &[SlaField::MaxBps]).unwrap(),
        [format!("{DIR}/dba-max-bps")]
    );
    assert_eq!(key(&xs, "dba-max-bps"), None);
    assert_eq!(key(&xs, "dba-min-bps").as_deref(), Some("150M"));
    assert_eq!(
        remove(&xs, &at, &[]).unwrap(),
        [format!("{DIR}/dba-priority"), format!("{DIR}/dba-min-bps")]
    );
    assert!(read_keys(&xs, DIR).unwrap().is_empty());
    assert!(remove(&xs, &at, &[]).unwrap().is_empty());
    assert_eq!(
        key(&xs, "frontend-id").as_deref(),
        Some("1"),
        "the vif stays"
    );
    assert_eq!(
        show(&xs, &at, None).unwrap().to_string(),
        format!("vif1.0  ({DIR})\n  no dba-* keys: the daemon's SLA file / default SLA applies\n")
    );
}

#[test]
fn list_sorts_and_filters() {
    let Store(_d, xs) = store();
    for (d, i) in [(10, 0), (2, 1), (2, 0), (3, 0)] {
        add_vif(&xs, "vif", d, i);
    }
    add_vif(&xs, "vif-dba", 4, 0);
    let names = |l: Vec<VifDir>| l.iter().map(|v| v.vif.to_string()).collect::<Vec<_>>();
    let b = DomId::DOM0;
    assert_eq!(
        names(list(&xs, b, "vif", None, None).unwrap()),
        ["vif2.0", "vif2.1", "vif3.0", "vif10.0"]
    );
    assert_eq!(
        names(list(&xs, b, "vif", Some(DomId(2)), None).unwrap()),
        ["vif2.0", "vif2.1"]
    );
    assert_eq!(
        names(list(&xs, b, "vif", Some(DomId(2)), Some(5)).unwrap()),
        ["vif2.5"],
        "listed; show checks it exists"
    );
    assert_eq!(
        names(list(&xs, b, "vif-dba", None, None).unwrap()),
        ["vif4.0"]
    );
    assert!(list(&xs, b, "vif", Some(DomId(9)), None)
        .unwrap()
        .is_empty());
    assert!(list(&xs, DomId(5), "vif", None, None).unwrap().is_empty());
}

#[test]
fn show_reports_what_the_daemon_applies() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    let scrape = parse_exposition(
        "dbavm_vif_connected{vif=\"vif1.0\"} 1\n\
         dbavm_vif_budget_bits_per_second{vif=\"vif1.0\"} 150000000\n\
         dbavm_vif_budget_packets_per_second{vif=\"vif1.0\"} 20000\n\
         dbavm_vif_budget_burst_bytes{vif=\"vif1.0\"} 375000\n\
         dbavm_vif_budget_burst_packets{vif=\"vif1.0\"} 400\n\
         dbavm_vif_rate_cap_bits_per_second{vif=\"vif1.0\"} 1000000\n\
         dbavm_vif_rate_cap_burst_bytes{vif=\"vif1.0\"} 131072\n\
         dbavm_vif_sla_priority{vif=\"vif1.0\"} 1\n\
         dbavm_vif_sla_min_bits_per_second{vif=\"vif1.0\"} 150000000\n\
         dbavm_vif_rx_budget_bits_per_second{vif=\"vif1.0\"} 300000000\n\
         dbavm_vif_rx_budget_packets_per_second{vif=\"vif1.0\"} 40000\n\
         dbavm_vif_rx_budget_burst_bytes{vif=\"vif1.0\"} 750000\n\
         dbavm_vif_rx_budget_burst_packets{vif=\"vif1.0\"} 800\n\
         dbavm_vif_tx_shaped_frames_total{vif=\"vif1.0\",reason=\"bps\"} 12\n\
         dbavm_vif_tx_shaped_frames_total{vif=\"vif1.0\",reason=\"pps\"} 14\n\
         dbavm_vif_tx_shaped_bits_total{vif=\"vif1.0\"} 104000\n\
         dbavm_vif_rx_shaped_frames_total{vif=\"vif1.0\",reason=\"bps\"} 15\n\
         dbavm_vif_rx_shaped_frames_total{vif=\"vif1.0\",reason=\"pps\"} 17\n\
         dbavm_vif_rx_shaped_bits_total{vif=\"vif1.0\"} 128000\n\
         dbavm_vif_sla_rx_min_bits_per_second{vif=\"vif1.0\"} 50000000\n\
         dbavm_vif_sla_rx_max_bits_per_second{vif=\"vif1.0\"} 300000000\n\
         dbavm_vif_connected{vif=\"vif1.1\"} 0\n\
         dbavm_vif_sla_priority{vif=\"vif1.1\"} 7\n\
         dbavm_vif_sla_min_bits_per_second{vif=\"vif1.1\"} 0\n",
    )
    .unwrap();
    let text = show(&xs, &at, Some(&scrape)).unwrap().to_string();
    assert_eq!(
        text.lines().skip(2).collect::<Vec<_>>(),
        [
            "  live budget: 150M b/s, 20k p/s (burst 375000 B, 400 packets)",
            "  live RX budget: 300M b/s, 40k p/s (burst 750000 B, 800 packets)",
            "  shaped TX: 12 frames (13000 B) for bits/s, 14 for packets/s",
            "  shaped RX: 15 frames (16000 B) for bits/s, 17 for packets/s",
            "  live rate cap: 1M b/s (burst 131072 B)",
            "  SLA in force: class 1, min 150M b/s, max unlimited; RX min 50M b/s, max 300M b/s",
        ],
        "{text}"
    );
    let waiting = add_vif(&xs, "vif", 1, 1);
    let text = show(&xs, &waiting, Some(&scrape)).unwrap().to_string();
    assert!(text.contains(
        "  live: no budget (allocator off, or the vif is not connected yet)\n  \
         live RX budget: unlimited\n  \
         SLA in force: class 7, min 0 b/s, max unlimited; RX min 0 b/s, max unlimited\n"
    ));
    let unknown = add_vif(&xs, "vif", 1, 2);
    let v = show(&xs, &unknown, Some(&scrape)).unwrap();
    assert_eq!(v.live, Some(Live::default()));
    assert!(v.to_string().ends_with("  live: not known to the daemon\n"));
}

#[test]
fn show_lists_the_toolstack_rate_key() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 3, 0);
    let v = show(&xs, &at, None).unwrap();
    assert_eq!(v.rate_key, None);
    assert!(!v.to_string().contains("rate "), "{v}");
    xs.write(XsTx::NONE, &format!("{}/rate", at.path()), b"6250,50000")
        .unwrap();
    let v = show(&xs, &at, None).unwrap();
    assert_eq!(v.rate_key.as_deref(), Some("6250,50000"));
    assert!(
        v.to_string()
            .contains("  rate          6250,50000 (toolstack cap"),
        "{v}"
    );
}

#[test]
fn receive_keys_set_checked_and_removed() {
    let Store(_d, xs) = store();
    let at = add_vif(&xs, "vif", 1, 0);
    let sibling = add_vif(&xs, "vif", 1, 1);
    let rx = |min: Option<&str>, max: Option<&str>, pps: Option<&str>| SlaUpdate {
        rx_min_bps: min.map(Into::into),
        rx_max_bps: max.map(Into::into),
        rx_vm_pps: pps.map(Into::into),
        ..SlaUpdate::default()
    };
    // TX only: no receive key appears.
    set(&xs, &at, &update(None, None, Some("100M"))).unwrap();
    assert_eq!(key(&xs, "dba-rx-max-bps"), None);
    let r = set(&xs, &at, &rx(Some("10M"), Some("50M"), Some("8k"))).unwrap();
    assert_eq!(
        r.written,
        [
            ("dba-rx-min-bps", "10M".to_string()),
            ("dba-rx-max-bps", "50M".to_string()),
            ("dba-rx-vm-pps", "8k".to_string()),
        ]
    );
    assert_eq!(
        r.vm_cap_mismatches,
        [VmCapMismatch {
            vif: sibling.vif,
            key: "dba-rx-vm-pps",
            value: None
        }]
    );
    let before = dump(&xs, DIR);
    // Contradicting the receive minimum already there: names the vif and the key.
    let e = set(&xs, &at, &rx(None, Some("5M"), None)).unwrap_err();
    assert!(
        e.to_string().contains(
            "vif1.0: field `dba-rx-min-bps`: minimum 10M b/s is above the maximum 5M b/s"
        ),
        "{e}"
    );
    let e = set(&xs, &at, &rx(None, None, Some("lots"))).unwrap_err();
    assert!(e.to_string().contains("field `dba-rx-vm-pps`"), "{e}");
    assert_eq!(dump(&xs, DIR), before, "a refused value wrote something");
    let v = show(&xs, &at, None).unwrap();
    assert!(v.to_string().contains("dba-rx-max-bps 50M"), "{v}");
    let removed = remove(&xs, &at, &[SlaField::RxMaxBps, SlaField::RxVmPps]).unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(key(&xs, "dba-rx-min-bps").as_deref(), Some("10M"));
    assert_eq!(key(&xs, "dba-max-bps").as_deref(), Some("100M"));
}
