//! Header parsing, checksums and the virtio-net header mapping: known frames, hostile
//! frames, and property tests (never panics; partial → complete checksums verify).

use netport::csum::{self, IpVersion, L4Proto, ParseError};
use netport::vnet::{self, VirtioNetHdr, VnetError, VNET_HDR_LEN};
use netport::{FrameMeta, Gso, GsoKind};
use proptest::prelude::*;

/// Reference Internet checksum (RFC 1071), written independently of the crate's.
fn ref_sum(parts: &[&[u8]]) -> u16 {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut s: u32 = 0;
    for w in all.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    v6: bool,
    tcp: bool,
    vlans: usize,
    tcp_opts: usize, // 32-bit words of TCP options
    v6_ext: bool,    // one hop-by-hop header
    payload: usize,
    pad: usize, // Ethernet padding after the IP packet
}

/// Builds a frame with a correct, complete L4 checksum. Returns it and the L4 offset.
fn build(s: Spec) -> (Vec<u8>, usize) {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for _ in 0..s.vlans {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    f.extend_from_slice(&(if s.v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
    let l3 = f.len();
    let proto = if s.tcp { 6u8 } else { 17 };
    let l4_hdr = if s.tcp { 20 + 4 * s.tcp_opts } else { 8 };
    let l4_len = l4_hdr + s.payload;
    let ext = if s.v6 && s.v6_ext { 8 } else { 0 };
    if s.v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((ext + l4_len) as u16).to_be_bytes());
        f.push(if ext > 0 { 0 } else { proto });
        f.push(64);
        f.extend((0..16).map(|i| 0x20 + i as u8));
        f.extend((0..16).map(|i| 0x40 + i as u8));
        if ext > 0 {
            f.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
        }
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    let l4 = f.len();
    if s.tcp {
        f.extend_from_slice(&[0x30, 0x39, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 0]);
        f.push(((5 + s.tcp_opts) << 4) as u8);
        f.extend_from_slice(&[0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend(vec![1u8; 4 * s.tcp_opts]);
    } else {
        f.extend_from_slice(&[0x30, 0x39, 0x1f, 0x90]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend((0..s.payload).map(|i| (i * 7 + 3) as u8));
    let (src, dst) = if s.v6 {
        (&f[l3 + 8..l3 + 24], &f[l3 + 24..l3 + 40])
    } else {
        (&f[l3 + 12..l3 + 16], &f[l3 + 16..l3 + 20])
    };
    let pseudo: Vec<u8> = [src, dst, &[0, proto], &(l4_len as u16).to_be_bytes()].concat();
    let mut c = !ref_sum(&[&pseudo, &f[l4..]]);
    if !s.tcp && c == 0 {
        c = 0xffff;
    }
    let off = l4 + if s.tcp { 16 } else { 6 };
    f[off..off + 2].copy_from_slice(&c.to_be_bytes());
    f.extend(vec![0u8; s.pad]);
    (f, l4)
}

/// Turns a complete frame into a `csum_blank` one (pseudo-header sum in the field).
fn make_partial(f: &mut [u8]) {
    csum::write_pseudo_header_checksum(f).unwrap();
}

const V4_TCP: Spec = Spec {
    v6: false,
    tcp: true,
    vlans: 0,
    tcp_opts: 0,
    v6_ext: false,
    payload: 100,
    pad: 0,
};

#[test]
fn parses_the_usual_frames() {
    let (f, _) = build(V4_TCP);
    let i = csum::parse_l4(&f).unwrap();
    assert_eq!(
        (
            i.l3_offset,
            i.ip,
            i.l4_offset,
            i.proto,
            i.csum_offset,
            i.hdr_end,
            i.l4_len
        ),
        (14, IpVersion::V4, 34, L4Proto::Tcp, 16, 54, 120)
    );
    let (f, _) = build(Spec {
        tcp_opts: 3,
        vlans: 1,
        ..V4_TCP
    });
    let i = csum::parse_l4(&f).unwrap();
    assert_eq!((i.l3_offset, i.l4_offset, i.hdr_end), (18, 38, 70));
    let (f, _) = build(Spec {
        vlans: 2,
        tcp: false,
        ..V4_TCP
    });
    let i = csum::parse_l4(&f).unwrap();
    assert_eq!(
        (i.l4_offset, i.proto, i.csum_offset, i.hdr_end),
        (42, L4Proto::Udp, 6, 50)
    );
    let (f, _) = build(Spec { v6: true, ..V4_TCP });
    let i = csum::parse_l4(&f).unwrap();
    assert_eq!((i.ip, i.l4_offset, i.hdr_end), (IpVersion::V6, 54, 74));
    let (f, _) = build(Spec {
        v6: true,
        v6_ext: true,
        tcp: false,
        ..V4_TCP
    });
    let i = csum::parse_l4(&f).unwrap();
    assert_eq!((i.l4_offset, i.proto, i.l4_len), (62, L4Proto::Udp, 108));
    // Ethernet padding after the IP packet is not part of L4.
    let (f, _) = build(Spec {
        payload: 2,
        pad: 10,
        ..V4_TCP
    });
    assert_eq!(csum::parse_l4(&f).unwrap().l4_len, 22);
}

#[test]
fn rejects_hostile_and_unsupported_frames() {
    let (good, _) = build(V4_TCP);
    // Every strict prefix is truncated somewhere.
    for n in 0..good.len() {
        assert!(csum::parse_l4(&good[..n]).is_err(), "prefix {n}");
    }
    let bad = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut f = good.clone();
        edit(&mut f);
        csum::parse_l4(&f)
    };
    assert_eq!(
        bad(&|f| {
            f[12] = 0x08;
            f[13] = 0x06
        })
        .unwrap_err(),
        ParseError::NotIp(0x0806)
    );
    assert!(matches!(
        bad(&|f| f[14] = 0x44).unwrap_err(),
        ParseError::BadHeader(_)
    ));
    assert!(matches!(
        bad(&|f| {
            f[14] = 0x4f;
            f.truncate(60)
        })
        .unwrap_err(),
        ParseError::Truncated(_)
    ));
    assert!(matches!(
        bad(&|f| f[14] = 0x55).unwrap_err(),
        ParseError::BadHeader(_)
    ));
    assert!(matches!(
        bad(&|f| {
            f[16] = 0;
            f[17] = 10
        })
        .unwrap_err(),
        ParseError::BadHeader(_)
    ));
    assert!(matches!(
        bad(&|f| {
            f[16] = 0xff;
            f[17] = 0xff
        })
        .unwrap_err(),
        ParseError::Truncated(_)
    ));
    assert_eq!(bad(&|f| f[20] = 0x20).unwrap_err(), ParseError::Fragment); // MF
    assert_eq!(bad(&|f| f[21] = 0x01).unwrap_err(), ParseError::Fragment); // offset
    assert_eq!(
        bad(&|f| f[23] = 1).unwrap_err(),
        ParseError::UnsupportedProtocol(1)
    );
    assert!(matches!(
        bad(&|f| f[46] = 0x40).unwrap_err(),
        ParseError::BadHeader(_)
    ));
    let (mut short, _) = build(Spec {
        payload: 10,
        ..V4_TCP
    });
    short[46] = 0xf0; // 60-byte TCP header in a 30-byte segment
    assert!(matches!(
        csum::parse_l4(&short).unwrap_err(),
        ParseError::Truncated(_)
    ));
    // Three VLAN tags: the third is taken as the ethertype.
    let mut f = vec![0u8; 12];
    for _ in 0..3 {
        f.extend_from_slice(&[0x81, 0, 0, 1]);
    }
    f.extend_from_slice(&good[12..]);
    assert_eq!(csum::parse_l4(&f).unwrap_err(), ParseError::NotIp(0x8100));

    // IPv6: jumbogram, fragment header, ESP, extension loop, extension beyond payload.
    let (g6, _) = build(Spec {
        v6: true,
        v6_ext: true,
        ..V4_TCP
    });
    let bad6 = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut f = g6.clone();
        edit(&mut f);
        csum::parse_l4(&f)
    };
    assert!(matches!(
        bad6(&|f| {
            f[18] = 0;
            f[19] = 0
        })
        .unwrap_err(),
        ParseError::BadHeader(_)
    ));
    assert_eq!(bad6(&|f| f[20] = 44).unwrap_err(), ParseError::Fragment);
    assert_eq!(
        bad6(&|f| f[20] = 50).unwrap_err(),
        ParseError::UnsupportedProtocol(50)
    );
    assert!(matches!(
        bad6(&|f| f[55] = 200).unwrap_err(),
        ParseError::Truncated(_)
    ));
    // A chain of hop-by-hop headers longer than the walk limit.
    let mut chain = g6[..54].to_vec();
    for _ in 0..20 {
        chain.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    }
    chain[18..20].copy_from_slice(&160u16.to_be_bytes());
    chain[20] = 0;
    assert!(csum::parse_l4(&chain).is_err());
}

#[test]
fn checksums_match_the_reference_and_the_kernel_convention() {
    for spec in [
        V4_TCP,
        Spec {
            tcp: false,
            ..V4_TCP
        },
        Spec { v6: true, ..V4_TCP },
        Spec {
            v6: true,
            v6_ext: true,
            tcp: false,
            payload: 333,
            ..V4_TCP
        },
        Spec {
            vlans: 2,
            tcp_opts: 10,
            payload: 1,
            pad: 7,
            ..V4_TCP
        },
    ] {
        let (good, l4) = build(spec);
        assert!(csum::verify_l4_checksum(&good).unwrap(), "{spec:?}");
        let mut p = good.clone();
        make_partial(&mut p);
        assert_ne!(p, good);
        let mut a = p.clone();
        csum::fill_partial_checksum(&mut a).unwrap();
        assert_eq!(a, good, "{spec:?}");
        if spec.pad == 0 {
            let info = csum::parse_l4(&p).unwrap();
            let mut b = p.clone();
            csum::complete_checksum_at(&mut b, l4, info.csum_offset).unwrap();
            assert_eq!(b, good, "{spec:?}");
        }
        let mut c = good.clone();
        *c.last_mut().unwrap() ^= 0x10;
        if spec.pad == 0 {
            assert!(!csum::verify_l4_checksum(&c).unwrap());
        }
    }
    let mut f = build(V4_TCP).0;
    let len = f.len();
    assert!(csum::complete_checksum_at(&mut f, len - 1, 0).is_err());
    assert!(csum::complete_checksum_at(&mut f, usize::MAX, 2).is_err());
    assert!(csum::complete_checksum_at(&mut f, 2, usize::MAX).is_err());
    assert!(csum::complete_checksum_at(&mut f, len - 2, 0).is_ok());
}

#[test]
fn virtio_header_bytes_roundtrip() {
    let h = VirtioNetHdr {
        flags: 1,
        gso_type: 4,
        hdr_len: 74,
        gso_size: 1440,
        csum_start: 54,
        csum_offset: 16,
    };
    let b = h.to_bytes();
    assert_eq!(b.len(), VNET_HDR_LEN);
    assert_eq!(b[0], 1);
    assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 1440);
    assert_eq!(VirtioNetHdr::from_bytes(&b), h);
}

#[test]
fn send_mapping() {
    let (mut f, _) = build(V4_TCP);
    make_partial(&mut f);
    let blank = FrameMeta {
        csum_blank: true,
        ..FrameMeta::default()
    };
    let h = vnet::hdr_for_send(&blank, &f).unwrap();
    assert_eq!(
        (h.flags, h.gso_type, h.csum_start, h.csum_offset),
        (vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 16)
    );
    let gso = FrameMeta {
        gso: Some(Gso {
            size: 1448,
            kind: GsoKind::TcpV4,
        }),
        ..blank
    };
    let h = vnet::hdr_for_send(&gso, &f).unwrap();
    assert_eq!(
        (h.gso_type, h.gso_size, h.hdr_len),
        (vnet::VIRTIO_NET_HDR_GSO_TCPV4, 1448, 54)
    );
    let v6 = FrameMeta {
        gso: Some(Gso {
            size: 1448,
            kind: GsoKind::TcpV6,
        }),
        ..blank
    };
    assert_eq!(
        vnet::hdr_for_send(&v6, &f).unwrap_err(),
        VnetError::GsoMismatch
    );
    let zero = FrameMeta {
        gso: Some(Gso {
            size: 0,
            kind: GsoKind::TcpV4,
        }),
        ..blank
    };
    assert_eq!(
        vnet::hdr_for_send(&zero, &f).unwrap_err(),
        VnetError::ZeroGsoSize
    );
    let by_frags = FrameMeta {
        gso: Some(Gso {
            size: vnet::GSO_BY_FRAGS,
            kind: GsoKind::TcpV4,
        }),
        ..blank
    };
    assert_eq!(
        vnet::hdr_for_send(&by_frags, &f).unwrap_err(),
        VnetError::ReservedGsoSize
    );
    let no_blank = FrameMeta {
        csum_blank: false,
        ..gso
    };
    assert_eq!(
        vnet::hdr_for_send(&no_blank, &f).unwrap_err(),
        VnetError::GsoWithoutPartialChecksum
    );
    let (udp, _) = build(Spec {
        tcp: false,
        ..V4_TCP
    });
    assert_eq!(
        vnet::hdr_for_send(&gso, &udp).unwrap_err(),
        VnetError::GsoMismatch
    );
    let valid = FrameMeta {
        data_validated: true,
        ..FrameMeta::default()
    };
    assert_eq!(
        vnet::hdr_for_send(&valid, &f).unwrap().flags,
        vnet::VIRTIO_NET_HDR_F_DATA_VALID
    );
    assert_eq!(
        vnet::hdr_for_send(&FrameMeta::default(), &f).unwrap(),
        VirtioNetHdr::default()
    );
    let arp = [0u8; 42];
    assert!(matches!(
        vnet::hdr_for_send(&blank, &arp).unwrap_err(),
        VnetError::Headers(ParseError::NotIp(0))
    ));
}

#[test]
fn recv_mapping() {
    let (mut f, _) = build(Spec { v6: true, ..V4_TCP });
    make_partial(&mut f);
    let sent = FrameMeta {
        csum_blank: true,
        data_validated: false,
        gso: Some(Gso {
            size: 1000,
            kind: GsoKind::TcpV6,
        }),
    };
    let mut h = vnet::hdr_for_send(&sent, &f).unwrap();
    let m = vnet::meta_from_recv(&h, &mut f.clone()).unwrap();
    assert_eq!(
        m,
        FrameMeta {
            data_validated: true,
            ..sent
        }
    );
    h.gso_type |= vnet::VIRTIO_NET_HDR_GSO_ECN;
    assert_eq!(vnet::meta_from_recv(&h, &mut f.clone()).unwrap(), m);
    h.gso_type = vnet::VIRTIO_NET_HDR_GSO_UDP;
    assert_eq!(
        vnet::meta_from_recv(&h, &mut f.clone()).unwrap_err(),
        VnetError::UnsupportedGso(3)
    );
    h.gso_type = vnet::VIRTIO_NET_HDR_GSO_TCPV4;
    assert_eq!(
        vnet::meta_from_recv(&h, &mut f.clone()).unwrap_err(),
        VnetError::GsoMismatch
    );
    h.gso_type = vnet::VIRTIO_NET_HDR_GSO_TCPV6;
    h.gso_size = 0;
    assert_eq!(
        vnet::meta_from_recv(&h, &mut f.clone()).unwrap_err(),
        VnetError::ZeroGsoSize
    );
    h.gso_size = 1000;
    h.flags = 0;
    assert_eq!(
        vnet::meta_from_recv(&h, &mut f.clone()).unwrap_err(),
        VnetError::GsoWithoutPartialChecksum
    );
    // GSO with NEEDS_CSUM at a non-standard place cannot be expressed.
    h.flags = vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 20;
    assert_eq!(
        vnet::meta_from_recv(&h, &mut f.clone()).unwrap_err(),
        VnetError::BadChecksumOffsets
    );

    let data_valid = VirtioNetHdr {
        flags: vnet::VIRTIO_NET_HDR_F_DATA_VALID,
        ..VirtioNetHdr::default()
    };
    let m = vnet::meta_from_recv(&data_valid, &mut f.clone()).unwrap();
    assert_eq!(
        m,
        FrameMeta {
            data_validated: true,
            ..FrameMeta::default()
        }
    );
    assert_eq!(
        vnet::meta_from_recv(&VirtioNetHdr::default(), &mut f.clone()).unwrap(),
        FrameMeta::default()
    );
}

#[test]
fn recv_completes_nonstandard_partial_checksums_in_software() {
    // SCTP-like: IPv4 protocol 132; partial checksum (16-bit Internet sum, no pseudo-header:
    // the field starts at 0) at offset 10 of the L4 header. netif could not carry it, so it
    // is completed.
    let (mut f, _) = build(V4_TCP);
    f[23] = 132;
    let start = 34;
    let field = start + 10;
    f[field..field + 2].copy_from_slice(&[0, 0]);
    let h = VirtioNetHdr {
        flags: vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: start as u16,
        csum_offset: 10,
        ..VirtioNetHdr::default()
    };
    let mut g = f.clone();
    let m = vnet::meta_from_recv(&h, &mut g).unwrap();
    assert_eq!(
        m,
        FrameMeta {
            data_validated: true,
            ..FrameMeta::default()
        }
    );
    assert_eq!(ref_sum(&[&g[start..]]), 0xffff, "completed sum must verify");
    // Offsets outside the frame: an error, the frame untouched.
    let mut g = f.clone();
    let far = VirtioNetHdr {
        csum_start: (f.len() - 1) as u16,
        ..h
    };
    assert_eq!(
        vnet::meta_from_recv(&far, &mut g).unwrap_err(),
        VnetError::BadChecksumOffsets
    );
    assert_eq!(g, f);
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<bool>(),
        0usize..=2,
        0usize..=10,
        any::<bool>(),
        0usize..2000,
        0usize..20,
    )
        .prop_map(|(v6, tcp, vlans, tcp_opts, v6_ext, payload, pad)| Spec {
            v6,
            tcp,
            vlans,
            tcp_opts,
            v6_ext,
            payload,
            pad,
        })
}

fn hdr_strategy() -> impl Strategy<Value = VirtioNetHdr> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VirtioNetHdr {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
            },
        )
}

