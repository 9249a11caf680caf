//! The generic shared ring of `xen/include/public/io/ring.h`.
//!
//! Two layers, as in `ring.h` itself:
//!
//! * [`layout`]: the shared page (`struct __name##_sring`) and the ring-size arithmetic;
//! * this module: the front end (`__name##_front_ring`: produces requests, consumes
//!   responses) and the back end (`__name##_back_ring`: consumes requests, produces
//!   responses), with the macros' semantics and memory ordering:
//!
//! | `ring.h`                               | here                                        |
//! |----------------------------------------|---------------------------------------------|
//! | `XEN_FRONT_RING_INIT` / `FRONT_RING_ATTACH` | [`FrontRing::init`] / [`FrontRing::attach`] |
//! | `BACK_RING_INIT` / `BACK_RING_ATTACH`  | [`BackRing::attach`] (index 0 for init)     |
//! | `BACK_RING_ATTACH` at `sring->rsp_prod` | [`BackRing::attach_shared`] (checked)      |
//! | `RING_FREE_REQUESTS`, `RING_FULL`      | [`FrontRing::free_requests`], [`FrontRing::is_full`] |
//! | `RING_GET_REQUEST` + write             | [`FrontRing::put_request`]                  |
//! | `RING_COPY_REQUEST`                    | [`Pending::copy`] (copy-once, word by word)  |
//! | `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`  | [`FrontRing::push_requests_and_check_notify`] |
//! | `RING_FINAL_CHECK_FOR_REQUESTS`        | [`BackRing::final_check_for_requests`] ([`BackRing::final_check_for_requests_after`] past requests it cannot use yet) |
//! | `RING_HAS_UNCONSUMED_REQUESTS`         | [`BackRing::unconsumed_requests`]           |
//! | `RING_REQUEST_PROD_OVERFLOW`           | checked on every read of `req_prod`         |
//! | `RING_RESPONSE_PROD_OVERFLOW`          | checked on every read of `rsp_prod`         |
//!
//! Memory ordering: a producer stores its entries, then the producer index with
//! `Release` (`xen_wmb()` then store); a consumer loads the producer index with
//! `Acquire` (load then `xen_rmb()`) before copying entries. Where `ring.h` uses a full
//! `xen_mb()` — between publishing an index and reading the peer's event index, and
//! between setting an event index and re-reading the producer index — this code uses
//! `fence(SeqCst)`, the only fence that orders a store before a later load.
//!
//! Everything the peer writes is untrusted: a producer index that claims more entries
//! than the ring can hold is reported as [`RingError::ProducerOverflow`] instead of being
//! followed, so a consumer loop is always bounded by the ring size.

pub mod entry;
pub mod layout;

#[cfg(test)]
mod attach_tests;

use core::marker::PhantomData;
use core::sync::atomic::{fence, Ordering};

use crate::page::SharedMem;
pub use entry::RingEntry;
pub use layout::RingIdx;

/// Why a ring operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The shared memory is too small (or unaligned) for even one entry.
    TooSmall {
        /// Bytes offered.
        len: usize,
    },
    /// The peer's producer index claims more entries than the ring can hold
    /// (`RING_REQUEST_PROD_OVERFLOW` / `RING_RESPONSE_PROD_OVERFLOW`): the peer is
    /// broken or hostile.
    ProducerOverflow {
        /// The producer index read from shared memory.
        prod: RingIdx,
        /// Our consumer-side reference index (`rsp_prod_pvt` or `rsp_cons`).
        base: RingIdx,
        /// Ring size.
        size: u32,
    },
    /// The peer produced more responses than requests were made.
    UnrequestedResponse {
        /// The producer index read from shared memory.
        rsp_prod: RingIdx,
        /// Our private request producer index.
        req_prod_pvt: RingIdx,
    },
    /// No free slot for another request (front) or no consumed request left to answer
    /// (back).
    Full,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RingError::TooSmall { len } => write!(f, "{len} bytes cannot hold a shared ring"),
            RingError::ProducerOverflow { prod, base, size } => write!(
                f,
                "peer producer index {prod} is {} entries past {base}, more than the ring's {size}",
                prod.wrapping_sub(base)
            ),
            RingError::UnrequestedResponse {
                rsp_prod,
                req_prod_pvt,
            } => write!(
                f,
                "peer response index {rsp_prod} is past our request index {req_prod_pvt}"
            ),
            RingError::Full => write!(f, "ring full"),
        }
    }
}

