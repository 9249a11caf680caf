//! netback's settings ([`NetbackConfig`]) and where a vif's frames go ([`PortFactory`]):
//! shared by the manager ([`crate::backend`]) and the data-path workers.

use std::io;

use netport::Port;
use shared_ring::credit::Credits;
use shared_ring::Limit;
use xen_ids::VifId;

use crate::vif::BackstopPolicy;
use crate::vifconfig::VifConfig;

/// Opens the port a vif's frames go to and come from (a TAP, a memory channel…).
pub trait PortFactory {
    /// A port for vif `id` with the guest's MAC.
    fn open(&mut self, id: VifId, mac: [u8; 6]) -> io::Result<Box<dyn Port>>;

    /// A port for vif `id` set up as its toolstack keys say (interface name, MTU; see
    /// [`crate::vifconfig`]). By default [`PortFactory::open`] with the guest's MAC (a
    /// fixed one when the toolstack wrote none): for ports that are not interfaces.
    fn open_vif(&mut self, id: VifId, cfg: &VifConfig) -> io::Result<Box<dyn Port>> {
        self.open(id, cfg.mac.unwrap_or(DEFAULT_GUEST_MAC))
    }

    /// The most queues vif `id`'s port (opened) can have: netback offers that vif no
    /// more (`multi-queue-max-queues`). By default 1, as [`PortFactory::open_queue`]
    /// refuses.
    fn queues(&self, id: VifId) -> u32 {
        let _ = id;
        1
    }

    /// The port of queue `queue` (1 or more) of vif `id`, opened when a frontend
    /// connects with several queues (queue 0's is the one [`PortFactory::open_vif`]
    /// opened at probe; for a TAP, another queue of the same multi-queue interface).
    /// By default refused: such a factory serves one queue per vif
    /// ([`PortFactory::queues`]), so netback offers no more.
    fn open_queue(&mut self, id: VifId, queue: u32) -> io::Result<Box<dyn Port>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{id}: this port factory opens one port per vif, not queue {queue}"),
        ))
    }
}

/// The guest MAC a port is opened with when the toolstack wrote no `mac`.
pub const DEFAULT_GUEST_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0];

impl<F: FnMut(VifId, [u8; 6]) -> io::Result<Box<dyn Port>>> PortFactory for F {
    fn open(&mut self, id: VifId, mac: [u8; 6]) -> io::Result<Box<dyn Port>> {
        self(id, mac)
    }
}

/// Netback settings.
#[derive(Debug, Clone)]
pub struct NetbackConfig {
    /// Backend device type directory (`vif` as libxl writes it).
    pub backend_type: String,
    /// What the backstop does with excess TX frames.
    pub tx_policy: BackstopPolicy,
    /// What the RX budget does with frames over it: drop them (counted, never copied)
    /// or hold the vif's port until tokens return.
    pub rx_policy: BackstopPolicy,
    /// The RX budget a vif starts with when the allocator is off (a static receive SLA);
    /// unlimited by default. With the allocator on, the most its RX SLA allows.
    pub initial_rx_budget: Credits,
    /// Advertise `feature-dba-credits`.
    pub credits: bool,
    /// The credit-area layout version advertised (default
    /// [`shared_ring::credit::CREDIT_VERSION`]; 1 behaves as a version-1 backend: no RX
    /// budget or counters in the area).
    pub credit_version: u16,
    /// The budget a vif starts with when the allocator is off. With the allocator on, a
    /// vif starts with the most its SLA allows until the next round counts it in.
    pub initial_budget: Credits,
    /// **Emulation** for benchmarks: the most TX packets per second the whole backend
    /// processes (all vifs together), like the paper's memory-bound dom0 (190 Kp/s).
    /// `None` in production.
    pub emulated_backend_pps: Option<u64>,
    /// How long a frame may wait for a frontend's RX buffers before the frontend counts
    /// as stalled and its port's carrier goes off (Linux's `rx_stall_timeout`; ns on
    /// netback's clock; `None`: never). Default [`crate::vif::RX_STALL_TIMEOUT_NS`].
    pub rx_stall_timeout_ns: Option<u64>,
    /// Data-path worker threads (at least 1). Each has its own epoll and event-channel
    /// handle and serves the vif queues placed on it (the least loaded at a vif's
    /// probe, for the vif's life). `netback serve` defaults to the CPUs it may run on.
    pub workers: usize,
    /// The most queues a vif may have (`multi-queue-max-queues`, written for every vif
    /// as Linux's netback does; 1: single-queue frontends only). `None`: as many as
    /// [`NetbackConfig::workers`] (Linux offers as many as the driver domain's CPUs).
    /// Queue k of a vif is served by worker (w₀ + k) mod [`NetbackConfig::workers`],
    /// w₀ the vif's ([`crate::router`]).
    pub max_queues: Option<u32>,
    /// Where each vif queue's response journal lives (`<domid>.<devid>.journal` for
    /// queue 0, `<domid>.<devid>.q<k>.journal` for queue k, see [`crate::journal`]): a
    /// netback killed in the middle of a batch leaves there what the next one needs to
    /// take the rings over. `netback serve`: `/run/netback`. `None`: no journal (a
    /// netback killed mid-batch may strand its guests).
    pub journal_dir: Option<std::path::PathBuf>,
    /// Fault injection for tests: the netback process exits, as if killed, when one
    /// queue of a vif has written this many TX responses (before the next, mid-batch;
    /// each queue counts its own). `None` in production.
    pub exit_after_tx_responses: Option<u64>,
    /// The same for RX responses.
    pub exit_after_rx_responses: Option<u64>,
    /// Where each worker reads how long its thread waited for a CPU: the backstops keep
    /// the tokens of those waits (`docs/protocol.md` §2.4, "Stalls"). `None` (the
    /// default): plain buckets that lose them; `netback serve --credit-cpu-waits` and
    /// `bench paper --credit-cpu-waits` use the kernel's count
    /// ([`hypervisor::cpu_wait::RunDelay::system`]); tests inject their own, as they
    /// inject the clock.
    pub run_delay: Option<hypervisor::cpu_wait::RunDelay>,
}

impl NetbackConfig {
    /// The `multi-queue-max-queues` offered (at least 1).
    pub fn offered_queues(&self) -> u32 {
        self.max_queues
            .unwrap_or(self.workers.try_into().unwrap_or(u32::MAX))
            .max(1)
    }
}

impl Default for NetbackConfig {
    fn default() -> Self {
        NetbackConfig {
            backend_type: "vif".into(),
            tx_policy: BackstopPolicy::Drop,
            rx_policy: BackstopPolicy::Drop,
            initial_rx_budget: crate::control::UNLIMITED,
            credits: true,
            credit_version: shared_ring::credit::CREDIT_VERSION,
            initial_budget: Credits {
                bytes: Limit::Unlimited,
                packets: Limit::Unlimited,
                period_us: 0,
            },
            emulated_backend_pps: None,
            rx_stall_timeout_ns: Some(crate::vif::RX_STALL_TIMEOUT_NS),
            workers: 1,
            max_queues: None,
            journal_dir: None,
            exit_after_tx_responses: None,
            exit_after_rx_responses: None,
            run_delay: None,
        }
    }
}
