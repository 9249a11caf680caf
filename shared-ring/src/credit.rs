//! The DBA-VM credit area: per-vif token-bucket budgets carried in the unused tail of the
//! netif TX ring page, from netback (writer) to netfront (reader), plus counters the
//! frontend publishes back as untrusted hints.
//!
//! Layout (version 1), byte offsets from the start of the area, which is
//! [`CREDIT_AREA_OFFSET`] (3136) in the 4 KiB TX ring page, right after the 256 TX slots.
//! Little-endian; `u64` fields are two words, low word first. The normative
//! specification, with the xenstore negotiation, is `docs/protocol.md`.
//!
//! ```text
//!  backend block (written by netback only)
//!   0  u32 magic            CREDIT_MAGIC ("DBAV")
//!   4  u16 version          CREDIT_VERSION
//!   6  u16 area_bytes       CREDIT_AREA_BYTES
//!   8  u32 seq              seqlock: odd while netback is writing; seq/2 = generation
//!  12  u32 flags            0 (reserved)
//!  16  u64 bytes_per_sec    TX budget, wire bytes/s (u64::MAX = unlimited, 0 = closed)
//!  24  u64 bytes_burst      bucket size, bytes
//!  32  u64 packets_per_sec  TX budget, wire packets/s (u64::MAX = unlimited, 0 = closed)
//!  40  u64 packets_burst    bucket size, packets
//!  48  u32 period_us        the allocator's readjustment period
//!  52  .. 64                reserved, 0
//!  frontend block (written by netfront only; untrusted hints for netback)
//!  64  u32 front_version    version the frontend speaks (0: none)
//!  68  u32 front_seq        seqlock of this block
//!  72  u32 applied_generation  last generation the frontend applied
//!  76  u32 reserved
//!  80  u64 tx_packets       wire packets sent on the ring (GSO: its segments)
//!  88  u64 tx_bytes         their wire bytes
//!  96  u64 dropped_packets  wire packets dropped for lack of tokens (policy drop)
//! 104  u64 dropped_bytes    their wire bytes
//! 112  u64 held             times the frontend stopped taking frames (policy hold)
//! 120  u64 reserved
//!  version 2 only (negotiated; a version-1 peer never reads or writes past byte 127)
//!  backend RX block (written by netback, under `seq` with the TX budget)
//! 128  u64 rx_bytes_per_sec RX budget, wire bytes/s (u64::MAX = unlimited, 0 = closed)
//! 136  u64 rx_bytes_burst
//! 144  u64 rx_packets_per_sec
//! 152  u64 rx_packets_burst
//! 160  .. 192               reserved, 0
//!  backend counters block (written by netback only; own seqlock)
//! 192  u32 back_seq         seqlock of this block
//! 196  u32 reserved
//! 200  u64 tx_shaped_bps_frames  TX frames held or dropped for the bits/s budget
//! 208  u64 tx_shaped_bps_bytes   their wire bytes
//! 216  u64 tx_shaped_pps_frames  TX frames held or dropped for the packets/s budget
//! 224  u64 rx_shaped_bps_frames  the same for RX
//! 232  u64 rx_shaped_bps_bytes
//! 240  u64 rx_shaped_pps_frames
//! 248  u64 reserved
//! ```
//!
//! Seqlock: the writer stores `seq + 1` (odd), a release fence, the fields, then
//! `seq + 2` with release. The reader loads `seq` with acquire, retries while it is odd,
//! loads the fields, an acquire fence, and accepts the copy only if `seq` is unchanged.
//! Every field access is a relaxed atomic word access, so a torn copy is detected and
//! discarded, never used: a snapshot only ever holds values written together. Retries
//! are bounded ([`SEQLOCK_RETRIES`]); a peer that keeps the lock odd gets
//! [`CreditError::Busy`], never a hang.

use core::sync::atomic::{fence, Ordering};

use crate::bucket::Limit;
use crate::netif::NET_TX_RING_END;
use crate::page::SharedMem;