impl core::error::Error for RingError {}

/// The shared half of a ring: header and entries, in shared memory.
///
/// `Req` and `Rsp` are the request and response types of `DEFINE_RING_TYPES`; a slot is
/// their union (the larger of the two).
pub struct Sring<'a, Req, Rsp> {
    mem: SharedMem<'a>,
    nr_ents: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<Req, Rsp> Clone for Sring<'_, Req, Rsp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Req, Rsp> Copy for Sring<'_, Req, Rsp> {}

impl<'a, Req: RingEntry, Rsp: RingEntry> Sring<'a, Req, Rsp> {
    /// Bytes of one slot: `sizeof(union __name##_sring_entry)`.
    pub const SLOT_BYTES: usize = 4 * if Req::WORDS > Rsp::WORDS {
        Req::WORDS
    } else {
        Rsp::WORDS
    };

    /// Views `mem` (normally one page) as a shared ring; the ring size is computed from
    /// its length as `__RING_SIZE` does.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let nr_ents = layout::ring_size(mem.len(), Self::SLOT_BYTES);
        if nr_ents == 0 {
            return Err(RingError::TooSmall { len: mem.len() });
        }
        Ok(Sring {
            mem,
            nr_ents,
            _types: PhantomData,
        })
    }

    /// `SHARED_RING_INIT`: both producer indices 0, both event indices 1, `pvt` and
    /// `__pad` zeroed. Only the frontend initialises a ring.
    pub fn init(&self) {
        self.mem.store(layout::REQ_PROD, 0);
        self.mem.store(layout::RSP_PROD, 0);
        self.mem.store(layout::REQ_EVENT, 1);
        self.mem.store(layout::RSP_EVENT, 1);
        let mut off = layout::PVT;
        while off < layout::RING {
            self.mem.store(off, 0);
            off += 4;
        }
    }

    /// Number of entries (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.nr_ents
    }

    /// The memory this ring lives in (the whole page, including any unused tail).
    pub fn mem(&self) -> SharedMem<'a> {
        self.mem
    }

    /// Byte offset of the slot of index `idx`.
    #[inline(always)]
    fn slot(&self, idx: RingIdx) -> usize {
        layout::RING + (idx & (self.nr_ents - 1)) as usize * Self::SLOT_BYTES
    }

    #[inline(always)]
    fn load_acquire(&self, off: usize) -> u32 {
        self.mem.word(off).load(Ordering::Acquire)
    }

    #[inline(always)]
    fn store_release(&self, off: usize, v: u32) {
        self.mem.word(off).store(v, Ordering::Release)
    }

    /// Copies the slot at `idx` as a `T` (copy-once). `T` may be any entry that fits in
    /// a slot, e.g. a `netif_extra_info` in a TX request slot; a `T` larger than a slot
    /// does not compile.
    #[inline(always)]
    pub fn copy_slot<T: RingEntry>(&self, idx: RingIdx) -> T {
        const {
            assert!(
                T::WORDS * 4 <= Self::SLOT_BYTES,
                "entry larger than a ring slot"
            )
        };
        T::read(&self.mem, self.slot(idx))
    }

    /// Writes a `T` into the slot at `idx` (only its `sizeof(T)` bytes, as C does).
    #[inline(always)]
    pub fn write_slot<T: RingEntry>(&self, idx: RingIdx, value: &T) {
        const {
            assert!(
                T::WORDS * 4 <= Self::SLOT_BYTES,
                "entry larger than a ring slot"
            )
        };
        value.write(&self.mem, self.slot(idx));
    }

    /// The shared `req_prod` (relaxed; for diagnostics).
    pub fn req_prod(&self) -> RingIdx {
        self.mem.load(layout::REQ_PROD)
    }
    /// The shared `req_event`.
    pub fn req_event(&self) -> RingIdx {
        self.mem.load(layout::REQ_EVENT)
    }
    /// The shared `rsp_prod`.
    pub fn rsp_prod(&self) -> RingIdx {
        self.mem.load(layout::RSP_PROD)
    }
    /// The shared `rsp_event`.
    pub fn rsp_event(&self) -> RingIdx {
        self.mem.load(layout::RSP_EVENT)
    }

    /// `RING_PUSH_*_AND_CHECK_NOTIFY` for the producer index at `prod_off` and the
    /// peer's event index at `event_off`.
    #[inline(always)]
    fn push_and_check_notify(&self, prod_off: usize, event_off: usize, new: RingIdx) -> bool {
        let old = self.mem.load(prod_off); // we are the only writer of this index
        self.store_release(prod_off, new); // xen_wmb(); prod = new
        fence(Ordering::SeqCst); // xen_mb(): peer sees new entries before we read event
        let event = self.mem.load(event_off);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }
}

