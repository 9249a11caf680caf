//! Late unmasking of event channels that bring no work, against event-channel storms.
//!
//! A guest may notify its event channel as often as it likes. Each notification wakes
//! netback, which polls the vif and unmasks the port; a notification that brings
//! nothing (the frontend published no new request since the last one, and the poll
//! took no packet) is *spurious*. Without a defence a guest that notifies in a tight
//! loop keeps a share of netback's core busy for nothing (measured with
//! `bench hostile`, `evtchn-storm`: 20–50 % of a core). Xen's answer (XSA-332, Linux's
//! "lateeoi" event channels that netback uses since 5.10) is to delay the end of
//! interrupt of a port that keeps bringing spurious events, for longer each time, and
//! to stop delaying at the first event with work. This module is that policy: after the
//! first [`FREE_SPURIOUS`] spurious events in a row, the port stays masked for
//! 1 ms, 2 ms, 4 ms, … up to [`MAX_DELAY_NS`]; a notification the frontend makes
//! meanwhile stays pending in the event channel and is handled when the port is
//! unmasked, so no work is ever lost, only delayed — and only for a frontend that
//! notified without publishing anything.
//!
//! I/O-free: the caller tells it what happened and when, and unmasks the ports it
//! returns.

use std::collections::HashMap;

use hypervisor::evtchn::Port;

/// Spurious events in a row that are unmasked at once (a racing but honest frontend
/// may notify once for work the backend already took).
pub const FREE_SPURIOUS: u32 = 1;
/// The first delay, ns; it doubles with each further spurious event.
pub const FIRST_DELAY_NS: u64 = 1_000_000;
/// The longest delay, ns (Linux: one second).
pub const MAX_DELAY_NS: u64 = 1_000_000_000;

/// What is known of one port.
#[derive(Debug, Clone, Copy, Default)]
struct PortState {
    /// The frontend's request producers (TX, RX) at the last event.
    producers: (u32, u32),
    /// Spurious events in a row.
    spurious: u32,
    /// Masked until then (ns), when delayed.
    unmask_at: Option<u64>,
}

/// The backoff state of every bound port.
#[derive(Debug, Default)]
pub struct SpuriousBackoff {
    ports: HashMap<Port, PortState>,
}

impl SpuriousBackoff {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// An event on `port` was handled at `now_ns`: `producers` are the frontend's
    /// request producers (TX, RX) as its shared pages hold them now, `worked` whether
    /// the poll took any packet. Returns `None` to unmask the port now, or the time
    /// until which it stays masked (then [`Self::take_due`] returns it).
    pub fn after_event(
        &mut self,
        port: Port,
        producers: (u32, u32),
        worked: bool,
        now_ns: u64,
    ) -> Option<u64> {
        let s = self.ports.entry(port).or_default();
        let spurious = !worked && producers == s.producers;
        s.producers = producers;
        if !spurious {
            s.spurious = 0;
            return None;
        }
        s.spurious = s.spurious.saturating_add(1);
        if s.spurious <= FREE_SPURIOUS {
            return None;
        }
        let shift = (s.spurious - FREE_SPURIOUS - 1).min(63);
        let delay = FIRST_DELAY_NS
            .checked_shl(shift)
            .unwrap_or(MAX_DELAY_NS)
            .min(MAX_DELAY_NS);
        let at = now_ns.saturating_add(delay);
        s.unmask_at = Some(at);
        Some(at)
    }

    /// The earliest time a masked port is due to be unmasked.
    pub fn next_due(&self) -> Option<u64> {
        self.ports.values().filter_map(|s| s.unmask_at).min()
    }

    /// The ports due by `now_ns` (no longer held), into `out`.
    pub fn take_due(&mut self, now_ns: u64, out: &mut Vec<Port>) {
        for (port, s) in &mut self.ports {
            if s.unmask_at.is_some_and(|t| t <= now_ns) {
                s.unmask_at = None;
                out.push(*port);
            }
        }
    }

    /// Whether `port` is held masked.
    pub fn is_held(&self, port: Port) -> bool {
        self.ports.get(&port).is_some_and(|s| s.unmask_at.is_some())
    }

    /// Spurious events in a row on `port`.
    pub fn spurious(&self, port: Port) -> u32 {
        self.ports.get(&port).map_or(0, |s| s.spurious)
    }

    /// Forgets `port` (unbound).
    pub fn forget(&mut self, port: Port) {
        self.ports.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Port = Port(7);

    #[test]
    fn events_with_work_are_never_delayed() {
        let mut b = SpuriousBackoff::new();
        for i in 0..1000u32 {
            assert_eq!(b.after_event(P, (i, 0), false, 0), None);
            assert_eq!(b.after_event(P, (i, 0), true, 0), None);
        }
        assert_eq!(b.spurious(P), 0);
    }

    #[test]
    fn spurious_events_back_off_exponentially_up_to_the_cap() {
        let mut b = SpuriousBackoff::new();
        let mut delays = Vec::new();
        for _ in 0..40 {
            delays.push(b.after_event(P, (0, 0), false, 1000).map(|t| t - 1000));
        }
        assert_eq!(delays[0], None);
        assert_eq!(delays[1], Some(FIRST_DELAY_NS));
        assert_eq!(delays[2], Some(2 * FIRST_DELAY_NS));
        assert_eq!(delays[3], Some(4 * FIRST_DELAY_NS));
        assert!(delays.iter().flatten().all(|&d| d <= MAX_DELAY_NS));
        assert_eq!(delays[39], Some(MAX_DELAY_NS));
        // Sum of the delays of a storm of n events grows linearly once capped: the
        // number of events handled per second tends to one.
        let total: u64 = delays.iter().flatten().sum();
        assert!(total > 25 * MAX_DELAY_NS);
    }

    #[test]
    fn new_requests_reset_the_backoff() {
        let mut b = SpuriousBackoff::new();
        for _ in 0..10 {
            b.after_event(P, (5, 5), false, 0);
        }
        assert!(b.is_held(P));
        // The frontend published a TX request: work, unmask now, count reset.
        assert_eq!(b.after_event(P, (6, 5), false, 0), None);
        assert_eq!(b.spurious(P), 0);
        assert_eq!(b.after_event(P, (6, 5), false, 0), None);
    }

    #[test]
    fn due_ports_are_taken_once() {
        let mut b = SpuriousBackoff::new();
        b.after_event(P, (0, 0), false, 0);
        let at = b.after_event(P, (0, 0), false, 0).unwrap();
        assert_eq!(b.next_due(), Some(at));
        let mut out = Vec::new();
        b.take_due(at - 1, &mut out);
        assert!(out.is_empty());
        b.take_due(at, &mut out);
        assert_eq!(out, vec![P]);
        b.take_due(at + 1, &mut out);
        assert_eq!(out, vec![P]);
        assert_eq!(b.next_due(), None);
        b.forget(P);
        assert_eq!(b.spurious(P), 0);
    }
}
