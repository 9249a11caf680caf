//! Netback's figures for operators, in the Prometheus text exposition format (version
//! 0.0.4), served over HTTP on an opt-in address (`netback serve --metrics ADDR`).
//!
//! The event loop never waits for a scraper:
//!
//! * [`sample`]: [`Sampler::observe`] runs in the event loop after every iteration. It is
//!   O(1) unless the sampling interval has passed; then it takes a [`Snapshot`]
//!   (counters, rates over the interval from [`crate::meter::Meter`], budgets, SLAs, the
//!   allocator's cost).
//! * [`publish`]: [`SnapshotCell::publish`] hands the snapshot over with a `try_lock`: if
//!   a scraper holds the lock at that instant, the snapshot waits for the next iteration
//!   instead ([`Publisher`] ties the two together).
//! * [`http`]: [`MetricsServer`] runs on its own threads, clones the latest snapshot (an
//!   `Arc`) and renders it. Requests are bounded in size and time; anything malformed
//!   gets a 4xx answer and a closed connection, never a panic.
//! * [`expo`]: [`render`], a loop over the table of families [`FAMILIES`] (name, type,
//!   help, how to read it).
//!
//! The families are listed in `docs/operations.md` §4. The client side (scraping,
//! parsing, `netback top`, `netback sla show`) is the `netback-ops` crate.

pub mod expo;
pub mod http;
pub mod publish;
pub mod sample;
#[cfg(test)]
mod tests;

pub use expo::{name, render, Family, Kind, Read, FAMILIES};
pub use http::MetricsServer;
pub use publish::{Publisher, SnapshotCell};
pub use sample::{AllocatorSample, Sampler, Snapshot, VifSample, WorkerSample};