/// A snapshot of entries the peer has produced and we have not consumed.
///
/// The producer index is read once, when the snapshot is taken; the entries are then
/// copied one at a time with [`Pending::copy`]. Nothing is consumed until
/// [`Pending::consume`].
pub struct Pending<'r, 'a, Req, Rsp> {
    sring: &'r Sring<'a, Req, Rsp>,
    cons: &'r mut RingIdx,
    len: u32,
}

impl<Req: RingEntry, Rsp: RingEntry> Pending<'_, '_, Req, Rsp> {
    /// Number of entries available in this snapshot.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when nothing is available.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The consumer index of the first available entry.
    pub fn cons(&self) -> RingIdx {
        *self.cons
    }

    /// Copies the `i`-th available entry (0 = the oldest) as a `T`, once.
    ///
    /// Returns `None` when `i` is not within the snapshot.
    #[inline(always)]
    pub fn copy<T: RingEntry>(&self, i: u32) -> Option<T> {
        if i >= self.len {
            return None;
        }
        Some(self.sring.copy_slot(self.cons.wrapping_add(i)))
    }

    /// Marks the first `n` available entries consumed (at most [`Pending::len`]).
    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        let n = n.min(self.len);
        *self.cons = self.cons.wrapping_add(n);
        self.len -= n;
    }
}

/// The private state of a [`FrontRing`] (`req_prod_pvt`, `rsp_cons`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrontIndices {
    /// `req_prod_pvt`.
    pub req_prod_pvt: RingIdx,
    /// `rsp_cons`.
    pub rsp_cons: RingIdx,
}

/// The private state of a [`BackRing`] (`rsp_prod_pvt`, `req_cons`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackIndices {
    /// `rsp_prod_pvt`.
    pub rsp_prod_pvt: RingIdx,
    /// `req_cons`.
    pub req_cons: RingIdx,
}

/// The front end of a ring (`__name##_front_ring`): produces requests, consumes
/// responses. Private state: `req_prod_pvt`, `rsp_cons`.
pub struct FrontRing<'a, Req, Rsp> {
    sring: Sring<'a, Req, Rsp>,
    req_prod_pvt: RingIdx,
    rsp_cons: RingIdx,
}

impl<'a, Req: RingEntry, Rsp: RingEntry> FrontRing<'a, Req, Rsp> {
    /// `XEN_FRONT_RING_INIT`: initialises the shared ring and attaches at index 0.
    pub fn init(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let sring = Sring::new(mem)?;
        sring.init();
        Ok(Self::from_sring(sring, 0))
    }

    /// `FRONT_RING_ATTACH`: attaches to an existing shared ring with both private
    /// indices at `idx` (the shared header is left as it is).
    pub fn attach(mem: SharedMem<'a>, idx: RingIdx) -> Result<Self, RingError> {
        Ok(Self::from_sring(Sring::new(mem)?, idx))
    }

