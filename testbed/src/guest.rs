//! Guests: a netfront connected on its own thread, then driven there by a closure (the
//! event loop over a port, a traffic generator…) until it returns or is told to stop.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use hypervisor::clock::Clock;
use netfront::{FrontStats, Netfront, NetfrontConfig};
use netport::{MemPort, Port};
use xen_ids::DomId;
use xen_local::{LocalHost, LocalPlatform};

use crate::backend::timeout_err;
use crate::spawn::{thread_cpu_ns, Handle, Spawner};
use crate::TestbedError;

/// netfront on the local platform.
pub type LocalNetfront = Netfront<LocalPlatform>;

/// How a guest thread starts.
pub struct GuestOptions {
    /// The thread's name.
    pub name: String,
    /// netfront's clock.
    pub clock: Clock,
    /// How long to wait for netfront to connect.
    pub connect_timeout: Duration,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            name: "netfront".into(),
            clock: hypervisor::clock::system(),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What a guest thread leaves when it ends.
pub struct GuestExit<T> {
    /// What the driving closure returned.
    pub value: T,
    /// The netfront, still connected (drop it once the backend no longer needs it).
    pub netfront: LocalNetfront,
    /// CPU time of the guest thread from its start (the handshake included), ns.
    pub cpu_ns: u64,
}

/// A netfront on its own thread, driven by a closure.
pub struct GuestThread<T> {
    stop: Arc<AtomicBool>,
    thread: Option<Handle<Option<GuestExit<T>>>>,
}

impl<T: Send + 'static> GuestThread<T> {
    /// Connects netfront (device `cfg.devid` of `platform`'s domain) on a thread placed
    /// by `spawner` and waits for the handshake; then `drive` runs there with the
    /// netfront and the stop flag ([`GuestThread::stop`] raises it).
    pub fn spawn<F>(
        spawner: Spawner<'_>,
        platform: LocalPlatform,
        cfg: NetfrontConfig,
        opts: GuestOptions,
        drive: F,
    ) -> Result<GuestThread<T>, TestbedError>
    where
        F: FnOnce(&mut LocalNetfront, &AtomicBool) -> T + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = mpsc::channel();
        let thread = spawner.spawn(&opts.name, {
            let stop = stop.clone();
            move || {
                let cpu0 = thread_cpu_ns();
                let mut nf = match Netfront::connect(platform, cfg, opts.clock) {
                    Ok(nf) => nf,
                    Err(e) => {
                        let _ = ready_tx.send(Err(TestbedError::Connect(e)));
                        return None;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let value = drive(&mut nf, &stop);
                Some(GuestExit {
                    value,
                    netfront: nf,
                    cpu_ns: thread_cpu_ns() - cpu0,
                })
            }
        })?;
        match ready.recv_timeout(opts.connect_timeout) {
            Ok(Ok(())) => Ok(GuestThread {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop.store(true, Ordering::Relaxed);
                Err(timeout_err("netfront to connect", opts.connect_timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(thread.join().err().unwrap_or(TestbedError::GuestGone))
            }
        }
    }

    /// Raises the stop flag the driving closure watches.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the driving closure to return (without raising the stop flag).
    pub fn join(mut self) -> Result<GuestExit<T>, TestbedError> {
        self.join_thread()
    }

    /// Raises the stop flag and waits for the thread.
    pub fn finish(mut self) -> Result<GuestExit<T>, TestbedError> {
        self.stop();
        self.join_thread()
    }

    fn join_thread(&mut self) -> Result<GuestExit<T>, TestbedError> {
        self.thread
            .take()
            .ok_or(TestbedError::GuestGone)?
            .join()?
            .ok_or(TestbedError::GuestGone)
    }
}

impl<T> Drop for GuestThread<T> {
    /// Stops and joins a guest that was neither joined nor finished; one that panicked
    /// fails the test (unless it is already failing).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Err(e) = t.join() {
                if !std::thread::panicking() {
                    panic!("guest thread: {e}");
                }
            }
        }
    }
}

/// Runs netfront's event loop ([`netfront::pump::run`]) between `nf` and `port` until
/// `stop` is raised.
pub fn pump_until(
    nf: &mut LocalNetfront,
    port: &mut impl Port,
    stop: &AtomicBool,
) -> io::Result<()> {
    netfront::pump::run(nf, port, || stop.load(Ordering::Relaxed))
}

/// A guest whose netfront's event loop serves a [`MemPort`]: the test is the guest's
/// network stack, at the other end ([`Guest::app`]).
pub struct Guest {
    /// The guest application's end of the port.
    pub app: MemPort,
    thread: Option<GuestThread<io::Result<()>>>,
    /// The netfront once its loop stopped: still connected, and its domain alive (the
    /// domain dies with its last connection), until the guest is dropped.
    stopped: Option<LocalNetfront>,
}

impl Guest {
    /// Connects netfront (`cfg`) in domain `domid` of `host` and starts its event loop
    /// over a memory port (1024 frames of up to 64 KiB).
    pub fn start(
        host: &LocalHost,
        domid: DomId,
        cfg: NetfrontConfig,
    ) -> Result<Guest, TestbedError> {
        let platform = crate::domain(host, domid)?;
        let (app, mut dev) = MemPort::pair(1024, 65536).map_err(TestbedError::Port)?;
        let opts = GuestOptions {
            name: format!("netfront-{domid}"),
            ..GuestOptions::default()
        };
        let thread = GuestThread::spawn(Spawner::Thread, platform, cfg, opts, move |nf, stop| {
            pump_until(nf, &mut dev, stop)
        })?;
        Ok(Guest {
            app,
            thread: Some(thread),
            stopped: None,
        })
    }

    /// Stops the event loop (the netfront stays until the guest is dropped); netfront's
    /// counters.
    pub fn stop(&mut self) -> Result<FrontStats, TestbedError> {
        let exit = self
            .thread
            .take()
            .ok_or(TestbedError::GuestGone)?
            .finish()?;
        let stats = exit.netfront.stats;
        self.stopped = Some(exit.netfront);
        exit.value.map_err(TestbedError::Pump)?;
        Ok(stats)
    }
}

impl Guest {
    /// The netfront, once [`Guest::stop`] stopped its loop (still connected).
    pub fn stopped_netfront(&mut self) -> Option<&mut LocalNetfront> {
        self.stopped.as_mut()
    }
}

impl Drop for Guest {
    /// Stops a guest [`Guest::stop`] was not called on; an event loop that failed fails
    /// the test (unless it is already failing).
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.stop() {
                if !std::thread::panicking() {
                    panic!("guest: {e}");
                }
            }
        }
    }
}
