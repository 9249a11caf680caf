//! **Emulation** for the benchmark, off in production: a backend that cannot process
//! more than a given packet rate, like the DBA-VM paper's memory-bound dom0 (190 Kp/s).
//!
//! It is applied from outside the data path: it decides how many request chains each
//! [`Vif::tx_poll`] may take (its `budget`), pays for what the poll took, and holds the
//! vif when nothing is left.

use hypervisor::grant::{GrantCopy, GrantMapping};
use netport::Port;
use shared_ring::{Denied, Limit, TokenBucket};

use crate::vif::{Poll, Vif, VifFatal, PORT_RETRY_NS, TX_BATCH};

/// The most TX packets per second the whole backend processes, all vifs together: every
/// request chain taken from a TX ring costs one token, whatever becomes of it (sent,
/// dropped, refused).
#[derive(Debug, Clone)]
pub struct EmulatedBackendRate {
    work: TokenBucket,
}

impl EmulatedBackendRate {
    /// At most `pps` packets per second, with a burst of 1 ms of work: the emulated
    /// backend cannot bank idle time.
    pub fn new(pps: u64, now_ns: u64) -> Self {
        let burst = (pps / 1000).max(1);
        EmulatedBackendRate {
            work: TokenBucket::new(Limit::rate(pps, burst), now_ns),
        }
    }

    /// [`Vif::tx_poll`] with the budget this backend has left now (`clock`). When the
    /// vif has more work but the budget is spent, the vif is held until the next token
    /// ([`Vif::hold_tx`]) instead of being polled again.
    pub fn tx_poll<M, G, P>(
        &mut self,
        vif: &mut Vif<M>,
        clock: &dyn Fn() -> u64,
        grants: &G,
        port: &mut P,
    ) -> Result<Poll, VifFatal>
    where
        M: GrantMapping,
        G: GrantCopy + ?Sized,
        P: Port + ?Sized,
    {
        let now_ns = clock();
        let budget = self.work.available(now_ns).min(TX_BATCH as u64) as usize;
        let mut poll = vif.tx_poll(clock, grants, port, budget)?;
        // Within what was available at this same instant: cannot be refused.
        let _ = self.work.charge(now_ns, poll.packets as u64);
        if poll.more && self.work.available(now_ns) == 0 {
            let wait = match self.work.charge(now_ns, 1) {
                Err(Denied::Wait { ns }) => ns,
                // Closed (a rate of 0): look again later.
                _ => PORT_RETRY_NS,
            };
            let until = now_ns.saturating_add(wait);
            vif.hold_tx(until);
            poll.more = false;
            poll.hold_until = Some(until);
        }
        Ok(poll)
    }
}
