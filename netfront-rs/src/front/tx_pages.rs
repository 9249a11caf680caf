//! Which of a queue's granted TX pages are free, and runs of consecutive free pages for
//! the next frame.
//!
//! A TX page's index is also the id of the request that carries it (one request per
//! page). A frame takes a run of consecutive pages, so that its bytes are one
//! contiguous range of the local view: a port reads a frame straight into it
//! ([`netport::Port::recv`] wants one buffer of `max_frame` bytes) and the header checks
//! see the frame as one slice. The lowest free run is taken (first fit): with few frames
//! in flight the same low pages come round again and again, as they did when free pages
//! were a stack, which keeps them warm in a backend's copy cache (the local platform
//! maps a page on its first copy) and in the CPU's.

/// The state of a queue's TX pages (module docs).
#[derive(Debug)]
pub(crate) struct TxPages {
    /// Pages given to the backend on the ring, not answered yet.
    in_flight: Vec<bool>,
    /// Pages in flight or holding a frame waiting for credits.
    busy: Vec<bool>,
    /// Pages not busy.
    free: usize,
}

impl TxPages {
    /// `n` free pages.
    pub fn new(n: usize) -> Self {
        TxPages {
            in_flight: vec![false; n],
            busy: vec![false; n],
            free: n,
        }
    }

    /// The first page of the lowest run of `n` consecutive free pages (0 < `n`);
    /// `None` when there is none.
    pub fn find_run(&self, n: usize) -> Option<usize> {
        if n == 0 || n > self.free {
            return None;
        }
        let mut start = 0;
        while start + n <= self.busy.len() {
            match self.busy[start..start + n].iter().rposition(|&b| b) {
                None => return Some(start),
                Some(i) => start += i + 1,
            }
        }
        None
    }

    /// Marks `first..first + n` busy (a frame is in them).
    pub fn take(&mut self, first: usize, n: usize) {
        for b in &mut self.busy[first..first + n] {
            debug_assert!(!*b, "page taken twice");
            *b = true;
        }
        self.free -= n;
    }

    /// Frees `first..first + n` (busy, not in flight): a frame that did not go.
    pub fn release(&mut self, first: usize, n: usize) {
        for (b, f) in self.busy[first..first + n]
            .iter_mut()
            .zip(&self.in_flight[first..first + n])
        {
            debug_assert!(*b && !*f, "released page not taken or in flight");
            *b = false;
        }
        self.free += n;
    }

    /// Marks page `id` (busy) as given to the backend.
    pub fn send(&mut self, id: usize) {
        debug_assert!(self.busy[id]);
        self.in_flight[id] = true;
    }

    /// The backend answered request `id`: frees its page. False (and nothing changes)
    /// when `id` is not in flight.
    pub fn complete(&mut self, id: usize) -> bool {
        if !self.in_flight.get(id).copied().unwrap_or(false) {
            return false;
        }
        self.in_flight[id] = false;
        self.busy[id] = false;
        self.free += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_run_is_taken() {
        let mut p = TxPages::new(8);
        assert_eq!(p.find_run(3), Some(0));
        p.take(0, 3);
        assert_eq!(p.find_run(3), Some(3));
        p.take(3, 3);
        // 2 pages left at the end: no run of 3.
        assert_eq!(p.find_run(3), None);
        assert_eq!(p.find_run(2), Some(6));
        for id in 0..3 {
            p.send(id);
            assert!(p.complete(id));
        }
        // The pages freed first come round again.
        assert_eq!(p.find_run(3), Some(0));
        assert_eq!(p.find_run(1), Some(0));
        assert_eq!(p.free, 5);
    }

    #[test]
    fn a_busy_page_in_the_middle_is_skipped() {
        let mut p = TxPages::new(16);
        p.take(2, 1);
        assert_eq!(p.find_run(2), Some(0));
        assert_eq!(p.find_run(4), Some(3));
        p.take(3, 4);
        p.take(12, 4);
        // Free: 0..2 and 7..12.
        assert_eq!(p.find_run(3), Some(7));
        assert_eq!(p.find_run(5), Some(7));
        assert_eq!(p.find_run(6), None);
        assert_eq!(p.free, 7);
    }

    #[test]
    fn only_pages_in_flight_complete() {
        let mut p = TxPages::new(4);
        p.take(0, 2);
        p.send(0);
        // Page 1 holds a frame waiting for credits: not the backend's to answer.
        assert!(!p.complete(1));
        assert!(!p.complete(2));
        assert!(!p.complete(4));
        assert!(p.complete(0));
        assert!(!p.complete(0));
        assert_eq!(p.free, 3);
        // The held frame is dropped after all: its page is free, and still not the
        // backend's to answer.
        p.release(1, 1);
        assert_eq!(p.free, 4);
        assert!(!p.complete(1));
        assert_eq!(p.find_run(4), Some(0));
    }

    #[test]
    fn no_run_where_every_window_has_a_busy_page() {
        let mut p = TxPages::new(10);
        for first in [2, 5, 8] {
            p.take(first, 1);
        }
        assert_eq!(p.find_run(3), None);
        assert_eq!(p.find_run(2), Some(0));
        assert_eq!(p.find_run(1), Some(0));
        assert_eq!(p.find_run(11), None);
    }
}
