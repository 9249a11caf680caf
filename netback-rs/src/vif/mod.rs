//! One connected vif: its two mapped rings, its backstop buckets and the TX/RX data
//! path between the guest's grants and a [`Port`].
//!
//! Both directions read like Linux's `xenvif_tx_action` (`xenvif_tx_build_gops` →
//! `gnttab_batch_copy` → `xenvif_tx_submit`): plan a batch from one snapshot of the ring,
//! copy it with one batched grant copy, then hand the frames on and answer every slot in
//! ring order.
//!
//! * TX (guest → port, `tx_path.rs`): per chain, copy-once parse and validate its slots
//!   ([`crate::tx`]), charge the backstop bucket **before** any copy (refused frames are
//!   answered `NETIF_RSP_DROPPED` or, with the hold policy, left on the ring until the
//!   exact deficit has accrued); copy every admitted packet; send each to the port.
//! * RX (port → guest, `rx_path.rs`): police first, then place each frame into the
//!   guest's posted buffers (multi-slot when larger than a page); copy; write the
//!   responses in the slots of the requests they answer.
//!
//! Notifications only when the ring asks for them.

mod rx_path;
mod shaped;
mod stall;
mod tx_path;

pub use shaped::SharedShaped;
pub use stall::RX_STALL_TIMEOUT_NS;
pub use tx_path::DROP_ANSWERS_PER_SEC;

use hypervisor::grant::{CopySegment, GntStatus, GrantCopy, GrantMapping};
use hypervisor::platform::ring_mem;
use netport::negotiate::Allowed;
use netport::Port;
use shared_ring::credit::{
    BackCounters, CreditArea, CreditPublisher, CreditReader, Credits, CREDIT_VERSION,
};
use shared_ring::netif::{
    NetifRxBackRing, NetifRxRequest, NetifRxResponse, NetifTxBackRing, NetifTxRequest,
    NetifTxResponse,
};
use shared_ring::ring::layout;
use shared_ring::shared_bucket::{SharedDualBucket, SharedTokenBucket};
use shared_ring::{Limit, RingError};
use std::sync::Arc;
use xen_ids::VifId;

use crate::journal::{Ring, VifJournal};
use crate::meter::VifCounters;
use crate::tx::FatalReason;
use crate::vifconfig::{capped, RateCap};
use rx_path::RxPath;
use tx_path::TxPath;

/// Most packets one TX poll takes from the ring (one grant-copy call).
pub const TX_BATCH: usize = 64;
/// Frames handled per RX batch.
pub const RX_BATCH: usize = 64;
/// Largest frame delivered to a guest: a 64 KiB GSO frame spans 17 pages.
pub const MAX_RX_SLOTS: usize = 17;
/// The backstop's smallest packet burst: frames a conforming frontend may have put on the
/// ring while this backend was not running (a quarter of the ring).
pub const BACKSTOP_MIN_PACKETS: u64 = 64;
/// How long a frontend may leave a TX packet incomplete (its last slot, or extra-info,
/// asking for more, and nothing after it) before its ring counts as malformed and the
/// vif is failed. Waiting costs no CPU (the vif sleeps until the frontend notifies), so
/// this bounds only how long a stalled ring holds its vif, not netback's work. A
/// frontend publishes a packet's slots with one producer update (Linux's netback even
/// fails a packet seen incomplete at once); a few seconds leave room for one that
/// pushes mid-packet and is descheduled in between, on an overcommitted host.
pub const INCOMPLETE_TIMEOUT_NS: u64 = 5_000_000_000;
/// No limit (a vif's budget until one is set).
const UNLIMITED: Credits = Credits {
    bytes: Limit::Unlimited,
    packets: Limit::Unlimited,
    period_us: 0,
};
/// How soon to retry a port that was full.
pub(crate) const PORT_RETRY_NS: u64 = 200_000;

/// What the backstop does with a TX frame that exceeds the vif's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackstopPolicy {
    /// Answer `NETIF_RSP_DROPPED` without copying (the guest loses the frame).
    Drop,
    /// Leave the request on the ring until tokens return (backpressure, like Linux
    /// netback's `rate`): the guest's queue fills and it slows down.
    Hold,
}