    fn from_sring(sring: Sring<'a, Req, Rsp>, idx: RingIdx) -> Self {
        FrontRing {
            sring,
            req_prod_pvt: idx,
            rsp_cons: idx,
        }
    }

    /// Re-attaches with private indices saved by [`FrontRing::indices`]: a driver that
    /// owns the mapping keeps only the indices between polls.
    pub fn resume(mem: SharedMem<'a>, indices: FrontIndices) -> Result<Self, RingError> {
        Ok(FrontRing {
            sring: Sring::new(mem)?,
            req_prod_pvt: indices.req_prod_pvt,
            rsp_cons: indices.rsp_cons,
        })
    }

    /// The private indices, to [`FrontRing::resume`] later.
    pub fn indices(&self) -> FrontIndices {
        FrontIndices {
            req_prod_pvt: self.req_prod_pvt,
            rsp_cons: self.rsp_cons,
        }
    }

    /// The shared ring.
    pub fn sring(&self) -> &Sring<'a, Req, Rsp> {
        &self.sring
    }

    /// `RING_SIZE`.
    pub fn size(&self) -> u32 {
        self.sring.nr_ents
    }

    /// Private request producer index (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.req_prod_pvt
    }

    /// Private response consumer index (`rsp_cons`).
    pub fn rsp_cons(&self) -> RingIdx {
        self.rsp_cons
    }

    /// `RING_FREE_REQUESTS`: slots not holding an outstanding request.
    pub fn free_requests(&self) -> u32 {
        self.size()
            .wrapping_sub(self.req_prod_pvt.wrapping_sub(self.rsp_cons))
    }

    /// `RING_FULL`.
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Writes `req` at `req_prod_pvt` and advances it (not yet visible to the peer:
    /// see [`FrontRing::push_requests_and_check_notify`]).
    #[inline(always)]
    pub fn put_request(&mut self, req: &Req) -> Result<(), RingError> {
        self.put_request_as(req)
    }

    /// Like [`FrontRing::put_request`] for anything that overlays a request slot (a
    /// `netif_extra_info` in the TX ring).
    #[inline(always)]
    pub fn put_request_as<T: RingEntry>(&mut self, value: &T) -> Result<(), RingError> {
        if self.is_full() {
            return Err(RingError::Full);
        }
        self.sring.write_slot(self.req_prod_pvt, value);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_REQUESTS`: publishes the requests written so far.
    pub fn push_requests(&mut self) {
        self.sring
            .store_release(layout::REQ_PROD, self.req_prod_pvt);
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the requests written so far and
    /// returns whether the backend asked to be notified of them (`req_event`).
    #[inline]
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        self.sring
            .push_and_check_notify(layout::REQ_PROD, layout::REQ_EVENT, self.req_prod_pvt)
    }

    /// Reads `rsp_prod` once and checks it (`RING_RESPONSE_PROD_OVERFLOW`, and no more
    /// responses than requests made).
    #[inline(always)]
    fn read_rsp_prod(&self) -> Result<RingIdx, RingError> {
        let prod = self.sring.load_acquire(layout::RSP_PROD);
        let avail = prod.wrapping_sub(self.rsp_cons);
        if avail > self.size() {
            return Err(RingError::ProducerOverflow {
                prod,
                base: self.rsp_cons,
                size: self.size(),
            });
        }
        if avail > self.req_prod_pvt.wrapping_sub(self.rsp_cons) {
            return Err(RingError::UnrequestedResponse {
                rsp_prod: prod,
                req_prod_pvt: self.req_prod_pvt,
            });
        }
        Ok(prod)
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`: the number of unconsumed responses, after
    /// checking the backend's producer index.
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        Ok(self.read_rsp_prod()?.wrapping_sub(self.rsp_cons))
    }

    /// A snapshot of the unconsumed responses (one read of `rsp_prod`).
    #[inline(always)]
    pub fn responses(&mut self) -> Result<Pending<'_, 'a, Req, Rsp>, RingError> {
        let len = self.unconsumed_responses()?;
        Ok(Pending {
            sring: &self.sring,
            cons: &mut self.rsp_cons,
            len,
        })
    }

    /// Consumes and returns the oldest unconsumed response, if any.
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        let mut p = self.responses()?;
        let r = p.copy::<Rsp>(0);
        if r.is_some() {
            p.consume(1);
        }
        Ok(r)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: before sleeping, asks to be notified of the
    /// next response (`rsp_event = rsp_cons + 1`) and re-checks; true means responses
    /// arrived meanwhile and the caller must not sleep.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? != 0 {
            return Ok(true);
        }
        self.sring
            .mem
            .store(layout::RSP_EVENT, self.rsp_cons.wrapping_add(1));
        fence(Ordering::SeqCst); // xen_mb()
        Ok(self.unconsumed_responses()? != 0)
    }
}

