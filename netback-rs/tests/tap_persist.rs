//! A vif's TAP outlives a netback restart (needs root and `/dev/net/tun`; skips with a
//! printed reason otherwise): the operator (or `vif-bridge`) puts the TAP in a bridge
//! and gives it an MTU and an address; netback stops and a new one starts under the
//! guest, which stays connected; the interface is the same one (ifindex), still in the
//! bridge with its MTU and address, and traffic flows through the bridge both ways.
//! When the toolstack removes the vif, the interface goes away. The first netback is
//! stopped as on SIGTERM (a thread, dropped) or killed with SIGKILL (a process).

use std::time::{Duration, Instant};

use netback::tapvif::TapFactory;
use netback::toolstack::{destroy_vif, VifSpec};
use netback::{Netback, NetbackConfig};
use netfront::NetfrontConfig;
use netport::netns::{skip_unless_root_with_tun, NetNs};
use netport::{FrameMeta, MemPort, Port};
use testbed::*;
use xen_ids::DomId;
use xen_local::LocalHost;

const TAP: &str = "vif1.0";
const GUEST_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];
const BRIDGE_IP: [u8; 4] = [10, 9, 0, 1];
const GUEST_IP: [u8; 4] = [10, 9, 0, 2];

fn backend(ns: &NetNs, host: &LocalHost) -> BackendThread {
    BackendThread::spawn(
        Spawner::Netns(ns),
        host.domain(DomId(0)).unwrap(),
        NetbackConfig::default(),
        TapFactory::default(),
        BackendOptions::default(),
    )
    .unwrap()
}

/// `ip -o link show TAP` in `ns` (`None`: no such interface).
fn link(ns: &NetNs) -> Option<String> {
    // `exec` fails when `ip` does ("Device ... does not exist").
    let out = ns.exec("ip", &["-o", "link", "show", TAP]).ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The interface's index, from `ip -o link` ("7: vif1.0: <...").
fn ifindex(l: &str) -> u32 {
    l.split(':').next().unwrap().trim().parse().unwrap()
}

/// An ARP request from the guest for the bridge's address.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&BRIDGE_IP);
    f.resize(60, 0);
    f
}

