//! [`MemPort`]: an in-memory port pair over two lock-free, bounded SPSC queues.
//!
//! Each direction is a single-producer single-consumer ring of preallocated slots (one
//! contiguous allocation, `capacity × max_frame` rounded to cache lines, taken once: no
//! allocation per frame). The producer and consumer indices live on separate cache lines;
//! each side caches the other's index and re-reads it only when its cached view says the
//! ring is full (producer) or empty (consumer), so an uncontended frame costs one copy and
//! a couple of atomic operations, and a batch publishes its index once.
//!
//! # Readiness (eventfd)
//!
//! Each direction has an eventfd, the receiver's [`Port::rx_fd`]. It is written only when
//! the receiver has found the ring empty and *armed* it, i.e. on empty → non-empty
//! transitions the receiver could be sleeping on, so a busy stream costs no system call
//! per frame:
//!
//! * the consumer, on finding the ring empty, consumes the eventfd's signal (one `read`),
//!   sets `waiting` (arms), and re-checks the ring after a full fence;
//! * the producer, after publishing, checks `waiting` after a full fence and, if set,
//!   claims it (`swap(false)`) and writes the eventfd: one write per claimed arm.
//!
//! The store/fence/load pairs on both sides (Dekker) guarantee that either the consumer's
//! re-check sees the frame or the producer sees `waiting`: no lost wake-up. While armed
//! and unclaimed, nothing can have been written since the last read, so an empty `recv`
//! returns `None` without a system call. The consumer counts the signals it has read
//! (the eventfd's value) against its arms and re-arms only when every claimed arm's signal
//! has been read; if a claimer has not written yet (e.g. it was preempted between claim
//! and write), the fd is clear and becomes readable when it writes. So the fd is readable
//! exactly while a signal is unread, never stuck readable with nothing to read, and the
//! contract's level-triggered behaviour holds.

use std::cell::UnsafeCell;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::port::{FrameMeta, Port, ETH_HLEN};

/// What [`MemPort::send`] does when the peer's queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse with `Err(WouldBlock)`; the caller keeps the frame (counted in
    /// [`MemPortStats::refused_full`]).
    #[default]
    Backpressure,
    /// Drop the frame and return `Ok(())`, like a NIC or a TAP whose queue overflows
    /// (counted in [`MemPortStats::dropped_full`]).
    Drop,
}

/// Configuration of a [`MemPort`] pair (both directions alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemPortConfig {
    /// Frames each direction can hold; rounded up to a power of two, at least 1.
    pub capacity: usize,
    /// Largest frame, in bytes (each slot holds this much), at least 14.
    pub max_frame: usize,
    /// What a send into a full queue does.
    pub full_policy: FullPolicy,
    /// How many times a receiver that found its queue empty re-checks it (with a CPU
    /// pause between checks, about 1 µs for the default 32 on current x86) before it
    /// re-arms the eventfd, which costs it one system call and the sender another. Spent
    /// only when a wake-up was consumed since the last arm, i.e. at most once per idle
    /// period; 0 disables it.
    pub arm_spin: u32,
    /// Write every page of the slot memory when the pair is created, so that the first
    /// use of a slot costs no page fault and the resident size no longer grows with use
    /// (benchmarks; tests that measure memory). Default `false`: slot memory stays
    /// untouched zero pages until a frame lands in it.
    pub prefault: bool,
}

impl MemPortConfig {
    /// `capacity` frames of at most `max_frame` bytes, [`FullPolicy::Backpressure`],
    /// default `arm_spin`.
    pub fn new(capacity: usize, max_frame: usize) -> Self {
        MemPortConfig {
            capacity,
            max_frame,
            full_policy: FullPolicy::Backpressure,
            arm_spin: 32,
            prefault: false,
        }
    }
}

