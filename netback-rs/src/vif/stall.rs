//! A stalled frontend's carrier, as Linux netback's `rx_stall_timeout`: a connected
//! frontend that leaves the frame at the head of its RX path without room (too few
//! posted buffers) for longer than a timeout is *stalled*. Its port's carrier goes off
//! (the host's stack stops sending it frames, as to a NIC without a link), the waiting
//! frame is dropped and so is whatever the port still hands over for it, instead of
//! queueing for a guest that does not take it. When the frontend posts more buffers than
//! it had when it stalled, the carrier comes back on and frames flow again.
//!
//! Time is netback's clock ([`crate::Netback::now`]); the vif asks to be polled at the
//! deadline ([`RxStall::deadline`]), as its port is not listened to while a frame waits.

/// Linux netback's default `rx_stall_timeout` (60 s), in ns.
pub const RX_STALL_TIMEOUT_NS: u64 = 60_000_000_000;

/// The stall state of one vif's RX path.
#[derive(Debug, Default)]
pub(super) struct RxStall {
    /// How long a frame may wait for buffers (ns); `None`: for ever.
    timeout_ns: Option<u64>,
    /// Since when (ns) the frame at the head has waited for buffers.
    waiting_since: Option<u64>,
    /// Stalled (carrier off): the posted buffers the frontend had at the time.
    stalled_with: Option<u32>,
}

impl RxStall {
    /// A stall state with `timeout_ns` (`None`: a frontend never stalls).
    pub(super) fn new(timeout_ns: Option<u64>) -> Self {
        RxStall {
            timeout_ns,
            ..RxStall::default()
        }
    }

    /// Sets the timeout; a wait already under way counts from when it began.
    pub(super) fn set_timeout(&mut self, timeout_ns: Option<u64>) {
        self.timeout_ns = timeout_ns;
    }

    /// The posted buffers the frontend had when it stalled; `None` when not stalled.
    pub(super) fn stalled_with(&self) -> Option<u32> {
        self.stalled_with
    }

    /// Records after a poll whether a frame waits for buffers at `now_ns`.
    pub(super) fn note(&mut self, waiting: bool, now_ns: u64) {
        if waiting {
            self.waiting_since.get_or_insert(now_ns);
        } else {
            self.waiting_since = None;
        }
    }

    /// When the waiting frame's time runs out (ns); `None` when none waits (or no
    /// timeout, or already stalled).
    pub(super) fn deadline(&self) -> Option<u64> {
        if self.stalled_with.is_some() {
            return None;
        }
        Some(self.waiting_since?.saturating_add(self.timeout_ns?))
    }

    /// True when a frame has waited for the timeout or longer at `now_ns`.
    pub(super) fn expired(&self, now_ns: u64) -> bool {
        self.deadline().is_some_and(|t| now_ns >= t)
    }

    /// The frontend stalled with `posted` buffers posted.
    pub(super) fn stall(&mut self, posted: u32) {
        self.stalled_with = Some(posted);
        self.waiting_since = None;
    }

    /// Whether a stalled frontend that now has `posted` buffers posted has posted more
    /// since it stalled; then it is no longer stalled.
    pub(super) fn recovered(&mut self, posted: u32) -> bool {
        match self.stalled_with {
            Some(had) if posted > had => {
                self.stalled_with = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_after_the_timeout_and_recovers_on_more_buffers() {
        let mut s = RxStall::new(Some(100));
        s.note(false, 0);
        assert_eq!(s.deadline(), None);
        s.note(true, 10);
        s.note(true, 50); // still the same wait
        assert_eq!(s.deadline(), Some(110));
        assert!(!s.expired(109));
        assert!(s.expired(110));
        s.stall(1);
        assert_eq!(s.deadline(), None, "a stalled vif needs no timer");
        assert!(!s.recovered(1), "no new buffer");
        assert_eq!(s.stalled_with(), Some(1));
        assert!(s.recovered(2));
        assert_eq!(s.stalled_with(), None);
        // A wait that ends before the timeout starts nothing.
        s.note(true, 200);
        s.note(false, 250);
        assert_eq!(s.deadline(), None);
        // Without a timeout, never.
        let mut s = RxStall::new(None);
        s.note(true, 0);
        assert!(!s.expired(u64::MAX));
    }
}
