//! Response journals: what a netback killed in the middle of a batch leaves for the next.
//!
//! A backend answers a batch by writing each response into the slot of the request it
//! answers (netif's rings share slots between requests and responses) and publishes
//! them with one store of `rsp_prod` at the end. Killed in between (`kill -9`), it
//! leaves slots in `[rsp_prod, req_prod)` that hold responses, not requests; the next
//! netback, attaching at `rsp_prod`, would read them as requests (a TX response's
//! id/status lands on the request's `gref`; an RX response overwrites the whole request).
//!
//! So every response is first recorded here: one small file per queue of a vif in
//! netback's runtime directory (`<dir>/<domid>.<devid>.journal` for queue 0, as before
//! multi-queue, so that a netback upgraded from one that kept one journal per vif still
//! takes its single-queue vifs over; `<dir>/<domid>.<devid>.q<k>.journal` for queue
//! k ≥ 1), mapped `MAP_SHARED`, whose page-cache pages outlive the process. Each queue
//! has its own file and mapping, written by the one thread that serves the queue:
//! queues share nothing here. Each ring of a queue has a page: the ring reference it
//! belongs to, the batch's start (the `rsp_prod` published before it), how many
//! responses of the batch are recorded, and those responses. A response is recorded
//! before its slot is written; once `rsp_prod` is published the batch is closed (count
//! 0, start = the new `rsp_prod`). A few stores per response, no system call.
//!
//! On a take-over ([`VifJournal::replay`]) a journal whose ring reference matches and
//! whose start is the shared `rsp_prod` has its responses written back into their slots
//! and published: each request the killed netback answered is answered once (its frame
//! already went out) and never read again. A journal whose start the shared `rsp_prod`
//! already passed is ignored.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Arc;

use hypervisor::grant::SharedMem;
use hypervisor::platform::ring_mem;
use shared_ring::ring::entry::MAX_ENTRY_WORDS;
use shared_ring::ring::{BackIndices, BackRing, RingEntry, RingIdx, Sring};
use xen_ids::VifId;

/// The journal's identification (the first word of each ring's page).
const MAGIC: u32 = 0x314a_424e; // "NBJ1"
/// Bytes per ring (one page).
const RING_BYTES: usize = 4096;
/// Word offsets (bytes) of a ring page's header.
const H_MAGIC: usize = 0;
const H_REF: usize = 4;
const H_START: usize = 8;
const H_COUNT: usize = 12;
/// Where the recorded responses start; each takes [`ENTRY_WORDS`] words.
const ENTRIES: usize = 32;
/// Words per recorded response (the largest netif response or extra-info slot).
const ENTRY_WORDS: usize = 2;
/// Most responses one batch records (a one-page netif ring has 256 slots).
pub const MAX_BATCH: u32 = ((RING_BYTES - ENTRIES) / (4 * ENTRY_WORDS)) as u32;

/// Which ring of a vif.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// The TX ring (first page).
    Tx = 0,
    /// The RX ring (second page).
    Rx = 1,
}

/// A journal that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening, sizing or mapping the file failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The file's content does not describe a batch of this ring.
    #[error("{0} ring journal: {1}")]
    Invalid(&'static str, &'static str),
}

/// The journal file of one queue of a vif, mapped.
#[derive(Clone)]
pub struct VifJournal {
    map: Arc<SharedMem>,
}

impl std::fmt::Debug for VifJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VifJournal")
    }
}

/// The journal file of queue `queue` of vif `id` in `dir`.
pub fn journal_path(dir: &Path, id: VifId, queue: u32) -> PathBuf {
    match queue {
        0 => dir.join(format!("{}.{}.journal", id.domid.0, id.devid)),
        k => dir.join(format!("{}.{}.q{k}.journal", id.domid.0, id.devid)),
    }
}