/// Counters of one [`MemPort`] endpoint (its sends into the peer's queue, its receives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemPortStats {
    /// Frames queued by `send`/`send_batch`.
    pub sent_frames: u64,
    /// Bytes of the frames queued.
    pub sent_bytes: u64,
    /// Frames handed out by `recv`/`recv_batch`.
    pub received_frames: u64,
    /// Bytes of the frames handed out.
    pub received_bytes: u64,
    /// Frames dropped because the queue was full ([`FullPolicy::Drop`]).
    pub dropped_full: u64,
    /// Sends refused with `WouldBlock` because the queue was full
    /// ([`FullPolicy::Backpressure`]); the caller still holds those frames.
    pub refused_full: u64,
    /// Eventfd signals this endpoint wrote to wake its peer (at most one per arm of the
    /// peer's receive side).
    pub wakeups_sent: u64,
    /// Times this endpoint's receive side found its queue empty and armed its eventfd
    /// (i.e. went idle); a rough count of its sleeps.
    pub rx_arms: u64,
}

/// Pads and aligns a value to its own pair of cache lines (the adjacent-line prefetcher
/// pulls lines in pairs), so the producer's and consumer's words never share one.
#[repr(align(128))]
struct Padded<T>(T);

/// Per-slot header: frame length and metadata.
struct SlotHead {
    len: usize,
    meta: FrameMeta,
}

/// One direction: an SPSC ring of `mask + 1` slots.
struct Channel {
    /// Next slot the producer writes (free-running; slot = index & mask).
    tail: Padded<AtomicUsize>,
    /// Next slot the consumer reads (free-running).
    head: Padded<AtomicUsize>,
    /// Readiness handshake (module docs).
    wake: Padded<Wake>,
    mask: usize,
    stride: usize,
    max_frame: usize,
    heads: Box<[UnsafeCell<SlotHead>]>,
    data: SlotMemory,
    efd: OwnedFd,
}

struct Wake {
    /// Set by the consumer when it found the ring empty (armed); cleared by whoever claims
    /// the signal (the producer after publishing, or the consumer's own re-check).
    waiting: AtomicBool,
    /// One of the endpoints is gone.
    closed: AtomicBool,
    /// The carrier of the endpoint that sends on this channel ([`Port::set_carrier`]);
    /// on at first.
    carrier: AtomicBool,
}

/// The slots' frame bytes: one zero-initialised allocation, freed on drop.
struct SlotMemory {
    ptr: NonNull<u8>,
    len: usize,
}

impl SlotMemory {
    fn new(len: usize, prefault: bool) -> Self {
        // `vec![0; n]` asks the allocator for zeroed memory: large rings are backed by
        // untouched zero pages until first used.
        let mut boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        if prefault {
            // A write (reads would map the shared zero page) into every 4 KiB page; the
            // volatile store keeps the compiler from dropping a store of the value the
            // memory already holds.
            for i in (0..len).step_by(4096) {
                // SAFETY: `i < len`, an in-bounds, exclusively owned byte.
                unsafe { std::ptr::write_volatile(boxed.as_mut_ptr().add(i), 0) };
            }
        }
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<u8>()).expect("Box is non-null");
        SlotMemory { ptr, len }
    }
}

