//! The benchmark's frames: an Ethernet header (local experimental ethertype 0x88b5),
//! then a magic, the VM index, a sequence number and the time the generator offered the
//! frame (the clock of [`hypervisor::clock::monotonic_ns`]), so the sink can compute one-way delays.

/// Ethertype of benchmark frames (IEEE local experimental).
pub const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// Marks a benchmark header.
pub const MAGIC: [u8; 2] = [0xdb, 0xa5];
/// Bytes used by the header; frames must be at least this long.
pub const HEADER_LEN: usize = 33;

/// The decoded benchmark header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// VM index (0-based).
    pub vm: u8,
    /// Sequence number within the VM's flow.
    pub seq: u64,
    /// When the generator offered the frame, ns.
    pub sent_ns: u64,
}

/// A frame template of `len` bytes from VM `vm` (MACs 00:16:3e:00:00:vm+1 → sink).
pub fn template(vm: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(HEADER_LEN)];
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0xff, 0xff, 0xfe]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, vm.wrapping_add(1)]);
    f[12..14].copy_from_slice(&ETHERTYPE);
    encode(&mut f, vm, 0, 0);
    f
}

/// Writes the header into `frame` (which must hold [`HEADER_LEN`] bytes).
pub fn encode(frame: &mut [u8], vm: u8, seq: u64, sent_ns: u64) {
    frame[12..14].copy_from_slice(&ETHERTYPE);
    frame[14..16].copy_from_slice(&MAGIC);
    frame[16] = vm;
    frame[17..25].copy_from_slice(&seq.to_le_bytes());
    frame[25..33].copy_from_slice(&sent_ns.to_le_bytes());
}

/// Reads the header of a benchmark frame; `None` for anything else.
pub fn decode(frame: &[u8]) -> Option<Header> {
    if frame.len() < HEADER_LEN || frame[12..14] != ETHERTYPE || frame[14..16] != MAGIC {
        return None;
    }
    Some(Header {
        vm: frame[16],
        seq: u64::from_le_bytes(frame[17..25].try_into().ok()?),
        sent_ns: u64::from_le_bytes(frame[25..33].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut f = template(2, 64);
        assert_eq!(f.len(), 64);
        encode(&mut f, 2, 77, 123_456_789);
        assert_eq!(
            decode(&f),
            Some(Header {
                vm: 2,
                seq: 77,
                sent_ns: 123_456_789
            })
        );
        assert_eq!(decode(&f[..20]), None);
        f[14] = 0;
        assert_eq!(decode(&f), None);
    }
}
