//! The SLA file parser (`allocator::sla_file::parse_sla_file`) over any text, and one
//! allocation round over what it accepted.
//!
//! Checked: no panic; an accepted file only holds valid SLAs (min ≤ max ≤ `MAX_BPS`);
//! the allocator gives no vif more than its maximum or the link, whatever the SLAs.
#![no_main]

use std::time::Duration;

use allocator::rate::MAX_BPS;
use allocator::sla_file::parse_sla_file;
use allocator::{allocate, VifDemand, VifId, UNBOUNDED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = match parse_sla_file(text) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let link = set.link().capacity_bps();
    let mut demands: Vec<VifDemand> = set
        .vifs()
        .take(64)
        .enumerate()
        .map(|(i, (vif, _))| VifDemand {
            vif,
            created: i as u64,
            demand_bps: UNBOUNDED,
            demand_pps: UNBOUNDED,
        })
        .collect();
    // A vif without its own SLA: the defaults apply.
    demands.push(VifDemand {
        vif: VifId::new(xen_ids::DomId::MAX_GUEST, u32::MAX),
        created: u64::MAX,
        demand_bps: UNBOUNDED,
        demand_pps: UNBOUNDED,
    });
    for (_, sla) in set.vifs() {
        assert!(sla.min_bps() <= MAX_BPS);
        if let Some(max) = sla.max_bps() {
            assert!(sla.min_bps() <= max && max <= MAX_BPS);
        }
    }
    let a = allocate(&set, &demands, Duration::from_millis(100));
    assert_eq!(a.vifs.len(), demands.len());
    for v in &a.vifs {
        let sla = set.vif(v.vif);
        assert!(
            v.budget.bps <= sla.max_bps_on(set.link()),
            "{}: budget {} above its maximum {}",
            v.vif,
            v.budget.bps,
            sla.max_bps_on(set.link())
        );
        assert!(v.budget.bps <= link);
    }
});