impl Drop for SlotMemory {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a `Box<[u8]>` of exactly `len`
        // bytes in `new`, and are dropped exactly once, here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: the channel is shared by exactly one producer endpoint and one consumer endpoint
// (enforced by `MemPort` owning one `Tx` and one `Rx` per direction, neither `Clone`). Slot
// memory and slot heads are accessed through raw pointers / `UnsafeCell` under the SPSC
// protocol: the producer writes only slots in `[tail, head + capacity)` and publishes them
// with a release store of `tail`; the consumer reads only slots in `[head, tail)` after an
// acquire load of `tail` and releases them with a release store of `head`. No slot is ever
// accessed by both sides at once.
unsafe impl Sync for Channel {}
// SAFETY: as above; the raw pointer is an owned heap allocation with no thread affinity.
unsafe impl Send for Channel {}

impl Channel {
    fn new(capacity: usize, max_frame: usize, prefault: bool) -> io::Result<Self> {
        let slots = capacity.max(1).checked_next_power_of_two().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "MemPort capacity too large")
        })?;
        let stride = max_frame.div_ceil(64).checked_mul(64).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "MemPort max_frame too large")
        })?;
        let total = slots.checked_mul(stride).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "MemPort capacity × max_frame overflows",
            )
        })?;
        let flags = rustix::event::EventfdFlags::NONBLOCK | rustix::event::EventfdFlags::CLOEXEC;
        let efd = rustix::event::eventfd(0, flags)?;
        Ok(Channel {
            tail: Padded(AtomicUsize::new(0)),
            head: Padded(AtomicUsize::new(0)),
            wake: Padded(Wake {
                // Born armed: the consumer has seen nothing, so the first push signals.
                waiting: AtomicBool::new(true),
                closed: AtomicBool::new(false),
                carrier: AtomicBool::new(true),
            }),
            mask: slots - 1,
            stride,
            max_frame,
            heads: (0..slots)
                .map(|_| {
                    UnsafeCell::new(SlotHead {
                        len: 0,
                        meta: FrameMeta::default(),
                    })
                })
                .collect(),
            data: SlotMemory::new(total, prefault),
            efd,
        })
    }

    fn capacity(&self) -> usize {
        self.mask + 1
    }

    fn signal(&self) {
        let r = rustix::io::write(&self.efd, &1u64.to_ne_bytes());
        // An eventfd write of 1 only fails when the counter would overflow, which cannot
        // happen: the consumer clears it before re-arming.
        debug_assert_eq!(r, Ok(8), "eventfd write failed");
    }

    /// Reads (and so clears) the eventfd: the number of signals written since the last
    /// read, 0 if none.
    fn read_signals(&self) -> u64 {
        let mut v = [0u8; 8];
        // EAGAIN (nothing written) is the only expected failure.
        match rustix::io::read(&self.efd, &mut v) {
            Ok(8) => u64::from_ne_bytes(v),
            _ => 0,
        }
    }
}

/// Producer half of a channel.
struct Tx {
    ch: Arc<Channel>,
    /// Our `tail` (only we write it).
    tail: usize,
    /// Last `head` we read (the consumer's index; stale is safe: it only grows).
    head_cache: usize,
}

/// Consumer half of a channel.
struct Rx {
    ch: Arc<Channel>,
    /// Our `head` (only we write it).
    head: usize,
    /// Last `tail` we read.
    tail_cache: usize,
    /// Times we armed `waiting` (including the initial arm). Each arm is claimed at most
    /// once, and each claim writes one signal.
    arms: u64,
    /// Signals read from the eventfd so far (`<= arms`).
    signals_read: u64,
    /// Re-checks of the ring before re-arming ([`MemPortConfig::arm_spin`]).
    arm_spin: u32,
}

impl Tx {
    /// Free slots, re-reading the consumer's index only when the cached view is full.
    fn free(&mut self) -> usize {
        let cap = self.ch.capacity();
        let used = self.tail.wrapping_sub(self.head_cache);
        if used < cap {
            return cap - used;
        }
        self.head_cache = self.ch.head.0.load(Ordering::Acquire);
        cap - self.tail.wrapping_sub(self.head_cache)
    }

    /// Writes one frame into the slot at our tail (not yet published).
    fn write_slot(&mut self, frame: &[u8], meta: &FrameMeta) {
        let ch = &*self.ch;
        let idx = self.tail & ch.mask;
        debug_assert!(frame.len() <= ch.max_frame);
        // SAFETY: slot `idx` is in `[tail, head + capacity)` (the caller checked `free()`),
        // so the consumer does not access it until we publish `tail`. `idx * stride +
        // frame.len() <= capacity * stride = data.len` since `frame.len() <= max_frame <=
        // stride`; the source slice cannot overlap our private allocation.
        unsafe {
            let dst = ch.data.ptr.as_ptr().add(idx * ch.stride);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len());
            *ch.heads[idx].get() = SlotHead {
                len: frame.len(),
                meta: *meta,
            };
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes everything written so far and wakes the consumer if it is armed.
    /// Returns whether a wake-up was sent.
    fn publish(&mut self) -> bool {
        let ch = &*self.ch;
        ch.tail.0.store(self.tail, Ordering::Release);
        // Dekker with the consumer's `waiting.store(true); fence; tail.load()`.
        fence(Ordering::SeqCst);
        if ch.wake.0.waiting.load(Ordering::Relaxed)
            && ch.wake.0.waiting.swap(false, Ordering::AcqRel)
        {
            ch.signal();
            return true;
        }
        false
    }
}

impl Rx {
    /// Frames available, re-reading the producer's index (and, when empty, arming the
    /// wake-up) only when the cached view is empty.
    fn available(&mut self) -> usize {
        let n = self.tail_cache.wrapping_sub(self.head);
        if n > 0 {
            return n;
        }
        let ch = &*self.ch;
        self.tail_cache = ch.tail.0.load(Ordering::Acquire);
        let n = self.tail_cache.wrapping_sub(self.head);
        if n > 0 {
            return n;
        }
        self.arm()
    }