/// Why a vif must be disconnected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VifFatal {
    /// A TX protocol violation.
    #[error(transparent)]
    Tx(#[from] FatalReason),
    /// An impossible producer index on the TX or RX ring.
    #[error("{0} ring: {1}")]
    Ring(&'static str, #[source] RingError),
    /// A TX packet left incomplete for [`INCOMPLETE_TIMEOUT_NS`] or longer.
    #[error(
        "TX packet left incomplete for {waited_ms} ms ({slots} slots, the last asking for more)"
    )]
    Incomplete {
        /// Slots of the packet on the ring.
        slots: u32,
        /// How long it stayed incomplete, ms.
        waited_ms: u64,
    },
}

impl VifFatal {
    fn tx_ring(e: RingError) -> Self {
        VifFatal::Ring("TX", e)
    }

    fn rx_ring(e: RingError) -> Self {
        VifFatal::Ring("RX", e)
    }
}

/// The outcome of a poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    /// The frontend asked to be notified of new responses.
    pub notify: bool,
    /// Work is left (batch limit reached, or the final check found more): poll again.
    pub more: bool,
    /// TX is held until this time (ns) — by the backstop (policy hold), a full port or
    /// the caller ([`Vif::hold_tx`]): arm a timer.
    pub hold_until: Option<u64>,
    /// Packets taken: TX request chains consumed from the ring (whatever became of
    /// them), RX frames placed in the guest's buffers.
    pub packets: usize,
}

impl Poll {
    /// Nothing done: held until `t`.
    fn held(t: u64) -> Self {
        Poll {
            hold_until: Some(t),
            ..Poll::default()
        }
    }
}

/// A vif's backstop buckets, one per vif whatever its number of queues: its queues
/// (each a [`Vif`], possibly served by different worker threads) charge them lock-free.
#[derive(Debug, Clone)]
pub struct Backstops {
    /// Guest → port (TX), charged before the grant copy.
    pub tx: Arc<SharedDualBucket>,
    /// Port → guest (RX): the RX budget, charged before the copy into the guest.
    pub rx: Arc<SharedDualBucket>,
    /// The TX requests the backstop may answer `NETIF_RSP_DROPPED` (policy `drop`):
    /// [`DROP_ANSWERS_PER_SEC`] a second for the vif, whatever its number of queues.
    pub tx_drops: Arc<SharedTokenBucket>,
    /// The shaping counters of all the vif's queues, which its first queue publishes.
    pub shaped: Arc<SharedShaped>,
}

impl Backstops {
    /// Both unlimited (until a budget is set), and a full drop allowance.
    pub fn unlimited(now_ns: u64) -> Self {
        Backstops {
            tx: Arc::new(SharedDualBucket::unlimited(now_ns)),
            rx: Arc::new(SharedDualBucket::unlimited(now_ns)),
            tx_drops: Arc::new(tx_path::drop_allowance(now_ns)),
            shaped: Arc::default(),
        }
    }
}

/// What a vif's first credit generation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstCredits {
    /// The credit-area layout version the frontend requested (1 or 2).
    pub version: u16,
    /// The TX budget.
    pub tx: Credits,
    /// The RX budget (published with version 2).
    pub rx: Credits,
}

/// A connected vif. `M` is the grant mapping type of the platform.
pub struct Vif<M> {
    id: VifId,
    tx_map: M,
    rx_map: M,
    credits_generation: Option<u32>,
    /// The budget last applied ([`Vif::set_tx_budget`]), before the static cap.
    budget: Credits,
    /// The toolstack's static TX cap (`rate`), if any.
    rate_cap: Option<RateCap>,
    /// The credit-area layout version the frontend requested (1 until told otherwise).
    credit_version: u16,
    /// The RX budget last applied ([`Vif::set_rx_budget`]), published with version 2.
    rx_budget: Credits,
    /// The shaping counters last published (version 2) and the private copy of their
    /// seqlock word.
    shaped_published: BackCounters,
    shaped_seq: u32,
    tx: TxPath,
    rx: RxPath,
}

