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
}