    /// The ring looked empty: make sure the eventfd is cleared and `waiting` armed, then
    /// re-check. Returns the frames available after the re-check.
    fn arm(&mut self) -> usize {
        let ch = &*self.ch;
        let wake = &ch.wake.0;
        if wake.waiting.load(Ordering::Relaxed) {
            // Armed and unclaimed: no signal is outstanding, the fd is clear.
            return 0;
        }
        // Re-arming costs a system call here and one in the producer's next publish. While
        // frames are streaming the next one is usually a few hundred ns away: look for it
        // a little before paying them (the fd stays readable meanwhile, as it should).
        for _ in 0..self.arm_spin {
            std::hint::spin_loop();
            self.tail_cache = ch.tail.0.load(Ordering::Acquire);
            let n = self.tail_cache.wrapping_sub(self.head);
            if n > 0 {
                return n;
            }
        }
        self.signals_read += ch.read_signals();
        if self.signals_read != self.arms {
            // The last arm was claimed but its signal is not written yet (the claimer was
            // preempted between claim and write): the fd is clear now and becomes readable
            // when it writes, and the caller comes back then. Re-arming now would let that
            // late write leave the fd readable while armed.
            return 0;
        }
        self.arms += 1;
        wake.waiting.store(true, Ordering::Relaxed);
        // Dekker with the producer's `tail.store(); fence; waiting.load()`.
        fence(Ordering::SeqCst);
        self.tail_cache = ch.tail.0.load(Ordering::Acquire);
        let n = self.tail_cache.wrapping_sub(self.head);
        if n > 0 && wake.waiting.swap(false, Ordering::AcqRel) {
            // A frame slipped in before the producer saw `waiting`; we claimed our own arm,
            // so signal ourselves to keep the fd readable while frames are queued.
            ch.signal();
        }
        n
    }

    /// The frame at our head (must be available).
    fn peek(&self) -> (&[u8], FrameMeta) {
        let ch = &*self.ch;
        let idx = self.head & ch.mask;
        // SAFETY: slot `idx` is in `[head, tail)` as last loaded with acquire ordering, so
        // the producer finished writing it (release store of `tail`) and will not touch it
        // until we publish a `head` past it. `len <= max_frame <= stride` was checked by the
        // producer, so the slice lies within slot `idx` of the allocation.
        unsafe {
            let h = &*ch.heads[idx].get();
            let src = ch.data.ptr.as_ptr().add(idx * ch.stride);
            (std::slice::from_raw_parts(src, h.len), h.meta)
        }
    }

    fn advance(&mut self) {
        self.head = self.head.wrapping_add(1);
    }

    fn publish(&mut self) {
        self.ch.head.0.store(self.head, Ordering::Release);
    }
}

/// One end of an in-memory port pair: what one end sends, the other receives, in both
/// directions. See the module docs for the queue and readiness design.
///
/// Endpoints are `Send` (each may live on its own thread) but not `Clone`: each direction
/// has exactly one producer and one consumer.
pub struct MemPort {
    tx: Tx,
    rx: Rx,
    policy: FullPolicy,
    stats: MemPortStats,
}

impl std::fmt::Debug for MemPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemPort")
            .field("capacity", &self.capacity())
            .field("max_frame", &self.rx.ch.max_frame)
            .field("policy", &self.policy)
            .field("stats", &self.stats)
            .finish()
    }
}