/// The queue whose journal file of vif `id` is named `name` (`None`: not one of its
/// journals).
fn queue_of(id: VifId, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(&format!("{}.{}.", id.domid.0, id.devid))?;
    if rest == "journal" {
        return Some(0);
    }
    let k = rest.strip_prefix('q')?.strip_suffix(".journal")?;
    // Only as `journal_path` writes it (no sign, no leading zero).
    if k.starts_with('0') || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok().filter(|k| *k >= 1)
}

/// Deletes the journals of vif `id`'s queues from `first` on; a missing file or
/// directory is fine.
fn remove_from(dir: &Path, id: VifId, first: u32) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(k) = name.to_str().and_then(|n| queue_of(id, n)) else {
            continue;
        };
        if k >= first {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Deletes every journal of vif `id` in `dir` (the vif is gone); missing files are fine.
pub fn remove_journal(dir: &Path, id: VifId) -> io::Result<()> {
    remove_from(dir, id, 0)
}

/// Deletes the journals of vif `id`'s queues `queues` and above: the vif connected with
/// `queues` queues, and what an earlier connection with more left there is stale.
pub fn remove_stale_journals(dir: &Path, id: VifId, queues: u32) -> io::Result<()> {
    remove_from(dir, id, queues.max(1))
}

impl VifJournal {
    /// Opens (creating `dir` and the file if needed, mode 0600) and maps the journal of
    /// queue `queue` of vif `id`. Its content is left as it is, for
    /// [`VifJournal::replay`].
    pub fn open(dir: &Path, id: VifId, queue: u32) -> Result<Self, JournalError> {
        let path = journal_path(dir, id, queue);
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io_err)?
        };
        let len = 2 * RING_BYTES;
        if file.metadata().map_err(io_err)?.len() != len as u64 {
            file.set_len(len as u64).map_err(io_err)?;
        }
        let map = SharedMem::map_fd(file.as_fd(), len, 0, true).map_err(io_err)?;
        Ok(VifJournal { map: Arc::new(map) })
    }

    /// The recorder of `ring`.
    pub(crate) fn log(&self, ring: Ring) -> RingLog {
        RingLog {
            map: self.map.clone(),
            base: ring as usize * RING_BYTES,
        }
    }

    /// On a take-over: writes back and publishes the responses of a batch the previous
    /// netback recorded for the ring in `ring_page` (reference `ring_ref`) but did not
    /// publish. Returns how many it published (0: nothing to do). Then the journal
    /// records this netback's batches from the shared `rsp_prod`.
    pub fn replay<Req: RingEntry, Rsp: RingEntry>(
        &self,
        ring: Ring,
        ring_page: shared_ring::SharedMem<'_>,
        ring_ref: u32,
    ) -> Result<u32, JournalError> {
        let log = self.log(ring);
        let out = log.replay::<Req, Rsp>(ring, ring_page, ring_ref);
        let sring = Sring::<Req, Rsp>::new(ring_page).ok();
        log.reset(ring_ref, sring.map_or(0, |s| s.rsp_prod()));
        out
    }

    /// A fresh connection: the journal of `ring` starts over at `rsp_prod` (whatever it
    /// held belongs to rings the frontend no longer uses).
    pub fn reset(&self, ring: Ring, ring_ref: u32, rsp_prod: RingIdx) {
        self.log(ring).reset(ring_ref, rsp_prod);
    }
}

/// One ring's page of a [`VifJournal`].
#[derive(Clone)]
pub(crate) struct RingLog {
    map: Arc<SharedMem>,
    base: usize,
}

impl std::fmt::Debug for RingLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RingLog@{}", self.base)
    }
}

