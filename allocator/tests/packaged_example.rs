//! The example SLA file the Debian package xen-dba-netback ships
//! (`packaging/xen-dba-netback/sla.toml`, installed as
//! `/usr/share/doc/xen-dba-netback/examples/sla.toml`) is a valid SLA file that says what
//! its comments say.

use allocator::sla_file::parse_sla_file;
use allocator::{DomId, Priority, VifId};

const PACKAGED: &str = include_str!("../../packaging/xen-dba-netback/sla.toml");

#[test]
fn the_packaged_example_sla_file_parses_as_documented() {
    let slas = parse_sla_file(PACKAGED).expect("the packaged example SLA file parses");
    assert_eq!(slas.link().capacity_bps(), 1_000_000_000);
    assert_eq!(slas.link().buffer_bytes(), Some(1_500_000));
    assert_eq!(slas.link().buffer_packets(), Some(1000));
    let vif = slas
        .vif_own(VifId::new(DomId(5), 0))
        .expect("vif 5.0 has its own SLA");
    assert_eq!(vif.min_bps(), 100_000_000);
    assert_eq!(vif.max_bps(), Some(300_000_000));
    assert_eq!(vif.priority(), Priority::parse("1").unwrap());
    assert_eq!(slas.default_vif().priority(), Priority::parse("7").unwrap());
    assert_eq!(slas.default_vif().min_bps(), 0);
    assert!(slas.vif_own(VifId::new(DomId(6), 0)).is_none());
    let vm = slas.vm_own(DomId(5)).expect("VM 5 has its own SLA");
    assert_eq!(vm.pps(), Some(20_000));
}
