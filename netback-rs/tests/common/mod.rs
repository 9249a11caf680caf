//! A whole local host for driver tests: hypervisor + xenstored, netback in dom0 on a
//! thread, netfronts in guest domains on threads, memory ports on both sides.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netback::backend::monotonic_ns;
use netback::toolstack::{create_vif, VifSpec};
use netback::{Netback, NetbackConfig, VifId, VifStatus};
use netfront::{Netfront, NetfrontConfig};
use netport::{FrameMeta, MemPort, MemPortConfig, Port};
use xen_ids::DomId;
use xen_local::{LocalHost, LocalPlatform};

/// netback on the local platform.
pub type LocalNetback = Netback<xen_local::LocalPlatform>;
/// Closures run on the netback thread between loop iterations.
pub type Commands = Arc<Mutex<Vec<Box<dyn FnOnce(&mut LocalNetback) + Send>>>>;

/// The test's handle on a running netback.
pub struct Backend {
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
    /// Wire-side ends of each vif's port, as netback opens them.
    pub wires: Arc<Mutex<Vec<(VifId, MemPort)>>>,
    pub status: Arc<Mutex<Vec<VifStatus>>>,
    pub commands: Commands,
}

impl Backend {
    pub fn start(host: &LocalHost, cfg: NetbackConfig) -> Backend {
        Self::start_with_ports(host, cfg, MemPortConfig::new(1024, 65536))
    }

    /// As [`Backend::start`], every vif's port a [`MemPort`] pair made with `ports`.
    pub fn start_with_ports(host: &LocalHost, cfg: NetbackConfig, ports: MemPortConfig) -> Backend {
        let dom0 = host.domain(DomId(0)).expect("dom0");
        let wires: Arc<Mutex<Vec<(VifId, MemPort)>>> = Arc::default();
        let status: Arc<Mutex<Vec<VifStatus>>> = Arc::default();
        let commands: Commands = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (wires, status, stop, commands) = (
                wires.clone(),
                status.clone(),
                stop.clone(),
                commands.clone(),
            );
            move || {
                let factory = move |id: VifId, _mac: [u8; 6]| -> std::io::Result<Box<dyn Port>> {
                    let (a, b) = MemPort::pair_with(ports)?;
                    wires.lock().unwrap().push((id, b));
                    Ok(Box::new(a))
                };
                let mut nb = Netback::new(dom0, cfg, Box::new(factory), Box::new(monotonic_ns))
                    .expect("netback");
                while !stop.load(Ordering::Relaxed) {
                    nb.run_once(Duration::from_millis(5)).expect("run_once");
                    for c in commands.lock().unwrap().drain(..) {
                        c(&mut nb);
                    }
                    *status.lock().unwrap() = nb.status();
                }
            }
        });
        Backend {
            stop,
            thread: Some(thread),
            wires,
            status,
            commands,
        }
    }

    /// The wire end of vif `id` (waits for netback to open it).
    pub fn wire(&self, id: VifId) -> MemPort {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut w = self.wires.lock().unwrap();
                if let Some(i) = w.iter().position(|(v, _)| *v == id) {
                    return w.remove(i).1;
                }
            }
            assert!(
                Instant::now() < deadline,
                "netback never opened a port for {id}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn vif_status(&self, id: VifId) -> Option<VifStatus> {
        self.status
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("netback thread panicked");
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A guest running netfront over a memory port; the test holds the guest-app end.
pub struct Guest {
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<netfront::FrontStats>>,
    pub app: MemPort,
}

impl Guest {
    pub fn start(host: &LocalHost, domid: u16, cfg: NetfrontConfig) -> Guest {
        let platform: LocalPlatform = host.domain(DomId(domid)).expect("guest domain");
        let (app, mut dev) = MemPort::pair(1024, 65536).expect("port");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut nf =
                    match Netfront::connect(platform, cfg, Box::new(netfront::front::monotonic_ns))
                    {
                        Ok(nf) => nf,
                        Err(e) => {
                            tx.send(Err(e.to_string())).unwrap();
                            return Default::default();
                        }
                    };
                tx.send(Ok(())).unwrap();
                netfront::pump::run(&mut nf, &mut dev, || stop.load(Ordering::Relaxed))
                    .expect("pump");
                nf.stats
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("netfront thread")
            .expect("netfront connect");
        Guest {
            stop,
            thread: Some(thread),
            app,
        }
    }

    pub fn shutdown(&mut self) -> netfront::FrontStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("netfront thread panicked"))
            .unwrap_or_default()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn add_vif(host: &LocalHost, domid: u16, devid: u32) -> VifId {
    let dom0 = host.domain(DomId(0)).expect("dom0 toolstack connection");
    create_vif(&dom0.xenstore, &VifSpec::new(DomId(0), DomId(domid), devid)).expect("create vif");
    VifId {
        domid: DomId(domid),
        devid,
    }
}

/// A test frame: Ethernet header, then a sequence number and a pattern derived from it.
pub fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f[14..18].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

/// Checks a received frame against [`frame`]; returns its sequence number.
pub fn check_frame(f: &[u8]) -> u32 {
    let seq = u32::from_le_bytes(f[14..18].try_into().unwrap());
    assert_eq!(
        f,
        frame(seq, f.len()).as_slice(),
        "payload of frame {seq} corrupted"
    );
    seq
}

/// Receives from `port` until `n` frames arrived or `timeout` passed.
pub fn recv_n(port: &mut MemPort, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + timeout;
    while out.len() < n && Instant::now() < deadline {
        match port.recv(&mut buf).unwrap() {
            Some((len, _)) => out.push(buf[..len].to_vec()),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    out
}

/// Sends, retrying while the port is full.
pub fn send_all(port: &mut MemPort, f: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match port.send(f, &FrameMeta::default()) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "port stayed full");
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

impl Backend {
    /// Runs `f` on the netback thread.
    pub fn command(&self, f: impl FnOnce(&mut LocalNetback) + Send + 'static) {
        self.commands.lock().unwrap().push(Box::new(f));
    }
}

/// Offers frames of `len` bytes into `port` as fast as it takes them for `dur`;
/// returns how many were accepted by the port.
pub fn flood(port: &mut MemPort, len: usize, dur: Duration) -> u64 {
    let end = Instant::now() + dur;
    let mut seq = 0u32;
    let mut f = frame(0, len);
    while Instant::now() < end {
        f[14..18].copy_from_slice(&seq.to_le_bytes());
        match port.send(&f, &FrameMeta::default()) {
            Ok(()) => seq += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("send: {e}"),
        }
    }
    seq as u64
}

/// Counts frames arriving on `port` until `until`; returns (frames, bytes).
pub fn count_until(port: &mut MemPort, until: Instant) -> (u64, u64) {
    let mut buf = vec![0u8; 65536];
    let (mut n, mut b) = (0, 0);
    while Instant::now() < until {
        match port.recv(&mut buf).unwrap() {
            Some((len, _)) => {
                n += 1;
                b += len as u64;
            }
            None => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    (n, b)
}

/// Bytes of heap in use by this process (glibc `mallinfo2`: small blocks in use plus
/// mmap'ed blocks). Unlike RSS, it does not count shared memory the process touches
/// (grant mappings, pre-sized memory ports), so growth here is a leak, not warm-up.
pub fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}