/// The back end of a ring (`__name##_back_ring`): consumes requests, produces
/// responses. Private state: `rsp_prod_pvt`, `req_cons`.
pub struct BackRing<'a, Req, Rsp> {
    sring: Sring<'a, Req, Rsp>,
    rsp_prod_pvt: RingIdx,
    req_cons: RingIdx,
}

impl<'a, Req: RingEntry, Rsp: RingEntry> BackRing<'a, Req, Rsp> {
    /// `BACK_RING_ATTACH` (`BACK_RING_INIT` is `idx` = 0): the backend never initialises
    /// the shared header; it attaches to the frontend's.
    pub fn attach(mem: SharedMem<'a>, idx: RingIdx) -> Result<Self, RingError> {
        Ok(BackRing {
            sring: Sring::new(mem)?,
            rsp_prod_pvt: idx,
            req_cons: idx,
        })
    }

    /// `BACK_RING_ATTACH` at the shared `rsp_prod`, as Linux's backends take over a ring
    /// a previous backend instance served (`xenvif_map_frontend_data_rings`): every
    /// request below `rsp_prod` is answered and never read again; the requests between
    /// `rsp_prod` and `req_prod` are taken (again) from the first. Fresh rings
    /// (`SHARED_RING_INIT`) attach at 0, as with `BACK_RING_INIT`.
    ///
    /// Both indices are the frontend's to write: a `req_prod` more than a ring ahead of
    /// `rsp_prod` is [`RingError::ProducerOverflow`].
    pub fn attach_shared(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let sring = Sring::new(mem)?;
        let rsp_prod = sring.load_acquire(layout::RSP_PROD);
        let ring = BackRing {
            sring,
            rsp_prod_pvt: rsp_prod,
            req_cons: rsp_prod,
        };
        ring.read_req_prod()?;
        Ok(ring)
    }

    /// Re-attaches with private indices saved by [`BackRing::indices`].
    pub fn resume(mem: SharedMem<'a>, indices: BackIndices) -> Result<Self, RingError> {
        Ok(BackRing {
            sring: Sring::new(mem)?,
            rsp_prod_pvt: indices.rsp_prod_pvt,
            req_cons: indices.req_cons,
        })
    }

    /// The private indices, to [`BackRing::resume`] later.
    pub fn indices(&self) -> BackIndices {
        BackIndices {
            rsp_prod_pvt: self.rsp_prod_pvt,
            req_cons: self.req_cons,
        }
    }

