//! The queue of watch events a connection has received and its owner not yet taken.
//!
//! Two disciplines:
//! - **FIFO** (the default): every event, in arrival order. Memory grows with what the
//!   server sends while nobody takes events.
//! - **Coalescing** (opt-in, [`XsClient::set_coalescing`](crate::XsClient::set_coalescing)):
//!   at most one pending event per watch token, keeping the path of the latest. A token
//!   is queued in the order its first pending event arrived. The queue is bounded by the
//!   number of distinct tokens (xenstored sends only the tokens of this connection's
//!   watches), whatever the rate of writes under the watched paths: for a driver that
//!   re-reads what a token names, a burst of writes is one re-read.

use std::collections::{HashMap, VecDeque};

use crate::WatchEvent;

/// Pending watch events (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    fifo: VecDeque<WatchEvent>,
    /// Coalescing mode: tokens in queue order, and each one's latest path.
    order: VecDeque<String>,
    latest: HashMap<String, String>,
    coalescing: bool,
    /// Events merged into one already pending (coalescing mode).
    merged: u64,
}

impl EventQueue {
    /// Switches the discipline. Events already queued are kept (and merged per token
    /// when switching to coalescing).
    pub(crate) fn set_coalescing(&mut self, on: bool) {
        if on == self.coalescing {
            return;
        }
        let pending: Vec<WatchEvent> = std::iter::from_fn(|| self.pop()).collect();
        self.coalescing = on;
        for e in pending {
            self.push(e);
        }
    }

    /// Queues an event.
    pub(crate) fn push(&mut self, event: WatchEvent) {
        if !self.coalescing {
            self.fifo.push_back(event);
            return;
        }
        match self.latest.get_mut(&event.token) {
            Some(path) => {
                *path = event.path;
                self.merged += 1;
            }
            None => {
                self.order.push_back(event.token.clone());
                self.latest.insert(event.token, event.path);
            }
        }
    }

    /// Takes the oldest pending event.
    pub(crate) fn pop(&mut self) -> Option<WatchEvent> {
        if let Some(e) = self.fifo.pop_front() {
            return Some(e);
        }
        let token = self.order.pop_front()?;
        let path = self.latest.remove(&token).unwrap_or_default();
        Some(WatchEvent { path, token })
    }

    /// Whether no event is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.order.is_empty()
    }

    /// How many events are pending.
    pub(crate) fn len(&self) -> usize {
        self.fifo.len() + self.order.len()
    }

    /// Events merged into a pending one so far.
    pub(crate) fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(path: &str, token: &str) -> WatchEvent {
        WatchEvent {
            path: path.into(),
            token: token.into(),
        }
    }

    #[test]
    fn fifo_keeps_every_event_in_order() {
        let mut q = EventQueue::default();
        for i in 0..5 {
            q.push(ev(&format!("/p{i}"), "t"));
        }
        assert_eq!(q.len(), 5);
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).map(|e| e.path).collect();
        assert_eq!(got, ["/p0", "/p1", "/p2", "/p3", "/p4"]);
        assert!(q.is_empty());
        assert_eq!(q.merged(), 0);
    }

    #[test]
    fn coalescing_keeps_one_event_per_token_with_the_latest_path() {
        let mut q = EventQueue::default();
        q.set_coalescing(true);
        for i in 0..100_000 {
            q.push(ev(&format!("/a/{i}"), "a"));
            if i % 2 == 0 {
                q.push(ev(&format!("/b/{i}"), "b"));
            }
        }
        assert_eq!(q.len(), 2, "bounded by the tokens, not by the writes");
        assert_eq!(q.merged(), 150_000 - 2);
        // Queue order is the order of each token's first pending event.
        assert_eq!(q.pop(), Some(ev("/a/99999", "a")));
        assert_eq!(q.pop(), Some(ev("/b/99998", "b")));
        assert_eq!(q.pop(), None);
        // Once taken, the next event of a token is queued again.
        q.push(ev("/a/x", "a"));
        assert_eq!(q.pop(), Some(ev("/a/x", "a")));
    }

    #[test]
    fn switching_to_coalescing_merges_what_is_queued() {
        let mut q = EventQueue::default();
        for t in ["x", "y", "x", "x", "y"] {
            q.push(ev(&format!("/{t}"), t));
        }
        q.set_coalescing(true);
        assert_eq!(q.len(), 2);
        q.set_coalescing(false);
        q.push(ev("/z", "z"));
        q.push(ev("/z", "z"));
        assert_eq!(q.len(), 4, "FIFO again for new events");
        let tokens: Vec<_> = std::iter::from_fn(|| q.pop()).map(|e| e.token).collect();
        assert_eq!(tokens, ["x", "y", "z", "z"]);
    }
}