impl RingLog {
    fn mem(&self) -> shared_ring::SharedMem<'_> {
        // In range: the mapping holds two ring pages.
        ring_mem(&self.map)
            .slice(self.base, RING_BYTES)
            .expect("journal page")
    }

    /// Records the response about to be written at ring index `idx`. Call before the
    /// slot is written.
    #[inline]
    pub(crate) fn record<T: RingEntry>(&self, idx: RingIdx, value: &T) {
        let m = self.mem();
        let i = idx.wrapping_sub(m.load(H_START));
        if i >= MAX_BATCH || T::WORDS > ENTRY_WORDS {
            // Cannot happen: a batch answers at most a ring of requests.
            return;
        }
        let mut words = [0u32; MAX_ENTRY_WORDS];
        value.to_words(&mut words[..T::WORDS]);
        let at = ENTRIES + 4 * ENTRY_WORDS * i as usize;
        for (k, w) in words[..ENTRY_WORDS].iter().enumerate() {
            m.store(at + 4 * k, *w);
        }
        m.word(H_COUNT).store(i + 1, Ordering::Release);
        // The slot is written after this (in program order, which is what a process
        // killed between two instructions leaves behind in the page cache).
        compiler_fence(Ordering::SeqCst);
    }

    /// The batch is published up to `rsp_prod`: the next one starts there.
    #[inline]
    pub(crate) fn published(&self, rsp_prod: RingIdx) {
        let m = self.mem();
        m.word(H_COUNT).store(0, Ordering::Release);
        m.word(H_START).store(rsp_prod, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
    }

    fn reset(&self, ring_ref: u32, rsp_prod: RingIdx) {
        let m = self.mem();
        m.word(H_COUNT).store(0, Ordering::Release);
        m.store(H_REF, ring_ref);
        m.store(H_START, rsp_prod);
        m.word(H_MAGIC).store(MAGIC, Ordering::Release);
    }

    fn replay<Req: RingEntry, Rsp: RingEntry>(
        &self,
        ring: Ring,
        ring_page: shared_ring::SharedMem<'_>,
        ring_ref: u32,
    ) -> Result<u32, JournalError> {
        let name = match ring {
            Ring::Tx => "TX",
            Ring::Rx => "RX",
        };
        let bad = |why| JournalError::Invalid(name, why);
        let m = self.mem();
        // Copied once.
        let (magic, jref, start, count) = (
            m.load(H_MAGIC),
            m.load(H_REF),
            m.load(H_START),
            m.load(H_COUNT),
        );
        if magic == 0 && count == 0 {
            return Ok(0); // a new file
        }
        if magic != MAGIC {
            return Err(bad("not a netback journal"));
        }
        let sring = Sring::<Req, Rsp>::new(ring_page).map_err(|_| bad("ring page"))?;
        let rsp_prod = sring.rsp_prod();
        if jref != ring_ref || count == 0 || start != rsp_prod {
            // Another ring's, nothing recorded, or published already.
            return Ok(0);
        }
        let posted = sring.req_prod().wrapping_sub(rsp_prod);
        if count > MAX_BATCH || count > sring.size() || count > posted || Rsp::WORDS > ENTRY_WORDS {
            return Err(bad("more responses than unanswered requests"));
        }
        for i in 0..count {
            let at = ENTRIES + 4 * ENTRY_WORDS * i as usize;
            let words: Vec<u32> = (0..Rsp::WORDS).map(|k| m.load(at + 4 * k)).collect();
            sring.write_slot(start.wrapping_add(i), &Rsp::from_words(&words));
        }
        let end = start.wrapping_add(count);
        let idx = BackIndices {
            rsp_prod_pvt: end,
            req_cons: end,
        };
        let mut back =
            BackRing::<Req, Rsp>::resume(ring_page, idx).map_err(|_| bad("ring page"))?;
        back.push_responses();
        Ok(count)
    }
}

/// Writes responses into a ring: each recorded in the ring's journal first (when there
/// is one). With [`Responder::exit_after`] (fault injection for tests), the process
/// exits, as if killed, before writing the response that follows that many.
#[derive(Debug, Default)]
pub(crate) struct Responder {
    log: Option<RingLog>,
    exit_after: Option<u64>,
}

impl Responder {
    /// Records into `log` from now on.
    pub(crate) fn set_log(&mut self, log: Option<RingLog>) {
        self.log = log;
    }

