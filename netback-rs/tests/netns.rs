//! Real kernel stacks on both ends: a guest network namespace whose TAP is served by
//! netfront, a driver-domain namespace whose TAP is served by netback, the pair in
//! between on the local platform. `ping` both ways and a TCP transfer with a checksum
//! (the guest's TCP uses checksum offload, so `csum_blank` must survive the trip).
//! Needs root and /dev/net/tun: runs in CI, skips with the reason elsewhere.

use std::time::Duration;

use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use netport::netns::{skip_unless_root_with_tun, NetNs};
use netport::{Port, TapPort};
use testbed::{
    add_vif, pump_until, tap_config, wait_link, BackendOptions, BackendThread, GuestOptions,
    GuestThread, Spawner,
};
use xen_ids::DomId;
use xen_local::LocalHost;

#[test]
fn ping_and_tcp_through_the_pair_between_namespaces() {
    if skip_unless_root_with_tun("ping_and_tcp_through_the_pair_between_namespaces") {
        return;
    }
    let host = LocalHost::new();
    add_vif(&host, DomId(1), 0).expect("vif");
    let back = NetNs::new("dbab").unwrap();
    let guest = NetNs::new("dbag").unwrap();

    let factory = |id: VifId, _mac: [u8; 6]| -> std::io::Result<Box<dyn Port>> {
        let name = format!("vif{}.{}", id.domid.0, id.devid);
        Ok(Box::new(TapPort::open(&tap_config(&name))?))
    };
    let opts = BackendOptions {
        poll: Duration::from_millis(20),
        ..BackendOptions::default()
    };
    let dom0 = host.domain(DomId(0)).unwrap();
    let mut nb = BackendThread::spawn(
        Spawner::Netns(&back),
        dom0,
        NetbackConfig::default(),
        factory,
        opts,
    )
    .expect("netback");
    // As the netfront binary does: GSO both ways when the backend offers it.
    let mut cfg = NetfrontConfig::new(0);
    cfg.offer.gso_tcpv4 = true;
    cfg.offer.gso_tcpv6 = true;
    let g = host.domain(DomId(1)).unwrap();
    let opts = GuestOptions::default();
    let nf = GuestThread::spawn(Spawner::Netns(&guest), g, cfg, opts, |nf, stop| {
        let mut tc = tap_config("eth0");
        tc.offload.tso = nf.backend_gso();
        pump_until(nf, &mut TapPort::open(&tc)?, stop)
    })
    .expect("netfront");
    wait_link(&back, "vif1.0", Duration::from_secs(10)).unwrap();
    wait_link(&guest, "eth0", Duration::from_secs(10)).unwrap();
    back.addr_up("vif1.0", "10.77.0.1/24").unwrap();
    guest.addr_up("eth0", "10.77.0.2/24").unwrap();

    let ping = |ns: &NetNs, to: &str| {
        let out = ns
            .command("ping", &["-c", "3", "-i", "0.2", "-W", "3", to])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ping {to} from {} failed:\n{}{}",
            ns.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ping(&guest, "10.77.0.1");
    ping(&back, "10.77.0.2");

    // TCP: 8 MiB each way, checksummed on both ends (segmentation offload on the ring
    // in both directions: a GSO extra on TX and on RX).
    let transfer = |srv: &NetNs, cli: &NetNs, ip: &str, port: u16| {
        let server = srv
            .spawn(
                "python3",
                &[
                    "-c",
                    &format!(
                        "import socket,hashlib\n\
                         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                         s.bind(('{ip}',{port})); s.listen(1); c,_=s.accept(); h=hashlib.sha256(); n=0\n\
                         while True:\n  d=c.recv(65536)\n  if not d: break\n  h.update(d); n+=len(d)\n\
                         print(n, h.hexdigest())"
                    ),
                ],
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let client = cli
            .command(
                "python3",
                &[
                    "-c",
                    &format!(
                        "import socket,hashlib,random\n\
                         r=random.Random({port}); data=bytes(r.getrandbits(8) for _ in range(1<<20))*8\n\
                         s=socket.create_connection(('{ip}',{port}), timeout=30); s.sendall(data); s.close()\n\
                         print(len(data), hashlib.sha256(data).hexdigest())"
                    ),
                ],
            )
            .output()
            .unwrap();
        assert!(
            client.status.success(),
            "client: {}",
            String::from_utf8_lossy(&client.stderr)
        );
        let server = server.wait_with_output().unwrap();
        let (sent, got) = (
            String::from_utf8_lossy(&client.stdout),
            String::from_utf8_lossy(&server.stdout),
        );
        assert_eq!(
            sent.trim(),
            got.trim(),
            "TCP transfer to {ip} corrupted or truncated"
        );
        assert!(sent.starts_with("8388608 "));
    };
    transfer(&back, &guest, "10.77.0.1", 5001);
    transfer(&guest, &back, "10.77.0.2", 5002);

    nb.stop().expect("netback");
    let exit = nf.finish().expect("netfront");
    exit.value.expect("netfront pump");
    let stats = exit.netfront.stats;
    // Both transfers crossed the ring, and as GSO frames (average frame above the MTU).
    assert!(
        stats.tx_bytes > 8 << 20 && stats.rx_bytes > 8 << 20,
        "{stats:?}"
    );
    assert!(
        stats.tx_bytes / stats.tx_packets > 1514,
        "no GSO on TX: {stats:?}"
    );
    assert!(
        stats.rx_bytes / stats.rx_packets > 1514,
        "no GSO on RX: {stats:?}"
    );
}
