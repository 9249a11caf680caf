//! The wire types' sizes, offsets and constants against the C header, compiled by gcc.

use core::mem::{align_of, offset_of, size_of};
use shared_ring::netif::{self, extra, *};
use shared_ring::ring::layout;

#[test]
fn sizes_and_offsets_match_netif_h() {
    if !shared_ring_oracle::AVAILABLE {
        eprintln!("SKIP: {}", shared_ring_oracle::SKIP_REASON);
        return;
    }
    let rust: &[(&str, usize)] = &[
        ("oracle_tx_req_size", size_of::<NetifTxRequest>()),
        ("oracle_tx_req_gref", offset_of!(NetifTxRequest, gref)),
        ("oracle_tx_req_offset", offset_of!(NetifTxRequest, offset)),
        ("oracle_tx_req_flags", offset_of!(NetifTxRequest, flags)),
        ("oracle_tx_req_id", offset_of!(NetifTxRequest, id)),
        ("oracle_tx_req_size_field", offset_of!(NetifTxRequest, size)),
        ("oracle_tx_rsp_size", size_of::<NetifTxResponse>()),
        ("oracle_tx_rsp_id", offset_of!(NetifTxResponse, id)),
        ("oracle_tx_rsp_status", offset_of!(NetifTxResponse, status)),
        ("oracle_rx_req_size", size_of::<NetifRxRequest>()),
        ("oracle_rx_req_id", offset_of!(NetifRxRequest, id)),
        ("oracle_rx_req_pad", offset_of!(NetifRxRequest, pad)),
        ("oracle_rx_req_gref", offset_of!(NetifRxRequest, gref)),
        ("oracle_rx_rsp_size", size_of::<NetifRxResponse>()),
        ("oracle_rx_rsp_id", offset_of!(NetifRxResponse, id)),
        ("oracle_rx_rsp_offset", offset_of!(NetifRxResponse, offset)),
        ("oracle_rx_rsp_flags", offset_of!(NetifRxResponse, flags)),
        ("oracle_rx_rsp_status", offset_of!(NetifRxResponse, status)),
        ("oracle_extra_size", size_of::<NetifExtraInfo>()),
        ("oracle_extra_align", align_of::<NetifExtraInfo>()),
        ("oracle_extra_type", offset_of!(NetifExtraInfo, r#type)),
        ("oracle_extra_flags", offset_of!(NetifExtraInfo, flags)),
        ("oracle_extra_u", offset_of!(NetifExtraInfo, u)),
        // Union members, as this crate encodes them (u + index in ExtraInfo::parse).
        ("oracle_extra_gso_size", 2),
        ("oracle_extra_gso_type", 4),
        ("oracle_extra_gso_features", 6),
        ("oracle_extra_mcast_addr", 2),
        ("oracle_extra_hash_type", 2),
        ("oracle_extra_hash_algorithm", 3),
        ("oracle_extra_hash_value", 4),
        ("oracle_ctrl_req_size", size_of::<XenNetifCtrlRequest>()),
        (
            "oracle_ctrl_req_data",
            offset_of!(XenNetifCtrlRequest, data),
        ),
        ("oracle_ctrl_rsp_size", size_of::<XenNetifCtrlResponse>()),
        (
            "oracle_ctrl_rsp_status",
            offset_of!(XenNetifCtrlResponse, status),
        ),
        (
            "oracle_ctrl_rsp_data",
            offset_of!(XenNetifCtrlResponse, data),
        ),
        ("oracle_sring_req_prod", layout::REQ_PROD),
        ("oracle_sring_req_event", layout::REQ_EVENT),
        ("oracle_sring_rsp_prod", layout::RSP_PROD),
        ("oracle_sring_rsp_event", layout::RSP_EVENT),
        ("oracle_sring_pvt", layout::PVT),
        ("oracle_sring_pad", layout::PAD),
        ("oracle_sring_ring", layout::RING),
        ("oracle_tx_slot_size", NetifTxSring::SLOT_BYTES),
        ("oracle_rx_slot_size", NetifRxSring::SLOT_BYTES),
        ("oracle_tx_ring_size", NET_TX_RING_SIZE as usize),
        ("oracle_rx_ring_size", NET_RX_RING_SIZE as usize),
        (
            "oracle_front_ring_size",
            size_of::<shared_ring_oracle::CFrontRing>(),
        ),
        (
            "oracle_back_ring_size",
            size_of::<shared_ring_oracle::CBackRing>(),
        ),
    ];
    let c = shared_ring_oracle::c_layout();
    assert_eq!(c.len(), rust.len(), "every C layout fact is compared");
    for ((cn, cv), (rn, rv)) in c.iter().zip(rust) {
        assert_eq!(cn, rn);
        assert_eq!(cv, rv, "{cn}: C says {cv}, Rust says {rv}");
    }
}

#[test]
fn extra_union_encoding_matches_c_offsets() {
    // GSO size at union offset 0 → byte 2 of the slot, etc.: check through the encoder.
    let slot = NetifExtraInfo::new(
        &ExtraInfo::Hash {
            r#type: 0xAA,
            algorithm: 0xBB,
            value: 0x4433_2211,
        },
        XenNetifExtraFlags::empty(),
    );
    assert_eq!(slot.u, [0xAA, 0xBB, 0x11, 0x22, 0x33, 0x44]);
}

#[test]
fn constants_match_netif_h() {
    if !shared_ring_oracle::AVAILABLE {
        eprintln!("SKIP: {}", shared_ring_oracle::SKIP_REASON);
        return;
    }
    let rust: &[(&str, i64)] = &[
        ("XEN_NETIF_NR_SLOTS_MIN", XEN_NETIF_NR_SLOTS_MIN as i64),
        ("XEN_NETIF_MAX_TX_SIZE", XEN_NETIF_MAX_TX_SIZE as i64),
        ("NETIF_RSP_DROPPED", NETIF_RSP_DROPPED as i64),
        ("NETIF_RSP_ERROR", NETIF_RSP_ERROR as i64),
        ("NETIF_RSP_OKAY", NETIF_RSP_OKAY as i64),
        ("NETIF_RSP_NULL", NETIF_RSP_NULL as i64),
        ("NETTXF_csum_blank", NetTxFlags::CSUM_BLANK.bits() as i64),
        (
            "NETTXF_data_validated",
            NetTxFlags::DATA_VALIDATED.bits() as i64,
        ),
        ("NETTXF_more_data", NetTxFlags::MORE_DATA.bits() as i64),
        ("NETTXF_extra_info", NetTxFlags::EXTRA_INFO.bits() as i64),
        (
            "NETRXF_data_validated",
            NetRxFlags::DATA_VALIDATED.bits() as i64,
        ),
        ("NETRXF_csum_blank", NetRxFlags::CSUM_BLANK.bits() as i64),
        ("NETRXF_more_data", NetRxFlags::MORE_DATA.bits() as i64),
        ("NETRXF_extra_info", NetRxFlags::EXTRA_INFO.bits() as i64),
        ("NETRXF_gso_prefix", NetRxFlags::GSO_PREFIX.bits() as i64),
        (
            "XEN_NETIF_EXTRA_TYPE_NONE",
            extra::XEN_NETIF_EXTRA_TYPE_NONE as i64,
        ),
        (
            "XEN_NETIF_EXTRA_TYPE_GSO",
            extra::XEN_NETIF_EXTRA_TYPE_GSO as i64,
        ),
        (
            "XEN_NETIF_EXTRA_TYPE_MCAST_ADD",
            extra::XEN_NETIF_EXTRA_TYPE_MCAST_ADD as i64,
        ),
        (
            "XEN_NETIF_EXTRA_TYPE_MCAST_DEL",
            extra::XEN_NETIF_EXTRA_TYPE_MCAST_DEL as i64,
        ),
        (
            "XEN_NETIF_EXTRA_TYPE_HASH",
            extra::XEN_NETIF_EXTRA_TYPE_HASH as i64,
        ),
        // Xen's header stops at HASH (MAX = 5); Linux adds XDP = 5 and MAX = 6.
        (
            "XEN_NETIF_EXTRA_TYPE_MAX(xen)",
            extra::XEN_NETIF_EXTRA_TYPE_XDP as i64,
        ),
        (
            "XEN_NETIF_EXTRA_FLAG_MORE",
            XenNetifExtraFlags::MORE.bits() as i64,
        ),
        (
            "XEN_NETIF_GSO_TYPE_TCPV4",
            extra::XEN_NETIF_GSO_TYPE_TCPV4 as i64,
        ),
        (
            "XEN_NETIF_GSO_TYPE_TCPV6",
            extra::XEN_NETIF_GSO_TYPE_TCPV6 as i64,
        ),
    ];
    let c = shared_ring_oracle::c_constants();
    assert_eq!(c.len(), rust.len());
    for ((cn, cv), (rn, rv)) in c.iter().zip(rust) {
        assert_eq!(cn, rn);
        assert_eq!(cv, rv, "{cn}: C says {cv}, Rust says {rv}");
    }
    let _ = netif::NET_TX_RING_END;
}