/// Byte offset of the credit area in the TX ring page (4 KiB pages: after 256 slots).
pub const CREDIT_AREA_OFFSET: usize = NET_TX_RING_END;
/// Bytes of the version-1 credit area.
pub const CREDIT_AREA_BYTES: usize = 128;
/// Bytes of the version-2 credit area (the version-1 area, then the RX budget and the
/// backend's counters).
pub const CREDIT_AREA_BYTES_V2: usize = 256;
/// `magic`: "DBAV" in little-endian byte order.
pub const CREDIT_MAGIC: u32 = u32::from_le_bytes(*b"DBAV");
/// The highest layout version this crate writes and reads (it speaks every version from
/// 1 up to this one; the peers negotiate which, `docs/protocol.md` §2.5).
pub const CREDIT_VERSION: u16 = 2;
/// Attempts a reader makes before giving up on a seqlock held by the writer.
pub const SEQLOCK_RETRIES: u32 = 64;
/// The rate value that means "unlimited" on the wire.
pub const RATE_UNLIMITED: u64 = u64::MAX;

const _: () = assert!(CREDIT_AREA_OFFSET == 3136);
const _: () = assert!(CREDIT_AREA_OFFSET + CREDIT_AREA_BYTES_V2 <= 4096);

/// The bytes of the area of layout `version` (1 or 2).
pub const fn area_bytes(version: u16) -> usize {
    if version >= 2 {
        CREDIT_AREA_BYTES_V2
    } else {
        CREDIT_AREA_BYTES
    }
}

/// Field offsets inside the area.
pub mod offsets {
    /// `magic`.
    pub const MAGIC: usize = 0;
    /// `version` (low half-word) and `area_bytes` (high half-word).
    pub const VERSION_AREA_BYTES: usize = 4;
    /// `seq`.
    pub const SEQ: usize = 8;
    /// `flags`.
    pub const FLAGS: usize = 12;
    /// `bytes_per_sec`.
    pub const BYTES_PER_SEC: usize = 16;
    /// `bytes_burst`.
    pub const BYTES_BURST: usize = 24;
    /// `packets_per_sec`.
    pub const PACKETS_PER_SEC: usize = 32;
    /// `packets_burst`.
    pub const PACKETS_BURST: usize = 40;
    /// `period_us`.
    pub const PERIOD_US: usize = 48;
    /// `front_version`.
    pub const FRONT_VERSION: usize = 64;
    /// `front_seq`.
    pub const FRONT_SEQ: usize = 68;
    /// `applied_generation`.
    pub const APPLIED_GENERATION: usize = 72;
    /// `tx_packets`.
    pub const TX_PACKETS: usize = 80;
    /// `tx_bytes`.
    pub const TX_BYTES: usize = 88;
    /// `dropped_packets`.
    pub const DROPPED_PACKETS: usize = 96;
    /// `dropped_bytes`.
    pub const DROPPED_BYTES: usize = 104;
    /// `held`.
    pub const HELD: usize = 112;
    /// `rx_bytes_per_sec` (version 2).
    pub const RX_BYTES_PER_SEC: usize = 128;
    /// `rx_bytes_burst` (version 2).
    pub const RX_BYTES_BURST: usize = 136;
    /// `rx_packets_per_sec` (version 2).
    pub const RX_PACKETS_PER_SEC: usize = 144;
    /// `rx_packets_burst` (version 2).
    pub const RX_PACKETS_BURST: usize = 152;
    /// `back_seq` (version 2).
    pub const BACK_SEQ: usize = 192;
    /// `tx_shaped_bps_frames` (version 2); the five other counters follow, 8 bytes apart.
    pub const TX_SHAPED_BPS_FRAMES: usize = 200;
    /// `tx_shaped_bps_bytes`.
    pub const TX_SHAPED_BPS_BYTES: usize = 208;
    /// `tx_shaped_pps_frames`.
    pub const TX_SHAPED_PPS_FRAMES: usize = 216;
    /// `rx_shaped_bps_frames`.
    pub const RX_SHAPED_BPS_FRAMES: usize = 224;
    /// `rx_shaped_bps_bytes`.
    pub const RX_SHAPED_BPS_BYTES: usize = 232;
    /// `rx_shaped_pps_frames`.
    pub const RX_SHAPED_PPS_FRAMES: usize = 240;
}
use offsets as off;