impl<M: GrantMapping> Vif<M> {
    /// A vif over its mapped TX and RX ring pages (each one page, writable), attached at
    /// the indices in the shared pages (`BACK_RING_ATTACH` at `rsp_prod`, as Linux's
    /// `xenvif_connect_data`): on fresh rings that is index 0; on rings a previous netback
    /// served (a restart under a frontend that stayed `Connected`), TX resumes at the
    /// first unanswered request and none below is read again, and RX takes the buffers
    /// still posted. With `credits`, the credit area is published before the vif is used,
    /// continuing the generations already in it, with `rate_cap` (the toolstack's
    /// `rate`) already applied: the first generation the frontend reads is its budget.
    ///
    /// A request index more than a ring past the response index is refused.
    pub fn new(
        id: VifId,
        tx_map: M,
        rx_map: M,
        credits: Option<&Credits>,
        rate_cap: Option<RateCap>,
        now_ns: u64,
    ) -> Result<Self, VifFatal> {
        let first = credits.map(|c| FirstCredits {
            version: 1,
            tx: *c,
            rx: UNLIMITED,
        });
        Self::with_credits(id, tx_map, rx_map, first, rate_cap, now_ns)
    }

    /// [`Vif::new`] with the credit-area version the frontend requested and the first
    /// RX budget: the first generation is already in that layout and carries both
    /// budgets (netback writes only the negotiated layout, so a version-1 frontend never
    /// sees one it cannot read).
    pub fn with_credits(
        id: VifId,
        tx_map: M,
        rx_map: M,
        first: Option<FirstCredits>,
        rate_cap: Option<RateCap>,
        now_ns: u64,
    ) -> Result<Self, VifFatal> {
        let mut v = Self::queue(id, tx_map, rx_map, &Backstops::unlimited(now_ns), rate_cap)?;
        if let Some(f) = first {
            v.credit_version = f.version.clamp(1, CREDIT_VERSION);
            v.set_rx_budget(&f.rx, now_ns);
            v.credits_generation = Some(v.published_generation());
            v.set_tx_budget(&f.tx, now_ns);
        }
        Ok(v)
    }

    /// One more queue of a vif (`docs/protocol.md` §2.7) over its own mapped rings,
    /// attached as [`Vif::new`] does: it polices with the vif's `backstops` (those of
    /// its first queue, [`Vif::backstops`]), so all the vif's queues together get no
    /// more than one vif's budget and burst, and one vif's drop answers. Its TX page has
    /// no credit area.
    pub fn queue(
        id: VifId,
        tx_map: M,
        rx_map: M,
        backstops: &Backstops,
        rate_cap: Option<RateCap>,
    ) -> Result<Self, VifFatal> {
        let tx_idx = NetifTxBackRing::attach_shared(ring_mem(tx_map.mem()))
            .map_err(VifFatal::tx_ring)?
            .indices();
        let rx_idx = NetifRxBackRing::attach_shared(ring_mem(rx_map.mem()))
            .map_err(VifFatal::rx_ring)?
            .indices();
        Ok(Vif {
            id,
            tx_map,
            rx_map,
            credits_generation: None,
            budget: UNLIMITED,
            rate_cap,
            credit_version: 1,
            rx_budget: UNLIMITED,
            shaped_published: BackCounters::default(),
            shaped_seq: 0,
            tx: TxPath::new(id, tx_idx, backstops),
            rx: RxPath::new(id, rx_idx, backstops),
        })
    }

    /// The vif's backstop buckets, for its other queues ([`Vif::queue`]).
    pub fn backstops(&self) -> Backstops {
        Backstops {
            tx: self.tx.backstop.clone(),
            rx: self.rx.backstop.clone(),
            tx_drops: self.tx.drops.clone(),
            shaped: self.tx.shaped.clone(),
        }
    }

    /// The generation a previous netback last published in the credit area (0 on a
    /// fresh page, or when the area does not read as a valid snapshot): the next
    /// publication is a generation the frontend has not applied yet. Read once, from
    /// the frontend's page: a value it forged only confuses its own reader.
    fn published_generation(&self) -> u32 {
        // Read as the highest version: a snapshot of any version is accepted.
        CreditArea::in_tx_page_version(ring_mem(self.tx_map.mem()), CREDIT_VERSION)
            .ok()
            .and_then(|area| CreditReader::new(area).snapshot().ok())
            .map_or(0, |s| s.generation)
    }

    /// The frontend's request producers (TX, RX) as its shared pages hold them now: a
    /// hint of whether it published anything since the last look, never used to index
    /// a ring.
    pub fn peer_producers(&self) -> (u32, u32) {
        (
            ring_mem(self.tx_map.mem()).load(layout::REQ_PROD),
            ring_mem(self.rx_map.mem()).load(layout::REQ_PROD),
        )
    }

