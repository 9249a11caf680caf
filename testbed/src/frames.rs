//! Test frames and the loops tests drive ports with. These are assertions: they panic
//! with a message when a port fails or stays full.

use std::time::{Duration, Instant};

use netport::{FrameMeta, MemPort, Port};

/// A test frame of `len` bytes (at least 18): an Ethernet header (local experimental
/// ethertype 0x88b5), then the sequence number and a pattern derived from it.
pub fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

/// Checks a received frame against [`frame`]; returns its sequence number.
///
/// # Panics
/// If the payload is not the one [`frame`] makes for that sequence number.
pub fn check_frame(f: &[u8]) -> u32 {
    let seq = u32::from_le_bytes(f[14..18].try_into().expect("4 bytes"));
    assert_eq!(
        f,
        frame(seq, f.len()).as_slice(),
        "payload of frame {seq} corrupted"
    );
    seq
}

/// Receives from `port` until `n` frames arrived or `timeout` passed.
///
/// # Panics
/// If the port fails.
pub fn recv_n(port: &mut MemPort, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + timeout;
    while out.len() < n && Instant::now() < deadline {
        match port.recv(&mut buf).expect("port recv") {
            Some((len, _)) => out.push(buf[..len].to_vec()),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    out
}

/// Sends `f`, retrying while the port is full.
///
/// # Panics
/// If the port fails or stays full for 10 s.
pub fn send_all(port: &mut MemPort, f: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match port.send(f, &FrameMeta::default()) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "port stayed full");
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Offers frames of `len` bytes into `port` as fast as it takes them for `dur`; returns
/// how many the port accepted.
///
/// # Panics
/// If the port fails.
pub fn flood(port: &mut MemPort, len: usize, dur: Duration) -> u64 {
    let end = Instant::now() + dur;
    let mut seq = 0u32;
    let mut f = frame(0, len);
    while Instant::now() < end {
        f[14..18].copy_from_slice(&seq.to_le_bytes());
        match port.send(&f, &FrameMeta::default()) {
            Ok(()) => seq += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("send: {e}"),
        }
    }
    seq as u64
}

/// Counts frames arriving on `port` until `until`; returns (frames, bytes).
///
/// # Panics
/// If the port fails.
pub fn count_until(port: &mut MemPort, until: Instant) -> (u64, u64) {
    let mut buf = vec![0u8; 65536];
    let (mut n, mut b) = (0, 0);
    while Instant::now() < until {
        match port.recv(&mut buf).expect("port recv") {
            Some((len, _)) => {
                n += 1;
                b += len as u64;
            }
            None => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    (n, b)
}

/// The headers of a [`tcp_frame`]: what a guest chooses to put in front of its TCP
/// payload (each segment on the wire carries a copy of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpHeaders {
    /// IPv4 with `ip_options` bytes of options (a multiple of 4, at most 40) and TCP
    /// with `tcp_options` bytes (a multiple of 4, at most 40).
    V4 {
        /// IPv4 option bytes.
        ip_options: usize,
        /// TCP option bytes.
        tcp_options: usize,
    },
    /// IPv6 with a hop-by-hop extension header of `hop_by_hop` bytes (0: none; else a
    /// multiple of 8, at most 2048) and TCP with `tcp_options` bytes.
    V6 {
        /// Hop-by-hop header bytes.
        hop_by_hop: usize,
        /// TCP option bytes.
        tcp_options: usize,
    },
}

impl TcpHeaders {
    /// Their length, Ethernet to the end of the TCP header: the offset of the payload.
    pub fn len(&self) -> usize {
        match *self {
            TcpHeaders::V4 {
                ip_options,
                tcp_options,
            } => 14 + 20 + ip_options + 20 + tcp_options,
            TcpHeaders::V6 {
                hop_by_hop,
                tcp_options,
            } => 14 + 40 + hop_by_hop + 20 + tcp_options,
        }
    }

    /// Always false (there is at least an Ethernet header).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A TCP frame of `len` bytes (at least `h.len()`) with the headers `h`, lengths
/// consistent (IP total or payload length covers the frame), options padded with NOPs,
/// the payload a pattern.
///
/// # Panics
/// If `len` is shorter than the headers or an option length is not as [`TcpHeaders`]
/// says.
pub fn tcp_frame(len: usize, h: TcpHeaders) -> Vec<u8> {
    assert!(
        len >= h.len() && len <= 65535,
        "frame of {len} bytes for {h:?}"
    );
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 2]);
    let (l4, tcp_options) = match h {
        TcpHeaders::V4 {
            ip_options,
            tcp_options,
        } => {
            assert!(ip_options % 4 == 0 && ip_options <= 40);
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ihl = 20 + ip_options;
            f[14] = 0x40 | (ihl / 4) as u8;
            f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
            f[22] = 64; // TTL
            f[23] = 6; // TCP
            f[26..30].copy_from_slice(&[10, 9, 0, 2]);
            f[30..34].copy_from_slice(&[10, 9, 0, 1]);
            f[34..34 + ip_options].fill(1); // IPOPT_NOOP
            (14 + ihl, tcp_options)
        }
        TcpHeaders::V6 {
            hop_by_hop,
            tcp_options,
        } => {
            assert!(hop_by_hop % 8 == 0 && hop_by_hop <= 2048);
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            f[14] = 0x60;
            f[18..20].copy_from_slice(&((len - 54) as u16).to_be_bytes());
            f[20] = if hop_by_hop > 0 { 0 } else { 6 };
            f[21] = 64;
            f[22..38].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f[38..54].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            if hop_by_hop > 0 {
                f[54] = 6; // next header: TCP
                f[55] = (hop_by_hop / 8 - 1) as u8;
                // PadN options (at most 257 bytes each) over the rest of the header.
                let (mut at, mut left) = (56, hop_by_hop - 2);
                while left > 0 {
                    let mut n = left.min(257);
                    if left - n == 1 {
                        n -= 1; // leave 2 bytes: a PadN, never a lone byte
                    }
                    f[at] = 1;
                    f[at + 1] = (n - 2) as u8;
                    at += n;
                    left -= n;
                }
            }
            (54 + hop_by_hop, tcp_options)
        }
    };
    assert!(tcp_options % 4 == 0 && tcp_options <= 40);
    f[l4..l4 + 2].copy_from_slice(&40000u16.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&5201u16.to_be_bytes());
    f[l4 + 12] = (((20 + tcp_options) / 4) as u8) << 4;
    f[l4 + 13] = 0x18; // PSH, ACK
    f[l4 + 14..l4 + 16].copy_from_slice(&65535u16.to_be_bytes());
    f[l4 + 20..l4 + 20 + tcp_options].fill(1); // TCPOPT_NOP
    for (i, b) in f[h.len()..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_check_and_corruption_is_caught() {
        let f = frame(7, 100);
        assert_eq!(f.len(), 100);
        assert_eq!(check_frame(&f), 7);
        let mut bad = f.clone();
        bad[50] ^= 1;
        assert!(std::panic::catch_unwind(|| check_frame(&bad)).is_err());
    }

    #[test]
    fn tcp_frames_parse_with_the_headers_they_were_built_with() {
        for h in [
            TcpHeaders::V4 {
                ip_options: 0,
                tcp_options: 0,
            },
            TcpHeaders::V4 {
                ip_options: 40,
                tcp_options: 40,
            },
            TcpHeaders::V6 {
                hop_by_hop: 0,
                tcp_options: 12,
            },
            TcpHeaders::V6 {
                hop_by_hop: 256,
                tcp_options: 0,
            },
            TcpHeaders::V6 {
                hop_by_hop: 2048,
                tcp_options: 40,
            },
        ] {
            let f = tcp_frame(65_535, h);
            let info = netport::csum::parse_l4(&f).unwrap_or_else(|e| panic!("{h:?}: {e}"));
            assert_eq!(info.hdr_end, h.len(), "{h:?}");
        }
    }
}