/// Why the credit area could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditError {
    /// The memory given is too small or unaligned for the area.
    BadRegion,
    /// The backend has not published credits yet (no magic).
    NotPublished,
    /// The area holds something else.
    BadMagic(u32),
    /// A layout version this crate does not know.
    UnsupportedVersion(u16),
    /// The writer held the seqlock through every retry.
    Busy,
}

impl core::fmt::Display for CreditError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CreditError::BadRegion => write!(f, "credit area region too small or unaligned"),
            CreditError::NotPublished => write!(f, "no credits published yet"),
            CreditError::BadMagic(m) => write!(f, "credit area magic {m:#010x} is not DBAV"),
            CreditError::UnsupportedVersion(v) => write!(f, "credit area version {v} unknown"),
            CreditError::Busy => write!(f, "credit area seqlock held through every retry"),
        }
    }
}

/// The TX budgets of one vif, as the backend publishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    /// Wire bytes per second and burst (see `docs/protocol.md` §2.6: a GSO frame costs
    /// its segments' bytes, headers included).
    pub bytes: Limit,
    /// Wire packets per second and burst (a GSO frame costs its segments).
    pub packets: Limit,
    /// The allocator's readjustment period, µs (informational: how soon to expect the
    /// next generation).
    pub period_us: u32,
}

/// A consistent copy of the backend block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreditSnapshot {
    /// Number of updates published so far (`seq / 2`).
    pub generation: u32,
    /// The layout version the backend wrote.
    pub version: u16,
    /// The TX budgets.
    pub credits: Credits,
    /// The RX budgets (version 2; `None` in a version-1 area). Informational for the
    /// frontend: netback enforces them before it copies into the guest.
    pub rx: Option<Credits>,
}

/// The counters netback maintains per direction (version 2): frames held or dropped
/// because of the bits/s budget (and their wire bytes), frames because of the packets/s
/// budget — what a guest is told about being shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BackCounters {
    /// TX frames held or dropped by the backend for the bits/s budget.
    pub tx_shaped_bps_frames: u64,
    /// Their wire bytes.
    pub tx_shaped_bps_bytes: u64,
    /// TX frames held or dropped for the packets/s budget.
    pub tx_shaped_pps_frames: u64,
    /// RX frames held or dropped for the bits/s budget.
    pub rx_shaped_bps_frames: u64,
    /// Their wire bytes.
    pub rx_shaped_bps_bytes: u64,
    /// RX frames held or dropped for the packets/s budget.
    pub rx_shaped_pps_frames: u64,
}

/// What the frontend reports about its own sending (untrusted by the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrontCounters {
    /// Layout version the frontend speaks (0: it does not use the area).
    pub front_version: u32,
    /// Last generation of credits the frontend applied.
    pub applied_generation: u32,
    /// Wire packets of the frames put on the ring (a GSO frame counts the segments it
    /// becomes: [`crate::WireCost`]).
    pub tx_packets: u64,
    /// Their wire bytes.
    pub tx_bytes: u64,
    /// Wire packets of the frames dropped in the frontend for lack of tokens.
    pub dropped_packets: u64,
    /// Their wire bytes.
    pub dropped_bytes: u64,
    /// Times the frontend stopped taking frames until tokens returned.
    pub held: u64,
}

/// The credit area inside a TX ring page, of one negotiated layout version.
#[derive(Debug, Clone, Copy)]
pub struct CreditArea<'a> {
    mem: SharedMem<'a>,
    version: u16,
}

