//! A multi-queue TAP (`IFF_MULTI_QUEUE`) against the real kernel: needs root and
//! /dev/net/tun (elsewhere: `SKIP <test>: <reason>`).
//!
//! `queues_share_one_interface_and_the_kernel_spreads_flows`: two queues of one TAP are
//! two fds on one interface; 64 UDP flows the kernel sends out of it arrive, every one
//! exactly once, spread over both queues; a frame written into the second queue is
//! received by the interface.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netport::netns::{self, skip_unless_root_with_tun, NetNs};
use netport::tap::{TapConfig, TapOffload};
use netport::{FrameMeta, Port, TapPort};

const FLOWS: u16 = 64;

/// The destination port of an IPv4 UDP frame to 10.77.0.2, if it is one.
fn udp_to_peer(f: &[u8]) -> Option<u16> {
    let ipv4_udp = f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 17;
    (ipv4_udp && f[30..34] == [10, 77, 0, 2]).then(|| u16::from_be_bytes([f[36], f[37]]))
}

#[test]
fn queues_share_one_interface_and_the_kernel_spreads_flows() {
    if skip_unless_root_with_tun("queues_share_one_interface_and_the_kernel_spreads_flows") {
        return;
    }
    let ns = NetNs::new("tmq").expect("netns");
    let mut cfg = TapConfig::new(&netns::unique_name("tmq"));
    cfg.offload = TapOffload {
        csum: false,
        tso: false,
    };
    cfg.up = false;
    let mut ports = TapPort::open_queues(&cfg, 2).expect("open a 2-queue TAP");
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0].rx_fd().as_raw_fd(), ports[1].rx_fd().as_raw_fd());
    assert_eq!(ports[0].name(), ports[1].name(), "one interface");
    assert_eq!(ports[0].ifindex(), ports[1].ifindex(), "one interface");
    let name = ports[0].name().to_owned();
    let flags =
        std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags")).expect("tun_flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_ne!(flags & 0x0100, 0, "IFF_MULTI_QUEUE set: {flags:#x}");
    ns.move_link(&name).expect("move the TAP");
    ns.addr_up(&name, "10.77.0.1/24").expect("address");
    ns.ip(&[
        "neigh",
        "add",
        "10.77.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        &name,
    ])
    .expect("static neighbour");

    // 64 flows out of the interface, one datagram each.
    ns.spawn_thread(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        for p in 0..FLOWS {
            s.send_to(
                b"mq",
                SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 2), 1000 + p),
            )?;
        }
        Ok(())
    })
    .expect("thread")
    .join()
    .expect("join")
    .expect("send");

    let mut seen = vec![0u32; FLOWS as usize];
    let mut per_queue = [0u32; 2];
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while per_queue.iter().sum::<u32>() < FLOWS as u32 && Instant::now() < deadline {
        for (q, port) in ports.iter_mut().enumerate() {
            while let Some((len, _)) = port.recv(&mut buf).expect("recv") {
                if let Some(dport) = udp_to_peer(&buf[..len]) {
                    seen[usize::from(dport - 1000)] += 1;
                    per_queue[q] += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "every flow exactly once: {seen:?}"
    );
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "the kernel spread the flows over both queues: {per_queue:?}"
    );

    // Into the interface through queue 1: an ICMP echo request the stack answers
    // (the answer leaves through either queue).
    let mut ping = vec![0u8; 42];
    ping[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    ping[12..14].copy_from_slice(&[8, 0]);
    let ip = [
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1,
    ];
    ping[14..34].copy_from_slice(&ip);
    let sum = !netport::csum::fold(netport::csum::ones_sum(&ping[14..34], 0));
    ping[24..26].copy_from_slice(&sum.to_be_bytes());
    ping[34..42].copy_from_slice(&[8, 0, 0xf7, 0xfe, 0, 1, 0, 0]);
    // Addressed to the interface's MAC (its sysfs entry is in the namespace now).
    let out = ns
        .exec("cat", &[&format!("/sys/class/net/{name}/address")])
        .expect("mac");
    let mac_s = String::from_utf8(out.stdout).unwrap();
    for (i, b) in mac_s.trim().split(':').enumerate() {
        ping[i] = u8::from_str_radix(b, 16).unwrap();
    }
    ports[1].send(&ping, &FrameMeta::default()).expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut replied = false;
    while !replied && Instant::now() < deadline {
        for port in ports.iter_mut() {
            while let Some((len, _)) = port.recv(&mut buf).expect("recv") {
                let f = &buf[..len];
                replied |= f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        replied,
        "the interface received the frame written into queue 1"
    );
}