impl MemPort {
    /// A connected pair with `capacity` frames per direction (rounded up to a power of two)
    /// of at most `max_frame` bytes, refusing sends when full ([`FullPolicy::Backpressure`]);
    /// [`MemPortConfig::new`]'s defaults.
    ///
    /// Errors: `InvalidInput` when `max_frame < 14` or the sizes overflow; the OS error
    /// when an eventfd or the slot memory cannot be had.
    pub fn pair(capacity: usize, max_frame: usize) -> io::Result<(MemPort, MemPort)> {
        Self::pair_with(MemPortConfig::new(capacity, max_frame))
    }

    /// A connected pair with the given configuration.
    pub fn pair_with(cfg: MemPortConfig) -> io::Result<(MemPort, MemPort)> {
        if cfg.max_frame < ETH_HLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "MemPort max_frame {} is shorter than an Ethernet header",
                    cfg.max_frame
                ),
            ));
        }
        let ab = Arc::new(Channel::new(cfg.capacity, cfg.max_frame, cfg.prefault)?);
        let ba = Arc::new(Channel::new(cfg.capacity, cfg.max_frame, cfg.prefault)?);
        let end = |tx: &Arc<Channel>, rx: &Arc<Channel>| MemPort {
            tx: Tx {
                ch: Arc::clone(tx),
                tail: 0,
                head_cache: 0,
            },
            rx: Rx {
                ch: Arc::clone(rx),
                head: 0,
                tail_cache: 0,
                arms: 1,
                signals_read: 0,
                arm_spin: cfg.arm_spin,
            },
            policy: cfg.full_policy,
            stats: MemPortStats::default(),
        };
        Ok((end(&ab, &ba), end(&ba, &ab)))
    }

    /// Frames each direction holds (the configured capacity rounded up to a power of two).
    pub fn capacity(&self) -> usize {
        self.tx.ch.capacity()
    }

    /// This endpoint's counters.
    pub fn stats(&self) -> MemPortStats {
        MemPortStats {
            rx_arms: self.rx.arms - 1,
            ..self.stats
        }
    }

    /// Frames queued towards this endpoint and not yet received (a snapshot).
    pub fn rx_pending(&self) -> usize {
        let ch = &*self.rx.ch;
        ch.tail.0.load(Ordering::Acquire).wrapping_sub(self.rx.head)
    }

    /// Whether the other endpoint has been dropped. Frames it sent before remain
    /// receivable; sends to it fail with `BrokenPipe`.
    pub fn peer_closed(&self) -> bool {
        self.tx.ch.wake.0.closed.load(Ordering::Relaxed)
    }

    /// This endpoint's carrier, as [`Port::set_carrier`] last set it (on at first).
    pub fn carrier(&self) -> bool {
        self.tx.ch.wake.0.carrier.load(Ordering::Relaxed)
    }

    /// The other endpoint's carrier: what a test holding the far end of a driver's port
    /// observes of the driver's link.
    pub fn peer_carrier(&self) -> bool {
        self.rx.ch.wake.0.carrier.load(Ordering::Relaxed)
    }

    fn check_frame(&self, frame: &[u8]) -> io::Result<()> {
        let max = self.tx.ch.max_frame;
        if frame.len() > max || frame.len() < ETH_HLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes outside MemPort bounds {}..={}",
                    frame.len(),
                    ETH_HLEN,
                    max
                ),
            ));
        }
        Ok(())
    }

    fn full(&mut self) -> io::Result<()> {
        match self.policy {
            FullPolicy::Backpressure => {
                self.stats.refused_full += 1;
                Err(io::ErrorKind::WouldBlock.into())
            }
            FullPolicy::Drop => {
                self.stats.dropped_full += 1;
                Ok(())
            }
        }
    }

    fn closed_err() -> io::Error {
        io::Error::new(io::ErrorKind::BrokenPipe, "MemPort peer dropped")
    }
}

