//! DBA-VM netfront: the guest half of the Xen netif driver pair.
//!
//! * [`front`]: the device — xenbus frontend handshake and reconnection, persistent
//!   granted buffer pools, credit enforcement (policy `drop` or `hold`) before a frame
//!   costs anything, TX and RX ring paths;
//! * [`rx`]: RX reassembly of responses into frames, a pure state machine;
//! * [`pump`]: the event loop that moves frames between a [`netport::Port`] (the guest
//!   kernel's TAP, or an in-memory channel) and the device.
#![deny(missing_docs)]

pub mod front;
pub mod pump;
pub mod rx;

pub use front::{CreditPolicy, FrontError, FrontStats, Netfront, NetfrontConfig, Sent};
