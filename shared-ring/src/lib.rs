//! The shared-memory half of the DBA-VM Xen network drivers: `no_std`, no allocation.
//!
//! * [`netif`]: the wire types of `xen/include/public/io/netif.h` (TX/RX requests and
//!   responses, `netif_extra_info`, flags, status codes, limits), layout-checked at
//!   compile time;
//! * [`ring`]: the generic producer/consumer ring of `xen/include/public/io/ring.h` —
//!   front and back ends, notification hold-off, final checks, producer-overflow
//!   detection, copy-once reads — with `ring.h`'s memory ordering;
//! * [`credit`]: the DBA-VM credit area in the unused tail of the TX ring page, a
//!   seqlock-protected budget written by netback and read by netfront;
//! * [`bucket`]: the dual (bytes + packets) token bucket that enforces those budgets;
//! * [`shared_bucket`]: the same dual bucket shared, lock-free, by the queue threads of
//!   a multi-queue frontend (one budget per vif);
//! * [`wire`]: what a frame costs in those budgets (a GSO frame: its wire segments);
//! * [`page`]: shared memory as atomic words — the only place raw pointers enter.
//!
//! The crate is byte-for-byte the Xen netif protocol: a differential test
//! (`shared-ring/oracle`) drives the real C macros and this ring on the same operations
//! and compares the pages. The credit extension is specified in `docs/protocol.md`.
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod bucket;
pub mod credit;
pub mod netif;
pub mod page;
pub mod ring;
pub mod shared_bucket;
pub mod wire;

pub use bucket::{Denied, DualTokenBucket, Limit, TokenBucket};
pub use credit::{
    BackCounters, CreditArea, CreditError, CreditPublisher, CreditReader, CreditSnapshot, Credits,
};
pub use page::{SharedMem, SharedPage, XEN_PAGE_SIZE};
pub use ring::{
    BackIndices, BackRing, FrontIndices, FrontRing, RingEntry, RingError, RingIdx, Sring,
};
pub use shared_bucket::{SharedDualBucket, SharedTokenBucket};
pub use wire::WireCost;