    /// The vif's id.
    pub fn id(&self) -> VifId {
        self.id
    }

    /// True when the frontend negotiated the credit area.
    pub fn has_credits(&self) -> bool {
        self.credits_generation.is_some()
    }

    /// The vif's counters, both directions.
    pub fn counters(&self) -> VifCounters {
        self.tx.counters + self.rx.counters
    }

    /// What the TX backstop does with excess frames.
    pub fn set_tx_policy(&mut self, policy: BackstopPolicy) {
        self.tx.policy = policy;
    }

    /// Where the polling thread's waits for a CPU are read, so that the backstops keep
    /// the tokens of those waits instead of refusing frames that queued meanwhile — on
    /// the ring from a conforming frontend, or in the port (`docs/protocol.md` §2.4;
    /// `None`: plain buckets).
    pub fn set_run_delay(&mut self, source: Option<hypervisor::cpu_wait::RunDelay>) {
        self.tx.cpu_wait.set_source(source.clone());
        self.rx.cpu_wait.set_source(source);
    }

    /// Applies a TX budget: the backstop takes the same rates with more depth — twice
    /// the burst, and at least [`BACKSTOP_MIN_PACKETS`] packets — so that a conforming
    /// frontend is never policed here even when this backend is descheduled and finds
    /// frames on the ring that the frontend admitted over that time (`docs/protocol.md`
    /// §2.4); the budget is published in the credit area when negotiated. With a static
    /// cap ([`Vif::set_rate_cap`]) the bytes limit of both is the smaller of the two (the
    /// cap without slack: it is the toolstack's hard limit).
    pub fn set_tx_budget(&mut self, c: &Credits, now_ns: u64) {
        self.budget = *c;
        let c = &Credits {
            bytes: capped(c.bytes, self.rate_cap),
            ..*c
        };
        let slack = |l: Limit, min: u64| match l {
            Limit::Unlimited => Limit::Unlimited,
            Limit::Rate { per_sec, burst } => Limit::Rate {
                per_sec,
                burst: burst
                    .saturating_mul(2)
                    .max(if per_sec == 0 { 0 } else { min }),
            },
        };
        self.tx.backstop.set_limits(
            capped(slack(c.bytes, 0), self.rate_cap),
            slack(c.packets, BACKSTOP_MIN_PACKETS),
            now_ns,
        );
        if let Some(generation) = self.credits_generation {
            let mem = ring_mem(self.tx_map.mem());
            if let Ok(area) = CreditArea::in_tx_page_version(mem, self.credit_version) {
                let mut p = CreditPublisher::resume(area, generation);
                p.publish_both(c, &self.rx_budget);
                self.credits_generation = Some(p.generation());
            }
        }
    }

    /// Publishes the shaping counters of the whole vif (every queue's,
    /// [`SharedShaped`]) in its version-2 credit area when they changed. Called after
    /// each poll of this queue, and by its worker every tick: the vif's other queues,
    /// which may run on other workers, shape frames without polling this one.
    pub fn publish_shaped(&mut self) {
        if self.credits_generation.is_none() || self.credit_version < 2 {
            return;
        }
        let now = self.tx.shaped.load();
        if now == self.shaped_published {
            return;
        }
        let mem = ring_mem(self.tx_map.mem());
        if let Ok(area) = CreditArea::in_tx_page_version(mem, self.credit_version) {
            CreditPublisher::new(area).publish_counters(&mut self.shaped_seq, &now);
            self.shaped_published = now;
        }
    }

    /// Sets (or removes) the toolstack's static TX cap (`rate`) and re-applies the last
    /// budget under it, at once.
    pub fn set_rate_cap(&mut self, cap: Option<RateCap>, now_ns: u64) {
        self.rate_cap = cap;
        let budget = self.budget;
        self.set_tx_budget(&budget, now_ns);
    }

    /// The static TX cap in force.
    pub fn rate_cap(&self) -> Option<RateCap> {
        self.rate_cap
    }

    /// Limits port → guest traffic (policed before the copy into the guest); unlimited
    /// until set.
    pub fn set_rx_limits(&mut self, bytes: Limit, packets: Limit, now_ns: u64) {
        self.rx.backstop.set_limits(bytes, packets, now_ns);
    }

