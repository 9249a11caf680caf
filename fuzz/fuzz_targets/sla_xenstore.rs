//! The SLA keys read from a vif's backend directory in xenstore (`dba-priority`,
//! `dba-min-bps`, `dba-max-bps`, `dba-vm-pps`): `parse_vif_keys` and the last-good
//! overlay (`XenstoreSlas`), over any values.
//!
//! Input: a sequence of updates, each `vif selector (u8)` then four values separated by
//! NUL bytes (a value of exactly `-` stands for an absent key), updates separated by
//! 0xFF.
//!
//! Checked: no panic; a refused update leaves the vif's previous SLA in force; the
//! overlay only holds valid SLAs.
#![no_main]

use allocator::rate::MAX_BPS;
use allocator::xenstore::{VifKeyValues, XenstoreSlas};
use allocator::{Link, SlaSet, VifId, VifSla};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = SlaSet::new(Link::new(1_000_000_000).expect("1 Gb/s link"));
    let mut slas = XenstoreSlas::new();
    for update in data.split(|b| *b == 0xFF).take(64) {
        let Some((&sel, rest)) = update.split_first() else {
            continue;
        };
        let vif = VifId::new(xen_ids::DomId(1 + (sel % 4) as u16), (sel / 4 % 2) as u32);
        let mut fields = rest.split(|b| *b == 0);
        let mut next = || -> Option<&str> {
            let f = fields.next()?;
            if f == b"-" {
                return None;
            }
            std::str::from_utf8(f).ok()
        };
        let values = VifKeyValues {
            priority: next(),
            min_bps: next(),
            max_bps: next(),
            vm_pps: next(),
            rx_min_bps: next(),
            rx_max_bps: next(),
            rx_vm_pps: next(),
        };
        let before = slas.vif(vif).copied();
        match slas.update_vif(vif, &values, VifSla::BEST_EFFORT) {
            Ok(()) => {
                if values.is_empty() {
                    assert_eq!(slas.vif(vif).and_then(|k| k.sla), None);
                }
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(
                    slas.vif(vif).copied(),
                    before,
                    "a refused update changed the SLA"
                );
            }
        }
    }
    let (set, _conflicts) = slas.overlay(&base);
    for (_, sla) in set.vifs() {
        assert!(sla.min_bps() <= MAX_BPS);
        if let Some(max) = sla.max_bps() {
            assert!(sla.min_bps() <= max && max <= MAX_BPS);
        }
    }
});
