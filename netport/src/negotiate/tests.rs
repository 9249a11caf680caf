use super::*;
use crate::csum::verify_l4_checksum;
use crate::Gso;

/// Reads keys from a list of (key, value) pairs as a peer's directory would hold them.
fn dir<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl FnMut(&'static str) -> Option<Vec<u8>> + 'a {
    move |k| {
        pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_bytes().to_vec())
    }
}

/// A TCP frame over IPv4 or IPv6 of `payload` bytes, its checksum field holding the
/// pseudo-header sum (what a `csum_blank` sender leaves).
fn tcp(v6: bool, payload: usize) -> Vec<u8> {
    let (l3, ethertype) = if v6 { (40, 0x86dd_u16) } else { (20, 0x0800) };
    let mut f = vec![0u8; 14 + l3 + 20 + payload];
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    if v6 {
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22 + 15] = 1;
        f[38 + 15] = 2;
    } else {
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + 20 + payload) as u16).to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    }
    f[14 + l3 + 12] = 0x50;
    for (i, b) in f.iter_mut().enumerate().skip(14 + l3 + 20) {
        *b = (i * 7) as u8;
    }
    csum::write_pseudo_header_checksum(&mut f).unwrap();
    f
}

const BLANK: FrameMeta = FrameMeta {
    csum_blank: true,
    data_validated: true,
    gso: None,
};

#[test]
fn absent_keys_are_netif_defaults() {
    let o = Offer::parse(dir(&[])).unwrap();
    assert_eq!(o, Offer::DEFAULTS);
    assert!(o.ipv4_csum && !o.ipv6_csum && !o.sg && !o.gso_tcpv4 && !o.gso_tcpv6);
}