impl<'a> CreditArea<'a> {
    /// The version-1 area of a 4 KiB TX ring page (`page` is the whole page).
    pub fn in_tx_page(page: SharedMem<'a>) -> Result<Self, CreditError> {
        Self::in_tx_page_version(page, 1)
    }

    /// The area of `version` (1 or 2: what the peers negotiated) in a TX ring page.
    pub fn in_tx_page_version(page: SharedMem<'a>, version: u16) -> Result<Self, CreditError> {
        let mem = page
            .slice(CREDIT_AREA_OFFSET, area_bytes(version))
            .ok_or(CreditError::BadRegion)?;
        Self::with_version(mem, version)
    }

    /// A version-1 area in `mem`, which must be at least [`CREDIT_AREA_BYTES`] long.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, CreditError> {
        Self::with_version(mem, 1)
    }

    /// An area of `version` in `mem` (at least [`area_bytes`]`(version)` long).
    pub fn with_version(mem: SharedMem<'a>, version: u16) -> Result<Self, CreditError> {
        if !(1..=CREDIT_VERSION).contains(&version) {
            return Err(CreditError::UnsupportedVersion(version));
        }
        let mem = mem
            .slice(0, area_bytes(version))
            .ok_or(CreditError::BadRegion)?;
        Ok(CreditArea { mem, version })
    }

    /// The layout version this area is used with.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The underlying memory.
    pub fn mem(&self) -> SharedMem<'a> {
        self.mem
    }

    fn load64(&self, o: usize) -> u64 {
        self.mem.load(o) as u64 | (self.mem.load(o + 4) as u64) << 32
    }

    fn store64(&self, o: usize, v: u64) {
        self.mem.store(o, v as u32);
        self.mem.store(o + 4, (v >> 32) as u32);
    }

    /// Seqlock write of the words written by `f`; `seq` is the writer's private copy.
    fn seq_write(&self, seq_off: usize, seq: &mut u32, f: impl FnOnce(&Self)) {
        let odd = seq.wrapping_add(1) | 1;
        self.mem.store(seq_off, odd);
        fence(Ordering::Release);
        f(self);
        *seq = odd.wrapping_add(1);
        self.mem.word(seq_off).store(*seq, Ordering::Release);
    }

    /// Seqlock read: the values `f` reads, only if no write overlapped them.
    fn seq_read<T>(&self, seq_off: usize, f: impl Fn(&Self) -> T) -> Result<(u32, T), CreditError> {
        for _ in 0..SEQLOCK_RETRIES {
            let s1 = self.mem.word(seq_off).load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let v = f(self);
            fence(Ordering::Acquire);
            let s2 = self.mem.word(seq_off).load(Ordering::Relaxed);
            if s1 == s2 {
                return Ok((s1, v));
            }
        }
        Err(CreditError::Busy)
    }
}

fn limit_to_wire(l: Limit) -> (u64, u64) {
    match l {
        Limit::Unlimited => (RATE_UNLIMITED, 0),
        Limit::Rate { per_sec, burst } => (per_sec, burst),
    }
}

fn limit_from_wire(per_sec: u64, burst: u64) -> Limit {
    if per_sec == RATE_UNLIMITED {
        Limit::Unlimited
    } else {
        Limit::Rate { per_sec, burst }
    }
}

/// The backend's handle on one vif's credit area: publishes budgets, reads the
/// frontend's counters as hints.
#[derive(Debug)]
pub struct CreditPublisher<'a> {
    area: CreditArea<'a>,
    seq: u32,
}

impl<'a> CreditPublisher<'a> {
    /// Takes over the backend block of `area` (the frontend zeroes the page when it
    /// allocates it; nothing is published until [`CreditPublisher::publish`]).
    pub fn new(area: CreditArea<'a>) -> Self {
        CreditPublisher { area, seq: 0 }
    }

