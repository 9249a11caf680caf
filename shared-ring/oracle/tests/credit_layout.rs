//! The differential ABI test of the credit area (issue 15): every field of the version-1
//! and version-2 layouts has its offset and size asserted three ways — the C structs of
//! `c/dba_credit.h` as gcc lays them out, the tables of `docs/protocol.md` §2.2, and
//! `shared_ring::credit::offsets` — and what the Rust publisher and frontend write is read
//! back through the C structs, value for value. Version 1 is a prefix of version 2 with
//! unchanged offsets, so old frontends and backends keep working.

use shared_ring::credit::{
    offsets as off, BackCounters, CreditArea, CreditPublisher, CreditReader, Credits,
    FrontCounters, CREDIT_AREA_BYTES, CREDIT_AREA_BYTES_V2, CREDIT_AREA_OFFSET, CREDIT_MAGIC,
};
use shared_ring::{Limit, SharedPage};
use shared_ring_oracle::credit::{self as c, Field};
use std::collections::BTreeMap;

/// The Rust crate's view: field → (offset, size). Sizes are the access width the crate
/// uses (u64 fields are two words, the version and area_bytes half-words share a word).
fn rust_fields() -> BTreeMap<&'static str, (usize, usize)> {
    BTreeMap::from([
        ("magic", (off::MAGIC, 4)),
        ("version", (off::VERSION_AREA_BYTES, 2)),
        ("area_bytes", (off::VERSION_AREA_BYTES + 2, 2)),
        ("seq", (off::SEQ, 4)),
        ("flags", (off::FLAGS, 4)),
        ("bytes_per_sec", (off::BYTES_PER_SEC, 8)),
        ("bytes_burst", (off::BYTES_BURST, 8)),
        ("packets_per_sec", (off::PACKETS_PER_SEC, 8)),
        ("packets_burst", (off::PACKETS_BURST, 8)),
        ("period_us", (off::PERIOD_US, 4)),
        ("front_version", (off::FRONT_VERSION, 4)),
        ("front_seq", (off::FRONT_SEQ, 4)),
        ("applied_generation", (off::APPLIED_GENERATION, 4)),
        ("tx_packets", (off::TX_PACKETS, 8)),
        ("tx_bytes", (off::TX_BYTES, 8)),
        ("dropped_packets", (off::DROPPED_PACKETS, 8)),
        ("dropped_bytes", (off::DROPPED_BYTES, 8)),
        ("held", (off::HELD, 8)),
        ("rx_bytes_per_sec", (off::RX_BYTES_PER_SEC, 8)),
        ("rx_bytes_burst", (off::RX_BYTES_BURST, 8)),
        ("rx_packets_per_sec", (off::RX_PACKETS_PER_SEC, 8)),
        ("rx_packets_burst", (off::RX_PACKETS_BURST, 8)),
        ("back_seq", (off::BACK_SEQ, 4)),
        ("tx_shaped_bps_frames", (off::TX_SHAPED_BPS_FRAMES, 8)),
        ("tx_shaped_bps_bytes", (off::TX_SHAPED_BPS_BYTES, 8)),
        ("tx_shaped_pps_frames", (off::TX_SHAPED_PPS_FRAMES, 8)),
        ("rx_shaped_bps_frames", (off::RX_SHAPED_BPS_FRAMES, 8)),
        ("rx_shaped_bps_bytes", (off::RX_SHAPED_BPS_BYTES, 8)),
        ("rx_shaped_pps_frames", (off::RX_SHAPED_PPS_FRAMES, 8)),
    ])
}

/// The named fields of the §2.2 tables of `docs/protocol.md` (rows `| offset | type |
/// `name` | ...`; reserved rows have no backquoted name), with the table they are in.
fn doc_fields() -> BTreeMap<String, (usize, usize)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocol.md"
    ))
    .expect("docs/protocol.md");
    let start = text.find("### 2.2 Layout").expect("§2.2 heading");
    let end = text.find("### 2.3").expect("§2.3 heading");
    let mut out = BTreeMap::new();
    for line in text[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let (Ok(offset), Some(name)) = (
            cells[1].parse::<usize>(),
            cells[3].strip_prefix('`').and_then(|n| n.strip_suffix('`')),
        ) else {
            continue;
        };
        let size = match cells[2] {
            "u16" => 2,
            "u32" => 4,
            "u64" => 8,
            t => panic!("field {name}: type {t:?} in the table"),
        };
        assert!(
            out.insert(name.to_string(), (offset, size)).is_none(),
            "{name} twice in the tables"
        );
    }
    out
}

