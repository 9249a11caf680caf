//! DBA-VM's dynamic bandwidth allocator (Amamou et al., ISCC 2012, §IV), made precise.
//!
//! Every readjustment period the allocator turns SLAs (priority class, minimum and maximum
//! bits/s per vif, packets/s cap per VM) and the rates measured over the last period into
//! a bits/s and a packets/s budget, with bursts, for every vif sharing one physical link:
//!
//! * [`step1`]: bits/s. Minimums first (pulling lower classes down to theirs), then the
//!   rest by priority, max-min fair inside a class, never above a maximum, and
//!   work-conserving.
//! * [`step2`]: packets/s. Each VM's cap split among its vifs by `B_i / BT^VM_j`.
//! * [`demand`]: what a vif wants, including when it is pinned at its budget.
//! * [`allocation::allocate`]: one round as a pure function (no I/O, no clock).
//! * [`control::ControlLoop`]: the periodic loop against a [`control::Datapath`] that the
//!   netback implements (read meters, write budgets), with injected time.
//! * SLA sources: [`sla_file`] (TOML) and [`xenstore`] (per-vif backend keys).
//!
//! All rates are integers: bits/s of **L2 frame bytes** (destination MAC to end of
//! payload; no preamble, SFD, inter-frame gap or FCS) and packets/s, both counted on the
//! wire: a GSO frame counts as the segments it becomes, each with its headers
//! (`docs/protocol.md` §2.6). The specification
//! with the paper's notation beside ours is `docs/allocator.md`.
//!
//! # Example: what a netback does
//!
//! ```
//! use std::time::{Duration, Instant};
//! use allocator::{Budget, ControlLoop, Datapath, DomId, LoopConfig, VifId, VifReading};
//! use allocator::sla_file::parse_sla_file;
//!
//! /// The netback's side: meters in, budgets out.
//! struct Vifs { sent: Vec<(VifId, u64, u64)>, applied: Vec<(VifId, Budget)> }
//!
//! #[derive(Debug)]
//! struct Gone;
//! impl std::fmt::Display for Gone {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("gone") }
//! }
//! impl std::error::Error for Gone {}
//!
//! impl Datapath for Vifs {
//!     type Error = Gone;
//!     fn read_meters(&mut self, out: &mut Vec<VifReading>) -> Result<(), Gone> {
//!         for (k, &(vif, bytes, packets)) in self.sent.iter().enumerate() {
//!             out.push(VifReading::new(vif, k as u64, bytes, packets));
//!         }
//!         Ok(())
//!     }
//!     fn write_budgets(&mut self, budgets: &[(VifId, Budget)]) -> Result<(), Gone> {
//!         // netback: credit area (bytes_per_sec = bps / 8, …) and backstop buckets.
//!         self.applied = budgets.to_vec();
//!         Ok(())
//!     }
//! }
//!
//! let slas = parse_sla_file(r#"
//!     [link]
//!     capacity-bps = "1G"
//!     [[vif]]
//!     domid = 1
//!     min-bps = "150M"
//! "#).unwrap();
//! let mut vifs = Vifs { sent: vec![(VifId::new(DomId(1), 0), 0, 0)], applied: vec![] };
//! let mut lp = ControlLoop::new(LoopConfig::default()).unwrap();
//! let t0 = Instant::now();
//! lp.tick(t0, &slas, &mut vifs).unwrap();
//! // 20 ms later the vif has sent 250 000 bytes (100 Mb/s) in 1500-byte frames.
//! vifs.sent[0] = (VifId::new(DomId(1), 0), 250_000, 166);
//! let round = lp.tick(t0 + Duration::from_millis(20), &slas, &mut vifs).unwrap();
//! assert_eq!(round.vifs[0].measured.unwrap().bps, 100_000_000);
//! assert_eq!(vifs.applied[0].1.bps, 1_000_000_000); // alone: the whole link (headroom)
//! ```

#![forbid(unsafe_code)]

pub mod allocation;
pub mod budget;
pub mod control;
pub mod demand;
pub mod rate;
pub mod sla;
pub mod sla_file;
pub mod step1;
pub mod step2;
pub mod xenstore;

pub use allocation::{allocate, Allocation, VifAllocation, VifDemand};
pub use budget::Budget;
pub use control::{
    ControlLoop, Datapath, LoopConfig, LoopError, OfferedTotals, RoundReport, VifReading,
};
pub use demand::{Measurement, Offered};
pub use sla::{Direction, DomId, Link, Priority, SlaError, SlaSet, VifId, VifSla, VmSla};
pub use step1::UNBOUNDED;
