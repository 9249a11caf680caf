use super::*;
use proptest::prelude::*;

fn why(r: Result<impl std::fmt::Debug, VifConfigError>) -> &'static str {
    match r {
        Err(VifConfigError::Malformed { why, .. }) => why,
        other => panic!("expected a malformed value, got {other:?}"),
    }
}

#[test]
fn rate_as_libxl_writes_it() {
    // xl's rate=1Mb/s: 125000 B/s over libxl's default 50 ms interval.
    let r = parse_rate(b"6250,50000").unwrap();
    assert_eq!(
        r,
        RateCap {
            bytes: 6250,
            usec: 50000
        }
    );
    assert_eq!(r.bytes_per_sec(), 125_000);
    // One interval is less than Linux's minimum burst: the burst is 128 KiB.
    assert_eq!(r.limit(), Limit::rate(125_000, RATE_MIN_BURST));
    // A large interval's bytes are the burst.
    let big = parse_rate(b"1000000,100000").unwrap();
    assert_eq!(big.limit(), Limit::rate(10_000_000, 1_000_000));
    // A trailing NUL (some writers include it) is not part of the value.
    assert_eq!(parse_rate(b"6250,50000\0").unwrap(), r);
    // 0 bytes: nothing passes.
    assert_eq!(parse_rate(b"0,50000").unwrap().limit(), Limit::CLOSED);
}

#[test]
fn rate_rejects_what_libxl_never_writes() {
    for bad in [
        &b""[..],
        b"6250",
        b"6250,",
        b",50000",
        b"6250,0",
        b"6250;50000",
        b"-1,50000",
        b"+6250,50000",
        b" 6250,50000",
        b"6250,50000 ",
        b"6250,50000,1",
        b"1Mb/s",
        b"99999999999999999999,1",
        b"6250,50000\n",
        b"\xff,1",
    ] {
        assert!(parse_rate(bad).is_err(), "{:?} accepted", bad);
    }
    assert_eq!(why(parse_rate(b"6250,0")), "the interval is 0 µs");
    assert!(parse_rate(&[b'1'; 300]).is_err());
}

#[test]
fn rate_extremes_saturate() {
    let r = RateCap {
        bytes: u64::MAX,
        usec: 1,
    };
    assert_eq!(r.bytes_per_sec(), u64::MAX);
    // Less than a byte per second still lets something through, eventually.
    let slow = RateCap {
        bytes: 1,
        usec: 10_000_000,
    };
    assert_eq!(slow.bytes_per_sec(), 1);
}

#[test]
fn mtu_bounds_as_linux() {
    assert_eq!(parse_mtu(b"1400").unwrap(), 1400);
    assert_eq!(parse_mtu(b"68").unwrap(), 68);
    assert_eq!(parse_mtu(b"65535").unwrap(), 65535);
    for bad in [
        &b"67"[..],
        b"65536",
        b"0",
        b"",
        b"-1500",
        b"1500 ",
        b"0x5dc",
        b"1.5e3",
        b"4294967296",
    ] {
        assert!(parse_mtu(bad).is_err(), "{:?} accepted", bad);
    }
}

#[test]
fn mac_unicast_only() {
    assert_eq!(
        parse_mac(b"00:16:3e:12:34:56").unwrap(),
        [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]
    );
    assert_eq!(
        parse_mac(b"00:16:3E:AB:CD:EF").unwrap(),
        [0x00, 0x16, 0x3e, 0xab, 0xcd, 0xef]
    );
    assert_eq!(why(parse_mac(b"01:00:5e:00:00:01")), "a multicast address");
    assert_eq!(why(parse_mac(b"ff:ff:ff:ff:ff:ff")), "a multicast address");
    assert_eq!(why(parse_mac(b"00:00:00:00:00:00")), "the all-zero address");
    for bad in [
        &b""[..],
        b"00:16:3e:12:34",
        b"00:16:3e:12:34:56:78",
        b"0:16:3e:12:34:56",
        b"00-16-3e-12-34-56",
        b"00:16:3e:12:34:5g",
        b"00:16:3e:12:34:56 ",
    ] {
        assert!(parse_mac(bad).is_err(), "{:?} accepted", bad);
    }
}

#[test]
fn vifname_is_a_linux_interface_name() {
    assert_eq!(parse_vifname(b"vif-web0").unwrap(), "vif-web0");
    assert_eq!(
        parse_vifname(b"a23456789012345").unwrap(),
        "a23456789012345"
    );
    for bad in [
        &b""[..],
        b"a234567890123456",
        b".",
        b"..",
        b"eth/0",
        b"eth 0",
        b"eth\t0",
        b"eth:0",
        b"vif%d",
        b"eth\n",
        "vïf".as_bytes(),
    ] {
        assert!(parse_vifname(bad).is_err(), "{:?} accepted", bad);
    }
}

#[test]
fn ip_lists() {
    let v = parse_ip(b"10.0.0.2").unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].addr, "10.0.0.2".parse::<IpAddr>().unwrap());
    let v = parse_ip(b"10.0.0.2 10.0.1.0/24  fd00::2/64").unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[1].prefix, Some(24));
    assert_eq!(v[2].prefix, Some(64));
    for bad in [
        &b""[..],
        b"   ",
        b"10.0.0.256",
        b"10.0.0.2/33",
        b"fd00::2/129",
        b"10.0.0.2/",
        b"10.0.0.2/-1",
        b"host.example",
        b"10.0.0.2,10.0.0.3",
    ] {
        assert!(parse_ip(bad).is_err(), "{:?} accepted", bad);
    }
}