/// Asks for the bridge's MAC from the guest until the bridge answers through the TAP
/// (at most 10 s).
fn arp_through_bridge(app: &mut MemPort) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; app.max_frame()];
    while Instant::now() < deadline {
        app.send(&arp_request(), &FrameMeta::default()).unwrap();
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match app.recv(&mut buf).unwrap() {
                Some((n, _)) => {
                    let f = &buf[..n];
                    let reply = n >= 42
                        && f[12..14] == [0x08, 0x06]
                        && f[20..22] == [0, 2]
                        && f[28..32] == BRIDGE_IP
                        && f[0..6] == GUEST_MAC;
                    if reply {
                        return true;
                    }
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
    false
}

/// Entry point of the child process of
/// [`the_tap_outlives_a_netback_killed_with_sigkill`]: netback for dom0 with TAPs, in the
/// network namespace it was started in.
#[test]
#[ignore = "child process of the_tap_outlives_a_netback_killed_with_sigkill"]
fn child_netback() {
    let platform = child_platform("child_netback")
        .expect("the child of the_tap_outlives_a_netback_killed_with_sigkill");
    let mut nb = Netback::new(
        platform,
        NetbackConfig::default(),
        Box::new(TapFactory::default()),
        hypervisor::clock::system(),
    )
    .expect("netback");
    loop {
        nb.run_once(Duration::from_millis(5)).expect("netback");
    }
}

/// The first netback: a thread (stopped as on SIGTERM) or a process (SIGKILL).
enum First {
    Thread(BackendThread),
    Process(TestChild),
}

impl First {
    fn start(ns: &NetNs, host: &LocalHost, process: bool) -> First {
        if !process {
            return First::Thread(backend(ns, host));
        }
        let spec = ChildSpec {
            test: "child_netback",
            netns: Some(ns),
            ..ChildSpec::default()
        };
        First::Process(TestChild::spawn(host, DomId(0), &spec).expect("spawn the netback process"))
    }

    fn stop(self) {
        match self {
            First::Thread(mut nb) => {
                nb.stop().unwrap();
            }
            // SIGKILL, and reaped.
            First::Process(child) => drop(child),
        }
    }
}

/// Waits until the backend says `Connected` (4).
fn wait_backend_connected(host: &LocalHost) {
    use xenstore::{Xenstore, XsTx};
    let dom0 = host.domain(DomId(0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = dom0
            .xenstore
            .try_read(XsTx::NONE, "/local/domain/0/backend/vif/1/0/state")
            .unwrap();
        if s.as_deref() == Some(b"4".as_slice()) {
            return;
        }
        assert!(Instant::now() < deadline, "the backend never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn restart_keeps_the_tap(process: bool) {
    let host = LocalHost::new();
    let id = add_vif(&host, DomId(1), 0).unwrap();
    let ns = NetNs::new("tpb").unwrap();
    ns.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    ns.addr_up("br0", "10.9.0.1/24").unwrap();

    let first = First::start(&ns, &host, process);
    let mut guest = Guest::start(&host, DomId(1), NetfrontConfig::new(0)).unwrap();
    wait_backend_connected(&host);
    wait_link(&ns, TAP, Duration::from_secs(10)).unwrap();
    // What vif-bridge and the operator do to the interface.
    ns.ip(&["link", "set", TAP, "master", "br0"]).unwrap();
    ns.ip(&["link", "set", TAP, "mtu", "1400"]).unwrap();
    ns.ip(&["addr", "add", "192.0.2.7/32", "dev", TAP]).unwrap();
    let before = link(&ns).unwrap();
    assert!(
        arp_through_bridge(&mut guest.app),
        "no traffic before the restart"
    );

    first.stop();
    // Nothing behind it meanwhile: the kernel says so (the bridge forwards nothing to it)
    // once the last descriptor of the old netback is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let down = loop {
        let down = link(&ns).expect("the TAP stays while no netback runs");
        if down.contains("NO-CARRIER") || Instant::now() > deadline {
            break down;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ifindex(&down), ifindex(&before));
    assert!(down.contains("NO-CARRIER"), "{down}");

    let mut nb = backend(&ns, &host);
    nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
    let after = link(&ns).unwrap();
    assert_eq!(ifindex(&after), ifindex(&before), "{before}\n{after}");
    assert!(after.contains(" master br0 "), "{after}");
    assert!(after.contains(" mtu 1400 "), "{after}");
    assert!(after.contains("link/ether fe:ff:ff:ff:ff:ff"), "{after}");
    assert!(!after.contains("NO-CARRIER"), "{after}");
    let addr = ns.exec("ip", &["-o", "addr", "show", "dev", TAP]).unwrap();
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("192.0.2.7/32"),
        "the address is gone"
    );
    assert!(
        arp_through_bridge(&mut guest.app),
        "no traffic after the restart"
    );

    // The toolstack removes the vif (network-detach, destroy): the interface goes.
    guest.stop().unwrap();
    let dom0 = host.domain(DomId(0)).unwrap();
    destroy_vif(&dom0.xenstore, &VifSpec::new(DomId(0), DomId(1), 0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while link(&ns).is_some() {
        assert!(Instant::now() < deadline, "the TAP outlived its vif");
        std::thread::sleep(Duration::from_millis(20));
    }
    nb.stop().unwrap();
}

#[test]
fn the_tap_keeps_bridge_mtu_and_address_across_a_restart_and_goes_with_the_vif() {
    if skip_unless_root_with_tun(
        "the_tap_keeps_bridge_mtu_and_address_across_a_restart_and_goes_with_the_vif",
    ) {
        return;
    }
    restart_keeps_the_tap(false);
}

#[test]
fn the_tap_outlives_a_netback_killed_with_sigkill() {
    if skip_unless_root_with_tun("the_tap_outlives_a_netback_killed_with_sigkill") {
        return;
    }
    restart_keeps_the_tap(true);
}