    /// Applies an RX budget (the allocator's, or a static one): port → guest frames are
    /// charged against exactly these rates and bursts before they are copied into the
    /// guest (`rx_path.rs`; here the bucket is the enforcement, not a backstop behind
    /// the frontend's own, so it has no slack).
    pub fn set_rx_budget(&mut self, c: &Credits, now_ns: u64) {
        self.set_rx_limits(c.bytes, c.packets, now_ns);
        let changed = self.rx_budget != *c;
        self.rx_budget = *c;
        if changed && self.credit_version >= 2 && self.credits_generation.is_some() {
            let budget = self.budget;
            self.set_tx_budget(&budget, now_ns);
        }
    }

    /// What the RX budget does with a frame over it: drop it, or hold the port.
    pub fn set_rx_policy(&mut self, policy: BackstopPolicy) {
        self.rx.policy = policy;
    }

    /// What may be delivered to the frontend ([`Allowed::toward`] its feature keys):
    /// every frame is checked against it before it costs a buffer.
    pub fn set_rx_allowed(&mut self, allowed: Allowed) {
        self.rx.allowed = allowed;
    }

    /// Whether the frontend notifies when it posts RX buffers (`feature-rx-notify`).
    /// Without it a frame never waits for buffers: one that finds too few is dropped
    /// (`netif.h`: the backend cannot safely queue packets).
    pub fn set_rx_notify(&mut self, on: bool) {
        self.rx.rx_notify = on;
    }

    /// The frontend's self-reported counters, if it publishes them (untrusted hints).
    pub fn front_counters(&self) -> Option<shared_ring::credit::FrontCounters> {
        let generation = self.credits_generation?;
        let area = CreditArea::in_tx_page(ring_mem(self.tx_map.mem())).ok()?;
        CreditPublisher::resume(area, generation)
            .front_counters()
            .ok()
    }

    /// Records every response in `journal` before writing it into its slot, from now
    /// on (see [`crate::journal`]). On a take-over (`takeover`: rings a previous netback
    /// served), first writes back and publishes the batch the previous netback recorded
    /// there and did not publish; a journal that cannot be used is logged and set
    /// aside (the rings are then taken as they are). On a new connection the journal
    /// starts over. `refs`: the TX and RX ring references. Call before the first poll.
    pub fn set_journal(
        &mut self,
        journal: &VifJournal,
        takeover: bool,
        refs: (u32, u32),
    ) -> Result<(), VifFatal> {
        let (tx_page, rx_page) = (ring_mem(self.tx_map.mem()), ring_mem(self.rx_map.mem()));
        if takeover {
            let tx = journal.replay::<NetifTxRequest, NetifTxResponse>(Ring::Tx, tx_page, refs.0);
            let rx = journal.replay::<NetifRxRequest, NetifRxResponse>(Ring::Rx, rx_page, refs.1);
            for (ring, r) in [("TX", tx), ("RX", rx)] {
                match r {
                    Ok(0) => {}
                    Ok(n) => log::info!(
                        "{}: published {n} {ring} responses a previous netback wrote and did not publish (journal)",
                        self.id
                    ),
                    Err(e) => log::error!(
                        "{}: {e}; ignored: the ring is taken as it is",
                        self.id
                    ),
                }
            }
        } else {
            let tx = NetifTxBackRing::attach_shared(tx_page).map_err(VifFatal::tx_ring)?;
            let rx = NetifRxBackRing::attach_shared(rx_page).map_err(VifFatal::rx_ring)?;
            journal.reset(Ring::Tx, refs.0, tx.rsp_prod_pvt());
            journal.reset(Ring::Rx, refs.1, rx.rsp_prod_pvt());
        }
        self.tx.idx = NetifTxBackRing::attach_shared(tx_page)
            .map_err(VifFatal::tx_ring)?
            .indices();
        self.rx.idx = NetifRxBackRing::attach_shared(rx_page)
            .map_err(VifFatal::rx_ring)?
            .indices();
        self.tx.responder.set_log(Some(journal.log(Ring::Tx)));
        self.rx.responder.set_log(Some(journal.log(Ring::Rx)));
        Ok(())
    }

    /// Fault injection for tests: the process exits (as if killed with `kill -9`)
    /// right before writing the TX response that follows `tx` more, or the RX one
    /// that follows `rx` more: in the middle of a batch, before it is published.
    pub fn exit_after_responses(&mut self, tx: Option<u64>, rx: Option<u64>) {
        self.tx.responder.exit_after(tx);
        self.rx.responder.exit_after(rx);
    }