    /// The shared ring.
    pub fn sring(&self) -> &Sring<'a, Req, Rsp> {
        &self.sring
    }

    /// `RING_SIZE`.
    pub fn size(&self) -> u32 {
        self.sring.nr_ents
    }

    /// Private request consumer index (`req_cons`).
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// Private response producer index (`rsp_prod_pvt`).
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt
    }

    /// Reads `req_prod` once and checks it (`RING_REQUEST_PROD_OVERFLOW`).
    #[inline(always)]
    fn read_req_prod(&self) -> Result<RingIdx, RingError> {
        let prod = self.sring.load_acquire(layout::REQ_PROD);
        if prod.wrapping_sub(self.rsp_prod_pvt) > self.size() {
            return Err(RingError::ProducerOverflow {
                prod,
                base: self.rsp_prod_pvt,
                size: self.size(),
            });
        }
        Ok(prod)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`: `min(req_prod - req_cons, size - (req_cons -
    /// rsp_prod_pvt))`, after checking the frontend's producer index.
    pub fn unconsumed_requests(&self) -> Result<u32, RingError> {
        let prod = self.read_req_prod()?;
        let req = prod.wrapping_sub(self.req_cons);
        let rsp = self
            .size()
            .wrapping_sub(self.req_cons.wrapping_sub(self.rsp_prod_pvt));
        Ok(req.min(rsp))
    }

    /// A snapshot of the unconsumed requests (one read of `req_prod`).
    #[inline(always)]
    pub fn requests(&mut self) -> Result<Pending<'_, 'a, Req, Rsp>, RingError> {
        let len = self.unconsumed_requests()?;
        Ok(Pending {
            sring: &self.sring,
            cons: &mut self.req_cons,
            len,
        })
    }

    /// Consumes and returns the oldest unconsumed request, if any (copy-once).
    pub fn take_request(&mut self) -> Result<Option<Req>, RingError> {
        let mut p = self.requests()?;
        let r = p.copy::<Req>(0);
        if r.is_some() {
            p.consume(1);
        }
        Ok(r)
    }

    /// Number of consumed requests not yet answered.
    pub fn unanswered(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Writes `rsp` at `rsp_prod_pvt` and advances it (not yet visible to the peer).
    /// Refused when every consumed request already has a response.
    #[inline(always)]
    pub fn put_response(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::Full);
        }
        self.sring.write_slot(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Like [`BackRing::put_response`] for anything that overlays a response slot (a
    /// `netif_extra_info` in the RX ring, answering a consumed request).
    #[inline(always)]
    pub fn put_response_as<T: RingEntry>(&mut self, value: &T) -> Result<(), RingError> {
        if self.unanswered() == 0 {
            return Err(RingError::Full);
        }
        self.sring.write_slot(self.rsp_prod_pvt, value);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES`.
    pub fn push_responses(&mut self) {
        self.sring
            .store_release(layout::RSP_PROD, self.rsp_prod_pvt);
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the responses written so far
    /// and returns whether the frontend asked to be notified (`rsp_event`).
    #[inline]
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        self.sring
            .push_and_check_notify(layout::RSP_PROD, layout::RSP_EVENT, self.rsp_prod_pvt)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: before sleeping, asks to be notified of the next
    /// request (`req_event = req_cons + 1`) and re-checks; true means requests arrived
    /// meanwhile and the caller must not sleep.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_requests()? != 0 {
            return Ok(true);
        }
        self.sring
            .mem
            .store(layout::REQ_EVENT, self.req_cons.wrapping_add(1));
        fence(Ordering::SeqCst); // xen_mb()
        Ok(self.unconsumed_requests()? != 0)
    }

    /// [`BackRing::final_check_for_requests`] for a consumer that has looked at the
    /// first `seen` unconsumed requests and cannot use them until more arrive (an
    /// incomplete packet, too few posted buffers): asks to be notified of the request
    /// after them (`req_event = req_cons + seen + 1`) and re-checks; true means more than
    /// `seen` requests are there now and the caller must not sleep. With `seen` = 0 this
    /// is `RING_FINAL_CHECK_FOR_REQUESTS`.
    pub fn final_check_for_requests_after(&mut self, seen: u32) -> Result<bool, RingError> {
        if self.unconsumed_requests()? > seen {
            return Ok(true);
        }
        let event = self.req_cons.wrapping_add(seen).wrapping_add(1);
        self.sring.mem.store(layout::REQ_EVENT, event);
        fence(Ordering::SeqCst); // xen_mb()
        Ok(self.unconsumed_requests()? > seen)
    }
}