    /// Fault injection: exit the process after writing `n` more responses.
    pub(crate) fn exit_after(&mut self, n: Option<u64>) {
        self.exit_after = n;
    }

    /// Records `value` and writes it at the ring's next response index.
    #[inline]
    pub(crate) fn put<Req: RingEntry, Rsp: RingEntry, T: RingEntry>(
        &mut self,
        ring: &mut BackRing<'_, Req, Rsp>,
        v: &T,
    ) {
        if let Some(log) = &self.log {
            log.record(ring.rsp_prod_pvt(), v);
        }
        if let Some(n) = &mut self.exit_after {
            if *n == 0 {
                // As `kill -9`: no destructor, nothing published.
                std::process::exit(137);
            }
            *n -= 1;
        }
        // Cannot fail: every consumed request is answered exactly once.
        let _ = ring.put_response_as(v);
    }

    /// Publishes the responses written (and closes the journal's batch); true when the
    /// frontend asked to be notified.
    #[inline]
    pub(crate) fn push<Req: RingEntry, Rsp: RingEntry>(
        &self,
        ring: &mut BackRing<'_, Req, Rsp>,
    ) -> bool {
        let notify = ring.push_responses_and_check_notify();
        if let Some(log) = &self.log {
            log.published(ring.rsp_prod_pvt());
        }
        notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_ring::netif::{NetifTxBackRing, NetifTxFrontRing, NetifTxRequest, NetifTxResponse};
    use shared_ring::SharedPage;
    use xen_ids::DomId;

    const REF: u32 = 77;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nb-journal-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn id() -> VifId {
        VifId::new(DomId(3), 1)
    }

    /// A TX ring with `posted` requests (id n, gref 1000 + n) and a journal reset at its
    /// start.
    fn ring_with_requests(page: &SharedPage, j: &VifJournal, posted: u16) {
        ring_of_queue(page, j, 0, posted);
    }

    /// [`ring_with_requests`] for queue `k`: ring reference `REF + k`, grefs
    /// `1000·(k+1) + n`.
    fn ring_of_queue(page: &SharedPage, j: &VifJournal, k: u32, posted: u16) {
        let mut f = NetifTxFrontRing::init(page.mem()).unwrap();
        for n in 0..posted {
            let q = NetifTxRequest {
                gref: 1000 * (k + 1) + u32::from(n),
                id: n,
                size: 60,
                ..Default::default()
            };
            f.put_request(&q).unwrap();
        }
        f.push_requests();
        j.reset(Ring::Tx, REF + k, 0);
    }

    /// A backend that takes every request and writes `answered` responses, then dies
    /// before publishing them (the responder is dropped, nothing pushed).
    fn answer_without_publishing(page: &SharedPage, j: &VifJournal, answered: u16) {
        let mut b = NetifTxBackRing::attach_shared(page.mem()).unwrap();
        while b.take_request().unwrap().is_some() {}
        let mut r = Responder::default();
        r.set_log(Some(j.log(Ring::Tx)));
        for n in 0..answered {
            r.put(&mut b, &NetifTxResponse { id: n, status: 0 });
        }
    }

    fn replay(page: &SharedPage, j: &VifJournal) -> Result<u32, JournalError> {
        j.replay::<NetifTxRequest, NetifTxResponse>(Ring::Tx, page.mem(), REF)
    }

    #[test]
    fn an_unpublished_batch_is_published_once_and_the_rest_read_as_requests() {
        let d = dir("once");
        let j = VifJournal::open(&d, id(), 0).unwrap();
        let page = SharedPage::new();
        ring_with_requests(&page, &j, 20);
        answer_without_publishing(&page, &j, 7);
        // The next netback (a new mapping of the same file).
        let j2 = VifJournal::open(&d, id(), 0).unwrap();
        assert_eq!(replay(&page, &j2).unwrap(), 7);
        assert_eq!(replay(&page, &j2).unwrap(), 0, "never published twice");
        let at = shared_ring::ring::FrontIndices {
            req_prod_pvt: 20,
            rsp_cons: 0,
        };
        let mut f = NetifTxFrontRing::resume(page.mem(), at).unwrap();
        let mut ids = Vec::new();
        while let Some(r) = f.take_response().unwrap() {
            ids.push(r.id);
        }
        assert_eq!(ids, (0..7).collect::<Vec<_>>());
        let mut b = NetifTxBackRing::attach_shared(page.mem()).unwrap();
        let mut grefs = Vec::new();
        while let Some(q) = b.take_request().unwrap() {
            grefs.push(q.gref);
        }
        assert_eq!(grefs, (1007..1020).collect::<Vec<_>>());
        remove_journal(&d, id()).unwrap();
        assert!(!journal_path(&d, id(), 0).exists());
        remove_journal(&d, id()).unwrap();
    }

    #[test]
    fn a_published_batch_or_another_ring_s_is_left_alone() {
        let d = dir("left");
        let j = VifJournal::open(&d, id(), 0).unwrap();
        let page = SharedPage::new();
        ring_with_requests(&page, &j, 10);
        answer_without_publishing(&page, &j, 4);
        // Another ring (the frontend ran a handshake since): nothing written to it.
        let other = j.replay::<NetifTxRequest, NetifTxResponse>(Ring::Tx, page.mem(), REF + 1);
        assert_eq!(other.unwrap(), 0);
        assert_eq!(page.mem().load(shared_ring::ring::layout::RSP_PROD), 0);
        // Published by the killed netback just before it died.
        ring_with_requests(&page, &j, 10);
        answer_without_publishing(&page, &j, 4);
        page.mem().store(shared_ring::ring::layout::RSP_PROD, 4);
        assert_eq!(replay(&page, &j).unwrap(), 0);
        assert_eq!(page.mem().load(shared_ring::ring::layout::RSP_PROD), 4);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_journal_is_refused_and_the_ring_left_as_it_is() {
        let d = dir("corrupt");
        let j = VifJournal::open(&d, id(), 0).unwrap();
        let page = SharedPage::new();
        ring_with_requests(&page, &j, 5);
        // More responses than requests posted.
        ring_mem(&j.map).store(H_REF, REF);
        ring_mem(&j.map).store(H_COUNT, 6);
        assert!(matches!(
            replay(&page, &j),
            Err(JournalError::Invalid("TX", _))
        ));
        // Not a journal at all.
        std::fs::write(journal_path(&d, id(), 0), vec![0xa5; 2 * RING_BYTES]).unwrap();
        let j = VifJournal::open(&d, id(), 0).unwrap();
        assert!(matches!(replay(&page, &j), Err(JournalError::Invalid(..))));
        assert_eq!(page.mem().load(shared_ring::ring::layout::RSP_PROD), 0);
        // Set aside: it records from the shared index again.
        assert_eq!(replay(&page, &j).unwrap(), 0);
        // A file of the wrong size is resized.
        std::fs::write(journal_path(&d, id(), 0), b"short").unwrap();
        let j = VifJournal::open(&d, id(), 0).unwrap();
        assert!(replay(&page, &j).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A TX ring page of queue `k` with `posted` requests ([`ring_of_queue`]) and
    /// `answered` of them answered, unpublished, in queue `k`'s journal.
    fn queue_killed_mid_batch(d: &Path, k: u32, posted: u16, answered: u16) -> SharedPage {
        let page = SharedPage::new();
        let j = VifJournal::open(d, id(), k).unwrap();
        ring_of_queue(&page, &j, k, posted);
        answer_without_publishing(&page, &j, answered);
        page
    }

    fn rsp_prod(page: &SharedPage) -> u32 {
        page.mem().load(shared_ring::ring::layout::RSP_PROD)
    }

    #[test]
    fn each_queue_has_its_own_file_and_replays_its_own_batch() {
        let d = dir("queues");
        let pages: Vec<SharedPage> = (0..4)
            .map(|k| queue_killed_mid_batch(&d, k, 20, 3 + k as u16))
            .collect();
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "3.1.journal",
                "3.1.q1.journal",
                "3.1.q2.journal",
                "3.1.q3.journal"
            ]
        );
        // The next netback, queues in another order (each on whichever worker).
        for k in [2u32, 0, 3, 1] {
            let j = VifJournal::open(&d, id(), k).unwrap();
            let page = &pages[k as usize];
            let r = j.replay::<NetifTxRequest, NetifTxResponse>(Ring::Tx, page.mem(), REF + k);
            assert_eq!(r.unwrap(), 3 + k, "queue {k}: its own batch");
            assert_eq!(rsp_prod(page), 3 + k);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_bad_journal_of_one_queue_is_ignored_and_the_others_replayed() {
        let d = dir("badq");
        let pages: Vec<SharedPage> = (0..3)
            .map(|k| queue_killed_mid_batch(&d, k, 10, 4))
            .collect();
        // Queue 1's file holds queue 2's journal (another ring's reference, a batch that
        // would fit queue 1's ring); queue 2's is not a journal at all.
        let q2 = std::fs::read(journal_path(&d, id(), 2)).unwrap();
        std::fs::write(journal_path(&d, id(), 1), &q2).unwrap();
        std::fs::write(journal_path(&d, id(), 2), vec![0x5a; 2 * RING_BYTES]).unwrap();
        let replay = |k: u32| {
            VifJournal::open(&d, id(), k)
                .unwrap()
                .replay::<NetifTxRequest, NetifTxResponse>(
                    Ring::Tx,
                    pages[k as usize].mem(),
                    REF + k,
                )
        };
        assert_eq!(replay(1).unwrap(), 0, "another ring's journal");
        assert!(matches!(replay(2), Err(JournalError::Invalid("TX", _))));
        assert_eq!(replay(0).unwrap(), 4, "queue 0's own");
        assert_eq!(
            (
                rsp_prod(&pages[0]),
                rsp_prod(&pages[1]),
                rsp_prod(&pages[2])
            ),
            (4, 0, 0),
            "nothing written into the rings of the bad journals"
        );
        // Set aside, they record from the shared index again.
        assert_eq!(replay(1).unwrap(), 0);
        assert_eq!(replay(2).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn removal_takes_every_queue_s_journal_and_stale_ones_go() {
        let d = dir("remove");
        for k in 0..4 {
            VifJournal::open(&d, id(), k).unwrap();
        }
        // Other vifs' journals and files that only look alike stay.
        let others = [
            "3.10.journal",
            "3.1.q1.journal.bak",
            "3.1.q01.journal",
            "3.1.q.journal",
            "3.1.qx.journal",
            "13.1.q2.journal",
            "3.1.journal~",
        ];
        for o in others {
            std::fs::write(d.join(o), b"x").unwrap();
        }
        VifJournal::open(&d, VifId::new(DomId(3), 2), 1).unwrap();
        let exists = |k: u32| journal_path(&d, id(), k).exists();
        // The vif reconnected with 2 queues: queues 2 and 3's journals are stale.
        remove_stale_journals(&d, id(), 2).unwrap();
        assert_eq!(
            (0..4).map(exists).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        remove_stale_journals(&d, id(), 0).unwrap();
        assert!(exists(0), "queue 0's journal is never stale");
        remove_journal(&d, id()).unwrap();
        assert!((0..4).all(|k| !exists(k)));
        for o in others {
            assert!(d.join(o).exists(), "{o} was removed");
        }
        assert!(journal_path(&d, VifId::new(DomId(3), 2), 1).exists());
        remove_journal(&d, id()).unwrap();
        let _ = std::fs::remove_dir_all(&d);
        remove_journal(&d, id()).unwrap();
    }
}