    /// Re-attaches after [`CreditPublisher::generation`] updates were published (a driver
    /// that owns the mapping keeps only the generation between periods).
    pub fn resume(area: CreditArea<'a>, generation: u32) -> Self {
        CreditPublisher {
            area,
            seq: generation.wrapping_mul(2),
        }
    }

    /// Publishes new TX budgets as one consistent update (RX unlimited in a version-2
    /// area).
    pub fn publish(&mut self, c: &Credits) {
        self.publish_both(c, &Credits::UNLIMITED);
    }

    /// Publishes new TX and RX budgets as one consistent update (one generation). A
    /// version-1 area carries only the TX budget: nothing is written past byte 127.
    pub fn publish_both(&mut self, tx: &Credits, rx: &Credits) {
        let (bps, bb) = limit_to_wire(tx.bytes);
        let (pps, pb) = limit_to_wire(tx.packets);
        let (rbps, rbb) = limit_to_wire(rx.bytes);
        let (rpps, rpb) = limit_to_wire(rx.packets);
        let version = self.area.version;
        self.area.seq_write(off::SEQ, &mut self.seq, |a| {
            a.mem.store(off::MAGIC, CREDIT_MAGIC);
            a.mem.store(
                off::VERSION_AREA_BYTES,
                version as u32 | (area_bytes(version) as u32) << 16,
            );
            a.mem.store(off::FLAGS, 0);
            a.store64(off::BYTES_PER_SEC, bps);
            a.store64(off::BYTES_BURST, bb);
            a.store64(off::PACKETS_PER_SEC, pps);
            a.store64(off::PACKETS_BURST, pb);
            a.mem.store(off::PERIOD_US, tx.period_us);
            if version >= 2 {
                a.store64(off::RX_BYTES_PER_SEC, rbps);
                a.store64(off::RX_BYTES_BURST, rbb);
                a.store64(off::RX_PACKETS_PER_SEC, rpps);
                a.store64(off::RX_PACKETS_BURST, rpb);
            }
        });
    }

    /// Publishes the backend's shaping counters (version 2; nothing in a version-1
    /// area). `seq` is the writer's private copy of the block's seqlock word (start at
    /// 0; never read back from shared memory).
    pub fn publish_counters(&self, seq: &mut u32, c: &BackCounters) {
        if self.area.version < 2 {
            return;
        }
        self.area.seq_write(off::BACK_SEQ, seq, |a| {
            for (o, v) in c.fields() {
                a.store64(o, v);
            }
        });
    }

    /// The generation of the last publish.
    pub fn generation(&self) -> u32 {
        self.seq / 2
    }

    /// The frontend's counters, if it publishes any and they read consistently.
    /// **Untrusted**: a hint for monitoring, never a basis for policing.
    pub fn front_counters(&self) -> Result<FrontCounters, CreditError> {
        self.area
            .seq_read(off::FRONT_SEQ, |a| FrontCounters {
                front_version: a.mem.load(off::FRONT_VERSION),
                applied_generation: a.mem.load(off::APPLIED_GENERATION),
                tx_packets: a.load64(off::TX_PACKETS),
                tx_bytes: a.load64(off::TX_BYTES),
                dropped_packets: a.load64(off::DROPPED_PACKETS),
                dropped_bytes: a.load64(off::DROPPED_BYTES),
                held: a.load64(off::HELD),
            })
            .map(|(_, c)| c)
    }
}

impl Credits {
    /// No limit in either unit.
    pub const UNLIMITED: Credits = Credits {
        bytes: Limit::Unlimited,
        packets: Limit::Unlimited,
        period_us: 0,
    };
}

