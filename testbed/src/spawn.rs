//! Where a harness thread runs: a plain thread, or a thread inside a network namespace
//! (whose TAP devices and sockets then live there), and the CPU time it used.

use std::io;
use std::thread::JoinHandle;

use netport::netns::NetNs;

use crate::TestbedError;

/// Where to start a thread.
#[derive(Debug, Clone, Copy, Default)]
pub enum Spawner<'a> {
    /// A named thread of this process, in the caller's namespaces.
    #[default]
    Thread,
    /// A thread that first enters this network namespace ([`NetNs::spawn_thread`]).
    Netns(&'a NetNs),
}

impl Spawner<'_> {
    /// Runs `f` on a new thread placed as `self` says.
    pub fn spawn<T, F>(self, name: &str, f: F) -> Result<Handle<T>, TestbedError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let thread_err = |source| TestbedError::Thread {
            name: name.to_string(),
            source,
        };
        let inner = match self {
            Spawner::Thread => std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || Ok(f())),
            Spawner::Netns(ns) => ns.spawn_thread(move || Ok(f())),
        }
        .map_err(thread_err)?;
        Ok(Handle {
            name: name.to_string(),
            inner,
        })
    }
}

/// A thread started by a [`Spawner`].
#[derive(Debug)]
pub struct Handle<T> {
    name: String,
    inner: JoinHandle<io::Result<T>>,
}

impl<T> Handle<T> {
    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// Waits for the thread; its result, or why there is none (it panicked, or it could
    /// not enter its namespace).
    pub fn join(self) -> Result<T, TestbedError> {
        match self.inner.join() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(TestbedError::Thread {
                name: self.name,
                source,
            }),
            Err(_) => Err(TestbedError::Panicked(self.name)),
        }
    }
}

/// CPU time consumed by the calling thread, in nanoseconds
/// (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`).
pub fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
