//! The negotiation matrix with real kernel stacks on both ends: for each subset of
//! optional features our netfront offers (none; SG only; SG+csum; +GSO v4; +GSO v6;
//! +ipv6-csum), TCP over IPv4 and IPv6 in both directions between a guest namespace
//! (netfront's TAP) and a driver-domain namespace (netback's TAP). The receiving
//! kernel verifies every checksum it was not told is valid, so a frame with a wrong
//! checksum is dropped there and the transfer fails or stalls; each transfer's SHA-256
//! is compared end to end. netback's TAP is set to hand over only what the frontend
//! agreed to, so nothing is dropped for an unagreed offload.
//! Needs root and /dev/net/tun: skips with the reason elsewhere.

use std::io::{BufRead, Read};
use std::time::Duration;

use netback::{NetbackConfig, VifId};
use netfront::NetfrontConfig;
use netport::negotiate::Offer;
use netport::netns::{skip_unless_root_with_tun, NetNs};
use netport::{Port, TapPort};
use testbed::{
    add_vif, pump_until, tap_config, wait_link, BackendOptions, BackendThread, GuestOptions,
    GuestThread, Spawner,
};
use xen_ids::DomId;
use xen_local::LocalHost;

const SUBSETS: [(&str, Offer); 6] = [
    ("none", Offer::NOTHING),
    (
        "SG only",
        Offer {
            sg: true,
            ..Offer::NOTHING
        },
    ),
    (
        "SG+csum",
        Offer {
            sg: true,
            ipv4_csum: true,
            ..Offer::NOTHING
        },
    ),
    (
        "+GSO v4",
        Offer {
            sg: true,
            ipv4_csum: true,
            gso_tcpv4: true,
            ..Offer::NOTHING
        },
    ),
    (
        "+GSO v6",
        Offer {
            sg: true,
            ipv4_csum: true,
            gso_tcpv4: true,
            gso_tcpv6: true,
            ipv6_csum: false,
        },
    ),
    ("+ipv6-csum", Offer::ALL),
];

/// `len` bytes over TCP from `cli` to `ip`:`port` in `srv`; panics unless the server
/// received exactly what was sent (length and SHA-256).
fn transfer(srv: &NetNs, cli: &NetNs, ip: &str, port: u16, len: usize, what: &str) {
    let family = if ip.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let mut server = srv
        .spawn(
            "python3",
            &[
                "-c",
                &format!(
                    "import socket,hashlib\n\
                     s=socket.socket(socket.{family}); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                     s.bind(('{ip}',{port})); s.listen(1); print('listening', flush=True)\n\
                     s.settimeout(30); c,_=s.accept(); c.settimeout(30)\n\
                     h=hashlib.sha256(); n=0\n\
                     while True:\n  d=c.recv(65536)\n  if not d: break\n  h.update(d); n+=len(d)\n\
                     print(n, h.hexdigest())"
                ),
            ],
        )
        .unwrap();
    // The client connects once the server listens (however slow the machine).
    let mut out = std::io::BufReader::new(server.stdout.take().expect("server stdout"));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening", "{what}: the server did not start");
    let client = cli
        .command(
            "python3",
            &[
                "-c",
                &format!(
                    "import socket,hashlib,random\n\
                     r=random.Random({port}); data=r.randbytes({len})\n\
                     s=socket.create_connection(('{ip}',{port}), timeout=30); s.sendall(data); s.close()\n\
                     print(len(data), hashlib.sha256(data).hexdigest())"
                ),
            ],
        )
        .output()
        .unwrap();
    let mut got = String::new();
    out.read_to_string(&mut got).unwrap();
    let server = server.wait_with_output().unwrap();
    assert!(
        client.status.success(),
        "{what}: client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let (sent, got) = (String::from_utf8_lossy(&client.stdout), got);
    assert_eq!(
        sent.trim(),
        got.trim(),
        "{what}: TCP transfer to {ip} corrupted or truncated ({})",
        String::from_utf8_lossy(&server.stderr)
    );
    assert!(sent.starts_with(&format!("{len} ")), "{what}: {sent}");
}

#[test]
fn tcp_over_ipv4_and_ipv6_for_each_offered_subset() {
    if skip_unless_root_with_tun("tcp_over_ipv4_and_ipv6_for_each_offered_subset") {
        return;
    }
    for (k, (name, offer)) in SUBSETS.iter().enumerate() {
        let host = LocalHost::new();
        let id = add_vif(&host, DomId(1), 0).expect("vif");
        let back = NetNs::new("dbnb").unwrap();
        let guest = NetNs::new("dbng").unwrap();
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
        let mut cfg = NetfrontConfig::new(0);
        cfg.offer = *offer;
        let g = host.domain(DomId(1)).unwrap();
        let nf = GuestThread::spawn(
            Spawner::Netns(&guest),
            g,
            cfg,
            GuestOptions::default(),
            |nf, stop| {
                let mut tap = TapPort::open(&tap_config("eth0"))?;
                if let Some(a) = nf.tx_allowed() {
                    tap.set_offloads(&a)?;
                }
                pump_until(nf, &mut tap, stop)
            },
        )
        .expect("netfront");
        wait_link(&back, "vif1.0", Duration::from_secs(10)).unwrap();
        wait_link(&guest, "eth0", Duration::from_secs(10)).unwrap();
        nb.wait_connected(&[id], Duration::from_secs(10)).unwrap();
        back.addr_up("vif1.0", "10.78.0.1/24").unwrap();
        guest.addr_up("eth0", "10.78.0.2/24").unwrap();
        back.ip(&["addr", "add", "fd00:78::1/64", "dev", "vif1.0", "nodad"])
            .unwrap();
        guest
            .ip(&["addr", "add", "fd00:78::2/64", "dev", "eth0", "nodad"])
            .unwrap();
        let base = 5100 + 10 * k as u16;
        let len = 2 << 20;
        transfer(&guest, &back, "10.78.0.2", base, len, name);
        transfer(&back, &guest, "10.78.0.1", base + 1, len, name);
        transfer(&guest, &back, "fd00:78::2", base + 2, len, name);
        transfer(&back, &guest, "fd00:78::1", base + 3, len, name);

        let c = nb.vif_status(id).unwrap().counters;
        nb.stop().expect("netback");
        let exit = nf.finish().expect("netfront");
        exit.value.expect("netfront pump");
        let stats = exit.netfront.stats;
        assert!(stats.rx_bytes > 2 * len as u64, "{name}: {stats:?}");
        // netback's TAP handed over only what the frontend agreed to take.
        assert_eq!(c.rx_dropped_offload, 0, "{name}: {c:?}");
        if !offer.gso_tcpv4 && !offer.gso_tcpv6 {
            assert!(
                stats.rx_bytes / stats.rx_packets <= 1514,
                "{name}: GSO frames to a frontend that offered none: {stats:?}"
            );
        }
        if offer.gso_tcpv4 && offer.sg && offer.ipv4_csum {
            assert!(
                stats.rx_bytes / stats.rx_packets > 1514,
                "{name}: no GSO although agreed: {stats:?}"
            );
        }
    }
}