#[test]
fn every_field_has_the_same_offset_and_size_in_c_the_docs_and_rust() {
    let cf: Vec<Field> = c::fields();
    let rust = rust_fields();
    let docs = doc_fields();
    assert_eq!(cf.len(), rust.len(), "C and Rust name the same fields");
    assert_eq!(docs.len(), rust.len(), "the docs' tables name every field");
    for f in &cf {
        let r = rust
            .get(f.name)
            .unwrap_or_else(|| panic!("{}: not in Rust", f.name));
        let d = docs
            .get(f.name)
            .unwrap_or_else(|| panic!("{}: not in the docs", f.name));
        assert_eq!((f.offset, f.size), *r, "{}: C vs Rust", f.name);
        assert_eq!((f.offset, f.size), *d, "{}: C vs docs/protocol.md", f.name);
    }
    // Areas: sizes, place in the page, magic.
    assert_eq!(c::sizes(), (CREDIT_AREA_BYTES, CREDIT_AREA_BYTES_V2));
    assert_eq!(
        c::area_offset_and_magic(),
        (CREDIT_AREA_OFFSET, CREDIT_MAGIC)
    );
}

#[test]
fn version_1_is_an_unchanged_prefix_of_version_2() {
    // Every version-1 field ends within the first 128 bytes, and every version-2 field
    // starts after them: a version-1 peer never reads or writes a version-2 field.
    let v1_names = [
        "magic",
        "version",
        "area_bytes",
        "seq",
        "flags",
        "bytes_per_sec",
        "bytes_burst",
        "packets_per_sec",
        "packets_burst",
        "period_us",
        "front_version",
        "front_seq",
        "applied_generation",
        "tx_packets",
        "tx_bytes",
        "dropped_packets",
        "dropped_bytes",
        "held",
    ];
    // The version-1 offsets, as published by the version-1 protocol (frozen).
    let frozen = [
        0, 4, 6, 8, 12, 16, 24, 32, 40, 48, 64, 68, 72, 80, 88, 96, 104, 112,
    ];
    for f in c::fields() {
        match v1_names.iter().position(|n| *n == f.name) {
            Some(i) => {
                assert_eq!(f.offset, frozen[i], "{} moved", f.name);
                assert!(f.offset + f.size <= CREDIT_AREA_BYTES, "{}", f.name);
            }
            None => assert!(f.offset >= CREDIT_AREA_BYTES, "{} inside v1", f.name),
        }
    }
}

fn page_bytes(page: &SharedPage) -> [u8; 4096] {
    let mut b = [0u8; 4096];
    page.mem().copy_to(&mut b);
    b
}

fn cred(bps: u64, bb: u64, pps: u64, pb: u64, period: u32) -> Credits {
    Credits {
        bytes: Limit::rate(bps, bb),
        packets: Limit::rate(pps, pb),
        period_us: period,
    }
}