impl BackCounters {
    /// (offset, value) of every counter.
    fn fields(&self) -> [(usize, u64); 6] {
        [
            (off::TX_SHAPED_BPS_FRAMES, self.tx_shaped_bps_frames),
            (off::TX_SHAPED_BPS_BYTES, self.tx_shaped_bps_bytes),
            (off::TX_SHAPED_PPS_FRAMES, self.tx_shaped_pps_frames),
            (off::RX_SHAPED_BPS_FRAMES, self.rx_shaped_bps_frames),
            (off::RX_SHAPED_BPS_BYTES, self.rx_shaped_bps_bytes),
            (off::RX_SHAPED_PPS_FRAMES, self.rx_shaped_pps_frames),
        ]
    }
}

/// The private state of a [`CreditReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreditReaderState {
    last_seq: u32,
    front_seq: u32,
}

/// The frontend's handle on its credit area: reads budgets, publishes counters.
#[derive(Debug)]
pub struct CreditReader<'a> {
    area: CreditArea<'a>,
    last_seq: u32,
    front_seq: u32,
}

impl<'a> CreditReader<'a> {
    /// A reader that has seen nothing yet.
    pub fn new(area: CreditArea<'a>) -> Self {
        Self::resume(area, CreditReaderState::default())
    }

    /// Re-attaches with the state saved by [`CreditReader::state`].
    pub fn resume(area: CreditArea<'a>, state: CreditReaderState) -> Self {
        CreditReader {
            area,
            last_seq: state.last_seq,
            front_seq: state.front_seq,
        }
    }

    /// What this reader has seen and published, to [`CreditReader::resume`] later.
    pub fn state(&self) -> CreditReaderState {
        CreditReaderState {
            last_seq: self.last_seq,
            front_seq: self.front_seq,
        }
    }

    /// A consistent copy of the current budgets. The backend writes the version the
    /// peers negotiated; a snapshot of any version from 1 up to this area's is accepted
    /// (a version-1 snapshot has no RX budget).
    pub fn snapshot(&self) -> Result<CreditSnapshot, CreditError> {
        let v2 = self.area.version >= 2;
        let (seq, (magic, ver, w)) = self.area.seq_read(off::SEQ, |a| {
            let rx = |o| if v2 { a.load64(o) } else { 0 };
            (
                a.mem.load(off::MAGIC),
                a.mem.load(off::VERSION_AREA_BYTES) as u16,
                [
                    a.load64(off::BYTES_PER_SEC),
                    a.load64(off::BYTES_BURST),
                    a.load64(off::PACKETS_PER_SEC),
                    a.load64(off::PACKETS_BURST),
                    a.mem.load(off::PERIOD_US) as u64,
                    rx(off::RX_BYTES_PER_SEC),
                    rx(off::RX_BYTES_BURST),
                    rx(off::RX_PACKETS_PER_SEC),
                    rx(off::RX_PACKETS_BURST),
                ],
            )
        })?;
        if seq == 0 && magic == 0 {
            return Err(CreditError::NotPublished);
        }
        if magic != CREDIT_MAGIC {
            return Err(CreditError::BadMagic(magic));
        }
        if ver == 0 || ver > self.area.version {
            return Err(CreditError::UnsupportedVersion(ver));
        }
        Ok(CreditSnapshot {
            generation: seq / 2,
            version: ver,
            credits: Credits {
                bytes: limit_from_wire(w[0], w[1]),
                packets: limit_from_wire(w[2], w[3]),
                period_us: w[4] as u32,
            },
            rx: (ver >= 2).then(|| Credits {
                bytes: limit_from_wire(w[5], w[6]),
                packets: limit_from_wire(w[7], w[8]),
                period_us: w[4] as u32,
            }),
        })
    }

    /// The backend's shaping counters (version 2; `None` in a version-1 area).
    pub fn back_counters(&self) -> Result<Option<BackCounters>, CreditError> {
        if self.area.version < 2 {
            return Ok(None);
        }
        let (_, w) = self.area.seq_read(off::BACK_SEQ, |a| {
            BackCounters::default().fields().map(|(o, _)| a.load64(o))
        })?;
        Ok(Some(BackCounters {
            tx_shaped_bps_frames: w[0],
            tx_shaped_bps_bytes: w[1],
            tx_shaped_pps_frames: w[2],
            rx_shaped_bps_frames: w[3],
            rx_shaped_bps_bytes: w[4],
            rx_shaped_pps_frames: w[5],
        }))
    }

