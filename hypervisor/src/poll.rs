//! [`Epoll`]: the readiness wait of the drivers' event loops (netback's backend, the
//! netfront pump): one level-triggered epoll set over the event-channel fd, the
//! xenstore event fd and the ports, each registered with a `u64` key. [`readable`]
//! waits for one fd.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

/// The most events one [`Epoll::wait`] reports.
pub const MAX_EVENTS: usize = 64;

/// A level-triggered epoll set whose events carry `u64` keys, reporting readability.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty set.
    pub fn new() -> io::Result<Self> {
        Ok(Epoll {
            fd: epoll::create(CreateFlags::CLOEXEC)?,
        })
    }

    /// Adds `fd`, reported as `key` while it is readable.
    pub fn add(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        Ok(epoll::add(
            &self.fd,
            fd,
            EventData::new_u64(key),
            EventFlags::IN,
        )?)
    }

    /// Enables or disables readiness reports for an added fd (which stays in the set).
    pub fn set(&self, fd: impl AsFd, key: u64, enabled: bool) -> io::Result<()> {
        let flags = if enabled {
            EventFlags::IN
        } else {
            EventFlags::empty()
        };
        Ok(epoll::modify(&self.fd, fd, EventData::new_u64(key), flags)?)
    }

    /// Removes an added fd.
    pub fn del(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(epoll::delete(&self.fd, fd)?)
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds) for readiness and
    /// writes the keys of up to `keys.len()` (at most [`MAX_EVENTS`]) ready fds into
    /// `keys`; how many. A wait interrupted by a signal reports none.
    pub fn wait(&self, keys: &mut [u64], timeout: Duration) -> io::Result<usize> {
        let empty = Event {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        };
        let mut events = [empty; MAX_EVENTS];
        let n = keys.len().min(MAX_EVENTS);
        let got = match epoll::wait(&self.fd, &mut events[..n], Some(&whole_ms(timeout))) {
            Ok(got) => got,
            Err(Errno::INTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for (k, e) in keys.iter_mut().zip(&events[..got]) {
            *k = e.data.u64();
        }
        Ok(got)
    }
}

/// Waits up to `timeout` (rounded up to whole milliseconds) for `fd` to be readable;
/// whether it is. A wait interrupted by a signal reports not readable.
pub fn readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&whole_ms(timeout))) {
        Ok(n) => Ok(n == 1 && fds[0].revents().contains(PollFlags::IN)),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `d` rounded up to whole milliseconds (at most `i32::MAX`, epoll's longest finite
/// wait), as a `Timespec`.
fn whole_ms(d: Duration) -> Timespec {
    let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
    Timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{eventfd, EventfdFlags};

    fn signalled() -> OwnedFd {
        eventfd(1, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
    }

    #[test]
    fn ready_fds_report_their_keys_until_disabled_or_removed() {
        let ep = Epoll::new().unwrap();
        let (a, b) = (signalled(), signalled());
        let idle = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        ep.add(&a, 7).unwrap();
        ep.add(&b, 9).unwrap();
        ep.add(&idle, 11).unwrap();
        let mut keys = [0u64; 4];
        let n = ep.wait(&mut keys, Duration::ZERO).unwrap();
        keys[..n].sort_unstable();
        assert_eq!(&keys[..n], &[7, 9]);
        // Level-triggered: still ready, still reported; at most `keys.len()` of them.
        assert_eq!(ep.wait(&mut keys[..1], Duration::ZERO).unwrap(), 1);
        ep.set(&a, 7, false).unwrap();
        assert_eq!(ep.wait(&mut keys, Duration::ZERO).unwrap(), 1);
        assert_eq!(keys[0], 9);
        ep.set(&a, 8, true).unwrap();
        ep.del(&b).unwrap();
        assert_eq!(ep.wait(&mut keys, Duration::from_nanos(1)).unwrap(), 1);
        assert_eq!(keys[0], 8);
        assert!(ep.del(&b).is_err(), "removed twice");
    }

    #[test]
    fn one_fd_is_readable_once_signalled() {
        let idle = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        assert!(!readable(&idle, Duration::from_nanos(1)).unwrap());
        assert!(readable(signalled(), Duration::ZERO).unwrap());
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(
            whole_ms(Duration::ZERO),
            Timespec {
                tv_sec: 0,
                tv_nsec: 0
            }
        );
        assert_eq!(
            whole_ms(Duration::from_nanos(1)),
            Timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000
            }
        );
        assert_eq!(
            whole_ms(Duration::from_micros(2_500_001)),
            Timespec {
                tv_sec: 2,
                tv_nsec: 501_000_000
            }
        );
        assert_eq!(whole_ms(Duration::MAX).tv_sec, i64::from(i32::MAX) / 1000);
    }
}