#[test]
fn what_the_rust_peers_write_reads_the_same_through_the_c_structs() {
    let page = SharedPage::new();
    let area = CreditArea::in_tx_page_version(page.mem(), 2).unwrap();
    let mut p = CreditPublisher::new(area);
    // Distinct values that use both words of every u64.
    let tx = cred(
        0x1_0000_0011,
        0x2_0000_0012,
        0x3_0000_0013,
        0x4_0000_0014,
        20_000,
    );
    let rx = cred(
        0x5_0000_0015,
        0x6_0000_0016,
        0x7_0000_0017,
        0x8_0000_0018,
        20_000,
    );
    p.publish_both(&tx, &rx);
    p.publish_both(&tx, &rx); // generation 2: seq 4
    let back = BackCounters {
        tx_shaped_bps_frames: 0x9_0000_0021,
        tx_shaped_bps_bytes: 0xA_0000_0022,
        tx_shaped_pps_frames: 0xB_0000_0023,
        rx_shaped_bps_frames: 0xC_0000_0024,
        rx_shaped_bps_bytes: 0xD_0000_0025,
        rx_shaped_pps_frames: 0xE_0000_0026,
    };
    let mut back_seq = 0;
    p.publish_counters(&mut back_seq, &back);
    let mut r = CreditReader::new(area);
    let front = FrontCounters {
        front_version: 2,
        applied_generation: 2,
        tx_packets: 0x10_0000_0031,
        tx_bytes: 0x11_0000_0032,
        dropped_packets: 0x12_0000_0033,
        dropped_bytes: 0x13_0000_0034,
        held: 0x14_0000_0035,
    };
    r.publish_counters(&front);
    let got = c::read_v2(&page_bytes(&page));
    let names: Vec<&str> = c::fields().iter().map(|f| f.name).collect();
    let want: BTreeMap<&str, u64> = BTreeMap::from([
        ("magic", CREDIT_MAGIC as u64),
        ("version", 2),
        ("area_bytes", 256),
        ("seq", 4),
        ("flags", 0),
        ("bytes_per_sec", 0x1_0000_0011),
        ("bytes_burst", 0x2_0000_0012),
        ("packets_per_sec", 0x3_0000_0013),
        ("packets_burst", 0x4_0000_0014),
        ("period_us", 20_000),
        ("front_version", 2),
        ("front_seq", 2),
        ("applied_generation", 2),
        ("tx_packets", front.tx_packets),
        ("tx_bytes", front.tx_bytes),
        ("dropped_packets", front.dropped_packets),
        ("dropped_bytes", front.dropped_bytes),
        ("held", front.held),
        ("rx_bytes_per_sec", 0x5_0000_0015),
        ("rx_bytes_burst", 0x6_0000_0016),
        ("rx_packets_per_sec", 0x7_0000_0017),
        ("rx_packets_burst", 0x8_0000_0018),
        ("back_seq", 2),
        ("tx_shaped_bps_frames", back.tx_shaped_bps_frames),
        ("tx_shaped_bps_bytes", back.tx_shaped_bps_bytes),
        ("tx_shaped_pps_frames", back.tx_shaped_pps_frames),
        ("rx_shaped_bps_frames", back.rx_shaped_bps_frames),
        ("rx_shaped_bps_bytes", back.rx_shaped_bps_bytes),
        ("rx_shaped_pps_frames", back.rx_shaped_pps_frames),
    ]);
    assert_eq!(want.len(), names.len());
    for (name, v) in names.iter().zip(&got) {
        assert_eq!(*v, want[name], "{name} read through C");
    }
    // And the other way: a C-side write of the RX budget is what the Rust reader sees
    // (a byte-level write at the C offsets).
    let o = CREDIT_AREA_OFFSET
        + c::fields()
            .iter()
            .find(|f| f.name == "rx_packets_per_sec")
            .unwrap()
            .offset;
    page.mem().store(o, 77);
    page.mem().store(o + 4, 0);
    let s = r.snapshot().unwrap();
    assert_eq!(s.rx.unwrap().packets, Limit::rate(77, 0x8_0000_0018));
}

#[test]
fn a_version_1_publisher_fills_exactly_the_c_v1_struct() {
    let page = SharedPage::new();
    let mut p = CreditPublisher::new(CreditArea::in_tx_page(page.mem()).unwrap());
    p.publish_both(&cred(1000, 2000, 30, 40, 5), &cred(9, 9, 9, 9, 9));
    let mut seq = 0;
    p.publish_counters(
        &mut seq,
        &BackCounters {
            rx_shaped_bps_frames: 5,
            ..Default::default()
        },
    );
    let got = c::read_v2(&page_bytes(&page));
    let by_name: BTreeMap<&str, u64> = c::fields().iter().map(|f| f.name).zip(got).collect();
    assert_eq!(by_name["version"], 1);
    assert_eq!(by_name["area_bytes"], 128);
    assert_eq!(by_name["bytes_per_sec"], 1000);
    assert_eq!(by_name["packets_burst"], 40);
    for (name, v) in &by_name {
        let f = c::fields().into_iter().find(|f| f.name == *name).unwrap();
        if f.offset >= CREDIT_AREA_BYTES {
            assert_eq!(*v, 0, "{name}: a version-1 publisher wrote past byte 127");
        }
    }
}
