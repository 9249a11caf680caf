//! What a guest's event channels can cost the local hypervisor: each port is two
//! eventfds there, so a guest holds at most `MAX_PORTS_PER_GUEST` at once (Xen's default
//! for a guest); past it `alloc_unbound` is refused with a reason, another guest is not
//! affected, freeing one makes room again, and the driver domain is not capped.

use hypervisor::evtchn::EventChannels;
use xen_ids::DomId;
use xen_local::{open_fd_count, Domain, LocalHypervisor, MAX_PORTS_PER_GUEST};

#[test]
fn a_guest_holds_a_bounded_number_of_event_channels() {
    let hv = LocalHypervisor::new();
    let guest = Domain::from_fd(hv.connect(DomId(5)).unwrap()).unwrap();
    let ev = guest.event_channels().unwrap();
    let fds0 = open_fd_count().unwrap();
    let mut ports = Vec::new();
    let refused = loop {
        match ev.alloc_unbound(DomId(0)) {
            Ok(p) => ports.push(p),
            Err(e) => break e,
        }
        assert!(ports.len() <= MAX_PORTS_PER_GUEST, "no port cap");
    };
    assert_eq!(ports.len(), MAX_PORTS_PER_GUEST);
    assert!(
        refused.to_string().contains("too many event channels"),
        "{refused}"
    );
    let grew = open_fd_count().unwrap() - fds0;
    eprintln!(
        "{} ports: {grew} more descriptors in this process",
        ports.len()
    );
    // Another guest is not affected; dom0 is not capped.
    let other = Domain::from_fd(hv.connect(DomId(6)).unwrap()).unwrap();
    let oev = other.event_channels().unwrap();
    let p = oev.alloc_unbound(DomId(0)).unwrap();
    oev.unbind(p).unwrap();
    let dom0 = Domain::from_fd(hv.connect(DomId(0)).unwrap()).unwrap();
    let dev = dom0.event_channels().unwrap();
    let dom0_ports: Vec<_> = (0..MAX_PORTS_PER_GUEST + 10)
        .map(|_| dev.alloc_unbound(DomId(5)).unwrap())
        .collect();
    for p in dom0_ports {
        dev.unbind(p).unwrap();
    }
    // Freeing one makes room for one.
    ev.unbind(ports.pop().unwrap()).unwrap();
    ports.push(ev.alloc_unbound(DomId(0)).unwrap());
    assert!(ev.alloc_unbound(DomId(0)).is_err());
    for p in ports {
        ev.unbind(p).unwrap();
    }
}
