//! DBA-VM netfront: the guest half of the Xen netif driver pair.
//!
//! * [`front`]: the device — xenbus frontend handshake and reconnection, persistent
//!   granted buffer pools, credit enforcement (policy `drop` or `hold`) before a frame
//!   costs anything, TX and RX ring paths;
//! * [`error`]: why netfront failed (handshake, or a backend breaking the protocol);
//! * [`rx`]: RX reassembly of responses into frames, a pure state machine;
//! * `queue`: one queue's rings, buffers and event channels, and its TX/RX paths;
//! * [`mq`]: the multi-queue event loop, one thread per queue;
//! * [`pump`]: the event loop that moves frames between a [`netport::Port`] (the guest
//!   kernel's TAP, or an in-memory channel) and the device;
//! * [`stats`]: the state file a running netfront rewrites for `netfront stats`;
//! * [`ready`]: readiness notification to systemd (`Type=notify`) once the TAP serves.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod front;
pub mod pump;
pub mod ready;
pub mod rx;

pub use error::{BackendError, FrontError, HandshakeError};
pub use front::mq;
use front::queue;
pub use front::stats;
pub use front::{Allowance, CreditPolicy, FrontStats, Netfront, NetfrontConfig, Sent};