    /// The budgets if they changed since the last successful `poll` (one word read when
    /// they did not: cheap enough to call once per batch).
    #[inline]
    pub fn poll(&mut self) -> Result<Option<CreditSnapshot>, CreditError> {
        let seq = self.area.mem.word(off::SEQ).load(Ordering::Acquire);
        if seq == self.last_seq {
            return Ok(None);
        }
        let snap = self.snapshot()?;
        self.last_seq = snap.generation.wrapping_mul(2);
        Ok(Some(snap))
    }

    /// Publishes the frontend's counters (announcing the area's version).
    pub fn publish_counters(&mut self, c: &FrontCounters) {
        let version = self.area.version;
        self.area
            .seq_write(off::FRONT_SEQ, &mut self.front_seq, |a| {
                a.mem.store(off::FRONT_VERSION, version as u32);
                a.mem.store(off::APPLIED_GENERATION, c.applied_generation);
                a.store64(off::TX_PACKETS, c.tx_packets);
                a.store64(off::TX_BYTES, c.tx_bytes);
                a.store64(off::DROPPED_PACKETS, c.dropped_packets);
                a.store64(off::DROPPED_BYTES, c.dropped_bytes);
                a.store64(off::HELD, c.held);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::SharedPage;

    fn credits(n: u64) -> Credits {
        Credits {
            bytes: Limit::rate(n * 1000, n * 10),
            packets: Limit::rate(n, n + 1),
            period_us: n as u32,
        }
    }

    #[test]
    fn area_sits_after_the_tx_slots() {
        let page = SharedPage::new();
        let area = CreditArea::in_tx_page(page.mem()).unwrap();
        let mut p = CreditPublisher::new(area);
        p.publish(&credits(7));
        assert_eq!(page.mem().load(3136), CREDIT_MAGIC);
        assert_eq!(page.mem().load(3136 + 4), 1 | 128 << 16);
        assert_eq!(page.mem().load(3136 + 16), 7000);
        // Nothing before the area was touched.
        for off in (0..3136).step_by(4) {
            assert_eq!(page.mem().load(off), 0);
        }
    }

    #[test]
    fn snapshot_round_trip_and_poll() {
        let page = SharedPage::new();
        let area = CreditArea::in_tx_page(page.mem()).unwrap();
        let mut r = CreditReader::new(area);
        assert_eq!(r.snapshot(), Err(CreditError::NotPublished));
        assert_eq!(r.poll(), Ok(None));
        let mut p = CreditPublisher::new(area);
        p.publish(&credits(3));
        let s = r.poll().unwrap().unwrap();
        assert_eq!(s.generation, 1);
        assert_eq!(s.credits, credits(3));
        assert_eq!(r.poll(), Ok(None));
        p.publish(&Credits {
            bytes: Limit::Unlimited,
            packets: Limit::CLOSED,
            period_us: 0,
        });
        let s = r.poll().unwrap().unwrap();
        assert_eq!(s.generation, 2);
        assert_eq!(s.credits.bytes, Limit::Unlimited);
        assert_eq!(s.credits.packets, Limit::CLOSED);
    }

    #[test]
    fn a_held_seqlock_is_busy_not_a_hang() {
        let page = SharedPage::new();
        let area = CreditArea::in_tx_page(page.mem()).unwrap();
        CreditPublisher::new(area).publish(&credits(1));
        page.mem().store(3136 + off::SEQ, 5); // odd forever
        assert_eq!(CreditReader::new(area).snapshot(), Err(CreditError::Busy));
    }

    #[test]
    fn scribbled_header_is_an_error() {
        let page = SharedPage::new();
        let area = CreditArea::in_tx_page(page.mem()).unwrap();
        CreditPublisher::new(area).publish(&credits(1));
        page.mem().store(3136 + off::MAGIC, 0x1234_5678);
        assert_eq!(
            CreditReader::new(area).snapshot(),
            Err(CreditError::BadMagic(0x1234_5678))
        );
        page.mem().store(3136 + off::MAGIC, CREDIT_MAGIC);
        page.mem().store(3136 + off::VERSION_AREA_BYTES, 9);
        assert_eq!(
            CreditReader::new(area).snapshot(),
            Err(CreditError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn front_counters_round_trip() {
        let page = SharedPage::new();
        let area = CreditArea::in_tx_page(page.mem()).unwrap();
        let p = CreditPublisher::new(area);
        let mut r = CreditReader::new(area);
        let c = FrontCounters {
            front_version: 1,
            applied_generation: 4,
            tx_packets: u64::MAX,
            tx_bytes: 1 << 40,
            dropped_packets: 3,
            dropped_bytes: 4,
            held: 5,
        };
        r.publish_counters(&c);
        assert_eq!(p.front_counters(), Ok(c));
    }

    #[test]
    fn version_2_carries_rx_budgets_and_counters_past_byte_127() {
        let page = SharedPage::new();
        let v2 = CreditArea::in_tx_page_version(page.mem(), 2).unwrap();
        let mut p = CreditPublisher::new(v2);
        p.publish_both(&credits(3), &credits(5));
        assert_eq!(page.mem().load(3136 + 4), 2 | 256 << 16);
        assert_eq!(page.mem().load(3136 + 128), 5000);
        let s = CreditReader::new(v2).snapshot().unwrap();
        // One period for both directions: the TX one.
        let rx = Credits {
            period_us: 3,
            ..credits(5)
        };
        assert_eq!((s.version, s.credits, s.rx), (2, credits(3), Some(rx)));
        let c = BackCounters {
            tx_shaped_bps_frames: 1,
            tx_shaped_bps_bytes: 2,
            tx_shaped_pps_frames: 3,
            rx_shaped_bps_frames: 4,
            rx_shaped_bps_bytes: 1 << 40,
            rx_shaped_pps_frames: 6,
        };
        let mut seq = 0;
        p.publish_counters(&mut seq, &c);
        assert_eq!(seq, 2);
        assert_eq!(CreditReader::new(v2).back_counters(), Ok(Some(c)));
        // A version-1 reader (an old frontend) cannot read a version-2 area...
        let v1 = CreditArea::in_tx_page(page.mem()).unwrap();
        assert_eq!(
            CreditReader::new(v1).snapshot(),
            Err(CreditError::UnsupportedVersion(2))
        );
        // ...which is why the backend writes the negotiated version: version 1 leaves
        // everything past byte 127 alone.
        let page = SharedPage::new();
        let mut p = CreditPublisher::new(CreditArea::in_tx_page(page.mem()).unwrap());
        p.publish_both(&credits(3), &credits(5));
        p.publish_counters(&mut seq, &c);
        for o in (3136 + 128..4096).step_by(4) {
            assert_eq!(page.mem().load(o), 0, "byte {o}");
        }
        // A version-2 reader (a new frontend on an old backend) reads version 1.
        let s = CreditReader::new(v2_of(&page)).snapshot().unwrap();
        assert_eq!((s.version, s.credits, s.rx), (1, credits(3), None));
        assert_eq!(
            CreditArea::with_version(page.mem(), 3).err(),
            Some(CreditError::UnsupportedVersion(3))
        );
    }

    fn v2_of(page: &SharedPage) -> CreditArea<'_> {
        CreditArea::in_tx_page_version(page.mem(), 2).unwrap()
    }

    #[test]
    fn region_must_fit() {
        let page = SharedPage::new();
        assert_eq!(
            CreditArea::new(page.mem().slice(0, 64).unwrap()).err(),
            Some(CreditError::BadRegion)
        );
    }
}