fn meta_strategy() -> impl Strategy<Value = FrameMeta> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((any::<u16>(), any::<bool>())),
    )
        .prop_map(|(csum_blank, data_validated, gso)| FrameMeta {
            csum_blank,
            data_validated,
            gso: gso.map(|(size, v6)| Gso {
                size,
                kind: if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
            }),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn partial_then_complete_verifies(spec in spec_strategy()) {
        let (good, _) = build(spec);
        prop_assert!(csum::verify_l4_checksum(&good).unwrap());
        let mut p = good.clone();
        make_partial(&mut p);
        let meta = FrameMeta { csum_blank: true, ..FrameMeta::default() };
        let h = vnet::hdr_for_send(&meta, &p).unwrap();
        // What the kernel does with NEEDS_CSUM: sum from csum_start to the end of the packet.
        let info = csum::parse_l4(&p).unwrap();
        let mut q = p[..info.l4_offset + info.l4_len].to_vec();
        csum::complete_checksum_at(&mut q, h.csum_start.into(), h.csum_offset.into()).unwrap();
        prop_assert_eq!(&q[..], &good[..q.len()]);
        csum::fill_partial_checksum(&mut p).unwrap();
        prop_assert_eq!(p, good);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                   hdr in hdr_strategy(), meta in meta_strategy()) {
        let _ = csum::parse_l4(&bytes);
        let _ = csum::verify_l4_checksum(&bytes);
        let _ = csum::fill_partial_checksum(&mut bytes.clone());
        let _ = csum::write_pseudo_header_checksum(&mut bytes.clone());
        let _ = csum::complete_checksum_at(&mut bytes.clone(), hdr.csum_start.into(), hdr.csum_offset.into());
        let _ = vnet::meta_from_recv(&hdr, &mut bytes.clone());
        let _ = vnet::hdr_for_send(&meta, &bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(spec in spec_strategy(),
                                        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
                                        cut in any::<u16>(),
                                        hdr in hdr_strategy(), meta in meta_strategy()) {
        let (mut f, _) = build(spec);
        for (pos, val) in edits {
            let n = f.len();
            f[usize::from(pos) % n] = val;
        }
        f.truncate(usize::from(cut) % (f.len() + 1) + f.len() / 2);
        let _ = csum::parse_l4(&f);
        let _ = csum::verify_l4_checksum(&f);
        let _ = csum::fill_partial_checksum(&mut f.clone());
        let _ = vnet::meta_from_recv(&hdr, &mut f.clone());
        if let Ok(h) = vnet::hdr_for_send(&meta, &f) {
            // Whatever is accepted for sending has its checksum field inside the frame.
            if h.flags & vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                prop_assert!(usize::from(h.csum_start) + usize::from(h.csum_offset) + 2 <= f.len());
            }
            if h.gso_type != 0 {
                prop_assert!(usize::from(h.hdr_len) <= f.len());
            }
        }
    }
}
