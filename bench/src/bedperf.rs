//! `bench bedperf`: the traffic tools of the Xen test bed's `bench` scenario
//! (`xen-build/scenarios/bench`), which has no iperf3: TCP goodput measured at the
//! receiver, 64-byte UDP frames sent as fast as the sender's stack takes them, and a UDP
//! counter. Plain `std::net`; each prints one line `bedperf <what> key=value ...` that
//! the scenario's shell script reads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Ethernet + IPv4 + UDP headers of a frame, bytes (`docs/protocol.md` §2.6 frame length:
/// destination MAC to end of payload).
pub const UDP_FRAME_OVERHEAD: usize = 14 + 20 + 8;

/// What one tool counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    /// Payload bytes.
    pub bytes: u64,
    /// Datagrams (UDP) or read/write calls (TCP).
    pub packets: u64,
    /// Send calls that failed (UDP: e.g. `ENOBUFS`), not counted in `packets`.
    pub errors: u64,
    /// Seconds the count covers.
    pub secs: f64,
}

impl Tally {
    /// Payload bits per second, Mb/s.
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }

    /// Datagrams per second.
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.secs.max(1e-9)
    }

    /// The line the scenario script parses.
    pub fn line(&self, what: &str) -> String {
        format!(
            "bedperf {what} bytes={} packets={} errors={} secs={:.3} mbps={:.2} pps={:.0}",
            self.bytes,
            self.packets,
            self.errors,
            self.secs,
            self.mbps(),
            self.pps()
        )
    }
}

/// Accepts one TCP connection on `port` (within `wait`) and reads it to its end; the
/// time runs from the first byte to the end of the stream, so the figure is the
/// receiver's goodput.
pub fn tcp_recv(port: u16, wait: Duration) -> io::Result<Tally> {
    let l = TcpListener::bind(("0.0.0.0", port))?;
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + wait;
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    };
    s.set_nonblocking(false)?;
    let mut buf = vec![0u8; 256 * 1024];
    let (mut bytes, mut reads, mut first) = (0u64, 0u64, None);
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        bytes += n as u64;
        reads += 1;
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(Tally {
        bytes,
        packets: reads,
        errors: 0,
        secs,
    })
}

/// Connects to `to` (retrying for up to `wait`), writes for `secs` seconds, closes its
/// sending side and waits for the receiver to close (so everything was read).
pub fn tcp_send(to: SocketAddr, secs: f64, wait: Duration) -> io::Result<Tally> {
    let deadline = Instant::now() + wait;
    let mut s = loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e),
        }
    };
    let buf = vec![0x5au8; 64 * 1024];
    let t0 = Instant::now();
    let (mut bytes, mut writes) = (0u64, 0u64);
    while t0.elapsed().as_secs_f64() < secs {
        s.write_all(&buf)?;
        bytes += buf.len() as u64;
        writes += 1;
    }
    s.shutdown(Shutdown::Write)?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest)? > 0 {}
    Ok(Tally {
        bytes,
        packets: writes,
        errors: 0,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// Sends UDP datagrams making `frame_bytes`-byte frames to `to` for `secs` seconds, as
/// fast as the local stack accepts them.
pub fn udp_send(to: SocketAddr, frame_bytes: usize, secs: f64) -> io::Result<Tally> {
    let payload = frame_bytes.checked_sub(UDP_FRAME_OVERHEAD).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {frame_bytes} bytes has no room for UDP/IPv4 headers"),
        )
    })?;
    let s = UdpSocket::bind(("0.0.0.0", 0))?;
    s.connect(to)?;
    let buf = vec![0xa5u8; payload];
    let t0 = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    // The clock is read once per 64 sends.
    'outer: loop {
        for _ in 0..64 {
            match s.send(&buf) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
        if t0.elapsed().as_secs_f64() >= secs {
            break 'outer;
        }
    }
    Ok(Tally {
        bytes: sent * payload as u64,
        packets: sent,
        errors,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// Counts the UDP datagrams arriving on `port`: from the first one until none came for
/// `idle`, or `max` after the first; gives up if none came within `wait`.
pub fn udp_count(port: u16, wait: Duration, idle: Duration, max: Duration) -> io::Result<Tally> {
    let s = UdpSocket::bind(("0.0.0.0", port))?;
    let mut buf = vec![0u8; 65536];
    s.set_read_timeout(Some(wait))?;
    let n = s.recv(&mut buf)?;
    let first = Instant::now();
    let mut last = first;
    let (mut bytes, mut packets) = (n as u64, 1u64);
    s.set_read_timeout(Some(idle))?;
    while last.duration_since(first) < max {
        match s.recv(&mut buf) {
            Ok(n) => {
                bytes += n as u64;
                packets += 1;
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Tally {
        bytes,
        packets,
        errors: 0,
        secs: last.duration_since(first).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// What the sender wrote is what the receiver counted, and both time their part.
    #[test]
    fn tcp_receiver_counts_every_byte_the_sender_wrote() {
        let port = free_port();
        let rx = std::thread::spawn(move || tcp_recv(port, Duration::from_secs(10)));
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let tx = tcp_send(to, 0.2, Duration::from_secs(10)).unwrap();
        let rx = rx.join().unwrap().unwrap();
        assert!(tx.bytes >= 64 * 1024);
        assert_eq!(rx.bytes, tx.bytes);
        assert!(rx.secs > 0.0 && rx.secs <= tx.secs + 0.5);
    }

    /// Datagrams carry frame − 42 bytes; the counter counts each one and stops once idle.
    #[test]
    fn udp_counter_sees_the_sent_datagrams_of_the_frame_size() {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rx = std::thread::spawn(move || {
            udp_count(
                port,
                Duration::from_secs(10),
                Duration::from_millis(300),
                Duration::from_secs(30),
            )
        });
        std::thread::sleep(Duration::from_millis(100));
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let tx = udp_send(to, 64, 0.1).unwrap();
        let rx = rx.join().unwrap().unwrap();
        assert!(tx.packets > 0);
        assert_eq!(tx.bytes, tx.packets * 22);
        // Loopback may drop when the receiver's buffer is full, never invent datagrams.
        assert!(rx.packets > 0 && rx.packets <= tx.packets, "{rx:?} {tx:?}");
        assert_eq!(rx.bytes, rx.packets * 22);
    }

    #[test]
    fn a_frame_too_small_for_the_headers_is_refused() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(udp_send(to, 41, 0.1).is_err());
    }
}