    /// Releases the mappings.
    pub fn into_mappings(self) -> (M, M) {
        (self.tx_map, self.rx_map)
    }

    /// Guest → port: takes at most `budget` request chains (and at most [`TX_BATCH`])
    /// from the TX ring, as Linux's `xenvif_tx_action(queue, budget)`. Chains left on
    /// the ring because the budget ran out are reported as [`Poll::more`].
    ///
    /// `clock` is netback's clock: it is read after the ring's snapshot, so that the
    /// backstop charges every request at a time after the frontend admitted it.
    pub fn tx_poll<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        clock: &dyn Fn() -> u64,
        grants: &G,
        port: &mut P,
        budget: usize,
    ) -> Result<Poll, VifFatal> {
        let page = ring_mem(self.tx_map.mem());
        let poll = self.tx.poll(page, clock, grants, port, budget);
        self.publish_shaped();
        poll
    }

    /// Port → guest: moves frames from the port into the guest's posted RX buffers.
    pub fn rx_poll<G: GrantCopy + ?Sized, P: Port + ?Sized>(
        &mut self,
        now_ns: u64,
        grants: &G,
        port: &mut P,
    ) -> Result<Poll, VifFatal> {
        let page = ring_mem(self.rx_map.mem());
        let poll = self.rx.poll(page, now_ns, grants, port);
        self.publish_shaped();
        poll
    }

    /// When TX is held (by the backstop, a full port or [`Vif::hold_tx`]), the time (ns)
    /// it may go on.
    pub fn hold_until(&self) -> Option<u64> {
        self.tx.hold_until
    }

    /// When this vif must be polled even if nothing wakes it (ns): TX held
    /// ([`Vif::hold_until`]), a TX packet left incomplete reaching its timeout, a frame
    /// waiting for RX buffers reaching the stall timeout, or a frame held for the RX
    /// budget whose deficit has accrued.
    pub fn wake_at(&self) -> Option<u64> {
        [
            self.tx.hold_until,
            self.tx.incomplete_deadline(),
            self.rx.stall.deadline(),
            self.rx.held_until(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// How long a frame may wait for RX buffers before the frontend counts as stalled
    /// and its port's carrier goes off (`None`: for ever); [`RX_STALL_TIMEOUT_NS`] until
    /// set.
    pub fn set_rx_stall_timeout(&mut self, timeout_ns: Option<u64>) {
        self.rx.stall.set_timeout(timeout_ns);
    }

    /// True while the frontend is stalled (its port's carrier off).
    pub fn rx_stalled(&self) -> bool {
        self.rx.stall.stalled_with().is_some()
    }

    /// Reads no TX request before `until` (ns): a caller that rations the backend's work
    /// (e.g. [`crate::emulation::EmulatedBackendRate`]) holds the vif this way.
    pub fn hold_tx(&mut self, until: u64) {
        self.tx.hold_until = Some(until);
    }

    /// True when a frame waits: for RX buffers from the guest, or for the RX budget
    /// (policy hold). Either way the port need not be read until it goes.
    pub fn rx_starved(&self) -> bool {
        self.rx.starved()
    }
}

/// Whether a frame of `cost` that `bucket` just refused lacked byte tokens (then it is
/// counted against the bits/s budget; else against the packets/s budget).
fn short_of_bytes(bucket: &SharedDualBucket, now_ns: u64, cost: &shared_ring::WireCost) -> bool {
    bucket.bytes.available(now_ns) < cost.bytes
}

/// Gives back to `bucket` a part of an earlier charge.
fn refund(bucket: &SharedDualBucket, cost: &shared_ring::WireCost) {
    bucket.bytes.refund(cost.bytes);
    bucket.packets.refund(cost.packets);
}

/// One batched grant copy between `arena` and the peer's grants. A call that fails as a
/// whole fails every segment, so each packet is then answered as a failed copy.
fn grant_copy<G: GrantCopy + ?Sized>(
    grants: &G,
    arena: &mut [u8],
    segs: &mut [CopySegment],
    id: VifId,
    dir: &str,
) {
    if segs.is_empty() {
        return;
    }
    if let Err(e) = grants.copy(arena, segs) {
        log::warn!("{id}: {dir} grant copy failed as a whole: {e}");
        for s in segs {
            s.status = GntStatus::GENERAL_ERROR;
        }
    }
}