#[test]
fn config_absent_keys_are_defaults_and_the_bad_key_is_named() {
    let none = parse_config(|_| Ok(None)).unwrap();
    assert_eq!(none, VifConfig::default());
    let full = parse_config(|k| {
        Ok(Some(
            match k {
                "mac" => "00:16:3e:12:34:56",
                "mtu" => "1400",
                "rate" => "6250,50000",
                "vifname" => "web0",
                "ip" => "10.0.0.2",
                "script" => "/etc/xen/scripts/vif-bridge",
                _ => unreachable!(),
            }
            .as_bytes()
            .to_vec(),
        ))
    })
    .unwrap();
    assert_eq!(full.mtu, Some(1400));
    assert_eq!(full.vifname.as_deref(), Some("web0"));
    assert_eq!(full.rate.unwrap().bytes, 6250);
    assert!(full.hotplug_script);
    let err = parse_config(|k| Ok((k == "mtu").then(|| b"9".to_vec()))).unwrap_err();
    assert!(err.to_string().contains("backend key mtu"), "{err}");
}

#[test]
fn a_script_key_means_a_hotplug_script_but_the_noop_one_does_not_count() {
    let with = |script: &'static str| {
        parse_config(|k| Ok((k == "script").then(|| script.as_bytes().to_vec())))
            .unwrap()
            .hotplug_script
    };
    assert!(with("/etc/xen/scripts/vif-bridge"));
    assert!(with("vif-route"));
    assert!(with("/etc/xen/scripts/vif-userspace-not"));
    assert!(!with("/etc/xen/scripts/vif-userspace"));
    assert!(!with("vif-userspace"));
    assert!(!parse_config(|_| Ok(None)).unwrap().hotplug_script);
}

#[test]
fn min_limit_takes_the_smaller_of_each() {
    let a = Limit::rate(100, 10);
    let b = Limit::rate(50, 20);
    assert_eq!(min_limit(a, b), Limit::rate(50, 10));
    assert_eq!(min_limit(Limit::Unlimited, b), b);
    assert_eq!(min_limit(a, Limit::Unlimited), a);
    assert_eq!(
        min_limit(Limit::Unlimited, Limit::Unlimited),
        Limit::Unlimited
    );
    assert_eq!(capped(a, None), a);
}

proptest! {
    /// Whatever a toolstack (or anyone with write access) puts there, parsing returns.
    #[test]
    fn no_input_panics(v in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_rate(&v);
        let _ = parse_mtu(&v);
        let _ = parse_mac(&v);
        let _ = parse_vifname(&v);
        let _ = parse_ip(&v);
    }

    /// libxl's formatting of any rate reads back as written.
    #[test]
    fn rate_round_trips(bytes in any::<u64>(), usec in 1..=u32::MAX) {
        let r = parse_rate(format!("{bytes},{usec}").as_bytes()).unwrap();
        prop_assert_eq!(r, RateCap { bytes, usec: u64::from(usec) });
        // The average never exceeds what was asked (beyond the 1 B/s floor).
        let exact = u128::from(bytes) * 1_000_000 / u128::from(usec);
        prop_assert!(u128::from(r.bytes_per_sec()) <= exact.max(1));
    }

    /// Any unicast, non-zero MAC in libxl's format reads back; any multicast one is refused.
    #[test]
    fn mac_round_trips(m in any::<[u8; 6]>()) {
        let s = format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
        let r = parse_mac(s.as_bytes());
        if m[0] & 1 == 1 || m == [0; 6] {
            prop_assert!(r.is_err());
        } else {
            prop_assert_eq!(r.unwrap(), m);
        }
    }

    #[test]
    fn mtu_in_bounds_iff_accepted(n in any::<u32>()) {
        let r = parse_mtu(n.to_string().as_bytes());
        prop_assert_eq!(r.is_ok(), (MIN_MTU..=MAX_MTU).contains(&n));
    }

    /// An accepted name is one Linux accepts: 1..=15 bytes, no '/', ':', whitespace.
    #[test]
    fn accepted_vifnames_are_valid(v in proptest::collection::vec(any::<u8>(), 0..20)) {
        if let Ok(n) = parse_vifname(&v) {
            prop_assert!(!n.is_empty() && n.len() <= 15);
            prop_assert!(n != "." && n != "..");
            prop_assert!(!n.bytes().any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c == 0));
        }
    }

    /// The cap never lets more through than either of its inputs.
    #[test]
    fn min_limit_is_below_both(r1 in any::<u64>(), b1 in any::<u64>(), r2 in any::<u64>(), b2 in any::<u64>()) {
        match min_limit(Limit::rate(r1, b1), Limit::rate(r2, b2)) {
            Limit::Rate { per_sec, burst } => {
                prop_assert!(per_sec <= r1 && per_sec <= r2);
                prop_assert!(burst <= b1 && burst <= b2);
            }
            Limit::Unlimited => prop_assert!(false),
        }
    }
}
