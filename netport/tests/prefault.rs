//! `MemPortConfig::prefault`: the slot memory is resident from the start, so using the
//! port does not grow the process. Its own test binary: it measures the whole process.

use netport::{FrameMeta, MemPort, MemPortConfig, Port};

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

const MIB: u64 = 1 << 20;

#[test]
fn prefaulted_slots_are_resident_at_once_and_use_does_not_grow_memory() {
    // 512 slots of 64 KiB per direction: 32 MiB each way.
    let before = rss();
    let (mut a, mut b) = MemPort::pair_with(MemPortConfig {
        prefault: true,
        ..MemPortConfig::new(512, 65536)
    })
    .unwrap();
    let made = rss();
    assert!(
        made >= before + 60 * MIB,
        "prefault made only {} KiB resident",
        (made - before) >> 10
    );
    // Every slot of both directions used once.
    let frame = vec![0xabu8; 1500];
    let mut buf = vec![0u8; 65536];
    for _ in 0..4 {
        for _ in 0..512 {
            a.send(&frame, &FrameMeta::default()).unwrap();
            b.send(&frame, &FrameMeta::default()).unwrap();
        }
        for _ in 0..512 {
            assert!(b.recv(&mut buf).unwrap().is_some());
            assert!(a.recv(&mut buf).unwrap().is_some());
        }
    }
    let used = rss();
    assert!(
        used <= made + 2 * MIB,
        "use grew memory by {} KiB",
        (used - made) >> 10
    );

    // Without prefault the same pair starts almost empty and grows with use: the test
    // above can fail.
    drop((a, b));
    let before = rss();
    let (mut a, mut b) = MemPort::pair(512, 65536).unwrap();
    let made = rss();
    assert!(made < before + 8 * MIB, "untouched slots are not resident");
    for _ in 0..512 {
        a.send(&frame, &FrameMeta::default()).unwrap();
    }
    for _ in 0..512 {
        assert!(b.recv(&mut buf).unwrap().is_some());
    }
    assert!(
        rss() >= made + MIB,
        "first touches show in the resident size"
    );
}