impl Drop for MemPort {
    fn drop(&mut self) {
        for ch in [&self.tx.ch, &self.rx.ch] {
            ch.wake.0.closed.store(true, Ordering::Relaxed);
        }
        // Wake a peer blocked in epoll on the queue towards it so it can notice (its sends
        // now fail), through the normal claim so its readiness state stays consistent.
        let ch = &*self.tx.ch;
        if ch.wake.0.waiting.swap(false, Ordering::AcqRel) {
            ch.signal();
        }
    }
}

impl Port for MemPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, FrameMeta)>> {
        if buf.len() < self.rx.ch.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "recv buffer of {} bytes is shorter than max_frame {}",
                    buf.len(),
                    self.rx.ch.max_frame
                ),
            ));
        }
        if self.rx.available() == 0 {
            return Ok(None);
        }
        let (frame, meta) = self.rx.peek();
        let len = frame.len();
        buf[..len].copy_from_slice(frame);
        self.rx.advance();
        self.rx.publish();
        self.stats.received_frames += 1;
        self.stats.received_bytes += len as u64;
        Ok(Some((len, meta)))
    }

    fn send(&mut self, frame: &[u8], meta: &FrameMeta) -> io::Result<()> {
        self.check_frame(frame)?;
        if self.peer_closed() {
            return Err(Self::closed_err());
        }
        if self.tx.free() == 0 {
            return self.full();
        }
        self.tx.write_slot(frame, meta);
        if self.tx.publish() {
            self.stats.wakeups_sent += 1;
        }
        self.stats.sent_frames += 1;
        self.stats.sent_bytes += frame.len() as u64;
        Ok(())
    }

    fn rx_fd(&self) -> BorrowedFd<'_> {
        self.rx.ch.efd.as_fd()
    }

    fn max_frame(&self) -> usize {
        self.rx.ch.max_frame
    }

    /// Records the carrier for the peer to observe ([`MemPort::peer_carrier`]); frames
    /// still flow (what a driver does with its carrier off is the driver's to show).
    fn set_carrier(&mut self, on: bool) -> io::Result<()> {
        self.tx.ch.wake.0.carrier.store(on, Ordering::Relaxed);
        Ok(())
    }

    fn recv_batch(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8], &FrameMeta) -> ControlFlow<()>,
    ) -> io::Result<usize> {
        let mut n = 0;
        let mut bytes = 0u64;
        let mut avail = 0;
        while n < max {
            if avail == 0 {
                avail = self.rx.available();
                if avail == 0 {
                    break;
                }
            }
            let (frame, meta) = self.rx.peek();
            bytes += frame.len() as u64;
            let flow = on_frame(frame, &meta);
            self.rx.advance();
            avail -= 1;
            n += 1;
            if flow.is_break() {
                break;
            }
        }
        if n > 0 {
            self.rx.publish();
        }
        self.stats.received_frames += n as u64;
        self.stats.received_bytes += bytes;
        Ok(n)
    }

    fn send_batch(&mut self, frames: &[(&[u8], FrameMeta)]) -> io::Result<usize> {
        if frames.is_empty() {
            return Ok(0);
        }
        if self.peer_closed() {
            return Err(Self::closed_err());
        }
        let mut n = 0;
        let mut bytes = 0u64;
        let mut err = None;
        for (frame, meta) in frames {
            if let Err(e) = self.check_frame(frame) {
                err = Some(e);
                break;
            }
            if self.tx.free() == 0 {
                break;
            }
            self.tx.write_slot(frame, meta);
            bytes += frame.len() as u64;
            n += 1;
        }
        if n > 0 && self.tx.publish() {
            self.stats.wakeups_sent += 1;
        }
        self.stats.sent_frames += n as u64;
        self.stats.sent_bytes += bytes;
        if n == 0 {
            if let Some(e) = err {
                return Err(e);
            }
        }
        if n < frames.len() && err.is_none() {
            // Stopped because the queue is full.
            if self.policy == FullPolicy::Drop {
                let dropped = frames.len() - n;
                self.stats.dropped_full += dropped as u64;
                return Ok(frames.len());
            }
            if n == 0 {
                return self.full().map(|()| 0);
            }
        }
        Ok(n)
    }
}