#[test]
fn every_key_is_read_with_its_own_polarity() {
    let o = Offer::parse(dir(&[
        ("feature-sg", "1"),
        ("feature-no-csum-offload", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("feature-gso-tcpv4", "0"),
        ("feature-gso-tcpv6", "1"),
    ]))
    .unwrap();
    assert_eq!(
        o,
        Offer {
            sg: true,
            ipv4_csum: false,
            ipv6_csum: true,
            gso_tcpv4: false,
            gso_tcpv6: true,
        }
    );
}

#[test]
fn keys_written_parse_back_to_the_same_offer() {
    for bits in 0..32u8 {
        let o = Offer {
            sg: bits & 1 != 0,
            ipv4_csum: bits & 2 != 0,
            ipv6_csum: bits & 4 != 0,
            gso_tcpv4: bits & 8 != 0,
            gso_tcpv6: bits & 16 != 0,
        };
        let keys = o.keys();
        assert_eq!(Offer::parse(dir(&keys)).unwrap(), o, "{o:?}");
    }
}

#[test]
fn a_value_other_than_0_or_1_is_refused_with_its_key() {
    for bad in ["2", "yes", "", "01x", "-1"] {
        let e = Offer::parse(dir(&[("feature-gso-tcpv6", bad)])).unwrap_err();
        assert_eq!(e.key, "feature-gso-tcpv6", "{bad:?}");
    }
    // Whitespace around a valid value is tolerated (some toolstacks add a newline).
    assert!(Offer::parse(dir(&[("feature-sg", "1\n")])).unwrap().sg);
}

#[test]
fn tcpv4_only_gso_does_not_allow_tcpv6() {
    let o = Offer {
        gso_tcpv4: true,
        sg: true,
        ..Offer::DEFAULTS
    };
    let a = Allowed::toward(&o);
    assert!(a.gso_v4 && !a.gso_v6);
}

#[test]
fn gso_needs_sg_and_the_checksum_offload_of_its_ip_version() {
    let all = Offer::ALL;
    assert!(Allowed::toward(&all).gso_v4 && Allowed::toward(&all).gso_v6);
    let no_sg = Allowed::toward(&Offer { sg: false, ..all });
    assert!(!no_sg.gso_v4 && !no_sg.gso_v6 && !no_sg.multi_slot);
    let no_v6 = Allowed::toward(&Offer {
        ipv6_csum: false,
        ..all
    });
    assert!(no_v6.gso_v4 && !no_v6.gso_v6);
    let no_v4 = Allowed::toward(&Offer {
        ipv4_csum: false,
        ..all
    });
    assert!(!no_v4.gso_v4 && no_v4.gso_v6);
}

#[test]
fn an_unagreed_gso_type_is_refused() {
    let a = Allowed::toward(&Offer {
        sg: true,
        gso_tcpv4: true,
        ..Offer::DEFAULTS
    });
    let mut f = tcp(true, 8000);
    let meta = FrameMeta {
        gso: Some(Gso {
            size: 1440,
            kind: GsoKind::TcpV6,
        }),
        ..BLANK
    };
    assert_eq!(a.conform(&mut f, &meta), Err(Refused::Gso(GsoKind::TcpV6)));
    let mut f = tcp(false, 8000);
    let meta = FrameMeta {
        gso: Some(Gso {
            size: 1460,
            kind: GsoKind::TcpV4,
        }),
        ..BLANK
    };
    let c = a.conform(&mut f, &meta).unwrap();
    assert_eq!(c.meta, meta);
    assert!(!c.csum_filled);
}

#[test]
fn multi_slot_frames_need_sg() {
    let a = Allowed::toward(&Offer::DEFAULTS);
    let mut f = tcp(false, 5000);
    assert_eq!(
        a.conform(&mut f, &FrameMeta::default()),
        Err(Refused::MultiSlot(f.len()))
    );
    // Exactly one page still goes in one slot.
    let mut f = tcp(false, SLOT_BYTES - 54);
    assert_eq!(f.len(), SLOT_BYTES);
    assert!(a.conform(&mut f, &FrameMeta::default()).is_ok());
}

#[test]
fn an_unagreed_partial_checksum_is_completed_and_its_flags_cleared() {
    for v6 in [false, true] {
        let a = Allowed::toward(&Offer::NOTHING);
        let mut f = tcp(v6, 1400);
        assert!(
            !verify_l4_checksum(&f).unwrap(),
            "a blank checksum is not valid yet"
        );
        let c = a.conform(&mut f, &BLANK).unwrap();
        assert!(c.csum_filled);
        assert!(!c.meta.csum_blank && !c.meta.data_validated);
        assert!(verify_l4_checksum(&f).unwrap(), "v6 {v6}");
    }
}

#[test]
fn ipv6_partial_checksum_needs_ipv6_csum_offload_ipv4_does_not() {
    // The netif defaults: IPv4 offload on, IPv6 off.
    let a = Allowed::toward(&Offer::DEFAULTS);
    let mut f4 = tcp(false, 100);
    let before = f4.clone();
    let c4 = a.conform(&mut f4, &BLANK).unwrap();
    assert_eq!(c4.meta, BLANK);
    assert_eq!(
        f4, before,
        "an agreed partial checksum is left to the receiver"
    );
    let mut f6 = tcp(true, 100);
    let c6 = a.conform(&mut f6, &BLANK).unwrap();
    assert!(c6.csum_filled && !c6.meta.csum_blank);
    assert!(verify_l4_checksum(&f6).unwrap());
}

#[test]
fn an_unagreed_validated_mark_is_cleared_without_touching_the_frame() {
    let a = Allowed::toward(&Offer::NOTHING);
    let mut f = tcp(false, 100);
    csum::fill_partial_checksum(&mut f).unwrap();
    let before = f.clone();
    let meta = FrameMeta {
        data_validated: true,
        ..FrameMeta::default()
    };
    let c = a.conform(&mut f, &meta).unwrap();
    assert_eq!(c.meta, FrameMeta::default());
    assert!(!c.csum_filled);
    assert_eq!(f, before);
}

#[test]
fn a_partial_checksum_on_unparsable_headers_is_refused_unless_both_offloads_agreed() {
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let blank = FrameMeta {
        csum_blank: true,
        ..FrameMeta::default()
    };
    assert!(matches!(
        Allowed::toward(&Offer::DEFAULTS).conform(&mut arp, &blank),
        Err(Refused::Checksum(_))
    ));
    assert!(Allowed::toward(&Offer::ALL)
        .conform(&mut arp, &blank)
        .is_ok());
    // Plain non-IP frames pass whatever was agreed.
    assert!(Allowed::toward(&Offer::NOTHING)
        .conform(&mut arp, &FrameMeta::default())
        .is_ok());
}
